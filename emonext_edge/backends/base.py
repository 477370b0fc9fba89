"""The one interface every inference engine implements."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Optional

import numpy as np


class Backend(abc.ABC):
    """Life cycle: construct (loads the artifact) -> ``run`` any number of times -> ``close``.

    Subclasses set in ``__init__``:

    * ``metadata``: the artifact's metadata dict (labels, preprocessing, ...) or ``None``;
    * ``num_classes``: width of the logits;
    * ``min_batch`` / ``max_batch``: batch sizes the artifact accepts (``max_batch=None``: unbounded);
    * ``info``: what actually runs, e.g. ``{"backend": "onnxruntime", "device": "CPU",
      "precision": "fp32", "provider": "CPUExecutionProvider", "threads": 2}``.

    ``run`` takes float32 ``[N, *spec.input_shape]`` (the artifact's recorded preprocessing spec) with ``min_batch <= N <= max_batch`` and
    returns float32 logits ``[N, num_classes]``. Implementations must be safe to call
    from several threads at once (document how: a lock, or one request per thread).
    """

    name: str = "base"

    def __init__(self, path: Path, **options: Any) -> None:
        self.path = Path(path)
        self.metadata: Optional[dict[str, Any]] = None
        self.num_classes: int = 0
        self.min_batch: int = 1
        self.max_batch: Optional[int] = None
        self.info: dict[str, Any] = {"backend": self.name}

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> float32 logits."""

    def close(self) -> None:
        """Release engine resources; idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
