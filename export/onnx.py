"""ONNX export with a deployable Spatial Transformer Network: ``python -m export.onnx``.

    python -m export.onnx --checkpoint CKPT [--output emonext.onnx] [--opset N]
        [--stn native|decomposed] [--block-layout channels_last|channels_first]
        [--batch dynamic|N] [--atol A] [--force] [--fidelity-data ROOT] [--fidelity-images N]
        [--min-agreement F] [--max-drop PP] [--keep-failed]

Two ways to put the STN into the graph:

* ``native`` (default, opset 16-19, default 17): one ``GridSample`` node (bilinear, zeros,
  align_corners=1). Opset 20 renamed the ``bilinear`` mode to ``linear``, and TensorRT
  10.13-11.1 (NVIDIA/TensorRT#4646) and OpenVINO 2025.2 (openvinotoolkit/openvino#33531)
  silently fall back to nearest sampling on that spelling, so opset >= 20 is refused
  unless forced.
* ``decomposed`` (opset 13): bilinear sampling from Floor/Clip/GatherElements and
  arithmetic (``emonext_edge.stn.grid_sample_bilinear_zeros``), for runtimes without
  ``GridSample`` such as TensorRT 8.2 on JetPack 4.6.

In both modes the affine grid is a constant base grid times theta (MatMul): there is
never an ``AffineGrid`` node. The training-only attention branch is not in the graph.

Block layout: ``channels_last`` (default) is the official block (permute to NHWC,
LayerNorm, Linear, permute back); ``channels_first`` writes the same weights as 1x1
convolutions with LayerNorm over the channel axis, so the graph has no Transpose in the
blocks (OpenVINO's exporter uses it: measured faster there, no difference on ONNX Runtime).

Exporter choice: the TorchScript exporter (``dynamo=False``). The torch.export-based
exporter of torch 2.x emits opset 18 at the least and its down-conversion to opset 13
fails on the decomposed sampler, so it cannot produce the opset-13 graph, and for 16/17 it
silently declares 18. The TorchScript graph, simplified with onnxslim, is as clean
(only the constant-foldable grid arithmetic differs) and declares exactly the opset asked for.

Every export follows the export contract (``export/pipeline.py``): the graph is written into
a temporary folder inside the output directory, run by the Runtime's ONNX Runtime backend
(CPU) and compared with PyTorch (native ``grid_sample``, the official semantics) by the
shared fidelity gate (agreement, ``--max-drop`` with labelled data) plus a logit tolerance
(``atol``); only then are the file and its sidecar (with the gate result and SHA-256) moved
to their final names. A failed gate raises ``VerificationError`` (CLI exit code 1) and
leaves nothing at the final names unless ``--keep-failed``.
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from emonext_edge.argtypes import check_args, data_path, non_negative_float, positive_int
from emonext_edge.errors import ExportError
from emonext_edge.fileio import prepare_output_dir
from emonext_edge.metadata import ArtifactMetadata, GateResult, package_version, write_onnx_metadata
from emonext_edge.preprocess import INPUT_SHAPE
from emonext_edge.progress import stepped
from export.fidelity import FidelityOptions, gate_from_args

from .common import UsageError, load_source, refuse_foreign_sidecar
from .driver import build_parser as driver_parser
from .driver import cli, run_build
from .pipeline import Stage, embed_onnx, gate_artifact
from .targets import Candidate, ExportResult, Target

log = logging.getLogger(__name__)

STN_MODES = ("native", "decomposed")
DEFAULT_OPSET = {"native": 17, "decomposed": 13}
NATIVE_MIN_OPSET = 16  # GridSample appeared in opset 16
NATIVE_MAX_OPSET = 19  # opset 20 renamed GridSample's 'bilinear' to 'linear'
EXPORTER_MAX_OPSET = 20  # the highest opset torch's TorchScript exporter supports
DECOMPOSED_OPSET = 13  # the TorchScript exporter needs 13 for the grid; GridSample-free runtimes need <= 13
#: ``emonext_edge.model.BLOCK_LAYOUTS``, spelled out so the CLI checks its arguments without importing torch
CLI_BLOCK_LAYOUTS = ("channels_last", "channels_first")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FORBIDDEN_OPS = ("AffineGrid",)
OPSET20_REASON = (
    "opset 20 renamed GridSample's 'bilinear' mode to 'linear', and TensorRT 10.13-11.1 "
    "(NVIDIA/TensorRT#4646) and OpenVINO 2025.2 (openvinotoolkit/openvino#33531) silently fall back "
    "to nearest sampling on the new spelling"
)


def resolve_opset(stn: str, opset: int | None, force: bool = False) -> int:
    """The opset to export ``stn`` mode at (``None`` -> mode default); ``UsageError`` for bad combinations."""
    if stn not in STN_MODES:
        raise UsageError(f"--stn must be one of {', '.join(STN_MODES)}, got {stn!r}")
    if opset is None:
        return DEFAULT_OPSET[stn]
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise UsageError(f"opset must be an integer, got {opset!r}")
    opset = int(opset)
    if stn == "decomposed":
        if opset != DECOMPOSED_OPSET:
            raise UsageError(
                f"--stn decomposed is exported at opset {DECOMPOSED_OPSET} (it exists for runtimes without "
                f"GridSample, which stop at opset 13; the exporter needs 13 for the grid), got --opset {opset}"
            )
        return opset
    if opset < NATIVE_MIN_OPSET:
        raise UsageError(
            f"--stn native needs opset >= {NATIVE_MIN_OPSET} (GridSample appeared in opset 16), got --opset {opset}; "
            f"use --stn decomposed for opset {DECOMPOSED_OPSET}"
        )
    if opset > EXPORTER_MAX_OPSET:
        raise UsageError(f"--opset {opset}: torch's ONNX exporter supports opsets up to {EXPORTER_MAX_OPSET}")
    if opset > NATIVE_MAX_OPSET and not force:
        raise UsageError(
            f"--stn native at opset {opset} refused: {OPSET20_REASON}; use opset {NATIVE_MIN_OPSET}-{NATIVE_MAX_OPSET} "
            f"(default {DEFAULT_OPSET['native']}) or pass --force"
        )
    if opset > NATIVE_MAX_OPSET:
        log.warning("exporting --stn native at opset %d as forced: %s", opset, OPSET20_REASON)
    return opset


def _check_batch(batch: int | None) -> int | None:
    if batch is None:
        return None
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise UsageError(f"batch must be None (dynamic) or a positive integer, got {batch!r}")
    return int(batch)


def _check_output(output: str | os.PathLike) -> Path:
    """``output`` if it names an ``.onnx`` file whose directory exists or can be created, and is writable."""
    path = Path(output)
    if path.suffix.lower() != ".onnx":
        raise UsageError(f"--output {path}: the output file must end in .onnx (the runtime picks the backend by suffix)")
    if path.is_dir():
        raise UsageError(f"--output {path}: is a directory; give the .onnx file to write")
    refuse_foreign_sidecar(path, f"--output {path}")  # an IR or engine named like it keeps its record in the same <stem>.json
    prepare_output_dir(path.parent, option="--output", given=path)
    return path


def op_counts(model: Any) -> dict[str, int]:
    """Node counts by op type over the main graph and every subgraph (``onnx.ModelProto``)."""
    counts: collections.Counter[str] = collections.Counter()

    def visit(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(model.graph)
    for function in model.functions:
        for node in function.node:
            counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def audit_graph(model: Any, *, stn: str, opset: int, where: str = "exported graph") -> dict[str, int]:
    """Raise ``ExportError`` unless the graph is deployable for ``stn`` mode at ``opset``; return op counts."""
    counts = op_counts(model)
    for op in FORBIDDEN_OPS:
        if counts.get(op):
            raise ExportError(f"{where}: contains {counts[op]} {op} node(s); the STN grid must be plain MatMul")
    declared = {imp.domain: imp.version for imp in model.opset_import}
    if declared.get("", declared.get("ai.onnx")) != opset:
        raise ExportError(f"{where}: declares opsets {declared}, expected the default domain at {opset}")
    others = {d for d in declared if d not in ("", "ai.onnx")}
    if others:
        raise ExportError(f"{where}: uses custom op domains {sorted(others)}; only standard ONNX ops are allowed")
    grid_samples = [n for n in model.graph.node if n.op_type == "GridSample"]
    if stn == "decomposed":
        if counts.get("GridSample"):
            raise ExportError(f"{where}: decomposed STN export contains {counts['GridSample']} GridSample node(s)")
    else:
        if len(grid_samples) != 1:
            raise ExportError(
                f"{where}: native STN export should hold exactly 1 GridSample node, found {len(grid_samples)}"
            )
        attrs = {a.name: a for a in grid_samples[0].attribute}
        mode = attrs["mode"].s.decode() if "mode" in attrs else "bilinear"
        padding = attrs["padding_mode"].s.decode() if "padding_mode" in attrs else "zeros"
        align = attrs["align_corners"].i if "align_corners" in attrs else 0
        expected_mode = "bilinear" if opset < 20 else "linear"
        if (mode, padding, align) != (expected_mode, "zeros", 1):
            raise ExportError(
                f"{where}: GridSample has mode={mode!r} padding_mode={padding!r} align_corners={align}; "
                f"expected mode={expected_mode!r} padding_mode='zeros' align_corners=1"
            )
    return counts


def _dims(value_info: Any) -> list[Any]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _check_io(model: Any, batch: int | None, num_classes: int, input_shape: Sequence[int] = INPUT_SHAPE) -> None:
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"exported graph has inputs {inputs} / outputs {outputs}; expected [{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]"
        )
    first = batch if batch is not None else "batch"
    got_in, got_out = _dims(model.graph.input[0]), _dims(model.graph.output[0])
    if got_in != [first, *input_shape] or got_out != [first, num_classes]:
        raise ExportError(
            f"exported graph has input shape {got_in} and output shape {got_out}; "
            f"expected {[first, *input_shape]} and {[first, num_classes]}"
        )


@stepped("ONNX export (torch.onnx.export)")
def _torch_export(model: Any, opset: int) -> bytes:
    """Trace ``model`` to ONNX with a dynamic batch axis (a fixed batch is set later, by onnxslim).

    Tracing with a fixed batch makes the TorchScript exporter fold the STN's base grid into
    float64 constants, and ``GridSample`` has no float64 grid kernel in ONNX Runtime; the
    dynamic trace keeps it float32.
    """
    import torch

    example = torch.zeros(2, *model.input_shape)  # the model's preprocessing spec
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                model,
                (example,),
                buffer,  # type: ignore[arg-type]  # BytesIO is accepted by the TorchScript exporter
                dynamo=False,  # see the module docstring
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        except Exception as exc:  # torch raises many types here; report one readable error
            raise ExportError(f"torch.onnx.export failed at opset {opset}: {type(exc).__name__}: {exc}") from exc
    for w in caught:
        log.debug("torch.onnx.export: %s: %s", w.category.__name__, str(w.message).splitlines()[0])
    return buffer.getvalue()


@stepped("ONNX simplification and checks")
def _simplify_and_check(proto: bytes, *, stn: str, opset: int, batch: int | None, num_classes: int,
                        input_shape: Sequence[int] = INPUT_SHAPE) -> Any:
    import onnx
    import onnxslim

    model = onnx.load_from_string(proto)
    audit_graph(model, stn=stn, opset=opset, where="raw torch export")
    try:
        shapes = {} if batch is None else {"input_shapes": [f"{INPUT_NAME}:{','.join(map(str, (batch, *input_shape)))}"]}
        slim = onnxslim.slim(model, **shapes)
    except Exception as exc:
        raise ExportError(f"onnxslim failed to simplify the graph: {type(exc).__name__}: {exc}") from exc
    if slim is None:
        raise ExportError("onnxslim returned no model")
    try:
        onnx.checker.check_model(slim, full_check=True)
        slim = onnx.shape_inference.infer_shapes(slim, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the simplified graph: {type(exc).__name__}: {exc}") from exc
    audit_graph(slim, stn=stn, opset=opset, where="simplified graph")
    _check_io(slim, batch, num_classes, input_shape)
    return slim


def _official_forward(model: Any) -> Any:
    """``model`` itself when it runs the native grid_sample (the official semantics), else a copy
    that does: the caller's model is never switched."""
    if model.stn_mode == "native":
        return model
    native = copy.deepcopy(model)
    native.stn_mode = "native"
    return native


