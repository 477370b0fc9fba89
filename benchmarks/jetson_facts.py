"""Jetson benchmark facts that can be trusted: power mode, locked clocks, GPU/EMC load and board power.

Parsers for the text NVIDIA's tools print (``nvpmodel -q``, ``jetson_clocks --show``, ``tegrastats``),
in the Orin, Xavier and Nano formats, and a sampler that runs ``tegrastats`` while timed calls run.
A tool that is not installed is recorded as ``"missing"``, one that fails as ``"failed: ..."``;
a value a tool did not print is ``None``. Nothing is guessed.

Formats (tests/_jetson_fixtures.py holds one line of each, with the source it follows):

* ``nvpmodel -q``: ``NV Power Mode: <name>`` then the mode id on its own line.
* ``jetson_clocks --show``: one line per CPU (``cpuN: Online=1 ... MinFreq=.. MaxFreq=.. CurrentFreq=..``), ``GPU
  MinFreq=.. MaxFreq=.. CurrentFreq=..``, ``EMC MinFreq=.. MaxFreq=.. CurrentFreq=.. FreqOverride=N``.
  ``jetson_clocks`` locks clocks by raising the CPUs' and the GPU's MinFreq to MaxFreq and pinning the EMC with
  ``FreqOverride=1``, so *locked* means: every online CPU and the GPU have MinFreq == MaxFreq and the EMC is
  overridden (or, where no override is printed, has MinFreq == MaxFreq).
* ``tegrastats``: ``EMC_FREQ X%@MHz``, ``GR3D_FREQ X%@MHz`` (Orin: ``X%@[MHz,MHz]`` or ``X%``), and power rails
  ``NAME now/avg`` in mW (``NAME 4971mW/4971mW`` on L4T 34+, ``NAME 4971/4971`` before).
  The board's input power is ``VDD_IN`` (Orin NX / Orin Nano / Xavier NX / TX2) or ``POM_5V_IN`` (Nano); the
  AGX Orin prints no input rail, only module rails ``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``, which are
  summed and named as such; a board with neither gives ``power_w = None``.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

TEGRA_RELEASE = Path("/etc/nv_tegra_release")

#: rails that measure the whole board's input, in order of preference
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
#: AGX Orin: no input rail; these module rails together are the module's power
AGX_ORIN_MODULE_RAILS = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
#: rails recorded by name (others are kept under ``rails_w`` too)
NAMED_RAILS = ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC", "POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU", *AGX_ORIN_MODULE_RAILS)

_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_FREQS = re.compile(r"\b(MinFreq|MaxFreq|CurrentFreq|FreqOverride)=(\d+)")


# --------------------------------------------------------------------------- parsers


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """``{"power_mode": "MAXN", "power_mode_id": 0}`` from ``nvpmodel -q`` (``None`` where not printed)."""
    name: Optional[str] = None
    mode_id: Optional[int] = None
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines):
        m = re.match(r"NV Power Mode:\s*(.+)$", line)
        if m:
            name = m.group(1).strip()
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            mode_id = int(nxt) if nxt.isdigit() else None
            break
    return {"power_mode": name, "power_mode_id": mode_id}


def parse_jetson_clocks(text: str) -> dict[str, Any]:
    """Clock limits per unit and whether ``jetson_clocks`` has locked them (``None`` if a unit is not shown)."""
    cpus: list[dict[str, int]] = []
    units: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        s = line.strip()
        freqs = {k: int(v) for k, v in _FREQS.findall(s)}
        if re.match(r"cpu\d+:", s):
            if "Online=0" in s:
                continue
            if {"MinFreq", "MaxFreq"} <= freqs.keys():
                cpus.append(freqs)
        elif s.startswith(("GPU ", "EMC ")) and {"MinFreq", "MaxFreq"} <= freqs.keys():
            units[s[:3].lower()] = freqs
    locked: Optional[bool] = None
    if cpus and "gpu" in units and "emc" in units:
        emc = units["emc"]
        emc_pinned = emc["FreqOverride"] == 1 if "FreqOverride" in emc else emc["MinFreq"] == emc["MaxFreq"]
        locked = emc_pinned and all(u["MinFreq"] == u["MaxFreq"] for u in [*cpus, units["gpu"]])
    return {"clocks_locked": locked, "online_cpus": len(cpus), "gpu": units.get("gpu"), "emc": units.get("emc")}


@dataclass
class TegrastatsSample:
    """One ``tegrastats`` line."""

    rails_mw: dict[str, int] = field(default_factory=dict)  # instantaneous value of every rail printed
    gpu_load_percent: Optional[int] = None
    gpu_freq_mhz: Optional[int] = None
    emc_load_percent: Optional[int] = None
    emc_freq_mhz: Optional[int] = None

    def board_power(self) -> tuple[Optional[float], Optional[str]]:
        """``(watts, source)``: the input rail, else the AGX Orin module rails summed, else ``(None, None)``."""
        for rail in INPUT_RAILS:
            if rail in self.rails_mw:
                return self.rails_mw[rail] / 1000.0, rail
        if all(r in self.rails_mw for r in AGX_ORIN_MODULE_RAILS):
            return sum(self.rails_mw[r] for r in AGX_ORIN_MODULE_RAILS) / 1000.0, "+".join(AGX_ORIN_MODULE_RAILS)
        return None, None


def parse_tegrastats_line(line: str) -> Optional[TegrastatsSample]:
    """The sample in one ``tegrastats`` line; ``None`` for a line that is not one (no RAM/EMC/GR3D field)."""
    if not re.search(r"\b(RAM|EMC_FREQ|GR3D_FREQ) ", line):
        return None
    sample = TegrastatsSample()
    for name, now, _avg in _RAIL.findall(line):
        if name not in ("RAM", "SWAP", "IRAM", "NC"):
            sample.rails_mw[name] = int(now)
    m = _EMC.search(line)
    if m:
        sample.emc_load_percent = int(m.group(1))
        sample.emc_freq_mhz = int(m.group(2)) if m.group(2) else None
    m = _GR3D.search(line)
    if m:
        sample.gpu_load_percent = int(m.group(1))
        freqs = [int(f) for f in (m.group(2) or "").split(",") if f]
        sample.gpu_freq_mhz = max(freqs) if freqs else None
    return sample


def _mean(values: list[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def summarize_tegrastats(text: str) -> dict[str, Any]:
    """Means over every sample in ``tegrastats`` output: power (W, with the rail it came from), rails, loads."""
    samples = [s for s in (parse_tegrastats_line(ln) for ln in text.splitlines()) if s is not None]
    power = [s.board_power() for s in samples]
    watts = [w for w, _ in power if w is not None]
    sources = sorted({src for _, src in power if src})
    rails = sorted({r for s in samples for r in s.rails_mw})
    return {
        "samples": len(samples),
        "power_w": _mean(watts),
        "power_source": sources[0] if len(sources) == 1 else (", ".join(sources) or None),
        "rails_w": {r: _mean([s.rails_mw[r] / 1000.0 for s in samples if r in s.rails_mw]) for r in rails},
        "gpu_load_percent": _mean([float(s.gpu_load_percent) for s in samples if s.gpu_load_percent is not None]),
        "emc_load_percent": _mean([float(s.emc_load_percent) for s in samples if s.emc_load_percent is not None]),
    }


def fps_per_watt(images_per_s: Optional[float], power_w: Optional[float]) -> Optional[float]:
    """Frames per second per watt, ``None`` unless both are measured (and the power is positive)."""
    if images_per_s is None or power_w is None or power_w <= 0:
        return None
    return images_per_s / power_w


# --------------------------------------------------------------------------- running the tools

Runner = Callable[[List[str]], "ToolResult"]


@dataclass
class ToolResult:
    status: str  # "ok" | "missing" | "failed: <why>"
    stdout: str = ""


def run_tool(cmd: list[str], timeout: float = 10) -> ToolResult:
    if shutil.which(cmd[0]) is None:
        return ToolResult("missing")
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return ToolResult(f"failed: {type(exc).__name__}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return ToolResult(f"failed: exit {done.returncode}: {last[:200]}")
    return ToolResult("ok", done.stdout)


def collect_facts(run: Runner = run_tool, release: Path = TEGRA_RELEASE) -> Optional[dict[str, Any]]:
    """The board's facts (``None`` off a Jetson): L4T release, power mode, clocks, and which tool gave what.

    ``jetson_clocks --show`` needs root; without it the tool's failure is recorded and
    ``clocks_locked`` stays ``None``.
    """
    if not release.exists():
        return None
    nvp = run(["nvpmodel", "-q"])
    clocks = run(["jetson_clocks", "--show"])
    facts: dict[str, Any] = {
        "l4t": (release.read_text(errors="replace").splitlines() or [""])[0].strip(),
        "tools": {"nvpmodel": nvp.status, "jetson_clocks": clocks.status,
                  "tegrastats": "ok" if shutil.which("tegrastats") else "missing"},
        **parse_nvpmodel(nvp.stdout if nvp.status == "ok" else ""),
        **parse_jetson_clocks(clocks.stdout if clocks.status == "ok" else ""),
    }
    return facts


class TegrastatsSampler:
    """``tegrastats`` running while timed calls run; :meth:`stop` returns :func:`summarize_tegrastats`'s dict
    (``None`` where ``tegrastats`` is missing)."""

    def __init__(self, interval_ms: int = 100) -> None:
        self.proc: Optional[subprocess.Popen] = None
        if shutil.which("tegrastats"):
            self.proc = subprocess.Popen(["tegrastats", "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> Optional[dict[str, Any]]:
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return summarize_tegrastats(out or "")
