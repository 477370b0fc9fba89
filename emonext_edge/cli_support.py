"""What every command line of the project shares: one-line errors and exit code 2 on bad input."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import Callable, Optional
from typing import Sequence as _Sequence  # subscripted at run time: typing's, for Python 3.8

from .environment import EXIT_ENVIRONMENT, EnvironmentFailure, environment_failure
from .errors import EmoNeXtError
from .progress import show_progress

EXIT_BAD_INPUT = 2
Main = Callable[[Optional[_Sequence[str]]], int]


def one_line(exc: BaseException) -> str:
    """``str(exc)`` on one line: a third-party message (protobuf's text parser, OpenVINO) may span several."""
    return " ".join(str(exc).split())


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
                code = fn(argv)
                sys.stdout.flush()  # a closed or full stdout shows here, not in the interpreter's exit
                return code
            except BrokenPipeError:
                quiet_stdout()
                return EXIT_BROKEN_PIPE
            except EnvironmentFailure as exc:
                print(f"error: {one_line(exc)}", file=sys.stderr)
                return EXIT_ENVIRONMENT
            except bad_input as exc:
                print(f"error: {one_line(exc)}", file=sys.stderr)
                return EXIT_BAD_INPUT
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130
            except OSError as exc:  # disk full, file-size limit, ...: named, exit 4; anything else stays a bug
                if exc.filename is None and _stdout_fails(exc.errno):
                    exc.filename = "stdout"
                reason = environment_failure(exc)
                if reason is None:
                    raise
                print(f"error: {reason}", file=sys.stderr)
                return EXIT_ENVIRONMENT

        return wrapper

    return decorate(main) if main is not None else decorate


#: stdout closed by the reader (``| head -1``): quiet, the shell's code for a SIGPIPE death
EXIT_BROKEN_PIPE = 141


def _stdout_fails(errno_: Optional[int]) -> bool:
    """Whether stdout is what failed with ``errno_``: ``/dev/full``, or a file on a full file system;
    if so, stdout is pointed at /dev/null so that the interpreter's final flush stays quiet."""
    import errno
    import stat

    try:
        fd = sys.stdout.fileno()
        st = os.fstat(fd)
        full = (stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 7)) or (
            errno_ in (errno.ENOSPC, errno.EDQUOT) and stat.S_ISREG(st.st_mode) and os.fstatvfs(fd).f_bavail == 0)
    except (OSError, ValueError, AttributeError):
        return False
    if full:
        quiet_stdout()
    return bool(full)


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not report the broken pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
