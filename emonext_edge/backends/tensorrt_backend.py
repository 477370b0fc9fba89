"""TensorRT backend: plain plan files (``.engine``/``.plan``) with a sidecar manifest.

Works with the 8.5/8.6, 10.x and 11.x Python APIs through :mod:`emonext_edge.tensorrt_compat`
(named I/O tensors, ``set_input_shape``, ``set_tensor_address`` + ``execute_async_v3``).
pycuda device buffers and page-locked host buffers sized for the profile's max batch, one
CUDA stream per execution context. CUDA context: the device's primary context, retained
once and pushed around every call (:class:`~emonext_edge.tensorrt_compat.CudaContext`, the
policy the builder and the calibrator share); one TensorRT execution context is guarded by
a lock — calls from several threads are serialized.

The manifest (``<engine stem>.json``, written by ``python -m export.tensorrt``) is checked
before deserializing: engines only load on the TensorRT version and GPU they were built for.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .. import tensorrt_compat as compat
from ..errors import BackendUnavailableError, ImageError, ModelFileError
from ..metadata import ArtifactMetadata, labels_for
from .base import Backend, expected_input

if TYPE_CHECKING:  # TensorRT's classes for mypy (tensorrt-stubs); never imported at run time
    import tensorrt as tr

log = logging.getLogger(__name__)

TARGET_DEVICE_HINT = "TensorRT engines must be built on the target device (python -m export.tensorrt there)"


def _device_index(device: Any) -> int:
    """``None``/``"cuda"`` -> 0, ``"cuda:1"``/``1`` -> 1."""
    if device is None or device in ("cuda", "GPU", "gpu"):
        return 0
    text = str(device).split(":")[-1]
    if not text.isdigit():
        raise ValueError(f"TensorRT device must be a CUDA device index such as 0 or 'cuda:1', got {device!r}")
    return int(text)


def check_manifest(path: Path, manifest: Optional[ArtifactMetadata], trt_version: str, gpu: str, cc: str) -> None:
    """Raise :class:`ModelFileError` if the engine was built for another TensorRT version or GPU."""
    if manifest is None or manifest.tensorrt is None:
        log.warning("%s: no TensorRT manifest beside the engine; loading without version checks", path)
        return
    built = manifest.tensorrt.to_dict()
    problems = []
    if built.get("version") and built["version"] != trt_version:
        problems.append(f"TensorRT {built['version']} (present: {trt_version})")
    if built.get("compute_capability") and built["compute_capability"] != cc:
        problems.append(
            f"GPU {built.get('gpu')} with compute capability {built['compute_capability']} (present: {gpu}, {cc})"
        )
    if problems:
        raise ModelFileError(f"{path}: engine was built for " + " and ".join(problems) + f"; {TARGET_DEVICE_HINT}")


class TensorRTBackend(Backend):
    name = "tensorrt"
    _runtime: Optional[tr.Runtime] = None
    _engine: Optional[tr.ICudaEngine] = None
    _logger: Optional[tr.Logger] = None
    _context: Optional[tr.IExecutionContext] = None

    def __init__(self, path: Path, *, device: Any = None, record: Any = None) -> None:
        """``device``: CUDA device index (0, 1, "cuda:1"); precision and batch are fixed by the engine."""
        super().__init__(path, record=record)
        try:
            trt = compat.import_tensorrt()
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{path}: cannot load a TensorRT engine here: {exc}") from None
        try:
            cuda_context = compat.CudaContext(_device_index(device))
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{path}: the TensorRT backend needs pycuda and a CUDA GPU ({exc})") from None
        self._lock = threading.Lock()
        self._cuda_context: Optional[compat.CudaContext] = cuda_context
        try:
            with cuda_context as cuda:
                self._cuda = cuda
                self._load(trt, cuda, cuda_context.gpu, cuda_context.compute_capability)
        except BaseException:
            self.close()
            raise

    def _load(self, trt: Any, cuda: Any, gpu: str, cc: str) -> None:
        path = self.path
        self._read_metadata()
        check_manifest(self.path, self.metadata, trt.__version__, gpu, cc)
        self._runtime, self._engine, self._logger = compat.deserialize(trt, self.path.read_bytes())
        if self._engine is None:
            built = self.metadata.tensorrt.to_dict() if self.metadata and self.metadata.tensorrt else {}
            raise ModelFileError(
                f"{path}: TensorRT {trt.__version__} on {gpu} (compute {cc}) could not deserialize this engine "
                f"(built for TensorRT {built.get('version', 'unknown')} on {built.get('gpu', 'unknown GPU')}); "
                + TARGET_DEVICE_HINT
            )
        specs = compat.io_tensors(trt, self._engine)
        inputs = [s for s in specs if s.is_input]
        outputs = [s for s in specs if not s.is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"{path}: expected 1 input and 1 output tensor, found {len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        if self._in.dtype != np.float32 or self._out.dtype != np.float32:
            raise ModelFileError(f"{path}: engine I/O must be float32, got {self._in.dtype} -> {self._out.dtype}")
        assert self._in.profile is not None
        self.min_batch = int(self._in.profile[0][0])
        self.max_batch = int(self._in.profile[2][0])
        self.input_shape = tuple(int(d) for d in self._in.profile[2][1:])  # the engine's profile (built from the spec)
        self.num_classes = int(self._out.shape[-1])
        self.input_name, self.output_name = self._in.name, self._out.name
        labels_for(self.metadata, self.num_classes, str(path))
        self._context = compat.create_context(self._engine)
        self._stream = cuda.Stream()
        in_shape = (self.max_batch, *self._in.profile[2][1:])
        self._h_in = cuda.pagelocked_empty(in_shape, np.float32)
        self._h_out = cuda.pagelocked_empty((self.max_batch, self.num_classes), np.float32)
        self._d_in = cuda.mem_alloc(self._h_in.nbytes)
        self._d_out = cuda.mem_alloc(self._h_out.nbytes)
        meta = self.metadata
        precision = (meta.precision if meta is not None else None) or "unknown"  # 0.2 manifests: read_metadata maps it
        self.info = {"backend": self.name, "device": gpu, "precision": precision, "provider": f"TensorRT {trt.__version__}",
                     "threads": None, "compute_capability": cc, "jetpack": compat.jetpack_release()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = int(batch.shape[0]) if batch.ndim == 4 else -1
        if batch.dtype != np.float32 or batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(self._in.profile[2][1:]):  # type: ignore[index]
            raise ImageError(f"TensorRT input must be float32 {expected_input(self.input_shape)} (the engine's profile), "
                             f"got {batch.dtype} {list(batch.shape)}")
        assert self.max_batch is not None
        if not self.min_batch <= n <= self.max_batch:
            raise ImageError(f"{self.path}: batch of {n} outside the engine's profile [{self.min_batch}, {self.max_batch}]")
        cuda = self._cuda
        assert self._cuda_context is not None and self._context is not None, "backend is closed"
        with self._lock, self._cuda_context:
            self._h_in[:n] = batch
            cuda.memcpy_htod_async(self._d_in, self._h_in[:n], self._stream)  # only the n images
            compat.execute(self._context, {self._in.name: (n, *batch.shape[1:])},
                           {self._in.name: int(self._d_in), self._out.name: int(self._d_out)}, self._stream.handle)
            cuda.memcpy_dtoh_async(self._h_out[:n], self._d_out, self._stream)
            self._stream.synchronize()
            return np.array(self._h_out[:n], dtype=np.float32)

    def close(self) -> None:
        ctx = getattr(self, "_cuda_context", None)
        if ctx is None:
            return
        with self._lock:
            with ctx:
                for attr in ("_d_in", "_d_out"):
                    buf = getattr(self, attr, None)
                    if buf is not None:
                        buf.free()
                        setattr(self, attr, None)
                self._context = self._engine = self._runtime = None
            ctx.close()
            self._cuda_context = None
