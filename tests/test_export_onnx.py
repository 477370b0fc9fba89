"""ONNX export (`python -m export.onnx`): fidelity to the official golden logits, op audit, batch, metadata, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from emonext_edge.errors import VerificationError
from emonext_edge.fileio import sha256_file
from emonext_edge.metadata import (
    ArtifactMetadata,
    from_string_map,
    read_metadata,
    read_sidecar,
    record_digest,
    sidecar_path,
)
from emonext_edge.preprocess import PREPROCESSING_SPEC
from export.common import UsageError
from export.onnx import export_onnx, main, op_counts, resolve_opset
from export.targets import ExportResult

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxslim")


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _logits(path: Path, inputs: np.ndarray) -> np.ndarray:
    return _session(path).run(["logits"], {"input": inputs})[0]


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory, official_io) -> Path:
    """The fixture's real FER2013 PrivateTest faces (48x48) as image files, for --verify-data."""
    import cv2

    folder = tmp_path_factory.mktemp("faces")
    for i, face in enumerate(official_io["raw_faces"]):
        cv2.imwrite(str(folder / f"face_{i}.png"), face)
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory, official_model, official_checkpoint, face_dir) -> dict[str, tuple[Path, ExportResult]]:
    """The official fixture checkpoint exported in both STN modes (dynamic batch), verified on real faces."""
    from export.common import load_source

    source = load_source(official_checkpoint)
    out = tmp_path_factory.mktemp("onnx")
    result = {}
    for stn in ("native", "decomposed"):
        path = out / f"fixture_{stn}.onnx"
        report = export_onnx(source.model, path, stn=stn, verify_data=face_dir, source_info=source.info)
        result[stn] = (path, report)
    return result


@pytest.mark.parametrize("stn", ["native", "decomposed"])
def test_export_reproduces_official_golden_logits(exports, official_io, stn):
    path, report = exports[stn]
    logits = _logits(path, official_io["inputs"])
    assert np.abs(logits - official_io["logits"]).max() <= 1e-4
    assert (logits.argmax(1) == official_io["preds"]).all()
    gate = report.artifacts[0].metadata.fidelity
    assert isinstance(report, ExportResult) and report.passed and report.path == path
    assert gate.figures["max_abs_logit_diff"] <= 1e-4 and gate.figures["agreement"] == 1.0
    assert gate.data.startswith("9 unlabeled images from")


@pytest.mark.parametrize("stn", ["native", "decomposed"])
def test_dynamic_batch_runs_batch_1_and_3(exports, official_io, stn):
    path, report = exports[stn]
    assert report.artifacts[0].metadata.batch == "dynamic"
    session = _session(path)
    assert session.get_inputs()[0].shape[0] == "batch"
    for sl in (slice(0, 1), slice(3, 6)):
        out = session.run(["logits"], {"input": official_io["inputs"][sl]})[0]
        assert out.shape == (sl.stop - sl.start, 7)
        assert np.abs(out - official_io["logits"][sl]).max() <= 1e-4


def test_op_audit(exports):
    native, decomposed = onnx.load(exports["native"][0]), onnx.load(exports["decomposed"][0])
    for model in (native, decomposed):
        assert "AffineGrid" not in op_counts(model)
        assert {imp.domain for imp in model.opset_import} <= {"", "ai.onnx"}
        assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert "GridSample" not in op_counts(decomposed)
    assert {"GatherElements", "Floor"} <= set(op_counts(decomposed))
    assert max(imp.version for imp in decomposed.opset_import) <= 13
    (grid_sample,) = [n for n in native.graph.node if n.op_type == "GridSample"]
    attrs = {a.name: a for a in grid_sample.attribute}
    assert attrs["mode"].s == b"bilinear" and attrs["padding_mode"].s == b"zeros" and attrs["align_corners"].i == 1
    assert [imp.version for imp in native.opset_import] == [17]
    # the training-only attention branch is not in the graph
    assert not any("attention" in init.name for init in native.graph.initializer)


