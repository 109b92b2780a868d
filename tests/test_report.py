"""``samrefiner report``: from a bench run and from a refine run; checked in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_measure import disk, make_dataset
from samrefiner.cli import main
from samrefiner.io import InputError
from samrefiner.report.load import load_report_data
from samrefiner.report.plots import histogram_svg, scatter_svg
from samrefiner.report.render import COLORS, render_card

TINY = ["--model", "samrefiner.testing:tiny_sam", "--random-weights"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> Path:
    """A bench output on the synthetic dataset: 2 images, 4 objects, tiny SAM."""
    root = tmp_path_factory.mktemp("bench")
    data = make_dataset(root / "data")
    argv = [
        "bench",
        str(data),
        "-o",
        str(root / "run"),
        *TINY,
        "--iterations",
        "1",
        "--configs",
        "all,elastic",
        "--no-progress",
        "--no-warmup",
    ]
    assert main(argv) == 0
    return root / "run"


@pytest.fixture(scope="module")
def refine_run(tmp_path_factory) -> Path:
    """A refine output (sidecar + refined PNGs) for one synthetic image and two masks."""
    root = tmp_path_factory.mktemp("refine")
    data = make_dataset(root / "data", n_images=1)
    ids = np.asarray(Image.open(data / "masks" / "img0.png"))
    masks = []
    for oid in (1, 2):
        path = root / f"coarse_{oid}.png"
        Image.fromarray((ids == oid).astype(np.uint8) * 255).save(path)
        masks.append(str(path))
    argv = [
        "refine",
        str(data / "images" / "img0.png"),
        *masks,
        "-o",
        str(root / "out"),
        *TINY,
        "--iterations",
        "1",
    ]
    assert main(argv) == 0
    return root / "out"


def card_count(html: str) -> int:
    return len(re.findall(r'<figure class="card"', html))


def test_report_from_bench_run(bench_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(bench_run), "-o", str(out), "--no-progress"]) == 0
    assert "4 cards" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert card_count(html) == 4 and 'data-has-gt="1"' in html
    assert {p.name for p in out.iterdir()} == {"index.html", "report.css", "report.js", "cards"}
    assert len(list((out / "cards").glob("*.jpg"))) == 4
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (out / src).is_file()
    # Self-contained: nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:|//)', html)
    assert "IoU gain, high first" in html and 'id="gain-min"' in html
    assert "IoU with ground truth, before vs after" in html and "<svg" in html
    # Summary rows for every method, and cards of the default method ("all").
    for name in ("coarse", "grabcut", "all", "elastic"):
        assert f"<td>{name}</td>" in html
    data = load_report_data(bench_run)
    assert data.method == "all" and data.has_gt
    assert all(c.status in ("refined", "collapsed") for c in data.cards)
    assert (
        main(
            [
                "report",
                str(bench_run / "results.json"),
                "-o",
                str(tmp_path / "r2"),
                "--method",
                "grabcut",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "cards show:</b> grabcut" in (tmp_path / "r2" / "index.html").read_text()


def test_report_from_refine_run_without_ground_truth(refine_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(refine_run), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    html = (out / "index.html").read_text()
    assert card_count(html) == 2 and 'data-has-gt="0"' in html
    assert 'id="gain-min"' not in html and "predicted IoU, high first" in html
    assert "coarse IoU" not in html  # nothing to compare with
    data = load_report_data(refine_run)
    assert data.kind == "refine" and not data.has_gt
    assert [c.object_id for c in data.cards] == ["coarse_1", "coarse_2"]
    assert all(c.change_iou is not None and c.gain is None for c in data.cards)


def test_report_input_errors(bench_run, tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"kind": "other"}))
    assert main(["report", str(tmp_path / "x.json"), "-o", str(tmp_path / "r")]) == 2
    assert "x.json: not a samrefiner bench file" in capsys.readouterr().err
    assert main(["report", str(bench_run), "-o", str(tmp_path / "r"), "--method", "zzz"]) == 2
    assert "no method 'zzz'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="expected a bench output"):
        load_report_data(tmp_path / "empty")
    stripped = json.loads((bench_run / "results.json").read_text())
    for img in stripped["images"]:
        for obj in img["objects"]:
            del obj["coarse"]
    (tmp_path / "nomask.json").write_text(json.dumps(stripped))
    with pytest.raises(InputError, match="no-masks"):
        load_report_data(tmp_path / "nomask.json")


def _has_color(img: np.ndarray, rgb, tol: int = 40) -> bool:
    return bool((np.abs(img.astype(int) - np.array(rgb)).max(axis=2) <= tol).any())


def test_render_card_draws_contours_and_prompts():
    shape = (200, 300)
    image = np.full((*shape, 3), 90, np.uint8)
    gt, coarse, refined = (
        disk(shape, 100, 150, 40),
        disk(shape, 104, 156, 46),
        disk(shape, 100, 150, 36),
    )
    prompts = {
        "points": [[150, 100], [60, 20]],
        "point_labels": [1, 0],
        "box": [100, 50, 210, 160],
        "box_expanded": True,
    }
    card = render_card(image, coarse, refined, gt, prompts, max_side=160)
    assert card.dtype == np.uint8 and max(card.shape[:2]) <= 160
    for name in ("gt", "coarse", "refined", "box_grew", "positive", "negative"):
        assert _has_color(card, COLORS[name]), name
    plain = render_card(image, coarse, refined, None, {**prompts, "box_expanded": False})
    assert _has_color(plain, COLORS["box"]) and not _has_color(plain, COLORS["box_grew"])
    assert not _has_color(render_card(image, coarse, refined), COLORS["box"], tol=10)


def test_plots_are_valid_svg():
    svg = histogram_svg(
        {"coarse": [0.5, 0.6, 0.61], "refined": [0.9, 0.95, 1.0]},
        {"coarse": "#ff851b", "refined": "#00c8ff"},
        "t",
        "IoU",
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    svg = scatter_svg([0.1, 0.5, 0.9], [-0.2, 0.0, 0.3], "t", "x", "y", (-0.5, 0.5), zero_line=True)
    root = ET.fromstring(svg)
    assert len(root.findall(f"{ns}circle")) == 3
    assert root.find(f"{ns}line[@class='zero']") is not None
    with pytest.raises(ValueError, match="y_range"):
        scatter_svg([0.1], [0.1], "t", "x", "y", (1.0, 1.0))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _dump_dom(browser: str, page: Path, profile: Path) -> tuple[str, str]:
    """Load ``page`` headless (networking off) and return (DOM after scripts, stderr)."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.browser
def test_report_in_headless_chromium(bench_run, refine_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed (apt-get install chromium)")
    # The check itself must be able to fail: a page with a script error is caught.
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>notDefined();</script></body></html>")
    _, err = _dump_dom(browser, bad, tmp_path / "profile0")
    assert any("notDefined" in line for line in _console_lines(err))

    for name, run, expected in (("bench", bench_run, 4), ("refine", refine_run, 2)):
        out = tmp_path / name
        assert main(["report", str(run), "-o", str(out), "--no-progress"]) == 0
        dom, err = _dump_dom(browser, out / "index.html", tmp_path / f"profile-{name}")
        assert _console_lines(err) == []
        status = re.search(r'<div id="report-status"[^>]*>', dom)
        assert status, dom[:500]
        attrs = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', status.group(0)))
        assert attrs["data-ready"] == "1", "report.js did not run"
        assert attrs["data-errors"] == "0"
        assert attrs["data-cards"] == str(expected) and attrs["data-shown"] == str(expected)
        assert card_count(dom) == expected
