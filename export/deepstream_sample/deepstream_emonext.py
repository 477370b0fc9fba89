#!/usr/bin/env python3
"""EmoNeXt on DeepStream: face detector -> tracker -> box rewrite -> EmoNeXt SGIE -> labels.

Written next to the nvinfer files by ``python -m export.deepstream``; runs on the device with
DeepStream's Python bindings (``pyds``, NVIDIA-AI-IOT/deepstream_python_apps) and the on-device
library ``emonext_edge`` (``pip install emonext-edge``, no torch needed)::

    python3 deepstream_emonext.py --uri file:///path/video.mp4 --pgie-config config_infer_primary_face.txt
        [--sgie-config config_infer_secondary_emonext.txt] [--sink fakesink|file|display]
        [--output emonext_out.mp4] [--encoder auto|hw|sw] [--width 1280 --height 720]

Why a Python app and not deepstream-app: nvinfer scales an object's box straight to the network
size, while EmoNeXt was trained on ``Resize + CenterCrop`` of the face (the preprocessing spec). A pad probe on the
SGIE's sink pad rewrites each face box to that centred square
(``emonext_edge.deepstream_boxes.rewrite_object_meta``) before nvinfer crops it; a probe on
its source pad puts the detector's box back for drawing and prints the labels. deepstream-app
has no hook for that (its config feeds the raw detector box: the fallback file
``deepstream_app_emonext.txt``, measured worse, see docs/deepstream.md).

Sinks: ``fakesink`` (default: headless-safe, prints labels), ``file`` (H.264 MP4),
``display`` (needs a display: nv3dsink on Jetson, nveglglessink on dGPU). Encoder for
``file``: ``auto`` picks the software x264enc on Jetson Orin Nano, which has no NVENC
(deepstream_python_apps apps/deepstream-test1-rtsp-out/README: "To run the app on Orin Nano,
you must specify the -e 1 option to use SW encoders"), and nvv4l2h264enc elsewhere.

Exit codes: 0 end of stream; 1 pipeline error; 2 bad arguments or missing files; 3 DeepStream
bindings or an element missing.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
TRACKER_LIB = "/opt/nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so"
TRACKER_CONFIG = "/opt/nvidia/deepstream/deepstream/samples/configs/deepstream-app/config_tracker_NvDCF_perf.yml"
MUXER_TIMEOUT_US = 40000
DEVICE_TREE_MODEL = "/proc/device-tree/model"


def board_model(path: str = DEVICE_TREE_MODEL) -> str:
    """The Jetson's model string (e.g. 'NVIDIA Jetson Orin Nano Developer Kit'), '' elsewhere."""
    try:
        return Path(path).read_bytes().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return ""


def choose_encoder(choice: str, model: str) -> str:
    """The H.264 encoder element: Orin Nano has no NVENC, so ``auto`` is x264enc there."""
    if choice == "hw":
        return "nvv4l2h264enc"
    if choice == "sw":
        return "x264enc"
    return "x264enc" if "orin nano" in model.lower() else "nvv4l2h264enc"


def sgie_targets(config_path: Path) -> tuple[int, int, set[int]]:
    """(SGIE gie-unique-id, operate-on-gie-id, operate-on-class-ids) read from the nvinfer config."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(config_path.read_text())
    prop = parser["property"]
    classes = {int(c) for c in prop.get("operate-on-class-ids", "0").replace(",", ";").split(";") if c.strip()}
    return int(prop.get("gie-unique-id", "2")), int(prop.get("operate-on-gie-id", "1")), classes


def sgie_crop_ratio(config_path: Path) -> float:
    """The share of a face box's shorter side the centre-square rewrite keeps: the preprocessing spec
    recorded in the SGIE's sidecar (``emonext_sgie.json`` beside its ``onnx-file``), else the trained one."""
    import json

    from emonext_edge.deepstream_boxes import TRAINING_CROP_RATIO
    from emonext_edge.preprocess import spec_of

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(config_path.read_text())
    onnx_file = parser["property"].get("onnx-file", "")
    sidecar = (config_path.parent / onnx_file).with_suffix(".json") if onnx_file else None
    if sidecar is None or not sidecar.is_file():
        return TRAINING_CROP_RATIO
    return spec_of(json.loads(sidecar.read_text()), str(sidecar)).crop_ratio


def _walk(first: Any, cast: Any) -> Any:
    """Iterate a pyds GList of metadata (``l.data`` cast with ``cast``; ``StopIteration`` ends it)."""
    node = first
    while node is not None:
        try:
            yield cast(node.data)
        except StopIteration:
            return
        try:
            node = node.next
        except StopIteration:
            return


