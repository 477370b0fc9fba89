"""Command line: ``python -m emonext_edge predict|video ...`` (also the ``emonext-edge`` script).

    python -m emonext_edge predict MODEL IMAGE... [--faces] [--json]
    python -m emonext_edge video MODEL SOURCE [--out annotated.mp4] [--max-frames N]

Bad input ends with one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from .cli_support import cli_entry
from .errors import UsageError

log = logging.getLogger("emonext_edge.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emonext_edge", description="Classify facial emotions with an EmoNeXt artifact.")
    sub = parser.add_subparsers(dest="command", required=True)

    def runtime_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help="artifact: .onnx, .xml (+.bin), .engine/.plan, or a .pt checkpoint")
        p.add_argument("--backend", default="auto", help="auto (by suffix), onnxruntime, openvino, tensorrt, torch")
        p.add_argument("--device", default=None, help="backend device, e.g. CPU, GPU, NPU, AUTO, cuda")
        p.add_argument("--precision", default=None, help="e.g. f32 / f16 / bf16 for OpenVINO (default f32)")
        p.add_argument("--threads", type=int, default=None, help="inference threads")
        p.add_argument("--detector", default=None, help="face detector file: YuNet .onnx or cascade .xml")

    predict = sub.add_parser("predict", help="classify image files")
    runtime_args(predict)
    predict.add_argument("images", nargs="+", help="image files (face crops, or full frames with --faces)")
    predict.add_argument("--faces", action="store_true", help="detect faces in each image and classify each one")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")

    video = sub.add_parser("video", help="classify faces in a webcam stream or video file")
    runtime_args(video)
    video.add_argument("source", help="webcam index (0, 1, ...) or a video file")
    video.add_argument("--out", default=None, help="write the annotated video here (.mp4/.avi); needed without a GUI")
    video.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    return parser


def _runtime(args: argparse.Namespace) -> Any:
    from .runtime import Runtime

    return Runtime(args.model, backend=args.backend, device=args.device, precision=args.precision, threads=args.threads)


def _predict(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    with _runtime(args) as rt:
        for image in args.images:
            if args.faces:
                faces = rt.predict(image, detect_faces=True, detector=args.detector)
                results.append({"image": image, "faces": [f.to_dict() for f in faces]})
            else:
                results.append({"image": image, **rt.predict(image).to_dict()})
        info = rt.info
    if args.json:
        for r in results:  # logits are for programs; keep the JSON readable but complete
            for item in r.get("faces", [r]):
                item["logits"] = [round(v, 6) for v in item["logits"]]
        print(json.dumps({"model": args.model, "backend": info, "results": results}, indent=2, default=str))
        return 0
    rows = []
    for r in results:
        for i, item in enumerate(r["faces"]) if args.faces else [(None, r)]:
            where = r["image"] if i is None else f"{r['image']} face {i} {tuple(item['box'])}"
            rows.append((where, item["label"], f"{item['score']:.3f}"))
        if args.faces and not r["faces"]:
            rows.append((r["image"], "(no face)", ""))
    width = max(len("image"), *(len(w) for w, _, _ in rows))
    print(f"{'image':<{width}}  {'label':<10}  score")
    for where, label, score in rows:
        print(f"{where:<{width}}  {label:<10}  {score}")
    return 0


def _quiet_opencv() -> None:
    """Keep OpenCV's own WARN lines (e.g. a missing camera) off stderr; our error line says it."""
    import cv2

    utils_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if utils_logging is not None:
        utils_logging.setLogLevel(utils_logging.LOG_LEVEL_ERROR)


def _open_capture(source: str) -> Any:
    import cv2

    _quiet_opencv()
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
        what = f"webcam {source}"
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such video file")
        cap = cv2.VideoCapture(source)
        what = source
    if not cap.isOpened():
        raise UsageError(f"{what}: OpenCV could not open this video source")
    return cap, what


def _check_gui() -> None:
    import cv2

    try:
        cv2.namedWindow("emonext", cv2.WINDOW_AUTOSIZE)
    except (cv2.error, AttributeError):
        raise UsageError(
            "this OpenCV build has no GUI support (opencv-python-headless), so no window can be shown; "
            "pass --out annotated.mp4 to write the annotated video instead"
        ) from None


def _annotate(frame: Any, faces: list, fps: float) -> None:
    import cv2

    for face in faces:
        x, y, w, h = face.box
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        text = f"{face.prediction.label} {face.prediction.score:.2f}"
        cv2.putText(frame, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
    cv2.putText(frame, f"{fps:.1f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)


def _video(args: argparse.Namespace) -> int:
    import cv2

    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be >= 1, got {args.max_frames}")
    out_path = Path(args.out) if args.out else None
    if out_path is not None:
        if out_path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
            raise UsageError(f"{out_path}: --out needs a video suffix (.mp4, .avi, .mkv, .mov)")
        if not out_path.resolve().parent.is_dir():
            raise FileNotFoundError(f"{out_path}: output directory {out_path.resolve().parent} does not exist")
    else:
        _check_gui()
    cap, what = _open_capture(args.source)
    writer = None
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}") if out_path else None
    frames = faces_total = 0
    started = time.perf_counter()
    try:
        with _runtime(args) as rt:
            while args.max_frames is None or frames < args.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                tick = time.perf_counter()
                faces = rt.predict(frame, detect_faces=True, detector=args.detector)
                fps = 1.0 / max(time.perf_counter() - tick, 1e-6)
                _annotate(frame, faces, fps)
                frames += 1
                faces_total += len(faces)
                if tmp is not None:
                    if writer is None:
                        rate = cap.get(cv2.CAP_PROP_FPS) or 25.0
                        h, w = frame.shape[:2]
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), rate, (w, h))
                        if not writer.isOpened():
                            raise UsageError(f"{out_path}: OpenCV cannot write this video format")
                    writer.write(frame)
                else:
                    cv2.imshow("emonext", frame)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
        if frames == 0:
            raise UsageError(f"{what}: no frames could be read")
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp, out_path)  # type: ignore[arg-type]
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    elapsed = time.perf_counter() - started
    print(f"{frames} frames, {faces_total} faces, {frames / max(elapsed, 1e-6):.1f} FPS overall"
          + (f"; wrote {out_path}" if out_path else ""))
    return 0


@cli_entry(log_level="WARNING", catch_value_error=True)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return _predict(args) if args.command == "predict" else _video(args)


__all__ = ["main"]
