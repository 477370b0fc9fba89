"""Calibration and evaluation data plumbing and INT8 calibrators (the fidelity gate moved to
``export.fidelity`` in 0.4; ``calibration.fidelity_gate`` and friends warn until 0.5).

Public API::

    load_calibration(path_or_source, num=DEFAULT_CALIBRATION_SIZE (300), seed=0, split="train") -> float32 [N, *INPUT_SHAPE]
    build_calibration(source, num=300, seed=0, split="train", out=None) -> (tensors, manifest)
    read_calibration(path) -> (tensors, manifest); save_calibration(path, tensors, manifest)
    load_labeled(path, split="val", limit=None) -> (paths or uint8 images, int labels)

Nothing here imports torch or an inference engine.
"""

from __future__ import annotations

from typing import Any

from .calib_file import (
    DEFAULT_CALIBRATION_SIZE,
    CalibrationFileError,
    build_calibration,
    load_calibration,
    read_calibration,
    save_calibration,
)
from .datasets import (
    DataError,
    SourceData,
    balanced_order,
    detect_kind,
    load_labeled,
    load_labeled_source,
    read_source,
    select_balanced,
)

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "CalibrationFileError",
    "DataError",
    "SourceData",
    "balanced_order",
    "build_calibration",
    "detect_kind",
    "load_calibration",
    "load_labeled",
    "load_labeled_source",
    "read_calibration",
    "read_source",
    "save_calibration",
    "select_balanced",
]


def __getattr__(name: str) -> Any:
    """0.3 re-exports of the fidelity gate (``calibration.fidelity_gate``...), deprecated: removal 0.5."""
    if name in ("FidelityOptions", "FidelityReport", "add_fidelity_arguments", "fidelity_gate", "gate_from_args"):
        from . import fidelity

        return getattr(fidelity, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
