"""What travels with every artifact: labels, preprocessing spec, architecture, provenance.

Stored as a JSON sidecar ``<artifact stem>.json`` beside each artifact and, where the
format allows, inside it (ONNX ``metadata_props``, OpenVINO ``rt_info``). TensorRT engines
stay plain plans: their metadata lives only in the sidecar manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from .errors import ModelFileError
from .labels import DEFAULT_LABELS
from .preprocess import PREPROCESSING_SPEC

FORMAT_VERSION = 1
#: keys stored as JSON strings in ONNX metadata_props / OpenVINO rt_info
METADATA_PREFIX = "emonext."


def package_version() -> str:
    from . import __version__

    return __version__


def sidecar_path(artifact: str | os.PathLike) -> Path:
    p = Path(artifact)
    return p.with_suffix(".json")


def build_metadata(
    *,
    labels: Sequence[str],
    architecture: Mapping[str, Any],
    source: Optional[Mapping[str, Any]] = None,
    **extra: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "emonext-edge",
        "package_version": package_version(),
        "labels": list(labels),
        "preprocessing": PREPROCESSING_SPEC,
        "architecture": dict(architecture),
        "source": dict(source or {}),
    }
    meta.update(extra)
    return meta


def read_sidecar(artifact: str | os.PathLike) -> Optional[dict[str, Any]]:
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: metadata sidecar is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "labels" not in data:
        raise ModelFileError(f"{path}: metadata sidecar has no 'labels' list")
    return data


def to_string_map(meta: Mapping[str, Any]) -> dict[str, str]:
    """Flatten metadata into string key/values (for ONNX metadata_props / IR rt_info)."""
    return {METADATA_PREFIX + k: json.dumps(v) for k, v in meta.items()}


def from_string_map(props: Mapping[str, str]) -> Optional[dict[str, Any]]:
    out = {}
    for k, v in props.items():
        if k.startswith(METADATA_PREFIX):
            try:
                out[k[len(METADATA_PREFIX):]] = json.loads(v)
            except ValueError:
                out[k[len(METADATA_PREFIX):]] = v
    return out or None


def labels_from(meta: Optional[Mapping[str, Any]], num_classes: int, where: str) -> tuple[str, ...]:
    """Labels from artifact metadata; the ImageFolder default only when metadata is absent and sizes match."""
    if meta and meta.get("labels"):
        labels = tuple(meta["labels"])
        if len(labels) != num_classes:
            raise ModelFileError(f"{where}: metadata lists {len(labels)} labels but the model outputs {num_classes}")
        return labels
    if num_classes == len(DEFAULT_LABELS):
        return tuple(DEFAULT_LABELS)
    return tuple(f"class_{i}" for i in range(num_classes))
