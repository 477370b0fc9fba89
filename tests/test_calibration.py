"""Calibration data plumbing: sources, label mapping by name, balanced selection, calib.npz, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration import (
    CalibrationFileError,
    DataError,
    balanced_order,
    build_calibration,
    load_calibration,
    load_labeled,
    read_calibration,
    read_source,
    save_calibration,
    select_balanced,
)
from calibration.__main__ import main as calib_main
from emonext_edge.labels import IMAGEFOLDER_LABELS
from emonext_edge.preprocess import preprocess, preprocess_one

#: The Kaggle fer2013.csv 'emotion' codes as documented on the challenge page (written out here,
#: independently of emonext_edge.labels, so the mapping by name is really checked).
KAGGLE_DOC = {0: "Angry", 1: "Disgust", 2: "Fear", 3: "Happy", 4: "Sad", 5: "Surprise", 6: "Neutral"}


def _face(value: int, side: int = 48) -> np.ndarray:
    rng = np.random.default_rng(value)
    return np.clip(rng.normal(value, 20, (side, side)), 0, 255).astype(np.uint8)


def _write_csv(path: Path, rows: list[tuple[int, np.ndarray, str]], pixels_override: dict[int, str] | None = None):
    lines = ["emotion,pixels,Usage"]
    for i, (code, img, usage) in enumerate(rows):
        pixels = " ".join(map(str, img.ravel().tolist()))
        if pixels_override and i in pixels_override:
            pixels = pixels_override[i]
        lines.append(f"{code},{pixels},{usage}")
    path.write_text("\n".join(lines) + "\n")


def _imagefolder(root: Path, classes: dict[str, int]) -> Path:
    for folder, count in classes.items():
        (root / "train" / folder).mkdir(parents=True)
        for k in range(count):
            cv2.imwrite(str(root / "train" / folder / f"{k:03d}.png"), _face(10 * k + len(folder)))
    return root


# --------------------------------------------------------------------------- CSV


def test_csv_codes_mapped_by_name_and_split_filtered(tmp_path):
    rows = [(code, _face(30 * code + 5), "Training") for code in range(7)]
    rows += [(code, _face(30 * code + 7), "PublicTest") for code in (4, 6)]
    csv_path = tmp_path / "fer2013.csv"
    _write_csv(csv_path, rows)

    train = read_source(csv_path, "train")
    assert train.kind == "csv" and len(train.items) == 7
    for (code, img, _), item, label in zip(rows, train.items, train.labels):
        assert IMAGEFOLDER_LABELS[label] == KAGGLE_DOC[code]
        assert np.array_equal(item, img)
    val_items, val_labels = load_labeled(csv_path, split="val")
    assert [IMAGEFOLDER_LABELS[y] for y in val_labels] == ["Sad", "Neutral"]
    assert np.array_equal(val_items[0], rows[7][1])

    out = tmp_path / "calib.npz"
    assert calib_main(["build", "--source", str(csv_path), "--num", "7", "--out", str(out)]) == 0
    tensors, manifest = read_calibration(out)
    assert manifest["class_counts"] == {name: 1 for name in IMAGEFOLDER_LABELS}
    # each tensor is the preprocessed CSV face of the class the manifest lists, in order
    by_name = {f"fer2013.csv:line {i + 2}": img for i, (_, img, _) in enumerate(rows)}
    assert np.array_equal(tensors, preprocess([by_name[n] for n in manifest["items"]]))


def test_csv_wrong_pixel_count_names_the_row(tmp_path):
    rows = [(0, _face(1), "Training"), (3, _face(2), "Training")]
    csv_path = tmp_path / "bad.csv"
    _write_csv(csv_path, rows, pixels_override={1: "1 2 3"})
    with pytest.raises(DataError, match=r"line 3: 'pixels' holds 3 values, expected 2304"):
        read_source(csv_path, "train")


def test_csv_missing_split_and_bad_header(tmp_path):
    csv_path = tmp_path / "fer.csv"
    _write_csv(csv_path, [(0, _face(1), "Training")])
    with pytest.raises(DataError, match="no data rows for split 'val'"):
        load_labeled(csv_path, split="val")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="'emotion' and 'pixels'"):
        read_source(other)


# --------------------------------------------------------------------------- ImageFolder / folder


def test_imagefolder_any_capitalization(tmp_path):
    root = _imagefolder(tmp_path / "FER", {"ANGRY": 2, "happy": 3, "sAd": 1})
    data = read_source(root, "train")
    assert data.kind == "imagefolder"
    by_folder = {Path(n).parent.name: IMAGEFOLDER_LABELS[y] for n, y in zip(data.names, data.labels)}
    assert by_folder == {"ANGRY": "Angry", "happy": "Happy", "sAd": "Sad"}
    assert data.class_counts()["Happy"] == 3
    # the split folder itself can be given too
    assert len(read_source(root / "train").items) == 6


def test_unknown_class_folder_is_named(tmp_path):
    root = _imagefolder(tmp_path / "FER", {"Angry": 1, "Bored": 1})
    with pytest.raises(DataError, match="unknown class folder 'Bored'"):
        read_source(root, "train")


def test_missing_folder_and_missing_split(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_source(tmp_path / "nope", "train")
    root = _imagefolder(tmp_path / "FER", {"Angry": 1})
    with pytest.raises(DataError, match=r"no 'val' split folder \(it has \['train'\]\)"):
        load_labeled(root, split="val")
    assert calib_main(["build", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "c.npz")]) == 2


def test_unreadable_image_skipped_and_counted(tmp_path):
    root = _imagefolder(tmp_path / "FER", {"Angry": 3, "Happy": 3})
    bad = root / "train" / "Happy" / "001.png"
    bad.write_bytes(b"not a png at all")
    tensors, manifest = build_calibration(root, num=5, seed=0)
    assert tensors.shape == (5, 3, 224, 224)
    assert manifest["skipped"] == 1 and str(bad) in manifest["skipped_items"][0]
    assert str(bad) not in manifest["items"]
    with pytest.raises(DataError, match=r"only 5 of the requested 6 items are readable \(1 skipped\)"):
        build_calibration(root, num=6, seed=0)


def test_unlabeled_folder(tmp_path):
    for k in range(4):
        cv2.imwrite(str(tmp_path / f"face{k}.jpg"), _face(40 * k + 10))
    tensors, manifest = build_calibration(tmp_path, num=3, split=None)
    assert manifest["kind"] == "folder" and manifest["class_counts"] == {"unlabeled": 3}
    assert np.array_equal(tensors, preprocess([Path(n) for n in manifest["items"]]))
    with pytest.raises(DataError, match="has no labels"):
        load_labeled(tmp_path)


def test_num_larger_than_data_is_a_clear_error(tmp_path, capsys):
    root = _imagefolder(tmp_path / "FER", {"Angry": 2, "Fear": 2})
    out = tmp_path / "calib.npz"
    assert calib_main(["build", "--source", str(root), "--num", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--num 5 is larger than the data" in err and "only 4" in err
    assert not out.exists() and not list(tmp_path.glob(".calib.npz*"))


@pytest.mark.parametrize("where", ["afile/c.npz", "/proc/c.npz"])
def test_out_where_no_file_can_be_written_is_one_line_exit_2(tmp_path, capsys, where):
    root = _imagefolder(tmp_path / "FER", {"Angry": 2})
    (tmp_path / "afile").write_text("a file where a directory should be")
    out = where if where.startswith("/") else str(tmp_path / where)
    assert calib_main(["build", "--source", str(root), "--num", "1", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {out}: ")


def test_one_default_calibration_size_across_tools():
    from calibration import DEFAULT_CALIBRATION_SIZE
    from calibration.__main__ import _parser
    from export.nncf_quantize import QuantizeOptions

    build = _parser().parse_args(["build", "--source", "x", "--out", "c.npz"])
    assert build.num == QuantizeOptions().subset_size == DEFAULT_CALIBRATION_SIZE == 300


# --------------------------------------------------------------------------- selection


def test_balanced_selection_is_deterministic_and_balanced():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 20 + [4] * 9)
    a = select_balanced(labels, 20, seed=3)
    assert a == select_balanced(labels, 20, seed=3)
    assert set(a) != set(select_balanced(labels, 20, seed=4))
    counts = np.bincount(labels[a], minlength=5)
    assert counts[1] == 3  # a small class is taken entirely
    big = counts[[0, 2, 4]]
    assert big.sum() == 17 and big.max() - big.min() <= 1
    # a prefix of the order is itself a balanced selection, and the order covers everything once
    order = balanced_order(labels, seed=3)
    assert order[:20] == a and sorted(order) == list(range(len(labels)))
    with pytest.raises(DataError, match="asked for 83 items but the source holds only 82"):
        select_balanced(labels, 83)


# --------------------------------------------------------------------------- video


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write mp4v videos here")
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_video_source_detects_and_crops_faces(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    rgb = skimage_data.astronaut()
    bgr = np.ascontiguousarray(cv2.resize(rgb[:, :, ::-1], (256, 256)))
    blank = np.full_like(bgr, 127)
    video = tmp_path / "clip.mp4"
    _write_video(video, [bgr] * 6 + [blank] * 2)
    data = read_source(video, frames=8)
    assert data.kind == "video"
    assert len(data.items) == 6 and len(data.skipped) == 2
    assert all(reason == "no face detected" for _, reason in data.skipped)
    for crop in data.items:  # a face crop, not the whole frame
        assert crop.ndim == 3 and crop.shape[0] < 200 and crop.shape[1] < 200
    tensors, manifest = build_calibration(video, num=4, split=None)
    assert tensors.shape == (4, 3, 224, 224) and manifest["kind"] == "video"
    with pytest.raises(DataError, match="larger than the data"):
        build_calibration(video, num=100)


def test_empty_and_corrupt_video(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4"):
        read_source(empty, frames=4)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="corrupt.avi"):
        read_source(corrupt, frames=4)
    blank = tmp_path / "noface.mp4"
    _write_video(blank, [np.zeros((96, 96, 3), np.uint8)] * 3)
    with pytest.raises(DataError, match="no face detected in any of the 3 sampled frames"):
        read_source(blank, frames=3)


# --------------------------------------------------------------------------- calib.npz


def test_calib_file_round_trip_and_tamper_detection(tmp_path):
    root = _imagefolder(tmp_path / "FER", {"Angry": 3, "Happy": 3, "Surprise": 2})
    out = tmp_path / "calib.npz"
    tensors, manifest = build_calibration(root, num=6, seed=1, out=out)
    loaded, stored = read_calibration(out)
    assert np.array_equal(loaded, tensors) and loaded.dtype == np.float32
    assert stored["tensor_sha256"] == manifest["tensor_sha256"] and stored["seed"] == 1
    assert stored["class_counts"] == {**{n: 0 for n in IMAGEFOLDER_LABELS}, "Angry": 2, "Happy": 2, "Surprise": 2}
    assert np.array_equal(tensors, preprocess([Path(n) for n in stored["items"]]))
    assert np.array_equal(load_calibration(out, num=4), tensors[:4])
    assert np.array_equal(load_calibration(out, num=None), tensors)
    with pytest.raises(CalibrationFileError, match="holds only 6"):
        load_calibration(out, num=7)
    # the data path itself works the same as the file (built on the fly)
    assert np.array_equal(load_calibration(root, num=6, seed=1), tensors)

    # change one pixel of the stored data, keep the manifest: the SHA-256 check catches it
    with np.load(out) as npz:
        blob, data = npz["manifest"], npz["data"].copy()
    data[0, 100, 100] ^= 1
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, manifest=blob, data=data)
    with pytest.raises(CalibrationFileError, match="SHA-256 of the tensor data"):
        read_calibration(tampered)
    # wrong shape in the manifest, missing arrays, not an npz at all
    meta = json.loads(blob.tobytes())
    meta["shape"] = [5, 3, 224, 224]
    np.savez(tampered, manifest=np.frombuffer(json.dumps(meta).encode(), np.uint8), data=npz_data(out))
    with pytest.raises(CalibrationFileError, match="manifest says"):
        read_calibration(tampered)
    np.savez(tampered, data=data)
    with pytest.raises(CalibrationFileError, match="not a calib.npz"):
        read_calibration(tampered)
    tampered.write_bytes(b"garbage")
    with pytest.raises(CalibrationFileError, match="not a readable calib.npz"):
        read_calibration(tampered)


def npz_data(path: Path) -> np.ndarray:
    with np.load(path) as npz:
        return npz["data"]


def test_calib_file_float32_fallback(tmp_path):
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    out = tmp_path / "f.npz"
    manifest = save_calibration(out, x, {"source": "random"})
    assert manifest["encoding"] == "float32"
    assert np.array_equal(read_calibration(out)[0], x)
    with pytest.raises(CalibrationFileError, match=r"float32 \[N, 3, 224, 224\]"):
        save_calibration(out, x[:, :1], {})


# --------------------------------------------------------------------------- real FER2013


def test_real_fer2013_calibration_and_labeled_subset(fer2013_root):
    tensors = load_calibration(fer2013_root, num=14, seed=0, split="train")
    assert tensors.shape == (14, 3, 224, 224)
    again, manifest = build_calibration(fer2013_root, num=14, seed=0, split="train")
    assert np.array_equal(tensors, again)
    assert manifest["class_counts"] == {name: 2 for name in IMAGEFOLDER_LABELS}
    for name in manifest["items"]:
        assert Path(name).parts[-3] == "train"
    items, labels = load_labeled(fer2013_root, split="val", limit=70)
    assert len(items) == 70
    for path, y in zip(items, labels):  # labels follow the class folder of each file
        assert Path(path).parent.name == IMAGEFOLDER_LABELS[y]
    counts = np.bincount(labels, minlength=7)
    assert counts[IMAGEFOLDER_LABELS.index("Happy")] > counts[IMAGEFOLDER_LABELS.index("Disgust")]
    assert np.array_equal(preprocess_one(items[0]), preprocess([items[0]])[0])
