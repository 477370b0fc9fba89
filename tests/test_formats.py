"""The formats table (emonext_edge/formats.py) is the one place artifact kinds are described,
and what reads it (backends, read_metadata, integrity, Triton) gets the typed record."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from _tiny_onnx import tiny_onnx

from emonext_edge import formats, metadata
from emonext_edge.backends import BACKENDS, SUFFIX_BACKENDS, IODescription, open_backend
from emonext_edge.errors import ModelFileError
from emonext_edge.formats import FORMATS, OPENVINO_IR, SUFFIXES, TENSORRT_ENGINE
from emonext_edge.labels import IMAGEFOLDER_LABELS
from emonext_edge.metadata import ArtifactMetadata, TensorRTInfo, read_metadata, write_sidecar

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("emonext_edge", "export", "benchmarks", "calibration")


def _python_files():
    for top in SCANNED:
        yield from sorted((ROOT / top).rglob("*.py"))


def _suffix_listings(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Collection literals naming two or more model suffixes, and any engine alternative suffix."""
    found = []
    alternates = set(TENSORRT_ENGINE.suffixes[1:])
    for node in ast.walk(tree):
        elts = None
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
        elif isinstance(node, ast.Dict):
            elts = [k for k in node.keys if k is not None]
        if elts is not None:
            named = sorted({e.value.lower() for e in elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value.lower() in SUFFIXES})
            if len(named) >= 2:
                found.append((cast(ast.expr, node).lineno, named))  # a Tuple/List/Set/Dict
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in alternates:
            found.append((node.lineno, [node.value]))
    return found


def test_suffixes_are_listed_only_in_the_table():
    offenders = []
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "emonext_edge/formats.py":
            continue
        for line, named in _suffix_listings(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{rel}:{line}: {named}")
    assert not offenders, "model suffixes listed outside emonext_edge/formats.py:\n" + "\n".join(offenders)


def test_the_scan_finds_a_planted_listing():
    planted = ast.parse('ENGINE = (".engine", ".plan")\nx = p.suffix in [".onnx", ".xml"]\ny = ".trt"\n')
    assert sorted(line for line, _ in _suffix_listings(planted)) == [1, 1, 2, 3]


def test_table_is_consistent():
    names = [f.name for f in FORMATS]
    assert len(names) == len(set(names))
    every = [s for f in FORMATS for s in f.suffixes]
    assert len(every) == len(set(every)) and all(s == s.lower() and s.startswith(".") for s in every)
    assert {f.backend for f in FORMATS} == set(BACKENDS)  # every backend has a row, every row a backend
    assert SUFFIX_BACKENDS == {s: f.backend for f in FORMATS for s in f.suffixes}
    assert metadata.ENGINE_FORMAT == TENSORRT_ENGINE.name
    assert formats.RECORD_FORMATS == ("onnx", "openvino-ir", "tensorrt-engine", "pytorch")
    assert formats.commit_names("m.xml") == ["m.bin", "m.xml"] and formats.commit_names("m.plan") == ["m.plan"]
    assert formats.format_for("grpc://host:8001/emonext") is formats.TRITON
    assert formats.format_for("model.ENGINE") is TENSORRT_ENGINE and formats.format_for("model.tflite") is None


def test_triton_packager_reads_platforms_from_the_table():
    from export.triton.repository import NATIVE

    assert NATIVE["onnx"] == ("model.onnx", "onnxruntime_onnx", "")
    assert NATIVE["openvino"] == ("model.xml", "", "openvino")
    assert NATIVE["tensorrt"] == ("model.plan", TENSORRT_ENGINE.triton_platform, "")


def test_unknown_suffix_names_every_known_one(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"unknown model file kind '\.tflite'.*'\.engine', .*'\.xml'"):
        open_backend(bad)


def _record(fmt: str = "onnx", **changes) -> ArtifactMetadata:
    return ArtifactMetadata(format=fmt, precision="fp32", labels=list(IMAGEFOLDER_LABELS)).replace(**changes)


@pytest.mark.parametrize("name", ["m.onnx", "m.xml", "m.engine", "m.plan", "m.trt"])
def test_sidecar_round_trip_by_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"model")
    fmt = formats.format_for(path)
    meta = _record(fmt.name, tensorrt=TensorRTInfo("10.3.0") if fmt is TENSORRT_ENGINE else None)
    write_sidecar(path, meta)
    got = read_metadata(path)
    assert isinstance(got, ArtifactMetadata) and got == meta


