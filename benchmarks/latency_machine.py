"""benchmarks/latency.py, machine facts: CPU, libraries, GPU, Jetson, the load check, worker memory."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.latency_common import (
    OTHER_CORES_WARN,
    STEAL_WARN_PERCENT,
)

# --------------------------------------------------------------------------- machine


def _cpu_info() -> tuple[str, list[str]]:
    model: str = platform.processor() or platform.machine()
    flags: list[str] = []
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
