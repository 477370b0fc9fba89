"""Write a Triton model repository from EmoNeXt artifacts, refusing what Triton would reject.

Layout (``REPO`` is what ``tritonserver --model-repository`` takes)::

    REPO/emonext/config.pbtxt        the classifier (native backend or python backend)
    REPO/emonext/labels.txt          one label per line: Triton's classification extension
    REPO/emonext/emonext.json        our artifact metadata, beside the versions
    REPO/emonext/1/model.onnx        | model.xml + model.bin | model.plan (+ model.json sidecar)
    REPO/emonext/1/model.py          python backend only: runs our Runtime backend inside Triton
    REPO/emonext_preprocess/...      --preprocess: UINT8 image -> float32 spec.input_shape (python)
    REPO/emonext_postprocess/...     --preprocess: logits -> top label + score (python)
    REPO/emonext_pipeline/...        --preprocess: ensemble image -> logits, label, score

Every ``config.pbtxt`` is built as a ``model_config_pb2.ModelConfig`` message (tritonclient's
copy of Triton's schema), written with ``text_format`` and parsed back before it is kept
(:func:`parse_config`). The metadata travels in the config as the string parameter
``emonext_metadata`` (JSON) so clients read labels and preprocessing from the server.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from emonext_edge.errors import BackendUnavailableError, ModelFileError, UsageError
from emonext_edge.fileio import sha256_file
from emonext_edge.formats import ONNX, OPENVINO_IR, TENSORRT_ENGINE, ArtifactFormat, format_for
from emonext_edge.labels import DEFAULT_LABELS
from emonext_edge.metadata import ArtifactMetadata, read_metadata
from emonext_edge.preprocess import SPEC, PreprocessSpec, spec_of

from ..pipeline import Stage

log = logging.getLogger(__name__)

CLASSIFIER = "emonext"
PREPROCESS = "emonext_preprocess"
POSTPROCESS = "emonext_postprocess"
PIPELINE = "emonext_pipeline"
LABELS_FILE = "labels.txt"
METADATA_FILE = "emonext.json"
#: config parameter keys (string parameters) read by our python models and the client backend
PARAM_METADATA = "emonext_metadata"
PARAM_ARTIFACT = "emonext_artifact"
PARAM_OPTIONS = "emonext_backend_options"
PARAM_LABELS = "emonext_labels"
#: the preprocessing spec (``PreprocessSpec.to_dict()`` JSON) the python preprocessing model follows
PARAM_PREPROCESSING = "emonext_preprocessing"

#: artifact kind -> its row of the formats table (emonext_edge/formats.py)
_FORMAT_OF_KIND = {"onnx": ONNX, "openvino": OPENVINO_IR, "tensorrt": TENSORRT_ENGINE}


def _native(fmt: ArtifactFormat) -> tuple[str, str, str]:
    return fmt.triton_file or "", fmt.triton_platform or "", fmt.triton_backend or ""


#: artifact kind -> (file name in the version folder, platform, backend) for Triton's own backends
NATIVE = {kind: _native(fmt) for kind, fmt in _FORMAT_OF_KIND.items()}
PYTHON_MODELS = Path(__file__).with_name("python_models")
RELEASES_FILE = Path(__file__).with_name("tensorrt_releases.json")


def _pb() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise BackendUnavailableError(
            "writing Triton configs needs tritonclient's protobuf schema: pip install -e '.[triton]'"
        ) from None
    return model_config_pb2


@dataclass
class ArtifactInfo:
    """What the repository writer needs to know about one artifact (read without running it)."""

    path: Path
    kind: str  # "onnx" | "openvino" | "tensorrt"
    files: list[Path]  # every file of the artifact (xml + bin for IR)
    input_name: str
    output_name: str
    data_type: str  # TYPE_FP32 / TYPE_FP16
    batch: Optional[int]  # None: dynamic first dimension
    num_classes: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        labels = list(self.metadata.get("labels") or [])
        if labels and len(labels) != self.num_classes:
            raise ModelFileError(f"{self.path}: metadata lists {len(labels)} labels but the model outputs {self.num_classes}")
        if labels:
            return labels
        return list(DEFAULT_LABELS) if self.num_classes == len(DEFAULT_LABELS) else [f"class_{i}" for i in range(self.num_classes)]

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing the artifact records (the trained spec when it records none)."""
        return spec_of(self.metadata, str(self.path))


