"""``python -m emonext_edge video``: JSON lines schema, progress, outputs checked first, one-line errors.

Clip: 3 real FER2013 val faces pasted on a 640x480 backdrop, moving (benchmarks/video.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emonext_edge.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import video as clips

sys.path.pop(0)

pytest.importorskip("torch")  # the onnx_path fixture exports the official fixture model

FRAME_KEYS = {"frame", "time", "detected", "faces", "skipped"}
FACE_KEYS = {"track", "box", "label", "score", "probs", "detected"}


@pytest.fixture(scope="module")
def clip(fer2013_root, tmp_path_factory) -> Path:
    frames, _ = clips.compose_frames(clips.load_faces(clips.face_paths(fer2013_root, 3)), 8, step=3)
    return clips.write_clip(frames, tmp_path_factory.mktemp("clip") / "three.avi")


def test_json_lines_schema_out_video_and_progress(onnx_path, clip, tmp_path, capfd):
    out, jsonl = tmp_path / "annotated.mp4", tmp_path / "frames.jsonl"
    code = main(["video", str(onnx_path), str(clip), "--out", str(out), "--json", str(jsonl),
                 "--detect-every", "2", "--smoothing", "0.3", "-v"])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("8 frames, 24 faces, ") and "FPS overall" in captured.out
    assert "ms per frame: decode" in captured.out and "infer" in captured.out
    assert "[video] 8 frames" in captured.err and "FPS" in captured.err
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 8
    from emonext_edge import Runtime

    with Runtime(onnx_path) as rt:
        labels = set(rt.labels)
    for i, rec in enumerate(records):
        assert set(rec) == FRAME_KEYS
        assert rec["frame"] == i and rec["time"] == pytest.approx(i / 30, abs=1e-6) and rec["detected"] == (i % 2 == 0)
        assert [f["track"] for f in rec["faces"]] == [1, 2, 3]
        for face in rec["faces"]:
            assert set(face) == FACE_KEYS
            x, y, w, h = face["box"]
            assert all(isinstance(v, int) for v in face["box"]) and 0 <= x and x + w <= 640 and 0 <= y and y + h <= 480
            assert set(face["probs"]) == labels and sum(face["probs"].values()) == pytest.approx(1, abs=1e-4)
            assert face["label"] == max(face["probs"], key=face["probs"].get)
            assert face["score"] == pytest.approx(face["probs"][face["label"]], abs=1e-6)
    cap = cv2.VideoCapture(str(out))
    count, first = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.read()[1]
    cap.release()
    assert count == 8 and first.shape == (480, 640, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "frames.jsonl"]  # no partial files
    # annotation draws each emotion's colour: the first face's box colour is on the frame
    original = cv2.VideoCapture(str(clip)).read()[1]
    assert np.abs(first.astype(int) - original.astype(int)).max() > 100


def test_out_is_checked_before_anything_else(onnx_path, tmp_path, capfd):
    absent = str(tmp_path / "absent.avi")  # would fail later: the output check must come first
    tick = time.monotonic()
    assert main(["video", str(onnx_path), absent, "--out", str(tmp_path), "--json", str(tmp_path / "f.jsonl")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "is a directory" in err[0]
    assert time.monotonic() - tick < 5 and not (tmp_path / "f.jsonl").exists()
    assert main(["video", str(onnx_path), absent, "--out", "/proc/x.mp4"]) == 2
    err = capfd.readouterr().err.strip()
    assert "/proc/x.mp4" in err and "not writable" in err and "video format" not in err
    assert main(["video", str(onnx_path), absent, "--json", str(tmp_path / "no" / "f.jsonl")]) == 2
    assert "does not exist" in capfd.readouterr().err


def test_outputs_never_overwrite_the_source_or_the_model(onnx_path, clip, tmp_path, capfd):
    """``video m.onnx clip.mp4 --out clip.mp4`` replaced the user's clip with the annotated one (exit 0);
    ``--json`` on the clip or the model would truncate it before the first frame. Each is refused, nothing touched."""
    source = tmp_path / "mine.mp4"
    source.write_bytes(clip.read_bytes())
    before = source.read_bytes(), onnx_path.read_bytes()
    for option, target, named in (("--out", source, "the video source"), ("--json", source, "the video source"),
                                  ("--json", onnx_path, "the model")):
        assert main(["video", str(onnx_path), str(source), option, str(target), "--max-frames", "2"]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {target}: {option} is {named}"), err
    same = str(tmp_path / "both.mp4")
    assert main(["video", str(onnx_path), str(source), "--out", same, "--json", same]) == 2
    assert "--out and --json are the same file" in capfd.readouterr().err
    assert (source.read_bytes(), onnx_path.read_bytes()) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_json_output_is_named(onnx_path, clip, capfd):
    """``--json /dev/full`` ended with 'error: disk full (...)', not naming the file that could not be written."""
    assert main(["video", str(onnx_path), str(clip), "--json", "/dev/full", "--max-frames", "2"]) == 4
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: /dev/full: disk full"), err


def test_bad_sources_one_line(onnx_path, tmp_path, capfd):
    out = str(tmp_path / "o.mp4")
    assert main(["video", str(onnx_path), str(tmp_path / "absent.avi"), "--out", out]) == 2
    assert capfd.readouterr().err.strip().splitlines() == [f"error: {tmp_path / 'absent.avi'}: no such video file"]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(2)
    try:  # in its own process, as a user runs it (FFmpeg's log level is set once per process)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/cam.mjpg"
        proc = subprocess.run(
            [sys.executable, "-m", "emonext_edge", "video", str(onnx_path), url, "--out", out, "--open-timeout", "1"],
            check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
        )
    finally:
        silent.close()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {url}: could not open this stream within 1 s (unreachable, refused, or not a video stream)"
    ]
    assert not Path(out).exists()


def test_bad_detector_and_options(onnx_path, clip, tmp_path, capfd):
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("garbage")
    out = str(tmp_path / "o.mp4")
    assert main(["video", str(onnx_path), str(clip), "--out", out, "--detector", str(garbage)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(garbage) in err[0] and "not an OpenCV cascade classifier" in err[0]
    for option, value in (("--smoothing", "-1"), ("--detect-every", "0"), ("--open-timeout", "0")):
        assert main(["video", str(onnx_path), str(clip), "--out", out, option, value]) == 2
        assert option in capfd.readouterr().err


def test_demo_clip_script_runs_to_the_end_with_detect_every_3(fer2013_root, tmp_path, capfd):
    """scripts/make_demo_clip.py (faces that move, jump in size, leave and appear) -> ``video`` to the last frame."""
    sys.path.insert(0, str(REPO / "tests"))
    from _tiny_onnx import tiny_onnx

    demo = tmp_path / "demo.mp4"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_demo_clip.py"), "--data", str(fer2013_root), "--out", str(demo),
         "--frames", "45", "--seed", "1"], capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert demo.is_file() and not list(tmp_path.glob(".*partial*"))
    cap = cv2.VideoCapture(str(demo))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 45 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    cap.release()
    model = tiny_onnx(tmp_path / "tiny.onnx")
    jsonl = tmp_path / "frames.jsonl"
    assert main(["video", str(model), str(demo), "--detect-every", "3", "--json", str(jsonl)]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(45))
    assert max(len(r["faces"]) for r in rows) >= 3  # several faces are found and classified
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_clip.py"), "--data", str(tmp_path),
                          "--out", str(demo)], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no val/ folder" in bad.stderr
