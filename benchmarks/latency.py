"""Latency benchmark: every artifact this machine can run, measured in one run, as ratios.

    python benchmarks/latency.py [--checkpoint CKPT | --artifacts PATH ...] [--batch-sizes 1,8]
        [--rounds N] [--iterations N] [--warmup N] [--threads N] [--quick] [--accuracy acc.json]
        [--out DIR] [--cache-dir DIR] [--model-name NAME] [-v]

With no arguments the default model (EmoNeXt-Tiny, seeded random weights, *untrained*) is
exported — or taken from the cache ``exports/cache/latency/`` (keyed by checkpoint hash and
package version; delete the folder to rebuild) — to every artifact this machine runs:
PyTorch eager FP32 (the baseline), ONNX Runtime FP32 and INT8 (Q/DQ), OpenVINO f32, bf16
(CPUs with AVX512-BF16/AMX) and INT8 (dynamic batch; compiled for each measured batch size,
``openvino-int8-static``; throughput hint), TensorRT FP16/INT8 (where TensorRT and a GPU
exist), PyTorch/ONNX Runtime on CUDA (where a GPU exists).

Protocol (why: on a shared machine a busy neighbour slows engines by different amounts, so
one sequential pass per artifact gives ratios that drift by 2x between runs):

* one **persistent worker process per artifact** (own thread pools, clean peak RSS), opened
  and warmed up once (``--warmup`` calls per batch size and mode);
* **interleaved rounds**: each round times every artifact once per (batch size, mode) —
  one untimed call, then ``--iterations`` timed calls — in an order rotated by one artifact
  per round, so a slow spell hits every artifact, not just the one that happened to run then;
* **ratios per round**: an artifact's median latency in a round / the baseline's median in
  the same round; reported as the median over rounds with the min–max spread;
* **load check**: before the run (1 s sample) and during every round, the CPU time used by
  other processes (``/proc/stat`` minus this benchmark's own processes) and the hypervisor's
  steal time are measured; a warning is printed and stored when others use the CPU.

Output (``--out``, default ``exports/latency/<timestamp>/`` in the current directory):

* ``results.json`` — schema (stable; version in ``schema``)::

    {"schema": 2, "created": iso8601, "model": {"name", "source", "sha256", "untrained": bool, "architecture"},
     "machine": {"cpu", "cpu_flags": [...], "cores", "threads", "os", "libraries": {...}, "gpu", "jetson",
                 "power_mode", "clocks_locked"},
     "settings": {"batch_sizes", "rounds", "iterations", "warmup", "threads", "quick", "baseline"},
     "protocol": {"name": "interleaved-rounds", "description", ...},
     "load": {"before": {"loadavg", "other_cores", "steal_percent"}, "rounds": [{...}], "warnings": [str]},
     "rows": [{"artifact", "path", "backend", "device", "precision", "inference_precision", "threads", "batch",
               "compiled_batch" (the static batch the engine was compiled for, "dynamic", or null),
               "mode": "model" | "end_to_end", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms",
               "images_per_s", "round_p50_ms": [...], "ratio_to_baseline" (median over rounds),
               "ratio_min", "ratio_max", "ratio_per_round": [...], "speedup_vs_baseline",
               "peak_rss_mb", "device_memory_mb", "board_power_w", "power_w", "fps_per_watt", "accuracy", "error"}]}

  ``precision`` is what the artifact holds (int8 weights/activations for INT8 IR and Q/DQ ONNX);
  ``power_w`` is the board's power (``tegrastats``: VDD_IN, POM_5V_IN on a Nano, the AGX Orin's module rails
  summed; see ``benchmarks/jetson_facts.py``) averaged over that row's timed calls, and ``fps_per_watt`` =
  ``images_per_s / power_w``; both ``null`` where no ``tegrastats`` ran (any non-Jetson) or it printed no power
  rail. ``board_power_w`` is the artifact's mean over all its rows. ``machine.power_mode`` / ``clocks_locked``
  come from ``nvpmodel -q`` / ``jetson_clocks --show`` (``null`` where absent; ``machine.jetson.tools`` says
  which tool was missing or failed).
  ``inference_precision`` is what the engine reports for its floating-point ops (OpenVINO's
  ``INFERENCE_PRECISION_HINT``: f32 unless a row asks for bf16). Latency statistics pool all
  rounds' timed calls. The baseline (``settings.baseline``) is PyTorch eager FP32; with
  ``--artifacts``, the first PyTorch artifact given, else the first artifact. ``accuracy`` is
  filled only from ``--accuracy`` (a ``benchmarks/accuracy.py --json`` file).
* ``results.csv`` (the rows), ``results.md`` (model, protocol, machine, load and the table;
  the table is also printed), ``latency.png`` (median ratio per artifact, min–max whiskers, the
  ratio printed on each bar) and, with ``--accuracy``, ``latency_vs_accuracy.png``.

Exit codes: 0 done; 1 every artifact failed; 2 bad option or input file (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np

from benchmarks import latency_common as common
from benchmarks.latency_common import (  # noqa: F401
    BASELINE,
    DEFAULT_CACHE,
    DEFAULT_RESULTS,
    FRAME_SHAPE,
    MODES,
    OTHER_CORES_WARN,
    PER_BATCH,
    REPO,
    STEAL_WARN_PERCENT,
    UNTRAINED_NAME,
    Artifact,
    BadInput,
    detail,
    progress,
)
from benchmarks.latency_machine import (  # noqa: F401 - re-exported: latency.<name> keeps working
    LoadMonitor,
    _cpu_info,
    _device_memory_mb,
    _gpu_info,
    _library_versions,
    _peak_rss_mb,
    _process_ticks,
    _run_quiet,
    _system_ticks,
    has_bf16,
    load_warning,
    machine_info,
)
from benchmarks.latency_report import (  # noqa: F401 - re-exported: latency.<name> keeps working
    COLUMNS,
    _fmt,
    _plots,
    add_accuracy,
    choose_baseline,
    header_text,
    markdown_table,
    prepare_out_dir,
    protocol_text,
    read_accuracy,
    served_rows,
    served_table,
    write_outputs,
)
from benchmarks.latency_workers import (  # noqa: F401 - re-exported: latency.<name> keeps working
    LATENCY_SCRIPT,
    ArtifactSession,
    Worker,
    WorkerError,
    _percentile,
    rotated,
    run_protocol,
    summarise,
    worker_main,
)
from emonext_edge.argtypes import check_args, data_path, non_negative_int, positive_float, positive_int, thread_count

# --------------------------------------------------------------------------- artifacts



def _cache_dir(checkpoint: Optional[Path], cache_root: Path) -> tuple[Path, Optional[str]]:
    from emonext_edge import __version__
    from emonext_edge.fileio import sha256_file

    digest = sha256_file(checkpoint) if checkpoint else None
    key = f"{digest[:16] if digest else 'default-tiny-seed0'}-v{__version__}"
    path = cache_root / key
    path.mkdir(parents=True, exist_ok=True)
    return path, digest


def _calibration_batch(calib_data: Optional[str], untrained: bool, count: int) -> np.ndarray:
    if calib_data:
        from calibration import load_calibration

        return load_calibration(calib_data, num=count)
    if not untrained:
        progress("no --calib: INT8 artifacts calibrated on synthetic images (accuracy figures meaningless)")
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces

    return preprocess(list(synthetic_faces(count, seed=1)))


def _quiet_nncf() -> None:
    """NNCF logs one INFO line per node it keeps in float; shown with -v only (set after its import)."""
    if common.VERBOSE:
        return
    import logging

    try:
        import nncf  # noqa: F401  (its import sets the "nncf" logger to INFO)
    except ImportError:
        return
    logging.getLogger("nncf").setLevel(logging.WARNING)


def build_artifacts(checkpoint: Optional[Path], calib_data: Optional[str], quick: bool, cpu_flags: list[str],
                    cache_root: Path = DEFAULT_CACHE) -> tuple[list[Artifact], dict[str, Any]]:
    """Export (or reuse) every artifact this machine can run; returns them and the model description."""
    import torch

    from export.common import load_source

    cache, digest = _cache_dir(checkpoint, cache_root)
    _quiet_nncf()
    progress(f"artifacts: cache {cache} (delete it to rebuild)")
    source = load_source(checkpoint)
    arch = source.model.architecture
    model_info = {
        "name": UNTRAINED_NAME if source.untrained else f"EmoNeXt-{arch.name.capitalize()} ({Path(str(checkpoint)).name})",
        "source": str(checkpoint) if checkpoint else "EmoNeXt-Tiny, seeded random weights (seed 0)",
        "sha256": digest,
        "untrained": source.untrained,
        "architecture": source.model.architecture.to_dict(),
    }
    artifacts: list[Artifact] = []

    torch_path = Path(checkpoint) if checkpoint else cache / "emonext_tiny_seed0.pt"
    if not torch_path.exists():
        torch.save(source.model.state_dict(), torch_path)
    artifacts.append(Artifact(BASELINE, str(torch_path), "torch", "fp32"))

    onnx_path = cache / "emonext.onnx"
    if not onnx_path.exists():
        progress(f"exporting ONNX -> {onnx_path}")
        from export.onnx import export_onnx

        export_onnx(source.model, onnx_path, source_info=source.info)
    artifacts.append(Artifact("onnxruntime-fp32", str(onnx_path), "onnxruntime", "fp32"))

    calib = None
    qdq_path = cache / "emonext_int8_qdq.onnx"
    if not qdq_path.exists():
        progress(f"quantizing ONNX to INT8 Q/DQ -> {qdq_path}")
        calib = _calibration_batch(calib_data, source.untrained, 32 if quick else 128)
        from export.fidelity import FidelityOptions
        from export.quantize_onnx import export_qdq_onnx

        # gated like every artifact; the untrained model's near-tied logits fail it: kept, marked unverified
        export_qdq_onnx(onnx_path, calib, qdq_path, FidelityOptions(keep_failed=source.untrained),
                        calibration_desc=calib_data or "synthetic faces")
    artifacts.append(Artifact("onnxruntime-int8-qdq", str(qdq_path), "onnxruntime", "int8"))

    # every registered target with a benchmark spec, built through the registry (python -m export.<name> flags)
    for name, spec, argv in _registry_builds(onnx_path, calib_data, source.untrained, quick):
        path = cache / spec.file_name
        if not path.exists():
            from emonext_edge.errors import VerificationError
            from export.driver import run_target

            progress(f"building {name} through the export registry -> {path}")
            try:
                result = run_target(name, [*argv, "--output", str(path)])
            except VerificationError as exc:  # a trained model's artifact that fails its gate is not measured
                progress(f"{name}: {exc}; row skipped")
                continue
            if not result.passed:
                progress(f"{name}: fidelity gate failed (kept, marked unverified: untrained model)")
        artifacts.append(Artifact(spec.row, str(path), spec.backend, spec.precision))

    ir_dir = cache / "openvino"
    ir_fp32, ir_int8 = ir_dir / "emonext.xml", ir_dir / "emonext_int8.xml"
    if not (ir_fp32.exists() and ir_int8.exists()):
        progress(f"building OpenVINO IR f32 and NNCF INT8 through the export registry -> {ir_dir}")
        _build_openvino(torch_path, ir_dir, _calibration_file(cache, calib_data, source.untrained, 32 if quick else 128),
                        source.untrained, 32 if quick else 128)
    if not ir_fp32.exists():  # a trained model's FP32 IR that failed its gate is not measured
        return _gpu_rows(artifacts, torch_path, onnx_path, cache), model_info
    artifacts.append(Artifact("openvino-f32", str(ir_fp32), "openvino", "f32"))
    if has_bf16(cpu_flags):
        artifacts.append(Artifact("openvino-bf16", str(ir_fp32), "openvino", "bf16", options={"precision": "bf16"}))
    if ir_int8.exists():
        artifacts.append(Artifact("openvino-int8", str(ir_int8), "openvino", "int8"))
        artifacts.append(Artifact("openvino-int8-static", str(ir_int8), "openvino", "int8",
                                  options={"batch": PER_BATCH}))
        artifacts.append(Artifact("openvino-int8-throughput", str(ir_int8), "openvino", "int8",
                                  options={"hint": "throughput"}))

    return _gpu_rows(artifacts, torch_path, onnx_path, cache), model_info


def _gpu_rows(artifacts: list[Artifact], torch_path: Path, onnx_path: Path, cache: Path) -> list[Artifact]:
    if _gpu_info():
        artifacts.append(Artifact("pytorch-cuda-fp32", str(torch_path), "torch", "fp32", "CUDA", {"device": "cuda"}))
        artifacts.append(Artifact("onnxruntime-cuda-fp32", str(onnx_path), "onnxruntime", "fp32", "CUDA",
                                  {"providers": ["CUDAExecutionProvider"]}))
        artifacts += _tensorrt_artifacts(onnx_path, cache)
    return artifacts


def _calibration_file(cache: Path, calib_data: Optional[str], untrained: bool, count: int) -> str:
    """``--calib`` for the registry builds: the user's data, else a calib.npz of synthetic faces in the cache."""
    if calib_data:
        return calib_data
    path = cache / f"calib_synthetic_{count}.npz"
    if not path.exists():
        from calibration import save_calibration

        save_calibration(path, _calibration_batch(None, untrained, count), {"source": f"{count} synthetic faces (seed 1)"})
    return str(path)


