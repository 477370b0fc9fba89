"""Deterministic synthetic face-sized images, for when no data is given (latency work, smoke tests)."""

from __future__ import annotations

import numpy as np


def synthetic_faces(count: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth gray images (uint8 [N, 48, 48]) standing in for faces when no data is given."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((count, 48, 48), dtype=np.uint8)
    for i in range(count):
        noise = rng.normal(128, 60, (48, 48)).astype(np.float32)
        out[i] = np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0 + (i % 3)), 0, 255).astype(np.uint8)
    return out
