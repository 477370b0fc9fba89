"""Triton model repositories: configs built and parsed with Triton's own schema, refusals, URL parsing.

No server here (see test_triton_server.py): every config.pbtxt is parsed back with
``tritonclient.grpc.model_config_pb2`` + ``google.protobuf.text_format`` on all three platforms.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install -e '.[triton]')")

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from emonext_edge.errors import BackendUnavailableError, ModelFileError, UsageError
from export.triton import RepositoryOptions, parse_config, tensorrt_releases, write_repository
from export.triton.__main__ import main as triton_main

LABELS = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]


_ARTIFACTS: dict[str, Path] = {}  # one export per test session, shared with test_triton_server.py


@pytest.fixture(scope="session")
def atto_onnx(reference_checkpoint, tmp_path_factory) -> Path:
    """The reference FER2013 model (atto) exported with a dynamic batch."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _ARTIFACTS:
        from emonext_edge.checkpoint import load_model
        from export.onnx import export_onnx

        d = tmp_path_factory.mktemp("triton_artifacts")
        model = load_model(reference_checkpoint)
        export_onnx(model, d / "atto.onnx", verify_count=2)
        _ARTIFACTS[key] = d / "atto.onnx"
    return _ARTIFACTS[key]


@pytest.fixture(scope="session")
def atto_b1_onnx(reference_checkpoint, atto_onnx) -> Path:
    """The same model exported with a fixed batch of 1."""
    from emonext_edge.checkpoint import load_model
    from export.onnx import export_onnx

    path = atto_onnx.with_name("atto_b1.onnx")
    export_onnx(load_model(reference_checkpoint), path, batch=1, verify_count=2)
    return path


@pytest.fixture(scope="module")
def atto_ir(atto_onnx) -> Path:
    ov = pytest.importorskip("openvino")
    xml = atto_onnx.with_name("atto_ir.xml")
    ov.save_model(ov.convert_model(str(atto_onnx)), str(xml), compress_to_fp16=False)
    meta = json.loads(atto_onnx.with_suffix(".json").read_text())
    meta.pop("artifact_sha256", None)  # the ONNX file's hashes; the IR's files are others
    xml.with_suffix(".json").write_text(json.dumps(meta))
    return xml


def dummy_engine(directory: Path, version: str = "10.3.0.26", lo: int = 1, hi: int = 16, jetson: bool = False) -> Path:
    """An opaque plan file with the manifest python -m export.tensorrt writes (no TensorRT needed to serve-config it);
    ``jetson``: as built on a Jetson AGX Orin with JetPack (what export.tensorrt records there)."""
    engine = directory / f"dummy_{version}_{lo}_{hi}{'_jetson' if jetson else ''}.plan"
    engine.write_bytes(b"not-a-real-plan")
    manifest = {
        "format": "tensorrt-engine", "precision": "fp16", "labels": LABELS,
        "architecture": {"num_classes": 7, "name": "atto"}, "input_name": "input", "output_name": "logits",
        "tensorrt": {"version": version, "gpu": "Orin" if jetson else "NVIDIA A2", "compute_capability": "8.7" if jetson else "8.6",
                     "profile_shapes": {"min": [lo, 3, 224, 224], "opt": [hi, 3, 224, 224], "max": [hi, 3, 224, 224]},
                     **({"jetpack": "R36 (release), REVISION: 4.0"} if jetson else {})},
        "artifact_sha256": {engine.name: hashlib.sha256(engine.read_bytes()).hexdigest()},
    }
    engine.with_suffix(".json").write_text(json.dumps(manifest))
    return engine


