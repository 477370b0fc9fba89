"""OpenVINO IR export: FP32, FP16-compressed and NNCF INT8 (``python -m export.openvino``).

The source (checkpoint, ONNX file or the seeded default model) is first turned into an
ONNX graph and then into an ``ov.Model`` with ``ov.convert_model``. Going through ONNX
(instead of converting the torch module directly) gives one conversion path for
``--checkpoint`` and ``--onnx``, the same graph and node names the ONNX Runtime artifact
has, and, when the ONNX exporter (``export.onnx``) is present, its PyTorch verification.

From a checkpoint the ONNX graph is exported with ``channels_first`` blocks (1x1 convs,
LayerNorm over the channel axis, no NCHW<->NHWC permutes; see ``emonext_edge.model``),
verified against the official PyTorch forward. On OpenVINO CPU it removes the Transposes
and layout reorders around every block: EmoNeXt-Tiny batch 1, 2 threads, f32 inference
precision, measured in one run: FP32 IR 28.3 -> 24.0 ms, NNCF INT8 IR 15.5 -> 11.8 ms.
An ``--onnx`` source is converted as it is (its sidecar says which layout it has).

INT8 uses NNCF post-training quantization. The whole Spatial Transformer Network
(localization convs, θ regression, grid generation, grid sampling) is kept in floating
point with an ignored scope derived from the graph: every node upstream of the STN output
(the ``GridSample`` node, or the input of the 4×4/stride-4 stem convolution when the STN
is decomposed). Quantizing the grid coordinates destroys the warp.

Each artifact is ``<name>.xml`` + ``.bin`` + sidecar ``<name>.json``; the metadata is also
stored in the IR's ``rt_info`` under ``emonext/<key>`` (JSON strings) and read back by
:func:`read_ir_metadata`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from emonext_edge.errors import ExportError, ModelFileError
from emonext_edge.fileio import sha256_file
from emonext_edge.metadata import build_metadata, read_sidecar, sidecar_path
from emonext_edge.preprocess import INPUT_SHAPE

from calibration.fidelity import DEFAULT_MAX_DROP_PP, DEFAULT_MIN_AGREEMENT, agreement_fraction, nonnegative_pp

from .common import UsageError, cli_entry, load_source, synthetic_faces

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
RT_INFO_SECTION = "emonext"
DEFAULT_NAME = "emonext"
#: OpenVINO CPU precision for the layers NNCF leaves in float (see module notes in the report)
DEFAULT_INT8_INFERENCE_PRECISION = "f32"

Runner = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class QuantizeOptions:
    """NNCF PTQ options, spelled out where ``nncf.quantize`` is called.

    Defaults chosen by measured FER2013 val accuracy (reference atto model, INT8 IR vs FP32
    IR) and batch-1 latency (EmoNeXt-Tiny, 2 threads, INFERENCE_PRECISION_HINT f32):

    * ``model_type=None`` (NNCF "CNN" defaults) is the fastest (every eltwise, the
      LayerNorm inputs and the transposes run in int8) but flips ~5 % of the top-1
      predictions (agreement ~95 %): quantizing the LayerNorm inputs and residual adds of
      ConvNeXt is what hurts.
    * ``model_type="transformer"`` keeps those in float -> agreement > 99 %, drop ≤ 0.2 pp;
      the price is float eltwise + reorders between int8 and float layers, which is why
      NNCF-quantized ConvNeXt is often "barely faster" than FP32/bf16.
    * SmoothQuant (alpha 0.95, the transformer default) on the official channels_last graph
      adds a float Multiply in front of every pointwise MatMul: full FER2013 val drop
      0.06 pp / agreement 99.69 % vs 0.17 pp / 99.30 % without, but ~15 % slower at batch 1.
      On the channels_first graph (pointwise Convolutions) it measured 0.03 pp / 99.75 % vs
      0.17 pp / 99.33 % without, at no measurable latency cost (Tiny, batch 1: 11.3 vs 11.2
      ms median, twice). It stays off by default (``smooth_quant_alpha=-1``) because NNCF 3.4's
      SmoothQuant ignores the ignored scope: it inserts float scaling Multiplies into the STN
      (its input, fc_loc and the grid MatMul). They are float and exact up to rounding, not
      quantization, but the default keeps the STN as exported. ``--smooth-quant 0.95`` turns
      it on for MatMuls and Convolutions.

    The figures without SmoothQuant are the same on both graphs. The channels_first graph
    exported from checkpoints runs 15.5 -> 11.8 ms (Tiny, batch 1, same run).
    """

    preset: str = "performance"  # "performance" (symmetric) | "mixed" (asymmetric activations)
    model_type: Optional[str] = "transformer"  # None | "transformer"
    fast_bias_correction: bool = True
    subset_size: int = 300
    #: SmoothQuant alpha for MatMuls and Convolutions (None: NNCF default for the model type; -1 disables)
    smooth_quant_alpha: Optional[float] = -1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- metadata


def set_ir_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    """Store ``meta`` in the IR rt_info as ``emonext/<key>`` = JSON string."""
    import json

    for key, value in meta.items():
        model.set_rt_info(json.dumps(value), [RT_INFO_SECTION, key])


def read_ir_metadata(xml_path: str | os.PathLike) -> Optional[dict[str, Any]]:
    """Metadata of an IR: its ``rt_info`` ``emonext`` section, else the JSON sidecar, else ``None``.

    Parses the XML only (no OpenVINO import, weights are not loaded). Accepts both the nested
    ``emonext/<key>`` layout written here and flat ``emonext.<key>`` keys (``to_string_map``).
    """
    import json

    path = Path(xml_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such OpenVINO IR file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ModelFileError(f"{path}: not a valid OpenVINO IR XML ({exc})") from None
    meta: dict[str, Any] = {}
    rt_info = root.find("rt_info")
    if rt_info is not None:
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
                except ValueError:
                    meta[key] = raw
    if meta.get("labels"):
        return meta
    return read_sidecar(path)


# --------------------------------------------------------------------------- source -> ov.Model


def _require_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:  # pragma: no cover - openvino is a hard requirement of this exporter
        from emonext_edge.errors import BackendUnavailableError

        raise BackendUnavailableError(f"OpenVINO is not installed ({exc}); pip install openvino") from None
    return ov


#: block layout of the ONNX graph exported from a checkpoint (measured fastest on OpenVINO CPU)
DEFAULT_BLOCK_LAYOUT = "channels_first"


def _torch_to_onnx(model: Any, onnx_path: Path, source_info: Mapping[str, Any], block_layout: str) -> None:
    """Checkpoint model -> ONNX (dynamic batch, native GridSample), verified against PyTorch by export.onnx."""
    from .onnx import export_onnx

    export_onnx(
        model, onnx_path, opset=17, stn="native", batch=None, source_info=dict(source_info), force=True,
        block_layout=block_layout,
    )


@dataclass
class ConvertedSource:
    model: Any  # ov.Model, FP32
    labels: list[str]
    architecture: dict[str, Any]
    source: dict[str, Any]
    description: str
    untrained: bool = False
    block_layout: Optional[str] = None  # None: an ONNX file without a sidecar saying which


def convert_source(
    checkpoint: Optional[str | os.PathLike] = None,
    onnx: Optional[str | os.PathLike] = None,
    block_layout: str = DEFAULT_BLOCK_LAYOUT,
) -> ConvertedSource:
    """The FP32 ``ov.Model`` of a checkpoint, an ONNX file, or (neither) the seeded default model.

    ``block_layout`` applies to checkpoints only: an ONNX file is converted as it is.
    """
    ov = _require_openvino()
    if checkpoint is not None and onnx is not None:
        raise UsageError("give either a checkpoint or an ONNX model, not both")
    if onnx is not None:
        onnx = Path(onnx)
        if not onnx.is_file():
            raise FileNotFoundError(f"{onnx}: no such ONNX model")
        try:
            model = ov.convert_model(str(onnx))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses
            raise ExportError(f"{onnx}: OpenVINO could not convert this ONNX model ({exc})") from None
        meta = read_sidecar(onnx) or {}
        from emonext_edge.labels import DEFAULT_LABELS

        source = {"onnx": str(onnx), "onnx_sha256": sha256_file(onnx)}
        if meta.get("source"):
            source["upstream"] = meta["source"]
        layout = meta.get("block_layout", "channels_last" if meta else None)  # sidecars before 0.2.0 had no key: official
        if layout == "channels_last":
            log.info(
                "%s has the official channels_last blocks; exporting from the checkpoint gives channels_first "
                "blocks, which OpenVINO runs faster", onnx,
            )
        return ConvertedSource(
            model,
            list(meta.get("labels") or DEFAULT_LABELS),
            dict(meta.get("architecture") or {}),
            source,
            f"ONNX model {onnx}",
            block_layout=layout,
        )
    src = load_source(checkpoint)
    with tempfile.TemporaryDirectory(prefix="emonext_ov_") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        _torch_to_onnx(src.model, onnx_path, src.info, block_layout)
        model = ov.convert_model(str(onnx_path))
    return ConvertedSource(
        model,
        list(src.model.labels),
        src.model.architecture.to_dict(),
        dict(src.info),
        src.description,
        untrained=src.untrained,
        block_layout=block_layout,
    )


# --------------------------------------------------------------------------- STN scope


def _stn_output_node(model: Any) -> Any:
    ops = model.get_ordered_ops()
    samplers = [op for op in ops if op.get_type_name() == "GridSample"]
    if len(samplers) == 1:
        return samplers[0]
    # decomposed sampler: the STN output is what the 4x4 / stride-4 stem conv (3 input channels) reads
    for op in ops:
        if op.get_type_name() != "Convolution":
            continue
        weight_shape = list(op.input(1).get_partial_shape().to_shape())
        if weight_shape[1:] == [3, 4, 4] and list(op.get_strides()) == [4, 4]:
            return op.input(0).get_source_output().get_node()
    raise ExportError(
        "cannot locate the STN output in the OpenVINO graph: expected one GridSample node or a 4x4 stride-4 "
        f"stem convolution on 3 channels (found {len(samplers)} GridSample nodes)"
    )


def stn_node_names(model: Any) -> list[str]:
    """Names of every computing node of the STN: the STN output and everything upstream of it.

    Derived from the graph (not a hand-written list): localization convs, fc_loc, θ reshape,
    affine grid, sampler. Parameters and constants are left out (they are not quantizable ops).
    """
    end = _stn_output_node(model)
    names: set[str] = set()
    stack = [end]
    while stack:
        node = stack.pop()
        name, kind = node.get_friendly_name(), node.get_type_name()
        if name in names or kind == "Parameter":
            continue
        if kind != "Constant":
            names.add(name)
        stack.extend(port.get_source_output().get_node() for port in node.inputs())
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in names]


def fake_quantize_feeding(model: Any, names: Iterable[str]) -> list[str]:
    """``FakeQuantize`` nodes whose output reaches one of ``names`` directly or through weight converts."""
    targets = set(names)
    hits = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        frontier = [op]
        while frontier:
            node = frontier.pop()
            for out in node.outputs():
                for port in out.get_target_inputs():
                    consumer = port.get_node()
                    if consumer.get_friendly_name() in targets:
                        hits.append(op.get_friendly_name())
                    elif consumer.get_type_name() in ("Convert", "Reshape", "Transpose"):
                        frontier.append(consumer)
    return sorted(set(hits))


# --------------------------------------------------------------------------- data


def _check_batch(images: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise UsageError(f"{where}: expected a numpy array, got {type(images).__name__}")
    if images.ndim != 4 or tuple(images.shape[1:]) != INPUT_SHAPE:
        raise UsageError(
            f"{where}: calibration tensor has shape {list(images.shape)}, expected [N, 3, 224, 224] "
            "(preprocessed float32 faces)"
        )
    if images.shape[0] == 0:
        raise UsageError(f"{where}: calibration set is empty (0 images)")
    if not np.issubdtype(images.dtype, np.floating):
        raise UsageError(f"{where}: calibration tensor has dtype {images.dtype}, expected float32")
    if not np.isfinite(images).all():
        raise UsageError(f"{where}: calibration tensor contains NaN or infinite values")
    return np.ascontiguousarray(images, dtype=np.float32)


def load_calibration_images(source: Any, num: int = 300, seed: int = 0) -> tuple[np.ndarray, str]:
    """Calibration batch float32 ``[N, 3, 224, 224]`` and a description.

    ``source``: an array, a ``calib.npz`` (``python -m calibration build``) or a data path
    (FER2013 tree, Kaggle CSV, folder of faces, video), through ``calibration.load_calibration``.
    """
    if source is None:
        raise UsageError("INT8 needs calibration data: give --calib calib.npz or --calib-data PATH")
    if isinstance(source, np.ndarray):
        return _check_batch(source, "calibration array"), f"{len(source)} given calibration images"
    from calibration import load_calibration

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such calibration file or data folder")
    if path.suffix.lower() == ".npz":
        from calibration import read_calibration

        available = read_calibration(path)[0].shape[0]
        num = min(num, available)
    images = load_calibration(path, num=num, seed=seed)
    return _check_batch(np.asarray(images), str(path)), f"{len(images)} calibration images from {path}"


def load_validation(path: str | os.PathLike, limit: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Labelled validation images (preprocessed float32) and labels from a FER2013 tree or CSV (val split)."""
    from calibration import load_labeled
    from emonext_edge.preprocess import preprocess

    items, labels = load_labeled(path, split="val", limit=limit)
    return preprocess(list(items)), np.asarray(labels)


