"""The export driver: one parser, the shared flags, the TARGETS registry, one ExportResult; the ORT INT8 target."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from export.driver import DEPRECATED_ALIASES, build_parser
from export.targets import TARGETS, ExportResult, Target, get_target

EXPORT = Path(__file__).resolve().parents[1] / "export"
SHARED_DATA_FLAGS = ("--calib", "--fidelity-data", "--fidelity-images", "--min-agreement", "--max-drop",
                     "--keep-failed", "--verbose")


def _options(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_registered_target_resolves_and_has_the_shared_flags(name):
    target = get_target(name)
    assert isinstance(target, Target) and target.name == name
    assert target.prog == f"python -m export.{TARGETS[name].split(':')[0].split('.')[-1]}"
    flags = _options(build_parser(target))
    shared = [f for f in SHARED_DATA_FLAGS if f != "--calib" or target.uses_calibration]
    assert set(shared) <= flags, f"{name} lacks {set(shared) - flags}"


def test_openvino_and_tensorrt_show_the_same_data_flags():
    def data_flags(name: str) -> set[str]:
        return {f for f in _options(build_parser(get_target(name)))
                if f in SHARED_DATA_FLAGS or f in DEPRECATED_ALIASES}

    assert data_flags("openvino") == data_flags("tensorrt") == set(SHARED_DATA_FLAGS) | set(DEPRECATED_ALIASES)


def test_no_private_parser_copies_in_export():
    """One parser class (export.driver.ExportParser); no module keeps its own ArgumentParser subclass."""
    offenders = []
    for path in EXPORT.rglob("*.py"):
        if path.name == "driver.py" or "deepstream_sample" in path.parts:
            continue  # the sample app runs on the device without this package
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("ArgumentParser" in ast.unparse(b) for b in node.bases):
                offenders.append(f"{path.name}:{node.name}")
    assert offenders == []


def test_unknown_target_names_the_known_ones():
    with pytest.raises(KeyError, match="known: onnx, openvino"):
        get_target("coreml")


def test_deprecated_alias_sets_the_new_option_and_warns_once(capsys):
    parser = build_parser(get_target("openvino"))
    args = parser.parse_args(["--calib-data", "a", "--val-data", "v", "--calib-data", "b"])
    assert args.calib == "b" and args.fidelity_data == "v"
    err = capsys.readouterr().err.splitlines()
    assert err.count("warning: --calib-data is deprecated and will be removed in the next release; use --calib") == 1
    assert sum("--val-data is deprecated" in line for line in err) == 1
    args = build_parser(get_target("onnx")).parse_args(["--verify-count", "3"])
    assert args.fidelity_images == 3


def test_alias_keeps_the_new_flags_type_check():
    from emonext_edge.errors import UsageError

    with pytest.raises(UsageError, match="verify-count"):
        build_parser(get_target("onnx")).parse_args(["--verify-count", "0"])


def test_export_result_passed_and_paths(tmp_path):
    from emonext_edge.metadata import ArtifactMetadata, GateResult
    from export.pipeline import CommitResult

    ok = ArtifactMetadata(format="onnx", precision="fp32", fidelity=GateResult(passed=True))
    bad = ArtifactMetadata(format="onnx", precision="int8", fidelity=GateResult(passed=False, failures=["x"]))
    result = ExportResult("t", [CommitResult([tmp_path / "a.onnx"], None, ok, True),
                                CommitResult([tmp_path / "b.onnx"], None, bad, False)])
    assert not result.passed and result.paths == [tmp_path / "a.onnx"] and result.path == tmp_path / "a.onnx"
    assert ExportResult("empty").passed and ExportResult("empty").path is None


# --------------------------------------------------------------------------- the ORT INT8 target


@pytest.fixture(scope="module")
def fp32_onnx(reference_checkpoint, tmp_path_factory) -> Path:
    from emonext_edge import load_model
    from export.fidelity import FidelityOptions
    from export.onnx import OnnxExportOptions, export_onnx

    out = tmp_path_factory.mktemp("driver") / "atto.onnx"
    export_onnx(load_model(reference_checkpoint), out, OnnxExportOptions(fidelity=FidelityOptions(images=4)))
    return out


def test_ort_int8_cli_builds_a_gated_qoperator_onnx(fp32_onnx, tmp_path):
    import onnx

    from emonext_edge import Runtime
    from emonext_edge.metadata import read_metadata
    from export.ort_int8 import main
    from export.stn_scope import onnx_stn_node_names

    out = tmp_path / "int8.onnx"
    code = main(["--onnx", str(fp32_onnx), "--output", str(out), "--calib-num", "16", "--fidelity-images", "16",
                 "--keep-failed"])
    meta = read_metadata(out)
    assert meta is not None and meta.format == "onnx" and meta.precision == "int8"
    assert meta.quantization.quantizer == "onnxruntime" and meta.quantization.options["format"] == "qoperator"
    assert meta.quantization.stn_in_float is True
    assert meta.fidelity is not None and meta.fidelity.reference.startswith("the FP32 ONNX")
    assert code == (0 if meta.fidelity.passed else 1)  # kept either way; a failed gate still exits 1
    assert meta.fidelity.kept_failed == (not meta.fidelity.passed)
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert "QLinearConv" in ops and "QuantizeLinear" in ops
    source_stn = onnx_stn_node_names(onnx.load(str(fp32_onnx)))
    by_name = {n.name: n.op_type for n in model.graph.node}
    assert all(name in by_name and not by_name[name].startswith("QLinear") for name in source_stn)
    with Runtime(out, backend="onnxruntime", providers=["CPUExecutionProvider"]) as rt:  # the existing backend
        assert rt.run(np.zeros((2, 3, 224, 224), np.float32)).shape == (2, len(meta.labels))


def test_ort_int8_failed_gate_writes_nothing_without_keep_failed(fp32_onnx, tmp_path, capsys):
    from export.ort_int8 import main

    out = tmp_path / "int8.onnx"
    code = main(["--onnx", str(fp32_onnx), "--output", str(out), "--calib-num", "8", "--fidelity-images", "8",
                 "--min-agreement", "1.0", "--max-drop", "0"])
    if code == 0:  # agreed on every image: nothing to refuse
        assert out.is_file()
    else:
        assert code == 1 and not out.exists() and not out.with_suffix(".json").exists()
        assert "not written" in capsys.readouterr().err


def test_ort_int8_refuses_a_quantized_stn():
    import onnx
    from onnx import helper

    from emonext_edge.errors import ExportError
    from export.ort_int8 import check_stn_untouched

    graph = helper.make_graph([helper.make_node("QLinearConv", ["x"], ["y"], name="stn.conv")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(ExportError, match="stn.conv"):
        check_stn_untouched(helper.make_model(graph), ["stn.conv"])
    with pytest.raises(ExportError, match="stn.fc"):
        check_stn_untouched(helper.make_model(graph), ["stn.fc"])  # removed


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "--onnx"), (["--onnx", "{tmp}/missing.onnx"], "no such file"),
     (["--onnx", "{src}", "--output", "{tmp}/x.txt"], ".onnx file name")],
)
def test_ort_int8_bad_input_exits_2(args, message, tmp_path, capsys):
    from export.ort_int8 import main

    src = tmp_path / "src.onnx"
    src.write_bytes(b"")
    assert main([a.format(tmp=tmp_path, src=src) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_run_target_returns_the_typed_result(fp32_onnx, tmp_path):
    from export.driver import run_target

    result = run_target("ort-int8", ["--onnx", str(fp32_onnx), "--output", str(tmp_path / "q.onnx"),
                                     "--calib-num", "8", "--fidelity-images", "8", "--keep-failed"])
    assert isinstance(result, ExportResult) and result.target == "ort-int8"
    assert result.path == tmp_path / "q.onnx" and result.path.is_file()
    [artifact] = result.artifacts
    assert artifact.sidecar is not None and artifact.sidecar.is_file()
    assert artifact.metadata.artifact_sha256.keys() == {"q.onnx"}
    assert result.passed == artifact.metadata.fidelity.passed


def test_latency_builds_registry_targets_with_their_cli_flags(tmp_path):
    """benchmarks/latency.py builds through the registry: every build it asks for parses as that target's CLI."""
    import sys

    sys.path.insert(0, str(EXPORT.parent / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.pop(0)
    builds = latency._registry_builds(tmp_path / "m.onnx", "calib.npz", untrained=True, quick=True)
    assert builds and {name for name, *_ in builds} <= set(TARGETS)
    assert {name for name, *_ in builds} == {n for n in TARGETS if get_target(n).benchmark is not None}
    assert "ort-int8" in {name for name, *_ in builds}
    for name, spec, argv in builds:
        args = build_parser(get_target(name)).parse_args([*argv, "--output", str(tmp_path / spec.file_name)])
        assert args.keep_failed and args.calib == "calib.npz" and spec.row.startswith(spec.backend)
    trained = latency._registry_builds(tmp_path / "m.onnx", None, untrained=False, quick=False)
    assert all("--keep-failed" not in argv for *_, argv in trained)  # a trained model's gate is enforced
