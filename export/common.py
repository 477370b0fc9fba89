"""Small helpers every exporter shares: CLI error handling, the source model, verification images.

Each exporter is its own module with its own CLI; this module holds only what they share.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.cli_support import EXIT_BAD_INPUT, cli_entry
from emonext_edge.errors import UsageError

from calibration.synthetic import synthetic_faces

__all__ = [
    "EXIT_BAD_INPUT",
    "SourceModel",
    "UsageError",
    "cli_entry",
    "list_images",
    "load_source",
    "synthetic_faces",
    "verification_batch",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm")


@dataclass
class SourceModel:
    """The torch model to export and where it came from (goes into every artifact's metadata)."""

    model: Any  # emonext_edge.model.EmoNeXt
    info: dict[str, Any] = field(default_factory=dict)
    untrained: bool = False

    @property
    def description(self) -> str:
        if self.untrained:
            return "default model: EmoNeXt-Tiny with seeded random weights (untrained; latency work only)"
        return f"checkpoint {self.info.get('checkpoint')} ({self.info.get('weights')} weights)"


def load_source(checkpoint: Optional[str | os.PathLike], prefer_ema: bool = True) -> SourceModel:
    """Load ``checkpoint`` or, when it is ``None``, the seeded untrained EmoNeXt-Tiny default model."""
    if checkpoint is None:
        from emonext_edge.model import seeded_model

        model = seeded_model("tiny", seed=0)
        return SourceModel(
            model,
            {"checkpoint": None, "sha256": None, "weights": "seeded-random (untrained)", "seed": 0, "size": "tiny"},
            untrained=True,
        )
    from emonext_edge.checkpoint import load_model

    model = load_model(checkpoint, prefer_ema=prefer_ema)
    info = model.checkpoint_info
    return SourceModel(
        model,
        {"checkpoint": str(checkpoint), "sha256": info["sha256"], "weights": info["weights"]},
    )


def list_images(folder: str | os.PathLike) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def verification_batch(data_dir: Optional[str | os.PathLike], count: int = 16, seed: int = 0) -> tuple[np.ndarray, str]:
    """Preprocessed float32 ``[count, 3, 224, 224]`` images to verify exports with, and what they are.

    With ``data_dir`` (a FER2013-layout tree or any folder of face images): ``count`` files
    spread evenly over the sorted file list. Without: deterministic synthetic images.
    """
    from emonext_edge.preprocess import preprocess

    if data_dir is None:
        return preprocess(list(synthetic_faces(count, seed))), f"{count} deterministic synthetic images (no --verify-data given)"
    files = list_images(data_dir)
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)]
    return preprocess(picks), f"{len(picks)} real images from {data_dir}"