def _metadata(path: Path) -> dict[str, Any]:
    """The artifact's record (sidecar / manifest, else embedded) as a plain dict; ``{}`` when it has none."""
    meta = read_metadata(path)
    return meta.to_dict() if meta is not None else {}


def _profile(meta: dict[str, Any]) -> dict[str, Any]:
    trt = meta.get("tensorrt") or {}
    return dict(trt.get("profile_shapes") or trt.get("profile") or {})


def _check_input(path: Path, dims: Sequence[Optional[int]], meta: dict[str, Any]) -> Optional[int]:
    shape = spec_of(meta, str(path)).input_shape
    if len(dims) != 4 or list(dims[1:]) != list(shape):
        raise ModelFileError(f"{path}: input has shape {list(dims)}; expected [N, {', '.join(map(str, shape))}] "
                             "(its recorded preprocessing spec)")
    return dims[0]


def inspect_onnx(path: Path) -> ArtifactInfo:
    try:
        import onnx
    except ImportError:
        raise BackendUnavailableError(f"{path}: reading an ONNX file needs onnx (pip install -e '.[export]')") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  (onnx raises assorted types for a bad file)
        raise ModelFileError(f"{path}: not a readable ONNX file ({str(exc).strip()[:200]})") from None
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1 or not model.graph.output:
        raise ModelFileError(f"{path}: expected 1 input and 1 output, got {len(inputs)} and {len(model.graph.output)}")

    def dims(value: Any) -> list[Optional[int]]:
        return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]

    in_dims, out_dims = dims(inputs[0]), dims(model.graph.output[0])
    elem = inputs[0].type.tensor_type.elem_type
    types = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
    if elem not in types:
        raise ModelFileError(f"{path}: input {inputs[0].name!r} has element type {elem}; expected float or float16")
    meta = _metadata(path)
    classes = out_dims[-1] if out_dims and out_dims[-1] else len(meta.get("labels") or [])
    if not classes:
        raise ModelFileError(f"{path}: output {model.graph.output[0].name!r} has no static class dimension and no labels")
    return ArtifactInfo(path, "onnx", [path], inputs[0].name, model.graph.output[0].name, types[elem],
                        _check_input(path, in_dims, meta), classes, meta)


def inspect_ir(path: Path) -> ArtifactInfo:
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelFileError(f"{path}: the weights file {weights} is missing (an OpenVINO IR is an .xml plus its .bin)")
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailableError(f"{path}: reading an IR needs openvino (pip install -e '.[openvino]')") from None
    try:
        model = ov.Core().read_model(str(path), str(weights))
    except Exception as exc:  # noqa: BLE001  (openvino raises RuntimeError subclasses with engine internals)
        raise ModelFileError(f"{path}: not a readable OpenVINO IR ({str(exc).strip().splitlines()[0][:200]})") from None
    if len(model.inputs) != 1 or not model.outputs:
        raise ModelFileError(f"{path}: expected 1 input and 1 output, got {len(model.inputs)} and {len(model.outputs)}")
    shape = model.inputs[0].get_partial_shape()
    in_dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
    out = model.outputs[0].get_partial_shape()
    last = out[out.rank.get_length() - 1] if out.rank.is_static else None
    meta = _metadata(path)
    classes = last.get_length() if last is not None and last.is_static else len(meta.get("labels") or [])
    if not classes:
        raise ModelFileError(f"{path}: output shape {out} has no static class dimension and no labels")
    elem = model.inputs[0].get_element_type().get_type_name()
    types = {"f32": "TYPE_FP32", "f16": "TYPE_FP16"}
    if elem not in types:
        raise ModelFileError(f"{path}: input element type {elem}; expected f32 or f16")
    return ArtifactInfo(path, "openvino", [path, weights], model.inputs[0].get_any_name(),
                        model.outputs[0].get_any_name(), types[elem], _check_input(path, in_dims, meta), classes, meta)


