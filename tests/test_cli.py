"""``python -m emonext_edge predict|video`` on real faces and a short synthetic video.

The video is written here with cv2.VideoWriter: 6 frames of skimage.data.astronaut()
(one real face) shifted a few pixels per frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emonext_edge.cli import main

pytest.importorskip("torch")



@pytest.fixture(scope="module")
def video(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("video") / "astronaut.mp4"
    frame = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (512, 512))
    assert writer.isOpened()
    for i in range(6):
        writer.write(np.roll(frame, 2 * i, axis=1))
    writer.release()
    return path


def test_predict_table_and_json(onnx_path, fer_val_faces, capsys):
    paths = [str(p) for p in fer_val_faces[0][:2]]
    assert main(["predict", str(onnx_path), *paths]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["image", "label", "score"]
    assert len(table) == 3 and all(p in row for p, row in zip(paths, table[1:]))
    assert main(["predict", str(onnx_path), *paths, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"]["backend"] == "onnxruntime"
    assert [r["image"] for r in doc["results"]] == paths
    labels = set(doc["results"][0]["probs"])
    assert all(r["label"] in labels and len(r["logits"]) == len(labels) for r in doc["results"])


def test_predict_faces_json(onnx_path, tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    assert main(["predict", str(onnx_path), str(photo), "--faces", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"][0]["faces"]) == 1 and len(doc["results"][0]["faces"][0]["box"]) == 4


def test_predict_bad_input_exit_2(onnx_path, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert main(["predict", str(onnx_path), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bad.jpg" in err and len(err.splitlines()) == 1
    assert main(["predict", str(tmp_path / "absent.onnx"), str(bad)]) == 2
    assert "absent.onnx" in capsys.readouterr().err


def test_video_headless_with_out(onnx_path, video, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    assert main(["video", str(onnx_path), str(video), "--out", str(out), "--max-frames", "4"]) == 0
    assert "4 frames, 4 faces" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    cap.release()
    assert ok and frames == 4 and first.shape == (512, 512, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]  # no partial file left


def test_video_errors(onnx_path, video, tmp_path, capsys):
    if cv2.getBuildInformation().split("GUI:")[1].split()[0] == "NONE":
        assert main(["video", str(onnx_path), str(video)]) == 2
        assert "--out" in capsys.readouterr().err
    assert main(["video", str(onnx_path), str(tmp_path / "absent.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "absent.mp4" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_module_entry_point_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "emonext_edge", "predict", str(tmp_path / "absent.onnx"), "x.jpg"],
        check=False, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'absent.onnx'}: no such model file"]
