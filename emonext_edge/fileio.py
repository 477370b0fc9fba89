"""Small file helpers shared by the library, exporters and tools: hashing, atomic writes, output dirs.

Temporary files and folders are named ``.emonext-tmp-<pid>-...`` inside the directory of
the file they become, so a killed run leaves nothing outside it and the next run into the
same directory removes what a dead process left (:func:`clean_stale_temps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

#: prefix of every temporary file/folder this project creates beside its outputs
TEMP_PREFIX = ".emonext-tmp-"
_TEMP_RE = re.compile(r"^\.emonext-tmp-(\d+)-")
#: 0.2 temporaries (``.<name>.XXXX.tmp`` files, ``.<stem>.XXXX`` IR folders) count as stale after this long
LEGACY_STALE_SECONDS = 600


def special_file_kind(path: str | os.PathLike, missing: str = "no such file") -> Optional[str]:
    """What ``path`` is when it is not a regular file: ``missing`` when it does not exist, "a
    directory", "a FIFO (named pipe)", "a character device", "a block device", "a socket", "a
    symbolic link loop (...)", "a broken symbolic link (...)"; ``None`` for a regular file.

    Only ``stat`` is called: a FIFO is never opened (that would block).
    """
    import errno
    import stat

    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (too many levels of symbolic links)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "a broken symbolic link (its target does not exist)" if p.is_symlink() else missing
        return f"not readable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    On any exception the temporary file is removed, so no partial artifact is ever left behind.
    """
    final = Path(final)
    if not final.parent.exists():
        raise FileNotFoundError(f"{final}: output directory {final.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; artifacts get the usual permissions
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Return the parent directory of ``path`` if a file can be created there, else raise ``PermissionError``."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{path}: output directory {parent} is not writable")
    return parent


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts; one owned by another user too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


_LEGACY_IR_DIR = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}$")


def _legacy_ir_dir(entry: Path) -> bool:
    """A 0.2 ``save_ir`` folder: ``.<stem>.XXXXXXXX`` holding ``<stem>.xml``/``.bin`` (or nothing yet)."""
    match = _LEGACY_IR_DIR.match(entry.name)
    if not match or not entry.is_dir() or entry.is_symlink():
        return False
    stem = match.group(1)
    return all(child.name.startswith(stem + ".") for child in entry.iterdir())


def clean_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove temporaries that killed runs left in ``directory``; return what was removed.

    ``.emonext-tmp-<pid>-*`` entries whose process is gone are removed at once; 0.2-style
    ``.*.tmp`` files and ``.<stem>.XXXXXXXX`` IR folders older than :data:`LEGACY_STALE_SECONDS` too. Entries of live processes
    (another export running into the same directory) are left alone.
    """
    root = Path(directory)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        name = entry.name
        match = _TEMP_RE.match(name)
        if match:
            stale = not pid_alive(int(match.group(1)))
        elif (name.startswith(".") and name.endswith(".tmp")) or _legacy_ir_dir(entry):
            try:
                stale = now - entry.lstat().st_mtime > LEGACY_STALE_SECONDS
            except OSError:
                continue
        else:
            continue
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
        log.info("removed %s, left by an interrupted earlier run", entry)
    return removed


def prepare_output_dir(directory: str | os.PathLike, option: str = "--output", given: str | os.PathLike | None = None) -> Path:
    """Create ``directory`` (with parents) and prove a file can be created in it; return it.

    Raises ``UsageError`` naming ``option`` and the path when a file sits where a directory
    should be, or the directory cannot be created or written (checked by creating and
    removing a probe file, so read-only mounts and pseudo file systems such as /proc fail here,
    before any heavy work). ``given``: the value the user passed (a file inside ``directory``),
    named in the message instead of the directory.
    """
    from .errors import UsageError

    path = Path(directory)
    what = f"{option} {given if given is not None else path}"
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"{what}: {parent} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what}: cannot create the output directory {path} ({exc.strerror or exc})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{what}: output directory {path} is not writable ({exc.strerror or exc})") from None
    return path
