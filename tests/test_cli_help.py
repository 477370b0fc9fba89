"""Every command line's ``--help`` explains every option: each argparse action (subcommands
included) has a help text. The parsers are taken from the real entry points, run as
``python -m ...`` / ``python script.py`` would run them."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

MODULES = ["emonext_edge", "export.onnx", "export.openvino", "export.tensorrt", "export.deepstream",
           "export.triton", "calibration"]
SCRIPTS = ["benchmarks/accuracy.py", "benchmarks/latency.py", "benchmarks/video.py", "benchmarks/served.py",
           "benchmarks/deepstream_preprocess.py", "scripts/make_demo_clip.py"]


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(target: str, monkeypatch) -> argparse.ArgumentParser:
    """The first parser the entry point parses its arguments with."""

    def capture(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    monkeypatch.setattr(sys, "argv", [target, "--help"])
    try:
        if target.endswith(".py"):
            runpy.run_path(str(REPO / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except _Parsed as parsed:
        return parsed.parser
    pytest.fail(f"{target} parsed no arguments")


def _undocumented(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name) and name in helps:
                    missing.append(f"{prefix}{name} (subcommand)")
                missing += _undocumented(sub, f"{prefix}{name} ")
            continue
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if not (action.help or "").strip():
            missing.append(prefix + ("/".join(action.option_strings) or action.dest))
    return missing


@pytest.mark.parametrize("target", MODULES + SCRIPTS)
def test_every_option_has_help(target, monkeypatch):
    if target.endswith(".py") and not (REPO / target).is_file():
        pytest.skip(f"{target} is not in this checkout")
    parser = _parser_of(target, monkeypatch)
    missing = _undocumented(parser)
    assert not missing, f"{target} --help: options without help text: {', '.join(missing)}"
