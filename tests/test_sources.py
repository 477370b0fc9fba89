"""Jetson video sources (emonext_edge/sources.py): pipelines as strings, plans per machine, the CLI's
--print-pipeline, and the GStreamer path for real through Debian's python3-opencv (built with GStreamer).

The NVIDIA elements (nvarguscamerasrc, nvvidconv, nvv4l2decoder) exist only on a Jetson: their
pipelines are checked as text against NVIDIA's "Accelerated GStreamer" guide, never run here. The
real run uses the plain elements Debian ships (videotestsrc, filesrc ! decodebin, videoconvert).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from emonext_edge.cli import main
from emonext_edge.errors import VideoSourceError
from emonext_edge.sources import (
    CaptureOptions,
    Probe,
    csi_pipeline,
    file_pipeline,
    opencv_has_gstreamer,
    plan_source,
    rtsp_pipeline,
    v4l2_pipeline,
)

REPO = Path(__file__).resolve().parents[1]
JETSON = Probe(opencv_gstreamer=True, elements=frozenset({"nvarguscamerasrc", "nvvidconv", "nvv4l2decoder"}), jetson=True)
PIP_WHEEL = Probe(opencv_gstreamer=False)  # opencv-python(-headless): FFmpeg, no GStreamer
DEBIAN = Probe(opencv_gstreamer=True)  # GStreamer, but no NVIDIA plugins
NV_TAIL = "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"


# -- pipelines as NVIDIA documents them ------------------------------------------------------------------
def test_csi_pipeline_default_and_options():
    assert csi_pipeline(0) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,format=NV12,framerate=30/1 ! "
        f"{NV_TAIL} ! appsink drop=1 max-buffers=1"
    )
    text = csi_pipeline(1, CaptureOptions(width=1920, height=1080, fps=60, sensor_mode=2, flip=2))
    assert text.startswith("nvarguscamerasrc sensor-id=1 sensor-mode=2 ! ")
    assert "width=1920,height=1080,format=NV12,framerate=60/1" in text
    assert " ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! " in text
    # sensor-mode 0 is a real mode, not "unset"
    assert "sensor-mode=0" in csi_pipeline(0, CaptureOptions(sensor_mode=0))


def test_decode_pipelines_use_nvv4l2decoder_with_the_right_demuxer():
    h264 = CaptureOptions(codec="h264")
    assert file_pipeline("clip.mp4", h264) == (
        f"filesrc location=clip.mp4 ! qtdemux ! h264parse ! nvv4l2decoder ! {NV_TAIL} ! appsink sync=false"
    )
    assert "matroskademux ! h265parse ! nvv4l2decoder" in file_pipeline("a.mkv", CaptureOptions(codec="h265"))
    assert "filesrc location=raw.h264 ! h264parse ! nvv4l2decoder" in file_pipeline("raw.h264", h264)  # elementary
    assert file_pipeline("clip.mp4").startswith("filesrc location=clip.mp4 ! decodebin ! nvvidconv")
    assert rtsp_pipeline("rtsp://cam:554/s", CaptureOptions(codec="h265", latency_ms=0)) == (
        f"rtspsrc location=rtsp://cam:554/s latency=0 ! rtph265depay ! h265parse ! nvv4l2decoder ! {NV_TAIL} "
        "! appsink drop=1 max-buffers=1"
    )
    # a path with spaces is quoted for gst_parse_launch
    assert 'location="/data/my clip.mp4"' in file_pipeline("/data/my clip.mp4")


def test_v4l2_pipeline():
    assert v4l2_pipeline("/dev/video1") == (
        "v4l2src device=/dev/video1 ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1"
    )
    text = v4l2_pipeline("/dev/video0", CaptureOptions(width=640, height=480, fps=15))
    assert "v4l2src device=/dev/video0 ! video/x-raw,width=640,height=480,framerate=15/1 ! videoconvert" in text


# -- plans per machine ----------------------------------------------------------------------------------
def test_plans_on_a_jetson():
    plan = plan_source("csi://0?size=1920x1080&fps=30&sensor-mode=4", machine=JETSON)
    assert (plan.kind, plan.api, plan.live) == ("csi", "gstreamer", True)
    assert plan.target == plan.pipeline and "sensor-mode=4" in plan.pipeline and "width=1920,height=1080" in plan.pipeline
    rtsp = plan_source("rtsp://10.0.0.2/live", CaptureOptions(codec="h264"), machine=JETSON)
    assert rtsp.api == "gstreamer" and "rtph264depay ! h264parse ! nvv4l2decoder" in rtsp.pipeline
    clip = plan_source("clip.mp4", machine=JETSON)
    assert clip.api == "gstreamer" and not clip.live and clip.pipeline.endswith("appsink sync=false")
    # CaptureOptions given by the caller override the query string
    both = plan_source("csi://0?fps=30", CaptureOptions(fps=15), machine=JETSON)
    assert "framerate=15/1" in both.pipeline


def test_fallbacks_elsewhere_say_why_in_one_line():
    for machine, why in ((PIP_WHEEL, "no GStreamer"), (DEBIAN, "no nvv4l2decoder")):
        for source in ("rtsp://cam/live", "clip.mp4", "clip.h265"):
            plan = plan_source(source, machine=machine)
            assert plan.api == "ffmpeg" and plan.target == source
            assert why in plan.note and "\n" not in plan.note
    unknown = Probe(opencv_gstreamer=True, elements_known=False)
    assert "gst-inspect-1.0 is missing" in plan_source("clip.mp4", machine=unknown).note
    v4l2 = plan_source("/dev/video2", machine=PIP_WHEEL)
    assert (v4l2.api, v4l2.target) == ("v4l2", 2)
    assert plan_source("/dev/video2", machine=DEBIAN).pipeline.startswith("v4l2src device=/dev/video2 ")
    # what stream.open_source keeps opening as before
    for source in ("0", "http://cam/mjpg", "clip.avi", "frames.webm"):
        assert plan_source(source, machine=JETSON) is None


def test_gstreamer_only_sources_are_refused_with_the_fix():
    with pytest.raises(VideoSourceError, match=r"^csi://0: needs OpenCV built with GStreamer.*JetPack's OpenCV"):
        plan_source("csi://0", machine=PIP_WHEEL)
    with pytest.raises(VideoSourceError, match=r"csi://0: the GStreamer element\(s\) nvarguscamerasrc, nvvidconv"):
        plan_source("csi://0", machine=DEBIAN)
    # element availability unknown (no gst-inspect-1.0): the camera is tried
    assert plan_source("csi://0", machine=Probe(opencv_gstreamer=True, elements_known=False)).kind == "csi"
    # printing never needs the machine to have anything
    assert plan_source("csi://0", machine=PIP_WHEEL, check=False).pipeline.startswith("nvarguscamerasrc")


@pytest.mark.parametrize(("source", "message"), [
    ("csi://x", "expected csi://N with N the sensor-id"),
    ("csi://0?width=640", "width and height go together"),
    ("csi://0?size=640", "size must be WIDTHxHEIGHT"),
    ("csi://0?fps=-1", "option fps must be a non-negative integer"),
    ("csi://0?fps=0", "fps: expected a positive integer"),
    ("csi://0?flip=9", "flip-method 0-7"),
    ("csi://0?exposure=3", "unknown source option 'exposure'"),
    ("csi://0?codec=vp9", "codec: expected one of auto, h264, h265"),
    ("videotestsrc ! autovideosink", "must end in appsink .* ends in 'autovideosink'"),
])
def test_bad_sources_name_the_source_and_the_expectation(source, message):
    with pytest.raises(VideoSourceError, match=message) as info:
        plan_source(source, machine=JETSON)
    assert "\n" not in str(info.value)


def test_raw_pipeline_passes_through():
    text = "videotestsrc num-buffers=5 ! videoconvert ! video/x-raw,format=BGR ! appsink"
    plan = plan_source(text, machine=DEBIAN)
    assert (plan.kind, plan.target, plan.live) == ("gstreamer", text, True)
    assert not plan_source("filesrc location=a.avi ! decodebin ! videoconvert ! appsink", machine=DEBIAN).live


def test_opencv_build_information_parser():
    assert opencv_has_gstreamer("  Video I/O:\n    FFMPEG:    YES\n    GStreamer:                   YES (1.22.0)\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    FFMPEG:    YES\n    GStreamer:                   NO\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    FFMPEG:    YES\n")


def test_cli_print_pipeline_opens_nothing(tmp_path, capsys):
    missing_model = tmp_path / "not-there.onnx"
    assert main(["video", str(missing_model), "csi://0", "--print-pipeline"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == csi_pipeline(0)
    assert main(["video", str(missing_model), "csi://1", "--capture-size", "1920x1080", "--capture-fps", "60",
                 "--sensor-mode", "2", "--flip", "2", "--print-pipeline"]) == 0
    assert capsys.readouterr().out.strip() == csi_pipeline(
        1, CaptureOptions(width=1920, height=1080, fps=60, sensor_mode=2, flip=2))
    assert main(["video", str(missing_model), "csi://0", "--capture-size", "big", "--print-pipeline"]) == 2
    assert "--capture-size must be WIDTHxHEIGHT" in capsys.readouterr().err


# -- the GStreamer path for real: Debian's python3-opencv -----------------------------------------------
DEBIAN_PYTHON = Path("/usr/bin/python3")
_GST_CHECK = "import cv2, re, sys; sys.exit(0 if re.search(r'GStreamer:\\s*YES', cv2.getBuildInformation()) else 1)"


def _debian_python_with_gstreamer() -> str:
    if not DEBIAN_PYTHON.exists():
        pytest.skip(f"{DEBIAN_PYTHON} is absent (apt-get install python3-opencv gstreamer1.0-plugins-base "
                    "gstreamer1.0-plugins-good)")
    proc = subprocess.run([str(DEBIAN_PYTHON), "-c", _GST_CHECK], check=False, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"{DEBIAN_PYTHON} has no OpenCV built with GStreamer (apt-get install python3-opencv "
                    f"gstreamer1.0-plugins-base gstreamer1.0-plugins-good): {proc.stderr.strip()[-200:]}")
    return str(DEBIAN_PYTHON)


def test_gstreamer_sources_decode_through_stream_open_source(tmp_path):
    python = _debian_python_with_gstreamer()
    clip = tmp_path / "clip with space.avi"
    script = textwrap.dedent(f"""
        import json, sys
        import cv2, numpy as np
        from emonext_edge import sources
        from emonext_edge.stream import open_source

        out = {{"probe": repr(sources.probe())}}
        # 1. a live test source, through open_source (the path Runtime.stream takes)
        reader = open_source("videotestsrc num-buffers=30 ! videoconvert ! video/x-raw,format=BGR ! appsink")
        frames = []
        while True:
            frame = reader.read()
            if frame is None:
                break
            frames.append(frame)
        reader.release()
        out["test_frames"], out["test_shape"], out["test_live"] = len(frames), list(frames[0].shape), reader.live
        # 2. a file written here, decoded by GStreamer (filesrc ! decodebin), every frame in order
        writer = cv2.VideoWriter({str(clip)!r}, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
        for i in range(12):
            writer.write(np.full((120, 160, 3), 20 * i, np.uint8))
        writer.release()
        location = {str(clip)!r}
        reader = open_source(f'filesrc location="{{location}}" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink sync=false')
        means = []
        while True:
            frame = reader.read()
            if frame is None:
                break
            means.append(float(frame.mean()))
        reader.release()
        out["file_frames"], out["file_live"], out["file_means"] = len(means), reader.live, means
        print(json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([python, "-c", script], check=False, capture_output=True, text=True, timeout=240, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "opencv_gstreamer=True" in out["probe"]
    assert out["test_live"] is True and out["test_shape"] == [240, 320, 3]
    # live policy: appsink drop=1 may drop frames a slow reader misses, but some must arrive
    assert 1 <= out["test_frames"] <= 30
    assert out["file_live"] is False and out["file_frames"] == 12
    # the frames come back in order with their content (MJPG is lossy: within a few levels)
    assert all(abs(mean - 20 * i) < 4 for i, mean in enumerate(out["file_means"])), out["file_means"]


def test_without_gstreamer_csi_fails_in_one_line_and_files_still_open(tmp_path):
    """This interpreter's OpenCV (the pip wheel, no GStreamer): csi:// is refused, a file opens by FFmpeg."""
    import cv2
    import numpy as np

    from emonext_edge.stream import open_source

    if opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer; the fallback is tested with the pip wheel")
    with pytest.raises(VideoSourceError, match=r"^csi://0: needs OpenCV built with GStreamer"):
        open_source("csi://0")
    clip = tmp_path / "c.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    reader = open_source(str(clip))
    assert reader.read() is not None and not reader.live
    reader.release()
