"""NNCF's output on stderr: its progress bars and log lines never mix into a command's stdout.

NNCF draws its bars with ``rich`` on the current ``sys.stdout`` and logs through a handler
bound to ``sys.stdout`` when it was imported; its INFO lines ("Not adding activation input
quantizer ...") are details. :func:`nncf_on_stderr` wraps a function that runs NNCF: for the
call, the bars and the handler write to stderr, INFO lines show only when this project's
logging is at INFO (``-v``), and a progress line every few seconds says the step still runs
(:func:`emonext_edge.progress.step`). Everything is restored afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

from emonext_edge.progress import step

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


@contextlib.contextmanager
def nncf_output_on_stderr(what: str) -> Iterator[None]:
    import nncf  # noqa: F401  - importing NNCF creates its logger and its stdout handler: change them after

    nncf_log = logging.getLogger("nncf")
    saved_level = nncf_log.level
    saved = [(h, h.stream, h.level) for h in nncf_log.handlers if isinstance(h, logging.StreamHandler)
             and not isinstance(h, logging.FileHandler)]
    level = logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING
    nncf_log.setLevel(level)
    for handler, _, _ in saved:
        handler.setStream(sys.stderr)
        handler.setLevel(level)
    try:
        with contextlib.redirect_stdout(sys.stderr), step(what):
            yield
    finally:
        nncf_log.setLevel(saved_level)
        for handler, stream, handler_level in saved:
            handler.setStream(stream)
            handler.setLevel(handler_level)


def nncf_on_stderr(what: str) -> Callable[[F], F]:
    """Decorator: run the function under :func:`nncf_output_on_stderr`."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with nncf_output_on_stderr(what):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
