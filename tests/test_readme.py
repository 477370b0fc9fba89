"""The README stays true: two commands set everything up, CI runs exactly the README's test
command, and the README's cheap commands leave a fresh clone's ``git status`` empty."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMAND = re.compile(r"\s*(bash|pip|python) ")


def _commands(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if COMMAND.match(line)]


def _block(section: str) -> list[str]:
    """Commands of the first ```bash block under ``## <section>``."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    assert match, f"README has no ```bash block under '## {section}'"
    return _commands(match.group(2))


def test_ci_runs_the_readme_test_command():
    ci = _commands((REPO / ".ci" / "run").read_text())
    assert ci, "no commands found in .ci/run"
    assert ci == _block("Test"), f"CI runs {ci} but the README's Test block says {_block('Test')}"


def test_two_commands_set_everything_up():
    assert _block("Install") == ["bash scripts/export.sh"]
    assert _block("Test") == ["bash scripts/test.sh"]
    export = (REPO / "scripts" / "export.sh").read_text()
    test = (REPO / "scripts" / "test.sh").read_text()
    assert "bash scripts/install.sh export,openvino" in export
    assert re.search(r'^exec "\$\{PYTHON:-python\}" -m export\.tensorrt --int8 "\$@"$', export, re.MULTILINE)
    assert re.search(r"^bash scripts/install\.sh [a-z,]*\bdev\b", test, re.MULTILINE)
    assert re.search(r'^exec "\$\{PYTHON:-python\}" -m pytest "\$@"$', test, re.MULTILINE)
    for script in ("install.sh", "export.sh", "test.sh"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def _install_calls(tmp_path: Path, extras: str, **env: str) -> list[list[str]]:
    """Run scripts/install.sh with PYTHON pointing at a stand-in that records its arguments."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {log}\n')
    fake.chmod(0o755)
    subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), extras], check=True, capture_output=True,
                   env={**os.environ, "PYTHON": str(fake), **env}, timeout=60)
    return [line.split() for line in log.read_text().splitlines()]


def test_install_script_pins_torch_first_and_takes_a_cpu_index(tmp_path):
    calls = _install_calls(tmp_path, "export,openvino,dev")
    pip = [c for c in calls if c[:3] == ["-m", "pip", "install"]]
    assert "torch==2.13.0" in pip[0] and "--index-url" not in pip[0]
    assert "-e" in pip[1] and ".[export,openvino,dev]" in pip[1]
    (tmp_path / "calls.txt").unlink()
    calls = _install_calls(tmp_path, "export", TORCH_INDEX_URL="https://example.invalid/cpu")
    assert calls[0][-2:] == ["--index-url", "https://example.invalid/cpu"]
    (tmp_path / "calls.txt").unlink()
    calls = _install_calls(tmp_path, "openvino")  # no torch without the export extra
    assert not any("torch==2.13.0" in c for c in calls)


def test_readme_names_the_pinned_torch_and_the_cpu_index():
    text = README.read_text()
    script = (REPO / "scripts" / "install.sh").read_text()
    pinned = re.search(r"TORCH_VERSION:-([0-9.]+)", script).group(1)
    assert f"torch=={pinned}" in text and "TORCH_INDEX_URL" in text and "download.pytorch.org/whl/cpu" in text


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=clone, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_readme_commands_leave_a_fresh_clone_clean(tmp_path, official_checkpoint, fer2013_root, fer_val_faces):
    """The README's cheap commands, on the small fixture model, in a fresh clone: every default output
    lands in the ignored exports/ folder and ``git status --porcelain`` stays empty."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    face = str(fer_val_faces[0][0])
    ckpt, data = str(official_checkpoint), str(fer2013_root)
    commands = [
        ["-m", "export.onnx", "--checkpoint", ckpt],
        ["-m", "calibration", "build", "--source", data, "--split", "train", "--num", "14",
         "--out", "exports/calib.npz"],
        ["-m", "emonext_edge", "predict", "exports/emonext.onnx", face, "--json"],
        ["-m", "emonext_edge", "predict", "exports/emonext.onnx", face, "--faces"],
        ["benchmarks/accuracy.py", "exports/emonext.onnx", "--data", data, "--split", "val", "--limit", "7"],
        ["benchmarks/latency.py", "--artifacts", "exports/emonext.onnx", "--batch-sizes", "1", "--rounds", "1",
         "--iterations", "1", "--warmup", "0"],
        ["-m", "export.openvino", "--checkpoint", ckpt],
        # the main job; exit 3 = no TensorRT here: the CPU-verified ONNX steps ran and their outputs were kept
        ["-m", "export.tensorrt", "--checkpoint", ckpt, "--int8", "--calib", "exports/calib.npz", "--calib-num", "14"],
    ]
    for args in commands:
        proc = subprocess.run([sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        allowed = (0, 3) if "export.tensorrt" in args else (0,)
        assert proc.returncode in allowed, f"{args}: exit {proc.returncode}\n{proc.stderr[-1500:]}"
    assert (clone / "exports" / "emonext.onnx").is_file() and any((clone / "exports" / "latency").iterdir())
    assert _git(clone, "status", "--porcelain") == ""
    ignored = {line[3:].rstrip("/").split("/")[0] for line in _git(clone, "status", "--porcelain", "--ignored").splitlines()}
    assert ignored <= {"exports", "__pycache__", "emonext_edge", "export", "calibration", "benchmarks", "tests"}, ignored
    stray = [p.name for p in clone.iterdir() if p.name not in {".git", "exports"} and not _git(clone, "ls-files", p.name)]
    assert stray == [], f"files outside exports/: {stray}"


def test_readme_data_and_output_paths_are_gitignored():
    """The README tells users to extract FER2013/ and keep runs/emonext.pt in the checkout; tools write exports/."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    paths = ["FER2013/val/Happy/x.jpg", "runs/emonext.pt", "exports/emonext.onnx", "exports/cache/latency/x"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.stdout.split() == paths
