"""export.deepstream (nvinfer ONNX variant, SGIE/app configs, labels, key check) and the box rewrite."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emonext_edge import deepstream_boxes as boxes

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("onnxruntime")


def _ort(path_or_bytes):
    import onnxruntime as ort

    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    session = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def exports(onnx_path, tmp_path_factory):
    """The official fixture model's ONNX exported for nvinfer, RGB (fp16) and gray (fp32, batch 4)."""
    from export.deepstream import SgieOptions, export_deepstream

    root = tmp_path_factory.mktemp("deepstream")
    color = export_deepstream(root / "color", onnx_path=onnx_path, options=SgieOptions())
    gray = export_deepstream(root / "gray", onnx_path=onnx_path,
                             options=SgieOptions(gray=True, batch=4, precision="fp32", gpu_id=1))
    return {"color": color, "gray": gray}


# --------------------------------------------------------------------------- ONNX variant numerics


def test_gray_variant_matches_softmax_of_source(exports, onnx_path):
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces

    x = preprocess(list(synthetic_faces(5, seed=11)))
    source = _ort(onnx_path)
    variant = _ort(exports["gray"].output / "emonext_sgie.onnx")
    probs = variant(x[:, :1])
    assert probs.shape == (5, 7)
    expected = _softmax(source(x).astype(np.float64))
    assert np.abs(probs - expected).max() <= 1e-5
    assert (probs.argmax(1) == expected.argmax(1)).all()


def test_color_variant_computes_pil_luma_in_rgb_order(exports, onnx_path):
    from export.deepstream import color_test_images, luma

    rgb = color_test_images(4, seed=5)
    source = _ort(onnx_path)
    variant = _ort(exports["color"].output / "emonext_sgie.onnx")
    probs = variant(rgb)
    assert np.abs(probs - _softmax(source(luma(rgb)).astype(np.float64))).max() <= 1e-5
    # channel order matters (model-color-format=0 is RGB): BGR input gives another luma
    swapped = variant(rgb[:, ::-1].copy())
    assert np.abs(swapped - probs).max() > 1e-4


def test_variant_graph_io(exports):
    import onnx

    for kind, channels in (("color", 3), ("gray", 1)):
        model = onnx.load(str(exports[kind].output / "emonext_sgie.onnx"))
        dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in model.graph.input]
        assert dims == [["batch", channels, 224, 224]]
        assert [o.name for o in model.graph.output] == ["probs"]
        assert model.graph.node[-1].op_type == "Softmax"
        meta = {p.key: p.value for p in model.metadata_props}
        assert json.loads(meta["emonext.deepstream"])["options"]["gray"] is (kind == "gray")
        assert json.loads(meta["emonext.input_shape"]) == ["batch", channels, 224, 224]
        assert json.loads(meta["emonext.fidelity"])["passed"] is True
        assert "emonext.labels" in meta  # the source metadata travels along


