"""Long steps show progress on stderr: redrawn in place on a terminal, plain lines (no ``\\r``)
otherwise, nothing for short steps; the fidelity gate and NNCF report through it."""

from __future__ import annotations

import io
import logging
import sys

import numpy as np
import pytest

from emonext_edge import progress


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def shown(monkeypatch):
    """show_progress() into a StringIO (or a fake terminal); restores the logger afterwards."""
    logger = logging.getLogger(progress.LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    monkeypatch.setenv("EMONEXT_PROGRESS", "1")

    def show(stream):
        progress.show_progress(stream)
        return stream

    yield show
    logger.handlers[:], logger.level, logger.propagate = saved


def _run(clock, seconds_per_item, total, what="gate m.onnx"):
    with progress.Progress(what, total, clock=clock, timer=False) as bar:
        for i in range(total):
            clock.now += seconds_per_item
            bar.update(i + 1)


def test_short_steps_stay_quiet(shown):
    out = shown(io.StringIO())
    _run(_Clock(), 0.001, 1000)
    assert out.getvalue() == ""


def test_plain_output_has_lines_every_few_seconds_and_no_carriage_return(shown, monkeypatch):
    out = shown(io.StringIO())
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)  # the handler's throttle uses the same clock
    _run(clock, 0.06, 1000)  # 60 s
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 8 <= len(lines) <= 13, lines  # one every 5 s after the first 5 s, plus the final line
    assert lines[0].startswith("gate m.onnx: ") and "/1000 images" in lines[0] and "left" in lines[0]
    assert lines[-1] == "gate m.onnx: 1000/1000 images in 60 s"


def test_terminal_output_is_redrawn_in_place_and_ends_with_a_newline(shown):
    out = shown(_Tty())
    _run(_Clock(), 0.06, 100)
    text = out.getvalue()
    assert text.count("\r\033[K") >= 3 and text.endswith("100/100 images in 6 s\n") and text.count("\n") == 1


def test_progress_can_be_hidden(shown, monkeypatch):
    monkeypatch.setenv("EMONEXT_PROGRESS", "0")
    out = shown(io.StringIO())
    _run(_Clock(), 0.06, 1000)
    assert out.getvalue() == ""


def test_an_opaque_step_says_it_still_runs(shown):
    import time

    out = shown(io.StringIO())
    with progress.step("exporting", after=0.05):
        time.sleep(1.3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("exporting: running") and lines[-1].startswith("exporting: done in")


def test_the_fidelity_gate_reports_progress(shown, monkeypatch):
    from export.fidelity import fidelity_gate

    out = shown(io.StringIO())
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    images = np.zeros((64, 3, 224, 224), np.float32)

    def slow(batch):
        clock.now += 4.0 * len(batch) / 8  # 4 s per 8 images
        return np.tile(np.arange(7, dtype=np.float32), (len(batch), 1))

    report = fidelity_gate(slow, slow, images, batch_size=8, progress="gate m.xml")
    assert report.passed
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("gate m.xml: ") for line in lines) and lines[-1].endswith("64/64 images in 64 s")


@pytest.mark.slow  # importing NNCF takes 5-20 s
def test_nncf_log_lines_go_to_stderr_and_info_only_with_verbose():
    """In a fresh interpreter (NNCF not imported yet, as in the exporters): inside the wrapper NNCF's
    handler and bars write to stderr, its INFO lines only at INFO (-v); afterwards all is restored."""
    import subprocess
    from pathlib import Path

    pytest.importorskip("nncf")
    script = """
import logging, sys
logging.basicConfig(level=sys.argv[1], format="%(message)s")
from export.nncf_output import nncf_output_on_stderr
with nncf_output_on_stderr("NNCF"):
    nncf_log = logging.getLogger("nncf")
    nncf_log.info("detail line")
    nncf_log.warning("warning line")
    print("a rich bar")
print("result")
nncf_log.info("after the wrapper")
"""
    repo = Path(__file__).resolve().parents[1]
    run = {level: subprocess.run([sys.executable, "-c", script, level], cwd=repo, capture_output=True, text=True,
                                 timeout=300, check=True) for level in ("WARNING", "INFO")}
    quiet, verbose = run["WARNING"], run["INFO"]
    assert quiet.stdout.splitlines() == ["result", "INFO:nncf:after the wrapper"], quiet.stdout  # restored
    assert "warning line" in quiet.stderr and "a rich bar" in quiet.stderr and "detail line" not in quiet.stderr
    assert "detail line" in verbose.stderr and "detail line" not in verbose.stdout


def test_accuracy_progress_writes_no_carriage_return_into_logs(capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("accuracy_bench", Path(__file__).parents[1] / "benchmarks" / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    clock = _Clock()
    monkeypatch.setattr(accuracy.time, "perf_counter", clock)
    bar = accuracy._Progress(100)
    for done in range(1, 101):
        clock.now += 1.0
        bar.update(done)
    bar.close("100 images")
    err = capsys.readouterr().err
    assert "\r" not in err and 8 <= len(err.splitlines()) <= 12 and err.endswith("100 images\n"), err


def test_without_a_command_line_progress_reaches_the_application_logging_every_few_seconds(caplog):
    """Library use: no handler of ours; the records propagate at most every 5 s."""
    logger = logging.getLogger(progress.LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers[:], logger.propagate = [], True
    logger.setLevel(logging.NOTSET)
    try:
        with caplog.at_level(logging.INFO, logger=progress.LOGGER):
            _run(_Clock(), 0.06, 1000)  # 60 s
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    lines = [r.getMessage() for r in caplog.records if r.name == progress.LOGGER]
    assert 8 <= len(lines) <= 13 and lines[-1] == "gate m.onnx: 1000/1000 images in 60 s", lines
