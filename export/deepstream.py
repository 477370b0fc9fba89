"""EmoNeXt as a DeepStream secondary classifier (SGIE): ``python -m export.deepstream``.

    python -m export.deepstream (--onnx M | --checkpoint C) --output DIR [--gray] [--batch N]
        [--precision fp32|fp16|int8] [--calib calib.npz] [--gie-id 2] [--operate-on-gie-id 1]
        [--operate-on-class-ids 0] [--reinfer-interval 15] [--threshold 0.0] [--gpu-id 0]
        [--fidelity-data DIR] [--fidelity-images N] [--min-agreement F] [--max-drop PP] [--keep-failed]

Writes into DIR:

* ``emonext_sgie.onnx``: the model as ``nvinfer`` must see it. nvinfer's built-in classifier
  parser takes each output as *probabilities* and keeps the largest above
  ``classifier-threshold``, so the graph ends in ``Softmax`` (output ``probs``). nvinfer only
  computes ``net-scale-factor * (x - offsets)``, so the gray conversion EmoNeXt was trained
  with happens inside the graph: the default input is RGB (``model-color-format=0``) turned
  into PIL's ITU-R 601-2 luma (weights 19595/38470/7471 / 65536, as ``emonext_edge.preprocess``)
  computed as ``G + wR (R - G) + wB (B - G)`` (exactly G on gray frames), repeated to 3 channels; with ``--gray`` the input has 1 channel
  (``model-color-format=2``) and is repeated to 3 channels in the graph.
  Gated by the shared fidelity gate (:func:`gate_variant`: ``export.fidelity.fidelity_gate`` with
  ``--min-agreement/--max-drop`` on the ``--fidelity-data`` val split or the synthetic set, the faces
  fed as nvinfer feeds them, scale/offsets from the written config; FP32 graphs also within 1e-5 in
  probability, the RGB variant also on colour images) before anything is committed; otherwise exit 1.
* ``config_infer_secondary_emonext.txt``: the nvinfer SGIE config (keys checked against the
  keys DeepStream 6.2's parser accepts, ``export/deepstream_keys.json``).
* ``labels_emonext.txt``: one line, labels separated by ``;`` (nvinfer's classifier format).
* ``deepstream_app_emonext.txt``: a deepstream-app config (source, primary face detector you
  fill in, nvtracker, this SGIE, OSD, sink).
* ``config_preprocess_emonext.txt``: an optional ``nvdspreprocess`` config for the same input.
* ``emonext_sgie.json``: the sidecar (``ArtifactMetadata``: labels, source, the verification as
  ``fidelity``, ``artifact_sha256`` of every file above, the DeepStream notes under ``deepstream``).
  Files are built in a stage inside DIR and committed only after the check (``export/pipeline.py``).

INT8: nvinfer builds INT8 from a Q/DQ ONNX (made here from ``--calib`` with
``export/quantize_onnx.py``, or given with ``--onnx`` as made by ``python -m export.tensorrt
--int8``). DeepStream 6.2 only sets TensorRT's INT8 flag when ``int8-calib-file`` names an
existing file, otherwise it falls back to FP16 with a warning (a Q/DQ network needs that flag,
NVIDIA/TensorRT#4021); for a Q/DQ network TensorRT does not use the calibrator ("Calibrator
won't be used in explicit precision mode", NVIDIA/TensorRT#1837), so an empty placeholder file
is written and named there.

The engine itself is built by nvinfer on the device at first start and saved as
``<onnx-file>_b<batch>_gpu<id>_<mode>.engine`` (``nvdsinfer_model_builder.cpp``); the config's
``model-engine-file`` names exactly that file so later starts reuse it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from emonext_edge.argtypes import check_args, data_path, finite_float, non_negative_int, positive_int
from emonext_edge.deepstream_boxes import DEFAULT_STRATEGY, LIMITED_RANGE, NVINFER_MIN_OBJECT_SIZE, nvinfer_scale_offset
from emonext_edge.errors import ExportError, ModelFileError
from emonext_edge.fileio import sha256_file
from emonext_edge.metadata import ArtifactMetadata, GateResult, labels_for, read_onnx_metadata
from emonext_edge.opencv import import_cv2
from emonext_edge.preprocess import SPEC, PreprocessSpec, luma_fixed_point, spec_of
from emonext_edge.tensorrt_compat import ApiPlan, parse_version, plan_for
from export.fidelity import FidelityOptions, fidelity_gate, gate_from_args

from . import trt_opcheck
from .common import UsageError, load_source, synthetic_faces, verify_source
from .driver import build_parser as driver_parser
from .driver import cli, run_build
from .pipeline import Stage, embed_onnx, gate_line, interruptible
from .targets import Candidate, ExportResult
from .targets import Target as ExportTarget
from .trt_pinning import fp32_layer_names

log = logging.getLogger(__name__)

KEYS_FILE = Path(__file__).with_name("deepstream_keys.json")
MODEL_NAME = "emonext_sgie.onnx"
SGIE_CONFIG = "config_infer_secondary_emonext.txt"
LABELS_FILE = "labels_emonext.txt"
APP_CONFIG = "deepstream_app_emonext.txt"
PREPROCESS_CONFIG = "config_preprocess_emonext.txt"
SAMPLE_APP = "deepstream_emonext.py"  # the faithful pipeline (box rewrite before the SGIE), copied from deepstream_sample/
SAMPLE_SOURCE = Path(__file__).with_name("deepstream_sample") / SAMPLE_APP
#: agreement with training preprocessing of what nvinfer feeds the SGIE (benchmarks/deepstream_preprocess.py,
#: docs/deepstream.md): raw detector boxes (deepstream-app) vs the centre-square rewrite (deepstream_emonext.py)
RAW_BOX_AGREEMENT = "68 % on realistic face boxes 1.0-1.3x taller than wide (86 % in a simulation on square boxes)"
REWRITE_AGREEMENT = "94-97 %"
INT8_PLACEHOLDER = "emonext_sgie_qdq.calib"
INPUT_NAME = "input"
OUTPUT_NAME = "probs"
# Everything below that describes the input derives from the preprocessing spec (emonext_edge.preprocess.SPEC
# here; an export uses the spec its source ONNX records): nvinfer's net-scale-factor/offsets
# (deepstream_boxes.nvinfer_scale_offset), the network size (the spec's crop) and the luma weights.
#: the trained spec's net-scale-factor: its scale, 1/255 (written exactly; nvinfer reads it as float32)
NET_SCALE_FACTOR = repr(nvinfer_scale_offset(SPEC, "full")[0])
#: 1/219: video-range luma (16..235) back to [0, 1] with offsets=16
LIMITED_RANGE_SCALE = repr(nvinfer_scale_offset(SPEC, "limited")[0])
#: PIL 'L' conversion weights in the graph (the fixed-point ones of emonext_edge.preprocess.to_gray), R, G, B
LUMA_WEIGHTS = tuple(w / 65536 for w in luma_fixed_point(SPEC.luma_weights))
#: the definition the verification uses instead (the spec's ITU-R 601-2 weights as written), kept apart
#: from LUMA_WEIGHTS so a wrong weight or channel order in the graph cannot also be in the reference
ITU_R_601_2 = SPEC.luma_weights
PRECISIONS = {"fp32": 0, "int8": 1, "fp16": 2}  # network-mode values (nvdsinfer NvDsInferNetworkMode)
#: scaling-filter values (nvbufsurftransform.h NvBufSurfTransform_Inter)
SCALING_FILTERS = {"nearest": 0, "bilinear": 1, "algo1": 2, "algo2": 3, "algo3": 4, "algo4": 5, "default": 6}
#: --gray-range: (net-scale-factor, offset) mapping the GRAY8 values to the training range (trained spec)
GRAY_RANGES = {name: nvinfer_scale_offset(SPEC, name) for name in ("full", "limited")}
PROB_ATOL = 1e-5
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


# --------------------------------------------------------------------------- target versions


@dataclass(frozen=True)
class DeepStreamRelease:
    """One DeepStream release and the TensorRT it builds engines with."""

    version: str
    jetpack: str  # the JetPack it runs on (Jetson)
    jetson_tensorrt: str  # TensorRT of that JetPack
    dgpu_tensorrt: str  # TensorRT of the x86 dGPU install / container


#: DeepStream release -> JetPack and TensorRT. Sources: the JetPack each release supports is the one named
#: by NVIDIA-AI-IOT/deepstream_python_apps at the tag of that release (bindings/README.md "Download the
#: JetPack SDK": v1.1.6 = DS 6.2 -> JetPack 5.1, v1.1.8 = 6.3 -> 5.1.2, v1.1.10 = 6.4 -> 6.0 DP,
#: v1.1.11 = 7.0 -> 6.0 GA, v1.2.0 = 7.1 -> 6.1); the TensorRT of each JetPack from NVIDIA's JetPack
#: release notes (5.1 and 5.1.2: 8.5.2.2; 6.0 DP and 6.0 GA: 8.6.2.3; 6.1 and 6.2: 10.3.0.30, also
#: stated by pytorch/TensorRT docsrc/getting_started/jetpack.rst). The dGPU column is the DeepStream
#: dGPU setup table of each release's guide (not re-fetched here). Jetson and dGPU agree on
#: TensorRT major.minor in every release, which is all the build plan depends on.
DEEPSTREAM_RELEASES: dict[str, DeepStreamRelease] = {
    "6.2": DeepStreamRelease("6.2", "5.1", "8.5.2.2", "8.5.2.2"),
    "6.3": DeepStreamRelease("6.3", "5.1.2", "8.5.2.2", "8.5.3.1"),
    "6.4": DeepStreamRelease("6.4", "6.0 DP", "8.6.2.3", "8.6.1.6"),
    "7.0": DeepStreamRelease("7.0", "6.0", "8.6.2.3", "8.6.1.6"),
    "7.1": DeepStreamRelease("7.1", "6.1 / 6.2", "10.3.0.30", "10.3.0.26"),
}
DEFAULT_DEEPSTREAM = "7.1"


@dataclass(frozen=True)
class Target:
    """What the package is built for: a DeepStream release (or a bare TensorRT version) and its build plan."""

    plan: ApiPlan
    tensorrt: str
    deepstream: Optional[DeepStreamRelease] = None

    @property
    def label(self) -> str:
        if self.deepstream is None:
            return f"TensorRT {self.tensorrt} (--trt-version)"
        ds = self.deepstream
        return f"DeepStream {ds.version} (JetPack {ds.jetpack}, TensorRT {ds.jetson_tensorrt}; dGPU TensorRT {ds.dgpu_tensorrt})"

    def to_dict(self) -> dict[str, Any]:
        return {"deepstream": asdict(self.deepstream) if self.deepstream else None, "tensorrt": self.tensorrt,
                "onnx_opset": self.plan.onnx_opset, "stn_mode": self.plan.stn_mode}


def resolve_target(deepstream: Optional[str] = None, trt_version: Optional[str] = None) -> Target:
    """``--deepstream X`` or ``--trt-version V`` (neither: DeepStream 7.1) -> :class:`Target`; ``UsageError`` otherwise."""
    if deepstream is not None and trt_version is not None:
        raise UsageError("give either --deepstream or --trt-version, not both")
    if trt_version is not None:
        try:
            version = parse_version(trt_version)
        except ValueError as exc:
            raise UsageError(f"--trt-version: {exc}") from None
        if version[:2] < (8, 5):
            raise UsageError(f"--trt-version {trt_version}: TensorRT below 8.5 has no GridSample importer "
                             "(the STN); DeepStream 6.2 / JetPack 5.1 is the oldest target")
        return Target(plan_for(trt_version), trt_version)
    key = DEFAULT_DEEPSTREAM if deepstream is None else str(deepstream).strip()
    if key not in DEEPSTREAM_RELEASES:
        raise UsageError(f"--deepstream {deepstream}: expected one of {', '.join(DEEPSTREAM_RELEASES)} "
                         "(or --trt-version for another TensorRT)")
    release = DEEPSTREAM_RELEASES[key]
    return Target(plan_for(release.jetson_tensorrt), release.jetson_tensorrt, release)


def check_buildable(model: Any, target: Target, where: str) -> None:
    """``UsageError`` (exit 2) naming the operators ``target``'s TensorRT cannot parse; the fix in the same line."""
    bad = trt_opcheck.check_model(model, target.plan)
    if not bad:
        return
    ops: dict[str, int] = {}
    for item in bad:
        ops[item.op_type] = ops.get(item.op_type, 0) + 1
    what = ", ".join(f"{op} x{n}" for op, n in ops.items())
    since = sorted({f"{item.added_in[0]}.{item.added_in[1]}" if item.added_in else "never" for item in bad})
    if "LayerNormalization" not in ops:
        fix = "this graph cannot be built there"
    elif is_qdq(model):
        fix = (f"make the Q/DQ ONNX for that TensorRT: python -m export.tensorrt --int8 --trt-version {target.plan.label} "
               "(or pass --checkpoint with --calib)")
    else:
        fix = f"re-export it with python -m export.onnx --opset {target.plan.onnx_opset} (or pass --checkpoint)"
    raise UsageError(f"{where}: {target.label} cannot build it: TensorRT {target.plan.label} does not parse {what} "
                     f"(supported from TensorRT {', '.join(since)}); {fix}")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SgieOptions:
    """What the SGIE config says (CLI flags map one to one)."""

    gray: bool = False
    gray_range: str = "full"  # "limited": GRAY8 frames hold video-range luma 16..235 (--gray only)
    batch: int = 16
    precision: str = "fp16"
    gie_id: int = 2
    operate_on_gie_id: int = 1
    operate_on_class_ids: tuple[int, ...] = (0,)
    reinfer_interval: int = 15
    threshold: float = 0.0
    gpu_id: int = 0
    scaling_filter: str = "bilinear"
    #: the preprocessing the network was built for: from the source ONNX's record (not a CLI flag)
    spec: PreprocessSpec = SPEC

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("batch", "gie_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("operate_on_gie_id", "gpu_id", "reinfer_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= 0, got {value!r}")
        if self.operate_on_gie_id == self.gie_id:
            raise UsageError(f"--gie-id {self.gie_id} equals --operate-on-gie-id: the SGIE must operate on "
                             "the primary detector's id, not its own")
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.operate_on_class_ids):
            raise UsageError(f"--operate-on-class-ids must be integers >= 0, got {self.operate_on_class_ids!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise UsageError(f"--threshold must be in [0, 1), got {self.threshold!r}")
        if self.gray_range not in GRAY_RANGES:
            raise UsageError(f"--gray-range must be one of {', '.join(GRAY_RANGES)}, got {self.gray_range!r}")
        if self.gray_range != "full" and not self.gray:
            raise UsageError("--gray-range only applies with --gray (the RGB input is converted by nvinfer at full range)")
        if self.scaling_filter not in SCALING_FILTERS:
            raise UsageError(f"scaling_filter must be one of {', '.join(SCALING_FILTERS)}, got {self.scaling_filter!r}")

    @property
    def network_mode(self) -> int:
        return PRECISIONS[self.precision]

    @property
    def scale_and_offset(self) -> tuple[str, str]:
        """(net-scale-factor, offset) as written, from the spec: x / 255, or (y - 16) / 219 for limited-range gray."""
        scale, offset = nvinfer_scale_offset(self.spec, self.gray_range)
        return repr(scale), _number(offset)

    @property
    def network_size(self) -> int:
        """The square the box is scaled to: the spec's crop."""
        return self.spec.crop_size

    @property
    def input_shape(self) -> list[Any]:
        """The nvinfer variant's input: 1 (``gray``) or 3 channels of the spec's crop, dynamic batch."""
        return ["batch", 1 if self.gray else 3, self.spec.crop_size, self.spec.crop_size]


def _number(value: float) -> str:
    """``16.0`` -> ``16``, other floats as Python writes them (config values)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def engine_file_name(onnx_file: str, batch: int, gpu_id: int = 0, precision: str = "fp16",
                     dla_core: Optional[int] = None) -> str:
    """The engine file nvinfer saves for ``onnx_file`` (DeepStream 6.2 ``nvdsinfer_model_builder.cpp``:
    ``modelPath + "_b" + maxBatchSize + "_" + ("gpu<id>" | "dla<core>") + "_" + fp32|fp16|int8 + ".engine"``,
    where ``modelPath`` is the ONNX path itself, extension included)."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = f"dla{dla_core}" if dla_core is not None and dla_core >= 0 else f"gpu{gpu_id}"
    return f"{onnx_file}_b{batch}_{device}_{precision}.engine"


def labels_line(labels: Sequence[str]) -> str:
    """nvinfer's classifier labels file: one line per output layer, labels separated by ';'."""
    labels = [str(x) for x in labels]
    bad = [x for x in labels if not x or ";" in x or "\n" in x or x != x.strip()]
    if not labels or bad:
        raise UsageError(f"labels must be non-empty, without ';', newlines or surrounding spaces; got {bad or labels}")
    return ";".join(labels) + "\n"


# --------------------------------------------------------------------------- config files


Groups = Dict[str, Dict[str, str]]  # typing's: evaluated at run time, Python 3.8 (JetPack 5)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ";".join(_fmt(v) for v in value)
    return str(value)


def sgie_config(opts: SgieOptions, *, onnx_file: str = MODEL_NAME, labels_file: str = LABELS_FILE,
                int8_calib_file: Optional[str] = None, fp32_layers: Sequence[str] = ()) -> Groups:
    """The ``[property]`` group of the nvinfer SGIE config (values as written). ``fp32_layers``: layer
    (= ONNX node) names pinned to FP32 with ``layer-device-precision`` (:mod:`export.trt_pinning`)."""
    prop: dict[str, Any] = {
        "gpu-id": opts.gpu_id,
        "gie-unique-id": opts.gie_id,
        "process-mode": 2,  # secondary: on objects
        "network-type": 1,  # classifier
        "operate-on-gie-id": opts.operate_on_gie_id,
        "operate-on-class-ids": list(opts.operate_on_class_ids),
        "classifier-type": "emotion",
        "onnx-file": onnx_file,
        "model-engine-file": engine_file_name(onnx_file, opts.batch, opts.gpu_id, opts.precision),
        "labelfile-path": labels_file,
        "batch-size": opts.batch,
        "network-mode": opts.network_mode,
        "net-scale-factor": opts.scale_and_offset[0],
        "offsets": [opts.scale_and_offset[1]] * (1 if opts.gray else 3),
        "model-color-format": 2 if opts.gray else 0,
        "network-input-order": 0,  # NCHW
        "output-blob-names": OUTPUT_NAME,
        "maintain-aspect-ratio": 0,  # the box is made square upstream (emonext_edge.deepstream_boxes)
        "scaling-filter": SCALING_FILTERS[opts.scaling_filter],
        "input-object-min-width": NVINFER_MIN_OBJECT_SIZE,
        "input-object-min-height": NVINFER_MIN_OBJECT_SIZE,
        "secondary-reinfer-interval": opts.reinfer_interval,
        "classifier-async-mode": 0,
        "classifier-threshold": opts.threshold,
    }
    if opts.precision == "int8":
        prop["int8-calib-file"] = int8_calib_file or INT8_PLACEHOLDER
    if fp32_layers:
        bad = [n for n in fp32_layers if not n or any(c in n for c in ":;\n=")]
        if bad:
            raise ExportError(f"layer names {bad[:3]} cannot be written in layer-device-precision (':' ';' '=' or empty)")
        prop["layer-device-precision"] = [f"{name}:fp32:gpu" for name in fp32_layers]
    return {"property": {k: _fmt(v) for k, v in prop.items()}}


SGIE_COMMENTS = {
    "process-mode": "2 = secondary (object crops)",
    "network-type": "1 = classifier: the output must be probabilities (the ONNX ends in Softmax)",
    "model-engine-file": "the name nvinfer saves the engine under, so it is reused after the first start",
    "network-mode": "0 fp32, 1 int8 (Q/DQ ONNX), 2 fp16",
    "net-scale-factor": "1/255 as the training ToTensor() (1/219 with offsets 16 for limited-range gray); "
                        "nvinfer computes net-scale-factor * (x - offsets)",
    "model-color-format": "0 RGB (luma computed in the graph), 2 GRAY (1-channel input)",
    "scaling-filter": "1 bilinear (the default 0 is nearest); the box is scaled straight to the network size",
    "secondary-reinfer-interval": "re-classify a tracked face every N frames (default: never, label frozen)",
    "classifier-async-mode": "0: the label is attached to the frame it was computed on",
    "classifier-threshold": "a label is attached when its probability is above this",
    "layer-device-precision": "the STN's layers (named after its ONNX nodes) stay FP32 in the FP16 engine, as "
                              "export.tensorrt pins them (export/trt_pinning.py); nvinfer then sets STRICT_TYPES",
    "int8-calib-file": "empty placeholder: DeepStream sets TensorRT's INT8 flag only when this file exists; "
                       "a Q/DQ ONNX carries its own scales",
}


def app_config(opts: SgieOptions, *, sgie_config_file: str = SGIE_CONFIG, labels_file: str = LABELS_FILE,
               onnx_file: str = MODEL_NAME) -> Groups:
    """The FALLBACK deepstream-app config (raw detector boxes, see :data:`RAW_BOX_AGREEMENT`): file source,
    primary face detector (user-supplied), NvDCF tracker, the EmoNeXt SGIE, OSD, a fake sink (``[sink0]``,
    headless-safe) and an MP4 file sink (``[sink1]``, disabled; ``enc-type=1`` software on Orin Nano)."""
    ds = "/opt/nvidia/deepstream/deepstream"
    groups: dict[str, dict[str, Any]] = {
        "application": {"enable-perf-measurement": 1, "perf-measurement-interval-sec": 5},
        "tiled-display": {"enable": 0, "rows": 1, "columns": 1, "width": 1280, "height": 720, "gpu-id": opts.gpu_id},
        "source0": {"enable": 1, "type": 3, "uri": f"file://{ds}/samples/streams/sample_720p.mp4",
                    "num-sources": 1, "gpu-id": opts.gpu_id},
        "streammux": {"gpu-id": opts.gpu_id, "live-source": 0, "batch-size": 1, "batched-push-timeout": 40000,
                      "width": 1280, "height": 720, "enable-padding": 0},
        "primary-gie": {"enable": 1, "gpu-id": opts.gpu_id, "gie-unique-id": opts.operate_on_gie_id,
                        "batch-size": 1, "config-file": "config_infer_primary_face.txt"},
        "tracker": {"enable": 1, "tracker-width": 640, "tracker-height": 384, "gpu-id": opts.gpu_id,
                    "ll-lib-file": f"{ds}/lib/libnvds_nvmultiobjecttracker.so",
                    "ll-config-file": f"{ds}/samples/configs/deepstream-app/config_tracker_NvDCF_perf.yml",
                    "enable-batch-process": 1, "display-tracking-id": 1},
        "secondary-gie0": {"enable": 1, "gpu-id": opts.gpu_id, "gie-unique-id": opts.gie_id,
                           "operate-on-gie-id": opts.operate_on_gie_id,
                           "operate-on-class-ids": list(opts.operate_on_class_ids),
                           "batch-size": opts.batch, "config-file": sgie_config_file},
        "osd": {"enable": 1, "gpu-id": opts.gpu_id, "border-width": 2, "text-size": 15,
                "text-color": [1, 1, 1, 1], "text-bg-color": [0.3, 0.3, 0.3, 1], "font": "Serif",
                "display-text": 1, "display-bbox": 1},
        "sink0": {"enable": 1, "type": 1, "sync": 0, "source-id": 0, "gpu-id": opts.gpu_id},
        "sink1": {"enable": 0, "type": 3, "container": 1, "codec": 1, "enc-type": 0, "sync": 0,
                  "bitrate": 4000000, "output-file": "emonext_out.mp4", "source-id": 0},
        "tests": {"file-loop": 0},
    }
    return {g: {k: _fmt(v) for k, v in kv.items()} for g, kv in groups.items()}


def preprocess_config(opts: SgieOptions) -> Groups:
    """An ``nvdspreprocess`` config preparing the SGIE's input tensor from (rewritten) face boxes, for
    pipelines that want the scaling on the GPU (``scaling-pool-compute-hw=1``) instead of nvinfer's
    default compute. Use with ``input-tensor-meta=1`` on the SGIE (deepstream-app ``[secondary-gie0]``)."""
    channels = 1 if opts.gray else 3
    return {
        "property": {k: _fmt(v) for k, v in {
            "enable": 1, "target-unique-ids": [opts.gie_id], "operate-on-gie-id": opts.operate_on_gie_id,
            "network-input-order": 0, "process-on-frame": 0, "unique-id": opts.gie_id + 100,
            "gpu-id": opts.gpu_id, "maintain-aspect-ratio": 0, "symmetric-padding": 0,
            "processing-width": opts.network_size, "processing-height": opts.network_size, "scaling-buf-pool-size": 6,
            "tensor-buf-pool-size": 6, "network-input-shape": [opts.batch, *opts.input_shape[1:]],
            "network-color-format": 2 if opts.gray else 0, "tensor-data-type": 0, "tensor-name": INPUT_NAME,
            "scaling-pool-memory-type": 0, "scaling-pool-compute-hw": 1,
            "scaling-filter": SCALING_FILTERS[opts.scaling_filter],
            "custom-lib-path": "/opt/nvidia/deepstream/deepstream/lib/gst-plugins/libcustom2d_preprocess.so",
            "custom-tensor-preparation-function": "CustomTensorPreparation",
        }.items()},
        "user-configs": {"pixel-normalization-factor": opts.scale_and_offset[0],
                         "offsets": _fmt([opts.scale_and_offset[1]] * channels)},
        "group-0": {k: _fmt(v) for k, v in {
            "src-ids": [-1], "operate-on-class-ids": list(opts.operate_on_class_ids),
            "custom-input-transformation-function": "CustomAsyncTransformation",
            "process-on-roi": 0, "process-on-all-objects": 1,
            "input-object-min-width": NVINFER_MIN_OBJECT_SIZE, "input-object-min-height": NVINFER_MIN_OBJECT_SIZE,
        }.items()},
    }


def render_ini(groups: Groups, header: str = "", comments: Optional[Mapping[str, str]] = None) -> str:
    """GKeyFile text (what DeepStream parses): ``[group]`` then ``key=value`` lines, ``#`` comments."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for group, keys in groups.items():
        if lines:
            lines.append("")
        lines.append(f"[{group}]")
        for key, value in keys.items():
            if comments and key in comments:
                lines.append(f"# {comments[key]}")
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def parse_ini(text: str, where: str = "config") -> Groups:
    """Read GKeyFile-style text back into groups (duplicate keys or keys outside a group are errors)."""
    groups: Groups = {}
    current: Optional[str] = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"\[([^\]]+)\]", line)
        if match:
            current = match.group(1)
            if current in groups:
                raise UsageError(f"{where}:{number}: group [{current}] appears twice")
            groups[current] = {}
            continue
        if current is None or "=" not in line:
            raise UsageError(f"{where}:{number}: expected '[group]' or 'key=value', got {raw!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if key in groups[current]:
            raise UsageError(f"{where}:{number}: key {key!r} appears twice in [{current}]")
        groups[current][key] = value
    return groups


# --------------------------------------------------------------------------- key check


def accepted_keys() -> dict[str, Any]:
    """The accepted-key lists (``export/deepstream_keys.json``) with their source."""
    return json.loads(KEYS_FILE.read_text())


def _group_regex(spec: str) -> re.Pattern[str]:
    alternatives = [re.escape(alt).replace(re.escape("<N>"), r"\d+").replace(re.escape("<id>"), r"\d+")
                    for alt in spec.split("|")]
    return re.compile("(?:" + "|".join(alternatives) + ")")


def check_keys(groups: Mapping[str, Mapping[str, str]], element: str) -> list[str]:
    """Problems (empty when none) of ``groups`` against what DeepStream's parser for ``element``
    (``nvinfer``, ``deepstream-app``, ``nvdspreprocess``) accepts: unknown groups and unknown keys."""
    table = accepted_keys()["groups"]
    if element not in table:
        raise UsageError(f"unknown element {element!r}; expected one of {', '.join(table)}")
    specs = [(_group_regex(spec), set(keys), spec) for spec, keys in table[element].items()]
    problems = []
    for group, keys in groups.items():
        match = next(((known, spec) for rx, known, spec in specs if rx.fullmatch(group)), None)
        if match is None:
            problems.append(f"{element}: group [{group}] is not one the parser reads")
            continue
        known, spec = match
        for key in keys:
            if key not in known:
                close = sorted(known, key=lambda k: _distance(k, key))[:1]
                problems.append(f"{element}: key {key!r} in [{group}] is not accepted (group {spec}); "
                                f"did you mean {close[0]!r}?")
    return problems


def _distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def check_config_file(path: str | os.PathLike, element: str) -> list[str]:
    path = Path(path)
    return check_keys(parse_ini(path.read_text(), str(path)), element)


# --------------------------------------------------------------------------- the ONNX variant


def _load_onnx(path: str | os.PathLike) -> Any:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such ONNX file")
    try:
        return onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001  (onnx raises DecodeError and friends)
        raise ModelFileError(f"{p}: not a readable ONNX model ({exc})") from None


def is_qdq(model: Any) -> bool:
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def _io_check(model: Any, where: str, input_shape: Sequence[int] = SPEC.input_shape) -> tuple[str, str, int]:
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ModelFileError(f"{where}: expected one input and one output, got {len(inputs)} and {len(model.graph.output)}")
    dims = [d.dim_value or d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1:] != list(input_shape):
        raise ModelFileError(f"{where}: input {inputs[0].name!r} has shape {dims}; expected [batch, "
                             f"{', '.join(map(str, input_shape))}] (an EmoNeXt ONNX from python -m export.onnx; "
                             "its recorded preprocessing spec)")
    out_dims = [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(out_dims) != 2 or not isinstance(out_dims[1], int):
        raise ModelFileError(f"{where}: output {model.graph.output[0].name!r} has shape {out_dims}; expected [batch, classes]")
    ops = {n.op_type for n in model.graph.node}
    if "Softmax" in ops and model.graph.node[-1].op_type == "Softmax":
        raise ModelFileError(f"{where}: already ends in Softmax; give the logits model from python -m export.onnx")
    return inputs[0].name, model.graph.output[0].name, int(out_dims[1])


def nvinfer_variant(source: Any, *, gray: bool, where: str = "source ONNX", spec: PreprocessSpec = SPEC) -> Any:
    """A copy of an EmoNeXt ONNX (``[N, *spec.input_shape]`` -> logits) for nvinfer: RGB (or with ``gray`` a
    1-channel) input converted to the 3 gray channels EmoNeXt expects, and ``Softmax`` on the output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(source)
    in_name, out_name, num_classes = _io_check(model, where, spec.input_shape)
    graph = model.graph
    gray3, logits = "emonext_gray3", "emonext_logits"
    for node in graph.node:  # rename the old input / output tensors
        node.input[:] = [gray3 if t == in_name else t for t in node.input]
        node.output[:] = [logits if t == out_name else t for t in node.output]
    batch_dim = graph.input[[i.name for i in graph.input].index(in_name)].type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_param or batch_dim.dim_value
    if gray:
        prefix = [helper.make_node("Concat", [INPUT_NAME] * 3, [gray3], axis=1, name="emonext_gray_to_3ch")]
        channels = 1
    else:  # luma = G + wR (R - G) + wB (B - G): exactly G when R = G = B (no rounding on gray input)
        w_r, _, w_b = (np.asarray([w], dtype=np.float32) for w in LUMA_WEIGHTS)
        graph.initializer.extend([numpy_helper.from_array(np.asarray([1, 1, 1], dtype=np.int64), "emonext_rgb_split"),
                                  numpy_helper.from_array(w_r, "emonext_luma_wr"),
                                  numpy_helper.from_array(w_b, "emonext_luma_wb")])
        r, g, b = "emonext_r", "emonext_g", "emonext_b"
        prefix = [
            helper.make_node("Split", [INPUT_NAME, "emonext_rgb_split"], [r, g, b], axis=1, name="emonext_rgb_split"),
            helper.make_node("Sub", [r, g], ["emonext_r_minus_g"], name="emonext_r_minus_g"),
            helper.make_node("Sub", [b, g], ["emonext_b_minus_g"], name="emonext_b_minus_g"),
            helper.make_node("Mul", ["emonext_r_minus_g", "emonext_luma_wr"], ["emonext_wr_term"], name="emonext_wr_term"),
            helper.make_node("Mul", ["emonext_b_minus_g", "emonext_luma_wb"], ["emonext_wb_term"], name="emonext_wb_term"),
            helper.make_node("Add", [g, "emonext_wr_term"], ["emonext_luma_partial"], name="emonext_luma_partial"),
            helper.make_node("Add", ["emonext_luma_partial", "emonext_wb_term"], ["emonext_luma"], name="emonext_luma"),
            helper.make_node("Concat", ["emonext_luma"] * 3, [gray3], axis=1, name="emonext_luma_to_3ch"),
        ]
        channels = 3
    suffix = helper.make_node("Softmax", [logits], [OUTPUT_NAME], axis=1, name="emonext_softmax")
    nodes = prefix + list(graph.node) + [suffix]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.remove(graph.input[[i.name for i in graph.input].index(in_name)])
    size = spec.crop_size
    graph.input.insert(0, helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, channels, size, size]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, num_classes]))
    del graph.value_info[:]
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"{where}: the nvinfer variant is not a valid ONNX graph ({type(exc).__name__}: {exc})") from exc
    return model


