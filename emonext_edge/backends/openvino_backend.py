"""OpenVINO backend (``.xml`` + ``.bin`` IR). Imports openvino only when an artifact is opened.

Inference precision is pinned to f32 unless ``precision=`` asks for another: on CPUs
with AVX512-BF16/AMX OpenVINO otherwise silently runs bf16 (measured: logits moved by
1.8e-2 against f32). ``info["precision"]`` is read back from the compiled model, so it
reports what actually runs.

A dynamic-batch IR can be compiled for one static batch size (``batch=1`` for a
frame-by-frame stream): the CPU plugin then skips per-call shape handling. Measured on the
EmoNeXt-Tiny NNCF INT8 IR, 2 threads, batch 1: 11.7 -> 10.8 ms. The Runtime splits larger
batches into chunks of that size and pads a smaller last chunk.

Thread safety: every :meth:`OpenVinoBackend.run` call borrows its own ``InferRequest``
from a pool (a blocking queue) and returns it afterwards, so several threads can run at
once without sharing a request; with more threads than requests, callers wait.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from ..formats import OPENVINO_IR, companion_path
from ..metadata import from_string_map
from .base import Backend, check_input_shape

log = logging.getLogger(__name__)

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
#: user spellings -> OpenVINO INFERENCE_PRECISION_HINT values
PRECISIONS = {"f32": "f32", "fp32": "f32", "f16": "f16", "fp16": "f16", "bf16": "bf16"}


def _flatten_rt_info(rt: Any, prefix: str = "") -> dict[str, str]:
    """OpenVINO rt_info (RTMap of OVAny / nested dicts) -> flat ``{"a.b": "value"}``."""
    out: dict[str, str] = {}
    for key in list(rt.keys()):
        value = rt[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) or type(value).__name__ == "RTMap":
            out.update(_flatten_rt_info(value, name + "."))
            continue
        value = getattr(value, "value", value)
        if isinstance(value, dict):
            out.update(_flatten_rt_info(value, name + "."))
        else:
            out[name] = str(value)
    return out


def _tensor_name(port: Any) -> Optional[str]:
    try:
        return str(port.get_any_name())
    except Exception:  # noqa: BLE001 -- an unnamed tensor (OpenVINO raises RuntimeError or its own types)
        return None


def _first_line(exc: BaseException) -> str:
    """OpenVINO's reason (e.g. "Incorrect weights in bin file!"), without its source-location lines."""
    from ..integrity import describe_ov_error

    return describe_ov_error(exc)


