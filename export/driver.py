"""The one export driver: one parser, the shared flags, stage -> build -> check -> commit, exit codes.

Every ``python -m export.<target>`` is ``main = cli(TARGET)``: the driver builds the parser
(:class:`ExportParser`: a usage error is one ``error:`` line and exit 2), adds the flags every
target shares (:func:`add_shared_arguments`), asks the target for its typed options, runs
:meth:`Target.export <export.targets.Target.export>` (for a candidate-yielding target:
:func:`run_build`) and maps the outcome to the exit codes of :mod:`export.pipeline`
(0 ok, 1 gate failed, 2 bad input, 3 target runtime missing, 4 environment, 130 Ctrl-C,
141 closed stdout).

The data convention is one for every target: ``--calib PATH`` (a calib.npz from
``python -m calibration build`` or a dataset root; its ``train`` split) and ``--fidelity-data
PATH`` (a dataset root; its ``val`` split, or a folder of faces). The older spellings
``--calib-data``, ``--val-data``, ``--verify-data`` and ``--verify-count`` still work for one
release and print one deprecation warning each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Optional

from emonext_edge.errors import UsageError
from export.fidelity import _positive_int, add_fidelity_arguments

from .pipeline import EXIT_GATE_FAILED, Stage, exporter_cli, gate_line, raise_if_failed, set_verbosity
from .targets import Candidate, ExportResult, Target

__all__ = ["DEPRECATED_ALIASES", "ExportParser", "add_deprecated_alias", "add_shared_arguments", "build_parser", "cli", "run_build", "run_target"]

#: old spelling -> (new spelling, argparse dest, type); paths are checked by the target (check_args)
DEPRECATED_ALIASES: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "--calib-data": ("--calib", "calib", str),
    "--val-data": ("--fidelity-data", "fidelity_data", str),
    "--verify-data": ("--fidelity-data", "fidelity_data", str),
    "--verify-count": ("--fidelity-images", "fidelity_images", _positive_int),
}


class ExportParser(argparse.ArgumentParser):
    """The exporters' parser: a usage error is one ``error:`` line, exit code 2 (via :func:`exporter_cli`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _DeprecatedAlias(argparse.Action):
    """An old flag name: stores into the new flag's ``dest`` and warns once per run."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        warned: set[str] = getattr(parser, "_deprecation_warned", set())
        if option_string not in warned:
            warned.add(str(option_string))
            parser._deprecation_warned = warned  # type: ignore[attr-defined]
            print(f"warning: {option_string} is deprecated and will be removed in the next release; "
                  f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, dest: Optional[str] = None) -> None:
    """Accept the old spelling ``old`` (hidden from --help) for its new flag; it warns once per run."""
    new, default_dest, kind = DEPRECATED_ALIASES[old]
    parser.add_argument(old, dest=dest or default_dest, type=kind, action=_DeprecatedAlias, new=new,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_shared_arguments(parser: argparse.ArgumentParser, target: Target) -> None:
    """The flags every target shares: fidelity gate, data (``--calib`` where the target calibrates), ``-v``."""
    add_fidelity_arguments(parser)
    if target.uses_calibration:
        # checked by the target's check_args(..., calib=data_path): one "error: --calib: ..." line
        parser.add_argument("--calib", default=None, metavar="PATH",
                            help="calibration data: calib.npz (python -m calibration build) or a dataset root "
                                 "(FER2013 tree/CSV, folder of faces, video; its train split)")
    for old, (_, dest, _) in DEPRECATED_ALIASES.items():
        if dest == "calib" and not target.uses_calibration:
            continue
        add_deprecated_alias(parser, old)
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress and details")


def build_parser(target: Target) -> ExportParser:
    """The one parser of ``python -m export.<target>``: the target's flags, then the shared ones."""
    parser = ExportParser(prog=target.prog, description=target.description)
    target.add_arguments(parser)
    add_shared_arguments(parser, target)
    return parser


def run_build(target: Target, options: Any) -> ExportResult:
    """Stage -> build -> check -> commit for a target whose :meth:`~export.targets.Target.build` yields candidates.

    Every candidate is gated by its own ``check`` on the staged model file and committed with
    ``keep_failed`` from ``options.fidelity`` (right away, or all after the last one where the
    target sets ``commit_together``); a failed gate raises ``VerificationError``
    (exit 1) after the others were committed (kept-failed ones included).
    """
    keep_failed = bool(options.fidelity.keep_failed)  # every target's options carry the shared gate options
    result = ExportResult(target.name)
    summaries: dict[Path, str] = {}
    with Stage(target.output_dir(options)) as stage:
        pending: list[Candidate] = []

        def commit(candidate: Candidate) -> None:
            committed = stage.commit(candidate.names, candidate.metadata, embed=candidate.embed,
                                     keep_failed=keep_failed)
            result.artifacts.append(committed)
            summaries[committed.path] = candidate.summary
            result.lines.append(f"{committed.path.name}: {gate_line(committed.metadata.fidelity)}")  # type: ignore[arg-type]

        for candidate in target.build(options, stage):
            candidate.metadata.fidelity = candidate.check(stage.file(candidate.names[-1]))
            pending.append(candidate)
            if not target.commit_together:
                commit(pending.pop())
        for candidate in pending:  # commit_together: after the last candidate was built and gated
            commit(candidate)
    if any(not a.passed and not a.committed for a in result.artifacts):
        raise_if_failed(result.artifacts)  # VerificationError, exit 1: the API caller gets it too
    for artifact in result.artifacts:
        if artifact.committed:
            sha = artifact.metadata.artifact_sha256.get(artifact.path.name, "")
            state = "wrote" if artifact.passed else "wrote (UNVERIFIED, --keep-failed)"
            what = f"{summaries[artifact.path]}, " if summaries.get(artifact.path) else ""
            result.lines.append(f"{state} {artifact.path} ({what}sha256 {sha[:12]}) and {artifact.sidecar}")
    return result


def run_target(name: str, argv: Sequence[str]) -> ExportResult:
    """Run the registered target ``name`` in-process with its CLI flags (benchmarks, tests).

    The same parser, options and gate as ``python -m export.<name> ARGV``, without the exit-code
    wrapper: ``UsageError``, ``VerificationError`` (a failed gate without ``--keep-failed``),
    ``TargetRuntimeMissing`` propagate. With ``--keep-failed`` a failing artifact is committed,
    marked unverified, and ``result.passed`` is False.
    """
    from .targets import get_target

    target = get_target(name)
    return target.export(target.options(build_parser(target).parse_args(list(argv))))


def cli(target: Target) -> Callable[[Optional[Sequence[str]]], int]:
    """``main(argv) -> exit code`` of ``python -m export.<target.name>``."""

    @exporter_cli
    def main(argv: Optional[Sequence[str]] = None) -> int:
        args = build_parser(target).parse_args(argv)
        set_verbosity(args.verbose)
        options = target.options(args)
        result = target.export(options)
        for line in result.lines:
            print(line)
        if result.exit_code:
            return result.exit_code
        if not result.passed and result.enforced:
            raise_if_failed(result.artifacts)
            return EXIT_GATE_FAILED  # pragma: no cover - raise_if_failed raised
        return 0

    main.__name__ = main.__qualname__ = f"main_{target.name.replace('-', '_')}"
    return main
