"""TensorRT plans (which ONNX, flags, typing, STN, calibrator per version), the dry run, layering, mypy.

The audit of the calls against the real bindings is tests/test_tensorrt_audit.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from emonext_edge import tensorrt_compat as compat
from emonext_edge.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def test_precision_paths_per_generation():
    p86, p10, p11 = (compat.plan_for(v) for v in ("8.6.1", "10.13.3", "11.4.0"))
    # 8.x / 10.x: weakly typed, one ONNX for FP16 (flag), Q/DQ for explicit INT8, STN pinned where FP16 could touch it
    fp16 = p10.path("fp16")
    assert (fp16.onnx, fp16.builder_flags, fp16.strongly_typed, fp16.pin_stn_fp32) == ("fp32", ("FP16",), False, True)
    mixed = p86.path("fp16+int8")
    assert (mixed.onnx, mixed.builder_flags, mixed.engine_precision) == ("int8-qdq", ("FP16", "INT8"), "int8+fp16")
    int8 = p10.path("int8")
    assert (int8.onnx, int8.pin_stn_fp32, int8.engine_precision) == ("int8-qdq", False, "int8+fp32")
    cal = p86.path("int8", "calibrator")
    assert (cal.onnx, cal.calibrator, cal.pin_stn_fp32, cal.builder_flags) == ("fp32", True, True, ("INT8",))
    # 11.x: strongly typed, no flags; the ONNX's types are the engine's
    assert {k: p11.path(k).onnx for k in compat.PRECISIONS} == {
        "fp32": "fp32", "fp16": "fp16", "int8": "int8-qdq", "fp16+int8": "int8-qdq-fp16"}
    both = p11.path("fp16+int8")
    assert both.strongly_typed and both.builder_flags == () and not both.pin_stn_fp32 and not both.calibrator
    assert both.engine_precision == "int8+fp16" and both.onnx_opset == 19  # FP16 Q/DQ scales need opset 19
    assert p11.path("int8").engine_precision == "int8+fp32"  # not labelled fp16 when it is not


def test_plan_fields():
    assert compat.plan_for("10.0.1").calibrator and not compat.plan_for("10.1.0").calibrator
    assert compat.plan_for("8.4.3").stn_mode == "decomposed" and compat.plan_for("8.5.2").stn_mode == "native"
    assert compat.plan_for("8.5.2").onnx_opset == 16 and compat.plan_for("8.6.1").onnx_opset == 17
    assert compat.plan_for("8.6.1").explicit_batch_flag and not compat.plan_for("10.3.0").explicit_batch_flag
    assert not hasattr(compat.plan_for("10.3.0"), "strongly_typed_available")
    for version in ("10.13.3", "11.4.0"):
        with pytest.raises(UsageError, match="--int8-mode explicit"):
            compat.plan_for(version).path("fp16+int8", "calibrator")
    with pytest.raises(ValueError, match="not a TensorRT version"):
        compat.parse_version("ten")


@pytest.mark.parametrize("text", ["-1", "8", "8.5x", "1e3.2", "8.5.2.2.2", "8..5", " ", "v8.5", "8.5.-2"])
def test_parse_version_refuses_what_is_not_a_version(text):
    """``--trt-version -1`` was read as TensorRT 1.0.0 (digits picked out of any text) and planned for."""
    with pytest.raises(ValueError, match="not a TensorRT version"):
        compat.parse_version(text)


@pytest.mark.parametrize("text, expected", [("8.6", (8, 6, 0)), ("8.5.2", (8, 5, 2)), ("10.13.3.9", (10, 13, 3)),
                                            ("10.0.0b6", (10, 0, 0)), ("8.6.1.post1", (8, 6, 1)), (" 10.3.0 ", (10, 3, 0))])
def test_parse_version_reads_real_tensorrt_versions(text, expected):
    """What --trt-version takes and what ``tensorrt.__version__`` says (early-access and post releases included)."""
    assert compat.parse_version(text) == expected


def test_85_plan_is_the_86_calls_on_an_opset_16_export():
    """JetPack 5.1 (TensorRT 8.5.2): same calls and builds as 8.6, but no LayerNormalization op in the ONNX."""
    p85, p86 = compat.plan_for("8.5.2"), compat.plan_for("8.6.1")
    assert "8.5.2" in compat.TARGET_VERSIONS and set(compat.KNOWN_VERSIONS) < set(compat.TARGET_VERSIONS)
    assert (p85.onnx_opset, p85.stn_mode, p85.layernorm_op) == (16, "native", False)
    assert p86.layernorm_op and not compat.plan_for("10.3.0").onnx_opset < 17
    assert p85.explicit_batch_flag and p85.calibrator and p85.layer_precision and p85.precision_flags
    assert not p85.progress_monitor and not p85.strongly_typed
    assert p85.api_uses() == p86.api_uses()
    for precision in compat.PRECISIONS:
        a, b = p85.path(precision), p86.path(precision)
        assert (a.onnx, a.builder_flags, a.pin_stn_fp32, a.engine_precision) == \
            (b.onnx, b.builder_flags, b.pin_stn_fp32, b.engine_precision)
        assert a.onnx_opset == 16
    assert any("LayerNorm decomposed" in line for line in compat.describe(p85, "fp16"))
    assert any("LayerNorm LayerNormalization op" in line for line in compat.describe(p86, "fp16"))
    assert not {n for _, n in compat.ADDED_IN_8_6} & {u.name for u in p85.api_uses()}


def test_jetpack_release(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n")
    assert compat.jetpack_release(str(f)) == "R36 (release), REVISION: 4.0"
    assert compat.jetpack_release(str(tmp_path / "absent")) is None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_layering_and_one_cuda_context_policy():
    for rel in ("emonext_edge/tensorrt_compat.py", "emonext_edge/backends/tensorrt_backend.py"):
        assert not _imports(REPO / rel) & {"calibration", "export", "benchmarks", "torch"}, rel
    for rel in ("emonext_edge/tensorrt_compat.py", "emonext_edge/backends/tensorrt_backend.py",
                "export/tensorrt.py", "calibration/trt_calibrator.py"):
        assert "pycuda.autoinit" not in (REPO / rel).read_text().replace("``pycuda.autoinit``", ""), rel
    assert "CudaContext" in (REPO / "emonext_edge/backends/tensorrt_backend.py").read_text()
    assert "CudaContext" in (REPO / "export/tensorrt.py").read_text()
    code = "import sys, emonext_edge.tensorrt_compat; print(sorted(m for m in ('torch', 'tensorrt', 'pycuda', " \
           "'calibration', 'export') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export.tensorrt", *args], check=False, capture_output=True, text=True, cwd=cwd,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=600)


@pytest.fixture(scope="module")
def small_onnx(official_model, tmp_path_factory):
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("trt_plan") / "official.onnx"
    export_onnx(official_model, path, force=True)
    return path


@pytest.fixture(scope="module")
def small_onnx16(official_model, tmp_path_factory):
    from export.onnx import export_onnx

    path = tmp_path_factory.mktemp("trt_plan16") / "official16.onnx"
    export_onnx(official_model, path, opset=16, force=True)
    return path


@pytest.mark.parametrize("version", compat.TARGET_VERSIONS)
def test_check_only_prints_the_plan_and_operator_check(small_onnx, small_onnx16, version, tmp_path, monkeypatch,
                                                       capsys):
    from export.tensorrt import main

    monkeypatch.chdir(tmp_path)
    onnx_path = small_onnx16 if compat.plan_for(version).onnx_opset < 17 else small_onnx
    rc = main(["--onnx", str(onnx_path), "--check-only", "--trt-version", version, "--fp16", "--int8"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    plan = compat.plan_for(version)
    path = plan.path("fp16+int8")
    assert f"plan for TensorRT {version}" in out
    assert compat.ONNX_KINDS[path.onnx][0] in out and f"opset {path.onnx_opset}" in out
    assert ("strongly typed" if path.strongly_typed else "weakly typed") in out
    assert f"builder flags:  {', '.join(path.builder_flags) or 'none'}" in out
    assert f"engine:         {path.engine_precision}" in out
    assert f"operator check, TensorRT {plan.label}: all operators supported" in out
    proxy = " minus the names 8.6 added" if version.startswith("8.5") else ""
    assert f"API check, TensorRT {plan.label}: the {len(plan.api_uses())} calls of the plan hold on the TensorRT " \
           f"{version if not proxy else '8.6.1'} bindings{proxy}" in out
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.parametrize("field,version,flags", [
    ("calibrator", "11.4.0", ["--int8", "--int8-mode", "calibrator"]),  # an 11.x calibrator: no such class there
    ("calibrator", "10.13.3", ["--int8", "--int8-mode", "calibrator"]),  # deprecated; the bindings still have it
    ("progress_monitor", "8.6.1", ["-v"]),  # IProgressMonitor before 10.0
    ("strongly_typed", "10.3.0", ["--fp16"]),  # fine: 10.x has STRONGLY_TYPED
])
def test_check_only_refuses_an_impossible_plan_in_one_line(small_onnx16, field, version, flags, tmp_path,
                                                           monkeypatch, capsys):
    """A plan field opened for every version (a plan bug): --check-only checks the calls against the version's
    shipped binding dump and exits 2 with one line where they do not exist."""
    import dataclasses

    from export.tensorrt import main

    real = compat.plan_for
    monkeypatch.setattr(compat, "plan_for", lambda v: dataclasses.replace(real(v), **{field: True}))
    monkeypatch.chdir(tmp_path)
    rc = main(["--onnx", str(small_onnx16), "--check-only", "--trt-version", version, *flags])
    out, err = capsys.readouterr()
    if version in ("10.13.3", "10.3.0"):
        assert rc == 0, err
        return
    assert rc == 2 and out.count("API check") == 0 and err.count("\n") == 1, (out, err)
    assert err.startswith(f"error: TensorRT {version} cannot build") and f"the TensorRT {version} bindings" in err
    assert ("IInt8EntropyCalibrator2" if field == "calibrator" else "IProgressMonitor") in err


def test_check_only_85_refuses_an_opset_17_onnx_with_the_fix(small_onnx, tmp_path, monkeypatch, capsys):
    """An opset 17 export holds LayerNormalization nodes, which TensorRT 8.5 cannot parse."""
    from export.tensorrt import main

    monkeypatch.chdir(tmp_path)
    rc = main(["--onnx", str(small_onnx), "--check-only", "--trt-version", "8.5.2", "--fp16"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "operator check, TensorRT 8.5.2:" in out and "LayerNormalization x" in out
    assert "(supported from TensorRT 8.6)" in out
    assert "python -m export.onnx --opset 16" in out


def test_export_engine_api_takes_typed_options(small_onnx, tmp_path):
    from export.tensorrt import EngineOptions, export_engine

    lines: list[str] = []
    result = export_engine(EngineOptions(onnx=small_onnx, precision="fp16", trt_version="8.6.1", check_only=True,
                                         output=tmp_path / "sub" / "m.engine"), say=lines.append)
    assert result.target == "tensorrt" and result.artifacts == [] and result.exit_code == 0
    assert result.detail.path == compat.plan_for("8.6.1").path("fp16") and result.detail.opcheck == {"8.6.1": []}
    assert any("FP16 + OBEY_PRECISION_CONSTRAINTS" in line for line in lines)
    assert not (tmp_path / "sub").exists()
    with pytest.raises(UsageError, match="--min-batch"):
        export_engine(EngineOptions(onnx=small_onnx, profile=(4, 2, 8), check_only=True))


def test_cli_bad_inputs_are_one_line_exit_2(tmp_path):
    garbage = tmp_path / "random.onnx"
    garbage.write_bytes(bytes(range(256)) * 8)
    r = _cli("--onnx", str(garbage), "--check-only", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: --onnx {garbage}: not a readable ONNX model")
    sidecar = tmp_path / "emonext.json"  # onnx.load parses .json as JSON: a ParseError traceback, exit 1, before
    sidecar.write_text('{"schema_version": 2}')
    r = _cli("--onnx", str(sidecar), "--check-only", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: --onnx {sidecar}: not a readable ONNX model")
    r = _cli("--output", "x.onnx", "--check-only", cwd=tmp_path)
    assert r.returncode == 2 and "expected a .engine" in r.stderr
    r = _cli("--trt-version", "eleven", "--check-only", cwd=tmp_path)
    assert r.returncode == 2 and "--trt-version" in r.stderr


def test_garbage_engine_without_tensorrt_names_the_file(tmp_path):
    if compat.installed_version() is not None:
        pytest.skip("TensorRT is installed here")
    from emonext_edge import Runtime
    from emonext_edge.errors import BackendUnavailableError

    engine = tmp_path / "garbage.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(BackendUnavailableError, match=str(engine)):
        Runtime(engine)


@pytest.mark.slow
def test_mypy_passes_and_catches_misspelling():
    sys.path.insert(0, str(REPO / "tests" / "typing"))
    import trt_mypy

    if trt_mypy.installed_stubs() is None:
        pytest.skip(f"{trt_mypy.STUBS_REQUIREMENT} could not be installed into {trt_mypy.PKG_DIR} (no package index)")
    stubs = trt_mypy.prepare_stubs()
    ok = trt_mypy.run_mypy(stubs=stubs)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = REPO / "tests" / "fixtures" / "cache" / "misspelled_trt.py"
    bad.write_text("import tensorrt as trt\n\n\ndef f(config: trt.IBuilderConfig) -> None:\n"
                   "    config.set_flagg(trt.BuilderFlag.FP16)\n")
    caught = trt_mypy.run_mypy([str(bad.relative_to(REPO))], stubs=stubs)
    assert caught.returncode != 0 and 'has no attribute "set_flagg"' in caught.stdout


#: type/order misuses planted in a copy of the TensorRT code; mypy sees them now that the compat layer's
#: TensorRT objects are typed with tensorrt-stubs' classes (``parser.parse(path)`` it does not: the stubs'
#: ``typing_extensions.Buffer`` parameter accepts a str under mypy; the binding audit and the recording catch it)
MYPY_MUTANTS = {
    "set_input_shape(shape, name)": ("emonext_edge/tensorrt_compat.py", "context.set_input_shape(name, shape)",
                                     "context.set_input_shape(shape, name)", "set_input_shape"),
    'set_flag("FP16")': ("emonext_edge/tensorrt_compat.py", "config.set_flag(trt.BuilderFlag.FP16)",
                         'config.set_flag("FP16")', '"set_flag" of "IBuilderConfig" has incompatible type "str"'),
    "set_tensor_address(address, name)": ("emonext_edge/tensorrt_compat.py", "context.set_tensor_address(name, address)",
                                          "context.set_tensor_address(address, name)", '"set_tensor_address"'),
    "get_tensor_profile_shape(0, name)": ("emonext_edge/tensorrt_compat.py", "engine.get_tensor_profile_shape(name, 0)",
                                          "engine.get_tensor_profile_shape(0, name)", '"get_tensor_profile_shape"'),
    "alias in the backend's run": ("emonext_edge/backends/tensorrt_backend.py", "            compat.execute(self._context,",
                                   ("            ctx = self._context\n            ctx.execute_async_v2([], 0)\n"
                                    "            compat.execute(self._context,"),
                                   '"IExecutionContext" has no attribute "execute_async_v2"'),
}


@pytest.mark.slow
def test_mypy_catches_type_misuses_through_the_typed_compat_layer():
    import re

    sys.path.insert(0, str(REPO / "tests" / "typing"))
    import trt_mypy

    if trt_mypy.installed_stubs() is None:
        pytest.skip(f"{trt_mypy.STUBS_REQUIREMENT} could not be installed into {trt_mypy.PKG_DIR} (no package index)")
    stubs = trt_mypy.prepare_stubs()
    folder = REPO / "tests" / "fixtures" / "cache" / "mypy_mutants"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (misuse, (rel, old, new, _)) in enumerate(MYPY_MUTANTS.items()):
        text = (REPO / rel).read_text()
        assert text.count(old) == 1, misuse
        text = text.replace(old, new)  # relative imports made absolute: the copy lives outside the package
        text = re.sub(r"^from \.\. import ", "from emonext_edge import ", text, flags=re.MULTILINE)
        text = re.sub(r"^from \.\.(\w)", r"from emonext_edge.\1", text, flags=re.MULTILINE)
        text = re.sub(r"^from \.base import", "from emonext_edge.backends.base import", text, flags=re.MULTILINE)
        path = folder / f"mutant{i}.py"
        path.write_text(text)
        files[misuse] = path
    result = trt_mypy.run_mypy([str(p.relative_to(REPO)) for p in files.values()], stubs=stubs)
    for misuse, path in files.items():
        errors = [line for line in result.stdout.splitlines() if line.startswith(str(path.relative_to(REPO)) + ":")
                  and "error:" in line]
        assert any(MYPY_MUTANTS[misuse][3] in line for line in errors), (misuse, result.stdout[-3000:])
