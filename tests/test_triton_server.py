"""A real Triton server on loopback: the ``tritonserver`` bundled in nvidia-pytriton, in its own numpy<2 env.

One server per session (random free ports, hard readiness timeout, SIGTERM then SIGKILL at
the end) serves the python-backend repository of the reference FER2013 model with the
preprocessing ensemble. Served results must equal the local Runtime. Skips, with the reason,
only where that server cannot exist here: not Linux x86-64, or its environment cannot be
created (no package registry). A server that fails to start otherwise is a failure.
"""

from __future__ import annotations

import json
import platform
import threading
import time

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install -e '.[triton]')")

import tritonclient.grpc as grpcclient
from conftest import fer_val_sample
from test_triton import atto_onnx  # noqa: F401  (session fixture: the reference model as ONNX)

from emonext_edge import Runtime
from emonext_edge.errors import BackendUnavailableError, ImageError, ModelFileError
from emonext_edge.preprocess import load_image
from export.triton import RepositoryOptions, TritonServer, write_repository
from export.triton.server import ServerError, ensure_env, statistics

CLIENTS, FACES = 8, 25


@pytest.fixture(scope="session")
def triton_env():
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the bundled tritonserver (nvidia-pytriton) runs on Linux x86-64 only, not {platform.system()} "
                    f"{platform.machine()}")
    try:
        return ensure_env(timeout=600)
    except ServerError as exc:
        pytest.skip(f"the Triton server environment could not be created (needs the package registry): {exc}")


@pytest.fixture(scope="session")
def served(atto_onnx, triton_env, tmp_path_factory):  # noqa: F811
    repo = tmp_path_factory.mktemp("triton") / "repo"
    write_repository([atto_onnx], repo, RepositoryOptions(python_backend=True, preprocess=True, max_batch=8,
                                                          queue_delay_us=5000, backend_options={"threads": 1}))
    server = TritonServer(repo, env=triton_env, ready_timeout=120)
    server.start()  # raises ServerError with the log tail: a real failure, not a skip
    process = server.process
    try:
        yield server
    finally:
        server.stop()
        assert process is not None and process.poll() is not None, "tritonserver still running after stop()"


@pytest.fixture(scope="session")
def faces(fer2013_root):
    return [p for p, _ in fer_val_sample(fer2013_root, 4)][:FACES]


@pytest.fixture(scope="session")
def local(atto_onnx):  # noqa: F811
    with Runtime(atto_onnx) as rt:
        yield rt


def test_served_metadata(served):
    for url in (served.grpc_url, served.http_url):
        with Runtime(f"{url}/emonext") as rt:
            assert rt.labels == ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
            assert rt.metadata.architecture["name"] == "atto"
            assert rt.metadata.extra["triton"]["platform"] == "python"
            assert (rt.info["backend"], rt.info["min_batch"], rt.info["max_batch"]) == ("triton", 1, 8)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10) as response:
        assert 'nv_inference_count{model="emonext",version="1"}' in response.read().decode()


def test_concurrent_clients_equal_local_runtime(served, faces, local):
    """8 clients (4 gRPC, 4 HTTP) x 25 real FER2013 faces, one face per request; the server batches them."""
    expected = [local.predict(f) for f in faces]
    before = statistics(served.http_url, "emonext")
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def client(i: int) -> None:
        try:
            url = served.grpc_url if i % 2 == 0 else served.http_url
            with Runtime(f"{url}/emonext", timeout=60) as rt:
                start.wait(30)
                order = faces[i % FACES:] + faces[: i % FACES]  # different interleavings
                results[i] = [(f, rt.predict(f)) for f in order]
        except BaseException as exc:  # noqa: BLE001  reported below, with the thread's exception
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    by_face = {f: e for f, e in zip(faces, expected)}
    worst = 0.0
    for i in range(CLIENTS):
        assert len(results[i]) == FACES
        for face, pred in results[i]:
            ref = by_face[face]
            assert pred.label == ref.label, face
            worst = max(worst, float(np.abs(pred.logits - ref.logits).max()))
    assert worst <= 1e-4, worst
    deadline = time.monotonic() + 10  # the server updates its statistics just after sending the responses
    while True:
        after = statistics(served.http_url, "emonext")
        inferences = int(after["inference_count"]) - int(before["inference_count"])
        executions = int(after["execution_count"]) - int(before["execution_count"])
        if inferences >= CLIENTS * FACES or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert inferences == CLIENTS * FACES
    assert executions < inferences, f"no dynamic batching: {executions} executions for {inferences} inferences"


