"""Property-based: any array (shape, dtype, channel count, values) either classifies or raises ``ImageError``.

Hypothesis draws the layout (one image, a gray stack or a colour stack; 0..6 channels;
sides from 0 to 30,000 px, extreme aspect ratios included), the dtype and a value regime
(0..255, 0..1, huge, negative, NaN/inf); the pixels come from a seeded generator. For
``preprocess``: accepted uint8 input gives finite float32 in [0, 1], identical to the PIL
pipeline on the centre crop; everything else raises ``ImageError`` with a one-line message.
``Runtime.predict`` runs the same inputs through a tiny ONNX model (tests/_tiny_onnx.py).
Example counts are modest and every example has a deadline, so this runs in CI.
"""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emonext_edge.errors import ImageError
from emonext_edge.preprocess import MAX_PIXELS, MIN_SIDE, preprocess

DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]
SIDES = st.one_of(
    st.integers(0, 20),  # around the MIN_SIDE edge, including empty
    st.integers(16, 600),
    st.integers(16, 600),
    st.sampled_from([1, 15, 16, 17, 47, 48, 235, 236, 237, 1000, 3001, 8000, 30_000]),
)
MAX_ELEMENTS = 3_000_000  # keep each example cheap to allocate


@st.composite
def images(draw):
    h, w = draw(SIDES), draw(SIDES)
    layout = draw(st.sampled_from(["gray", "gray", "channels", "channels", "gray_stack", "stack"]))
    channels = draw(st.one_of(st.sampled_from([1, 3, 4]), st.integers(0, 6)))
    n = draw(st.integers(0, 3))
    shape = {"gray": (h, w), "channels": (h, w, channels), "gray_stack": (n, h, w), "stack": (n, h, w, channels)}[layout]
    if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        shape = (min(h, 16), w, *shape[2:]) if layout in ("gray", "channels") else shape[:1] + (2, 2) + shape[3:]
    dtype = np.dtype(draw(st.one_of(st.just(np.uint8), st.sampled_from(DTYPES))))  # uint8 half the time
    regime = draw(st.sampled_from(["pixels", "pixels", "pixels", "unit", "huge", "negative", "nonfinite"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = int(np.prod(shape, dtype=np.int64))
    base = {"pixels": rng.integers(0, 256, size), "unit": rng.random(size), "huge": rng.random(size) * 1e6,
            "negative": rng.normal(0, 100, size), "nonfinite": rng.random(size)}[regime]
    if regime == "nonfinite" and size:
        base = base.astype(np.float64)
        base[rng.integers(0, size)] = rng.choice([np.nan, np.inf, -np.inf])
    with np.errstate(all="ignore"):
        array = np.asarray(base).astype(dtype).reshape(shape)
    if draw(st.booleans()) and array.ndim >= 2 and array.shape[1] > 1:
        array = array[:, ::-1]  # a negative-stride view
    return array


def _pil_center(gray: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = gray.shape
    size = (int(236 * w / h), 236) if h <= w else (236, int(236 * h / w))
    full = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR))
    t, left = round((full.shape[0] - 224) / 2.0), round((full.shape[1] - 224) / 2.0)
    return full[t : t + 224, left : left + 224].astype(np.float32) / 255.0


def _accepted_alone(image: np.ndarray) -> bool:
    """What the documented rules accept for one image (used to check the outcome, not to decide it)."""
    if image.dtype != np.uint8 or image.size == 0:
        return False
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        return False
    if image.ndim not in (2, 3):
        return False
    h, w = image.shape[:2]
    return min(h, w) >= MIN_SIDE and h * w <= MAX_PIXELS


@pytest.fixture(autouse=True, scope="module")
def _pillow_pass_order():
    import PIL

    pre = importlib.import_module("emonext_edge.preprocess")
    saved = pre.PILLOW13_PASS_ORDER
    pre.PILLOW13_PASS_ORDER = int(PIL.__version__.split(".")[0]) >= 13
    yield
    pre.PILLOW13_PASS_ORDER = saved


@settings(max_examples=150, deadline=10_000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image=images())
def test_preprocess_classifies_or_raises_image_error(image):
    items = list(image) if image.ndim == 4 or (image.ndim == 3 and image.shape[-1] > 4) else [image]
    started = time.perf_counter()
    try:
        out = preprocess(image)
    except ImageError as exc:
        message = str(exc)
        assert message and "\n" not in message
        assert not items or not all(_accepted_alone(i) for i in items), f"refused an acceptable input: {message}"
        event("refused")
        return
    finally:
        assert time.perf_counter() - started < 10
    event("classified")
    assert out.dtype == np.float32 and out.ndim == 4 and out.shape[1:] == (3, 224, 224)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert len(out) == len(items) and all(_accepted_alone(i) for i in items)
    first = items[0]
    if first.ndim == 2 or first.shape[2] == 1:  # gray: compare with PIL directly
        gray = np.ascontiguousarray(first.reshape(first.shape[:2]))
        if max(gray.shape) * 236 // min(gray.shape) <= 400_000:
            assert np.array_equal(out[0, 0], _pil_center(gray))


@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from _tiny_onnx import tiny_onnx

    from emonext_edge import Runtime

    path = tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")
    with Runtime(path) as rt:
        yield rt


@settings(max_examples=80, deadline=10_000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(image=images(), rgb=st.booleans())
def test_runtime_predict_classifies_or_raises_image_error(tiny_runtime, image, rgb):
    try:
        pred = tiny_runtime.predict(image, rgb=rgb)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not _accepted_alone(image), f"refused an acceptable image: {exc}"
        return
    assert pred.label in tiny_runtime.labels and 0.0 < pred.score <= 1.0
    assert _accepted_alone(image)
    assert abs(sum(pred.probs.values()) - 1.0) < 1e-6
