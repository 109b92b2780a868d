"""``adapt --engine ray`` (the embedding pass on Ray actors) and model errors under Ray,
on a local Ray (2 CPUs) started once for the module."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import import_extra

ray = import_extra("ray", "ray")
import_extra("adapt", "peft")

from helpers_runner import build_instances  # noqa: E402
from samrefiner.adaption import ray_embed  # noqa: E402
from samrefiner.cli import main  # noqa: E402
from samrefiner.cluster import raised_message as _raised_message  # noqa: E402
from samrefiner.testing import tiny_sam  # noqa: E402
from test_adaption_cli import MODEL, dataset_args  # noqa: E402

# Ray Data's context reads its own deprecated settings when it is copied to workers.
pytestmark = [
    pytest.mark.usefixtures("local_ray"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

RAY = ["--engine", "ray", "--workers", "1"]
QUIET = ["--no-progress", "--held-out", "0.25", "--iterations", "1"]


def unbuildable() -> None:
    """A model builder that the driver can import and no worker can run."""
    raise ValueError("this model cannot be built here")


def seeded_by_process():
    """A tiny SAM whose random weights differ from one process to the next."""
    return tiny_sam(seed=os.getpid() % 10_000)


def adapt(args: list[str], root: Path, name: str, *extra: str, cache: str = "") -> dict:
    """Run ``adapt`` into ``root/name`` with the cache ``root/cache-CACHE`` (default
    ``cache-NAME``); returns its report."""
    cache = str(root / f"cache-{cache or name}")
    report = root / f"{name}.json"
    run = ["adapt", *args, "-o", str(root / name), *MODEL, *QUIET]
    assert main([*run, "--embedding-cache", cache, "--json", str(report), *extra]) == 0
    return json.loads(report.read_text())


def cache_file(path: Path) -> tuple[dict, dict[str, bytes]]:
    """A cached embedding's metadata and its tensors' bytes."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k).numpy().tobytes() for k in handle.keys()}  # noqa: SIM118
        return handle.metadata(), tensors


def adapter_of(folder: Path) -> tuple[bytes, dict]:
    """The weights file's bytes and the JSON without the timings (which always differ)
    and the count of images encoded (the rest came from the cache)."""
    info = json.loads((folder / "adapter.json").read_text())
    info["report"].pop("seconds")
    info["report"].pop("encoded_images")
    return (folder / "adapter.safetensors").read_bytes(), info


def test_adapt_on_ray_writes_the_local_adapter_and_sends_only_uncached_images(
    tmp_path, monkeypatch
) -> None:
    args = dataset_args("masks", tmp_path)
    sent: list[list[str]] = []
    real = ray_embed.map_on_actors

    def recording(items, *rest, **kwargs):
        sent.append(list(items))
        return real(items, *rest, **kwargs)

    monkeypatch.setattr(ray_embed, "map_on_actors", recording)
    local = adapt(args, tmp_path, "local")
    assert local["encoded_images"] == 4
    # The Ray run's cache holds two of the four embeddings: the actors get the others.
    caches = [tmp_path / "cache-local", tmp_path / "cache-ray"]
    shutil.copytree(caches[0], caches[1])
    for path in sorted(caches[1].iterdir())[:2]:
        path.unlink()
    remote = adapt(args, tmp_path, "ray", *RAY)
    assert len(sent) == 1 and len(sent[0]) == 2
    assert remote["encoded_images"] == 2
    assert adapter_of(tmp_path / "ray") == adapter_of(tmp_path / "local")
    # The actors' cache files hold the local run's embeddings, bit for bit (not their
    # bytes: safetensors writes the metadata keys in an order that varies by process).
    files = [{p.name: cache_file(p) for p in c.iterdir()} for c in caches]
    assert len(files[0]) == 4 and files[0] == files[1]
    # Everything in the cache: Ray is not even asked.
    assert adapt(args, tmp_path, "warm", *RAY, cache="ray")["encoded_images"] == 0
    assert len(sent) == 1


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def instances_args(root: Path, *extra: str) -> list[str]:
    images, labels = build_instances(root)
    out = ["-o", str(root / "out"), "--no-progress", "--iterations", "1"]
    return ["instances", "--images", str(images), "--labels", str(labels), *out, *extra]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (["--model", "no_such_model"], "unknown model 'no_such_model'"),
        (["--model", "sam_vit_b", "--checkpoint", "missing.pth"], "checkpoint file not found"),
        (["--model", "no_such_module:build"], "cannot import model builder"),
    ],
)
def test_model_errors_on_ray_are_the_local_one_line_errors(tmp_path, capsys, model, message):
    """Found in the driver before Ray starts: the same line, exit 2, nothing written."""
    for command in ("instances", "adapt"):
        root = tmp_path / command
        root.mkdir()
        if command == "instances":
            argv = instances_args(root, *model)
        else:
            argv = ["adapt", *dataset_args("masks", root, 2), "-o", str(root / "out"), *model]
            argv += ["--embedding-cache", str(root / "cache"), "--no-progress"]
        before = listing(root)
        errors = []
        for engine in ([], RAY):
            assert main([*argv, *engine]) == 2
            errors.append(capsys.readouterr().err)
            assert listing(root) == before
        assert errors[0] == errors[1]
        assert message in errors[0] and len(errors[0].splitlines()) == 1


def test_a_worker_that_cannot_build_the_model_ends_the_run_in_one_line(tmp_path, capsys):
    """The driver can import the builder, the actor cannot run it: no Ray stack, no
    retries, and nothing left behind."""
    model = ["--model", "test_ray_adapt:unbuildable", *RAY]
    argv = instances_args(tmp_path, *model)
    before = listing(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "samrefiner instances: error: model 'test_ray_adapt:unbuildable' could not be "
        "loaded on a Ray worker: this model cannot be built here"
    ]
    assert listing(tmp_path) == before


def test_a_worker_with_other_weights_is_refused(tmp_path, capsys) -> None:
    """adapt's driver checks the actors build its own model (same cache keys)."""
    args = dataset_args("masks", tmp_path, 2)
    argv = ["adapt", *args, "-o", str(tmp_path / "out"), "--no-progress", *RAY]
    argv += ["--model", "test_ray_adapt:seeded_by_process", "--device", "cpu"]
    assert main([*argv, "--embedding-cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "model 'test_ray_adapt:seeded_by_process' could not be loaded on a Ray worker" in err
    assert "has other weights" in err and "give every node the same checkpoint" in err
    assert not (tmp_path / "out").exists()


def test_the_raised_message_is_read_from_rays_text() -> None:
    text = (
        "The actor died because of an error raised in its creation task, \x1b[36mray::W\x1b[39m\n"
        '  File "/x/a.py", line 3, in f\n'
        "    raise ValueError(msg)\n"
        "    ^^^^^^^^^^^^^^^^^^^^^\n"
        "samrefiner.cli.CommandError: /m.pth: not readable:\n"
        "second line\n"
    )
    assert _raised_message(text) == "/m.pth: not readable: second line"
    assert _raised_message("no frames") == "no frames"
