"""The TensorRT code against the real Python bindings of 8.6.1, 10.3.0, 10.13.3 and 11.4.0.

Each version's binding module is imported in a subprocess against stub TensorRT libraries
compiled here from ``tests/trt_stubs/libnvinfer_stub.c`` (every stub aborts: nothing calls
into TensorRT) and its API is dumped; every entry of ``tensorrt_compat.API_USES`` reachable
on that version's plan must hold there (class, method with our argument count and keywords
and its return type, property / settable property, enum member in its own enum, override
parameters). The table itself is kept equal to the code: a source scan of the TensorRT
modules, and a recording run of the builder/runtime/calibrator per version.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from trt_stubs import audit, bindings, recorder

from emonext_edge import tensorrt_compat as compat
from emonext_edge.errors import ExportError
from emonext_edge.tensorrt_compat import API_USES, ApiUse

REPO = Path(__file__).resolve().parents[1]
VERSIONS = list(bindings.WHEELS)
CODE = ("emonext_edge/tensorrt_compat.py", "emonext_edge/backends/tensorrt_backend.py", "export/tensorrt.py",
        "calibration/trt_calibrator.py")


@pytest.fixture(scope="module")
def work(shared_dir, tmp_path_factory):
    why = bindings.missing_tools()
    if why:
        pytest.skip(f"binding audit not possible here: {why}")
    return tmp_path_factory.mktemp("trt_bindings")


@pytest.fixture(scope="module")
def apis(shared_dir, work):
    return {v: bindings.dump_api(v, shared_dir, work) for v in VERSIONS}


def test_a_call_into_the_stubs_aborts(shared_dir, work, apis):
    """The stubs are traps: creating a Builder reaches createInferBuilder_INTERNAL and ends the process."""
    import signal

    code = "import tensorrt_bindings as t\nlogger = t.Logger(t.Logger.WARNING)\nprint('logger ok', flush=True)\nt.Builder(logger)\n"
    proc = bindings.run_with_bindings("10.13.3", shared_dir, work, code)
    assert proc.stdout.strip() == "logger ok" and proc.returncode == -signal.SIGABRT


@pytest.mark.parametrize("version", VERSIONS)
def test_every_use_on_the_versions_path_exists_in_its_real_bindings(apis, version):
    api = apis[version]
    assert api["version"].startswith(version)
    uses = compat.plan_for(version).api_uses()
    assert len(uses) >= 40
    assert audit.audit(api, uses) == []


def test_stub_source_defines_every_symbol_the_bindings_link_and_only_traps(apis):
    source = bindings.STUB_SOURCE.read_text()
    needed = set().union(*(set(apis[v]["symbols"]) for v in VERSIONS))
    defined = set(__import__("re").findall(r"^\w[\w *]*?\b(\w+)\(", source, __import__("re").MULTILINE))
    assert needed == defined - {"abort"}, (needed ^ defined)
    assert source.count("TRAP") == len(needed) + 1  # every definition aborts


@pytest.mark.parametrize("version", VERSIONS)
def test_imported_against_stubs_with_the_bindings_own_sonames(apis, version):
    api = apis[version]
    major = version.split(".")[0]
    expected = {f"libnvinfer.so.{major}", f"libnvinfer_plugin.so.{major}", f"libnvonnxparser.so.{major}"}
    if major == "8":
        expected.add("libnvparsers.so.8")
    assert set(api["sonames"]) == expected
    assert {"createInferBuilder_INTERNAL", "createInferRuntime_INTERNAL", "createNvOnnxParser_INTERNAL",
            "getPluginRegistry", "initLibNvInferPlugins"} <= set(api["symbols"])
    assert len(api["classes"]) > 150  # the complete module, not a stub of it


def test_known_negatives(apis):
    members = {v: apis[v]["classes"] for v in VERSIONS}
    flags11 = members["11.4.0"]["BuilderFlag"]["members"]
    assert "FP16" not in flags11 and "INT8" not in flags11 and "OBEY_PRECISION_CONSTRAINTS" not in flags11
    assert "FP16" in members["10.13.3"]["BuilderFlag"]["members"]
    assert "IInt8EntropyCalibrator2" not in apis["11.4.0"]["module"]
    assert "IInt8EntropyCalibrator2" in apis["10.13.3"]["module"]
    assert "execute_async_v2" in members["8.6.1"]["IExecutionContext"]["members"]
    assert "execute_async_v2" not in members["10.3.0"]["IExecutionContext"]["members"]
    assert "STRONGLY_TYPED" not in members["8.6.1"]["NetworkDefinitionCreationFlag"]["members"]
    assert "IProgressMonitor" not in apis["8.6.1"]["module"] and "IProgressMonitor" in apis["10.3.0"]["module"]
    for v in ("10.3.0", "10.13.3", "11.4.0"):
        assert "max_workspace_size" not in members[v]["IBuilderConfig"]["members"]
    assert members["8.6.1"]["IBuilderConfig"]["members"]["max_workspace_size"]["settable"]
    # the same negatives through the audit (names that only exist as substrings elsewhere do not pass)
    assert audit.audit(apis["11.4.0"], [ApiUse("BuilderFlag", "FP16", "member"), ApiUse("BuilderFlag", "INT8", "member")])
    assert audit.audit(apis["10.13.3"], [ApiUse("IBuilderConfig", "max_workspace_size", "settable")])
    assert not audit.audit(apis["8.6.1"], [ApiUse("IBuilderConfig", "max_workspace_size", "settable"),
                                           compat._m("IExecutionContext", "execute_async_v2", 2, "bool")])


def test_every_version_needs_the_table_split_by_plan(apis):
    """The whole table fails where the plan says a use is unreachable, and nowhere else."""
    for version in VERSIONS:
        plan = compat.plan_for(version)
        unreachable = [u for u in API_USES if not u.reachable(plan)]
        failing = audit.audit(apis[version], unreachable)
        if version == "8.6.1":  # strongly typed / progress monitor paths
            assert any("STRONGLY_TYPED" in f for f in failing) and any("IProgressMonitor" in f for f in failing)
        if version == "11.4.0":
            assert len(failing) >= 10  # flags, layer precision, calibrator all absent


PLANTED = {
    "removed enum member": ApiUse("TensorIOMode", "INPUTS", "member"),
    "renamed method": compat._m("IExecutionContext", "execute_async_v4", 1, "bool"),
    "wrong keyword": compat._m("IBuilderConfig", "set_memory_pool_limit", 1, keywords=("size",)),
    "too many arguments": compat._m("IBuilderConfig", "set_flag", 2),
    "read-only property set": ApiUse("ICudaEngine", "num_io_tensors", "settable"),
    "wrong return type": compat._m("Builder", "create_builder_config", 0, "INetworkDefinition"),
    "member of another enum": ApiUse("BuilderFlag", "WORKSPACE", "member"),
    "override with renamed parameter": ApiUse("IProgressMonitor", "phase_finish", "override", 1, ("phase",)),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("misuse", list(PLANTED))
def test_audit_fails_on_a_planted_misuse(apis, version, misuse):
    uses = compat.plan_for(version).api_uses() + [PLANTED[misuse]]
    problems = audit.audit(apis[version], uses)
    assert len(problems) == 1 and str(PLANTED[misuse]) in problems[0], problems


def test_signature_parser():
    doc = ("f(*args, **kwargs)\nOverloaded function.\n\n1. f(self: tensorrt_bindings.tensorrt.X, a: int, "
           "b: List[int] = [1, 2]) -> tensorrt_bindings.tensorrt.Y\n\n2. f(self: X, c: str) -> None\n")
    sigs = audit.parse_signatures("f", doc)
    assert [s.returns for s in sigs] == ["Y", "None"]
    assert audit.accepts(sigs[0], 1, ()) and audit.accepts(sigs[0], 0, ("a", "b"))
    assert not audit.accepts(sigs[0], 0, ()) and not audit.accepts(sigs[0], 3, ())
    assert audit.accepts(sigs[1], 0, ("c",)) and not audit.accepts(sigs[1], 0, ("a",))


# --------------------------------------------------------------------------- the table is the code


ROLE = {"trt": "tensorrt", "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
        "config": "IBuilderConfig", "layer": "ILayer", "profile": "IOptimizationProfile", "cache": "ITimingCache",
        "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext"}
#: TensorRT objects the backend keeps on ``self``
SELF_ROLE = {"_engine": "ICudaEngine", "_context": "IExecutionContext", "_runtime": "Runtime", "_logger": "Logger"}


def scan(source: str) -> set[recorder.Record]:
    """TensorRT accesses in ``source``: attributes of the names in ``ROLE`` (``trt.X.Y`` too) and
    the methods of classes derived from ``trt.X``."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[recorder.Record] = set()
    table = {(u.owner, u.name): u for u in API_USES}

    def record(node: ast.Attribute, owner: str) -> None:
        parent = parents.get(node)
        name = node.attr
        use = table.get((owner, name))
        if owner == "tensorrt" and use is None and isinstance(parent, ast.Attribute) and parent.value is node:
            return  # trt.BuilderFlag in trt.BuilderFlag.FP16: the member entry names its enum
        if isinstance(parent, ast.Call) and parent.func is node:
            kind = use.kind if use and use.kind in ("class", "method", "function", "override") else "call"
            if name == "__init__":
                found.add((owner, name, "override", len(parent.args) - 1, ()))
                return
            found.add((owner, name, kind, len(parent.args), tuple(sorted(k.arg or "**" for k in parent.keywords))))
        elif isinstance(node.ctx, ast.Store):
            found.add((owner, name, "settable", 0, ()))
        elif use is not None and use.kind == "class" and use.args is None:
            found.add((owner, name, "class", 0, ()))
        elif use is not None and use.kind == "class" and not (isinstance(parent, ast.Attribute)):
            found.add((owner, name, "class-ref", 0, ()))
        elif use is not None and use.kind == "class":
            pass  # trt.Logger.WARNING: recorded as (Logger, WARNING) below
        else:
            found.add((owner, name, use.kind if use else "read", 0, ()))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ROLE:
            record(node, ROLE[node.value.id])
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
              and node.value.attr in SELF_ROLE):
            record(node, SELF_ROLE[node.value.attr])
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and isinstance(node.value.value, ast.Name) and node.value.value.id == "trt"):
            record(node, node.value.attr)
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "trt":
                    for fn in node.body:
                        if isinstance(fn, ast.FunctionDef) and fn.name != "__init__":
                            params = tuple(a.arg for a in fn.args.args[1:])
                            found.add((base.attr, fn.name, "override", len(params), params))
    return found


