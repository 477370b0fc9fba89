"""Hardening of the tools (issue 25): server lifecycle, interrupts, arguments, environment failures, commit marker.

Everything runs for real: the bundled tritonserver (``tests/test_triton_server.py`` explains its
environment), real signals to real processes, a real ``RLIMIT_FSIZE``. Every wait is bounded
and the bound is asserted.
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tiny_onnx import tiny_onnx

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cli(*args: str, timeout: float = 60, **kw) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False, **kw)
    return proc, time.monotonic() - started


def _wait(predicate, timeout: float, step: float = 0.2) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(step)
    return time.monotonic() - started


# --------------------------------------------------------------------------- the server never outlives its owner


@pytest.fixture(scope="module")
def triton_env():
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the bundled tritonserver runs on Linux x86-64 only, not {platform.system()} {platform.machine()}")
    from export.triton.server import ServerError, ensure_env

    try:
        return ensure_env(timeout=600)
    except ServerError as exc:
        pytest.skip(f"the Triton server environment could not be created (needs the package registry): {exc}")


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    from export.triton import RepositoryOptions, write_repository

    d = tmp_path_factory.mktemp("tiny_triton")
    model = tiny_onnx(d / "tiny.onnx")
    write_repository([model], d / "repo", RepositoryOptions(python_backend=True, preprocess=True, max_batch=8,
                                                            backend_options={"threads": 1}))
    return d / "repo"


class Serve:
    """``python -m export.triton serve`` in a subprocess, with what it started."""

    def __init__(self, repo: Path, env: Path, ports: tuple[int, int, int], log: Path) -> None:
        self.log = log
        self.ports = ports
        self.out = open(log, "w")  # noqa: SIM115  (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "export.triton", "serve", str(repo), "--env", str(env),
             "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])],
            cwd=REPO, env=_env(), stdout=self.out, stderr=subprocess.STDOUT)

    def wait_serving(self, timeout: float = 180) -> float:
        def serving() -> bool:
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}:\n{self.log.read_text()}"
            return "serving " in self.log.read_text()

        return _wait(serving, timeout, 0.5)

    @property
    def prefix(self) -> str:
        from export.triton.server import shm_prefix

        return shm_prefix(self.proc.pid, self.ports[0])

    def server_pid(self) -> int:
        from export.triton.server import port_holders

        holders = [pid for pid, cmd in port_holders(self.ports[0]) if cmd == "tritonserver"]
        assert holders, f"nothing named tritonserver listens on {self.ports[0]}"
        return holders[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.out.close()


def _post_infer(port: int, model: str, shape: list[int], data: list[int]) -> tuple[int, str]:
    import json
    import urllib.error
    import urllib.request

    body = json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "UINT8", "data": data}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{model}/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _regions(prefix: str) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(prefix))


def _watchdog_of(serve_pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == serve_pid and b"os.read(0, 4096)" in cmd:
                out.append(int(entry.name))
    return out


@pytest.mark.slow
def test_serve_never_outlives_its_owner(triton_env, tiny_repo, tmp_path):
    """SIGKILL of serve -> no tritonserver / stub left, no /dev/shm region; busy ports -> named error, exit 4;
    regions of a server killed with its watchdog -> removed by the next start."""
    from export.triton.server import free_port

    ports = (free_port(), free_port(), free_port())
    first = Serve(tiny_repo, triton_env, ports, tmp_path / "first.log")
    try:
        first.wait_serving()
        server = first.server_pid()
        assert _regions(first.prefix), "the python backend made no region under our prefix"

        # a second serve on the same ports: refused before starting anything, named, exit 4
        proc, took = _cli("-m", "export.triton", "serve", str(tiny_repo), "--env", str(triton_env),
                          "--http-port", str(ports[0]), "--grpc-port", str(free_port()),
                          "--metrics-port", str(free_port()), timeout=60)
        assert proc.returncode == 4, proc.stderr
        assert f"http port {ports[0]}" in proc.stderr and f"pid {server} (tritonserver)" in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert took < 20
        assert first.proc.poll() is None and _group_alive(server), "the refused serve touched the running one"

        # a client's bad image in the served preprocessing: 400 (INVALID_ARG) with the reason, not 500
        status, body = _post_infer(ports[0], "emonext_preprocess", [1, 4, 4, 5], [0] * 80)
        assert status == 400 and "HxWx4" in body, (status, body)

        # SIGKILL the owner: the server, its stubs and its regions go with it
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert _wait(lambda: not _group_alive(server), 30) < 30
        assert _wait(lambda: not _regions(first.prefix), 30) < 30
    finally:
        first.close()

    # an end the watchdog cannot see (it is killed too, and the server group with SIGKILL): regions are left ...
    second = Serve(tiny_repo, triton_env, ports, tmp_path / "second.log")  # the same ports are free again
    try:
        second.wait_serving()
        server, prefix = second.server_pid(), second.prefix
        for pid in _watchdog_of(second.proc.pid):
            os.kill(pid, signal.SIGKILL)
        os.killpg(server, signal.SIGKILL)
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(10)
        _wait(lambda: not _group_alive(server), 30)
        left = _regions(prefix)
        assert left, "SIGKILLed stubs left no region: this part of the test proves nothing"
    finally:
        second.close()

    # ... and the next start removes them (their owner is dead, nobody maps them), then stops cleanly on SIGINT
    third = Serve(tiny_repo, triton_env, (free_port(), free_port(), free_port()), tmp_path / "third.log")
    try:
        third.wait_serving()
        assert not _regions(prefix), f"leftover regions of a dead owner survived the next start: {left}"
        server = third.server_pid()
        third.proc.send_signal(signal.SIGINT)
        # bound above serve's own escalation (SIGTERM, 20 s, SIGKILL, 10 s, watchdog 25 s): one loaded run took > 40 s
        assert third.proc.wait(70) == 0
        assert not _group_alive(server) and not _regions(third.prefix)
    finally:
        third.close()


def test_clean_shm_removes_only_dead_owners(tmp_path):
    from export.triton.server import SHM_PREFIX, clean_shm

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{SHM_PREFIX}{dead.pid}-8000_a").write_bytes(b"x")
    (tmp_path / f"{SHM_PREFIX}{os.getpid()}-8000_b").write_bytes(b"x")  # a live owner
    (tmp_path / "someone-else_c").write_bytes(b"x")  # not ours
    removed = clean_shm(shm_dir=tmp_path)
    assert [p.name for p in removed] == [f"{SHM_PREFIX}{dead.pid}-8000_a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{SHM_PREFIX}{os.getpid()}-8000_b", "someone-else_c"])


@pytest.mark.parametrize("ports, message", [
    ((0, None, None), "1..65535"), ((65536, None, None), "1..65535"), ((True, None, None), "1..65535"),
    ((8000, 8000, None), "the same port"),
])
def test_server_ports_validated(tmp_path, ports, message):
    from export.triton.server import PortError, TritonServer

    with pytest.raises(PortError, match=message):
        TritonServer(tmp_path, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2])


@pytest.mark.parametrize("args, message", [
    (["--http-port", "99999"], "1..65535"), (["--grpc-port", "0"], "1..65535"),
    (["--http-port", "9000", "--metrics-port", "9000"], "the same port"),
])
def test_serve_ports_validated_before_work(tmp_path, args, message):
    proc, took = _cli("-m", "export.triton", "serve", str(tmp_path), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert took < 15


# --------------------------------------------------------------------------- interrupts


def test_interruptible_reraises_a_swallowed_interrupt():
    """A library that catches KeyboardInterrupt (NNCF in a worker, say) cannot make the run carry on."""
    from export.pipeline import interruptible

    carried_on = []
    with pytest.raises(KeyboardInterrupt, match="the step"), interruptible("the step"):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed
        carried_on.append(True)
    assert carried_on == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


@pytest.fixture(scope="module")
def synthetic_face_dir(tmp_path_factory) -> Path:
    import cv2

    from calibration.synthetic import synthetic_faces

    d = tmp_path_factory.mktemp("faces")
    for i, face in enumerate(synthetic_faces(60, 0)):
        cv2.imwrite(str(d / f"{i:03d}.png"), face)
    return d


@pytest.mark.slow
def test_ctrl_c_during_int8_quantization_exits_130(reference_checkpoint, synthetic_face_dir, tmp_path):
    """A real SIGINT to ``export.openvino --int8`` while NNCF collects statistics: exit 130, nothing at the final
    names (the FP32 IR that passed its gate before is committed together with the rest, so not yet), no stage."""
    out = tmp_path / "ir"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "export.openvino", "--checkpoint", str(reference_checkpoint), "--int8",
         "--calib-data", str(synthetic_face_dir), "--subset-size", "60", "--output", str(out), "-v"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, sent = [], None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if sent is None and ("calibration: image" in line or "Statistics collection" in line):
                proc.send_signal(signal.SIGINT)
                sent = time.monotonic()
            assert time.monotonic() - started < 400, "".join(lines[-20:])
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines)
    assert sent is not None, f"no quantization progress line seen:\n{text[-3000:]}"
    assert code == 130, text[-3000:]
    assert time.monotonic() - sent < 60, "the interrupt took more than 60 s to end the run"
    assert "Traceback" not in text and "interrupted" in text
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not left, left  # nothing committed: not the INT8 IR, not the FP32 IR gated before it, no stage


# --------------------------------------------------------------------------- an interrupted commit is recognisable

COMMIT_SCRIPT = r"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
import onnx
from _tiny_onnx import tiny_onnx
from emonext_edge.labels import IMAGEFOLDER_LABELS
from emonext_edge.metadata import ArtifactMetadata, GateResult
from export.pipeline import Stage

out, version, kill_after = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
renames, real_replace = [], os.replace

def replace(src, dst):  # a real SIGKILL right after the kill_after-th rename of a staged file
    real_replace(src, dst)
    if ".emonext-tmp-" in str(src):
        renames.append(dst)
        if len(renames) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
with Stage(out) as stage:
    staged = tiny_onnx(stage.file("m.onnx"), sidecar=False)
    model = onnx.load(str(staged))
    model.doc_string = f"export {version}"  # each export's file differs
    onnx.save(model, str(staged))
    meta = ArtifactMetadata(format="onnx", precision="fp32", labels=list(IMAGEFOLDER_LABELS),
                            fidelity=GateResult(True), extra={"version": version})
    stage.commit(["m.onnx"], meta)
print("committed", version)
"""