def read_config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def check_classifier(repo: Path, platform: str, backend: str, kind: str, files: list[str]) -> mc.ModelConfig:
    model = repo / "emonext"
    config = read_config(model)
    assert (config.name, config.platform, config.backend) == ("emonext", platform, backend)
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, 224, 224]  # no batch dimension with max_batch_size > 0
    assert list(config.output[0].dims) == [7]
    assert config.output[0].label_filename == "labels.txt"
    assert (model / "labels.txt").read_text().split() == LABELS
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [(1, kind)]
    meta = json.loads(config.parameters["emonext_metadata"].string_value)
    assert meta["labels"] == LABELS
    assert json.loads((model / "emonext.json").read_text())["labels"] == LABELS
    assert sorted(p.name for p in (model / "1").iterdir()) == sorted(files + ["model.json"])
    sidecar = json.loads((model / "1" / "model.json").read_text())
    for name, digest in sidecar["artifact_sha256"].items():  # the sidecar names the files as they are in the repo
        assert hashlib.sha256((model / "1" / name).read_bytes()).hexdigest() == digest
    return config


def test_onnx_repository_native(atto_onnx, tmp_path):
    summary = write_repository([atto_onnx], tmp_path / "repo")
    assert summary["models"] == ["emonext"] and summary["warnings"] == []
    config = check_classifier(tmp_path / "repo", "onnxruntime_onnx", "", "KIND_GPU", ["model.onnx"])
    assert config.input[0].name == "input" and config.output[0].name == "logits"
    assert mc.DataType.Name(config.input[0].data_type) == "TYPE_FP32"
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    # a CPU-only server: --kind cpu
    write_repository([atto_onnx], tmp_path / "cpu", RepositoryOptions(kind="KIND_CPU"))
    assert read_config(tmp_path / "cpu" / "emonext").instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_onnx_repository_with_the_tensorrt_execution_provider(atto_onnx, tmp_path):
    """onnxruntime_backend README: optimization { execution_accelerators { gpu_execution_accelerator: [{name: "tensorrt"}]}}."""
    write_repository([atto_onnx], tmp_path / "repo", RepositoryOptions(tensorrt_ep="fp16"))
    config = read_config(tmp_path / "repo" / "emonext")
    (acc,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    assert "trt_engine_cache_enable" in acc.parameters and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    with pytest.raises(UsageError, match="needs GPU instances"):
        write_repository([atto_onnx], tmp_path / "r2", RepositoryOptions(tensorrt_ep="fp32", kind="KIND_CPU"))
    with pytest.raises(UsageError, match="ONNX Runtime backend"):
        write_repository([atto_onnx], tmp_path / "r3", RepositoryOptions(tensorrt_ep="fp32", python_backend=True))


def test_ir_repository_native(atto_ir, tmp_path):
    """The form openvino_backend's own tests use (tests/configs/dynamic.pbtxt): no max_batch_size, a -1 batch dim,
    no dynamic batching; its src/openvino.cc refuses any batch != max_batch_size without ENABLE_BATCH_PADDING."""
    summary = write_repository([atto_ir], tmp_path / "repo", RepositoryOptions(instances=2))
    assert summary["max_batch_size"] == 0 and summary["warnings"] == []
    config = read_config(tmp_path / "repo" / "emonext")
    assert (config.backend, config.platform, config.max_batch_size) == ("openvino", "", 0)
    assert list(config.input[0].dims) == [-1, 3, 224, 224] and list(config.output[0].dims) == [-1, 7]
    assert not config.HasField("dynamic_batching") and "ENABLE_BATCH_PADDING" not in config.parameters
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert config.output[0].label_filename == "labels.txt"
    assert sorted(p.name for p in (tmp_path / "repo" / "emonext" / "1").iterdir()) == ["model.bin", "model.json", "model.xml"]
    # backend auto-complete would turn max_batch_size 0 into default-max-batch-size only for an IR whose inputs
    # and outputs carry a layout with a batch dimension (AutoCompleteBatching); ours carry none
    import openvino as ov

    model = ov.Core().read_model(str(atto_ir))
    assert all(ov.layout_helpers.get_layout(p).empty for p in [*model.inputs, *model.outputs])
    # dynamic batching on this backend serves only full batches: refused with the reason
    with pytest.raises(UsageError, match="ENABLE_BATCH_PADDING"):
        write_repository([atto_ir], tmp_path / "r2", RepositoryOptions(max_batch=8))
    with pytest.raises(UsageError, match="--python-backend"):
        write_repository([atto_ir], tmp_path / "r3", RepositoryOptions(preprocess=True))
    # the python backend (our Runtime inside Triton) batches as before
    write_repository([atto_ir], tmp_path / "py", RepositoryOptions(python_backend=True))
    assert read_config(tmp_path / "py" / "emonext").max_batch_size == 8


def test_ir_repository_native_refuses_gpu_instances(atto_ir, tmp_path, capsys):
    """openvino_backend's ModelInstanceState refuses every kind but CPU ("supports only Kind CPU and AUTO",
    src/openvino.cc, commit db19304): ``--kind gpu`` on an .xml was written and printed with ``--gpus all``."""
    with pytest.raises(UsageError, match="only KIND_CPU"):
        write_repository([atto_ir], tmp_path / "repo", RepositoryOptions(kind="KIND_GPU"))
    assert not (tmp_path / "repo").exists()
    assert triton_main(["--artifact", str(atto_ir), "--kind", "gpu", "--output", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --kind gpu:") and err.count("\n") == 1
    # the python-backend variant runs our Runtime on CPU whatever the kind; unchanged
    write_repository([atto_ir], tmp_path / "py", RepositoryOptions(python_backend=True))


def test_plan_repository_native(tmp_path):
    engine = dummy_engine(tmp_path)
    summary = write_repository([engine], tmp_path / "repo", RepositoryOptions(triton_release="24.08"))
    assert summary["warnings"] == []
    check_classifier(tmp_path / "repo", "tensorrt_plan", "", "KIND_GPU", ["model.plan"])
    # without a release the engine is written, with a warning that its TensorRT must match the server's
    summary = write_repository([engine], tmp_path / "repo2")
    assert "10.3.0.26" in summary["warnings"][0]


def test_python_backend_and_ensemble(atto_onnx, tmp_path):
    repo = tmp_path / "repo"
    summary = write_repository([atto_onnx], repo, RepositoryOptions(python_backend=True, preprocess=True,
                                                                     backend_options={"threads": 1}))
    assert summary["models"] == ["emonext", "emonext_preprocess", "emonext_postprocess", "emonext_pipeline"]
    config = check_classifier(repo, "", "python", "KIND_CPU", ["model.onnx", "model.py"])
    assert config.parameters["emonext_artifact"].string_value == "model.onnx"
    assert json.loads(config.parameters["emonext_backend_options"].string_value) == {"threads": 1}
    configs = {p.parent.name: read_config(p.parent) for p in repo.glob("*/config.pbtxt")}
    pipeline = configs["emonext_pipeline"]
    assert pipeline.platform == "ensemble" and pipeline.max_batch_size == 8
    assert [o.name for o in pipeline.output] == ["logits", "label", "score"]
    # every step names a model of the repository and only tensors that model declares
    produced = {i.name for i in pipeline.input}
    for step in pipeline.ensemble_scheduling.step:
        target = configs[step.model_name]
        assert set(step.input_map) == {i.name for i in target.input}
        assert set(step.output_map) <= {o.name for o in target.output}
        assert set(step.input_map.values()) <= produced
        produced |= set(step.output_map.values())
    assert {o.name for o in pipeline.output} <= produced
    pre = configs["emonext_preprocess"]
    assert mc.DataType.Name(pre.input[0].data_type) == "TYPE_UINT8" and list(pre.input[0].dims) == [-1, -1, -1]
    assert json.loads(configs["emonext_postprocess"].parameters["emonext_labels"].string_value) == LABELS
    for name in ("emonext", "emonext_preprocess", "emonext_postprocess"):
        assert (repo / name / "1" / "model.py").is_file()


def test_versions(atto_onnx, tmp_path):
    summary = write_repository([atto_onnx, atto_onnx], tmp_path / "repo")
    assert summary["versions"] == [1, 2]
    config = read_config(tmp_path / "repo" / "emonext")
    assert config.version_policy.HasField("all")
    assert all((tmp_path / "repo" / "emonext" / v / "model.onnx").is_file() for v in ("1", "2"))
    # rewriting an existing repository replaces it whole; what a killed run left beside it is removed
    stale = tmp_path / ".emonext-tmp-999999999-repo.abc"  # no such process
    (stale / "emonext").mkdir(parents=True)
    write_repository([atto_onnx], tmp_path / "repo")
    assert not (tmp_path / "repo" / "emonext" / "2").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".emonext-tmp-")]
    assert not read_config(tmp_path / "repo" / "emonext").HasField("version_policy")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not an empty folder or a repository"):
        write_repository([atto_onnx], tmp_path / "other")


def test_fixed_batch_onnx(atto_onnx, atto_b1_onnx, tmp_path):
    fixed = atto_b1_onnx
    with pytest.raises(UsageError, match="first dimension to be -1"):
        write_repository([fixed], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing half-written
    write_repository([fixed], tmp_path / "repo", RepositoryOptions(max_batch=0))
    config = read_config(tmp_path / "repo" / "emonext")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, 224, 224]
    assert not config.HasField("dynamic_batching")
    with pytest.raises(UsageError, match="dynamic batch"):
        write_repository([atto_onnx], tmp_path / "repo3", RepositoryOptions(max_batch=0))


def test_engine_refusals(tmp_path):
    with pytest.raises(UsageError, match=r"covers batch 1\.\.4"):
        write_repository([dummy_engine(tmp_path, hi=4)], tmp_path / "r1")
    with pytest.raises(UsageError, match=r"covers batch 2\.\.16"):
        write_repository([dummy_engine(tmp_path, lo=2)], tmp_path / "r2")
    with pytest.raises(UsageError, match=r"TensorRT 10\.3\.0\.26, but Triton 24\.05 ships TensorRT 10\.0"):
        write_repository([dummy_engine(tmp_path)], tmp_path / "r3", RepositoryOptions(triton_release="24.05"))
    with pytest.raises(UsageError, match="not in tensorrt_releases.json"):
        write_repository([dummy_engine(tmp_path)], tmp_path / "r4", RepositoryOptions(triton_release="99.01"))
    with pytest.raises(UsageError, match="python-backend variant runs ONNX Runtime or OpenVINO"):
        write_repository([dummy_engine(tmp_path)], tmp_path / "r5", RepositoryOptions(python_backend=True))
    # a fixed-batch engine is served as it is with --max-batch 0 (dims then carry the batch)
    write_repository([dummy_engine(tmp_path, lo=4, hi=4)], tmp_path / "fixed", RepositoryOptions(max_batch=0))
    config = read_config(tmp_path / "fixed" / "emonext")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 3, 224, 224]
    assert list(config.output[0].dims) == [4, 7]
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="no TensorRT manifest"):
        write_repository([bare], tmp_path / "r6")
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 7))


