"""Packaging: the on-device library stays Python 3.8 (JetPack 5), and each install role resolves to what it should.

The 3.8 checks are static (no Python 3.8 interpreter can be had from the package registries
reachable here): ``vermin`` for the standard library and syntax, plus a small AST check for what
vermin does not see, generic aliases evaluated at run time (``Box = tuple[int, int]`` raises
``TypeError`` on 3.8 even under ``from __future__ import annotations``).

The resolver tests ask pip itself (``pip install --dry-run --report``) what a role would install
for a target Python and platform; they need the package index and are skipped when it is not
reachable.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "emonext_edge"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# --------------------------------------------------------------------------- Python 3.8, statically

#: subscripting these at run time needs Python 3.9 (PEP 585)
_PEP585 = {"list", "dict", "tuple", "set", "frozenset", "type", "deque", "defaultdict", "OrderedDict", "Counter",
           "Sequence", "Mapping", "MutableMapping", "Iterable", "Iterator", "Callable", "Generator", "Set"}


def _typing_names(tree: ast.Module) -> set[str]:
    """Names imported from ``typing`` (those are subscriptable on 3.8)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("typing", "typing_extensions"):
            out.update(a.asname or a.name for a in node.names)
    return out


def _annotation_nodes(tree: ast.Module) -> set[int]:
    """ids of every node inside an annotation (not evaluated at run time under ``from __future__ import annotations``)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for r in roots for n in ast.walk(r)}


def runtime_py39_generics(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: what`` for each PEP 585 subscript / PEP 604 union evaluated at run time."""
    tree = ast.parse(source, filename)
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                 and any(a.name == "annotations" for a in n.names) for n in tree.body)
    skip = _annotation_nodes(tree) if future else set()
    typing_names = _typing_names(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Subscript):
            base = node.value
            name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
            from_typing = isinstance(base, ast.Name) and base.id in typing_names or (
                isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "typing")
            if name in _PEP585 and not from_typing:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:60]} (PEP 585 needs 3.9)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = (node.left, node.right)
            if any(isinstance(s, ast.Constant) and s.value is None for s in sides) or any(
                    isinstance(s, ast.Name) and s.id in {"int", "str", "float", "bytes", "bool", "list", "dict"}
                    for s in sides):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:60]} (PEP 604 needs 3.10)")
    return found


def test_runtime_generic_check_finds_planted_mistakes():
    planted = ("from __future__ import annotations\nfrom typing import Tuple\n"
               "Box = tuple[int, int]\nOk = Tuple[int, int]\nU = int | None\n"
               "def f(a: list[int], b: int | None) -> dict[str, int]:\n    x: set[int] = set()\n"
               "    return isinstance(a, (list, dict))\n")
    found = runtime_py39_generics(planted)
    assert [f.split(":")[1] for f in found] == ["3", "5"], found
    # without the __future__ import every annotation is evaluated too
    assert len(runtime_py39_generics(planted.split("\n", 1)[1])) == 6


#: what must import on Python 3.8: the library, and the tools a JetPack 5 device runs to build its engine
#: (python -m export.tensorrt --onnx ..., which imports export/ and calibration/)
PY38_TREES = ("emonext_edge", "export", "calibration")


@pytest.mark.parametrize("tree", PY38_TREES)
def test_no_runtime_py39_generics(tree):
    found = [f for p in sorted((REPO / tree).rglob("*.py"))
             for f in runtime_py39_generics(p.read_text(), str(p.relative_to(REPO)))]
    assert not found, f"{tree}/ must import on Python 3.8:\n" + "\n".join(found)


