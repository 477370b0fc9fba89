"""Preprocessing: bit-exact parity with the official PIL/torchvision pipeline, inputs, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from emonext_edge import ImageError, preprocess
from emonext_edge.preprocess import preprocess_one, preprocess_ten_crop


def _official(pil: Image.Image) -> np.ndarray:
    """The official eval transform, written with PIL as torchvision does it: Grayscale, Resize(236), CenterCrop(224)."""
    gray = pil.convert("L")
    w, h = gray.size
    size = (int(236 * w / h), 236) if h <= w else (236, int(236 * h / w))
    resized = np.asarray(gray.resize(size, Image.BILINEAR))
    top, left = int(round((resized.shape[0] - 224) / 2.0)), int(round((resized.shape[1] - 224) / 2.0))
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
    f = sorted((fer2013_root / "val" / "Happy").glob("*.jpg"))[0]
    crops = preprocess_ten_crop(f)
    assert crops.shape == (10, 3, 224, 224)
    full = np.asarray(Image.open(f).convert("L").resize((236, 236), Image.BILINEAR)).astype(np.float32) / 255.0
    flipped = full[:, ::-1]
    expected = []
    for img in (full, flipped):
        expected += [img[:224, :224], img[:224, 12:], img[12:, :224], img[12:, 12:], img[6:230, 6:230]]
    for got, exp in zip(crops, expected):
        assert np.array_equal(got[0], exp)


def test_batch_of_mixed_inputs(fer2013_root, tmp_path):
    f = sorted((fer2013_root / "val" / "Sad").glob("*.jpg"))[0]
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
