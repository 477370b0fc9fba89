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

Lifecycle (the server never outlives its owner, the process that called :meth:`TritonServer.start`):

* ``tritonserver`` gets ``PR_SET_PDEATHSIG`` = SIGKILL (Linux ``prctl``) and its own session, and a
  small watchdog process holds the read end of a pipe only the owner can write: when the owner
  ends in any way (SIGKILL included) the pipe closes, the watchdog kills the server's process
  group (the python-backend stubs with it) and removes the server's ``/dev/shm`` regions;
* the python backend's shared-memory regions are named ``emonext-triton-<owner pid>-<http port>_*``
  (``shm-region-prefix-name``); every start removes the regions whose owner is dead and that no
  live process maps (leftovers of an end the watchdog could not see, e.g. the machine's OOM killer
  taking both), and every stop removes the server's own;
* ports are checked before the start (1..65535, distinct, nothing listening there):
  a port held by another process is refused with :class:`PortInUseError`, naming the holder's
  pid and command where ``/proc`` tells it, instead of reading a foreign server's readiness.

Our package is made importable inside the server by copying ``emonext_edge`` into the
environment (``<env>/src``) at every start, so the server runs the same code as the client.
"""

from __future__ import annotations

import errno
import fcntl
import functools
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
from emonext_edge.fileio import pid_alive

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


class PortInUseError(ServerError):
    """A port the server should listen on is already bound by another process (``serve`` exit code 4)."""


class PortError(ServerError, ValueError):
    """A port number out of 1..65535, or the same port given twice (``serve`` exit code 2)."""


#: the python backend's shared-memory regions of our servers: ``/dev/shm/<prefix><owner pid>-<http port>_...``
SHM_PREFIX = "emonext-triton-"
SHM_DIR = Path("/dev/shm")
PR_SET_PDEATHSIG = 1


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


def check_ports(ports: Sequence[Optional[int]], names: Sequence[str] = ("http", "grpc", "metrics")) -> None:
    """:class:`PortError` unless every given port is an int in 1..65535 and no two are the same."""
    seen: dict[int, str] = {}
    for name, port in zip(names, ports):
        if port is None:
            continue
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise PortError(f"--{name}-port {port!r}: expected a port number in 1..65535")
        if port in seen:
            raise PortError(f"--{name}-port {port}: the same port as --{seen[port]}-port; each needs its own")
        seen[port] = name


def _listener_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from ``/proc/net/tcp{,6}``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_holders(port: int) -> list[tuple[int, str]]:
    """``(pid, command)`` of the processes listening on TCP ``port`` that ``/proc`` shows us (may be empty)."""
    inodes = {f"socket:[{i}]" for i in _listener_inodes(port)}
    holders: list[tuple[int, str]] = []
    if not inodes:
        return holders
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = os.listdir(proc / "fd")
            if any(os.readlink(proc / "fd" / fd) in inodes for fd in fds):
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                holders.append((int(proc.name), Path(cmd).name or "?"))
        except OSError:
            continue
    return sorted(holders)


def ensure_ports_free(host: str, ports: Sequence[tuple[str, int]]) -> None:
    """:class:`PortInUseError` naming the first port that another process is bound to on ``host``."""
    for name, port in ports:
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except OSError as exc:
            raise ServerError(f"--host {host}: cannot be resolved to a local address ({exc})") from None
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what tritonserver does: TIME_WAIT is no owner
            try:
                s.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise ServerError(f"--host {host}: cannot listen there ({exc.strerror})") from None
                holders = port_holders(port)
                who = ", ".join(f"pid {pid} ({cmd})" for pid, cmd in holders) or "another process"
                raise PortInUseError(f"{name} port {port} on {host} is already in use by {who} "
                                     f"({exc.strerror}); stop it or choose another --{name}-port") from None




def _mapped_shm_names() -> set[str]:
    """Names of the ``/dev/shm`` files that some live process we can see maps or holds open."""
    names = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for line in (proc / "maps").read_text().splitlines():
                if "/dev/shm/" in line:
                    names.add(line.rsplit("/dev/shm/", 1)[1].split()[0])
            for fd in os.listdir(proc / "fd"):
                target = os.readlink(proc / "fd" / fd)
                if target.startswith("/dev/shm/"):
                    names.add(target[len("/dev/shm/"):].split()[0])
        except OSError:
            continue
    return names


def shm_prefix(owner: int, http_port: int) -> str:
    return f"{SHM_PREFIX}{owner}-{http_port}_"


def clean_shm(prefix: Optional[str] = None, shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove python-backend regions: those starting with ``prefix`` (a stopped server's own), or, without
    ``prefix``, every region of ours whose owner process is dead and that no live process maps."""
    try:
        entries = [e for e in shm_dir.iterdir() if e.name.startswith(prefix or SHM_PREFIX)]
    except OSError:
        return []
    if prefix is None and entries:
        mapped = _mapped_shm_names()
        orphans = []
        for entry in entries:
            owner = entry.name[len(SHM_PREFIX):].split("-", 1)[0]
            if owner.isdigit() and not pid_alive(int(owner)) and entry.name not in mapped:
                orphans.append(entry)
        entries = orphans
    removed = []
    for entry in entries:
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    if removed:
        log.info("removed %d python-backend shared-memory region(s): %s", len(removed),
                 ", ".join(p.name for p in removed[:5]))
    return removed


