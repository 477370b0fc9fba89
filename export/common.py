"""Small helpers every exporter shares: the export contract, the gate options, the source model.

Each exporter is its own module with its own CLI; this module holds only what they share.
An exporter uses, from here:

* :func:`exporter_cli` (exit codes 0/1/2/3), :class:`Stage` (temporary files inside the
  output directory, atomic commit with the sidecar last), :func:`gate_artifact` (the shared
  fidelity gate through the Runtime's backends), :class:`TargetRuntimeMissing` (exit 3 with
  the next command) — see :mod:`export.pipeline`;
* :func:`add_fidelity_arguments` / :func:`gate_from_args` / :class:`FidelityOptions`: the
  shared options ``--min-agreement --max-drop --fidelity-data --fidelity-images --keep-failed``;
* :class:`emonext_edge.metadata.ArtifactMetadata`: the record every artifact carries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from calibration.synthetic import synthetic_faces
from emonext_edge.cli_support import EXIT_BAD_INPUT, cli_entry
from emonext_edge.errors import UsageError
from emonext_edge.formats import FORMATS
from emonext_edge.metadata import ArtifactMetadata
from export.fidelity import FidelityOptions, add_fidelity_arguments, gate_from_args

from .pipeline import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    EXIT_RUNTIME_MISSING,
    Stage,
    TargetRuntimeMissing,
    exporter_cli,
    gate_artifact,
    gate_line,
    raise_if_failed,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_GATE_FAILED",
    "EXIT_OK",
    "EXIT_RUNTIME_MISSING",
    "ArtifactMetadata",
    "FidelityOptions",
    "SourceModel",
    "Stage",
    "TargetRuntimeMissing",
    "UsageError",
    "add_fidelity_arguments",
    "cli_entry",
    "exporter_cli",
    "gate_artifact",
    "gate_from_args",
    "gate_line",
    "list_images",
    "load_source",
    "raise_if_failed",
    "synthetic_faces",
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


#: model files that keep their record in ``<stem>.json`` beside them (sidecar or engine manifest), from the formats table
MODEL_SUFFIXES = tuple(s for f in FORMATS if f.record is not None for s in f.suffixes)


def refuse_foreign_sidecar(model: Path, where: str, advice: str = "give another --output") -> None:
    """``UsageError`` (``where``: the option and value to name) when ``model``'s sidecar ``<stem>.json`` exists and
    belongs to another model file of that stem (``emonext.onnx`` and ``emonext.xml`` share ``emonext.json``):
    this export's record would replace the other's, which would then load under it, its own hash unchecked."""
    sidecar = model.with_suffix(".json")
    owner = next((model.with_suffix(s) for s in MODEL_SUFFIXES
                  if s != model.suffix.lower() and model.with_suffix(s).is_file()), None)
    if owner is not None and sidecar.exists():
        raise UsageError(f"{where}: {sidecar.name} is the sidecar of {owner.name}; this export's record would "
                         f"replace it: {advice}")


def verify_source(path: str | os.PathLike, option: str) -> None:
    """Refuse (``ModelFileError``, exit 2) a source artifact whose files no longer have the SHA-256 its sidecar
    records, as the Runtime and export.openvino do; one line naming ``option``, the file and the sidecar."""
    from emonext_edge.errors import ModelFileError
    from emonext_edge.integrity import verify_artifact

    try:
        verify_artifact(path)
    except ModelFileError as exc:  # the Runtime's advice (verify=False / --no-verify) is no option of an exporter
        message = str(exc).split(", or load it anyway")[0]
        own = f"{Path(path)}: "
        raise ModelFileError(f"{option} {path}: {message[len(own):] if message.startswith(own) else message}") from None


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
    info: dict[str, Any] = getattr(model, "checkpoint_info", {})
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
