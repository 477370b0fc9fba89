"""OpenVINO IR export: FP32/FP16 IR, NNCF INT8 with the STN in float, metadata, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from emonext_edge.metadata import read_ir_metadata, read_metadata
from export.fidelity import FidelityOptions
from export.nncf_quantize import QuantizeOptions, quantize_int8
from export.openvino import IRExportOptions, export_ir, main
from export.openvino_convert import convert_source
from export.stn_scope import ov_stn_node_names as stn_node_names


def _by_precision(result) -> dict:
    """The typed result's artifacts by precision (one per IR)."""
    return {a.metadata.precision: a for a in result.artifacts}


def _small_onnx(tmp_path: Path) -> Path:
    """A small seeded EmoNeXt (official fixture widths) exported to ONNX, so no shared data is needed."""
    torch = pytest.importorskip("torch")
    from emonext_edge.model import EmoNeXt

    torch.manual_seed(0)
    model = EmoNeXt(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128)).eval()
    with torch.no_grad():  # a real (non-identity) warp
        last = model.fc_loc[2]
        assert isinstance(last, torch.nn.Linear)
        last.bias.copy_(torch.tensor([0.9, -0.2, 0.05, 0.2, 0.9, -0.05]))
    path = tmp_path / "small.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 224, 224),), str(path), opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
    )
    return path


def _ancestors(node) -> list:
    seen, stack, out = set(), [node], []
    while stack:
        n = stack.pop()
        if n.get_friendly_name() in seen:
            continue
        seen.add(n.get_friendly_name())
        out.append(n)
        stack.extend(p.get_source_output().get_node() for p in n.inputs())
    return out


def test_int8_keeps_whole_stn_in_float(tmp_path):
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces

    fp32 = convert_source(onnx=_small_onnx(tmp_path), trust_foreign=True).model
    stn = stn_node_names(fp32)
    kinds = {op.get_type_name() for op in fp32.get_ordered_ops() if op.get_friendly_name() in stn}
    # derived scope covers localization convs, fc_loc MatMuls, the grid and the sampler
    assert {"Convolution", "MatMul", "GridSample"} <= kinds, kinds
    calib = preprocess(list(synthetic_faces(8)))
    quantized = quantize_int8(fp32, calib, QuantizeOptions(subset_size=8))
    ops = quantized.get_ordered_ops()
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) > 10, "the backbone was not quantized"
    (sampler,) = [op for op in ops if op.get_type_name() == "GridSample"]
    upstream = [n.get_friendly_name() for n in _ancestors(sampler) if n.get_type_name() == "FakeQuantize"]
    assert upstream == [], f"FakeQuantize inside the STN: {upstream}"


def test_fp32_fp16_export_metadata_and_runtime(tmp_path, official_checkpoint, official_io):
    result = export_ir(official_checkpoint, tmp_path, IRExportOptions(precisions=("fp32", "fp16"), threads=2),
                       verify_images=official_io["inputs"])
    assert result.target == "openvino" and result.passed
    assert [a.path.name for a in result.artifacts] == ["emonext.xml", "emonext_fp16.xml"]
    assert result.paths == [a.path for a in result.artifacts] and all(a.committed for a in result.artifacts)
    fp32_xml, fp16_xml = tmp_path / "emonext.xml", tmp_path / "emonext_fp16.xml"
    for xml in (fp32_xml, fp16_xml):
        assert xml.is_file() and xml.with_suffix(".bin").is_file() and xml.with_suffix(".json").is_file()
    fp16 = _by_precision(result)["fp16"].metadata.fidelity
    assert fp16.passed and fp16.figures["agreement"] == 1.0
    assert fp16_xml.with_suffix(".bin").stat().st_size < 0.6 * fp32_xml.with_suffix(".bin").stat().st_size
    assert not list(tmp_path.glob(".*")), "temporary files left behind"

    # metadata lives in rt_info itself, not only in the sidecar
    fp16_xml.with_suffix(".json").unlink()
    meta = read_ir_metadata(fp16_xml)
    assert meta.precision == "fp16" and meta.architecture["dims"] == [16, 32, 64, 128]
    assert meta.source["sha256"] and meta.preprocessing["crop"]["size"] == 224
    # from a checkpoint the blocks are exported channels_first: no NCHW<->NHWC permutes in the IR
    assert meta.block_layout == _by_precision(result)["fp32"].metadata.block_layout == "channels_first"
    import openvino as ov

    from emonext_edge import Runtime

    ops = [op.get_type_name() for op in ov.Core().read_model(str(fp32_xml)).get_ordered_ops()]
    assert ops.count("Transpose") <= 1 and "GridSample" in ops  # the one left is the STN grid's
    with Runtime(fp32_xml, threads=2) as rt:
        np.testing.assert_allclose(rt.run(official_io["inputs"]), official_io["logits"], atol=1e-4)

    with Runtime(fp16_xml, threads=2) as rt:  # rt_info only: the sidecar was removed
        assert list(rt.labels) == meta.labels and rt.metadata.precision == "fp16"
        logits = rt.run(official_io["inputs"])
    np.testing.assert_allclose(logits, official_io["logits"], atol=2e-2)
    assert (logits.argmax(1) == official_io["preds"]).all()


