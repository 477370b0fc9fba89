"""Which ONNX operators of a model each TensorRT version can parse; usable without TensorRT.

Maintained checkers were looked at first: Polygraphy's ``inspect capability`` needs an
installed TensorRT (it asks the real parser), and ``trtcheck`` 1.1 (pip-installable, offline
matrix) covers TensorRT 8.0/8.6/10.0/10.3 only and has no entry for ``GridSample`` or
``AffineGrid`` — the two operators that decide whether EmoNeXt builds at all. So this is a
small table of the operators that matter for EmoNeXt graphs, from the onnx-tensorrt
operator support notes: the version that adds each one, or ``None`` when no version does.
Operators not listed are ones every supported TensorRT (8.x+) parses (Conv, MatMul, Add...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

#: op type -> first TensorRT version whose ONNX parser supports it (None: none does)
OP_SINCE: dict[str, Optional[tuple[int, int]]] = {
    "GridSample": (8, 5),
    "AffineGrid": None,  # opset 20; not in onnx-tensorrt (our exporter never emits it)
    "LayerNormalization": (8, 6),  # earlier versions need the decomposed form
    "QuantizeLinear": (8, 0),
    "DequantizeLinear": (8, 0),
    "Einsum": (8, 0),
    "Trilu": (8, 5),
    "ScatterElements": (8, 2),
    "ScatterND": (8, 0),
    "NonZero": (8, 5),
    "GatherElements": (8, 0),
    "GroupNormalization": (10, 0),
    "Gelu": (10, 0),  # opset 20 Gelu; torch exports Erf-based GELU that all versions parse
    "IsInf": (8, 5),
    "IsNaN": (8, 5),
    "Mod": (8, 5),
    "BitShift": None,
    "StringNormalizer": None,
    "Unique": None,
}

#: the TensorRT generations the report lists by default
DEFAULT_VERSIONS = ("8.2", "8.5", "8.6", "10.3", "10.13", "11.4")


def parse_version(version: str | Sequence[int]) -> tuple[int, int]:
    if isinstance(version, str):
        parts = version.strip().split(".")
        try:
            nums = [int(p) for p in parts[:2]]
        except ValueError:
            raise ValueError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR[.PATCH]") from None
    else:
        nums = [int(p) for p in list(version)[:2]]
    if len(nums) == 1:
        nums.append(0)
    return nums[0], nums[1]


def _fmt(v: Optional[tuple[int, int]]) -> str:
    return "no TensorRT version" if v is None else f"TensorRT {v[0]}.{v[1]}"


@dataclass(frozen=True)
class Unsupported:
    node: str
    op_type: str
    added_in: Optional[tuple[int, int]]

    def __str__(self) -> str:
        return f"{self.node or '(unnamed)'} ({self.op_type}): supported from {_fmt(self.added_in)}"


def check_model(model_or_path: Any, version: str | Sequence[int]) -> list[Unsupported]:
    """Nodes of the ONNX (path or ModelProto) that TensorRT ``version`` cannot parse."""
    import onnx

    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(
        os.fspath(model_or_path), load_external_data=False
    )
    ver = parse_version(version)
    out = []
    for node in model.graph.node:
        if node.op_type not in OP_SINCE:
            continue
        since = OP_SINCE[node.op_type]
        if since is None or ver < since:
            out.append(Unsupported(node.name, node.op_type, since))
    return out


def report(model_or_path: Any, versions: Sequence[str] = DEFAULT_VERSIONS) -> dict[str, list[Unsupported]]:
    """``{version: [unsupported nodes]}`` for each TensorRT version."""
    return {v: check_model(model_or_path, v) for v in versions}


def format_report(results: dict[str, list[Unsupported]]) -> list[str]:
    lines = []
    for version, bad in results.items():
        if not bad:
            lines.append(f"TensorRT {version}: all operators supported")
            continue
        lines.append(f"TensorRT {version}: {len(bad)} unsupported node(s)")
        lines += [f"  {item}" for item in bad]
    return lines
