"""Helper of ``scripts/aarch64-check.sh``: the x86 reference, then the same checks on aarch64.

    python scripts/aarch64_check.py reference --tarball FER.tar.gz --faces N --data DIR   # x86, repo importable
    python scripts/aarch64_check.py device --data DIR [--predict-cli]                    # inside the arm64 root

``reference`` extracts N real FER2013 val faces (round robin over the classes, the first files in
name order), composes a frame with three faces and a short MJPG video of it, and writes what this
machine's ``emonext_edge.Runtime`` says about them (logits per artifact, boxes, stream results)
to ``DIR/x86.json``. ``device`` computes the same there and compares: exits 0 when everything
agrees within the tolerances below, 1 otherwise; its findings go to ``DIR/device.json``.

Only ``emonext_edge``, numpy and OpenCV are imported (no torch, no export tools): this file runs
on the device side exactly like a user's program would. Python 3.8 compatible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: max |logit(aarch64) - logit(x86)| accepted for the FP32 artifacts. ONNX Runtime's and OpenVINO's
#: ARM kernels (NEON/ACL) sum in another order than the x86 ones (AVX2/AVX-512): differences of
#: 1e-5..1e-4 are float32 rounding; 1e-3 leaves room and still catches any real divergence
#: (a wrong layout, a different sampler or FP16 execution moves logits by 1e-2 and more).
LOGIT_ATOL = 1e-3
#: max |Δprob| accepted for the per-track probabilities of the stream (decoded by each side's FFmpeg)
STREAM_PROB_ATOL = 1e-3
ARTIFACTS = {"onnx": "emonext.onnx", "openvino_ir": "ir/emonext.xml"}
FRAME_FACES = ((150, 60, 60), (130, 250, 90), (140, 430, 70))  # (size, x, y) of the 3 faces on the frame
VIDEO_FRAMES = 8


# -- x86 --------------------------------------------------------------------------------------------
def _pick_faces(tarball: Path, count: int, out: Path) -> list[dict[str, Any]]:
    from emonext_edge.labels import IMAGEFOLDER_LABELS

    with tarfile.open(tarball) as tar:
        names = sorted(n for n in tar.getnames() if "/val/" in n and n.endswith(".jpg"))
    by_class = {label: [n for n in names if f"/val/{label}/" in n] for label in IMAGEFOLDER_LABELS}
    chosen: list[tuple] = []
    rank = 0
    while len(chosen) < count:
        for label in IMAGEFOLDER_LABELS:
            if len(chosen) < count and rank < len(by_class[label]):
                chosen.append((label, by_class[label][rank]))
        rank += 1
        if rank > max(len(v) for v in by_class.values()):
            break
    happy = by_class["Happy"][:3]
    wanted = {name for _, name in chosen} | set(happy)
    out.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, bytes] = {}
    with tarfile.open(tarball) as tar:
        for member in tar:
            if member.name in wanted:
                blobs[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    faces = []
    for i, (label, name) in enumerate(chosen):
        path = out / f"{i:02d}_{label}.jpg"
        path.write_bytes(blobs[name])
        faces.append({"file": f"faces/{path.name}", "source": name, "label": label})
    for i, name in enumerate(happy):
        (out / f"frame_face_{i}.jpg").write_bytes(blobs[name])
    return faces


def _compose_frame(faces_dir: Path) -> np.ndarray:
    import cv2

    frame = np.full((300, 640, 3), 128, np.uint8)
    for i, (size, x, y) in enumerate(FRAME_FACES):
        face = cv2.imread(str(faces_dir / f"frame_face_{i}.jpg"), cv2.IMREAD_GRAYSCALE)
        frame[y : y + size, x : x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)[:, :, None]
    return frame


def _write_video(frame: np.ndarray, path: Path) -> None:
    import cv2

    h, w = frame.shape[:2]
    # lossless (FFV1): both sides decode the same pixels, so any difference is the device's compute.
    # (With MJPG, FFmpeg's x86 and NEON IDCTs give slightly different pixels and probabilities moved by ~0.07.)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"FFV1"), 10.0, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write FFV1 video here")
    for i in range(VIDEO_FRAMES):  # the faces drift 3 px right per frame
        writer.write(np.ascontiguousarray(np.roll(frame, 3 * i, axis=1)))
    writer.release()


# -- both sides -------------------------------------------------------------------------------------
def _observe(data: Path, faces: list[dict[str, Any]]) -> dict[str, Any]:
    """What this machine's Runtime says about the faces, the frame and the video."""
    import cv2

    from emonext_edge import Runtime
    from emonext_edge.faces import detect_faces

    seen: dict[str, Any] = {"artifacts": {}}
    paths = [str(data / f["file"]) for f in faces]
    frame = cv2.imread(str(data / "frame.png"))
    for kind, rel in ARTIFACTS.items():
        t0 = time.perf_counter()
        with Runtime(data / rel) as rt:
            loaded = time.perf_counter()
            preds = [rt.predict(p) for p in paths]  # one image per call, as on a device
            done = time.perf_counter()
            info = {k: v for k, v in rt.info.items() if isinstance(v, (str, int, float, bool, type(None)))}
            seen["artifacts"][kind] = {
                "logits": [p.logits.tolist() for p in preds],
                "labels": [p.label for p in preds],
                "info": info,
                "load_s": round(loaded - t0, 3),
                "s_per_image": round((done - loaded) / len(paths), 3),
            }
            if kind == "onnx":
                t0 = time.perf_counter()
                boxes = detect_faces(frame)
                seen["detect_s"] = round(time.perf_counter() - t0, 3)
                seen["boxes"] = [list(map(int, b)) for b in boxes]
                t0 = time.perf_counter()
                stream = []
                with rt.stream(str(data / "clip.mkv"), detect_every=4, smoothing=None) as frames:
                    for result in frames:
                        stream.append({"frame": result.index, "detected": result.detected,
                                       "pixels": hashlib.sha256(result.frame.tobytes()).hexdigest()[:16],
                                       "faces": [{"track": f.id, "box": list(f.box), "label": f.label,
                                                  "probs": f.probs} for f in result.faces]})
                seen["stream"] = stream
                seen["stream_s"] = round(time.perf_counter() - t0, 3)
    return seen


