"""The export contract every exporter follows (export/pipeline.py).

Gate failure -> exit 1 and nothing at the final names; --keep-failed -> written, marked
unverified, still exit 1; a run killed mid-export leaves no artifact at a final name and its
leftovers are removed by the next run; every artifact states its real precision, its gate
result and the SHA-256 of its files; embedded records equal the sidecar minus the hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from emonext_edge.errors import VerificationError
from emonext_edge.fileio import TEMP_PREFIX, clean_stale_temps, sha256_file
from emonext_edge.metadata import ArtifactMetadata, read_ir_metadata, read_metadata, read_onnx_metadata

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[1]


def _final_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _check_sidecar_hashes(meta: ArtifactMetadata, folder: Path) -> None:
    assert meta.artifact_sha256, "the sidecar must record the SHA-256 of every artifact file"
    for name, digest in meta.artifact_sha256.items():
        assert sha256_file(folder / name) == digest, name


# --------------------------------------------------------------------------- export.onnx


def test_onnx_gate_failure_exits_1_and_writes_nothing(official_checkpoint, tmp_path, capsys):
    from export.onnx import main

    out = tmp_path / "new" / "m.onnx"  # the output directory is created
    code = main(["--checkpoint", str(official_checkpoint), "--output", str(out), "--fidelity-images", "2",
                 "--atol", "1e-12"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: fidelity gate failed")
    assert _final_names(out.parent) == []  # no model, no sidecar, no temporaries


def test_onnx_keep_failed_writes_an_unverified_artifact(official_checkpoint, tmp_path, capsys):
    from export.onnx import main

    out = tmp_path / "m.onnx"
    code = main(["--checkpoint", str(official_checkpoint), "--output", str(out), "--fidelity-images", "2",
                 "--atol", "1e-12", "--keep-failed"])
    assert code == 1 and "marked unverified" in capsys.readouterr().err
    assert _final_names(tmp_path) == ["m.json", "m.onnx"]
    meta = read_metadata(out)
    assert not meta.verified and meta.fidelity.kept_failed and not meta.fidelity.passed
    assert any("tolerance 1e-12" in f for f in meta.fidelity.failures)
    _check_sidecar_hashes(meta, tmp_path)
    assert read_onnx_metadata(out) == meta.replace(artifact_sha256={})  # the file says so too
    from emonext_edge import Runtime

    with Runtime(out) as rt:
        assert rt.metadata.fidelity.kept_failed and not rt.metadata.verified


def test_onnx_passing_export_records_gate_precision_and_hash(official_model, tmp_path):
    from export.onnx import export_onnx

    report = export_onnx(official_model, tmp_path / "m.onnx", verify_count=3)
    meta = report.artifacts[0].metadata
    assert (meta.format, meta.precision, meta.verified) == ("onnx", "fp32", True)
    assert meta.fidelity.figures["n"] == 3 and meta.fidelity.thresholds["min_agreement"] == 0.99
    assert read_metadata(tmp_path / "m.onnx") == meta and meta.artifact_sha256["m.onnx"] == sha256_file(tmp_path / "m.onnx")
    _check_sidecar_hashes(meta, tmp_path)
    assert _final_names(tmp_path) == ["m.json", "m.onnx"]
    from emonext_edge import Runtime

    with Runtime(tmp_path / "m.onnx") as rt:  # the Runtime reads the same record (and checks the hash)
        assert rt.metadata == meta


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import export.{module} as mod
    def killed(*args, **kwargs):  # the artifact is staged; the gate has not run yet
        os.kill(os.getpid(), signal.SIGKILL)
    mod.gate_artifact = killed
    {call}
""")


def _run_killed(module: str, call: str) -> None:
    script = _KILL_SCRIPT.format(repo=str(REPO), module=module, call=call)
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]


def test_onnx_killed_mid_export_leaves_no_artifact_and_next_run_cleans(official_checkpoint, official_model, tmp_path):
    out = tmp_path / "m.onnx"
    _run_killed("onnx", textwrap.dedent(f"""
        from export.common import load_source
        mod.export_onnx(load_source({str(official_checkpoint)!r}).model, {str(out)!r}, verify_count=2)
    """))
    names = _final_names(tmp_path)
    assert "m.onnx" not in names and "m.json" not in names
    (leftover,) = [n for n in names if n.startswith(TEMP_PREFIX)]  # the killed run's stage, with the staged file
    assert (tmp_path / leftover / "m.onnx").is_file()
    from export.onnx import export_onnx

    export_onnx(official_model, out, verify_count=2)  # the next run into the same directory removes it
    assert _final_names(tmp_path) == ["m.json", "m.onnx"]