def test_checkpoint_source_and_cli(official_checkpoint, tmp_path, capsys):
    """--deepstream 6.3 (TensorRT 8.5): the checkpoint is exported at opset 16 (no LayerNormalization), the
    operator check passes for 8.5, and the FP16 config pins the STN's layers to FP32."""
    import onnx

    from export import trt_opcheck
    from export.deepstream import main, parse_ini
    from export.stn_scope import onnx_stn_node_names

    out = tmp_path / "ds"
    assert main(["--checkpoint", str(official_checkpoint), "--output", str(out), "--gray", "--batch", "2",
                 "--deepstream", "6.3", "--fidelity-images", "16"]) == 0
    text = capsys.readouterr().out
    assert "PyTorch FP32 (checkpoint)" in text and "emonext_sgie.onnx_b2_gpu0_fp16.engine" in text
    assert "DeepStream 6.3" in text and "TensorRT 8.5.2.2" in text
    model = onnx.load(str(out / "emonext_sgie.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 16
    ops = {n.op_type for n in model.graph.node}
    assert "LayerNormalization" not in ops and "GridSample" in ops
    assert trt_opcheck.check_model(model, "8.5.2") == []
    prop = parse_ini((out / "config_infer_secondary_emonext.txt").read_text())["property"]
    pinned = [entry.split(":") for entry in prop["layer-device-precision"].split(";")]
    assert all(len(e) == 3 and e[1:] == ["fp32", "gpu"] for e in pinned)
    assert [e[0] for e in pinned] == onnx_stn_node_names(model)  # the rule export.tensorrt uses, on this file
    grid = next(n.name for n in model.graph.node if n.op_type == "GridSample")
    assert grid in {e[0] for e in pinned}
    target = json.loads((out / "emonext_sgie.json").read_text())["deepstream"]["target"]
    assert target["tensorrt"] == "8.5.2.2" and target["onnx_opset"] == 16 and target["deepstream"]["jetpack"] == "5.1.2"
    manifest = json.loads((out / "emonext_sgie.json").read_text())
    assert manifest["fidelity"]["passed"] and manifest["fidelity"]["figures"]["max_abs_prob_diff"] <= 1e-5
    assert manifest["source"]["weights"] == "ema" and manifest["output_name"] == "probs"
    assert set(manifest["artifact_sha256"]) == {"emonext_sgie.onnx", "config_infer_secondary_emonext.txt",
                                                 "labels_emonext.txt", "deepstream_app_emonext.txt",
                                                 "deepstream_emonext.py",
                                                 "config_preprocess_emonext.txt"}
    from emonext_edge.fileio import sha256_file

    for name, digest in manifest["artifact_sha256"].items():
        assert sha256_file(out / name) == digest
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_wrong_channel_order_fails_verification_with_exit_1(onnx_path, tmp_path, monkeypatch, capsys):
    """A BGR luma in the graph (a real bug class) must be caught on the colour images: exit 1, no files."""
    import export.deepstream as ds

    monkeypatch.setattr(ds, "LUMA_WEIGHTS", tuple(reversed(ds.LUMA_WEIGHTS)))
    out = tmp_path / "bad"
    assert ds.main(["--onnx", str(onnx_path), "--output", str(out), "--fidelity-images", "8"]) == 1
    err = capsys.readouterr().err
    assert "fidelity gate failed" in err and "colour images" in err
    assert not (out / "emonext_sgie.onnx").exists() and not (out / "config_infer_secondary_emonext.txt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_target_yields_one_candidate_gated_by_the_shared_gate(onnx_path, tmp_path):
    """The driver builds DeepStream: one committed artifact (configs first, the nvinfer ONNX last), its gate the
    shared one (thresholds from --min-agreement/--max-drop, figures of fidelity_gate) plus the named colour check."""
    from export.deepstream import DeepStreamExport, DeepStreamTarget, export_deepstream
    from export.driver import build_parser, run_target
    from export.pipeline import Stage
    from export.targets import Candidate, ExportResult, get_target

    target = get_target("deepstream")
    assert isinstance(target, DeepStreamTarget)
    out = tmp_path / "ds"
    result = run_target("deepstream", ["--onnx", str(onnx_path), "--output", str(out), "--fidelity-images", "12",
                                       "--min-agreement", "0.97", "--max-drop", "2"])
    assert isinstance(result, ExportResult) and isinstance(result, DeepStreamExport) and result.passed
    [artifact] = result.artifacts
    names = [p.name for p in artifact.paths]
    assert names[-1] == "emonext_sgie.onnx" and "config_infer_secondary_emonext.txt" in names[:-1]
    assert result.path == out / "emonext_sgie.onnx" and artifact.sidecar == out / "emonext_sgie.json"
    gate = artifact.metadata.fidelity
    assert gate.thresholds == {"min_agreement": 0.97, "max_drop_pp": 2.0, "atol_prob": 1e-5}
    assert gate.figures["n"] == 12 and gate.figures["agreement"] == 1.0 and gate.figures["max_abs_prob_diff"] <= 1e-5
    assert [c["check"] for c in gate.figures["checks"]] == ["6 colour images"]
    assert "synthetic" in gate.data and "nvinfer" in gate.runtime
    assert json.loads((out / "emonext_sgie.json").read_text())["fidelity"] == gate.to_dict()
    # the build itself is a generator of Candidates that the driver gates and commits
    options = target.options(build_parser(target).parse_args(
        ["--onnx", str(onnx_path), "--output", str(tmp_path / "staged"), "--gray", "--fidelity-images", "4"]))
    with Stage(tmp_path / "staged") as stage:
        [candidate] = list(target.build(options, stage))
        assert isinstance(candidate, Candidate) and candidate.names[-1] == "emonext_sgie.onnx"
        assert candidate.check(stage.file(candidate.names[-1])).passed
    assert not (tmp_path / "staged" / "emonext_sgie.onnx").exists()  # nothing committed without the driver
    # the API is the same run
    api = export_deepstream(tmp_path / "api", onnx_path=onnx_path, verify_count=5)
    assert isinstance(api, ExportResult) and api.passed and api.gate.figures["n"] == 5


def test_wrong_offsets_in_the_config_fail_the_gate(onnx_path, tmp_path, monkeypatch, capsys):
    """The gate feeds the faces through the net-scale-factor/offsets the config says: a planted wrong offset
    (what nvinfer would apply on the device) fails it with exit 1 and nothing is written."""
    import export.deepstream as ds

    real = ds.nvinfer_scale_offset
    monkeypatch.setattr(ds, "nvinfer_scale_offset", lambda spec, rng="full": (real(spec, rng)[0], 16.0))
    out = tmp_path / "bad"
    assert ds.main(["--onnx", str(onnx_path), "--output", str(out), "--gray", "--fidelity-images", "8"]) == 1
    err = capsys.readouterr().err
    assert "fidelity gate failed" in err and "max |Δprob|" in err
    assert not (out / "emonext_sgie.onnx").exists()


def test_limited_range_gray_passes_the_gate(onnx_path, tmp_path):
    """Video-range GRAY8 (offsets 16, 1/219): the faces taken to 16..235 and normalised by the config's values
    reach the network as the training preprocessing does."""
    from export.deepstream import SgieOptions, export_deepstream

    result = export_deepstream(tmp_path / "lim", onnx_path=onnx_path, verify_count=6,
                               options=SgieOptions(gray=True, gray_range="limited", precision="fp32"))
    assert result.passed and result.gate.figures["max_abs_prob_diff"] <= 1e-5
    assert result.gate.figures["checks"] == []  # gray input: no colour check


def test_keep_failed_commits_marked_unverified_and_exits_1(onnx_path, tmp_path, monkeypatch, capsys):
    import export.deepstream as ds

    monkeypatch.setattr(ds, "LUMA_WEIGHTS", tuple(reversed(ds.LUMA_WEIGHTS)))
    out = tmp_path / "kept"
    assert ds.main(["--onnx", str(onnx_path), "--output", str(out), "--fidelity-images", "4", "--keep-failed"]) == 1
    assert "colour images" in capsys.readouterr().err
    manifest = json.loads((out / "emonext_sgie.json").read_text())
    assert manifest["fidelity"]["passed"] is False and manifest["fidelity"]["kept_failed"] is True
    assert (out / "emonext_sgie.onnx").is_file()


def test_old_verify_flags_are_deprecated_aliases(onnx_path, tmp_path, capsys):
    """--verify-data/--verify-count still work for one release (one warning each) and feed the shared gate."""
    cv2 = pytest.importorskip("cv2")
    from export.common import synthetic_faces
    from export.deepstream import main

    faces = tmp_path / "faces"
    faces.mkdir()
    for i, face in enumerate(synthetic_faces(5, seed=4)):
        cv2.imwrite(str(faces / f"f{i}.png"), np.asarray(face, dtype=np.uint8))
    out = tmp_path / "ds"
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--gray", "--verify-data", str(faces),
                 "--verify-count", "3"]) == 0
    captured = capsys.readouterr()
    assert "--verify-data is deprecated" in captured.err and "--verify-count is deprecated" in captured.err
    gate = json.loads((out / "emonext_sgie.json").read_text())["fidelity"]
    assert gate["figures"]["n"] == 3 and str(faces) in gate["data"]


def test_fidelity_data_split_gives_accuracy_and_drop(onnx_path, fer2013_root, tmp_path):
    """A dataset root: the gate runs on its val split with labels, so accuracy drop is gated too."""
    from export.deepstream import main

    out = tmp_path / "ds"
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--fidelity-data", str(fer2013_root),
                 "--fidelity-images", "21"]) == 0
    gate = json.loads((out / "emonext_sgie.json").read_text())["fidelity"]
    assert gate["figures"]["n"] == 21 and gate["figures"]["drop_pp"] == 0.0
    assert "val" in gate["data"] and gate["thresholds"]["max_drop_pp"] == 0.5


