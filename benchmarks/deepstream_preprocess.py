"""What DeepStream's nvinfer feeds EmoNeXt as a secondary classifier, and what it costs.

    python benchmarks/deepstream_preprocess.py --data FER2013 --checkpoint ../shared/models/emonext_atto_fer2013.pt
        [--num 1000] [--seed 0] [--json out.json] [--markdown out.md]

Each FER2013 val face (48x48) is enlarged to a random size (shorter box side 40-400 px,
log-uniform; about a third of the faces end up larger than the spec's resize size, where
resizing to the spec's crop size shrinks them) and placed into a larger frame at a random sub-pixel position, inside a face
box 1.0-1.3x taller than wide (detectors' boxes are taller than the face is wide). The box
is known exactly. For each box:

* reference: training-identical preprocessing of the box crop, ``emonext_edge.preprocess``
  (PIL-exact grayscale, the spec's Resize with PIL's antialiased bilinear, CenterCrop, scale);
* candidates: what nvinfer computes (DeepStream 6.2 ``gstnvinfer.cpp``): optional box
  rewrite (``emonext_edge.deepstream_boxes.rewrite_box``), then nvinfer's rounding (left/top
  up, width/height down to even pixels, objects under 16 px skipped:
  ``deepstream_boxes.nvinfer_crop``), the rectangle scaled *straight* to the network size into a uint8
  surface, then ``net-scale-factor * x``. The scaler is simulated with OpenCV on the CPU:
  ``cv2.INTER_LINEAR`` (bilinear, no antialiasing) is the closest CPU analogue of NPP/VIC
  bilinear (``scaling-filter=1``), ``cv2.INTER_NEAREST`` of the default ``scaling-filter=0``,
  ``cv2.INTER_AREA`` of an area-like downscale (``scaling-filter=3``, "GPU-Super" with
  ``scaling-compute-hw=1``; used only where the crop is shrunk, bilinear where it is enlarged). None of these match the device bit for bit; the device was not
  available here.

Reported per candidate: top-1 agreement with the reference, accuracy, mean |Δprob| and mean
|Δpixel| (0-255) of the network input, overall and for boxes enlarged vs shrunk by the resize.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emonext_edge.argtypes import check_args, positive_int
from emonext_edge.deepstream_boxes import nvinfer_crop, nvinfer_scale_offset, rewrite_box
from emonext_edge.preprocess import SPEC
from emonext_edge.scores import softmax

NET_SCALE_FACTOR = np.float32(nvinfer_scale_offset()[0])  # the spec's scale, as export.deepstream writes it
RATIO = f"{SPEC.crop_size}/{SPEC.resize_shorter}"  # the spec's crop / resize, in candidate names


@dataclass(frozen=True)
class Candidate:
    name: str
    strategy: str  # deepstream_boxes strategy
    interpolation: str  # linear | nearest | area | area_down (area only when shrinking)
    gray_source: str = "luma"  # luma: RGB frame, luma in graph (R=G=B here); limited_y: GRAY8 = limited-range Y
    note: str = ""
    offset: float = 0.0  # nvinfer offsets
    scale: float = float(NET_SCALE_FACTOR)  # nvinfer net-scale-factor


CANDIDATES = (
    Candidate("raw box, bilinear", "raw", "linear", note="scaling-filter=1, no rewrite (deepstream-app as is)"),
    Candidate("raw box, nearest (nvinfer default)", "raw", "nearest", note="scaling-filter=0"),
    Candidate(f"centre square {RATIO}, bilinear", "center_square", "linear", note="the shipped default"),
    Candidate(f"centre square {RATIO}, area when shrinking", "center_square", "area_down",
              note="scaling-filter=3 (GPU-Super) with scaling-compute-hw=1; bilinear when enlarging (assumed)"),
    Candidate(f"centre square {RATIO}, nearest", "center_square", "nearest", note="scaling-filter=0"),
    Candidate("centre square full side, bilinear", "center_square_full", "linear", note=f"no {RATIO} margin"),
    Candidate(f"centre square {RATIO}, bilinear, GRAY8 = limited-range Y", "center_square", "linear", "limited_y",
              note="--gray on an NV12 stream if GRAY8 is taken from limited-range luma"),
    Candidate(f"centre square {RATIO}, bilinear, limited-range Y, offsets=16, net-scale-factor=1/219", "center_square",
              "linear", "limited_y", note="the same, compensated in the config", offset=16.0, scale=1.0 / 219.0),
)


@dataclass
class Scene:
    frame: np.ndarray  # uint8 gray frame
    box: tuple[float, float, float, float]  # left, top, width, height (float, as a detector gives)
    label: int
    shrunk: bool  # True when the spec's Resize shrinks the box (shorter side > SPEC.resize_shorter)


def make_scene(face: np.ndarray, label: int, rng: np.random.Generator) -> Scene:
    """Place ``face`` (uint8 gray) enlarged to a random size into a frame, inside a known box."""
    import cv2

    side = float(math.exp(rng.uniform(math.log(40), math.log(400))))
    taller = rng.uniform(1.0, 1.3)
    size = max(8, round(side))
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    margin = int(0.5 * size) + 8
    fh, fw = size + 2 * margin + int(rng.integers(0, 7)), size + 2 * margin + int(rng.integers(0, 7))
    noise = rng.normal(110, 40, (fh // 8 + 2, fw // 8 + 2)).astype(np.float32)
    frame = np.clip(cv2.resize(noise, (fw, fh), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    y0, x0 = margin + int(rng.integers(-3, 4)), margin + int(rng.integers(-3, 4))
    frame[y0:y0 + size, x0:x0 + size] = big
    width, height = size + rng.uniform(-0.5, 0.5), size * taller
    extra_top = (height - size) * rng.uniform(0.3, 0.7)
    box = (x0 + rng.uniform(-0.5, 0.5), y0 - extra_top, width, height)
    return Scene(frame, box, label, shrunk=min(width, height) > SPEC.resize_shorter)


def reference_input(scene: Scene) -> np.ndarray:
    """Training-identical preprocessing of the box crop (integer crop at the rounded box)."""
    from emonext_edge.preprocess import preprocess_one

    left, top, width, height = scene.box
    x0, y0 = round(left), round(top)
    x1, y1 = round(left + width), round(top + height)
    return preprocess_one(scene.frame[y0:y1, x0:x1])


def nvinfer_input(frame: np.ndarray, box: Sequence[float], candidate: Candidate) -> Optional[np.ndarray]:
    """float32 ``SPEC.input_shape`` as nvinfer would feed the network for ``box`` (``None``: object skipped)."""
    import cv2

    fh, fw = frame.shape[:2]
    left, top, width, height = box
    if candidate.strategy != "raw":  # "raw": the detector's box goes to nvinfer unchanged
        left, top, width, height = rewrite_box(left, top, width, height, fw, fh, candidate.strategy)
    crop_box = nvinfer_crop(left, top, width, height)
    if crop_box is None:
        return None
    x, y, w, h = crop_box
    source = frame
    if candidate.gray_source == "limited_y":
        source = np.round(16.0 + frame.astype(np.float32) * (219.0 / 255.0)).astype(np.uint8)
    crop = source[y:y + h, x:x + w]
    mode = candidate.interpolation
    if mode == "area_down":  # supersampling only applies to shrinking; assumed bilinear when enlarging
        mode = "area" if min(w, h) > SPEC.crop_size else "linear"
    flag = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "area": cv2.INTER_AREA}[mode]
    scaled = cv2.resize(crop, (SPEC.crop_size, SPEC.crop_size), interpolation=flag)
    x01 = np.float32(candidate.scale) * (scaled.astype(np.float32) - np.float32(candidate.offset))
    return np.repeat(x01[None], SPEC.channels, axis=0)  # RGB variant: luma of R=G=B is the gray value itself


def val_sample(root: Path, num: int, seed: int) -> list[tuple[Path, int]]:
    from emonext_edge.labels import IMAGEFOLDER_LABELS

    val = root / "val" if (root / "val").is_dir() else root
    items = [(p, i) for i, label in enumerate(IMAGEFOLDER_LABELS) for p in sorted((val / label).glob("*.jpg"))]
    if not items:
        raise SystemExit(f"error: no FER2013 val images under {val}")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(items))[: min(num, len(items))]
    return [items[i] for i in sorted(picks)]


def onnx_predictor(model: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        out = [session.run(None, {name: batch[i:i + 32]})[0] for i in range(0, len(batch), 32)]
        return np.concatenate(out)

    return run


def measure(scenes: Sequence[Scene], predict: Callable[[np.ndarray], np.ndarray],
            candidates: Sequence[Candidate] = CANDIDATES) -> dict[str, Any]:
    labels = np.array([s.label for s in scenes])
    shrunk = np.array([s.shrunk for s in scenes])
    ref_x = np.stack([reference_input(s) for s in scenes])
    ref_p = softmax(predict(ref_x))
    ref_top = ref_p.argmax(1)

    def summary(mask: np.ndarray, top: np.ndarray, probs: np.ndarray, dpix: np.ndarray, ok: np.ndarray) -> dict[str, Any]:
        m = mask & ok
        n = int(m.sum())
        return {
            "n": n,
            "agreement": float((top[m] == ref_top[m]).mean()) if n else None,
            "accuracy": float((top[m] == labels[m]).mean()) if n else None,
            "reference_accuracy": float((ref_top[m] == labels[m]).mean()) if n else None,
            "mean_abs_dprob": float(np.abs(probs[m] - ref_p[m]).sum(1).mean() / 2) if n else None,
            "mean_abs_dpixel": float(dpix[m].mean()) if n else None,
        }

    everyone = np.ones(len(scenes), dtype=bool)
    results: dict[str, Any] = {"reference": {"n": len(scenes), "accuracy": float((ref_top == labels).mean())}}
    for cand in candidates:
        xs, ok = [], np.zeros(len(scenes), dtype=bool)
        for i, s in enumerate(scenes):
            x = nvinfer_input(s.frame, s.box, cand)
            ok[i] = x is not None
            xs.append(x if x is not None else ref_x[i])
        x_all = np.stack(xs)
        probs = softmax(predict(x_all))
        top = probs.argmax(1)
        dpix = np.abs(x_all[:, 0] - ref_x[:, 0]).mean(axis=(1, 2)) * 255.0
        results[cand.name] = {
            "strategy": cand.strategy, "interpolation": cand.interpolation, "gray_source": cand.gray_source,
            "note": cand.note, "skipped": int((~ok).sum()),
            "all": summary(everyone, top, probs, dpix, ok),
            "enlarged": summary(~shrunk, top, probs, dpix, ok),
            "shrunk": summary(shrunk, top, probs, dpix, ok),
        }
    return results


def markdown(results: dict[str, Any], n: int) -> str:
    ref = results["reference"]
    lines = [
        f"Reference (training-identical preprocessing of the same boxes): top-1 {100 * ref['accuracy']:.2f} % on {n} faces.",
        "",
        "| nvinfer input | agreement % | top-1 % | agreement %, box enlarged | agreement %, box shrunk | mean Σ|Δprob|/2 | mean |Δpixel| |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if name == "reference":
            continue
        a, e, s = r["all"], r["enlarged"], r["shrunk"]
        pct = lambda v: "—" if v is None else f"{100 * v:.2f}"
        lines.append(f"| {name} | {pct(a['agreement'])} | {pct(a['accuracy'])} | {pct(e['agreement'])} (n={e['n']}) | "
                     f"{pct(s['agreement'])} (n={s['n']}) | {a['mean_abs_dprob']:.4f} | {a['mean_abs_dpixel']:.2f} |")
    return "\n".join(lines) + "\n"


def _model(args: argparse.Namespace, work: Path) -> Path:
    if args.onnx:
        return Path(args.onnx)
    from emonext_edge.checkpoint import load_model
    from export.onnx import export_onnx

    path = work / "reference.onnx"
    export_onnx(load_model(args.checkpoint), path, verify_count=2)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FER2013 root (with val/) or a val folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="EmoNeXt checkpoint (exported to ONNX for the run)")
    src.add_argument("--onnx", help="EmoNeXt logits ONNX from python -m export.onnx")
    p.add_argument("--num", type=int, default=1000, help="val faces (uniform sample without replacement; default 1000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--json", help="write the figures as JSON")
    p.add_argument("--markdown", help="write the table as Markdown")
    p.add_argument("--only", action="append", metavar="NAME", help="run only the candidates whose name starts so")
    args = p.parse_args(argv)
    check_args(args, parser=p, num=positive_int)
    from emonext_edge.preprocess import load_image, to_gray

    started = time.perf_counter()
    items = val_sample(Path(args.data), args.num, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    scenes = [make_scene(to_gray(load_image(path)), label, rng) for path, label in items]
    with tempfile.TemporaryDirectory(prefix="emonext-ds-") as tmp:
        predict = onnx_predictor(_model(args, Path(tmp)))
        chosen = [c for c in CANDIDATES if not args.only or any(c.name.startswith(o) for o in args.only)]
        results = measure(scenes, predict, chosen)
    table = markdown(results, len(scenes))
    print(f"{len(scenes)} FER2013 val faces (seed {args.seed}), {sum(s.shrunk for s in scenes)} boxes shrunk by the resize, "
          f"{time.perf_counter() - started:.0f} s")
    print(table)
    payload = {"n": len(scenes), "seed": args.seed, "data": str(args.data),
               "model": args.onnx or args.checkpoint, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