def _commit(out: Path, version: str, kill_after: int = 0) -> subprocess.CompletedProcess:
    proc, took = _cli("-c", COMMIT_SCRIPT, str(out), version, str(kill_after), timeout=120)
    assert took < 60
    return proc


def test_commit_killed_between_renames_is_recognised_and_rolled_back(tmp_path):
    from emonext_edge import Runtime
    from emonext_edge.commit_marker import MARKER_PREFIX
    from emonext_edge.errors import ModelFileError

    out = tmp_path / "out"
    assert _commit(out, "1").returncode == 0
    with Runtime(out / "m.onnx") as rt:
        assert rt.metadata.extra["version"] == "1"

    # re-export killed (SIGKILL) after the model's rename, before the sidecar's: new model, old record
    proc = _commit(out, "2", kill_after=1)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    markers = [p.name for p in out.iterdir() if p.name.startswith(MARKER_PREFIX)]
    assert len(markers) == 1
    for verify in (True, False):  # with verification off too: never the new model under the old record
        started = time.monotonic()
        with pytest.raises(ModelFileError) as err:
            Runtime(out / "m.onnx", verify=verify)
        message = str(err.value)
        assert f"an export into {out} was interrupted while committing m.onnx, m.json" in message
        assert message.endswith("run it again") and "corrupt" not in message
        assert time.monotonic() - started < 5

    # the next export into the folder rolls the mixed files back and commits whole
    assert _commit(out, "3").returncode == 0
    assert not [p for p in out.iterdir() if p.name.startswith((MARKER_PREFIX, ".emonext-tmp-"))]
    with Runtime(out / "m.onnx") as rt:
        assert rt.metadata.extra["version"] == "3"