def _ort_fn(model_bytes: bytes) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0])


def nvinfer_input(faces: np.ndarray, options: SgieOptions) -> np.ndarray:
    """What nvinfer feeds the network for project-preprocessed faces ``[N, 3, S, S]`` (gray repeated).

    The faces are taken back to the 8-bit frame values the spec was applied to (``x / scale + offset``;
    with ``gray_range="limited"`` then to video range 16..235), reduced to nvinfer's input layout (1
    channel with ``gray``, else R = G = B) and normalised as nvinfer does, ``net-scale-factor * (x -
    offsets)`` with the values *as written in the config* (read back as float32, as nvinfer parses them).
    A wrong scale or offset in the config therefore fails the gate.
    """
    spec = options.spec
    pixels = faces[:, :1] if options.gray else faces
    pixels = pixels.astype(np.float64) / spec.scale + spec.offset
    if options.gray_range == "limited":
        black, white = LIMITED_RANGE
        pixels = black + pixels * (white - black) / 255.0
    scale, offset = (np.float32(float(v)) for v in options.scale_and_offset)
    return np.ascontiguousarray(scale * (pixels.astype(np.float32) - offset), dtype=np.float32)


def _log_probs(logits: np.ndarray) -> np.ndarray:
    """Log-softmax: logits of the same class probabilities, so the gate compares nvinfer's probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float32)


def _variant_logits(run: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The variant's ``probs`` as log-probabilities (logits up to a per-image constant) for the gate."""
    tiny = np.finfo(np.float32).tiny

    def logits(x: np.ndarray) -> np.ndarray:
        probs = np.asarray(run(x), dtype=np.float64)
        return np.log(np.where(np.isfinite(probs), np.maximum(probs, tiny), np.nan)).astype(np.float32)

    return logits


