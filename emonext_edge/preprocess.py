"""The one preprocessing implementation: numpy + OpenCV, no torch, no PIL.

The official EmoNeXt evaluation is torchvision on PIL images::

    Grayscale() -> Resize(236) (PIL bilinear) -> CenterCrop(224) | TenCrop(224)
    -> ToTensor() (/255) -> repeat to 3 channels

PIL's bilinear resampling is not OpenCV's ``INTER_LINEAR``: PIL widens the filter when
downscaling (antialiasing), uses 22-bit fixed-point weights and rounds to uint8 between its
horizontal and vertical passes. This module reproduces that arithmetic exactly (see
``_pil_resample_axis``), and PIL's ``RGB -> L`` conversion, so a frame preprocessed here is
bit-identical to what the training code fed the model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import ImageError

RESIZE_SHORTER = 236
CROP_SIZE = 224
INPUT_SHAPE = (3, CROP_SIZE, CROP_SIZE)

#: Travels with every artifact (checkpoint info, ONNX metadata, IR rt_info, engine manifest).
PREPROCESSING_SPEC: dict[str, Any] = {
    "color": "grayscale (PIL ITU-R 601-2 luma: L = R*299/1000 + G*587/1000 + B*114/1000)",
    "resize": {"shorter_side": RESIZE_SHORTER, "interpolation": "bilinear (PIL-exact, antialiased)"},
    "crop": {"size": CROP_SIZE, "mode": "center (ten-crop for the official test protocol)"},
    "scale": "x / 255 -> [0, 1]",
    "normalize": None,
    "channels": "gray repeated to 3",
    "layout": "NCHW float32",
    "input_shape": list(INPUT_SHAPE),
}

ImageInput = Union[str, os.PathLike, np.ndarray]

_PRECISION_BITS = 32 - 8 - 2  # Pillow's Resample.c


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 (gray HxW, BGR HxWx3 or BGRA HxWx4) or raise ``ImageError``."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such image file")
    data = np.fromfile(str(p), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"{p}: not a readable image (OpenCV could not decode {data.size} bytes)")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF: keep the top 8 bits, as PIL's 'L' does
        image = (image >> 8).astype(np.uint8)
    return image


def to_gray(image: np.ndarray, *, rgb: bool = False, name: str = "image") -> np.ndarray:
    """uint8 gray / BGR / RGB / BGRA / RGBA array -> uint8 HxW gray, exactly as PIL ``convert('L')``."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array or a path, got {type(image).__name__}")
    if image.size == 0:
        raise ImageError(f"{name}: empty array of shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            raise ImageError(f"{name}: contains NaN or inf values (dtype {image.dtype})")
        raise ImageError(
            f"{name}: expected dtype uint8 (0..255 pixel values), got {image.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(
            f"{name}: expected HxW gray, HxWx3 (BGR/RGB) or HxWx4 (BGRA/RGBA), got shape {image.shape}"
        )
    c = image.astype(np.uint32)
    r, g, b = (c[:, :, 0], c[:, :, 1], c[:, :, 2]) if rgb else (c[:, :, 2], c[:, :, 1], c[:, :, 0])
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


@lru_cache(maxsize=64)
def _pil_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and 22-bit integer weights, [out_size, taps], as Pillow computes them."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), dtype=np.intp)
    weight = np.zeros((out_size, ksize), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = np.array(
            [max(0.0, 1.0 - abs((x + xmin - center + 0.5) / filterscale)) for x in range(xmax)]
        )
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, -0.5 + w * (1 << _PRECISION_BITS), 0.5 + w * (1 << _PRECISION_BITS))
        index[xx, :xmax] = np.arange(xmin, xmin + xmax)
        weight[xx, :xmax] = fixed.astype(np.int64)  # C cast truncates toward zero, as np does
    return index, weight


def _pil_resample_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    index, weight = _pil_bilinear_taps(image.shape[axis], out_size)
    src = np.moveaxis(image, axis, -1).astype(np.int64)
    acc = np.full(src.shape[:-1] + (out_size,), 1 << (_PRECISION_BITS - 1), dtype=np.int64)
    for tap in range(index.shape[1]):
        acc += src[..., index[:, tap]] * weight[:, tap]
    out = np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def resize_shorter_side(gray: np.ndarray, size: int = RESIZE_SHORTER) -> np.ndarray:
    """torchvision ``Resize(size)`` on a PIL 'L' image: shorter side -> ``size``, PIL bilinear."""
    h, w = gray.shape
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) == (h, w):
        return gray
    out = gray
    if new_w != w:  # Pillow: horizontal pass first, rounded to uint8, then vertical
        out = _pil_resample_axis(out, new_w, axis=1)
    if new_h != h:
        out = _pil_resample_axis(out, new_h, axis=0)
    return out


