"""What an artifact says about itself: one typed, versioned record and one writer/reader per carrier.

:class:`ArtifactMetadata` is the record (schema version :data:`SCHEMA_VERSION`). It travels
with every artifact in up to two carriers:

==========================  ==========================================  =====================================
carrier                     writer                                      reader
==========================  ==========================================  =====================================
JSON sidecar ``<stem>.json``  :func:`write_sidecar`                     :func:`read_sidecar_metadata`
ONNX ``metadata_props``       :func:`write_onnx_metadata`               :func:`read_onnx_metadata`
OpenVINO IR ``rt_info``       :func:`write_ir_metadata` (edits the XML)  :func:`read_ir_metadata`
TensorRT engine manifest      :func:`write_engine_manifest`             :func:`read_engine_manifest`
==========================  ==========================================  =====================================

:func:`read_metadata` is the one reader a consumer calls: the sidecar/manifest when present
(it is the complete record: it alone carries ``artifact_sha256``, the SHA-256 of every file
of the artifact), else what is embedded in the file. Embedded carriers hold the same record
minus ``artifact_sha256`` (a file cannot contain its own hash).

Both carriers store each top-level field as a JSON string under ``emonext.<field>`` (ONNX)
or ``emonext/<field>`` (IR ``rt_info``), so a 0.2 artifact and a 0.3 one share one layout.
Records written by 0.2 (``format_version: 1``) load: their ``verification`` becomes the
``fidelity`` gate record, their ``quantization``/``quantizer`` the :class:`Quantization`,
and a 0.2 engine manifest that said ``format: onnx`` is read as the engine it describes.

Which carrier a kind of artifact has is data: :mod:`emonext_edge.formats`. The 0.2 dict
helpers are retired on the schedule in docs/architecture.md ("Deprecations"):
:func:`read_sidecar` and :func:`labels_from` warn and go in 0.5; ``build_metadata`` is gone.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from typing import Mapping as _Mapping  # subscripted at run time: typing's, for Python 3.8

from .errors import ModelFileError
from .formats import RECORD_FORMATS, RECORD_MANIFEST, TENSORRT_ENGINE, by_name, format_for, record_path
from .labels import DEFAULT_LABELS, validate_labels
from .preprocess import PREPROCESSING_SPEC

log = logging.getLogger(__name__)

#: version of the :class:`ArtifactMetadata` layout (0.2 wrote ``format_version: 1``)
SCHEMA_VERSION = 2
#: keys stored as JSON strings in ONNX metadata_props (flat ``emonext.<key>``)
METADATA_PREFIX = "emonext."
#: section of the OpenVINO IR rt_info (nested ``emonext/<key>``)
RT_INFO_SECTION = "emonext"

#: sidecar/manifest key holding :func:`record_digest` (written beside ``artifact_sha256``)
RECORD_SHA256_KEY = "record_sha256"
#: the fields of the record that change predictions, covered by ``record_sha256``
RECORD_HASH_FIELDS = ("labels", "preprocessing")
#: deepest nesting accepted in a metadata record (ours is 4 deep)
MAX_JSON_DEPTH = 32
#: largest sidecar/manifest read (ours are a few kB)
MAX_SIDECAR_BYTES = 16 << 20


def record_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of the record's
    :data:`RECORD_HASH_FIELDS`: what makes a sidecar's labels and preprocessing verifiable."""
    subset = {key: record.get(key) for key in RECORD_HASH_FIELDS}
    text = json.dumps(subset, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def check_depth(value: Any, where: str, limit: int = MAX_JSON_DEPTH) -> None:
    """``ModelFileError`` if ``value`` nests lists/dicts deeper than ``limit`` (iterative: no RecursionError)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        if depth > limit:
            raise ModelFileError(f"{where}: metadata is nested more than {limit} levels deep; not an EmoNeXt record")
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: Union[str, bytes], where: str, what: str = "metadata sidecar") -> Any:
    """``json.loads`` with one-line ``ModelFileError`` for malformed or too deeply nested JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ModelFileError(f"{where}: {what} JSON is nested too deeply to parse; not an EmoNeXt record") from None
    except ValueError as exc:
        raise ModelFileError(f"{where}: {what} is not valid JSON ({exc})") from None
    check_depth(value, where)
    return value


def read_json_file(path: Path, what: str = "metadata sidecar") -> Any:
    """Read and parse a sidecar/manifest: size-limited (:data:`MAX_SIDECAR_BYTES`), regular files only."""
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise ModelFileError(f"{path}: {what} is {size:,} bytes, over the limit of {MAX_SIDECAR_BYTES:,}")
        with open(path, "rb") as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_json(text, str(path), what)


ENGINE_FORMAT = TENSORRT_ENGINE.name


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


#: ``read_metadata(..., sidecar=NOT_READ)``: the caller has not read the sidecar (the reader reads it)
NOT_READ: Any = _NotRead()

#: retired 0.2 names -> (their replacement, the release that removes them); see docs/architecture.md
_DEPRECATED_NAMES = {
    "FORMAT_VERSION": (1, "schema_version / SCHEMA_VERSION", "0.5"),
    "FORMATS": (RECORD_FORMATS, "emonext_edge.formats.RECORD_FORMATS", "0.5"),
}
_warned: set[str] = set()


def warn_deprecated(name: str, instead: str, removal: str) -> None:
    """One ``DeprecationWarning`` per name and process: ``name`` goes in ``removal``, use ``instead``."""
    if name in _warned:
        return
    _warned.add(name)
    warnings.warn(f"{name} is deprecated and will be removed in emonext-edge {removal}; use {instead}",
                  DeprecationWarning, stacklevel=3)


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED_NAMES:
        value, instead, removal = _DEPRECATED_NAMES[name]
        warn_deprecated(f"emonext_edge.metadata.{name}", instead, removal)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def package_version() -> str:
    from . import __version__

    return __version__


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``<artifact stem>.json`` beside the artifact (the JSON sidecar / engine manifest)."""
    return record_path(artifact)


# --------------------------------------------------------------------------- the record


@dataclass
class GateResult:
    """Outcome of the fidelity gate an artifact went through before it was committed.

    ``passed`` False with ``kept_failed`` True: the artifact failed and was kept on request
    (``--keep-failed``); it is *unverified*. ``figures``: what was measured (agreement,
    logit/probability differences, accuracies, drop in pp, ...); ``thresholds``: the limits
    (``min_agreement``, ``max_drop_pp``, ``atol``); ``data``: what the images were.
    """

    passed: bool
    reference: str = ""
    runtime: str = ""
    data: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    kept_failed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: copy.deepcopy(v) for k, v in data.items() if k in known}
        figures = dict(kwargs.get("figures") or {})
        figures.update({k: v for k, v in data.items() if k not in known})  # flat 0.2 style figures
        kwargs["figures"] = figures
        kwargs["passed"] = bool(data.get("passed", True))
        return cls(**kwargs)


@dataclass
class Quantization:
    """How a quantized artifact was made: the quantizer, its options, the calibration data."""

    quantizer: str
    options: dict[str, Any] = field(default_factory=dict)
    #: calibration provenance, e.g. ``{"description": ..., "images": 300, "source": ..., "sha256": ...}``
    calibration: Optional[dict[str, Any]] = None
    stn_in_float: Optional[bool] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quantization:
        data = dict(copy.deepcopy(data))
        quantizer = str(data.pop("quantizer", data.pop("tool", "unknown")))
        calibration = data.pop("calibration", None)
        if isinstance(calibration, str):  # 0.2: a description string
            calibration = {"description": calibration}
        stn_in_float = data.pop("stn_in_float", None)
        options = dict(data.pop("options", None) or {})
        options.update(data)  # 0.2 stored the options flat beside "tool"
        return cls(quantizer, options, calibration, stn_in_float)


@dataclass
class TensorRTInfo:
    """Engine facts: TensorRT version, GPU, compute capability, optimisation profile shapes.

    ``details`` keeps every other build fact (int8 mode, strongly typed, DLA core, JetPack,
    source ONNX and its SHA-256, ...); :meth:`to_dict` writes them beside the named fields.
    """

    version: str
    gpu: Optional[str] = None
    compute_capability: Optional[str] = None
    #: ``{"min": [N, *input_shape], "opt": [...], "max": [...]}`` (the spec's input shape)
    profile_shapes: Optional[dict[str, list[int]]] = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "gpu": self.gpu,
            "compute_capability": self.compute_capability,
            "profile_shapes": copy.deepcopy(self.profile_shapes),
        }
        out.update(copy.deepcopy(self.details))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorRTInfo:
        data = dict(copy.deepcopy(data))
        profile = data.pop("profile_shapes", None)
        if profile is None:
            profile = data.pop("profile", None)  # 0.2 name
        return cls(
            version=str(data.pop("version", "unknown")),
            gpu=data.pop("gpu", None),
            compute_capability=data.pop("compute_capability", None),
            profile_shapes=profile,
            details=data,
        )


def _default_preprocessing() -> dict[str, Any]:
    return copy.deepcopy(PREPROCESSING_SPEC)


@dataclass
class ArtifactMetadata:
    """The typed, versioned record every EmoNeXt artifact carries (see the module docstring).

    ``format``: ``"onnx"``, ``"openvino-ir"``, ``"tensorrt-engine"``, ``"pytorch"``.
    ``precision``: what the file holds (``"fp32"``, ``"fp16"``, ``"fp16-mixed"``, ``"int8"``,
    ``"int8-qdq"``, ``"fp16+int8"``...); ``inference_precision``: what the runtime is meant to
    compute in where that differs (OpenVINO ``"f32"`` for the float layers of an INT8 IR).
    ``source``: provenance of the weights (``checkpoint``, ``sha256``, ``weights``, and for
    artifacts made from another artifact ``onnx``/``onnx_sha256`` and ``upstream``).
    ``artifact_sha256``: ``{file basename: sha256}`` for every file of the artifact; only the
    sidecar/manifest carries it. ``fidelity``: the gate result (``None``: never gated).
    Unknown keys of a newer/older writer are kept in ``extra`` and written back unchanged.
    """

    format: Optional[str] = None
    precision: Optional[str] = None
    labels: list[str] = field(default_factory=list)
    architecture: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=_default_preprocessing)
    inference_precision: Optional[str] = None
    quantization: Optional[Quantization] = None
    stn_mode: Optional[str] = None
    block_layout: Optional[str] = None
    opset: Optional[int] = None
    batch: Union[str, int, None] = None
    input_name: Optional[str] = None
    output_name: Optional[str] = None
    input_shape: Optional[list[Any]] = None
    fidelity: Optional[GateResult] = None
    tensorrt: Optional[TensorRTInfo] = None
    artifact_sha256: dict[str, str] = field(default_factory=dict)
    package: str = "emonext-edge"
    package_version: str = field(default_factory=package_version)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # -- derived ---------------------------------------------------------------------
    @property
    def source_sha256(self) -> Optional[str]:
        """SHA-256 of what the weights came from: the checkpoint, else the source ONNX."""
        return self.source.get("sha256") or self.source.get("onnx_sha256")

    @property
    def verified(self) -> bool:
        """True when the artifact passed its fidelity gate (False: failed and kept, or never gated)."""
        return self.fidelity is not None and self.fidelity.passed

    # -- 0.3 dict access (``rt.metadata["precision"]``), deprecated: removal 0.5 ------------
    def __getitem__(self, key: str) -> Any:
        warn_deprecated("dict access to the metadata record (meta[key], meta.get)",
                        "its attributes (meta.precision) or meta.to_dict()", "0.5")
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        warn_deprecated("dict access to the metadata record (meta[key], meta.get)",
                        "its attributes (meta.precision) or meta.to_dict()", "0.5")
        return self.to_dict().get(key, default)

    def replace(self, **changes: Any) -> ArtifactMetadata:
        """A deep copy with ``changes`` applied."""
        return dataclasses.replace(copy.deepcopy(self), **changes)

    def validate(self, where: str = "metadata") -> ArtifactMetadata:
        """Raise ``ModelFileError`` unless the record can describe an artifact (writers call this)."""
        if self.format not in RECORD_FORMATS:
            raise ModelFileError(f"{where}: format must be one of {list(RECORD_FORMATS)}, got {self.format!r}")
        if not self.precision:
            raise ModelFileError(f"{where}: precision is not set")
        validate_labels(self.labels, where, ModelFileError)
        if self.format == ENGINE_FORMAT and self.tensorrt is None:
            raise ModelFileError(f"{where}: a TensorRT engine manifest needs the tensorrt section")
        return self

    # -- dict form (the JSON every carrier stores) ------------------------------------
    def to_dict(self, *, embedded: bool = False) -> dict[str, Any]:
        """JSON-ready dict; ``embedded=True`` leaves out ``artifact_sha256`` (ONNX props, rt_info)."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "package": self.package,
            "package_version": self.package_version,
            "format": self.format,
            "precision": self.precision,
            "inference_precision": self.inference_precision,
            "labels": list(self.labels),
            "preprocessing": copy.deepcopy(self.preprocessing),
            "architecture": copy.deepcopy(self.architecture),
            "source": copy.deepcopy(self.source),
            "stn_mode": self.stn_mode,
            "block_layout": self.block_layout,
            "opset": self.opset,
            "batch": self.batch,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "input_shape": copy.deepcopy(self.input_shape),
            "quantization": self.quantization.to_dict() if self.quantization else None,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "tensorrt": self.tensorrt.to_dict() if self.tensorrt else None,
        }
        out = {k: v for k, v in out.items() if v is not None}
        if self.artifact_sha256 and not embedded:
            out["artifact_sha256"] = dict(self.artifact_sha256)
            out[RECORD_SHA256_KEY] = record_digest(out)
        for key, value in self.extra.items():
            if key != RECORD_SHA256_KEY:
                out.setdefault(key, copy.deepcopy(value))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "metadata") -> ArtifactMetadata:
        """Parse a record written by this version or by 0.2; ``ModelFileError`` names ``where``."""
        if not isinstance(data, Mapping):
            raise ModelFileError(f"{where}: metadata must be a JSON object, got {type(data).__name__}")
        check_depth(data, where)
        d = dict(copy.deepcopy(dict(data)))
        labels = d.pop("labels", None)
        if not isinstance(labels, list) or not labels:
            raise ModelFileError(f"{where}: metadata has no 'labels' list of strings")
        validate_labels(labels, where, ModelFileError)
        d.pop(RECORD_SHA256_KEY, None)  # recomputed by to_dict whenever artifact_sha256 is written
        version = d.pop("schema_version", None)
        legacy = d.pop("format_version", None)
        if version is None:
            version = 1 if legacy is not None or "verification" in d else SCHEMA_VERSION
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            log.warning("%s: metadata schema version %r is newer than this reader (%d); reading known fields",
                        where, version, SCHEMA_VERSION)
        meta = cls(labels=list(labels))
        meta.schema_version = SCHEMA_VERSION
        for name in ("format", "precision", "inference_precision", "stn_mode", "block_layout", "opset",
                     "batch", "input_name", "output_name", "input_shape", "package", "package_version"):
            if name in d:
                setattr(meta, name, d.pop(name))
        for name in ("architecture", "source", "preprocessing", "artifact_sha256"):
            value = d.pop(name, None)
            if value is not None:
                if not isinstance(value, dict):
                    raise ModelFileError(f"{where}: metadata field {name!r} must be an object, got {value!r}")
                setattr(meta, name, value)
        gate = d.pop("fidelity", None)
        verification = d.pop("verification", None)  # 0.2: the ONNX exporter's ORT-vs-PyTorch check
        if gate is not None:
            meta.fidelity = GateResult.from_dict(gate)
        elif isinstance(verification, Mapping):
            rest = dict(verification)
            meta.fidelity = GateResult(
                passed=True,
                reference=str(rest.pop("reference", "")),
                runtime=str(rest.pop("runtime", "")),
                data=str(rest.pop("images", "")),
                figures=rest,
            )
        quant = d.pop("quantization", None)
        quantizer = d.pop("quantizer", None)  # 0.2 Q/DQ ONNX: a bare string
        if isinstance(quant, Mapping):
            meta.quantization = Quantization.from_dict(quant)
        elif quantizer is not None:
            meta.quantization = Quantization(str(quantizer))
        trt = d.pop("tensorrt", None)
        if isinstance(trt, Mapping):
            meta.tensorrt = TensorRTInfo.from_dict(trt)
        meta.extra = d
        return meta

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


