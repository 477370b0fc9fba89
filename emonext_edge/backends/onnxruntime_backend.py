"""ONNX Runtime backend (``.onnx``). Imports onnxruntime only when an artifact is opened.

Execution providers are tried in the order TensorRT -> CUDA -> CPU (those the installed
onnxruntime offers), or exactly the ``providers=`` list given; ``info["provider"]`` is the
one the session actually uses.

Thread safety: ``InferenceSession.run`` is documented as safe to call from several
threads at once, so :meth:`OnnxRuntimeBackend.run` takes no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from ..metadata import from_string_map
from .base import Backend, check_input_shape

log = logging.getLogger(__name__)

#: tried in this order when no ``providers=`` is given
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
#: ``device=`` shortcuts -> provider lists
DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _static_dim(dim: Any) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession`` over one EmoNeXt ONNX file.

    Options: ``providers`` (list, tried in order), ``device`` ("cpu", "cuda"/"gpu",
    "tensorrt": a shortcut for ``providers``), ``threads`` (intra-op threads),
    ``precision`` (informational: an ONNX file's precision is fixed at export).
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        *,
        providers: Optional[Sequence[str]] = None,
        device: Optional[str] = None,
        threads: Optional[int] = None,
        precision: Optional[str] = None,
        record: Any = None,
    ) -> None:
        super().__init__(path, record=record)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError(
                f"{path}: ONNX models need onnxruntime (pip install onnxruntime, or onnxruntime-gpu)"
            ) from None
        available = ort.get_available_providers()
        if providers is None:
            if device is not None:
                if device.lower() not in DEVICE_PROVIDERS:
                    raise ValueError(f"{path}: unknown ONNX Runtime device {device!r}; expected one of {sorted(DEVICE_PROVIDERS)}")
                wanted = DEVICE_PROVIDERS[device.lower()]
                missing = [p for p in wanted[:1] if p not in available]
                if missing:
                    raise BackendUnavailableError(
                        f"{path}: device {device!r} needs {missing[0]}, but this onnxruntime offers only {available}"
                    )
                providers = [p for p in wanted if p in available]
            else:
                providers = [p for p in PROVIDER_ORDER if p in available]
        else:
            providers = list(providers)
            unknown = [p for p in providers if p not in available]
            if unknown:
                raise BackendUnavailableError(
                    f"{path}: execution provider(s) {unknown} not available; this onnxruntime offers {available}"
                )
        options = ort.SessionOptions()
        if threads is not None:
            if int(threads) < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own (unexported) exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{path}: not a loadable ONNX model ({first[:300]})") from None

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelFileError(f"{path}: expected 1 input and 1 output, got {len(inputs)} inputs, {len(outputs)} outputs")
        spec = inputs[0]
        if spec.type not in _DTYPES:
            raise ModelFileError(f"{path}: input {spec.name!r} has type {spec.type}; expected tensor(float) or tensor(float16)")
        self.input_name = spec.name
        self.output_name = outputs[0].name
        self.input_dtype = _DTYPES[spec.type]

        self._read_metadata(embedded=from_string_map(self.session.get_modelmeta().custom_metadata_map))
        input_shape = self.input_shape  # what the artifact records (default: the trained spec)
        check_input_shape(path, f"input {spec.name!r}", spec.shape, [_static_dim(d) for d in spec.shape], input_shape)
        batch = _static_dim(spec.shape[0])
        if batch is not None:
            self.min_batch = self.max_batch = batch
        out_shape = outputs[0].shape
        classes = _static_dim(out_shape[-1]) if out_shape else None
        if classes is None and self.labels:
            classes = len(self.labels)
        if classes is None:
            classes = int(self.session.run([self.output_name], {self.input_name: np.zeros((self.min_batch, *input_shape), self.input_dtype)})[0].shape[-1])
        self.num_classes = classes

        used = self.session.get_providers()
        self.info.update(
            backend=self.name,
            provider=used[0],
            providers_tried=list(providers),
            device={"CPUExecutionProvider": "CPU"}.get(used[0], "GPU"),
            precision=precision or ("fp16" if self.input_dtype == np.float16 else
                                   (self.metadata.precision if self.metadata and self.metadata.precision else "fp32")),
            threads=threads if threads is not None else "default",
        )
        log.debug("%s: ONNX Runtime session on %s (tried %s)", path, used[0], providers)

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = batch if batch.dtype == self.input_dtype else batch.astype(self.input_dtype)
        out = self.session.run([self.output_name], {self.input_name: feed})[0]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
