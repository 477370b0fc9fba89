"""Faces in video: capture thread, detection every N frames, tracking, one batch per frame, smoothing.

    with Runtime("emonext_int8.xml", batch=1) as rt:
        for result in rt.stream("clip.mp4", detect_every=3, smoothing=0.5):
            for face in result.faces:
                print(result.index, result.time, face.id, face.box, face.label, face.probs)

Pipeline (see :class:`VideoStream`):

- **capture** runs in its own thread. A *live* source (camera index, stream URL, or
  ``live=True``) always hands over the newest frame: frames the consumer was too slow
  for are dropped and counted (``VideoStream.dropped``; frame indices then have gaps).
  A file is read completely, in order, a few frames ahead.
- **detect** runs on every ``detect_every``-th processed frame; in between,
  :class:`~emonext_edge.tracking.FaceTracker` moves each face's box along its velocity.
- **preprocess + infer**: the crops of all faces of a frame go through the backend as
  one batch; then per-track smoothing (:mod:`emonext_edge.tracking`).
- **draw** (``draw=True``): the frame is annotated in place (:mod:`emonext_edge.annotate`).

Each :class:`FrameResult` carries the per-stage times of its frame in milliseconds
(``decode``, ``detect``, ``preprocess``, ``infer``, ``draw``).

Time stamps: a file's frames are stamped with their position in the video (index /
frame rate); live frames with the wall-clock time since capture started. Smoothing uses
these, so a file gives the same results however fast this machine is.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union
from typing import Iterable as _Iterable  # subscripted at run time: typing's, for Python 3.8

import numpy as np

from .errors import EmoNeXtError, ImageError, VideoSourceError
from .faces import Box, crop_face, detect_faces
from .opencv import import_cv2
from .scores import softmax
from .sources import open_planned, plan_source, probe
from .tracking import FaceTracker, SmoothingSpec, make_smoother

if TYPE_CHECKING:
    from .preprocess import PreprocessSpec

log = logging.getLogger(__name__)


class Classifier(Protocol):
    """What a stream needs of its model: labels, the preprocessing ``spec`` its input follows and
    ``run`` (float32 ``[N, *spec.input_shape]`` -> logits). :class:`emonext_edge.Runtime` is one;
    this module never imports it (no runtime <-> stream cycle)."""

    labels: tuple[str, ...]
    spec: PreprocessSpec

    def run(self, batch: np.ndarray) -> np.ndarray: ...

STAGES = ("decode", "detect", "preprocess", "infer", "draw")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
SourceSpec = Union[str, int, os.PathLike, _Iterable[np.ndarray], Any]


# -- results ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackResult:
    """One face on one frame: track id, ``(x, y, w, h)`` box, raw and smoothed probabilities.

    ``label`` / ``score`` are the top entry of the smoothed ``probs`` (equal to the raw
    ones when smoothing is off). ``detected``: the box comes from a detection on this
    frame (else the tracker carried it from the last detection).
    """

    id: int
    box: Box
    label: str
    score: float
    probs: dict[str, float]
    raw_probs: dict[str, float] = field(repr=False)
    detected: bool = True

    @property
    def raw_label(self) -> str:
        return max(self.raw_probs, key=self.raw_probs.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        return {
            "track": self.id, "box": list(self.box), "label": self.label, "score": round(self.score, 6),
            "probs": {k: round(v, 6) for k, v in self.probs.items()}, "detected": self.detected,
        }


@dataclass(frozen=True)
class SkippedFace:
    """A face seen on a frame whose crop could not be classified (e.g. too small): not in
    ``faces``, drawn as ``#id unknown``; ``reason`` says why. Counted in ``VideoStream.skipped``."""

    id: int
    box: Box
    reason: str
    label: str = "unknown"
    score: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return {"track": self.id, "box": list(self.box), "reason": self.reason}


