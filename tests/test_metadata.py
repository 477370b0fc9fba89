"""ArtifactMetadata: typed record, 0.2 compatibility, one writer/reader per carrier."""

from __future__ import annotations

import json

import pytest

from emonext_edge.errors import ModelFileError
from emonext_edge.metadata import (
    SCHEMA_VERSION,
    ArtifactMetadata,
    GateResult,
    Quantization,
    TensorRTInfo,
    read_engine_manifest,
    read_ir_metadata,
    read_metadata,
    read_onnx_metadata,
    read_sidecar_metadata,
    write_engine_manifest,
    write_ir_metadata,
    write_onnx_metadata,
    write_sidecar,
)

LABELS = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]


def _full_record() -> ArtifactMetadata:
    return ArtifactMetadata(
        format="openvino-ir",
        precision="int8",
        inference_precision="f32",
        labels=list(LABELS),
        architecture={"name": "atto", "depths": [2, 2, 6, 2], "dims": [40, 80, 160, 320]},
        source={"checkpoint": "m.pt", "sha256": "ab" * 32, "weights": "ema"},
        quantization=Quantization("nncf", {"preset": "performance", "subset_size": 300},
                                  {"description": "300 images from train", "images": 300}, stn_in_float=True),
        stn_mode="native",
        block_layout="channels_first",
        opset=17,
        batch="dynamic",
        input_name="input",
        output_name="logits",
        input_shape=["batch", 3, 224, 224],
        fidelity=GateResult(True, "FP32 IR", "openvino, CPU, f32", "300 labeled images",
                            {"agreement": 0.993, "drop_pp": 0.1}, {"min_agreement": 0.99, "max_drop_pp": 0.5}),
        artifact_sha256={"m.xml": "00" * 32, "m.bin": "11" * 32},
        extra={"future_key": {"x": 1}},
    )


def test_dict_round_trip_keeps_every_field():
    meta = _full_record()
    back = ArtifactMetadata.from_dict(json.loads(meta.to_json()))
    assert back == meta
    assert back.schema_version == SCHEMA_VERSION and back.verified and back.source_sha256 == "ab" * 32
    assert "artifact_sha256" not in meta.to_dict(embedded=True)


def test_0_2_onnx_sidecar_loads():
    """A sidecar as export.onnx 0.2 wrote it (format_version 1, 'verification' figures)."""
    old = {
        "format_version": 1, "package": "emonext-edge", "package_version": "0.2.0", "labels": LABELS,
        "preprocessing": {"crop": {"size": 224}}, "architecture": {"depths": [1, 1, 2, 1], "name": "custom"},
        "source": {"checkpoint": "x.pt", "sha256": "cd" * 32, "weights": "ema"}, "format": "onnx",
        "stn_mode": "native", "block_layout": "channels_last", "opset": 17, "batch": "dynamic",
        "input_name": "input", "output_name": "logits", "input_shape": ["batch", 3, 224, 224], "precision": "fp32",
        "verification": {"images": "16 deterministic synthetic images", "reference": "PyTorch", "runtime": "ORT",
                         "max_abs_diff": 1e-5, "argmax_agreement": 1.0, "atol": 1e-4},
    }
    meta = ArtifactMetadata.from_dict(old)
    assert (meta.format, meta.precision, meta.opset, meta.labels) == ("onnx", "fp32", 17, LABELS)
    assert meta.fidelity.passed and meta.fidelity.data.startswith("16 deterministic")
    assert meta.fidelity.figures["max_abs_diff"] == 1e-5 and meta.source_sha256 == "cd" * 32
    assert meta.extra == {}  # every 0.2 key is mapped onto a field


def test_0_2_ir_and_qdq_quantization_load():
    ir = {"labels": LABELS, "format": "openvino-ir", "precision": "int8", "inference_precision": "f32",
          "quantization": {"tool": "nncf", "preset": "performance", "subset_size": 300, "accuracy_control": False,
                           "calibration": "300 calibration images from x", "stn_in_float": True}}
    meta = ArtifactMetadata.from_dict(ir)
    assert meta.quantization.quantizer == "nncf" and meta.quantization.stn_in_float
    assert meta.quantization.options["subset_size"] == 300
    assert meta.quantization.calibration == {"description": "300 calibration images from x"}
    qdq = ArtifactMetadata.from_dict({"labels": LABELS, "format": "onnx", "precision": "int8-qdq", "quantizer": "ort"})
    assert qdq.quantization.quantizer == "ort" and qdq.precision == "int8-qdq"


