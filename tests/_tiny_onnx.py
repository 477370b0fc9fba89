"""A tiny stand-in classifier as a real ONNX file, for tests that need a fast Runtime.

``[N, 3, 224, 224] -> GlobalAveragePool -> Flatten -> MatMul [3, C]``: runs in microseconds
under ONNX Runtime, so property tests and subprocess CLI tests can call ``predict`` many
times. Its outputs depend on the image (mean intensity), so a wrong input is visible.
The sidecar carries labels and ``artifact_sha256`` as the exporters write them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from emonext_edge.fileio import sha256_file
from emonext_edge.labels import IMAGEFOLDER_LABELS
from emonext_edge.metadata import record_digest


def tiny_onnx(path: Path, classes: int = 7, sidecar: bool = True, labels: Optional[list[str]] = None) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    weights = np.linspace(-3.0, 3.0, 3 * classes, dtype=np.float32).reshape(3, classes)
    weights[1] *= -1.0
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if sidecar:
        meta = {
            "labels": list(labels or (IMAGEFOLDER_LABELS if classes == 7 else [f"c{i}" for i in range(classes)])),
            "artifact_sha256": {path.name: sha256_file(path)},
        }
        meta["record_sha256"] = record_digest(meta)
        path.with_suffix(".json").write_text(json.dumps(meta))
    return path
