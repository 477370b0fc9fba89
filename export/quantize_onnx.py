"""Explicit INT8: a Q/DQ ONNX made on the workstation by a maintained quantizer, STN kept FP32.

TensorRT (8.5+, and only this way on 11.x) builds INT8 engines from QuantizeLinear /
DequantizeLinear pairs in the ONNX. Where those pairs sit decides both accuracy and speed:

Placement (``PLACEMENT_OP_TYPES``)
    Activations and weights are quantized at the inputs of ``Conv`` (stem, depthwise 7x7,
    downsampling), ``MatMul`` / ``Gemm`` (the pointwise MLPs and SE) **and
    ``LayerNormalization``**. The last one matters for ConvNeXt on TensorRT: in each block
    ``dwconv -> Transpose -> LayerNorm -> pwconv1``, a Q/DQ pair on the LayerNorm input is the
    Q/DQ *after* the depthwise Conv. Without it TensorRT cannot give the Conv an INT8 output
    and falls back to slower int8-in/fp16-out kernels (NVIDIA/Model-Optimizer PR #1117, the
    ConvNeXt INT8-slower-than-FP16 report in NVIDIA/Model-Optimizer#80). ONNX Runtime's
    QDQ registry supports LayerNormalization, so its static quantizer places exactly
    ``Conv -> Transpose -> Q -> DQ -> LayerNorm``. Symmetric INT8 (zero point 0) for
    activations and per-channel symmetric weights, as TensorRT requires; biases stay float.

STN
    The whole Spatial Transformer (localization convs, ``fc_loc``, grid generation and
    the sampler) stays FP32: TensorRT has no INT8 GridSample, and a quantized affine matrix
    shifts every pixel the backbone sees. :func:`stn_node_names` finds it structurally (every
    node the stem convolution's input depends on) so it works for both the native
    GridSample and the decomposed sampler; those names go to ``nodes_to_exclude`` /
    ``ignored_scope`` and :func:`check_stn_float` verifies no DequantizeLinear feeds them.

Quantizer choice
    Measured with the FER2013 reference model (140 train images to calibrate, 280 val images,
    40/class, ONNX Runtime CPU): FP32 26.07% top-1; NNCF (``ModelType.TRANSFORMER``) 26.07%,
    agreement 99.64%; ORT static QDQ with the LayerNorm placement above 26.43%, agreement
    98.57% (below the 99% gate). The CLI default is therefore ``nncf`` (Q/DQ at Conv/MatMul/
    Gemm inputs, SmoothQuant off so the STN is untouched); ``--quantizer ort`` gives the
    Conv->LayerNorm placement for TensorRT speed, which could not be timed here (no GPU).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.errors import ExportError, ModelFileError
from emonext_edge.fileio import atomic_path
from emonext_edge.preprocess import INPUT_SHAPE

from .nncf_output import nncf_on_stderr
from .stn_scope import QDQ_OPS, onnx_stem_conv, onnx_stn_node_names

log = logging.getLogger(__name__)

#: op types whose inputs get Q/DQ pairs (see the module docstring for why LayerNormalization)
PLACEMENT_OP_TYPES = ("Conv", "MatMul", "Gemm", "LayerNormalization")
METHODS = ("nncf", "ort")


def _load(model_or_path: Any) -> Any:
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise ModelFileError(f"{path}: not a readable ONNX model ({exc})") from None


def stem_conv(model: Any) -> Any:
    """The ConvNeXt stem: the Conv with a ``[C, 3, 4, 4]`` kernel (see :mod:`export.stn_scope`)."""
    return onnx_stem_conv(_load(model))


def stn_node_names(model_or_path: Any) -> list[str]:
    """Names of every node of the STN: all nodes the stem convolution's data input depends on.

    The one rule of :mod:`export.stn_scope`, shared with the NNCF INT8 IR; Q/DQ nodes in front
    of the stem (inserted by a quantizer) are not part of the STN.
    """
    return onnx_stn_node_names(_load(model_or_path))


def check_stn_float(model_or_path: Any) -> None:
    """Raise :class:`ExportError` if any STN node reads a dequantized tensor or is itself Q/DQ."""
    model = _load(model_or_path)
    producers = {o: n for n in model.graph.node for o in n.output}
    bad = []
    for node in model.graph.node:
        if node.name not in set(stn_node_names(model)):
            continue
        for inp in node.input:
            src = producers.get(inp)
            if src is not None and src.op_type == "DequantizeLinear":
                bad.append(f"{node.name} ({node.op_type}) input {inp!r}")
    if bad:
        raise ExportError("STN nodes are fed by DequantizeLinear (STN must stay FP32): " + "; ".join(bad[:5]))


class CalibrationBatches:
    """onnxruntime.quantization CalibrationDataReader over a float32 batch."""

    def __init__(self, input_name: str, batch: np.ndarray, chunk: int = 8) -> None:
        self._items = [{input_name: batch[i:i + chunk]} for i in range(0, len(batch), chunk)]
        self._it = iter(self._items)

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._items)


def _check_calib(calib_batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(calib_batch)
    if batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != INPUT_SHAPE or len(batch) == 0:
        raise ExportError(
            f"calibration batch must be float32 [N>0, {', '.join(map(str, INPUT_SHAPE))}], got {batch.dtype} "
            f"{list(batch.shape)}"
        )
    if not np.isfinite(batch).all():
        raise ExportError("calibration batch contains NaN or inf")
    return batch


def _quantize_ort(model: Any, calib: np.ndarray, out: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        model,
        str(out),
        CalibrationBatches(model.graph.input[0].name, calib),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(PLACEMENT_OP_TYPES),
        nodes_to_exclude=exclude,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "DedicatedQDQPair": True,  # other consumers (residual Add, ...) keep reading float
        },
    )


@nncf_on_stderr("NNCF Q/DQ INT8 quantization")  # bars and log lines on stderr, no raw INFO lines
def _quantize_nncf(model: Any, calib: np.ndarray, out: Path, exclude: list[str]) -> None:
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    name = model.graph.input[0].name
    dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))], lambda x: {name: x})
    quantized = nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric, as TensorRT needs
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calib),
        ignored_scope=nncf.IgnoredScope(names=exclude, validate=False),
        # SmoothQuant would insert scaling Muls inside the STN's fc_loc despite the ignored scope
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)
        ),
    )
    onnx.save(quantized, str(out))


def quantize_qdq(
    onnx_path: str | os.PathLike,
    calib_batch: np.ndarray,
    output: str | os.PathLike,
    exclude_stn: bool = True,
    method: str = "nncf",
) -> Path:
    """Write a Q/DQ INT8 ONNX of ``onnx_path`` calibrated on ``calib_batch`` to ``output`` (atomically).

    ``exclude_stn`` keeps the STN FP32 (checked afterwards). Returns ``output``. A building block:
    the file carries no EmoNeXt record and is not gated; artifacts are made by :func:`export_qdq_onnx`
    (or :func:`derive_onnx`), which gate it and write the record through the export contract.
    """
    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}; expected one of {METHODS}")
    calib = _check_calib(calib_batch)
    model = _load(onnx_path)
    exclude = stn_node_names(model) if exclude_stn else []
    output = Path(output)
    log.info("quantizing %s with %s on %d calibration images (%d STN nodes kept FP32)",
             onnx_path, method, len(calib), len(exclude))
    with atomic_path(output) as tmp:
        try:
            (_quantize_ort if method == "ort" else _quantize_nncf)(model, calib, tmp, exclude)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{onnx_path}: {method} quantization failed: {exc}") from exc
        if exclude_stn:
            check_stn_float(str(tmp))
        _drop_record(tmp)
    return output


def _drop_record(path: Path) -> None:
    """Remove an EmoNeXt record a quantizer copied from the FP32 source (it would claim fp32)."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if not p.key.startswith("emonext")]
    if len(kept) != len(model.metadata_props):
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        onnx.save(model, str(path))


