"""Data sources for calibration and evaluation: Kaggle CSV, ImageFolder tree, unlabeled folder, video.

Every source is read into a :class:`SourceData`: a list of items (image paths, or uint8
arrays for CSV rows and video face crops), their labels in the model's logit order
(``IMAGEFOLDER_LABELS``; ``-1`` = unlabeled) and a report of what was skipped. Labels are
mapped **by name**: CSV codes through :func:`emonext_edge.labels.csv_code_to_index`, class
folders (any capitalization) through :func:`emonext_edge.labels.canonical_label`.

Bad input policy (tested):

* missing path, missing split folder, unknown class folder, empty CSV/video -> :class:`DataError`
  naming the file/folder;
* a CSV row whose ``pixels`` field does not hold 48*48 values -> :class:`DataError` naming the
  row (line number): a malformed CSV is the wrong file, not noise to skip;
* an unreadable image file -> skipped and counted (``SourceData.skipped`` / the build report),
  never silently;
* asking for more items than the source holds -> :class:`DataError`.

Preprocessing is done only by :mod:`emonext_edge.preprocess`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from emonext_edge.errors import EmoNeXtError, ImageError
from emonext_edge.labels import IMAGEFOLDER_LABELS, canonical_label, csv_code_to_index
from emonext_edge.opencv import import_cv2

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
CSV_SIDE = 48

#: split name -> values of the Kaggle CSV ``Usage`` column
CSV_USAGE = {
    "train": ("Training",),
    "val": ("PublicTest",),
    "test": ("PrivateTest",),
}
#: split name -> folder names accepted in an ImageFolder tree (first existing wins)
SPLIT_FOLDERS = {
    "train": ("train", "Train", "training", "Training"),
    "val": ("val", "Val", "valid", "validation", "PublicTest"),
    "test": ("test", "Test", "PrivateTest"),
}

Item = Union[Path, np.ndarray]


class DataError(EmoNeXtError, ValueError):
    """A calibration/evaluation data source is missing, malformed, or too small for the request."""


@dataclass
class SourceData:
    """Items of one data source, their labels (``-1``: unlabeled) and what was skipped."""

    source: str
    kind: str  # "csv" | "imagefolder" | "folder" | "video"
    split: Optional[str]
    items: list[Item]
    labels: np.ndarray  # int64 [len(items)], IMAGEFOLDER_LABELS order, -1 = unlabeled
    names: list[str]  # a readable name per item (path, "file.csv:line 12", "video.mp4:frame 30")
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    label_names: tuple[str, ...] = IMAGEFOLDER_LABELS

    @property
    def labeled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def class_counts(self, indices: Optional[Sequence[int]] = None) -> dict[str, int]:
        labels = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        if not self.labeled:
            return {"unlabeled": len(labels)}
        return {name: int((labels == i).sum()) for i, name in enumerate(self.label_names)}

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "split": self.split,
            "items": len(self.items),
            "class_counts": self.class_counts(),
            "skipped": len(self.skipped),
        }


def _name_of(item: Item, fallback: str) -> str:
    return str(item) if isinstance(item, Path) else fallback


# --------------------------------------------------------------------------- source detection


def detect_kind(path: str | os.PathLike, split: Optional[str] = "train") -> str:
    """``"csv"``, ``"video"``, ``"imagefolder"`` or ``"folder"`` for ``path``; ``DataError`` if it does not exist."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder (expected a FER2013 CSV, an ImageFolder tree, "
                        "a folder of face images or a video)")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix in VIDEO_SUFFIXES:
            return "video"
        raise DataError(f"{p}: unsupported data file {suffix or '(no suffix)'!r}; expected .csv, a video "
                        f"({', '.join(VIDEO_SUFFIXES)}) or a folder")
    if _split_dir(p, split) is not None or _class_dirs_present(p) or _split_like_dirs(p):
        return "imagefolder"
    return "folder"


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _class_dirs_present(folder: Path) -> bool:
    for d in _subdirs(folder):
        try:
            canonical_label(d.name)
            return True
        except KeyError:
            continue
    return False