@pytest.mark.parametrize("tree", PY38_TREES)
def test_vermin_python_38(tree):
    exe = shutil.which("vermin")
    if exe is None:
        pytest.skip("vermin is not installed (pip install -e '.[dev]' brings it)")
    done = subprocess.run([exe, "-t=3.8-", "--no-tips", "--violations", str(REPO / tree)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"vermin: {tree}/ needs a Python newer than 3.8:\n" + done.stdout[-3000:]


def test_requires_python_accepts_38():
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    for version in ("3.8", "3.10", "3.12", "3.13"):  # JetPack 5, 6, 7; newest desktop
        assert version in spec, f"requires-python {spec} refuses Python {version}"


def test_ir_indent_fallback_writes_what_elementtree_indent_writes(monkeypatch):
    import xml.etree.ElementTree as ET

    from emonext_edge import metadata

    src = '<net><rt_info><x value="1"/><emonext><k value="2"/><l value="3"><z/></l></emonext></rt_info></net>'
    for level in (0, 1, 2):
        expected, fallback = ET.fromstring(src).find("rt_info"), ET.fromstring(src).find("rt_info")
        ET.indent(expected, space="\t", level=level)
        with monkeypatch.context() as m:
            m.delattr(ET, "indent")  # as on Python 3.8
            metadata._indent(fallback, space="\t", level=level)
        assert ET.tostring(fallback) == ET.tostring(expected)


def test_video_live_flag_without_boolean_optional_action():
    import argparse

    from emonext_edge.video_cli import add_video_arguments

    parser = argparse.ArgumentParser()
    add_video_arguments(parser)
    parse = parser.parse_args
    assert parse(["x.mp4"]).live is None
    assert parse(["x.mp4", "--live"]).live is True
    assert parse(["x.mp4", "--no-live"]).live is False


# --------------------------------------------------------------------------- the wheel and its package data


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """This checkout built as a wheel (no build isolation: setuptools is already here), from a clean copy of what
    the wheel is made of, so that no stale ``build/`` folder of an earlier build slips into it."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in ("emonext_edge", "export", "calibration"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], check=False, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail("pip wheel failed:\n" + done.stderr[-2000:])
    (path,) = out.glob("emonext_edge-*.whl")
    return path


def test_wheel_ships_every_json_the_tools_read(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(str(p.relative_to(REPO)) for top in ("emonext_edge", "export", "calibration")
                     for p in (REPO / top).rglob("*.json"))
    assert shipped, "expected export/deepstream_keys.json at least"
    missing = [p for p in shipped if p not in names]
    assert not missing, f"package data missing from {wheel.name}: {missing} (pyproject [tool.setuptools.package-data])"
    assert "export/deepstream_keys.json" in names


# --------------------------------------------------------------------------- install roles, by pip's own resolver

#: target -> (Python, glibc minor): JetPack 5 = Ubuntu 20.04 (glibc 2.31), 6 = 22.04 (2.35), 7 = 24.04 (2.39)
JETPACK = {"jetpack5": ("3.8", 31), "jetpack6": ("3.10", 35), "jetpack7": ("3.12", 39)}
OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def _platforms(glibc: int, arch: str) -> list[str]:
    """pip does not widen ``--platform manylinux_2_X`` to older tags itself: list every tag the target accepts."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 16, -1)] + [f"manylinux2014_{arch}"]
    return [arg for tag in tags for arg in ("--platform", tag)]


def resolve(requirement: str, python: str, glibc: int, tmp: Path, arch: str = "aarch64",
            constraint: Optional[Path] = None) -> tuple[Optional[dict[str, str]], str]:
    """``({name: version}, "")`` that pip would install for that target, or ``(None, pip's error)``."""
    report = tmp / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report", str(report),
           "--python-version", python, *_platforms(glibc, arch), "--only-binary=:all:", "--target", str(tmp / "t")]
    if constraint is not None:
        cmd += ["-c", str(constraint)]
    done = subprocess.run([*cmd, requirement], check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return None, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(report.read_text())
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in data["install"]}, ""


def _need_index(python: str, glibc: int, tmp: Path) -> None:
    got, err = resolve("numpy<2", python, glibc, tmp)
    if got is None:
        pytest.skip(f"the package index gives no numpy for Python {python} aarch64 here (unreachable?): "
                    + (err.strip().splitlines() or ["?"])[-1])


def _numpy_major(installed: dict[str, str]) -> int:
    return int(installed["numpy"].split(".")[0])


@pytest.mark.slow
@pytest.mark.parametrize("line", ["jetpack5", "jetpack6"])
def test_jetson_role_brings_no_opencv_and_numpy_1(line, wheel, tmp_path):
    python, glibc = JETPACK[line]
    _need_index(python, glibc, tmp_path)
    got, err = resolve(f"{wheel}[jetson]", python, glibc, tmp_path)
    assert got is not None, f"[jetson] does not resolve for Python {python} aarch64:\n{err[-2000:]}"
    assert "emonext-edge" in got  # requires-python accepted this Python
    assert not [n for n in got if n.startswith("opencv")], f"[jetson] would install OpenCV on {line}: {got}"
    assert _numpy_major(got) == 1, f"[jetson] would install numpy {got['numpy']} on {line}"


@pytest.mark.slow
@pytest.mark.parametrize("line", sorted(JETPACK))
def test_constraint_file_resolves_the_device_roles(line, wheel, tmp_path):
    python, glibc = JETPACK[line]
    _need_index(python, glibc, tmp_path)
    got, err = resolve(f"{wheel}[jetson,engine-build]", python, glibc, tmp_path,
                       constraint=REPO / "constraints" / f"{line}.txt")
    assert got is not None, f"[jetson,engine-build] -c constraints/{line}.txt does not resolve:\n{err[-2000:]}"
    assert {"emonext-edge", "onnx", "onnxruntime", "onnxconverter-common"} <= set(got)
    assert not [n for n in got if n.startswith("opencv") or n in ("torch", "tensorrt")], got
    assert _numpy_major(got) == 1


@pytest.mark.slow
@pytest.mark.parametrize("line", sorted(JETPACK))
def test_constraint_file_refuses_an_opencv_wheel(line, wheel, tmp_path):
    """The planted mistake: asking for the desktop role on a Jetson fails instead of shadowing JetPack's cv2."""
    python, glibc = JETPACK[line]
    _need_index(python, glibc, tmp_path)
    got, err = resolve(f"{wheel}[jetson,desktop]", python, glibc, tmp_path,
                       constraint=REPO / "constraints" / f"{line}.txt")
    assert got is None, f"constraints/{line}.txt let an OpenCV wheel through: {got}"
    assert "opencv-python-headless" in err and "conflict" in err, err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(("python", "arch"), [("3.8", "x86_64"), ("3.12", "x86_64"), ("3.10", "aarch64")])
def test_desktop_role_brings_opencv_headless(python, arch, wheel, tmp_path):
    _need_index(python, 31, tmp_path) if arch == "aarch64" else None
    got, err = resolve(f"{wheel}[desktop]", python, 31, tmp_path, arch=arch)
    if got is None and "from versions: none" in err and "numpy" in err:
        pytest.skip(f"the package index gives no numpy for Python {python} {arch} here")
    assert got is not None, f"[desktop] does not resolve for Python {python} {arch}:\n{err[-2000:]}"
    assert "opencv-python-headless" in got
    assert "emonext-edge" in got


def test_extras_by_role():
    extras = PYPROJECT["project"]["optional-dependencies"]
    base = PYPROJECT["project"]["dependencies"]

    def names(reqs: list[str]) -> set[str]:
        from packaging.requirements import Requirement

        return {Requirement(r).name.lower() for r in reqs}

    assert names(base) == {"numpy"}, f"base dependencies must be numpy only (the Jetson keeps its cv2): {base}"
    assert not [n for n in names(extras["jetson"]) if n.startswith("opencv")]
    assert "opencv-python-headless" in names(extras["desktop"])
    for workstation in ("export", "dev"):  # CI's `bash scripts/install.sh export,openvino,dev,triton` keeps cv2
        assert "opencv-python-headless" in names(extras[workstation]), workstation
    assert {"onnx", "onnxruntime", "onnxconverter-common"} <= names(extras["engine-build"])
    assert "torch" not in names(extras["engine-build"])
    assert "vermin" in names(extras["dev"])


# --------------------------------------------------------------------------- no cv2: one line with the fix


@pytest.mark.parametrize("jetson", [False, True])
def test_missing_cv2_is_one_line_naming_the_fix(jetson, monkeypatch, tmp_path):
    from emonext_edge import faces, opencv
    from emonext_edge.errors import BackendUnavailableError, OpenCVMissingError

    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import cv2` meets where no OpenCV is installed
    monkeypatch.setattr(opencv, "TEGRA_RELEASE", tmp_path / ("present" if jetson else "absent"))
    if jetson:
        opencv.TEGRA_RELEASE.write_text("# R36 (release), REVISION: 4.0\n")
    with pytest.raises(OpenCVMissingError) as info:
        faces.default_cascade_path()
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, (BackendUnavailableError, ImportError))
    if jetson:
        assert "python3-opencv" in message and "not a pip wheel" in message
    else:
        assert 'pip install "emonext-edge[desktop]"' in message
    # the tools a device runs meet the same line (export.tensorrt then exits 3: a runtime is missing)
    from calibration.synthetic import synthetic_faces

    with pytest.raises(OpenCVMissingError):
        synthetic_faces(1)


def test_library_imports_without_cv2():
    code = ("import sys; sys.modules['cv2'] = None; import emonext_edge, emonext_edge.runtime, emonext_edge.stream, "
            "emonext_edge.faces, emonext_edge.video_cli, emonext_edge.annotate; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


# --------------------------------------------------------------------------- the device role, installed for real


@pytest.mark.slow
def test_engine_build_role_in_a_fresh_venv_runs_the_device_half_without_torch(wheel, onnx_path, tmp_path):
    """Non-editable install of [jetson,engine-build] (+ a pip OpenCV standing in for JetPack's cv2) into a new
    venv: the exporter's device half runs there up to TensorRT (exit 3 here: no TensorRT), predict works, the
    DeepStream packager finds its package data, and neither torch nor NNCF is installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    constraint = REPO / "constraints" / "jetpack6.txt"  # numpy 1.x, no OpenCV wheel via the roles
    done = subprocess.run([py, "-m", "pip", "install", "-q", f"{wheel}[jetson,engine-build]", "-c", str(constraint)],
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 and "No matching distribution" in done.stdout + done.stderr:
        pytest.skip("package index unreachable: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not names & {"torch", "nncf", "openvino"} and not [n for n in names if n.startswith("opencv")], names
    subprocess.run([py, "-m", "pip", "install", "-q", "opencv-python-headless>=4.6,<4.12"], check=True, timeout=900)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the wheel's code, not this checkout's
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=600, check=False, env=env,
                            cwd=tmp_path)
    trt = run([py, "-m", "export.tensorrt", "--fp16", "--onnx", str(onnx_path), "--output", str(tmp_path / "o.engine")])
    assert trt.returncode == 3, trt.stdout[-1500:] + trt.stderr[-1500:]
    assert "TensorRT is not installed" in trt.stderr
    image = tmp_path / "face.png"
    run([py, "-c", f"import cv2, numpy as np; cv2.imwrite({str(image)!r}, np.full((64, 64), 128, np.uint8))"])
    pred = run([py, "-m", "emonext_edge", "predict", str(onnx_path), str(image)])
    assert pred.returncode == 0, pred.stderr[-1500:]
    ds = run([py, "-m", "export.deepstream", "--help"])
    assert ds.returncode == 0, ds.stderr[-1500:]
    code = "import export, pathlib; print((pathlib.Path(export.__file__).parent / 'deepstream_keys.json').is_file())"
    where = run([py, "-c", code + "; print(export.__file__)"])
    assert where.stdout.startswith("True") and str(venv) in where.stdout, where.stdout + where.stderr
