"""The preprocessing spec is data: every target derives from it, and changing it once changes them all.

The default spec is checked against the numbers it replaces (PIL's, torchvision's, the official STN's);
a different spec (crop 112 after resizing to 120, so another crop ratio too; inputs scaled to [-1, 1])
is built end to end with the seeded atto model: ONNX export (gated), Runtime, DeepStream configs and
box rewrite, Triton configs and its python preprocessing model, and the preprocessing itself all follow it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from emonext_edge.preprocess import (
    CROP_SIZE,
    INPUT_SHAPE,
    PREPROCESSING_SPEC,
    RESIZE_SHORTER,
    SPEC,
    PreprocessSpec,
    luma_fixed_point,
    preprocess,
    preprocess_one,
    spec_of,
)

REPO = Path(__file__).resolve().parents[1]
#: a spec that differs from the trained one in every number a target derives
OTHER = SPEC.replace(resize_shorter=120, crop_size=112, scale=2.0 / 255.0, offset=127.5)
assert OTHER.crop_ratio != SPEC.crop_ratio  # (112/118 would equal 224/236)

#: 0.3's PREPROCESSING_SPEC, as 0.3 artifacts recorded it (prose)
PROSE_03 = {
    "color": "grayscale (PIL ITU-R 601-2 luma: L = R*299/1000 + G*587/1000 + B*114/1000)",
    "resize": {"shorter_side": 236, "interpolation": "bilinear (PIL-exact, antialiased)"},
    "crop": {"size": 224, "mode": "center (ten-crop for the official test protocol)"},
    "scale": "x / 255 -> [0, 1]",
    "normalize": None,
    "channels": "gray repeated to 3",
    "layout": "NCHW float32",
    "input_shape": [3, 224, 224],
}


def _faces(count: int = 3, seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (150 + 13 * i, 131 + 7 * i, 3), dtype=np.uint8) for i in range(count)]


# --------------------------------------------------------------------------- the spec itself


def test_the_record_is_the_spec_and_reads_back():
    assert PREPROCESSING_SPEC == SPEC.to_dict()
    assert json.loads(json.dumps(PREPROCESSING_SPEC)) == PREPROCESSING_SPEC  # JSON types only
    assert PreprocessSpec.from_dict(json.loads(json.dumps(OTHER.to_dict()))) == OTHER
    assert PreprocessSpec.from_dict(PROSE_03) == SPEC  # 0.3 artifacts keep working
    assert spec_of({"labels": ["a"]}) == SPEC and spec_of({"preprocessing": OTHER.to_dict()}) == OTHER
    deepstream_03 = {"where": "DeepStream nvinfer (not the Runtime: use the plain ONNX there)", "crop": "object box ...",
                     "scale": "net-scale-factor 0.0039215697906911373, offsets 0", "input_shape": ["batch", 3, 224, 224]}
    assert spec_of({"preprocessing": deepstream_03}) == SPEC  # 0.3 DeepStream sidecars still open


def test_module_constants_derive_from_the_spec():
    assert (RESIZE_SHORTER, CROP_SIZE, INPUT_SHAPE) == (SPEC.resize_shorter, SPEC.crop_size, SPEC.input_shape)
    assert (SPEC.resize_shorter, SPEC.crop_size, SPEC.channels) == (236, 224, 3)  # torchvision's Resize/CenterCrop
    assert luma_fixed_point(SPEC.luma_weights) == (19595, 38470, 7471)  # Pillow's Convert.c L24 weights
    assert np.float32(255.0) == np.float32(1.0 / SPEC.scale)  # ToTensor divides by exactly 255


def test_the_model_stn_geometry_follows_the_spec():
    torch = pytest.importorskip("torch")
    from emonext_edge.model import build_model, stn_features

    assert stn_features(SPEC.crop_size) == 10 * 52 * 52  # the official models.py fc_loc
    model = build_model("atto", spec=OTHER)
    assert model.fc_loc[0].in_features == stn_features(112) == 10 * 24 * 24
    assert model(torch.zeros(1, *OTHER.input_shape)).shape == (1, 7)
    with pytest.raises(ValueError, match=r"expects input \[N, 3, 112, 112\]"):
        model(torch.zeros(1, *SPEC.input_shape))
    with pytest.raises(ValueError, match="too small for the STN"):
        stn_features(15)


def test_a_checkpoint_for_another_crop_is_refused_by_name(tmp_path):
    torch = pytest.importorskip("torch")
    from emonext_edge.checkpoint import load_model
    from emonext_edge.errors import ArchitectureMismatchError
    from emonext_edge.model import seeded_model

    path = tmp_path / "atto_112.pt"
    torch.save({"model": seeded_model("atto", spec=OTHER).state_dict()}, path)
    with pytest.raises(ArchitectureMismatchError, match="fc_loc takes 5760 features, the preprocessing spec's "
                                                         "224x224 crop gives 27040"):
        load_model(path)


@pytest.mark.parametrize("changes, message", [
    ({"crop_size": 240}, "crop_size 240 is larger than resize_shorter 236"),
    ({"crop_size": 0}, "crop_size must be a positive integer"),
    ({"interpolation": "nearest"}, "interpolation must be one of"),
    ({"luma_weights": (0.3, 0.3, 0.3)}, "luma_weights must be 3 weights"),
    ({"scale": float("nan")}, "scale must be finite and > 0"),
])
def test_bad_specs_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        SPEC.replace(**changes)


def test_a_record_that_is_not_a_spec_names_what_is_missing():
    from emonext_edge.errors import ModelFileError

    with pytest.raises(ValueError, match="missing or malformed 'crop'"):
        PreprocessSpec.from_dict({"version": 1, "resize": {"shorter_side": 236, "interpolation": "x"}})
    with pytest.raises(ModelFileError, match="^model.onnx: preprocessing record"):
        spec_of({"preprocessing": {"version": 1}}, "model.onnx")


def test_preprocess_follows_a_different_spec_exactly():
    """Not only the shape: PIL's own grayscale, Resize(120) and CenterCrop(112), then scale * (x - offset)."""
    Image = pytest.importorskip("PIL.Image")

    for face in _faces():
        out = preprocess_one(face, spec=OTHER)
        assert out.shape == OTHER.input_shape and out.dtype == np.float32
        gray = Image.fromarray(face[:, :, ::-1].copy()).convert("L")  # BGR in, like OpenCV
        w, h = gray.size
        size = (120, int(120 * h / w)) if w <= h else (int(120 * w / h), 120)
        resized = np.asarray(gray.resize(size, Image.BILINEAR))
        top, left = round((resized.shape[0] - 112) / 2.0), round((resized.shape[1] - 112) / 2.0)
        crop = resized[top : top + 112, left : left + 112].astype(np.float32)
        expected = (crop - np.float32(127.5)) / np.float32(255.0 / 2.0)
        assert np.array_equal(out[0], expected) and np.array_equal(out[0], out[2])
    assert preprocess(_faces(), spec=OTHER, ten_crop=True).shape == (3, 10, *OTHER.input_shape)


