"""The tests' own rules for optional extras (conftest.py): the table of extras matches
pyproject.toml, a marked test skips naming its extra, an unknown extra is an error and a
plain ``importorskip`` fails (CI's extras pass would never select it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import EXTRA_MODULES, REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 (tomllib)")


def _extras_of_pyproject() -> dict[str, set[str]]:
    """Each extra of pyproject.toml (``all`` and ``dev`` aside) -> its distributions."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {
        extra: {re.split(r"[<>=!~\[; ]", req)[0].lower() for req in reqs}
        for extra, reqs in project["optional-dependencies"].items()
        if extra not in ("all", "dev")
    }


def test_the_table_of_extras_is_pyprojects():
    """Every extra has its row, and each module a row names is installed by that extra
    (module names are their distributions' with ``_`` for ``-``)."""
    extras = _extras_of_pyproject()
    assert set(EXTRA_MODULES) == set(extras)
    for extra, modules in EXTRA_MODULES.items():
        for module in modules:
            assert module.replace("_", "-") in extras[extra], (extra, module)


def _run_pytest(tmp_path: Path, body: str, hide: str = "") -> subprocess.CompletedProcess:
    """Run pytest on one test file under this suite's conftest.py (as a plugin), with the
    module ``hide`` made unimportable (as if its extra were not installed)."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    plugins = ["-p", "conftest"]
    if hide:
        (tmp_path / "hide_module.py").write_text(f"import sys\n\nsys.modules[{hide!r}] = None\n")
        plugins = ["-p", "hide_module", *plugins]
    path = [str(tmp_path), str(REPO_ROOT / "tests"), *sys.path]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("FIFTYONE_DATABASE_URI", None)  # set by this session's conftest.py
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-p", "no:cacheprovider", "-q", "-rs",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip


def test_a_marked_test_skips_naming_its_extra(tmp_path):
    body = """
        import pytest

        @pytest.mark.extra("sam2")
        def test_needs_sam2():
            import sam2  # noqa: F401
    """
    out = _run_pytest(tmp_path, body, hide="sam2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 skipped" in out.stdout
    assert "needs the [sam2] extra (sam2): pip install 'samrefiner[sam2]'" in out.stdout


def test_a_plain_importorskip_of_a_missing_package_fails(tmp_path):
    body = """
        import pytest

        def test_plain():
            pytest.importorskip("samrefiner_no_such_package")
    """
    out = _run_pytest(tmp_path, body)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed" in out.stdout and "without naming its extra" in out.stdout


def test_an_unknown_extra_in_a_mark_is_an_error(tmp_path):
    body = """
        import pytest

        @pytest.mark.extra("no-such-extra")
        def test_unknown():
            pass
    """
    out = _run_pytest(tmp_path, body)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "unknown extra 'no-such-extra'" in out.stdout