def _build_openvino(checkpoint: Path, ir_dir: Path, calib: str, untrained: bool, count: int) -> None:
    """FP32 + NNCF INT8 IR through ``run_target("openvino", ...)``: gated like ``python -m export.openvino``.

    The untrained default model's near-tied logits fail the gate: kept, marked unverified
    (``--keep-failed``). A trained model's IR that fails is not written and its rows are skipped."""
    from emonext_edge.errors import VerificationError
    from export.driver import run_target

    argv = ["--checkpoint", str(checkpoint), "--output", str(ir_dir), "--int8", "--calib", calib,
            "--subset-size", str(count), *(["--keep-failed"] if untrained else [])]
    try:
        result = run_target("openvino", argv)
    except VerificationError as exc:
        progress(f"openvino: {exc}; failed rows skipped")
        return
    if not result.passed:
        progress("openvino: fidelity gate failed (kept, marked unverified: untrained model)")


def _registry_builds(onnx_path: Path, calib_data: Optional[str], untrained: bool, quick: bool
                     ) -> list[tuple[str, Any, list[str]]]:
    """(target name, its BenchmarkSpec, CLI flags) of every registered target with a ``benchmark`` spec."""
    from export.targets import TARGETS, get_target

    common = ["--calib-num", "32" if quick else "128", "--fidelity-images", "32" if quick else "200"]
    if calib_data:
        common += ["--calib", calib_data]
    if untrained:
        common.append("--keep-failed")  # near-tied logits: the gate is recorded, the artifact still measured
    builds = []
    for name in TARGETS:
        target = get_target(name)
        if target.benchmark is not None:
            builds.append((name, target.benchmark, [*target.benchmark_args(onnx_path), *common]))
    return builds