def inspect_engine(path: Path) -> ArtifactInfo:
    """A TensorRT plan is opaque without TensorRT: everything comes from its sidecar manifest."""
    meta = _metadata(path)
    if not meta.get("tensorrt"):
        raise ModelFileError(
            f"{path}: no TensorRT manifest {path.with_suffix('.json').name} beside the engine; Triton needs the "
            "input/output names, the batch profile and the TensorRT version it records (python -m export.tensorrt writes it)"
        )
    profile = _profile(meta)
    if not all(k in profile for k in ("min", "max")):
        raise ModelFileError(f"{path}: manifest 'tensorrt.profile_shapes' needs 'min' and 'max' shapes, got {profile}")
    trt = meta["tensorrt"]
    labels = meta.get("labels") or []
    classes = int(meta.get("architecture", {}).get("num_classes") or len(labels))
    if not classes:
        raise ModelFileError(f"{path}: manifest has neither labels nor architecture.num_classes")
    dtype = "TYPE_FP16" if str(trt.get("input_dtype", "float32")) in ("float16", "half") else "TYPE_FP32"
    batch = None if profile["min"][0] != profile["max"][0] else int(profile["max"][0])
    _check_input(path, [batch, *profile["max"][1:]], meta)
    return ArtifactInfo(path, "tensorrt", [path], meta.get("input_name", "input"), meta.get("output_name", "logits"),
                        dtype, batch, classes, meta)


def inspect_artifact(path: str | os.PathLike) -> ArtifactInfo:
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"--artifact {p}: no such file")
    suffix = p.suffix.lower()
    fmt = format_for(p)
    if fmt in (ONNX, OPENVINO_IR, TENSORRT_ENGINE):
        from ..common import verify_source

        verify_source(p, "--artifact")  # what the sidecar records is what gets served
    if fmt is ONNX:
        return inspect_onnx(p)
    if fmt is OPENVINO_IR:
        return inspect_ir(p)
    if fmt is TENSORRT_ENGINE:
        return inspect_engine(p)
    raise ModelFileError(f"--artifact {p}: unknown kind {suffix or '(no suffix)'!r}; expected .onnx, .xml or .engine/.plan")


# -- Triton release -> TensorRT version --------------------------------------------------------
X86 = "x86_64 dGPU"
JETSON = "Jetson (aarch64 iGPU)"
#: compute capabilities of Jetson iGPUs (TX2 6.2, Xavier 7.2, Orin 8.7): an engine recorded with one was built on a Jetson
JETSON_COMPUTE = ("5.3", "6.2", "7.2", "8.7")


def tensorrt_releases() -> dict[str, str]:
    """``{"24.08": "10.3.0.26", ...}``: the TensorRT version in each x86_64 Triton container (see the file's source)."""
    return dict(json.loads(RELEASES_FILE.read_text())["releases"])


def jetson_releases() -> dict[str, dict[str, str]]:
    """``{"23.09-jetpack5.1.2": {"tensorrt": "8.5.2.2", "jetpack": "5.1.2", ...}}``: Triton's Jetson builds."""
    return {k: dict(v) for k, v in json.loads(RELEASES_FILE.read_text())["jetson_releases"].items()}


def engine_platform(trt: dict[str, Any]) -> str:
    """Where the manifest says the engine was built: Jetson when it records a JetPack (L4T) release or a Jetson
    GPU's compute capability, else an x86_64 dGPU (what export.tensorrt records: ``details.jetpack``, ``compute_capability``)."""
    details = trt.get("details") or {}
    jetpack = trt.get("jetpack") or details.get("jetpack")
    if jetpack or str(trt.get("compute_capability") or "") in JETSON_COMPUTE:
        return JETSON
    return X86


def _built_desc(trt: dict[str, Any]) -> str:
    details = trt.get("details") or {}
    parts = [f"TensorRT {trt.get('version') or 'unknown'}", f"compute {trt.get('compute_capability') or 'unknown'}"]
    if trt.get("gpu"):
        parts.insert(0, str(trt["gpu"]))
    jetpack = trt.get("jetpack") or details.get("jetpack")
    if jetpack:
        parts.append(f"L4T {jetpack}")
    return ", ".join(parts)


