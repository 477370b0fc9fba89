"""Drawing faces on frames: one colour per emotion, track ids, label boxes inside the frame that do not overlap.

:func:`layout_labels` is the pure placement step (testable without drawing): each label
goes above its face box if it fits, else below, else inside the top of the box, shifted
left/right to stay inside the frame; a label that would overlap one placed before it is
moved down (then up) in label-height steps until it is free.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Tuple

import numpy as np

from .opencv import import_cv2

Rect = Tuple[int, int, int, int]  # x, y, w, h

# BGR, one per FER2013 emotion; chosen to be told apart on video (and by most colour-blind viewers: hue + brightness)
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "Angry": (40, 40, 230),      # red
    "Disgust": (40, 160, 40),    # green
    "Fear": (170, 60, 150),      # purple
    "Happy": (0, 215, 255),      # yellow
    "Neutral": (190, 190, 190),  # light grey
    "Sad": (230, 120, 30),       # blue
    "Surprise": (0, 140, 255),   # orange
}
FONT_SCALE = 0.5
THICKNESS = 1
PAD = 3


def color_for(label: str) -> tuple[int, int, int]:
    """The label's colour (a stable colour derived from the name for labels outside FER2013; grey for unknown)."""
    if label == "unknown":  # a face whose crop could not be classified (emonext_edge.stream.SkippedFace)
        return (160, 160, 160)
    if label in EMOTION_COLORS:
        return EMOTION_COLORS[label]
    h = zlib.crc32(label.encode())
    return (64 + h % 160, 64 + (h >> 8) % 160, 64 + (h >> 16) % 160)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def layout_labels(boxes: Sequence[Rect], sizes: Sequence[tuple[int, int]], frame_size: tuple[int, int]) -> list[Rect]:
    """Rectangles for labels of ``sizes`` (w, h) attached to ``boxes`` in a frame of ``frame_size`` (w, h).

    Every rectangle lies inside the frame (when the label fits in it at all) and, as far
    as the frame has room, overlaps no other label rectangle.
    """
    fw, fh = frame_size
    placed: list[Rect] = []
    for (x, y, w, h), (lw, lh) in zip(boxes, sizes):
        lw, lh = min(lw, fw), min(lh, fh)
        lx = min(max(0, x), fw - lw)
        if y - lh >= 0:
            start = y - lh          # above the box
        elif y + h + lh <= fh:
            start = y + h           # below the box
        else:
            start = max(0, y)       # inside the top of the box
        start = min(max(0, start), fh - lh)
        candidates = [start]
        for k in range(1, fh // max(lh, 1) + 1):  # then down and up, nearest first
            candidates += [start + k * lh, start - k * lh]
        rect = (lx, start, lw, lh)
        for ly in candidates:
            if 0 <= ly <= fh - lh and not any(_overlaps((lx, ly, lw, lh), p) for p in placed):
                rect = (lx, ly, lw, lh)
                break
        placed.append(rect)
    return placed


def label_text(face: Any) -> str:
    """``#id Label score``; ``#id unknown`` for a face without a score (a crop that could not be classified)."""
    return f"#{face.id} {face.label}" if face.score is None else f"#{face.id} {face.label} {face.score:.2f}"


def draw_faces(frame: np.ndarray, faces: Sequence[Any], fps: float | None = None) -> np.ndarray:
    """Draw each face's box and ``#id Label score`` in the label's colour onto ``frame`` (in place).

    ``faces``: objects with ``id``, ``box``, ``label``, ``score`` (:class:`~emonext_edge.stream.TrackResult`).
    """
    cv2 = import_cv2()

    fh, fw = frame.shape[:2]
    texts = [label_text(face) for face in faces]
    sizes = []
    for text in texts:
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, THICKNESS)
        sizes.append((tw + 2 * PAD, th + base + 2 * PAD))
    rects = layout_labels([tuple(face.box) for face in faces], sizes, (fw, fh))
    for face, text, (lx, ly, lw, lh) in zip(faces, texts, rects):
        color = color_for(face.label)
        x, y, w, h = face.box
        cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), color, 2)
        cv2.rectangle(frame, (lx, ly), (lx + lw - 1, ly + lh - 1), color, cv2.FILLED)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(frame, text, (lx + PAD, ly + lh - PAD - 3), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, ink, THICKNESS, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(frame, f"{fps:.1f} FPS", (8, fh - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return frame


__all__ = ["EMOTION_COLORS", "color_for", "draw_faces", "label_text", "layout_labels"]