def _die_with_owner(owner: int) -> None:  # preexec_fn of tritonserver: runs in the child between fork and exec
    """Own session, and SIGKILL when the owner's forking thread ends (so start() from a thread that ends
    early would take the server with it: start it from the thread that lives as long as it should)."""
    import ctypes

    os.setsid()  # its own process group: the stubs follow it, and a terminal's Ctrl-C reaches only the owner
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != owner:  # the owner died between fork and prctl
        os._exit(1)


#: the watchdog: waits for EOF on stdin (the owner's end of the pipe closes however the owner ends),
#: then SIGTERM, 10 s grace, SIGKILL to the server's process group, and removes its shm regions
WATCHDOG = """
import os, signal, sys, time
pgid, prefix, shm = int(sys.argv[1]), sys.argv[2], sys.argv[3]
signal.signal(signal.SIGINT, signal.SIG_IGN)
while os.read(0, 4096):
    pass
def alive():  # a member of the group that is not a zombie (an init that does not reap keeps zombies)
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        except (OSError, ValueError, IndexError):
            pass
    return False
if alive():
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
for name in os.listdir(shm):
    if name.startswith(prefix):
        try:
            os.unlink(os.path.join(shm, name))
        except OSError:
            pass
"""


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
    watchdog: Optional[subprocess.Popen[bytes]] = field(default=None, init=False, repr=False)
    _watch_fd: Optional[int] = field(default=None, init=False, repr=False)
    shm_region_prefix: Optional[str] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_ports([self.http_port, self.grpc_port, self.metrics_port])

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
            *([f"--backend-config=python,shm-region-prefix-name={self.shm_region_prefix}"]
              if self.shm_region_prefix else []),
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        if not Path(self.repository).is_dir():
            raise ServerError(f"{self.repository}: no such model repository")
        env = self.env if self.env is not None and env_ready(Path(self.env)) else ensure_env(self.env)
        layout = ServerLayout.of(env)
        check_ports([self.http_port, self.grpc_port, self.metrics_port])
        given = [(n, p) for n, p in (("http", self.http_port), ("grpc", self.grpc_port),
                                     ("metrics", self.metrics_port)) if p]
        ensure_ports_free(self.host, given)  # never read a foreign server's readiness as ours
        self.http_port = self.http_port or free_port(self.host)
        self.grpc_port = self.grpc_port or free_port(self.host)
        self.metrics_port = self.metrics_port or free_port(self.host)
        check_ports([self.http_port, self.grpc_port, self.metrics_port])
        clean_shm()  # leftovers of servers whose owner died and no live process maps
        self.shm_region_prefix = shm_prefix(os.getpid(), self.http_port)
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
                                            env=server_environment(layout, self.staged),
                                            preexec_fn=functools.partial(_die_with_owner, os.getpid()))  # noqa: PLW1509  (setsid + prctl only)
        try:
            self._start_watchdog()
            self.wait_ready(self.ready_timeout)
            self._check_listener()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_watchdog(self) -> None:
        """A process outside the server's group that ends the server when this process ends (see the module doc)."""
        assert self.process is not None and self.shm_region_prefix is not None
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, False)
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG, str(self.process.pid), self.shm_region_prefix, str(SHM_DIR)],
                stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(read_fd)
        self._watch_fd = write_fd

    def _check_listener(self) -> None:
        """The HTTP port answering readiness must be this server's (a foreign one could have bound it meanwhile)."""
        if self.process is None or not Path("/proc/net/tcp").exists():
            return
        holders = {pid for pid, _ in port_holders(int(self.http_port or 0))}
        if holders and self.process.pid not in holders:
            raise PortInUseError(f"http port {self.http_port} on {self.host} answered readiness but is held by "
                                 f"pid {sorted(holders)}, not by our tritonserver (pid {self.process.pid})")

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
        watchdog, self.watchdog = self.watchdog, None
        watch_fd, self._watch_fd = self._watch_fd, None
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
            if watch_fd is not None:
                os.close(watch_fd)  # the watchdog sees EOF, finds the group gone, removes the regions and exits
            if watchdog is not None:
                try:
                    watchdog.wait(25)
                except subprocess.TimeoutExpired:
                    watchdog.kill()
            if self.shm_region_prefix:
                clean_shm(self.shm_region_prefix)
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