def _crop(gray: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return gray[top : top + size, left : left + size]


def center_crop(gray: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    h, w = gray.shape
    return _crop(gray, int(round((h - size) / 2.0)), int(round((w - size) / 2.0)), size)


def ten_crops(gray: np.ndarray, size: int = CROP_SIZE) -> list[np.ndarray]:
    """torchvision ``TenCrop``: four corners + center, then the same on the mirrored image."""
    crops: list[np.ndarray] = []
    for img in (gray, gray[:, ::-1]):
        h, w = img.shape
        crops += [
            _crop(img, 0, 0, size),
            _crop(img, 0, w - size, size),
            _crop(img, h - size, 0, size),
            _crop(img, h - size, w - size, size),
            center_crop(img, size),
        ]
    return crops


def _to_tensor(crop: np.ndarray) -> np.ndarray:
    x = crop.astype(np.float32) / np.float32(255.0)
    return np.repeat(x[None, :, :], 3, axis=0)


def _resized_gray(image: ImageInput, rgb: bool, name: str) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
        image = load_image(image)
        rgb = False  # files are decoded by OpenCV, i.e. BGR
    gray = to_gray(image, rgb=rgb, name=name)
    if min(gray.shape) < 1:
        raise ImageError(f"{name}: image has a zero-sized side {gray.shape}")
    return resize_shorter_side(gray)


def preprocess_one(image: ImageInput, *, rgb: bool = False, name: str = "image") -> np.ndarray:
    """One image -> float32 [3, 224, 224] (single center crop)."""
    return _to_tensor(center_crop(_resized_gray(image, rgb, name)))


def preprocess_ten_crop(image: ImageInput, *, rgb: bool = False, name: str = "image") -> np.ndarray:
    """One image -> float32 [10, 3, 224, 224] (the official test protocol)."""
    return np.stack([_to_tensor(c) for c in ten_crops(_resized_gray(image, rgb, name))])


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] > 4):
            return list(images)  # a stack of images (N,H,W,C) or of gray images (N,H,W)
        return [images]
    return list(images)


def preprocess(
    images: ImageInput | Iterable[ImageInput], *, rgb: bool = False, ten_crop: bool = False
) -> np.ndarray:
    """Paths or uint8 arrays -> float32 NCHW batch ``[N, 3, 224, 224]`` (``[N, 10, 3, 224, 224]`` with ``ten_crop``).

    Arrays are BGR (OpenCV's order) unless ``rgb=True``; gray and BGRA are accepted.
    A bad element raises ``ImageError`` naming its index.
    """
    items = _as_list(images)  # type: ignore[arg-type]
    if not items:
        raise ImageError("preprocess: got an empty list of images")
    one = preprocess_ten_crop if ten_crop else preprocess_one
    out = []
    for i, item in enumerate(items):
        label = str(item) if isinstance(item, (str, os.PathLike)) else f"image[{i}]"
        try:
            out.append(one(item, rgb=rgb, name=label))
        except ImageError as exc:
            if len(items) > 1:
                raise ImageError(f"batch element {i}: {exc}") from None
            raise
    return np.stack(out)