def _split_dir(root: Path, split: Optional[str]) -> Optional[Path]:
    if split is None:
        return None
    for name in SPLIT_FOLDERS.get(split, (split,)):
        if (root / name).is_dir():
            return root / name
    # any capitalization of the split name itself
    for d in _subdirs(root):
        if d.name.casefold() == split.casefold():
            return d
    return None


def _split_like_dirs(root: Path) -> list[str]:
    known = {n.casefold() for names in SPLIT_FOLDERS.values() for n in names}
    return [d.name for d in _subdirs(root) if d.name.casefold() in known]


# --------------------------------------------------------------------------- readers


def read_imagefolder(root: str | os.PathLike, split: Optional[str] = "train") -> SourceData:
    """A FER2013 ImageFolder tree: ``root/<split>/<Class>/*.jpg`` or ``root/<Class>/*.jpg`` directly."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    folder = _split_dir(root, split)
    if folder is None:
        if not _class_dirs_present(root):
            splits = _split_like_dirs(root)
            hint = f" (it has {splits})" if splits else ""
            raise DataError(f"{root}: no {split!r} split folder{hint} and no emotion class folders "
                            f"({', '.join(IMAGEFOLDER_LABELS)})")
        folder = root
    items: list[Item] = []
    labels: list[int] = []
    seen: dict[str, Path] = {}
    for d in _subdirs(folder):
        try:
            label = canonical_label(d.name)
        except KeyError:
            raise DataError(f"{d}: unknown class folder {d.name!r}; expected one of "
                            f"{list(IMAGEFOLDER_LABELS)} (any capitalization)") from None
        if label in seen:
            raise DataError(f"{d}: class {label} appears twice (also {seen[label]})")
        seen[label] = d
        index = IMAGEFOLDER_LABELS.index(label)
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        items += files
        labels += [index] * len(files)
    if not seen:
        raise DataError(f"{folder}: no class folders ({', '.join(IMAGEFOLDER_LABELS)}) found")
    missing = [name for name in IMAGEFOLDER_LABELS if name not in seen]
    if missing:
        log.warning("%s: no class folder for %s", folder, ", ".join(missing))
    if not items:
        raise DataError(f"{folder}: the class folders hold no image files ({', '.join(IMAGE_SUFFIXES)})")
    return SourceData(str(root), "imagefolder", split, items, np.array(labels, dtype=np.int64),
                      [str(i) for i in items])


def read_folder(root: str | os.PathLike) -> SourceData:
    """Any folder of face images (searched recursively), no labels."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return SourceData(str(root), "folder", None, list(files), np.full(len(files), -1, dtype=np.int64),
                      [str(f) for f in files])


