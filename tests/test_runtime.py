"""Runtime API: predictions, labels from metadata, input handling, bad input, thread safety.

Artifacts: the official fixture model exported to ONNX / OpenVINO IR (tests/_runtime_artifacts.py);
images: real FER2013 val faces.
"""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from emonext_edge import FacePrediction, Prediction, Runtime
from emonext_edge.errors import EmoNeXtError, ImageError, ModelFileError
from emonext_edge.preprocess import preprocess

pytest.importorskip("torch")




@pytest.fixture(scope="module")
def rt(onnx_path):
    with Runtime(onnx_path) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def faces(fer_val_faces):
    return fer_val_faces[0][::5]  # one per class


def test_predict_path_matches_run(rt, faces):
    pred = rt.predict(faces[0])
    assert isinstance(pred, Prediction)
    logits = rt.run(preprocess([faces[0]]))[0]
    np.testing.assert_allclose(pred.logits, logits, atol=1e-6)
    assert pred.label == rt.labels[int(np.argmax(logits))]
    assert set(pred.probs) == set(rt.labels)
    assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert pred.score == pytest.approx(max(pred.probs.values()))


def test_predict_batch_matches_single(rt, faces):
    batch = rt.predict_batch(faces)
    assert [p.label for p in batch] == [rt.predict(f).label for f in faces]
    np.testing.assert_allclose(np.stack([p.logits for p in batch]), rt.run(preprocess(faces)), atol=1e-5)


def test_array_layouts_agree(rt, faces):
    gray = cv2.imread(str(faces[1]), cv2.IMREAD_GRAYSCALE)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA)
    color = cv2.cvtColor(cv2.resize(gray, (96, 96)), cv2.COLOR_GRAY2BGR)
    color[..., 0] //= 2  # make channels differ so BGR vs RGB matters
    ref = rt.predict(gray).logits
    for image in (bgr, bgra, gray[:, :, None], str(faces[1])):
        np.testing.assert_allclose(rt.predict(image).logits, ref, atol=1e-6)
    np.testing.assert_allclose(
        rt.predict(color[:, :, ::-1].copy(), rgb=True).logits, rt.predict(color).logits, atol=1e-6
    )


def test_labels_come_from_metadata(onnx_path, tmp_path, faces):
    dst = tmp_path / "renamed.onnx"
    shutil.copy(onnx_path, dst)
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    meta["labels"] = [f"emotion_{i}" for i in range(len(meta["labels"]))]
    dst.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="renamed.json"):  # hand-edited labels: refused (issue 25)
        Runtime(dst)
    with Runtime(dst, verify=False) as renamed:
        assert renamed.labels == tuple(meta["labels"])
        assert renamed.predict(faces[0]).label in meta["labels"]


def test_missing_metadata_warns_and_assumes_imagefolder(onnx_path, tmp_path, caplog):
    import onnx

    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with caplog.at_level(logging.WARNING), Runtime(bare) as r:
        assert r.labels == ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    assert any("no metadata" in rec.getMessage() for rec in caplog.records)