@pytest.mark.parametrize("argv, fragment", [
    (["--precision", "int8"], "Q/DQ ONNX"),
    (["--calib", "x.npz"], "--calib only makes sense"),
    (["--gie-id", "1"], "equals --operate-on-gie-id"),
    (["--threshold", "1.5"], "--threshold"),
    (["--operate-on-class-ids", "a"], "class ids"),
])
def test_bad_usage_exits_2(onnx_path, tmp_path, capsys, argv, fragment):
    from export.deepstream import main

    (tmp_path / "x.npz").write_bytes(b"")
    argv = [str(tmp_path / a) if a == "x.npz" else a for a in argv]
    assert main(["--onnx", str(onnx_path), "--output", str(tmp_path / "o"), *argv]) == 2
    assert fragment in capsys.readouterr().err


def test_opset17_onnx_is_refused_for_deepstream_6_3_with_exit_2(onnx_path, tmp_path, capsys):
    """TensorRT 8.5 has no LayerNormalization importer: the opset 17 ONNX is refused before anything is written."""
    from export.deepstream import main

    out = tmp_path / "o"
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--deepstream", "6.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LayerNormalization x" in err[0] and "--opset 16" in err[0] and "8.5" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_default_target_is_deepstream_7_1_and_pins_the_stn(exports, onnx_path):
    """The opset 17 ONNX builds on DeepStream 7.1 (TensorRT 10.3); FP16 pins the STN, FP32 pins nothing."""
    import onnx

    from export import trt_opcheck
    from export.deepstream import parse_ini
    from export.stn_scope import onnx_stn_node_names

    color = exports["color"].output
    model = onnx.load(str(color / "emonext_sgie.onnx"))
    assert trt_opcheck.check_model(model, "10.3.0") == []
    prop = parse_ini((color / "config_infer_secondary_emonext.txt").read_text())["property"]
    names = [e.split(":")[0] for e in prop["layer-device-precision"].split(";")]
    assert names == onnx_stn_node_names(model) and "emonext_luma" in names  # the in-graph luma feeds the STN
    meta = json.loads((color / "emonext_sgie.json").read_text())["deepstream"]["target"]
    assert meta["deepstream"]["version"] == "7.1" and meta["tensorrt"].startswith("10.3")
    gray = parse_ini((exports["gray"].output / "config_infer_secondary_emonext.txt").read_text())["property"]
    assert "layer-device-precision" not in gray  # precision fp32: nothing to pin


@pytest.mark.parametrize("release, trt, opset", [("6.2", "8.5", 16), ("6.3", "8.5", 16), ("6.4", "8.6", 17),
                                                 ("7.0", "8.6", 17), ("7.1", "10.3", 17)])
