"""The filmstrip report of video label folders (samrefiner.report.filmstrip and
``samrefiner report --frames``)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from samrefiner.cli import main
from samrefiner.io import InputError
from samrefiner.measure.dataset import read_mask_file
from samrefiner.measure.video import evaluate_video_folders
from samrefiner.report.filmstrip import (
    StripSource,
    frame_j,
    overlay,
    sample_frames,
    write_filmstrip_report,
)


@pytest.fixture(scope="module")
def layout(shared_data, tmp_path_factory):
    from samrefiner.measure.sequences import SequenceSpec, write_dataset

    specs = [
        SequenceSpec(name="one", frames=9, height=48, width=80, seed=2),
        SequenceSpec(name="two", frames=6, height=48, width=64, seed=7),
    ]
    return write_dataset(tmp_path_factory.mktemp("video"), specs, shared_data, label_every=4)


class Figures(HTMLParser):
    """Collects each ``<figure>``'s data attributes, image and caption text."""

    def __init__(self):
        super().__init__()
        self.figures = []
        self.sequences = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "data-sequence" in a:
            self.sequences.append(a["data-sequence"])
        if tag == "figure":
            self.figures.append({**a, "seq": self.sequences[-1], "caption": ""})
        if tag == "img" and self.figures:
            self.figures[-1]["src"] = a["src"]
            self.figures[-1]["alt"] = a["alt"]
        self._in_caption = tag == "figcaption" or (self._in_caption and tag == "span")

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.figures[-1]["caption"] += data


def test_sample_frames():
    assert sample_frames(5, 10) == [0, 1, 2, 3, 4]
    assert sample_frames(9, 3) == [0, 4, 8]
    assert sample_frames(100, 4) == [0, 33, 66, 99]
    assert sample_frames(7, 1) == [0]


def test_overlay_colours_objects_only():
    image = np.full((20, 40, 3), 100, np.uint8)
    ids = np.zeros((20, 40), np.int64)
    ids[5:15, 5:15] = 1  # DAVIS colour 1: (128, 0, 0)
    thumb = overlay(image, ids, 10)
    assert thumb.shape == (10, 20, 3)
    assert (thumb[0, 15:] == 100).all()  # background untouched
    centre = thumb[5, 5].astype(int)
    assert centre.tolist() == [round(0.55 * 100 + 0.45 * 128), 55, 55]
    assert np.array_equal(overlay(image, None, 10), thumb * 0 + 100)


def test_frame_j_table():
    g = np.zeros((10, 10), np.int64)
    g[0:4, 0:4] = 1
    p = g.copy()
    p[0:4, 4:6] = 1  # 16 / 24
    assert frame_j(p, g) == pytest.approx(16 / 24)
    assert frame_j(None, g) == 0.0
    assert frame_j(np.zeros_like(g), np.zeros_like(g)) is None
    p2 = g.copy()
    p2[8:, 8:] = 2  # an object absent from the truth: J 0 for it
    assert frame_j(p2, g) == pytest.approx(0.5)


def test_filmstrip_page(layout, tmp_path):
    sources = [StripSource("coarse", layout.sparse), StripSource("dense", layout.coarse)]
    index = write_filmstrip_report(
        layout.frames, sources, tmp_path / "rep", gt=layout.gt, max_frames=4, thumb_height=32
    )
    html = index.read_text(encoding="utf-8")
    parser = Figures()
    parser.feed(html)
    assert parser.sequences == ["one", "two"]
    # 3 strips (ground truth first) x 4 sampled frames per sequence.
    one = [f for f in parser.figures if f["seq"] == "one"]
    assert [f["data-output"] for f in one[::4]] == ["ground truth", "coarse", "dense"]
    assert [f["data-frame"] for f in one[:4]] == ["00000", "00003", "00005", "00008"]
    assert len(parser.figures) == 24
    for fig in parser.figures:
        thumb = Image.open(tmp_path / "rep" / fig["src"])
        assert thumb.height == 32
        stem, seq = fig["data-frame"], fig["seq"]
        assert fig["alt"] == f"{seq} {stem} {fig['data-output']}"
        if fig["data-output"] == "coarse" and int(stem) % 4:
            assert "no label" in fig["caption"]  # sparse input: not labelled here
        elif fig["data-output"] == "dense":
            gt = read_mask_file(layout.gt / seq / f"{stem}.png").ids
            pred = read_mask_file(layout.coarse / seq / f"{stem}.png").ids
            want = frame_j(pred, gt)
            assert re.search(rf"J {want:.3f}$", fig["caption"].strip())
    # The score table matches the measure module.
    dense = evaluate_video_folders(layout.coarse, layout.gt, "dense")
    assert f"<td>dense</td><td>{dense.j:.4f}</td><td>{dense.f:.4f}</td>" in html
    assert (tmp_path / "rep" / "report.css").is_file()


def test_filmstrip_errors(layout, tmp_path):
    with pytest.raises(ValueError, match="distinct labels"):
        write_filmstrip_report(layout.frames, [], tmp_path / "r")
    bad = tmp_path / "bad" / "one"
    bad.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(bad / "00000.png")
    with pytest.raises(InputError, match=r"00000\.png: size 10x10 differs"):
        write_filmstrip_report(layout.frames, [StripSource("x", tmp_path / "bad")], tmp_path / "r")
    (tmp_path / "empty" / "seq").mkdir(parents=True)
    with pytest.raises(InputError, match="no frames"):
        write_filmstrip_report(tmp_path / "empty", [StripSource("x", bad)], tmp_path / "r")


def test_report_command_filmstrip(layout, tmp_path, capsys):
    out = tmp_path / "page"
    argv = ["report", str(layout.coarse), "-o", str(out), "--frames", str(layout.frames)]
    argv += ["--labels", str(layout.sparse), "--compare", f"truth={layout.gt}", "--no-progress"]
    assert main(argv) == 0
    assert "filmstrip of coarse, truth, Coarse" in capsys.readouterr().out
    parser = Figures()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    assert {f["data-output"] for f in parser.figures} == {"coarse", "truth", "Coarse"}
    # Refusals: a filmstrip option without --frames, a malformed --compare, a clash.
    assert main(["report", str(layout.coarse), "-o", str(out), "--gt", str(layout.gt)]) == 2
    bad = [*argv[:6], "--compare", "nameonly"]
    assert main(bad) == 2
    assert main([*argv[:6], "--compare", f"Coarse={layout.gt}"]) == 2
    assert (
        main(
            ["report", str(layout.coarse), "-o", str(layout.coarse), "--frames", str(layout.frames)]
        )
        == 2
    )