def _tensorrt_artifacts(onnx_path: Path, cache: Path) -> list[Artifact]:
    """TensorRT FP16 and INT8 engines, built with the exporter's CLI (which verifies them) when TensorRT exists."""
    from emonext_edge.errors import BackendUnavailableError
    from emonext_edge.tensorrt_compat import import_tensorrt

    try:
        import_tensorrt()
    except BackendUnavailableError as exc:
        progress(f"GPU present but no TensorRT rows: {exc}")
        return []
    out = []
    for precision in ("fp16", "int8"):
        engine = cache / f"emonext_{precision}.engine"
        if not engine.exists():
            progress(f"building TensorRT {precision} engine -> {engine}")
            cmd = [sys.executable, "-m", "export.tensorrt", "--onnx", str(onnx_path), f"--{precision}",
                   "--output", str(engine), "--timing-cache", str(cache / "trt.timing-cache")]
            if subprocess.run(cmd, check=False, cwd=REPO).returncode != 0:
                progress(f"TensorRT {precision} build failed; row skipped")
                continue
        out.append(Artifact(f"tensorrt-{precision}", str(engine), "tensorrt", precision, "CUDA"))
    return out


def artifacts_from_paths(paths: list[str]) -> list[Artifact]:
    from emonext_edge.backends import backend_name_for

    out = []
    for p in paths:
        backend = backend_name_for(p)
        out.append(Artifact(f"{backend}:{Path(p).name}", p, backend, "as-built"))
    return out


