"""benchmarks/latency.py: runs end to end on given artifacts and writes its documented outputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "latency.py"


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, official_model):
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("lat") / "small.onnx"
    export_onnx(official_model, path, verify_count=2)
    return path


@pytest.mark.slow
def test_latency_on_given_artifacts_writes_schema(tmp_path, small_onnx, official_checkpoint):
    out = tmp_path / "res"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--artifacts", str(official_checkpoint), str(small_onnx),
         "--batch-sizes", "1,2", "--iterations", "3", "--warmup", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert report["schema"] == 1
    assert report["settings"]["baseline"] == "torch:emonext_small_official.pt"
    assert report["machine"]["cores"] >= 1 and "libraries" in report["machine"]
    rows = report["rows"]
    assert {(r["artifact"], r["batch"], r["mode"]) for r in rows} == {
        (a, b, m)
        for a in ("torch:emonext_small_official.pt", "onnxruntime:small.onnx")
        for b in (1, 2)
        for m in ("model", "end_to_end")
    }
    for r in rows:
        assert not r.get("error"), r
        assert r["backend"] in ("torch", "onnxruntime") and r["device"] and r["precision"] and r["threads"] == 1
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1000.0 / r["mean_ms"])
        assert r["peak_rss_mb"] > 0
        assert r["ratio_to_baseline"] > 0
    baseline = [r for r in rows if r["artifact"].startswith("torch:")]
    assert all(r["ratio_to_baseline"] == pytest.approx(1.0) for r in baseline)
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert "| artifact |" in (out / "results.md").read_text()
    assert (out / "latency.png").stat().st_size > 1000


def test_latency_rejects_missing_artifact(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--artifacts", str(tmp_path / "nope.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "nope.onnx: no such file" in proc.stderr


def test_accuracy_columns_come_from_accuracy_json(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.pop(0)
    rows = [{"artifact": "a", "path": str(tmp_path / "m.onnx"), "batch": 1, "mode": "model", "mean_ms": 2.0},
            {"artifact": "b", "path": str(tmp_path / "other.onnx"), "batch": 1, "mode": "model", "mean_ms": 4.0}]
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"data": {}, "results": [{"model": str(tmp_path / "m.onnx"), "accuracy": 0.35}]}))
    latency.add_ratios(rows, "a")
    latency.add_accuracy(rows, acc, untrained=False)
    assert rows[0]["accuracy"] == 0.35 and rows[1]["accuracy"] is None
    assert rows[1]["ratio_to_baseline"] == pytest.approx(2.0)
    untrained = [dict(rows[0], accuracy=None)]
    latency.add_accuracy(untrained, acc, untrained=True)
    assert untrained[0]["accuracy"] is None


def test_per_batch_artifact_is_compiled_for_each_measured_batch(ir_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.pop(0)
    from dataclasses import asdict

    static = latency.Artifact("ov-static", str(ir_path), "openvino", "fp32", options={"batch": latency.PER_BATCH})
    dynamic = latency.Artifact("ov-dynamic", str(ir_path), "openvino", "fp32")
    settings = {"batch_sizes": [1, 3], "iterations": 2, "warmup": 1, "threads": 1}
    static_rows = latency.measure(dict(settings, artifact=asdict(static)))
    dynamic_rows = latency.measure(dict(settings, artifact=asdict(dynamic)))
    assert [(r["batch"], r["compiled_batch"]) for r in static_rows if r["mode"] == "model"] == [(1, 1), (3, 3)]
    assert {r["compiled_batch"] for r in dynamic_rows} == {"dynamic"}
    assert all(r["mean_ms"] > 0 and r["threads"] == 1 for r in static_rows + dynamic_rows)