def color_test_images(count: int = 6, seed: int = 3, size: int = SPEC.crop_size) -> np.ndarray:
    """Deterministic smooth colour images, float32 RGB ``[N, 3, size, size]`` in [0, 1], channels unequal."""
    cv2 = import_cv2()  # one line naming the fix when OpenCV is missing

    faces = synthetic_faces(count * 3, seed=seed).reshape(count, 3, 48, 48)
    out = np.empty((count, 3, size, size), dtype=np.float32)
    for i in range(count):
        for c in range(3):
            out[i, c] = cv2.resize(faces[i, c], (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    """float RGB ``[N, 3, H, W]`` -> the gray image repeated to 3 channels (ITU-R 601-2, no rounding)."""
    w = np.asarray(ITU_R_601_2, dtype=np.float64).reshape(1, 3, 1, 1)
    gray = (rgb.astype(np.float64) * w).sum(axis=1, keepdims=True).astype(np.float32)
    return np.repeat(gray, 3, axis=1)


def _luma_weight_check(variant: Any) -> tuple[dict[str, Any], list[str]]:
    """The graph's RGB->luma constants against ITU-R 601-2 (a Q/DQ graph: colour images would differ by
    whole quantization steps there, so the weights are read instead)."""
    from onnx import numpy_helper

    consts = {t.name: float(numpy_helper.to_array(t).reshape(-1)[0]) for t in variant.graph.initializer
              if t.name in ("emonext_luma_wr", "emonext_luma_wb")}
    weights = (consts["emonext_luma_wr"], 1.0 - consts["emonext_luma_wr"] - consts["emonext_luma_wb"],
               consts["emonext_luma_wb"])
    off = float(np.abs(np.asarray(weights) - np.asarray(ITU_R_601_2)).max())
    failures = [] if off <= 1e-4 else [(f"luma weights: the graph's RGB->luma weights {weights} are not "
                                        f"ITU-R 601-2 R, G, B {ITU_R_601_2}")]
    return {"check": "luma weights (read from the Q/DQ graph)", "max_abs_weight_vs_itu_r_601_2": off}, failures


def _exact_check(name: str, candidate: Callable[[np.ndarray], np.ndarray],
                 reference: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                 fidelity: FidelityOptions) -> tuple[dict[str, Any], list[str]]:
    """An additional named check run through the shared gate, with the FP32 tolerance on probabilities."""
    report = fidelity_gate(candidate, reference, images, None, fidelity.min_agreement, fidelity.max_drop_pp,
                           progress=f"gate {MODEL_NAME}: {name}")
    failures = [f"{name}: {f}" for f in report.failures]
    if not report.max_abs_prob_diff <= PROB_ATOL:
        failures.append(f"{name}: max |Δprob| {report.max_abs_prob_diff:.3g} > tolerance {PROB_ATOL:g}")
    return {"check": f"{report.n} {name}", "agreement": report.agreement,
            "max_abs_prob_diff": report.max_abs_prob_diff}, failures


def gate_variant(variant: Any, reference: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                 labels: Optional[np.ndarray], options: SgieOptions, fidelity: FidelityOptions, *,
                 reference_desc: str, data_desc: str,
                 qdq_reference: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> GateResult:
    """The shared fidelity gate (:func:`export.fidelity.fidelity_gate`) on the nvinfer-form ONNX.

    ``images``: the project-preprocessed faces (``--fidelity-data``'s val split, or the synthetic set),
    fed as nvinfer feeds them (:func:`nvinfer_input`); ``reference``: the source's logits on the same
    faces. The variant's probabilities enter the gate as log-probabilities, the reference's logits as
    log-softmax, so its figures compare what nvinfer's classifier parser reads. The thresholds are the
    shared ones (``--min-agreement/--max-drop``); an FP32 variant (``qdq_reference`` None) must also be
    within :data:`PROB_ATOL` in probability (a graph edit, not a conversion).

    Additional named checks, which the face gate cannot make: the RGB FP32 variant on synthetic colour
    images against the source on their ITU-R 601-2 luma (the faces have R = G = B, so only this catches
    a wrong weight or channel order); for a Q/DQ variant (``qdq_reference``: its Q/DQ source) the graph
    edit against that source on the very inputs the variant gets (one-ulp input differences move
    quantization steps, so only identical inputs make :data:`PROB_ATOL` meaningful), and the luma
    weights read from the graph.

    The variant's input (1 channel with ``--gray``, probabilities out) is not the Runtime's convention,
    so ONNX Runtime (CPU) runs it directly instead of through :func:`export.pipeline.gate_artifact`.
    """
    run = _ort_fn(variant.SerializeToString())
    candidate = _variant_logits(lambda x: run(nvinfer_input(x, options)))

    def reference_logprobs(x: np.ndarray) -> np.ndarray:
        return _log_probs(reference(x))

    y = None if labels is None else [int(v) for v in labels]
    with interruptible(f"the fidelity gate of {MODEL_NAME}"):
        report = fidelity_gate(candidate, reference_logprobs, images, y, fidelity.min_agreement, fidelity.max_drop_pp,
                               progress=f"gate {MODEL_NAME}")
        failures = list(report.failures)
        thresholds: dict[str, Any] = {"min_agreement": report.min_agreement, "max_drop_pp": report.max_drop_pp}
        checks: list[dict[str, Any]] = []
        if qdq_reference is None:
            thresholds["atol_prob"] = PROB_ATOL
            if not report.max_abs_prob_diff <= PROB_ATOL:
                failures.append(f"max |Δprob| {report.max_abs_prob_diff:.3g} > tolerance {PROB_ATOL:g}")
            if not options.gray:
                rgb = color_test_images(size=images.shape[-1])
                figures, extra = _exact_check("colour images", candidate, lambda x: _log_probs(reference(luma(x))),
                                              rgb, fidelity)
                checks.append(figures)
                failures += extra
        else:
            def same_input(x: np.ndarray) -> np.ndarray:
                fed = nvinfer_input(x, options)  # what the variant gets; R = G = B, so its luma is exactly G
                return _log_probs(qdq_reference(np.repeat(fed, 3, axis=1) if fed.shape[1] == 1 else fed))

            figures, extra = _exact_check("faces vs the Q/DQ source on the same input (graph edit)", candidate,
                                          same_input, images, fidelity)
            checks.append(figures)
            failures += extra
            if not options.gray:
                figures, extra = _luma_weight_check(variant)
                checks.append(figures)
                failures += extra
    figures_all = {k: getattr(report, k) for k in (
        "n", "agreement", "max_abs_logit_diff", "mean_abs_logit_diff", "max_abs_prob_diff", "mean_abs_prob_diff",
        "accuracy_reference", "accuracy_candidate", "drop_pp", "nonfinite")}
    figures_all = {k: v for k, v in figures_all.items() if v is not None}
    figures_all["checks"] = checks
    gate = GateResult(passed=not failures, reference=reference_desc,
                      runtime="ONNX Runtime CPUExecutionProvider (nvinfer's net-scale-factor/offsets applied)",
                      data=data_desc + (f" (also checked: {', '.join(c['check'] for c in checks)})" if checks else ""),
                      figures=figures_all,
                      thresholds=thresholds, failures=failures)
    log.info("%s: %s", MODEL_NAME, gate_line(gate))
    return gate


# --------------------------------------------------------------------------- the exporter


@dataclass
class DeepStreamExport(ExportResult):
    """What :func:`export_deepstream` wrote: the :class:`~export.targets.ExportResult` of the run, plus the
    output directory and the committed file names (the model file, then the sidecar, last)."""

    output: Path = Path()

    @property
    def metadata(self) -> ArtifactMetadata:
        return self.artifacts[-1].metadata

    @property
    def gate(self) -> GateResult:
        gate = self.metadata.fidelity
        if gate is None:  # the driver gates every candidate before it commits: our own bug
            raise ExportError(f"{MODEL_NAME}: committed without a gate result")
        return gate

    @property
    def committed(self) -> bool:
        return bool(self.artifacts) and self.artifacts[-1].committed

    @property
    def files(self) -> list[str]:
        if not self.artifacts:
            return []
        last = self.artifacts[-1]
        return [p.name for p in last.paths] + [last.sidecar.name if last.sidecar else ""]


def _source_model(onnx_path: Optional[str | os.PathLike], checkpoint: Optional[str | os.PathLike],
                  work: Path, target: Target) -> tuple[Any, Path, Callable[[np.ndarray], np.ndarray], dict[str, Any], Any]:
    """(source ONNX model, its path, reference logits function, source description, SourceModel or None)."""
    if onnx_path is not None:
        if Path(onnx_path).is_file():
            verify_source(onnx_path, "--onnx")
        model = _load_onnx(onnx_path)
        info = {"onnx": str(onnx_path), "onnx_sha256": sha256_file(onnx_path), "qdq": is_qdq(model)}
        return model, Path(onnx_path), _ort_fn(model.SerializeToString()), info, None
    import torch

    from .onnx import OnnxExportOptions, export_onnx

    source = load_source(checkpoint)
    path = work / "source_fp32.onnx"
    # the form the target's TensorRT parses: opset 16 (decomposed LayerNorm) for 8.5, 17 from 8.6 (same plan as export.tensorrt)
    export_onnx(source.model, path, OnnxExportOptions(stn=target.plan.stn_mode, opset=target.plan.onnx_opset,
                                                      fidelity=FidelityOptions(images=4)), source_info=source.info)
    torch_model = source.model.eval()

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch_model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return _load_onnx(path), path, reference, dict(source.info, qdq=False), source


def _build(o: DeepStreamTargetOptions, stage: Stage) -> Iterator[Candidate]:
    """Stage the nvinfer ONNX and its files; yield the one candidate (configs first, the ONNX last), gated
    by :func:`gate_variant`. After the driver committed it, remove an engine nvinfer built from the previous ONNX."""
    options, target, fidelity = o.sgie, o.target, o.fidelity
    work = stage.dir / "work"
    work.mkdir()
    source, source_path, reference, info, torch_source = _source_model(o.onnx, o.checkpoint, work, target)
    check_buildable(source, target, f"--onnx {o.onnx}" if o.onnx is not None else "the exported ONNX")
    qdq_reference = reference if info["qdq"] else None  # a Q/DQ --onnx: the only source there is
    if options.precision == "int8" and not info["qdq"]:
        if o.calib is None:
            raise UsageError("--precision int8 needs the Q/DQ ONNX made by `python -m export.tensorrt --int8` "
                             "(pass it with --onnx) or --calib calib.npz to quantize here")
        from calibration import load_calibration

        from .quantize_onnx import export_qdq_onnx

        # gated against the FP32 ONNX with the shared fidelity gate (VerificationError -> exit 1)
        qdq = export_qdq_onnx(source_path, load_calibration(o.calib, num=None), work / "source.int8.qdq.onnx",
                              fidelity, calibration_desc=str(o.calib))
        log.info("Q/DQ ONNX: %s", gate_line(qdq.metadata.fidelity))
        source = _load_onnx(qdq.path)
        qdq_reference = _ort_fn(source.SerializeToString())  # the graph edit is also checked against the Q/DQ model
        # (the main gate stays against the FP32 source)
        info = dict(info, qdq=True, int8_gate=qdq.metadata.fidelity.to_dict(), quantized_here_from=str(o.calib))
    elif options.precision != "int8" and info["qdq"]:
        raise UsageError(f"--onnx {o.onnx}: is a Q/DQ (INT8) ONNX; use --precision int8 with it")
    source_meta = read_onnx_metadata(source)
    labels = _labels(source, source_meta, torch_source)
    options = replace(options, spec=spec_of(source_meta, str(source_path)))  # what the network was built for
    variant = nvinfer_variant(source, gray=options.gray, spec=options.spec)
    check_buildable(variant, target, MODEL_NAME)  # the file nvinfer builds from (our own bug if this fails)
    build_path = target.plan.path(options.precision)
    fp32_layers = fp32_layer_names(build_path, variant)
    images, image_labels, description = fidelity.load_images(spec=options.spec)
    reference_desc = ("softmax of ONNX Runtime on the Q/DQ source ONNX" if qdq_reference is reference else
                      "softmax of ONNX Runtime on the FP32 source ONNX" if o.onnx is not None else
                      "softmax of PyTorch FP32 (checkpoint)")
    names = _stage_files(stage, variant, options, labels, fp32_layers)
    meta = _metadata(source_meta, labels, options, info, None, names, target, build_path, fp32_layers)
    shutil.rmtree(work)

    def check(staged: Path) -> GateResult:
        import onnx

        return gate_variant(onnx.load(str(staged)), reference, images, image_labels, options, fidelity,
                            reference_desc=reference_desc, data_desc=description, qdq_reference=qdq_reference)

    summary = (f"nvinfer SGIE for {target.label}, {'GRAY' if options.gray else 'RGB'} input, "
               f"network-mode {options.precision}, batch {options.batch}")
    yield Candidate(names, meta, check, embed_onnx, summary)
    # resumed by the driver after the commit: only once the new ONNX is in place (with the hash just recorded),
    # since nvinfer would reuse an engine built from the previous one
    stale = stage.out_dir / engine_file_name(MODEL_NAME, options.batch, options.gpu_id, options.precision)
    model_file = stage.out_dir / MODEL_NAME
    if (meta.verified and stale.exists() and model_file.is_file()
            and sha256_file(model_file) == meta.artifact_sha256.get(MODEL_NAME)):
        log.warning("removing %s: it was built from the previous %s", stale, MODEL_NAME)
        stale.unlink()


def export_deepstream(output: str | os.PathLike, *, onnx_path: Optional[str | os.PathLike] = None,
                      checkpoint: Optional[str | os.PathLike] = None, options: SgieOptions = SgieOptions(),
                      calib: Optional[str | os.PathLike] = None, verify_data: Optional[str | os.PathLike] = None,
                      verify_count: Optional[int] = None, fidelity: Optional[FidelityOptions] = None,
                      target: Optional[Target] = None) -> DeepStreamExport:
    """Write the nvinfer ONNX variant, SGIE/app/preprocess configs and labels into ``output``; the typed result.

    At most one of ``onnx_path`` / ``checkpoint`` (neither: the seeded default model). INT8
    needs a Q/DQ ``onnx_path`` or ``calib`` (a calib.npz or data source; the Q/DQ ONNX made from
    it goes through the shared fidelity gate ``fidelity`` against the FP32 ONNX). Runs the export
    driver (:func:`export.driver.run_build`): built in a stage inside ``output``, the nvinfer ONNX gated
    by the shared fidelity gate (:func:`gate_variant`, thresholds and ``keep_failed`` from ``fidelity``;
    default: 16 images, ``verify_data``/``verify_count`` set its ``data``/``images``), then committed with
    the sidecar ``emonext_sgie.json`` (metadata, gate result, ``artifact_sha256`` of every file) last.
    Raises ``UsageError`` (bad arguments, or an ONNX the ``target``'s TensorRT cannot parse:
    :func:`check_buildable`), ``VerificationError`` (the gate failed; nothing written unless
    ``fidelity.keep_failed``) or ``ExportError``. ``target`` (default DeepStream 7.1,
    :func:`resolve_target`) decides the export form of a checkpoint and which layers
    ``layer-device-precision`` pins to FP32.
    """
    gate_opts = fidelity or FidelityOptions(images=16)
    if verify_data is not None:
        gate_opts = replace(gate_opts, data=str(verify_data))
    if verify_count is not None:
        if isinstance(verify_count, bool) or not isinstance(verify_count, (int, np.integer)) or verify_count < 1:
            raise UsageError(f"verify_count must be a positive integer, got {verify_count!r}")
        gate_opts = replace(gate_opts, images=int(verify_count))
    return TARGET.export(DeepStreamTargetOptions(str(output), None if onnx_path is None else str(onnx_path),
                                                 None if checkpoint is None else str(checkpoint), options,
                                                 target or resolve_target(), None if calib is None else str(calib),
                                                 gate_opts.data, gate_opts))


def _labels(source: Any, source_meta: Any, torch_source: Any) -> tuple[str, ...]:
    if torch_source is not None:
        return tuple(torch_source.model.labels)
    num_classes = int(source.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
    return labels_for(source_meta, num_classes, "source ONNX")


def _metadata(source_meta: Any, labels: Sequence[str], options: SgieOptions, info: Mapping[str, Any],
              gate: Any, names: Sequence[str], target: Target, build_path: Any, fp32_layers: Sequence[str]) -> Any:
    base = source_meta if source_meta is not None else ArtifactMetadata(labels=list(labels))
    upstream = dict(base.source)
    deepstream = {
        "element": "nvinfer secondary classifier (SGIE)",
        "files": {"onnx": MODEL_NAME, "sgie_config": SGIE_CONFIG, "labels": LABELS_FILE, "sample_app": SAMPLE_APP,
                  "app_config_fallback_raw_boxes": APP_CONFIG,
                  "preprocess_config": PREPROCESS_CONFIG, **({"int8_placeholder": INT8_PLACEHOLDER}
                                                             if INT8_PLACEHOLDER in names else {})},
        "options": {k: v for k, v in asdict(options).items() if k != "spec"},  # the spec: "preprocessing"
        "engine_file": engine_file_name(MODEL_NAME, options.batch, options.gpu_id, options.precision),
        "box_rewrite": f"emonext_edge.deepstream_boxes.rewrite_box(strategy={DEFAULT_STRATEGY!r}) before the SGIE "
                       f"({SAMPLE_APP}; agreement {REWRITE_AGREEMENT}; the deepstream-app fallback feeds raw boxes: "
                       f"{RAW_BOX_AGREEMENT})",
        "keys_checked_against": accepted_keys()["source"],
        "target": target.to_dict() | {
            "operator_check": f"passed for TensorRT {target.plan.label} (export/trt_opcheck.py)",
            "engine_precision": build_path.engine_precision,
            "fp32_layers": list(fp32_layers),
            "stn": ("FP32: layer-device-precision pins its layers" if fp32_layers else build_path.stn),
        },
    }
    size, spec = options.network_size, options.spec
    deepstream["nvinfer_preprocessing"] = {  # how nvinfer approximates the spec ("preprocessing")
        "where": "DeepStream nvinfer (not the Runtime: use the plain ONNX there)",
        "crop": f"object box (centre square of side min(w,h)*{spec.crop_size}/{spec.resize_shorter} with the box "
                f"rewrite) rounded to even pixels, scaled straight to {size}x{size} (scaling-filter=1 bilinear)",
        "color": "GRAY8 frame, 1 channel (model-color-format=2)" if options.gray else
                 "RGB (model-color-format=0); ITU-R 601-2 luma computed in the graph, repeated to 3 channels",
        "scale": "net-scale-factor {}, offsets {}".format(*options.scale_and_offset),
        "input_shape": options.input_shape,
        "output": "softmax probabilities ('probs')",
    }
    return base.replace(
        format="onnx", precision="int8-qdq" if info["qdq"] else "fp32", labels=list(labels),
        source={k: v for k, v in info.items() if k != "qdq"} | ({"upstream": upstream} if upstream else {}),
        preprocessing=spec.to_dict(), input_name=INPUT_NAME, output_name=OUTPUT_NAME,
        input_shape=options.input_shape, batch="dynamic", fidelity=gate, artifact_sha256={},
        extra=dict(base.extra, deepstream=deepstream),
    )


def _texts(options: SgieOptions, labels: Sequence[str], fp32_layers: Sequence[str] = ()) -> dict[str, str]:
    header = ("Generated by python -m export.deepstream (emonext-edge). Keys checked against the keys\n"
              "DeepStream 6.2's parser accepts (export/deepstream_keys.json).")
    sgie = sgie_config(options, fp32_layers=fp32_layers)
    app = app_config(options)
    pre = preprocess_config(options)
    problems = check_keys(sgie, "nvinfer") + check_keys(app, "deepstream-app") + check_keys(pre, "nvdspreprocess")
    if problems:  # our own bug: never write a config DeepStream would only warn about
        raise ExportError("generated DeepStream configs use keys the parser does not accept: " + "; ".join(problems))
    app_header = (
        "FALLBACK ONLY. deepstream-app cannot rewrite boxes, so the SGIE sees the raw face box:\n"
        f"agreement with training preprocessing {RAW_BOX_AGREEMENT}, against {REWRITE_AGREEMENT} with the\n"
        f"centre-square rewrite that {SAMPLE_APP} does in a pad probe before the SGIE (docs/deepstream.md).\n"
        f"Use: python3 {SAMPLE_APP} --uri file:///video.mp4 --pgie-config config_infer_primary_face.txt\n\n"
        + header +
        "\n[primary-gie] config-file: your face detector's nvinfer config (TAO FaceDetect / FaceNet from\n"
        "NGC, or a YOLO-face ONNX with its custom parser); it must give faces the class id(s) in\n"
        "operate-on-class-ids of [secondary-gie0].\n"
        "[sink0] type=1 fakesink (runs headless; type=2 is an EGL display). [sink1] MP4 file: enc-type=0\n"
        "uses the hardware encoder; Jetson Orin Nano has no NVENC: set enc-type=1 (software x264) there.")
    return {
        SGIE_CONFIG: render_ini(sgie, header, SGIE_COMMENTS),
        LABELS_FILE: labels_line(labels),
        APP_CONFIG: render_ini(app, app_header),
        PREPROCESS_CONFIG: render_ini(pre, header + (
            "\nOptional: nvdspreprocess before the SGIE. Then the SGIE must take its input from the tensor meta:\n"
            "input-tensor-from-meta=1 in config_infer_secondary_emonext.txt (the nvinfer file's key), or\n"
            "input-tensor-meta=1 in deepstream-app's [secondary-gie0] together with a [secondary-pre-process0]\n"
            "group naming this file (deepstream-app's spellings); with a Python app, set the nvinfer element's\n"
            "input-tensor-meta property. nvdspreprocess's own ROI/object selection does not apply the\n"
            "centre-square rewrite: run it after the box rewrite probe.")),
    }


def _stage_files(stage: Any, variant: Any, options: SgieOptions, labels: Sequence[str],
                 fp32_layers: Sequence[str] = ()) -> list[str]:
    """Write every file into the stage; return the names in commit order (the ONNX last)."""
    import onnx

    texts = _texts(options, labels, fp32_layers)
    texts[SAMPLE_APP] = SAMPLE_SOURCE.read_text()
    for name, text in texts.items():
        stage.file(name).write_text(text)
    os.chmod(stage.file(SAMPLE_APP), 0o755)
    names = list(texts)
    if options.precision == "int8":
        stage.file(INT8_PLACEHOLDER).write_bytes(b"")
        names.append(INT8_PLACEHOLDER)
    onnx.save(variant, str(stage.file(MODEL_NAME)))
    return [*names, MODEL_NAME]


# --------------------------------------------------------------------------- CLI


def _class_ids(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(t) for t in re.split(r"[;,]", text) if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like '0' or '0;1', got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError(f"expected at least one class id, got {text!r}")
    return ids


@dataclass(frozen=True)
class DeepStreamTargetOptions:
    """The ``deepstream`` target's options: source, output directory, SGIE options, DeepStream target."""

    output: str
    onnx: Optional[str]
    checkpoint: Optional[str]
    sgie: SgieOptions
    target: Target
    calib: Optional[str] = None
    fidelity_data: Optional[str] = None
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)
    verbose: bool = False


class DeepStreamTarget(ExportTarget):
    name = "deepstream"
    prog = "python -m export.deepstream"
    description = __doc__.splitlines()[0]
    uses_calibration = True

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        src = p.add_mutually_exclusive_group()
        src.add_argument("--onnx", help="EmoNeXt ONNX from python -m export.onnx (or its Q/DQ INT8 from export.tensorrt)")
        src.add_argument("--checkpoint", help="EmoNeXt checkpoint (default with neither: seeded untrained EmoNeXt-Tiny)")
        p.add_argument("--output", default="exports/deepstream", help="output directory (default exports/deepstream)")
        tgt = p.add_mutually_exclusive_group()
        tgt.add_argument("--deepstream", choices=tuple(DEEPSTREAM_RELEASES),
                         help=f"target DeepStream release (default {DEFAULT_DEEPSTREAM}): decides the TensorRT version the "
                              "package must build on (6.2/6.3: TensorRT 8.5, opset 16)")
        tgt.add_argument("--trt-version", help="target TensorRT version instead of a DeepStream release, e.g. 8.5.2")
        p.add_argument("--gray", action="store_true", help="1-channel GRAY input (model-color-format=2) instead of RGB")
        p.add_argument("--gray-range", choices=tuple(GRAY_RANGES), default="full",
                       help="with --gray: 'limited' when the GRAY8 frames hold video-range luma 16..235 "
                            "(offsets=16, net-scale-factor=1/219); default full")
        p.add_argument("--batch", type=int, default=16, help="SGIE batch size: faces per batch (default 16)")
        p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp16",
                       help="network-mode of the SGIE engine nvinfer builds (default fp16; int8 needs --calib)")
        p.add_argument("--gie-id", type=int, default=2, help="gie-unique-id of the SGIE (default 2)")
        p.add_argument("--operate-on-gie-id", type=int, default=1, help="gie-unique-id of the face detector (default 1)")
        p.add_argument("--operate-on-class-ids", type=_class_ids, default=(0,), help="face class id(s), e.g. '0' or '0;1'")
        p.add_argument("--reinfer-interval", type=int, default=15,
                       help="re-classify tracked faces every N frames (default 15; nvinfer's default never does)")
        p.add_argument("--threshold", type=float, default=0.0, help="classifier-threshold (default 0: always label)")
        p.add_argument("--gpu-id", type=int, default=0, help="gpu-id of the SGIE (default 0)")

    def options(self, args: argparse.Namespace) -> DeepStreamTargetOptions:
        check_args(args, batch=positive_int, gie_id=positive_int, operate_on_gie_id=positive_int,
                   reinfer_interval=non_negative_int, threshold=finite_float, gpu_id=non_negative_int,
                   onnx=data_path, checkpoint=data_path, calib=data_path, fidelity_data=data_path)
        options = SgieOptions(gray=args.gray, gray_range=args.gray_range, batch=args.batch, precision=args.precision, gie_id=args.gie_id,
                              operate_on_gie_id=args.operate_on_gie_id, operate_on_class_ids=args.operate_on_class_ids,
                              reinfer_interval=args.reinfer_interval, threshold=args.threshold, gpu_id=args.gpu_id)
        for flag, value in (("--onnx", args.onnx), ("--checkpoint", args.checkpoint), ("--calib", args.calib)):
            if value is not None and not Path(value).exists():
                raise UsageError(f"{flag} {value}: no such file or directory")
        if args.onnx is None and args.checkpoint is None:
            print("note: neither --onnx nor --checkpoint given; exporting the seeded untrained EmoNeXt-Tiny")
        target = resolve_target(args.deepstream, args.trt_version)
        print(f"target: {target.label}{' (default; --deepstream for another)' if not (args.deepstream or args.trt_version) else ''}: "
              f"opset {target.plan.onnx_opset}, STN {target.plan.stn_mode}")
        return DeepStreamTargetOptions(args.output, args.onnx, args.checkpoint, options, target, args.calib,
                                       args.fidelity_data, gate_from_args(args), args.verbose)

    def output_dir(self, o: DeepStreamTargetOptions) -> Path:
        return Path(o.output)

    def build(self, o: DeepStreamTargetOptions, stage: Stage) -> Iterator[Candidate]:
        return _build(o, stage)

    def export(self, o: DeepStreamTargetOptions) -> DeepStreamExport:
        """The driver's loop (:func:`export.driver.run_build`), then what the CLI prints after it."""
        if o.onnx is not None and o.checkpoint is not None:
            raise UsageError("give either --onnx or --checkpoint, not both")
        if o.calib is not None and o.sgie.precision != "int8":
            raise UsageError("--calib only makes sense with --precision int8")
        ran = run_build(self, o)
        # the driver's result, typed for DeepStream (output directory, files, gate); no separate ``detail``
        result = DeepStreamExport(**{f.name: getattr(ran, f.name) for f in fields(ExportResult)}, output=Path(o.output))
        meta, lines = result.metadata, []
        if "int8_gate" in meta.source:
            lines.append(f"Q/DQ INT8 ONNX (made here from --calib) vs the FP32 ONNX: "
                         f"{gate_line(GateResult(**meta.source['int8_gate']))}")
        g = result.gate
        lines.append(f"verified {MODEL_NAME} (as nvinfer feeds it) vs {g.reference} on {g.data}: "
                     f"max |Δprob| {g.figures['max_abs_prob_diff']:.3g}, agreement {100 * g.figures['agreement']:.2f}%")
        if o.verbose:
            lines += [f"  {check}" for check in g.figures["checks"]]
        tgt = meta.extra["deepstream"]["target"]
        lines.append(f"{tgt['operator_check']}; engine {tgt['engine_precision']}; STN: {tgt['stn']}"
                     + (f" ({len(tgt['fp32_layers'])} layers)" if tgt["fp32_layers"] else ""))
        lines.append(f"wrote {', '.join(result.files)} in {result.output}")
        lines.append(f"engine: nvinfer builds and saves "
                     f"{engine_file_name(MODEL_NAME, o.sgie.batch, o.sgie.gpu_id, o.sgie.precision)} at its first start "
                     "on the device")
        lines.append(f"next, on the device: write your face detector's config_infer_primary_face.txt, then "
                     f"python3 {SAMPLE_APP} --uri file:///path/video.mp4 --pgie-config config_infer_primary_face.txt "
                     f"(fakesink; --sink file writes an MP4, x264enc on Orin Nano)")
        lines.append(f"fallback without the box rewrite (agreement {RAW_BOX_AGREEMENT}): deepstream-app -c {APP_CONFIG}")
        result.lines = [*result.lines, *lines]  # the driver's gate and "wrote" lines, then these
        return result


TARGET = DeepStreamTarget()
main = cli(TARGET)


def build_parser() -> argparse.ArgumentParser:
    return driver_parser(TARGET)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(None))