# --------------------------------------------------------------------------- CLI


def _positive_int(option: str, value: Optional[int], minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise BadInput(f"{option} must be >= {minimum}, got {value}")


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(b < 1 for b in sizes):
        raise BadInput(f"--batch-sizes: expected comma-separated positive integers such as 1,8, got {text!r}")
    return list(dict.fromkeys(sizes))


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """The exporters' parser (:class:`export.driver.ExportParser`); a usage error is one line, exit 2."""
    from emonext_edge.errors import UsageError
    from export.driver import ExportParser, add_deprecated_alias

    p = ExportParser(prog="python benchmarks/latency.py", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="EmoNeXt checkpoint (default: seeded untrained EmoNeXt-Tiny)")
    src.add_argument("--artifacts", nargs="+", help="benchmark these files instead of exporting")
    p.add_argument("--calib", metavar="PATH",
                   help="calibration data for INT8 artifacts (with --checkpoint): calib.npz or a dataset root")
    add_deprecated_alias(p, "--calib-data")
    p.add_argument("--batch-sizes", default=None, help="comma-separated, default 1,8 (1 with --quick)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 3 with --quick)")
    p.add_argument("--iterations", type=int, default=None,
                   help="timed calls per artifact, batch size and mode in each round (default 10; 5 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls when a worker opens (default 5; 3 --quick)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads per engine (default: all cores)")
    p.add_argument("--quick", action="store_true", help="batch 1, 3 short rounds: about 2 minutes on 2 cores")
    p.add_argument("--accuracy", type=Path, help="a benchmarks/accuracy.py --json file to add accuracy columns")
    p.add_argument("--model-name", help="name of the model in the results and the plot")
    p.add_argument("--out", type=Path, default=None, help="results folder (default exports/latency/<timestamp>)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help=f"exported artifacts of the default/--checkpoint model (default {DEFAULT_CACHE})")
    p.add_argument("--timeout", type=float, default=600, help="seconds a worker may take to answer")
    p.add_argument("--served", metavar="ARTIFACT",
                   help="also serve this .onnx/.xml from the local Triton server (benchmarks/served.py) and add "
                        "client latency/throughput at concurrency 1/4/8 with the server's inferences/executions")
    p.add_argument("--served-requests", type=int, default=50, help="timed requests per client for --served")
    p.add_argument("-v", "--verbose", action="store_true", help="show the workers' own output")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    try:
        return p.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc} (see --help)", file=sys.stderr)
        raise SystemExit(2) from None


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    batch_sizes = parse_batch_sizes(args.batch_sizes or ("1" if args.quick else "1,8"))
    _positive_int("--rounds", args.rounds)
    _positive_int("--iterations", args.iterations)
    _positive_int("--warmup", args.warmup, minimum=0)
    _positive_int("--threads", args.threads)
    if args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, got {args.timeout}")
    _positive_int("--served-requests", args.served_requests)
    for option, p in [("--checkpoint", args.checkpoint), ("--accuracy", args.accuracy),
                      *([("--served", Path(args.served))] if args.served else []),
                      *[("--artifacts", Path(a)) for a in args.artifacts or []]]:
        if p is not None and not Path(p).is_file():
            raise BadInput(f"{option} {p}: no such file")
    return {
        "batch_sizes": batch_sizes,
        "rounds": args.rounds or (3 if args.quick else 5),
        "iterations": args.iterations or (5 if args.quick else 10),
        "warmup": args.warmup if args.warmup is not None else (3 if args.quick else 5),
        "threads": args.threads,
        "quick": args.quick,
    }


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args._worker:
        return worker_main()
    common.VERBOSE = args.verbose
    try:
        check_args(args, error=BadInput, rounds=positive_int, iterations=positive_int, warmup=non_negative_int,
                   threads=thread_count, timeout=positive_float, served_requests=positive_int, calib=data_path)
        settings = settings_from_args(args)
        accuracy = read_accuracy(args.accuracy) if args.accuracy else None
        created = _dt.datetime.now(_dt.timezone.utc)
        out = prepare_out_dir(args.out or DEFAULT_RESULTS / created.strftime("%Y%m%d-%H%M%S"))
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    machine = machine_info(args.threads)
    progress(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {machine['cpu_flags']}")
    before = LoadMonitor(lambda: [os.getpid()])
    time.sleep(1.0)
    load_before = before.measure()
    warning = load_warning(load_before, "before the run")
    if warning:
        progress("warning: " + warning)
    if args.artifacts:
        artifacts = artifacts_from_paths(args.artifacts)
        model_info = {"name": args.model_name or "model of the given artifacts", "source": "given artifacts",
                      "sha256": None, "untrained": False, "architecture": None}
    else:
        try:
            artifacts, model_info = build_artifacts(args.checkpoint, args.calib, args.quick,
                                                    machine["cpu_flags"], args.cache_dir)
        except Exception as exc:  # a broken checkpoint/calibration is bad input: one line
            from emonext_edge.errors import EmoNeXtError

            if isinstance(exc, (EmoNeXtError, OSError)):
                print(f"error: {exc}", file=sys.stderr)
                return 2
            raise
        if args.model_name:
            model_info["name"] = args.model_name
    baseline = choose_baseline(artifacts)
    settings["baseline"] = baseline
    progress(f"model: {model_info['name']}; ratios against {baseline}")
    workers, load = run_protocol(artifacts, settings, args.timeout)
    load["before"] = load_before
    if warning:
        load["warnings"].insert(0, warning)
    rows = summarise(workers, baseline, settings)
    add_accuracy(rows, accuracy, bool(model_info["untrained"]))
    report = {
        "schema": 2,
        "created": created.isoformat(timespec="seconds"),
        "model": model_info,
        "machine": machine,
        "settings": settings,
        "protocol": {"name": "interleaved-rounds", "description": protocol_text(settings),
                     "per_round_statistic": "median", "order": "rotated by one artifact per round",
                     "workers": "one persistent process per artifact"},
        "load": load,
        "rows": rows,
    }
    if args.served:
        report["served"] = served_rows(args.served, args.served_requests, args.threads, out, args.timeout)
    write_outputs(out, report)
    progress(f"results: {out}")
    failed = [w.art.name for w in workers if not w.alive]
    if len(failed) == len(workers):
        print(f"error: every artifact failed ({', '.join(failed)}); see the table", file=sys.stderr)
        return 1
    if baseline in failed:
        progress(f"warning: the baseline {baseline} failed: no ratios")
    return 0


if __name__ == "__main__":
    sys.exit(main())
