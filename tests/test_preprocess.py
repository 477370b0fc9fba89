"""Preprocessing: bit-exact parity with the official PIL/torchvision pipeline, inputs, errors."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import PIL
import pytest
from PIL import Image

from emonext_edge import ImageError, preprocess
from emonext_edge.preprocess import (
    MAX_PIXELS,
    MIN_SIDE,
    _Pass,
    _pil_taps,
    image_file_size,
    load_image,
    preprocess_one,
    preprocess_ten_crop,
    resize_shorter_side,
)


def _official(pil: Image.Image) -> np.ndarray:
    """The official eval transform, written with PIL as torchvision does it: Grayscale, Resize(236), CenterCrop(224)."""
    gray = pil.convert("L")
    w, h = gray.size
    size = (int(236 * w / h), 236) if h <= w else (236, int(236 * h / w))
    resized = np.asarray(gray.resize(size, Image.Resampling.BILINEAR))
    top, left = round((resized.shape[0] - 224) / 2.0), round((resized.shape[1] - 224) / 2.0)
    return resized[top : top + 224, left : left + 224].astype(np.float32) / 255.0


def test_bit_exact_with_pil_on_fer2013_faces(fer2013_root):
    files = sorted((fer2013_root / "val").glob("*/*.jpg"))[::40]
    assert len(files) > 80
    for f in files:
        ours = preprocess_one(f)
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
        assert np.array_equal(ours[0], _official(Image.open(f)))
        assert np.array_equal(ours[0], ours[2])


@pytest.mark.parametrize("shape", [(480, 640, 3), (300, 200, 3), (97, 131, 4), (236, 236, 3), (30, 500, 3)])
def test_bit_exact_with_pil_on_color_frames_of_any_size(shape):
    rng = np.random.default_rng(sum(shape))
    bgr = rng.integers(0, 256, shape, dtype=np.uint8)
    rgb = bgr[:, :, [2, 1, 0]].copy()
    expected = _official(Image.fromarray(rgb))
    assert np.array_equal(preprocess_one(bgr)[0], expected)
    assert np.array_equal(preprocess_one(rgb, rgb=True)[0], expected)


def test_ten_crop_matches_torchvision_order(fer2013_root):
    f = min((fer2013_root / "val" / "Happy").glob("*.jpg"))
    crops = preprocess_ten_crop(f)
    assert crops.shape == (10, 3, 224, 224)
    full = np.asarray(Image.open(f).convert("L").resize((236, 236), Image.Resampling.BILINEAR)).astype(np.float32) / 255.0
    flipped = full[:, ::-1]
    expected = []
    for img in (full, flipped):
        expected += [img[:224, :224], img[:224, 12:], img[12:, :224], img[12:, 12:], img[6:230, 6:230]]
    for got, exp in zip(crops, expected):
        assert np.array_equal(got[0], exp)


def test_batch_of_mixed_inputs(fer2013_root, tmp_path):
    f = min((fer2013_root / "val" / "Sad").glob("*.jpg"))
    gray = np.asarray(Image.open(f))
    batch = preprocess([f, gray, np.dstack([gray] * 3), np.dstack([gray] * 3 + [np.full_like(gray, 7)])])
    assert batch.shape == (4, 3, 224, 224)
    for i in range(1, 4):
        assert np.array_equal(batch[0], batch[i])
    assert preprocess(np.stack([gray, gray])).shape == (2, 3, 224, 224)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 10), np.uint8), "empty array"),
        (np.zeros((10, 10), np.float32), "expected dtype uint8"),
        (np.full((10, 10), np.nan, np.float32), "NaN or inf"),
        (np.zeros((10, 10, 2), np.uint8), "expected HxW gray, HxWx3"),
        ("definitely/not/here.png", "no such image file"),
    ],
)
def test_bad_inputs_raise_readable_errors(bad, message):
    with pytest.raises(ImageError, match=message):
        preprocess(bad)


def test_corrupt_file_and_batch_element_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg: not a readable image"):
        preprocess(bad)
    good = np.zeros((48, 48), np.uint8)
    with pytest.raises(ImageError, match=r"batch element 1: .*dtype uint8"):
        preprocess([good, good.astype(np.int32)])
    with pytest.raises(ImageError, match="empty list"):
        preprocess([])


def test_import_does_not_pull_torch():
    code = "import emonext_edge, emonext_edge.preprocess, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- bounded, PIL-exact on any aspect ratio (issue 15) ------------------------------------------

PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


@pytest.fixture(autouse=True)
def _pass_order_of_installed_pillow(monkeypatch):
    """Compare with the Pillow installed here: >= 13 picks the pass order by size, older ones never."""
    import importlib

    pre = importlib.import_module("emonext_edge.preprocess")  # the package attribute is the function
    monkeypatch.setattr(pre, "PILLOW13_PASS_ORDER", PILLOW_13)


def _official_crops(pil: Image.Image) -> list[np.ndarray]:
    """torchvision TenCrop(224) after Resize(236), written with PIL: 5 crops, then 5 of the flipped image."""
    gray = pil.convert("L")
    w, h = gray.size
    size = (int(236 * w / h), 236) if h <= w else (236, int(236 * h / w))
    full = np.asarray(gray.resize(size, Image.Resampling.BILINEAR))
    out = []
    for img in (full, full[:, ::-1]):
        H, W = img.shape
        ct, cl = round((H - 224) / 2.0), round((W - 224) / 2.0)
        for t, left in ((0, 0), (0, W - 224), (H - 224, 0), (H - 224, W - 224), (ct, cl)):
            out.append(img[t : t + 224, left : left + 224].astype(np.float32) / 255.0)
    return out


EXTREME = [(16, 8000), (8000, 16), (17, 5000), (5000, 17), (16, 16), (16, 20000), (225, 16), (29, 31)]
TALL_DOWNSCALE = [(3001, 999), (2000, 700), (640, 480), (1000, 990), (999, 3001), (4000, 3000)]


@pytest.mark.parametrize("shape", EXTREME + TALL_DOWNSCALE)
@pytest.mark.parametrize("channels", [None, 3, 4])
def test_bit_exact_with_pil_on_extreme_shapes(shape, channels):
    rng = np.random.default_rng(shape[0] * 7 + shape[1] + (channels or 0))
    full = shape if channels is None else (*shape, channels)
    bgr = rng.integers(0, 256, full, dtype=np.uint8)
    rgb = bgr if channels is None else bgr[:, :, [2, 1, 0, 3][:channels]].copy()
    expected = _official_crops(Image.fromarray(rgb))
    assert np.array_equal(preprocess_one(bgr)[0], expected[4])
    assert np.array_equal(preprocess_one(rgb, rgb=True)[0], expected[4])
    if channels is None:
        for got, exp in zip(preprocess_ten_crop(bgr), expected):
            assert np.array_equal(got[0], exp)


def test_pass_order_rule_matches_installed_pillow():
    """resize_shorter_side at assorted target sizes (both passes downscaling, one up, both up)."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(20, 700, 2))
        size = int(rng.integers(10, 400))
        gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ours = resize_shorter_side(gray, size)
        theirs = np.asarray(Image.fromarray(gray).resize(ours.shape[::-1], Image.Resampling.BILINEAR))
        assert np.array_equal(ours, theirs), (h, w, size)