def test_engine_platform_is_checked_against_the_release(tmp_path):
    """An engine built on a Jetson (JetPack 6.1, sm_87, TensorRT 10.3) has the TensorRT of the x86 24.08 container,
    but that container cannot deserialize it: refused with one line; and the other way round."""
    jetson = dummy_engine(tmp_path, jetson=True)
    with pytest.raises(UsageError) as err:
        write_repository([jetson], tmp_path / "r1", RepositoryOptions(triton_release="24.08"))
    line = str(err.value)
    assert "\n" not in line and "Jetson (aarch64 iGPU)" in line and "x86_64 dGPU build" in line and "23.09-jetpack5.1.2" in line
    assert triton_main(["--artifact", str(jetson), "--output", str(tmp_path / "r2"), "--triton-release", "24.08"]) == 2
    with pytest.raises(UsageError, match="x86_64 dGPU .* but Triton 23.09-jetpack5.1.2 is the Jetson"):
        write_repository([dummy_engine(tmp_path, version="8.5.2.2")], tmp_path / "r3",
                         RepositoryOptions(triton_release="23.09-jetpack5.1.2"))
    with pytest.raises(UsageError, match=r"TensorRT 10\.3\.0\.26, but Triton 23\.09-jetpack5\.1\.2 ships TensorRT 8\.5"):
        write_repository([jetson], tmp_path / "r4", RepositoryOptions(triton_release="23.09-jetpack5.1.2"))
    jp5 = dummy_engine(tmp_path, version="8.5.2.2", jetson=True)
    summary = write_repository([jp5], tmp_path / "ok", RepositoryOptions(triton_release="23.09-jetpack5.1.2"))
    assert summary["warnings"] == []
    with pytest.raises(UsageError, match="compute capability 8.7 .* server's GPU is 7.2"):
        write_repository([jp5], tmp_path / "r5", RepositoryOptions(triton_release="23.09-jetpack5.1.2",
                                                                   compute_capability="7.2"))
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 6))