MetadataLike = Union[ArtifactMetadata, _Mapping[str, Any]]


def as_metadata(meta: MetadataLike, where: str = "metadata") -> ArtifactMetadata:
    return meta if isinstance(meta, ArtifactMetadata) else ArtifactMetadata.from_dict(meta, where)


def _embedded_dict(meta: MetadataLike) -> dict[str, Any]:
    if isinstance(meta, ArtifactMetadata):
        return meta.to_dict(embedded=True)
    return {k: v for k, v in meta.items() if k not in ("artifact_sha256", RECORD_SHA256_KEY)}


# --------------------------------------------------------------------------- sidecar / manifest


def write_sidecar(artifact: str | os.PathLike, meta: MetadataLike) -> Path:
    """Write the JSON sidecar of ``artifact`` atomically; returns its path."""
    from .fileio import write_json_atomic

    path = sidecar_path(artifact)
    data = meta.to_dict() if isinstance(meta, ArtifactMetadata) else dict(meta)
    if data.get("artifact_sha256"):
        data[RECORD_SHA256_KEY] = record_digest(data)
    write_json_atomic(path, data)
    return path


def _load_json(path: Path) -> Any:
    return read_json_file(path)


def read_sidecar_metadata(artifact: str | os.PathLike) -> Optional[ArtifactMetadata]:
    """The sidecar of ``artifact`` as a record; ``None`` when there is none."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    return ArtifactMetadata.from_dict(_load_json(path), str(path))


def write_engine_manifest(engine: str | os.PathLike, meta: ArtifactMetadata) -> Path:
    """Write the manifest of a TensorRT engine (``format`` must be ``tensorrt-engine`` with a ``tensorrt`` section)."""
    meta.validate(str(sidecar_path(engine)))
    if meta.format != ENGINE_FORMAT:
        raise ModelFileError(f"{sidecar_path(engine)}: an engine manifest must say format {ENGINE_FORMAT!r}, "
                             f"not {meta.format!r}")
    return write_sidecar(engine, meta)


def read_engine_manifest(engine: str | os.PathLike) -> Optional[ArtifactMetadata]:
    """The manifest of an engine; a 0.2 manifest (the FP32 ONNX sidecar plus ``tensorrt``) is
    read as the engine it describes: format ``tensorrt-engine``, precision from its build."""
    return _as_engine_record(read_sidecar_metadata(engine), engine)


def _as_engine_record(meta: Optional[ArtifactMetadata], engine: str | os.PathLike) -> Optional[ArtifactMetadata]:
    if meta is None:
        return None
    if meta.tensorrt is not None and meta.format != ENGINE_FORMAT:
        built = meta.tensorrt.details.get("precision")
        log.info("%s: 0.2 engine manifest (format %r); read as a %s engine", sidecar_path(engine), meta.format,
                 built or "?")
        meta.format = ENGINE_FORMAT
        if built:
            meta.precision = str(built)
    return meta


# --------------------------------------------------------------------------- string maps (ONNX, rt_info)


def to_string_map(meta: MetadataLike) -> dict[str, str]:
    """Flatten metadata into ``emonext.<key>`` -> JSON string (ONNX metadata_props); no ``artifact_sha256``."""
    return {METADATA_PREFIX + k: json.dumps(v) for k, v in _embedded_dict(meta).items()}


def from_string_map(props: Mapping[str, str]) -> Optional[dict[str, Any]]:
    """Inverse of :func:`to_string_map` (also accepts flattened rt_info ``emonext.<key>``); ``None`` if empty."""
    out = {}
    for k, v in props.items():
        if k.startswith(METADATA_PREFIX):
            try:
                out[k[len(METADATA_PREFIX):]] = json.loads(v)
            except RecursionError:
                raise ModelFileError(f"embedded metadata {k!r} is nested too deeply to parse") from None
            except ValueError:
                out[k[len(METADATA_PREFIX):]] = v
    check_depth(out, "embedded metadata")
    return out or None


def write_onnx_metadata(model: Any, meta: MetadataLike) -> None:
    """Replace the ``emonext.*`` entries of an ``onnx.ModelProto``'s ``metadata_props`` (others are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    for key, value in keep + list(to_string_map(meta).items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_onnx_metadata(model_or_path: Any) -> Optional[ArtifactMetadata]:
    """The record embedded in an ONNX model (a path, an ``onnx.ModelProto`` or a props mapping)."""
    where = "ONNX metadata_props"
    if isinstance(model_or_path, Mapping):
        props = dict(model_or_path)
    else:
        if isinstance(model_or_path, (str, os.PathLike)):
            import onnx

            where = str(model_or_path)
            try:
                model_or_path = onnx.load(str(model_or_path), load_external_data=False)
            except Exception as exc:  # noqa: BLE001 - DecodeError and friends
                raise ModelFileError(f"{where}: not a readable ONNX model ({exc})") from None
        props = {p.key: p.value for p in model_or_path.metadata_props}
    data = from_string_map(props)
    return ArtifactMetadata.from_dict(data, where) if data and data.get("labels") else None


