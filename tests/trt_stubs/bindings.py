"""Import the real TensorRT Python bindings without TensorRT, and describe their API as JSON.

``../shared/fixtures/tensorrt_bindings/`` holds the ``tensorrt*-bindings`` wheels of
TensorRT 8.6.1, 10.3.0, 10.13.3 and 11.4.0: the compiled pybind11 module of each release,
without the ``libnvinfer*`` libraries it links against. Those libraries are only needed for
a handful of C factory symbols (every TensorRT interface is reached through vtables at run
time), so:

1. :func:`needed_libraries` reads the module's ``DT_NEEDED`` SONAMEs (``readelf -d``) and its
   undefined TensorRT symbols (``nm -D --undefined-only``);
2. :func:`build_stub_libraries` compiles ``libnvinfer_stub.c`` (every symbol aborts) with gcc
   once per SONAME (``libnvinfer.so.8``, ``libnvonnxparser.so.11``, ...) into a temp folder;
3. :func:`dump_api` unpacks the wheel into a temp folder and runs :data:`DUMP_SCRIPT` in a
   subprocess with that folder on ``LD_LIBRARY_PATH``: it imports ``tensorrt_bindings`` (the
   module ``import tensorrt`` re-exports) and writes every class, member, signature,
   property setter and enum member as JSON. Python loads extensions with ``RTLD_NOW``, so a
   symbol the stubs lack fails the import; a stub that gets called aborts the subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
STUB_SOURCE = HERE / "libnvinfer_stub.c"

WHEELS = {
    "8.6.1": "tensorrt_bindings-8.6.1-cp311-none-manylinux_2_17_x86_64.whl",
    "10.3.0": "tensorrt_cu12_bindings-10.3.0-cp311-none-manylinux_2_17_x86_64.whl",
    "10.13.3": "tensorrt_cu12_bindings-10.13.3.9-cp311-none-manylinux_2_28_x86_64.whl",
    "11.4.0": "tensorrt_cu12_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl",
}
#: libraries of the TensorRT distribution (the rest of DT_NEEDED is libc/libstdc++)
TRT_LIBS = re.compile(r"^lib(nvinfer|nvinfer_plugin|nvonnxparser|nvparsers)\.so\.\d+$")
#: unversioned undefined symbols that are not TensorRT's (Python's C API, libdl without versions)
NOT_TRT = re.compile(r"^(_?Py|dl(open|sym|close)$)")


def missing_tools() -> Optional[str]:
    """Why the audit cannot run here, or ``None``."""
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (the binding audit compiles stub TensorRT libraries with gcc, binutils)"
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "the binding wheels are x86-64 Linux builds"
    if sys.version_info[:2] != (3, 11):
        return "the binding wheels are CPython 3.11 builds"
    return None


def unpack(wheel: Path, dest: Path) -> Path:
    """Unpack ``wheel`` into ``dest`` (once); returns the folder holding ``tensorrt_bindings/``."""
    if not (dest / "tensorrt_bindings" / "tensorrt.so").is_file():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest)
    return dest


def needed_libraries(module: Path) -> tuple[list[str], list[str]]:
    """(TensorRT SONAMEs in DT_NEEDED, undefined TensorRT symbols) of the compiled module."""
    dyn = subprocess.run(["readelf", "-d", str(module)], capture_output=True, text=True, check=True).stdout
    sonames = [m for m in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn) if TRT_LIBS.match(m)]
    nm = subprocess.run(["nm", "-D", "--undefined-only", str(module)], capture_output=True, text=True,
                        check=True).stdout
    # TensorRT's symbols are strong ("U") and unversioned; libc/libstdc++ ones carry @GLIBC_/@GLIBCXX_
    symbols = sorted({parts[1] for parts in (line.split() for line in nm.splitlines())
                      if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1]})
    return sonames, [s for s in symbols if not NOT_TRT.match(s)]


def defined_symbols(library: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if " T " in line}


def build_stub_libraries(sonames: list[str], dest: Path) -> Path:
    """Compile the stub source once per SONAME into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for soname in sonames:
        out = dest / soname
        if not out.is_file():
            subprocess.run(["gcc", "-shared", "-fPIC", "-O0", f"-Wl,-soname,{soname}", "-o", str(out),
                            str(STUB_SOURCE)], check=True, capture_output=True, text=True)
    return dest