def test_jetson_engine_without_a_release_is_not_sent_to_the_x86_container(tmp_path, capsys):
    """A Jetson-built engine without --triton-release printed 'docker run --gpus all ... tritonserver:<YY.MM>-py3',
    the x86_64 container that cannot load it; the hint names Triton's Jetson builds instead."""
    jetson = dummy_engine(tmp_path, jetson=True)
    assert triton_main(["--artifact", str(jetson), "--output", str(tmp_path / "repo")]) == 0
    hint = [line for line in capsys.readouterr().out.splitlines() if line.startswith("next: ")]
    assert len(hint) == 1 and "docker run" not in hint[0] and "-py3" not in hint[0]
    assert "Jetson build" in hint[0] and "tritonserver --model-repository=" in hint[0]
    assert triton_main(["--artifact", str(dummy_engine(tmp_path)), "--output", str(tmp_path / "x86")]) == 0
    assert "docker run --gpus all" in capsys.readouterr().out  # an x86_64 engine: the container, as before


def test_cli_hint_and_warnings(atto_onnx, tmp_path, capsys):
    """The docker -v path is absolute for an absolute --output; a warning prints once."""
    out = tmp_path / "abs repo"
    assert triton_main(["--artifact", str(dummy_engine(tmp_path)), "--output", str(out)]) == 0
    text = capsys.readouterr()
    both = text.out + text.err
    assert both.count("no --triton-release given") == 1
    assert f"-v '{out.resolve()}':/models" in text.out and "$PWD" not in text.out


