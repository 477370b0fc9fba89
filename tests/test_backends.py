"""ONNX Runtime, OpenVINO and PyTorch backends against PyTorch on the same real faces.

Faces: the official fixture's FER2013 PrivateTest inputs (``official_io``) and FER2013 val
faces (``fer_val_faces``), through the official fixture model (small, fast).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _runtime_artifacts import onnx_artifact

from emonext_edge import Runtime
from emonext_edge.errors import ModelFileError
from emonext_edge.preprocess import preprocess

pytest.importorskip("torch")





@pytest.fixture(scope="module")
def real_batch(official_io, fer_val_faces):
    """9 official PrivateTest inputs + 7 FER2013 val faces (one per class)."""
    paths, _ = fer_val_faces
    return np.concatenate([official_io["inputs"], preprocess(paths[::5])])


def _torch_logits(model, batch):
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


def test_onnxruntime_matches_pytorch(onnx_path, official_model, official_io, real_batch):
    with Runtime(onnx_path, threads=1) as rt:
        logits = rt.run(real_batch)
        assert rt.info["backend"] == "onnxruntime"
        assert rt.info["provider"] == "CPUExecutionProvider"
        assert rt.info["threads"] == 1
        assert rt.labels == official_model.labels
    assert np.abs(logits - _torch_logits(official_model, real_batch)).max() <= 1e-4
    assert np.abs(logits[:9] - official_io["logits"]).max() <= 1e-4


def test_openvino_matches_pytorch_at_pinned_f32(ir_path, official_model, real_batch):
    with Runtime(ir_path, num_requests=2) as rt:
        logits = rt.run(real_batch)
        assert rt.info["backend"] == "openvino"
        assert rt.info["precision"] == "f32"  # read back from the compiled model
        assert rt.info["num_requests"] == 2
        assert rt.labels == official_model.labels
    assert np.abs(logits - _torch_logits(official_model, real_batch)).max() <= 1e-4


def test_torch_backend_reproduces_official_logits(official_checkpoint, official_io):
    with Runtime(official_checkpoint) as rt:
        assert rt.info["backend"] == "torch"
        logits = rt.run(official_io["inputs"])
        assert rt.metadata is not None and rt.metadata.labels == list(rt.labels)
    assert np.abs(logits - official_io["logits"]).max() <= 1e-4


def test_embedded_metadata_used_without_sidecar(onnx_path, ir_path, tmp_path):
    for src in (onnx_path, ir_path):
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        if src.suffix == ".xml":
            shutil.copy(src.with_suffix(".bin"), dst.with_suffix(".bin"))
        assert not dst.with_suffix(".json").exists()
        with Runtime(dst) as rt:
            assert rt.metadata is not None and rt.metadata.labels == list(rt.labels), src.suffix


def test_fixed_batch_artifact_is_split_and_padded(official_model, onnx_path, real_batch):
    fixed = onnx_artifact(official_model, onnx_path.parent, batch=4)
    with Runtime(fixed) as rt, Runtime(onnx_path) as dyn:
        assert (rt.info["min_batch"], rt.info["max_batch"]) == (4, 4)
        batch = real_batch[:10]  # 4 + 4 + 2 (padded to 4, trimmed)
        out = rt.run(batch)
        assert out.shape == (10, len(rt.labels))
        np.testing.assert_allclose(out, dyn.run(batch), atol=1e-5)
        assert rt.run(batch[:1]).shape == (1, len(rt.labels))


def test_openvino_static_batch_option(ir_path, real_batch, tmp_path):
    with Runtime(ir_path, batch=1) as one, Runtime(ir_path, batch=4) as four, Runtime(ir_path) as dyn:
        assert (one.info["min_batch"], one.info["max_batch"], one.info["batch"]) == (1, 1, 1)
        assert (four.info["max_batch"], dyn.info["max_batch"], dyn.info["batch"]) == (4, None, "dynamic")
        batch = real_batch[:6]  # batch=4: 4 + 2 padded to 4 and trimmed
        reference = dyn.run(batch)
        np.testing.assert_allclose(one.run(batch), reference, atol=1e-5)
        np.testing.assert_allclose(four.run(batch), reference, atol=1e-5)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="batch must be a positive integer"):
            Runtime(ir_path, batch=bad)
    import openvino as ov

    fixed = ov.Core().read_model(str(ir_path))
    fixed.reshape([2, 3, 224, 224])
    ov.save_model(fixed, str(tmp_path / "fixed2.xml"), compress_to_fp16=False)
    with pytest.raises(ValueError, match="fixed batch of 2; it cannot be compiled for batch=3"):
        Runtime(tmp_path / "fixed2.xml", batch=3)


def test_missing_bin_names_it(ir_path, tmp_path):
    xml = tmp_path / "lonely.xml"
    shutil.copy(ir_path, xml)
    with pytest.raises(ModelFileError, match=r"lonely\.bin"):
        Runtime(xml)


@pytest.mark.parametrize("suffix", [".onnx", ".xml"])
def test_model_file_of_wrong_kind(tmp_path, suffix):
    fake = tmp_path / f"photo{suffix}"
    fake.write_bytes(b"\xff\xd8\xff\xe0 this is a JPEG, not a model" * 10)
    fake.with_suffix(".bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError, match="photo"):
        Runtime(fake)


def test_unknown_suffix_and_missing_file(tmp_path):
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file kind"):
        Runtime(other)
    with pytest.raises(ModelFileError, match="no such model file"):
        Runtime(tmp_path / "absent.onnx")


def test_unavailable_devices_and_providers_are_named(onnx_path, ir_path):
    from emonext_edge.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="NoSuchExecutionProvider"):
        Runtime(onnx_path, providers=["NoSuchExecutionProvider"])
    import openvino as ov

    if "NPU" not in ov.Core().available_devices:
        with pytest.raises(BackendUnavailableError, match="device NPU"):
            Runtime(ir_path, device="NPU")
    with pytest.raises(ValueError, match="precision"):
        Runtime(ir_path, precision="int3")
    with pytest.raises(ValueError, match=r"the onnxruntime backend has no option\(s\) \['batch', 'hint'\]; it accepts"):
        Runtime(onnx_path, batch=1, hint="latency")


def test_truncated_bin_keeps_openvinos_reason(ir_path, tmp_path):
    xml = tmp_path / "cut.xml"
    shutil.copy(ir_path, xml)
    data = ir_path.with_suffix(".bin").read_bytes()
    xml.with_suffix(".bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match=r"cut\.xml: not a readable OpenVINO IR with cut\.bin \(Incorrect weights in bin file!\)"):
        Runtime(xml, verify=False)


def test_directory_as_model_path_is_named(onnx_path):
    with pytest.raises(ModelFileError, match=rf"{onnx_path.parent.name}: is a directory, not a model file.*\.onnx"):
        Runtime(onnx_path.parent)
