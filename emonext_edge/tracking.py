"""Face identities across video frames and per-face temporal smoothing of probabilities.

:class:`FaceTracker` gives each face a stable integer id: detections are matched to the
live tracks greedily by IoU with the track's predicted box (constant velocity), then by
centre distance for faces that moved faster than their own size allows IoU to catch.
A track survives ``max_missed`` detection rounds without a match (a face the detector
missed once keeps its id); a detection matching no track starts a new id. Ids are never
reused. Between detection rounds :meth:`FaceTracker.predict` moves each box along its
velocity, so the classifier can be run on frames where the detector is skipped.

A predicted box is always one the detector could have produced: its width and height stay
within the range of the track's last detected sizes (a face that jumped from 273 to 76 px
is never extrapolated to 11 px), it moves at most one box size away from its last
detection, it is shifted (and, if larger than the frame, shrunk) to lie inside the frame,
and a track whose box would be smaller than ``min_side`` px is not shown on that frame.
A detection is matched by centre distance only to a track of similar size (at most
``max_size_ratio`` apart), so a jump in size starts a new track rather than bending an old one.

Smoothers keep one state per track id and take frame timestamps in seconds, so their
behaviour does not depend on the frame rate:

- :class:`ExponentialSmoother` (``half_life`` seconds): after a step change of the input,
  half of the old value is gone after ``half_life`` seconds, whatever the frame rate;
- :class:`WindowSmoother` (``window`` seconds): mean probabilities (``method="mean"``) or
  the vote share of each label (``method="mode"``, the majority label wins) over the
  frames of the last ``window`` seconds.

Pure numpy; no OpenCV needed here.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Protocol, Tuple, Union

import numpy as np

Box = Tuple[int, int, int, int]  # x, y, w, h in pixels
#: detections whose sizes bound a track's predicted size
SIZE_MEMORY = 3


def inside(box: Box, frame_size: tuple[int, int]) -> Box:
    """``box`` shifted into a ``(w, h)`` frame (and shrunk to the frame where it is larger)."""
    fw, fh = frame_size
    x, y, w, h = box
    w, h = min(w, fw), min(h, fh)
    return (min(max(x, 0), fw - w), min(max(y, 0), fh - h), w, h)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when either is empty)."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over time. ``box`` is the last detected (or predicted) box."""

    id: int
    box: Box
    last_time: float
    hits: int = 1
    missed: int = 0  # consecutive detection rounds without a match
    velocity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # d(x, y, w, h)/dt in px/s
    _state: np.ndarray = field(init=False, repr=False)
    _sizes: deque = field(init=False, repr=False)  # (w, h) of the last detections

    def __post_init__(self) -> None:
        self._state = np.asarray(self.box, dtype=np.float64)
        self._sizes = deque([self.box[2:4]], maxlen=SIZE_MEMORY)

    def predicted(self, t: float, frame_size: Optional[tuple[int, int]] = None) -> Box:
        """The box extrapolated to time ``t`` along the track's velocity, bounded as the module doc says.

        ``frame_size`` ``(w, h)``: also keep the box inside the frame."""
        dt = max(0.0, t - self.last_time)
        x0, y0, w0, h0 = self._state
        x, y, w, h = self._state + np.asarray(self.velocity) * dt
        widths, heights = [s[0] for s in self._sizes], [s[1] for s in self._sizes]
        w, h = min(max(w, min(widths), 1.0), max(widths)), min(max(h, min(heights), 1.0), max(heights))
        # at most one box size away from the last detection (its centre)
        reach = max(w0, h0)
        cx = min(max(x + w / 2, x0 + w0 / 2 - reach), x0 + w0 / 2 + reach)
        cy = min(max(y + h / 2, y0 + h0 / 2 - reach), y0 + h0 / 2 + reach)
        box = (round(cx - w / 2), round(cy - h / 2), max(1, round(w)), max(1, round(h)))
        return box if frame_size is None else inside(box, frame_size)

    def _observe(self, box: Box, t: float) -> None:
        self._sizes.append(box[2:4])
        self._observe_motion(box, t)

    def _observe_motion(self, box: Box, t: float) -> None:
        dt = t - self.last_time
        new = np.asarray(box, dtype=np.float64)
        if dt > 0:
            measured = (new - self._state) / dt
            # light smoothing of the velocity: one noisy detection must not fling the box away
            self.velocity = tuple(0.5 * measured + 0.5 * np.asarray(self.velocity))  # type: ignore[assignment]
        self._state, self.box, self.last_time = new, box, t
        self.hits += 1
        self.missed = 0