def check_engine_release(info: ArtifactInfo, release: Optional[str], max_batch: int,
                         compute_capability: Optional[str] = None) -> list[str]:
    """Refuse an engine Triton would not load; returns warnings for what cannot be checked."""
    trt = info.metadata["tensorrt"]
    profile = _profile(info.metadata)
    lo, hi = int(profile["min"][0]), int(profile["max"][0])
    needed_hi = max(max_batch, 1)
    if max_batch > 0 and (lo > 1 or hi < needed_hi):  # max_batch_size 0: a fixed profile, served as it is
        raise UsageError(
            f"--artifact {info.path}: the engine's optimization profile covers batch {lo}..{hi}, but "
            f"max_batch_size {max_batch} needs 1..{needed_hi}; rebuild with --min-batch 1 --max-batch {needed_hi} "
            f"or pass --max-batch {hi if lo <= 1 else 0}"
        )
    built = str(trt.get("version") or "")
    platform = engine_platform(trt)
    warnings: list[str] = []
    if compute_capability is not None and str(trt.get("compute_capability") or "") != str(compute_capability):
        raise UsageError(f"--artifact {info.path}: engine built for compute capability "
                         f"{trt.get('compute_capability') or 'unknown'} ({_built_desc(trt)}), but the server's GPU is "
                         f"{compute_capability}; TensorRT engines only run on the compute capability they were built for. "
                         "Rebuild it on the server's GPU")
    if release is None:
        return warnings + [(f"{info.path}: no --triton-release given; the engine ({_built_desc(trt)}, {platform}) must be "
                            "served by a Triton build for that platform whose TensorRT has the same version, or it will not load")]
    table = tensorrt_releases()
    jetson = jetson_releases()
    if release not in table and release not in jetson:
        raise UsageError(f"--triton-release {release}: not in {RELEASES_FILE.name} (x86_64 containers: "
                         f"{', '.join(sorted(table))}; Jetson builds: {', '.join(sorted(jetson))})")
    release_platform = JETSON if release in jetson else X86
    if platform != release_platform:
        others = sorted(jetson) if platform == JETSON else sorted(r for r, v in table.items()
                                                                    if v.split(".")[:2] == built.split(".")[:2])
        raise UsageError(
            f"--artifact {info.path}: engine built on a {platform} ({_built_desc(trt)}), but Triton {release} is the "
            f"{release_platform} build; a TensorRT engine only loads on the platform and GPU it was built on. Serve it with "
            f"a {platform} Triton ({', '.join(others) if others else 'none in the table'}) or rebuild the engine there")
    shipped = jetson[release]["tensorrt"] if release in jetson else table[release]
    if not built:
        raise UsageError(f"--artifact {info.path}: the manifest records no TensorRT version; cannot check it against "
                         f"Triton {release} (TensorRT {shipped})")
    if built.split(".")[:2] != shipped.split(".")[:2]:
        pool = {r: e["tensorrt"] for r, e in jetson.items()} if release_platform == JETSON else table
        matches = sorted(r for r, v in pool.items() if v.split(".")[:2] == built.split(".")[:2])
        raise UsageError(
            f"--artifact {info.path}: engine built with TensorRT {built}, but Triton {release} ships TensorRT {shipped}; "
            f"Triton would fail to deserialize it. Rebuild inside the {release} container or serve with "
            f"{', '.join(matches) if matches else 'a release with that TensorRT'}"
        )
    return warnings


# -- configs -----------------------------------------------------------------------------------
@dataclass
class RepositoryOptions:
    """How to write the repository (the CLI maps its flags onto this)."""

    max_batch: Optional[int] = None  # None: 8, but 0 for the native OpenVINO backend (see default_max_batch)
    instances: int = 1
    preprocess: bool = False
    python_backend: bool = False  # run our Runtime inside Triton's python backend (CPU hosts, the bundled server)
    triton_release: Optional[str] = None
    queue_delay_us: int = 2000
    kind: Optional[str] = None  # KIND_CPU / KIND_GPU; default: GPU for engines and ONNX Runtime, CPU otherwise
    tensorrt_ep: Optional[str] = None  # ONNX Runtime on GPU: "fp32" / "fp16" TensorRT execution provider precision
    compute_capability: Optional[str] = None  # engines: the serving GPU's, checked against the manifest
    backend_options: dict[str, Any] = field(default_factory=dict)  # python backend: open_backend(**options)
    version: int = 1

    @property
    def batch(self) -> int:
        """``max_batch`` once resolved per artifact (:func:`default_max_batch`; write_repository does it)."""
        if self.max_batch is None:
            raise UsageError("max_batch not resolved: call default_max_batch(info, options) first")
        return self.max_batch


