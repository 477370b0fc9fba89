"""Mixed FP16 ONNX for strongly typed TensorRT builds (TensorRT 11 has no FP16 builder flag).

``onnxconverter-common``'s ``float16.convert_float_to_float16(keep_io_types=True,
node_block_list=...)`` converts every float tensor to FP16 except the nodes in the block
list, inserting Casts at the borders. Blocked (kept FP32):

* the whole STN (localization, ``fc_loc``, grid generation, sampler): TensorRT has had
  correctness bugs with FP32 islands in FP16 strongly typed builds around GridSample
  (pytorch/TensorRT#4074), and a 1e-3 error in the affine matrix moves pixels;
* LayerNorm statistics: ``LayerNormalization`` nodes and the channels-first LayerNorm
  written out as ``ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div``;
* the classifier head (last Gemm/MatMul before the logits), so logits keep FP32 range.

I/O stays float32 so the Runtime feeds the same tensors as for the FP32 model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from emonext_edge.errors import BackendUnavailableError, ExportError
from emonext_edge.fileio import atomic_path

from .quantize_onnx import _load, stn_node_names

log = logging.getLogger(__name__)

STAT_OPS = ("LayerNormalization", "ReduceMean", "Pow", "Sqrt")
_NEAR_STAT_OPS = ("Sub", "Add", "Div")


def fp32_block_list(model: Any) -> list[str]:
    """Names of the nodes that stay FP32: STN, LayerNorm statistics, classifier head."""
    nodes = list(model.graph.node)
    producers = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    block = set(stn_node_names(model))
    stats = {n.name for n in nodes if n.op_type in STAT_OPS}
    block |= stats
    for n in nodes:  # the Sub/Add/Div glued between the statistics ops of a written-out LayerNorm
        if n.op_type not in _NEAR_STAT_OPS:
            continue
        touches_in = any(producers.get(i) is not None and producers[i].name in stats for i in n.input)
        touches_out = any(c.name in stats for o in n.output for c in consumers.get(o, []))
        if touches_in or touches_out:
            block.add(n.name)
    outputs = {o.name for o in model.graph.output}
    for n in nodes:
        if any(o in outputs for o in n.output):
            block.add(n.name)  # the head's last op (Gemm, or Add after MatMul)
            if n.op_type == "Add":
                block.update(producers[i].name for i in n.input if i in producers)
    return [n.name for n in nodes if n.name in block]


def _unshare_initializers(model: Any) -> None:
    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            if name in seen:
                copy = model.graph.initializer.add()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__{node.name or k}"
                node.input[k] = copy.name
            seen.add(name)


def convert_fp16(onnx_path: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write a mixed-precision (FP16 with FP32 islands, FP32 I/O) copy of ``onnx_path`` to ``output``."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendUnavailableError(
            "FP16 ONNX conversion needs onnxconverter-common: pip install onnxconverter-common"
        ) from None
    import onnx

    model = _load(onnx_path)
    block = fp32_block_list(model)
    log.info("converting %s to mixed FP16 (%d of %d nodes kept FP32)", onnx_path, len(block), len(model.graph.node))
    work = onnx.ModelProto()
    work.CopyFrom(model)
    # stale value_info (from the exporter's shape inference) makes the converter type its
    # border Casts wrongly; it re-infers what it needs
    del work.graph.value_info[:]
    del work.metadata_props[:]  # the FP32 record would be untrue here; derive_onnx writes the FP16 one
    _unshare_initializers(work)  # exporters dedupe equal constants; a blocked and a converted node must not share one
    try:
        converted = float16.convert_float_to_float16(work, keep_io_types=True, node_block_list=block)
    except Exception as exc:
        raise ExportError(f"{onnx_path}: FP16 conversion failed: {exc}") from exc
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save(converted, str(tmp))
    return output


def node_float_types(model_or_path: Any) -> dict[str, set[int]]:
    """node name -> the onnx element types of its float inputs/outputs (after shape inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(_load(model_or_path))
    types: dict[str, int] = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    out: dict[str, set[int]] = {}
    for node in model.graph.node:
        tensors = [t for t in list(node.input) + list(node.output) if t in types and types[t] in floats]
        out[node.name] = {types[t] for t in tensors} if node.op_type != "Cast" else set()
    return out


def fp16_recipe(fp32_onnx: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """``(build, changes)`` of the gated mixed FP16 ONNX for :func:`export.quantize_onnx.derive_candidate`:
    precision ``fp16-mixed``, the FP32 islands listed in the record."""

    def build(staged: Path) -> None:
        convert_fp16(fp32_onnx, staged)

    return build, {"precision": "fp16-mixed", "inference_precision": "fp16",
                   "extra": {"fp32_islands": ["stn", "layernorm_statistics", "head"]}}


def export_fp16_onnx(
    fp32_onnx: str | os.PathLike,
    output: str | os.PathLike,
    fidelity: Any = None,
    *,
    images: Any = None,
    labels: Any = None,
    data_desc: Any = None,
) -> Any:
    """Gated mixed FP16 ONNX (precision ``fp16-mixed``, FP32 islands listed in the record).

    The export contract of :func:`export.quantize_onnx.derive_onnx`: staged, gated against the
    FP32 ONNX through the Runtime, committed with its gate result and SHA-256.
    """
    from .quantize_onnx import derive_onnx

    build, changes = fp16_recipe(fp32_onnx)
    return derive_onnx(fp32_onnx, output, build, changes, fidelity, images=images, labels=labels, data_desc=data_desc)