def test_deepstream_release_table(release, trt, opset):
    from export.deepstream import resolve_target

    target = resolve_target(release)
    assert target.tensorrt.startswith(trt + ".") and target.deepstream.dgpu_tensorrt.startswith(trt + ".")
    assert target.plan.onnx_opset == opset and target.plan.stn_mode == "native"
    assert target.plan.path("fp16").pin_stn_fp32 and not target.plan.path("fp32").pin_stn_fp32


@pytest.mark.parametrize("kwargs, fragment", [({"deepstream": "6.1"}, "expected one of 6.2"),
                                              ({"trt_version": "8.4.1"}, "below 8.5"),
                                              ({"trt_version": "x"}, "--trt-version"),
                                              ({"deepstream": "7.1", "trt_version": "10.3"}, "not both")])
def test_bad_targets(kwargs, fragment):
    from export.common import UsageError
    from export.deepstream import resolve_target

    with pytest.raises(UsageError, match=fragment):
        resolve_target(**kwargs)


def _glib_string_list(text: str, group: str, key: str) -> list[str]:
    """``g_key_file_get_string_list`` of the real GLib, as nvinfer reads list keys (gstnvinfer_property_parser.cpp)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("glib-2.0")
    if name is None:
        pytest.skip("GLib (libglib-2.0) is not installed")
    glib = ctypes.CDLL(name)
    glib.g_key_file_new.restype = ctypes.c_void_p
    glib.g_key_file_load_from_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                                               ctypes.POINTER(ctypes.c_void_p)]
    glib.g_key_file_get_string_list.restype = ctypes.POINTER(ctypes.c_char_p)
    glib.g_key_file_get_string_list.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                                ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p)]
    glib.g_key_file_free.argtypes = [ctypes.c_void_p]
    glib.g_strfreev.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    kf, err, n = glib.g_key_file_new(), ctypes.c_void_p(), ctypes.c_size_t()
    data = text.encode()
    try:
        assert glib.g_key_file_load_from_data(kf, data, len(data), 0, ctypes.byref(err)) and not err.value
        values = glib.g_key_file_get_string_list(kf, group.encode(), key.encode(), ctypes.byref(n), ctypes.byref(err))
        assert values and not err.value
        out = [values[i].decode() for i in range(n.value)]
        glib.g_strfreev(values)
        return out
    finally:
        glib.g_key_file_free(kf)


def test_layer_device_precision_parses_with_glib_as_nvinfer_reads_it(exports):
    """The config file loaded by the real GLib GKeyFile; each entry split as nvdsinfer_model_builder.cpp does
    (layer name up to the first ':', precision up to the second, device after): fp32 / gpu, names = STN nodes."""
    import onnx

    from export.deepstream import SGIE_CONFIG
    from export.stn_scope import onnx_stn_node_names

    out = exports["color"].output
    entries = _glib_string_list((out / SGIE_CONFIG).read_text(), "property", "layer-device-precision")
    parsed = []
    for entry in entries:
        first = entry.index(":")
        second = entry.index(":", first + 1)
        parsed.append((entry[:first], entry[first + 1:second], entry[second + 1:]))
    assert {(p, d) for _, p, d in parsed} == {("fp32", "gpu")}  # isValidPrecisionType / isValidDeviceType
    assert [n for n, _, _ in parsed] == onnx_stn_node_names(onnx.load(str(out / "emonext_sgie.onnx")))
    labels = _glib_string_list((out / SGIE_CONFIG).read_text(), "property", "operate-on-class-ids")
    assert labels == ["0"]


def _load_sample(path):
    spec = importlib.util.spec_from_file_location("deepstream_emonext_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports neither gi nor pyds at module level
    return module


class _Node:
    def __init__(self, items, i=0):
        self.data, self.next = items[i], (_Node(items, i + 1) if i + 1 < len(items) else None)


def _glist(items):
    return _Node(items) if items else None


def _fake_batch(objects):
    frame = SimpleNamespace(pad_index=0, frame_num=7, obj_meta_list=_glist(objects))
    return SimpleNamespace(frame_meta_list=_glist([frame]))


def test_sample_app_rewrites_face_boxes_before_the_sgie_and_restores_them(exports):
    """The shipped pipeline's probes, driven with pyds-shaped stand-ins: only the detector's face boxes become the
    centre square (rewrite_box) before the SGIE; afterwards the detector's box is back and the labels are read."""
    from emonext_edge.deepstream_boxes import rewrite_box, rewrite_object_meta

    path = exports["color"].output / "deepstream_emonext.py"
    assert path.is_file() and path.stat().st_mode & 0o111  # executable
    app = _load_sample(path)
    identity = SimpleNamespace(cast=lambda x: x)
    pyds = SimpleNamespace(NvDsFrameMeta=identity, NvDsObjectMeta=identity, NvDsClassifierMeta=identity,
                           NvDsLabelInfo=identity)

    def obj(oid, gie, cls, box):
        rect = SimpleNamespace(left=box[0], top=box[1], width=box[2], height=box[3])
        return SimpleNamespace(object_id=oid, unique_component_id=gie, class_id=cls, rect_params=rect,
                               classifier_meta_list=None)

    face, other_class, other_gie = obj(1, 1, 0, (101.3, 50.7, 80.0, 100.0)), obj(2, 1, 3, (10, 10, 50, 50)), \
        obj(3, 4, 0, (300, 300, 60, 60))
    batch = _fake_batch([face, other_class, other_gie])
    sgie_id, detector_id, classes = app.sgie_targets(exports["color"].output / "config_infer_secondary_emonext.txt")
    assert (sgie_id, detector_id, classes) == (2, 1, {0})
    rewriter = app.BoxRewriter(pyds, 1280, 720, detector_id, classes, sgie_id, rewrite_object_meta)
    assert rewriter.before_sgie(batch) == 1
    r = face.rect_params
    assert (r.left, r.top, r.width, r.height) == rewrite_box(101.3, 50.7, 80.0, 100.0, 1280, 720)
    assert (other_class.rect_params.width, other_gie.rect_params.left) == (50, 300)  # untouched
    label = SimpleNamespace(result_label="Happy", result_prob=0.8)
    face.classifier_meta_list = _glist([SimpleNamespace(unique_component_id=2, label_info_list=_glist([label]))])
    assert rewriter.after_sgie(batch) == [(7, 1, "Happy", 0.8)]
    assert (r.left, r.top, r.width, r.height) == (101.3, 50.7, 80.0, 100.0) and not rewriter.saved