class OpenVinoBackend(Backend):
    """A compiled OpenVINO model with a pool of infer requests.

    Options: ``device`` ("CPU" default, "GPU", "NPU", "AUTO", or any OpenVINO device
    string such as "GPU.1"), ``precision`` ("f32" default, "f16", "bf16"), ``hint``
    ("latency" default, "throughput"), ``num_requests`` (pool size; default: the
    compiled model's optimal number), ``threads`` (INFERENCE_NUM_THREADS, CPU only),
    ``batch`` (compile a dynamic-batch IR for this static batch size; default: as stored).
    """

    name = "openvino"

    def __init__(
        self,
        path: Path,
        *,
        device: Optional[str] = None,
        precision: Optional[str] = None,
        hint: str = "latency",
        num_requests: Optional[int] = None,
        threads: Optional[int] = None,
        batch: Optional[int] = None,
        record: Any = None,
    ) -> None:
        super().__init__(path, record=record)
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailableError(f"{path}: OpenVINO IR models need openvino (pip install openvino)") from None
        weights = companion_path(self.path, OPENVINO_IR.companions[0])
        if not weights.is_file():
            raise ModelFileError(f"{path}: the weights file {weights} is missing (an OpenVINO IR is an .xml plus its .bin)")
        device = (device or "CPU").upper()
        if device.split(".")[0].split(":")[0] not in DEVICES + ("HETERO", "MULTI"):
            raise ValueError(f"unknown OpenVINO device {device!r}; expected one of {list(DEVICES)}")
        if hint.lower() not in HINTS:
            raise ValueError(f"unknown performance hint {hint!r}; expected one of {sorted(HINTS)}")
        wanted = PRECISIONS.get((precision or "f32").lower())
        if wanted is None:
            raise ValueError(f"unknown OpenVINO precision {precision!r}; expected one of {sorted(PRECISIONS)}")
        if num_requests is not None and int(num_requests) < 1:
            raise ValueError(f"num_requests must be >= 1, got {num_requests}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
            raise ValueError(f"batch must be a positive integer (a static batch size), got {batch!r}")

        core = ov.Core()
        try:
            model = core.read_model(str(self.path), str(weights))
        except Exception as exc:  # noqa: BLE001 - openvino raises RuntimeError with engine internals
            raise ModelFileError(f"{path}: not a readable OpenVINO IR with {weights.name} ({_first_line(exc)})") from None
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise ModelFileError(f"{path}: expected 1 input and 1 output, got {len(model.inputs)} and {len(model.outputs)}")
        self._read_metadata(embedded=from_string_map(_flatten_rt_info(model.get_rt_info())))
        input_shape = self.input_shape  # what the artifact records (default: the trained spec)
        shape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
        check_input_shape(path, "input", shape, dims, input_shape)
        self.input_name = _tensor_name(model.inputs[0])
        self.output_name = _tensor_name(model.outputs[0])
        if batch is not None:
            if dims[0] is not None and dims[0] != batch:
                raise ValueError(f"{path}: the IR has a fixed batch of {dims[0]}; it cannot be compiled for batch={batch}")
            model.reshape([int(batch), *input_shape])
            dims[0] = int(batch)
        if dims[0] is not None:
            self.min_batch = self.max_batch = dims[0]

        out_shape = model.outputs[0].get_partial_shape()
        last = out_shape[out_shape.rank.get_length() - 1] if out_shape.rank.is_static else None
        if last is not None and last.is_static:
            self.num_classes = last.get_length()
        elif self.labels:
            self.num_classes = len(self.labels)
        else:
            raise ModelFileError(f"{path}: output shape {out_shape} has no static class dimension and no metadata labels")

        config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[hint.lower()]}
        if device != "AUTO":  # AUTO forwards hints to the device it picks; precision is per device
            config["INFERENCE_PRECISION_HINT"] = wanted
        if num_requests is not None:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = int(num_requests)
        if threads is not None:
            if device != "CPU":
                raise ValueError(f"threads= applies to the OpenVINO CPU device only, not {device}")
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:  # noqa: BLE001 - the engine's own exception types are not exported; re-raised as a named error
            raise BackendUnavailableError(
                f"{path}: OpenVINO could not compile for device {device} with {config} "
                f"(available devices: {core.available_devices}): {_first_line(exc)}"
            ) from None

        count = int(num_requests) if num_requests is not None else max(1, int(self._property("OPTIMAL_NUMBER_OF_INFER_REQUESTS", 1)))
        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(count):
            self._pool.put(self.compiled.create_infer_request())
        actual = self._property("INFERENCE_PRECISION_HINT", None)
        type_name = actual.get_type_name() if hasattr(actual, "get_type_name") else str(actual)
        actual_name = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(type_name, type_name)
        self.info.update(
            backend=self.name,
            device=device,
            precision=actual_name,
            requested_precision=wanted,
            hint=hint.lower(),
            num_requests=count,
            threads=self._property("INFERENCE_NUM_THREADS", threads),
            batch="dynamic" if dims[0] is None else dims[0],
            provider=f"openvino {ov.get_version()}",
        )
        if actual_name != wanted and device != "AUTO":
            log.warning("%s: asked OpenVINO for %s inference, the compiled model reports %s", path, wanted, actual_name)

    def _property(self, name: str, default: Any) -> Any:
        try:
            return self.compiled.get_property(name)
        except Exception:  # noqa: BLE001 - property not supported by this device plugin
            return default

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Latency hint: one synchronous request. Throughput hint: the batch is split over as many
        idle infer requests as there are (one per OpenVINO stream), run concurrently."""
        requests = [self._pool.get()]
        if self.info.get("hint") == "throughput" and self.max_batch is None:
            while len(requests) < len(batch):  # never block here: other threads may hold the rest
                try:
                    requests.append(self._pool.get_nowait())
                except queue.Empty:
                    break
        try:
            if len(requests) == 1:
                requests[0].infer({0: batch})
                return np.array(requests[0].get_output_tensor(0).data, dtype=np.float32, copy=True)
            chunks = np.array_split(batch, len(requests))
            for request, chunk in zip(requests, chunks):
                request.start_async({0: np.ascontiguousarray(chunk)})
            for request in requests:
                request.wait()
            return np.concatenate([np.array(r.get_output_tensor(0).data, dtype=np.float32) for r in requests])
        finally:
            for request in requests:
                self._pool.put(request)

    def close(self) -> None:
        self._pool = queue.Queue()
        self.compiled = None
