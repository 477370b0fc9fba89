"""Latency benchmark: every artifact this machine can run, measured in one run, as ratios.

    python benchmarks/latency.py [--checkpoint CKPT] [--artifacts PATH ...] [--batch-sizes 1,8]
        [--iterations N] [--warmup N] [--threads N] [--quick] [--accuracy results.json] [--out DIR]

With no arguments the default model (EmoNeXt-Tiny, seeded random weights, *untrained*) is
exported — or taken from ``benchmarks/cache/`` (keyed by checkpoint hash and package
version) — to every artifact this machine runs: PyTorch eager FP32 (the baseline),
ONNX Runtime FP32 and INT8 (Q/DQ), OpenVINO f32, bf16 (CPUs with AVX512-BF16/AMX) and
INT8 (dynamic batch; compiled for each measured batch size, ``openvino-int8-static``;
throughput hint), TensorRT FP16/INT8 (where TensorRT and a GPU exist), PyTorch/ONNX Runtime on CUDA
(where a GPU exists). Each artifact is measured in its own subprocess (clean peak RSS,
no cross-talk between engines' thread pools).

Output (``--out``, default ``benchmarks/results/<timestamp>/``):

* ``results.json`` — schema (stable; version in ``schema``)::

    {"schema": 1, "created": iso8601, "model": {"source", "sha256", "untrained": bool, "architecture"},
     "machine": {"cpu", "cpu_flags": [...], "cores", "threads", "libraries": {...}, "gpu", "jetson"},
     "settings": {"batch_sizes", "iterations", "warmup", "threads", "quick"},
     "rows": [{"artifact", "path", "backend", "device", "precision", "inference_precision", "threads", "batch",
               "compiled_batch" (the static batch the engine was compiled for, "dynamic", or null),
               "mode": "model" | "end_to_end", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms",
               "images_per_s", "ratio_to_baseline", "speedup_vs_baseline", "peak_rss_mb",
               "device_memory_mb", "board_power_w", "accuracy", "error"}]}

  ``precision`` is what the artifact holds (int8 weights/activations for INT8 IR and Q/DQ ONNX);
  ``inference_precision`` is what the engine reports for its floating-point ops (OpenVINO's
  ``INFERENCE_PRECISION_HINT``: f32 unless a row asks for bf16).
  ``ratio_to_baseline`` = mean latency / the baseline's mean latency at the same batch
  size and mode (lower is better). The baseline (``settings.baseline``) is PyTorch eager
  FP32; with ``--artifacts``, the first PyTorch artifact given, else the first artifact; ``accuracy`` is filled only from ``--accuracy``.
* ``results.csv`` (the rows), ``results.md`` (the table, also printed), ``latency.png``
  (mean latency per artifact with p90 whiskers) and, with ``--accuracy``,
  ``latency_vs_accuracy.png``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np

CACHE_ROOT = REPO / "benchmarks" / "cache"
#: Artifact option value: compile the artifact for each measured batch size (OpenVINO ``batch=``)
PER_BATCH = "per-batch"
BASELINE = "pytorch-eager-fp32"
FRAME_SHAPE = (480, 640, 3)  # a VGA camera frame, for end-to-end timings


def progress(msg: str) -> None:
    print(f"[latency] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def _cpu_info() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile",
              "asimddp", "i8mm", "bf16", "sve")
    return model, [f for f in wanted if f in flags]


def _library_versions() -> dict[str, Optional[str]]:
    from importlib import metadata

    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    for dist in ("numpy", "opencv-python-headless", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino",
                 "nncf", "tensorrt", "pycuda"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _run_quiet(cmd: list[str], timeout: float = 10) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _gpu_info() -> Optional[dict[str, str]]:
    out = _run_quiet(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if not out:
        return None
    name, driver, memory = (s.strip() for s in out.splitlines()[0].split(","))
    return {"name": name, "driver": driver, "memory": memory}


def _jetson_info() -> Optional[dict[str, Any]]:
    release = Path("/etc/nv_tegra_release")
    if not release.exists():
        return None
    return {
        "l4t": release.read_text().splitlines()[0].strip(),
        "power_mode": _run_quiet(["nvpmodel", "-q"]),
        "clocks": _run_quiet(["jetson_clocks", "--show"]),
        "clocks_locked": None,  # filled from `jetson_clocks --show` by a person reading it; not parsed reliably
    }


def machine_info(threads: int) -> dict[str, Any]:
    cpu, flags = _cpu_info()
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "threads": threads,
        "os": platform.platform(),
        "libraries": _library_versions(),
        "gpu": _gpu_info(),
        "jetson": _jetson_info(),
    }


def has_bf16(flags: list[str]) -> bool:
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


# --------------------------------------------------------------------------- artifacts


@dataclass
class Artifact:
    name: str  # e.g. "onnxruntime-fp32"
    path: str
    backend: str
    precision: str
    device: str = "CPU"
    options: dict[str, Any] = field(default_factory=dict)


def _cache_dir(checkpoint: Optional[Path]) -> tuple[Path, Optional[str]]:
    from emonext_edge import __version__
    from emonext_edge.fileio import sha256_file

    digest = sha256_file(checkpoint) if checkpoint else None
    key = f"{digest[:16] if digest else 'default-tiny-seed0'}-v{__version__}"
    path = CACHE_ROOT / key
    path.mkdir(parents=True, exist_ok=True)
    return path, digest


def _calibration_batch(calib_data: Optional[str], untrained: bool, count: int) -> np.ndarray:
    if calib_data:
        from calibration import load_calibration

        return load_calibration(calib_data, num=count)
    if not untrained:
        progress("no --calib-data: INT8 artifacts calibrated on synthetic images (accuracy figures meaningless)")
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces

    return preprocess(list(synthetic_faces(count, seed=1)))


def build_artifacts(checkpoint: Optional[Path], calib_data: Optional[str], quick: bool, cpu_flags: list[str]) -> tuple[list[Artifact], dict[str, Any]]:
    """Export (or reuse) every artifact this machine can run; returns them and the model description."""
    import torch

    from export.common import load_source

    cache, digest = _cache_dir(checkpoint)
    source = load_source(checkpoint)
    model_info = {
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
        from export.quantize_onnx import quantize_qdq

        quantize_qdq(onnx_path, calib, qdq_path)
    artifacts.append(Artifact("onnxruntime-int8-qdq", str(qdq_path), "onnxruntime", "int8"))

    from export.openvino import export_ir

    ir_dir = cache / "openvino"
    ir_fp32, ir_int8 = ir_dir / "emonext.xml", ir_dir / "emonext_int8.xml"
    if not (ir_fp32.exists() and ir_int8.exists()):
        progress(f"converting to OpenVINO IR f32 and NNCF INT8 -> {ir_dir}")
        if calib is None:
            calib = _calibration_batch(calib_data, source.untrained, 32 if quick else 128)
        ir_dir.mkdir(exist_ok=True)
        # the untrained default model has no meaningful fidelity figures: keep its INT8 IR regardless
        export_ir(checkpoint=torch_path, output_dir=ir_dir, precisions=("fp32", "int8"), calib=calib,
                  keep_failed=source.untrained)
    artifacts.append(Artifact("openvino-f32", str(ir_fp32), "openvino", "f32"))
    if has_bf16(cpu_flags):
        artifacts.append(Artifact("openvino-bf16", str(ir_fp32), "openvino", "bf16", options={"precision": "bf16"}))
    artifacts.append(Artifact("openvino-int8", str(ir_int8), "openvino", "int8"))
    artifacts.append(Artifact("openvino-int8-static", str(ir_int8), "openvino", "int8", options={"batch": PER_BATCH}))
    artifacts.append(Artifact("openvino-int8-throughput", str(ir_int8), "openvino", "int8",
                              options={"hint": "throughput"}))

    if _gpu_info():
        artifacts.append(Artifact("pytorch-cuda-fp32", str(torch_path), "torch", "fp32", "CUDA", {"device": "cuda"}))
        artifacts.append(Artifact("onnxruntime-cuda-fp32", str(onnx_path), "onnxruntime", "fp32", "CUDA",
                                  {"providers": ["CUDAExecutionProvider"]}))
        artifacts += _tensorrt_artifacts(onnx_path, cache)
    return artifacts, model_info


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
            if subprocess.run(cmd, cwd=REPO).returncode != 0:
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


# --------------------------------------------------------------------------- measuring (worker side)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _peak_rss_mb() -> Optional[float]:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _PowerSampler:
    """Average board power from tegrastats while a row runs (Jetson only)."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        if shutil.which("tegrastats"):
            self.proc = subprocess.Popen(["tegrastats", "--interval", "100"], stdout=subprocess.PIPE, text=True)

    def stop(self) -> Optional[float]:
        if self.proc is None:
            return None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=5)
        import re

        watts = [int(m.group(1)) / 1000.0 for m in re.finditer(r"(?:VDD_IN|POM_5V_IN) (\d+)mW", out)]
        return statistics.fmean(watts) if watts else None


