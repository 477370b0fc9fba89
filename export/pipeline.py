"""The one export contract: build in a temporary folder, gate, record, commit atomically.

Every exporter (ONNX, OpenVINO IR, the FP16 / Q/DQ ONNX, TensorRT engines) follows it::

    with Stage(out_dir) as stage:                  # .emonext-tmp-<pid>-* inside out_dir
        build(stage.file("m.onnx"))                  # write the artifact into the stage
        gate = gate_artifact(stage.file("m.onnx"), reference, images, labels, opts,
                             reference_desc="PyTorch FP32", data_desc=what)
        meta.fidelity = gate                         # the gate result is part of the metadata
        result = stage.commit(["m.onnx"], meta, embed=embed_onnx, keep_failed=opts.keep_failed)
    raise_if_failed([result])                        # VerificationError -> exit code 1

* Nothing reaches a final name before its gate passed. A failing artifact is dropped with
  the stage, or with ``--keep-failed`` committed with ``fidelity.passed = False`` and
  ``kept_failed = True`` (it says it is unverified) and the command still exits 1.
* :meth:`Stage.commit` embeds the final record (with the gate result) in the file, hashes
  every file into ``artifact_sha256``, writes the sidecar in the stage, then renames the
  files (model file last of them) and the sidecar last.
* A run killed at any point leaves only its ``.emonext-tmp-<pid>-*`` folder; the next run
  into the same directory removes it (:func:`emonext_edge.fileio.clean_stale_temps`).
* The renames of one commit are bracketed by a marker ``.emonext-commit-<pid>-<model>.json``
  listing the final names (:mod:`emonext_edge.commit_marker`): a run killed between two renames
  leaves it, the Runtime then refuses those files ("an export into <dir> was interrupted while
  committing <names>; run it again") and the next export into the directory removes them.
* Exit codes (:func:`exporter_cli`): 0 done; 1 the fidelity gate / verification failed;
  2 bad input or usage (one ``error:`` line); 3 the target runtime is missing here (what
  could be verified on this machine is committed; the message names the next command);
  4 environment failure (disk full, quota, file-size limit, read-only file system: one line);
  130 interrupted (Ctrl-C), nothing of the interrupted artifact at its final names.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from typing import Callable as _Callable  # subscripted at run time: typing's, for Python 3.8 (JetPack 5)

import numpy as np

from emonext_edge.cli_support import EXIT_BAD_INPUT, cli_entry, one_line
from emonext_edge.commit_marker import roll_back, write_marker
from emonext_edge.environment import EXIT_ENVIRONMENT, EnvironmentFailure, diagnose, environment_failure
from emonext_edge.errors import BackendUnavailableError, VerificationError
from emonext_edge.fileio import TEMP_PREFIX, clean_stale_temps, prepare_output_dir, sha256_file
from emonext_edge.formats import commit_names, format_for
from emonext_edge.metadata import ArtifactMetadata, GateResult, sidecar_path, write_ir_metadata, write_onnx_metadata

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_GATE_FAILED = 1
# EXIT_BAD_INPUT (2) is re-exported from emonext_edge.cli_support
EXIT_RUNTIME_MISSING = 3
# EXIT_ENVIRONMENT (4) is re-exported from emonext_edge.environment

Predictor = _Callable[[np.ndarray], np.ndarray]

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_ENVIRONMENT",
    "EXIT_GATE_FAILED",
    "EXIT_OK",
    "EXIT_RUNTIME_MISSING",
    "CommitResult",
    "Stage",
    "TargetRuntimeMissing",
    "embed_ir",
    "embed_onnx",
    "exporter_cli",
    "gate_artifact",
    "gate_line",
    "interruptible",
    "raise_if_failed",
]


class TargetRuntimeMissing(BackendUnavailableError):
    """The runtime an exporter targets is not on this machine (exit code 3).

    ``committed``: the CPU-verified intermediates already at their final names;
    ``next_command``: the exact command to run on the target device.
    """

    def __init__(self, message: str, committed: Sequence[os.PathLike | str] = (), next_command: str = "") -> None:
        self.committed = [Path(p) for p in committed]
        self.next_command = next_command
        text = message
        if self.committed:
            text += "; verified here and committed: " + ", ".join(map(str, self.committed))
        super().__init__(text)

    @property
    def outcome(self) -> str:
        """What the CLI prints for exit 3, an expected result rather than an error: the situation,
        then a last line ``done here (CPU steps verified); next, on the device: <command>``."""
        if not self.next_command:
            return str(self)
        done = "done here (CPU steps verified)" if self.committed else "done here"
        return f"{self}\n{done}; next, on the device: {self.next_command}"


def exporter_cli(main: Optional[Callable[[Optional[Sequence[str]]], int]] = None, *, log_level: str = "WARNING"):
    """Wrap an exporter's ``main(argv) -> int`` with the exit-code contract (see the module docstring).

    Usable bare or as ``@exporter_cli(log_level=...)``. Library INFO logs are hidden by
    default (``-v`` in the exporter raises the level; ``EMONEXT_LOGLEVEL`` overrides).
    """

    def decorate(fn: Callable[[Optional[Sequence[str]]], int]) -> Callable[[Optional[Sequence[str]]], int]:
        @functools.wraps(fn)
        def contract(argv: Optional[Sequence[str]] = None) -> int:
            try:
                return fn(argv)
            except VerificationError as exc:
                print(f"error: {one_line(exc)}", file=sys.stderr)
                return EXIT_GATE_FAILED
            except BackendUnavailableError as exc:
                print(exc.outcome if isinstance(exc, TargetRuntimeMissing) else f"error: {one_line(exc)}", file=sys.stderr)
                return EXIT_RUNTIME_MISSING

        return cli_entry(contract, log_level=log_level)

    return decorate(main) if main is not None else decorate


@contextlib.contextmanager
def interruptible(step: str) -> Iterator[None]:
    """Ctrl-C during ``step`` ends the run (exit 130) even if a library swallows the KeyboardInterrupt.

    NNCF, OpenVINO and the gate run long steps in C++ and in worker threads; an exception raised in
    a callback can be caught there and the step carries on. Around the step, SIGINT is recorded
    and raised as usual; if the step then returns normally, the interrupt is raised at its end,
    before anything is committed. Only in the main thread (elsewhere signals cannot be handled).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt(f"interrupted during {step}")

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:  # the step returned although it was interrupted: its KeyboardInterrupt was swallowed
        log.warning("%s was interrupted (Ctrl-C) but carried on; stopping now, nothing committed", step)
        raise KeyboardInterrupt(f"interrupted during {step}")


