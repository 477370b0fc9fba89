"""Face-box rewrite for EmoNeXt as a DeepStream secondary classifier (pure Python arithmetic, no torch).

``nvinfer`` (and ``nvdspreprocess``) feed a secondary classifier by scaling the object's box
straight to the network size (the spec's crop size, square): no "shorter side to the spec's
resize, centre crop" as EmoNeXt was trained. Rewriting the box, before the SGIE, to the centred
square that ``Resize + CenterCrop`` would have kept (:attr:`PreprocessSpec.crop_ratio` of the
shorter side) gives nvinfer the training geometry; the
measured effect of each choice is in the README ("DeepStream" section, produced by
``benchmarks/deepstream_preprocess.py``).

What nvinfer does with a box (DeepStream 6.2 ``gstnvinfer.cpp``, read from the source):

* ``should_infer_object``: objects whose *unrounded* width or height is below 16 px
  (``MIN_INPUT_OBJECT_WIDTH/HEIGHT``, or a larger ``input-object-min-width/height``) are skipped;
* ``get_converted_buffer``: ``left``/``top`` are truncated to integers and rounded *up* to even
  (``GST_ROUND_UP_2``), ``width``/``height`` truncated and rounded *down* to even
  (``GST_ROUND_DOWN_2``); that rectangle is scaled to the network size with ``scaling-filter``;
* the box is not clamped to the frame: a box must already lie inside it.

:func:`rewrite_box` returns a box whose corners are even integers inside the frame, so
nvinfer's rounding leaves it unchanged. Use it from a pad probe upstream of the SGIE
(:func:`rewrite_object_meta` works on a ``pyds.NvDsObjectMeta``); see the README for the probe.

This module is part of the on-device library: it imports neither torch nor the exporters.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

from .preprocess import SPEC, PreprocessSpec

#: nvinfer skips objects smaller than this (gstnvinfer.cpp MIN_INPUT_OBJECT_WIDTH/HEIGHT)
NVINFER_MIN_OBJECT_SIZE = 16
#: the fraction of the shorter side that the spec's Resize + CenterCrop keeps
TRAINING_CROP_RATIO = SPEC.crop_ratio
#: video-range ("limited", BT.601 studio swing) luma: black and white levels of 8-bit GRAY8 frames
LIMITED_RANGE = (16, 235)
#: how GRAY8 frames hold luma: ``full`` 0..255 (what PIL's convert('L') gives), ``limited`` 16..235
GRAY_RANGES = ("full", "limited")


def nvinfer_scale_offset(spec: PreprocessSpec = SPEC, gray_range: str = "full") -> tuple[float, float]:
    """nvinfer's ``(net-scale-factor, offsets)`` for ``spec``: nvinfer computes
    ``net-scale-factor * (x - offsets)``, the spec ``scale * (x - offset)`` on full-range 8-bit values.
    ``limited``: ``x`` holds video-range luma, ``full = (x - 16) * 255 / 219``, so the factor grows by
    255/219 and the offset becomes ``16 + offset * 219 / 255`` (1/219 and 16 for the trained spec)."""
    if gray_range == "full":
        return spec.scale, spec.offset
    if gray_range == "limited":
        black, white = LIMITED_RANGE
        span = white - black
        return spec.scale * 255 / span, black + spec.offset * span / 255
    raise ValueError(f"gray_range must be one of {', '.join(GRAY_RANGES)}, got {gray_range!r}")
#: box rewrites :func:`rewrite_box` knows; ``DEFAULT_STRATEGY`` is the measured best
STRATEGIES = ("raw", "center_square", "center_square_full")
DEFAULT_STRATEGY = "center_square"

Box = Tuple[float, float, float, float]  # left, top, width, height (NvOSD_RectParams order)
IntBox = Tuple[int, int, int, int]


def _round_up_2(value: float) -> int:
    v = int(value)  # (unsigned int) cast in gstnvinfer.cpp: truncation (boxes are >= 0)
    return (v + 1) & ~1


def _round_down_2(value: float) -> int:
    return int(value) & ~1


def nvinfer_crop(left: float, top: float, width: float, height: float, *,
                 min_size: int = NVINFER_MIN_OBJECT_SIZE) -> Optional[IntBox]:
    """The source rectangle nvinfer scales to the network input for this object box, or ``None``
    when nvinfer skips the object (width or height below ``min_size``)."""
    if width < min_size or height < min_size:
        return None
    return _round_up_2(left), _round_up_2(top), _round_down_2(width), _round_down_2(height)


def _check_box(left: float, top: float, width: float, height: float, frame_width: int, frame_height: int) -> None:
    values = (left, top, width, height, frame_width, frame_height)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"box {values[:4]} in a {frame_width}x{frame_height} frame: expected finite numbers")
    if width <= 0 or height <= 0:
        raise ValueError(f"box {values[:4]}: width and height must be positive")
    if frame_width < 2 or frame_height < 2:
        raise ValueError(f"frame {frame_width}x{frame_height}: expected at least 2x2 pixels")


def _even(value: float) -> int:
    return math.floor(value / 2.0 + 0.5) * 2


def _even_edges(start: float, length: float, limit: int) -> tuple[int, int]:
    """Even ``(first, size)`` whose edges are the nearest even pixels to ``start`` and ``start + length``
    (each edge off by at most 1 px), at least 2 px, moved inwards to lie inside ``[0, limit)``."""
    first, last = _even(start), _even(start + length)
    size = min(max(last - first, 2), limit & ~1)
    first = min(max(first, 0), (limit - size) & ~1)
    return first, size


def rewrite_box(left: float, top: float, width: float, height: float, frame_width: int, frame_height: int,
                strategy: str = DEFAULT_STRATEGY, crop_ratio: float = TRAINING_CROP_RATIO) -> IntBox:
    """The box to hand nvinfer instead of the detector's ``(left, top, width, height)``.

    * ``"center_square"`` (default): the square of side ``min(width, height) * crop_ratio`` centred on
      the box — what the spec's ``Resize + CenterCrop`` keeps of the box (``crop_ratio``: the
      SGIE's :attr:`PreprocessSpec.crop_ratio`, :data:`TRAINING_CROP_RATIO` for the trained spec), i.e. the training crop;
    * ``"center_square_full"``: the centred square of side ``min(width, height)``;
    * ``"raw"``: the box itself.

    Every edge is moved to the nearest even pixel (at most 1 px), so nvinfer's rounding leaves the
    box unchanged and the box stays within 1 px of the exact one (a square may come out 2 px wider
    than tall or the reverse). A box reaching outside the frame is shifted inwards, keeping its
    size; it is shrunk (to a square, for the square strategies) only when larger than the frame.
    """
    _check_box(left, top, width, height, frame_width, frame_height)
    if strategy == "raw":
        w, h = float(width), float(height)
    elif strategy in ("center_square", "center_square_full"):
        side = min(width, height) * (crop_ratio if strategy == "center_square" else 1.0)
        side = min(side, float(int(frame_width) & ~1), float(int(frame_height) & ~1))
        w = h = side
    else:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    cx, cy = left + width / 2.0, top + height / 2.0
    x, w_even = _even_edges(cx - w / 2.0, w, int(frame_width))
    y, h_even = _even_edges(cy - h / 2.0, h, int(frame_height))
    return x, y, w_even, h_even


def rewrite_object_meta(obj_meta: Any, frame_width: int, frame_height: int,
                        strategy: str = DEFAULT_STRATEGY, crop_ratio: float = TRAINING_CROP_RATIO) -> bool:
    """Rewrite ``obj_meta.rect_params`` (a ``pyds.NvDsObjectMeta``) in place; ``False`` when nvinfer
    would skip the rewritten object anyway (below 16 px), in which case nothing is changed.

    The detector's box stays available in ``obj_meta.detector_bbox_info`` (and the tracker's in
    ``tracker_bbox_info``) to restore it for display after the SGIE.
    """
    rect = obj_meta.rect_params
    box = rewrite_box(float(rect.left), float(rect.top), float(rect.width), float(rect.height),
                      frame_width, frame_height, strategy, crop_ratio)
    if box[2] < NVINFER_MIN_OBJECT_SIZE or box[3] < NVINFER_MIN_OBJECT_SIZE:
        return False
    rect.left, rect.top, rect.width, rect.height = (float(v) for v in box)
    return True
