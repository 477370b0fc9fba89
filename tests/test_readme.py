"""The README stays true: CI runs exactly the README's install and test commands."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if re.match(r"\s*(pip|python) ", line)]


def test_ci_runs_the_readme_commands():
    ci = _commands((REPO / ".ci" / "run").read_text())
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"## (Install|Test)\n.*?```bash\n(.*?)```", readme, flags=re.DOTALL)
    documented = [c for _, block in blocks for c in _commands(block)]
    assert ci, "no commands found in .ci/run"
    assert ci == documented, f"CI runs {ci} but the README's Install/Test blocks say {documented}"