def test_predict_batch_and_faces_api(served, faces, local):
    frame = load_image(faces[0])
    with Runtime(f"{served.grpc_url}/emonext") as rt:
        batch = rt.predict_batch(faces[:11])  # 11 > max_batch_size 8: the Runtime splits it
        ref = local.predict_batch(faces[:11])
        assert [p.label for p in batch] == [p.label for p in ref]
        assert max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(batch, ref)) <= 1e-4
        served_faces = rt.predict_faces(frame)
        local_faces = local.predict_faces(frame)
        assert [f.box for f in served_faces] == [f.box for f in local_faces]
        assert [f.prediction.label for f in served_faces] == [f.prediction.label for f in local_faces]


def test_pipeline_ensemble(served, faces, local):
    """UINT8 images of any size (gray [H, W, 1] and BGR [H, W, 3]) -> logits, label, score on the server."""
    import cv2

    client = grpcclient.InferenceServerClient(served.grpc_url.split("://")[1])
    gray = load_image(faces[1])
    gray = gray if gray.ndim == 2 else cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    bgr = cv2.resize(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), (97, 131))
    for image in (gray[:, :, None], bgr):
        item = grpcclient.InferInput("image", [1, *image.shape], "UINT8")
        item.set_data_from_numpy(np.ascontiguousarray(image[None]))
        result = client.infer("emonext_pipeline", [item], client_timeout=60)
        ref = local.predict(image[:, :, 0] if image.shape[2] == 1 else image)
        assert float(np.abs(result.as_numpy("logits")[0] - ref.logits).max()) <= 1e-4
        assert result.as_numpy("label")[0, 0].decode() == ref.label
        assert abs(float(result.as_numpy("score")[0, 0]) - ref.score) <= 1e-5
    # a bad image is answered with the preprocessing's own error, naming the model
    from tritonclient.utils import InferenceServerException

    bad = grpcclient.InferInput("image", [1, 40, 40, 2], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 40, 40, 2), np.uint8))
    with pytest.raises(InferenceServerException, match="emonext_preprocess: .*2"):
        client.infer("emonext_pipeline", [bad], client_timeout=60)
    # the classification extension returns label strings from labels.txt
    item = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    from emonext_edge.preprocess import preprocess_one

    item.set_data_from_numpy(preprocess_one(faces[2])[None])
    top = client.infer("emonext", [item], outputs=[grpcclient.InferRequestedOutput("logits", class_count=1)])
    _, index, label = top.as_numpy("logits")[0, 0].decode().split(":")
    assert label == local.predict(faces[2]).label and int(index) == local.labels.index(label)
    client.close()


def test_client_errors(served, faces):
    with pytest.raises(ModelFileError, match="the server has no model 'nope'.*emonext_pipeline"):
        Runtime(f"{served.grpc_url}/nope")
    with pytest.raises(ModelFileError, match="no model 'nope'"):
        Runtime(f"{served.http_url}/nope")
    with pytest.raises(ModelFileError, match="UINT8.*emonext_pipeline ensemble"):
        Runtime(f"{served.grpc_url}/emonext_pipeline")
    with pytest.raises(ModelFileError, match="has model 'emonext' but not version 7 .version 1: READY"):
        Runtime(f"{served.grpc_url}/emonext/7")
    for url in (served.grpc_url, served.http_url):  # an inference waits >= 5 ms in the batcher's queue
        with pytest.raises(BackendUnavailableError, match="timed out after 0.002 s"), \
                Runtime(f"{url}/emonext", timeout=0.002) as rt:
            rt.predict(faces[0])
    from emonext_edge.backends import open_backend

    backend = open_backend(f"{served.grpc_url}/emonext")
    try:
        with pytest.raises(ImageError, match=r"outside the served model's limits \[1, 8\]"):
            backend.run(np.zeros((9, 3, 224, 224), np.float32))
        with pytest.raises(ImageError, match="expected a float32"):
            backend.run(np.zeros((1, 3, 112, 112), np.float32))
    finally:
        backend.close()


