"""Import contract: the library never imports a tool; tools import each other one way only."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([exe, "--no-cache"], check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_import_emonext_edge_pulls_in_no_tool_and_no_torch():
    code = ("import sys, emonext_edge, emonext_edge.runtime, emonext_edge.metadata; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('export', 'calibration', 'benchmarks', 'torch')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
