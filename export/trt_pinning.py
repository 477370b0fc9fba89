"""Which layers a weakly typed TensorRT build pins to FP32 — one rule for ``export.tensorrt`` and ``export.deepstream``.

The rule: where the build's :class:`~emonext_edge.tensorrt_compat.PrecisionPath` says
``pin_stn_fp32`` (FP16 or calibrated INT8 on a version with layer precisions), every node of
the STN (:func:`export.stn_scope.onnx_stn_node_names`: all nodes the ConvNeXt stem's data
input depends on) runs in FP32. ``export.tensorrt`` applies it with ``ILayer.precision`` +
``OBEY_PRECISION_CONSTRAINTS``; ``export.deepstream`` writes the same names into nvinfer's
``layer-device-precision`` (``<layer>:fp32:gpu``), which nvinfer applies with
``ILayer::setPrecision`` to the layers whose name is exactly that (DeepStream 6.2
``nvdsinfer_model_builder.cpp``, ``configCommonOptions``). The ONNX parser names the layer it
registers for a node after the node (onnx-tensorrt ``ImporterContext::registerLayer``), so the
names are the ONNX node names of the file the engine is built from.

Nothing else is pinned today (LayerNorm statistics run in the build precision in both tools).
"""

from __future__ import annotations

from typing import Any

from emonext_edge.tensorrt_compat import PrecisionPath


def fp32_layer_names(path: PrecisionPath, model_or_path: Any) -> tuple[str, ...]:
    """ONNX node names of ``model_or_path`` (``onnx.ModelProto`` or file) that a build of ``path`` pins to FP32."""
    if not path.pin_stn_fp32:
        return ()
    from .quantize_onnx import stn_node_names

    return tuple(stn_node_names(model_or_path))
