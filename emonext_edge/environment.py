"""Environment failures, named: disk full, quota, file-size limit, read-only file system (exit code 4).

Exit code 1 is the fidelity gate's and 2 bad input's; a write that fails because of the
machine, not the input, is neither. :func:`environment_failure` reads an ``OSError``'s errno;
:func:`diagnose` looks at a folder after any failure (the C++ writers of ONNX and OpenVINO
raise ``RuntimeError`` without an errno and remove their partial file): too little free
space, or a low ``RLIMIT_FSIZE``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional

from .errors import EmoNeXtError

EXIT_ENVIRONMENT = 4

REASONS = {
    errno.ENOSPC: "disk full (no space left on the device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file-size limit reached (ulimit -f / RLIMIT_FSIZE, or the file system's maximum)",
    errno.EROFS: "read-only file system",
}
#: a failed write with less free space (or a lower file-size limit) than this is put down to the environment
LOW_SPACE = 64 << 20


class EnvironmentFailure(EmoNeXtError):
    """The machine refused a write (disk full, quota, file-size limit, read-only): exit code 4."""


def environment_failure(exc: BaseException) -> Optional[str]:
    """The reason, when ``exc`` (or an exception it was raised from) is an OSError of the environment."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in REASONS:
            where = f"{exc.filename}: " if exc.filename else ""
            return f"{where}{REASONS[exc.errno]}"
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def diagnose(folder: str | os.PathLike, name: Optional[str | os.PathLike] = None) -> Optional[str]:
    """Why writing into ``folder`` may just have failed, or ``None``; the message names ``name`` (default: the folder).

    The C++ writers raise without an errno and remove their partial file, so this looks at the
    margins instead: less free space than ``max(LOW_SPACE, 2 x the largest file in the folder)``,
    or a file-size limit (``RLIMIT_FSIZE``) below that. The caller adds the writer's own message.
    """
    path = Path(folder)
    shown = Path(name) if name is not None else path
    largest = 0
    try:
        for p in (path.rglob("*") if path.is_dir() else []):
            if p.is_file():
                largest = max(largest, p.stat().st_size)
    except OSError:
        pass
    margin = max(LOW_SPACE, 2 * largest)
    try:
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize
        if free < margin:
            return f"{shown}: {REASONS[errno.ENOSPC]} ({free} bytes free)"
    except OSError:
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit != resource.RLIM_INFINITY and limit < margin:
        return f"{shown}: {REASONS[errno.EFBIG]} ({limit} bytes)"
    return None
