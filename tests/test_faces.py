"""Face detection on real photos with known face counts, cropping, and Runtime face mode.

Images: ``skimage.data.astronaut()`` (a real portrait: 1 face), ``skimage.data.coffee()``
(a real photo of a coffee cup: no face), and coffee() with three real FER2013 val faces
(the first three ``Happy`` files, sorted) pasted at 150/130/140 px. FER2013 faces are
tight 48 px crops, so a cascade detector finds only about half of arbitrary ones when
pasted without surrounding head/hair; these three are found. The detector is the default:
the bundled YuNet (Haar cascade fallback; see emonext_edge/faces.py).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from emonext_edge.errors import ImageError, ModelFileError
from emonext_edge.faces import crop_face, detect_faces

skimage_data = pytest.importorskip("skimage.data")

SIZES = (150, 130, 140)


def _astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


def _coffee() -> np.ndarray:
    return cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR)


def _composed(fer2013_root):
    """coffee() with 3 FER2013 val faces; returns the frame and the pasted (x, y, w, h) boxes."""
    files = sorted((fer2013_root / "val" / "Happy").glob("*.jpg"))[:3]
    frame = _coffee()
    h, w = frame.shape[:2]
    xs = np.linspace(20, w - 20 - max(SIZES), len(files)).astype(int)
    boxes = []
    for i, (path, size) in enumerate(zip(files, SIZES)):
        face = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_CUBIC)
        y = (h - size) // 2 + (i % 2) * 30 - 15
        frame[y : y + size, xs[i] : xs[i] + size] = face[:, :, None]
        boxes.append((int(xs[i]), y, size, size))
    return frame, boxes


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_astronaut_has_one_face():
    boxes = detect_faces(_astronaut())
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # Eileen Collins' head sits in the upper middle of the 512x512 portrait
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 200 and 60 < w < 200


def test_composed_frame_has_three_faces(fer2013_root):
    frame, pasted = _composed(fer2013_root)
    boxes = detect_faces(frame)
    assert len(boxes) == 3
    for box, truth in zip(boxes, pasted):  # both sorted left to right
        assert _iou(box, truth) > 0.3, (box, truth)


def test_frame_without_face_is_empty():
    assert detect_faces(_coffee()) == []
    assert detect_faces(np.full((120, 160), 128, np.uint8)) == []


def test_crop_face_margin_and_clipping():
    frame = np.arange(100 * 200, dtype=np.uint32).reshape(100, 200).astype(np.uint8)
    crop = crop_face(frame, (50, 20, 40, 40), margin=0.1)
    assert crop.shape == (48, 48)
    np.testing.assert_array_equal(crop, frame[16:64, 46:94])
    assert crop_face(frame, (0, 0, 50, 50), margin=0.2).shape == (60, 60)  # clipped at the top-left
    with pytest.raises(ImageError, match="positive"):
        crop_face(frame, (10, 10, 0, 5))
    with pytest.raises(ImageError, match="outside"):
        crop_face(frame, (500, 500, 10, 10))
    with pytest.raises(ImageError, match="x, y, w, h"):
        crop_face(frame, (1, 2))


def test_bad_frames_and_detectors(tmp_path):
    with pytest.raises(ImageError, match="uint8"):
        detect_faces(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ImageError, match="shape"):
        detect_faces(np.zeros((50, 50, 5), np.uint8))
    with pytest.raises(ModelFileError, match="no such face detector"):
        detect_faces(_coffee(), detector=tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a network")
    with pytest.raises(ModelFileError, match="junk.onnx"):
        detect_faces(_coffee(), detector=junk)


def test_runtime_face_mode_classifies_each_crop(official_model, fer2013_root, tmp_path_factory):
    pytest.importorskip("torch")
    from _runtime_artifacts import onnx_artifact

    from emonext_edge import FacePrediction, Runtime

    d = tmp_path_factory.getbasetemp() / "runtime_artifacts"
    d.mkdir(exist_ok=True)
    frame, _ = _composed(fer2013_root)
    with Runtime(onnx_artifact(official_model, d)) as rt:
        found = rt.predict_faces(frame)
        assert len(found) == 3 and all(isinstance(f, FacePrediction) for f in found)
        for face in found:
            direct = rt.predict(crop_face(frame, face.box, margin=0.1))
            np.testing.assert_allclose(face.prediction.logits, direct.logits, atol=1e-5)
        assert rt.predict_faces(_coffee()) == []
        rgb = rt.predict_faces(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), rgb=True)
        assert [f.box for f in rgb] == [f.box for f in found]


# -- predict never treats a scene as one face (issue 26) --------------------------------------------
@pytest.fixture(scope="module")
def tiny_rt(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from _tiny_onnx import tiny_onnx

    from emonext_edge import Runtime

    with Runtime(tiny_onnx(tmp_path_factory.mktemp("tiny_faces") / "tiny.onnx")) as rt:
        yield rt


def test_predict_refuses_a_group_photo_and_crops_a_portrait(tiny_rt, fer2013_root):
    from emonext_edge import Prediction

    group, _ = _composed(fer2013_root)
    with pytest.raises(ImageError, match=r"image: 3 faces found in this 600x400 image.*predict_faces.*--faces") as info:
        tiny_rt.predict(group)
    assert "\n" not in str(info.value)
    assert isinstance(tiny_rt.predict(group, whole_image=True), Prediction)  # asked for: classified as given
    portrait = _astronaut()
    (box,) = detect_faces(portrait)
    pred = tiny_rt.predict(portrait)  # one small face: that face is classified, not the scene
    crop = tiny_rt.predict(crop_face(portrait, box, margin=0.1), whole_image=True)
    whole = tiny_rt.predict(portrait, whole_image=True)
    np.testing.assert_allclose(pred.logits, crop.logits, atol=1e-6)
    assert not np.allclose(pred.logits, whole.logits, atol=1e-3)
    rgb = tiny_rt.predict(cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB), rgb=True)
    np.testing.assert_allclose(rgb.logits, pred.logits, atol=1e-6)


def test_predict_keeps_face_crops_as_given(tiny_rt, fer2013_root):
    files = sorted((fer2013_root / "val" / "Happy").glob("*.jpg"))[:3]
    for path in files:  # 48 px FER2013 crops, and the same upscaled to 224 px (found, fills the image)
        image = cv2.imread(str(path))
        big = cv2.resize(image, (224, 224), interpolation=cv2.INTER_CUBIC)
        for im in (image, big):
            np.testing.assert_array_equal(tiny_rt.predict(im).logits, tiny_rt.predict(im, whole_image=True).logits)
    coffee = _coffee()  # no face anywhere: classified as given (nothing to crop)
    np.testing.assert_array_equal(tiny_rt.predict(coffee).logits, tiny_rt.predict(coffee, whole_image=True).logits)


def test_predict_on_a_scene_without_a_face_is_not_silent(tiny_rt, fer2013_root, caplog):
    """A 1920x1080 frame with no face was classified as one face without a word ("Neutral 0.212" on a 4K
    gradient): still classified as given (a tight face crop can escape the detector), with a warning."""
    y, x = np.mgrid[0:1080, 0:1920]
    scene = np.stack([x * 255 // 1920, y * 255 // 1080, (x + y) * 127 // 3000], -1).astype(np.uint8)
    with caplog.at_level(logging.WARNING, logger="emonext_edge"):
        pred = tiny_rt.predict(scene)
    np.testing.assert_array_equal(pred.logits, tiny_rt.predict(scene, whole_image=True).logits)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "no face found in this 1920x1080 image" in warned[0] and "--faces" in warned[0]
    caplog.clear()
    face = cv2.resize(cv2.imread(str(min((fer2013_root / "val" / "Happy").glob("*.jpg")))), (224, 224),
                      interpolation=cv2.INTER_CUBIC)
    with caplog.at_level(logging.WARNING, logger="emonext_edge"):
        tiny_rt.predict(face)  # a face crop the detector finds: no warning
        tiny_rt.predict(scene, whole_image=True)  # asked for: no warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_predict_cli_group_photo(tiny_rt, fer2013_root, tmp_path, capfd):
    from emonext_edge.cli import main

    group, _ = _composed(fer2013_root)
    path = tmp_path / "group.png"
    cv2.imwrite(str(path), group)
    assert main(["predict", str(tiny_rt.path), str(path)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "group.png: 3 faces" in err[0] and "--faces" in err[0]
    assert main(["predict", str(tiny_rt.path), str(path), "--faces"]) == 0
    out = capfd.readouterr().out
    assert out.count("group.png face") == 3
    assert main(["predict", str(tiny_rt.path), str(path), "--whole-image"]) == 0


# -- the default detector: bundled YuNet, Haar fallback ----------------------------------------------
def test_default_detector_is_the_bundled_yunet_and_haar_is_the_fallback(tmp_path, monkeypatch, caplog):
    from emonext_edge import faces

    assert faces.detector_kind() == "yunet" and faces.detector_kind("haar") == "cascade"
    assert faces.check_bundled_yunet() == faces.BUNDLED_YUNET
    for name in ("LICENSE", "README.md"):  # the licence and attribution travel with the weights
        assert (faces.BUNDLED_YUNET.parent / name).is_file()
    altered = tmp_path / "yunet_n_640_640.onnx"
    data = bytearray(faces.BUNDLED_YUNET.read_bytes())
    data[-1] ^= 1
    altered.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256 .* does not match"):
        faces.check_bundled_yunet(altered)
    monkeypatch.setattr(faces, "BUNDLED_YUNET", altered)
    monkeypatch.setattr(faces._local, "cache", {})
    faces._fallback_noted.clear()
    with caplog.at_level("WARNING", logger="emonext_edge.faces"):
        assert faces.detector_kind() == "cascade"
        assert len(detect_faces(_astronaut())) == 1  # the Haar cascade still finds the portrait's face
        detect_faces(_astronaut())
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "SHA-256" in notes[0] and "Haar" in notes[0] and "\n" not in notes[0]
    # an OpenCV without FaceDetectorYN (older than 4.8): the same fallback, with its own reason
    monkeypatch.setattr(faces, "BUNDLED_YUNET", faces.Path(faces.__file__).parent / "data/face_detector/yunet_n_640_640.onnx")
    monkeypatch.delattr(cv2, "FaceDetectorYN")
    monkeypatch.setattr(faces._local, "cache", {})
    faces._fallback_noted.clear()
    caplog.clear()
    with caplog.at_level("WARNING", logger="emonext_edge.faces"):
        assert faces.detector_kind() == "cascade"
    assert len(caplog.records) == 1 and "FaceDetectorYN" in caplog.records[0].getMessage()
    monkeypatch.setattr(faces._local, "cache", {})


def test_yunet_on_a_large_photo_finds_a_big_face(fer2013_root):
    """A 1600x1200 photo with a 700 px face: YuNet runs at 640 px (at full size it misses such faces)."""
    path = min((fer2013_root / "val" / "Happy").glob("*.jpg"))
    frame = np.full((1200, 1600, 3), 120, np.uint8)
    frame[200:900, 300:1000] = cv2.resize(cv2.imread(str(path)), (700, 700), interpolation=cv2.INTER_CUBIC)
    (box,) = detect_faces(frame)
    assert _iou(box, (300, 200, 700, 700)) > 0.4, box


def test_yunet_finds_faces_the_haar_cascade_misses(fer2013_root):
    """Five FER2013 faces per class pasted on coffee() at 150 px: YuNet finds at least as many as Haar."""
    found = {"yunet": 0, "haar": 0}
    for label in ("Angry", "Fear", "Sad", "Surprise"):
        files = sorted((fer2013_root / "val" / label).glob("*.jpg"))[:5]
        for path in files:
            frame = _coffee()
            face = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (150, 150), interpolation=cv2.INTER_CUBIC)
            frame[100:250, 200:350] = face[:, :, None]
            for name in found:
                found[name] += any(_iou(b, (200, 100, 150, 150)) > 0.3 for b in detect_faces(frame, detector=name))
    assert found["yunet"] >= 18 and found["yunet"] >= found["haar"], found


# -- detector files that are not face detectors; padding; pluggable detectors (issue 18) ---------
def test_not_a_face_detector_is_named(tmp_path):
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("garbage")  # OpenCV's binding raised SystemError here
    with pytest.raises(ModelFileError, match=r"garbage\.xml: not an OpenCV cascade classifier"):
        detect_faces(_coffee(), detector=garbage)
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, None, None])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    relu = tmp_path / "relu.onnx"  # a valid ONNX that is no face detector: cv2.error "Layer id=-1" before
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(relu))
    with pytest.raises(ModelFileError, match=r"relu\.onnx: not a YuNet face detector") as info:
        detect_faces(_coffee(), detector=relu)
    assert "\n" not in str(info.value)
    # a device or a folder exists: it was reported as "no such face detector file"
    for special, kind in (("/dev/zero", "a device"), (str(tmp_path), "a folder")):
        with pytest.raises(ModelFileError, match=rf"{special}: is {kind}, not a face detector file"):
            detect_faces(_coffee(), detector=special)
    with pytest.raises(ModelFileError, match="no such face detector file"):
        detect_faces(_coffee(), detector=tmp_path / "missing.onnx")


def test_boxes_over_black_padding_are_dropped():
    from emonext_edge.faces import content_region, keep_inside

    frame = np.zeros((700, 900, 3), np.uint8)
    frame[100:612, 200:712] = _astronaut()  # letterboxed / padded frame
    assert content_region(frame) == (200, 100, 712, 612)
    boxes = detect_faces(frame)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 200 <= x and x + w <= 712 and 100 <= y and y + h <= 612
    region = (200, 100, 712, 612)
    assert keep_inside([(150, 300, 100, 100)], region) == [(150.0, 300.0, 100.0, 100.0)]  # half inside: kept
    assert keep_inside([(140, 300, 100, 100)], region) == []  # 40 % inside: dropped
    assert keep_inside([(-60, -60, 100, 100)], (0, 0, 640, 480)) == []  # a DNN box mostly off the frame
    assert content_region(np.zeros((20, 30), np.uint8)) == (0, 0, 30, 20)


def test_callable_detector():
    frame = _coffee()
    w = frame.shape[1]
    boxes = detect_faces(frame, detector=lambda f: [(10.4, 20.6, 100, 100), (w - 20, 0, 100, 100), (5, 5, 10, 10)])
    assert boxes == [(10, 21, 100, 100)]  # rounded; the box mostly outside and the one below min_size dropped


def test_detection_on_a_downscaled_frame_finds_the_same_face():
    frame = _astronaut()
    full, half = detect_faces(frame), detect_faces(frame, scale=0.5)
    assert len(full) == len(half) == 1 and _iou(full[0], half[0]) > 0.7
    with pytest.raises(ValueError, match="scale"):
        detect_faces(frame, scale=0)


def _yunet_format_onnx(path) -> None:
    """A tiny ONNX in YuNet's output format (cls/obj/bbox/kps at strides 8/16/32), not a trained detector:
    at stride 32 the score of a cell is its mean blue value / 255, every box is 4x4 cells around its
    cell's centre; strides 8/16 score 0. It runs the real cv2.FaceDetectorYN path of detect_faces."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    consts = {"inv255": [1 / 255], "zero": [0.0], "half": [0.5], "logk": [float(np.log(4.0))]}
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    for name, value in (("s0", [0]), ("s1", [1]), ("shape", [1, -1, 1])):
        inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
    nodes = [helper.make_node("Slice", ["input", "s0", "s1", "s1"], ["ch0"]), helper.make_node("Mul", ["ch0", "inv255"], ["x01"])]
    for s in (8, 16, 32):
        nodes += [
            helper.make_node("AveragePool", ["x01"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Reshape", [f"p{s}", "shape"], [f"r{s}"]),  # [1, rows*cols, 1], row-major
            helper.make_node("Mul", [f"r{s}", "zero"], [f"z{s}"]),
            helper.make_node("Identity", [f"r{s}" if s == 32 else f"z{s}"], [f"cls_{s}"]),
            helper.make_node("Identity", [f"r{s}" if s == 32 else f"z{s}"], [f"obj_{s}"]),
            helper.make_node("Add", [f"z{s}", "half"], [f"h{s}"]),
            helper.make_node("Add", [f"z{s}", "logk"], [f"k{s}"]),
            helper.make_node("Concat", [f"h{s}", f"h{s}", f"k{s}", f"k{s}"], [f"bbox_{s}"], axis=2),
            helper.make_node("Concat", [f"z{s}"] * 10, [f"kps_{s}"], axis=2),
        ]
    names = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    graph = helper.make_graph(
        nodes, "yunet_format", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, None, None]) for n in names], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_yunet_path_with_a_yunet_format_model(tmp_path):
    """No real YuNet weights exist here (nothing may be downloaded): the cv2.FaceDetectorYN path is run on
    a model with YuNet's outputs, checking box conversion and the off-frame filter."""
    path = tmp_path / "yunet_format.onnx"
    _yunet_format_onnx(path)
    frame = np.full((320, 320, 3), 60, np.uint8)  # mid-grey: no padding, score 0.24 < 0.8
    frame[96:128, 160:192] = 255  # stride-32 cell (row 3, col 5): one box 128 px around (176, 112)
    assert detect_faces(frame, detector=path) == [(112, 48, 128, 128)]
    frame[96:128, 160:192] = 60
    frame[32:64, 32:64] = 255  # box (-16, -16, 128, 128): 77 % inside, kept and clipped
    assert detect_faces(frame, detector=path) == [(0, 0, 112, 112)]
    frame[32:64, 32:64] = 60
    frame[0:32, 0:32] = 255  # box (-48, -48, 128, 128): 39 % inside the frame, dropped
    assert detect_faces(frame, detector=path) == []
