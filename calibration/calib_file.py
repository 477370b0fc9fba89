"""``calib.npz``: preprocessed calibration tensors plus a manifest, written atomically.

File layout (``numpy.savez``, no pickles):

* ``manifest``: UTF-8 JSON as a uint8 array, with ``format`` (``"emonext-calib/1"``), ``source``,
  ``kind``, ``split``, ``num``, ``seed``, ``class_counts``, ``skipped`` (count) and
  ``skipped_items`` (first 50 names), ``items`` (names of the chosen items, in tensor order), ``preprocessing`` (``PREPROCESSING_SPEC``), ``shape``,
  ``dtype``, ``encoding``, ``tensor_sha256`` (SHA-256 of the float32 ``[N, *INPUT_SHAPE]``
  C-order tensor bytes), ``package_version``.
* ``data``: the tensors. Preprocessed faces are gray repeated to 3 channels with values
  ``k / 255``, so they are stored losslessly as uint8 ``[N, H, W]`` (the spec's crop)
  (``encoding = "gray-u8/255"``, 12x smaller) and rebuilt bit-exactly on load; other tensors
  are stored as float32 (``encoding = "float32"``). The SHA-256 is always checked on the
  rebuilt float32 tensors, so any change to the data is detected.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.errors import EmoNeXtError
from emonext_edge.fileio import atomic_path
from emonext_edge.preprocess import INPUT_SHAPE, PREPROCESSING_SPEC, preprocess_one

from .datasets import DataError, Item, SourceData, detect_kind, read_source, take_balanced

log = logging.getLogger(__name__)

FORMAT = "emonext-calib/1"
MAX_LISTED_SKIPS = 50
#: Most tensors a calib.npz may hold (read back as float32: 4096 x 602 KB = 2.4 GB). NNCF's and
#: TensorRT's calibrators use a few hundred; the default is 300.
MAX_CALIBRATION_TENSORS = 4096
#: Largest manifest member (the JSON lists item names): 64 MiB.
MAX_MANIFEST_BYTES = 64 << 20
_MEMBERS = {"manifest.npy": MAX_MANIFEST_BYTES, "data.npy": MAX_CALIBRATION_TENSORS * 4 * int(np.prod(INPUT_SHAPE)) + 4096}


class CalibrationFileError(EmoNeXtError, ValueError):
    """A calib.npz file is missing, corrupt, tampered with, or of the wrong shape."""


def tensor_sha256(tensors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensors, dtype=np.float32).tobytes()).hexdigest()


def _encode(tensors: np.ndarray) -> tuple[np.ndarray, str]:
    gray = tensors[:, 0]
    if (tensors == gray[:, None]).all():
        u8 = np.rint(gray * np.float32(255.0))
        if u8.min() >= 0 and u8.max() <= 255:
            u8 = u8.astype(np.uint8)
            if np.array_equal(u8.astype(np.float32) / np.float32(255.0), gray):
                return u8, "gray-u8/255"
    return np.ascontiguousarray(tensors, dtype=np.float32), "float32"


def _decode(data: np.ndarray, encoding: str, where: str) -> np.ndarray:
    if encoding == "gray-u8/255":
        if data.dtype != np.uint8 or data.ndim != 3:
            raise CalibrationFileError(f"{where}: 'data' must be uint8 [N, H, W] for encoding {encoding}, "
                                       f"got {data.dtype} {list(data.shape)}")
        gray = data.astype(np.float32) / np.float32(255.0)
        return np.repeat(gray[:, None], INPUT_SHAPE[0], axis=1)
    if encoding == "float32":
        if data.dtype != np.float32:
            raise CalibrationFileError(f"{where}: 'data' must be float32, got {data.dtype}")
        return data
    raise CalibrationFileError(f"{where}: unknown tensor encoding {encoding!r}")


def save_calibration(path: str | os.PathLike, tensors: np.ndarray, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``tensors`` (float32 [N, *INPUT_SHAPE]) and ``manifest`` to ``path`` atomically; return the manifest."""
    tensors = np.asarray(tensors)
    if tensors.dtype != np.float32 or tensors.ndim != 4 or tuple(tensors.shape[1:]) != INPUT_SHAPE:
        raise CalibrationFileError(f"{path}: calibration tensors must be float32 [N, {', '.join(map(str, INPUT_SHAPE))}]"
                                   f", got {tensors.dtype} {list(tensors.shape)}")
    data, encoding = _encode(tensors)
    manifest = dict(manifest)
    manifest.update(
        format=FORMAT,
        num=int(tensors.shape[0]),
        shape=list(tensors.shape),
        dtype="float32",
        encoding=encoding,
        tensor_sha256=tensor_sha256(tensors),
    )
    blob = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy must not append ".npz" to the temp name
            np.savez(f, manifest=blob, data=data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a calib file is ordinary data
    log.debug("wrote %s: %d tensors, sha256 %s", path, tensors.shape[0], manifest["tensor_sha256"][:16])
    return manifest


def _check_members(path: Path) -> None:
    """Refuse a calib.npz whose members (from the zip directory and each ``.npy`` header, nothing
    inflated beyond that) declare more than a calibration set can hold: a zip bomb, or an array
    header claiming a huge shape. Raises ``CalibrationFileError`` naming the member."""
    from emonext_edge.integrity import check_zip_inflation

    with zipfile.ZipFile(path) as archive:
        check_zip_inflation(archive, path, sum(_MEMBERS.values()), CalibrationFileError, "a calibration set")
        for info in archive.infolist():
            limit = _MEMBERS.get(info.filename)
            if limit is None:
                continue  # np.load ignores it unless asked; 'manifest'/'data' are checked below
            if info.file_size > limit:
                raise CalibrationFileError(f"{path}: member {info.filename!r} declares {info.file_size:,} bytes, over "
                                           f"the {limit:,} a calibration set of at most {MAX_CALIBRATION_TENSORS} "
                                           "tensors can need; not inflated")
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member, max_header_size=10_000)
                except (ValueError, EOFError, SyntaxError) as exc:
                    raise CalibrationFileError(f"{path}: member {info.filename!r} is not a .npy array ({exc})") from None
            count = 1
            for dim in shape:
                count *= int(dim)
            if count * dtype.itemsize > info.file_size:
                raise CalibrationFileError(
                    f"{path}: member {info.filename!r} declares a {dtype} array of shape {list(shape)} "
                    f"({count * dtype.itemsize:,} bytes) in {info.file_size:,} bytes: corrupt or crafted; not inflated")
            if info.filename == "data.npy" and shape and int(shape[0]) > MAX_CALIBRATION_TENSORS:
                raise CalibrationFileError(f"{path}: 'data' holds {int(shape[0]):,} tensors, over the limit of "
                                           f"{MAX_CALIBRATION_TENSORS} (calibration.calib_file.MAX_CALIBRATION_TENSORS)")