def test_the_table_declares_exactly_what_the_code_touches():
    code: set[recorder.Record] = set()
    for rel in CODE:
        code |= scan((REPO / rel).read_text())
    table = recorder.expected(list(API_USES))
    code = {r for r in code if r[2] != "class-ref"} | {
        ("tensorrt", n, "class", 0, ()) for (_, n, k, _, _) in code if k == "class-ref"}
    table_names = {(o, n) for o, n, *_ in table}
    code_names = {(o, n) for o, n, *_ in code}
    assert code_names - table_names == set(), "TensorRT names used in the code but missing from API_USES"
    assert table_names - code_names == set(), "API_USES entries the code never touches"
    calls_in_code = {r for r in code if r[2] in ("method", "function", "override", "settable")}
    calls_in_table = {r for r in table if r[2] in ("method", "function", "override", "settable")}
    assert calls_in_code == calls_in_table


def test_scan_sees_a_planted_misuse():
    bad = ("def f(trt, config):\n    config.set_flags(trt.BuilderFlag.FP17)\n    config.max_workspace_size = 1\n"
           "class B:\n    def run(self):\n        self._context.execute_async_v2(1, 2)\n")
    found = scan(bad)
    assert ("IExecutionContext", "execute_async_v2", "call", 2, ()) in found
    assert ("IBuilderConfig", "set_flags", "call", 1, ()) in found
    assert ("BuilderFlag", "FP17", "read", 0, ()) in found
    assert ("IBuilderConfig", "max_workspace_size", "settable", 0, ()) in found


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_run_touches_exactly_the_versions_table(version):
    """Run the real builder, calibrator and runtime functions against the recorder on every path of the version."""
    plan = compat.plan_for(version)
    rec = recorder.Recorder()
    trt = rec.module
    import numpy as np

    for path in plan.precision_paths():
        calibrator = None
        if path.calibrator:
            from calibration.trt_calibrator import make_entropy_calibrator

            calibrator = make_entropy_calibrator(plan, trt, np.zeros((8, 3, 224, 224), np.float32), None)
        for dla in (None, 0):
            opts = compat.BuildOptions(path=path, dla_core=dla, calibrator=calibrator, fp32_layer_names=("/stn",),
                                       progress=lambda s: None)
            compat.build_serialized(plan, trt, "model.onnx", opts)
    _, engine, _ = compat.deserialize(trt, b"")
    compat.io_tensors(trt, engine)
    compat.execute(compat.create_context(engine), {"input": (1, 3, 224, 224)}, {"input": 0, "logits": 0}, 0)
    trt.__version__  # noqa: B018 - the backend and the exporter read it
    failing = recorder.Recorder(failing=("OnnxParser.parse_from_file",))  # the parser's error path
    with pytest.raises(ExportError, match="parser failed"):
        compat.parse_onnx(failing.module, object(), object(), "model.onnx")
    got = rec.records | failing.records
    assert not [r for r in got if r[0] == "?"], "undeclared TensorRT access"
    assert got == recorder.expected(plan.api_uses())


def test_calibrator_refused_where_unreachable():
    from calibration.trt_calibrator import make_entropy_calibrator
    from emonext_edge.errors import UsageError

    for version in ("10.1.0", "10.13.3", "11.4.0"):
        with pytest.raises(UsageError, match="no usable INT8 calibrator"):
            make_entropy_calibrator(compat.plan_for(version), None, None, None)
        with pytest.raises(UsageError, match="--int8-mode explicit"):
            compat.plan_for(version).path("int8", "calibrator")
    assert compat.plan_for("10.0.1").path("int8", "calibrator").calibrator
