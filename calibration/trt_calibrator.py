"""Legacy implicit INT8: ``IInt8EntropyCalibrator2`` fed from calibration images via pycuda.

Only reachable where :attr:`ApiPlan.calibrator` is true (TensorRT < 10.1; deprecated from
10.1, removed in 11). The default INT8 path is explicit Q/DQ (``export/quantize_onnx.py``).
The calibration cache is written atomically after the first calibration and reused by later
builds (TensorRT then skips ``get_batch``).

CUDA: no ``pycuda.autoinit``. TensorRT calls ``get_batch`` from inside
``build_serialized_network``, which the builder runs with the device's primary context pushed
(:class:`emonext_edge.tensorrt_compat.CudaContext`); the device buffer is allocated there, on
the first batch, so it lives in the context TensorRT's kernels read it from.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.errors import UsageError
from emonext_edge.fileio import atomic_path
from emonext_edge.tensorrt_compat import ApiPlan

log = logging.getLogger(__name__)


def make_entropy_calibrator(
    plan: ApiPlan,
    trt: Any,
    images: np.ndarray,
    cache_path: Optional[str | os.PathLike],
    batch_size: int = 8,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over float32 ``images`` [N, *INPUT_SHAPE]; cache at ``cache_path``."""
    if not plan.calibrator:
        raise UsageError(
            f"--int8-mode calibrator: TensorRT {plan.label} has no usable INT8 calibrator; "
            "use --int8-mode explicit (Q/DQ ONNX)"
        )
    data = np.ascontiguousarray(images, dtype=np.float32)
    if data.ndim != 4 or len(data) < batch_size:
        raise UsageError(f"calibration needs at least {batch_size} preprocessed images [N, C, H, W], got {list(data.shape)}")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path) if cache_path else None
            self.index = 0
            self.device: Any = None  # allocated on the first batch, inside the builder's CUDA context

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> Optional[list[int]]:
            if self.index + batch_size > len(data):
                return None
            import pycuda.driver as cuda

            chunk = data[self.index:self.index + batch_size]
            if self.device is None:
                self.device = cuda.mem_alloc(chunk.nbytes)
            cuda.memcpy_htod(self.device, chunk)
            self.index += batch_size
            return [int(self.device)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if self.cache_path is not None and self.cache_path.is_file():
                log.info("reusing INT8 calibration cache %s", self.cache_path)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.cache_path is None:
                return
            with atomic_path(self.cache_path) as tmp:
                tmp.write_bytes(bytes(cache))
            log.info("wrote INT8 calibration cache %s", self.cache_path)

    return EntropyCalibrator()