def test_sample_app_encoder_per_board_and_exit_codes(exports, tmp_path):
    app = _load_sample(exports["color"].output / "deepstream_emonext.py")
    assert app.choose_encoder("auto", "NVIDIA Jetson Orin Nano Developer Kit") == "x264enc"  # no NVENC
    assert app.choose_encoder("auto", "NVIDIA Jetson AGX Orin Developer Kit") == "nvv4l2h264enc"
    assert app.choose_encoder("auto", "") == "nvv4l2h264enc" and app.choose_encoder("sw", "") == "x264enc"
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert app.board_model(str(model)) == "NVIDIA Jetson Orin Nano Developer Kit"
    assert app.board_model(str(tmp_path / "none")) == ""
    assert app.build_parser().parse_args(["--uri", "file:///x", "--pgie-config", "p"]).sink == "fakesink"
    assert app.main(["--uri", "file:///x", "--pgie-config", str(tmp_path / "missing.txt")]) == 2
    if importlib.util.find_spec("pyds") is None:  # not a DeepStream install: exit 3, not a crash
        pgie = tmp_path / "pgie.txt"
        pgie.write_text("[property]\n")
        sgie = str(exports["color"].output / "config_infer_secondary_emonext.txt")
        assert app.main(["--uri", "file:///x", "--pgie-config", str(pgie), "--sgie-config", sgie]) == 3


def test_app_config_is_a_marked_headless_fallback_and_key_spellings_per_file(exports):
    from export.deepstream import APP_CONFIG, PREPROCESS_CONFIG, SGIE_CONFIG, parse_ini

    out = exports["color"].output
    text = (out / APP_CONFIG).read_text()
    assert text.startswith("# FALLBACK ONLY") and "68 %" in text and "deepstream_emonext.py" in text
    app = parse_ini(text)
    assert app["sink0"]["type"] == "1" and app["sink0"]["enable"] == "1"  # fakesink: no display needed
    assert app["sink1"]["enable"] == "0" and "enc-type=1" in text and "Orin Nano" in text
    pre = (out / PREPROCESS_CONFIG).read_text()
    assert "input-tensor-from-meta=1 in config_infer_secondary_emonext.txt" in pre
    assert "[secondary-pre-process0]" in pre
    sgie = parse_ini((out / SGIE_CONFIG).read_text())["property"]
    assert "input-tensor-meta" not in sgie  # the deepstream-app spelling never lands in the nvinfer file


def test_qdq_source_gives_int8_config(onnx_path, tmp_path):
    """A Q/DQ ONNX (as export.tensorrt --int8 makes) -> network-mode=1, an existing int8-calib-file, _int8 engine."""
    from emonext_edge.preprocess import preprocess
    from export.common import synthetic_faces
    from export.deepstream import SgieOptions, export_deepstream, parse_ini
    from export.fidelity import FidelityOptions
    from export.quantize_onnx import export_qdq_onnx

    qdq = export_qdq_onnx(onnx_path, preprocess(list(synthetic_faces(8, seed=2))), tmp_path / "m.int8.qdq.onnx",
                          FidelityOptions(keep_failed=True, images=8), method="ort").path
    out = export_deepstream(tmp_path / "ds", onnx_path=qdq, options=SgieOptions(precision="int8", batch=8)).output
    prop = parse_ini((out / "config_infer_secondary_emonext.txt").read_text())["property"]
    assert prop["network-mode"] == "1"
    assert prop["model-engine-file"] == "emonext_sgie.onnx_b8_gpu0_int8.engine"
    assert (out / prop["int8-calib-file"]).is_file()
    import onnx

    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out / "emonext_sgie.onnx")).graph.node)
    # an opset 17 Q/DQ ONNX cannot be built on DeepStream 6.3: the hint names the exporter that makes the 8.5 one
    from export.common import UsageError
    from export.deepstream import resolve_target

    with pytest.raises(UsageError, match=r"export\.tensorrt --int8 --trt-version 8\.5\.2"):
        export_deepstream(tmp_path / "ds63", onnx_path=qdq, options=SgieOptions(precision="int8"),
                          target=resolve_target("6.3"))


