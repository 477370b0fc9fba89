"""The ``video`` command: ``python -m emonext_edge video MODEL SOURCE [options]``.

A thin shell over :class:`emonext_edge.stream.VideoStream` (registered by
:mod:`emonext_edge.cli`). Outputs are checked before any frame is processed; progress
with frames/s goes to stderr about once a second; the summary line to stdout.

JSON lines (``--json out.jsonl``), one object per processed frame::

    {"frame": 12, "time": 0.4, "detected": true,
     "faces": [{"track": 1, "box": [x, y, w, h], "label": "Happy", "score": 0.81,
                "probs": {"Angry": 0.01, ...}, "detected": true}],
     "skipped": [{"track": 2, "box": [x, y, w, h], "reason": "..."}]}

``frame``: index in the source (gaps = frames dropped on a live source); ``time``:
seconds (file: position in the video; live: since capture started); ``probs``: the
smoothed probabilities (raw with ``--smoothing 0``); ``label``/``score``: their top
entry; ``detected``: the box comes from a detection on this frame (else from tracking);
``skipped``: faces seen whose crop could not be classified on this frame (drawn as unknown).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .environment import EXIT_ENVIRONMENT
from .errors import UsageError
from .opencv import import_cv2

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The video command's own options (model/runtime options are added by cli.py)."""
    p.add_argument("source", help="video file, webcam index (0, 1, ...), or stream URL (rtsp://, http://...)")
    p.add_argument("--out", default=None, help="write the annotated video here (.mp4/.avi/.mkv/.mov)")
    p.add_argument("--json", default=None, metavar="OUT.jsonl", help="write one JSON line per frame (schema: README)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after reading N frames from the source")
    p.add_argument("--detect-every", type=int, default=3, metavar="N",
                   help="run the face detector on every N-th frame, track in between (default 3; 1 = every frame)")
    p.add_argument("--detect-scale", type=float, default=1.0, metavar="FACTOR",
                   help="run the detector on frames resized by FACTOR (0 < FACTOR <= 1; 0.5: about 2x faster "
                        "Haar detection, faces from 48 px); default 1")
    p.add_argument("--smoothing", type=float, default=0.5, metavar="SECONDS",
                   help="per-face smoothing: half-life (or window) in seconds; 0 = off (default 0.5)")
    p.add_argument("--smoothing-method", choices=("exp", "mean", "mode"), default="exp",
                   help="exp: exponential with that half-life; mean / mode: probabilities / majority label "
                        "over that window")
    # --live / --no-live spelled out (argparse.BooleanOptionalAction needs Python 3.9; JetPack 5 has 3.8)
    p.add_argument("--live", dest="live", action="store_true", default=None,
                   help="newest-frame policy, dropping what processing cannot keep up with "
                        "(default: on for cameras and URLs; --live on a file plays it in real time)")
    p.add_argument("--no-live", dest="live", action="store_false", default=None,
                   help="read every frame in order, even from a camera or URL")
    p.add_argument("--open-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long a stream URL may take to open or to send a frame (default 10); a live "
                        "source that stalls longer ends the run with exit code 4, keeping what was written")
    p.add_argument("-v", "--verbose", action="store_true", help="per-stage times in the summary")
    # Jetson sources (emonext_edge/sources.py): csi://N, /dev/videoN, NVDEC-decoded RTSP/files, GStreamer pipelines
    cam = p.add_argument_group("camera and decoding (csi://N, /dev/videoN, rtsp://, H.264/H.265 files on a Jetson)")
    cam.add_argument("--print-pipeline", action="store_true",
                     help="print the GStreamer pipeline (or what OpenCV opens instead) and exit; opens nothing")
    cam.add_argument("--capture-size", default=None, metavar="WxH", help="camera mode, e.g. 1920x1080 (CSI default 1280x720)")
    cam.add_argument("--capture-fps", type=int, default=None, metavar="FPS", help="camera frame rate (CSI default 30)")
    cam.add_argument("--sensor-mode", type=int, default=None, metavar="N", help="nvarguscamerasrc sensor-mode")
    cam.add_argument("--flip", type=int, default=0, metavar="0-7", help="nvvidconv flip-method (2 = rotate 180)")
    cam.add_argument("--codec", choices=("auto", "h264", "h265"), default="auto",
                     help="RTSP/file decoding on a Jetson: h264/h265 = parse ! nvv4l2decoder, auto = decodebin")


def _capture_plan(args: argparse.Namespace, check: bool = True) -> Any:
    """The :class:`~emonext_edge.sources.SourcePlan` of the source with the command line's camera options."""
    import re

    from .sources import CaptureOptions, plan_source

    size = None
    if args.capture_size is not None:
        match = re.fullmatch(r"(\d+)x(\d+)", args.capture_size)
        if not match:
            raise UsageError(f"--capture-size must be WIDTHxHEIGHT such as 1920x1080, got {args.capture_size!r}")
        size = int(match.group(1)), int(match.group(2))
    options = CaptureOptions(width=size[0] if size else None, height=size[1] if size else None, fps=args.capture_fps,
                             sensor_mode=args.sensor_mode, flip=args.flip, codec=args.codec)
    return plan_source(args.source, options, check=check) if not args.source.isdigit() else None


