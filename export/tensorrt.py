"""``python -m export.tensorrt``: TensorRT FP16/INT8 engines for TensorRT 8.5/8.6, 10.x and 11.x.

The target TensorRT version decides everything through its :class:`ApiPlan`
(``emonext_edge/tensorrt_compat.py``): the FP32 export's opset and STN form, and for the
asked precision which ONNX the engine is built from, the builder flags, strongly typed or
not, how the STN stays FP32, calibrator or Q/DQ. Pipeline:

1. FP32 ONNX (``--onnx``, or exported from ``--checkpoint`` / the seeded default model),
   gated against PyTorch — CPU;
2. operator check of that ONNX for the target version (``export/trt_opcheck.py``);
   ``--check-only`` prints the plan and the check and stops (no TensorRT needed;
   ``--trt-version`` picks the version to plan for); every TensorRT call of the plan is checked
   against the shipped API dump of that version's real bindings (``export/trt_api.py``: names,
   argument counts, keywords and types), and an impossible plan exits 2 with one line;
3. the ONNX the plan builds from, made and gated against the FP32 ONNX on CPU (ONNX
   Runtime): mixed FP16 (11.x ``--fp16``), Q/DQ INT8 (``--int8``), Q/DQ INT8 with FP16
   elsewhere (11.x ``--fp16 --int8``) — committed with their metadata;
4. engine build with the installed TensorRT (primary CUDA context, see ``CudaContext``),
   gated through the Runtime's TensorRT backend against ONNX Runtime on the ONNX it was
   built from, committed with its manifest (the real precision path, TensorRT version, GPU,
   compute capability, profile shapes).

Steps 1, 3 and 4 are :class:`~export.targets.Candidate` artifacts of one driver run
(:func:`export.driver.run_build`, one stage): each is gated and committed before the next is
built from it, so the prepared ONNX is at its final name, verified, when exit 3 names it.

Without TensorRT (or a GPU) steps 1-3 run for the version given by ``--trt-version``
(default 10.3.0, JetPack 6), and the command exits 3 printing the command to run on the
device with the file to carry there. Exit codes: 0 done, 1 a gate failed, 2 bad input,
3 TensorRT/GPU missing here.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from calibration.calib_file import DEFAULT_CALIBRATION_SIZE
from emonext_edge import tensorrt_compat as compat
from emonext_edge.argtypes import check_args, data_path, non_negative_int, positive_float, positive_int
from emonext_edge.errors import BackendUnavailableError, ExportError, UsageError
from emonext_edge.fileio import sha256_file
from emonext_edge.formats import TENSORRT_ENGINE
from emonext_edge.metadata import ArtifactMetadata, GateResult, Quantization, TensorRTInfo, read_metadata
from emonext_edge.preprocess import spec_of
from export.fidelity import FidelityOptions, gate_from_args

from . import trt_api, trt_opcheck
from .common import verify_source
from .driver import build_parser as driver_parser
from .driver import cli, run_build
from .pipeline import CommitResult, Stage, TargetRuntimeMissing, gate_artifact, gate_line
from .targets import Candidate, ExportResult, Target

log = logging.getLogger(__name__)

#: planned for when TensorRT is absent here and no --trt-version is given (JetPack 6; same ONNX as 8.6)
DEFAULT_TARGET = "10.3.0"
ENGINE_SUFFIXES = TENSORRT_ENGINE.suffixes
#: ONNX precision labels (ArtifactMetadata.precision) of the prepared ONNX kinds
ONNX_PRECISION = {"fp32": "fp32", "fp16": "fp16-mixed", "int8-qdq": "int8-qdq", "int8-qdq-fp16": "int8-qdq-fp16"}


@dataclass
class EngineOptions:
    """Everything :func:`export_engine` needs (the CLI maps its flags onto this one-to-one)."""

    output: Path = Path("exports/tensorrt/emonext.engine")
    onnx: Optional[Path] = None  # FP32 ONNX, or an ONNX this exporter prepared for the plan's path
    checkpoint: Optional[Path] = None  # None and no onnx: the seeded untrained default model
    precision: str = "fp32"  # fp32 | fp16 | int8 | fp16+int8
    int8_mode: str = "explicit"
    quantizer: str = "nncf"
    calib: Optional[str] = None  # calib.npz or a data source
    calib_num: int = DEFAULT_CALIBRATION_SIZE
    trt_version: Optional[str] = None  # plan for this version (default: the installed one)
    workspace_gb: float = 1.0
    profile: tuple[int, int, int] = (1, 1, 8)
    dla_core: Optional[int] = None
    timing_cache: Optional[Path] = None
    device: int = 0
    check_only: bool = False
    verbose: bool = False
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)

    def validate(self) -> None:
        if self.precision not in compat.PRECISIONS:
            raise UsageError(f"precision {self.precision!r}: expected one of {', '.join(compat.PRECISIONS)}")
        lo, mid, hi = self.profile
        if not 1 <= lo <= mid <= hi:
            raise UsageError(f"need 1 <= --min-batch <= --opt-batch <= --max-batch, got {lo}/{mid}/{hi}")
        if self.calib and "int8" not in self.precision:
            raise UsageError("--calib only makes sense with --int8")
        if self.workspace_gb <= 0:
            raise UsageError(f"--workspace must be positive, got {self.workspace_gb}")
        if self.output.suffix.lower() not in ENGINE_SUFFIXES:
            raise UsageError(f"--output {self.output}: expected a .engine or .plan file name")
        if self.onnx is not None and not self.onnx.is_file():
            raise UsageError(f"--onnx {self.onnx}: no such file")
        if self.trt_version is not None:
            try:
                compat.parse_version(self.trt_version)
            except ValueError as exc:
                raise UsageError(f"--trt-version: {exc}") from None


@dataclass
class EngineResult:
    plan: compat.ApiPlan
    path: compat.PrecisionPath
    build_onnx: Optional[Path]  # the ONNX the engine is (or would be) built from
    committed: list[Path] = field(default_factory=list)
    engine: Optional[Path] = None
    metadata: Optional[ArtifactMetadata] = None
    opcheck: dict[str, list[trt_opcheck.Unsupported]] = field(default_factory=dict)


def _onnx_metadata(path: Path) -> ArtifactMetadata:
    """The metadata of an ONNX given with ``--onnx``; one ``UsageError`` line when it is not an ONNX."""
    import onnx
    from google.protobuf import json_format, text_format
    from google.protobuf.message import DecodeError

    try:
        onnx.load(str(path), load_external_data=False)  # .json / .txt names are parsed as text formats
    except (DecodeError, json_format.ParseError, text_format.ParseError, ValueError, OSError, RuntimeError) as exc:
        raise UsageError(f"--onnx {path}: not a readable ONNX model ({type(exc).__name__})") from None
    verify_source(path, "--onnx")  # after the parse: an unreadable file gets one line, not an 'unverified' note too
    meta = read_metadata(path)
    if meta is None:
        raise UsageError(f"--onnx {path}: no EmoNeXt metadata (labels, preprocessing); export it with python -m export.onnx")
    return meta


def _resolve_plan(options: EngineOptions, installed: Optional[str]) -> tuple[compat.ApiPlan, str]:
    if options.trt_version:
        if installed and not options.check_only and compat.parse_version(installed)[:2] != \
                compat.parse_version(options.trt_version)[:2]:
            raise UsageError(f"--trt-version {options.trt_version}: TensorRT {installed} is installed here; "
                             "engines are built with the installed version (drop --trt-version)")
        return compat.plan_for(options.trt_version), f"TensorRT {options.trt_version} (--trt-version)"
    if installed:
        return compat.installed_plan(), f"TensorRT {installed} (installed)"
    return compat.plan_for(DEFAULT_TARGET), (f"TensorRT {DEFAULT_TARGET} (not installed here; assumed — "
                                             "pass --trt-version for another target)")


def _label_list(labels: Optional[np.ndarray]) -> Optional[list[int]]:
    return None if labels is None else [int(x) for x in labels]


def _calibration(options: EngineOptions) -> tuple[np.ndarray, str]:
    if options.calib:
        from calibration import load_calibration

        return load_calibration(options.calib, num=options.calib_num, option="--calib-num"), str(options.calib)
    from calibration.synthetic import synthetic_faces
    from emonext_edge.preprocess import preprocess

    n = options.calib_num  # the same default count (300) as with real data
    return preprocess(list(synthetic_faces(n, seed=1))), f"{n} synthetic images (no --calib given)"


def convert_qdq_fp16(qdq_path: Path, output: Path) -> Path:
    """The 11.x ``--fp16 --int8`` ONNX: the Q/DQ model at opset 19 with every float tensor FP16
    (FP16 Q/DQ scales, which opset 19 allows) except the FP32 islands of the FP16 ONNX
    (STN, LayerNorm statistics, head; ``export.fp16_onnx.fp32_block_list``). A strongly typed
    build takes the types as they are: INT8 where the Q/DQ pairs are, FP16 elsewhere."""
    import onnx
    from onnx import version_converter
    from onnxconverter_common import float16

    from .fp16_onnx import _unshare_initializers, fp32_block_list

    model = onnx.load(str(qdq_path))
    try:
        work = version_converter.convert_version(model, 19)
        del work.graph.value_info[:]
        _unshare_initializers(work)
        converted = float16.convert_float_to_float16(work, keep_io_types=True, node_block_list=fp32_block_list(work))
        onnx.checker.check_model(converted)
    except Exception as exc:
        raise ExportError(f"{qdq_path}: FP16 conversion of the Q/DQ model failed: {exc}") from exc
    del converted.metadata_props[:]
    onnx.save(converted, str(output))
    return output


def print_plan(plan: compat.ApiPlan, origin: str, options: EngineOptions, say: Callable[[str], None]) -> None:
    say(f"plan for {origin}:")
    for line in compat.describe(plan, options.precision, options.int8_mode):
        say("  " + line)


def check_api(plan: compat.ApiPlan, path: compat.PrecisionPath, say: Callable[[str], None]) -> None:
    """The binding audit of the test suite, here: every call of the plan and the build path against the
    shipped API dump of the target version's bindings (``export/trt_api.py``); ``UsageError`` (one line)
    when the plan calls what that version lacks or calls it with the wrong argument types."""
    try:
        source, problems = trt_api.check_plan(plan, path)
    except LookupError as exc:
        say(f"API check, TensorRT {plan.label}: not checked ({exc})")
        return
    uses = len(plan.api_uses())
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"TensorRT {plan.label} cannot build {path.precision}"
                         + (f" ({path.int8_mode} INT8)" if path.int8_mode else "")
                         + f" as planned: {problems[0]}{more} — checked against {source}")
    say(f"API check, TensorRT {plan.label}: the {uses} calls of the plan hold on {source}")


@dataclass
class _EngineRun:
    """One run of the ``tensorrt`` target, planned: what :meth:`EngineTarget.build` works from and fills in.

    The driver reads ``fidelity`` (``keep_failed`` forced on for the untrained default model, whose
    near-tied logits fail any gate: its artifacts are kept, marked unverified, and the run is not
    failed for it unless ``--keep-failed`` was asked for explicitly)."""

    options: EngineOptions
    say: Callable[[str], None]
    installed: Optional[str]
    source_meta: Optional[ArtifactMetadata]  # the record of --onnx (None: exported from the checkpoint)
    untrained: bool
    fidelity: FidelityOptions
    outcome: EngineResult


def _untrained(options: EngineOptions, source_meta: Optional[ArtifactMetadata]) -> bool:
    if source_meta is None:
        return options.checkpoint is None  # the seeded default model (export.common.load_source)
    upstream = source_meta.source.get("upstream") or {}
    return "untrained" in str(source_meta.source.get("weights", "")) + str(upstream.get("weights", ""))


def _prepared_candidate(kind: str, fp32: Path, stage: Stage, name: str, run: _EngineRun) -> Candidate:
    """The ONNX ``kind`` the plan builds from, made in the stage as a candidate: gated against the FP32
    ONNX with ONNX Runtime on the CPU and committed with its record by the driver."""
    from .fp16_onnx import fp16_recipe
    from .quantize_onnx import derive_candidate, qdq_recipe, quantize_qdq

    options = run.options
    what = compat.ONNX_KINDS[kind][1]
    if kind == "fp16":
        build, changes = fp16_recipe(fp32)
    else:
        calib, calib_desc = _calibration(options)
        run.say(f"calibrating on {calib_desc}")
        if kind == "int8-qdq":
            build, changes = qdq_recipe(fp32, calib, options.quantizer, calib_desc)
        else:
            def build(staged: Path) -> None:
                qdq = staged.with_name(staged.stem + ".qdq-fp32.onnx")
                quantize_qdq(fp32, calib, qdq, exclude_stn=True, method=options.quantizer)
                convert_qdq_fp16(qdq, staged)
                qdq.unlink()

            quant = Quantization(options.quantizer, {"format": "qdq", "fp16_elsewhere": True},
                                 {"description": calib_desc, "images": len(calib)}, stn_in_float=True)
            changes = {"precision": ONNX_PRECISION[kind], "opset": 19, "inference_precision": "int8+fp16",
                       "quantization": quant}
    return derive_candidate(fp32, stage, name, build, changes, run.fidelity, summary=what)


def _said(stage: Stage, run: _EngineRun, what: str) -> Optional[CommitResult]:
    """Say what the driver did with the candidate just yielded (gate, where it went); it is committed
    when this returns it, ``None`` when its gate failed and it was not kept."""
    done = stage.results[-1]
    assert done.metadata.fidelity is not None  # the driver gated it
    run.say(f"{what}: {gate_line(done.metadata.fidelity)}")
    if not done.committed:
        return None
    if not done.passed and run.untrained and not run.options.fidelity.keep_failed:
        run.say(f"{done.path.name}: untrained default model, gate not enforced (kept, marked unverified)")
    sha = done.metadata.artifact_sha256.get(done.path.name, "")
    run.say(f"{'wrote' if done.passed else 'wrote (UNVERIFIED)'} {done.path} (sha256 {sha[:12]}) and {done.sidecar}")
    run.outcome.committed.append(done.path)
    return done


def _engine_candidates(run: _EngineRun, stage: Stage) -> Iterator[Candidate]:
    """FP32 ONNX (exported from the checkpoint for the plan's opset and STN form, unless --onnx) ->
    the plan's prepared ONNX (FP16 / Q/DQ) -> the engine (where TensorRT and a GPU exist), each a
    candidate the driver gates and commits before the next is built from it."""
    options, say, plan, path = run.options, run.say, run.outcome.plan, run.outcome.path
    stem = options.output.stem
    if options.onnx is not None:
        assert run.source_meta is not None
        fp32, fp32_meta = options.onnx, run.source_meta
        say(f"source: ONNX {fp32} ({fp32_meta.precision}, opset {fp32_meta.opset}, STN {fp32_meta.stn_mode})")
    else:
        from .onnx import TARGET as ONNX_TARGET
        from .onnx import OnnxExportOptions, OnnxTargetOptions

        fp32 = stage.out_dir / f"{stem}.fp32.onnx"
        yield from ONNX_TARGET.build(OnnxTargetOptions(
            fp32, str(options.checkpoint) if options.checkpoint is not None else None,
            OnnxExportOptions(opset=plan.onnx_opset, stn=plan.stn_mode, fidelity=run.fidelity)), stage)
        done = _said(stage, run, f"FP32 ONNX (STN {plan.stn_mode}, opset {plan.onnx_opset})")
        if done is None:
            return  # the driver raises VerificationError naming it
        fp32_meta = done.metadata
    run.outcome.opcheck = trt_opcheck.report(fp32, [plan])
    for line in trt_opcheck.format_report(run.outcome.opcheck, verbose=options.verbose):
        say(line)
    if fp32_meta.precision == ONNX_PRECISION[path.onnx] and path.onnx != "fp32":
        build_onnx = fp32  # --onnx is already the prepared file of this path (the device-side step)
    elif fp32_meta.precision != "fp32":
        raise UsageError(f"--onnx {fp32}: its precision is {fp32_meta.precision}, but TensorRT {plan.label} "
                         f"builds {options.precision} from the {ONNX_PRECISION[path.onnx]} ONNX; pass the FP32 ONNX")
    elif path.onnx == "fp32":
        build_onnx = fp32
    else:
        suffix, what = compat.ONNX_KINDS[path.onnx]
        yield _prepared_candidate(path.onnx, fp32, stage, stem + suffix, run)
        if _said(stage, run, what) is None:
            return
        build_onnx = stage.out_dir / (stem + suffix)
    run.outcome.build_onnx = build_onnx

    if run.installed is None:
        flags = [] if options.precision == "fp32" else ["--" + p for p in options.precision.split("+")]
        carry = f"{build_onnx} (and its .json)"
        if path.calibrator:
            flags += ["--int8-mode", "calibrator"]
            if options.calib:  # the calibrator runs on the device: the calibration data travels too
                flags += ["--calib", Path(options.calib).name]
                carry += f" and {options.calib}"
        cmd = " ".join(["python -m export.tensorrt --onnx", build_onnx.name, *flags, "--output", options.output.name])
        raise TargetRuntimeMissing(
            f"TensorRT is not installed here: copy {carry} to the device with TensorRT {plan.label}",
            committed=run.outcome.committed, next_command=cmd)
    yield _engine_candidate(run, build_onnx, fp32_meta, stage)
    done = _said(stage, run, "engine")
    if done is not None:
        run.outcome.engine, run.outcome.metadata = done.path, done.metadata


def _engine_candidate(run: _EngineRun, build_onnx: Path, meta_in: ArtifactMetadata, stage: Stage) -> Candidate:
    """Build the engine with the installed TensorRT (primary CUDA context) into the stage, its manifest
    beside it; the candidate's check gates it through the Runtime's TensorRT backend against ONNX
    Runtime on the ONNX it was built from."""
    from emonext_edge import Runtime

    from .trt_pinning import fp32_layer_names

    options, say, plan, path = run.options, run.say, run.outcome.plan, run.outcome.path
    trt = compat.import_tensorrt()
    try:
        cuda_context = compat.CudaContext(options.device)
    except BackendUnavailableError as exc:
        raise TargetRuntimeMissing(f"{exc}; engines are built on the target device",
                                   committed=run.outcome.committed) from None
    name = options.output.name
    staged = stage.file(name)
    try:
        calibrator = None
        with cuda_context:
            if path.calibrator:
                from calibration.trt_calibrator import make_entropy_calibrator

                calib, _ = _calibration(options)
                # the cache is keyed by what determines the scales (the ONNX built from and the data), so a new
                # checkpoint or calibration set never reuses stale scales
                key = hashlib.sha256(sha256_file(build_onnx).encode() + np.ascontiguousarray(calib).tobytes()).hexdigest()
                calibrator = make_entropy_calibrator(plan, trt, calib,
                                                     options.output.with_suffix(f".{key[:12]}.calib.cache"))
            cache_path = options.timing_cache
            build = compat.BuildOptions(
                path=path, workspace_bytes=int(options.workspace_gb * (1 << 30)), profile=options.profile,
                dla_core=options.dla_core, calibrator=calibrator, input_chw=spec_of(meta_in).input_shape,
                fp32_layer_names=fp32_layer_names(path, build_onnx),  # the rule export.deepstream shares
                timing_cache=cache_path.read_bytes() if cache_path and cache_path.is_file() else None,
                progress=say if options.verbose else None,
            )
            say(f"building with TensorRT {trt.__version__} on {cuda_context.gpu} (compute "
                f"{cuda_context.compute_capability}): {path.engine_precision} from {build_onnx.name}")
            try:
                engine, cache = compat.build_serialized(plan, trt, str(build_onnx), build)
            finally:
                if calibrator is not None and calibrator.device is not None:
                    calibrator.device.free()  # in the context it was allocated in, before the context goes
        staged.write_bytes(engine)
        if cache_path and cache:
            from emonext_edge.fileio import atomic_path

            with atomic_path(cache_path) as tmp:
                tmp.write_bytes(cache)
        gpu, cc = cuda_context.gpu, cuda_context.compute_capability
    finally:
        cuda_context.close()
    lo, mid, hi = options.profile
    # the record of the ONNX the engine was built from (the prepared FP16 / Q/DQ one carries the quantization)
    built = read_metadata(build_onnx) or meta_in
    meta = built.replace(
        format="tensorrt-engine", precision=path.engine_precision, inference_precision=path.engine_precision,
        artifact_sha256={}, fidelity=None, batch="dynamic", opset=built.opset,
        tensorrt=TensorRTInfo(
            version=str(trt.__version__), gpu=gpu, compute_capability=cc,
            profile_shapes={name: [n, *spec_of(built).input_shape] for name, n in (("min", lo), ("opt", mid), ("max", hi))},
            details={"precision": path.engine_precision, "requested": path.precision, "int8_mode": path.int8_mode,
                     "strongly_typed": path.strongly_typed, "builder_flags": list(path.builder_flags),
                     "stn": path.stn, "built_from": build_onnx.name,
                     "built_from_sha256": sha256_file(build_onnx),
                     "dla_core": options.dla_core, "jetpack": compat.jetpack_release()}),
    )
    # the manifest (without the gate yet) beside the staged engine, so the gate's Runtime checks it
    (staged.parent / (staged.stem + ".json")).write_text(meta.to_json())
    images, labels, data_desc = run.fidelity.load_images(None)

    def check(engine_path: Path) -> GateResult:
        with Runtime(build_onnx, backend="onnxruntime", providers=["CPUExecutionProvider"]) as reference:
            return gate_artifact(engine_path, reference.run, images, _label_list(labels), run.fidelity,
                                 reference_desc=f"{build_onnx.name} (ONNX Runtime CPU)", data_desc=data_desc,
                                 runtime_options={"backend": "tensorrt", "device": options.device})

    return Candidate([name], meta, check, embed=None, summary=path.engine_precision)


def export_engine(options: EngineOptions, say: Callable[[str], None] = print) -> ExportResult:
    """Plan, prepare and (where TensorRT and a GPU exist) build and gate the engine: the ``tensorrt``
    target run through the driver, progress lines given to ``say``.

    Returns the :class:`~export.targets.ExportResult` (``detail``: the :class:`EngineResult` with the
    plan, the precision path, the operator check and the engine). Raises ``UsageError`` (bad
    options), ``VerificationError`` (a gate failed), ``TargetRuntimeMissing`` (no TensorRT/GPU
    here: the CPU-verified ONNX files are committed and the exception names the command to run
    on the device).
    """
    return EngineTarget(say).export(options)


# --------------------------------------------------------------------------- CLI


class EngineTarget(Target):
    name = "tensorrt"
    prog = "python -m export.tensorrt"
    description = __doc__.splitlines()[0]
    uses_calibration = True

    def __init__(self, say: Optional[Callable[[str], None]] = None) -> None:
        #: where progress goes as it happens (a run that ends with exit 3 shows it too)
        self.say: Callable[[str], None] = say or (lambda line: print(line, flush=True))

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        src = p.add_mutually_exclusive_group()
        src.add_argument("--onnx", help="FP32 ONNX from python -m export.onnx, or the ONNX this command prepared")
        src.add_argument("--checkpoint", help="EmoNeXt checkpoint (.pt) to export first (default: seeded untrained model)")
        p.add_argument("--fp16", action="store_true", help="FP16 engine (with --int8: INT8 where quantized, FP16 elsewhere)")
        p.add_argument("--int8", action="store_true", help="INT8 engine, calibrated on --calib (STN kept in float)")
        p.add_argument("--int8-mode", choices=compat.INT8_MODES, default="explicit",
                       help="explicit: a Q/DQ ONNX made and gated here (default); calibrator: TensorRT's "
                            "calibrator on the device (TensorRT < 10.1)")
        p.add_argument("--calib-num", type=int, default=DEFAULT_CALIBRATION_SIZE,
                       help=f"calibration images to use (default {DEFAULT_CALIBRATION_SIZE}; without --calib, "
                            "as many synthetic faces: weak calibration, for trying the command only)")
        p.add_argument("--quantizer", choices=("nncf", "ort"), default="nncf", help="Q/DQ library (explicit INT8)")
        p.add_argument("--trt-version", help="plan for this TensorRT version (default: the installed one, else "
                                             f"{DEFAULT_TARGET}); known: {', '.join(compat.TARGET_VERSIONS)} "
                                             "(8.5.2: JetPack 5.1.x, opset 16)")
        p.add_argument("--workspace", type=float, default=1.0, help="builder workspace in GB (keep small on Jetson)")
        p.add_argument("--min-batch", type=int, default=1, help="smallest batch of the optimization profile (default 1)")
        p.add_argument("--opt-batch", type=int, default=1, help="batch the engine is tuned for (default 1)")
        p.add_argument("--max-batch", type=int, default=8, help="largest batch of the optimization profile (default 8)")
        p.add_argument("--dla-core", type=int, default=None,
                       help="build for this DLA core (Jetson AGX/NX), GPU fallback on; default: GPU only")
        p.add_argument("--device", type=int, default=0, help="CUDA device index")
        p.add_argument("--timing-cache", help="timing cache file (read if present, updated after the build)")
        p.add_argument("--output", default="exports/tensorrt/emonext.engine",
                       help="engine path (default exports/tensorrt/emonext.engine; its manifest is <stem>.json beside it)")
        p.add_argument("--check-only", action="store_true", help="print the plan and the operator check, build nothing")

    def options(self, args: argparse.Namespace) -> EngineOptions:
        check_args(args, calib_num=positive_int, workspace=positive_float, min_batch=positive_int,
                   opt_batch=positive_int, max_batch=positive_int, dla_core=non_negative_int, device=non_negative_int,
                   onnx=data_path, checkpoint=data_path, calib=data_path, fidelity_data=data_path)
        return options_from_args(args)

    def plan(self, options: EngineOptions) -> _EngineRun:
        """Validate, resolve the plan for the target version, say it and check its API calls."""
        options.validate()
        source_meta = _onnx_metadata(options.onnx) if options.onnx is not None else None  # one error line first
        installed = compat.installed_version()
        plan, origin = _resolve_plan(options, installed)
        path = plan.path(options.precision, options.int8_mode)
        print_plan(plan, origin, options, self.say)
        if options.check_only or installed is None:  # on the device the installed bindings are the check
            check_api(plan, path, self.say)
        untrained = _untrained(options, source_meta)
        fidelity = replace(options.fidelity, keep_failed=True) if untrained else options.fidelity
        return _EngineRun(options, self.say, installed, source_meta, untrained, fidelity, EngineResult(plan, path, None))

    def output_dir(self, options: EngineOptions | _EngineRun) -> Path:
        return (options.options if isinstance(options, _EngineRun) else options).output.parent

    def build(self, options: EngineOptions | _EngineRun, stage: Stage) -> Iterator[Candidate]:
        run = options if isinstance(options, _EngineRun) else self.plan(options)
        if run.options.check_only:
            raise UsageError("--check-only builds nothing (EngineTarget.export prints the plan and the check)")
        yield from _engine_candidates(run, stage)

    def export(self, options: EngineOptions) -> ExportResult:
        run = self.plan(options)
        if options.check_only:
            return self._check_only(run)
        result = run_build(self, run)
        result.detail = run.outcome
        result.lines = []  # said while building
        # the untrained default model: a failed gate is recorded (kept, unverified), the run not failed for it
        result.enforced = not (run.untrained and not options.fidelity.keep_failed)
        return result

    def _check_only(self, run: _EngineRun) -> ExportResult:
        options, outcome = run.options, run.outcome
        plan = outcome.plan
        with tempfile.TemporaryDirectory(prefix="emonext-trt-check-") as tmp:
            if options.onnx is not None:
                fp32 = options.onnx
            else:  # the FP32 export the plan builds from, in a throw-away folder (a dry run writes nothing)
                from .common import load_source
                from .onnx import export_onnx

                source = load_source(options.checkpoint)
                fp32 = Path(tmp) / f"{options.output.stem}.fp32.onnx"
                export_onnx(source.model, fp32, stn=plan.stn_mode, opset=plan.onnx_opset, source_info=source.info)
            outcome.opcheck = trt_opcheck.report(fp32, [plan])
        for line in trt_opcheck.format_report(outcome.opcheck, verbose=options.verbose):
            self.say(line)
        if options.onnx is not None and any(outcome.opcheck.values()):
            self.say(f"  hint: TensorRT {plan.label} builds from an opset {plan.onnx_opset} export (STN {plan.stn_mode}): "
                     f"python -m export.onnx --opset {plan.onnx_opset}, then pass that file with --onnx")
        return ExportResult(self.name, detail=outcome, exit_code=1 if any(outcome.opcheck.values()) else 0)


TARGET = EngineTarget()
main = cli(TARGET)


def build_parser() -> argparse.ArgumentParser:
    return driver_parser(TARGET)


def options_from_args(args: argparse.Namespace) -> EngineOptions:
    precision = "+".join(p for p, on in (("fp16", args.fp16), ("int8", args.int8)) if on) or "fp32"
    return EngineOptions(
        output=Path(args.output), onnx=Path(args.onnx) if args.onnx else None,
        checkpoint=Path(args.checkpoint) if args.checkpoint else None, precision=precision,
        int8_mode=args.int8_mode, quantizer=args.quantizer, calib=args.calib, calib_num=args.calib_num,
        trt_version=args.trt_version, workspace_gb=args.workspace,
        profile=(args.min_batch, args.opt_batch, args.max_batch), dla_core=args.dla_core,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None, device=args.device,
        check_only=args.check_only, verbose=args.verbose, fidelity=gate_from_args(args),
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(None))