def test_serve_cli(served, triton_env):
    """python -m export.triton serve: ready, answers, stops by itself (--duration) with exit 0."""
    import subprocess
    import sys

    from export.triton.server import free_port

    ports = [str(free_port()) for _ in range(3)]
    proc = subprocess.run(
        [sys.executable, "-m", "export.triton", "serve", str(served.repository), "--http-port", ports[0],
         "--grpc-port", ports[1], "--metrics-port", ports[2], "--env", str(triton_env), "--duration", "1"],
        capture_output=True, text=True, timeout=150, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"serving emonext, emonext_pipeline, emonext_postprocess, emonext_preprocess: http://127.0.0.1:{ports[0]}" \
        in proc.stdout
    assert "stopped (tritonserver exit code 0)" in proc.stdout


def test_server_start_failure_reports_log(tmp_path, triton_env):
    repo = tmp_path / "broken"
    (repo / "emonext" / "1").mkdir(parents=True)
    (repo / "emonext" / "config.pbtxt").write_text('name: "emonext"\nbackend: "python"\nmax_batch_size: 1\n')
    started = time.monotonic()
    server = TritonServer(repo, env=triton_env, ready_timeout=5)
    # measured: a stub that fails to start leaves this server "loading" for good; the hard timeout ends it
    with pytest.raises(ServerError, match=r"(exited with code|not ready after 5 s)(.|\n)*model\.py"):
        server.start()
    assert time.monotonic() - started < 5 + 35  # readiness timeout + SIGTERM grace + SIGKILL
    assert server.process is None


def test_ir_served_and_not_ready(atto_onnx, triton_env, faces, tmp_path):  # noqa: F811
    """An OpenVINO IR through the python backend; before it is loaded the client says it is not ready."""
    ov = pytest.importorskip("openvino")

    xml = tmp_path / "atto_ir.xml"
    ov.save_model(ov.convert_model(str(atto_onnx)), str(xml), compress_to_fp16=False)
    meta = json.loads(atto_onnx.with_suffix(".json").read_text())
    meta.pop("artifact_sha256", None)  # the ONNX file's hashes; the IR's files are others
    xml.with_suffix(".json").write_text(json.dumps(meta))
    repo = tmp_path / "repo"
    write_repository([xml], repo, RepositoryOptions(python_backend=True, backend_options={"threads": 1}))
    with TritonServer(repo, env=triton_env, ready_timeout=120, extra_args=["--model-control-mode=explicit"]) as server:
        url = f"{server.grpc_url}/emonext"
        with pytest.raises(BackendUnavailableError, match="model 'emonext' is not available .in the repository, not loaded"):
            Runtime(url)
        client = grpcclient.InferenceServerClient(server.grpc_url.split("://")[1])
        client.load_model("emonext", client_timeout=120)
        client.close()
        with Runtime(url) as rt, Runtime(xml) as local_ir:
            served, ref = rt.predict_batch(faces[:8]), local_ir.predict_batch(faces[:8])
            assert [p.label for p in served] == [p.label for p in ref]
            assert max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(served, ref)) <= 1e-4
            assert rt.metadata.extra["triton"]["platform"] == "python"


def test_served_benchmark(served, tmp_path):
    """benchmarks/served.py against the session's server: rows per concurrency and the batching counts."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "served.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "served.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--url", f"{served.grpc_url}/emonext", "--concurrency", "1,3",
         "--requests", "4", "--warmup", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["concurrency"] for r in rows] == [1, 3]
    assert [r["requests"] for r in rows] == [4, 12]
    assert [r["inferences"] for r in rows] == [4, 12]  # the timed requests only (warm-up excluded), counted by the server
    assert all(0 < r["executions"] <= r["inferences"] and r["mean_ms"] > 0 for r in rows)
    assert "| 3 | 12 |" in proc.stdout
