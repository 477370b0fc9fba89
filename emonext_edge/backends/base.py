"""The one interface every inference engine implements, and the one I/O description it reports."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import ModelFileError
from ..preprocess import INPUT_SHAPE

if TYPE_CHECKING:
    from ..metadata import ArtifactMetadata


def expected_input(input_shape: Sequence[int] = INPUT_SHAPE) -> str:
    """``"[N, C, H, W]"`` spelled from ``input_shape`` (an artifact's recorded spec's
    ``input_shape``; default :data:`INPUT_SHAPE`, the trained spec's): the one input a backend takes."""
    return "[N, " + ", ".join(str(d) for d in input_shape) + "]"


def check_input_shape(path: Any, what: str, shape: Any, dims: Any, input_shape: Sequence[int] = INPUT_SHAPE) -> None:
    """``ModelFileError`` naming ``path`` and ``what`` unless ``dims`` is ``[N, *input_shape]`` (any N).

    ``shape``: the model's own spelling of it (for the message); ``dims``: its dimensions with
    ``None`` for a dynamic one; ``input_shape``: what the artifact's preprocessing record says
    (``spec_of(metadata).input_shape``). The one place a model's input is checked.
    """
    if len(dims) != 1 + len(input_shape) or list(dims[1:]) != list(input_shape):
        raise ModelFileError(f"{path}: {what} has shape {shape}; expected {expected_input(input_shape)} "
                             "(its preprocessing record)")


@dataclass(frozen=True)
class IODescription:
    """What a backend feeds and reads: one input ``[N, *input_shape]`` of ``input_dtype``, one
    output ``[N, num_classes]``, with ``min_batch <= N <= max_batch`` (``max_batch=None``: unbounded)."""

    input_name: Optional[str]
    input_shape: tuple[int, ...]
    input_dtype: str
    output_name: Optional[str]
    num_classes: int
    min_batch: int
    max_batch: Optional[int]

    def to_dict(self) -> dict[str, Any]:
        return {"input_name": self.input_name, "input_shape": list(self.input_shape), "input_dtype": self.input_dtype,
                "output_name": self.output_name, "num_classes": self.num_classes, "min_batch": self.min_batch,
                "max_batch": self.max_batch}


class Backend(abc.ABC):
    """Life cycle: construct (loads the artifact) -> ``run`` any number of times -> ``close``.

    Subclasses set in ``__init__``:

    * ``metadata``: the artifact's record (:class:`~emonext_edge.metadata.ArtifactMetadata`),
      read once through :func:`emonext_edge.metadata.read_metadata` (the sidecar/manifest,
      else the carrier embedded in the model, which the backend hands over as ``embedded``),
      or ``None`` when the artifact carries none;
    * ``embedded``: the raw record embedded in the model file (``None``: none or not embeddable);
    * ``num_classes``: width of the logits;
    * ``min_batch`` / ``max_batch``: batch sizes the artifact accepts (``max_batch=None``: unbounded);
    * ``input_name`` / ``output_name`` / ``input_dtype``: the model's tensors (see :attr:`io`);
    * ``input_shape``: ``[C, H, W]`` per image, the record's preprocessing spec's
      (``spec_of(metadata).input_shape``; set by :meth:`_read_metadata`, default :data:`INPUT_SHAPE`);
    * ``info``: what actually runs, e.g. ``{"backend": "onnxruntime", "device": "CPU",
      "precision": "fp32", "provider": "CPUExecutionProvider", "threads": 2}``.

    ``record``: the sidecar record when the caller (the Runtime) already read it, so the
    sidecar is parsed once per load; left out, the backend reads it.

    ``run`` takes float32 ``[N, *input_shape]`` (the artifact's recorded preprocessing spec, :attr:`input_shape`) with ``min_batch <= N <= max_batch`` and
    returns float32 logits ``[N, num_classes]``. Implementations must be safe to call
    from several threads at once (document how: a lock, or one request per thread).
    """

    name: str = "base"

    def __init__(self, path: Path, *, record: Any = None) -> None:
        from ..metadata import NOT_READ

        self.path = Path(path)
        self.metadata: Optional[ArtifactMetadata] = None
        self.embedded: Optional[dict[str, Any]] = None
        self._record: Any = NOT_READ if record is None else record
        self.num_classes: int = 0
        self.min_batch: int = 1
        self.max_batch: Optional[int] = None
        self.input_name: Optional[str] = None
        self.output_name: Optional[str] = None
        self.input_dtype: Any = np.float32
        self.input_shape: tuple[int, ...] = tuple(INPUT_SHAPE)
        self.info: dict[str, Any] = {"backend": self.name}

    def _read_metadata(self, embedded: Optional[dict[str, Any]] = None, where: Optional[str] = None) -> Optional[ArtifactMetadata]:
        """The record through the one reader (``embedded``: the carrier this backend already holds);
        sets :attr:`input_shape` from the record's preprocessing spec (``where`` names the artifact
        when that record is not a spec; default: the path)."""
        from ..metadata import read_metadata
        from ..preprocess import spec_of

        self.embedded = embedded
        self.metadata = read_metadata(self.path, sidecar=self._record, embedded=embedded)
        self.input_shape = tuple(spec_of(self.metadata, where or str(self.path)).input_shape)
        return self.metadata

    @property
    def labels(self) -> list[str]:
        """The record's labels (empty without a record)."""
        return list(self.metadata.labels) if self.metadata is not None else []

    @property
    def io(self) -> IODescription:
        """The one description of this backend's input and output."""
        return IODescription(self.input_name, tuple(self.input_shape), np.dtype(self.input_dtype).name, self.output_name,
                             self.num_classes, self.min_batch, self.max_batch)

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> float32 logits."""

    def close(self) -> None:
        """Release engine resources; idempotent."""

    def __enter__(self) -> Backend:  # noqa: PYI034 - typing.Self needs 3.11 (the library supports 3.8)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
