"""Inference backends: one module per engine, each importing its engine lazily.

``open_backend(path)`` picks the backend from the artifact's suffix, through the formats
table (:mod:`emonext_edge.formats`); a new backend is a module here plus a row there.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from ..formats import SUFFIXES, TRITON, format_for, is_model_url, model_suffixes
from .base import Backend, IODescription

#: suffix -> backend name (derived from :data:`emonext_edge.formats.FORMATS`)
SUFFIX_BACKENDS = {suffix: fmt.backend for suffix, fmt in SUFFIXES.items()}

#: backend name -> (module, class)
BACKENDS = {
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("tensorrt_backend", "TensorRTBackend"),
    "torch": ("torch_backend", "TorchBackend"),
    "triton": ("triton_backend", "TritonBackend"),
}


def backend_name_for(path: str | os.PathLike) -> str:
    fmt = format_for(path)
    if fmt is None:
        suffix = Path(path).suffix.lower()
        raise ModelFileError(
            f"{path}: unknown model file kind {suffix or '(no suffix)'!r}; expected one of {model_suffixes()}"
        )
    return fmt.backend


def open_backend(path: str | os.PathLike, backend: str = "auto", *, record: Any = None, **options: Any) -> Backend:
    """Open ``path`` (a model file or a served-model URL) with ``backend`` ("auto": by the formats table).

    ``record``: the sidecar record the caller already parsed (an ``ArtifactMetadata``, or
    ``emonext_edge.metadata.NOT_READ``); ``options`` go to the backend class, checked by name.
    """
    url = is_model_url(path)
    if url:
        name = TRITON.backend if backend == "auto" else backend
        if name != TRITON.backend:
            raise ValueError(f"{path}: a served model (URL) opens with the {TRITON.backend} backend, not {name!r}")
    elif not Path(path).is_file():
        if Path(path).is_dir():
            found = sorted(p.name for p in Path(path).iterdir() if p.suffix.lower() in SUFFIXES)[:5]
            hint = f"; it holds {', '.join(found)}" if found else ""
            raise ModelFileError(f"{path}: is a directory, not a model file (expected a file ending in one of "
                                 f"{model_suffixes()}){hint}")
        raise ModelFileError(f"{path}: no such model file")
    else:
        name = backend_name_for(path) if backend == "auto" else backend
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected 'auto' or one of {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    module = importlib.import_module(f".{module_name}", __name__)
    cls: type[Backend] = getattr(module, class_name)
    params = inspect.signature(cls.__init__).parameters.values()
    accepted = [p.name for p in params if p.name not in ("self", "path", "record") and p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params):
        raise ValueError(f"{path}: the {name} backend has no option(s) {unknown}; it accepts {accepted}")
    target: Any = path if url else Path(path)  # a URL stays a string (Path would fold its '//')
    if record is not None:
        options["record"] = record
    return cls(target, **options)


__all__ = ["BACKENDS", "SUFFIX_BACKENDS", "Backend", "IODescription", "backend_name_for", "is_model_url",
           "open_backend"]
