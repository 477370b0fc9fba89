"""benchmarks/latency.py, shared by its parts: defaults, progress lines, the artifact row spec."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

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




@dataclass
class Artifact:
    name: str  # e.g. "onnxruntime-fp32"
    path: str
    backend: str
    precision: str
    device: str = "CPU"
    options: dict[str, Any] = field(default_factory=dict)

