"""The whole tree stays lint- and type-clean: ``ruff check .`` and mypy over every package
(issue 22, item 7). Both tools come with the ``dev`` extra; the tests skip with the reason
where they are missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["emonext_edge", "export", "calibration", "benchmarks", "tests"]


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def test_ruff_check_whole_tree_is_clean():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    done = _run(["ruff", "check", "."], timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_mypy_every_package_is_clean():
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[dev]')")
    done = _run([sys.executable, "-m", "mypy", *PACKAGES], timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