def set_verbosity(verbose: bool) -> None:
    """``-v``: show the library's INFO logs (progress, figures); default: warnings only."""
    if verbose and "EMONEXT_LOGLEVEL" not in os.environ:
        logging.getLogger().setLevel(logging.INFO)


# --------------------------------------------------------------------------- stage + commit


@dataclass
class CommitResult:
    """What :meth:`Stage.commit` did: final paths (model file last), sidecar, metadata, gate."""

    paths: list[Path]
    sidecar: Optional[Path]
    metadata: ArtifactMetadata
    committed: bool

    @property
    def path(self) -> Path:
        """The model file (the last of ``paths``)."""
        return self.paths[-1]

    @property
    def passed(self) -> bool:
        return self.metadata.verified


class Stage:
    """A temporary build folder ``.emonext-tmp-<pid>-*`` inside the output directory.

    Creating it creates the output directory, proves it writable and removes the stale
    temporaries of killed runs; leaving the ``with`` block removes whatever was not committed.
    """

    def __init__(self, out_dir: str | os.PathLike, option: str = "--output") -> None:
        self.out_dir = prepare_output_dir(out_dir, option)
        clean_stale_temps(self.out_dir)
        roll_back(self.out_dir)  # what a commit killed between its renames left at the final names
        self.dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=self.out_dir))
        self.results: list[CommitResult] = []

    def file(self, name: str) -> Path:
        """Where to build the file that will be committed as ``out_dir/name``."""
        if Path(name).name != name:
            raise ValueError(f"stage file names are plain basenames, got {name!r}")
        return self.dir / name

    def commit(
        self,
        names: Sequence[str],
        meta: ArtifactMetadata,
        *,
        embed: Optional[Callable[[Path, ArtifactMetadata], None]] = None,
        keep_failed: bool = False,
        sidecar: bool = True,
    ) -> CommitResult:
        """Move the staged ``names`` to their final names if ``meta.fidelity`` passed (or ``keep_failed``).

        ``names``: the artifact's files in commit order, the model file last (an IR:
        ``[x.bin, x.xml]``). ``embed(staged_model_file, meta)`` writes the final record into
        the file first (:func:`embed_onnx`, :func:`embed_ir`); then every file is hashed into
        ``meta.artifact_sha256`` and the sidecar ``<model stem>.json`` is written in the stage,
        the files are renamed and the sidecar is renamed last. A failed gate without
        ``keep_failed`` commits nothing (the files stay in the stage and are removed with it).
        """
        if not names:
            raise ValueError("nothing to commit")
        model_name = names[-1]
        expected = commit_names(model_name)  # the formats table: companions (an IR's .bin) right before the model
        if list(names[-len(expected):]) != expected or any(format_for(n) for n in names[:-1]):
            raise ValueError(f"commit order {list(names)}: the model file must come last, right after its companion "
                             f"files (emonext_edge.formats; for {model_name}: ... {expected})")
        finals = [self.out_dir / n for n in names]
        if meta.fidelity is None:
            raise ValueError(f"{model_name}: commit needs the gate result in meta.fidelity (the contract: verify first)")
        if not meta.fidelity.passed:
            if not keep_failed:
                log.warning("%s failed its fidelity gate: not written (--keep-failed keeps it, marked unverified)",
                            finals[-1])
                result = CommitResult(finals, None, meta, committed=False)
                self.results.append(result)
                return result
            meta.fidelity.kept_failed = True
        staged = [self.file(n) for n in names]
        for path in staged:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: staged file is missing; nothing was committed")
        meta.validate(model_name)
        if embed is not None:
            embed(staged[-1], meta)
        meta.artifact_sha256 = {p.name: sha256_file(p) for p in staged}
        staged_sidecar = sidecar_path(staged[-1]) if sidecar else None
        if staged_sidecar is not None:
            if staged_sidecar in staged:
                raise ValueError(f"{staged_sidecar.name}: the sidecar name collides with an artifact file")
            staged_sidecar.write_text(meta.to_json())
        final_sidecar = sidecar_path(finals[-1]) if staged_sidecar is not None else None
        marker = write_marker(self.out_dir, [*names, *([final_sidecar.name] if final_sidecar else [])])
        for src, dst in zip(staged, finals):
            os.replace(src, dst)
        if staged_sidecar is not None and final_sidecar is not None:
            os.replace(staged_sidecar, final_sidecar)
        marker.unlink()  # the last rename is done: the commit is whole
        result = CommitResult(finals, final_sidecar, meta, committed=True)
        self.results.append(result)
        log.debug("committed %s", ", ".join(map(str, finals + ([final_sidecar] if final_sidecar else []))))
        return result

    def commit_dir(self, name: str) -> Path:
        """Move the staged folder ``name`` (built complete in the stage) to ``out_dir/name``.

        A previous folder of that name is moved into the stage first and removed with it, so the
        final name never holds a half-written tree (a Triton model repository).
        """
        staged, final = self.file(name), self.out_dir / name
        if not staged.is_dir():
            raise FileNotFoundError(f"{staged}: staged folder is missing; nothing was committed")
        if final.exists():
            os.replace(final, self.dir / f"{name}.previous")
        os.replace(staged, final)
        log.debug("committed %s", final)
        return final

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Stage:  # noqa: PYI034
        return self

    def __exit__(self, exc_type: object, exc: Optional[BaseException], tb: object) -> None:
        reason = None
        if isinstance(exc, Exception) and not isinstance(exc, (VerificationError, EnvironmentFailure)):
            # disk full / file-size limit: the C++ writers (ONNX, OpenVINO) raise without an errno; look
            reason = diagnose(self.dir, self.out_dir) or environment_failure(exc)
        elif isinstance(exc, EnvironmentFailure) and str(self.dir) in str(exc):  # from a stage nested in ours
            reason = str(exc).replace(str(self.dir), str(self.out_dir))
            self.close()
            raise EnvironmentFailure(reason) from exc.__cause__
        self.close()
        if reason is not None:
            detail = " ".join(str(exc).split())[:160]  # one line
            raise EnvironmentFailure(f"{reason}; nothing was committed ({type(exc).__name__}: {detail})") from exc


