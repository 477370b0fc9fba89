"""PyTorch reference backend (``.pt`` / ``.pth`` / ``.safetensors`` checkpoints); needs torch.

This is the reference the exported artifacts are compared with, not a deployment path.

Thread safety: the model is in eval mode and never mutated; each :meth:`TorchBackend.run`
runs under ``torch.inference_mode()``, which is safe from several threads at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import BackendUnavailableError
from ..formats import PYTORCH
from ..metadata import ArtifactMetadata
from .base import Backend


class TorchBackend(Backend):
    """Options: ``device`` ("cpu" default, "cuda"), ``threads`` (``torch.set_num_threads``:
    process-wide), ``precision`` ("fp32" only), ``prefer_ema`` (default True), ``labels``."""

    name = "torch"

    def __init__(
        self,
        path: Path,
        *,
        device: Optional[str] = None,
        precision: Optional[str] = None,
        threads: Optional[int] = None,
        prefer_ema: bool = True,
        labels: Optional[list[str]] = None,
        record: Any = None,
    ) -> None:
        super().__init__(path, record=record)
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError(
                f"{path}: PyTorch checkpoints need torch, which is not installed here; "
                "export the model to ONNX / OpenVINO / TensorRT for this device"
            ) from None
        from ..checkpoint import load_model

        if precision not in (None, "fp32", "f32"):
            raise ValueError(f"the PyTorch reference backend runs fp32 only, not {precision!r}")
        self.device = torch.device(device or "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"{path}: device {device!r} requested but torch sees no CUDA GPU")
        if threads is not None:
            torch.set_num_threads(int(threads))
        model = load_model(path, prefer_ema=prefer_ema, labels=labels).to(self.device)
        self.model: Optional[Any] = model
        self.num_classes = model.architecture.num_classes
        checkpoint_info: dict[str, Any] = getattr(model, "checkpoint_info", {})
        self.metadata = ArtifactMetadata(
            format=PYTORCH.name,
            precision="fp32",
            labels=list(model.labels),
            architecture=model.architecture.to_dict(),
            source={k: v for k, v in checkpoint_info.items() if k != "architecture"},
        )
        self.info.update(
            backend=self.name,
            device=str(self.device),
            precision="fp32",
            provider=f"torch {torch.__version__}",
            threads=torch.get_num_threads(),
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self.model is None:
            raise RuntimeError(f"{self.path}: backend is closed")
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.model = None
