"""The README stays true: two commands set everything up, CI runs exactly the README's test
command, the quick run skips the slow tests, links resolve, and the reference model is described
where the newcomer meets it. (The Quickstart itself runs in a fresh clone in test_quickstart.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
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


def test_quick_test_run_skips_the_slow_tests(tmp_path):
    """``scripts/test.sh --quick`` runs pytest with ``-m "not slow"`` (and passes the rest on); the full run
    does not; both list the slowest tests."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {log}\n')
    fake.chmod(0o755)
    for args in (["--quick", "-x"], []):
        subprocess.run(["bash", str(REPO / "scripts" / "test.sh"), *args], check=True, capture_output=True,
                       env={**os.environ, "PYTHON": str(fake)}, timeout=60)
    pytest_calls = [line for line in log.read_text().splitlines() if line.startswith("-m pytest")]
    assert pytest_calls == ["-m pytest --durations=15 -m not slow -x", "-m pytest --durations=15"], pytest_calls


def test_readme_is_short_and_every_relative_link_resolves():
    """README <= 250 lines; every relative link in README.md and docs/*.md points at an existing file
    (and an anchor within README at one of its headings)."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250, f"README.md has {len(text.splitlines())} lines (at most 250)"
    broken = []
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        body = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # links inside code are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", body):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path) if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and resolved == README:
                slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
                if anchor not in slugs:
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken relative links: " + ", ".join(broken)


def test_readme_says_what_the_reference_model_is_where_the_quickstart_uses_it(reference_info):
    """Its val accuracy and the classes it never predicts (columns of zeros in the model card's confusion
    matrix) are stated in the Quickstart section, read from the model card, not copied by hand."""
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "cp ../shared/models/emonext_atto_fer2013.pt runs/emonext.pt" in section
    assert f"{reference_info['accuracy_percent']['val/center']:.2f} %" in section
    confusion = np.asarray(reference_info["val_confusion_center"])
    never = [label for label, column in zip(reference_info["labels"], confusion.T) if column.sum() == 0]
    assert never, "the model card's reference model predicts every class: update the README's warning"
    named = ", ".join(never[:-1]) + f" or {never[-1]}" if len(never) > 1 else never[0]
    assert f"never predicts {named}" in " ".join(section.split()), named


def test_the_license_matches_pyproject():
    license_text = (REPO / "LICENSE").read_text()
    declared = re.search(r'^license = \{ text = "([^"]+)" \}', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared and license_text.startswith(f"{declared.group(1)} License")


def test_readme_data_and_output_paths_are_gitignored():
    """The README tells users to extract FER2013/ and keep runs/emonext.pt in the checkout; tools write exports/."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    paths = ["FER2013/val/Happy/x.jpg", "runs/emonext.pt", "exports/emonext.onnx", "exports/cache/latency/x"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.stdout.split() == paths
