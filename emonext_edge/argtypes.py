"""``argparse`` types shared by every command line: each value checked before any work, one-line errors.

``type=`` functions raise ``argparse.ArgumentTypeError`` naming what was expected; the parser
turns that into exit code 2. Thread counts are bounded by the machine (:func:`max_threads`):
thousands of threads give no answer for minutes and tens of thousands crash the engine.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

#: threads per engine beyond the machine's logical CPUs that are still accepted (oversubscription tests)
THREADS_PER_CPU = 4


def max_threads() -> int:
    """The largest ``--threads`` / ``threads=`` accepted: ``THREADS_PER_CPU`` x the logical CPUs (at least 4,
    at most 256). One bound for the CLIs and the API (``Runtime(threads=...)``)."""
    return min(256, max(4, THREADS_PER_CPU * (os.cpu_count() or 1)))


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive integer (1 or more)")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected 0 or more")
    return value


def thread_count(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= max_threads():
        raise argparse.ArgumentTypeError(
            f"{value}: expected 1..{max_threads()} threads ({THREADS_PER_CPU} x the {os.cpu_count()} CPUs here)")
    return value


def thread_count_or_default(text: str) -> int:
    """``--threads`` where 0 means the engine's default."""
    return 0 if _int(text) == 0 else thread_count(text)


def port_number(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: expected a TCP port number in 1..65535")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: expected a finite number")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: expected a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: expected a finite number > 0")
    return value


def data_path(text: str) -> str:
    """A file or folder to read data from: refused at once when it is a FIFO, socket or device
    (reading one blocks or never ends); a missing path is left to the reader's own error."""
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return text
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
        raise argparse.ArgumentTypeError(f"{Path(text)} is {kind}; expected a data folder or file")
    return text


def check_args(args: argparse.Namespace, *, error: type[Exception] | None = None,
               parser: argparse.ArgumentParser | None = None, **checks: Callable[[str], Any]) -> argparse.Namespace:
    """After ``parse_args``: every option named in ``checks`` (by its ``dest``) that has a value goes through
    its check (one of the types above; a list: each item). The first failure is ``parser.error`` (exit 2)
    when ``parser`` is given, else ``error`` (default :class:`~emonext_edge.errors.UsageError`: exit 2 through
    ``cli_entry``), one line naming the option. Kept apart from ``add_argument`` so that a CLI's option
    table stays as it is."""
    for dest, check in checks.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            try:
                check(str(item))
            except argparse.ArgumentTypeError as exc:
                message = f"--{dest.replace('_', '-')}: {exc}"
                if parser is not None:
                    parser.error(message)
                if error is None:
                    from .errors import UsageError

                    raise UsageError(message) from None
                raise error(message) from None
    return args
