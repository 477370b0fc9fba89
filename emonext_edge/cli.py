"""Command line: ``python -m emonext_edge predict|video ...`` (also the ``emonext-edge`` script).

    python -m emonext_edge predict MODEL IMAGE... [--faces] [--json]
    python -m emonext_edge video MODEL SOURCE [--out annotated.mp4] [--json frames.jsonl] [--detect-every N] ...

Bad input ends with one line ``error: ...`` on stderr and exit code 2 (``--threads`` outside
1..4 x CPUs included, before anything is loaded). Output: a closed stdout (``| head -1``)
ends quietly with exit 141 (the shell's code for a SIGPIPE death, as for every CLI of the project); an unwritable one (``> /dev/full``, disk full)
ends with ``error: cannot write the results to stdout: ...`` and exit 4 (:data:`EXIT_OUTPUT`).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, Optional

from .cli_support import EXIT_BROKEN_PIPE, cli_entry, quiet_stdout
from .environment import EXIT_ENVIRONMENT
from .video_cli import add_video_arguments, run_video

log = logging.getLogger("emonext_edge.cli")

#: exit code when the results cannot be written to stdout (full disk, /dev/full, I/O error)
EXIT_OUTPUT = EXIT_ENVIRONMENT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emonext_edge", description="Classify facial emotions with an EmoNeXt artifact.")
    sub = parser.add_subparsers(dest="command", required=True)

    def runtime_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help="artifact: .onnx, .xml (+.bin), .engine/.plan, or a .pt checkpoint")
        p.add_argument("--backend", default="auto", help="auto (by suffix), onnxruntime, openvino, tensorrt, torch")
        p.add_argument("--device", default=None, help="backend device, e.g. CPU, GPU, NPU, AUTO, cuda")
        p.add_argument("--precision", default=None, help="e.g. f32 / f16 / bf16 for OpenVINO (default f32)")
        p.add_argument("--threads", type=int, default=None, help="inference threads (1 to 4 x the CPUs)")
        p.add_argument("--detector", default=None,
                       help="face detector: yunet (the bundled default), haar, or a YuNet .onnx / cascade .xml file")
        p.add_argument("--no-verify", dest="verify", action="store_false",
                       help="skip the SHA-256 check of the artifact's files against its sidecar (artifact_sha256)")
        p.add_argument("--strict-verify", dest="verify", action="store_const", const="strict",
                       help="refuse an artifact whose files, labels and preprocessing are not all covered by "
                            "recorded hashes (default: load it with a warning)")

    predict = sub.add_parser("predict", help="classify image files")
    runtime_args(predict)
    predict.add_argument("images", nargs="+", help="image files (face crops, or full frames with --faces)")
    predict.add_argument("--faces", action="store_true", help="detect faces in each image and classify each one")
    predict.add_argument("--whole-image", action="store_true",
                         help="classify each image as it is (by default a photo is searched for a face: one face "
                              "is cropped, several faces are refused with advice to use --faces)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")

    video = sub.add_parser("video", help="faces in a video file, webcam or stream URL: tracked, smoothed, annotated")
    runtime_args(video)
    add_video_arguments(video)  # emonext_edge/video_cli.py
    return parser


def _runtime(args: argparse.Namespace) -> Any:
    from .runtime import Runtime, check_threads

    check_threads(args.threads, "--threads")
    return Runtime(args.model, backend=args.backend, device=args.device, precision=args.precision, threads=args.threads,
                   verify=getattr(args, "verify", True))


def _predict(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    with _runtime(args) as rt:
        for image in args.images:
            if args.faces:
                faces = rt.predict_faces(image, detector=args.detector)
                results.append({"image": image, "faces": [f.to_dict() for f in faces]})
            else:
                results.append({"image": image, **rt.predict(image, detector=args.detector,
                                                              whole_image=args.whole_image).to_dict()})
        info = rt.info
    if args.json:
        for r in results:  # logits are for programs; keep the JSON readable but complete
            for item in r.get("faces", [r]):
                item["logits"] = [round(v, 6) for v in item["logits"]]
        return _emit(json.dumps({"model": args.model, "backend": info, "results": results}, indent=2, default=str))
    rows = []
    for r in results:
        for i, item in enumerate(r["faces"]) if args.faces else [(None, r)]:
            where = r["image"] if i is None else f"{r['image']} face {i} {tuple(item['box'])}"
            rows.append((where, item["label"], f"{item['score']:.3f}"))
        if args.faces and not r["faces"]:
            rows.append((r["image"], "(no face)", ""))
    width = max(len("image"), *(len(w) for w, _, _ in rows))
    lines = [f"{'image':<{width}}  {'label':<10}  score"]
    lines += [f"{where:<{width}}  {label:<10}  {score}" for where, label, score in rows]
    return _emit("\n".join(lines))


def _emit(text: str) -> int:
    """Write ``text`` and a newline to stdout and flush: 0, or :data:`EXIT_BROKEN_PIPE` quietly when the
    reader has gone (EPIPE), or :data:`EXIT_OUTPUT` with one ``error:`` line when stdout cannot be written."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        quiet_stdout()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " (disk or device full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        print(f"error: cannot write the results to stdout: {reason}{hint}", file=sys.stderr)
        return EXIT_OUTPUT
    return 0




def _video(args: argparse.Namespace) -> int:
    return run_video(args, _runtime)  # emonext_edge/video_cli.py


@cli_entry(log_level="WARNING", catch_value_error=True)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return _predict(args) if args.command == "predict" else _video(args)


__all__ = ["main"]