def _time_calls(fn, warmup: int, iterations: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _time_batch(rt: Any, batch: int, spec: dict[str, Any], name: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    from emonext_edge.preprocess import preprocess

    frame = rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    max_batch = rt.info.get("max_batch")
    if max_batch is not None and batch > max_batch:
        progress(f"  {name}: batch {batch} > the artifact's max batch {max_batch}; the Runtime splits it")
    x = rng.random((batch, 3, 224, 224), dtype=np.float32)
    frames = [frame] * batch
    rows = []
    for mode, fn in (("model", lambda: rt.run(x)), ("end_to_end", lambda: rt.run(preprocess(frames)))):
        progress(f"  {name} batch {batch} {mode}: {spec['warmup']} warm-up + {spec['iterations']} timed runs")
        sampler = _PowerSampler()
        times = _time_calls(fn, spec["warmup"], spec["iterations"])
        power = sampler.stop()
        mean = statistics.fmean(times)
        rows.append({
            "batch": batch, "mode": mode, "mean_ms": mean, "p50_ms": _percentile(times, 50),
            "p90_ms": _percentile(times, 90), "p99_ms": _percentile(times, 99), "min_ms": min(times),
            "images_per_s": batch * 1000.0 / mean, "board_power_w": power,
            "device_memory_mb": _device_memory_mb(dict(rt.info)), "compiled_batch": rt.info.get("batch"),
        })
    return rows


def measure(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Run in the worker process: open the artifact with the Runtime and time it.

    An artifact whose ``batch`` option is ``PER_BATCH`` is opened once per batch size,
    compiled for that static size; any other artifact is opened once for all sizes.
    """
    from emonext_edge import Runtime

    art = Artifact(**spec["artifact"])
    options = dict(art.options)
    if art.backend != "tensorrt":  # an engine's CPU side has no thread setting
        options.setdefault("threads", spec["threads"])
    per_batch = options.get("batch") == PER_BATCH
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    stored_precision = None
    for sizes in ([[b] for b in spec["batch_sizes"]] if per_batch else [spec["batch_sizes"]]):
        opened = dict(options, batch=sizes[0]) if per_batch else options
        with Runtime(art.path, backend=art.backend, **opened) as rt:
            info = dict(rt.info)
            stored_precision = rt.metadata.get("precision")  # what the artifact holds, e.g. int8
            for batch in sizes:
                rows += _time_batch(rt, batch, spec, art.name, rng)
    peak = _peak_rss_mb()
    for r in rows:
        r.update({
            "artifact": art.name, "path": art.path, "backend": info.get("backend", art.backend),
            "device": str(info.get("device", art.device)),
            "precision": art.precision if art.precision != "as-built" else str(stored_precision or info.get("precision", "")),
            "inference_precision": str(info.get("precision", "")),
            "threads": info.get("threads", spec["threads"]), "peak_rss_mb": peak,
        })
    return rows


def _device_memory_mb(info: dict[str, Any]) -> Optional[float]:
    if "CUDA" not in str(info.get("device", "")).upper() and "cuda" not in str(info.get("provider", "")).lower():
        return None
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    out = _run_quiet(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    return float(out.splitlines()[0]) if out else None


def run_worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        rows = measure(spec)
    except Exception as exc:  # reported in the table, not fatal for the whole benchmark
        art = spec["artifact"]
        rows = [{"artifact": art["name"], "path": art["path"], "backend": art["backend"], "precision": art["precision"],
                 "device": art["device"], "batch": b, "error": f"{type(exc).__name__}: {exc}"} for b in spec["batch_sizes"]]
    Path(spec["result"]).write_text(json.dumps(rows))
    return 0


def measure_in_subprocess(art: Artifact, settings: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = dict(settings, artifact=asdict(art), result=str(Path(tmp) / "rows.json"))
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        if settings["threads"]:
            env.setdefault("OMP_NUM_THREADS", str(settings["threads"]))
        try:
            subprocess.run([sys.executable, __file__, "--_worker", str(spec_path)], env=env, timeout=timeout, check=False)
            return json.loads((Path(tmp) / "rows.json").read_text())
        except (subprocess.TimeoutExpired, FileNotFoundError, ValueError) as exc:
            return [{"artifact": art.name, "path": art.path, "backend": art.backend, "precision": art.precision,
                     "device": art.device, "batch": b, "error": f"worker failed: {exc}"} for b in settings["batch_sizes"]]


# --------------------------------------------------------------------------- reporting


def choose_baseline(artifacts: list[Artifact]) -> str:
    """PyTorch eager FP32 when present (the default run), else the first PyTorch artifact, else the first one."""
    names = [a.name for a in artifacts]
    if BASELINE in names:
        return BASELINE
    return next((a.name for a in artifacts if a.backend == "torch"), names[0])


def add_ratios(rows: list[dict[str, Any]], baseline: str = BASELINE) -> None:
    base = {(r["batch"], r.get("mode")): r["mean_ms"] for r in rows if r["artifact"] == baseline and "mean_ms" in r}
    for r in rows:
        ref = base.get((r["batch"], r.get("mode")))
        if ref and "mean_ms" in r:
            r["ratio_to_baseline"] = r["mean_ms"] / ref
            r["speedup_vs_baseline"] = ref / r["mean_ms"]


def add_accuracy(rows: list[dict[str, Any]], accuracy_json: Optional[Path], untrained: bool) -> None:
    if accuracy_json is None:
        return
    if untrained:
        progress("--accuracy ignored: the default model is untrained, its accuracy means nothing")
        return
    results = json.loads(Path(accuracy_json).read_text())["results"]
    by_path = {str(Path(r["model"]).resolve()): r["accuracy"] for r in results}
    for r in rows:
        r["accuracy"] = by_path.get(str(Path(r["path"]).resolve()))


COLUMNS = ["artifact", "backend", "device", "precision", "inference_precision", "threads", "batch", "mode", "mean_ms", "p50_ms", "p90_ms",
           "p99_ms", "min_ms", "images_per_s", "ratio_to_baseline", "speedup_vs_baseline", "peak_rss_mb",
           "device_memory_mb", "board_power_w", "accuracy", "error"]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]], untrained: bool) -> str:
    cols = ["artifact", "precision", "inference_precision", "device", "threads", "batch", "compiled_batch", "mode", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
            "images_per_s", "ratio_to_baseline", "peak_rss_mb", "accuracy"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['artifact']} | {r.get('precision', '')} | | | {r.get('batch', '')} | | error: {r['error']} |")
            continue
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    if untrained:
        lines.append("\nModel: EmoNeXt-Tiny with seeded random weights (**untrained**): latency only, no accuracy.")
    return "\n".join(lines)


def write_outputs(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report["rows"])
    table = markdown_table(report["rows"], report["model"]["untrained"])
    header = (f"Machine: {report['machine']['cpu']} ({report['machine']['cores']} cores, "
              f"{report['settings']['threads']} threads used), flags: {', '.join(report['machine']['cpu_flags'])}\n\n")
    (out / "results.md").write_text(header + table + "\n")
    print(header + table)
    _plots(out, report["rows"])


def _plots(out: Path, rows: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plots")
        return
    ok = [r for r in rows if "mean_ms" in r and r.get("mode") == "model"]
    if not ok:
        return
    batches = sorted({r["batch"] for r in ok})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4), squeeze=False)
    for ax, b in zip(axes[0], batches):
        sel = [r for r in ok if r["batch"] == b]
        means = [r["mean_ms"] for r in sel]
        whisk = [max(r["p90_ms"] - r["mean_ms"], 0.0) for r in sel]
        ax.barh([r["artifact"] for r in sel], means, xerr=[[0] * len(sel), whisk], capsize=3)
        ax.set_xlabel("mean latency, ms (whisker: p90)")
        ax.set_title(f"batch {b}, model only")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    acc = [r for r in ok if r.get("accuracy") is not None and r["batch"] == batches[0]]
    if acc:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in acc:
            ax.scatter(r["mean_ms"], r["accuracy"])
            ax.annotate(r["artifact"], (r["mean_ms"], r["accuracy"]), fontsize=8)
        ax.set_xlabel(f"mean latency, ms (batch {batches[0]})")
        ax.set_ylabel("top-1 accuracy")
        fig.tight_layout()
        fig.savefig(out / "latency_vs_accuracy.png", dpi=110)
        plt.close(fig)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="EmoNeXt checkpoint (default: seeded untrained EmoNeXt-Tiny)")
    p.add_argument("--artifacts", nargs="+", help="benchmark these files instead of exporting")
    p.add_argument("--calib-data", help="calibration data for INT8 artifacts (with --checkpoint)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated, default 1,8 (1 with --quick)")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads per engine (default: all cores)")
    p.add_argument("--quick", action="store_true", help="batch 1, few iterations: under 3 minutes on 2 cores")
    p.add_argument("--accuracy", type=Path, help="a benchmarks/accuracy.py JSON to add accuracy columns")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=600, help="seconds per artifact before it is abandoned")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args._worker:
        return run_worker(args._worker)
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1" if args.quick else "1,8")).split(",")]
    if any(b < 1 for b in batch_sizes):
        print("error: --batch-sizes must be positive integers", file=sys.stderr)
        return 2
    settings = {
        "batch_sizes": batch_sizes,
        "iterations": args.iterations or (10 if args.quick else 50),
        "warmup": args.warmup if args.warmup is not None else (3 if args.quick else 10),
        "threads": args.threads,
        "quick": args.quick,
    }
    for p in [args.checkpoint, args.accuracy, *[Path(a) for a in args.artifacts or []]]:
        if p is not None and not Path(p).is_file():
            print(f"error: {p}: no such file", file=sys.stderr)
            return 2
    machine = machine_info(args.threads)
    progress(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {machine['cpu_flags']}")
    if args.artifacts:
        artifacts = artifacts_from_paths(args.artifacts)
        progress(f"ratios are against {choose_baseline(artifacts)}")
        model_info = {"source": "given artifacts", "sha256": None, "untrained": False, "architecture": None}
    else:
        artifacts, model_info = build_artifacts(args.checkpoint, args.calib_data, args.quick, machine["cpu_flags"])
        if model_info["untrained"]:
            progress("model: EmoNeXt-Tiny, seeded random weights (untrained) — latency only")
    rows: list[dict[str, Any]] = []
    for i, art in enumerate(artifacts, 1):
        progress(f"[{i}/{len(artifacts)}] {art.name} ({art.path})")
        rows += measure_in_subprocess(art, settings, args.timeout)
    baseline = choose_baseline(artifacts)
    settings["baseline"] = baseline
    add_ratios(rows, baseline)
    add_accuracy(rows, args.accuracy, model_info["untrained"])
    report = {
        "schema": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_info,
        "machine": machine,
        "settings": settings,
        "rows": rows,
    }
    out = args.out or REPO / "benchmarks" / "results" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    write_outputs(out, report)
    progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
