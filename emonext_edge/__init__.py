"""emonext-edge: run EmoNeXt facial-emotion models on edge devices.

``import emonext_edge`` never imports torch; only loading checkpoints does.
Most users need only :class:`Runtime` and its ``predict``.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    ArchitectureMismatchError,
    BackendUnavailableError,
    CheckpointError,
    EmoNeXtError,
    ExportError,
    ImageError,
    ModelFileError,
)
from .labels import DEFAULT_LABELS, IMAGEFOLDER_LABELS, KAGGLE_CSV_LABELS
from .preprocess import PREPROCESSING_SPEC, preprocess

__version__ = "0.4.0"

__all__ = [
    "DEFAULT_LABELS",
    "IMAGEFOLDER_LABELS",
    "KAGGLE_CSV_LABELS",
    "PREPROCESSING_SPEC",
    "ArchitectureMismatchError",
    "BackendUnavailableError",
    "CheckpointError",
    "EmoNeXtError",
    "ExportError",
    "FacePrediction",
    "ImageError",
    "ModelFileError",
    "Prediction",
    "Runtime",
    "load_model",
    "preprocess",
]

_LAZY = {
    "load_model": ("checkpoint", "load_model"),  # needs torch
    "Runtime": ("runtime", "Runtime"),
    "Prediction": ("runtime", "Prediction"),
    "FacePrediction": ("runtime", "FacePrediction"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'emonext_edge' has no attribute {name!r}")