def test_release_table_has_its_source():
    data = json.loads((Path(__import__("export.triton", fromlist=["x"]).__file__).parent / "tensorrt_releases.json").read_text())
    assert "docs.nvidia.com" in data["source"]
    table = tensorrt_releases()
    assert table["24.08"].startswith("10.3") and table["24.01"].startswith("8.6")
    assert all(len(r) == 5 and r[2] == "." for r in table)


def test_parse_config_catches_typos():
    with pytest.raises(ModelFileError, match="not a valid Triton model configuration"):
        parse_config('name: "emonext"\nmax_batch_sise: 8\n', "x/config.pbtxt")
    with pytest.raises(ModelFileError, match="x/config.pbtxt"):
        parse_config('name: "emonext"\ninstance_group { kind: KIND_TPU }\n', "x/config.pbtxt")


def test_cli_exit_codes(atto_onnx, atto_b1_onnx, tmp_path, capsys):
    assert triton_main(["--artifact", str(atto_b1_onnx), "--output", str(tmp_path / "r")]) == 2
    assert "first dimension to be -1" in capsys.readouterr().err
    assert triton_main(["--artifact", str(tmp_path / "missing.onnx"), "--output", str(tmp_path / "r")]) == 2
    assert triton_main(["--artifact", str(atto_onnx), "--output", str(tmp_path / "r"), "--preprocess"]) == 0
    out = capsys.readouterr().out
    assert "emonext_pipeline" in out and "docker run" in out
    # the bundled server has only the python backend: a native repository is refused before starting anything
    assert triton_main(["serve", str(tmp_path / "r")]) == 2
    assert "C++ backends" in capsys.readouterr().err


