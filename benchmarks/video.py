"""End-to-end frames per second of the video pipeline, with per-stage times.

    python benchmarks/video.py ARTIFACT... [--faces 1 5] [--detect-every 3] [--frames 150]
        [--fer-root FER2013] [--repeat 2] [--out exports/video/results.json]

For each artifact and face count, a 640x480 clip is generated (real FER2013 val faces,
resized to about 120 px and pasted on a textured background, moving a few pixels per
frame; written as MJPEG so decoding costs what a camera's MJPEG stream costs) and run
through ``Runtime(...).stream(clip, detect_every=N, smoothing=0.5)`` exactly as the
``video`` command runs it, without writing an output video. Reported per run: frames/s
end to end (wall clock from the first to the last frame) and mean milliseconds per frame
for decode (capture thread, overlapped), detect, preprocess, infer and draw.

OpenVINO ``.xml`` artifacts are compiled for a static batch of 1 when ``--faces 1``
(``Runtime(xml, batch=1)``; the 5-face runs use the IR's dynamic batch). Threads: the
backend's default. The machine may be shared: each configuration is repeated
``--repeat`` times and the spread reported; the load average is recorded.
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

    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