class BoxRewriter:
    """The two pad probes around the SGIE: rewrite face boxes before it, restore them after it."""

    def __init__(self, pyds: Any, width: int, height: int, detector_id: int, classes: set[int], sgie_id: int,
                 rewrite: Any, say: Any = print) -> None:
        self.pyds, self.width, self.height = pyds, width, height
        self.detector_id, self.classes, self.sgie_id = detector_id, classes, sgie_id
        self.rewrite, self.say = rewrite, say
        self.saved: dict[tuple[int, int, int], tuple[float, float, float, float]] = {}

    def _objects(self, batch_meta: Any) -> Any:
        pyds = self.pyds
        for frame in _walk(batch_meta.frame_meta_list, pyds.NvDsFrameMeta.cast):
            for obj in _walk(frame.obj_meta_list, pyds.NvDsObjectMeta.cast):
                if obj.unique_component_id == self.detector_id and obj.class_id in self.classes:
                    yield frame, obj

    def before_sgie(self, batch_meta: Any) -> int:
        """Rewrite every face box to the training crop; returns how many were rewritten."""
        count = 0
        for frame, obj in self._objects(batch_meta):
            r = obj.rect_params
            key = (frame.pad_index, frame.frame_num, obj.object_id)
            original = (r.left, r.top, r.width, r.height)
            if self.rewrite(obj, self.width, self.height):
                self.saved[key] = original
                count += 1
        return count

    def after_sgie(self, batch_meta: Any) -> list[tuple[int, int, str, float]]:
        """Put the detector's boxes back (for drawing); returns (frame, object id, label, probability)."""
        pyds, out = self.pyds, []
        for frame, obj in self._objects(batch_meta):
            key = (frame.pad_index, frame.frame_num, obj.object_id)
            if key in self.saved:
                r = obj.rect_params
                r.left, r.top, r.width, r.height = self.saved.pop(key)
            for cls in _walk(obj.classifier_meta_list, pyds.NvDsClassifierMeta.cast):
                if cls.unique_component_id != self.sgie_id:
                    continue
                for info in _walk(cls.label_info_list, pyds.NvDsLabelInfo.cast):
                    out.append((frame.frame_num, obj.object_id, info.result_label, float(info.result_prob)))
        return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="EmoNeXt DeepStream pipeline (face detector, tracker, box rewrite, SGIE)")
    p.add_argument("--uri", required=True, help="file:///... or rtsp://... source")
    p.add_argument("--pgie-config", required=True, help="your face detector's nvinfer config")
    p.add_argument("--sgie-config", default=str(HERE / "config_infer_secondary_emonext.txt"))
    p.add_argument("--tracker-lib", default=TRACKER_LIB)
    p.add_argument("--tracker-config", default=TRACKER_CONFIG)
    p.add_argument("--width", type=int, default=1280, help="nvstreammux width (object boxes are in this frame)")
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--sink", choices=("fakesink", "file", "display"), default="fakesink")
    p.add_argument("--output", default="emonext_out.mp4", help="--sink file: the MP4 written")
    p.add_argument("--encoder", choices=("auto", "hw", "sw"), default="auto",
                   help="--sink file: auto = x264enc on Orin Nano (no NVENC), nvv4l2h264enc elsewhere")
    p.add_argument("--strategy", default="center_square", help="box rewrite (emonext_edge.deepstream_boxes.STRATEGIES)")
    p.add_argument("--quiet", action="store_true", help="do not print a line per label")
    return p


def _make(gst: Any, factory: str, name: str) -> Any:
    element = gst.ElementFactory.make(factory, name)
    if element is None:
        raise LookupError(f"GStreamer element {factory!r} is not available (is DeepStream installed?)")
    return element