def test_0_2_engine_manifest_is_read_as_the_engine(tmp_path):
    """0.2 manifests were the FP32 ONNX sidecar plus 'tensorrt': they said format onnx, fp32."""
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    (tmp_path / "m.json").write_text(json.dumps({
        "format_version": 1, "labels": LABELS, "format": "onnx", "precision": "fp32",
        "tensorrt": {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "precision": "int8",
                     "profile": {"min": [1, 3, 224, 224], "opt": [1, 3, 224, 224], "max": [8, 3, 224, 224]},
                     "int8_mode": "explicit"},
    }))
    meta = read_metadata(engine)
    assert (meta.format, meta.precision) == ("tensorrt-engine", "int8")
    assert meta.tensorrt.profile_shapes["max"] == [8, 3, 224, 224] and meta.tensorrt.details["int8_mode"] == "explicit"


def test_engine_manifest_round_trip_and_refusals(tmp_path):
    engine = tmp_path / "e.engine"
    meta = ArtifactMetadata(format="tensorrt-engine", precision="fp16", labels=list(LABELS),
                            tensorrt=TensorRTInfo("10.3.0", "Orin", "8.7", {"min": [1, 3, 224, 224]}, {"dla_core": None}),
                            fidelity=GateResult(True), artifact_sha256={"e.engine": "aa" * 32})
    write_engine_manifest(engine, meta)
    assert read_engine_manifest(engine) == meta
    with pytest.raises(ModelFileError, match="tensorrt section"):
        write_engine_manifest(engine, meta.replace(tensorrt=None))
    with pytest.raises(ModelFileError, match="format 'tensorrt-engine'"):
        write_engine_manifest(engine, meta.replace(format="onnx"))


def test_onnx_props_carrier_round_trip(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]))
    model.metadata_props.add(key="foreign", value="kept")
    meta = _full_record().replace(format="onnx", precision="fp16-mixed")
    write_onnx_metadata(model, meta)
    write_onnx_metadata(model, meta)  # rewriting replaces, never duplicates
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert [p.key for p in model.metadata_props].count("emonext.labels") == 1
    assert {p.key: p.value for p in model.metadata_props}["foreign"] == "kept"
    embedded = read_onnx_metadata(path)
    assert embedded == meta.replace(artifact_sha256={})  # embedded carriers hold no hash of themselves
    assert read_metadata(path) == embedded  # no sidecar: the one reader falls back to the props
    write_sidecar(path, meta)
    assert read_metadata(path) == meta and read_sidecar_metadata(path) == meta


def test_ir_rt_info_carrier_round_trip(tmp_path):
    ov = pytest.importorskip("openvino")
    import numpy as np

    param = ov.opset13.parameter([1, 2], np.float32, name="x")
    model = ov.Model([ov.opset13.relu(param)], [param], "m")
    xml = tmp_path / "m.xml"
    ov.save_model(model, str(xml))
    meta = _full_record()
    write_ir_metadata(xml, meta)
    write_ir_metadata(xml, meta.replace(precision="fp16"))  # replaces the section
    got = read_ir_metadata(xml)
    assert got == meta.replace(precision="fp16", artifact_sha256={})
    loaded = ov.Core().read_model(str(xml))  # OpenVINO still reads the edited XML and sees the section
    assert json.loads(loaded.get_rt_info(["emonext", "precision"]).astype(str)) == "fp16"


@pytest.mark.parametrize("bad, message", [
    ({}, "no 'labels'"),
    ({"labels": "Happy"}, "no 'labels'"),
    ({"labels": LABELS, "source": "x.pt"}, "'source' must be an object"),
])
def test_malformed_records_name_the_problem(bad, message):
    with pytest.raises(ModelFileError, match=message):
        ArtifactMetadata.from_dict(bad, "x.json")


def test_writer_validation():
    with pytest.raises(ModelFileError, match="format must be one of"):
        ArtifactMetadata(labels=LABELS, precision="fp32").validate("m")
    with pytest.raises(ModelFileError, match="precision is not set"):
        ArtifactMetadata(labels=LABELS, format="onnx").validate("m")
