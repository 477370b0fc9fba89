"""Progress of long steps, shown by the command lines on stderr.

Library and tool code report progress as log records on the ``emonext.progress`` logger (the
library never prints): :class:`Progress` for counted work (a gate over 1,000 images) and
:func:`step` for opaque work (an ONNX export, an NNCF run) that only says "still running".
A command line shows them by calling :func:`show_progress` once (``cli_entry`` does): on a
terminal one line redrawn in place, otherwise (pipes, log files) plain lines at most every
``PLAIN_INTERVAL`` seconds and never a ``\\r``. Short steps stay quiet: nothing is shown before
a step has run ``after`` seconds. ``EMONEXT_PROGRESS=0`` hides progress.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional, TextIO, TypeVar

LOGGER = "emonext.progress"
#: seconds between two plain (non-terminal) progress lines of the same step
PLAIN_INTERVAL = 5.0
#: a step shows nothing before it has run this long
QUIET_FOR = 5.0

_log = logging.getLogger(LOGGER)
F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["LOGGER", "Progress", "show_progress", "step", "stepped"]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Progress:
    """Progress of one step: ``update(done)`` as work completes, ``close()`` at the end.

    ``total=None``: an opaque step, reported as "running, N s". Once the step has run ``after``
    seconds, a record at most every ``interval`` seconds, from ``update`` and from a timer thread
    (so a slow batch still shows the step is alive), and a final record when something was shown.
    Usable as a context manager.
    """

    def __init__(self, what: str, total: Optional[int] = None, unit: str = "images", *, after: float = QUIET_FOR,
                 interval: Optional[float] = None, clock: Optional[Callable[[], float]] = None,
                 timer: bool = True) -> None:
        self.what, self.unit = what, unit
        self.total = None if total is None else max(0, int(total))
        if interval is None:  # redrawn twice a second by a command line; every 5 s into someone else's logging
            interval = 0.5 if any(isinstance(h, _ProgressHandler) for h in _log.handlers) else PLAIN_INTERVAL
        self.after, self.interval = after, interval
        self.clock = clock or (lambda: time.monotonic())
        self.start = self.clock()
        self.last: Optional[float] = None
        self.done = 0
        self.shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if timer:
            self._thread = threading.Thread(target=self._beat, name=f"progress: {what}", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self._emit()

    def _emit(self) -> None:
        with self._lock:
            now = self.clock()
            elapsed = now - self.start
            if self._stop.is_set() or elapsed < self.after or (self.last is not None and now - self.last < self.interval):
                return
            self.last = now
            if self.total is None:
                text = f"{self.what}: running, {_duration(elapsed)}"
            else:
                done = self.done
                text = f"{self.what}: {done}/{self.total} {self.unit}, {_duration(elapsed)} elapsed"
                rate = done / elapsed if elapsed > 0 else 0.0
                if rate > 0:
                    text += f", {rate:.1f}/s, ~{_duration((self.total - done) / rate)} left"
            self.shown = True
            _log.info(text, extra={"progress_key": self.what, "progress_final": False})

    def update(self, done: int) -> None:
        self.done = done
        self._emit()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if not self.shown:
                return
            self.shown = False
            elapsed = _duration(self.clock() - self.start)
            text = (f"{self.what}: done in {elapsed}" if self.total is None
                    else f"{self.what}: {self.done}/{self.total} {self.unit} in {elapsed}")
            _log.info(text, extra={"progress_key": self.what, "progress_final": True})

    def __enter__(self) -> Progress:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def step(what: str, *, after: float = QUIET_FOR) -> Iterator[None]:
    """An opaque step: once it has run ``after`` seconds, "<what>: running, N s" every few
    seconds until it ends, then one "done in" record."""
    with Progress(what, None, after=after):
        yield


def stepped(what: str) -> Callable[[F], F]:
    """Decorator: the function is one opaque :func:`step` named ``what``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with step(what):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class _ProgressHandler(logging.Handler):
    """Renders progress records: redrawn in place on a terminal, throttled plain lines otherwise."""

    def __init__(self, stream: Optional[TextIO] = None, plain_interval: float = PLAIN_INTERVAL) -> None:
        super().__init__(logging.INFO)
        self._stream = stream
        self.plain_interval = plain_interval
        self._open_line = False  # a terminal line drawn without its newline yet
        self._last: dict[str, float] = {}

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr  # the current stderr (tests swap it)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.stream
            text = record.getMessage()
            final = bool(getattr(record, "progress_final", True))
            key = str(getattr(record, "progress_key", ""))
            tty = bool(getattr(stream, "isatty", lambda: False)())
            if tty:
                stream.write("\r\033[K" + text + ("\n" if final else ""))
                self._open_line = not final
            else:
                now = time.monotonic()
                if not final and now - self._last.get(key, -1e9) < self.plain_interval:
                    return
                self._last[key] = now
                stream.write(text + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - progress must never end a run
            self.handleError(record)

    def end_line(self) -> None:
        """Finish a terminal line left open, before something else is written to stderr."""
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False


def show_progress(stream: Optional[TextIO] = None) -> None:
    """Show progress records on ``stream`` (default: the current ``sys.stderr``); idempotent.
    ``EMONEXT_PROGRESS=0`` hides them instead."""
    for handler in list(_log.handlers):
        if isinstance(handler, _ProgressHandler):
            _log.removeHandler(handler)
    _log.propagate = False
    if os.environ.get("EMONEXT_PROGRESS", "1").strip().lower() in ("0", "false", "no", "off"):
        _log.setLevel(logging.WARNING)
        return
    _log.setLevel(logging.INFO)
    _log.addHandler(_ProgressHandler(stream))
