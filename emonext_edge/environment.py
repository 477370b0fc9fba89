"""Environment failures, named: disk full, quota, file-size limit, read-only file system (exit code 4).

Exit code 1 is the fidelity gate's and 2 bad input's; a write that fails because of the
machine, not the input, is neither. :func:`environment_failure` reads an ``OSError``'s errno;
:func:`diagnose` looks at a folder after any failure (the C++ writers of ONNX and OpenVINO
raise ``RuntimeError`` without an errno): no free space left, or a file at the process's
``RLIMIT_FSIZE``.
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
#: below this many free bytes a failed write is put down to a full disk
LOW_SPACE = 1 << 20


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


def diagnose(folder: str | os.PathLike) -> Optional[str]:
    """Why writing into ``folder`` may just have failed, or ``None``: free space, or a file at ``RLIMIT_FSIZE``."""
    path = Path(folder)
    try:
        st = os.statvfs(path)
        if st.f_bavail * st.f_frsize < LOW_SPACE:
            return f"{path}: {REASONS[errno.ENOSPC]}"
    except OSError:
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        if any(p.stat().st_size >= limit for p in files):
            return f"{path}: {REASONS[errno.EFBIG]} ({limit} bytes)"
    except OSError:
        pass
    return None