@pytest.mark.slow
def test_int8_reference_model_fer2013_accuracy(tmp_path, reference_checkpoint, fer2013_root):
    options = IRExportOptions(  # the shipped quantization defaults (300 calibration images)
        precisions=("fp32", "int8"), quantize=QuantizeOptions(), val_data=str(fer2013_root), val_limit=300, threads=2,
        fidelity=FidelityOptions(keep_failed=True),
    )
    result = export_ir(reference_checkpoint, tmp_path, options, calib=fer2013_root / "train")
    int8 = _by_precision(result)["int8"]
    gate = int8.metadata.fidelity
    # figures of the gate itself (INT8 IR vs FP32 IR on 300 real val faces)
    assert gate.figures["drop_pp"] <= 1.0, gate
    assert gate.figures["agreement"] >= 0.97, gate
    meta = read_metadata(int8.path)
    assert meta.quantization.stn_in_float and meta.precision == "int8"
    assert meta.block_layout == "channels_first"


@pytest.mark.slow
def test_accuracy_controlled_int8_meets_its_drop_bound(tmp_path, reference_checkpoint, fer2013_root):
    """nncf.quantize_with_accuracy_control on 140 val faces: the gate (same images, f32) sees the bound held."""
    options = IRExportOptions(
        precisions=("fp32", "int8"), quantize=QuantizeOptions(subset_size=64), val_data=str(fer2013_root),
        val_limit=140, accuracy_control=True, threads=2, fidelity=FidelityOptions(max_drop_pp=0.5, keep_failed=True),
    )
    result = export_ir(reference_checkpoint, tmp_path, options, calib=fer2013_root / "train")
    int8 = _by_precision(result)["int8"]
    gate = int8.metadata.fidelity
    assert gate.figures["n"] == 140
    assert gate.figures["drop_pp"] <= 0.5 + 1e-9, gate
    meta = read_metadata(int8.path)
    assert meta.quantization.options["accuracy_control"] is True and meta.quantization.stn_in_float


def test_cli_fp32_from_onnx(tmp_path, capsys):
    onnx_path = _small_onnx(tmp_path)  # no EmoNeXt metadata: refused unless the user vouches for it
    out = tmp_path / "out"
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--name", "m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "carries no EmoNeXt metadata" in err[0] and "--trust-foreign" in err[0]
    assert not list(out.glob("*.xml"))
    labels = "a,b,c,d,e,f,g"
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--name", "m", "--labels", labels]) == 0
    assert (out / "m.xml").is_file() and (out / "m.bin").is_file()
    meta = read_ir_metadata(out / "m.xml")
    assert meta.source["onnx_sha256"] and meta.labels == labels.split(",")
    assert meta.fidelity.passed and meta.fidelity.reference.startswith("source ONNX small.onnx")
    stdout = capsys.readouterr().out
    assert f"wrote {out / 'm.xml'} (fp32, inference f32, " in stdout and "m.xml: gate PASSED" in stdout
    assert ".emonext-tmp" not in stdout
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--labels", "a,b"]) == 2
    assert "2 names given but" in capsys.readouterr().err


def test_onnx_export_with_matching_sha256_is_trusted_and_tampering_is_refused(tmp_path, official_model, capsys):
    from export.onnx import export_onnx

    src = tmp_path / "m.onnx"
    export_onnx(official_model, src, verify_count=2)
    assert main(["--onnx", str(src), "--output", str(tmp_path / "ir"), "--fidelity-images", "4"]) == 0
    meta = read_ir_metadata(tmp_path / "ir" / "emonext.xml")
    assert meta.source["trusted"] == "EmoNeXt metadata with a matching SHA-256"
    import export.openvino as ov_export

    with pytest.warns(DeprecationWarning, match="read_ir_metadata"):  # the 0.2 dict reader, until 0.5
        assert ov_export.read_ir_metadata(tmp_path / "ir" / "emonext.xml")["source"] == meta.source
    data = bytearray(src.read_bytes())
    data[-100] ^= 0xFF  # a flipped bit in the weights
    src.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["--onnx", str(src), "--output", str(tmp_path / "ir2")]) == 2
    assert "differs from the one its metadata records" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["afile/sub", "/proc/x"])
