"""Calibration and evaluation data plumbing, fidelity gate and INT8 calibrators.

Public API::

    load_calibration(path_or_source, num=DEFAULT_CALIBRATION_SIZE (300), seed=0, split="train") -> float32 [N, *INPUT_SHAPE]
    build_calibration(source, num=300, seed=0, split="train", out=None) -> (tensors, manifest)
    read_calibration(path) -> (tensors, manifest); save_calibration(path, tensors, manifest)
    load_labeled(path, split="val", limit=None) -> (paths or uint8 images, int labels)
    fidelity_gate(candidate, reference, images, labels=None, ...) -> FidelityReport

Nothing here imports torch or an inference engine.
"""

from __future__ import annotations

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
from .fidelity import (
    FidelityOptions,
    FidelityReport,
    add_fidelity_arguments,
    fidelity_gate,
    gate_from_args,
)

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "CalibrationFileError",
    "DataError",
    "FidelityOptions",
    "FidelityReport",
    "SourceData",
    "add_fidelity_arguments",
    "balanced_order",
    "build_calibration",
    "detect_kind",
    "fidelity_gate",
    "gate_from_args",
    "load_calibration",
    "load_labeled",
    "load_labeled_source",
    "read_calibration",
    "read_source",
    "save_calibration",
    "select_balanced",
]