def test_stale_engine_is_removed_on_re_export(onnx_path, tmp_path):
    """nvinfer reuses model-engine-file if it exists: an engine from a previous ONNX must not survive."""
    from export.deepstream import SgieOptions, export_deepstream

    out = tmp_path / "ds"
    out.mkdir()
    stale = out / "emonext_sgie.onnx_b2_gpu0_fp16.engine"
    other = out / "emonext_sgie.onnx_b4_gpu0_fp16.engine"  # another batch size: not this config's engine
    stale.write_bytes(b"old plan")
    other.write_bytes(b"old plan")
    export_deepstream(out, onnx_path=onnx_path, options=SgieOptions(batch=2))
    assert not stale.exists() and other.exists()


@pytest.mark.slow
def test_int8_from_calib_goes_through_the_qdq_gate(onnx_path, fer2013_root, tmp_path, capsys):
    """--precision int8 --calib: the Q/DQ ONNX made here passes the shared gate vs FP32 before the SGIE files."""
    from calibration.calib_file import build_calibration
    from export.deepstream import main

    build_calibration(fer2013_root, num=16, split="train", out=tmp_path / "calib.npz")
    out = tmp_path / "ds"
    assert main(["--onnx", str(onnx_path), "--output", str(out), "--precision", "int8", "--calib",
                 str(tmp_path / "calib.npz"), "--fidelity-data", str(fer2013_root), "--fidelity-images", "35",
                 "--min-agreement", "0.9", "--max-drop", "10"]) == 0
    text = capsys.readouterr().out
    assert "Q/DQ INT8 ONNX (made here from --calib) vs the FP32 ONNX: gate PASSED" in text
    manifest = json.loads((out / "emonext_sgie.json").read_text())
    assert manifest["precision"] == "int8-qdq" and manifest["source"]["int8_gate"]["passed"]
    assert (out / "emonext_sgie_qdq.calib").read_bytes() == b""


# --------------------------------------------------------------------------- configs, keys, labels, engine name


def test_sgie_config_values(exports):
    from export.deepstream import parse_ini

    color = parse_ini((exports["color"].output / "config_infer_secondary_emonext.txt").read_text())["property"]
    expected = {
        "network-type": "1", "process-mode": "2", "operate-on-gie-id": "1", "operate-on-class-ids": "0",
        "net-scale-factor": "0.00392156862745098", "offsets": "0;0;0", "model-color-format": "0",
        "scaling-filter": "1", "secondary-reinfer-interval": "15", "classifier-async-mode": "0",
        "classifier-threshold": "0.0", "labelfile-path": "labels_emonext.txt", "onnx-file": "emonext_sgie.onnx",
        "model-engine-file": "emonext_sgie.onnx_b16_gpu0_fp16.engine", "network-mode": "2", "batch-size": "16",
        "output-blob-names": "probs",
    }
    assert {k: color.get(k) for k in expected} == expected
    gray = parse_ini((exports["gray"].output / "config_infer_secondary_emonext.txt").read_text())["property"]
    assert (gray["model-color-format"], gray["offsets"], gray["network-mode"], gray["gpu-id"]) == ("2", "0", "0", "1")
    assert gray["model-engine-file"] == "emonext_sgie.onnx_b4_gpu1_fp32.engine"
    assert "int8-calib-file" not in gray


def test_limited_range_gray_config():
    from emonext_edge.errors import UsageError
    from export.deepstream import SgieOptions, check_keys, preprocess_config, sgie_config

    prop = sgie_config(SgieOptions(gray=True, gray_range="limited"))["property"]
    assert (prop["net-scale-factor"], prop["offsets"], prop["model-color-format"]) == ("0.0045662100456621", "16", "2")
    assert abs((235 - 16) * float(prop["net-scale-factor"]) - 1.0) < 1e-7  # video range back to [0, 1]
    pre = preprocess_config(SgieOptions(gray=True, gray_range="limited"))
    assert pre["user-configs"]["offsets"] == "16" and check_keys(pre, "nvdspreprocess") == []
    with pytest.raises(UsageError, match="--gray-range only applies with --gray"):
        SgieOptions(gray_range="limited")


def test_generated_configs_pass_the_key_check(exports):
    from export.deepstream import APP_CONFIG, PREPROCESS_CONFIG, SGIE_CONFIG, check_config_file

    for result in exports.values():
        assert check_config_file(result.output / SGIE_CONFIG, "nvinfer") == []
        assert check_config_file(result.output / APP_CONFIG, "deepstream-app") == []
        assert check_config_file(result.output / PREPROCESS_CONFIG, "nvdspreprocess") == []


