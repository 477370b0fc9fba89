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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from emonext_edge.argtypes import check_args, data_path, non_negative_float, positive_int, thread_count
from emonext_edge.metadata import (
    ArtifactMetadata,
    Quantization,
    set_ov_model_metadata,
    sidecar_path,
)
from emonext_edge.preprocess import spec_of
from export.fidelity import FidelityOptions, gate_from_args

from .common import UsageError, refuse_foreign_sidecar, synthetic_faces
from .driver import build_parser as driver_parser
from .driver import cli
from .nncf_quantize import (  # noqa: F401 - re-exported: the 0.2 import paths keep working
    QuantizeOptions,
    _check_batch,
    fake_quantize_feeding,
    load_calibration_images,
    load_validation,
    quantize_int8,
)
from .openvino_convert import (  # noqa: F401 - re-exported
    DEFAULT_BLOCK_LAYOUT,
    ConvertedSource,
    convert_source,
    require_openvino,
)
from .pipeline import CommitResult, Stage, embed_ir, gate_artifact, gate_line, raise_if_failed
from .stn_scope import ov_stn_node_names as stn_node_names  # noqa: F401 - re-exported
from .targets import ExportResult, Target

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


_require_openvino = require_openvino


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


def _save_ir(model: Any, stage: Stage, name: str, meta: ArtifactMetadata, compress_to_fp16: bool = False) -> list[str]:
    """``ov.save_model`` into the stage (with the record so far in rt_info); returns the commit
    order (weights first, XML last). :func:`export.pipeline.embed_ir` finalises the record."""
    ov = require_openvino()
    model = model.clone()
    set_ov_model_metadata(model, meta)
    ov.save_model(model, str(stage.file(f"{name}.xml")), compress_to_fp16=compress_to_fp16)
    return [f"{name}.bin", f"{name}.xml"]


def _refuse_shared_sidecar(output_dir: Path, opts: IRExportOptions) -> None:
    """An IR's sidecar is ``<name>.json``, the file an ONNX or engine of that name keeps beside it: refused."""
    for precision in opts.precisions:
        stem = opts.name if precision == "fp32" else f"{opts.name}_{precision}"
        refuse_foreign_sidecar(output_dir / f"{stem}.xml", f"--output {output_dir}",
                               advice=f"give another --output or --name (e.g. --name {opts.name}_ir)")