def count_qdq(model_or_path: Any) -> dict[str, int]:
    model = _load(model_or_path)
    return {op: sum(n.op_type == op for n in model.graph.node) for op in QDQ_OPS}


def quantized_op_types(model_or_path: Any) -> set[str]:
    """Op types that read at least one dequantized tensor (where Q/DQ pairs were placed)."""
    model = _load(model_or_path)
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.op_type for n in model.graph.node if n.op_type not in QDQ_OPS and any(i in dq_out for i in n.input)}



# --------------------------------------------------------------------------- gated artifacts (export contract)


def derive_candidate(
    fp32_onnx: str | os.PathLike,
    stage: Any,
    name: str,
    build: Any,
    changes: dict[str, Any],
    fidelity: Any,
    *,
    images: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    data_desc: Optional[str] = None,
    summary: str = "",
) -> Any:
    """Build an ONNX derived from a verified FP32 EmoNeXt ONNX into ``stage`` as a driver
    :class:`~export.targets.Candidate` (not yet gated or committed).

    ``build(staged_path)`` writes the derived model; ``changes`` are the
    :class:`~emonext_edge.metadata.ArtifactMetadata` fields that differ from the FP32 record
    (precision, quantization, ...). The candidate's check gates it against the FP32 ONNX (both
    run by the Runtime's ONNX Runtime backend on the CPU) with ``fidelity``
    (:class:`export.fidelity.FidelityOptions`) on ``images`` (default: its data).
    """
    from emonext_edge.fileio import sha256_file
    from emonext_edge.metadata import GateResult, read_metadata
    from emonext_edge.runtime import Runtime

    from .pipeline import embed_onnx, gate_artifact
    from .targets import Candidate

    source = Path(fp32_onnx)
    if Path(name).suffix.lower() != ".onnx":
        raise ExportError(f"{name}: the output file must end in .onnx")
    base = read_metadata(source)
    if base is None:
        raise ModelFileError(f"{source}: no EmoNeXt metadata (export it with python -m export.onnx first)")
    if images is None:
        images, labels, data_desc = fidelity.load_images()
    staged = stage.file(name)
    build(staged)
    provenance = {"onnx": source.name, "onnx_sha256": sha256_file(source), "upstream": dict(base.source)}
    meta = base.replace(source=provenance, artifact_sha256={}, fidelity=None, **changes)
    embed_onnx(staged, meta)  # the record so far (the Runtime reads labels from it)
    gate_images, gate_labels = images, labels
    described = data_desc or f"{len(images)} images"

    def check(path: Path) -> GateResult:
        with Runtime(source, backend="onnxruntime", providers=["CPUExecutionProvider"]) as reference:
            return gate_artifact(
                path, reference.run, gate_images, gate_labels, fidelity,
                reference_desc=f"FP32 ONNX {source.name} (ONNX Runtime CPU)", data_desc=described,
                runtime_options={"backend": "onnxruntime", "providers": ["CPUExecutionProvider"]},
            )

    return Candidate([name], meta, check, embed=embed_onnx, summary=summary)


