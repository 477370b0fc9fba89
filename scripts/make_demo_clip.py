"""Make a demo video from FER2013 faces, so the video quickstart needs no webcam.

    python scripts/make_demo_clip.py --data FER2013 --out exports/demo.mp4 [--frames 90] [--seed 0]

A 640x480 clip at 30 FPS (mp4v) on a smooth, face-free backdrop: four real FER2013 val
faces of different expressions move across the frame, jump between sizes (60 to 180 px),
one leaves through the right border and one appears half-way: the cases a tracker must
survive. Which faces are used depends on ``--seed``; only faces that the bundled YuNet
detector finds when pasted are used, so the demo shows tracked, labelled faces.

Exit codes: 0 written; 2 bad input (no ``val/`` folder under ``--data``, bad option).
The clip is written next to ``--out`` and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

W, H, FPS = 640, 480, 30.0
CLASSES = ("Happy", "Surprise", "Angry", "Sad", "Neutral", "Fear")
SIZES = (60, 100, 140, 180)


def backdrop(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradients with mild noise: nothing a face detector should fire on."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    a, b, c = rng.uniform(60, 140, 3)
    base = np.stack([a + 40 * np.sin(xx / 97.0), b + 30 * np.cos(yy / 73.0), c + 25 * np.sin((xx + yy) / 151.0)], -1)
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def pick_faces(val: Path, rng: np.random.Generator, count: int = 4) -> list[np.ndarray]:
    """``count`` gray faces of different classes that the default detector finds at 120 px."""
    import cv2

    from emonext_edge.faces import detect_faces

    chosen = []
    for label in [c for c in CLASSES if (val / c).is_dir()]:
        files = sorted((val / label).glob("*.jpg"))
        for i in rng.permutation(len(files))[:40]:
            face = cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE)
            if face is None:
                continue
            probe = np.full((240, 240, 3), 128, np.uint8)
            probe[60:180, 60:180] = cv2.resize(face, (120, 120), interpolation=cv2.INTER_CUBIC)[:, :, None]
            if len(detect_faces(probe, min_size=60)) == 1:
                chosen.append(face)
                break
        if len(chosen) == count:
            return chosen
    raise ValueError(f"{val}: found only {len(chosen)} FER2013 faces the detector recognises; need {count}")


def plan(frames: int, rng: np.random.Generator) -> list[list[Optional[tuple[int, int, int]]]]:
    """Per face, per frame: (x, y, size) or None (not on screen). Faces never overlap: face 0 crosses
    the top row and leaves through the right border; 1 and 2 drift in the bottom row; 3 appears
    half-way in the top-left corner that face 0 has left by then."""
    third = max(1, frames // 3)
    starts = [(20, 20, 6.0, 0.0), (40, 290, rng.uniform(-1, 1), rng.uniform(-0.5, 0.5)),
              (400, 290, rng.uniform(-1, 1), rng.uniform(-0.5, 0.5)), (20, 20, 0.5, 0.3)]
    tracks = []
    for k, (x0, y0, vx, vy) in enumerate(starts):
        sizes = [SIZES[(k + j) % len(SIZES)] for j in range(3)]  # a jump in size every third of the clip
        spans: list[Optional[tuple[int, int, int]]] = []
        for t in range(frames):
            if k == 3 and t < frames // 2:
                spans.append(None)
                continue
            size = sizes[min(t // third, 2)]
            x, y = int(x0 + vx * t), int(np.clip(y0 + vy * t, 0, H - size))
            spans.append(None if x >= W else (x, y, size))
        tracks.append(spans)
    return tracks


def render(faces: list[np.ndarray], tracks, back: np.ndarray, frames: int) -> list[np.ndarray]:
    import cv2

    out = []
    for t in range(frames):
        frame = back.copy()
        for face, spans in zip(faces, tracks):
            if spans[t] is None:
                continue
            x, y, size = spans[t]
            img = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, W), min(y + size, H)
            if x1 > x0 and y1 > y0:
                frame[y0:y1, x0:x1] = img[y0 - y : y1 - y, x0 - x : x1 - x, None]
        out.append(frame)
    return out


def write(frames: list[np.ndarray], out: Path) -> None:
    import cv2

    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    try:
        if not writer.isOpened():
            raise ValueError(f"{out}: OpenCV cannot write {out.suffix} video with the mp4v codec; try .mp4 or .avi")
        for frame in frames:
            writer.write(frame)
        writer.release()
        os.replace(tmp, out)
    finally:
        writer.release()
        if tmp.exists():
            tmp.unlink()


def make_demo_clip(data: Path, out: Path, frames: int = 90, seed: int = 0) -> Path:
    """Write the demo clip to ``out`` (see the module doc); ``ValueError`` for bad input."""
    if frames < 3:
        raise ValueError(f"--frames must be >= 3, got {frames}")
    if out.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
        raise ValueError(f"{out}: --out needs a video suffix (.mp4, .avi, .mkv, .mov)")
    val = data / "val"
    if not val.is_dir():
        raise ValueError(f"{data}: no val/ folder (expected an extracted FER2013 tree with train/ and val/)")
    rng = np.random.default_rng(seed)
    faces = pick_faces(val, rng)
    out.parent.mkdir(parents=True, exist_ok=True)
    write(render(faces, plan(frames, rng), backdrop(rng), frames), out)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="extracted FER2013 folder (with val/)")
    parser.add_argument("--out", type=Path, required=True, help="video to write (.mp4, .avi, .mkv, .mov)")
    parser.add_argument("--frames", type=int, default=90, help="frames at 30 FPS (default 90 = 3 s)")
    parser.add_argument("--seed", type=int, default=0, help="which faces and motions (default 0)")
    args = parser.parse_args(argv)
    try:
        path = make_demo_clip(args.data, args.out, args.frames, args.seed)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.frames} frames, {W}x{H}, {FPS:g} FPS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
