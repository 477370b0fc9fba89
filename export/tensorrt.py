"""``python -m export.tensorrt``: TensorRT FP16/INT8 engines for TensorRT 8.5/8.6, 10.x and 11.x.

Pipeline (each step only needs what it names):

1. source ONNX (``--onnx``, or exported from ``--checkpoint`` / the seeded default model) — CPU;
2. operator check per TensorRT version (``export/trt_opcheck.py``; ``--check-only`` stops here) — CPU;
3. FP16: mixed FP16 ONNX (``export/fp16_onnx.py``) checked against FP32 with ONNX Runtime — CPU;
   INT8 explicit: Q/DQ ONNX (``export/quantize_onnx.py``) through the fidelity gate — CPU;
4. engine build with the calls of the installed TensorRT's generation
   (``emonext_edge/tensorrt_compat.py``), plain plan file + manifest sidecar, timing cache;
5. the engine is loaded by the Runtime's backend and compared with ONNX Runtime.

Without TensorRT or a GPU, steps 1-3 run and the command stops with one ``error:`` line (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from emonext_edge import tensorrt_compat as compat
from emonext_edge.errors import BackendUnavailableError
from emonext_edge.fileio import atomic_path, check_writable_dir, sha256_file, write_json_atomic
from emonext_edge.metadata import read_sidecar, sidecar_path

from calibration.fidelity import add_fidelity_arguments, gate_from_args

from . import trt_opcheck
from .common import UsageError, cli_entry, load_source, synthetic_faces

log = logging.getLogger(__name__)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.tensorrt", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--onnx", help="FP32 ONNX exported by python -m export.onnx")
    src.add_argument("--checkpoint", help="EmoNeXt checkpoint (.pt) to export first")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--calib", help="calib.npz from python -m calibration build")
    p.add_argument("--calib-data", help="data to calibrate on (FER2013 tree, CSV, face folder, video)")
    p.add_argument("--calib-num", type=int, default=256)
    p.add_argument("--int8-mode", choices=("explicit", "calibrator"), default="explicit")
    p.add_argument("--quantizer", choices=("nncf", "ort"), default="nncf", help="Q/DQ library (explicit INT8)")
    p.add_argument("--workspace", type=float, default=1.0, help="builder workspace in GB (keep small on Jetson)")
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--dla-core", type=int, default=None)
    p.add_argument("--timing-cache", help="timing cache file (read if present, updated after the build)")
    p.add_argument("--output", default="emonext.engine")
    p.add_argument("--check-only", action="store_true", help="only the operator check (no TensorRT needed)")
    add_fidelity_arguments(p)
    args = p.parse_args(argv)
    if not 1 <= args.min_batch <= args.opt_batch <= args.max_batch:
        raise UsageError(f"need 1 <= --min-batch <= --opt-batch <= --max-batch, got "
                         f"{args.min_batch}/{args.opt_batch}/{args.max_batch}")
    if (args.calib or args.calib_data) and not args.int8:
        raise UsageError("--calib/--calib-data only make sense with --int8")
    if args.workspace <= 0:
        raise UsageError(f"--workspace must be positive, got {args.workspace}")
    return args


def _installed_version() -> Optional[str]:
    try:
        return str(compat.import_tensorrt().__version__)
    except BackendUnavailableError:
        return None


def source_onnx(args: argparse.Namespace, out_dir: Path, say: Callable[[str], None]) -> tuple[Path, bool]:
    """The FP32 ONNX to start from and whether the model is the untrained default."""
    if args.onnx:
        path = Path(args.onnx)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        say(f"source: ONNX {path}")
        return path, False
    source = load_source(args.checkpoint)
    say(f"source: {source.description}" + (", calibrated on synthetic inputs" if source.untrained else ""))
    installed = _installed_version()
    plan = compat.plan_for(installed) if installed else None
    stn, opset = (plan.stn_mode, plan.onnx_opset) if plan else ("native", 17)
    from .onnx import export_onnx

    path = out_dir / (Path(args.output).stem + ".fp32.onnx")
    export_onnx(source.model, path, stn=stn, opset=opset, source_info=source.info)
    say(f"wrote {path} (STN {stn}, opset {opset}" + (f", for TensorRT {installed})" if installed else
                                                       "; TensorRT 8.5 needs --opset 16 via export.onnx)"))
    return path, source.untrained


def calibration_batch(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.calib or args.calib_data:
        from calibration import load_calibration

        where = args.calib or args.calib_data
        return load_calibration(where, num=args.calib_num), f"{where}"
    from emonext_edge.preprocess import preprocess

    n = min(args.calib_num, 64)
    return preprocess(list(synthetic_faces(n, seed=1))), f"{n} synthetic images"


def _ort(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: np.asarray(session.run(None, {name: batch})[0])


def gate_images(args: argparse.Namespace, opts: Any, calib: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray], str]:
    """Held-out (labeled where possible) images for the fidelity gate.

    ``--fidelity-data``, else the ``val`` split of ``--calib-data``; with only a calib.npz (or
    the default model) the first calibration images — not held out, and the output says so.
    """
    if opts.data is not None or args.calib_data:
        return opts.load_images(args.calib_data)
    n = min(len(calib), opts.images)
    return calib[:n], None, f"{n} calibration images (not held out; pass --fidelity-data for a labeled check)"


def gate(candidate: Callable[[np.ndarray], np.ndarray], reference: Callable[[np.ndarray], np.ndarray],
         artifacts: Sequence[Path], check: tuple[np.ndarray, Optional[np.ndarray], str], what: str,
         untrained: bool, opts: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the fidelity gate of ``candidate`` against ``reference``; on failure remove ``artifacts`` and raise."""
    images, labels, description = check
    say(f"fidelity of {what} on {description}:")
    report = opts.run(candidate, reference, images, labels)  # logs its summary
    if not report.passed and untrained:
        say(f"{what}: untrained default model (near-tied logits): gate not enforced")
    else:
        opts.enforce(report, artifacts)  # removes the artifact (unless --keep-failed) and raises on failure
    return report.to_dict()