DUMP_SCRIPT = r'''
import enum, inspect, json, sys
import tensorrt_bindings as trt

def doc(obj):
    return (getattr(obj, "__doc__", None) or "")

def describe(obj):
    if isinstance(obj, property):
        return {"kind": "property", "settable": obj.fset is not None, "doc": doc(obj.fget),
                "set_doc": doc(obj.fset) if obj.fset is not None else ""}
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if callable(obj) and not isinstance(obj, type):
        sig = None
        if inspect.isfunction(obj):
            sig = str(inspect.signature(obj))
        return {"kind": "method", "doc": doc(obj), "py_signature": sig}
    return {"kind": "value", "type": type(obj).__name__}

out = {"version": trt.__version__, "module": {}, "classes": {}}
for name in dir(trt):
    value = getattr(trt, name)
    if isinstance(value, type):
        out["module"][name] = {"kind": "class"}
        members = {}
        enum_members = getattr(value, "__members__", None)
        for cls in reversed(value.__mro__):
            for attr, raw in vars(cls).items():
                if attr.startswith("__") and attr != "__init__":
                    continue
                members[attr] = describe(raw)
        if isinstance(enum_members, dict):
            for attr in enum_members:
                members[attr] = {"kind": "member"}
        out["classes"][name] = {"bases": [b.__name__ for b in value.__mro__[1:]], "members": members}
    elif callable(value):
        d = describe(value)
        d["kind"] = "function"
        out["module"][name] = d
    else:
        out["module"][name] = {"kind": "value", "type": type(value).__name__}
json.dump(out, sys.stdout)
'''


def run_with_bindings(version: str, shared: Path, work: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a subprocess that can ``import tensorrt_bindings`` of ``version`` (stubbed libraries)."""
    wheel = shared / "fixtures" / "tensorrt_bindings" / WHEELS[version]
    root = unpack(wheel, work / "wheels" / version)
    module = root / "tensorrt_bindings" / "tensorrt.so"
    sonames, symbols = needed_libraries(module)
    stubs = build_stub_libraries(sonames, work / "stubs" / version)
    missing = sorted(set(symbols) - defined_symbols(stubs / sonames[0]))
    if missing:
        raise AssertionError(f"{module}: the stub libraries lack {missing}; add them to {STUB_SOURCE}")
    env = dict(os.environ, LD_LIBRARY_PATH=str(stubs), PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    prelude = f"import sys; sys.path.insert(0, {str(root)!r})\n"
    proc = subprocess.run([sys.executable, "-I", "-c", prelude + code], check=False, capture_output=True, text=True,
                          env=env, timeout=300)
    proc.sonames, proc.symbols = sonames, symbols  # type: ignore[attr-defined]
    return proc


def dump_api(version: str, shared: Path, work: Path) -> dict[str, Any]:
    """The API of TensorRT ``version``'s real bindings (see the module docstring)."""
    proc = run_with_bindings(version, shared, work, DUMP_SCRIPT)
    if proc.returncode != 0:
        raise AssertionError(f"importing the {version} bindings against the stubs failed "
                             f"(rc {proc.returncode}): {proc.stderr[-2000:]}")
    api = json.loads(proc.stdout)
    api["sonames"], api["symbols"] = proc.sonames, proc.symbols  # type: ignore[attr-defined]
    return api


def write_shipped(shared: Path, work: Path, dest: Optional[Path] = None) -> list[Path]:
    """Regenerate the binding dumps that ship with ``export`` (``export/data/tensorrt_api/<version>.json.gz``)."""
    import gzip

    from export import trt_api

    dest = dest or trt_api.DATA_DIR
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for version in WHEELS:
        reduced = trt_api.reduce_dump(dump_api(version, shared, work))
        path = dest / f"{version}.json.gz"
        # mtime 0: the same dump gives the same bytes
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(json.dumps(reduced, sort_keys=True, separators=(",", ":")).encode())
        out.append(path)
    return out


if __name__ == "__main__":  # python tests/trt_stubs/bindings.py SHARED_DIR WORK_DIR
    import tempfile

    shared_arg = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared"
    with tempfile.TemporaryDirectory() as tmp:
        for written in write_shipped(shared_arg, Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tmp)):
            print(written)
