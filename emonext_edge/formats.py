"""What an artifact kind *is*, as data: one table, read by everything that must know.

Each :class:`ArtifactFormat` row says, for one kind of artifact, its file suffixes (the
first is the one exporters write), the companion files that travel with the model file
(an IR's ``.bin``), where its record lives (a JSON sidecar or an engine manifest, and the
carrier embedded in the model file itself), which backend runs it and what Triton calls
its platform/backend. Readers of the table:

* :func:`emonext_edge.backends.open_backend` picks the backend (:func:`format_for`);
* :func:`emonext_edge.metadata.read_metadata` picks the reader (``record`` / ``embedded``);
* :mod:`emonext_edge.integrity` maps recorded names to files (:func:`companion_path`);
* ``export.pipeline.Stage.commit`` and ``export.triton`` can take the commit order
  (:func:`commit_names`) and the Triton platform from here.

Adding a format (CoreML, TFLite, ...) is one row here plus its backend module.
No third-party import: the table loads on every device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

#: the suffix of every JSON record beside a model file (sidecar or engine manifest)
RECORD_SUFFIX = ".json"

#: where a record can live: a JSON sidecar, a TensorRT engine manifest (same file layout, required
#: fields differ), ONNX ``metadata_props``, OpenVINO IR ``rt_info``, a Triton config parameter
RECORD_SIDECAR = "sidecar"
RECORD_MANIFEST = "engine manifest"
EMBEDDED_ONNX = "ONNX metadata_props"
EMBEDDED_IR = "IR rt_info"
EMBEDDED_TRITON = "Triton config parameter emonext_metadata"


@dataclass(frozen=True)
class ArtifactFormat:
    """One kind of artifact (a row of :data:`FORMATS`)."""

    #: the record's ``format`` field (``ArtifactMetadata.format``)
    name: str
    #: file suffixes, lower case; the first is what exporters write. Empty for a served model.
    suffixes: tuple[str, ...]
    #: name of the backend (``emonext_edge.backends.BACKENDS``) that runs it
    backend: str
    #: suffixes of the files that travel with the model file, same stem (an IR's ``.bin``)
    companions: tuple[str, ...] = ()
    #: the JSON record beside the model file: :data:`RECORD_SIDECAR`, :data:`RECORD_MANIFEST` or None
    record: Optional[str] = RECORD_SIDECAR
    #: the copy of the record inside the model file (``None``: the file cannot carry one)
    embedded: Optional[str] = None
    #: Triton ``platform`` / ``backend`` names for its own backend (``None``: served by our python model)
    triton_platform: Optional[str] = None
    triton_backend: Optional[str] = None
    #: file name inside a Triton model version folder
    triton_file: Optional[str] = None
    #: URL schemes (a served model instead of a file)
    schemes: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        """The suffix exporters write (``""`` for a served model)."""
        return self.suffixes[0] if self.suffixes else ""


ONNX = ArtifactFormat("onnx", (".onnx",), "onnxruntime", embedded=EMBEDDED_ONNX,
                      triton_platform="onnxruntime_onnx", triton_file="model.onnx")
OPENVINO_IR = ArtifactFormat("openvino-ir", (".xml",), "openvino", companions=(".bin",), embedded=EMBEDDED_IR,
                             triton_backend="openvino", triton_file="model.xml")
TENSORRT_ENGINE = ArtifactFormat("tensorrt-engine", (".engine", ".plan", ".trt"), "tensorrt", record=RECORD_MANIFEST,
                                 triton_platform="tensorrt_plan", triton_file="model.plan")
#: a checkpoint's facts live in the checkpoint (a ``.json`` beside it is checkpoint info, not a record)
PYTORCH = ArtifactFormat("pytorch", (".pt", ".pth", ".safetensors"), "torch", record=None)
TRITON = ArtifactFormat("triton", (), "triton", record=None, embedded=EMBEDDED_TRITON,
                        schemes=("grpc", "http", "https"))

#: every artifact kind, in the order error messages list them
FORMATS: tuple[ArtifactFormat, ...] = (ONNX, OPENVINO_IR, TENSORRT_ENGINE, PYTORCH, TRITON)
#: the kinds an artifact record may name in its ``format`` field (a served model is not an artifact)
RECORD_FORMATS: tuple[str, ...] = tuple(f.name for f in FORMATS if f.suffixes)
#: every model-file suffix -> its format
SUFFIXES: dict[str, ArtifactFormat] = {s: f for f in FORMATS for s in f.suffixes}


def by_name(name: str) -> ArtifactFormat:
    """The row whose ``name`` (the record's ``format``) is ``name``; ``KeyError`` naming the known ones."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(f"unknown artifact format {name!r}; expected one of {[f.name for f in FORMATS]}")


def is_model_url(path: object) -> bool:
    """A served model (``grpc://host:8001/emonext``, ``http://host:8000/emonext``) rather than a file."""
    if not isinstance(path, str) or "://" not in path:
        return False
    return any(path.split("://", 1)[0].lower() in f.schemes for f in FORMATS)


def format_for(path: Union[str, os.PathLike]) -> Optional[ArtifactFormat]:
    """The format of a model file or URL, by suffix/scheme; ``None`` when no row claims it."""
    if is_model_url(path):
        return TRITON
    return SUFFIXES.get(Path(path).suffix.lower())


def model_suffixes() -> list[str]:
    """Every model-file suffix, sorted (for error messages)."""
    return sorted(SUFFIXES)


def companion_path(model_file: Union[str, os.PathLike], suffix: str) -> Path:
    """The companion file of ``model_file`` with ``suffix`` (an IR's ``x.bin`` beside ``x.xml``)."""
    return Path(model_file).with_suffix(suffix)


def record_path(model_file: Union[str, os.PathLike]) -> Path:
    """``<stem>.json`` beside the model file: its sidecar or engine manifest."""
    return Path(model_file).with_suffix(RECORD_SUFFIX)


def artifact_files(model_file: Union[str, os.PathLike]) -> list[Path]:
    """The files of an artifact in commit order: companions first, the model file last (the
    record, written after them, is not included). An unknown suffix: just the file."""
    fmt = format_for(model_file)
    path = Path(model_file)
    return [companion_path(path, s) for s in (fmt.companions if fmt else ())] + [path]


def commit_names(model_name: str) -> list[str]:
    """Basenames for ``Stage.commit``: ``"x.xml"`` -> ``["x.bin", "x.xml"]``."""
    return [p.name for p in artifact_files(model_name)]


__all__ = [
    "EMBEDDED_IR", "EMBEDDED_ONNX", "EMBEDDED_TRITON", "FORMATS", "ONNX", "OPENVINO_IR", "PYTORCH", "RECORD_FORMATS",
    "RECORD_MANIFEST", "RECORD_SIDECAR", "RECORD_SUFFIX", "SUFFIXES", "TENSORRT_ENGINE", "TRITON", "ArtifactFormat",
    "artifact_files", "by_name", "commit_names", "companion_path", "format_for", "is_model_url", "model_suffixes",
    "record_path",
]