def read_csv(path: str | os.PathLike, split: Optional[str] = "train") -> SourceData:
    """The Kaggle ``fer2013.csv`` (``emotion,pixels[,Usage]``); rows of ``split`` (all rows without a Usage column).

    Items are uint8 48x48 arrays; labels are mapped from CSV codes to the model's order by name.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file")
    usage = None
    if split is not None:
        usage = CSV_USAGE.get(split, (split,))
    items: list[Item] = []
    labels: list[int] = []
    names: list[str] = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty CSV file")
        columns = [h.strip().casefold() for h in header]
        if "emotion" not in columns or "pixels" not in columns:
            raise DataError(f"{path}: line 1: expected a header with 'emotion' and 'pixels' columns "
                            f"(Kaggle fer2013.csv), got {header}")
        c_emotion, c_pixels = columns.index("emotion"), columns.index("pixels")
        c_usage = columns.index("usage") if "usage" in columns else None
        usages_seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            where = f"{path}: line {line}"
            if len(row) != len(header):
                raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}")
            if c_usage is not None:
                usages_seen.add(row[c_usage].strip())
                if usage is not None and row[c_usage].strip() not in usage:
                    continue
            try:
                label = csv_code_to_index(int(row[c_emotion]))
            except (ValueError, KeyError) as exc:
                raise DataError(f"{where}: bad emotion code {row[c_emotion]!r}: {exc}") from None
            values = row[c_pixels].split()
            if len(values) != CSV_SIDE * CSV_SIDE:
                raise DataError(f"{where}: 'pixels' holds {len(values)} values, expected "
                                f"{CSV_SIDE * CSV_SIDE} ({CSV_SIDE}x{CSV_SIDE} gray)")
            try:
                pixels = np.array(values, dtype=np.int64)
            except ValueError:
                raise DataError(f"{where}: 'pixels' holds non-integer values") from None
            if pixels.min() < 0 or pixels.max() > 255:
                raise DataError(f"{where}: pixel values outside 0..255")
            items.append(pixels.astype(np.uint8).reshape(CSV_SIDE, CSV_SIDE))
            labels.append(label)
            names.append(f"{path.name}:line {line}")
    if not items:
        detail = f" for split {split!r} (Usage values present: {sorted(usages_seen)})" if c_usage is not None else ""
        raise DataError(f"{path}: no data rows{detail}")
    return SourceData(str(path), "csv", split if c_usage is not None else None, items,
                      np.array(labels, dtype=np.int64), names)


def _detect_faces() -> tuple[Callable[..., Any], Callable[..., Any]]:
    try:
        from emonext_edge.faces import crop_face, detect_faces
    except ImportError as exc:  # pragma: no cover - depends on the runtime's face module
        from emonext_edge.errors import BackendUnavailableError

        raise BackendUnavailableError(f"video sources need emonext_edge.faces (face detection): {exc}") from None
    return detect_faces, crop_face


def read_video(path: str | os.PathLike, frames: int) -> SourceData:
    """Sample ``frames`` frames evenly over the video; keep the largest detected face of each.

    Items are the face crops (uint8 BGR). Frames without a face are counted in ``skipped``.
    """
    cv2 = import_cv2()  # one line naming the fix when OpenCV is missing

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such video file")
    if frames < 1:
        raise DataError(f"{path}: number of frames to sample must be >= 1, got {frames}")
    detect_faces, crop_face = _detect_faces()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: not a readable video (OpenCV could not open it)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if total <= 0:  # container without a frame count: count by decoding
            while cap.grab():
                total += 1
            cap.release()
            cap = cv2.VideoCapture(str(path))
        if total <= 0:
            raise DataError(f"{path}: the video has no frames")
        wanted = sorted(set(np.floor(np.linspace(0, total - 1, min(frames, total)) + 0.5).astype(int).tolist()))
        wanted_set = set(wanted)
        items: list[Item] = []
        names: list[str] = []
        skipped: list[tuple[str, str]] = []
        index = 0
        decoded = 0
        while index <= wanted[-1] and cap.grab():
            if index in wanted_set:
                ok, frame = cap.retrieve()
                name = f"{path.name}:frame {index}"
                if not ok or frame is None:
                    skipped.append((name, "frame could not be decoded"))
                else:
                    decoded += 1
                    boxes = detect_faces(frame)
                    if not boxes:
                        skipped.append((name, "no face detected"))
                    else:
                        box = max(boxes, key=lambda b: int(b[2]) * int(b[3]))
                        items.append(np.ascontiguousarray(crop_face(frame, box)))
                        names.append(name)
            index += 1
    finally:
        cap.release()
    if decoded == 0:
        raise DataError(f"{path}: the video has no decodable frames")
    if skipped:
        log.info("%s: %d of %d sampled frames skipped (%s)", path, len(skipped), len(wanted), skipped[0][1])
    if not items:
        raise DataError(f"{path}: no face detected in any of the {len(wanted)} sampled frames")
    return SourceData(str(path), "video", None, items, np.full(len(items), -1, dtype=np.int64), names, skipped)


def read_source(path: str | os.PathLike, split: Optional[str] = "train", *, frames: int = 512,
                kind: Optional[str] = None) -> SourceData:
    """Read any supported source; ``kind`` overrides detection; ``frames`` only matters for videos."""
    kind = kind or detect_kind(path, split)
    if kind == "csv":
        return read_csv(path, split)
    if kind == "imagefolder":
        return read_imagefolder(path, split)
    if kind == "folder":
        return read_folder(path)
    if kind == "video":
        return read_video(path, frames)
    raise DataError(f"{path}: unknown source kind {kind!r}; expected csv, imagefolder, folder or video")


# --------------------------------------------------------------------------- selection


def balanced_order(labels: np.ndarray, seed: int = 0) -> list[int]:
    """All indices in a deterministic, class-balanced order: classes interleaved round-robin.

    Within each class the order is a permutation seeded by ``(seed, class)``, so the picks of
    one class do not depend on the others. Any prefix of the result is as class-balanced as
    the data allows (small classes are exhausted first, the rest share the remainder).
    Unlabeled data (all ``-1``) is one class: a seeded permutation.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = sorted(set(labels.tolist()))
    pools = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, c + 1])
        pools.append(members[rng.permutation(len(members))].tolist())
    order: list[int] = []
    depth = 0
    while len(order) < len(labels):
        for pool in pools:
            if depth < len(pool):
                order.append(pool[depth])
        depth += 1
    return order