def _reference_logits(model: Any, images: np.ndarray) -> np.ndarray:
    """PyTorch logits of ``model`` (pass it through :func:`_official_forward` first)."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images))).numpy()


@dataclass(frozen=True)
class OnnxExportOptions:
    """What :func:`export_onnx` builds and how it is gated.

    ``opset=None`` -> 17 for ``stn="native"``, 13 for ``"decomposed"``. ``batch=None`` -> dynamic
    batch axis; an int fixes it. ``block_layout``: ``"channels_last"`` (official blocks) or
    ``"channels_first"`` (1x1 convs, no permutes); either is gated against the official forward.
    ``fidelity``: the shared gate options (``--min-agreement/--max-drop/--fidelity-data/
    --fidelity-images/--keep-failed``); ``atol``: max |Δlogit| allowed against PyTorch FP32.
    """

    opset: int | None = None
    stn: str = "native"
    batch: int | None = None
    block_layout: str = "channels_last"
    force: bool = False
    atol: float = 1e-4
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)


def _onnx_candidate(model: Any, path: Path, opts: OnnxExportOptions, gate_opts: FidelityOptions,
                    source_info: Mapping[str, Any] | None, stage: Stage, images: np.ndarray, labels: Any,
                    description: str) -> tuple[Candidate, dict[str, Any]]:
    """Export, simplify and audit the graph into ``stage``; the candidate (record, gate vs PyTorch) and its facts."""
    resolved_opset = resolve_opset(opts.stn, opts.opset, opts.force)
    fixed_batch = _check_batch(opts.batch)
    # the export form is fixed on a private copy: the caller's (possibly shared) model is never switched
    export_model = copy.deepcopy(model).eval()
    export_model.stn_mode, export_model.block_layout = opts.stn, opts.block_layout
    raw = _torch_export(export_model, resolved_opset)
    del export_model
    num_classes = model.architecture.num_classes
    graph = _simplify_and_check(raw, stn=opts.stn, opset=resolved_opset, batch=fixed_batch, num_classes=num_classes,
                                input_shape=model.input_shape)
    counts = op_counts(graph)

    architecture = dict(model.architecture.to_dict(), name=model.architecture.name)
    meta = ArtifactMetadata(
        format="onnx",
        precision="fp32",
        labels=list(model.labels),
        architecture=architecture,
        source=dict(source_info or {}),
        stn_mode=opts.stn,
        block_layout=opts.block_layout,
        opset=resolved_opset,
        batch="dynamic" if fixed_batch is None else fixed_batch,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=["batch" if fixed_batch is None else fixed_batch, *model.input_shape],
        preprocessing=model.spec.to_dict(),
    )
    write_onnx_metadata(graph, meta)
    graph.producer_name = "emonext-edge"
    graph.producer_version = package_version()
    graph.doc_string = f"EmoNeXt ({architecture['name']}) emotion classifier, STN {opts.stn}, opset {resolved_opset}"
    staged = stage.file(path.name)
    staged.write_bytes(graph.SerializeToString())

    def check(path_: Path) -> GateResult:
        reference = _official_forward(model)
        was_training = reference.training
        try:
            reference.eval()
            gate = gate_artifact(
                path_,
                lambda batch_: _reference_logits(reference, batch_),
                images,
                labels,
                gate_opts,
                reference_desc=f"PyTorch FP32 (native grid_sample, {model.block_layout} blocks), CPU",
                data_desc=description,
                runtime_options={"backend": "onnxruntime", "providers": ["CPUExecutionProvider"]},
                atol=opts.atol,
            )
            if fixed_batch is None and len(images) > 1 and gate.passed:  # the dynamic axis must run 1 image too
                from emonext_edge.runtime import Runtime

                with Runtime(path_, backend="onnxruntime", providers=["CPUExecutionProvider"], verify=False) as rt:  # staged: hashed at commit
                    single = rt.run(np.ascontiguousarray(images[:1]))
                diff = float(np.abs(single - _reference_logits(reference, images[:1])).max())
                if not diff <= opts.atol:
                    gate.passed = False
                    gate.failures.append(f"batch of 1 on the dynamic axis: max |Δlogit| {diff:.3g} > {opts.atol:g}")
        finally:
            reference.train(was_training)
        return gate

    facts = {"opset": resolved_opset, "batch": meta.batch, "op_counts": counts, "num_nodes": sum(counts.values())}
    summary = (f"STN {opts.stn}, {opts.block_layout} blocks, opset {resolved_opset}, batch {meta.batch}, "
               f"{facts['num_nodes']} nodes")
    return Candidate([path.name], meta, check, embed_onnx, summary), facts


def export_onnx(
    model: Any,
    output: str | os.PathLike,
    options: OnnxExportOptions | None = None,
    *,
    source_info: Mapping[str, Any] | None = None,
    opset: int | None = None,
    stn: str | None = None,
    batch: int | None = None,
    verify_data: str | os.PathLike | None = None,
    verify_count: int | None = None,
    force: bool | None = None,
    atol: float | None = None,
    block_layout: str | None = None,
) -> ExportResult:
    """Export an ``EmoNeXt`` to ONNX through the export driver; return its :class:`~export.targets.ExportResult`.

    Pass an :class:`OnnxExportOptions`; the keyword arguments are shortcuts that override it
    (``verify_data``/``verify_count`` set ``fidelity.data``/``fidelity.images``).
    ``source_info`` is ``export.common.load_source(...).info``. The result is the one every target
    returns (:func:`export.driver.run_build`): ``result.path`` the ONNX, ``result.artifacts[0]`` its
    :class:`~export.pipeline.CommitResult` (``.metadata`` the :class:`ArtifactMetadata` with the gate
    result in ``.fidelity``, ``.sidecar``), ``result.passed``, ``result.lines``. Raises ``UsageError``
    for bad arguments, ``ExportError`` when the graph is not deployable and ``VerificationError`` when
    the gate fails (nothing is written). With ``fidelity.keep_failed`` a failing file is written,
    marked unverified (``fidelity.passed`` False, ``kept_failed`` True) and ``result.passed`` is False.
    """
    opts = options or OnnxExportOptions()
    overrides: dict[str, Any] = {k: v for k, v in (("opset", opset), ("stn", stn), ("batch", batch), ("force", force),
                                   ("atol", atol), ("block_layout", block_layout)) if v is not None}
    gate_opts = opts.fidelity
    if verify_data is not None:
        gate_opts = replace(gate_opts, data=str(verify_data))
    if verify_count is not None:
        if isinstance(verify_count, bool) or not isinstance(verify_count, (int, np.integer)) or verify_count < 1:
            raise UsageError(f"verify_count must be a positive integer, got {verify_count!r}")
        gate_opts = replace(gate_opts, images=int(verify_count))
    opts = replace(opts, **overrides, fidelity=gate_opts)

    resolve_opset(opts.stn, opts.opset, opts.force)
    _check_batch(opts.batch)  # fail fast, before loading data
    from emonext_edge.model import BLOCK_LAYOUTS

    if opts.block_layout not in BLOCK_LAYOUTS:
        raise UsageError(f"block_layout must be one of {list(BLOCK_LAYOUTS)}, got {opts.block_layout!r}")
    path = _check_output(output)
    return run_build(TARGET, OnnxTargetOptions(path, None, opts, model=model, source_info=source_info))


def _parse_batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or a positive integer, got {text!r}")
    return value


@dataclass(frozen=True)
class OnnxTargetOptions:
    """The ``onnx`` target's options: the source checkpoint (``None``: the seeded untrained
    default model), the output file and the :class:`OnnxExportOptions`."""

    output: Path
    checkpoint: str | None = None
    export: OnnxExportOptions = field(default_factory=OnnxExportOptions)
    #: an ``EmoNeXt`` already in memory (the :func:`export_onnx` API) instead of ``checkpoint``
    model: Any = None
    source_info: Mapping[str, Any] | None = None

    @property
    def fidelity(self) -> FidelityOptions:
        """The gate options (the driver reads ``keep_failed`` here)."""
        return self.export.fidelity


class OnnxTarget(Target):
    name = "onnx"
    prog = "python -m export.onnx"
    description = "Export EmoNeXt to ONNX with a deployable STN, gated against PyTorch through ONNX Runtime."

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--checkpoint", help="EmoNeXt checkpoint (.pt/.pth/.safetensors); default: seeded untrained EmoNeXt-Tiny"
        )
        p.add_argument("--output", default="exports/emonext.onnx",
                       help="output .onnx file, its directory is created (sidecar <stem>.json beside it; "
                            "default: exports/emonext.onnx)")
        p.add_argument("--opset", type=int, default=None, help="ONNX opset (native: 16-19, default 17; decomposed: 13)")
        p.add_argument(
            "--stn", choices=STN_MODES, default="native", help="STN sampler: one GridSample node, or opset-13 Gather ops"
        )
        p.add_argument(
            "--block-layout",
            choices=CLI_BLOCK_LAYOUTS,
            default="channels_last",
            help="ConvNeXt blocks as official (permute + Linear) or as 1x1 convs without permutes (faster on OpenVINO)",
        )
        p.add_argument("--batch", type=_parse_batch, default=None, help="'dynamic' (default) or a fixed batch size")
        p.add_argument("--atol", type=float, default=OnnxExportOptions.atol,
                       help=f"max |Δlogit| against PyTorch FP32 (default {OnnxExportOptions.atol:g})")
        p.add_argument(
            "--force", action="store_true", help="allow native exports at opset 20 despite the GridSample mode rename"
        )

    def options(self, args: argparse.Namespace) -> OnnxTargetOptions:
        check_args(args, atol=non_negative_float, opset=positive_int, fidelity_images=positive_int,
                   fidelity_data=data_path, checkpoint=data_path)  # before any work: --atol nan, a FIFO as data, ...
        resolve_opset(args.stn, args.opset, args.force)  # fail fast, before loading anything
        if args.fidelity_images < 1:
            raise UsageError(f"--fidelity-images must be >= 1, got {args.fidelity_images}")
        output = _check_output(args.output)
        if args.fidelity_data is not None and not Path(args.fidelity_data).exists():
            raise UsageError(f"--fidelity-data {args.fidelity_data}: no such file or folder")
        if args.checkpoint is not None and not Path(args.checkpoint).is_file():
            raise UsageError(f"--checkpoint {args.checkpoint}: checkpoint not found")
        return OnnxTargetOptions(output, args.checkpoint, OnnxExportOptions(
            opset=args.opset, stn=args.stn, batch=args.batch, block_layout=args.block_layout, force=args.force,
            atol=args.atol, fidelity=gate_from_args(args),
        ))

    def output_dir(self, options: OnnxTargetOptions) -> Path:
        return options.output.parent

    def build(self, options: OnnxTargetOptions, stage: Stage) -> Iterator[Candidate]:
        if options.model is not None:  # the API: the model is given, nothing to load or announce
            images, labels, description = options.fidelity.load_images(spec=options.model.spec)
            candidate, _ = _onnx_candidate(options.model, options.output, options.export, options.fidelity,
                                           options.source_info, stage, images, labels, description)
            yield candidate
            return
        source = load_source(options.checkpoint)
        if options.checkpoint is None:
            print(f"note: no --checkpoint given; exporting the {source.description}")
        else:
            print(f"source: {source.description}")
        from emonext_edge.model import BLOCK_LAYOUTS

        if options.export.block_layout not in BLOCK_LAYOUTS:
            raise UsageError(f"block_layout must be one of {list(BLOCK_LAYOUTS)}, got {options.export.block_layout!r}")
        gate_opts = options.export.fidelity
        images, labels, description = gate_opts.load_images(spec=source.model.spec)
        candidate, _ = _onnx_candidate(source.model, options.output, options.export, gate_opts, source.info, stage,
                                       images, labels, description)
        yield candidate


TARGET = OnnxTarget()
main = cli(TARGET)


def build_parser() -> argparse.ArgumentParser:
    return driver_parser(TARGET)


if __name__ == "__main__":
    raise SystemExit(main(None))