@dataclass(frozen=True)
class FrameResult:
    """Everything known about one processed frame.

    ``index``: position of the frame in the source (0-based; gaps = dropped frames);
    ``time``: seconds (see the module doc); ``faces``: one :class:`TrackResult` per
    visible face, by track id; ``detected``: the detector ran on this frame;
    ``timings``: milliseconds per stage; ``frame``: the BGR image (annotated with ``draw=True``);
    ``skipped``: faces whose crop could not be classified on this frame (drawn as unknown).
    """

    index: int
    time: float
    faces: tuple[TrackResult, ...]
    detected: bool
    timings: dict[str, float]
    frame: np.ndarray = field(repr=False)
    skipped: tuple[SkippedFace, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines record: ``{"frame", "time", "detected", "faces": [{"track", "box", "label", "score",
        "probs", "detected"}], "skipped": [{"track", "box", "reason"}]}``."""
        return {
            "frame": self.index, "time": round(self.time, 6), "detected": self.detected,
            "faces": [face.to_dict() for face in self.faces],
            "skipped": [face.to_dict() for face in self.skipped],
        }


# -- sources ---------------------------------------------------------------------------
@dataclass
class _Packet:
    index: int
    time: float
    frame: np.ndarray
    decode_ms: float
    decode_cpu_ms: float


class _Reader:
    """Uniform ``read() -> frame or None`` over OpenCV captures and Python iterables."""

    def __init__(self, name: str, live: bool, fps: float, read: Any, release: Any = None, pace: bool = False) -> None:
        self.name, self.live, self.fps, self.pace = name, live, fps, pace
        self._read, self._release = read, release
        self.stall_timeout: Optional[float] = None  # live sources: the consumer's wait is bounded too

    def read(self) -> Optional[np.ndarray]:
        return self._read()

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


def quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own warning lines off stderr; our errors say what failed."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    cv2 = import_cv2()

    utils_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if utils_logging is not None:
        utils_logging.setLogLevel(utils_logging.LOG_LEVEL_ERROR)


def describe_source(source: SourceSpec) -> str:
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return f"camera {int(source)}"
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def open_source(
    source: SourceSpec, live: Optional[bool] = None, open_timeout: float = 10.0, fps: Optional[float] = None
) -> _Reader:
    """Open ``source``: camera index (``0`` or ``"0"``), stream URL (rtsp/http/...), video file,
    an opened ``cv2.VideoCapture``, or an iterable of BGR uint8 frames.

    ``live``: newest-frame policy (default: on for cameras and URLs, off for files and
    iterables; a live file or iterable is paced at ``fps``). ``open_timeout``: seconds an
    URL may take to open and between two frames. Raises :class:`VideoSourceError` with one
    line naming the source.
    """
    cv2 = import_cv2()

    quiet_opencv()
    if open_timeout <= 0 or not math.isfinite(open_timeout):
        raise ValueError(f"open_timeout must be a positive number of seconds, got {open_timeout}")
    name = describe_source(source)
    if isinstance(source, bool):
        raise VideoSourceError(f"video source: expected a camera index, URL, file or frames, got {source!r}")
    if isinstance(source, (int, str, os.PathLike)):
        ms = int(open_timeout * 1000)
        # csi://N, /dev/videoN, GStreamer pipelines, NVDEC-decoded RTSP/files (emonext_edge/sources.py)
        plan = plan_source(source) if isinstance(source, str) and not source.isdigit() else None
        if plan is not None and plan.note:
            log.log(logging.WARNING if probe().jetson else logging.DEBUG, "%s: %s", name, plan.note)
        if plan is not None and plan.api != "ffmpeg":
            cap = open_planned(plan, open_timeout)
            return _capture_reader(cap, name, plan.live if live is None else live, fps, pace=bool(live) and not plan.live)
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            cap, is_live = cv2.VideoCapture(int(source)), True
            if not cap.isOpened():
                raise VideoSourceError(f"{name}: no such camera, or it is busy (OpenCV could not open it)")
        elif isinstance(source, str) and source.lower().startswith(URL_SCHEMES):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap, is_live = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params), True
            if not cap.isOpened():
                raise VideoSourceError(
                    f"{name}: could not open this stream within {open_timeout:g} s "
                    "(unreachable, refused, or not a video stream)"
                )
        else:
            path = Path(source)
            if not path.exists():
                raise VideoSourceError(f"{path}: no such video file")
            if not path.is_file():
                raise VideoSourceError(f"{path}: is a directory, expected a video file, camera index or URL")
            cap, is_live = cv2.VideoCapture(str(path)), False
            if not cap.isOpened():
                raise VideoSourceError(f"{path}: OpenCV could not open this as a video (unknown format or damaged)")
        # a file played as live is paced at its frame rate, like a camera
        return _capture_reader(cap, name, is_live if live is None else live, fps, pace=bool(live) and not is_live,
                               stall_timeout=open_timeout if is_live else None)
    if isinstance(source, cv2.VideoCapture):
        if not source.isOpened():
            raise VideoSourceError("video source: the cv2.VideoCapture given is not opened")
        return _capture_reader(source, name, bool(live), fps, release=False)
    if isinstance(source, np.ndarray) and source.ndim < 3:
        raise VideoSourceError(f"video source: got an array of shape {source.shape}; pass a sequence of frames")
    try:
        frames = iter(source)
    except TypeError:
        raise VideoSourceError(
            f"video source: expected a camera index, URL, video file or an iterable of frames, got {name}"
        ) from None

    def read_iterable() -> Optional[np.ndarray]:
        return next(frames, None)

    return _Reader(name, bool(live), fps or 30.0, read_iterable, getattr(frames, "close", None), pace=bool(live))


class StreamStalledError(VideoSourceError):
    """A live camera / stream gave no frame for longer than its ``open_timeout`` (``video`` exit code 4)."""


def _stalled(name: str, seconds: float) -> StreamStalledError:
    return StreamStalledError(f"{name}: no frame for {seconds:g} s (--open-timeout): the stream stalled; stopped")


def _capture_reader(
    cap: Any, name: str, live: bool, fps: Optional[float], release: bool = True, pace: bool = False,
    stall_timeout: Optional[float] = None,
) -> _Reader:
    rate = fps or float(cap.get(5) or 0.0)  # cv2.CAP_PROP_FPS
    if not (0 < rate < 1000):
        rate = 30.0

    def read() -> Optional[np.ndarray]:
        tick = time.monotonic()
        ok, frame = cap.read()
        if not ok and stall_timeout is not None and time.monotonic() - tick >= 0.9 * stall_timeout:
            raise _stalled(name, stall_timeout)  # FFmpeg's read timeout ran out: a stall, not the end
        return frame if ok else None

    reader = _Reader(name, live, rate, read, cap.release if release else None, pace)
    reader.stall_timeout = stall_timeout
    return reader


class _Grabber(threading.Thread):
    """Reads frames in its own thread. Live: one slot, newest wins (the rest is dropped and counted).
    Not live: a short queue, nothing dropped."""

    def __init__(self, reader: _Reader, max_frames: Optional[int]) -> None:
        super().__init__(name=f"emonext-capture {reader.name}", daemon=True)
        self.reader, self.max_frames = reader, max_frames
        self.dropped = 0
        self.read_count = 0
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self._slot: Optional[_Packet] = None
        self._queue: queue.Queue[Optional[_Packet]] = queue.Queue(maxsize=4)
        self._done = False
        self._error: Optional[BaseException] = None

    def run(self) -> None:
        start = time.monotonic()
        self._last = start
        index = 0
        try:
            while not self._halt.is_set() and (self.max_frames is None or index < self.max_frames):
                if self.reader.pace:  # a file or iterable played back as if it were a camera
                    delay = start + index / self.reader.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                tick, cpu = time.perf_counter(), time.thread_time()
                frame = self.reader.read()
                decode_ms, decode_cpu_ms = (time.perf_counter() - tick) * 1000, (time.thread_time() - cpu) * 1000
                if frame is None:
                    break
                stamp = time.monotonic() - start if self.reader.live else index / self.reader.fps
                self._hand_over(_Packet(index, stamp, frame, decode_ms, decode_cpu_ms))
                index += 1
                self.read_count = index
        except BaseException as exc:  # noqa: BLE001 (re-raised in the consumer's thread)
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()
            if not self.reader.live:
                self._put(None)

    def _hand_over(self, packet: _Packet) -> None:
        self._last = time.monotonic()
        if self.reader.live:
            with self._cond:
                if self._slot is not None:
                    self.dropped += 1
                self._slot = packet
                self._cond.notify_all()
        else:
            self._put(packet)

    def _put(self, item: Optional[_Packet]) -> None:
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Optional[_Packet]:
        """The next frame to process, or None at the end of the source."""
        if self.reader.live:
            stall = getattr(self.reader, "stall_timeout", None)
            with self._cond:
                while self._slot is None and not self._done:
                    self._cond.wait(0.1)
                    if stall is not None and time.monotonic() - getattr(self, "_last", time.monotonic()) > 1.5 * stall:
                        raise _stalled(self.reader.name, stall)  # read() itself is stuck (no read timeout)
                packet, self._slot = self._slot, None
        else:
            packet = None
            while not self._halt.is_set():
                try:
                    packet = self._queue.get(timeout=0.1)
                    break
                except queue.Empty:
                    if self._done and self._queue.empty() and self._error is not None:
                        break
        if packet is None and self._error is not None:
            error, self._error = self._error, None
            raise error
        return packet

    def stop(self) -> None:
        self._halt.set()
        with self._cond:
            self._cond.notify_all()


# -- the pipeline ------------------------------------------------------------------------
class VideoStream:
    """Iterate over :class:`FrameResult` for a video source (see the module doc).

    The source is opened when the stream is created (a bad source raises
    :class:`VideoSourceError` at once); capture starts with the iteration. Close the
    stream (or leave the ``with`` block, or exhaust it) to stop the capture thread.

    ``detect_every``: run the detector on every N-th processed frame (1 = every frame).
    ``smoothing``: ``None``/``0`` off, a half-life in seconds, or a smoother object
    (:class:`~emonext_edge.tracking.WindowSmoother`, ...). ``detector`` / ``min_size`` /
    ``margin``: as in :func:`emonext_edge.faces.detect_faces` and ``crop_face``; a
    callable ``detector(frame) -> [(x, y, w, h), ...]`` plugs in any other detector.
    ``detect_scale``: run the detector on frames resized by this factor (0.5: about 2x
    faster Haar detection; faces must then be at least 48 px). ``tracker``: a configured :class:`FaceTracker`. ``max_frames``: stop after reading
    that many frames from the source. ``draw``: annotate ``result.frame`` in place.
    """

    def __init__(
        self,
        runtime: Classifier,
        source: SourceSpec,
        *,
        detect_every: int = 1,
        smoothing: SmoothingSpec = None,
        detector: Any = None,
        min_size: Optional[int] = None,
        detect_scale: float = 1.0,
        margin: float = 0.1,
        tracker: Optional[FaceTracker] = None,
        live: Optional[bool] = None,
        fps: Optional[float] = None,
        max_frames: Optional[int] = None,
        open_timeout: float = 10.0,
        draw: bool = False,
    ) -> None:
        if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
            raise ValueError(f"detect_every must be an integer >= 1, got {detect_every!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
        self.runtime = runtime
        self.detect_every = detect_every
        self.smoother = make_smoother(smoothing)
        self.detector = detector
        self.min_size, self.margin, self.draw = min_size, margin, draw
        self.detect_scale = detect_scale
        self.tracker = tracker or FaceTracker()
        self.labels = tuple(runtime.labels)
        if not callable(detector):  # load (and check) the detector before any frame is read
            detect_faces(np.zeros((32, 32, 3), np.uint8), detector=detector, min_size=16, scale=detect_scale)
        self.reader = open_source(source, live=live, open_timeout=open_timeout, fps=fps)
        self.live = self.reader.live
        self._grabber = _Grabber(self.reader, max_frames)
        self.frames = 0
        self.faces = 0
        self.skipped = 0  # faces seen but not classifiable on their frame (see SkippedFace)
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.cpu_totals = dict.fromkeys(STAGES, 0.0)  # CPU time of the thread that ran each stage
        self._started: Optional[float] = None
        self._closed = False

    # life cycle
    @property
    def source(self) -> str:
        return self.reader.name

    @property
    def fps(self) -> float:
        """The source's frame rate (files), or the pacing rate (live iterables)."""
        return self.reader.fps

    @property
    def dropped(self) -> int:
        """Frames the capture thread dropped because processing was busy (live sources only)."""
        return self._grabber.dropped

    @property
    def elapsed(self) -> float:
        return 0.0 if self._started is None else time.perf_counter() - self._started

    def stats(self) -> dict[str, Any]:
        """Frames processed, dropped, faces (classified), skipped faces, elapsed seconds, frames/s, mean ms per stage."""
        n = max(self.frames, 1)
        return {
            "frames": self.frames, "dropped": self.dropped, "faces": self.faces, "skipped": self.skipped,
            "seconds": round(self.elapsed, 3), "fps": self.frames / max(self.elapsed, 1e-9),
            "ms_per_frame": {stage: self.totals[stage] / n for stage in STAGES},
            # CPU time of the thread running each stage: close to the wall time on an idle machine when the
            # backend and OpenCV run single-threaded (threads=1, cv2.setNumThreads(1)); robust to a busy machine
            "cpu_ms_per_frame": {stage: self.cpu_totals[stage] / n for stage in STAGES},
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._grabber.stop()
            if self._grabber.is_alive():
                self._grabber.join(timeout=5)
            if self._grabber.is_alive():  # stuck inside read() (e.g. a stalled RTSP stream): capture objects
                # are not thread-safe, so releasing it under the grabber could crash; it ends with the process
                log.warning("%s: the capture thread is still blocked in read(); the source is left open", self.source)
            else:
                self.reader.release()

    def __enter__(self) -> VideoStream:  # noqa: PYI034 (Python 3.9: no typing.Self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # processing
    def __iter__(self) -> Iterator[FrameResult]:
        if self._closed:
            raise EmoNeXtError(f"{self.source}: this video stream is closed")
        if self._started is not None:
            raise EmoNeXtError(f"{self.source}: a video stream can be iterated only once")
        self._started = time.perf_counter()
        self._grabber.start()
        try:
            while True:
                packet = self._grabber.get()
                if packet is None:
                    break
                try:
                    result = self._process(packet)
                except EmoNeXtError as exc:  # name the frame, not an internal crop
                    raise type(exc)(f"{self.source}: frame {packet.index}: {exc}") from None
                yield result
        finally:
            self.close()

    def _process(self, packet: _Packet) -> FrameResult:
        frame = packet.frame
        if not isinstance(frame, np.ndarray):
            raise ImageError(f"got a {type(frame).__name__}, expected a numpy array")
        timings = dict.fromkeys(STAGES, 0.0)
        timings["decode"] = packet.decode_ms
        self.cpu_totals["decode"] += packet.decode_cpu_ms
        clock = [time.perf_counter(), time.thread_time()]

        def lap(stage: str) -> None:
            now, cpu = time.perf_counter(), time.thread_time()
            timings[stage] = (now - clock[0]) * 1000
            self.cpu_totals[stage] += (cpu - clock[1]) * 1000
            clock[:] = [now, cpu]

        def reset() -> None:
            clock[:] = [time.perf_counter(), time.thread_time()]

        h, w = frame.shape[:2]
        detect_now = self.frames % self.detect_every == 0
        if detect_now:
            boxes = detect_faces(frame, detector=self.detector, min_size=self.min_size, scale=self.detect_scale)
            tracks = self.tracker.update(boxes, packet.time)
            for gone in self.tracker.forgotten:
                self.smoother.forget(gone)
            placed = [(track, track.box, True) for track in tracks]
        else:
            placed = [(track, box, False) for track, box in self.tracker.predict(packet.time, (w, h))]
        lap("detect")
        faces: list[TrackResult] = []
        skipped: list[SkippedFace] = []
        visible, crops = [], []
        if placed:
            from .preprocess import preprocess_one

            reset()
            for track, box, detected in placed:
                clipped = _clip(*box, w, h)
                if clipped is None or clipped[2] * clipped[3] < 0.5 * box[2] * box[3]:
                    continue  # mostly outside the frame: not shown
                try:
                    crops.append(preprocess_one(crop_face(frame, clipped, margin=self.margin), name="face crop",
                                                spec=self.runtime.spec))
                except ImageError as exc:  # one face that cannot be classified must not end the stream
                    skipped.append(SkippedFace(track.id, clipped, str(exc)))
                    log.debug("%s: frame %d: face #%d %s skipped: %s", self.source, packet.index, track.id, clipped, exc)
                    continue
                visible.append((track, clipped, detected))
            lap("preprocess")
        if visible:
            reset()
            probs = softmax(self.runtime.run(np.stack(crops)))
            lap("infer")
            for (track, box, detected), p in zip(visible, probs):
                smooth = self.smoother.update(track.id, p, packet.time)
                top = int(np.argmax(smooth))
                faces.append(TrackResult(
                    id=track.id, box=box, label=self.labels[top], score=float(smooth[top]),
                    probs={label: float(v) for label, v in zip(self.labels, smooth)},
                    raw_probs={label: float(v) for label, v in zip(self.labels, p)},
                    detected=detected,
                ))
        if self.draw:
            from .annotate import draw_faces

            reset()
            draw_faces(frame, [*faces, *skipped])
            lap("draw")
        self.frames += 1
        self.faces += len(faces)
        self.skipped += len(skipped)
        for stage in STAGES:
            self.totals[stage] += timings[stage]
        return FrameResult(packet.index, packet.time, tuple(faces), detect_now, timings, frame, tuple(skipped))


def _clip(x: int, y: int, bw: int, bh: int, w: int, h: int) -> Optional[Box]:
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def stream(runtime: Classifier, source: SourceSpec, **options: Any) -> VideoStream:
    """``VideoStream(runtime, source, **options)``; see :class:`VideoStream`."""
    return VideoStream(runtime, source, **options)


__all__ = ["STAGES", "FrameResult", "SkippedFace", "TrackResult", "VideoStream", "describe_source", "open_source", "stream"]