def test_stale_temporaries_of_live_processes_are_kept(tmp_path):
    mine = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-abc"
    mine.mkdir()
    dead = tmp_path / f"{TEMP_PREFIX}999999999-abc"
    dead.mkdir()
    (dead / "m.onnx").write_bytes(b"x")
    assert clean_stale_temps(tmp_path) == [dead]
    assert mine.is_dir() and not dead.exists()


def test_0_2_leftovers_are_removed_once_old(tmp_path):
    """0.2 left `.m.onnx.XXXX.tmp` files and `.emonext.XXXXXXXX` IR folders that nothing removed."""
    old_file = tmp_path / ".m.onnx.ab12cd34.tmp"
    old_file.write_bytes(b"half an onnx")
    old_dir = tmp_path / ".emonext.k2j4h5g6"
    old_dir.mkdir()
    (old_dir / "emonext.xml").write_text("<net/>")
    fresh = tmp_path / ".n.onnx.zz99yy88.tmp"  # could be a 0.2 run still writing: left alone
    fresh.write_bytes(b"x")
    keep = tmp_path / ".config"  # an unrelated hidden folder
    keep.mkdir()
    (keep / "settings").write_text("x")
    past = 3600 * 2
    for p in (old_file, old_dir):
        os.utime(p, (p.stat().st_atime - past, p.stat().st_mtime - past))
    assert sorted(clean_stale_temps(tmp_path)) == sorted([old_file, old_dir])
    assert fresh.exists() and keep.is_dir()


# --------------------------------------------------------------------------- export.openvino


@pytest.fixture(scope="module")
def verified_onnx(official_model, tmp_path_factory) -> Path:
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("contract_onnx") / "src.onnx"
    export_onnx(official_model, path, verify_count=2)
    return path


