"""Which ONNX operators of a model a TensorRT version's parser takes; usable without TensorRT.

Maintained checkers were looked at first. Polygraphy's ``inspect capability`` /
``check`` ask the real ONNX parser, so they need an installed TensorRT — on the device they
are the better check, here they cannot run. ``trtcheck`` (pip, offline matrix) covers
TensorRT 8.0/8.6/10.0/10.3 only and has no entry for ``GridSample`` or ``AffineGrid``, the
two operators that decide whether EmoNeXt builds at all. So this is a small table of the
operators that matter for EmoNeXt graphs, from the onnx-tensorrt operator support notes:
the version that adds each one, or ``None`` when no version does. Operators not listed are
ones every supported TensorRT (8.5+) parses (Conv, MatMul, Add...). The versions checked
come from :mod:`emonext_edge.tensorrt_compat` plans (:data:`KNOWN_VERSIONS`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from emonext_edge.tensorrt_compat import KNOWN_VERSIONS, ApiPlan, plan_for

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

PlanOrVersion = Union[ApiPlan, str]


def _plan(version: PlanOrVersion) -> ApiPlan:
    return version if isinstance(version, ApiPlan) else plan_for(version)


def _fmt(v: Optional[tuple[int, int]]) -> str:
    return "no TensorRT version" if v is None else f"TensorRT {v[0]}.{v[1]}"


@dataclass(frozen=True)
class Unsupported:
    node: str
    op_type: str
    added_in: Optional[tuple[int, int]]

    def __str__(self) -> str:
        return f"{self.node or '(unnamed)'} ({self.op_type}): supported from {_fmt(self.added_in)}"


def check_model(model_or_path: Any, version: PlanOrVersion) -> list[Unsupported]:
    """Nodes of the ONNX (path or ModelProto) that TensorRT ``version`` (a plan or a version string) cannot parse."""
    import onnx

    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(
        os.fspath(model_or_path), load_external_data=False
    )
    ver = _plan(version).version[:2]
    out = []
    for node in model.graph.node:
        if node.op_type not in OP_SINCE:
            continue
        since = OP_SINCE[node.op_type]
        if since is None or ver < since:
            out.append(Unsupported(node.name, node.op_type, since))
    return out


def report(model_or_path: Any, versions: Sequence[PlanOrVersion] = KNOWN_VERSIONS) -> dict[str, list[Unsupported]]:
    """``{version label: [unsupported nodes]}`` for each TensorRT version (plans or version strings)."""
    import onnx

    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(
        os.fspath(model_or_path), load_external_data=False)
    return {_plan(v).label: check_model(model, v) for v in versions}


def format_report(results: dict[str, list[Unsupported]], verbose: bool = False) -> list[str]:
    """One line per version (unsupported operators counted by type); every node with ``verbose``."""
    lines = []
    for version, bad in results.items():
        if not bad:
            lines.append(f"operator check, TensorRT {version}: all operators supported")
            continue
        by_op: dict[str, list[Unsupported]] = {}
        for item in bad:
            by_op.setdefault(item.op_type, []).append(item)
        summary = ", ".join(f"{op} x{len(items)} (supported from {_fmt(items[0].added_in)})"
                            for op, items in by_op.items())
        lines.append(f"operator check, TensorRT {version}: {len(bad)} unsupported node(s): {summary}"
                     + ("" if verbose else " (-v lists them)"))
        if verbose:
            lines += [f"  {item}" for item in bad]
    return lines
