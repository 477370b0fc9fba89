"""Type-check the TensorRT code with mypy against a patched copy of ``tensorrt-stubs``.

The stubs live in a folder of their own, never in site-packages (there they would create an
empty ``tensorrt`` package that shadows a real TensorRT): :func:`installed_stubs` runs
``pip install --no-deps --target tests/fixtures/cache/tensorrt-stubs-pkg
tensorrt-stubs==10.13.0.35.1`` itself when that folder lacks them. ``tensorrt-stubs`` 10.13
does not parse as published: plugin methods have a parameter named ``in`` (a keyword) and
``add_scale_nd`` has a non-default parameter after defaults. :func:`prepare_stubs` copies the
stub packages into ``tests/fixtures/cache/stubs`` with those lines fixed; :func:`run_mypy`
runs mypy with that directory on ``MYPYPATH``, errors inside the stubs ignored, pycuda as Any.

Usage: ``python tests/typing/trt_mypy.py [FILES...]`` (default: the TensorRT modules).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
STUB_DIR = REPO / "tests" / "fixtures" / "cache" / "stubs"
PKG_DIR = REPO / "tests" / "fixtures" / "cache" / "tensorrt-stubs-pkg"
STUBS_REQUIREMENT = "tensorrt-stubs==10.13.0.35.1"
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")
TARGETS = (
    "export/tensorrt.py",
    "calibration/trt_calibrator.py",
    "emonext_edge/backends/tensorrt_backend.py",
    "emonext_edge/tensorrt_compat.py",
)


def installed_stubs(install: bool = True) -> Optional[Path]:
    """The folder holding tensorrt-stubs' ``tensorrt/__init__.pyi`` (installed there with pip
    ``--target`` when missing and ``install``), or None when pip cannot get it."""
    if not (PKG_DIR / "tensorrt" / "__init__.pyi").is_file() and install:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                        "--target", str(PKG_DIR), STUBS_REQUIREMENT], check=False, capture_output=True, text=True,
                       timeout=300)
    return PKG_DIR if (PKG_DIR / "tensorrt" / "__init__.pyi").is_file() else None


def _fix(text: str) -> str:
    text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", text)  # parameter named `in`
    return text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")


def prepare_stubs(dest: Path = STUB_DIR) -> Path:
    site = installed_stubs()
    if site is None:
        raise RuntimeError(f"{STUBS_REQUIREMENT} could not be installed into {PKG_DIR} (no package index reachable?)")
    if dest.exists():
        shutil.rmtree(dest)
    for pkg in STUB_PACKAGES:
        for src in (site / pkg).rglob("*.pyi"):
            out = dest / src.relative_to(site)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(_fix(src.read_text()))
    return dest


def run_mypy(files: Sequence[str] = TARGETS, stubs: Optional[Path] = None) -> subprocess.CompletedProcess:
    stubs = stubs or prepare_stubs()
    config = stubs / "mypy.ini"
    config.write_text(
        "[mypy]\npython_version = 3.11\nignore_missing_imports = True\nfollow_imports = silent\n"
        "[mypy-tensorrt.*]\nignore_errors = True\n[mypy-tensorrt_bindings.*]\nignore_errors = True\n"
        "[mypy-pycuda.*]\nignore_missing_imports = True\nfollow_imports = skip\n"
    )
    env = dict(os.environ, MYPYPATH=str(stubs))
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental",
           "--cache-dir", str(stubs / ".mypy_cache"), *files]
    return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


if __name__ == "__main__":
    result = run_mypy(sys.argv[1:] or TARGETS)
    print(result.stdout + result.stderr, end="")
    sys.exit(result.returncode)