def test_ir_gate_failure_exits_1_and_writes_nothing(verified_onnx, tmp_path, capsys):
    pytest.importorskip("openvino")
    from export.openvino import main

    out = tmp_path / "ir"
    code = main(["--onnx", str(verified_onnx), "--output", str(out), "--fidelity-images", "4", "--atol", "1e-12"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "emonext.xml not written" in err[0]
    assert _final_names(out) == []


def test_ir_killed_mid_export_leaves_no_artifact_and_next_run_cleans(verified_onnx, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "ir"
    _run_killed("openvino", f"mod.export_ir(None, {str(out)!r}, onnx={str(verified_onnx)!r})")
    assert not [n for n in _final_names(out) if not n.startswith(TEMP_PREFIX)]
    from export.openvino import IRExportOptions, export_ir

    export_ir(None, out, IRExportOptions(fidelity=_few_images()), onnx=verified_onnx)
    assert _final_names(out) == ["emonext.bin", "emonext.json", "emonext.xml"]


def _few_images():
    from export.fidelity import FidelityOptions

    return FidelityOptions(images=4)


def test_fp16_and_int8_ir_state_precision_gate_and_hash(verified_onnx, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces
    from export.nncf_quantize import QuantizeOptions
    from export.openvino import IRExportOptions, export_ir

    calib = preprocess(list(synthetic_faces(8)))
    options = IRExportOptions(precisions=("fp32", "fp16", "int8"), quantize=QuantizeOptions(subset_size=8),
                              fidelity=_few_images().__class__(images=4, keep_failed=True))
    result = export_ir(None, tmp_path, options, onnx=verified_onnx, calib=calib)
    gates = {a.metadata.precision: a.metadata.fidelity for a in result.artifacts}
    assert [a.path.name for a in result.artifacts] == ["emonext.xml", "emonext_fp16.xml", "emonext_int8.xml"]
    expected = {"emonext.xml": ("fp32", "f32"), "emonext_fp16.xml": ("fp16", "f32"), "emonext_int8.xml": ("int8", "f32")}
    for name, (precision, inference) in expected.items():
        xml = tmp_path / name
        meta = read_metadata(xml)
        assert (meta.format, meta.precision, meta.inference_precision) == ("openvino-ir", precision, inference)
        # no --fidelity-data: the gate runs on the calibration images and says they are not held out
        assert meta.fidelity.figures["n"] == 8 and "not held out" in meta.fidelity.data
        assert set(meta.artifact_sha256) == {xml.name, xml.with_suffix(".bin").name}
        _check_sidecar_hashes(meta, tmp_path)
        assert read_ir_metadata(xml) == meta.replace(artifact_sha256={})  # rt_info == sidecar minus the hash
        assert gates[precision] == meta.fidelity
    int8 = read_metadata(tmp_path / "emonext_int8.xml")
    assert int8.quantization.quantizer == "nncf" and int8.quantization.stn_in_float
    assert int8.quantization.calibration["images"] == 8 and int8.quantization.options["subset_size"] == 8
    assert int8.fidelity.reference.startswith("FP32 IR emonext.xml")
    fp32 = read_metadata(tmp_path / "emonext.xml")
    assert fp32.verified and fp32.fidelity.thresholds["atol"] == 1e-3
    assert fp32.fidelity.reference.startswith("source ONNX src.onnx")
    assert not [n for n in _final_names(tmp_path) if n.startswith(".")]


# --------------------------------------------------------------------------- FP16 / Q/DQ ONNX


def test_fp16_and_qdq_onnx_state_precision_gate_and_hash(verified_onnx, official_io, tmp_path):
    pytest.importorskip("onnxconverter_common")
    pytest.importorskip("nncf")
    from export.fidelity import FidelityOptions
    from export.fp16_onnx import export_fp16_onnx
    from export.quantize_onnx import export_qdq_onnx

    images = official_io["inputs"].astype(np.float32)
    fp16 = export_fp16_onnx(verified_onnx, tmp_path / "m.fp16.onnx", FidelityOptions(), images=images,
                            data_desc="golden inputs")
    qdq = export_qdq_onnx(verified_onnx, images, tmp_path / "m.qdq.onnx", FidelityOptions(keep_failed=True),
                          images=images, data_desc="golden inputs", calibration_desc="golden inputs")
    for result, precision in ((fp16, "fp16-mixed"), (qdq, "int8-qdq")):
        meta = read_metadata(result.path)
        assert meta == result.metadata and meta.precision == precision and meta.format == "onnx"
        assert meta.fidelity.data == "golden inputs" and meta.fidelity.reference.startswith("FP32 ONNX src.onnx")
        assert meta.source["onnx_sha256"] == sha256_file(verified_onnx)
        _check_sidecar_hashes(meta, tmp_path)
        assert read_onnx_metadata(result.path) == meta.replace(artifact_sha256={})
    assert fp16.metadata.verified
    assert qdq.metadata.quantization.quantizer == "nncf" and qdq.metadata.quantization.calibration["images"] == len(images)


def test_derived_onnx_gate_failure_raises_and_writes_nothing(verified_onnx, official_io, tmp_path):
    """A derived model that computes something else (weights zeroed) fails the gate: nothing written."""
    import onnx
    from onnx import numpy_helper

    from export.fidelity import FidelityOptions
    from export.quantize_onnx import derive_onnx

    def broken(staged: Path) -> None:
        model = onnx.load(str(verified_onnx))
        for init in model.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size >= 64:
                init.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
        onnx.save(model, str(staged))

    images = official_io["inputs"].astype(np.float32)
    with pytest.raises(VerificationError, match="m.bad.onnx not written"):
        derive_onnx(verified_onnx, tmp_path / "m.bad.onnx", broken, {"precision": "fp32"}, FidelityOptions(),
                    images=images, data_desc="golden inputs")
    assert _final_names(tmp_path) == []


def test_sidecar_is_valid_json_with_schema_version(verified_onnx):
    data = json.loads(verified_onnx.with_suffix(".json").read_text())
    assert data["schema_version"] == 2 and data["format"] == "onnx" and data["fidelity"]["passed"] is True


@pytest.mark.parametrize("raised, code, text", [
    (None, 0, ""),
    (VerificationError("fidelity gate failed: m.onnx not written"), 1, "error: fidelity gate failed"),
    (FileNotFoundError("x.pt: checkpoint not found"), 2, "error: x.pt: checkpoint not found"),
    ("missing", 3, "done here (CPU steps verified); next, on the device: python -m export.tensorrt --onnx exports/m.onnx"),
])
def test_exit_code_contract(raised, code, text, capsys):
    from export.pipeline import TargetRuntimeMissing, exporter_cli

    @exporter_cli
    def main(argv=None):
        if raised == "missing":
            raise TargetRuntimeMissing("TensorRT is not installed here", ["exports/m.onnx"],
                                       "python -m export.tensorrt --onnx exports/m.onnx")
        if raised is not None:
            raise raised
        return 0

    assert main([]) == code
    err = capsys.readouterr().err.strip().splitlines()
    if code == 3:  # an expected outcome, not an error: the situation, then the next step on the last line
        assert len(err) == 2 and not any(line.startswith("error:") for line in err), err
        assert err[0].startswith("TensorRT is not installed here; verified here and committed: exports/m.onnx")
        assert err[-1] == text
    else:
        assert (err == []) if code == 0 else (len(err) == 1 and text in err[0])


def test_openvino_missing_exits_3(monkeypatch, tmp_path, capsys):
    """Without OpenVINO the IR exporter says so with exit code 3 (simulated: the import fails)."""
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    from export.openvino import main

    assert main(["--output", str(tmp_path / "ir")]) == 3
    assert "OpenVINO is not installed" in capsys.readouterr().err