def test_key_check_catches_a_planted_typo(exports, tmp_path):
    from export.deepstream import SGIE_CONFIG, check_config_file

    text = (exports["color"].output / SGIE_CONFIG).read_text()
    planted = tmp_path / "typo.txt"
    planted.write_text(text.replace("secondary-reinfer-interval=", "secondary-reinfer-intervall="))
    problems = check_config_file(planted, "nvinfer")
    assert len(problems) == 1 and "secondary-reinfer-intervall" in problems[0]
    assert "'secondary-reinfer-interval'" in problems[0]  # the suggestion
    planted.write_text(text + "\n[propertty]\nbatch-size=1\n")
    assert any("[propertty]" in p for p in check_config_file(planted, "nvinfer"))


def test_key_check_groups_of_the_app_config(exports):
    from export.deepstream import APP_CONFIG, check_keys, parse_ini

    app = parse_ini((exports["color"].output / APP_CONFIG).read_text())
    assert {"source0", "primary-gie", "tracker", "secondary-gie0", "osd", "sink0"} <= set(app)
    assert app["secondary-gie0"]["config-file"] == "config_infer_secondary_emonext.txt"
    assert app["primary-gie"]["gie-unique-id"] == app["secondary-gie0"]["operate-on-gie-id"]
    app["sink0"]["synk"] = "1"
    assert check_keys(app, "deepstream-app") == [
        "deepstream-app: key 'synk' in [sink0] is not accepted (group sink<N>); did you mean 'sync'?"]


def test_accepted_keys_carry_their_source():
    from export.deepstream import accepted_keys

    data = accepted_keys()
    assert len(data["source"]["commit"]) == 40 and "gstnvinfer_property_parser.cpp" in " ".join(data["source"]["files"]["nvinfer"])
    prop = set(data["groups"]["nvinfer"]["property"])
    assert {"secondary-reinfer-interval", "classifier-async-mode", "scaling-filter", "onnx-file"} <= prop
    assert "is-classifier" not in prop  # legacy key, translated before parsing


def test_engine_file_name():
    from export.deepstream import engine_file_name

    assert engine_file_name("emonext_sgie.onnx", 16, 0, "fp16") == "emonext_sgie.onnx_b16_gpu0_fp16.engine"
    assert engine_file_name("m.onnx", 1, 0, "int8") == "m.onnx_b1_gpu0_int8.engine"
    assert engine_file_name("m.onnx", 4, 1, "fp32") == "m.onnx_b4_gpu1_fp32.engine"
    assert engine_file_name("m.onnx", 2, 0, "fp16", dla_core=1) == "m.onnx_b2_dla1_fp16.engine"


def test_labels_file_format(exports, onnx_path):
    from emonext_edge.errors import UsageError
    from export.deepstream import labels_line

    raw = (exports["color"].output / "labels_emonext.txt").read_bytes()
    assert raw == b"Angry;Disgust;Fear;Happy;Neutral;Sad;Surprise\n"
    assert raw.count(b"\n") == 1
    with pytest.raises(UsageError):
        labels_line(["a;b", "c"])
    with pytest.raises(UsageError):
        labels_line([])


# --------------------------------------------------------------------------- box rewrite


def test_nvinfer_crop_rounding_and_min_size():
    assert boxes.nvinfer_crop(11.3, 10.7, 101.9, 50.0) == (12, 10, 100, 50)
    assert boxes.nvinfer_crop(0.0, 1.0, 17.0, 16.0) == (0, 2, 16, 16)
    assert boxes.nvinfer_crop(5, 5, 15.9, 40) is None
    assert boxes.nvinfer_crop(5, 5, 40, 15.99) is None
    assert boxes.nvinfer_crop(5, 5, 40, 30, min_size=32) is None


def test_rewrite_centre_square_geometry():
    x, y, w, h = boxes.rewrite_box(101.0, 53.0, 236.0, 280.0, 1920, 1080)
    assert (x, y, w, h) == (108, 82, 224, 224)  # centre (219, 193), side 236 * 224/236; ties round up
    assert boxes.nvinfer_crop(x, y, w, h) == (x, y, w, h)  # nvinfer's rounding keeps it
    assert boxes.rewrite_box(100.0, 50.0, 80.0, 60.0, 640, 480, "center_square_full") == (110, 50, 60, 60)
    assert boxes.rewrite_box(11.0, 21.0, 33.0, 45.0, 640, 480, "raw") == (12, 22, 32, 44)


def test_rewrite_clamps_inside_the_frame():
    assert boxes.rewrite_box(-30.0, -10.0, 100.0, 100.0, 640, 480) == (0, 0, 96, 96)  # side 94.9, edges -28..68
    x, y, w, h = boxes.rewrite_box(600.0, 440.0, 100.0, 120.0, 640, 480)
    assert (x, y, w, h) == (544, 384, 96, 96)  # shifted inwards, size kept
    assert boxes.rewrite_box(0.0, 0.0, 900.0, 900.0, 641, 479) == (162, 0, 478, 478)  # shrunk to the frame, square, inside
    with pytest.raises(ValueError):
        boxes.rewrite_box(0.0, 0.0, 0.0, 10.0, 640, 480)
    with pytest.raises(ValueError):
        boxes.rewrite_box(float("nan"), 0.0, 10.0, 10.0, 640, 480)
    with pytest.raises(ValueError):
        boxes.rewrite_box(0.0, 0.0, 10.0, 10.0, 640, 480, "squarish")


