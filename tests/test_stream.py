"""The streaming API (``Runtime.stream``) on generated clips of moving, real FER2013 faces.

Clips: real FER2013 val faces (benchmarks/video.py's DEFAULT_FACES, chosen because OpenCV's
Haar cascade finds them) resized to 120 px and pasted on a 640x480 textured backdrop,
moving 2 px per frame; written as MJPEG .avi at 30 FPS. Model: the reference
EmoNeXt-atto of ../shared/models exported by export.onnx (ONNX Runtime).
"""

from __future__ import annotations

import functools
import http.server
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emonext_edge.errors import VideoSourceError
from emonext_edge.faces import crop_face
from emonext_edge.stream import STAGES, open_source

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import video as clips

sys.path.pop(0)


@pytest.fixture(scope="module")
def atto_onnx(reference_model, tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("atto") / "atto.onnx"
    export_onnx(reference_model, path, verify_count=2)
    return path


@pytest.fixture(scope="module")
def rt(atto_onnx):
    from emonext_edge import Runtime

    with Runtime(atto_onnx) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def three_faces_clip(fer2013_root, tmp_path_factory):
    frames, truth = clips.compose_frames(clips.load_faces(clips.face_paths(fer2013_root, 3)), 12, step=3)
    return clips.write_clip(frames, tmp_path_factory.mktemp("clip") / "three.avi"), truth


def _centre_close(a, b) -> bool:
    return abs(a[0] + a[2] / 2 - b[0] - b[2] / 2) < b[2] / 3 and abs(a[1] + a[3] / 2 - b[1] - b[3] / 2) < b[3] / 3


def test_ids_stable_and_labels_equal_per_crop_predictions(rt, three_faces_clip):
    path, truth = three_faces_clip
    results = list(rt.stream(str(path), detect_every=2, smoothing=None))
    assert [r.index for r in results] == list(range(12))
    np.testing.assert_allclose([r.time for r in results], np.arange(12) / 30, atol=1e-9)
    assert [r.detected for r in results] == [i % 2 == 0 for i in range(12)]
    owner = {}  # track id -> index of the pasted face it follows
    for r in results:
        assert [f.id for f in r.faces] == [1, 2, 3]  # every face on every frame, same ids throughout
        for face in r.faces:
            match = [i for i, box in enumerate(truth[r.index]) if _centre_close(face.box, box)]
            assert len(match) == 1, (r.index, face.box, truth[r.index])
            assert owner.setdefault(face.id, match[0]) == match[0]
            # smoothing off: exactly what the model says for this crop on its own
            direct = rt.predict(crop_face(r.frame, face.box, margin=0.1))
            assert face.label == direct.label == face.raw_label
            np.testing.assert_allclose(list(face.raw_probs.values()), list(direct.probs.values()), atol=1e-5)
            assert face.probs == face.raw_probs
        assert set(r.timings) == set(STAGES) and r.timings["infer"] > 0 and r.timings["draw"] == 0
    assert len(owner) == 3 and sorted(owner.values()) == [0, 1, 2]


def test_smoothing_follows_a_real_expression_change_within_the_half_life(rt, fer2013_root, tmp_path):
    """One face position; a Happy face for 0.5 s, then a Surprise face (the model: Happy 0.28 -> Surprise 0.51)."""
    happy, surprise = clips.load_faces(clips.face_paths(fer2013_root, 2))
    first, _ = clips.compose_frames([happy], 15)
    second, _ = clips.compose_frames([surprise], 30)
    path = clips.write_clip(first + second[15:], tmp_path / "switch.avi")
    half_life, switch = 0.2, 0.5
    # the crop decides the raw labels: these were established on the Haar cascade's boxes (YuNet's taller boxes
    # make the model waver between Happy and Neutral on this face), so the detector is pinned
    raw = list(rt.stream(str(path), detect_every=3, smoothing=0, detector="haar"))
    smooth = list(rt.stream(str(path), detect_every=3, smoothing=half_life, detector="haar"))
    assert all(len(r.faces) == 1 and r.faces[0].id == 1 for r in raw + smooth)  # same face position, same track
    raw_labels = [r.faces[0].label for r in raw]
    assert set(raw_labels[:15]) == {"Happy"} and set(raw_labels[15:]) == {"Surprise"}
    smooth_labels = [r.faces[0].label for r in smooth]
    flipped = next(r.time for r in smooth if r.time >= switch and r.faces[0].label == "Surprise")
    assert 0 < flipped - switch <= half_life  # smoothed (not instant), and no later than the half-life
    assert all(label == "Surprise" for r, label in zip(smooth, smooth_labels) if r.time >= flipped)
    assert set(smooth_labels[:15]) == {"Happy"}
    for r in smooth:  # raw probabilities are still there, unsmoothed
        np.testing.assert_allclose(list(r.faces[0].raw_probs.values()), list(raw[r.index].faces[0].raw_probs.values()), atol=1e-5)


def test_drop_policy_with_a_slow_consumer(rt):
    """A live source at 200 FPS and a consumer needing 30 ms per frame: always the newest frame, the rest counted."""
    frames = [np.full((48, 64, 3), i, np.uint8) for i in range(60)]
    stream = rt.stream(iter(frames), live=True, fps=200, detector=lambda frame: [])
    seen = []
    for result in stream:
        assert int(result.frame[0, 0, 0]) == result.index  # the frame handed over is the one indexed
        seen.append(result.index)
        time.sleep(0.03)
    assert seen == sorted(set(seen)) and seen[-1] == 59  # in order, and the last frame is not lost
    assert stream.dropped > 0  # the exact accounting is checked below; how many depends on scheduling
    assert len(seen) + stream.dropped == 60
    assert sum(b - a - 1 for a, b in zip(seen, seen[1:])) + seen[0] == stream.dropped
    assert stream.stats()["dropped"] == stream.dropped


def test_file_like_source_is_not_dropped(rt):
    frames = [np.full((48, 64, 3), i, np.uint8) for i in range(40)]
    stream = rt.stream(frames, detector=lambda frame: [], fps=20)
    seen = []
    for result in stream:
        seen.append((result.index, result.time))
        time.sleep(0.005)
    assert [i for i, _ in seen] == list(range(40)) and stream.dropped == 0
    np.testing.assert_allclose([t for _, t in seen], np.arange(40) / 20)


def test_stream_closes_capture_when_left_early(rt, three_faces_clip):
    path, _ = three_faces_clip
    with rt.stream(str(path), detect_every=3, draw=True) as stream:
        for result in stream:
            assert result.timings["draw"] > 0
            break
    assert not stream._grabber.is_alive()
    with pytest.raises(Exception, match="closed"):
        next(iter(stream))


def test_max_frames_and_bad_options(rt, three_faces_clip):
    path, _ = three_faces_clip
    assert len(list(rt.stream(str(path), max_frames=5, detect_every=3))) == 5
    for bad in ({"detect_every": 0}, {"detect_every": 1.5}, {"max_frames": 0}, {"smoothing": -1}):
        with pytest.raises(ValueError):
            rt.stream(str(path), **bad)


# -- bad sources: one line naming the source -------------------------------------------------
def test_missing_file_and_directory(tmp_path, rt):
    with pytest.raises(VideoSourceError, match="absent.mp4: no such video file"):
        rt.stream(str(tmp_path / "absent.mp4"))
    with pytest.raises(VideoSourceError, match="is a directory"):
        open_source(tmp_path)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(VideoSourceError, match="junk.mp4"):
        open_source(junk)


def test_unreachable_urls_fail_within_the_timeout():
    silent = socket.socket()  # accepts connections, never answers: only the timeout ends the wait
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/live.mjpg"
        tick = time.monotonic()
        with pytest.raises(VideoSourceError, match="could not open this stream within 1 s") as info:
            open_source(url, open_timeout=1.0)
        assert time.monotonic() - tick < 6
        assert url in str(info.value) and "\n" not in str(info.value)
    finally:
        silent.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: refused at once
    with pytest.raises(VideoSourceError, match=f"rtsp://127.0.0.1:{port}/cam"):
        open_source(f"rtsp://127.0.0.1:{port}/cam", open_timeout=1.0)


def test_absent_camera_and_wrong_types():
    with pytest.raises(VideoSourceError, match="camera 97"):
        open_source(97)
    with pytest.raises(VideoSourceError, match="iterable of frames"):
        open_source(3.5)
    with pytest.raises(VideoSourceError, match="sequence of frames"):
        open_source(np.zeros((4, 4), np.uint8))


def test_http_url_source_on_loopback(rt, three_faces_clip):
    """A video served over HTTP on 127.0.0.1 (FFmpeg reads it like any stream URL)."""
    path, _ = three_faces_clip
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        stream = rt.stream(url, live=False, open_timeout=5, detect_every=4)
        assert stream.live is False and stream.source == url
        results = list(stream)
        assert [r.index for r in results] == list(range(12)) and all(len(r.faces) == 3 for r in results)
        assert rt.stream(url, open_timeout=5, detector=lambda f: []).live  # URLs are live by default
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


# -- a stream that survives its input: property test over random tracks --------------------------
# Faces appear, vanish, jump in size (12..200 px) and position, and touch or cross the borders of a
# 320x240 frame; the stream runs with detect_every=3 to the end on the ONNX and the IR. Detectors:
# the default (YuNet) on the pasted FER2013 faces, and a planted detector that reports exactly the
# pasted boxes (tiny ones included) and misses some rounds, which drives the tracker into every jump.

PROP_W, PROP_H, PROP_FRAMES = 320, 240, 24


@st.composite
def face_tracks(draw):
    """Per face: one (x, y, size) or None (absent) per frame, changing at a few random cuts."""
    tracks = []
    for _ in range(draw(st.integers(1, 3))):
        cuts = sorted(set(draw(st.lists(st.integers(1, PROP_FRAMES - 1), max_size=4))))
        spans, start, state = [], 0, None
        for end in [*cuts, PROP_FRAMES]:
            move = draw(st.sampled_from(["vanish", "anywhere", "resize in place", "resize in place", "shift"]))
            if move == "vanish":
                state = None
            elif move == "anywhere" or state is None:
                size = draw(st.sampled_from([12, 20, 40, 76, 120, 200]))
                x = draw(st.integers(-size // 3, PROP_W - 2 * size // 3))
                y = draw(st.integers(-size // 3, PROP_H - 2 * size // 3))
                state = (x, y, size)
            elif move == "resize in place":  # the face jumps in size around the same centre
                x, y, size = state
                new = draw(st.sampled_from([12, 20, 40, 76, 120, 200]))
                state = (x + (size - new) // 2, y + (size - new) // 2, new)
            else:
                x, y, size = state
                state = (x + draw(st.integers(-40, 40)), y + draw(st.integers(-40, 40)), size)
            spans += [state] * (end - start)
            start = end
        tracks.append(spans)
    return tracks


def _render(faces: list[np.ndarray], tracks) -> tuple[list[np.ndarray], list[list[tuple[int, int, int, int]]]]:
    import cv2

    back = clips.background(1)[:PROP_H, :PROP_W]
    frames, truth = [], []
    for t in range(PROP_FRAMES):
        frame, boxes = back.copy(), []
        for face, spans in zip(faces, tracks):
            if spans[t] is None:
                continue
            x, y, size = spans[t]
            img = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, PROP_W), min(y + size, PROP_H)
            frame[y0:y1, x0:x1] = img[y0 - y : y1 - y, x0 - x : x1 - x, None]
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        frames.append(frame)
        truth.append(boxes)
    return frames, truth


@pytest.fixture(scope="module")
def small_artifacts(tmp_path_factory):
    """The tiny stand-in classifier as ONNX and as OpenVINO IR (fast: the property is about the stream)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    sys.path.insert(0, str(REPO / "tests"))
    from _tiny_onnx import tiny_onnx

    d = tmp_path_factory.mktemp("tiny_stream")
    onnx_file = tiny_onnx(d / "tiny.onnx")
    artifacts = [onnx_file]
    try:
        import openvino as ov
    except ImportError:
        return artifacts
    xml = d / "tiny_ir.xml"
    ov.save_model(ov.convert_model(str(onnx_file)), str(xml), compress_to_fp16=False)
    xml.with_suffix(".json").write_text(onnx_file.with_suffix(".json").read_text().replace("tiny.onnx", "unused"))
    return [onnx_file, xml]


@pytest.fixture(scope="module")
def small_runtimes(small_artifacts):
    from emonext_edge import Runtime

    runtimes = [Runtime(path, verify=False) for path in small_artifacts]
    yield runtimes
    for runtime in runtimes:
        runtime.close()


@pytest.fixture(scope="module")
def prop_faces(fer2013_root):
    return clips.load_faces(clips.face_paths(fer2013_root, 3))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tracks=face_tracks(), planted=st.booleans(), misses=st.sets(st.integers(0, PROP_FRAMES // 3)))
def test_stream_survives_faces_that_jump_vanish_and_touch_borders(small_runtimes, prop_faces, tracks, planted, misses):
    frames, truth = _render(prop_faces, tracks)
    calls = iter(range(PROP_FRAMES))

    def planted_detector(frame):  # the pasted boxes, missing whole detection rounds in ``misses``
        t = next(calls) * 3
        return [] if t // 3 in misses else truth[t]

    for runtime in small_runtimes:
        calls = iter(range(PROP_FRAMES))
        options = {"detector": planted_detector, "min_size": 1} if planted else {}
        stream = runtime.stream(frames, detect_every=3, smoothing=0.3, draw=True, **options)
        results = list(stream)  # never raises: every frame comes out
        assert [r.index for r in results] == list(range(PROP_FRAMES)), runtime
        sizes: dict[int, list[tuple[int, int]]] = {}
        for r in results:
            for face in [*r.faces, *r.skipped]:
                x, y, w, h = face.box
                assert 0 <= x and 0 <= y and x + w <= PROP_W and y + h <= PROP_H, (r.index, face)
            for face in r.faces:
                assert min(face.box[2:]) >= 8 and face.label in runtime.labels
                if face.detected:
                    sizes.setdefault(face.id, []).append(face.box[2:])
                elif face.id in sizes:  # carried by the tracker: within the sizes of its recent detections
                    recent = sizes[face.id][-3:]  # (or shrunk by the frame border)
                    assert face.box[2] <= max(s[0] for s in recent) and face.box[3] <= max(s[1] for s in recent)
                    assert min(face.box[2:]) >= 16 and (
                        face.box[2] >= min(s[0] for s in recent) or face.box[0] in (0, PROP_W - face.box[2])
                    ) and (face.box[3] >= min(s[1] for s in recent) or face.box[1] in (0, PROP_H - face.box[3]))
            for skipped in r.skipped:
                assert skipped.reason and "\n" not in skipped.reason
        stats = stream.stats()
        assert stats["frames"] == PROP_FRAMES and stats["skipped"] == sum(len(r.skipped) for r in results)
        assert stats["faces"] == sum(len(r.faces) for r in results)
        if planted and any(min(b[2:]) < 16 for t in range(0, PROP_FRAMES, 3) if t // 3 not in misses for b in truth[t]):
            assert stats["skipped"] > 0  # a planted face too small to classify was skipped, not fatal


def test_error_inside_the_stream_names_the_frame(small_runtimes):
    frames = [np.zeros((120, 160, 3), np.uint8)] * 3 + [np.zeros((120, 160), np.float32)]
    with pytest.raises(Exception, match=r"frame 3: .*float32") as info:
        list(small_runtimes[0].stream(frames, detector=lambda frame: []))
    assert "\n" not in str(info.value)
