"""The commit marker: an export that was killed between the renames of its commit is recognisable.

:meth:`export.pipeline.Stage.commit` writes ``.emonext-commit-<pid>-<model>.json`` into the output
directory, listing the final names it is about to rename into place, before the first rename,
and removes it after the last. A marker whose process is gone means those names hold a mix of
the new and the old export: :func:`refuse_interrupted` (called where the Runtime opens a file)
says so instead of a hash mismatch — or, with verification off, instead of loading the new model
under the old record — and :func:`roll_back` (the next export into the folder) removes them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from .errors import ModelFileError
from .fileio import pid_alive

log = logging.getLogger(__name__)

MARKER_PREFIX = ".emonext-commit-"


def marker_path(out_dir: Path, model_name: str, pid: Optional[int] = None) -> Path:
    return out_dir / f"{MARKER_PREFIX}{os.getpid() if pid is None else pid}-{model_name}.json"


def write_marker(out_dir: Path, names: list[str]) -> Path:
    """Record, durably, that ``names`` (final basenames, model file and sidecar included) are being committed."""
    path = marker_path(out_dir, names[-1])
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "names": list(names)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path




def interrupted_commits(out_dir: Path) -> list[tuple[Path, list[str]]]:
    """``(marker, names)`` of the commits into ``out_dir`` whose process ended before finishing them."""
    found: list[tuple[Path, list[str]]] = []
    try:
        markers = sorted(p for p in Path(out_dir).glob(f"{MARKER_PREFIX}*.json"))
    except OSError:
        return found
    for marker in markers:
        pid_text = marker.name[len(MARKER_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue  # a commit in progress right now (it takes milliseconds), or not ours
        try:
            names = json.loads(marker.read_text()).get("names", [])
            names = [Path(str(n)).name for n in names if isinstance(n, str)]
        except (OSError, ValueError, AttributeError):
            names = []
        found.append((marker, names))
    return found


def refuse_interrupted(artifact: Path) -> None:
    """``ModelFileError`` when ``artifact`` (or its sidecar / .bin) was being committed by an export that died."""
    family = {artifact.name, artifact.with_suffix(".json").name, artifact.with_suffix(".bin").name}
    for marker, names in interrupted_commits(artifact.parent):
        if family & set(names) or not names:
            raise ModelFileError(
                f"{artifact}: an export into {artifact.parent} was interrupted while committing "
                f"{', '.join(names) or '(unreadable list)'} (marker {marker.name}); run it again")


def roll_back(out_dir: Path) -> list[Path]:
    """Remove what interrupted commits left at their final names (a mix of new and old files) and their markers."""
    removed = []
    for marker, names in interrupted_commits(out_dir):
        for name in names:
            path = Path(out_dir) / name
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path)
        marker.unlink(missing_ok=True)
        log.warning("%s: rolled back an interrupted commit (%s)", out_dir, ", ".join(names) or marker.name)
    for part in Path(out_dir).glob(f"{MARKER_PREFIX}*.json.part"):  # killed while writing the marker: nothing renamed
        pid_text = part.name[len(MARKER_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            part.unlink(missing_ok=True)
    return removed
