"""Fidelity gate: does a converted/quantized artifact still behave like its FP32 source?

Part of the export contract (``export.pipeline``), so it lives beside it; until 0.4 it was
``calibration.fidelity``, which re-exports it with a ``DeprecationWarning`` until 0.5.

Exporters call :func:`fidelity_gate` with two callables (float32 NCHW batch -> logits), e.g.
``Runtime("model.onnx").run`` and ``Runtime("model_int8.xml").run``, on held-out images. The
gate fails when top-1 agreement < ``min_agreement`` (fraction, default 0.99) or, with labels,
when the accuracy drop > ``max_drop_pp`` percentage points (default 0.5). The measured
figures are always reported (``FidelityReport.summary()``).

Every exporter exposes the same options through :func:`add_fidelity_arguments` /
:func:`gate_from_args` (a :class:`FidelityOptions`); ``export.pipeline.gate_artifact`` runs the
gate on the Runtime's own backends and ``Stage.commit`` keeps or drops the artifact (the export
contract, docs/export-contract.md). ``FidelityOptions.run``/``enforce`` (0.2's delete-after-write)
are gone: nothing is written before it passed.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from emonext_edge.argtypes import data_path
from emonext_edge.errors import ExportError
from emonext_edge.preprocess import PreprocessSpec
from emonext_edge.scores import softmax

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]

DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_MAX_DROP_PP = 0.5
DEFAULT_IMAGES = 1000  # at 200, one flipped image is already a 0.5 pp drop
#: without held-out data the gate runs on this many synthetic images at most (agreement only, weak evidence)
DEFAULT_SYNTHETIC_IMAGES = 32


@dataclass
class FidelityReport:
    passed: bool
    n: int
    agreement: float  # fraction of images with the same top-1 class
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    max_abs_prob_diff: float
    mean_abs_prob_diff: float
    accuracy_reference: Optional[float] = None  # fractions; None without labels
    accuracy_candidate: Optional[float] = None
    drop_pp: Optional[float] = None  # (reference - candidate) accuracy in percentage points
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_drop_pp: float = DEFAULT_MAX_DROP_PP
    nonfinite: int = 0  # candidate logits that were NaN/inf
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        text = (
            f"fidelity gate {verdict} on {self.n} images: top-1 agreement {100 * self.agreement:.2f}% "
            f"(required >= {100 * self.min_agreement:.2f}%)"
        )
        if self.drop_pp is not None:
            text += (
                f", accuracy {100 * self.accuracy_candidate:.2f}% vs reference "  # type: ignore[operator]
                f"{100 * self.accuracy_reference:.2f}% (drop {self.drop_pp:+.2f} pp, allowed <= "  # type: ignore[operator]
                f"{self.max_drop_pp:.2f} pp)"
            )
        else:
            text += ", accuracy not measured (no labels)"
        text += (
            f"; |logit diff| max {self.max_abs_logit_diff:.4g} mean {self.mean_abs_logit_diff:.4g}, "
            f"|prob diff| max {self.max_abs_prob_diff:.4g} mean {self.mean_abs_prob_diff:.4g}"
        )
        if self.nonfinite:
            text += f"; {self.nonfinite} non-finite candidate logits"
        if self.failures:
            text += ". Failed: " + "; ".join(self.failures)
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_batch(images: Any) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.dtype == np.float32 and images.ndim == 4:
        return images
    from emonext_edge.preprocess import preprocess

    return preprocess(images)


def _run(fn: Predictor, batch: np.ndarray, which: str, n: int) -> np.ndarray:
    out = np.asarray(fn(batch))
    if out.ndim != 2 or out.shape[0] != n:
        raise ExportError(f"fidelity gate: the {which} returned logits of shape {list(out.shape)} "
                          f"for a batch of {n}; expected [{n}, num_classes]")
    return out.astype(np.float32, copy=False)


def fidelity_gate(
    candidate: Predictor,
    reference: Predictor,
    images: Any,
    labels: Optional[Sequence[int]] = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_drop_pp: float = DEFAULT_MAX_DROP_PP,
    batch_size: int = 32,
    progress: str = "fidelity gate",
) -> FidelityReport:
    """Compare ``candidate`` with ``reference`` on ``images`` (float32 [N, *INPUT_SHAPE], or anything
    :func:`emonext_edge.preprocess.preprocess` accepts); ``labels`` in the models' logit order.
    ``progress`` names the gate in the progress records (:mod:`emonext_edge.progress`)."""
    from emonext_edge.progress import Progress
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be a fraction in [0, 1], got {min_agreement}")
    if max_drop_pp < 0:
        raise ValueError(f"max_drop_pp must be >= 0 percentage points, got {max_drop_pp}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch = _as_batch(images)
    n = batch.shape[0]
    if n == 0:
        raise ValueError("fidelity gate: no images")
    y = None
    if labels is not None:
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (n,):
            raise ValueError(f"fidelity gate: {len(y)} labels for {n} images")
    cand_parts, ref_parts = [], []
    with Progress(progress, n) as bar:
        for start in range(0, n, batch_size):
            chunk = batch[start : start + batch_size]
            ref_parts.append(_run(reference, chunk, "reference", len(chunk)))
            cand_parts.append(_run(candidate, chunk, "candidate", len(chunk)))
            bar.update(start + len(chunk))
    ref, cand = np.concatenate(ref_parts), np.concatenate(cand_parts)
    if ref.shape != cand.shape:
        raise ExportError(f"fidelity gate: candidate logits {list(cand.shape)} vs reference {list(ref.shape)}")
    if not np.isfinite(ref).all():
        raise ExportError("fidelity gate: the reference produced non-finite logits; cannot compare")
    finite = np.isfinite(cand)
    nonfinite = int((~finite).sum())
    cand_clean = np.where(finite, cand, np.float32(0.0))
    rows_ok = finite.all(axis=1)
    ref_top, cand_top = ref.argmax(1), cand_clean.argmax(1)
    agree = (ref_top == cand_top) & rows_ok
    logit_diff = np.abs(cand_clean - ref)
    prob_diff = np.abs(softmax(cand_clean) - softmax(ref))
    report = FidelityReport(
        passed=True,
        n=int(n),
        agreement=float(agree.mean()),
        max_abs_logit_diff=float(logit_diff.max()),
        mean_abs_logit_diff=float(logit_diff.mean()),
        max_abs_prob_diff=float(prob_diff.max()),
        mean_abs_prob_diff=float(prob_diff.mean()),
        min_agreement=float(min_agreement),
        max_drop_pp=float(max_drop_pp),
        nonfinite=nonfinite,
    )
    if y is not None:
        report.accuracy_reference = float((ref_top == y).mean())
        report.accuracy_candidate = float(((cand_top == y) & rows_ok).mean())
        report.drop_pp = 100.0 * (report.accuracy_reference - report.accuracy_candidate)
    if nonfinite:
        report.failures.append(f"{nonfinite} non-finite candidate logits")
    if report.agreement < min_agreement - 1e-12:
        report.failures.append(f"agreement {100 * report.agreement:.2f}% < {100 * min_agreement:.2f}%")
    if report.drop_pp is not None and report.drop_pp > max_drop_pp + 1e-9:  # 1 of 200 is 0.5000000001 pp
        report.failures.append(f"accuracy drop {report.drop_pp:.2f} pp > {max_drop_pp:.2f} pp")
    report.passed = not report.failures
    (log.info if report.passed else log.warning)("%s", report.summary())
    return report


# --------------------------------------------------------------------------- exporter CLI helpers


def agreement_fraction(text: str) -> float:
    """'0.99', '99' or '99%' -> 0.99."""
    raw = text.strip()
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction (0.99) or a percentage (99%), got {text!r}") from None
    if raw.endswith("%") or value > 1.0:
        value /= 100.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"agreement must be within 0..100%, got {text!r}")
    return value


def nonnegative_pp(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of percentage points, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # NaN and infinity too
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def add_fidelity_arguments(parser: argparse.ArgumentParser) -> None:
    """The fidelity options every exporter exposes (same names, same defaults)."""
    group = parser.add_argument_group("fidelity gate")
    group.add_argument("--min-agreement", type=agreement_fraction, default=DEFAULT_MIN_AGREEMENT, metavar="FRACTION",
                       help="minimum top-1 agreement with the FP32 source, 0.99 or 99%% (default: 0.99)")
    group.add_argument("--max-drop", type=nonnegative_pp, default=DEFAULT_MAX_DROP_PP, metavar="PP",
                       help="maximum accuracy drop in percentage points, needs labeled data (default: 0.5)")
    group.add_argument("--keep-failed", action="store_true",
                       help="keep the artifact even when the fidelity gate fails (exit code stays non-zero)")
    group.add_argument("--fidelity-images", type=_positive_int, default=DEFAULT_IMAGES, metavar="N",
                       help=f"number of held-out images the gate compares on (default: {DEFAULT_IMAGES})")
    group.add_argument("--fidelity-data", type=data_path, default=None, metavar="PATH",
                       help="held-out data for the gate (FER2013 CSV / ImageFolder, 'val' split, or a folder of "
                            "faces); default: the exporter's verification/calibration data")


@dataclass
class FidelityOptions:
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_drop_pp: float = DEFAULT_MAX_DROP_PP
    keep_failed: bool = False
    images: int = DEFAULT_IMAGES
    data: Optional[str] = None

    def load_images(self, fallback_data: Optional[str | os.PathLike] = None, split: str = "val",
                    spec: Optional[PreprocessSpec] = None) -> tuple[np.ndarray, Optional[np.ndarray], str]:
        """(float32 batch, labels or None, description) for the gate, preprocessed by ``spec`` (default: the
        trained one); see :func:`held_out_images`."""
        return held_out_images(self.data if self.data is not None else fallback_data, self.images, split, spec)


def gate_from_args(args: argparse.Namespace) -> FidelityOptions:
    return FidelityOptions(
        min_agreement=args.min_agreement,
        max_drop_pp=args.max_drop,
        keep_failed=args.keep_failed,
        images=args.fidelity_images,
        data=args.fidelity_data,
    )


def held_out_images(data: Optional[str | os.PathLike], count: int, split: str = "val",
                    spec: Optional[PreprocessSpec] = None) -> tuple[np.ndarray, Optional[np.ndarray], str]:
    """Preprocessed images (and labels where the source has them) to run the gate on.

    A FER2013 CSV / ImageFolder tree gives ``count`` labeled images of ``split`` spread evenly over
    it (class proportions kept); a folder of faces or a video gives unlabeled ones; ``None``
    gives deterministic synthetic images (agreement only; weak evidence, logged as such).
    Unreadable images are skipped and counted in the description.
    """
    from calibration.datasets import detect_kind, load_labeled_source, read_source
    from emonext_edge.errors import ImageError
    from emonext_edge.preprocess import SPEC, preprocess_one

    spec = spec or SPEC

    if data is None:
        from calibration.synthetic import synthetic_faces

        count = min(count, DEFAULT_SYNTHETIC_IMAGES)
        log.info("fidelity gate on %d synthetic images (no held-out data given): agreement only, weak evidence", count)
        return (np.stack([preprocess_one(f, spec=spec) for f in synthetic_faces(count)]), None,
                f"{count} synthetic images (no --fidelity-data given)")
    kind = detect_kind(data, split)
    if kind in ("csv", "imagefolder"):
        source = load_labeled_source(data, split, limit=count)
    else:
        source = read_source(data, split, frames=count, kind=kind)
        if len(source.items) > count:
            picks = np.floor(np.linspace(0, len(source.items) - 1, count) + 0.5).astype(int).tolist()
            source.items = [source.items[i] for i in picks]
            source.names = [source.names[i] for i in picks]
            source.labels = source.labels[picks]
    from emonext_edge.progress import Progress

    tensors, keep = [], []
    with Progress(f"reading the gate's images from {data}", len(source.items)) as bar:
        for i, (item, name) in enumerate(zip(source.items, source.names)):
            try:
                tensors.append(preprocess_one(item, name=name, spec=spec))
                keep.append(i)
            except ImageError as exc:
                source.skipped.append((name, str(exc)))
                log.warning("fidelity data: skipped unreadable image: %s", exc)
            bar.update(i + 1)
    if not tensors:
        raise ImageError(f"{data}: none of the {len(source.items)} held-out images could be read")
    labels = source.labels[keep] if source.labeled else None
    what = f"{len(tensors)} {'labeled' if labels is not None else 'unlabeled'} images from {data}"
    if source.kind in ("csv", "imagefolder"):
        what += f" ({source.split} split)"
    if source.skipped:
        what += f", {len(source.skipped)} skipped"
    return np.stack(tensors), labels, what
