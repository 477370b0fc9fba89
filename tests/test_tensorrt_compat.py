"""TensorRT version dispatch vs the real bindings of 8.6.1, 10.3.0, 10.13.3 and 11.4.0; mypy on the TensorRT code."""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import pytest

from emonext_edge import tensorrt_compat as compat

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "tests" / "fixtures" / "cache" / "tensorrt_bindings"
WHEELS = {
    "8.6.1": "tensorrt_bindings-8.6.1-cp311-none-manylinux_2_17_x86_64.whl",
    "10.3.0": "tensorrt_cu12_bindings-10.3.0-cp311-none-manylinux_2_17_x86_64.whl",
    "10.13.3": "tensorrt_cu12_bindings-10.13.3.9-cp311-none-manylinux_2_28_x86_64.whl",
    "11.4.0": "tensorrt_cu12_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl",
}


def binding_names(shared_dir: Path, version: str) -> set[str]:
    """Identifier tokens in the version's compiled module plus names defined in its __init__.py."""
    wheel = shared_dir / "fixtures" / "tensorrt_bindings" / WHEELS[version]
    if not wheel.is_file():
        pytest.skip(f"{wheel} absent")
    dest = CACHE / version
    if not (dest / "tensorrt_bindings" / "tensorrt.so").is_file():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest)
    data = (dest / "tensorrt_bindings" / "tensorrt.so").read_bytes()
    names = {t.decode() for t in re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", data)}
    init = (dest / "tensorrt_bindings" / "__init__.py").read_text()
    names |= set(re.findall(r"^(?:def|class)\s+(\w+)", init, re.MULTILINE))
    return names


def has(names: set[str], name: str) -> bool:
    """In the bindings: a token, or the tail of one (linkers merge strings sharing a suffix, e.g. INPUT)."""
    return name in names or any(t.endswith(name) for t in names)


@pytest.mark.parametrize("version", list(WHEELS))
def test_every_name_used_exists_in_that_versions_bindings(shared_dir, version):
    used = compat.api_names_used(version)
    assert len(used) > 30  # the recorder really ran builder + runtime
    names = binding_names(shared_dir, version)
    missing = sorted(n for n in used if not has(names, n))
    assert not missing, f"TensorRT {version} bindings lack {missing}"


def test_oracle_discriminates(shared_dir):
    """The README's table, through the same oracle: a name missing from a version is detected."""
    have = {v: binding_names(shared_dir, v) for v in WHEELS}
    assert has(have["8.6.1"], "execute_async_v2") and not has(have["10.3.0"], "execute_async_v2")
    assert not has(have["8.6.1"], "STRONGLY_TYPED") and has(have["11.4.0"], "STRONGLY_TYPED")
    assert has(have["10.13.3"], "IInt8EntropyCalibrator2") and not has(have["11.4.0"], "IInt8EntropyCalibrator2")
    assert not has(have["11.4.0"], "OBEY_PRECISION_CONSTRAINTS") and not has(have["8.6.1"], "IProgressMonitor")


def test_generation_paths():
    used = {v: compat.api_names_used(v) for v in WHEELS}
    assert all("execute_async_v2" not in names for names in used.values())
    assert "execute_async_v3" in used["8.6.1"]
    assert "IInt8EntropyCalibrator2" in used["8.6.1"] and "IInt8EntropyCalibrator2" not in used["10.3.0"]
    assert "IInt8EntropyCalibrator2" not in used["11.4.0"] and "int8_calibrator" not in used["11.4.0"]
    assert "STRONGLY_TYPED" in used["11.4.0"] and "STRONGLY_TYPED" not in used["8.6.1"]
    assert "FP16" not in used["11.4.0"] and "FP16" in used["10.13.3"]
    assert "IProgressMonitor" not in used["8.6.1"] and "IProgressMonitor" in used["10.3.0"]
    assert compat.plan_for("10.0.1").calibrator and not compat.plan_for("10.1.0").calibrator
    assert compat.plan_for("8.4.3").stn_mode == "decomposed" and compat.plan_for("8.5.2").stn_mode == "native"
    assert compat.plan_for("11.4.0").fp16_via_onnx and not compat.plan_for("10.13.3").fp16_via_onnx


def test_calibrator_refused_where_unreachable():
    from calibration.trt_calibrator import make_entropy_calibrator
    from emonext_edge.errors import ExportError

    with pytest.raises(ExportError, match="no usable INT8 calibrator"):
        make_entropy_calibrator(compat.plan_for("11.4.0"), None, None)
    with pytest.raises(ExportError, match="explicit"):
        compat.build_serialized(compat.plan_for("10.13.3"), object(), "m.onnx",
                                compat.BuildOptions(precision="int8", int8_mode="calibrator"))


def test_jetpack_release(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n")
    assert compat.jetpack_release(str(f)) == "R36 (release), REVISION: 4.0"
    assert compat.jetpack_release(str(tmp_path / "absent")) is None


@pytest.mark.slow
def test_mypy_passes_and_catches_misspelling():
    sys.path.insert(0, str(REPO / "tests" / "typing"))
    import trt_mypy

    if trt_mypy.installed_stubs() is None:
        pytest.skip("tensorrt-stubs not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    stubs = trt_mypy.prepare_stubs()
    ok = trt_mypy.run_mypy(stubs=stubs)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = REPO / "tests" / "fixtures" / "cache" / "misspelled_trt.py"
    bad.write_text("import tensorrt as trt\n\n\ndef f(config: trt.IBuilderConfig) -> None:\n"
                   "    config.set_flagg(trt.BuilderFlag.FP16)\n")
    caught = trt_mypy.run_mypy([str(bad.relative_to(REPO))], stubs=stubs)
    assert caught.returncode != 0 and 'has no attribute "set_flagg"' in caught.stdout