def test_metadata_round_trip(exports, official_checkpoint):
    for stn, (path, report) in exports.items():
        sidecar = read_sidecar(path)
        embedded = from_string_map({p.key: p.value for p in onnx.load(path).metadata_props})
        # the sidecar is the embedded record plus the SHA-256 of the file (a file cannot hold its own hash)
        # and the SHA-256 of its labels + preprocessing (issue 25)
        assert {k: v for k, v in sidecar.items() if k not in ("artifact_sha256", "record_sha256")} == embedded
        assert sidecar["artifact_sha256"] == {path.name: sha256_file(path)}
        assert sidecar["record_sha256"] == record_digest(sidecar)
        assert read_metadata(path) == ArtifactMetadata.from_dict(sidecar)
        assert report.artifacts[0].sidecar == sidecar_path(path)
        assert sidecar["labels"] == ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
        assert sidecar["preprocessing"] == json.loads(json.dumps(PREPROCESSING_SPEC))
        assert sidecar["architecture"]["depths"] == [1, 1, 2, 1] and sidecar["architecture"]["dims"] == [
            16,
            32,
            64,
            128,
        ]
        assert sidecar["source"]["sha256"] == sha256_file(official_checkpoint)
        assert (sidecar["stn_mode"], sidecar["opset"]) == (stn, 13 if stn == "decomposed" else 17)
        assert (sidecar["batch"], sidecar["input_name"], sidecar["output_name"]) == ("dynamic", "input", "logits")
        assert sidecar["precision"] == "fp32" and sidecar["package_version"]
        gate = sidecar["fidelity"]
        assert gate["passed"] and gate["figures"]["max_abs_logit_diff"] == report.artifacts[0].metadata.fidelity.figures[
            "max_abs_logit_diff"]
        assert gate["runtime"].startswith("onnxruntime, CPUExecutionProvider") and gate["thresholds"]["atol"] == 1e-4
        assert gate["data"].startswith("9 unlabeled images") and gate["reference"].startswith("PyTorch FP32")
        assert report.artifacts[0].metadata.artifact_sha256[path.name] == sha256_file(path)


def test_export_restores_model_state(official_model, tmp_path):
    official_model.stn_mode = "native"
    with pytest.raises(VerificationError, match="fidelity gate failed"):
        export_onnx(official_model, tmp_path / "x.onnx", stn="decomposed", verify_count=2, atol=1e-12)
    assert official_model.stn_mode == "native" and not official_model.training


def test_failed_verification_leaves_no_file(official_model, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous artifact")
    with pytest.raises(VerificationError, match=r"max \|Δlogit\|"):
        export_onnx(official_model, out, verify_count=2, atol=1e-12)
    assert out.read_bytes() == b"previous artifact"  # untouched, never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no sidecar, no temp files


def test_fixed_batch(official_model, official_io, tmp_path):
    path = tmp_path / "fixed.onnx"
    report = export_onnx(official_model, path, batch=2, verify_count=3)  # 3 images: chunks of 2, padded
    session = _session(path)
    assert session.get_inputs()[0].shape == [2, 3, 224, 224]
    assert session.get_outputs()[0].shape == [2, 7]
    out = session.run(["logits"], {"input": official_io["inputs"][:2]})[0]
    assert np.abs(out - official_io["logits"][:2]).max() <= 1e-4
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="input"):
        session.run(["logits"], {"input": official_io["inputs"][:3]})
    assert report.artifacts[0].metadata.batch == 2 and read_sidecar(path)["batch"] == 2


def test_forced_opset_20_uses_linear_mode(official_model, official_io, tmp_path):
    path = tmp_path / "op20.onnx"
    export_onnx(official_model, path, opset=20, force=True, verify_count=2)
    model = onnx.load(path)
    (grid_sample,) = [n for n in model.graph.node if n.op_type == "GridSample"]
    assert {a.name: a for a in grid_sample.attribute}["mode"].s == b"linear"
    assert np.abs(_logits(path, official_io["inputs"][:2]) - official_io["logits"][:2]).max() <= 1e-4