# --------------------------------------------------------------------------- every target follows


@pytest.fixture(scope="module")
def other_onnx(tmp_path_factory) -> Path:
    """The seeded atto model built for OTHER, exported to ONNX (through the gate, on synthetic faces)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxslim")
    from emonext_edge.model import seeded_model
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("other_spec") / "atto_112.onnx"
    export_onnx(seeded_model("atto", spec=OTHER), path, verify_count=4)
    return path


def test_onnx_export_and_runtime_follow_the_spec(other_onnx):
    import onnx

    from emonext_edge import Runtime
    from emonext_edge.metadata import read_metadata

    graph = onnx.load(str(other_onnx))
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 112, 112]
    meta = read_metadata(other_onnx)
    assert meta.preprocessing == OTHER.to_dict() and list(meta.input_shape) == ["batch", 3, 112, 112]
    with Runtime(other_onnx) as rt:
        assert rt.spec == OTHER
        assert len(rt.predict_batch(_faces())) == 3  # preprocessed by OTHER, run at 112 x 112
        with pytest.raises(ValueError, match=r"\[N>=1, 3, 112, 112\]"):
            rt.run(np.zeros((1, *SPEC.input_shape), np.float32))


def test_deepstream_follows_the_spec(other_onnx, tmp_path):
    import onnx

    from export.deepstream import export_deepstream, parse_ini

    out = export_deepstream(tmp_path / "ds", onnx_path=other_onnx)
    variant = onnx.load(str(out.output / "emonext_sgie.onnx"))
    dims = [d.dim_param or d.dim_value for d in variant.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 112, 112]
    sgie = parse_ini((out.output / "config_infer_secondary_emonext.txt").read_text())["property"]
    assert float(sgie["net-scale-factor"]) == OTHER.scale and sgie["offsets"] == "127.5;127.5;127.5"
    pre = parse_ini((out.output / "config_preprocess_emonext.txt").read_text())
    assert pre["property"]["processing-width"] == pre["property"]["processing-height"] == "112"
    assert pre["property"]["network-input-shape"].split(";")[1:] == ["3", "112", "112"]
    assert pre["user-configs"]["offsets"] == "127.5;127.5;127.5"
    assert out.metadata.preprocessing == OTHER.to_dict()
    sample = _load_module("deepstream_emonext_sample", REPO / "export" / "deepstream_sample" / "deepstream_emonext.py")
    assert sample.sgie_crop_ratio(out.output / "config_infer_secondary_emonext.txt") == OTHER.crop_ratio
    assert out.metadata.extra["deepstream"]["nvinfer_preprocessing"]["crop"].startswith(
        "object box (centre square of side min(w,h)*112/120")


def test_deepstream_box_geometry_follows_the_spec():
    from emonext_edge.deepstream_boxes import TRAINING_CROP_RATIO, nvinfer_scale_offset, rewrite_box

    assert TRAINING_CROP_RATIO == SPEC.crop_size / SPEC.resize_shorter
    assert nvinfer_scale_offset(SPEC) == (SPEC.scale, 0.0)
    scale, offset = nvinfer_scale_offset(SPEC, "limited")
    assert abs(scale * (235 - 16) - 1.0) < 1e-12 and offset == 16  # video range back to [0, 1]
    # a 200 px box keeps 200 * 224/236 = 189.8 px (each edge on the nearest even pixel: within 2 px)
    for spec in (SPEC, SPEC.replace(crop_size=100, resize_shorter=118)):
        _, _, width, height = rewrite_box(100, 100, 200, 200, 640, 480, crop_ratio=spec.crop_ratio)
        assert abs(width - 200 * spec.crop_ratio) <= 2 and abs(height - 200 * spec.crop_ratio) <= 2
    assert rewrite_box(100, 100, 200, 200, 640, 480) == rewrite_box(100, 100, 200, 200, 640, 480, crop_ratio=224 / 236)


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the sample imports neither gi nor pyds at module level
    return module


def _load_python_model(name: str, fake_pb: types.ModuleType):
    spec = importlib.util.spec_from_file_location(f"triton_{name}", REPO / "export" / "triton" / "python_models" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = fake_pb
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = previous
    return module


def test_triton_follows_the_spec(other_onnx, tmp_path):
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install -e '.[triton]')")
    from google.protobuf import json_format

    from export.triton import RepositoryOptions, write_repository
    from export.triton.repository import PARAM_PREPROCESSING, parse_config

    repo = tmp_path / "repo"
    write_repository([other_onnx], repo, RepositoryOptions(preprocess=True))
    classifier = parse_config((repo / "emonext" / "config.pbtxt").read_text())
    assert list(classifier.input[0].dims) == [3, 112, 112]
    pre = parse_config((repo / "emonext_preprocess" / "config.pbtxt").read_text())
    assert list(pre.output[0].dims) == [3, 112, 112]
    assert json.loads(pre.parameters[PARAM_PREPROCESSING].string_value) == OTHER.to_dict()

    # the python preprocessing model, initialised with that config as Triton passes it (JSON, proto field names)
    model = _load_python_model("preprocess", types.ModuleType("triton_python_backend_utils"))
    instance = model.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(json_format.MessageToDict(pre, preserving_proto_field_name=True))})
    assert instance.spec == OTHER
    face = _faces(1)[0]
    assert np.array_equal(instance._one(face), preprocess_one(face, spec=OTHER))