def _ir_root(path: Path) -> Any:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such OpenVINO IR file")
    try:
        return ET.parse(path)
    except ET.ParseError as exc:
        raise ModelFileError(f"{path}: not a valid OpenVINO IR XML ({exc})") from None


def read_ir_rt_info(xml_path: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The raw ``emonext`` rt_info section of an IR XML as a dict (no OpenVINO import, no weights).

    Accepts the nested ``emonext/<key>`` layout and flat ``emonext.<key>`` keys.
    """
    path = Path(xml_path)
    root = _ir_root(path).getroot()
    meta: dict[str, Any] = {}
    rt_info = root.find("rt_info")
    if rt_info is None:
        return None
    for child in rt_info:
        if child.tag == RT_INFO_SECTION:
            items = [(c.tag, c.get("value")) for c in child]
        elif child.tag.startswith(RT_INFO_SECTION + "."):
            items = [(child.tag[len(RT_INFO_SECTION) + 1:], child.get("value"))]
        else:
            continue
        for key, raw in items:
            if raw is None:
                continue
            try:
                meta[key] = json.loads(raw)
            except RecursionError:
                raise ModelFileError(f"{path}: rt_info entry {key!r} is nested too deeply to parse") from None
            except ValueError:
                meta[key] = raw
    check_depth(meta, str(path))
    return meta or None


def read_ir_metadata(xml_path: str | os.PathLike) -> Optional[ArtifactMetadata]:
    """The record embedded in an IR's ``rt_info`` (``None`` when it has none)."""
    data = read_ir_rt_info(xml_path)
    return ArtifactMetadata.from_dict(data, str(xml_path)) if data and data.get("labels") else None


def _indent(elem: ET.Element, space: str, level: int) -> None:
    """``ElementTree.indent`` (Python 3.9+), the same whitespace, for Python 3.8 (JetPack 5)."""
    if hasattr(ET, "indent"):
        ET.indent(elem, space=space, level=level)  # novermin (guarded: 3.9+)
        return
    indentations = ["\n" + level * space]

    def children(e: ET.Element, lvl: int) -> None:
        if len(indentations) <= lvl + 1:
            indentations.append(indentations[lvl] + space)
        inner = indentations[lvl + 1]
        if not e.text or not e.text.strip():
            e.text = inner
        child = None
        for child in e:
            if len(child):
                children(child, lvl + 1)
            if not child.tail or not child.tail.strip():
                child.tail = inner
        if child is not None and not (child.tail or "").strip():
            child.tail = indentations[lvl]

    if len(elem):
        children(elem, 0)


def write_ir_metadata(xml_path: str | os.PathLike, meta: MetadataLike) -> None:
    """Store the record in the IR XML's ``rt_info`` as ``emonext/<key>`` = JSON string.

    Edits only the XML (the ``.bin`` weights are untouched), replacing any earlier
    ``emonext`` section, so metadata can be finalised after the IR was verified.
    """
    path = Path(xml_path)
    tree = _ir_root(path)
    root = tree.getroot()
    rt_info = root.find("rt_info")
    if rt_info is None:
        rt_info = ET.SubElement(root, "rt_info")
    for child in list(rt_info):
        if child.tag == RT_INFO_SECTION or child.tag.startswith(RT_INFO_SECTION + "."):
            rt_info.remove(child)
    section = ET.SubElement(rt_info, RT_INFO_SECTION)
    for key, value in _embedded_dict(meta).items():
        ET.SubElement(section, key, {"value": json.dumps(value)})
    _indent(rt_info, space="\t", level=1)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def set_ov_model_metadata(model: Any, meta: MetadataLike) -> None:
    """Same layout as :func:`write_ir_metadata`, on an in-memory ``ov.Model`` (before ``save_model``)."""
    for key, value in _embedded_dict(meta).items():
        model.set_rt_info(json.dumps(value), [RT_INFO_SECTION, key])


# --------------------------------------------------------------------------- the one reader


def read_metadata(
    artifact: str | os.PathLike,
    *,
    sidecar: Any = NOT_READ,
    embedded: Optional[Mapping[str, Any]] = None,
) -> Optional[ArtifactMetadata]:
    """The record of any artifact: its sidecar/manifest, else the embedded carrier, else ``None``.

    Which carrier a suffix has comes from :mod:`emonext_edge.formats`: an engine
    (``.engine``/``.plan``/``.trt``) has its manifest only; an ONNX file its sidecar, then
    ``metadata_props``; an IR its sidecar, then ``rt_info``. ``sidecar``: the sidecar record
    when the caller already parsed it (``None``: known to be absent), so one load parses it
    once; ``embedded``: the embedded record as the dict the caller already holds (a backend's
    ONNX Runtime session or OpenVINO model), so the model file is not read again. Raises
    ``ModelFileError`` for a malformed record (never guesses).
    """
    path = Path(artifact)
    fmt = format_for(path)
    if fmt is not None and fmt.record is None:  # a checkpoint: a .json beside it is no record
        meta = None
    else:
        meta = read_sidecar_metadata(path) if sidecar is NOT_READ else sidecar
    if fmt is not None and fmt.record == RECORD_MANIFEST:
        return _as_engine_record(meta, path)
    if meta is not None:
        return meta
    if fmt is None or fmt.embedded is None:
        return None
    if embedded is not None:
        return ArtifactMetadata.from_dict(embedded, f"{path} ({fmt.embedded})") if embedded.get("labels") else None
    if not path.is_file():
        return None
    if fmt is by_name("onnx"):
        return read_onnx_metadata(path)
    if fmt is by_name("openvino-ir"):
        return read_ir_metadata(path)
    return None


# --------------------------------------------------------------------------- 0.2 dict helpers


def read_sidecar(artifact: str | os.PathLike) -> Optional[dict[str, Any]]:
    """Deprecated (removal: 0.5): the sidecar as the raw dict it holds. Use :func:`read_metadata`
    (the typed record) or ``read_json_file(sidecar_path(artifact))`` (the raw JSON)."""
    warn_deprecated("emonext_edge.metadata.read_sidecar", "read_metadata() (typed) or read_json_file(sidecar_path())",
                    "0.5")
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    data = _load_json(path)
    if not isinstance(data, dict) or "labels" not in data:
        raise ModelFileError(f"{path}: metadata sidecar has no 'labels' list")
    return data


def labels_for(meta: Optional[ArtifactMetadata], num_classes: int, where: str) -> tuple[str, ...]:
    """Labels from the artifact's record; the ImageFolder default only when there is no record
    and the model has 7 outputs (``class_<i>`` for another width). ``ModelFileError`` when the
    record lists another number of labels than the model outputs."""
    if meta is not None and meta.labels:
        labels = validate_labels(meta.labels, where, ModelFileError)
        if len(labels) != num_classes:
            raise ModelFileError(f"{where}: metadata lists {len(labels)} labels but the model outputs {num_classes}")
        return labels
    if num_classes == len(DEFAULT_LABELS):
        return tuple(DEFAULT_LABELS)
    return tuple(f"class_{i}" for i in range(num_classes))


def labels_from(meta: Optional[MetadataLike], num_classes: int, where: str) -> tuple[str, ...]:
    """Deprecated (removal: 0.5): :func:`labels_for` over a record or a 0.2 metadata dict."""
    warn_deprecated("emonext_edge.metadata.labels_from", "labels_for(ArtifactMetadata, ...)", "0.5")
    if meta is None or isinstance(meta, ArtifactMetadata):
        return labels_for(meta, num_classes, where)
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if labels:
        return labels_for(ArtifactMetadata(labels=list(validate_labels(labels, where, ModelFileError))), num_classes,
                          where)
    return labels_for(None, num_classes, where)