def select_balanced(labels: np.ndarray, num: int, seed: int = 0, *, where: str = "data") -> list[int]:
    """``num`` indices chosen deterministically and class-balanced (see :func:`balanced_order`)."""
    if num < 1:
        raise DataError(f"{where}: number of items must be >= 1, got {num}")
    if num > len(labels):
        raise DataError(f"{where}: asked for {num} items but the source holds only {len(labels)}")
    return balanced_order(labels, seed)[:num]


def take_balanced(
    data: SourceData,
    num: int,
    load: Callable[[Item, str], np.ndarray],
    seed: int = 0,
) -> tuple[list[int], list[np.ndarray]]:
    """Walk :func:`balanced_order` loading items until ``num`` load successfully.

    An item whose ``load`` raises ``ImageError`` is skipped and recorded in ``data.skipped``;
    the next item of the balanced order takes its place.
    """
    where = f"{data.source}" + (f" ({data.split})" if data.split else "")
    if num < 1:
        raise DataError(f"{where}: number of items must be >= 1, got {num}")
    if num > len(data.items):
        raise DataError(f"{where}: asked for {num} items but the source holds only {len(data.items)}")
    chosen: list[int] = []
    out: list[np.ndarray] = []
    for index in balanced_order(data.labels, seed):
        if len(chosen) == num:
            break
        name = data.names[index]
        try:
            out.append(load(data.items[index], name))
        except ImageError as exc:
            data.skipped.append((name, str(exc)))
            log.warning("skipped unreadable image: %s", exc)
            continue
        chosen.append(index)
    if len(chosen) < num:
        raise DataError(f"{where}: only {len(chosen)} of the requested {num} items are readable "
                        f"({len(data.skipped)} skipped)")
    if data.skipped:
        log.warning("%s: %d unreadable item(s) skipped", where, len(data.skipped))
    return chosen, out


# --------------------------------------------------------------------------- evaluation


def load_labeled(path: str | os.PathLike, split: str = "val", limit: Optional[int] = None
                 ) -> tuple[list[Item], np.ndarray]:
    """Labeled evaluation data: (paths or uint8 images, int labels in ``IMAGEFOLDER_LABELS`` order).

    ``limit``: at most that many items, spread evenly over the (class-sorted) list, so the
    subset keeps the split's class proportions. Deterministic.
    """
    data = load_labeled_source(path, split, limit)
    return data.items, data.labels


def load_labeled_source(path: str | os.PathLike, split: str = "val", limit: Optional[int] = None) -> SourceData:
    """Like :func:`load_labeled`, returning the :class:`SourceData` (names, report) too."""
    kind = detect_kind(path, split)
    if kind not in ("csv", "imagefolder"):
        raise DataError(f"{path}: a {kind} source has no labels; evaluation needs a FER2013 CSV or an "
                        "ImageFolder tree (<split>/<Class>/*.jpg)")
    data = read_source(path, split, kind=kind)
    if limit is not None:
        if limit < 1:
            raise DataError(f"{path}: limit must be >= 1, got {limit}")
        if limit < len(data.items):
            picks = np.floor(np.linspace(0, len(data.items) - 1, limit) + 0.5).astype(int).tolist()
            data.items = [data.items[i] for i in picks]
            data.names = [data.names[i] for i in picks]
            data.labels = data.labels[picks]
    return data
