"""Deterministic synthetic face-sized images, for when no data is given (latency work, smoke tests)."""

from __future__ import annotations

import numpy as np

from emonext_edge.opencv import import_cv2


def synthetic_faces(count: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth gray images (uint8 [N, 48, 48]) standing in for faces when no data is given."""
    cv2 = import_cv2()  # one line naming the fix when OpenCV is missing

    rng = np.random.default_rng(seed)
    out = np.empty((count, 48, 48), dtype=np.uint8)
    for i in range(count):
        noise = rng.normal(128, 60, (48, 48)).astype(np.float32)
        out[i] = np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0 + (i % 3)), 0, 255).astype(np.uint8)
    return out
