"""CPU side of the TensorRT pipeline: op check, FP16 / Q/DQ ONNX (STN kept FP32), the no-TensorRT CLI path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from emonext_edge import tensorrt_compat as compat
from export import trt_opcheck


def _one_node(op: str) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    return helper.make_model(helper.make_graph([helper.make_node(op, ["x", "g"], ["y"], name=f"my_{op}")], "g", [x], [y]))


def test_opcheck_flags_gridsample_on_82_and_affinegrid_everywhere():
    bad = trt_opcheck.check_model(_one_node("GridSample"), "8.2")
    assert [(b.node, b.op_type, b.added_in) for b in bad] == [("my_GridSample", "GridSample", (8, 5))]
    assert trt_opcheck.check_model(_one_node("GridSample"), "8.5") == []
    for version in compat.KNOWN_VERSIONS:
        (item,) = trt_opcheck.check_model(_one_node("AffineGrid"), compat.plan_for(version))
        assert item.added_in is None and "no TensorRT version" in str(item)


def test_opcheck_report_is_one_line_per_version_unless_verbose():
    nodes = [helper.make_node("GridSample", ["x", "g"], [f"y{i}"], name=f"gs{i}") for i in range(39)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], []))
    results = trt_opcheck.report(model, ["8.2", *compat.KNOWN_VERSIONS])
    lines = trt_opcheck.format_report(results)
    assert len(lines) == 5 and "39 unsupported node(s): GridSample x39 (supported from TensorRT 8.5)" in lines[0]
    assert all(line.endswith("all operators supported") for line in lines[1:])
    assert len(trt_opcheck.format_report(results, verbose=True)) == 5 + 39


@pytest.fixture(scope="module")
def official_onnx(official_model, tmp_path_factory):
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("trt") / "official.onnx"
    export_onnx(official_model, path, force=True)
    return path


def _ort(path):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda b: s.run(None, {s.get_inputs()[0].name: b})[0]


def test_fp16_onnx_agrees_and_keeps_stn_fp32(official_onnx, official_io, tmp_path):
    from export.fp16_onnx import convert_fp16, node_float_types
    from export.quantize_onnx import stn_node_names

    out = convert_fp16(official_onnx, tmp_path / "m.fp16.onnx")
    types = node_float_types(out)
    assert any(TensorProto.FLOAT16 in t for t in types.values())  # really converted
    stn = stn_node_names(out)
    assert "/GridSample" in stn
    assert all(types[n] <= {TensorProto.FLOAT} for n in stn), {n: types[n] for n in stn if types[n] - {1}}
    x = official_io["inputs"].astype(np.float32)
    a, b = _ort(official_onnx)(x), _ort(out)(x)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert np.abs(a - b).max() < 0.05
    _assert_no_record(out)


def _assert_no_record(artifact):
    """The raw transforms (convert_fp16, quantize_qdq) write no EmoNeXt record: the one writer is the
    export contract (export_fp16_onnx / export_qdq_onnx, see test_export_contract), which gates first."""
    import onnx

    from emonext_edge.metadata import sidecar_path

    assert not sidecar_path(artifact).exists()
    assert not [p.key for p in onnx.load(str(artifact)).metadata_props if p.key.startswith("emonext")]


def test_qdq_leaves_stn_unquantized(official_onnx, official_io, tmp_path):
    from export.quantize_onnx import check_stn_float, count_qdq, quantize_qdq, quantized_op_types, stn_node_names

    x = official_io["inputs"].astype(np.float32)
    for method in ("nncf", "ort"):
        out = quantize_qdq(official_onnx, x, tmp_path / f"m.{method}.onnx", method=method)
        assert count_qdq(out)["DequantizeLinear"] > 10
        assert {"Conv", "MatMul"} <= quantized_op_types(out)
        check_stn_float(out)  # raises if a DequantizeLinear feeds an STN node
        assert set(stn_node_names(out)) == set(stn_node_names(official_onnx))
        _assert_no_record(out)


@pytest.mark.slow
def test_qdq_accuracy_on_fer2013_val(reference_model, fer2013_root, tmp_path):
    """Reference model, 140 train images to calibrate, 210 val images (30/class) to score."""
    from conftest import fer_val_sample

    from emonext_edge.labels import IMAGEFOLDER_LABELS
    from emonext_edge.preprocess import preprocess
    from export.fidelity import fidelity_gate
    from export.onnx import export_onnx
    from export.quantize_onnx import quantize_qdq

    fp32 = tmp_path / "ref.onnx"
    export_onnx(reference_model, fp32, force=True)
    calib_files = [f for lab in IMAGEFOLDER_LABELS for f in sorted((fer2013_root / "train" / lab).glob("*.jpg"))[:20]]
    items = fer_val_sample(fer2013_root, 30)
    images, labels = preprocess([p for p, _ in items]), np.array([y for _, y in items])
    qdq = quantize_qdq(fp32, preprocess(calib_files), tmp_path / "ref.qdq.onnx", method="nncf")
    report = fidelity_gate(_ort(qdq), _ort(fp32), images, labels, min_agreement=0.97, max_drop_pp=2.0)
    print(report.summary())
    assert report.passed, report.summary()


def _no_tensorrt_here():
    if compat.installed_version() is not None:
        pytest.skip("TensorRT is installed here: this test covers machines without it")


@pytest.mark.slow
def test_cli_without_tensorrt_exits_3_with_the_file_for_the_device(official_checkpoint, official_io, tmp_path, capsys):
    """11.x --fp16 --int8: the plan's ONNX (Q/DQ INT8, FP16 elsewhere, opset 19) is made, gated on CPU,
    committed, and named in the next command; the output directory is created."""
    _no_tensorrt_here()
    from emonext_edge import Runtime
    from emonext_edge.metadata import read_metadata
    from export.quantize_onnx import check_stn_float, count_qdq
    from export.tensorrt import main

    out = tmp_path / "new" / "dir" / "m.engine"
    rc = main(["--checkpoint", str(official_checkpoint), "--fp16", "--int8", "--trt-version", "11.4.0",
               "--calib-num", "16", "--output", str(out)])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    # expected, not an error: the situation, then the next step (NNCF's bars come before them on stderr)
    assert rc == 3 and err[-2].startswith("TensorRT is not installed here"), captured.err
    assert "Statistics collection" not in captured.out, captured.out  # NNCF's bars never reach stdout
    assert not any(line.startswith("error:") for line in err), captured.err
    built = out.parent / "m.int8.qdq.fp16.onnx"
    assert err[-1] == (f"done here (CPU steps verified); next, on the device: "
                       f"python -m export.tensorrt --onnx {built.name} --fp16 --int8 --output m.engine"), captured.err
    assert "int8+fp16" in captured.out and "strongly typed" in captured.out
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.fp32.json", "m.fp32.onnx", "m.int8.qdq.fp16.json",
                                                            "m.int8.qdq.fp16.onnx"]
    meta = read_metadata(built)
    assert meta.precision == "int8-qdq-fp16" and meta.opset == 19 and meta.verified
    assert meta.artifact_sha256 and meta.quantization.stn_in_float
    model = onnx.load(str(built))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    inits = {i.name: i.data_type for i in model.graph.initializer}
    scales = [inits.get(n.input[1]) for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert count_qdq(model)["DequantizeLinear"] > 10 and set(scales) == {TensorProto.FLOAT16}
    check_stn_float(built)
    x = official_io["inputs"].astype(np.float32)
    with Runtime(out.parent / "m.fp32.onnx") as ref, Runtime(built) as rt:
        a, b = ref.run(x), rt.run(x)
    assert (a.argmax(1) == b.argmax(1)).all() and np.abs(a - b).max() < 0.25


@pytest.mark.tensorrt
def test_tensorrt_engine_builds_and_matches_onnxruntime(official_checkpoint, official_io, tmp_path):
    """Where TensorRT and a GPU exist: build an FP32 engine, run it through the Runtime, compare with ORT."""
    pytest.importorskip("pycuda", reason="needs pycuda and an NVIDIA GPU")
    import importlib.util

    from emonext_edge.tensorrt_compat import import_tensorrt

    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("needs TensorRT (no 'tensorrt' module installed)")
    import_tensorrt()  # installed but broken (library mismatch, missing symbol): a failure, not a skip
    import numpy as np
    import onnxruntime as ort

    from emonext_edge import Runtime
    from export.tensorrt import main

    out = tmp_path / "m.engine"
    assert main(["--checkpoint", str(official_checkpoint), "--output", str(out), "--max-batch", "4"]) == 0
    x = official_io["inputs"]
    session = ort.InferenceSession(str(tmp_path / "m.fp32.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with Runtime(out) as rt:
        assert rt.info["backend"] == "tensorrt" and rt.info["max_batch"] == 4
        got = rt.run(x)  # 9 images: split over the profile's max batch of 4
    assert np.abs(got - expected).max() < 2e-2  # TensorRT may use TF32 for "FP32" layers on Ampere+
    assert (got.argmax(1) == official_io["preds"]).all()
