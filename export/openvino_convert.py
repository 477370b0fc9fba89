"""Source -> FP32 ``ov.Model``: a checkpoint (through ``export.onnx``) or a verified EmoNeXt ONNX.

Going through ONNX (instead of converting the torch module directly) gives one conversion
path for ``--checkpoint`` and ``--onnx``, the same graph and node names the ONNX Runtime
artifact has, and the ONNX exporter's gate against PyTorch. From a checkpoint the ONNX graph
is exported with ``channels_first`` blocks (measured faster on OpenVINO CPU: FP32 IR
28.3 -> 24.0 ms, INT8 15.5 -> 11.8 ms, EmoNeXt-Tiny batch 1, 2 threads), into the export's
temporary folder inside the output directory (never the system temp directory).

An ``--onnx`` source is converted only when it is an EmoNeXt export whose sidecar records
the file's SHA-256 (``artifact_sha256``) and the file still has it. Anything else — a
foreign model, a 0.2 export without hashes, a file changed since export — is refused
unless the caller names its labels (``labels=``, ``--labels``) or says ``trust_foreign``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from emonext_edge.errors import BackendUnavailableError, ExportError, ModelFileError, UsageError
from emonext_edge.fileio import sha256_file
from emonext_edge.metadata import read_metadata
from emonext_edge.preprocess import spec_of

log = logging.getLogger(__name__)

#: block layout of the ONNX graph exported from a checkpoint (measured fastest on OpenVINO CPU)
DEFAULT_BLOCK_LAYOUT = "channels_first"


def require_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError(f"OpenVINO is not installed ({exc}); pip install openvino") from None
    return ov


@dataclass
class ConvertedSource:
    model: Any  # ov.Model, FP32
    labels: list[str]
    architecture: dict[str, Any]
    source: dict[str, Any]
    description: str
    untrained: bool = False
    block_layout: Optional[str] = None  # None: an ONNX file that does not say which
    onnx_path: Optional[Path] = None  # the ONNX the IR was converted from (its numeric reference)
    stn_mode: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)  # the spec the source records ({}: the trained one)


def _onnx_io(path: Path) -> tuple[list[Any], list[Any]]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - DecodeError and friends
        raise ModelFileError(f"--onnx {path}: not a readable ONNX model ({exc})") from None

    def dims(vi: Any) -> list[Any]:
        return [d.dim_value or d.dim_param or None for d in vi.type.tensor_type.shape.dim]

    inits = {i.name for i in model.graph.initializer}
    return [dims(i) for i in model.graph.input if i.name not in inits], [dims(o) for o in model.graph.output]


def trusted_onnx(onnx: str | os.PathLike, labels: Optional[Sequence[str]] = None, trust_foreign: bool = False
                 ) -> tuple[Any, list[str], str]:
    """Decide whether ``onnx`` may be converted: (its metadata or None, labels, why it is trusted).

    ``UsageError`` when it is not an EmoNeXt export with a matching recorded SHA-256 and
    neither ``labels`` nor ``trust_foreign`` was given, or when its I/O is not EmoNeXt's.
    """
    path = Path(onnx)
    if not path.is_file():
        raise UsageError(f"--onnx {path}: no such ONNX file")
    inputs, outputs = _onnx_io(path)
    shape = list(spec_of(read_metadata(path), str(path)).input_shape)  # its recorded preprocessing spec
    if len(inputs) != 1 or len(inputs[0]) != 4 or inputs[0][1:] != shape:
        raise UsageError(f"--onnx {path}: input shapes {inputs}; expected one [N, {', '.join(map(str, shape))}] input "
                         "(EmoNeXt)")
    if len(outputs) != 1 or len(outputs[0]) != 2 or not isinstance(outputs[0][1], int):
        raise UsageError(f"--onnx {path}: output shapes {outputs}; expected one [N, num_classes] output")
    classes = outputs[0][1]
    meta = read_metadata(path)
    actual = sha256_file(path)
    recorded = meta.artifact_sha256.get(path.name) if meta is not None else None
    if meta is not None and recorded == actual:
        reason = "EmoNeXt metadata with a matching SHA-256"
    elif meta is None:
        reason = "it carries no EmoNeXt metadata (no sidecar, nothing embedded)"
    elif recorded is None:
        reason = f"its metadata records no SHA-256 of {path.name} (exported by emonext-edge {meta.package_version}?)"
    else:
        reason = f"its SHA-256 {actual[:12]}… differs from the one its metadata records ({recorded[:12]}…): changed since export"
    trusted = meta is not None and recorded == actual
    if labels:
        labels = [str(x).strip() for x in labels]
        if len(labels) != classes:
            raise UsageError(f"--labels: {len(labels)} names given but {path} outputs {classes} classes")
        return meta, labels, "labels given with --labels" + ("" if trusted else f" ({reason})")
    if trusted:
        assert meta is not None
        if len(meta.labels) != classes:
            raise UsageError(f"--onnx {path}: metadata lists {len(meta.labels)} labels but the model outputs {classes}")
        return meta, list(meta.labels), reason
    if not trust_foreign:
        raise UsageError(f"--onnx {path}: refused: {reason}. Export it with python -m export.onnx, or pass "
                         "--labels NAME,NAME,... (its classes in output order) or --trust-foreign")
    names = list(meta.labels) if meta is not None and len(meta.labels) == classes else [f"class_{i}" for i in range(classes)]
    log.warning("%s: converting an untrusted ONNX (--trust-foreign): %s; labels %s", path, reason, names)
    return meta, names, f"--trust-foreign ({reason})"


def convert_source(
    checkpoint: Optional[str | os.PathLike] = None,
    onnx: Optional[str | os.PathLike] = None,
    block_layout: str = DEFAULT_BLOCK_LAYOUT,
    *,
    work_dir: Optional[str | os.PathLike] = None,
    labels: Optional[Sequence[str]] = None,
    trust_foreign: bool = False,
) -> ConvertedSource:
    """The FP32 ``ov.Model`` of a checkpoint, a trusted ONNX file, or (neither) the seeded default model.

    ``work_dir``: where the ONNX of a checkpoint is written (the export's stage); required
    for checkpoints. ``block_layout`` applies to checkpoints only.
    """
    ov = require_openvino()
    if checkpoint is not None and onnx is not None:
        raise UsageError("give either a checkpoint or an ONNX model, not both")
    if onnx is not None:
        path = Path(onnx)
        meta, names, why = trusted_onnx(path, labels, trust_foreign)
        try:
            model = ov.convert_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses
            raise ExportError(f"--onnx {path}: OpenVINO could not convert this ONNX model ({exc})") from None
        source: dict[str, Any] = {"onnx": str(path), "onnx_sha256": sha256_file(path), "trusted": why}
        if meta is not None and meta.source:
            source["upstream"] = meta.source
        layout = meta.block_layout if meta is not None else None
        if meta is not None and layout is None:
            layout = "channels_last"  # sidecars before 0.2.0 had no key: official blocks
        if layout == "channels_last":
            log.info("%s has the official channels_last blocks; exporting from the checkpoint gives channels_first "
                     "blocks, which OpenVINO runs faster", path)
        return ConvertedSource(
            model, names, dict(meta.architecture) if meta is not None else {}, source, f"ONNX model {path}",
            block_layout=layout, onnx_path=path, stn_mode=meta.stn_mode if meta is not None else None,
            preprocessing=dict(meta.preprocessing) if meta is not None else {},
        )
    if work_dir is None:
        raise ValueError("convert_source needs work_dir (the export's stage) to export a checkpoint to ONNX")
    from export.fidelity import FidelityOptions

    from .common import load_source
    from .onnx import OnnxExportOptions, export_onnx

    src = load_source(checkpoint)
    onnx_path = Path(work_dir) / "source.onnx"
    export_onnx(src.model, onnx_path, OnnxExportOptions(opset=17, stn="native", force=True, block_layout=block_layout,
                                                        fidelity=FidelityOptions(images=16)),
                source_info=src.info)
    model = ov.convert_model(str(onnx_path))
    return ConvertedSource(
        model,
        list(src.model.labels),
        src.model.architecture.to_dict(),
        dict(src.info),
        src.description,
        untrained=src.untrained,
        block_layout=block_layout,
        onnx_path=onnx_path,
        stn_mode="native",
        preprocessing=src.model.spec.to_dict(),
    )