def embed_onnx(path: Path, meta: ArtifactMetadata) -> None:
    """Carrier writer for a staged ONNX file: the record in ``metadata_props`` (rewrites the file)."""
    import onnx

    model = onnx.load(str(path))
    write_onnx_metadata(model, meta)
    onnx.save(model, str(path))


def embed_ir(path: Path, meta: ArtifactMetadata) -> None:
    """Carrier writer for a staged IR: the record in the XML's ``rt_info`` (the .bin is untouched)."""
    write_ir_metadata(path, meta)


def raise_if_failed(results: Iterable[CommitResult]) -> None:
    """``VerificationError`` (exit code 1) naming every artifact whose gate failed."""
    failed = [r for r in results if r.metadata.fidelity is not None and not r.metadata.fidelity.passed]
    if not failed:
        return
    parts = []
    for r in failed:
        state = "kept, marked unverified (--keep-failed)" if r.committed else "not written"
        parts.append(f"{r.path.name} {state}: {'; '.join(r.metadata.fidelity.failures) or 'failed'}")  # type: ignore[union-attr]
    raise VerificationError("fidelity gate failed: " + " | ".join(parts)
                            + ("" if all(r.committed for r in failed) else
                               "; relax --min-agreement/--max-drop or pass --keep-failed to keep it"))