# --------------------------------------------------------------------------- runners, fidelity


def compile_runner(
    model: Any, *, threads: Optional[int] = None, inference_precision: str = "f32", hint: str = "LATENCY"
) -> Runner:
    """A callable float32 batch -> logits running ``model`` (ov.Model or .xml path) on the CPU."""
    ov = _require_openvino()
    core = ov.Core()
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": inference_precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if isinstance(model, (str, os.PathLike)):
        model = core.read_model(str(model))
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})[0], dtype=np.float32)

    return run


def fidelity(
    candidate: Runner,
    reference: Runner,
    images: np.ndarray,
    labels: Optional[np.ndarray] = None,
    min_agreement: float = 0.99,
    max_drop_pp: float = 0.5,
) -> Any:
    """``calibration.fidelity.fidelity_gate`` of two runners (returns its ``FidelityReport``)."""
    from calibration import fidelity_gate

    return fidelity_gate(
        candidate,
        reference,
        images,
        labels=None if labels is None else labels.tolist(),
        min_agreement=min_agreement,
        max_drop_pp=max_drop_pp,
    )


# --------------------------------------------------------------------------- quantization


def _nncf_dataset(images: np.ndarray, what: str) -> Any:
    import nncf

    total = len(images)
    step = max(1, total // 10)

    def transform(index: int) -> np.ndarray:
        if index % step == 0 or index == total - 1:
            log.info("  %s: image %d/%d", what, index + 1, total)
        return images[index: index + 1]

    return nncf.Dataset(range(total), transform)


def quantize_int8(
    fp32_model: Any,
    calib: np.ndarray,
    options: QuantizeOptions = QuantizeOptions(),
    *,
    val: Optional[tuple[np.ndarray, np.ndarray]] = None,
    max_drop_pp: Optional[float] = None,
) -> Any:
    """NNCF INT8 PTQ of ``fp32_model`` with the whole STN kept in floating point.

    With ``val`` (images, labels) and ``max_drop_pp``: ``nncf.quantize_with_accuracy_control``,
    which reverts the most harmful layers to float until the top-1 drop on ``val`` is within bounds.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    calib = _check_batch(calib, "calibration array")
    stn = stn_node_names(fp32_model)
    ignored = nncf.IgnoredScope(names=stn, validate=True)  # fails loudly if the graph changed
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}[options.preset]
    model_type = nncf.ModelType.TRANSFORMER if options.model_type == "transformer" else None
    advanced = AdvancedQuantizationParameters()
    if options.smooth_quant_alpha is not None:
        # the pointwise layers are MatMuls in channels_last graphs and 1x1 Convolutions in
        # channels_first ones: the alpha applies to whichever the graph has
        alpha = options.smooth_quant_alpha
        advanced = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha, convolution=alpha)
        )
    subset = min(options.subset_size, len(calib))
    log.info(
        "NNCF INT8: %d calibration images, preset=%s, model_type=%s, fast_bias_correction=%s, "
        "SmoothQuant alpha=%s, %d STN nodes kept in float",
        subset, options.preset, options.model_type, options.fast_bias_correction, options.smooth_quant_alpha, len(stn),
    )
    started = time.perf_counter()
    if val is not None and max_drop_pp is not None:
        val_images, val_labels = val
        val_images = _check_batch(val_images, "validation array")

        def validate(compiled: Any, indices: Iterable[int]) -> tuple[float, list[float]]:
            hits = []
            for i in indices:
                out = compiled(val_images[i: i + 1])[0]
                hits.append(float(np.argmax(out) == val_labels[i]))
            return float(np.mean(hits)), hits

        quantized = nncf.quantize_with_accuracy_control(
            fp32_model,
            _nncf_dataset(calib, "calibration"),
            nncf.Dataset(range(len(val_images)), lambda i: val_images[i: i + 1]),
            validate,
            max_drop=max_drop_pp / 100.0,
            preset=preset,
            subset_size=subset,
            fast_bias_correction=options.fast_bias_correction,
            model_type=model_type,
            ignored_scope=ignored,
            advanced_quantization_parameters=advanced,
        )
    else:
        quantized = nncf.quantize(
            fp32_model,
            _nncf_dataset(calib, "calibration"),
            preset=preset,
            subset_size=subset,
            fast_bias_correction=options.fast_bias_correction,
            model_type=model_type,
            ignored_scope=ignored,
            advanced_parameters=advanced,
        )
    leaked = fake_quantize_feeding(quantized, stn)
    if leaked:
        raise ExportError(f"INT8 quantization put FakeQuantize nodes into the STN: {leaked[:5]}")
    log.info("NNCF INT8 done in %.1f s", time.perf_counter() - started)
    return quantized


# --------------------------------------------------------------------------- saving


def save_ir(model: Any, xml_path: str | os.PathLike, meta: Mapping[str, Any], *, compress_to_fp16: bool = False) -> Path:
    """Write ``xml_path`` + ``.bin`` + sidecar ``.json`` atomically (temp dir beside them, then renames).

    The XML is moved into place last, so a reader never sees an XML without its weights.
    """
    import json

    ov = _require_openvino()
    xml_path = Path(xml_path)
    if not xml_path.parent.is_dir():
        raise FileNotFoundError(f"{xml_path}: output directory {xml_path.parent} does not exist")
    if not os.access(xml_path.parent, os.W_OK):
        raise PermissionError(f"{xml_path}: output directory {xml_path.parent} is not writable")
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", dir=xml_path.parent))
    try:
        model = model.clone()
        set_ir_metadata(model, meta)
        tmp_xml = tmp / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        tmp_json = sidecar_path(tmp_xml)
        tmp_json.write_text(json.dumps(dict(meta), indent=2) + "\n")
        for suffix in (".bin", ".json", ".xml"):
            os.replace(tmp_xml.with_suffix(suffix), xml_path.with_suffix(suffix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml_path


def remove_ir(xml_path: str | os.PathLike) -> None:
    for suffix in (".xml", ".bin", ".json"):
        Path(xml_path).with_suffix(suffix).unlink(missing_ok=True)


# --------------------------------------------------------------------------- export


def export_ir(
    checkpoint: Optional[str | os.PathLike] = None,
    output_dir: str | os.PathLike = ".",
    *,
    onnx: Optional[str | os.PathLike] = None,
    precisions: Sequence[str] | str = ("fp32",),
    calib: Any = None,
    options: QuantizeOptions = QuantizeOptions(),
    name: str = DEFAULT_NAME,
    val_data: Optional[str | os.PathLike] = None,
    val_limit: Optional[int] = None,
    accuracy_control: bool = False,
    max_drop_pp: float = 0.5,
    min_agreement: float = 0.99,
    verify_images: Optional[np.ndarray] = None,
    keep_failed: bool = False,
    threads: Optional[int] = None,
    int8_inference_precision: str = DEFAULT_INT8_INFERENCE_PRECISION,
    block_layout: str = DEFAULT_BLOCK_LAYOUT,
) -> dict[str, Any]:
    """Export ``<name>.xml`` (FP32), ``<name>_fp16.xml``, ``<name>_int8.xml`` to ``output_dir``.

    The FP32 IR is always written; FP16/INT8 are each gated against it (agreement ≥
    ``min_agreement``, top-1 drop ≤ ``max_drop_pp`` when ``val_data`` gives labels). A failing
    artifact is removed unless ``keep_failed``; the report's ``passed`` is then False.
    Returns a report dict: per-artifact path, size, gate figures, quantization options.
    """
    precisions = [precisions] if isinstance(precisions, str) else list(precisions)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise UsageError(f"unknown precision(s) {unknown}; expected some of {list(PRECISIONS)}")
    if accuracy_control and val_data is None:
        raise UsageError("accuracy-controlled quantization needs labelled validation data (--val-data)")
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: --output must be a directory (the IR is an .xml + .bin pair), found a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    calib_images = calib_desc = None
    if "int8" in precisions:  # validate data before any long work
        calib_images, calib_desc = load_calibration_images(calib, num=options.subset_size)

    src = convert_source(checkpoint, onnx, block_layout)
    log.info("source: %s (%s blocks)", src.description, src.block_layout or "unknown")
    val = load_validation(val_data, limit=val_limit) if val_data is not None else None
    if verify_images is None:
        if val is not None:
            verify_images = val[0]
        elif calib_images is not None:
            verify_images = calib_images[: min(64, len(calib_images))]
        else:
            from emonext_edge.preprocess import preprocess

            verify_images = preprocess(list(synthetic_faces(32)))
    verify_labels = val[1] if val is not None and verify_images is val[0] else None

    def metadata(precision: str, **extra: Any) -> dict[str, Any]:
        return build_metadata(
            labels=src.labels,
            architecture=src.architecture,
            source=src.source,
            format="openvino-ir",
            precision=precision,
            block_layout=src.block_layout,
            **extra,
        )

    report: dict[str, Any] = {
        "source": src.description, "block_layout": src.block_layout, "artifacts": {}, "passed": True,
    }
    fp32_xml = out_dir / f"{name}.xml"
    save_ir(src.model, fp32_xml, metadata("fp32"))
    report["artifacts"]["fp32"] = {"path": str(fp32_xml), "bytes": fp32_xml.with_suffix(".bin").stat().st_size}
    log.info("wrote %s", fp32_xml)
    reference = compile_runner(src.model, threads=threads, inference_precision="f32")

    for precision in precisions:
        if precision == "fp32":
            continue
        xml = out_dir / f"{name}_{precision}.xml"
        if precision == "fp16":
            save_ir(src.model, xml, metadata("fp16", weights="fp16"), compress_to_fp16=True)
            candidate = compile_runner(xml, threads=threads, inference_precision="f32")
            entry: dict[str, Any] = {"inference_precision": "f32"}
        else:
            assert calib_images is not None
            log.info("INT8 calibration on %s", calib_desc)
            quantized = quantize_int8(
                src.model,
                calib_images,
                options,
                val=val if accuracy_control else None,
                max_drop_pp=max_drop_pp if accuracy_control else None,
            )
            extra = {
                "quantization": {
                    "tool": "nncf",
                    **options.to_dict(),
                    "accuracy_control": accuracy_control,
                    "calibration": calib_desc,
                    "stn_in_float": True,
                },
                "inference_precision": int8_inference_precision,
            }
            save_ir(quantized, xml, metadata("int8", **extra))
            candidate = compile_runner(quantized, threads=threads, inference_precision=int8_inference_precision)
            entry = {"inference_precision": int8_inference_precision, "options": options.to_dict()}
        gate = fidelity(candidate, reference, verify_images, verify_labels, min_agreement=min_agreement, max_drop_pp=max_drop_pp)
        entry.update(
            path=str(xml),
            bytes=xml.with_suffix(".bin").stat().st_size,
            gate=gate.summary(),
            agreement=gate.agreement,
            accuracy_reference=gate.accuracy_reference,
            accuracy_candidate=gate.accuracy_candidate,
            drop_pp=gate.drop_pp,
            passed=bool(gate.passed),
            verified_on=len(verify_images),
        )
        if not gate.passed:
            report["passed"] = False
            if src.untrained:
                entry["note"] = "untrained default model: near-tied logits make agreement meaningless"
            if keep_failed:
                log.warning("%s failed the fidelity gate; kept because of --keep-failed", xml)
            else:
                remove_ir(xml)
                entry["removed"] = True
                log.warning("%s failed the fidelity gate and was removed (--keep-failed keeps it)", xml)
        report["artifacts"][precision] = entry
    return report


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.openvino",
        description="Export EmoNeXt to OpenVINO IR: FP32 always, FP16-compressed and NNCF INT8 on request.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="EmoNeXt checkpoint (.pt); default: seeded untrained EmoNeXt-Tiny")
    src.add_argument("--onnx", help="an exported EmoNeXt ONNX model (its sidecar JSON supplies labels/metadata)")
    p.add_argument("--output", default=".", help="output directory (default: current directory)")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"artifact base name (default: {DEFAULT_NAME})")
    p.add_argument("--fp16", action="store_true", help="also write <name>_fp16.xml (FP16-compressed weights)")
    p.add_argument("--int8", action="store_true", help="also write <name>_int8.xml (NNCF post-training INT8)")
    calib = p.add_mutually_exclusive_group()
    calib.add_argument("--calib", help="calibration set calib.npz (python -m calibration build)")
    calib.add_argument("--calib-data", help="data to build the calibration set from (FER2013 tree, CSV, folder, video)")
    p.add_argument("--subset-size", type=int, default=QuantizeOptions.subset_size, help="calibration images used")
    p.add_argument("--preset", choices=("performance", "mixed"), default=QuantizeOptions.preset)
    p.add_argument(
        "--smooth-quant", type=float, default=QuantizeOptions.smooth_quant_alpha, metavar="ALPHA",
        help="SmoothQuant alpha (default -1: off; 0.95: more faithful, also scales STN inputs in float; "
             "~15%% slower on channels_last graphs, free on channels_first)",
    )
    p.add_argument("--max-drop", type=nonnegative_pp, default=DEFAULT_MAX_DROP_PP,
                   help="max top-1 drop in pp (gate and accuracy control)")
    p.add_argument("--min-agreement", type=agreement_fraction, default=DEFAULT_MIN_AGREEMENT,
                   help="min top-1 agreement with the FP32 IR: 0.99, 99 or 99%%")
    p.add_argument("--accuracy-control", action="store_true", help="nncf.quantize_with_accuracy_control on --val-data")
    p.add_argument("--val-data", help="labelled validation data (FER2013 tree) for the gate / accuracy control")
    p.add_argument(
        "--val-limit", type=int, default=None,
        help="validation images used (default: the whole val split; fewer = faster but a noisier gate)",
    )
    p.add_argument(
        "--block-layout", choices=("channels_first", "channels_last"), default=DEFAULT_BLOCK_LAYOUT,
        help="with --checkpoint: blocks as 1x1 convs without permutes (default, faster on OpenVINO) or official",
    )
    p.add_argument("--keep-failed", action="store_true", help="keep an artifact that fails the fidelity gate")
    p.add_argument("--threads", type=int, default=None, help="OpenVINO CPU threads for verification")
    return p


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.int8:
        import nncf

        nncf.set_log_level(logging.WARNING)  # its per-node INFO lines drown the output; progress bars still show
    if args.subset_size <= 0:
        raise UsageError(f"--subset-size must be positive, got {args.subset_size}")
    if (args.calib or args.calib_data) and not args.int8:
        raise UsageError("--calib/--calib-data only make sense with --int8")
    if args.accuracy_control and not args.int8:
        raise UsageError("--accuracy-control needs --int8")
    calib: Any = args.calib or args.calib_data
    if args.checkpoint is None and args.onnx is None:
        print("no --checkpoint/--onnx given: exporting the default model (EmoNeXt-Tiny, seeded random weights, untrained)")
        if args.int8 and calib is None:
            print("no calibration data given: INT8 calibrates on deterministic synthetic faces")
            from emonext_edge.preprocess import preprocess

            calib = preprocess(list(synthetic_faces(min(args.subset_size, 64))))
    elif args.int8 and calib is None:
        raise UsageError("--int8 needs calibration data: give --calib calib.npz or --calib-data PATH")
    precisions = ["fp32"] + (["fp16"] if args.fp16 else []) + (["int8"] if args.int8 else [])
    report = export_ir(
        args.checkpoint,
        args.output,
        onnx=args.onnx,
        precisions=precisions,
        calib=calib,
        options=QuantizeOptions(preset=args.preset, subset_size=args.subset_size, smooth_quant_alpha=args.smooth_quant),
        name=args.name,
        val_data=args.val_data,
        val_limit=args.val_limit,
        accuracy_control=args.accuracy_control,
        max_drop_pp=args.max_drop,
        min_agreement=args.min_agreement,
        keep_failed=args.keep_failed,
        threads=args.threads,
        block_layout=args.block_layout,
    )
    for precision, entry in report["artifacts"].items():
        line = f"{precision}: {entry['path']} ({entry['bytes'] / 1e6:.1f} MB)"
        if "gate" in entry:
            line += f"  gate vs FP32 on {entry['verified_on']} images: {entry['gate']}"
            if entry.get("removed"):
                line += "  [removed]"
        print(line)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main(None))
