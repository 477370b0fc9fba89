"""The export targets: one interface, one registry.

A target is one module under ``export/`` with one :class:`Target` subclass instance in it.
It declares its ``name``, its command (``prog``), its own CLI arguments
(:meth:`Target.add_arguments`; the shared fidelity/data flags, ``-v`` and the exit codes
belong to :mod:`export.driver`), a typed options dataclass made from them
(:meth:`Target.options`) and :meth:`Target.build`, which yields :class:`Candidate` artifacts
into a :class:`~export.pipeline.Stage`. The driver gates each candidate with its ``check``
and commits it (stage -> build -> check -> commit), and returns one :class:`ExportResult`.

Every registered target builds through this loop; a target overrides :meth:`Target.export` only
to add steps around :func:`export.driver.run_build` (TensorRT's version plan and ``--check-only``,
DeepStream's input checks and CLI lines).

:data:`TARGETS` maps a name to ``"module:attribute"``; :func:`get_target` imports the module
only when the target is used (no torch, OpenVINO or TensorRT at import time).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from emonext_edge.metadata import ArtifactMetadata, GateResult

from .pipeline import CommitResult, embed_onnx

__all__ = ["TARGETS", "BenchmarkSpec", "Candidate", "ExportResult", "Target", "get_target"]

#: every export target: name -> "module:attribute" of its :class:`Target` instance
TARGETS: dict[str, str] = {
    "onnx": "export.onnx:TARGET",
    "openvino": "export.openvino:TARGET",
    "tensorrt": "export.tensorrt:TARGET",
    "deepstream": "export.deepstream:TARGET",
    "ort-int8": "export.ort_int8:TARGET",
}


@dataclass
class Candidate:
    """One artifact a target built in the stage, not yet gated.

    ``names``: its files in commit order, model file last (stage basenames). ``metadata``: its
    record without the gate result. ``check(staged_model_file) -> GateResult``: the gate that
    decides whether it is committed. ``embed``: the carrier writer for the record
    (:func:`export.pipeline.embed_onnx`, :func:`~export.pipeline.embed_ir`, ``None``: sidecar only).
    ``summary``: a few words on what was built, for the CLI.
    """

    names: list[str]
    metadata: ArtifactMetadata
    check: Callable[[Path], GateResult]
    embed: Optional[Callable[[Path, ArtifactMetadata], None]] = embed_onnx
    #: what it is, for the CLI's "wrote ..." line (e.g. "STN native, opset 17, 259 nodes")
    summary: str = ""


@dataclass
class ExportResult:
    """What one export run did — the same shape for every target.

    ``artifacts``: one :class:`~export.pipeline.CommitResult` per gated artifact (committed or
    not); ``lines``: what the CLI prints after the gate lines; ``detail``: the target's own
    result object where it has one (``EngineResult``, the DeepStream package facts);
    ``exit_code``: a target's own non-zero outcome (``--check-only`` found unsupported operators).
    """

    target: str
    artifacts: list[CommitResult] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    detail: Any = None
    exit_code: int = 0
    #: False: a failed gate is recorded in the metadata but does not fail the run (the untrained default model)
    enforced: bool = True

    @property
    def passed(self) -> bool:
        """Every artifact passed its gate (an empty run passes: nothing was gated)."""
        return all(a.passed for a in self.artifacts)

    @property
    def paths(self) -> list[Path]:
        """The model files that reached their final names."""
        return [a.path for a in self.artifacts if a.committed]

    @property
    def path(self) -> Optional[Path]:
        """The last committed model file (the one a single-artifact target wrote)."""
        paths = self.paths
        return paths[-1] if paths else None


@dataclass(frozen=True)
class BenchmarkSpec:
    """How ``benchmarks/latency.py`` measures a target's artifact: its row name, the file name in the
    benchmark's cache, and the backend/precision the row reports. The flags come from
    :meth:`Target.benchmark_args`."""

    row: str
    file_name: str
    backend: str
    precision: str


class Target:
    """One export target. Subclasses set the class attributes and implement :meth:`options` and
    :meth:`build` (or :meth:`export`); see the "Adding a target" checklist in docs/architecture.md."""

    name: str = ""
    prog: str = ""
    description: str = ""
    #: the target takes ``--calib`` (calib.npz or a dataset root; the driver adds the flag)
    uses_calibration: bool = False
    #: True: the driver gates each candidate as it is yielded but commits them all after the last one
    #: (an interrupt or a crash during a later build step leaves nothing at the final names)
    commit_together: bool = False
    #: measured by benchmarks/latency.py (built there through the registry); None: not by it
    benchmark: Optional[BenchmarkSpec] = None

    def benchmark_args(self, fp32_onnx: Path) -> list[str]:
        """The CLI flags that build this target's benchmark artifact from the FP32 ONNX (without
        ``--output``, ``--calib``, ``--keep-failed``: latency.py adds those)."""
        return []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The target's own flags (not the shared ones of :func:`export.driver.add_shared_arguments`)."""

    def options(self, args: argparse.Namespace) -> Any:
        """The typed options from parsed arguments; raise ``UsageError`` (exit 2) for bad input.

        The options have a ``fidelity`` attribute (:class:`export.fidelity.FidelityOptions`):
        the driver commits with its ``keep_failed``."""
        raise NotImplementedError

    def output_dir(self, options: Any) -> Path:
        """Where :meth:`build`'s stage lives (the output directory)."""
        raise NotImplementedError

    def build(self, options: Any, stage: Any) -> Iterator[Candidate]:
        """Write candidate artifacts into ``stage`` and yield them in commit order."""
        raise NotImplementedError

    def export(self, options: Any) -> ExportResult:
        """Build, gate and commit (the driver's loop); targets with their own stages override this."""
        from .driver import run_build

        return run_build(self, options)

    def __repr__(self) -> str:
        return f"<export target {self.name}>"


def get_target(name: str) -> Target:
    """The registered target ``name`` (its module imported now); ``KeyError`` naming the known ones."""
    try:
        spec = TARGETS[name]
    except KeyError:
        raise KeyError(f"unknown export target {name!r}; known: {', '.join(TARGETS)}") from None
    module, _, attr = spec.partition(":")
    target = getattr(importlib.import_module(module), attr)
    if not isinstance(target, Target) or target.name != name:
        raise TypeError(f"{spec}: expected the Target named {name!r}, got {target!r}")
    return target


def target_names() -> Sequence[str]:
    return tuple(TARGETS)
