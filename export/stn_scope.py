"""Which nodes are the Spatial Transformer Network — one rule for every quantizer.

Rule: the STN is every computing node the ConvNeXt stem convolution's data input depends
on. The stem is the only convolution with a ``[C, 3, 4, 4]`` kernel (the STN's own convs
are 7x7 and 5x5), so the rule holds for the native ``GridSample`` sampler and for the
decomposed one alike, and does not rest on a node name or op type of the sampler.

Used by the NNCF INT8 IR (:func:`ov_stn_node_names`, on an ``ov.Model``), the Q/DQ ONNX and
the mixed FP16 ONNX (:func:`onnx_stn_node_names`, on an ``onnx.ModelProto``), and the
TensorRT builder (FP32 layer names).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from emonext_edge.errors import ExportError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
STEM_KERNEL = (3, 4, 4)  # [in channels, kh, kw] of the stem conv


# --------------------------------------------------------------------------- ONNX graphs


def _onnx_weight_shape(node: Any, inits: dict[str, tuple[int, ...]], producers: dict[str, Any]) -> Any:
    """Shape of a Conv weight, looking through a DequantizeLinear (Q/DQ graphs)."""
    if len(node.input) < 2:
        return None
    name = node.input[1]
    if name in inits:
        return inits[name]
    dq = producers.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
        return inits[dq.input[0]]
    return None


def onnx_stem_conv(model: Any) -> Any:
    """The ConvNeXt stem of an ONNX graph: the Conv with a ``[C, 3, 4, 4]`` kernel."""
    inits = {init.name: tuple(init.dims) for init in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "Conv":
            shape = _onnx_weight_shape(node, inits, producers)
            if shape is not None and len(shape) == 4 and tuple(shape[1:]) == STEM_KERNEL:
                return node
    raise ExportError("ONNX graph has no EmoNeXt stem convolution (Conv with a [C,3,4,4] kernel)")


def onnx_stn_node_names(model: Any) -> list[str]:
    """Names of the STN nodes of an ``onnx.ModelProto`` (Q/DQ nodes a quantizer put in front of the stem excluded)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    stem = onnx_stem_conv(model)
    seen: dict[str, Any] = {}
    queue = deque([stem.input[0]])
    while queue:
        tensor = queue.popleft()
        node = producers.get(tensor)
        if node is None or node.name in seen:
            continue
        seen[node.name] = node
        queue.extend(i for i in node.input if i)
    names = [n.name for n in model.graph.node if n.name in seen and n.op_type not in QDQ_OPS]
    if not names:
        raise ExportError("the stem convolution takes the graph input directly: this ONNX has no STN to keep FP32")
    if any(not n for n in names):
        raise ExportError("ONNX graph has unnamed STN nodes; export it with node names (torch.onnx.export does)")
    return names


# --------------------------------------------------------------------------- OpenVINO graphs


def ov_stem_conv(model: Any) -> Any:
    """The stem ``Convolution`` of an ``ov.Model``: 3 input channels, 4x4 kernel, stride 4."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        shape = op.input(1).get_partial_shape()
        if not shape.is_static:
            continue
        if tuple(shape.to_shape())[1:] == STEM_KERNEL and list(op.get_strides()) == [4, 4]:
            return op
    raise ExportError("cannot locate the STN in the OpenVINO graph: no 4x4 stride-4 stem convolution on 3 channels")


def ov_stn_node_names(model: Any) -> list[str]:
    """Names of every computing STN node of an ``ov.Model`` (parameters, constants and FakeQuantize left out)."""
    end = ov_stem_conv(model).input(0).get_source_output().get_node()
    names: set[str] = set()
    stack = [end]
    visited: set[str] = set()
    while stack:
        node = stack.pop()
        name, kind = node.get_friendly_name(), node.get_type_name()
        if name in visited or kind == "Parameter":
            continue
        visited.add(name)
        if kind not in ("Constant", "FakeQuantize"):
            names.add(name)
        stack.extend(port.get_source_output().get_node() for port in node.inputs())
    if not names:
        raise ExportError("the stem convolution reads the model input directly: this IR has no STN")
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in names]