class FaceTracker:
    """Stable ids for face boxes across frames.

    ``iou_threshold``: smallest IoU between a detection and a track's predicted box for a
    match; ``max_distance``: else the largest centre distance, as a fraction of the
    track's box size, for a detection at most ``max_size_ratio`` times larger or smaller
    than the track's box; ``max_missed``: detection rounds a track survives unmatched;
    ``min_side``: a predicted box smaller than this (px) is not shown (it could not be classified).
    """

    def __init__(
        self, iou_threshold: float = 0.3, max_distance: float = 0.6, max_missed: int = 3,
        max_size_ratio: float = 1.5, min_side: int = 16,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {max_distance}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if not max_size_ratio >= 1.0:
            raise ValueError(f"max_size_ratio must be >= 1, got {max_size_ratio}")
        if min_side < 1:
            raise ValueError(f"min_side must be >= 1 px, got {min_side}")
        self.max_size_ratio, self.min_side = float(max_size_ratio), int(min_side)
        self.iou_threshold = iou_threshold
        self.max_distance = max_distance
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1
        self.forgotten: list[int] = []  # ids dropped by the last update (for per-track state)

    def update(self, boxes: list[Box], t: float) -> list[Track]:
        """Match this frame's detections; returns the tracks seen in it (sorted by id)."""
        predicted = [track.predicted(t) for track in self.tracks]
        pairs = sorted(
            ((iou(p, b), ti, bi) for ti, p in enumerate(predicted) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        matched_t: dict[int, int] = {}
        used_b: set[int] = set()
        for score, ti, bi in pairs:
            if score < self.iou_threshold:
                break
            if ti not in matched_t and bi not in used_b:
                matched_t[ti] = bi
                used_b.add(bi)
        # centre distance for what IoU left unmatched (fast motion, box size jitter)
        far = []
        for ti, p in enumerate(predicted):
            if ti in matched_t:
                continue
            size = max(p[2], p[3])
            for bi, b in enumerate(boxes):
                if bi in used_b or not _similar_size(p, b, self.max_size_ratio):
                    continue
                d = math.hypot(p[0] + p[2] / 2 - b[0] - b[2] / 2, p[1] + p[3] / 2 - b[1] - b[3] / 2)
                if d <= self.max_distance * size:
                    far.append((d / size, ti, bi))
        for _, ti, bi in sorted(far):
            if ti not in matched_t and bi not in used_b:
                matched_t[ti] = bi
                used_b.add(bi)
        kept: list[Track] = []
        self.forgotten = []
        for ti, track in enumerate(self.tracks):
            if ti in matched_t:
                track._observe(tuple(int(v) for v in boxes[matched_t[ti]]), t)  # type: ignore[arg-type]
                kept.append(track)
            else:
                track.missed += 1
                if track.missed <= self.max_missed:
                    kept.append(track)
                else:
                    self.forgotten.append(track.id)
        for bi, box in enumerate(boxes):
            if bi not in used_b:
                kept.append(Track(self._next_id, tuple(int(v) for v in box), t))  # type: ignore[arg-type]
                self._next_id += 1
        self.tracks = kept
        return self.visible()

    def visible(self) -> list[Track]:
        """Tracks matched in the last detection round, sorted by id."""
        return sorted((track for track in self.tracks if track.missed == 0), key=lambda track: track.id)

    def predict(self, t: float, frame_size: Optional[tuple[int, int]] = None) -> list[tuple[Track, Box]]:
        """Visible tracks with their boxes moved to time ``t`` (for frames without detection).

        With ``frame_size`` ``(w, h)`` the boxes are kept inside the frame and a track whose
        box would be smaller than ``min_side`` there is left out of this frame."""
        placed = [(track, track.predicted(t, frame_size)) for track in self.visible()]
        return [(track, box) for track, box in placed if min(box[2], box[3]) >= self.min_side]

    def reset(self) -> None:
        self.tracks, self.forgotten = [], []


def _similar_size(a: Box, b: Box, ratio: float) -> bool:
    sa, sb = max(a[2], a[3], 1), max(b[2], b[3], 1)
    return max(sa, sb) <= ratio * min(sa, sb)


class Smoother(Protocol):
    """Per-track temporal filter of probability vectors."""

    def update(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray: ...

    def forget(self, track_id: int) -> None: ...


class NoSmoothing:
    """Smoothing off: the raw probabilities."""

    def update(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray:
        return np.asarray(probs, dtype=np.float64)

    def forget(self, track_id: int) -> None:
        pass

    def __repr__(self) -> str:
        return "NoSmoothing()"


class ExponentialSmoother:
    """Exponential moving average with a half-life in seconds (frame-rate independent).

    On a frame ``dt`` seconds after the previous one of the same track the state moves
    towards the new probabilities by ``alpha = 1 - 0.5 ** (dt / half_life)``: two frames at
    15 FPS weigh exactly as much as four at 30 FPS. The first frame of a track is taken
    as is. A swap between two equally confident predictions flips the smoothed label
    after at most ``half_life`` seconds; a less confident new expression takes longer.
    """

    def __init__(self, half_life: float) -> None:
        if not (half_life > 0 and math.isfinite(half_life)):
            raise ValueError(f"half_life must be a positive number of seconds, got {half_life}")
        self.half_life = float(half_life)
        self._state: dict[int, tuple[np.ndarray, float]] = {}

    def update(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        previous = self._state.get(track_id)
        if previous is None:
            state = p.copy()
        else:
            value, last = previous
            alpha = 1.0 - 0.5 ** (max(0.0, t - last) / self.half_life)
            state = value + alpha * (p - value)
        self._state[track_id] = (state, t)
        return state.copy()

    def forget(self, track_id: int) -> None:
        self._state.pop(track_id, None)

    def __repr__(self) -> str:
        return f"ExponentialSmoother(half_life={self.half_life})"


class WindowSmoother:
    """Mean probabilities (``"mean"``) or label vote shares (``"mode"``) over the last ``window`` seconds."""

    def __init__(self, window: float, method: str = "mean") -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a positive number of seconds, got {window}")
        if method not in ("mean", "mode"):
            raise ValueError(f"method must be 'mean' or 'mode', got {method!r}")
        self.window, self.method = float(window), method
        self._history: dict[int, deque[tuple[float, np.ndarray]]] = {}

    def update(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        history = self._history.setdefault(track_id, deque())
        history.append((t, p))
        while history and history[0][0] <= t - self.window:
            history.popleft()
        stacked = np.stack([q for _, q in history])
        if self.method == "mean":
            return stacked.mean(axis=0)
        votes = np.bincount(stacked.argmax(axis=1), minlength=stacked.shape[1]).astype(np.float64)
        return votes / votes.sum()

    def forget(self, track_id: int) -> None:
        self._history.pop(track_id, None)

    def __repr__(self) -> str:
        return f"WindowSmoother(window={self.window}, method={self.method!r})"


SmoothingSpec = Union[None, float, int, Smoother]


def make_smoother(spec: SmoothingSpec) -> Smoother:
    """``None`` or ``0`` -> off; a number -> :class:`ExponentialSmoother` half-life in seconds; a smoother as is."""
    if spec is None or (isinstance(spec, (int, float)) and not isinstance(spec, bool) and spec == 0):
        return NoSmoothing()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if spec < 0 or not math.isfinite(spec):
            raise ValueError(f"smoothing: expected a half-life in seconds >= 0 (0 = off), got {spec}")
        return ExponentialSmoother(float(spec))
    if hasattr(spec, "update") and hasattr(spec, "forget"):
        return spec
    raise ValueError(f"smoothing: expected None, a half-life in seconds or a smoother object, got {spec!r}")


__all__ = [
    "ExponentialSmoother", "FaceTracker", "NoSmoothing", "Smoother", "SmoothingSpec", "Track",
    "WindowSmoother", "inside", "iou", "make_smoother",
]
