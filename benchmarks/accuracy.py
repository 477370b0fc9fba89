"""Accuracy of one or more model artifacts on labeled FER2013 data, and their agreement with a reference.

Usage (from the repository root)::

    python benchmarks/accuracy.py MODEL [MODEL ...] --data PATH [--split val] [--reference MODEL]
        [--ten-crop] [--limit N] [--batch-size 16] [--threads T] [--json out.json] [--markdown out.md]

``--batch-size`` bounds the tensors per ``run()`` call (with ``--ten-crop``: ``batch_size // 10``
images, at least one, per call), so memory stays flat whatever the protocol.

MODEL is anything ``emonext_edge.Runtime`` opens (checkpoint, ONNX, OpenVINO IR, TensorRT
engine). ``--data`` is a FER2013 ImageFolder tree (``<split>/<Class>/*.jpg``) or the Kaggle
CSV. Each image is preprocessed once (the runtime's one implementation) and the same
tensors are fed to every model. ``--ten-crop`` is the official test protocol: logits averaged
over the ten crops. ``--limit N`` evaluates N images spread evenly over the split (class
proportions kept). Unreadable images are skipped and counted (``data.skipped``). The
reference (default: the first MODEL) is compared on predictions and softmax probabilities.
Model logits are mapped to the data's label order by label name.

JSON schema (stable; other tools read it). Accuracies/agreements are fractions in [0, 1]::

    {
      "data": {"path": str, "split": str, "kind": "imagefolder"|"csv", "protocol": "center"|"ten-crop",
               "labels": [str], "images": int, "skipped": int, "skipped_items": [str],
               "limit": int|null, "class_counts": {label: int}},
      "reference": str,                       # path of the reference model
      "results": [{
        "model": str, "backend": str, "precision": str, "inference_precision": str, "device": str|null, "threads": int|null,
        "accuracy": float, "macro_f1": float,
        "per_class_recall": {label: float|null},   # null: no image of that class evaluated
        "confusion_matrix": [[int]],               # rows: true class, columns: predicted (data label order)
        "agreement_with_reference": float, "max_abs_prob_diff": float, "mean_abs_prob_diff": float,
        "images": int, "seconds": float,           # seconds spent in the model's run() calls only
        "images_per_second": float                 # images / seconds (ten-crop: 10 crops per image)
      }]
    }

Throughput here is a by-product (one process, the whole pipeline sharing the CPU); use the
latency benchmark for performance claims.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # `python benchmarks/accuracy.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from calibration.datasets import load_labeled_source
from emonext_edge.argtypes import check_args, data_path, positive_int, thread_count
from emonext_edge.errors import EmoNeXtError, ImageError
from emonext_edge.labels import canonical_label
from emonext_edge.preprocess import INPUT_SHAPE, preprocess_one, preprocess_ten_crop
from emonext_edge.scores import softmax
from export.common import cli_entry

MAX_LISTED_SKIPS = 50


class EvaluationError(EmoNeXtError):
    """A model cannot be evaluated on the data (label mismatch, bad logits)."""


def label_permutation(model_labels: Sequence[str], data_labels: Sequence[str], where: str) -> np.ndarray:
    """Columns of the model's logits in the data's label order (matched by name, any capitalization)."""
    if len(model_labels) != len(data_labels):
        raise EvaluationError(f"{where}: the model has {len(model_labels)} classes {list(model_labels)}, "
                              f"the data {len(data_labels)} {list(data_labels)}")
    try:
        canon = [canonical_label(name, data_labels) for name in model_labels]
    except KeyError as exc:
        raise EvaluationError(f"{where}: model label not in the data's labels: {exc}") from None
    return np.array([canon.index(label) for label in data_labels], dtype=np.int64)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Top-1 accuracy, macro-F1 (over classes present in truth or predictions), per-class recall, confusion."""
    matrix = confusion(y_true, y_pred, len(labels))
    support, predicted, correct = matrix.sum(1), matrix.sum(0), np.diag(matrix)
    recall: dict[str, Optional[float]] = {}
    f1s = []
    for i, name in enumerate(labels):
        recall[name] = float(correct[i] / support[i]) if support[i] else None
        if support[i] or predicted[i]:
            f1s.append(2.0 * correct[i] / (support[i] + predicted[i]))
    return {
        "accuracy": float(correct.sum() / max(1, matrix.sum())),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class_recall": recall,
        "confusion_matrix": matrix.tolist(),
    }