@pytest.mark.parametrize(
    ("stn", "opset", "force", "expected"),
    [
        (None, None, False, 17),
        ("native", 16, False, 16),
        ("native", 19, False, 19),
        ("native", 20, True, 20),
        ("decomposed", None, False, 13),
        ("decomposed", 13, False, 13),
    ],
)
def test_resolve_opset_accepts(stn, opset, force, expected):
    assert resolve_opset(stn or "native", opset, force) == expected


@pytest.mark.parametrize(
    ("stn", "opset", "force", "message"),
    [
        ("native", 13, False, "GridSample appeared in opset 16"),
        ("native", 20, False, "NVIDIA/TensorRT#4646"),
        ("native", 21, True, "up to 20"),
        ("decomposed", 17, False, "opset 13"),
        ("bogus", None, False, "--stn"),
    ],
)
def test_resolve_opset_refuses(stn, opset, force, message):
    with pytest.raises(UsageError, match=message):
        resolve_opset(stn, opset, force)


def test_cli_exports_checkpoint_and_prints_figures(official_checkpoint, face_dir, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = main(
        [
            "--checkpoint",
            str(official_checkpoint),
            "--output",
            str(out),
            "--stn",
            "decomposed",
            "--verify-data",
            str(face_dir),
            "--verify-count",
            "4",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert out.is_file() and sidecar_path(out).is_file()
    assert "gate PASSED" in stdout and "agreement 100.00%" in stdout and "4 unlabeled images" in stdout
    assert stdout.count("wrote ") == 1 and ".emonext-tmp" not in stdout


@pytest.mark.slow  # exports the full EmoNeXt-Tiny default model (~18 s on 2 shared cores)
def test_cli_default_model_says_so_first(tmp_path, capsys):
    out = tmp_path / "default.onnx"
    code = main(["--output", str(out), "--verify-count", "2", "--batch", "1"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert stdout.splitlines()[0].startswith("note: no --checkpoint given; exporting the default model")
    meta = read_sidecar(out)
    assert meta["source"]["checkpoint"] is None and meta["architecture"]["name"] == "tiny"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "{tmp}/missing.pt"], "missing.pt"),
        (["--output", "{tmp}/afile/model.onnx"], "is a file, not a directory"),
        (["--output", "/proc/x.onnx"], "not writable"),
        (["--output", "{tmp}/model.engine"], "must end in .onnx"),
        (["--opset", "13"], "opset >= 16"),
        (["--opset", "20"], "'linear'"),
        (["--stn", "decomposed", "--opset", "17"], "opset 13"),
        (["--stn", "grid"], "invalid choice"),
        (["--batch", "0"], "positive integer"),
        (["--fidelity-data", "{tmp}/nofaces"], "nofaces"),
    ],
)
def test_cli_bad_input_exits_2(args, message, tmp_path, capsys):
    (tmp_path / "afile").write_text("a file where a directory should be")
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))