def test_read_metadata_takes_what_the_caller_already_read(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not read")  # a parse of the file itself would fail
    given = _record()
    assert read_metadata(path, sidecar=given) is given  # the sidecar is not read again
    embedded = _record().to_dict(embedded=True)
    got = read_metadata(path, sidecar=None, embedded=embedded)
    assert got == _record()
    assert read_metadata(path, sidecar=None, embedded={"precision": "fp32"}) is None  # no labels: no record


def test_a_02_engine_manifest_reads_as_the_engine(tmp_path):
    engine = tmp_path / "m.trt"
    engine.write_bytes(b"plan")
    old = {"format_version": 1, "labels": list(IMAGEFOLDER_LABELS), "format": "onnx", "precision": "fp32",
           "tensorrt": {"version": "8.5.2", "precision": "fp16"}}
    engine.with_suffix(".json").write_text(json.dumps(old))
    meta = read_metadata(engine)
    assert meta.format == TENSORRT_ENGINE.name and meta.precision == "fp16"


def test_a_checkpoint_has_no_sidecar_record(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    ckpt.with_suffix(".json").write_text(json.dumps({"depths": [1, 1, 2, 1]}))  # checkpoint info, not a record
    assert read_metadata(ckpt) is None


def test_onnx_backend_gives_the_typed_record_and_one_io_description(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tiny_onnx(tmp_path / "tiny.onnx", sidecar=False)
    import onnx

    model = onnx.load(str(path))
    metadata.write_onnx_metadata(model, _record(input_name="input"))
    onnx.save(model, str(path))
    with open_backend(path) as backend:  # no sidecar: the embedded carrier, through read_metadata
        assert isinstance(backend.metadata, ArtifactMetadata) and backend.metadata.labels == list(IMAGEFOLDER_LABELS)
        assert backend.embedded is not None and backend.embedded["labels"] == list(IMAGEFOLDER_LABELS)
        io = backend.io
        assert io == IODescription("input", (3, 224, 224), "float32", "logits", 7, 1, None)
    sidecar_meta = _record(precision="fp16-mixed")
    write_sidecar(path, sidecar_meta)
    with open_backend(path) as backend:  # the sidecar wins
        assert backend.metadata == sidecar_meta


def test_openvino_backend_gives_the_typed_record(tmp_path):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx", sidecar=False)
    model = ov.convert_model(str(onnx_path))
    metadata.set_ov_model_metadata(model, _record("openvino-ir"))
    xml = tmp_path / "tiny.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    assert formats.artifact_files(xml) == [xml.with_suffix(OPENVINO_IR.companions[0]), xml]
    with open_backend(xml) as backend:
        assert backend.metadata == _record("openvino-ir")
        assert backend.io.num_classes == 7 and backend.io.input_shape == (3, 224, 224)
        assert backend.io.input_name and backend.io.output_name
    assert read_metadata(xml) == _record("openvino-ir")  # the XML reader agrees with the backend's


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(metadata, "_warned", set())


def test_runtime_metadata_is_typed_and_the_dict_views_warn(tmp_path, fresh_warnings):
    pytest.importorskip("onnxruntime")
    from emonext_edge import Runtime

    path = tiny_onnx(tmp_path / "tiny.onnx")
    with Runtime(path) as rt:
        assert isinstance(rt.metadata, ArtifactMetadata) and rt.metadata.labels == list(rt.labels)
        assert rt.io.num_classes == 7
        with pytest.warns(DeprecationWarning, match=r"Runtime.metadata_dict .* removed in emonext-edge 0.5"):
            assert rt.metadata_dict["labels"] == list(rt.labels)
        with pytest.warns(DeprecationWarning, match="Runtime.artifact_metadata"):
            assert rt.artifact_metadata is rt.metadata
        with pytest.warns(DeprecationWarning, match="dict access to the metadata record"):
            assert rt.metadata["labels"] == list(rt.labels)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert rt.metadata_dict["labels"]  # warned once per process, not per call


def test_retired_metadata_names_warn(tmp_path, fresh_warnings):
    with pytest.warns(DeprecationWarning, match="FORMAT_VERSION"):
        assert metadata.FORMAT_VERSION == 1
    with pytest.warns(DeprecationWarning, match="labels_from"):
        assert metadata.labels_from({"labels": list(IMAGEFOLDER_LABELS)}, 7, "x") == tuple(IMAGEFOLDER_LABELS)
    path = tmp_path / "m.onnx"
    write_sidecar(path, _record())
    with pytest.warns(DeprecationWarning, match="read_sidecar"):
        assert metadata.read_sidecar(path)["labels"] == list(IMAGEFOLDER_LABELS)
    assert not hasattr(metadata, "build_metadata")
    from emonext_edge import runtime, scores

    with pytest.warns(DeprecationWarning, match="emonext_edge.runtime.softmax"):
        assert runtime.softmax is scores.softmax
    with pytest.raises(AttributeError):
        metadata.no_such_name  # noqa: B018


def test_softmax_is_defined_once():
    defs = [f"{p.relative_to(ROOT).as_posix()}:{n.lineno}" for p in _python_files()
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(n, ast.FunctionDef) and n.name == "softmax"]
    assert [d.split(":")[0] for d in defs] == ["emonext_edge/scores.py"], defs
    from emonext_edge.scores import softmax

    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]], np.float32))
    assert np.allclose(p, [[1.0, 0.0], [0.5, 0.5]])


