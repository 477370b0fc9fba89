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
import csv
import datetime as _dt
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np

from emonext_edge.argtypes import check_args, non_negative_int, positive_float, positive_int, thread_count
from emonext_edge.preprocess import INPUT_SHAPE

#: Default places, relative to the current directory (``exports/`` is gitignored)
DEFAULT_CACHE = Path("exports") / "cache" / "latency"
DEFAULT_RESULTS = Path("exports") / "latency"
#: Artifact option value: compile the artifact for each measured batch size (OpenVINO ``batch=``)
PER_BATCH = "per-batch"
BASELINE = "pytorch-eager-fp32"
FRAME_SHAPE = (480, 640, 3)  # a VGA camera frame, for end-to-end timings
MODES = ("model", "end_to_end")
#: other processes using more than this many cores (averaged) trigger the load warning
OTHER_CORES_WARN = 0.25
STEAL_WARN_PERCENT = 5.0
UNTRAINED_NAME = "EmoNeXt-Tiny, untrained (seeded random weights)"

VERBOSE = False


def progress(msg: str) -> None:
    print(f"[latency] {msg}", file=sys.stderr, flush=True)


def detail(msg: str) -> None:
    if VERBOSE:
        progress(msg)


class BadInput(Exception):
    """A command-line option or input file is wrong (exit 2, one line)."""


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
        res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _gpu_info() -> Optional[dict[str, str]]:
    out = _run_quiet(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if not out:
        return None
    name, driver, memory = (s.strip() for s in out.splitlines()[0].split(","))
    return {"name": name, "driver": driver, "memory": memory}


def machine_info(threads: int) -> dict[str, Any]:
    """``jetson``: :func:`benchmarks.jetson_facts.collect_facts` (``None`` off a Jetson); ``power_mode`` and
    ``clocks_locked`` repeat its two headline facts (``None`` where absent or a tool is missing)."""
    from benchmarks.jetson_facts import collect_facts

    cpu, flags = _cpu_info()
    jetson = collect_facts()
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "threads": threads,
        "os": platform.platform(),
        "libraries": _library_versions(),
        "gpu": _gpu_info(),
        "jetson": jetson,
        "power_mode": (jetson or {}).get("power_mode"),
        "clocks_locked": (jetson or {}).get("clocks_locked"),
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
        progress("no --calib-data: INT8 artifacts calibrated on synthetic images (accuracy figures meaningless)")
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces

    return preprocess(list(synthetic_faces(count, seed=1)))


def _quiet_nncf() -> None:
    """NNCF logs one INFO line per node it keeps in float; shown with -v only (set after its import)."""
    if VERBOSE:
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


# --------------------------------------------------------------------------- load check


def _system_ticks() -> Optional[tuple[int, int, int]]:
    """(busy, total, steal) jiffies of the whole machine from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal, steal


def _process_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    after = text.rsplit(")", 1)[1].split()
    return int(after[11]) + int(after[12])


class LoadMonitor:
    """CPU used by *other* processes (cores, averaged) and steal time between two samples.

    Other = the machine's busy time minus the CPU time of this benchmark's own processes
    (``pids()``), so the benchmark's own work never counts as load.
    """

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.cores = os.cpu_count() or 1
        self.last = self._sample()

    def _sample(self) -> Optional[tuple[int, int, int, int]]:
        system = _system_ticks()
        if system is None:
            return None
        return (*system, sum(_process_ticks(p) for p in self.pids()))

    def measure(self) -> dict[str, Any]:
        """Load since the previous call (or construction)."""
        now = self._sample()
        before, self.last = self.last, now
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if now is None or before is None or now[1] <= before[1]:
            return {"loadavg": load1, "other_cores": None, "steal_percent": None}
        busy, total, steal, ours = (a - b for a, b in zip(now, before))
        other = max(0.0, (busy - ours) / total * self.cores)
        return {"loadavg": load1, "other_cores": round(other, 3), "steal_percent": round(100.0 * steal / total, 2)}


def load_warning(sample: dict[str, Any], when: str) -> Optional[str]:
    other, steal = sample.get("other_cores"), sample.get("steal_percent")
    parts = []
    if other is not None and other > OTHER_CORES_WARN:
        parts.append(f"other processes used {other:.2f} of {os.cpu_count()} cores")
    if steal is not None and steal > STEAL_WARN_PERCENT:
        parts.append(f"the hypervisor stole {steal:.0f} % of CPU time")
    if not parts:
        return None
    return f"{when}: {' and '.join(parts)}; absolute times are inflated and ratios less reliable"


# --------------------------------------------------------------------------- worker side


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


class ArtifactSession:
    """One artifact opened with the Runtime (in a worker process): warm it up, then time calls on demand.

    An artifact whose ``batch`` option is ``PER_BATCH`` is opened once per batch size, compiled
    for that static size; any other artifact is opened once for all sizes.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        from emonext_edge import Runtime
        from emonext_edge.preprocess import preprocess

        self.art = Artifact(**spec["artifact"])
        options = dict(self.art.options)
        if self.art.backend != "tensorrt":  # an engine's CPU side has no thread setting
            options.setdefault("threads", spec["threads"])
        per_batch = options.get("batch") == PER_BATCH
        self.runtimes: dict[int, Any] = {}
        opened: list[Any] = []
        try:
            if per_batch:
                for b in spec["batch_sizes"]:
                    opened.append(Runtime(self.art.path, backend=self.art.backend, **dict(options, batch=b)))
                    self.runtimes[b] = opened[-1]
            else:
                opened.append(Runtime(self.art.path, backend=self.art.backend, **options))
                self.runtimes = {b: opened[0] for b in spec["batch_sizes"]}
        except BaseException:
            for rt in opened:
                rt.close()
            raise
        self.opened = opened
        rt0 = opened[0]
        self.info = dict(rt0.info)
        self.stored_precision = rt0.metadata.precision if rt0.metadata else None  # what the artifact holds, e.g. int8
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
        self.calls: dict[tuple[int, str], Callable[[], Any]] = {}
        self.compiled: dict[int, Any] = {}
        for b, rt in self.runtimes.items():
            x = rng.random((b, *INPUT_SHAPE), dtype=np.float32)
            frames = [frame] * b
            self.calls[(b, "model")] = lambda rt=rt, x=x: rt.run(x)
            self.calls[(b, "end_to_end")] = lambda rt=rt, frames=frames: rt.run(preprocess(frames))
            self.compiled[b] = rt.info.get("batch")
        for fn in self.calls.values():
            for _ in range(spec["warmup"]):
                fn()
        self.power: dict[str, list[float]] = {}  # "batch:mode" -> board watts per timed set (Jetson only)

    def time(self, batch: int, mode: str, iterations: int) -> list[float]:
        fn = self.calls[(batch, mode)]
        fn()  # one untimed call: caches may be cold after the other artifacts ran
        from benchmarks.jetson_facts import TegrastatsSampler

        sampler = TegrastatsSampler()
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
        power = sampler.stop()
        if power is not None and power["power_w"] is not None:
            self.power.setdefault(f"{batch}:{mode}", []).append(power["power_w"])
        return times

    def describe(self) -> dict[str, Any]:
        art = self.art
        return {
            "backend": self.info.get("backend", art.backend),
            "device": str(self.info.get("device", art.device)),
            "precision": art.precision if art.precision != "as-built"
            else str(self.stored_precision or self.info.get("precision", "")),
            "inference_precision": str(self.info.get("precision", "")),
            "threads": self.info.get("threads"),
            "max_batch": self.info.get("max_batch"),
            "compiled_batch": {str(b): c for b, c in self.compiled.items()},
        }

    def finish(self) -> dict[str, Any]:
        every = [w for ws in self.power.values() for w in ws]
        out = {"peak_rss_mb": _peak_rss_mb(), "device_memory_mb": _device_memory_mb(self.info),
               "board_power_w": statistics.fmean(every) if every else None,
               "power_w_by_config": {k: statistics.fmean(ws) for k, ws in self.power.items()}}
        self.close()
        return out

    def close(self) -> None:
        for rt in self.opened:
            rt.close()
        self.opened = []


def worker_main() -> int:
    """Serve one artifact over stdin/stdout, one JSON message per line (``open``, ``time``, ``finish``).

    Whatever libraries print goes to stderr: the protocol owns the original stdout.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    session: Optional[ArtifactSession] = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        try:
            if cmd == "open":
                session = ArtifactSession(msg["spec"])
                reply: dict[str, Any] = {"ok": True, **session.describe()}
            elif cmd == "time" and session is not None:
                reply = {"ok": True, "times": session.time(msg["batch"], msg["mode"], msg["iterations"])}
            elif cmd == "finish" and session is not None:
                reply = {"ok": True, **session.finish()}
            else:
                reply = {"ok": False, "error": f"unexpected message {cmd!r}"}
        except Exception as exc:  # noqa: BLE001 - reported in the table, not fatal for the whole benchmark
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(reply) + "\n")
        if cmd == "finish" or not reply["ok"]:
            break
    if session is not None:
        session.close()
    return 0


# --------------------------------------------------------------------------- parent side


class WorkerError(Exception):
    pass


class Worker:
    """The parent's handle on one artifact's persistent worker process."""

    def __init__(self, art: Artifact, settings: dict[str, Any], timeout: float, log_dir: Path) -> None:
        self.art = art
        self.timeout = timeout
        self.error: Optional[str] = None
        self.description: dict[str, Any] = {}
        self.finished: dict[str, Any] = {}
        self.times: dict[tuple[int, str], list[list[float]]] = {}  # per round
        env = dict(os.environ)
        if settings["threads"]:
            env.setdefault("OMP_NUM_THREADS", str(settings["threads"]))
        self.log_path = log_dir / f"{len(list(log_dir.iterdir()))}-{art.name.replace('/', '_').replace(':', '_')}.log"
        self.log = None if VERBOSE else open(self.log_path, "w")  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env, cwd=os.getcwd())
        self.spec = dict(settings, artifact=asdict(art))

    @property
    def alive(self) -> bool:
        return self.error is None

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerError(f"worker gone: {exc}{self._log_tail()}") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.proc.kill()
            raise WorkerError(f"no answer within {self.timeout:.0f} s (--timeout)")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise WorkerError(f"worker exited with code {self.proc.returncode}{self._log_tail()}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise WorkerError(reply["error"])
        return reply

    def _log_tail(self) -> str:
        if self.log is None:
            return ""
        self.log.flush()
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return f" (last worker output: {lines[-1][:300]})" if lines else ""

    def call(self, msg: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Send a message; on failure remember the error, stop the worker and return None."""
        if not self.alive:
            return None
        try:
            return self._call(msg)
        except (WorkerError, OSError, ValueError) as exc:
            self.error = str(exc)
            self.stop()
            return None

    def open(self) -> bool:
        reply = self.call({"cmd": "open", "spec": self.spec})
        if reply is not None:
            self.description = reply
        return reply is not None

    def time(self, batch: int, mode: str, iterations: int) -> bool:
        reply = self.call({"cmd": "time", "batch": batch, "mode": mode, "iterations": iterations})
        if reply is None:
            return False
        self.times.setdefault((batch, mode), []).append(reply["times"])
        return True

    def finish(self) -> None:
        reply = self.call({"cmd": "finish"})
        if reply is not None:
            self.finished = reply
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.log is not None and not self.log.closed:
            self.log.close()


def rotated(items: list[Any], k: int) -> list[Any]:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def run_protocol(artifacts: list[Artifact], settings: dict[str, Any], timeout: float,
                 monitor_before: Optional[dict[str, Any]] = None) -> tuple[list[Worker], dict[str, Any]]:
    """Open one worker per artifact, run the interleaved rounds, close the workers.

    Returns the workers (with their per-round timings or error) and the load record.
    """
    workers: list[Worker] = []
    load: dict[str, Any] = {"before": monitor_before, "rounds": [], "warnings": []}
    with tempfile.TemporaryDirectory(prefix="emonext-latency-") as logs:
        try:
            for i, art in enumerate(artifacts, 1):
                progress(f"[{i}/{len(artifacts)}] opening {art.name} ({art.path}), warm-up: {settings['warmup']} calls")
                w = Worker(art, settings, timeout, Path(logs))
                workers.append(w)
                if not w.open():
                    progress(f"  {art.name} failed: {w.error}")
            monitor = LoadMonitor(lambda: [os.getpid(), *(w.proc.pid for w in workers)])
            configs = [(b, m) for b in settings["batch_sizes"] for m in MODES]
            for r in range(settings["rounds"]):
                start = time.perf_counter()
                for batch, mode in configs:
                    for w in rotated(workers, r):
                        if w.alive and not w.time(batch, mode, settings["iterations"]):
                            progress(f"  {w.art.name} failed: {w.error}")
                        time.sleep(0.05)  # let the previous engine's spinning threads go idle
                sample = dict(monitor.measure(), round=r + 1, seconds=round(time.perf_counter() - start, 1))
                load["rounds"].append(sample)
                other = sample["other_cores"]
                progress(f"round {r + 1}/{settings['rounds']} done in {sample['seconds']:.0f} s"
                         + (f"; other processes used {other:.2f} cores" if other is not None else ""))
                warning = load_warning(sample, f"round {r + 1}")
                if warning:
                    load["warnings"].append(warning)
                    detail("warning: " + warning)
            if load["warnings"]:
                progress(f"warning: other processes used the CPU in {len(load['warnings'])} of "
                         f"{settings['rounds']} rounds: see the load line of the results")
            for w in workers:
                w.finish()
        finally:
            for w in workers:
                w.stop()
    return workers, load


def summarise(workers: list[Worker], baseline: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per artifact, batch size and mode; ratios per round, then median and min–max over rounds."""
    from benchmarks.jetson_facts import fps_per_watt

    base = next((w for w in workers if w.art.name == baseline and w.alive), None)
    rows: list[dict[str, Any]] = []
    for w in workers:
        art, d = w.art, w.description
        common = {"artifact": art.name, "path": art.path, "backend": d.get("backend", art.backend),
                  "device": d.get("device", art.device), "precision": d.get("precision", art.precision),
                  "inference_precision": d.get("inference_precision"),
                  "threads": d.get("threads", settings["threads"]),
                  **{k: v for k, v in w.finished.items() if k != "power_w_by_config"}}
        power_by_config = w.finished.get("power_w_by_config") or {}
        for batch in settings["batch_sizes"]:
            for mode in MODES:
                row = dict(common, batch=batch, mode=mode, power_w=power_by_config.get(f"{batch}:{mode}"),
                           fps_per_watt=None)
                rounds = w.times.get((batch, mode), [])
                if not w.alive or len(rounds) < settings["rounds"]:
                    row["error"] = w.error or "not measured"
                    rows.append(row)
                    continue
                times = [t for rnd in rounds for t in rnd]
                per_round = [float(np.median(rnd)) for rnd in rounds]
                mean = statistics.fmean(times)
                row.update({
                    "compiled_batch": d.get("compiled_batch", {}).get(str(batch)),
                    "mean_ms": mean, "p50_ms": _percentile(times, 50), "p90_ms": _percentile(times, 90),
                    "p99_ms": _percentile(times, 99), "min_ms": min(times),
                    "images_per_s": batch * 1000.0 / mean, "round_p50_ms": per_round,
                    "fps_per_watt": fps_per_watt(batch * 1000.0 / mean, row["power_w"]),
                })
                base_rounds = base.times.get((batch, mode)) if base is not None else None
                if base_rounds and len(base_rounds) == len(rounds):
                    ratios = [p / float(np.median(b)) for p, b in zip(per_round, base_rounds)]
                    median = float(np.median(ratios))
                    row.update({"ratio_to_baseline": median, "ratio_min": min(ratios), "ratio_max": max(ratios),
                                "ratio_per_round": ratios, "speedup_vs_baseline": 1.0 / median})
                rows.append(row)
    return rows


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# --------------------------------------------------------------------------- reporting


def choose_baseline(artifacts: list[Artifact]) -> str:
    """PyTorch eager FP32 when present (the default run), else the first PyTorch artifact, else the first one."""
    names = [a.name for a in artifacts]
    if BASELINE in names:
        return BASELINE
    return next((a.name for a in artifacts if a.backend == "torch"), names[0])


def read_accuracy(path: Path) -> dict[str, float]:
    """``{resolved model path: accuracy}`` from a ``benchmarks/accuracy.py --json`` file, or ``BadInput``."""
    try:
        report = json.loads(Path(path).read_text())
        results = report["results"]
        return {str(Path(r["model"]).resolve()): float(r["accuracy"]) for r in results}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"--accuracy {path}: not a benchmarks/accuracy.py --json file "
                       f"(expected JSON with results[].model and results[].accuracy; {type(exc).__name__})") from None


def add_accuracy(rows: list[dict[str, Any]], accuracy: Optional[dict[str, float]], untrained: bool) -> None:
    if accuracy is None:
        return
    if untrained:
        progress("--accuracy ignored: the default model is untrained, its accuracy means nothing")
        return
    for r in rows:
        r["accuracy"] = accuracy.get(str(Path(r["path"]).resolve()))


COLUMNS = ["artifact", "backend", "device", "precision", "inference_precision", "threads", "batch", "compiled_batch",
           "mode", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "images_per_s", "ratio_to_baseline",
           "ratio_min", "ratio_max", "speedup_vs_baseline", "peak_rss_mb", "device_memory_mb", "board_power_w",
           "power_w", "fps_per_watt", "accuracy", "error"]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def protocol_text(settings: dict[str, Any]) -> str:
    return (f"{settings['rounds']} interleaved rounds (order rotated each round), each with 1 untimed + "
            f"{settings['iterations']} timed calls per artifact, batch size and mode, after "
            f"{settings['warmup']} warm-up calls; one persistent process per artifact; "
            f"ratio = artifact's median / {settings['baseline']}'s median in the same round, "
            f"reported as median [min–max] over rounds")


def header_text(report: dict[str, Any]) -> str:
    m, s, load = report["machine"], report["settings"], report["load"]
    others = [r["other_cores"] for r in load["rounds"] if r.get("other_cores") is not None]
    load_line = (f"other processes used {max(others):.2f} cores at most during the rounds (median "
                 f"{statistics.median(others):.2f})" if others else "load not measured (no /proc/stat)")
    lines = [
        f"Model: {report['model']['name']}. Run: {report['created']}.",
        (f"Machine: {m['cpu']} ({m['cores']} cores, {s['threads']} threads per engine), "
         f"flags: {', '.join(m['cpu_flags']) or '-'}; {m['os']}."),
        f"Protocol: {protocol_text(s)}.",
        f"Load: {load_line}." + ("".join(f"\nWarning: {w}." for w in load["warnings"])),
    ]
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]], untrained: bool) -> str:
    cols = ["artifact", "precision", "inference_precision", "batch", "compiled_batch", "mode", "p50_ms", "mean_ms",
            "p90_ms", "images_per_s", "ratio", "ratio range", "peak_rss_mb", "accuracy"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['artifact']} | {r.get('precision', '')} | | {r.get('batch', '')} | | "
                         f"{r.get('mode', '')} | error: {r['error']} |")
            continue
        ratio = r.get("ratio_to_baseline")
        spread = f"{r['ratio_min']:.3f}–{r['ratio_max']:.3f}" if ratio is not None else ""
        values = {**r, "ratio": ratio, "ratio range": spread}
        lines.append("| " + " | ".join(_fmt(values.get(c)) for c in cols) + " |")
    if untrained:
        lines.append("\nModel: EmoNeXt-Tiny with seeded random weights (**untrained**): latency only, no accuracy.")
    return "\n".join(lines)


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` and prove a file can be written there, before any work (``BadInput`` otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write results there ({exc.strerror or exc})") from None
    return out


def served_rows(artifact: str, requests: int, threads: int, out: Path, timeout: float) -> dict[str, Any]:
    """The served row: ``benchmarks/served.py`` in its own process (it starts and stops the local
    Triton server); its JSON lands in ``out/served.json``. A server that cannot start here is
    recorded as such, not fatal to the rest of the run."""
    cmd = [sys.executable, str(Path(__file__).with_name("served.py")), "--artifact", str(artifact),
           "--requests", str(requests), "--server-threads", str(threads), "--json", str(out / "served.json")]
    progress("served: " + " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"benchmarks/served.py took more than {timeout:.0f} s"}
    if proc.returncode != 0 or not (out / "served.json").is_file():
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"benchmarks/served.py exit {proc.returncode}: {last}"}
    return json.loads((out / "served.json").read_text())


def served_table(served: dict[str, Any]) -> str:
    if "error" in served:
        return f"Served (Triton): not measured: {served['error']}"
    lines = [f"Served (Triton, {served['url']}; client and server share this machine's cores):", "",
             "| clients | mean ms | p95 ms | req/s | server inferences / executions |", "|---|---:|---:|---:|---:|"]
    for r in served["rows"]:
        ratio = f"{r['inferences']} / {r['executions']}" if r.get("executions") else "—"
        lines.append(f"| {r['concurrency']} | {r['mean_ms']:.1f} | {r['p95_ms']:.1f} | {r['throughput_rps']:.1f} | {ratio} |")
    return "\n".join(lines)


def write_outputs(out: Path, report: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report["rows"])
    text = header_text(report) + "\n\n" + markdown_table(report["rows"], report["model"]["untrained"])
    if "served" in report:
        text += "\n\n" + served_table(report["served"])
    (out / "results.md").write_text(text + "\n")
    print(text)
    _plots(out, report)


def _plots(out: Path, report: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plots")
        return
    rows = report["rows"]
    ok = [r for r in rows if r.get("ratio_to_baseline") is not None and r.get("mode") == "model"]
    if not ok:
        return
    batches = sorted({r["batch"] for r in ok})
    fig, axes = plt.subplots(1, len(batches), figsize=(7.5 * len(batches), 0.45 * len(ok) / len(batches) + 2.8),
                             squeeze=False)
    s, m = report["settings"], report["machine"]
    for ax, b in zip(axes[0], batches):
        sel = [r for r in ok if r["batch"] == b][::-1]
        ratios = [r["ratio_to_baseline"] for r in sel]
        err = [[r["ratio_to_baseline"] - r["ratio_min"] for r in sel], [r["ratio_max"] - r["ratio_to_baseline"] for r in sel]]
        ax.barh([f"{r['artifact']} ({r['precision']})" for r in sel], ratios, xerr=err, capsize=3, color="#4c72b0")
        for y, r in enumerate(sel):
            ax.text(r["ratio_max"] + 0.02, y, f"{r['ratio_to_baseline']:.3f}×  ({r['p50_ms']:.1f} ms)",
                    va="center", fontsize=8)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, max(r["ratio_max"] for r in sel) * 1.75)
        ax.set_xlabel(f"latency / baseline (median of {s['rounds']} rounds, whisker min–max)")
        ax.set_title(f"batch {b}, model only")
    others = [r["other_cores"] for r in report["load"]["rounds"] if r.get("other_cores") is not None]
    load = (f"\nother processes used up to {max(others):.2f} cores: ratios unreliable" if others and
            max(others) > OTHER_CORES_WARN else "")
    fig.suptitle(f"{report['model']['name']}; baseline {s['baseline']}\n{m['cpu']}, {s['threads']} threads, "
                 f"{s['rounds']} interleaved rounds, {report['created'][:10]}{load}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    acc = [r for r in ok if r.get("accuracy") is not None and r["batch"] == batches[0]]
    if acc:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in acc:
            ax.scatter(r["ratio_to_baseline"], r["accuracy"])
            ax.annotate(f"{r['artifact']} {r['ratio_to_baseline']:.2f}×", (r["ratio_to_baseline"], r["accuracy"]),
                        fontsize=8)
        ax.set_xlabel(f"latency ratio to {s['baseline']} (batch {batches[0]})")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(report["model"]["name"], fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "latency_vs_accuracy.png", dpi=110)
        plt.close(fig)


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse would add the usage)
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = _Parser(prog="python benchmarks/latency.py", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="EmoNeXt checkpoint (default: seeded untrained EmoNeXt-Tiny)")
    src.add_argument("--artifacts", nargs="+", help="benchmark these files instead of exporting")
    p.add_argument("--calib-data", help="calibration data for INT8 artifacts (with --checkpoint)")
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
    return p.parse_args(argv)


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
    global VERBOSE
    args = parse_args(argv)
    if args._worker:
        return worker_main()
    VERBOSE = args.verbose
    try:
        check_args(args, error=BadInput, rounds=positive_int, iterations=positive_int, warmup=non_negative_int,
                   threads=thread_count, timeout=positive_float, served_requests=positive_int)
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
            artifacts, model_info = build_artifacts(args.checkpoint, args.calib_data, args.quick,
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
    add_accuracy(rows, accuracy, model_info["untrained"])
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
