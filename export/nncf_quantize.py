"""NNCF post-training INT8 of an OpenVINO model with the whole STN kept in floating point.

The calibration data is wrapped once with a transform; the quantization options
(preset, model type, subset size, SmoothQuant, ignored scope) are spelled out where
``nncf.quantize`` is called, so a reader sees what stays in floating point and why. The
ignored scope is the STN as :mod:`export.stn_scope` defines it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from calibration.calib_file import DEFAULT_CALIBRATION_SIZE
from emonext_edge.errors import ExportError, UsageError
from emonext_edge.preprocess import INPUT_SHAPE

from .nncf_output import nncf_on_stderr
from .stn_scope import ov_stn_node_names as stn_node_names

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class QuantizeOptions:
    """NNCF PTQ options, spelled out where ``nncf.quantize`` is called.

    Defaults chosen by measured FER2013 val accuracy (reference atto model, INT8 IR vs FP32
    IR) and batch-1 latency (EmoNeXt-Tiny, 2 threads, INFERENCE_PRECISION_HINT f32):

    * ``model_type=None`` (NNCF "CNN" defaults) is the fastest (every eltwise, the
      LayerNorm inputs and the transposes run in int8) but flips ~5 % of the top-1
      predictions (agreement ~95 %): quantizing the LayerNorm inputs and residual adds of
      ConvNeXt is what hurts.
    * ``model_type="transformer"`` keeps those in float -> agreement > 99 %, drop ≤ 0.2 pp;
      the price is float eltwise + reorders between int8 and float layers, which is why
      NNCF-quantized ConvNeXt is often "barely faster" than FP32/bf16.
    * SmoothQuant (alpha 0.95, the transformer default) on the official channels_last graph
      adds a float Multiply in front of every pointwise MatMul: full FER2013 val drop
      0.06 pp / agreement 99.69 % vs 0.17 pp / 99.30 % without, but ~15 % slower at batch 1.
      On the channels_first graph (pointwise Convolutions) it measured 0.03 pp / 99.75 % vs
      0.17 pp / 99.33 % without, at no measurable latency cost (Tiny, batch 1: 11.3 vs 11.2
      ms median, twice). It stays off by default (``smooth_quant_alpha=-1``) because NNCF 3.4's
      SmoothQuant ignores the ignored scope: it inserts float scaling Multiplies into the STN
      (its input, fc_loc and the grid MatMul). They are float and exact up to rounding, not
      quantization, but the default keeps the STN as exported. ``--smooth-quant 0.95`` turns
      it on for MatMuls and Convolutions.

    The figures without SmoothQuant are the same on both graphs. The channels_first graph
    exported from checkpoints runs 15.5 -> 11.8 ms (Tiny, batch 1, same run).
    """

    preset: str = "performance"  # "performance" (symmetric) | "mixed" (asymmetric activations)
    model_type: Optional[str] = "transformer"  # None | "transformer"
    fast_bias_correction: bool = True
    subset_size: int = DEFAULT_CALIBRATION_SIZE
    #: SmoothQuant alpha for MatMuls and Convolutions (None: NNCF default for the model type; -1 disables)
    smooth_quant_alpha: Optional[float] = -1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def fake_quantize_feeding(model: Any, names: Iterable[str]) -> list[str]:
    """``FakeQuantize`` nodes whose output reaches one of ``names`` directly or through weight converts."""
    targets = set(names)
    hits = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        frontier = [op]
        while frontier:
            node = frontier.pop()
            for out in node.outputs():
                for port in out.get_target_inputs():
                    consumer = port.get_node()
                    if consumer.get_friendly_name() in targets:
                        hits.append(op.get_friendly_name())
                    elif consumer.get_type_name() in ("Convert", "Reshape", "Transpose"):
                        frontier.append(consumer)
    return sorted(set(hits))



def _check_batch(images: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise UsageError(f"{where}: expected a numpy array, got {type(images).__name__}")
    if images.ndim != 4 or tuple(images.shape[1:]) != INPUT_SHAPE:
        raise UsageError(
            f"{where}: calibration tensor has shape {list(images.shape)}, expected [N, {', '.join(map(str, INPUT_SHAPE))}] "
            "(preprocessed float32 faces)"
        )
    if images.shape[0] == 0:
        raise UsageError(f"{where}: calibration set is empty (0 images)")
    if not np.issubdtype(images.dtype, np.floating):
        raise UsageError(f"{where}: calibration tensor has dtype {images.dtype}, expected float32")
    if not np.isfinite(images).all():
        raise UsageError(f"{where}: calibration tensor contains NaN or infinite values")
    return np.ascontiguousarray(images, dtype=np.float32)


def load_calibration_images(source: Any, num: int = DEFAULT_CALIBRATION_SIZE, seed: int = 0,
                            option: str = "--subset-size") -> tuple[np.ndarray, str]:
    """Calibration batch float32 ``[N, *INPUT_SHAPE]`` and a description.

    ``source``: an array, a ``calib.npz`` (``python -m calibration build``) or a data path
    (FER2013 tree, Kaggle CSV, folder of faces, video), through ``calibration.load_calibration``.
    """
    if source is None:
        raise UsageError("INT8 needs calibration data: give --calib calib.npz or --calib-data PATH")
    if isinstance(source, np.ndarray):
        return _check_batch(source, "calibration array"), f"{len(source)} given calibration images"
    from calibration import load_calibration

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such calibration file or data folder")
    if path.suffix.lower() == ".npz":
        from calibration import read_calibration

        available = read_calibration(path)[0].shape[0]
        num = min(num, available)
    images = load_calibration(path, num=num, seed=seed, option=option)
    return _check_batch(np.asarray(images), str(path)), f"{len(images)} calibration images from {path}"


def load_validation(path: str | os.PathLike, limit: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Labelled validation images (preprocessed float32) and labels from a FER2013 tree or CSV (val split)."""
    from calibration import load_labeled
    from emonext_edge.preprocess import preprocess

    items, labels = load_labeled(path, split="val", limit=limit)
    return preprocess(list(items)), np.asarray(labels)