DEFAULT_MAX_BATCH = 8


def default_max_batch(info: ArtifactInfo, opts: RepositoryOptions) -> int:
    """``max_batch_size`` when none is given: 0 for Triton's OpenVINO backend, else 8.

    The OpenVINO backend fails every execution whose batch is not exactly ``max_batch_size`` unless
    ``ENABLE_BATCH_PADDING`` is set (openvino_backend ``src/openvino.cc``, ``ModelInstanceState::
    ProcessRequests``: "expected requests with batch size '<max_batch_size>', got '<n>'"; reported as
    triton-inference-server/server#7363), so dynamic batching with ``max_batch_size: 8`` serves only full
    batches of 8. Its own test configs (``tests/configs/dynamic.pbtxt``) declare no ``max_batch_size`` and a
    ``-1`` batch dimension: each request runs at the batch it brings. Backend auto-complete would raise a 0
    to ``default-max-batch-size`` only when the IR's inputs carry a layout with a batch dimension
    (``ModelState::AutoCompleteBatching``); export.openvino sets no layout.
    """
    if opts.max_batch is not None:
        return opts.max_batch
    return 0 if info.kind == "openvino" and not opts.python_backend else DEFAULT_MAX_BATCH


def default_kind(info: ArtifactInfo, opts: RepositoryOptions) -> str:
    """``KIND_GPU`` for TensorRT plans and ONNX Runtime (a GPU server; ``--kind cpu`` for CPU-only hosts),
    ``KIND_CPU`` for OpenVINO and the python backend (our Runtime on CPU)."""
    if opts.kind:
        return opts.kind
    if opts.python_backend or info.kind == "openvino":
        return "KIND_CPU"
    return "KIND_GPU"


def preferred_sizes(max_batch: int) -> list[int]:
    sizes = [s for s in (2, 4, 8, 16, 32, 64) if s <= max_batch]
    return sorted(set(sizes[-2:] + ([max_batch] if max_batch > 1 else [])))


def _set_param(config: Any, key: str, value: str) -> None:
    config.parameters[key].string_value = value


def _dynamic_batching(config: Any, max_batch: int, delay_us: int) -> None:
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    config.dynamic_batching.preferred_batch_size.extend(preferred_sizes(max_batch))


def classifier_config(info: ArtifactInfo, opts: RepositoryOptions) -> Any:
    pb = _pb()
    config = pb.ModelConfig(name=CLASSIFIER, max_batch_size=opts.batch)
    if opts.python_backend:
        config.backend = "python"
        _set_param(config, PARAM_ARTIFACT, NATIVE[info.kind][0])
        _set_param(config, PARAM_OPTIONS, json.dumps(opts.backend_options))
    else:
        _, platform, backend = NATIVE[info.kind]
        if platform:
            config.platform = platform
        if backend:
            config.backend = backend
    batch_dims: list[int] = [] if opts.batch > 0 else [int(info.batch) if info.batch else -1]
    data_type = "TYPE_FP32" if opts.python_backend else info.data_type  # the python model casts to the artifact's type
    config.input.add(name=info.input_name, data_type=pb.DataType.Value(data_type), dims=[*batch_dims, *info.spec.input_shape])
    config.output.add(name=info.output_name, data_type=pb.DataType.Value("TYPE_FP32"),
                      dims=[*batch_dims, info.num_classes], label_filename=LABELS_FILE)
    kind = default_kind(info, opts)
    config.instance_group.add(count=opts.instances, kind=pb.ModelInstanceGroup.Kind.Value(kind))
    if opts.tensorrt_ep and not opts.python_backend:
        # onnxruntime_backend README "TensorRT Optimization" / src/onnxruntime.cc: gpu_execution_accelerator "tensorrt"
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = opts.tensorrt_ep.upper()
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
        accelerator.parameters["trt_engine_cache_enable"] = "1"
    if opts.batch > 1:
        _dynamic_batching(config, opts.batch, opts.queue_delay_us)
    _set_param(config, PARAM_METADATA, json.dumps(info.metadata, sort_keys=True))
    return config


