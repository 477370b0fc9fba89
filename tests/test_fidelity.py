"""Fidelity gate on real model logits: the FP32 reference vs. real modified copies of it."""

from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest
from conftest import fer_val_sample

from emonext_edge.errors import ExportError
from emonext_edge.preprocess import preprocess
from export.fidelity import (
    FidelityOptions,
    add_fidelity_arguments,
    fidelity_gate,
    gate_from_args,
    held_out_images,
)

torch = pytest.importorskip("torch")


def _runner(model):
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return run


def _copy_with(model, change):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for i, p in enumerate(other.parameters()):
            p.copy_(change(i, p))
    return other.eval()


@pytest.fixture(scope="module")
def val_batch(fer2013_root):
    items = fer_val_sample(fer2013_root, 2)  # 14 real val faces, 2 per class: enough to tell pass from fail
    return preprocess([p for p, _ in items]), np.array([y for _, y in items])


@pytest.fixture(scope="module")
def reference_logits(reference_model, val_batch):
    return _runner(reference_model)(val_batch[0])


def test_gate_passes_for_fp16_rounded_weights(reference_model, val_batch, reference_logits):
    images, labels = val_batch
    fp16 = _copy_with(reference_model, lambda i, p: p.half().float())
    report = fidelity_gate(_runner(fp16), _runner(reference_model), images, labels, batch_size=8)
    assert report.passed, report.summary()
    assert report.n == len(labels) and report.agreement >= 0.99
    assert 0 < report.max_abs_logit_diff < 0.1  # a different model, but a close one
    assert report.accuracy_reference == pytest.approx(float((reference_logits.argmax(1) == labels).mean()))
    assert report.drop_pp is not None and report.drop_pp <= 0.5
    text = report.summary()
    assert text.startswith(f"fidelity gate PASSED on {len(labels)} images") and "drop" in text
    assert report.to_dict()["agreement"] == report.agreement


def test_gate_fails_for_perturbed_weights(reference_model, val_batch, reference_logits):
    images, labels = val_batch
    gen = torch.Generator().manual_seed(0)
    noisy = _copy_with(reference_model, lambda i, p: p + 0.5 * p.std() * torch.randn(p.shape, generator=gen)
                       if p.numel() > 1 else p)
    cand = _runner(noisy)(images)
    report = fidelity_gate(_runner(noisy), _runner(reference_model), images, labels)
    expected = float((cand.argmax(1) == reference_logits.argmax(1)).mean())
    assert report.agreement == pytest.approx(expected) and expected < 0.99
    assert not report.passed and any("agreement" in f for f in report.failures)
    assert report.max_abs_logit_diff == pytest.approx(float(np.abs(cand - reference_logits).max()), rel=1e-5)
    assert "FAILED" in report.summary() and f"{100 * expected:.2f}%" in report.summary()


def test_gate_fails_on_accuracy_drop_and_passes_without_labels(reference_model, val_batch, reference_logits):
    images, labels = val_batch
    ref_run = _runner(reference_model)

    def biased(batch):  # the real model with its logits pushed toward one class: a broken conversion
        out = ref_run(batch)
        out[:, 1] += 100.0
        return out

    report = fidelity_gate(biased, ref_run, images, labels, min_agreement=0.0, max_drop_pp=0.5)
    acc_cand = float((labels == 1).mean())
    acc_ref = float((reference_logits.argmax(1) == labels).mean())
    assert report.accuracy_candidate == pytest.approx(acc_cand)
    assert report.drop_pp == pytest.approx(100 * (acc_ref - acc_cand))
    assert not report.passed and any("accuracy drop" in f for f in report.failures)
    unlabeled = fidelity_gate(biased, ref_run, images, None, min_agreement=0.0)
    assert unlabeled.passed and unlabeled.drop_pp is None
    assert "not measured (no labels)" in unlabeled.summary()


def test_gate_rejects_nonfinite_and_bad_shapes(reference_model, val_batch):
    images, labels = val_batch
    ref_run = _runner(reference_model)

    def with_nan(batch):
        out = ref_run(batch)
        out[0, 0] = np.nan
        return out

    report = fidelity_gate(with_nan, ref_run, images[:4])
    assert not report.passed and report.nonfinite == 1 and report.agreement == 0.75
    with pytest.raises(ExportError, match=r"candidate logits \[4, 6\] vs reference \[4, 7\]"):
        fidelity_gate(lambda b: ref_run(b)[:, :6], ref_run, images[:4])
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        fidelity_gate(ref_run, ref_run, images[:4], labels[:3])


def test_cli_options_and_enforce(tmp_path, reference_model, val_batch):
    parser = argparse.ArgumentParser()
    add_fidelity_arguments(parser)
    opts = gate_from_args(parser.parse_args([]))
    assert (opts.min_agreement, opts.max_drop_pp, opts.keep_failed) == (0.99, 0.5, False)
    opts = gate_from_args(parser.parse_args(["--min-agreement", "99.5%", "--max-drop", "1", "--keep-failed",
                                             "--fidelity-images", "50"]))
    assert opts == FidelityOptions(min_agreement=0.995, max_drop_pp=1.0, keep_failed=True, images=50)
    assert gate_from_args(parser.parse_args(["--min-agreement", "0.9"])).min_agreement == 0.9
    for bad in (["--min-agreement", "150%"], ["--max-drop", "-1"], ["--fidelity-images", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)

    images, _ = val_batch
    ref_run = _runner(reference_model)
    assert not hasattr(FidelityOptions, "enforce") and not hasattr(FidelityOptions, "run")  # retired in 0.4
    assert not fidelity_gate(lambda b: -ref_run(b), ref_run, images[:6], None, 1.0, 0.5).passed
    assert fidelity_gate(ref_run, ref_run, images[:6], None, 1.0, 0.5).passed


def test_held_out_images(fer2013_root, tmp_path):
    batch, labels, what = held_out_images(fer2013_root, 14)
    assert batch.shape == (14, 3, 224, 224) and labels is not None and len(labels) == 14
    assert "labeled" in what and "val split" in what
    batch, labels, what = held_out_images(fer2013_root / "val" / "Happy", 5)
    assert batch.shape[0] == 5 and labels is None and "unlabeled" in what
    batch, labels, what = held_out_images(None, 3)
    assert batch.shape == (3, 3, 224, 224) and labels is None and "synthetic" in what
