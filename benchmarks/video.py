"""End-to-end frames per second of the video pipeline, with per-stage times.

    python benchmarks/video.py ARTIFACT... [--faces 1 5] [--detect-every 3] [--frames 150]
        [--detectors yunet haar] [--detection-frames 120] [--fer-root FER2013] [--repeat 2]
        [--out exports/video/results.json]

First, the face detectors alone (``--detectors``, default the bundled YuNet and OpenCV's Haar
cascade, each with its defaults as the pipeline uses them): ``--detection-frames`` 640x480
frames are built from FER2013 val faces (random classes) pasted at 40-180 px at random,
non-overlapping positions (borders included) into face-free backgrounds (smooth noise,
gradients, gratings, cloud-like noise; a quarter of the frames hold no face); reported per
detector: recall (a pasted face counts as found when a detection's centre lies inside it
and its width is 0.6-1.6x the pasted width), recall per face size, false positives per
frame (detections matching no pasted face), and detection milliseconds per frame (median wall
clock and thread CPU time, single-threaded OpenCV). ``--detection-frames 0`` skips this; no artifact: only this.

For each artifact and face count, a 640x480 clip is generated (real FER2013 val faces,
resized to about 120 px and pasted on a textured background, moving a few pixels per
frame; written as MJPEG so decoding costs what a camera's MJPEG stream costs) and run
through ``Runtime(...).stream(clip, detect_every=N, smoothing=0.5)`` exactly as the
``video`` command runs it, without writing an output video. Reported per run: frames/s
end to end (wall clock from the first to the last frame) and mean milliseconds per frame
for decode (capture thread, overlapped), detect, preprocess, infer and draw.

OpenVINO ``.xml`` artifacts are compiled for a static batch of 1 when ``--faces 1``
(``Runtime(xml, batch=1)``; the 5-face runs use the IR's dynamic batch). Threads: one
inference thread and single-threaded OpenCV by default (the capture thread decodes on
the other core), so the CPU time of the thread running each stage is what that stage
costs on an idle core. The machine may be shared: each configuration is repeated
``--repeat`` times and the spread reported; the load average is recorded; besides the
wall-clock frames/s, a CPU-bound frames/s = 1000 / max(main-thread CPU ms, decode CPU ms)
is reported, which a busy machine disturbs much less (it is an estimate, not a run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np

from emonext_edge.argtypes import check_args, positive_float, positive_int, thread_count_or_default

FRAME_W, FRAME_H = 640, 480
FACE_SIZE = 120
#: FER2013 val faces (class, index in the sorted file list) that OpenCV's default Haar cascade finds on every
#: frame when pasted at FACE_SIZE px (about half of arbitrary FER2013 crops are found: they are tight 48-px crops)
DEFAULT_FACES = (("Happy", 2), ("Surprise", 2), ("Neutral", 1), ("Angry", 1), ("Sad", 4))


def background(seed: int = 0) -> np.ndarray:
    """A 640x480 BGR backdrop: smooth colour gradients plus mild noise (no face-like structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    base = np.stack([90 + 40 * np.sin(xx / 97.0), 110 + 30 * np.cos(yy / 73.0), 120 + 25 * np.sin((xx + yy) / 151.0)], -1)
    noise = rng.normal(0, 6, size=base.shape).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def face_paths(fer_root: Path, count: int) -> list[Path]:
    """The first ``count`` faces of DEFAULT_FACES."""
    if count > len(DEFAULT_FACES):
        raise ValueError(f"at most {len(DEFAULT_FACES)} faces, got {count}")
    return [sorted((fer_root / "val" / c).glob("*.jpg"))[i] for c, i in DEFAULT_FACES[:count]]


def lanes(count: int) -> list[tuple[int, int]]:
    """Top-left start positions for ``count`` faces (up to 6) that never overlap while moving."""
    cols = [40, 260, 480]
    rows = [50, 290]
    spots = [(c, r) for r in rows for c in cols]
    if count > len(spots):
        raise ValueError(f"at most {len(spots)} faces fit in a {FRAME_W}x{FRAME_H} frame, got {count}")
    return spots[:count]


def compose_frames(
    faces: list[np.ndarray], frames: int, size: int = FACE_SIZE, step: float = 2.0, seed: int = 0
) -> tuple[list[np.ndarray], list[list[tuple[int, int, int, int]]]]:
    """``frames`` BGR frames with each gray face pasted at ``size`` px, moving ``step`` px per frame
    (back and forth over 40 px); returns the frames and the pasted ``(x, y, w, h)`` boxes per frame."""
    import cv2

    back = background(seed)
    resized = [cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in faces]
    starts = lanes(len(faces))
    out, truth = [], []
    for t in range(frames):
        frame = back.copy()
        boxes = []
        for i, (face, (x0, y0)) in enumerate(zip(resized, starts)):
            phase = (t * step) % 80
            offset = int(phase if phase <= 40 else 80 - phase)
            x, y = x0 + offset, y0 + (offset // 2 if i % 2 else 0)
            frame[y : y + size, x : x + size] = face[:, :, None]
            boxes.append((x, y, size, size))
        out.append(frame)
        truth.append(boxes)
    return out, truth


def write_clip(frames: list[np.ndarray], path: Path, fps: float = 30.0, fourcc: str = "MJPG") -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {fourcc}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def load_faces(paths: list[Path]) -> list[np.ndarray]:
    import cv2

    faces: list[np.ndarray] = []
    for p in paths:
        face = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if face is None:
            raise SystemExit(f"error: {p}: not a readable image")
        faces.append(face)
    return faces


# --------------------------------------------------------------------------- benchmark
# --------------------------------------------------------------------------- detectors alone
DETECTION_SIZES = (40, 60, 90, 130, 180)


def textured_background(rng: np.random.Generator) -> np.ndarray:
    """A 640x480 BGR face-free backdrop: smooth noise, a gradient, a grating or cloud-like noise."""
    import cv2

    kind = int(rng.integers(4))
    base: np.ndarray
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    if kind == 0:  # smooth noise
        small = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
        base = cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # colour gradient
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        ramp = ((xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / (FRAME_W + FRAME_H) + 1) / 2
        base = a + (b - a) * ramp[..., None]
    elif kind == 2:  # grating / stripes
        f1, f2 = rng.uniform(0.02, 0.2, 2)
        g = 128 + 60 * np.sin(xx * f1 + yy * f2) + 30 * np.sin(yy * f1 * 0.7)
        base = np.stack([g, g * rng.uniform(0.6, 1.0), g * rng.uniform(0.6, 1.0)], -1)
    else:  # cloud-like multi-octave noise
        base = np.zeros((FRAME_H, FRAME_W, 3), np.float32)
        for octave in (4, 8, 16, 32, 64):
            layer = rng.uniform(-1, 1, (max(2, octave * 3 // 4), octave, 3)).astype(np.float32)
            base += cv2.resize(layer, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC) * 160 / octave ** 0.5
        base += 110
    noise = rng.normal(0, 4, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def detection_frames(fer_root: Path, count: int, seed: int = 0):
    """``count`` (frame, pasted boxes) pairs as the module doc describes."""
    import cv2

    rng = np.random.default_rng(seed)
    val = fer_root / "val"
    files = sorted(p for c in sorted(val.iterdir()) if c.is_dir() for p in sorted(c.glob("*.jpg")))
    out = []
    for i in range(count):
        frame = textured_background(rng)
        boxes: list[tuple[int, int, int, int]] = []
        wanted = 0 if i % 4 == 3 else int(rng.integers(1, 5))
        for _ in range(wanted * 20):
            if len(boxes) == wanted:
                break
            size = int(rng.choice(DETECTION_SIZES))
            x, y = int(rng.integers(0, FRAME_W - size + 1)), int(rng.integers(0, FRAME_H - size + 1))
            if any(x < bx + bw + 10 and bx < x + size + 10 and y < by + bh + 10 and by < y + size + 10
                   for bx, by, bw, bh in boxes):
                continue
            face = cv2.imread(str(files[int(rng.integers(len(files)))]), cv2.IMREAD_GRAYSCALE)
            if face is None:
                continue
            frame[y : y + size, x : x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)[:, :, None]
            boxes.append((x, y, size, size))
        out.append((frame, boxes))
    return out


def _hit(det: tuple[int, int, int, int], truth: tuple[int, int, int, int]) -> bool:
    cx, cy = det[0] + det[2] / 2, det[1] + det[3] / 2
    return (truth[0] <= cx <= truth[0] + truth[2] and truth[1] <= cy <= truth[1] + truth[3]
            and 0.6 * truth[2] <= det[2] <= 1.6 * truth[2])


def detection_quality(frames, detector: str, scale: float = 1.0) -> dict[str, Any]:
    """Recall (overall and per pasted size), false positives per frame, detection ms per frame."""
    import cv2

    from emonext_edge.faces import detect_faces, detector_kind

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        detect_faces(frames[0][0], detector=detector, scale=scale)  # load once
        found = dict.fromkeys(DETECTION_SIZES, 0)
        pasted = dict.fromkeys(DETECTION_SIZES, 0)
        false_pos, times, cpu = 0, [], []
        for frame, truth in frames:
            tick, cpu_tick = time.perf_counter(), time.thread_time()
            dets = detect_faces(frame, detector=detector, scale=scale)
            times.append((time.perf_counter() - tick) * 1000)
            cpu.append((time.thread_time() - cpu_tick) * 1000)
            for box in truth:
                pasted[box[2]] += 1
                found[box[2]] += any(_hit(d, box) for d in dets)
            false_pos += sum(not any(_hit(d, box) for box in truth) for d in dets)
    finally:
        cv2.setNumThreads(threads)
    total = sum(pasted.values())
    return {
        "detector": detector, "scale": scale, "kind": detector_kind(detector), "frames": len(frames), "faces": total,
        "recall": sum(found.values()) / max(total, 1),
        "recall_by_size": {size: found[size] / pasted[size] for size in DETECTION_SIZES if pasted[size]},
        "false_positives": false_pos, "false_positives_per_frame": false_pos / len(frames),
        "ms_per_frame_median": statistics.median(times), "ms_per_frame_mean": statistics.mean(times),
        "cpu_ms_per_frame_median": statistics.median(cpu),
    }


def _detection_markdown(rows: list[dict[str, Any]]) -> str:
    sizes = [s for s in DETECTION_SIZES if any(s in r["recall_by_size"] for r in rows)]
    lines = [
        "| detector | scale | frames | faces | recall | " + " | ".join(f"recall {s} px" for s in sizes)
        + " | false positives (per frame) | ms per 640x480 frame (median): wall | CPU |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(sizes) + "---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['detector']} | {r['scale']:g} | {r['frames']} | {r['faces']} | {r['recall']:.1%} | "
            + " | ".join(f"{r['recall_by_size'].get(s, float('nan')):.0%}" for s in sizes)
            + f" | {r['false_positives']} ({r['false_positives_per_frame']:.2f}) | {r['ms_per_frame_median']:.1f} | "
            f"{r['cpu_ms_per_frame_median']:.1f} |"
        )
    return "\n".join(lines)


def _runtime_options(artifact: Path, faces: int) -> dict[str, Any]:
    return {"batch": 1} if artifact.suffix == ".xml" and faces == 1 else {}


def run_once(
    artifact: Path, clip: Path, faces: int, detect_every: int, threads: Optional[int] = None, warmup: int = 10,
    detect_scale: float = 1.0, detector: Optional[str] = None,
) -> dict[str, Any]:
    """One end-to-end pass over ``clip`` (after ``warmup`` model calls); frames/s and mean ms per stage."""
    import cv2

    from emonext_edge import Runtime
    from emonext_edge.preprocess import INPUT_SHAPE

    if threads == 1:
        cv2.setNumThreads(1)  # single-threaded stages: their thread CPU time is what they cost on an idle core
    options = _runtime_options(artifact, faces)
    with Runtime(artifact, threads=threads, **options) as rt:
        dummy = np.zeros((faces, *INPUT_SHAPE), np.float32)
        for _ in range(warmup):
            rt.run(dummy)
        stream = rt.stream(str(clip), detect_every=detect_every, smoothing=0.5, draw=True, detect_scale=detect_scale,
                           detector=detector)
        tick = time.perf_counter()
        seen = 0
        for result in stream:
            seen += len(result.faces)
        seconds = time.perf_counter() - tick
        stats = stream.stats()
        info = rt.info
    return {
        "fps": stats["frames"] / seconds, "frames": stats["frames"], "faces_per_frame": seen / max(stats["frames"], 1),
        "ms_per_frame": {k: round(v, 3) for k, v in stats["ms_per_frame"].items()},
        "cpu_ms_per_frame": {k: round(v, 3) for k, v in stats["cpu_ms_per_frame"].items()},
        "backend": info.get("backend") or info.get("name"), "options": options, "detector": detector or "default",
    }


def _estimate(run: dict[str, Any]) -> tuple[float, float]:
    """(main-thread CPU ms per frame, frames/s they allow): decode runs on the capture thread, in parallel."""
    cpu = run["cpu_ms_per_frame"]
    main_thread = sum(v for k, v in cpu.items() if k != "decode")
    return main_thread, 1000.0 / max(main_thread, cpu["decode"], 1e-9)


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        ("| artifact | detector | faces | detect every | detect scale | wall FPS (runs) | CPU ms/frame: detect | preprocess | infer "
        "| draw | main thread | decode (capture thread) | CPU-bound FPS (runs) |"),
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        runs = row["runs"]
        fps = [r["fps"] for r in runs]
        cpu = {k: statistics.mean(r["cpu_ms_per_frame"][k] for r in runs) for k in runs[0]["cpu_ms_per_frame"]}
        estimates = [_estimate(r) for r in runs]
        single = row.get("threads") == 1  # CPU-bound figures hold only for single-threaded stages
        lines.append(
            f"| {row['name']} | {row.get('detector', 'default')} | {row['faces']} | {row['detect_every']} | {row['detect_scale']:g} | "
            f"{statistics.median(fps):.1f} ({', '.join(f'{v:.1f}' for v in fps)}) | "
            f"{cpu['detect']:.1f} | {cpu['preprocess']:.1f} | {cpu['infer']:.1f} | {cpu['draw']:.1f} | "
            f"{statistics.mean(m for m, _ in estimates):.1f} | {cpu['decode']:.1f} | "
            + (f"{statistics.median(e for _, e in estimates):.1f} ({', '.join(f'{e:.1f}' for _, e in estimates)}) |"
               if single else "n/a (multi-threaded stages) |")
        )
    lines += [
        "",
        "wall FPS: frames / wall-clock seconds of the run, as measured (depends on what else runs on the machine).",
        "CPU ms: CPU time of the thread that ran each stage (single-threaded stages: --threads 1 and",
        "cv2.setNumThreads(1)); CPU-bound FPS = 1000 / max(main-thread CPU ms, capture-thread decode CPU ms):",
        "the rate the pipeline sustains when it has its two cores to itself (an estimate, not a wall-clock run).",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="*",
                        help="model artifacts (.onnx, .xml, .engine, .pt); NAME=PATH to label one; none: detectors only")
    parser.add_argument("--detectors", nargs="+", default=["yunet", "haar"],
                        help="face detectors: yunet (bundled, the default), haar, or detector files (default: yunet haar)")
    parser.add_argument("--detection-frames", type=int, default=120,
                        help="frames for the detector study (recall, false positives, ms); 0 = skip (default 120)")
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 5], help="faces per clip (1-5; default 1 5)")
    parser.add_argument("--detect-every", type=int, nargs="+", default=[3], help="detection cadences (default 3)")
    parser.add_argument("--detect-scale", type=float, nargs="+", default=[1.0], help="detector input scales (default 1)")
    parser.add_argument("--frames", type=int, default=150, help="frames per clip (default 150 = 5 s at 30 FPS)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="inference threads (default 1: the capture thread has the other core; 1 also makes "
                             "the per-stage CPU times meaningful; 0 = the backend's default)")
    parser.add_argument("--fer-root", type=Path, default=REPO / "tests" / "fixtures" / "cache" / "FER2013",
                        help="FER2013 root with val/ (default: the test cache extracted from ../shared)")
    parser.add_argument("--out", type=Path, default=Path("exports") / "video" / "results.json",
                        help="results JSON (default exports/video/results.json)")
    args = parser.parse_args(argv)
    try:
        check_args(args, error=ValueError, faces=positive_int, detect_every=positive_int,
                   detect_scale=positive_float, frames=positive_int, repeat=positive_int,
                   threads=thread_count_or_default)
        if not (args.fer_root / "val").is_dir():
            raise ValueError(f"{args.fer_root}: no val/ folder (a FER2013 root is needed for the faces)")
        if any(not 1 <= n <= len(DEFAULT_FACES) for n in args.faces):
            raise ValueError(f"--faces: each value must be 1..{len(DEFAULT_FACES)}, got {args.faces}")
        if not args.artifacts and args.detection_frames < 1:
            raise ValueError("nothing to do: give artifacts, or --detection-frames N > 0")
        if any(n < 1 for n in args.detect_every) or args.frames < 1 or args.repeat < 1:
            raise ValueError("--detect-every, --frames and --repeat must be >= 1")
        named = []
        for spec in args.artifacts:
            name, _, path = spec.rpartition("=") if "=" in spec else (None, "", spec)
            if not Path(path).is_file():
                raise ValueError(f"{path}: no such artifact file")
            named.append((name or Path(path).name, Path(path)))
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detection: list[dict[str, Any]] = []
    if args.detection_frames > 0:
        frames = detection_frames(args.fer_root, args.detection_frames)
        for detector, scale in [(d, s) for d in args.detectors for s in args.detect_scale]:
            detection.append(detection_quality(frames, detector, scale))
            print(f"[video] detector {detector} scale {scale:g}: recall {detection[-1]['recall']:.1%}, "
                  f"{detection[-1]['false_positives']} false positives, "
                  f"{detection[-1]['ms_per_frame_median']:.1f} ms/frame (load {os.getloadavg()[0]:.2f})",
                  file=sys.stderr, flush=True)
    clips_dir = args.out.parent / "clips"
    clip_for = {}
    for n in args.faces if named else []:
        frames, _ = compose_frames(load_faces(face_paths(args.fer_root, n)), args.frames)
        clip_for[n] = write_clip(frames, clips_dir / f"faces{n}.avi")
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for name, path in named:
        for n in args.faces:
            for every, scale, det in [(e, s, d) for e in args.detect_every for s in args.detect_scale for d in args.detectors]:
                runs = []
                for r in range(args.repeat):
                    try:
                        runs.append(run_once(path, clip_for[n], n, every, args.threads or None, detect_scale=scale,
                                             detector=det))
                    except Exception as exc:  # noqa: BLE001 (report and go on with the next artifact)
                        print(f"[video] {name}: failed: {exc}", file=sys.stderr)
                        break
                    print(f"[video] {name} {det} faces={n} detect_every={every} scale={scale:g} run {r + 1}: "
                          f"{runs[-1]['fps']:.1f} FPS wall, {_estimate(runs[-1])[1]:.1f} CPU-bound; "
                          f"cpu ms {runs[-1]['cpu_ms_per_frame']} (load {os.getloadavg()[0]:.2f})",
                          file=sys.stderr, flush=True)
                if runs:
                    rows.append({"name": name, "artifact": str(path), "detector": det, "faces": n, "detect_every": every,
                                 "detect_scale": scale, "threads": args.threads, "runs": runs})
    result = {
        "clip": f"{FRAME_W}x{FRAME_H} MJPEG, {args.frames} frames, FER2013 val faces at {FACE_SIZE} px, smoothing 0.5 s",
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows,
        "detection": detection,
    }
    args.out.write_text(json.dumps(result, indent=2))
    if detection:
        print(_detection_markdown(detection) + "\n")
    if rows:
        print(_markdown(rows))
    print(f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"wrote {args.out}")
    return 0 if rows or (detection and not named) else 1


if __name__ == "__main__":
    sys.exit(main())
