"""ONNX Runtime INT8 (QOperator) ONNX: ``python -m export.ort_int8 --onnx exports/emonext.onnx --calib calib.npz``.

ONNX Runtime's own static quantization in the QOperator format (``QLinearConv``,
``QLinearMatMul``, ... instead of Q/DQ pairs): the form its CPU execution provider runs with
integer kernels, for CPUs without OpenVINO. The STN stays FP32 (the one rule of
:mod:`export.stn_scope`: every node the stem convolution's input depends on is excluded),
and the result is gated against the FP32 ONNX on held-out images through the Runtime's ONNX
Runtime backend, like every other artifact. It is one module and one line in
:data:`export.targets.TARGETS` (see the "Adding a target" checklist in docs/architecture.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.argtypes import check_args, data_path, positive_int
from emonext_edge.errors import ExportError, UsageError
from emonext_edge.fileio import sha256_file
from export.fidelity import FidelityOptions, gate_from_args

from .common import refuse_foreign_sidecar, verify_source
from .driver import cli
from .pipeline import Stage, gate_artifact
from .quantize_onnx import CalibrationBatches
from .targets import BenchmarkSpec, Candidate, Target

#: ops quantized to their QOperator forms (LayerNorm and the rest stay float)
QOPERATOR_OP_TYPES = ("Conv", "MatMul", "Gemm")
DEFAULT_CALIBRATION_IMAGES = 128
CPU: dict[str, Any] = {"backend": "onnxruntime", "providers": ["CPUExecutionProvider"]}


@dataclass(frozen=True)
class OrtInt8Options:
    """``onnx``: the FP32 ONNX from ``python -m export.onnx`` (with its EmoNeXt metadata);
    ``calib``: calib.npz or a dataset root (``None``: synthetic faces, for untrained-model latency
    work only); ``per_channel``: per-channel weight scales."""

    onnx: Path
    output: Path = Path("exports/emonext_ort_int8.onnx")
    calib: Optional[str] = None
    calib_num: int = DEFAULT_CALIBRATION_IMAGES
    per_channel: bool = True
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)


def _calibration(options: OrtInt8Options, spec: Any) -> tuple[np.ndarray, str]:
    if options.calib:
        from calibration import load_calibration

        calib = load_calibration(options.calib, num=options.calib_num, option="--calib-num")
        if calib.shape[1:] != tuple(spec.input_shape):
            raise UsageError(f"--calib {options.calib}: tensors of shape {list(calib.shape[1:])}, but --onnx "
                             f"{options.onnx} records the preprocessing spec {list(spec.input_shape)}")
        return calib, f"{options.calib_num} images of {options.calib}"
    from calibration.synthetic import synthetic_faces
    from emonext_edge.preprocess import preprocess

    n = min(options.calib_num, 64)
    return preprocess(list(synthetic_faces(n, seed=1)), spec=spec), f"{n} synthetic images (no --calib given)"


def quantize_qoperator(source: Any, output: Path, calib: np.ndarray, exclude: list[str], per_channel: bool) -> None:
    """``quantize_static`` in the QOperator format: U8 activations, S8 weights (ORT's CPU default)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        source, str(output), CalibrationBatches(source.graph.input[0].name, calib),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=list(QOPERATOR_OP_TYPES),
        nodes_to_exclude=exclude,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


def check_stn_untouched(model: Any, stn: list[str]) -> None:
    """Every STN node of the source is still there, with its float op type (``ExportError`` otherwise)."""
    ops = {n.name: n.op_type for n in model.graph.node}
    changed = [name for name in stn if ops.get(name) is None or ops[name].startswith("QLinear")]
    if changed:
        raise ExportError(f"STN nodes were quantized or removed (the STN must stay FP32): {', '.join(changed[:5])}")


class OrtInt8Target(Target):
    name = "ort-int8"
    prog = "python -m export.ort_int8"
    description = "ONNX Runtime INT8 (QOperator) ONNX of an FP32 EmoNeXt ONNX, STN FP32, gated against the FP32 ONNX."
    uses_calibration = True
    benchmark = BenchmarkSpec("onnxruntime-int8-qoperator", "emonext_ort_int8.onnx", "onnxruntime", "int8")

    def benchmark_args(self, fp32_onnx: Path) -> list[str]:
        return ["--onnx", str(fp32_onnx)]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--onnx", required=True, help="FP32 ONNX from python -m export.onnx")
        parser.add_argument("--output", default=str(OrtInt8Options.output),
                            help=f"output .onnx file (default {OrtInt8Options.output})")
        parser.add_argument("--calib-num", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                            help=f"calibration images (default {DEFAULT_CALIBRATION_IMAGES})")
        parser.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default per channel)")

    def options(self, args: argparse.Namespace) -> OrtInt8Options:
        check_args(args, onnx=data_path, calib=data_path, fidelity_data=data_path, calib_num=positive_int)
        onnx, output = Path(args.onnx), Path(args.output)
        if not onnx.is_file():
            raise UsageError(f"--onnx {onnx}: no such file")
        if output.suffix.lower() != ".onnx":
            raise UsageError(f"--output {output}: expected a .onnx file name")
        if output.resolve() == onnx.resolve():
            raise UsageError(f"--output {output}: would overwrite the source --onnx")
        if args.calib_num < 1:
            raise UsageError(f"--calib-num must be >= 1, got {args.calib_num}")
        return OrtInt8Options(onnx=onnx, output=output, calib=args.calib, calib_num=args.calib_num,
                              per_channel=not args.per_tensor, fidelity=gate_from_args(args))

    def output_dir(self, options: OrtInt8Options) -> Path:
        return options.output.parent

    def build(self, options: OrtInt8Options, stage: Stage) -> Iterator[Candidate]:
        import onnx

        from emonext_edge.metadata import Quantization, read_metadata
        from emonext_edge.preprocess import spec_of
        from emonext_edge.runtime import Runtime

        from .stn_scope import onnx_stn_node_names

        verify_source(options.onnx, "--onnx")  # its files still have the SHA-256 its sidecar records
        refuse_foreign_sidecar(options.output, f"--output {options.output}")
        source_meta = read_metadata(options.onnx)
        if source_meta is None:
            raise UsageError(f"--onnx {options.onnx}: no EmoNeXt metadata; export it with python -m export.onnx")
        if source_meta.precision != "fp32" or source_meta.format != "onnx":
            raise UsageError(f"--onnx {options.onnx}: expected an FP32 ONNX, got {source_meta.format} "
                             f"{source_meta.precision}")
        source = onnx.load(str(options.onnx))
        stn = onnx_stn_node_names(source)
        spec = spec_of(source_meta, str(options.onnx))  # the source's preprocessing: calibration and gate follow it
        calib, calib_desc = _calibration(options, spec)
        staged = stage.file(options.output.name)
        quantize_qoperator(source, staged, calib, stn, options.per_channel)
        check_stn_untouched(onnx.load(str(staged)), stn)

        meta = source_meta.replace(
            precision="int8", fidelity=None, artifact_sha256={},
            quantization=Quantization("onnxruntime", {"format": "qoperator", "per_channel": options.per_channel,
                                                      "activations": "uint8", "weights": "int8",
                                                      "calibration_method": "minmax",
                                                      "op_types": list(QOPERATOR_OP_TYPES)},
                                      {"description": calib_desc, "images": len(calib)}, stn_in_float=True),
            source=dict(source_meta.source, onnx=str(options.onnx), onnx_sha256=sha256_file(options.onnx)),
        )
        images, labels, data_desc = options.fidelity.load_images(spec=spec)
        reference = Runtime(options.onnx, backend="onnxruntime", providers=["CPUExecutionProvider"])

        def check(path: Path) -> Any:
            try:
                return gate_artifact(path, reference.run, images, labels, options.fidelity,
                                     reference_desc="the FP32 ONNX (ONNX Runtime CPU)", data_desc=data_desc,
                                     runtime_options=CPU)
            finally:
                reference.close()

        yield Candidate([options.output.name], meta, check)


TARGET = OrtInt8Target()
main = cli(TARGET)

if __name__ == "__main__":
    raise SystemExit(main(None))
