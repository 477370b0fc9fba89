"""What every command line of the project shares: one-line errors and exit code 2 on bad input."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import Callable, Optional

from .errors import EmoNeXtError
from .progress import show_progress

EXIT_BAD_INPUT = 2
Main = Callable[[Optional[Sequence[str]]], int]


def cli_entry(main: Optional[Main] = None, *, log_level: str = "INFO", catch_value_error: bool = False):
    """Wrap ``main(argv) -> int``: ``error: ...`` on stderr and exit code 2 instead of a traceback.

    Usable bare (``@cli_entry``) or configured (``@cli_entry(log_level="WARNING")``).
    ``EMONEXT_LOGLEVEL`` overrides the log level.
    """
    bad_input: tuple[type[BaseException], ...] = (EmoNeXtError, FileNotFoundError, PermissionError, IsADirectoryError)
    if catch_value_error:
        bad_input += (ValueError,)

    def decorate(fn: Main) -> Main:
        @functools.wraps(fn)
        def wrapper(argv: Optional[Sequence[str]] = None) -> int:
            logging.basicConfig(level=os.environ.get("EMONEXT_LOGLEVEL", log_level), format="%(message)s")
            show_progress()  # long steps show progress on stderr (EMONEXT_PROGRESS=0 hides it)
            try:
                return fn(argv)
            except bad_input as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_BAD_INPUT
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130

        return wrapper

    return decorate(main) if main is not None else decorate
