"""Artifacts of the official fixture model shared by the runtime/backend/face/CLI tests.

Built once per test session (cached here by directory): ONNX via ``export.onnx.export_onnx``
(with its sidecar and embedded metadata), OpenVINO IR via ``openvino.convert_model`` +
``save_model(compress_to_fp16=False)`` with the metadata in rt_info, plus a copy of the sidecar.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

_CACHE: dict[tuple[str, Any], Path] = {}


def onnx_artifact(model: Any, directory: Path, batch: Any = None) -> Path:
    key = ("onnx", batch)
    if key not in _CACHE:
        from export.onnx import export_onnx

        name = "official.onnx" if batch is None else f"official_b{batch}.onnx"
        export_onnx(model, directory / name, batch=batch, verify_count=2)
        _CACHE[key] = directory / name
    return _CACHE[key]


def ir_artifact(model: Any, directory: Path) -> Path:
    key = ("ir", None)
    if key not in _CACHE:
        import json

        import openvino as ov

        from emonext_edge.metadata import set_ov_model_metadata as set_ir_metadata  # rt_info "emonext/<key>"

        onnx_path = onnx_artifact(model, directory)
        xml = directory / "official_ir.xml"
        ir = ov.convert_model(str(onnx_path))
        set_ir_metadata(ir, json.loads(onnx_path.with_suffix(".json").read_text()))
        ov.save_model(ir, str(xml), compress_to_fp16=False)
        shutil.copy(onnx_path.with_suffix(".json"), xml.with_suffix(".json"))
        _CACHE[key] = xml
    return _CACHE[key]