def test_commit_marker_only_while_committing(tmp_path):
    """A clean commit leaves no marker; a marker of a live process (a commit in progress) does not refuse."""
    from emonext_edge.commit_marker import MARKER_PREFIX, refuse_interrupted, write_marker

    out = tmp_path / "out"
    assert _commit(out, "1").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.onnx"]
    marker = write_marker(out, ["m.onnx", "m.json"])  # ours: this process is alive
    assert marker.name.startswith(f"{MARKER_PREFIX}{os.getpid()}-")
    refuse_interrupted(out / "m.onnx")  # no error


# --------------------------------------------------------------------------- arguments validated before work


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.mark.parametrize("args, option", [
    (["-m", "export.onnx", "--atol", "nan"], "--atol"),
    (["-m", "export.onnx", "--atol", "inf"], "--atol"),
    (["-m", "export.openvino", "--atol", "nan"], "--atol"),
    (["-m", "export.openvino", "--threads", "-1"], "--threads"),
    (["-m", "export.openvino", "--threads", "99999"], "--threads"),
    (["-m", "export.openvino", "--subset-size", "0"], "--subset-size"),
    (["-m", "export.openvino", "--max-drop", "nan"], "--max-drop"),
    (["-m", "export.openvino", "--min-agreement", "nan"], "--min-agreement"),
    (["-m", "export.tensorrt", "--max-batch", "0"], "--max-batch"),
    (["-m", "export.tensorrt", "--workspace", "nan"], "--workspace"),
    (["-m", "export.deepstream", "--batch", "-3"], "--batch"),
    (["-m", "export.triton", "--artifact", "x.onnx", "--threads", "4000"], "--threads"),
    (["-m", "export.triton", "--artifact", "x.onnx", "--instances", "0"], "--instances"),
    (["-m", "calibration", "build", "x", "--num", "0"], "--num"),
    (["-m", "benchmarks.accuracy", "m.onnx", "--threads", "0"], "--threads"),
    (["-m", "benchmarks.accuracy", "m.onnx", "--batch-size", "-1"], "--batch-size"),
    (["-m", "benchmarks.served", "--requests", "0"], "--requests"),
    (["-m", "benchmarks.latency", "--threads", "100000"], "--threads"),
    (["-m", "benchmarks.video", "--frames", "0"], "--frames"),
])
def test_bad_arguments_refused_before_work(args, option):
    proc, took = _cli(*args, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert option in proc.stderr and "Traceback" not in proc.stderr
    assert took < 30, f"{took:.1f} s: the check came after work"


def test_fifo_as_fidelity_data_refused_at_once(tmp_path, tiny_model):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["-m", "export.openvino", "--onnx", str(tiny_model), "--fidelity-data", str(fifo)],
                 ["-m", "export.onnx", "--fidelity-data", str(fifo)]):
        proc, took = _cli(*args, "--output", str(tmp_path / "out"), timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"{fifo} is a FIFO; expected a data folder or file" in proc.stderr and "Traceback" not in proc.stderr
        assert took < 30


# --------------------------------------------------------------------------- environment failures, named


def _fsize_limit(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of death by SIGXFSZ
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def _assert_environment_failure(proc: subprocess.CompletedProcess, out: Path, reason: str) -> None:
    assert proc.returncode == 4, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], proc.stderr[-3000:]
    assert "nothing was committed" in lines[0]
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not left, f"left at final names / temporaries: {left}"


def test_file_size_limit_during_export_is_exit_4(tmp_path, tiny_model):
    """OpenVINO's writer fails with a bare RuntimeError under RLIMIT_FSIZE: named, exit 4, nothing left."""
    out = tmp_path / "ir"
    proc, took = _cli("-m", "export.openvino", "--onnx", str(tiny_model), "--output", str(out),
                      preexec_fn=_fsize_limit(4000), timeout=120)
    _assert_environment_failure(proc, out, "file-size limit reached")
    assert "(4000 bytes)" in proc.stderr
    assert took < 60


@pytest.mark.slow
def test_file_size_limit_during_onnx_export_is_exit_4(tmp_path, reference_checkpoint):
    out = tmp_path / "onnx"
    proc, took = _cli("-m", "export.onnx", "--checkpoint", str(reference_checkpoint), "--output", str(out / "m.onnx"),
                      preexec_fn=_fsize_limit(1_000_000), timeout=300)
    _assert_environment_failure(proc, out, "file-size limit reached")
    assert took < 120


def test_disk_full_during_export_is_exit_4(tmp_path, tiny_model):
    """A 1 MiB tmpfs (private mount namespace: ``unshare -rm``) filled up by the export."""
    mount = tmp_path / "small"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"],
                           capture_output=True, text=True, check=False) if _which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here (unshare -rm): {probe.stderr.strip() if probe else 'no unshare'}")
    out = mount / "ir"
    script = (f"mount -t tmpfs -o size=1m tmpfs {mount} && head -c 1040000 /dev/zero > {mount}/filler && "
              f"exec {sys.executable} -m export.openvino --onnx {tiny_model} --output {out}; ")
    started = time.monotonic()
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script + f"echo left: $(ls -A {out} 2>/dev/null) >&2"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[0]
    assert line.startswith(f"error: {out}: disk full") and "nothing was committed" in line, proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def test_closed_stdout_is_quiet(tmp_path, tiny_model):
    """``export.triton ... | head -0``: the reader is gone before the summary is printed: no traceback, exit 141."""
    read, write = os.pipe()
    os.close(read)  # nobody will read: every write to stdout raises EPIPE
    try:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "export.triton", "--artifact", str(tiny_model), "--output",
                               str(tmp_path / "repo"), "--python-backend"], cwd=REPO, env=_env(), stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- smaller points


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_triton_client_wraps_a_closed_connection(scheme):
    """A 'server' that accepts and closes at once: a named BackendUnavailableError, for HTTP as for gRPC."""
    pytest.importorskip(f"tritonclient.{scheme}", reason="tritonclient is not installed (pip install -e '.[triton]')")
    import socket
    import threading

    from emonext_edge import Runtime
    from emonext_edge.errors import BackendUnavailableError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as err:
            Runtime(f"{scheme}://127.0.0.1:{port}/emonext", timeout=5)
        assert f"127.0.0.1:{port}" in str(err.value)
        assert time.monotonic() - started < 20
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_stalled_live_stream_ends_video_with_exit_4(tmp_path, tiny_model):
    """An MJPEG-over-HTTP stream that sends 20 frames and then nothing (connection held open): ``video`` stops
    after --open-timeout with a one-line error and exit 4, keeping what it wrote (exit 0 and silence before)."""
    import socket
    import threading

    import cv2
    import numpy as np

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
        for i in range(20):
            jpg = cv2.imencode(".jpg", np.full((120, 160, 3), i * 10, np.uint8))[1].tobytes()
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
            time.sleep(0.05)
        stop.wait(120)  # the stall
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    out = tmp_path / "frames.jsonl"
    try:
        proc, took = _cli("-m", "emonext_edge", "video", str(tiny_model),
                          f"http://127.0.0.1:{listener.getsockname()[1]}/s.mjpg", "--open-timeout", "2",
                          "--json", str(out), timeout=90)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert proc.returncode == 4, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1].endswith("no frame for 2 s (--open-timeout): the stream stalled; stopped")
    assert "Traceback" not in proc.stderr
    assert len(out.read_text().splitlines()) >= 1  # what was processed is kept
    assert took < 30


