"""Legacy implicit INT8: ``IInt8EntropyCalibrator2`` fed from calibration images via pycuda.

Only reachable where :attr:`ApiPlan.calibrator` is true (TensorRT < 10.1; removed in 11).
The default INT8 path is explicit Q/DQ (``export/quantize_onnx.py``). The calibration cache
is written atomically after the first calibration and reused by later builds (TensorRT then
skips ``get_batch``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.errors import ExportError
from emonext_edge.fileio import atomic_path
from emonext_edge.tensorrt_compat import ApiPlan

log = logging.getLogger(__name__)


def make_entropy_calibrator(
    plan: ApiPlan,
    images: Optional[np.ndarray],
    cache_path: Optional[str | os.PathLike],
    batch_size: int = 8,
    trt: Any = None,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over float32 ``images`` [N,3,224,224]; cache at ``cache_path``."""
    if not plan.calibrator:
        raise ExportError(
            f"TensorRT {plan.label} has no usable INT8 calibrator: use explicit INT8 (Q/DQ ONNX)"
        )
    if trt is None:
        import tensorrt as trt
    recording = images is None  # api_names_used: names only, no CUDA

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path) if cache_path else None
            self.batch_size = batch_size
            self.index = 0
            self.images = None if recording else np.ascontiguousarray(images, dtype=np.float32)
            self.device: Any = None
            if not recording:
                import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
                import pycuda.driver as cuda

                assert self.images is not None
                self.device = cuda.mem_alloc(self.images[:batch_size].nbytes)

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str]) -> Optional[list[int]]:
            if self.images is None or self.index + self.batch_size > len(self.images):
                return None
            import pycuda.driver as cuda

            chunk = np.ascontiguousarray(self.images[self.index:self.index + self.batch_size])
            cuda.memcpy_htod(self.device, chunk)
            self.index += self.batch_size
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