def test_rewrite_properties():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        fw=st.integers(32, 4000), fh=st.integers(32, 4000), fx=st.floats(0, 1), fy=st.floats(0, 1),
        bw=st.floats(16, 3000), bh=st.floats(16, 3000), strategy=st.sampled_from(boxes.STRATEGIES),
    )
    def check(fw, fh, fx, fy, bw, bh, strategy):
        left, top = fx * fw - bw / 2, fy * fh - bh / 2
        x, y, w, h = boxes.rewrite_box(left, top, bw, bh, fw, fh, strategy)
        assert all(v % 2 == 0 for v in (x, y, w, h)) and w >= 2 and h >= 2
        assert 0 <= x and x + w <= fw and 0 <= y and y + h <= fh
        if strategy != "raw":
            assert abs(w - h) <= 2
        ratio = boxes.TRAINING_CROP_RATIO if strategy == "center_square" else 1.0
        target_w = min(bw, bh) * ratio if strategy != "raw" else bw
        if target_w <= min(fw, fh) - 2 and (strategy != "raw" or bh <= fh - 2):
            assert abs(w - target_w) <= 2  # each edge within 1 px of the exact box
            inside_x = left + bw / 2 - target_w / 2 >= 0 and left + bw / 2 + target_w / 2 <= fw
            if inside_x:
                assert abs(x + w / 2 - (left + bw / 2)) <= 1.0  # centre kept

    check()


def test_rewrite_object_meta_on_a_pyds_like_object():
    rect = SimpleNamespace(left=101.0, top=53.0, width=236.0, height=280.0)
    obj = SimpleNamespace(rect_params=rect)
    assert boxes.rewrite_object_meta(obj, 1920, 1080) is True
    assert (rect.left, rect.top, rect.width, rect.height) == (108.0, 82.0, 224.0, 224.0)
    tiny = SimpleNamespace(rect_params=SimpleNamespace(left=10.0, top=10.0, width=14.0, height=30.0))
    assert boxes.rewrite_object_meta(tiny, 640, 480) is False  # 14 * 224/236 -> 12 px: nvinfer would skip it
    assert tiny.rect_params.width == 14.0  # unchanged when skipped


def test_on_device_module_imports_no_tools():
    import subprocess
    import sys

    code = ("import sys, emonext_edge.deepstream_boxes; "
            "bad = [m for m in ('torch', 'export', 'onnx', 'numpy') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out in ("[]", "['numpy']")  # numpy may come with emonext_edge's own __init__
    assert "torch" not in out and "export" not in out


# --------------------------------------------------------------------------- preprocessing simulation


def _bench():
    spec = importlib.util.spec_from_file_location("bench_ds_preprocess", REPO / "benchmarks" / "deepstream_preprocess.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_simulation_is_exact_when_geometry_allows(fer_val_faces):
    """A 236 x 280 box at even coordinates: Resize(236) is the identity and the centre-square rewrite
    crops the same 224 x 224 pixels, so nvinfer's input equals the training input (to the 1/255 rounding)."""
    from emonext_edge.preprocess import load_image, to_gray

    bench = _bench()
    import cv2

    face = cv2.resize(to_gray(load_image(fer_val_faces[0][0])), (236, 236), interpolation=cv2.INTER_CUBIC)
    frame = np.full((400, 500), 90, np.uint8)
    frame[60:296, 100:336] = face
    scene = bench.Scene(frame, (100.0, 38.0, 236.0, 280.0), 0, shrunk=False)
    ref = bench.reference_input(scene)
    square = bench.nvinfer_input(frame, scene.box, bench.CANDIDATES[2])
    assert np.abs(square - ref).max() < 1e-5
    raw = bench.nvinfer_input(frame, scene.box, bench.CANDIDATES[0])
    assert np.abs(raw - ref).mean() * 255 > 5  # the raw box squeezes 236 x 280 into 224 x 224


def test_simulation_on_real_faces(fer_val_faces, reference_model):
    """On real FER2013 faces placed in frames, the centre-square rewrite is closer to training than the raw box."""
    import torch

    bench = _bench()
    from emonext_edge.preprocess import load_image, to_gray

    paths, labels = fer_val_faces
    rng = np.random.default_rng(0)
    scenes = [bench.make_scene(to_gray(load_image(p)), int(y), rng) for p, y in zip(paths[:21], labels[:21])]

    def predict(x):
        with torch.no_grad():
            return reference_model(torch.from_numpy(x)).numpy()

    picked = [c for c in bench.CANDIDATES if c.name in ("raw box, bilinear", "centre square 224/236, bilinear")]
    results = bench.measure(scenes, predict, picked)
    raw, square = results["raw box, bilinear"]["all"], results["centre square 224/236, bilinear"]["all"]
    assert raw["n"] == square["n"] == 21
    assert square["mean_abs_dpixel"] < raw["mean_abs_dpixel"] / 2
    assert square["mean_abs_dprob"] < raw["mean_abs_dprob"]
    assert square["agreement"] >= raw["agreement"]
