"""benchmarks/latency.py, the protocol: one persistent worker per artifact, interleaved rounds, statistics."""

from __future__ import annotations

import functools
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from benchmarks import latency_common as common
from benchmarks.latency_common import (
    FRAME_SHAPE,
    MODES,
    PER_BATCH,
    Artifact,
    detail,
    progress,
)
from benchmarks.latency_machine import (
    LoadMonitor,
    _device_memory_mb,
    _peak_rss_mb,
    load_warning,
)
from emonext_edge.preprocess import INPUT_SHAPE

#: the script the workers run (``latency.py --_worker``)
LATENCY_SCRIPT = Path(__file__).resolve().with_name("latency.py")



def _run_end_to_end(rt: Any, frames: list[Any]) -> Any:
    """One end-to-end call: the project's preprocessing of ``frames``, then the model."""
    from emonext_edge.preprocess import preprocess

    return rt.run(preprocess(frames))

class ArtifactSession:
    """One artifact opened with the Runtime (in a worker process): warm it up, then time calls on demand.

    An artifact whose ``batch`` option is ``PER_BATCH`` is opened once per batch size, compiled
    for that static size; any other artifact is opened once for all sizes.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        from emonext_edge import Runtime

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
            self.calls[(b, "model")] = functools.partial(rt.run, x)
            self.calls[(b, "end_to_end")] = functools.partial(_run_end_to_end, rt, frames)
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
        self.log = None if common.VERBOSE else open(self.log_path, "w")  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen([sys.executable, str(LATENCY_SCRIPT), "--_worker"],
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
