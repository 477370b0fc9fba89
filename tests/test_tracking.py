"""FaceTracker on synthetic moving boxes, smoothing maths, label layout (pure numpy, fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emonext_edge.annotate import color_for, layout_labels
from emonext_edge.tracking import (
    ExponentialSmoother,
    FaceTracker,
    NoSmoothing,
    WindowSmoother,
    iou,
    make_smoother,
)


def _moving(t: int, x0: int, y0: int, vx: int, vy: int = 0, size: int = 80) -> tuple[int, int, int, int]:
    return (x0 + vx * t, y0 + vy * t, size, size)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_ids_stable_for_moving_faces_and_through_a_missed_detection():
    tracker = FaceTracker(max_missed=2)
    ids_per_frame = []
    for t in range(30):
        a, b = _moving(t, 10, 50, 6), _moving(t, 400, 300, -5, -3)
        boxes = [b, a] if t % 2 else [a, b]  # detector order must not matter
        if t == 12:
            boxes = [b]  # the detector misses face a once
        tracks = tracker.update(boxes, t / 30)
        ids_per_frame.append({tr.id: tr.box for tr in tracks})
    assert set(ids_per_frame[0]) == {1, 2}
    assert set(ids_per_frame[12]) == {2}  # a is not reported while missed...
    assert all(set(ids) == {1, 2} for i, ids in enumerate(ids_per_frame) if i != 12)  # ...and keeps its id
    for t, ids in enumerate(ids_per_frame):
        if 1 in ids:
            assert ids[1] == _moving(t, 10, 50, 6)
        assert ids[2] == _moving(t, 400, 300, -5, -3)


def test_new_face_new_id_and_ids_never_reused():
    tracker = FaceTracker(max_missed=1)
    tracker.update([(10, 10, 60, 60)], 0.0)
    tracks = tracker.update([(12, 10, 60, 60), (300, 200, 70, 70)], 0.1)
    assert [t.id for t in tracks] == [1, 2]
    tracker.update([(300, 200, 70, 70)], 0.2)  # face 1 missed once: remembered
    assert 1 in [t.id for t in tracker.tracks]
    tracker.update([(300, 200, 70, 70)], 0.3)  # missed twice > max_missed: forgotten
    assert tracker.forgotten == [1]
    tracks = tracker.update([(12, 10, 60, 60), (300, 200, 70, 70)], 0.4)
    assert sorted(t.id for t in tracks) == [2, 3]  # the returning face is a new track


def test_fast_motion_matched_by_centre_distance_and_prediction():
    tracker = FaceTracker()
    # 35 px per frame with 60 px boxes: consecutive boxes overlap little (IoU 0.26 < 0.3)
    for t in range(8):
        tracks = tracker.update([(20 + 35 * t, 100, 60, 60)], t / 30)
        assert [tr.id for tr in tracks] == [1]
    # between detections the box follows the velocity
    ((_, box),) = tracker.predict(8 / 30)
    assert box[0] == pytest.approx(20 + 35 * 8, abs=4) and box[1] == 100


def test_two_close_faces_keep_their_ids():
    tracker = FaceTracker()
    for t in range(20):  # two faces side by side (5 px apart), moving apart
        left, right = (100 - 2 * t, 100, 70, 70), (175 + 2 * t, 100, 70, 70)
        tracks = tracker.update([right, left] if t % 3 else [left, right], t / 30)
        assert {tr.id: tr.box for tr in tracks} == {1: left, 2: right}  # new ids in detection order


def test_tracker_rejects_bad_settings():
    with pytest.raises(ValueError, match="iou_threshold"):
        FaceTracker(iou_threshold=0)
    with pytest.raises(ValueError, match="max_missed"):
        FaceTracker(max_missed=-1)


# -- smoothing ---------------------------------------------------------------------------
A = np.array([0.8, 0.1, 0.1])
B = np.array([0.1, 0.8, 0.1])


def test_exponential_maths():
    s = ExponentialSmoother(half_life=1.0)
    np.testing.assert_allclose(s.update(7, A, 0.0), A)  # first frame taken as is
    np.testing.assert_allclose(s.update(7, B, 1.0), (A + B) / 2)  # one half-life: half way
    np.testing.assert_allclose(s.update(7, B, 3.0), B + (A - B) / 8)  # three half-lives: 1/8 left
    np.testing.assert_allclose(s.update(8, B, 3.0), B)  # tracks are independent
    s.forget(7)
    np.testing.assert_allclose(s.update(7, A, 4.0), A)


@pytest.mark.parametrize("fps", [5, 12.5, 30, 60, 240])
def test_exponential_is_frame_rate_independent(fps):
    s = ExponentialSmoother(half_life=0.4)
    s.update(1, A, 0.0)
    n = round(1.2 * fps)
    for k in range(1, n + 1):
        out = s.update(1, B, k / fps)
    # the A share left after 1.2 s is 0.5 ** (1.2 / 0.4) whatever the frame rate
    np.testing.assert_allclose(out, B + (A - B) * 0.5 ** (1.2 / 0.4), atol=1e-12)


@pytest.mark.parametrize("fps", [10, 25, 30, 60])
@pytest.mark.parametrize("half_life", [0.2, 0.5, 1.0])
def test_label_lag_after_a_switch_at_most_the_half_life(fps, half_life):
    """A synthetic clip whose expression switches from A to B at t=2 s: the smoothed label follows within the half-life."""
    s = ExponentialSmoother(half_life)
    switch, flipped = 2.0, None
    for k in range(round(4 * fps)):
        t = k / fps
        out = s.update(1, A if t < switch else B, t)
        if t >= switch and flipped is None and int(np.argmax(out)) == 1:
            flipped = t
    assert flipped is not None
    assert flipped - switch <= half_life + 1e-9  # (a symmetric swap ties exactly one frame earlier)
    assert flipped - switch >= half_life - 1.5 / fps  # and it does smooth: not much earlier


def test_window_mean_and_mode():
    mean = WindowSmoother(window=1.0)
    mean.update(1, A, 0.0)
    np.testing.assert_allclose(mean.update(1, B, 0.5), (A + B) / 2)
    np.testing.assert_allclose(mean.update(1, B, 1.2), B)  # t=0 fell out of the 1 s window
    mode = WindowSmoother(window=1.0, method="mode")
    for t, p in [(0.0, A), (0.1, B), (0.2, A)]:
        out = mode.update(1, p, t)
    np.testing.assert_allclose(out, [2 / 3, 1 / 3, 0])
    with pytest.raises(ValueError, match="method"):
        WindowSmoother(1.0, method="median")
    with pytest.raises(ValueError, match="window"):
        WindowSmoother(0)


def test_make_smoother():
    assert isinstance(make_smoother(None), NoSmoothing) and isinstance(make_smoother(0), NoSmoothing)
    np.testing.assert_array_equal(make_smoother(0).update(1, A, 0.0), A)
    assert make_smoother(0.5).half_life == 0.5
    w = WindowSmoother(2.0)
    assert make_smoother(w) is w
    for bad in (-1, math.inf, "fast", True):
        with pytest.raises(ValueError, match="smoothing"):
            make_smoother(bad)
    with pytest.raises(ValueError, match="half_life"):
        ExponentialSmoother(0)


# -- annotation layout ---------------------------------------------------------------------
def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("seed", range(5))
def test_labels_inside_frame_and_not_overlapping(seed):
    rng = np.random.default_rng(seed)
    fw, fh = 640, 480
    boxes = []
    for _ in range(6):  # crowded faces, some at the edges
        s = int(rng.integers(50, 140))
        boxes.append((int(rng.integers(-20, fw - s + 20)), int(rng.integers(-10, fh - s + 10)), s, s))
    boxes[0] = (0, 0, 90, 90)  # at the top-left corner: no room above
    boxes[1] = (fw - 60, fh - 60, 90, 90)  # partly outside the bottom-right corner
    sizes = [(int(rng.integers(90, 160)), 22) for _ in boxes]
    rects = layout_labels(boxes, sizes, (fw, fh))
    for r, (lw, lh) in zip(rects, sizes):
        assert 0 <= r[0] and r[0] + r[2] <= fw and 0 <= r[1] and r[1] + r[3] <= fh
        assert (r[2], r[3]) == (lw, lh)
    for i in range(len(rects)):
        for j in range(i):
            assert not _overlap(rects[i], rects[j]), (rects[i], rects[j])


def test_label_goes_above_the_box_when_there_is_room():
    assert layout_labels([(100, 100, 80, 80)], [(60, 20)], (640, 480)) == [(100, 80, 60, 20)]
    assert layout_labels([(100, 5, 80, 80)], [(60, 20)], (640, 480)) == [(100, 85, 60, 20)]  # below


def test_one_colour_per_emotion():
    from emonext_edge.labels import IMAGEFOLDER_LABELS

    colours = [color_for(label) for label in IMAGEFOLDER_LABELS]
    assert len(set(colours)) == len(IMAGEFOLDER_LABELS)
    assert color_for("class_3") == color_for("class_3")
