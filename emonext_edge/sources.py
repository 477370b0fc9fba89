"""Video sources a Jetson has: CSI cameras, V4L2 devices, hardware-decoded RTSP and H.264/H.265 files.

    csi://0                         nvarguscamerasrc sensor-id=0 (options: csi://0?width=1920&height=1080&fps=30
                                    &sensor-mode=2&flip=2)
    /dev/video1                     v4l2src device=/dev/video1 (USB/UVC cameras; V4L2 without GStreamer)
    rtsp://cam/stream, clip.mp4     decoded by nvv4l2decoder (NVDEC) where GStreamer and NVIDIA's plugins are
                                    present; elsewhere FFmpeg on the CPU, as before, with a one-line note
    "videotestsrc ! ... ! appsink"  any GStreamer pipeline ending in appsink, used as given

:func:`plan_source` turns a source string into a :class:`SourcePlan` (what OpenCV will be asked to
open, the pipeline text, live or not) without opening anything: ``python -m emonext_edge video
MODEL csi://0 --print-pipeline`` prints it. :func:`open_planned` opens a plan. What this machine
has (OpenCV built with GStreamer, which NVIDIA elements exist) comes from :func:`probe`, once per
process; tests pass their own :class:`Probe`.

The pipelines follow NVIDIA's Jetson Linux Developer Guide, "Accelerated GStreamer"
(https://docs.nvidia.com/jetson/archives/r35.6.1/DeveloperGuide/SD/Multimedia/AcceleratedGstreamer.html,
also r36.x): camera capture ``nvarguscamerasrc sensor-id=N ! 'video/x-raw(memory:NVMM), width=...,
height=..., format=NV12, framerate=F/1'``; decode ``filesrc ! qtdemux ! h264parse ! nvv4l2decoder``;
``nvvidconv`` converts NVMM NV12 to system-memory BGRx, which ``videoconvert`` turns into the BGR
OpenCV's appsink reader accepts. ``nvarguscamerasrc`` properties sensor-id / sensor-mode and
``nvvidconv flip-method`` are those of ``gst-inspect-1.0`` on JetPack 5/6 (Camera Software
Development Solution, same guide). ``appsink drop=1 max-buffers=1`` keeps only the newest frame
of a live source.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import parse_qsl

from .errors import VideoSourceError

log = logging.getLogger(__name__)

#: the NVIDIA GStreamer elements a plan may use (JetPack's gstreamer1.0 plugins)
NVIDIA_ELEMENTS = ("nvarguscamerasrc", "nvvidconv", "nvv4l2decoder")
#: containers whose demuxer is named in the decode pipeline; elementary streams need none
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".mkv": "matroskademux",
            ".h264": None, ".264": None, ".h265": None, ".265": None, ".hevc": None}
CODECS = ("auto", "h264", "h265")
_LIVE_SINK = "appsink drop=1 max-buffers=1"
_FILE_SINK = "appsink sync=false"
#: nvvidconv (NVMM -> system memory) then videoconvert (BGRx -> BGR): NVIDIA's documented tail for appsink
_NV_TO_BGR = "nvvidconv{flip} ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"


@dataclass(frozen=True)
class CaptureOptions:
    """Camera and decode options; ``None`` leaves the camera's / stream's own choice.

    ``width``/``height``/``fps``: the capture mode asked of a CSI or V4L2 camera (CSI default
    1280x720 at 30, a mode every Jetson camera module lists). ``sensor_mode``: nvarguscamerasrc's
    sensor-mode (index into the modes it prints at start-up; ``None``: chosen from the size).
    ``flip``: nvvidconv flip-method 0-7 (2 = rotate 180°). ``codec``: h264 / h265 for NVIDIA's
    explicit parse ! nvv4l2decoder chain, auto = decodebin (which picks nvv4l2decoder on a
    Jetson by its rank). ``latency_ms``: rtspsrc jitter buffer.
    """

    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[int] = None
    sensor_mode: Optional[int] = None
    flip: int = 0
    codec: str = "auto"
    latency_ms: int = 200

    def __post_init__(self) -> None:
        for name in ("width", "height", "fps", "sensor_mode"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "sensor_mode" else 1)):
                raise VideoSourceError(f"video source option {name.replace('_', '-')}: expected a "
                                       f"{'non-negative' if name == 'sensor_mode' else 'positive'} integer, got {value!r}")
        if (self.width is None) != (self.height is None):
            raise VideoSourceError("video source options width and height go together; got only one of them")
        if isinstance(self.flip, bool) or not isinstance(self.flip, int) or not 0 <= self.flip <= 7:
            raise VideoSourceError(f"video source option flip: expected nvvidconv flip-method 0-7, got {self.flip!r}")
        if self.codec not in CODECS:
            raise VideoSourceError(f"video source option codec: expected one of {', '.join(CODECS)}, got {self.codec!r}")
        if isinstance(self.latency_ms, bool) or not isinstance(self.latency_ms, int) or self.latency_ms < 0:
            raise VideoSourceError(f"video source option latency: expected milliseconds >= 0, got {self.latency_ms!r}")


@dataclass(frozen=True)
class Probe:
    """What this machine offers: OpenCV built with GStreamer, which NVIDIA elements exist, a Jetson or not.

    ``elements_known``: False when ``gst-inspect-1.0`` is absent, so element availability is unknown
    (then the NVIDIA decoder is not assumed; an explicit ``csi://`` is still tried).
    """

    opencv_gstreamer: bool
    elements: frozenset[str] = frozenset()
    elements_known: bool = True
    jetson: bool = False

    @property
    def nvdec(self) -> bool:
        return self.opencv_gstreamer and {"nvv4l2decoder", "nvvidconv"} <= self.elements


@dataclass(frozen=True)
class SourcePlan:
    """How a source will be opened. ``target``: what ``cv2.VideoCapture`` gets (pipeline text,
    device index, path or URL); ``api``: gstreamer / v4l2 / ffmpeg; ``note``: one line on a fallback."""

    kind: str
    source: str
    api: str
    target: Union[str, int]
    live: bool
    pipeline: Optional[str] = None
    note: Optional[str] = None
    options: CaptureOptions = field(default_factory=CaptureOptions)

    def describe(self) -> str:
        """One line for ``--print-pipeline``: the GStreamer pipeline, or what OpenCV opens instead."""
        if self.pipeline is not None:
            return self.pipeline
        text = f"{self.api}: {self.target}"
        return f"{text}  ({self.note})" if self.note else text


def opencv_has_gstreamer(build_information: Optional[str] = None) -> bool:
    """True when OpenCV's build information lists ``GStreamer: YES ...`` under Video I/O."""
    if build_information is None:
        from .opencv import import_cv2

        build_information = import_cv2().getBuildInformation()
    return re.search(r"^\s*GStreamer:\s*YES", build_information, re.MULTILINE) is not None


def gst_element_exists(name: str, inspect: Optional[str] = None) -> Optional[bool]:
    """``gst-inspect-1.0 --exists NAME``; ``None`` when gst-inspect-1.0 is not installed."""
    tool = inspect or shutil.which("gst-inspect-1.0")
    if tool is None:
        return None
    try:
        return subprocess.run([tool, "--exists", name], check=False, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=1)
def probe() -> Probe:
    """This machine's :class:`Probe` (cached: OpenCV build flags and GStreamer plugins do not change)."""
    gst = opencv_has_gstreamer()
    found = {name: gst_element_exists(name) for name in NVIDIA_ELEMENTS} if gst else {}
    return Probe(
        opencv_gstreamer=gst,
        elements=frozenset(name for name, ok in found.items() if ok),
        elements_known=all(ok is not None for ok in found.values()),
        jetson=Path("/etc/nv_tegra_release").exists(),
    )


# -- pipelines (pure strings) -------------------------------------------------------------------------
def _flip(options: CaptureOptions) -> str:
    return f" flip-method={options.flip}" if options.flip else ""


def csi_pipeline(sensor_id: int, options: CaptureOptions = CaptureOptions()) -> str:
    """nvarguscamerasrc (Argus, ISP) -> NVMM NV12 at the asked mode -> nvvidconv -> BGR appsink."""
    width, height = (options.width, options.height) if options.width else (1280, 720)
    fps = options.fps or 30
    mode = f" sensor-mode={options.sensor_mode}" if options.sensor_mode is not None else ""
    return (f"nvarguscamerasrc sensor-id={sensor_id}{mode} ! "
            f"video/x-raw(memory:NVMM),width={width},height={height},format=NV12,framerate={fps}/1 ! "
            f"{_NV_TO_BGR.format(flip=_flip(options))} ! {_LIVE_SINK}")


def v4l2_pipeline(device: str, options: CaptureOptions = CaptureOptions()) -> str:
    """v4l2src (USB/UVC camera) -> raw frames at the asked mode, if any -> BGR appsink."""
    caps = []
    if options.width:
        caps += [f"width={options.width}", f"height={options.height}"]
    if options.fps:
        caps.append(f"framerate={options.fps}/1")
    mode = f" ! video/x-raw,{','.join(caps)}" if caps else ""
    flip = f" ! videoflip video-direction={options.flip}" if options.flip else ""
    return f"v4l2src device={device}{mode}{flip} ! videoconvert ! video/x-raw,format=BGR ! {_LIVE_SINK}"


def _decoder(codec: str) -> str:
    return "decodebin" if codec == "auto" else f"{codec}parse ! nvv4l2decoder"


def rtsp_pipeline(url: str, options: CaptureOptions = CaptureOptions()) -> str:
    """rtspsrc -> depay/parse -> nvv4l2decoder (NVDEC) -> nvvidconv -> BGR appsink (newest frame)."""
    depay = "" if options.codec == "auto" else f"rtp{options.codec}depay ! "
    return (f"rtspsrc location={_quote(url)} latency={options.latency_ms} ! {depay}{_decoder(options.codec)} ! "
            f"{_NV_TO_BGR.format(flip=_flip(options))} ! {_LIVE_SINK}")


def file_pipeline(path: str, options: CaptureOptions = CaptureOptions()) -> str:
    """filesrc -> demux (qtdemux / matroskademux / none) -> parse -> nvv4l2decoder -> BGR appsink (every frame)."""
    if options.codec == "auto":
        head = f"filesrc location={_quote(path)} ! decodebin"
    else:
        demuxer = DEMUXERS.get(Path(path).suffix.lower())
        demux = f" ! {demuxer}" if demuxer else ""
        head = f"filesrc location={_quote(path)}{demux} ! {_decoder(options.codec)}"
    return f"{head} ! {_NV_TO_BGR.format(flip=_flip(options))} ! {_FILE_SINK}"


def _quote(value: str) -> str:
    """A property value for gst_parse_launch: quoted when it holds spaces, quotes or '!'."""
    if re.fullmatch(r"[\w./:@%+=,~-]+", value) and "!" not in value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- planning ------------------------------------------------------------------------------------------
_INT_OPTIONS = {"width": "width", "height": "height", "fps": "fps", "framerate": "fps",
                "sensor-mode": "sensor_mode", "sensor_mode": "sensor_mode", "flip": "flip",
                "flip-method": "flip", "latency": "latency_ms"}


def parse_options(query: str, where: str) -> dict[str, Any]:
    """``width=1920&height=1080&fps=30&sensor-mode=2&flip=2&codec=h265`` -> CaptureOptions fields."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in ("size",):
            match = re.fullmatch(r"(\d+)x(\d+)", value)
            if not match:
                raise VideoSourceError(f"{where}: size must be WIDTHxHEIGHT such as 1920x1080, got {value!r}")
            out["width"], out["height"] = int(match.group(1)), int(match.group(2))
        elif key in _INT_OPTIONS:
            if not re.fullmatch(r"\d+", value):
                raise VideoSourceError(f"{where}: option {key} must be a non-negative integer, got {value!r}")
            out[_INT_OPTIONS[key]] = int(value)
        elif key == "codec":
            out["codec"] = value
        else:
            known = ", ".join(sorted({*_INT_OPTIONS, "size", "codec"}))
            raise VideoSourceError(f"{where}: unknown source option {key!r}; known: {known}")
    return out


def is_pipeline(source: str) -> bool:
    """A GStreamer launch line: elements joined by ``!``."""
    return "!" in source and not source.lower().startswith(("rtsp://", "rtsps://", "http://", "https://"))


def _split_options(source: str) -> tuple[str, str]:
    base, _, query = source.partition("?")
    return base, query


def plan_source(
    source: str, options: Optional[CaptureOptions] = None, machine: Optional[Probe] = None, check: bool = True
) -> Optional[SourcePlan]:
    """The plan for a Jetson-style source, or ``None`` for sources the caller opens as before
    (camera indices, http URLs, other files). Opens nothing; ``machine`` defaults to :func:`probe`.

    ``options`` overrides what the source string's ``?key=value`` part says. ``check=False``:
    plan a GStreamer-only source (csi://, a pipeline) even where GStreamer is absent, for printing.
    """
    text = source.strip()

    def merged(query: str, where: str) -> CaptureOptions:
        fields = parse_options(query, where) if query else {}
        base = CaptureOptions(**fields)
        if options is None:
            return base
        given = {k: v for k, v in vars(options).items() if v != getattr(CaptureOptions(), k)}
        return replace(base, **given)

    if is_pipeline(text) and not os.path.exists(text):
        last = text.rsplit("!", 1)[-1].split()
        if not last or last[0] != "appsink":
            ending = last[0] if last else "nothing"
            raise VideoSourceError(
                f"GStreamer pipeline {text[:60]!r}: must end in appsink (OpenCV reads frames from it), "
                f"but ends in {ending!r}"
            )
        live = text.split("!", 1)[0].split()[0] not in ("filesrc", "multifilesrc")
        plan = SourcePlan("gstreamer", source, "gstreamer", text, live, pipeline=text)
        return _need_gstreamer(plan, machine) if check else plan
    lowered = text.lower()
    if lowered.startswith("csi://"):
        base, query = _split_options(text)
        sensor = base[len("csi://"):]
        if not sensor.isdigit():
            raise VideoSourceError(f"{source}: expected csi://N with N the sensor-id (0, 1, ...), got {sensor!r}")
        opts = merged(query, source)
        pipeline = csi_pipeline(int(sensor), opts)
        plan = SourcePlan("csi", source, "gstreamer", pipeline, True, pipeline=pipeline, options=opts)
        return _need_gstreamer(plan, machine, elements=("nvarguscamerasrc", "nvvidconv")) if check else plan
    if re.fullmatch(r"/dev/video\d+(\?.*)?", text):
        base, query = _split_options(text)
        opts = merged(query, source)
        machine = machine or probe()
        if machine.opencv_gstreamer:
            pipeline = v4l2_pipeline(base, opts)
            return SourcePlan("v4l2", source, "gstreamer", pipeline, True, pipeline=pipeline, options=opts)
        return SourcePlan("v4l2", source, "v4l2", int(base[len("/dev/video"):]), True, options=opts,
                          note="OpenCV has no GStreamer here: V4L2 capture by OpenCV's own backend")
    if lowered.startswith(("rtsp://", "rtsps://")):
        opts = options or CaptureOptions()
        machine = machine or probe()
        if machine.nvdec:
            pipeline = rtsp_pipeline(text, opts)
            return SourcePlan("rtsp", source, "gstreamer", pipeline, True, pipeline=pipeline, options=opts)
        return SourcePlan("rtsp", source, "ffmpeg", text, True, options=opts, note=_fallback_note(machine))
    suffix = Path(text).suffix.lower()
    if suffix in DEMUXERS:
        opts = options or CaptureOptions()
        machine = machine or probe()
        if machine.nvdec:
            pipeline = file_pipeline(text, opts)
            return SourcePlan("file", source, "gstreamer", pipeline, False, pipeline=pipeline, options=opts)
        return SourcePlan("file", source, "ffmpeg", text, False, options=opts, note=_fallback_note(machine))
    return None


def _fallback_note(machine: Probe) -> str:
    if not machine.opencv_gstreamer:
        return ("FFmpeg decoding on the CPU: this OpenCV has no GStreamer (on a Jetson, use JetPack's "
                "python3-opencv, not the opencv-python wheel)")
    if not machine.elements_known:
        return "FFmpeg decoding on the CPU: gst-inspect-1.0 is missing, so nvv4l2decoder cannot be checked"
    return "FFmpeg decoding on the CPU: GStreamer has no nvv4l2decoder/nvvidconv here (not a Jetson)"


def _need_gstreamer(plan: SourcePlan, machine: Optional[Probe], elements: tuple[str, ...] = ()) -> SourcePlan:
    """A plan that only GStreamer can open: refuse it here with one line when GStreamer is absent."""
    machine = machine or probe()
    if not machine.opencv_gstreamer:
        raise VideoSourceError(
            f"{plan.source}: needs OpenCV built with GStreamer, and this cv2 has none (cv2.getBuildInformation(): "
            "GStreamer NO); on a Jetson use JetPack's OpenCV (apt python3-opencv / nvidia-opencv) and "
            "uninstall the opencv-python wheels that shadow it"
        )
    missing = [name for name in elements if name not in machine.elements]
    if missing and machine.elements_known:
        raise VideoSourceError(
            f"{plan.source}: the GStreamer element(s) {', '.join(missing)} are not installed here "
            "(they come with JetPack's nvidia-l4t-gstreamer); this source works on a Jetson only"
        )
    return plan


def open_planned(plan: SourcePlan, open_timeout: float = 10.0) -> Any:
    """``cv2.VideoCapture`` for a plan (GStreamer or V4L2 backend); raises :class:`VideoSourceError` when it
    does not open. FFmpeg plans are opened by :func:`emonext_edge.stream.open_source` as before."""
    from .opencv import import_cv2

    cv2 = import_cv2()

    if plan.api == "gstreamer":
        cap = cv2.VideoCapture(plan.target, cv2.CAP_GSTREAMER)
    elif plan.api == "v4l2":
        cap = cv2.VideoCapture(plan.target, cv2.CAP_V4L2)
        if plan.options.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, plan.options.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, plan.options.height)
        if plan.options.fps:
            cap.set(cv2.CAP_PROP_FPS, plan.options.fps)
    else:
        ms = int(open_timeout * 1000)
        cap = cv2.VideoCapture(plan.target, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    if not cap.isOpened():
        what = {"csi": "no such CSI camera, or nvargus-daemon is not running / the camera is busy",
                "v4l2": "no such V4L2 device, or it is busy or cannot give that mode",
                "rtsp": "the stream did not open (unreachable, refused, or not that codec)",
                "file": "GStreamer could not decode this file (codec option?)",
                "gstreamer": "GStreamer could not start this pipeline (run it with gst-launch-1.0 to see why)"}
        raise VideoSourceError(f"{plan.source}: {what.get(plan.kind, 'could not open')} [{plan.api}]")
    return cap


__all__ = [
    "CaptureOptions", "Probe", "SourcePlan", "csi_pipeline", "file_pipeline", "gst_element_exists",
    "is_pipeline", "open_planned", "opencv_has_gstreamer", "parse_options", "plan_source", "probe",
    "rtsp_pipeline", "v4l2_pipeline",
]
