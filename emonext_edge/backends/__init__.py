"""Inference backends: one module per engine, each importing its engine lazily.

``open_backend(path)`` picks the backend from the artifact's suffix.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from .base import Backend

#: suffix -> backend name
SUFFIX_BACKENDS = {
    ".onnx": "onnxruntime",
    ".xml": "openvino",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".trt": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
    ".safetensors": "torch",
}

#: backend name -> (module, class)
BACKENDS = {
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("tensorrt_backend", "TensorRTBackend"),
    "torch": ("torch_backend", "TorchBackend"),
    "triton": ("triton_backend", "TritonBackend"),
}


def is_model_url(path: Any) -> bool:
    """A served model (``grpc://host:8001/emonext``, ``http://host:8000/emonext``) rather than a file."""
    return isinstance(path, str) and "://" in path and path.split("://", 1)[0].lower() in ("grpc", "http", "https")


def backend_name_for(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKENDS:
        raise ModelFileError(
            f"{path}: unknown model file kind {suffix or '(no suffix)'!r}; expected one of {sorted(SUFFIX_BACKENDS)}"
        )
    return SUFFIX_BACKENDS[suffix]


def open_backend(path: str | os.PathLike, backend: str = "auto", **options: Any) -> Backend:
    url = is_model_url(path)
    if url:
        name = "triton" if backend == "auto" else backend
        if name != "triton":
            raise ValueError(f"{path}: a served model (URL) opens with the triton backend, not {name!r}")
    elif not Path(path).is_file():
        if Path(path).is_dir():
            found = sorted(p.name for p in Path(path).iterdir() if p.suffix.lower() in SUFFIX_BACKENDS)[:5]
            hint = f"; it holds {', '.join(found)}" if found else ""
            raise ModelFileError(f"{path}: is a directory, not a model file (expected a file ending in one of "
                                 f"{sorted(SUFFIX_BACKENDS)}){hint}")
        raise ModelFileError(f"{path}: no such model file")
    else:
        name = backend_name_for(path) if backend == "auto" else backend
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected 'auto' or one of {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    module = importlib.import_module(f".{module_name}", __name__)
    cls: type[Backend] = getattr(module, class_name)
    params = inspect.signature(cls.__init__).parameters.values()
    accepted = [p.name for p in params if p.name not in ("self", "path") and p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params):
        raise ValueError(f"{path}: the {name} backend has no option(s) {unknown}; it accepts {accepted}")
    target: Any = path if url else Path(path)  # a URL stays a string (Path would fold its '//')
    return cls(target, **options)


__all__ = ["BACKENDS", "SUFFIX_BACKENDS", "Backend", "backend_name_for", "is_model_url", "open_backend"]
