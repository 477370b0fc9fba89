"""ONNX export with a deployable Spatial Transformer Network: ``python -m export.onnx``.

    python -m export.onnx --checkpoint CKPT [--output emonext.onnx] [--opset N]
        [--stn native|decomposed] [--block-layout channels_last|channels_first]
        [--batch dynamic|N] [--verify-data DIR] [--force]

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

Every export is verified with ONNX Runtime (CPU) against PyTorch (native ``grid_sample``,
the official semantics) before it is written; out of tolerance -> ``ExportError`` and no
file is left behind.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emonext_edge.errors import ExportError
from emonext_edge.fileio import atomic_path, check_writable_dir, sha256_file
from emonext_edge.metadata import build_metadata, package_version, sidecar_path, to_string_map

from .common import UsageError, cli_entry, load_source, verification_batch

log = logging.getLogger(__name__)

STN_MODES = ("native", "decomposed")
DEFAULT_OPSET = {"native": 17, "decomposed": 13}
NATIVE_MIN_OPSET = 16  # GridSample appeared in opset 16
NATIVE_MAX_OPSET = 19  # opset 20 renamed GridSample's 'bilinear' to 'linear'
EXPORTER_MAX_OPSET = 20  # the highest opset torch's TorchScript exporter supports
DECOMPOSED_OPSET = 13  # the TorchScript exporter needs 13 for the grid; GridSample-free runtimes need <= 13
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
    path = Path(output)
    if path.suffix.lower() != ".onnx":
        raise UsageError(f"{path}: the output file must end in .onnx (the runtime picks the backend by suffix)")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give the .onnx file to write")
    check_writable_dir(path)
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


def _check_io(model: Any, batch: int | None, num_classes: int) -> None:
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"exported graph has inputs {inputs} / outputs {outputs}; expected [{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]"
        )
    first = batch if batch is not None else "batch"
    got_in, got_out = _dims(model.graph.input[0]), _dims(model.graph.output[0])
    if got_in != [first, 3, 224, 224] or got_out != [first, num_classes]:
        raise ExportError(
            f"exported graph has input shape {got_in} and output shape {got_out}; "
            f"expected {[first, 3, 224, 224]} and {[first, num_classes]}"
        )


def _torch_export(model: Any, opset: int) -> bytes:
    """Trace ``model`` to ONNX with a dynamic batch axis (a fixed batch is set later, by onnxslim).

    Tracing with a fixed batch makes the TorchScript exporter fold the STN's base grid into
    float64 constants, and ``GridSample`` has no float64 grid kernel in ONNX Runtime; the
    dynamic trace keeps it float32.
    """
    import torch

    example = torch.zeros(2, 3, 224, 224)
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


def _simplify_and_check(proto: bytes, *, stn: str, opset: int, batch: int | None, num_classes: int) -> Any:
    import onnx
    import onnxslim

    model = onnx.load_from_string(proto)
    audit_graph(model, stn=stn, opset=opset, where="raw torch export")
    try:
        shapes = {} if batch is None else {"input_shapes": [f"{INPUT_NAME}:{batch},3,224,224"]}
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
    _check_io(slim, batch, num_classes)
    return slim


def _reference_logits(model: Any, images: np.ndarray) -> np.ndarray:
    """PyTorch logits with the native grid_sample (the official semantics), whatever mode was exported."""
    import torch

    saved = model.stn_mode
    try:
        model.stn_mode = "native"
        with torch.no_grad():
            return model(torch.from_numpy(images)).numpy()
    finally:
        model.stn_mode = saved


def _onnxruntime_logits(model_bytes: bytes, images: np.ndarray, batch: int | None) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("verifying an export needs onnxruntime (pip install onnxruntime)") from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {exc}") from exc
    step = batch or len(images)
    outputs = []
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        real = len(chunk)
        if real < step:  # fixed batch: pad with the first image, drop the padding afterwards
            chunk = np.concatenate([chunk, np.repeat(images[:1], step - real, axis=0)])
        outputs.append(session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(chunk)})[0][:real])
    logits = np.concatenate(outputs)
    if batch is None and len(images) > 1:  # the dynamic axis must also run a single image
        single = session.run([OUTPUT_NAME], {INPUT_NAME: images[:1]})[0]
        logits = np.concatenate([logits, single])
    return logits


def verify(model: Any, model_bytes: bytes, images: np.ndarray, *, batch: int | None, atol: float) -> dict[str, Any]:
    """Compare ONNX Runtime with PyTorch on ``images``; raise ``ExportError`` when out of tolerance."""
    reference = _reference_logits(model, images)
    candidate = _onnxruntime_logits(model_bytes, images, batch)
    if batch is None and len(images) > 1:
        reference = np.concatenate([reference, reference[:1]])
    if candidate.shape != reference.shape:
        raise ExportError(f"ONNX Runtime returned logits {candidate.shape}, PyTorch {reference.shape}")
    if not np.isfinite(candidate).all():
        raise ExportError("ONNX Runtime returned non-finite logits on the verification images")
    max_abs_diff = float(np.abs(candidate - reference).max())
    agreement = float((candidate.argmax(1) == reference.argmax(1)).mean())
    figures = {"max_abs_diff": max_abs_diff, "argmax_agreement": agreement, "atol": atol}
    if not max_abs_diff <= atol or agreement < 1.0:
        raise ExportError(
            f"verification failed: max |Δlogits| {max_abs_diff:.3g} (tolerance {atol:g}), argmax agreement "
            f"{agreement:.1%} (need 100%) between ONNX Runtime and PyTorch; nothing was written"
        )
    return figures


def export_onnx(
    model: Any,
    output: str | os.PathLike,
    *,
    opset: int | None = None,
    stn: str = "native",
    batch: int | None = None,
    verify_data: str | os.PathLike | None = None,
    verify_count: int = 16,
    source_info: Mapping[str, Any] | None = None,
    force: bool = False,
    atol: float = 1e-4,
    block_layout: str = "channels_last",
) -> dict[str, Any]:
    """Export an ``EmoNeXt`` to ONNX, verify it with ONNX Runtime, write it and its JSON sidecar atomically.

    ``opset=None`` -> 17 for ``stn="native"``, 13 for ``"decomposed"``. ``batch=None`` -> dynamic
    batch axis; an int fixes it. ``source_info`` is ``export.common.load_source(...).info``.
    ``block_layout``: ``"channels_last"`` (official blocks) or ``"channels_first"`` (no permutes);
    either is verified against the official PyTorch forward.
    Returns a report dict (path, sidecar, figures, op counts). Raises ``UsageError`` for bad
    arguments and ``ExportError`` when the graph or its verification fails (nothing written).
    """
    started = time.perf_counter()
    opset = resolve_opset(stn, opset, force)
    batch = _check_batch(batch)
    from emonext_edge.model import BLOCK_LAYOUTS

    if block_layout not in BLOCK_LAYOUTS:
        raise UsageError(f"block_layout must be one of {list(BLOCK_LAYOUTS)}, got {block_layout!r}")
    if isinstance(verify_count, bool) or not isinstance(verify_count, (int, np.integer)) or verify_count < 1:
        raise UsageError(f"verify_count must be a positive integer, got {verify_count!r}")
    path = _check_output(output)
    sidecar = sidecar_path(path)
    images, description = verification_batch(verify_data, int(verify_count))

    saved_mode, saved_layout, was_training = model.stn_mode, model.block_layout, model.training
    try:
        model.eval()
        model.stn_mode, model.block_layout = stn, block_layout
        raw = _torch_export(model, opset)
    finally:
        model.stn_mode, model.block_layout = saved_mode, saved_layout
        model.train(was_training)
    num_classes = model.architecture.num_classes
    graph = _simplify_and_check(raw, stn=stn, opset=opset, batch=batch, num_classes=num_classes)
    counts = op_counts(graph)
    try:
        model.eval()
        figures = verify(model, graph.SerializeToString(), images, batch=batch, atol=atol)
    finally:
        model.train(was_training)
    log.info(
        "verified %s on %s: max |Δlogits| %.3g (tolerance %g), argmax agreement %.1f%%",
        path.name,
        description,
        figures["max_abs_diff"],
        atol,
        100 * figures["argmax_agreement"],
    )

    architecture = dict(model.architecture.to_dict(), name=model.architecture.name)
    meta = build_metadata(
        labels=model.labels,
        architecture=architecture,
        source=dict(source_info or {}),
        format="onnx",
        stn_mode=stn,
        block_layout=block_layout,
        opset=opset,
        batch="dynamic" if batch is None else batch,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=["batch" if batch is None else batch, 3, 224, 224],
        precision="fp32",
        verification={
            "images": description,
            "reference": f"PyTorch (native grid_sample, {saved_layout} blocks), CPU",
            "runtime": "ONNX Runtime CPUExecutionProvider",
            **figures,
        },
    )
    del graph.metadata_props[:]
    for key, value in to_string_map(meta).items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "emonext-edge"
    graph.producer_version = package_version()
    graph.doc_string = f"EmoNeXt ({architecture['name']}) emotion classifier, STN {stn}, opset {opset}"

    payload = graph.SerializeToString()
    with atomic_path(path) as tmp, atomic_path(sidecar) as tmp_sidecar:
        tmp.write_bytes(payload)
        tmp_sidecar.write_text(json.dumps(meta, indent=2) + "\n")
    report = {
        "path": str(path),
        "sidecar": str(sidecar),
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "stn_mode": stn,
        "block_layout": block_layout,
        "opset": opset,
        "batch": "dynamic" if batch is None else batch,
        "verification": description,
        **figures,
        "num_nodes": sum(counts.values()),
        "op_counts": counts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info("wrote %s (%d nodes, %.1f MB) and %s", path, report["num_nodes"], report["size_bytes"] / 1e6, sidecar)
    return report


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one-line error, exit code 2 via cli_entry
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from emonext_edge.model import BLOCK_LAYOUTS

    p = _Parser(
        prog="python -m export.onnx",
        description="Export EmoNeXt to ONNX with a deployable STN, verified with ONNX Runtime.",
    )
    p.add_argument(
        "--checkpoint", help="EmoNeXt checkpoint (.pt/.pth/.safetensors); default: seeded untrained EmoNeXt-Tiny"
    )
    p.add_argument("--output", default="emonext.onnx", help="output .onnx file (sidecar <stem>.json beside it)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (native: 16-19, default 17; decomposed: 13)")
    p.add_argument(
        "--stn", choices=STN_MODES, default="native", help="STN sampler: one GridSample node, or opset-13 Gather ops"
    )
    p.add_argument(
        "--block-layout",
        choices=BLOCK_LAYOUTS,
        default="channels_last",
        help="ConvNeXt blocks as official (permute + Linear) or as 1x1 convs without permutes (faster on OpenVINO)",
    )
    p.add_argument("--batch", type=_parse_batch, default=None, help="'dynamic' (default) or a fixed batch size")
    p.add_argument(
        "--verify-data", help="FER2013-layout folder or any folder of face images (default: synthetic images)"
    )
    p.add_argument("--verify-count", type=int, default=16, help="number of verification images (default 16)")
    p.add_argument(
        "--force", action="store_true", help="allow native exports at opset 20 despite the GridSample mode rename"
    )
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resolve_opset(args.stn, args.opset, args.force)  # fail fast, before loading anything
    _check_output(args.output)
    if args.checkpoint is None:
        source = load_source(None)
        print(f"note: no --checkpoint given; exporting the {source.description}")
    else:
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"{args.checkpoint}: checkpoint not found")
        source = load_source(args.checkpoint)
        print(f"source: {source.description}")
    report = export_onnx(
        source.model,
        args.output,
        opset=args.opset,
        stn=args.stn,
        batch=args.batch,
        verify_data=args.verify_data,
        verify_count=args.verify_count,
        source_info=source.info,
        force=args.force,
        block_layout=args.block_layout,
    )
    print(f"verification: {report['verification']}")
    print(f"  max |Δlogits| ONNX Runtime vs PyTorch: {report['max_abs_diff']:.3g} (tolerance {report['atol']:g})")
    print(f"  argmax agreement: {report['argmax_agreement']:.1%}")
    print(
        f"wrote {report['path']} (STN {report['stn_mode']}, {report['block_layout']} blocks, opset {report['opset']}, batch {report['batch']}, "
        f"{report['num_nodes']} nodes) and {report['sidecar']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(None))