def test_windowed_pass_equals_tap_by_tap_gather():
    """The float64 window dot products equal the integer gather path (used when the source is
    narrower than the filter), including windows shifted at the right edge."""
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (9, 700), dtype=np.uint8)
    for out_size in (40, 236, 900):
        index, weight = _pil_taps(700, out_size, np.arange(out_size))
        windowed = _Pass(index, weight, axis=1, width=700)
        gathered = _Pass(index, weight, axis=1, width=0)
        assert windowed.windowed and not gathered.windowed
        assert np.array_equal(windowed(src), gathered(src))
        assert np.array_equal(_Pass(index, weight, axis=0, width=700)(src.T), gathered(src).T)


@pytest.mark.parametrize("shape", [(1, 8000), (8000, 1), (1, 1), (15, 4000), (4000, 15)])
def test_shorter_side_below_minimum_is_refused(shape):
    h, w = shape
    with pytest.raises(ImageError, match=rf"{w}x{h} pixels.*at least {MIN_SIDE} px"):
        preprocess(np.zeros(shape, np.uint8))


def test_pixel_limit_refused_before_any_work():
    big = np.broadcast_to(np.uint8(3), (8000, 8000, 3))  # 64 MP, no memory behind it
    with pytest.raises(ImageError, match=rf"8000x8000 = 64,000,000 pixels, over the limit of {MAX_PIXELS:,}"):
        preprocess(big)
    assert preprocess(np.zeros((MIN_SIDE, 4 * MIN_SIDE), np.uint8)).shape == (1, 3, 224, 224)


