"""Workstation export tools: `python -m export.onnx`, `python -m export.openvino`, `python -m export.tensorrt`."""