def preprocess_config(opts: RepositoryOptions, max_batch: int, spec: PreprocessSpec = SPEC) -> Any:
    """The python preprocessing model: its output is ``spec.input_shape`` and it follows ``spec``
    (parameter :data:`PARAM_PREPROCESSING`, read by ``python_models/preprocess.py``)."""
    pb = _pb()
    config = pb.ModelConfig(name=PREPROCESS, backend="python", max_batch_size=max_batch)
    config.input.add(name="image", data_type=pb.DataType.Value("TYPE_UINT8"), dims=[-1, -1, -1])
    config.output.add(name="input", data_type=pb.DataType.Value("TYPE_FP32"), dims=list(spec.input_shape))
    config.instance_group.add(count=opts.instances, kind=pb.ModelInstanceGroup.Kind.Value("KIND_CPU"))
    _set_param(config, PARAM_PREPROCESSING, json.dumps(spec.to_dict(), sort_keys=True))
    return config


def postprocess_config(info: ArtifactInfo, opts: RepositoryOptions, max_batch: int) -> Any:
    pb = _pb()
    config = pb.ModelConfig(name=POSTPROCESS, backend="python", max_batch_size=max_batch)
    config.input.add(name="logits", data_type=pb.DataType.Value("TYPE_FP32"), dims=[info.num_classes])
    config.output.add(name="label", data_type=pb.DataType.Value("TYPE_STRING"), dims=[1])
    config.output.add(name="score", data_type=pb.DataType.Value("TYPE_FP32"), dims=[1])
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.Kind.Value("KIND_CPU"))
    _set_param(config, PARAM_LABELS, json.dumps(info.labels))
    return config


def pipeline_config(info: ArtifactInfo, max_batch: int) -> Any:
    pb = _pb()
    config = pb.ModelConfig(name=PIPELINE, platform="ensemble", max_batch_size=max_batch)
    config.input.add(name="image", data_type=pb.DataType.Value("TYPE_UINT8"), dims=[-1, -1, -1])
    config.output.add(name="logits", data_type=pb.DataType.Value("TYPE_FP32"), dims=[info.num_classes])
    config.output.add(name="label", data_type=pb.DataType.Value("TYPE_STRING"), dims=[1])
    config.output.add(name="score", data_type=pb.DataType.Value("TYPE_FP32"), dims=[1])
    steps = config.ensemble_scheduling.step
    pre = steps.add(model_name=PREPROCESS, model_version=-1)
    pre.input_map["image"] = "image"
    pre.output_map["input"] = "preprocessed"
    cls = steps.add(model_name=CLASSIFIER, model_version=-1)
    cls.input_map[info.input_name] = "preprocessed"
    cls.output_map[info.output_name] = "logits"
    post = steps.add(model_name=POSTPROCESS, model_version=-1)
    post.input_map["logits"] = "logits"
    post.output_map["label"] = "label"
    post.output_map["score"] = "score"
    _set_param(config, PARAM_METADATA, json.dumps(info.metadata, sort_keys=True))
    return config