def test_stream_does_not_import_runtime():
    tree = ast.parse((ROOT / "emonext_edge" / "stream.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "runtime" not in imported and "emonext_edge.runtime" not in imported
    import typing

    from emonext_edge.runtime import Runtime
    from emonext_edge.stream import VideoStream

    assert typing.get_type_hints(Runtime.stream)["return"] is VideoStream


def test_the_fidelity_gate_moved_to_export_with_a_warning_shim(fresh_warnings):
    import calibration
    import calibration.fidelity as old
    from export import fidelity

    with pytest.warns(DeprecationWarning, match=r"calibration.fidelity.fidelity_gate .* use export.fidelity"):
        assert old.fidelity_gate is fidelity.fidelity_gate
    with pytest.warns(DeprecationWarning, match="calibration.fidelity.FidelityOptions"):
        assert calibration.FidelityOptions is fidelity.FidelityOptions
    with pytest.raises(AttributeError):
        old.GateData  # noqa: B018


def test_stage_commit_takes_the_order_of_an_artifacts_files_from_the_table(tmp_path):
    from emonext_edge.metadata import GateResult
    from export.pipeline import Stage

    meta = _record("openvino-ir", fidelity=GateResult(passed=True))
    with Stage(tmp_path / "out") as stage:
        for name in ("m.xml", "m.bin"):
            stage.file(name).write_bytes(b"ir")
        with pytest.raises(ValueError, match=r"the model file must come last"):
            stage.commit(["m.xml", "m.bin"], meta)  # the model file first: refused, nothing renamed
        with pytest.raises(ValueError, match=r"for m.xml: ... \['m.bin', 'm.xml'\]"):
            stage.commit(["m.xml"], meta)  # the .bin left out
        assert not (tmp_path / "out" / "m.xml").exists()
        result = stage.commit(["m.bin", "m.xml"], meta)
    assert result.committed and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.bin", "m.json", "m.xml"]


@pytest.mark.parametrize("verify", [True, "strict", False])
def test_a_load_parses_the_sidecar_once(tmp_path, monkeypatch, verify):
    pytest.importorskip("onnxruntime")
    from emonext_edge import Runtime

    path = tiny_onnx(tmp_path / "tiny.onnx")
    reads: list[str] = []
    real = metadata.read_json_file

    def counting(p, *args, **kwargs):
        reads.append(Path(p).name)
        return real(p, *args, **kwargs)

    monkeypatch.setattr(metadata, "read_json_file", counting)
    with Runtime(path, verify=verify) as rt:
        assert rt.metadata.labels == list(IMAGEFOLDER_LABELS)
    assert reads == ["tiny.json"]