def test_model_urls():
    from emonext_edge.backends import is_model_url
    from emonext_edge.backends.triton_backend import parse_model_url

    assert parse_model_url("grpc://localhost:8001/emonext") == ("grpc", "localhost:8001", "emonext", "")
    assert parse_model_url("http://10.1.2.3/emonext/2") == ("http", "10.1.2.3:8000", "emonext", "2")
    assert parse_model_url("grpc://[::1]/emonext") == ("grpc", "[::1]:8001", "emonext", "")
    assert is_model_url("grpc://h:1/m") and is_model_url("HTTP://h/m")
    assert not is_model_url("emonext.onnx") and not is_model_url("rtsp://cam/1")
    for bad in ("grpc://localhost:8001/", "grpc://localhost:8001/a/b/c", "http://:80/emonext", "grpc://h:port/m"):
        with pytest.raises(ModelFileError):
            parse_model_url(bad)


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_unreachable_server(scheme):
    from emonext_edge import Runtime
    from export.triton.server import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(BackendUnavailableError, match=f"no Triton server reachable at 127.0.0.1:{port}"):
        Runtime(f"{scheme}://127.0.0.1:{port}/emonext", timeout=5)


def test_served_benchmark_reads_the_server_counts_between_warm_up_and_timed_requests(monkeypatch):
    """benchmarks/served.py: the 'before' statistics are read after every client's warm-up and before any timed
    request, so the server columns count the timed requests only."""
    import importlib.util
    import threading

    import numpy as np

    spec = importlib.util.spec_from_file_location("served_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "served.py")
    served = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(served)
    lock, sent = threading.Lock(), [0]

    class FakeRuntime:
        def __init__(self, url, timeout=None):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def run(self, x):
            with lock:
                sent[0] += 1
            return np.zeros((1, 7), np.float32)

    monkeypatch.setattr(served, "Runtime", FakeRuntime)
    seen = []
    row = served.level("grpc://x/emonext", 4, 6, 3, np.zeros((2, 3, 224, 224), np.float32), 5.0,
                       between=lambda: seen.append(sent[0]))
    assert seen == [4 * 3]  # all warm-up requests done, no timed one yet
    assert sent[0] == 4 * (3 + 6) and row["requests"] == 4 * 6


def test_runtime_client_reads_the_openvino_backend_config(atto_ir, tmp_path):
    """The Runtime's Triton client takes the OpenVINO form (max_batch_size 0, -1 batch dim): any batch from 1."""
    from google.protobuf import json_format

    from emonext_edge.backends.triton_backend import TritonBackend

    write_repository([atto_ir], tmp_path / "repo")
    config = json_format.MessageToDict(read_config(tmp_path / "repo" / "emonext"), preserving_proto_field_name=True)
    backend = TritonBackend.__new__(TritonBackend)  # no server: only the config reader
    backend.url, backend.model, backend.version, backend.address, backend.scheme = "grpc://h:8001/emonext", "emonext", "", "h:8001", "grpc"
    backend.info = {}
    backend.name = "triton"
    backend._read_config(config)
    assert (backend.min_batch, backend.max_batch, backend.max_batch_size, backend.num_classes) == (1, None, 0, 7)
    assert backend.metadata.labels == LABELS