def config_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str, where: str = "config.pbtxt") -> Any:
    """Parse ``config.pbtxt`` text into a ``ModelConfig`` (``ModelFileError`` naming the file on a typo)."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, _pb().ModelConfig())
    except text_format.ParseError as exc:
        raise ModelFileError(f"{where}: not a valid Triton model configuration ({exc})") from None


def check_config(config: Any, where: str) -> None:
    """Checks Triton makes at load time that the schema alone does not catch."""
    if not config.name:
        raise ModelFileError(f"{where}: model name is empty")
    if not (config.platform or config.backend):
        raise ModelFileError(f"{where}: neither platform nor backend is set")
    if config.max_batch_size < 0:
        raise ModelFileError(f"{where}: max_batch_size must be >= 0")
    if config.max_batch_size == 0 and config.HasField("dynamic_batching"):
        raise ModelFileError(f"{where}: dynamic_batching needs max_batch_size > 0")
    for pref in config.dynamic_batching.preferred_batch_size:
        if pref > config.max_batch_size:
            raise ModelFileError(f"{where}: preferred_batch_size {pref} exceeds max_batch_size {config.max_batch_size}")
    for tensor in [*config.input, *config.output]:
        if not tensor.dims:
            raise ModelFileError(f"{where}: tensor {tensor.name!r} has no dims")


# -- writing -----------------------------------------------------------------------------------
def _write_model(root: Path, config: Any) -> Path:
    model_dir = root / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    text = config_text(config)
    where = str(model_dir / "config.pbtxt")
    check_config(parse_config(text, where), where)
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


def _copy_python_model(model_dir: Path, source: str, version: int) -> None:
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PYTHON_MODELS / source, version_dir / "model.py")


def refuse_unservable(info: ArtifactInfo, opts: RepositoryOptions) -> list[str]:
    """Raise ``UsageError`` for what Triton would reject; returns warnings."""
    if opts.batch < 0:
        raise UsageError(f"--max-batch {opts.batch}: expected >= 0 (0: no batching, the model's own batch)")
    if opts.instances < 1:
        raise UsageError(f"--instances {opts.instances}: expected >= 1")
    if opts.python_backend and info.kind == "tensorrt":
        raise UsageError(f"--artifact {info.path}: the python-backend variant runs ONNX Runtime or OpenVINO on CPU; "
                         "serve a TensorRT engine with Triton's tensorrt_plan backend (drop --python-backend)")
    if opts.batch > 0 and info.batch is not None and info.kind != "tensorrt":
        raise UsageError(
            f"--artifact {info.path}: the model has a fixed batch of {info.batch} but max_batch_size is {opts.batch}; "
            "Triton requires the first dimension to be -1 (dynamic) when max_batch_size > 0. Re-export with "
            "--batch dynamic, or pass --max-batch 0 to serve the fixed batch as is"
        )
    native_ov = info.kind == "openvino" and not opts.python_backend
    if native_ov and default_kind(info, opts) != "KIND_CPU":
        raise UsageError(
            f"--kind gpu: Triton's OpenVINO backend accepts only KIND_CPU instances (\"supports only Kind CPU and AUTO\", "
            f"openvino_backend src/openvino.cc) for {info.path.name}; drop --kind (OpenVINO picks its device with the "
            "TARGET_DEVICE parameter)")
    if native_ov and opts.batch > 0:
        raise UsageError(
            f"--artifact {info.path}: Triton's OpenVINO backend fails every batch that is not exactly max_batch_size "
            f"({opts.batch}) unless ENABLE_BATCH_PADDING (openvino_backend src/openvino.cc; server#7363); "
            "drop --max-batch (0 with a -1 batch dimension, the form the backend's tests use) or use --python-backend")
    if opts.batch == 0 and info.batch is None and not native_ov:
        raise UsageError(f"--artifact {info.path}: the model has a dynamic batch; pass --max-batch N >= 1 "
                         "(--max-batch 0 is for fixed-batch models)")
    if opts.batch == 0 and opts.preprocess:
        raise UsageError("--preprocess needs --max-batch >= 1 (the ensemble batches the preprocessed images)"
                         + ("; the OpenVINO backend serves without Triton batching, so write the ensemble with "
                            "--python-backend" if native_ov else ""))
    if opts.tensorrt_ep is not None:
        if opts.tensorrt_ep not in ("fp32", "fp16"):
            raise UsageError(f"--tensorrt-ep {opts.tensorrt_ep}: expected fp32 or fp16")
        if info.kind != "onnx" or opts.python_backend:
            raise UsageError("--tensorrt-ep is an option of Triton's ONNX Runtime backend: give an .onnx artifact "
                             "without --python-backend")
        if default_kind(info, opts) != "KIND_GPU":
            raise UsageError("--tensorrt-ep needs GPU instances (drop --kind cpu)")
    if info.kind == "tensorrt":
        return check_engine_release(info, opts.triton_release, opts.batch, opts.compute_capability)
    if opts.triton_release is not None:
        return [f"--triton-release {opts.triton_release} only checks TensorRT engines; {info.path.name} is {info.kind}"]
    return []


def write_repository(artifacts: Sequence[str | os.PathLike], output: str | os.PathLike,
                     opts: Optional[RepositoryOptions] = None) -> dict[str, Any]:
    """Write the repository for ``artifacts`` (one per version: 1, 2, ...) into ``output``.

    The repository is built in a temporary folder beside ``output`` and moved into place, so a
    refused artifact leaves nothing behind. Returns a summary (models, versions, warnings).
    """
    opts = opts or RepositoryOptions()
    if not artifacts:
        raise UsageError("--artifact: give at least one artifact (.onnx, .xml or .engine/.plan)")
    infos = [inspect_artifact(a) for a in artifacts]
    opts = replace(opts, max_batch=default_max_batch(infos[0], opts))
    warnings: list[str] = []
    for info in infos:
        warnings += refuse_unservable(info, opts)
    first = infos[0]
    for info in infos[1:]:
        if info.kind != first.kind or (info.input_name, info.output_name, info.num_classes) != (
                first.input_name, first.output_name, first.num_classes):
            raise UsageError(f"--artifact {info.path}: versions of one model must share kind, input/output names and "
                             f"classes ({first.path.name}: {first.kind} {first.input_name}->{first.output_name} "
                             f"[{first.num_classes}]; this one: {info.kind} {info.input_name}->{info.output_name} "
                             f"[{info.num_classes}])")
        if info.labels != first.labels:
            raise UsageError(f"--artifact {info.path}: labels {info.labels} differ from {first.path.name}'s {first.labels}")
        if info.spec != first.spec:
            raise UsageError(f"--artifact {info.path}: preprocessing {info.spec} differs from {first.path.name}'s "
                             f"{first.spec}; one model's versions share one input")

    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out / CLASSIFIER / "config.pbtxt").is_file():
        raise UsageError(f"--output {out}: exists and is not an empty folder or a repository written by this tool")
    with Stage(out.parent) as stage:  # removes what a killed earlier run left beside it
        tmp = stage.file(out.name)
        tmp.mkdir()
        config = classifier_config(first, opts)
        if len(infos) > 1:  # every version served, each addressable (grpc://host:8001/emonext/2)
            config.version_policy.all.SetInParent()
        model_dir = _write_model(tmp, config)
        (model_dir / LABELS_FILE).write_text("\n".join(first.labels) + "\n")
        (model_dir / METADATA_FILE).write_text(json.dumps(first.metadata, indent=2, sort_keys=True) + "\n")
        for number, info in enumerate(infos, start=opts.version):
            version_dir = model_dir / str(number)
            version_dir.mkdir()
            name = NATIVE[info.kind][0]
            targets = [version_dir / name] + ([version_dir / "model.bin"] if info.kind == "openvino" else [])
            for src, dst in zip(info.files, targets):
                shutil.copyfile(src, dst)
            # the artifact's own record, its file names as they are in the repository (the one writer: ArtifactMetadata)
            meta = ArtifactMetadata.from_dict(dict(info.metadata, labels=info.labels), where=str(info.path))
            meta.artifact_sha256 = {dst.name: sha256_file(dst) for dst in targets}
            meta.extra["triton_source"] = {src.name: str(src.resolve()) for src in info.files}
            (version_dir / "model.json").write_text(meta.to_json())
            if opts.python_backend:
                shutil.copyfile(PYTHON_MODELS / "classifier.py", version_dir / "model.py")
        models = [CLASSIFIER]
        if opts.preprocess:
            pre = _write_model(tmp, preprocess_config(opts, opts.batch, first.spec))
            _copy_python_model(pre, "preprocess.py", 1)
            post = _write_model(tmp, postprocess_config(first, opts, opts.batch))
            _copy_python_model(post, "postprocess.py", 1)
            pipe = _write_model(tmp, pipeline_config(first, opts.batch))
            (pipe / "1").mkdir()
            models += [PREPROCESS, POSTPROCESS, PIPELINE]
        stage.commit_dir(out.name)  # the old repository moves into the stage and goes with it
    for line in warnings:
        log.debug("%s", line)  # returned in the summary; the CLI prints them (once)
    return {
        "repository": str(out),
        "models": models,
        "versions": list(range(opts.version, opts.version + len(infos))),
        "kind": first.kind,
        "serving": "python backend (our Runtime inside Triton)" if opts.python_backend else f"Triton {first.kind} backend",
        "max_batch_size": opts.batch,
        "instance_kind": default_kind(first, opts),
        "platform": engine_platform(first.metadata["tensorrt"]) if first.kind == "tensorrt" else None,
        "warnings": warnings,
    }


def read_repository_configs(repo: str | os.PathLike) -> dict[str, Any]:
    """Parse every ``*/config.pbtxt`` under ``repo`` (name -> ModelConfig)."""
    out = {}
    for path in sorted(Path(repo).glob("*/config.pbtxt")):
        out[path.parent.name] = parse_config(path.read_text(), str(path))
    return out