def test_header_sizes_and_refusal_before_decoding(tmp_path):
    import struct
    import zlib

    image = np.zeros((37, 53, 3), np.uint8)
    for name, params in (("a.png", []), ("a.jpg", []), ("a.bmp", []), ("a.gif", []), ("lossy.webp", []),
                         ("lossless.webp", [cv2.IMWRITE_WEBP_QUALITY, 101])):
        path = tmp_path / name
        if not cv2.imwrite(str(path), image, params):
            continue
        assert image_file_size(path) == (53, 37), name
        assert load_image(path).shape[:2] == (37, 53)
    cv2.imwrite(str(tmp_path / "t.tiff"), image)
    assert image_file_size(tmp_path / "t.tiff") == (53, 37)  # TIFF headers are read too (issue 25)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"  # claims 60000 x 60000 (3.6 GP): refused from the header
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    with pytest.raises(ImageError, match="bomb.png: image is 60000x60000 = 3,600,000,000 pixels"):
        load_image(bomb)


@pytest.mark.parametrize(
    "array, advice",
    [
        (np.full((48, 48), 0.5, np.float32), r"0\.\.1 intensities: convert with \(x \* 255\)\.round\(\)\.astype\(np\.uint8\)"),
        (np.full((48, 48), 200.0), r"0\.\.255 pixel values: convert with x\.round\(\)\.astype\(np\.uint8\)"),
        (np.linspace(-1, 1, 48 * 48).reshape(48, 48), r"outside 0\.\.255"),
        (np.full((48, 48), 50000, np.uint16), r"\(x >> 8\)\.astype\(np\.uint8\), or \(x / 257\)"),
        (np.full((48, 48), 200, np.uint16), r"all within 0\.\.255: convert with x\.astype\(np\.uint8\)"),
        (np.full((48, 48), -3, np.int32), r"outside 0\.\.255"),
        (np.ones((48, 48), bool), r"boolean mask"),
    ],
)
def test_dtype_advice_fits_the_values(array, advice):
    with pytest.raises(ImageError, match=advice):
        preprocess(array)


def test_wrong_python_types_are_type_errors_naming_the_type():
    from emonext_edge.errors import ImageTypeError

    for bad, name in ((None, "NoneType"), (3, "int"), (b"\x89PNG", "bytes"), ({"a": 1}, "dict")):
        with pytest.raises(ImageTypeError, match=name) as info:
            preprocess(bad)
        assert isinstance(info.value, TypeError) and isinstance(info.value, ImageError)


def test_stacks_and_single_images():
    gray_stack = np.zeros((5, 48, 48), np.uint8)
    assert preprocess(gray_stack).shape == (5, 3, 224, 224)
    assert preprocess(np.zeros((2, 48, 48, 3), np.uint8)).shape == (2, 3, 224, 224)
    assert preprocess(np.zeros((48, 48, 3), np.uint8)).shape == (1, 3, 224, 224)
    with pytest.raises(ImageError, match=r"stack of 5 images\? pass it to preprocess\(\)"):
        preprocess_one(gray_stack)


def test_pass_order_switch_is_not_hidden_by_the_plan_cache(monkeypatch):
    import importlib

    pre = importlib.import_module("emonext_edge.preprocess")
    gray = np.random.default_rng(5).integers(0, 256, (3001, 999), dtype=np.uint8)
    monkeypatch.setattr(pre, "PILLOW13_PASS_ORDER", True)
    newer = preprocess_one(gray)
    monkeypatch.setattr(pre, "PILLOW13_PASS_ORDER", False)
    older = preprocess_one(gray)
    assert not np.array_equal(newer, older) and np.abs(newer - older).max() <= 1 / 255 + 1e-7
    monkeypatch.setattr(pre, "PILLOW13_PASS_ORDER", True)
    assert np.array_equal(preprocess_one(gray), newer)