# --------------------------------------------------------------------------- the gate


def gate_artifact(
    artifact: str | os.PathLike,
    reference: Predictor,
    images: np.ndarray,
    labels: Optional[Sequence[int] | np.ndarray],
    options: Any,
    *,
    reference_desc: str,
    data_desc: str,
    runtime_options: Optional[Mapping[str, Any]] = None,
    atol: Optional[float] = None,
    extra_failures: Callable[[np.ndarray], list[str]] | None = None,
) -> GateResult:
    """Run the shared fidelity gate on ``artifact`` through the Runtime's own backend.

    ``reference``: float32 batch -> logits of what the artifact must behave like (PyTorch,
    the FP32 ONNX/IR, ...). ``options``: :class:`export.fidelity.FidelityOptions`
    (``min_agreement``, ``max_drop_pp``). ``atol``: also fail when max |Δlogit| exceeds it
    (FP32 conversions). ``extra_failures(candidate_logits)`` may add failure reasons.
    """
    from emonext_edge.runtime import Runtime
    from export.fidelity import fidelity_gate

    outputs: list[np.ndarray] = []
    # verify=False: a staged candidate has no recorded hashes yet (they are written at commit), so
    # the Runtime's "unverified" warning would only be noise on every export
    with interruptible(f"the fidelity gate of {Path(artifact).name}"), Runtime(artifact, **{"verify": False, **dict(runtime_options or {})}) as rt:

        def candidate(batch: np.ndarray) -> np.ndarray:
            out = rt.run(np.ascontiguousarray(batch, dtype=np.float32))
            outputs.append(out)
            return out

        y = None if labels is None else [int(v) for v in labels]
        report = fidelity_gate(candidate, reference, images, y, options.min_agreement, options.max_drop_pp,
                               progress=f"gate {Path(artifact).name}")
        info = rt.info
    runtime = ", ".join(str(v) for v in (info.get("backend"), info.get("provider"), info.get("device"),
                                          info.get("precision")) if v)
    failures = list(report.failures)
    thresholds: dict[str, Any] = {"min_agreement": report.min_agreement, "max_drop_pp": report.max_drop_pp}
    if atol is not None:
        thresholds["atol"] = atol
        if not report.max_abs_logit_diff <= atol:
            failures.append(f"max |Δlogit| {report.max_abs_logit_diff:.3g} > tolerance {atol:g}")
    if extra_failures is not None and outputs:
        failures += extra_failures(np.concatenate(outputs))
    figures = {
        k: getattr(report, k)
        for k in ("n", "agreement", "max_abs_logit_diff", "mean_abs_logit_diff", "max_abs_prob_diff",
                  "mean_abs_prob_diff", "accuracy_reference", "accuracy_candidate", "drop_pp", "nonfinite")
    }
    gate = GateResult(
        passed=not failures,
        reference=reference_desc,
        runtime=runtime,
        data=data_desc,
        figures={k: v for k, v in figures.items() if v is not None},
        thresholds=thresholds,
        failures=failures,
    )
    log.info("%s: %s", Path(artifact).name, gate_line(gate))
    return gate


def gate_line(gate: GateResult) -> str:
    """One line for the CLI: verdict, agreement, max |Δlogit|, accuracy drop where measured."""
    f = gate.figures
    text = (f"gate {'PASSED' if gate.passed else 'FAILED'} vs {gate.reference} on {gate.data}: "
            f"top-1 agreement {100 * f.get('agreement', float('nan')):.2f}% "
            f"(>= {100 * gate.thresholds.get('min_agreement', float('nan')):.2f}%), "
            f"max |Δlogit| {f.get('max_abs_logit_diff', float('nan')):.3g}")
    if "atol" in gate.thresholds:
        text += f" (<= {gate.thresholds['atol']:g})"
    if f.get("drop_pp") is not None:
        text += (f", accuracy {100 * f['accuracy_candidate']:.2f}% vs {100 * f['accuracy_reference']:.2f}% "
                 f"(drop {f['drop_pp']:+.2f} pp, <= {gate.thresholds.get('max_drop_pp', float('nan')):.2f})")
    if gate.failures:
        text += " — " + "; ".join(gate.failures)
    return text
