"""Face detection and cropping for full frames (numpy + OpenCV, no torch).

Default detector: YuNet-n (``cv2.FaceDetectorYN``), bundled with the package in
``emonext_edge/data/face_detector/`` together with its Apache-2.0 ``LICENSE`` and an
attribution README; its SHA-256 is checked each time it is loaded. When it cannot be used
(an OpenCV without ``FaceDetectorYN``, a missing or altered file, a load failure) the
default falls back to OpenCV's bundled frontal-face Haar cascade with a one-line warning
(once per process); OpenCV 5, which dropped the cascades, falls back further to
scikit-image's LBP cascade. ``detector="yunet"`` / ``"haar"`` pick one by name (no
fallback); a YuNet ``.onnx``, a cascade ``.xml``, or a callable
``detector(frame) -> [(x, y, w, h), ...]`` choose another. A file that is not a face
detector is refused with a :class:`ModelFileError` naming it.

Boxes lying mostly outside the picture are dropped: outside the frame (DNN detectors
may return such boxes) or over the uniform black bars of a letterboxed / padded frame.

Thread safety: OpenCV detectors keep per-call state, so each thread gets its own
detector instance (cached per thread and per model file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from .errors import ImageError, ModelFileError
from .opencv import import_cv2
from .preprocess import to_gray

log = logging.getLogger(__name__)

Box = Tuple[int, int, int, int]  # x, y, w, h in pixels
FloatBox = Tuple[float, float, float, float]
DetectorSpec = Union[None, str, os.PathLike, Callable[[np.ndarray], Any]]

HAAR_DEFAULT = "haarcascade_frontalface_default.xml"
#: the bundled YuNet-n weights (Apache-2.0; LICENSE and README.md beside it) and their SHA-256
BUNDLED_YUNET = Path(__file__).resolve().parent / "data" / "face_detector" / "yunet_n_640_640.onnx"
BUNDLED_YUNET_SHA256 = "25a606a145a5b6d7271ae138fbd00eba91dad8b83222ae3f2c7ecd0f4a7b0e31"
#: YuNet's score threshold (the value the weights' README gives for cv2.FaceDetectorYN.create)
YUNET_SCORE = 0.6
#: longest side YuNet is run at (frames above are shrunk for it)
YUNET_MAX_SIDE = 640
NAMED_DETECTORS = ("yunet", "haar")
_local = threading.local()
_fallback_noted = threading.Event()


def default_cascade_path() -> Path:
    """The frontal-face Haar cascade shipped inside the installed OpenCV package."""
    cv2 = import_cv2()

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
    cv2 = import_cv2()

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


def check_bundled_yunet(path: Optional[Path] = None) -> Path:
    """The bundled YuNet file (or ``path``) when its SHA-256 is the expected one, else ``ModelFileError``."""
    path = BUNDLED_YUNET if path is None else path
    if not path.is_file():
        raise ModelFileError(f"{path}: the bundled YuNet face detector is missing (reinstall emonext-edge)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BUNDLED_YUNET_SHA256:
        raise ModelFileError(
            f"{path}: SHA-256 {digest[:12]}... does not match the bundled YuNet's {BUNDLED_YUNET_SHA256[:12]}... "
            "(file altered or damaged; reinstall emonext-edge)"
        )
    return path


def _default_detector() -> tuple[str, Any]:
    """The bundled YuNet; else (with a one-line warning, once) the Haar / LBP cascade."""
    import cv2

    try:
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ModelFileError(f"OpenCV {cv2.__version__} has no cv2.FaceDetectorYN (YuNet needs OpenCV 4.8+)")
        return _detector(check_bundled_yunet())
    except ModelFileError as exc:
        fallback = _detector(_default_detector_path())
        if not _fallback_noted.is_set():
            _fallback_noted.set()
            log.warning("face detector: YuNet unavailable (%s); using the %s cascade instead (finds fewer faces, "
                        "some false ones)", exc, "Haar" if fallback[0] == "cascade" else "LBP")
        return fallback


def detector_kind(spec: DetectorSpec = None) -> str:
    """What ``spec`` runs: ``"yunet"``, ``"cascade"`` (Haar/LBP via OpenCV), ``"skimage"`` or ``"callable"``."""
    return "callable" if callable(spec) else _detector(spec)[0]


def _detector(spec: Union[None, str, os.PathLike]) -> tuple[str, Any]:
    """(kind, detector) for ``spec``, created once per thread."""
    cv2 = import_cv2()

    cache: dict[Any, tuple[str, Any]] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    if spec is None:
        if None not in cache:
            cache[None] = _default_detector()
        return cache[None]
    if isinstance(spec, str) and spec.lower() in NAMED_DETECTORS and not Path(spec).exists():
        name = spec.lower()
        if name not in cache:
            cache[name] = _detector(check_bundled_yunet() if name == "yunet" else _default_detector_path())
        return cache[name]
    path = Path(spec)
    if path in cache:
        return cache[path]
    if not path.is_file():
        if path.exists():  # a folder, a device, a FIFO: named as what it is
            kind = "a folder" if path.is_dir() else "a device" if path.is_char_device() or path.is_block_device() \
                else "a special file"
            raise ModelFileError(f"{path}: is {kind}, not a face detector file (a YuNet .onnx or a cascade .xml)")
        raise ModelFileError(f"{path}: no such face detector file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".onnx":
            found: tuple[str, Any] = ("yunet", _load_yunet(path))
        elif suffix == ".xml" and not hasattr(cv2, "CascadeClassifier"):
            from skimage.feature import Cascade  # LBP cascades in OpenCV's XML format

            try:
                found = ("skimage", Cascade(str(path)))
            except Exception as exc:  # noqa: BLE001 (scikit-image raises assorted errors on bad files)
                raise ModelFileError(
                    f"{path}: OpenCV {cv2.__version__} has no CascadeClassifier and scikit-image could not read "
                    f"this cascade (it reads LBP cascades only): {exc}"
                ) from None
        elif suffix == ".xml":
            try:
                cascade = cv2.CascadeClassifier(str(path))  # absent from OpenCV 5 stubs
            except SystemError:  # OpenCV's binding reports a file it cannot parse this way
                cascade = None
            if cascade is None or cascade.empty():
                raise ModelFileError(
                    f"{path}: not an OpenCV cascade classifier (expected a Haar/LBP cascade .xml such as "
                    f"{HAAR_DEFAULT}, or a YuNet .onnx face detector)"
                )
            found = ("cascade", cascade)
        else:
            raise ModelFileError(f"{path}: unknown face detector kind {suffix!r}; expected a cascade .xml or a YuNet .onnx")
    except cv2.error as exc:
        raise ModelFileError(f"{path}: OpenCV could not load this face detector ({str(exc).strip().splitlines()[-1]})") from None
    cache[path] = found
    return found


def _load_yunet(path: Path) -> Any:
    """A ``cv2.FaceDetectorYN`` for ``path``, checked on a blank image: OpenCV accepts any ONNX
    at creation and only fails (``Layer with requested id=-1 not found``) when detecting."""
    cv2 = import_cv2()

    not_yunet = (
        f"{path}: not a YuNet face detector for cv2.FaceDetectorYN (expected an ONNX with outputs "
        "cls_8/16/32, obj_*, bbox_*, kps_*, such as face_detection_yunet_2023mar.onnx from the OpenCV model zoo)"
    )
    try:
        detector = cv2.FaceDetectorYN.create(str(path), "", (64, 64), YUNET_SCORE, 0.3, 5000)
    except cv2.error as exc:
        raise ModelFileError(f"{not_yunet}; OpenCV: {_cv_reason(exc)}") from None
    try:
        detector.setInputSize((64, 64))
        detector.detect(np.zeros((64, 64, 3), np.uint8))
    except cv2.error as exc:
        raise ModelFileError(f"{not_yunet}; OpenCV: {_cv_reason(exc)}") from None
    return detector


def _cv_reason(exc: BaseException) -> str:
    """The informative part of a cv2.error (its last line, without the source location)."""
    import re

    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    found = re.search(r"error: \(-?\d+:([^)]*)\) (.*)", reason)
    return f"{found.group(2)} ({found.group(1)})" if found else reason


def content_region(frame: np.ndarray, threshold: int = 16) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the frame without uniform black borders (letterbox / padding bars).

    A border row or column counts as padding when none of its pixels exceeds ``threshold``.
    The whole frame when there is no such border (or the frame is all black).
    """
    gray = to_gray(frame, name="frame")
    h, w = gray.shape
    rows = np.flatnonzero(gray.max(axis=1) > threshold)
    cols = np.flatnonzero(gray.max(axis=0) > threshold)
    if rows.size == 0 or cols.size == 0:
        return (0, 0, w, h)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def keep_inside(boxes: list[Any], region: tuple[int, int, int, int], min_fraction: float = 0.5) -> list[FloatBox]:
    """The boxes with at least ``min_fraction`` of their area inside ``region`` ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = region
    kept = []
    for box in boxes:
        x, y, bw, bh = (float(v) for v in box[:4])
        if bw <= 0 or bh <= 0:
            continue
        inter = max(0.0, min(x1, x + bw) - max(x0, x)) * max(0.0, min(y1, y + bh) - max(y0, y))
        if inter >= min_fraction * bw * bh:
            kept.append((x, y, bw, bh))
    return kept


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"frame: expected a numpy array, got {type(frame).__name__}")
    to_gray(frame, name="frame")  # dtype / shape / channel checks with readable messages
    return frame


def detect_faces(
    frame: np.ndarray, detector: DetectorSpec = None, min_size: Optional[int] = None, scale: float = 1.0
) -> list[Box]:
    """Faces in a BGR / gray / BGRA uint8 frame as ``(x, y, w, h)`` boxes, left to right.

    ``detector``: ``None`` (the bundled YuNet; Haar cascade fallback), ``"yunet"`` /
    ``"haar"``, a cascade ``.xml``, a YuNet ``.onnx``, or a callable ``detector(frame) -> [(x, y, w, h), ...]``. Boxes with less than half of
    their area inside the picture (the frame minus black padding bars) are dropped.
    ``min_size``: smallest face side in pixels (default: YuNet 1/30 of the shorter frame side,
    at least 24; cascades 1/10, at least 32, as they fire on small textures).
    ``scale`` (0 < scale <= 1): run the detector on the frame resized by this factor (boxes
    are returned in frame pixels); 0.5 makes the detector about 2-4x faster, and a face must
    then be at least 24 / scale px for the Haar cascade (its window). YuNet always sees at
    most 640 px on the longer side (it was trained at 640x640: on larger inputs it misses
    big faces and is slow); larger frames are shrunk for it. A frame without faces gives an
    empty list.
    """
    cv2 = import_cv2()

    frame = _check_frame(frame)
    h, w = frame.shape[:2]
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    det: Any
    kind, det = ("callable", detector) if callable(detector) else _detector(detector)
    if min_size is None:
        min_size = max(24, min(h, w) // 30) if kind in ("yunet", "callable") else max(32, min(h, w) // 10)
    if kind == "yunet":
        scale = min(scale, YUNET_MAX_SIDE / max(h, w))
    img, ih, iw, small = frame, h, w, min_size
    if scale < 1 and kind != "callable":
        iw, ih = max(1, round(w * scale)), max(1, round(h * scale))
        img, small = cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_AREA), max(1, round(min_size * scale))
    if kind == "callable":
        raw = [tuple(float(v) for v in box[:4]) for box in det(frame)]
    elif kind == "yunet":
        bgr = img
        if img.ndim == 2 or img.shape[2] == 1:
            bgr = cv2.cvtColor(img.reshape(ih, iw), cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            bgr = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        det.setInputSize((iw, ih))
        try:
            _, found = det.detect(np.ascontiguousarray(bgr))
        except cv2.error as exc:
            name = detector if detector is not None else BUNDLED_YUNET.name
            raise ModelFileError(f"{name}: the YuNet face detector failed on a {iw}x{ih} frame: {_cv_reason(exc)}") from None
        raw = [] if found is None else [tuple(row[:4]) for row in found]
    elif kind == "skimage":
        gray = to_gray(img, name="frame")
        side = min(ih, iw)
        found = det.detect_multi_scale(
            img=gray, scale_factor=1.2, step_ratio=1, min_size=(small, small),
            max_size=(side, side), min_neighbor_number=6,
        )
        raw = [(f["c"], f["r"], f["width"], f["height"]) for f in found]
    else:
        gray = cv2.equalizeHist(to_gray(img, name="frame"))
        found = det.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(small, small))
        raw = [tuple(row) for row in found] if len(found) else []
    if img is not frame:
        raw = [tuple(float(v) / scale for v in box[:4]) for box in raw]
    boxes = []
    region = content_region(frame)
    for x, y, bw, bh in keep_inside(raw, region):
        x0, y0 = max(region[0], round(x)), max(region[1], round(y))
        x1, y1 = min(region[2], round(x + bw)), min(region[3], round(y + bh))
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
