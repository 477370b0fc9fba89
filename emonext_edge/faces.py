"""Face detection and cropping for full frames (numpy + OpenCV, no torch).

Default detector: OpenCV's bundled frontal-face Haar cascade (``cv2.CascadeClassifier``).
OpenCV 5 removed both ``CascadeClassifier`` and the bundled cascades from its Python
packages; there the default falls back to scikit-image's bundled LBP frontal-face cascade
(``skimage.feature.Cascade``), and without scikit-image a clear error asks for a detector
file. Pass a YuNet ``.onnx`` model file (``cv2.FaceDetectorYN``) or another cascade
``.xml`` as ``detector`` to choose.

Thread safety: OpenCV detectors keep per-call state, so each thread gets its own
detector instance (cached per thread and per model file).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import ImageError, ModelFileError
from .preprocess import to_gray

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, w, h in pixels
DetectorSpec = Union[None, str, os.PathLike]

HAAR_DEFAULT = "haarcascade_frontalface_default.xml"
_local = threading.local()


def default_cascade_path() -> Path:
    """The frontal-face Haar cascade shipped inside the installed OpenCV package."""
    import cv2

    candidates = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        candidates.append(Path(data.haarcascades) / HAAR_DEFAULT)
    package_dir = Path(cv2.__file__).resolve().parent
    candidates += [package_dir / "data" / HAAR_DEFAULT, *package_dir.rglob(HAAR_DEFAULT)]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelFileError(
        f"OpenCV's bundled {HAAR_DEFAULT} was not found under {package_dir}; "
        "pass detector=<cascade .xml or YuNet .onnx file>"
    )


def _default_detector_path() -> Path:
    import cv2

    if hasattr(cv2, "CascadeClassifier"):
        return default_cascade_path()
    try:
        from skimage.data import lbp_frontal_face_cascade_filename
    except ImportError:
        raise ModelFileError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier and no bundled Haar cascade, and scikit-image "
            "(whose LBP face cascade is the fallback) is not installed; pass detector=<YuNet .onnx file> "
            "(face_detection_yunet_2023mar.onnx from the OpenCV model zoo) or pip install scikit-image"
        ) from None
    return Path(lbp_frontal_face_cascade_filename())


def _detector(spec: DetectorSpec) -> tuple[str, Any]:
    """(kind, detector) for ``spec``, created once per thread."""
    import cv2

    path = _default_detector_path() if spec is None else Path(spec)
    cache: dict[Path, tuple[str, Any]] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    if path in cache:
        return cache[path]
    if not path.is_file():
        raise ModelFileError(f"{path}: no such face detector file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".onnx":
            found: tuple[str, Any] = ("yunet", cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.8, 0.3, 5000))
        elif suffix == ".xml" and not hasattr(cv2, "CascadeClassifier"):
            from skimage.feature import Cascade  # LBP cascades in OpenCV's XML format

            try:
                found = ("skimage", Cascade(str(path)))
            except Exception as exc:
                raise ModelFileError(
                    f"{path}: OpenCV {cv2.__version__} has no CascadeClassifier and scikit-image could not read "
                    f"this cascade (it reads LBP cascades only): {exc}"
                ) from None
        elif suffix == ".xml":
            cascade = cv2.CascadeClassifier(str(path))  # absent from OpenCV 5 stubs
            if cascade.empty():
                raise ModelFileError(f"{path}: not a readable OpenCV cascade classifier")
            found = ("cascade", cascade)
        else:
            raise ModelFileError(f"{path}: unknown face detector kind {suffix!r}; expected a cascade .xml or a YuNet .onnx")
    except cv2.error as exc:
        raise ModelFileError(f"{path}: OpenCV could not load this face detector ({str(exc).strip().splitlines()[-1]})") from None
    cache[path] = found
    return found


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"frame: expected a numpy array, got {type(frame).__name__}")
    to_gray(frame, name="frame")  # dtype / shape / channel checks with readable messages
    return frame


def detect_faces(frame: np.ndarray, detector: DetectorSpec = None, min_size: Optional[int] = None) -> list[Box]:
    """Faces in a BGR / gray / BGRA uint8 frame as ``(x, y, w, h)`` boxes, left to right.

    ``detector``: ``None`` (OpenCV's Haar cascade), a cascade ``.xml`` or a YuNet ``.onnx``.
    ``min_size``: smallest face side in pixels (default: 1/10 of the shorter frame side, at
    least 32: smaller faces carry too little detail for a 48-px-trained classifier anyway). A frame without faces gives an empty list.
    """
    import cv2

    frame = _check_frame(frame)
    h, w = frame.shape[:2]
    if min_size is None:
        min_size = max(32, min(h, w) // 10)
    kind, det = _detector(detector)
    if kind == "yunet":
        bgr = frame
        if frame.ndim == 2 or frame.shape[2] == 1:
            bgr = cv2.cvtColor(frame.reshape(h, w), cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            bgr = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        det.setInputSize((w, h))
        _, found = det.detect(np.ascontiguousarray(bgr))
        raw = [] if found is None else [tuple(row[:4]) for row in found]
    elif kind == "skimage":
        gray = to_gray(frame, name="frame")
        side = min(h, w)
        found = det.detect_multi_scale(
            img=gray, scale_factor=1.2, step_ratio=1, min_size=(min_size, min_size),
            max_size=(side, side), min_neighbor_number=6,
        )
        raw = [(f["c"], f["r"], f["width"], f["height"]) for f in found]
    else:
        gray = cv2.equalizeHist(to_gray(frame, name="frame"))
        found = det.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
        raw = [tuple(row) for row in found] if len(found) else []
    boxes = []
    for x, y, bw, bh in raw:
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(w, int(round(x + bw))), min(h, int(round(y + bh)))  # noqa: RUF046 (numpy scalars)
        if x1 - x0 >= min_size and y1 - y0 >= min_size:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return sorted(_merge_overlapping(boxes))


def _merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Drop a box whose center lies inside a larger kept box (one face, several detections)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        if not any(k[0] <= cx <= k[0] + k[2] and k[1] <= cy <= k[1] + k[3] for k in kept):
            kept.append(box)
    return kept


def crop_face(frame: np.ndarray, box: Box, margin: float = 0.1) -> np.ndarray:
    """The box grown by ``margin`` of its width/height on every side, clipped to the frame."""
    frame = _check_frame(frame)
    try:
        x, y, bw, bh = (int(v) for v in box)
    except (TypeError, ValueError):
        raise ImageError(f"face box: expected (x, y, w, h) integers, got {box!r}") from None
    if bw <= 0 or bh <= 0:
        raise ImageError(f"face box {box!r}: width and height must be positive")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    h, w = frame.shape[:2]
    dx, dy = round(bw * margin), round(bh * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(w, x + bw + dx), min(h, y + bh + dy)
    if x1 <= x0 or y1 <= y0:
        raise ImageError(f"face box {box!r} lies outside the {w}x{h} frame")
    return frame[y0:y1, x0:x1]