def _check_writable(path: Path, option: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if path.is_dir():
        raise UsageError(f"{path}: {option} is a directory; expected a file path")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{path}: {option} directory {parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".emonext-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{path}: {option} directory {parent} is not writable ({exc.strerror or exc})") from None


def _check_gui() -> None:
    cv2 = import_cv2()

    try:
        cv2.namedWindow("emonext", cv2.WINDOW_AUTOSIZE)
    except (cv2.error, AttributeError):
        raise UsageError(
            "this OpenCV build has no GUI support (opencv-python-headless), so no window can be shown; "
            "pass --out annotated.mp4 and/or --json frames.jsonl instead"
        ) from None


def _smoothing(args: argparse.Namespace) -> Any:
    from .tracking import WindowSmoother

    if args.smoothing < 0:
        raise UsageError(f"--smoothing must be >= 0 seconds (0 = off), got {args.smoothing:g}")
    if args.smoothing == 0 or args.smoothing_method == "exp":
        return args.smoothing or None
    return WindowSmoother(args.smoothing, method=args.smoothing_method)


class _Progress:
    """One line about once a second on stderr (rewritten in place on a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = time.perf_counter()
        self.last_frames = 0

    def update(self, stream: Any, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 1.0:
            return
        fps = (stream.frames - self.last_frames) / max(now - self.last, 1e-9)
        self.last, self.last_frames = now, stream.frames
        text = f"[video] {stream.frames} frames, {fps:.1f} FPS, {stream.faces} faces, {stream.dropped} dropped"
        print(f"\r{text}" if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run_video(args: argparse.Namespace, runtime_factory: Any) -> int:
    """``video`` command body; ``runtime_factory(args)`` builds the Runtime from the shared model options."""
    if args.print_pipeline:
        plan = _capture_plan(args, check=False)
        print(plan.describe() if plan is not None else f"opencv: {args.source} (camera index, file or URL; no pipeline)")
        return 0
    cv2 = import_cv2()

    from .stream import StreamStalledError, quiet_opencv

    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.detect_every < 1:
        raise UsageError(f"--detect-every must be >= 1, got {args.detect_every}")
    if not 0 < args.detect_scale <= 1:
        raise UsageError(f"--detect-scale must be in (0, 1], got {args.detect_scale:g}")
    if not args.open_timeout > 0:
        raise UsageError(f"--open-timeout must be > 0 seconds, got {args.open_timeout:g}")
    smoothing = _smoothing(args)
    out_path = Path(args.out) if args.out else None
    json_path = Path(args.json) if args.json else None
    if out_path is not None:
        if out_path.is_dir():
            raise UsageError(f"{out_path}: --out is a directory; expected a video file path such as annotated.mp4")
        if out_path.suffix.lower() not in VIDEO_SUFFIXES:
            raise UsageError(f"{out_path}: --out needs a video suffix ({', '.join(VIDEO_SUFFIXES)})")
        _check_writable(out_path, "--out")
    if json_path is not None:
        _check_writable(json_path, "--json")
    show = out_path is None and json_path is None
    if show:
        _check_gui()
    quiet_opencv()

    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}") if out_path else None
    writer = None
    interrupted = False
    stalled = ""  # a live source that gave no frame for --open-timeout s: keep what was written, exit 4
    progress = _Progress()
    with contextlib.ExitStack() as stack:
        rt = stack.enter_context(runtime_factory(args))
        source, live = args.source, args.live
        plan = _capture_plan(args)
        if plan is not None and plan.api != "ffmpeg":  # opened here with the camera options (sources.py)
            from .sources import open_planned

            source = open_planned(plan, args.open_timeout)
            stack.callback(source.release)
            live = plan.live if live is None else live
        stream = stack.enter_context(rt.stream(
            source, detect_every=args.detect_every, smoothing=smoothing, detector=args.detector,
            detect_scale=args.detect_scale,
            live=live, max_frames=args.max_frames, open_timeout=args.open_timeout, draw=True,
        ))
        jsonl = stack.enter_context(json_path.open("w", encoding="utf-8")) if json_path else None
        try:
            try:
                for result in stream:
                    frame = result.frame
                    if jsonl is not None:
                        jsonl.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")
                    if tmp is not None:
                        if writer is None:
                            h, w = frame.shape[:2]
                            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), stream.fps, (w, h))
                            if not writer.isOpened():
                                raise UsageError(
                                    f"{out_path}: OpenCV cannot write {out_path.suffix} video with the mp4v codec; "  # type: ignore[union-attr]
                                    "try .avi or .mp4"
                                )
                        writer.write(frame)
                    if show:
                        cv2.imshow("emonext", frame)
                        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                            break
                    progress.update(stream)
            except KeyboardInterrupt:  # a live source: stop, keep what was written
                interrupted = True
            except StreamStalledError as exc:
                stalled = str(exc)
            if stream.frames == 0 and not stalled:
                raise UsageError(f"{stream.source}: no frames could be read")
            if writer is not None:
                writer.release()
                writer = None
                os.replace(tmp, out_path)  # type: ignore[arg-type]
        finally:
            if writer is not None:
                writer.release()
            if tmp is not None and tmp.exists():
                tmp.unlink()
        progress.update(stream, force=True)
        progress.done()
        stats = stream.stats()
    wrote = [str(p) for p in (out_path, json_path) if p is not None]
    print(
        f"{stats['frames']} frames, {stats['faces']} faces, {stats['fps']:.1f} FPS overall"
        + (f", {stats['dropped']} dropped" if stats["dropped"] else "")
        + (f", {stats['skipped']} faces skipped (crop not classifiable; drawn as unknown)" if stats["skipped"] else "")
        + (f"; wrote {' and '.join(wrote)}" if wrote else "")
        + ("; interrupted" if interrupted else "")
    )
    if args.verbose:
        ms = stats["ms_per_frame"]
        print("ms per frame: " + ", ".join(f"{stage} {value:.1f}" for stage, value in ms.items())
              + " (decode runs in the capture thread, overlapped)")
    if stalled:
        print(f"error: {stalled}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    return 130 if interrupted else 0


__all__ = ["add_video_arguments", "run_video"]