def test_onnx_never_replaces_the_sidecar_of_an_ir(tmp_path, capsys):
    """``--output d/emonext.onnx`` beside d/emonext.xml wrote the ONNX's record over the IR's emonext.json; the IR
    then loaded under the ONNX's record, its own hash unchecked. Refused before any work."""
    (tmp_path / "emonext.xml").write_text("<net/>")
    sidecar = tmp_path / "emonext.json"
    sidecar.write_text('{"format": "openvino-ir"}')
    assert main(["--output", str(tmp_path / "emonext.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --output {tmp_path / 'emonext.onnx'}: emonext.json is the sidecar of emonext.xml")
    assert err.count("\n") == 1 and sidecar.read_text() == '{"format": "openvino-ir"}'
    assert not (tmp_path / "emonext.onnx").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write into read-only directories")
def test_cli_read_only_output_dir_exits_2(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["--output", str(folder / "model.onnx")]) == 2
    finally:
        folder.chmod(0o755)
    assert "not writable" in capsys.readouterr().err


@pytest.fixture(scope="module")
def channels_first_export(tmp_path_factory, official_checkpoint, face_dir) -> tuple[Path, ExportResult]:
    from export.common import load_source

    source = load_source(official_checkpoint)
    path = tmp_path_factory.mktemp("onnx_cf") / "fixture_cf.onnx"
    report = export_onnx(source.model, path, verify_data=face_dir, source_info=source.info, block_layout="channels_first")
    assert source.model.block_layout == "channels_last"  # the model is left as it was
    return path, report


def test_channels_first_blocks_reproduce_golden_logits_without_transposes(channels_first_export, exports, official_io):
    path, report = channels_first_export
    logits = _logits(path, official_io["inputs"])
    assert np.abs(logits - official_io["logits"]).max() <= 1e-4
    assert (logits.argmax(1) == official_io["preds"]).all()
    counts, official_counts = op_counts(onnx.load(path)), op_counts(onnx.load(exports["native"][0]))
    # official blocks: two permutes each (5 blocks in the fixture); channels_first blocks: none
    # (the one Transpose left is the STN's grid arithmetic)
    assert official_counts["Transpose"] - counts.get("Transpose", 0) == 10 and counts.get("Transpose", 0) <= 1
    # block LayerNorms over channels are written out (only the head's LayerNorm stays one op);
    # pointwise Linear layers became 1x1 Convs (two per block)
    assert official_counts["LayerNormalization"] - counts.get("LayerNormalization", 0) == 5
    assert counts["Conv"] - official_counts["Conv"] == 10
    assert report.artifacts[0].metadata.block_layout == "channels_first"
    assert read_sidecar(path)["block_layout"] == "channels_first"
    assert read_sidecar(exports["native"][0])["block_layout"] == "channels_last"


def test_unknown_block_layout_is_refused(official_model, tmp_path):
    with pytest.raises(UsageError, match="block_layout must be one of"):
        export_onnx(official_model, tmp_path / "x.onnx", block_layout="nhwc")
    assert main(["--block-layout", "nhwc", "--output", str(tmp_path / "y.onnx")]) == 2


def test_output_where_no_file_can_be_written_fails_before_torch_is_imported():
    import subprocess
    import sys

    from emonext_edge.model import BLOCK_LAYOUTS
    from export.onnx import CLI_BLOCK_LAYOUTS

    assert tuple(CLI_BLOCK_LAYOUTS) == tuple(BLOCK_LAYOUTS)
    code = ("import sys; from export.onnx import main; rc = main(['--output', '/proc/x.onnx']); "
            "sys.exit(10 + rc if 'torch' in sys.modules else rc)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2, (done.returncode, done.stderr)  # 12: it imported torch (seconds) before failing
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --output /proc/x.onnx: output directory /proc is not writable")


def test_export_works_on_a_copy_never_on_the_callers_model(official_model, tmp_path, monkeypatch):
    """The export form (decomposed STN, channels-first blocks) is fixed on a private copy: the caller's
    model, possibly shared with other threads, is never switched, not even temporarily."""
    import export.onnx as onnx_export

    before = (official_model.stn_mode, official_model.block_layout, official_model.training)
    seen = []
    real = onnx_export._torch_export
    monkeypatch.setattr(onnx_export, "_torch_export",
                        lambda m, opset: (seen.append((m is official_model, m.stn_mode, m.block_layout)), real(m, opset))[1])
    onnx_export.export_onnx(official_model, tmp_path / "m.onnx", stn="decomposed", block_layout="channels_first",
                            verify_count=2)
    assert seen == [(False, "decomposed", "channels_first")]
    assert (official_model.stn_mode, official_model.block_layout, official_model.training) == before