def derive_onnx(
    fp32_onnx: str | os.PathLike,
    output: str | os.PathLike,
    build: Any,
    changes: dict[str, Any],
    fidelity: Any = None,
    *,
    images: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    data_desc: Optional[str] = None,
) -> Any:
    """Build, gate and commit one ONNX derived from a verified FP32 EmoNeXt ONNX (the export contract).

    :func:`derive_candidate` in a stage of its own, gated and committed with the gate result and
    SHA-256. Returns the :class:`export.pipeline.CommitResult`; raises ``VerificationError`` when
    the gate failed and the artifact was not kept (``fidelity.keep_failed``). Targets that build
    several artifacts in one run (``export.tensorrt``) yield :func:`derive_candidate` to the driver instead.
    """
    from export.fidelity import FidelityOptions

    from .pipeline import Stage, raise_if_failed

    fidelity = fidelity or FidelityOptions()
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ExportError(f"{output}: the output file must end in .onnx")
    with Stage(output.parent) as stage:
        candidate = derive_candidate(fp32_onnx, stage, output.name, build, changes, fidelity, images=images,
                                     labels=labels, data_desc=data_desc)
        candidate.metadata.fidelity = candidate.check(stage.file(output.name))
        result = stage.commit(candidate.names, candidate.metadata, embed=candidate.embed,
                              keep_failed=fidelity.keep_failed)
    if not result.committed:
        raise_if_failed([result])
    return result


def qdq_recipe(fp32_onnx: str | os.PathLike, calib_batch: np.ndarray, method: str = "nncf",
               calibration_desc: str = "") -> tuple[Any, dict[str, Any]]:
    """``(build, changes)`` of the gated Q/DQ INT8 ONNX for :func:`derive_candidate` / :func:`derive_onnx`:
    precision ``int8-qdq``, the quantizer, its options and the calibration recorded."""
    from calibration.calib_file import tensor_sha256
    from emonext_edge.metadata import Quantization

    calib = _check_calib(calib_batch)
    options = {"placement": list(PLACEMENT_OP_TYPES) if method == "ort" else ["Conv", "MatMul", "Gemm"],
               "symmetric": True, "per_channel_weights": True}
    if method == "nncf":
        options.update(preset="performance", model_type="transformer", smooth_quant="off")
    quantization = Quantization(
        method, options,
        {"description": calibration_desc or f"{len(calib)} calibration images", "images": len(calib),
         "tensor_sha256": tensor_sha256(calib)},
        stn_in_float=True,
    )

    def build(staged: Path) -> None:
        quantize_qdq(fp32_onnx, calib, staged, exclude_stn=True, method=method)

    return build, {"precision": "int8-qdq", "quantization": quantization}


def export_qdq_onnx(
    fp32_onnx: str | os.PathLike,
    calib_batch: np.ndarray,
    output: str | os.PathLike,
    fidelity: Any = None,
    *,
    method: str = "nncf",
    calibration_desc: str = "",
    images: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    data_desc: Optional[str] = None,
) -> Any:
    """Gated Q/DQ INT8 ONNX (precision ``int8-qdq``; quantizer, options and calibration recorded).

    See :func:`derive_onnx` for the contract and :func:`quantize_qdq` for the quantization.
    """
    build, changes = qdq_recipe(fp32_onnx, calib_batch, method, calibration_desc)
    return derive_onnx(fp32_onnx, output, build, changes, fidelity, images=images, labels=labels, data_desc=data_desc)
