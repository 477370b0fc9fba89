"""Face-box rewrite for EmoNeXt as a DeepStream secondary classifier (pure Python arithmetic, no torch).

``nvinfer`` (and ``nvdspreprocess``) feed a secondary classifier by scaling the object's box
straight to the network size (224x224): no "shorter side to 236, centre crop 224" as EmoNeXt
was trained. Rewriting the box, before the SGIE, to the centred square that
``Resize(236) + CenterCrop(224)`` would have kept gives nvinfer the training geometry; the
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

#: nvinfer skips objects smaller than this (gstnvinfer.cpp MIN_INPUT_OBJECT_WIDTH/HEIGHT)
NVINFER_MIN_OBJECT_SIZE = 16
#: the fraction of the shorter side that Resize(236) + CenterCrop(224) keeps
TRAINING_CROP_RATIO = 224.0 / 236.0
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
                strategy: str = DEFAULT_STRATEGY) -> IntBox:
    """The box to hand nvinfer instead of the detector's ``(left, top, width, height)``.

    * ``"center_square"`` (default): the square of side ``min(width, height) * 224/236`` centred on
      the box — what ``Resize(236) + CenterCrop(224)`` keeps of the box, i.e. the training crop;
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
        side = min(width, height) * (TRAINING_CROP_RATIO if strategy == "center_square" else 1.0)
        side = min(side, float(int(frame_width) & ~1), float(int(frame_height) & ~1))
        w = h = side
    else:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    cx, cy = left + width / 2.0, top + height / 2.0
    x, w_even = _even_edges(cx - w / 2.0, w, int(frame_width))
    y, h_even = _even_edges(cy - h / 2.0, h, int(frame_height))
    return x, y, w_even, h_even


def rewrite_object_meta(obj_meta: Any, frame_width: int, frame_height: int,
                        strategy: str = DEFAULT_STRATEGY) -> bool:
    """Rewrite ``obj_meta.rect_params`` (a ``pyds.NvDsObjectMeta``) in place; ``False`` when nvinfer
    would skip the rewritten object anyway (below 16 px), in which case nothing is changed.

    The detector's box stays available in ``obj_meta.detector_bbox_info`` (and the tracker's in
    ``tracker_bbox_info``) to restore it for display after the SGIE.
    """
    rect = obj_meta.rect_params
    box = rewrite_box(float(rect.left), float(rect.top), float(rect.width), float(rect.height),
                      frame_width, frame_height, strategy)
    if box[2] < NVINFER_MIN_OBJECT_SIZE or box[3] < NVINFER_MIN_OBJECT_SIZE:
        return False
    rect.left, rect.top, rect.width, rect.height = (float(v) for v in box)
    return True