def test_full_stdout_is_named(tmp_path, tiny_model):
    """``> /dev/full``: one line naming stdout, exit 4, no traceback."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "export.triton", "--artifact", str(tiny_model), "--output",
                               str(tmp_path / "repo"), "--python-backend"], cwd=REPO, env=_env(), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip() == "error: stdout: disk full (no space left on the device)", proc.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("args, option", [
    (["-m", "export.onnx", "--checkpoint", "{fifo}"], "--checkpoint"),
    (["-m", "export.openvino", "--onnx", "{fifo}"], "--onnx"),
    (["-m", "export.openvino", "--int8", "--calib", "{fifo}"], "--calib"),
    (["-m", "export.tensorrt", "--calib", "{fifo}"], "--calib"),
    (["-m", "export.deepstream", "--checkpoint", "{fifo}"], "--checkpoint"),
    (["-m", "calibration", "build", "--source", "{fifo}", "--out", "{tmp}/c.npz"], "--source"),
    (["-m", "benchmarks.accuracy", "m.onnx", "--data", "{fifo}"], "--data"),
    (["-m", "export.onnx", "--checkpoint", "/dev/zero"], "--checkpoint"),
])
def test_special_files_as_inputs_refused_at_once(tmp_path, args, option):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc, took = _cli(*[a.format(fifo=fifo, tmp=tmp_path) for a in args], timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {option}: ") and ("is a FIFO" in line or "is a device" in line), line
    assert "Traceback" not in proc.stderr and took < 30


def test_tampered_source_onnx_is_refused_by_every_tool(onnx_path, tmp_path, capsys):
    """An ONNX whose bytes no longer have the SHA-256 its sidecar records was packaged by export.triton and
    export.deepstream and planned by export.tensorrt --check-only without a word (export.openvino and the
    Runtime refuse it): each now exits 2 with one line naming the file and the sidecar, and writes nothing."""
    import shutil

    from export.deepstream import main as deepstream_main
    from export.tensorrt import main as tensorrt_main
    from export.triton.__main__ import main as triton_main

    tampered = tmp_path / "src" / onnx_path.name
    tampered.parent.mkdir()
    shutil.copyfile(onnx_path, tampered)
    shutil.copyfile(onnx_path.with_suffix(".json"), tampered.with_suffix(".json"))
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 1  # one bit in the weights: still a loadable ONNX
    tampered.write_bytes(bytes(data))
    runs = {
        "triton": (triton_main, ["--artifact", str(tampered), "--output", str(tmp_path / "repo")], "--artifact"),
        "deepstream": (deepstream_main, ["--onnx", str(tampered), "--output", str(tmp_path / "ds")], "--onnx"),
        "tensorrt": (tensorrt_main, ["--onnx", str(tampered), "--check-only", "--trt-version", "10.3"], "--onnx"),
    }
    for tool, (main, argv, option) in runs.items():
        capsys.readouterr()
        assert main(argv) == 2, tool
        err = capsys.readouterr().err
        assert err.startswith(f"error: {option} {tampered}: SHA-256 ") and err.count("\n") == 1, (tool, err)
        assert tampered.with_suffix(".json").name in err and "--no-verify" not in err, (tool, err)
    assert not (tmp_path / "repo").exists() and not list((tmp_path / "ds").glob("*"))