def _sink_chain(gst: Any, args: argparse.Namespace, pipeline: Any, model: str) -> Any:
    """The elements after the SGIE; returns the first one."""
    if args.sink == "fakesink":
        sink = _make(gst, "fakesink", "sink")
        sink.set_property("sync", False)
        pipeline.add(sink)
        return sink
    convert = _make(gst, "nvvideoconvert", "convert-osd")
    osd = _make(gst, "nvdsosd", "osd")
    chain = [convert, osd]
    if args.sink == "display":
        chain.append(_make(gst, "nv3dsink" if model else "nveglglessink", "sink"))
    else:
        encoder_name = choose_encoder(args.encoder, model)
        post = _make(gst, "nvvideoconvert", "convert-enc")
        caps = _make(gst, "capsfilter", "enc-caps")
        memory = "(memory:NVMM)" if encoder_name == "nvv4l2h264enc" else ""  # x264enc takes system memory
        caps.set_property("caps", gst.Caps.from_string(f"video/x-raw{memory}, format=I420"))
        encoder = _make(gst, encoder_name, "encoder")
        sink = _make(gst, "filesink", "sink")
        sink.set_property("location", args.output)
        chain += [post, caps, encoder, _make(gst, "h264parse", "parse"), _make(gst, "qtmux", "mux"), sink]
    for element in chain:
        pipeline.add(element)
    for a, b in zip(chain, chain[1:]):
        if not a.link(b):
            raise LookupError(f"cannot link {a.get_name()} -> {b.get_name()}")
    return chain[0]


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, path in (("--pgie-config", args.pgie_config), ("--sgie-config", args.sgie_config)):
        if not Path(path).is_file():
            print(f"error: {flag} {path}: no such file", file=sys.stderr)
            return 2
    try:
        import gi

        gi.require_version("Gst", "1.0")
        import pyds
        from gi.repository import GLib, Gst

        from emonext_edge.deepstream_boxes import STRATEGIES, rewrite_object_meta
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}: run this on a DeepStream install with pyds (deepstream_python_apps) and "
              "emonext_edge (pip install emonext-edge)", file=sys.stderr)
        return 3
    if args.strategy not in STRATEGIES:
        print(f"error: --strategy {args.strategy}: expected one of {', '.join(STRATEGIES)}", file=sys.stderr)
        return 2
    sgie_id, detector_id, classes = sgie_targets(Path(args.sgie_config))
    crop_ratio = sgie_crop_ratio(Path(args.sgie_config))  # the spec the SGIE's network was built for
    model = board_model()
    Gst.init(None)
    pipeline = Gst.Pipeline()
    try:
        source = _make(Gst, "nvurisrcbin", "source") if Gst.ElementFactory.find("nvurisrcbin") else \
            _make(Gst, "uridecodebin", "source")
        mux = _make(Gst, "nvstreammux", "mux")
        pgie = _make(Gst, "nvinfer", "face-detector")
        tracker = _make(Gst, "nvtracker", "tracker")
        sgie = _make(Gst, "nvinfer", "emonext")
        for element in (source, mux, pgie, tracker, sgie):
            pipeline.add(element)
        first_sink = _sink_chain(Gst, args, pipeline, model)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    source.set_property("uri", args.uri)
    for key, value in (("width", args.width), ("height", args.height), ("batch-size", 1),
                       ("batched-push-timeout", MUXER_TIMEOUT_US), ("live-source", int(args.uri.startswith("rtsp")))):
        mux.set_property(key, value)
    pgie.set_property("config-file-path", args.pgie_config)
    sgie.set_property("config-file-path", args.sgie_config)
    tracker.set_property("ll-lib-file", args.tracker_lib)
    tracker.set_property("ll-config-file", args.tracker_config)
    mux_pad = mux.request_pad_simple("sink_0") if hasattr(mux, "request_pad_simple") else mux.get_request_pad("sink_0")

    def on_pad(_src: Any, pad: Any) -> None:
        if pad.query_caps(None).to_string().startswith("video") and not mux_pad.is_linked():
            pad.link(mux_pad)

    source.connect("pad-added", on_pad)
    for a, b in ((mux, pgie), (pgie, tracker), (tracker, sgie), (sgie, first_sink)):
        if not a.link(b):
            print(f"error: cannot link {a.get_name()} -> {b.get_name()}", file=sys.stderr)
            return 3

    def rewrite(obj: Any, width: int, height: int) -> bool:
        return rewrite_object_meta(obj, width, height, args.strategy, crop_ratio)

    boxes = BoxRewriter(pyds, args.width, args.height, detector_id, classes, sgie_id, rewrite)

    def before(_pad: Any, info: Any) -> Any:
        buffer = info.get_buffer()
        if buffer:
            boxes.before_sgie(pyds.gst_buffer_get_nvds_batch_meta(hash(buffer)))
        return Gst.PadProbeReturn.OK

    def after(_pad: Any, info: Any) -> Any:
        buffer = info.get_buffer()
        if buffer:
            for frame, obj_id, label, prob in boxes.after_sgie(pyds.gst_buffer_get_nvds_batch_meta(hash(buffer))):
                if not args.quiet:
                    print(f"frame {frame} face {obj_id}: {label} {prob:.2f}", flush=True)
        return Gst.PadProbeReturn.OK

    sgie.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, before)
    sgie.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, after)

    loop = GLib.MainLoop()
    status = {"code": 0}

    def on_message(_bus: Any, message: Any) -> bool:
        if message.type == Gst.MessageType.EOS:
            loop.quit()
        elif message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            print(f"error: {err.message} ({debug})", file=sys.stderr)
            status["code"] = 1
            loop.quit()
        return True

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    print(f"board: {model or 'dGPU / unknown'}; sink: {args.sink}"
          + (f" ({choose_encoder(args.encoder, model)})" if args.sink == "file" else ""), flush=True)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