def test_output_where_a_directory_cannot_be_is_one_line_exit_2(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("a file")
    output = str(tmp_path / where) if not where.startswith("/") else where
    assert main(["--output", output]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --output ") and output in err[0]


def test_calib_data_smaller_than_subset_names_the_real_option(tmp_path, capsys):
    import cv2

    faces = tmp_path / "faces"
    faces.mkdir()
    from export.common import synthetic_faces

    for i, face in enumerate(synthetic_faces(3)):
        cv2.imwrite(str(faces / f"f{i}.png"), face)
    onnx_path = tmp_path / "x.onnx"
    assert main(["--onnx", str(onnx_path), "--output", str(tmp_path), "--int8", "--calib-data", str(faces)]) == 2
    err = capsys.readouterr().err
    assert "--subset-size 300 is larger than the data" in err and "--num" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--int8"], "calibration data"),
        (["--int8", "--calib", "missing.npz"], "missing.npz"),
        (["--calib", "somewhere"], "only make sense with --int8"),
        (["--accuracy-control"], "needs --int8"),
        (["--int8", "--subset-size", "0"], "--subset-size"),
        (["--name", "../evil"], "--name ../evil: expected a plain file name"),
        (["--name", "a/b"], "--name a/b: expected a plain file name"),
        (["--name", ""], "--name '': expected a plain file name"),
        (["--smooth-quant", "0.5"], "--smooth-quant only makes sense with --int8"),
        (["--int8", "--smooth-quant", "2"], "--smooth-quant 2.0: expected -1 (off) or an alpha in 0..1"),
        (["--int8", "--smooth-quant", "nan"], "--smooth-quant"),
        (["--val-limit", "0"], "--val-limit"),
    ],
)
def test_cli_bad_inputs_exit_2(tmp_path, capsys, args, message):
    onnx_path = tmp_path / "x.onnx"
    onnx_path.write_bytes(b"not used")
    assert main(["--onnx", str(onnx_path), "--output", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.xml"))


def test_onnx_that_is_json_text_is_one_line_exit_2(tmp_path, capsys):
    """onnx.load parses a .json file as a text ModelProto; its parse error spans lines: the CLI prints one."""
    bogus = tmp_path / "emonext.json"
    bogus.write_text('{"schema_version": 2}')
    assert main(["--onnx", str(bogus), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --onnx {bogus}: not a readable ONNX model") and err.count("\n") == 1


def test_wrong_calibration_data_is_rejected(tmp_path, capsys):
    with pytest.raises(Exception, match=r"shape \[4, 3, 100, 100\], expected \[N, 3, 224, 224\]"):
        export_ir(None, tmp_path, IRExportOptions(precisions=("fp32", "int8")),
                  calib=np.zeros((4, 3, 100, 100), np.float32))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--onnx", str(tmp_path / "x.onnx"), "--output", str(tmp_path), "--int8", "--calib-data", str(empty)]) == 2
    assert "error: " in capsys.readouterr().err
    bad = tmp_path / "calib.npz"
    np.savez(bad, images=np.zeros((4, 3, 100, 100), np.float32))
    assert main(["--onnx", str(tmp_path / "x.onnx"), "--output", str(tmp_path), "--int8", "--calib", str(bad)]) == 2
    assert "calib.npz" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.xml"))


def test_tiny_foreign_onnx_is_refused_even_when_trusted(tmp_path, capsys):
    """A two-node model is not an EmoNeXt: refused by shape before OpenVINO converts anything."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])], "g", [x], [y])
    tiny = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(tiny))
    for extra in ([], ["--trust-foreign"]):
        assert main(["--onnx", str(tiny), "--output", str(tmp_path / "out"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "tiny.onnx" in err[0] and "expected one [N, 3, 224, 224] input" in err[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_ir_never_replaces_the_sidecar_of_another_artifact(tmp_path, capsys):
    """``--onnx d/emonext.onnx --output d`` wrote the IR's record over d/emonext.json, the ONNX's sidecar: the ONNX
    then loaded under the IR's record (format openvino-ir) with its own hash unchecked. Refused before any work."""
    onnx_path, sidecar = tmp_path / "emonext.onnx", tmp_path / "emonext.json"
    onnx_path.write_bytes(b"an onnx")
    sidecar.write_text('{"format": "onnx"}')
    assert main(["--onnx", str(onnx_path), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --output {tmp_path}: {sidecar.name} is the sidecar of {onnx_path.name}")
    assert err.count("\n") == 1
    assert "--name" in err and sidecar.read_text() == '{"format": "onnx"}' and not list(tmp_path.glob("*.xml"))
