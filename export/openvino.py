"""OpenVINO IR export: FP32, FP16-compressed and NNCF INT8 (``python -m export.openvino``).

Jobs live in their own modules: the source -> ``ov.Model`` conversion and the trust check of
``--onnx`` files in :mod:`export.openvino_convert`, NNCF INT8 in :mod:`export.nncf_quantize`,
the STN scope in :mod:`export.stn_scope`, the build/gate/commit contract in
:mod:`export.pipeline`. This module puts them together and holds the CLI.

Every IR is written into the export's temporary folder inside the output directory and gated
through the Runtime's OpenVINO backend before it reaches its final name:

* the FP32 IR against the ONNX it was converted from (run by ONNX Runtime): agreement and
  max |Δlogit| <= ``atol`` — a conversion that changes the numbers is never written;
* the FP16 and INT8 IRs against the FP32 IR: ``--min-agreement``, and ``--max-drop`` with
  labelled data (``--fidelity-data``, or ``--val-data``).

Each artifact is ``<name>.xml`` + ``.bin`` + sidecar ``<name>.json`` (with the gate result and
the SHA-256 of both files); the record is also stored in the IR's ``rt_info`` under
``emonext/<key>`` (:func:`emonext_edge.metadata.read_ir_metadata`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.argtypes import check_args, data_path, non_negative_float, positive_int, thread_count
from emonext_edge.metadata import ArtifactMetadata, GateResult, Quantization, set_ov_model_metadata
from emonext_edge.preprocess import spec_of
from export.fidelity import FidelityOptions, gate_from_args

from .common import UsageError, refuse_foreign_sidecar, synthetic_faces
from .driver import build_parser as driver_parser
from .driver import cli
from .nncf_quantize import QuantizeOptions, _check_batch, load_calibration_images, load_validation, quantize_int8
from .openvino_convert import DEFAULT_BLOCK_LAYOUT, ConvertedSource, convert_source, require_openvino
from .pipeline import Stage, embed_ir, gate_artifact
from .targets import Candidate, ExportResult, Target

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_NAME = "emonext"
#: OpenVINO CPU precision for the layers NNCF leaves in float
DEFAULT_INT8_INFERENCE_PRECISION = "f32"
#: max |Δlogit| of the FP32 IR against its source ONNX
DEFAULT_IR_ATOL = 1e-3



def set_ir_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    """Deprecated 0.2 name (removal: 0.5): :func:`emonext_edge.metadata.set_ov_model_metadata`."""
    from emonext_edge.metadata import warn_deprecated

    warn_deprecated("export.openvino.set_ir_metadata", "emonext_edge.metadata.set_ov_model_metadata", "0.5")
    set_ov_model_metadata(model, meta)


def read_ir_metadata(xml_path: str | os.PathLike) -> Optional[dict[str, Any]]:
    """Deprecated 0.2 name (removal: 0.5), shadowing :func:`emonext_edge.metadata.read_ir_metadata`
    with another return type: the IR's record as a dict (rt_info, else the sidecar). Use
    ``emonext_edge.metadata.read_metadata(xml)`` (the typed record; ``.to_dict()`` for a dict)."""
    from emonext_edge.metadata import read_ir_rt_info, read_json_file, sidecar_path, warn_deprecated

    warn_deprecated("export.openvino.read_ir_metadata (a dict)", "emonext_edge.metadata.read_metadata (typed)", "0.5")
    data = read_ir_rt_info(xml_path)
    if data and data.get("labels"):
        return data
    path = sidecar_path(xml_path)
    return read_json_file(path) if path.is_file() else None

@dataclass(frozen=True)
class IRExportOptions:
    """What :func:`export_ir` builds and how each IR is gated.

    ``fidelity``: the shared gate options. ``val_data``/``val_limit``: labelled FER2013 data
    for the gate (when ``fidelity.data`` is not given) and for ``accuracy_control``
    (``nncf.quantize_with_accuracy_control`` within ``fidelity.max_drop_pp``).
    ``labels``/``trust_foreign``: accept an ``--onnx`` source that is not a verified EmoNeXt export.
    """

    precisions: tuple[str, ...] = ("fp32",)
    name: str = DEFAULT_NAME
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)
    val_data: Optional[str] = None
    val_limit: Optional[int] = None
    accuracy_control: bool = False
    threads: Optional[int] = None
    int8_inference_precision: str = DEFAULT_INT8_INFERENCE_PRECISION
    block_layout: str = DEFAULT_BLOCK_LAYOUT
    ir_atol: float = DEFAULT_IR_ATOL
    labels: Optional[tuple[str, ...]] = None
    trust_foreign: bool = False


@dataclass(frozen=True)
class IRTargetOptions:
    """The ``openvino`` target's options: the source (``checkpoint`` or ``onnx``; neither: the seeded
    untrained default model), the output directory, calibration data, the :class:`IRExportOptions`,
    and ``verify_images`` (gate on these float32 images instead of loading data; API only)."""

    output: Path
    checkpoint: Optional[str | os.PathLike] = None
    onnx: Optional[str | os.PathLike] = None
    calib: Any = None  # calib.npz / dataset root / a float32 array (the untrained model's synthetic faces)
    export: IRExportOptions = field(default_factory=IRExportOptions)
    verify_images: Optional[np.ndarray] = None

    @property
    def fidelity(self) -> FidelityOptions:
        """The shared gate options (the driver commits with their ``keep_failed``)."""
        return self.export.fidelity


def export_ir(
    checkpoint: Optional[str | os.PathLike] = None,
    output_dir: str | os.PathLike = "exports/ir",
    options: Optional[IRExportOptions] = None,
    *,
    onnx: Optional[str | os.PathLike] = None,
    calib: Any = None,
    verify_images: Optional[np.ndarray] = None,
) -> ExportResult:
    """Export ``<name>.xml`` (FP32) and on request ``<name>_fp16.xml``, ``<name>_int8.xml`` to ``output_dir``.

    The API of ``python -m export.openvino``: runs the ``openvino`` target through the driver
    (:func:`export.driver.run_build`). ``calib``: calibration array, calib.npz or data path
    (INT8). ``verify_images``: gate on these float32 images instead of loading data.

    Returns the :class:`~export.targets.ExportResult`: one artifact per precision, in the order
    FP32, FP16, INT8 (``result.artifacts[i].metadata`` holds its record and gate). A failing IR
    is not written (``VerificationError`` after the passing ones are committed) unless
    ``options.fidelity.keep_failed``: then it is written marked unverified and ``result.passed``
    is False.
    """
    return TARGET.export(IRTargetOptions(Path(output_dir), checkpoint, onnx, calib, options or IRExportOptions(),
                                         verify_images))


def _save_ir(model: Any, stage: Stage, name: str, meta: ArtifactMetadata, compress_to_fp16: bool = False) -> list[str]:
    """``ov.save_model`` into the stage (with the record so far in rt_info); returns the commit
    order (weights first, XML last). :func:`export.pipeline.embed_ir` finalises the record."""
    ov = require_openvino()
    model = model.clone()
    set_ov_model_metadata(model, meta)
    ov.save_model(model, str(stage.file(f"{name}.xml")), compress_to_fp16=compress_to_fp16)
    return [f"{name}.bin", f"{name}.xml"]


def _stem(opts: IRExportOptions, precision: str) -> str:
    return opts.name if precision == "fp32" else f"{opts.name}_{precision}"


def _check_options(output_dir: Path, opts: IRExportOptions) -> None:
    """Bad options and an output that would share a sidecar with an ONNX or engine: ``UsageError``."""
    bad = [p for p in opts.precisions if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown precision(s) {bad}; expected some of {list(PRECISIONS)}")
    if opts.accuracy_control and opts.val_data is None:
        raise UsageError("accuracy-controlled quantization needs labelled validation data (--fidelity-data)")
    for precision in opts.precisions:  # an IR's sidecar is <name>.json, the file an ONNX/engine of that name keeps
        refuse_foreign_sidecar(output_dir / f"{_stem(opts, precision)}.xml", f"--output {output_dir}",
                               advice=f"give another --output or --name (e.g. --name {opts.name}_ir)")


def _gate_data(options: IRTargetOptions, calib_images: Optional[np.ndarray],
               val: Optional[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, Optional[Any], str]:
    """The images every IR is gated on: given images, --fidelity-data, the labelled val data, the
    calibration images (said not to be held out), else the shared default data."""
    opts = options.export
    if options.verify_images is not None:
        images = _check_batch(np.asarray(options.verify_images), "verify_images")
        return images, None, f"{len(images)} given images"
    if opts.fidelity.data is not None:
        return opts.fidelity.load_images()
    if val is not None:
        return val[0], val[1], f"{len(val[0])} labelled images from {opts.val_data} (val split)"
    if calib_images is not None:
        images = calib_images[: min(64, len(calib_images))]
        return images, None, f"{len(images)} calibration images (not held out; pass --fidelity-data for a labelled check)"
    return opts.fidelity.load_images()


def _metadata(src: ConvertedSource, precision: str, **extra: Any) -> ArtifactMetadata:
    spec = spec_of(src)
    return ArtifactMetadata(
        format="openvino-ir", precision=precision, labels=list(src.labels), architecture=dict(src.architecture),
        source=dict(src.source), block_layout=src.block_layout, stn_mode=src.stn_mode, batch="dynamic",
        input_shape=["batch", *spec.input_shape], preprocessing=spec.to_dict(), **extra,
    )


def _summary(stage: Stage, names: list[str], precision: str, inference: str) -> str:
    size = stage.file(names[0]).stat().st_size  # the .bin
    return f"{precision}, inference {inference}, {size / 1e6:.1f} MB"


def build_irs(options: IRTargetOptions, stage: Stage) -> Iterator[Candidate]:
    """The ``openvino`` target's build: one :class:`Candidate` per precision, FP32 first.

    The FP32 IR is gated against the ONNX it was converted from (ONNX Runtime CPU, with
    ``ir_atol``); FP16 and INT8 against the staged FP32 IR. A failed FP32 gate ends the build
    (everything else would be gated against it). The target commits the candidates together
    after the last one (:attr:`IRTarget.commit_together`): Ctrl-C during INT8 quantization leaves
    nothing at the final names.
    """
    from emonext_edge.runtime import Runtime

    opts = options.export
    _check_options(stage.out_dir, opts)
    runtime_options: dict[str, Any] = {"backend": "openvino"}
    if opts.threads:
        runtime_options["threads"] = int(opts.threads)
    calib_images = calib_desc = None
    if "int8" in opts.precisions:  # validate data before any long work
        calib_images, calib_desc = load_calibration_images(options.calib, num=opts.quantize.subset_size)
    src = convert_source(options.checkpoint, options.onnx, opts.block_layout, work_dir=stage.dir, labels=opts.labels,
                         trust_foreign=opts.trust_foreign)
    log.info("source: %s (%s blocks)", src.description, src.block_layout or "unknown")
    val = load_validation(opts.val_data, limit=opts.val_limit) if opts.val_data is not None else None
    images, labels, data_desc = _gate_data(options, calib_images, val)
    if src.untrained:
        log.info("untrained default model: near-tied logits make the agreement figures meaningless")

    # FP32: checked numerically against the ONNX it was converted from
    assert src.onnx_path is not None
    source_onnx = src.onnx_path
    fp32_meta = _metadata(src, "fp32", inference_precision="f32")
    fp32_names = _save_ir(src.model, stage, opts.name, fp32_meta)
    source_desc = (f"source ONNX {source_onnx.name}" if options.onnx is not None
                   else "the checkpoint's ONNX export") + " (ONNX Runtime CPU)"

    def check_fp32(path: Path) -> GateResult:
        # verify=False: a given --onnx was verified when it was loaded; the checkpoint's export is staged (no hashes yet)
        with Runtime(source_onnx, backend="onnxruntime", providers=["CPUExecutionProvider"], verify=False) as onnx_rt:
            return gate_artifact(path, onnx_rt.run, images, labels, opts.fidelity, reference_desc=source_desc,
                                 data_desc=data_desc, runtime_options={**runtime_options, "precision": "f32"},
                                 atol=opts.ir_atol)

    yield Candidate(fp32_names, fp32_meta, check_fp32, embed=embed_ir,
                    summary=_summary(stage, fp32_names, "fp32", "f32"))
    others = [p for p in opts.precisions if p != "fp32"]
    if not others or fp32_meta.fidelity is None or not fp32_meta.fidelity.passed:
        return  # a failed FP32 IR: everything else is gated against it; stop here
    fp32_xml = stage.file(fp32_names[-1])  # the staged FP32 IR (our own, just gated)
    with Runtime(fp32_xml, threads=opts.threads, precision="f32", verify=False) as reference:
        for precision in others:
            name = _stem(opts, precision)
            if precision == "fp16":
                inference = "f32"
                meta = _metadata(src, "fp16", inference_precision=inference, extra={"weights": "fp16"})
                names = _save_ir(src.model, stage, name, meta, compress_to_fp16=True)
            else:
                assert calib_images is not None
                log.info("INT8 calibration on %s", calib_desc)
                quantized = quantize_int8(
                    src.model, calib_images, opts.quantize,
                    val=val if opts.accuracy_control else None,
                    max_drop_pp=opts.fidelity.max_drop_pp if opts.accuracy_control else None,
                )
                inference = opts.int8_inference_precision
                meta = _metadata(src, "int8", inference_precision=inference, quantization=Quantization(
                    "nncf", {**opts.quantize.to_dict(), "accuracy_control": opts.accuracy_control},
                    {"description": calib_desc, "images": int(min(opts.quantize.subset_size, len(calib_images))),
                     "source": str(options.calib) if isinstance(options.calib, (str, os.PathLike)) else "array"},
                    stn_in_float=True,
                ))
                names = _save_ir(quantized, stage, name, meta)

            def check(path: Path, inference: str = inference) -> GateResult:
                return gate_artifact(
                    path, reference.run, images, labels, opts.fidelity,
                    reference_desc=f"FP32 IR {fp32_xml.name} (OpenVINO CPU f32)", data_desc=data_desc,
                    runtime_options={**runtime_options, "precision": inference},
                )

            yield Candidate(names, meta, check, embed=embed_ir, summary=_summary(stage, names, precision, inference))


# --------------------------------------------------------------------------- CLI


def _labels(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated class names, got {text!r}")
    return names


class IRTarget(Target):
    name = "openvino"
    prog = "python -m export.openvino"
    description = "Export EmoNeXt to OpenVINO IR: FP32 always, FP16-compressed and NNCF INT8 on request, each gated."
    uses_calibration = True
    #: every IR is committed after the last one is gated: Ctrl-C during INT8 quantization commits nothing
    commit_together = True

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        src = p.add_mutually_exclusive_group()
        src.add_argument("--checkpoint", help="EmoNeXt checkpoint (.pt); default: seeded untrained EmoNeXt-Tiny")
        src.add_argument("--onnx", help="an ONNX exported by python -m export.onnx (its sidecar records its SHA-256)")
        p.add_argument("--labels", type=_labels, default=None,
                       help="with --onnx: comma-separated class names in output order (accepts a model without EmoNeXt metadata)")
        p.add_argument("--trust-foreign", action="store_true",
                       help="with --onnx: convert a model that is not a verified EmoNeXt export")
        p.add_argument("--output", default="exports/ir",
                       help="output directory, created if missing (default: exports/ir, apart from the ONNX export's exports/emonext.json)")
        p.add_argument("--name", default=DEFAULT_NAME, help=f"artifact base name (default: {DEFAULT_NAME})")
        p.add_argument("--fp16", action="store_true", help="also write <name>_fp16.xml (FP16-compressed weights)")
        p.add_argument("--int8", action="store_true", help="also write <name>_int8.xml (NNCF post-training INT8)")
        p.add_argument("--subset-size", type=int, default=QuantizeOptions.subset_size,
                       help=f"calibration images used (default: {QuantizeOptions.subset_size})")
        p.add_argument("--preset", choices=("performance", "mixed"), default=QuantizeOptions.preset,
                       help="NNCF quantization preset: performance (symmetric) or mixed (asymmetric activations); "
                            f"default {QuantizeOptions.preset}")
        p.add_argument(
            "--smooth-quant", type=float, default=QuantizeOptions.smooth_quant_alpha, metavar="ALPHA",
            help="SmoothQuant alpha (default -1: off; 0.95: more faithful, also scales STN inputs in float; "
                 "~15%% slower on channels_last graphs, free on channels_first)",
        )
        p.add_argument("--accuracy-control", action="store_true",
                       help="nncf.quantize_with_accuracy_control on the labelled --fidelity-data within --max-drop")
        p.add_argument(
            "--val-limit", type=int, default=None,
            help="with --accuracy-control: validation images used (default: the whole val split)",
        )
        p.add_argument(
            "--block-layout", choices=("channels_first", "channels_last"), default=DEFAULT_BLOCK_LAYOUT,
            help="with --checkpoint: blocks as 1x1 convs without permutes (default, faster on OpenVINO) or official",
        )
        p.add_argument("--threads", type=int, default=None, help="OpenVINO CPU threads for verification")
        p.add_argument("--atol", type=float, default=DEFAULT_IR_ATOL,
                       help=f"max |Δlogit| of the FP32 IR against its source ONNX (default {DEFAULT_IR_ATOL:g})")

    def options(self, args: argparse.Namespace) -> IRTargetOptions:
        check_args(args, atol=non_negative_float, threads=thread_count, subset_size=positive_int, calib=data_path,
                   fidelity_data=data_path, checkpoint=data_path, onnx=data_path,
                   val_limit=positive_int)  # before any work
        if not args.name or args.name != os.path.basename(args.name) or args.name in (".", ".."):
            raise UsageError(f"--name {args.name or repr('')}: expected a plain file name (no folder), e.g. emonext")
        if args.smooth_quant != QuantizeOptions.smooth_quant_alpha:
            if not args.int8:
                raise UsageError("--smooth-quant only makes sense with --int8")
            if not (args.smooth_quant == -1 or 0 <= args.smooth_quant <= 1):  # nan fails both
                raise UsageError(f"--smooth-quant {args.smooth_quant}: expected -1 (off) or an alpha in 0..1")
        if args.int8 and not args.verbose:
            import nncf

            nncf.set_log_level(logging.WARNING)  # its per-node INFO lines ("Not adding ...") drown the output
        if args.subset_size <= 0:
            raise UsageError(f"--subset-size must be positive, got {args.subset_size}")
        if args.calib and not args.int8:
            raise UsageError("--calib/--calib-data only make sense with --int8")
        if args.accuracy_control and not args.int8:
            raise UsageError("--accuracy-control needs --int8")
        if args.accuracy_control and args.fidelity_data is None:
            raise UsageError("--accuracy-control needs labelled validation data (--fidelity-data, its val split)")
        if (args.labels or args.trust_foreign) and not args.onnx:
            raise UsageError("--labels/--trust-foreign apply to an --onnx source only")
        calib: Any = args.calib
        if args.checkpoint is None and args.onnx is None:
            print("no --checkpoint/--onnx given: exporting the default model (EmoNeXt-Tiny, seeded random weights, untrained)")
            if args.int8 and calib is None:
                print("no calibration data given: INT8 calibrates on deterministic synthetic faces")
                from emonext_edge.preprocess import preprocess

                calib = preprocess(list(synthetic_faces(min(args.subset_size, 64))))
        elif args.int8 and calib is None:
            raise UsageError("--int8 needs calibration data: give --calib calib.npz or a dataset root")
        precisions = ("fp32",) + (("fp16",) if args.fp16 else ()) + (("int8",) if args.int8 else ())
        return IRTargetOptions(Path(args.output), args.checkpoint, args.onnx, calib, IRExportOptions(
            precisions=precisions, name=args.name,
            quantize=QuantizeOptions(preset=args.preset, subset_size=args.subset_size,
                                     smooth_quant_alpha=args.smooth_quant),
            fidelity=gate_from_args(args), val_data=args.fidelity_data if args.accuracy_control else None,
            val_limit=args.val_limit, accuracy_control=args.accuracy_control, threads=args.threads,
            block_layout=args.block_layout, labels=args.labels, trust_foreign=args.trust_foreign, ir_atol=args.atol,
        ))

    def output_dir(self, options: IRTargetOptions) -> Path:
        return Path(options.output)

    def build(self, options: IRTargetOptions, stage: Stage) -> Iterator[Candidate]:
        return build_irs(options, stage)


TARGET = IRTarget()
main = cli(TARGET)


def build_parser() -> argparse.ArgumentParser:
    return driver_parser(TARGET)


if __name__ == "__main__":
    raise SystemExit(main(None))