class _Model:
    """One opened artifact: its Runtime, label permutation, collected logits and timing."""

    def __init__(self, path: str, threads: Optional[int], data_labels: Sequence[str]) -> None:
        from emonext_edge import Runtime
        from emonext_edge.backends import backend_name_for

        tensorrt = backend_name_for(path) == "tensorrt"  # an engine has no CPU thread setting
        options = {} if threads is None or tensorrt else {"threads": threads}
        self.path = path
        self.runtime = Runtime(path, **options)
        self.perm = label_permutation(list(self.runtime.labels), data_labels, path)
        self.parts: list[np.ndarray] = []
        self.seconds = 0.0

    def run(self, batch: np.ndarray, crops: int) -> None:
        start = time.perf_counter()
        logits = np.asarray(self.runtime.run(batch), dtype=np.float32)
        self.seconds += time.perf_counter() - start
        if logits.ndim != 2 or logits.shape[0] != batch.shape[0] or not np.isfinite(logits).all():
            raise EvaluationError(f"{self.path}: bad logits {logits.dtype} {list(logits.shape)} for a batch of "
                                  f"{batch.shape[0]} (expected finite [N, {len(self.perm)}])")
        logits = logits[:, self.perm]
        if crops > 1:
            logits = logits.reshape(-1, crops, logits.shape[1]).mean(axis=1)
        self.parts.append(logits)

    @property
    def logits(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros((0, len(self.perm)), np.float32)

    def info(self) -> dict[str, Any]:
        info = dict(getattr(self.runtime, "info", {}) or {})
        meta = getattr(self.runtime, "metadata", None)  # the typed record (a dict from a 0.3-style stand-in)
        stored = meta.get("precision") if isinstance(meta, dict) else getattr(meta, "precision", None)
        return {
            "backend": str(info.get("backend", "unknown")),
            # what the artifact holds (e.g. int8 IR) and what the engine runs its float ops at (e.g. f32)
            "precision": str(stored or info.get("precision", "unknown")),
            "inference_precision": str(info.get("precision", "unknown")),
            "device": info.get("device"),
            "threads": info.get("threads"),
        }

    def close(self) -> None:
        self.runtime.close()


def _prepare(source: Any, one: Any, indices: range) -> tuple[Optional[np.ndarray], list[int], list[tuple[str, str]]]:
    """Preprocess the images ``indices`` of ``source``: (stacked tensors or None, kept indices, skipped)."""
    tensors, kept, skipped = [], [], []
    for i in indices:
        try:
            tensors.append(one(source.items[i], name=source.names[i]))
            kept.append(i)
        except ImageError as exc:
            skipped.append((source.names[i], str(exc)))
    batch = np.stack(tensors).reshape(-1, *INPUT_SHAPE) if tensors else None
    return batch, kept, skipped


def _engine_threads(value: Any, cores: int) -> int:
    """An engine's reported CPU thread count; anything not a positive number ("default", None) = all cores."""
    try:
        threads = int(value)
    except (TypeError, ValueError):
        return cores
    return threads if threads > 0 else cores


class _Prefetcher:
    """``submit()``/``result()`` on one background thread, or run the call at once when ``workers`` is None."""

    def __init__(self, workers: Optional[int]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preprocess") if workers else None

    def __enter__(self) -> _Prefetcher:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, fn: Any, *args: Any) -> Any:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        done: Future = Future()
        done.set_result(fn(*args))
        return done


class _Progress:
    """A progress line on stderr, redrawn at most twice a second, with rate and time left."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled = total, enabled
        self.start = self.last = time.perf_counter()
        self.drawn = False  # a terminal line without its newline yet

    def update(self, done: int) -> None:
        now = time.perf_counter()
        tty = sys.stderr.isatty()  # log files and pipes get a plain line every 10 s, never a \r
        if not self.enabled or (now - self.last < (0.5 if tty else 10.0) and done < self.total):
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / max(1, self.total))
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} images "
                f"{rate:.1f} img/s, {elapsed:.0f}s elapsed, ~{eta:.0f}s left")
        sys.stderr.write(f"\r{text} " if tty else f"{text}\n")
        self.drawn = tty
        sys.stderr.flush()

    def close(self, summary: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\n{summary}\n" if self.drawn else f"{summary}\n")
            sys.stderr.flush()


def evaluate(
    models: Sequence[str],
    data: str,
    split: str = "val",
    reference: Optional[str] = None,
    ten_crop: bool = False,
    limit: Optional[int] = None,
    batch_size: int = 16,
    threads: Optional[int] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the evaluation and return the JSON-schema dict (see the module docstring)."""
    if not models:
        raise EvaluationError("no MODEL given")
    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be >= 1, got {batch_size}")
    source = load_labeled_source(data, split, limit)
    labels = list(source.label_names)
    reference = reference or models[0]
    paths = list(dict.fromkeys([*models, reference]))
    opened: dict[str, _Model] = {}
    try:
        for path in paths:
            opened[path] = _Model(path, threads, labels)
        crops = 10 if ten_crop else 1
        one = preprocess_ten_crop if ten_crop else preprocess_one
        kept: list[int] = []
        total = len(source.items)
        start = time.perf_counter()
        bar = _Progress(total, enabled=progress)
        per_chunk = max(1, batch_size // crops)  # images per run() call: batch_size tensors at most
        chunks = [range(first, min(first + per_chunk, total)) for first in range(0, total, per_chunk)]
        # where the engines leave a core free, chunk k+1 is preprocessed in a thread while the models
        # infer chunk k (numpy and the engines release the GIL); on a machine whose cores the engines
        # already fill, a competing thread only slows their thread pools, so it runs inline. Either way
        # the tensors are those of the one preprocessing implementation: bit-exact.
        cores = os.cpu_count() or 1
        engine_threads = max(_engine_threads(m.info().get("threads"), cores) for m in opened.values())
        workers = 1 if cores > engine_threads else None
        with _Prefetcher(workers) as pool:
            pending = pool.submit(_prepare, source, one, chunks[0]) if chunks else None
            for k, indices in enumerate(chunks):
                assert pending is not None
                batch, ok, skipped = pending.result()
                pending = pool.submit(_prepare, source, one, chunks[k + 1]) if k + 1 < len(chunks) else None
                kept += ok
                source.skipped.extend(skipped)
                if batch is not None:
                    for model in opened.values():
                        model.run(batch, crops)
                bar.update(indices.stop)
        bar.close(f"{total} images, {len(opened)} model(s), {crops} crop(s) each: {time.perf_counter() - start:.0f} s")
        if not kept:
            raise EvaluationError(f"{data}: none of the {total} images could be read")
        y = source.labels[kept]
        ref_probs = softmax(opened[reference].logits)
        ref_pred = ref_probs.argmax(1)
        results = []
        for path in models:
            model = opened[path]
            logits = model.logits
            probs = softmax(logits)
            pred = logits.argmax(1)
            diff = np.abs(probs - ref_probs)
            result: dict[str, Any] = {"model": path, **model.info()}
            result.update(classification_metrics(y, pred, labels))
            result.update(
                agreement_with_reference=float((pred == ref_pred).mean()),
                max_abs_prob_diff=float(diff.max()),
                mean_abs_prob_diff=float(diff.mean()),
                images=len(kept),
                seconds=round(model.seconds, 3),
                images_per_second=float(len(kept) / model.seconds) if model.seconds > 0 else None,
            )
            results.append(result)
    finally:
        for model in opened.values():
            model.close()
    return {
        "data": {
            "path": str(data),
            "split": source.split,
            "kind": source.kind,
            "protocol": "ten-crop" if ten_crop else "center",
            "labels": labels,
            "images": len(kept),
            "skipped": len(source.skipped),
            "skipped_items": [f"{n}: {r}" for n, r in source.skipped[:MAX_LISTED_SKIPS]],
            "limit": limit,
            "class_counts": {name: int((y == i).sum()) for i, name in enumerate(labels)},
        },
        "reference": reference,
        "results": results,
    }


def markdown_table(report: dict[str, Any]) -> str:
    data = report["data"]
    skipped = f", {data['skipped']} skipped" if data["skipped"] else ""
    title = (f"Accuracy on {data['path']} ({data['split']}, {data['images']} images, {data['protocol']} protocol"
             f"{skipped}); reference: {report['reference']}")
    lines = [
        title,
        "",
        "| model | backend | precision | top-1 % | macro-F1 | agreement % | max abs dprob | mean abs dprob | img/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ips = f"{r['images_per_second']:.1f}" if r["images_per_second"] else "-"
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {100 * r['accuracy']:.2f} | {r['macro_f1']:.4f} | "
            f"{100 * r['agreement_with_reference']:.2f} | {r['max_abs_prob_diff']:.4g} | "
            f"{r['mean_abs_prob_diff']:.4g} | {ips} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/accuracy.py", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="MODEL", help="artifacts emonext_edge.Runtime opens")
    parser.add_argument("--data", required=True, help="FER2013 ImageFolder tree or Kaggle CSV")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--reference", default=None, help="model to compare against (default: the first MODEL)")
    parser.add_argument("--ten-crop", action="store_true", help="official ten-crop protocol (logits averaged)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate N images spread evenly over the split")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="tensors per run() call; with --ten-crop 10 per image (default: 16)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per model (default: the backend's)")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", default=None, help="write the Markdown table here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    from emonext_edge.fileio import atomic_path, check_writable_dir, write_json_atomic

    args = _parser().parse_args(argv)
    check_args(args, limit=positive_int, batch_size=positive_int, threads=thread_count, data=data_path)
    for out in (args.json, args.markdown):
        if out:
            check_writable_dir(out)
    report = evaluate(args.models, args.data, args.split, args.reference, args.ten_crop, args.limit,
                      args.batch_size, args.threads, progress=not args.quiet)
    table = markdown_table(report)
    if args.json:
        write_json_atomic(args.json, report)
    if args.markdown:
        with atomic_path(args.markdown) as tmp:
            tmp.write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