def _nncf_dataset(images: np.ndarray, what: str) -> Any:
    import nncf

    total = len(images)
    step = max(1, total // 10)

    def transform(index: int) -> np.ndarray:
        if index % step == 0 or index == total - 1:
            log.info("  %s: image %d/%d", what, index + 1, total)
        return images[index: index + 1]

    return nncf.Dataset(range(total), transform)


@nncf_on_stderr("NNCF INT8 quantization")  # bars and log lines on stderr, progress every few seconds
def quantize_int8(
    fp32_model: Any,
    calib: np.ndarray,
    options: QuantizeOptions = QuantizeOptions(),
    *,
    val: Optional[tuple[np.ndarray, np.ndarray]] = None,
    max_drop_pp: Optional[float] = None,
) -> Any:
    """NNCF INT8 PTQ of ``fp32_model`` with the whole STN kept in floating point.

    With ``val`` (images, labels) and ``max_drop_pp``: ``nncf.quantize_with_accuracy_control``,
    which reverts the most harmful layers to float until the top-1 drop on ``val`` is within bounds.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from .pipeline import interruptible

    if not log.isEnabledFor(logging.INFO):
        nncf.set_log_level(logging.WARNING)  # its per-node "Not adding ..." INFO lines, unless asked for details

    calib = _check_batch(calib, "calibration array")
    stn = stn_node_names(fp32_model)
    ignored = nncf.IgnoredScope(names=stn, validate=True)  # fails loudly if the graph changed
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}[options.preset]
    model_type = nncf.ModelType.TRANSFORMER if options.model_type == "transformer" else None
    advanced = AdvancedQuantizationParameters()
    if options.smooth_quant_alpha is not None:
        # the pointwise layers are MatMuls in channels_last graphs and 1x1 Convolutions in
        # channels_first ones: the alpha applies to whichever the graph has
        alpha = options.smooth_quant_alpha
        advanced = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha, convolution=alpha)
        )
    subset = min(options.subset_size, len(calib))
    log.info(
        "NNCF INT8: %d calibration images, preset=%s, model_type=%s, fast_bias_correction=%s, "
        "SmoothQuant alpha=%s, %d STN nodes kept in float",
        subset, options.preset, options.model_type, options.fast_bias_correction, options.smooth_quant_alpha, len(stn),
    )
    started = time.perf_counter()
    with interruptible("NNCF INT8 quantization"):  # Ctrl-C: exit 130, even if NNCF swallows it in a worker
        quantized = _quantize(nncf, fp32_model, calib, val, max_drop_pp, preset, subset, options, model_type,
                              ignored, advanced)
    leaked = fake_quantize_feeding(quantized, stn)
    if leaked:
        raise ExportError(f"INT8 quantization put FakeQuantize nodes into the STN: {leaked[:5]}")
    log.info("NNCF INT8 done in %.1f s", time.perf_counter() - started)
    return quantized


def _quantize(nncf: Any, fp32_model: Any, calib: np.ndarray, val: Optional[tuple[np.ndarray, np.ndarray]],
              max_drop_pp: Optional[float], preset: Any, subset: int, options: QuantizeOptions, model_type: Any,
              ignored: Any, advanced: Any) -> Any:
    """The ``nncf.quantize`` / ``quantize_with_accuracy_control`` call, options spelled out."""
    if val is not None and max_drop_pp is not None:
        val_images, val_labels = val
        val_images = _check_batch(val_images, "validation array")

        def validate(compiled: Any, indices: Iterable[int]) -> tuple[float, list[float]]:
            hits = []
            for i in indices:
                out = compiled(val_images[i: i + 1])[0]
                hits.append(float(np.argmax(out) == val_labels[i]))
            return float(np.mean(hits)), hits

        quantized = nncf.quantize_with_accuracy_control(
            fp32_model,
            _nncf_dataset(calib, "calibration"),
            nncf.Dataset(range(len(val_images)), lambda i: val_images[i: i + 1]),
            validate,
            max_drop=max_drop_pp / 100.0,
            preset=preset,
            subset_size=subset,
            fast_bias_correction=options.fast_bias_correction,
            model_type=model_type,
            ignored_scope=ignored,
            advanced_quantization_parameters=advanced,
        )
    else:
        quantized = nncf.quantize(
            fp32_model,
            _nncf_dataset(calib, "calibration"),
            preset=preset,
            subset_size=subset,
            fast_bias_correction=options.fast_bias_correction,
            model_type=model_type,
            ignored_scope=ignored,
            advanced_parameters=advanced,
        )
    return quantized