def _gpu() -> tuple[Any, str, str]:
    try:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as cuda
    except Exception as exc:
        raise BackendUnavailableError(f"no usable CUDA GPU via pycuda ({exc}); engines must be built on the target "
                                      "device — the ONNX artifacts above are ready to copy there") from None
    dev = cuda.Context.get_device()
    major, minor = dev.compute_capability()
    return cuda, str(dev.name()), f"{major}.{minor}"


def build_engine(args: argparse.Namespace, onnx_for_build: Path, fp32_onnx: Path, calib: np.ndarray,
                 say: Callable[[str], None]) -> dict[str, Any]:
    plan = compat.installed_plan()
    trt = compat.import_tensorrt()
    _, gpu, cc = _gpu()
    precision = "+".join(p for p, on in (("fp16", args.fp16), ("int8", args.int8)) if on) or "fp32"
    output = Path(args.output)
    calibrator = None
    if args.int8 and args.int8_mode == "calibrator":
        from calibration.trt_calibrator import make_entropy_calibrator

        calibrator = make_entropy_calibrator(plan, calib, cache_path=output.with_suffix(".calib.cache"))
    from .quantize_onnx import stn_node_names

    cache_path = Path(args.timing_cache) if args.timing_cache else None
    opts = compat.BuildOptions(
        precision=precision, int8_mode=args.int8_mode, workspace_bytes=int(args.workspace * (1 << 30)),
        profile=(args.min_batch, args.opt_batch, args.max_batch), dla_core=args.dla_core, calibrator=calibrator,
        fp32_layer_names=tuple(stn_node_names(fp32_onnx)),
        timing_cache=cache_path.read_bytes() if cache_path and cache_path.is_file() else None, progress=say,
    )
    say(f"building with TensorRT {trt.__version__} on {gpu} (compute {cc}), {precision}"
        f"{' (strongly typed)' if plan.strongly_typed else ''} from {onnx_for_build}")
    engine, cache = compat.build_serialized(plan, trt, str(onnx_for_build), opts)
    with atomic_path(output) as tmp:
        tmp.write_bytes(engine)
    if cache_path and cache:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(cache)
    meta = read_sidecar(fp32_onnx) or {}
    meta.update({
        "tensorrt": {
            "version": str(trt.__version__), "gpu": gpu, "compute_capability": cc, "precision": precision,
            "int8_mode": args.int8_mode if args.int8 else None, "strongly_typed": plan.strongly_typed,
            "profile": {"min": [args.min_batch, 3, 224, 224], "opt": [args.opt_batch, 3, 224, 224],
                        "max": [args.max_batch, 3, 224, 224]},
            "dla_core": args.dla_core, "jetpack": compat.jetpack_release(),
            "source_onnx": str(onnx_for_build), "source_onnx_sha256": sha256_file(onnx_for_build),
        }
    })
    write_json_atomic(sidecar_path(output), meta)
    say(f"wrote {output} and {sidecar_path(output)}")
    return meta


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    output = Path(args.output)
    out_dir = check_writable_dir(output)
    if output.suffix.lower() not in (".engine", ".plan", ".trt"):
        raise UsageError(f"--output {output}: expected a .engine or .plan file name")
    fp32, untrained = source_onnx(args, out_dir, say)
    installed = _installed_version()
    versions = list(trt_opcheck.DEFAULT_VERSIONS) + ([installed] if installed else [])
    results = trt_opcheck.report(fp32, versions)
    for line in trt_opcheck.format_report(results):
        say(line)
    if args.check_only:
        return 1 if installed and results[installed] else 0

    calib, calib_desc = calibration_batch(args)
    opts = gate_from_args(args)
    check = gate_images(args, opts, calib)
    stem = out_dir / output.stem
    onnx_for_build = fp32
    plan = compat.plan_for(installed) if installed else None
    if args.fp16 and (plan is None or plan.fp16_via_onnx):
        from .fp16_onnx import convert_fp16

        fp16 = convert_fp16(fp32, Path(f"{stem}.fp16.onnx"))
        gate(_ort(fp16), _ort(fp32), [fp16], check, "FP16 ONNX", untrained, opts, say)
        say(f"wrote {fp16}")
        onnx_for_build = fp16
    if args.int8 and args.int8_mode == "explicit":
        from .quantize_onnx import quantize_qdq

        say(f"calibrating on {calib_desc}")
        qdq = quantize_qdq(fp32, calib, Path(f"{stem}.int8.qdq.onnx"), exclude_stn=True, method=args.quantizer)
        gate(_ort(qdq), _ort(fp32), [qdq], check, "INT8 Q/DQ ONNX", untrained, opts, say)
        say(f"wrote {qdq}")
        onnx_for_build = qdq
    if installed is None:
        raise BackendUnavailableError(
            "TensorRT is not installed here: ONNX artifacts written; build the engine on the target device "
            "(python -m export.tensorrt --onnx ... there)"
        )
    build_engine(args, onnx_for_build, fp32, calib, say)

    from emonext_edge import Runtime

    with Runtime(output, backend="tensorrt") as engine:  # the Runtime splits batches to the engine's profile
        gate(engine.run, _ort(onnx_for_build), [output, sidecar_path(output)], check, "TensorRT engine",
             untrained, opts, say)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(None))