def test_face_predictions_type(rt):
    assert rt.predict_faces(np.full((200, 300, 3), 90, np.uint8)) == []
    with pytest.raises(TypeError, match="predict_faces"):  # 0.3's list-returning form: one return type now
        rt.predict(np.full((200, 300, 3), 90, np.uint8), detect_faces=True)
    assert FacePrediction.__dataclass_fields__.keys() == {"box", "prediction"}


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((0, 48), np.uint8), "empty"),
        (np.zeros((48, 48), np.float32), "uint8"),
        (np.full((48, 48), np.nan, np.float32), "NaN"),
        (np.zeros((48, 48, 2), np.uint8), "shape"),
        (np.zeros((2, 48, 48, 3, 1), np.uint8), "shape"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_image_arrays(rt, image, match):
    with pytest.raises(ImageError, match=match):
        rt.predict(image)


def test_bad_image_files(rt, tmp_path, faces):
    with pytest.raises(ImageError, match="no such image file"):
        rt.predict(tmp_path / "absent.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageError, match="corrupt.jpg.*not a readable image"):
        rt.predict(corrupt)
    with pytest.raises(ImageError, match="batch element 2.*corrupt.jpg"):
        rt.predict_batch([faces[0], faces[1], corrupt])
    with pytest.raises(ImageError, match="batch element 1.*uint8"):
        rt.predict_batch([np.zeros((48, 48), np.uint8), np.zeros((48, 48), np.int32)])
    with pytest.raises(ImageError, match="empty"):
        rt.predict_batch([])


def test_bad_batches_for_run(rt):
    good = np.zeros((3, 3, 224, 224), np.float32)
    with pytest.raises(ImageError, match="float32"):
        rt.run(good.astype(np.float64))
    with pytest.raises(ImageError, match="shape"):
        rt.run(np.zeros((3, 1, 224, 224), np.float32))
    with pytest.raises(ImageError, match="shape"):
        rt.run(np.zeros((0, 3, 224, 224), np.float32))
    bad = good.copy()
    bad[2, 0, 5, 5] = np.inf
    with pytest.raises(ImageError, match="element 2 contains NaN or inf"):
        rt.run(bad)


def test_closed_runtime_refuses(onnx_path):
    r = Runtime(onnx_path)
    r.close()
    r.close()  # idempotent
    with pytest.raises(EmoNeXtError, match="closed"):
        r.run(np.zeros((1, 3, 224, 224), np.float32))


@pytest.mark.parametrize("which", ["onnx", "openvino"])
def test_concurrent_predicts_equal_single_thread(which, onnx_path, ir_path, fer_val_faces):
    paths = fer_val_faces[0][:8]
    images = [cv2.imread(str(p)) for p in paths]
    with Runtime(onnx_path if which == "onnx" else ir_path) as r:
        expected = [r.predict(im).logits for im in images]
        jobs = [i % len(images) for i in range(4 * 6)]  # 4 threads x 6 predicts
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda i: (i, r.predict(images[i]).logits), jobs))
    for i, logits in results:
        np.testing.assert_allclose(logits, expected[i], atol=1e-5)


def test_exported_artifact_is_verified_on_load(onnx_path, tmp_path, faces):
    """export.onnx records artifact_sha256; a changed weight byte is refused on load, verify=False loads it."""
    import onnx

    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    from emonext_edge.fileio import sha256_file

    assert meta["artifact_sha256"] == {onnx_path.name: sha256_file(onnx_path)}
    dst = tmp_path / onnx_path.name
    data = bytearray(onnx_path.read_bytes())
    weights = max(onnx.load(str(onnx_path)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data[data.find(weights) + 101] ^= 0x20
    dst.write_bytes(bytes(data))
    shutil.copy(onnx_path.with_suffix(".json"), dst.with_suffix(".json"))
    with pytest.raises(EmoNeXtError, match=rf"{dst.name}: SHA-256 .* does not match"):
        Runtime(dst)
    with Runtime(dst, verify=False) as changed:
        assert changed.predict(faces[0]).label in changed.labels


def test_type_errors_name_the_expected_type(rt):
    with pytest.raises(TypeError, match="model_path must be a str or os.PathLike.*got NoneType"):
        Runtime(None)
    with pytest.raises(TypeError, match="got int"):
        Runtime(3)
    with pytest.raises(TypeError, match="predict_batch: expected an image .* got NoneType"):
        rt.predict_batch(None)


def test_predict_batch_gray_stack_gives_one_prediction_per_image(rt, faces):
    stack = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in faces[:3]])
    assert stack.shape == (3, 48, 48)
    batch = rt.predict_batch(stack)
    assert [p.label for p in batch] == [rt.predict(f).label for f in faces[:3]]