def _environment() -> dict[str, Any]:
    import cv2

    env = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
           "opencv": cv2.__version__}
    for name in ("onnxruntime", "openvino"):
        try:
            env[name] = __import__(name).__version__
        except ImportError as exc:
            env[name] = f"missing ({exc})"
    return env


def cmd_reference(args: argparse.Namespace) -> int:
    import cv2

    data = Path(args.data)
    faces = _pick_faces(Path(args.tarball), args.faces, data / "faces")
    frame = _compose_frame(data / "faces")
    cv2.imwrite(str(data / "frame.png"), frame)
    _write_video(frame, data / "clip.mkv")
    seen = _observe(data, faces)
    if len(seen["boxes"]) != len(FRAME_FACES):
        print(f"x86 reference: {len(seen['boxes'])} faces detected on the composed frame, expected "
              f"{len(FRAME_FACES)}; the check needs a frame x86 gets right", file=sys.stderr)
        return 1
    record = {"faces": faces, "env": _environment(), **seen}
    (data / "x86.json").write_text(json.dumps(record, indent=1))
    print(f"x86 reference: {len(faces)} faces, {len(seen['boxes'])} boxes, {len(seen['stream'])} video frames "
          f"({record['env']})", file=sys.stderr)
    return 0


# -- aarch64 ----------------------------------------------------------------------------------------
def _iou(a: list[int], b: list[int]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def _compare(ref: dict[str, Any], dev: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for kind in ARTIFACTS:
        r, d = np.array(ref["artifacts"][kind]["logits"]), np.array(dev["artifacts"][kind]["logits"])
        delta = float(np.abs(r - d).max())
        agree = float((r.argmax(1) == d.argmax(1)).mean())
        checks[kind] = {"max_abs_dlogit": delta, "top1_agreement": agree, "faces": len(r),
                        "ok": delta <= LOGIT_ATOL and agree == 1.0}
    rb, db = ref["boxes"], dev["boxes"]
    ious = [_iou(a, b) for a, b in zip(rb, db)]
    checks["detection"] = {"x86_boxes": rb, "aarch64_boxes": db, "min_iou": min(ious) if ious else None,
                           "ok": len(rb) == len(db) and all(v >= 0.9 for v in ious)}
    rs, ds = ref["stream"], dev["stream"]
    same_shape = [len(a["faces"]) for a in rs] == [len(b["faces"]) for b in ds] and len(rs) == len(ds)
    dprob, labels_equal, boxes_equal = 0.0, same_shape, same_shape
    if same_shape:
        for a, b in zip(rs, ds):
            for fa, fb in zip(a["faces"], b["faces"]):
                labels_equal &= fa["label"] == fb["label"]
                boxes_equal &= fa["box"] == fb["box"]
                dprob = max(dprob, max(abs(fa["probs"][k] - fb["probs"][k]) for k in fa["probs"]))
    decoded_equal = [a.get("pixels") for a in rs] == [b.get("pixels") for b in ds]
    checks["stream"] = {"frames": [len(rs), len(ds)], "faces": sum(len(a["faces"]) for a in ds),
                        "decoded_frames_equal": decoded_equal, "labels_equal": labels_equal,
                        "boxes_equal": boxes_equal, "max_abs_dprob": dprob,
                        "ok": same_shape and decoded_equal and labels_equal and boxes_equal and dprob <= STREAM_PROB_ATOL}
    return checks


def _predict_cli(data: Path, ref: dict[str, Any]) -> dict[str, Any]:
    files = [str(data / f["file"]) for f in ref["faces"][:2]]
    cmd = [sys.executable, "-m", "emonext_edge", "predict", str(data / ARTIFACTS["onnx"]), *files, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        return {"ok": False, "rc": proc.returncode, "stderr": proc.stderr.strip().splitlines()[-1:], "s": wall}
    out = json.loads(proc.stdout)
    rows = out if isinstance(out, list) else out.get("results", [])
    labels = [row.get("label") for row in rows]
    expected = ref["artifacts"]["onnx"]["labels"][:2]
    delta = float(np.abs(np.array([row["logits"] for row in rows]) - np.array(ref["artifacts"]["onnx"]["logits"][:2])).max())
    return {"ok": labels == expected and delta <= LOGIT_ATOL, "rc": 0, "labels": labels, "x86_labels": expected,
            "max_abs_dlogit": delta, "s": wall,
            "command": "python -m emonext_edge predict emonext.onnx <2 faces> --json"}


def cmd_device(args: argparse.Namespace) -> int:
    data = Path(args.data)
    ref = json.loads((data / "x86.json").read_text())
    env = _environment()
    print(f"aarch64 device: {env}", file=sys.stderr)
    t0 = time.perf_counter()
    dev = _observe(data, ref["faces"])
    checks = _compare(ref, dev)
    if args.predict_cli:
        checks["predict_cli"] = _predict_cli(data, ref)
    ok = all(c["ok"] for c in checks.values())
    record = {"ok": ok, "env": env, "x86_env": ref["env"], "logit_atol": LOGIT_ATOL,
              "stream_prob_atol": STREAM_PROB_ATOL, "checks": checks, "wall_s": round(time.perf_counter() - t0, 1),
              "timings": {kind: {k: dev["artifacts"][kind][k] for k in ("load_s", "s_per_image")}
                          for kind in ARTIFACTS},
              "detect_s": dev["detect_s"], "stream_s": dev["stream_s"],
              "runtime_info": {kind: dev["artifacts"][kind]["info"] for kind in ARTIFACTS}}
    (data / "device.json").write_text(json.dumps(record, indent=1))
    for name, c in checks.items():
        detail = {k: v for k, v in c.items() if k not in ("x86_boxes", "aarch64_boxes")}
        print(f"{'PASS' if c['ok'] else 'FAIL'} {name}: {json.dumps(detail)}")
    print(f"{'PASS' if ok else 'FAIL'} aarch64 ({env['machine']}, Python {env['python']}) vs x86: "
          f"{record['wall_s']} s under emulation")
    return 0 if ok else 1


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference")
    ref.add_argument("--tarball", required=True)
    ref.add_argument("--faces", type=int, default=8)
    ref.add_argument("--data", required=True)
    dev = sub.add_parser("device")
    dev.add_argument("--data", required=True)
    dev.add_argument("--predict-cli", action="store_true")
    args = parser.parse_args(argv)
    return cmd_reference(args) if args.command == "reference" else cmd_device(args)


if __name__ == "__main__":
    sys.exit(main())
