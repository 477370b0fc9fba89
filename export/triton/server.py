"""A local Triton Inference Server for development and CI: the ``tritonserver`` bundled in ``nvidia-pytriton``.

That build has the python backend only (no onnxruntime / openvino / tensorrt C++ backends),
so it serves the ``--python-backend`` repositories, whose ``model.py`` runs our Runtime
backends inside Triton. Traps, measured, that this module handles:

* the python-backend stub needs numpy < 2 in the environment it runs in (numpy 2 gives empty
  responses, python_backend PR #384), so the server runs from its own virtual environment
  (:func:`ensure_env`, default ``~/.cache/emonext-edge/triton-env``, or ``$EMONEXT_TRITON_ENV``),
  built from this interpreter with ``numpy<2``, ``nvidia-pytriton``, ONNX Runtime, OpenVINO and
  OpenCV from the package registry (about 20 s with a warm pip cache);
* the stub links ``libpython3.X.so``: the interpreter's ``LIBDIR`` goes on ``LD_LIBRARY_PATH``;
* the wheel's bundled libraries (``nvidia_pytriton.libs``) must be on ``LD_LIBRARY_PATH`` too,
  or the server hangs in "loading" and ignores SIGINT: every wait has a hard timeout and the
  server is stopped with SIGTERM, then SIGKILL of its process group (the stubs included).

Our package is made importable inside the server by copying ``emonext_edge`` into the
environment (``<env>/src``) at every start, so the server runs the same code as the client.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from emonext_edge.errors import BackendUnavailableError, EmoNeXtError

log = logging.getLogger(__name__)

ENV_VAR = "EMONEXT_TRITON_ENV"
DEFAULT_ENV = Path.home() / ".cache" / "emonext-edge" / "triton-env"
#: what the server environment gets from the package registry (numpy < 2: the python-backend stub)
SERVER_REQUIREMENTS = (
    "nvidia-pytriton==0.7.0",
    "numpy>=1.22,<2",
    "onnxruntime>=1.17",
    "openvino>=2024.2",
    "opencv-python-headless>=4.6,<4.12",  # 4.12+ wheels require numpy 2
)
ENV_MARKER = "emonext-triton-env.json"
#: where the python models find the server's copy of emonext_edge
SRC_VAR = "EMONEXT_TRITON_SRC"


class ServerError(EmoNeXtError):
    """The local Triton server could not be prepared, started, or did not become ready."""


def env_path(path: Optional[str | os.PathLike] = None) -> Path:
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_ENV).expanduser()


def _env_python(env: Path) -> Path:
    return env / "bin" / "python"


def _site_packages(env: Path) -> Path:
    found = sorted((env / "lib").glob("python3*/site-packages"))
    if not found:
        raise ServerError(f"{env}: no lib/python3*/site-packages (not a virtual environment)")
    return found[0]


def env_ready(env: Path) -> bool:
    marker = env / ENV_MARKER
    if not marker.is_file() or not _env_python(env).exists():
        return False
    try:
        return json.loads(marker.read_text()).get("requirements") == list(SERVER_REQUIREMENTS)
    except ValueError:
        return False


def ensure_env(path: Optional[str | os.PathLike] = None, timeout: float = 900.0, quiet: bool = True) -> Path:
    """The server environment at ``path`` (default: ``$EMONEXT_TRITON_ENV`` or ``~/.cache/emonext-edge/triton-env``).

    Created on first use: ``python -m venv`` from this interpreter (the stub must match its
    ``libpython``), then ``pip install`` of :data:`SERVER_REQUIREMENTS`. Needs the package
    registry (or a pip cache / local index that pip is configured for); nothing else.
    """
    env = env_path(path)
    if env_ready(env):
        return env
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f".{env.name}.lock", "w") as lock:  # two test runs at once: one creates, one waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if env_ready(env):
            return env
        return _create_env(env, timeout, quiet)


def _create_env(env: Path, timeout: float, quiet: bool) -> Path:
    log.info("creating the Triton server environment in %s (numpy<2, nvidia-pytriton, onnxruntime, openvino)", env)
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    steps = [
        [sys.executable, "-m", "venv", str(env)],
        [str(_env_python(env)), "-m", "pip", "install", "--disable-pip-version-check", *(["-q"] if quiet else []),
         *SERVER_REQUIREMENTS],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=quiet, text=True, check=False, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            shutil.rmtree(env, ignore_errors=True)
            raise ServerError(f"creating {env} timed out after {timeout:.0f} s at: {' '.join(cmd[:4])} ...") from None
        if proc.returncode != 0:
            tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-5:])
            shutil.rmtree(env, ignore_errors=True)
            raise ServerError(f"creating {env} failed at `{' '.join(cmd[:5])} ...` (exit {proc.returncode}):\n{tail}")
    ServerLayout.of(env)  # the backends folder with this Python's stub, made once here
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    (env / ENV_MARKER).write_text(json.dumps({"requirements": list(SERVER_REQUIREMENTS), "python": version}))
    return env


@dataclass
class ServerLayout:
    """Where the bundled server's pieces are inside a server environment."""

    env: Path
    binary: Path
    backends: Path
    caches: Path
    libs: Path
    src: Path

    @classmethod
    def of(cls, env: Path) -> ServerLayout:
        site = _site_packages(env)
        dist = site / "pytriton" / "tritonserver"
        if not (dist / "bin" / "tritonserver").is_file():
            raise ServerError(f"{env}: nvidia-pytriton's bundled tritonserver is missing ({dist / 'bin' / 'tritonserver'})")
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"{env}: no python-backend stub for Python {version} in nvidia-pytriton ({stub})")
        # A backends folder of our own with the stub for this Python beside libtriton_python.so.
        backends = env / "triton-backends"
        python_dir = backends / "python"
        if not (python_dir / "triton_python_backend_stub").is_file():
            shutil.rmtree(backends, ignore_errors=True)
            shutil.copytree(dist / "backends", backends)
            shutil.copy2(stub, python_dir / "triton_python_backend_stub")
        return cls(env, dist / "bin" / "tritonserver", backends, dist / "caches", site / "nvidia_pytriton.libs", env / "src")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_environment(layout: ServerLayout, staged: Optional[Path] = None) -> dict[str, str]:
    env = dict(os.environ)
    if staged is not None:
        env[SRC_VAR] = str(staged)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [str(layout.libs), libdir, env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    env["PATH"] = f"{layout.env / 'bin'}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(layout.env)
    # the stub's embedded interpreter finds the env through PATH (env/bin/python3 first) and so its
    # site-packages (numpy<2); it ignores PYTHONPATH, and PYTHONHOME would only interfere
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _stage_package(layout: ServerLayout, tag: str) -> Path:
    """Copy ``emonext_edge`` into ``<env>/src/<tag>`` for one server; our python models put it on sys.path
    (``$EMONEXT_TRITON_SRC``: the stub's embedded interpreter ignores ``PYTHONPATH`` but sees the environment).
    One folder per server, so servers of several processes never share (or delete) each other's copy."""
    import emonext_edge

    stale = time.time() - 86400
    for old in layout.src.glob("*"):  # copies left by servers that were killed (removed on a clean stop)
        if old.is_dir() and old.stat().st_mtime < stale:
            shutil.rmtree(old, ignore_errors=True)
    staged = layout.src / tag
    shutil.rmtree(staged, ignore_errors=True)
    src = Path(emonext_edge.__file__).resolve().parent
    shutil.copytree(src, staged / "emonext_edge", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return staged


@dataclass
class TritonServer:
    """The bundled ``tritonserver`` on ``repository``; a context manager (start / stop).

    Ports default to free ones on ``host`` (loopback). ``start`` waits for ``/v2/health/ready``
    up to ``ready_timeout`` seconds and raises :class:`ServerError` with the log tail when the
    server dies or does not get ready; ``stop`` sends SIGTERM, then SIGKILL to its process group.
    """

    repository: Path
    env: Optional[Path] = None
    host: str = "127.0.0.1"
    http_port: Optional[int] = None
    grpc_port: Optional[int] = None
    metrics_port: Optional[int] = None
    ready_timeout: float = 120.0
    log_file: Optional[Path] = None
    extra_args: Sequence[str] = ()
    process: Optional[subprocess.Popen[bytes]] = field(default=None, init=False, repr=False)
    staged: Optional[Path] = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def command(self, layout: ServerLayout) -> list[str]:
        return [
            str(layout.binary),
            f"--model-repository={Path(self.repository).resolve()}",
            f"--backend-directory={layout.backends}",
            f"--cache-directory={layout.caches}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false",
            "--exit-on-error=true", "--strict-readiness=true", "--exit-timeout-secs=10",
            "--backend-config=python,shm-default-byte-size=8388608",
            "--backend-config=python,shm-growth-byte-size=8388608",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        if not Path(self.repository).is_dir():
            raise ServerError(f"{self.repository}: no such model repository")
        env = self.env if self.env is not None and env_ready(Path(self.env)) else ensure_env(self.env)
        layout = ServerLayout.of(env)
        self.http_port = self.http_port or free_port(self.host)
        self.grpc_port = self.grpc_port or free_port(self.host)
        self.metrics_port = self.metrics_port or free_port(self.host)
        if self.log_file is None:
            self.log_file = env / "logs" / f"tritonserver-{os.getpid()}-{self.http_port}.log"
            week_ago = time.time() - 7 * 86400
            for old in (env / "logs").glob("tritonserver-*.log"):  # one log per start; keep a week of them
                if old.stat().st_mtime < week_ago:
                    old.unlink(missing_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(layout)
        self.staged = _stage_package(layout, f"{os.getpid()}-{self.http_port}")
        log.debug("starting %s", " ".join(cmd))
        with open(self.log_file, "wb") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=server_environment(layout, self.staged), start_new_session=True)
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log_file).read_text(errors="replace") if self.log_file else ""
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerError(f"tritonserver exited with code {code} before it was ready; log {self.log_file}:\n"
                                  f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {timeout:.0f} s (log {self.log_file}):\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL the process group; returns the exit code."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        staged, self.staged = self.staged, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver (pid %d) ignored SIGTERM for %.0f s; killing it", proc.pid, timeout)
        try:  # the python-backend stubs are in the server's session: make sure none outlives it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)

    def __enter__(self) -> TritonServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def statistics(http_url: str, model: str, timeout: float = 10.0) -> dict[str, Any]:
    """The server's ``/v2/models/<model>/stats`` (inference_count, execution_count, ...) via plain HTTP."""
    with urllib.request.urlopen(f"{http_url}/v2/models/{model}/stats", timeout=timeout) as response:
        data = json.loads(response.read())
    stats = data["model_stats"]
    if not stats:
        raise BackendUnavailableError(f"{http_url}: no statistics for model {model!r}")
    return dict(stats[0])
