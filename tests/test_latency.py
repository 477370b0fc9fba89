"""benchmarks/latency.py: the interleaved-rounds protocol end to end, its arithmetic, the load check,
and one-line errors (exit 2) for every bad option or input file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "latency.py"


def _latency():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.pop(0)
    return latency


def _run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, official_model):
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("lat") / "small.onnx"
    export_onnx(official_model, path, verify_count=2)
    return path


@pytest.mark.slow
def test_latency_on_given_artifacts_writes_schema(tmp_path, small_onnx, official_checkpoint):
    out = tmp_path / "res"
    proc = _run("--artifacts", str(official_checkpoint), str(small_onnx), "--batch-sizes", "1,2", "--rounds", "3",
                "--iterations", "2", "--warmup", "1", "--threads", "1", "--out", str(out),
                "--model-name", "EmoNeXt fixture", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert report["schema"] == 2
    assert report["model"]["name"] == "EmoNeXt fixture"
    assert report["settings"]["baseline"] == "torch:emonext_small_official.pt"
    assert report["settings"]["rounds"] == 3 and report["protocol"]["name"] == "interleaved-rounds"
    assert report["machine"]["cores"] >= 1 and "libraries" in report["machine"]
    assert len(report["load"]["rounds"]) == 3 and "other_cores" in report["load"]["before"]
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
        assert len(r["round_p50_ms"]) == 3 and len(r["ratio_per_round"]) == 3
        assert r["ratio_min"] <= r["ratio_to_baseline"] <= r["ratio_max"]
    baseline = [r for r in rows if r["artifact"].startswith("torch:")]
    assert all(r["ratio_per_round"] == [1.0, 1.0, 1.0] for r in baseline)
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    md = (out / "results.md").read_text()
    assert "| artifact |" in md and "Protocol: 3 interleaved rounds" in md and "Model: EmoNeXt fixture" in md
    assert "Load:" in md and "Machine:" in md
    assert (out / "latency.png").stat().st_size > 1000
    assert list(tmp_path.iterdir()) == [out]  # nothing else written into the working directory


def test_ratios_are_per_round_then_summarised():
    latency = _latency()

    def worker(name, rounds, alive=True):
        art = latency.Artifact(name, f"/x/{name}", "onnxruntime", "fp32")
        return SimpleNamespace(art=art, description={"precision": "fp32"}, finished={"peak_rss_mb": 1.0},
                               times={(1, m): rounds for m in latency.MODES}, alive=alive, error=None)

    settings = {"batch_sizes": [1], "rounds": 3, "threads": 1}
    # the baseline slows down in round 2 (a busy neighbour) and so does the artifact: the ratio stays put
    base = worker("base", [[10.0, 10.0, 11.0], [20.0, 20.0, 20.0], [10.0, 9.0, 10.0]])
    fast = worker("fast", [[5.0, 5.0, 5.0], [10.0, 10.0, 10.0], [4.0, 4.0, 4.0]])
    rows = latency.summarise([base, fast], "base", settings)
    row = next(r for r in rows if r["artifact"] == "fast" and r["mode"] == "model")
    assert row["ratio_per_round"] == pytest.approx([0.5, 0.5, 0.4])
    assert row["ratio_to_baseline"] == pytest.approx(0.5)
    assert (row["ratio_min"], row["ratio_max"]) == (pytest.approx(0.4), pytest.approx(0.5))
    assert row["speedup_vs_baseline"] == pytest.approx(2.0)
    assert row["mean_ms"] == pytest.approx(57.0 / 9)
    failed = worker("broken", [], alive=False)
    failed.error = "ModelFileError: bad"
    rows = latency.summarise([base, failed], "base", settings)
    assert all(r["error"] == "ModelFileError: bad" for r in rows if r["artifact"] == "broken")
    assert latency.rotated([1, 2, 3], 0) == [1, 2, 3] and latency.rotated([1, 2, 3], 4) == [2, 3, 1]


def test_load_monitor_counts_other_processes_not_ours():
    latency = _latency()
    if latency._system_ticks() is None:
        pytest.skip("no /proc/stat on this system")
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<30: pass"])
    try:
        time.sleep(0.3)
        ticks0, t0 = latency._process_ticks(busy.pid), time.monotonic()
        others = latency.LoadMonitor(list)
        ours = latency.LoadMonitor(lambda: [busy.pid])
        time.sleep(2.0)
        without, with_busy = others.measure(), ours.measure()
        spun = (latency._process_ticks(busy.pid) - ticks0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
    finally:
        busy.kill()
        busy.wait()
    # the spinning process is "other" load unless it is one of ours: the difference is its own CPU use
    # (however busy the machine is otherwise)
    assert spun > 0.05
    assert without["other_cores"] - with_busy["other_cores"] == pytest.approx(spun, abs=0.2)
    assert without["other_cores"] >= spun - 0.2
    warning = latency.load_warning({"other_cores": 1.5, "steal_percent": 0.0}, "before the run")
    assert warning and "other processes used 1.50" in warning
    assert latency.load_warning({"other_cores": 0.0, "steal_percent": 0.0}, "x") is None
    assert "stole 20 %" in latency.load_warning({"other_cores": 0.0, "steal_percent": 20.0}, "x")


def test_accuracy_columns_come_from_accuracy_json(tmp_path):
    latency = _latency()
    rows = [{"artifact": "a", "path": str(tmp_path / "m.onnx"), "batch": 1, "mode": "model"},
            {"artifact": "b", "path": str(tmp_path / "other.onnx"), "batch": 1, "mode": "model"}]
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"data": {}, "results": [{"model": str(tmp_path / "m.onnx"), "accuracy": 0.35}]}))
    latency.add_accuracy(rows, latency.read_accuracy(acc), untrained=False)
    assert rows[0]["accuracy"] == 0.35 and rows[1]["accuracy"] is None
    untrained = [dict(rows[0], accuracy=None)]
    latency.add_accuracy(untrained, latency.read_accuracy(acc), untrained=True)
    assert untrained[0]["accuracy"] is None


BAD_INPUTS = [
    (["--batch-sizes", "abc"], "--batch-sizes"),
    (["--batch-sizes", "1,0"], "--batch-sizes"),
    (["--iterations", "0"], "--iterations"),
    (["--rounds", "0"], "--rounds"),
    (["--warmup", "-1"], "--warmup"),
    (["--threads", "0"], "--threads"),
    (["--accuracy", "garbage.npz"], "garbage.npz"),      # exists, not JSON
    (["--accuracy", "missing.json"], "missing.json"),    # does not exist
    (["--accuracy", "other.json"], "other.json"),        # JSON, not an accuracy report
    (["--out", "/proc/x.md"], "/proc/x.md"),
    (["--out", "afile/sub"], "afile/sub"),               # a file where a folder should be
    (["--artifacts", "nope.onnx"], "nope.onnx"),
    (["--checkpoint", "nope.pt"], "nope.pt"),
    (["--no-such-option"], "--no-such-option"),
    (["--served", "nope.onnx"], "nope.onnx"),
    (["--served-requests", "0"], "--served-requests"),
]


@pytest.mark.parametrize(("args", "named"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(tmp_path, args, named):
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "afile").write_text("x")
    proc = _run(*args, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "garbage.npz", "other.json"]


def test_every_artifact_failing_exits_1(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 definitely not a model")
    proc = _run("--artifacts", str(bad), "--rounds", "1", "--iterations", "1", "--warmup", "0",
                "--out", str(tmp_path / "res"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "every artifact failed" in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "res" / "results.json").read_text())
    assert report["rows"] and all(r["error"] for r in report["rows"])


def test_per_batch_artifact_is_compiled_for_each_measured_batch(ir_path):
    latency = _latency()
    from dataclasses import asdict

    settings = {"batch_sizes": [1, 3], "warmup": 1, "threads": 1}
    static = latency.Artifact("ov-static", str(ir_path), "openvino", "fp32", options={"batch": latency.PER_BATCH})
    dynamic = latency.Artifact("ov-dynamic", str(ir_path), "openvino", "fp32")
    for art, expected in ((static, {"1": 1, "3": 3}), (dynamic, {"1": "dynamic", "3": "dynamic"})):
        session = latency.ArtifactSession(dict(settings, artifact=asdict(art)))
        try:
            assert session.describe()["compiled_batch"] == expected
            assert session.describe()["threads"] == 1
            times = session.time(3, "model", 2)
            assert len(times) == 2 and all(t > 0 for t in times)
        finally:
            assert session.finish()["peak_rss_mb"] > 0


@pytest.mark.slow
def test_served_row_from_the_local_triton_server(tmp_path, small_onnx):
    """--served runs benchmarks/served.py against the real bundled server and adds its rows."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install -e '.[triton]')")
    proc = _run("--artifacts", str(small_onnx), "--served", str(small_onnx), "--served-requests", "3",
                "--batch-sizes", "1", "--rounds", "1", "--iterations", "2", "--warmup", "0",
                "--out", str(tmp_path / "res"), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    served = json.loads((tmp_path / "res" / "results.json").read_text())["served"]
    if "error" in served and ("environment" in served["error"] or "Linux x86-64" in served["error"]):
        pytest.skip(f"the local Triton server cannot run here: {served['error']}")
    assert "error" not in served, served
    by_level = {r["concurrency"]: r for r in served["rows"]}
    assert set(by_level) == {"local", 1, 4, 8}
    assert by_level[8]["inferences"] == 8 * 3  # the timed requests only: the 5 warm-up requests per client are not counted
    assert 0 < by_level[8]["executions"] <= by_level[8]["inferences"]
    assert "Served (Triton" in (tmp_path / "res" / "results.md").read_text()


def test_openvino_rows_are_built_through_the_registry_gated(tmp_path, official_checkpoint, monkeypatch):
    """The FP32 + INT8 IR of the OpenVINO rows come from run_target("openvino", ...): gated, hashed, with the
    calibration file the benchmark wrote (synthetic faces: --keep-failed only for the untrained model)."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from emonext_edge.metadata import read_metadata
    from export import driver

    latency = _latency()
    calls: list[tuple[str, list[str]]] = []
    real = driver.run_target
    monkeypatch.setattr(driver, "run_target", lambda name, argv: calls.append((name, list(argv))) or real(name, argv))
    calib = latency._calibration_file(tmp_path, None, True, 8)
    assert calib == str(tmp_path / "calib_synthetic_8.npz")
    ir_dir = tmp_path / "openvino"
    latency._build_openvino(Path(official_checkpoint), ir_dir, calib, True, 8)
    ((name, argv),) = calls
    assert name == "openvino" and "--int8" in argv and argv[argv.index("--calib") + 1] == calib
    assert "--keep-failed" in argv
    for xml, precision in (("emonext.xml", "fp32"), ("emonext_int8.xml", "int8")):
        meta = read_metadata(ir_dir / xml)
        assert meta.precision == precision and meta.fidelity is not None  # gated (a failure is recorded, kept)
        assert set(meta.artifact_sha256) == {xml, xml.replace(".xml", ".bin")}
    int8 = read_metadata(ir_dir / "emonext_int8.xml")
    assert int8.quantization.calibration["images"] == 8 and int8.quantization.calibration["source"] == calib
