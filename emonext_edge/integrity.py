"""Integrity checks on model files: recorded SHA-256 hashes, zip CRCs, safetensors headers.

What each kind of file lets us check before it is used:

* every artifact with a JSON sidecar carrying ``"artifact_sha256": {"<basename>": "<hex>"}``
  (written by the exporters; it covers model.onnx, or model.xml + model.bin, or the
  engine): each listed file is hashed and compared (:func:`verify_artifact`);
* ``.pt`` / ``.pth`` checkpoints (PyTorch's zip format): every member's CRC-32 is
  recomputed before ``torch.load`` (:func:`check_zip_crcs`), so flipped bits in tensor
  data are caught without a sidecar; legacy (pre-zip) pickles carry no checksum;
* ``.safetensors``: the format has no checksum. The header is checked
  (:func:`check_safetensors`: JSON, dtypes, shapes, offsets that tile the data section
  exactly, file length); a bit flip inside tensor data is only caught by a recorded hash.

No torch import here: the Runtime verifies artifacts on devices without torch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

from .errors import CheckpointError, ModelFileError
from .fileio import sha256_file
from .formats import PYTORCH, companion_path, format_for, record_path

log = logging.getLogger(__name__)

SHA256_KEY = "artifact_sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def read_record(artifact: Union[str, os.PathLike]) -> tuple[Optional[Path], Any]:
    """``(sidecar/manifest path or None, its parsed JSON)``: the one read of the record file of a
    load (the Runtime hands it to :func:`verify_artifact` and to the backend); malformed JSON
    raises ``ModelFileError``."""
    from .metadata import read_json_file

    sidecar = record_path(artifact)
    if sidecar == Path(artifact) or not sidecar.exists():
        return None, None
    if not sidecar.is_file():
        raise ModelFileError(f"{sidecar}: metadata sidecar is not a regular file")
    return sidecar, read_json_file(sidecar)


def _sidecar_record(artifact: Union[str, os.PathLike]) -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """``(sidecar path or None, its JSON object or None)``; malformed JSON raises ``ModelFileError``."""
    sidecar, data = read_record(artifact)
    return sidecar, data if isinstance(data, dict) else None


def _hashes_of(sidecar: Path, data: Optional[dict[str, Any]]) -> dict[str, str]:
    if not isinstance(data, dict) or SHA256_KEY not in data:
        return {}
    hashes = data[SHA256_KEY]
    if not isinstance(hashes, dict) or not hashes or not all(
        isinstance(k, str) and isinstance(v, str) and _HEX64.match(v.lower()) for k, v in hashes.items()
    ):
        raise ModelFileError(
            f"{sidecar}: '{SHA256_KEY}' must map file names to 64-digit hex SHA-256 digests, got {hashes!r:.200}"
        )
    return {k: v.lower() for k, v in hashes.items()}


def recorded_hashes(artifact: Union[str, os.PathLike]) -> tuple[Optional[Path], dict[str, str]]:
    """``(sidecar, {basename: sha256})`` recorded for ``artifact``; ``(None, {})`` without a sidecar
    or without the ``artifact_sha256`` field. A malformed field raises ``ModelFileError``."""
    sidecar, data = _sidecar_record(artifact)
    if sidecar is None:
        return None, {}
    return sidecar, _hashes_of(sidecar, data)


def _file_for(name: str, artifact: Path, names: list[str]) -> Path:
    """The file a recorded name refers to: that basename beside the artifact; for an artifact
    renamed after export (its own name not recorded), the recorded model file (same suffix)
    is the artifact and an IR's recorded ``.bin`` is the artifact's ``.bin``."""
    direct = artifact.parent / Path(name).name
    if artifact.name in names:
        return direct
    suffix = Path(name).suffix
    if suffix == artifact.suffix and [Path(n).suffix for n in names].count(suffix) == 1:
        return artifact
    fmt = format_for(artifact)
    if fmt is not None and suffix in fmt.companions and [Path(n).suffix for n in names].count(suffix) == 1:
        return companion_path(artifact, suffix)  # an IR's recorded .bin is the renamed IR's .bin
    return direct


def _unverified(message: str, strict: bool, notes: Optional[list[tuple[int, str]]], level: int = logging.WARNING) -> None:
    if strict:
        raise ModelFileError(f"{message}; verify='strict' refuses it (re-export it, or load it with verify=True)")
    note = (level, f"{message} (verify='strict' refuses such artifacts)")
    if notes is not None:
        notes.append(note)
    else:
        log.log(*note)


def verify_artifact(artifact: Union[str, os.PathLike], strict: bool = False,
                    notes: Optional[list[tuple[int, str]]] = None,
                    record: Optional[tuple[Optional[Path], Any]] = None) -> list[Path]:
    """Hash every file the artifact's sidecar lists under ``artifact_sha256`` and compare; check
    the record's ``record_sha256`` (labels and preprocessing, :func:`emonext_edge.metadata.record_digest`).

    Returns the files verified. Raises ``ModelFileError`` naming the file, both digests and
    the sidecar on a mismatch or a missing file. An artifact with no sidecar, no
    ``artifact_sha256`` or (written before 0.4) no ``record_sha256`` is logged as unverified
    in one warning line, or refused when ``strict``; with ``notes`` given, that
    ``(log level, message)`` is appended to it instead of logged (the Runtime logs it once the
    artifact has loaded, so a failed load shows only its error). ``record``: :func:`read_record`'s
    result when the caller already read it (the sidecar is then not read again).
    """
    from .metadata import RECORD_SHA256_KEY, record_digest

    artifact = Path(artifact)
    if record is None:
        sidecar, data = _sidecar_record(artifact)
    else:
        sidecar, data = record[0], record[1] if isinstance(record[1], dict) else None
    hashes = _hashes_of(sidecar, data) if sidecar is not None else {}
    if not hashes:
        # a zip-format checkpoint still has every member's CRC-32 checked on load: said at INFO
        zipped = artifact.suffix.lower() in PYTORCH.suffixes and zipfile.is_zipfile(artifact)
        crc = "; only its zip CRC-32s are checked" if zipped else ""
        what = f"no sidecar {record_path(artifact).name}" if sidecar is None else f"{sidecar.name} records no {SHA256_KEY}"
        _unverified(f"{artifact}: unverified: {what}, so its files and labels cannot be checked{crc}", strict,
                    notes, logging.INFO if zipped else logging.WARNING)
        return []
    names = list(hashes)
    checked = []
    for name, expected in hashes.items():
        path = _file_for(name, artifact, names)
        if not path.is_file():
            raise ModelFileError(f"{path}: listed in {sidecar} ({SHA256_KEY}) but missing; the artifact is incomplete")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelFileError(
                f"{path}: SHA-256 {actual[:16]}... does not match {expected[:16]}... recorded in {sidecar} "
                f"({SHA256_KEY}): the file is corrupt or was changed after export; re-export it, "
                "or load it anyway with verify=False (--no-verify)"
            )
        checked.append(path)
    assert data is not None and sidecar is not None
    recorded = data.get(RECORD_SHA256_KEY)
    if recorded is None:
        _unverified(f"{sidecar}: labels and preprocessing are not covered by a hash (no {RECORD_SHA256_KEY}: "
                    "written before emonext-edge 0.4)", strict, notes)
    elif recorded != record_digest(data):
        raise ModelFileError(
            f"{sidecar}: its labels/preprocessing do not match {RECORD_SHA256_KEY} {str(recorded)[:16]}...: the "
            "sidecar was edited after export (e.g. labels reordered); re-export it, or load it anyway with "
            "verify=False (--no-verify)"
        )
    log.debug("%s: SHA-256 of %d file(s) and the record verified against %s", artifact, len(checked), sidecar)
    return checked


def embedded_labels(artifact: Path, backend: Any) -> tuple[Optional[str], Optional[list[Any]]]:
    """``(carrier, labels)`` embedded in the model file itself, as the backend read it on load
    (``backend.embedded``: ONNX ``metadata_props``, IR ``rt_info``; the carrier's name comes from
    :mod:`emonext_edge.formats`); ``(None, None)`` when there are none."""
    fmt = format_for(artifact)
    if fmt is None or fmt.embedded is None:
        return None, None
    carrier, data = fmt.embedded, getattr(backend, "embedded", None)
    labels = data.get("labels") if isinstance(data, dict) else None
    return (carrier, labels) if labels else (None, None)


def check_embedded_labels(artifact: Path, backend: Any, labels: Any) -> None:
    """Refuse a sidecar whose labels differ from the copy embedded in the model file.

    Only when both exist: labels read from the embedded copy itself need no comparison.
    Raises ``ModelFileError`` naming the sidecar, the model file and both orders.
    """
    sidecar = record_path(artifact)
    if sidecar == artifact or not sidecar.is_file():
        return
    carrier, embedded = embedded_labels(artifact, backend)
    if embedded is None or list(embedded) == list(labels):
        return
    raise ModelFileError(
        f"{sidecar}: labels {list(labels)!r:.200} differ from those embedded in {artifact.name} ({carrier}: "
        f"{list(embedded)!r:.200}); the sidecar was edited or belongs to another export; re-export, or load it "
        "anyway with verify=False (--no-verify)"
    )


#: A zip member may inflate to at most this many times its stored size. PyTorch and
#: ``numpy.savez`` store members uncompressed (ratio 1); deflated weights compress < 1.5x.
MAX_INFLATE_RATIO = 20
#: Members smaller than this are never refused for their ratio (pickles, manifests, zeros).
_SMALL_MEMBER = 1 << 20
#: Largest declared (inflated) size of all members of a ``.pt`` checkpoint: 8 GiB, twice a
#: ConvNeXt-large EmoNeXt with its EMA copy and optimiser state.
MAX_CHECKPOINT_BYTES = 8 << 30


def check_zip_inflation(archive: zipfile.ZipFile, where: Any, max_total: int, error: type = CheckpointError,
                        what: str = "a checkpoint") -> None:
    """Refuse, before anything is inflated, an archive whose members declare more than
    ``max_total`` bytes in all or more than :data:`MAX_INFLATE_RATIO` x their stored size
    (a zip bomb). Reads the central directory only. Raises ``error`` naming the member."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if info.file_size > _SMALL_MEMBER and info.file_size > MAX_INFLATE_RATIO * max(info.compress_size, 1):
            raise error(
                f"{where}: member {info.filename!r} declares {info.file_size:,} bytes stored in {info.compress_size:,} "
                f"(over {MAX_INFLATE_RATIO}x compression): not {what} (a compressed archive bomb?); not inflated"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise error(f"{where}: member {info.filename!r} is stored uncompressed but declares {info.file_size:,} "
                        f"bytes for {info.compress_size:,} stored: the archive is corrupt")
    if total > max_total:
        raise error(f"{where}: members declare {total:,} bytes in all, over the limit of {max_total:,} for {what}; "
                    "not inflated")


def check_zip_crcs(path: Union[str, os.PathLike]) -> bool:
    """Recompute the CRC-32 of every member of a zip-format checkpoint (PyTorch >= 1.6).

    Returns ``False`` for a non-zip (legacy pickle) file, which carries no checksum;
    raises ``CheckpointError`` naming the file and the first bad member. Sizes are checked
    first (:func:`check_zip_inflation`, :data:`MAX_CHECKPOINT_BYTES`), so a zip bomb is
    refused from its directory, before any byte is inflated.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip that lost its central directory
                raise CheckpointError(f"{path}: file is truncated or corrupt (zip central directory not found)")
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_inflation(archive, path, MAX_CHECKPOINT_BYTES)
            for info in archive.infolist():
                try:
                    with archive.open(info) as member:
                        while member.read(1 << 20):
                            pass
                except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                    raise CheckpointError(
                        f"{path}: member {info.filename!r} is corrupt ({exc}); the checkpoint was damaged "
                        "after it was written"
                    ) from None
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: file is truncated or corrupt ({exc})") from None
    return True


#: bytes per element of the safetensors dtypes
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


def check_safetensors(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Check what a ``.safetensors`` file lets one check: an 8-byte header length, a JSON header,
    known dtypes, sizes that match shapes, offsets that tile the data section exactly and a file
    length that ends with it. Returns the header; raises ``CheckpointError`` naming the tensor.

    There is no checksum in the format: changed bytes inside tensor data pass this check.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: safetensors header length {n} is larger than the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise CheckpointError(f"{path}: tensor {name!r}: header entry lacks dtype/shape/data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise CheckpointError(f"{path}: tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path}: tensor {name!r}: bad data_offsets {offsets!r}")
        count = 1
        for d in shape:
            count *= d
        begin, end = offsets
        if end - begin != count * SAFETENSORS_DTYPES[dtype]:
            raise CheckpointError(
                f"{path}: tensor {name!r}: {dtype} {shape} needs {count * SAFETENSORS_DTYPES[dtype]} bytes, "
                f"data_offsets {offsets} give {end - begin}"
            )
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise CheckpointError(f"{path}: tensor {name!r}: data starts at {begin}, expected {position} (gap or overlap)")
        position = end
    data_size = size - 8 - n
    if position != data_size:
        raise CheckpointError(
            f"{path}: the tensors cover {position} bytes of data but the file holds {data_size} (truncated or padded)"
        )
    return header


def describe_ov_error(exc: BaseException) -> str:
    """OpenVINO's reason from its exception text, without the source-location lines around it
    ("Exception from src/...:84:", "Check '...' failed at ...:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    noise = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|\[ [A-Z_]+ \])$")
    reasons = [line for line in lines if not noise.match(line)]
    text = "; ".join(reasons) if reasons else (lines[-1] if lines else type(exc).__name__)
    return text[:300]