def read_calibration(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read and verify a calib.npz: (float32 [N, *INPUT_SHAPE], manifest). Raises ``CalibrationFileError``.

    Member sizes and array headers are checked before any array is inflated (:func:`_check_members`).
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationFileError(f"{path}: no such calibration file")
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
            if not {"manifest", "data"} <= files:
                raise CalibrationFileError(f"{path}: not a calib.npz (arrays {sorted(files)}; expected "
                                           "'manifest' and 'data'); build one with `python -m calibration build`")
            manifest = json.loads(npz["manifest"].tobytes().decode("utf-8"))
            data = npz["data"]
    except CalibrationFileError:
        raise
    except RecursionError:
        raise CalibrationFileError(f"{path}: manifest JSON is nested too deeply") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        raise CalibrationFileError(f"{path}: not a readable calib.npz ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CalibrationFileError(f"{path}: manifest format {manifest.get('format') if isinstance(manifest, dict) else None!r}"
                                   f", expected {FORMAT!r}")
    tensors = _decode(data, str(manifest.get("encoding")), str(path))
    expected_shape = manifest.get("shape")
    if tensors.ndim != 4 or tuple(tensors.shape[1:]) != INPUT_SHAPE:
        raise CalibrationFileError(f"{path}: tensors have shape {list(tensors.shape)}, expected "
                                   f"[N, {', '.join(map(str, INPUT_SHAPE))}]")
    if list(tensors.shape) != expected_shape:
        raise CalibrationFileError(f"{path}: tensors have shape {list(tensors.shape)} but the manifest says "
                                   f"{expected_shape}")
    digest = tensor_sha256(tensors)
    if digest != manifest.get("tensor_sha256"):
        raise CalibrationFileError(f"{path}: SHA-256 of the tensor data is {digest}, the manifest says "
                                   f"{manifest.get('tensor_sha256')}: the file was modified or is corrupt")
    return tensors, manifest


def _load_item(item: Item, name: str) -> np.ndarray:
    return preprocess_one(item if isinstance(item, np.ndarray) else Path(item), name=name)


#: one calibration size for every tool (calibration build, export.openvino, export.tensorrt): NNCF's
#: default subset size, and the size the INT8 figures in the README were measured with
DEFAULT_CALIBRATION_SIZE = 300


def build_calibration(
    source: str | os.PathLike,
    num: int = DEFAULT_CALIBRATION_SIZE,
    seed: int = 0,
    split: Optional[str] = "train",
    out: Optional[str | os.PathLike] = None,
    option: str = "--num",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Select ``num`` class-balanced items of ``source`` with ``seed``, preprocess them; write ``out`` if given.

    Returns (float32 [num, *INPUT_SHAPE], manifest). Unreadable images are skipped, replaced by
    the next item of the balanced order and counted in ``manifest["skipped"]``. A video is
    sampled at up to ``2 * num`` evenly spaced frames (largest face of each; frames without a
    face counted as skipped), then ``num`` crops are picked with ``seed``. ``option``: the
    command-line option that set ``num``, named in the error when the data holds fewer.
    """
    from emonext_edge import __version__

    if not 1 <= num <= MAX_CALIBRATION_TENSORS:
        raise DataError(f"{source}: {option} {num}: expected 1 to {MAX_CALIBRATION_TENSORS} calibration images "
                        "(calibration.calib_file.MAX_CALIBRATION_TENSORS)")
    kind = detect_kind(source, split)
    # videos: sample up to 2*num frames evenly, so frames without a face can be made up for
    data: SourceData = read_source(source, split, frames=2 * num, kind=kind)
    if num > len(data.items):
        extra = f" ({len(data.skipped)} sampled frames had no usable face)" if kind == "video" else ""
        raise DataError(f"{source}: {option} {num} is larger than the data: the source holds only "
                        f"{len(data.items)} items{extra}")
    indices, tensors = take_balanced(data, num, _load_item, seed)
    manifest: dict[str, Any] = {
        "source": str(source),
        "kind": data.kind,
        "split": data.split,
        "seed": int(seed),
        "class_counts": data.class_counts(indices),
        "available": len(data.items),
        "skipped": len(data.skipped),
        "skipped_items": [f"{n}: {r}" for n, r in data.skipped[:MAX_LISTED_SKIPS]],
        "items": [data.names[i] for i in indices],
        "preprocessing": PREPROCESSING_SPEC,
        "package_version": __version__,
    }
    batch = np.stack(tensors).astype(np.float32, copy=False)
    if out is not None:
        manifest = save_calibration(out, batch, manifest)
    else:
        manifest.update(num=int(batch.shape[0]), shape=list(batch.shape), tensor_sha256=tensor_sha256(batch))
    return batch, manifest


def load_calibration(
    path_or_source: str | os.PathLike,
    num: Optional[int] = DEFAULT_CALIBRATION_SIZE,
    seed: int = 0,
    split: Optional[str] = "train",
    option: str = "--num",
) -> np.ndarray:
    """float32 ``[N, *INPUT_SHAPE]`` calibration tensors from a calib.npz or any data source.

    * ``.npz``: verified (SHA-256, shape); returns its first ``num`` tensors (all with
      ``num=None``; the stored order is class-balanced round robin, so any prefix stays
      balanced). ``num`` larger than the file -> ``CalibrationFileError``. ``seed``/``split``
      are ignored (the file records its own).
    * anything else: built on the fly with :func:`build_calibration` (``num=None`` ->
      :data:`DEFAULT_CALIBRATION_SIZE`). ``option`` names ``num`` in errors.
    """
    p = Path(path_or_source)
    if p.suffix.lower() == ".npz":
        tensors, _ = read_calibration(p)
        if num is None:
            return tensors
        if num > tensors.shape[0]:
            raise CalibrationFileError(f"{p}: asked for {num} calibration tensors but the file holds only "
                                       f"{tensors.shape[0]}; rebuild it with a larger --num or lower {option}")
        return tensors[:num]
    tensors, _ = build_calibration(p, num=DEFAULT_CALIBRATION_SIZE if num is None else num, seed=seed, split=split,
                                   option=option)
    return tensors


def describe(path: str | os.PathLike) -> str:
    """A short human summary of a calib.npz (used by ``python -m calibration show``)."""
    tensors, manifest = read_calibration(path)
    buf = io.StringIO()
    buf.write(f"{path}: {tensors.shape[0]} tensors {list(tensors.shape[1:])}, sha256 {manifest['tensor_sha256']}\n")
    for key in ("source", "kind", "split", "seed", "class_counts", "skipped", "package_version"):
        buf.write(f"  {key}: {manifest.get(key)}\n")
    return buf.getvalue().rstrip()