def export_ir(
    checkpoint: Optional[str | os.PathLike] = None,
    output_dir: str | os.PathLike = "exports/ir",
    options: Optional[IRExportOptions | QuantizeOptions] = None,
    *,
    onnx: Optional[str | os.PathLike] = None,
    calib: Any = None,
    verify_images: Optional[np.ndarray] = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Export ``<name>.xml`` (FP32) and on request ``<name>_fp16.xml``, ``<name>_int8.xml`` to ``output_dir``.

    ``options``: an :class:`IRExportOptions` (a bare :class:`QuantizeOptions` is accepted as in
    0.2). Keyword ``overrides`` set its fields; the 0.2 names ``min_agreement``, ``max_drop_pp``
    and ``keep_failed`` set the fidelity options. ``calib``: calibration array, calib.npz or
    data path (INT8). ``verify_images``: gate on these float32 images instead of loading data.

    Returns a report: per precision the path, size, gate line and figures, ``passed``. A failing
    IR is not written (``VerificationError`` at the end, after the passing ones are committed)
    unless ``keep_failed``: then it is written marked unverified and ``report["passed"]`` is False.
    """
    if isinstance(options, QuantizeOptions):
        options = IRExportOptions(quantize=options)
    opts = options or IRExportOptions()
    gate_changes: dict[str, Any] = {k: overrides.pop(k) for k in ("min_agreement", "keep_failed") if k in overrides}
    if "max_drop_pp" in overrides:
        gate_changes["max_drop_pp"] = overrides.pop("max_drop_pp")
    if "precisions" in overrides:
        p = overrides.pop("precisions")
        overrides["precisions"] = (p,) if isinstance(p, str) else tuple(p)
    unknown = sorted(set(overrides) - {f for f in IRExportOptions.__dataclass_fields__})
    if unknown:
        raise TypeError(f"export_ir() got unexpected keyword argument(s) {unknown}")
    fidelity = overrides.pop("fidelity", opts.fidelity)
    opts = replace(opts, **overrides, fidelity=replace(fidelity, **gate_changes))
    bad = [p for p in opts.precisions if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown precision(s) {bad}; expected some of {list(PRECISIONS)}")
    _refuse_shared_sidecar(Path(output_dir), opts)
    if opts.accuracy_control and opts.val_data is None:
        raise UsageError("accuracy-controlled quantization needs labelled validation data (--fidelity-data)")
    runtime_options: dict[str, Any] = {"backend": "openvino"}
    if opts.threads:
        runtime_options["threads"] = int(opts.threads)

    with Stage(output_dir) as stage:  # creates/checks the directory before any heavy work
        calib_images = calib_desc = None
        if "int8" in opts.precisions:  # validate data before any long work
            calib_images, calib_desc = load_calibration_images(calib, num=opts.quantize.subset_size)
        src = convert_source(checkpoint, onnx, opts.block_layout, work_dir=stage.dir, labels=opts.labels,
                             trust_foreign=opts.trust_foreign)
        log.info("source: %s (%s blocks)", src.description, src.block_layout or "unknown")
        val = load_validation(opts.val_data, limit=opts.val_limit) if opts.val_data is not None else None
        labels = None
        if verify_images is not None:
            images, data_desc = _check_batch(np.asarray(verify_images), "verify_images"), f"{len(verify_images)} given images"
        elif opts.fidelity.data is not None:
            images, labels, data_desc = opts.fidelity.load_images()
        elif val is not None:
            images, labels = val
            data_desc = f"{len(images)} labelled images from {opts.val_data} (val split)"
        elif calib_images is not None:
            images = calib_images[: min(64, len(calib_images))]
            data_desc = f"{len(images)} calibration images (not held out; pass --fidelity-data for a labelled check)"
        else:
            images, labels, data_desc = opts.fidelity.load_images()

        def metadata(precision: str, **extra: Any) -> ArtifactMetadata:
            return ArtifactMetadata(
                format="openvino-ir", precision=precision, labels=list(src.labels), architecture=dict(src.architecture),
                source=dict(src.source), block_layout=src.block_layout, stn_mode=src.stn_mode, batch="dynamic",
                input_shape=["batch", *spec_of(src).input_shape], preprocessing=spec_of(src).to_dict(), **extra,
            )

        report: dict[str, Any] = {
            "source": src.description, "block_layout": src.block_layout, "artifacts": {}, "passed": True,
            "verified_on": data_desc,
        }
        results = []
        pending: list[tuple[str, list[str], ArtifactMetadata, Any, dict[str, Any]]] = []

        def finish(precision: str, names: list[str], meta: ArtifactMetadata, gate: Any, entry: dict[str, Any]) -> None:
            pending.append((precision, names, meta, gate, entry))  # committed together at the end: an interrupt
            # (Ctrl-C during INT8 quantization) or a crash before then leaves nothing at the final names

        def commit_all() -> None:
            while pending:
                _commit(*pending.pop(0))

        def _commit(precision: str, names: list[str], meta: ArtifactMetadata, gate: Any, entry: dict[str, Any]) -> None:
            meta.fidelity = gate
            result = stage.commit(names, meta, embed=embed_ir, keep_failed=opts.fidelity.keep_failed)
            results.append(result)
            f = gate.figures
            entry.update(
                path=str(result.path), bytes=(result.paths[0].stat().st_size if result.committed else None),
                gate=gate_line(gate), agreement=f.get("agreement"), accuracy_reference=f.get("accuracy_reference"),
                accuracy_candidate=f.get("accuracy_candidate"), drop_pp=f.get("drop_pp"), passed=gate.passed,
                verified_on=len(images), committed=result.committed, metadata=meta,
            )
            if not gate.passed:
                report["passed"] = False
                entry["removed"] = not result.committed
                if src.untrained:
                    entry["note"] = "untrained default model: near-tied logits make agreement meaningless"
            report["artifacts"][precision] = entry

        # FP32: checked numerically against the ONNX it was converted from
        assert src.onnx_path is not None
        fp32_meta = metadata("fp32", inference_precision="f32")
        fp32_names = _save_ir(src.model, stage, opts.name, fp32_meta)
        from emonext_edge.runtime import Runtime

        with Runtime(src.onnx_path, backend="onnxruntime", providers=["CPUExecutionProvider"]) as onnx_rt:
            fp32_gate = gate_artifact(
                stage.file(fp32_names[-1]), onnx_rt.run, images, labels, opts.fidelity,
                reference_desc=(f"source ONNX {src.onnx_path.name}" if onnx is not None else "the checkpoint's ONNX export")
                + " (ONNX Runtime CPU)", data_desc=data_desc,
                runtime_options={**runtime_options, "precision": "f32"}, atol=opts.ir_atol,
            )
        finish("fp32", fp32_names, fp32_meta, fp32_gate, {"inference_precision": "f32"})
        if not fp32_gate.passed:
            commit_all()  # --keep-failed keeps it, marked unverified
            raise_if_failed(results)  # everything else is gated against the FP32 IR: stop here
        fp32_xml = str(stage.file(fp32_names[-1]))  # the staged FP32 IR (our own, just gated)

        with Runtime(fp32_xml, threads=opts.threads, precision="f32", verify=False) as reference:
            for precision in opts.precisions:
                if precision == "fp32":
                    continue
                name = f"{opts.name}_{precision}"
                if precision == "fp16":
                    meta = metadata("fp16", inference_precision="f32", extra={"weights": "fp16"})
                    names = _save_ir(src.model, stage, name, meta, compress_to_fp16=True)
                    inference = "f32"
                else:
                    assert calib_images is not None
                    log.info("INT8 calibration on %s", calib_desc)
                    quantized = quantize_int8(
                        src.model, calib_images, opts.quantize,
                        val=val if opts.accuracy_control else None,
                        max_drop_pp=opts.fidelity.max_drop_pp if opts.accuracy_control else None,
                    )
                    inference = opts.int8_inference_precision
                    meta = metadata("int8", inference_precision=inference, quantization=Quantization(
                        "nncf", {**opts.quantize.to_dict(), "accuracy_control": opts.accuracy_control},
                        {"description": calib_desc, "images": int(min(opts.quantize.subset_size, len(calib_images))),
                         "source": str(calib) if isinstance(calib, (str, os.PathLike)) else "array"},
                        stn_in_float=True,
                    ))
                    names = _save_ir(quantized, stage, name, meta)
                gate = gate_artifact(
                    stage.file(names[-1]), reference.run, images, labels, opts.fidelity,
                    reference_desc=f"FP32 IR {os.path.basename(fp32_xml)} (OpenVINO CPU f32)", data_desc=data_desc,
                    runtime_options={**runtime_options, "precision": inference},
                )
                finish(precision, names, meta, gate, {"inference_precision": inference,
                                                      **({"options": opts.quantize.to_dict()} if precision == "int8" else {})})
        commit_all()
    if not all(r.committed for r in results):
        raise_if_failed(results)
    return report


# --------------------------------------------------------------------------- CLI


def _labels(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated class names, got {text!r}")
    return names


@dataclass(frozen=True)
class IRTargetOptions:
    """The ``openvino`` target's options: the source (``checkpoint`` or ``onnx``; neither: the seeded
    untrained default model), the output directory, calibration data and the :class:`IRExportOptions`."""

    output: Path
    checkpoint: Optional[str] = None
    onnx: Optional[str] = None
    calib: Any = None  # calib.npz / dataset root / a float32 array (the untrained model's synthetic faces)
    export: IRExportOptions = field(default_factory=IRExportOptions)


class IRTarget(Target):
    name = "openvino"
    prog = "python -m export.openvino"
    description = "Export EmoNeXt to OpenVINO IR: FP32 always, FP16-compressed and NNCF INT8 on request, each gated."
    uses_calibration = True

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

    def export(self, options: IRTargetOptions) -> ExportResult:
        report = export_ir(options.checkpoint, options.output, options.export, onnx=options.onnx, calib=options.calib)
        result = ExportResult(self.name, detail=report)
        for precision, entry in report["artifacts"].items():
            xml = Path(entry["path"])
            result.artifacts.append(CommitResult([xml.with_suffix(".bin"), xml],
                                                 sidecar_path(xml) if entry.get("committed") else None,
                                                 entry["metadata"], bool(entry.get("committed"))))
            size = f" ({entry['bytes'] / 1e6:.1f} MB)" if entry.get("bytes") else ""
            state = "wrote" if entry.get("committed") else "NOT written"
            if entry.get("committed") and not entry["passed"]:
                state = "wrote (UNVERIFIED, --keep-failed)"
            result.lines.append(f"{precision}: {state} {entry['path']}{size}; {entry['gate']}")
        return result


TARGET = IRTarget()
main = cli(TARGET)


def build_parser() -> argparse.ArgumentParser:
    return driver_parser(TARGET)


if __name__ == "__main__":
    raise SystemExit(main(None))
