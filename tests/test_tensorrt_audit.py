"""The TensorRT code against the real Python bindings of 8.6.1, 10.3.0, 10.13.3 and 11.4.0 (and 8.5 by proxy).

Each version's binding module is imported in a subprocess against stub TensorRT libraries
compiled here from ``tests/trt_stubs/libnvinfer_stub.c`` (every stub aborts: nothing calls
into TensorRT) and its API is dumped; every entry of ``tensorrt_compat.API_USES`` reachable
on that version's plan must hold there (class, method with our argument count, keywords,
argument types in order and its return type, property / settable property with the value
type, enum member in its own enum, override parameters) — ``export/trt_api.py``, the check
``--check-only`` runs from the dumps shipped in the package (kept equal to fresh dumps here).
No 8.5 binding module can be had from a package index: 8.5.2 is checked against the 8.6.1
bindings minus the names 8.6 added. The table itself is kept equal to the code: a typed source
scan of the TensorRT modules (chained reads and local aliases followed through the table's
``returns``), and a recording run per version of the builder, calibrator, runtime functions and
the Runtime's TensorRT backend (``_load``/``run``/``close``) that records argument types.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, Optional

import pytest
from trt_stubs import audit, bindings, recorder

from emonext_edge import tensorrt_compat as compat
from emonext_edge.backends import tensorrt_backend
from emonext_edge.tensorrt_compat import API_USES, ApiUse
from export import trt_api

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


def _api_for(apis: dict[str, Any], version: str) -> dict[str, Any]:
    """The fresh dump of ``version``, or for 8.5 the 8.6.1 one minus the names 8.6 added (as --check-only does)."""
    if version in apis:
        return apis[version]
    assert compat.parse_version(version)[:2] == (8, 5), version
    return trt_api.without(apis["8.6.1"], compat.ADDED_IN_8_6)


def test_a_call_into_the_stubs_aborts(shared_dir, work, apis):
    """The stubs are traps: creating a Builder reaches createInferBuilder_INTERNAL and ends the process."""
    import signal

    code = "import tensorrt_bindings as t\nlogger = t.Logger(t.Logger.WARNING)\nprint('logger ok', flush=True)\nt.Builder(logger)\n"
    proc = bindings.run_with_bindings("10.13.3", shared_dir, work, code)
    assert proc.stdout.strip() == "logger ok" and proc.returncode == -signal.SIGABRT


@pytest.mark.parametrize("version", compat.TARGET_VERSIONS)
def test_every_use_on_the_versions_path_exists_in_its_real_bindings(apis, version):
    api = _api_for(apis, version)
    assert api["version"].startswith(version if version in apis else "8.6.1")
    plan = compat.plan_for(version)
    uses = plan.api_uses()
    assert len(uses) >= 40 and all(u.types for u in uses if u.kind in ("method", "class") and u.args)
    assert audit.audit(api, uses) == []
    for path in plan.precision_paths():
        assert audit.audit(api, trt_api.path_uses(plan, path)) == [], path


@pytest.mark.parametrize("version", VERSIONS)
def test_shipped_dumps_are_the_real_bindings(apis, version):
    """What --check-only reads (export/data/tensorrt_api) is the reduced fresh dump (regenerate:
    python tests/trt_stubs/bindings.py ../shared)."""
    assert trt_api.load_dump(version) == trt_api.reduce_dump(apis[version])
    assert trt_api.dump_path(version).stat().st_size < 64_000


def test_86_names_the_85_proxy_removes_exist_in_861(apis):
    for owner, name in compat.ADDED_IN_8_6:
        members = apis["8.6.1"]["module"] if owner == "tensorrt" else apis["8.6.1"]["classes"][owner]["members"]
        assert name in members, (owner, name)
    proxy = _api_for(apis, "8.5.2")
    assert audit.audit(proxy, [ApiUse("tensorrt", "INormalizationLayer", "class")])
    assert not audit.audit(apis["8.6.1"], [ApiUse("tensorrt", "INormalizationLayer", "class")])


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


#: planted misuses as the table would declare them; each must fail the audit on every version
PLANTED = {
    "removed enum member": ApiUse("TensorIOMode", "INPUTS", "member"),
    "renamed method": compat._m("IExecutionContext", "execute_async_v4", 1, "bool", types=("int",)),
    "wrong keyword": compat._m("IBuilderConfig", "set_memory_pool_limit", 1, keywords=("size",),
                               types=("MemoryPoolType", "int")),
    "too many arguments": compat._m("IBuilderConfig", "set_flag", 2, types=("BuilderFlag", "bool")),
    "read-only property set": ApiUse("ICudaEngine", "num_io_tensors", "settable", types=("int",)),
    "wrong return type": compat._m("Builder", "create_builder_config", 0, "INetworkDefinition"),
    "member of another enum": ApiUse("BuilderFlag", "WORKSPACE", "member"),
    "override with renamed parameter": ApiUse("IProgressMonitor", "phase_finish", "override", 1, ("phase",)),
    # argument types and order (each a TypeError on the real bindings)
    "set_input_shape(shape, name)": compat._m("IExecutionContext", "set_input_shape", 2, "bool", types=("Dims", "str")),
    'set_flag("FP16")': compat._m("IBuilderConfig", "set_flag", 1, "None", types=("str",)),
    "parser.parse(path)": compat._m("OnnxParser", "parse", 1, "bool", types=("str",)),
    "set_tensor_address(address, name)": compat._m("IExecutionContext", "set_tensor_address", 2, "bool",
                                                   types=("int", "str")),
    "get_tensor_profile_shape(0, name)": compat._m("ICudaEngine", "get_tensor_profile_shape", 2, "list[Dims]",
                                                   types=("int", "str")),
    "layer.precision = 'fp32'": ApiUse("ILayer", "precision", "settable", types=("str",)),
    "Runtime(None)": ApiUse("tensorrt", "Runtime", "class", 1, returns="Runtime", types=("None",)),
    "deserialize_cuda_engine(path)": compat._m("Runtime", "deserialize_cuda_engine", 1, "ICudaEngine", types=("str",)),
}


@pytest.mark.parametrize("version", compat.TARGET_VERSIONS)
@pytest.mark.parametrize("misuse", list(PLANTED))
def test_audit_fails_on_a_planted_misuse(apis, version, misuse):
    uses = compat.plan_for(version).api_uses() + [PLANTED[misuse]]
    problems = audit.audit(_api_for(apis, version), uses)
    assert len(problems) == 1 and str(PLANTED[misuse]) in problems[0], problems


def test_the_correct_forms_of_the_type_misuses_pass(apis):
    """The planted type misuses fail for their types, not their names: the right order passes everywhere."""
    right = [compat._m("OnnxParser", "parse", 1, "bool", types=("bytes",)),
             compat._m("OnnxParser", "parse", 2, "bool", types=("bytes", "str")),
             compat._m("IExecutionContext", "set_input_shape", 2, "bool", types=("str", "Dims")),
             compat._m("ICudaEngine", "get_tensor_profile_shape", 2, "list[Dims]", types=("str", "int"))]
    for version in compat.TARGET_VERSIONS:
        assert audit.audit(_api_for(apis, version), right) == [], version


def test_signature_parser():
    doc = ("f(*args, **kwargs)\nOverloaded function.\n\n1. f(self: tensorrt_bindings.tensorrt.X, a: int, "
           "b: List[int] = [1, 2]) -> tensorrt_bindings.tensorrt.Y\n\n2. f(self: X, c: str) -> None\n")
    sigs = audit.parse_signatures("f", doc)
    assert [s.returns for s in sigs] == ["Y", "None"]
    assert [p.type for p in sigs[0].params] == ["int", "list[int]"]
    assert audit.accepts(sigs[0], 1, ()) and audit.accepts(sigs[0], 0, ("a", "b"))
    assert not audit.accepts(sigs[0], 0, ()) and not audit.accepts(sigs[0], 3, ())
    assert audit.accepts(sigs[1], 0, ("c",)) and not audit.accepts(sigs[1], 0, ("a",))
    api = {"classes": {"Logger": {"bases": ["ILogger"]}}}
    assert audit.accepts(sigs[0], 2, (), ("int", "Dims"), api) and not audit.accepts(sigs[0], 2, (), ("str", "Dims"), api)
    assert audit.accepts(sigs[1], 0, ("c",), ("str",), api) and not audit.accepts(sigs[1], 0, ("c",), ("bytes",), api)
    sev = audit.parse_signatures("__init__", "__init__(self: tensorrt.Logger, min_severity: "
                                             "tensorrt.ILogger.Severity = <Severity.WARNING: 2>) -> None")
    assert sev[0].params[0].type == "ILogger.Severity" and sev[0].params[0].has_default
    assert audit.type_ok("Severity", "ILogger.Severity", api) and audit.type_ok("Logger", "ILogger", api)
    assert not audit.type_ok("str", "BuilderFlag", api) and not audit.type_ok("int", "BuilderFlag", api)
    assert audit.type_ok("int", "SupportsInt", api) and audit.type_ok("bytes", "Buffer", api)
    assert not audit.type_ok("str", "buffer", api) and audit.type_ok("None", "Optional[str]", api)


# --------------------------------------------------------------------------- the table is the code


ROLE = {"trt": "tensorrt", "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
        "config": "IBuilderConfig", "layer": "ILayer", "profile": "IOptimizationProfile", "cache": "ITimingCache",
        "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext"}
#: TensorRT objects the backend keeps on ``self``
SELF_ROLE = {"_engine": "ICudaEngine", "_context": "IExecutionContext", "_runtime": "Runtime", "_logger": "Logger"}
_BUILTIN = {"str", "int", "bool", "bytes", "Dims", "list[Dims]", "None", "IHostMemory"}


def scan(source: str, table: tuple[ApiUse, ...] = API_USES) -> set[recorder.Record]:
    """TensorRT accesses in ``source``, typed through ``table``: the names in ``ROLE``/``SELF_ROLE`` are
    TensorRT objects; an attribute, call result or local alias of one has the type the table's entry
    ``returns`` (so ``network.get_input(0).shape`` is ``(ITensor, shape)`` once the table declares
    ``get_input`` returning ``ITensor``); subclasses of ``trt.X`` give overrides. Argument types are
    those known statically (literals, TensorRT values), ``?`` otherwise."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = {(u.owner, u.name): u for u in table}
    owners = {u.owner for u in table} | {u.returns for u in table if u.returns} | set(ROLE.values())
    enums = {u.owner for u in table if u.kind == "member"}
    found: set[recorder.Record] = set()

    def static_type(node: Optional[ast.AST], env: dict[str, str]) -> Optional[str]:
        if isinstance(node, ast.Constant):
            return {bool: "bool", int: "int", str: "str", bytes: "bytes", type(None): "None"}.get(type(node.value))
        if isinstance(node, (ast.Tuple, ast.List)):
            return "Dims"
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in SELF_ROLE:
                return SELF_ROLE[node.attr]
            owner = static_type(node.value, env)
            if owner is None or owner in _BUILTIN:
                return None
            use = uses.get((owner, node.attr))
            if use is None and owner in enums:
                return owner  # an undeclared member still has its enum's type (recorded as undeclared)
            if use is None:
                return node.attr if owner == "tensorrt" and (node.attr in enums or node.attr in owners) else None
            if use.kind == "member":
                return owner
            if use.kind in ("value", "property", "class"):
                return use.returns or (node.attr if use.kind == "class" else None)
            return None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = static_type(node.func.value, env)
            use = uses.get((owner or "", node.func.attr))
            if use is not None and use.kind in ("method", "function"):
                return use.returns
            if owner == "tensorrt" and use is not None and use.kind == "class":
                return use.returns or node.func.attr
        return None

    def record(node: ast.Attribute, owner: str, env: dict[str, str]) -> None:
        parent = parents.get(node)
        name = node.attr
        use = uses.get((owner, name))
        if owner == "tensorrt" and use is None and isinstance(parent, ast.Attribute) and parent.value is node:
            return  # trt.BuilderFlag in trt.BuilderFlag.FP16: the member entry names its enum
        if isinstance(parent, ast.Call) and parent.func is node:
            kind = use.kind if use and use.kind in ("class", "method", "function", "override") else "call"
            if name == "__init__":
                found.add((owner, name, "override", len(parent.args) - 1, (), ()))
                return
            keys = tuple(sorted(k.arg or "**" for k in parent.keywords))
            by_key = {k.arg: k.value for k in parent.keywords}
            types = tuple(static_type(a, env) or "?" for a in parent.args) + tuple(
                static_type(by_key.get(k), env) or "?" for k in keys)
            found.add((owner, name, kind, len(parent.args), keys, types))
        elif isinstance(node.ctx, ast.Store):
            assign = parent if isinstance(parent, ast.Assign) else None
            found.add((owner, name, "settable", 0, (), (static_type(assign.value, env) or "?",) if assign else ("?",)))
        elif use is not None and use.kind == "class" and use.args is None:
            found.add((owner, name, "class", 0, (), ()))
        elif use is not None and use.kind == "class" and not isinstance(parent, ast.Attribute):
            found.add((owner, name, "class-ref", 0, (), ()))
        elif use is not None and use.kind == "class":
            pass  # trt.Logger.WARNING: recorded as (Logger, WARNING)
        else:
            found.add((owner, name, use.kind if use else "read", 0, (), ()))

    functions = (ast.FunctionDef, ast.AsyncFunctionDef)

    def own_nodes(scope: ast.AST) -> list[ast.AST]:
        """The nodes of ``scope`` outside the functions nested in it."""
        out, todo = [], list(ast.iter_child_nodes(scope))
        while todo:
            node = todo.pop()
            out.append(node)
            if not isinstance(node, functions):
                todo.extend(ast.iter_child_nodes(node))
        return out

    def visit(scope: ast.AST, outer: dict[str, str]) -> None:
        env = dict(outer)  # closures see the enclosing function's names
        nodes = own_nodes(scope)
        if isinstance(scope, functions):  # parameters annotated str/int/bool/bytes
            for arg in scope.args.args + scope.args.kwonlyargs:
                if isinstance(arg.annotation, ast.Name) and arg.annotation.id in ("str", "int", "bool", "bytes"):
                    env[arg.arg] = arg.annotation.id
        for _ in range(2):  # aliases of aliases
            for node in nodes:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    typ = static_type(node.value, env)
                    if typ is not None:
                        env[node.targets[0].id] = typ
        for node in nodes:
            if isinstance(node, ast.Attribute):
                owner = static_type(node.value, env)
                if owner is not None and owner not in _BUILTIN and (owner == "tensorrt" or owner in owners):
                    record(node, owner, env)
            elif isinstance(node, functions):
                visit(node, env)

    visit(tree, dict(ROLE))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "trt":
                    for fn in node.body:
                        if isinstance(fn, ast.FunctionDef) and fn.name != "__init__":
                            params = tuple(a.arg for a in fn.args.args[1:])
                            found.add((base.attr, fn.name, "override", len(params), params, ()))
    return found


def _code_records(table: tuple[ApiUse, ...] = API_USES, sources: Optional[dict[str, str]] = None) -> set:
    code: set[recorder.Record] = set()
    for rel in CODE:
        code |= scan((sources or {}).get(rel) or (REPO / rel).read_text(), table)
    return {r for r in code if r[2] != "class-ref"} | {
        ("tensorrt", n, "class", 0, (), ()) for (_, n, k, *_) in code if k == "class-ref"}


def table_vs_code(table: tuple[ApiUse, ...] = API_USES, sources: Optional[dict[str, str]] = None) -> list[str]:
    """Differences between the table and the scanned code (names, call shapes, statically known argument types)."""
    code = _code_records(table, sources)
    expected = recorder.expected(list(table))
    problems = []
    code_names = {(o, n) for o, n, *_ in code}
    table_names = {(o, n) for o, n, *_ in expected}
    problems += [f"used, not in API_USES: {o}.{n}" for o, n in sorted(code_names - table_names)]
    problems += [f"in API_USES, never used: {o}.{n}" for o, n in sorted(table_names - code_names)]
    calls = ("method", "function", "override", "settable", "call")
    shape = {r[:5] for r in code if r[2] in calls}
    want = {r[:5] for r in expected if r[2] in calls}
    problems += [f"call shape {r} not declared" for r in sorted(shape - want)]
    problems += [f"declared call shape {r} not in the code" for r in sorted(want - shape)]
    declared = {r[:5]: r[5] for r in expected}
    for r in sorted(code):
        if r[:5] in declared and declared[r[:5]] and r[5]:
            for ours, theirs in zip(r[5], declared[r[:5]]):
                if ours != "?" and ours != theirs:
                    problems.append(f"{r[0]}.{r[1]}: the code passes {r[5]}, API_USES declares {declared[r[:5]]}")
                    break
    return problems


def test_the_table_declares_exactly_what_the_code_touches():
    assert table_vs_code() == []


def test_scan_sees_a_planted_misuse():
    bad = ("def f(trt, config):\n    config.set_flags(trt.BuilderFlag.FP17)\n    config.max_workspace_size = 1\n"
           "class B:\n    def run(self):\n        self._context.execute_async_v2(1, 2)\n")
    found = scan(bad)
    assert ("IExecutionContext", "execute_async_v2", "call", 2, (), ("int", "int")) in found
    assert ("IBuilderConfig", "set_flags", "call", 1, (), ("BuilderFlag",)) in found
    assert ("BuilderFlag", "FP17", "read", 0, (), ()) in found
    assert ("IBuilderConfig", "max_workspace_size", "settable", 0, (), ("int",)) in found


def test_scan_follows_aliases_and_declared_chains():
    alias = "class B:\n    def run(self):\n        ctx = self._context\n        c2 = ctx\n        c2.execute_async_v2([1], 2)\n"
    assert ("IExecutionContext", "execute_async_v2", "call", 2, (), ("Dims", "int")) in scan(alias)
    chained = "def f(network):\n    return network.get_input(0).shape\n"
    assert ("?" not in str(scan(chained))) and ("INetworkDefinition", "get_input", "call", 1, (), ("int",)) in scan(chained)
    # declaring the chain is a table edit only: the scan types the result through ``returns``
    extra = (compat._m("INetworkDefinition", "get_input", 1, "ITensor", types=("int",)),
             ApiUse("ITensor", "shape", "property", returns="Dims"))
    found = scan(chained, API_USES + extra)
    assert found == recorder.expected(list(extra))


def test_a_declared_chained_read_passes_the_audit(apis):
    extra = [compat._m("INetworkDefinition", "get_input", 1, "ITensor", types=("int",)),
             ApiUse("ITensor", "shape", "property", returns="Dims")]
    for version in compat.TARGET_VERSIONS:
        assert audit.audit(_api_for(apis, version), extra) == [], version


@pytest.mark.parametrize("version", compat.TARGET_VERSIONS)
def test_recorded_run_touches_exactly_the_versions_table(version, tmp_path):
    """Every build path, the calibrator, the runtime functions and the backend's _load/run/close, recorded with types."""
    got = recorder.record_run(version, tmp_path)
    assert not [r for r in got if r[0] == "?"], "undeclared TensorRT access"
    assert got == recorder.expected(compat.plan_for(version).api_uses())


# --------------------------------------------------------------------------- planted misuses in the code


_ALIAS_RUN = ("            compat.execute(self._context,",
              ("            ctx = self._context\n"
               "            ctx.execute_async_v2([int(self._d_in), int(self._d_out)], self._stream.handle)\n"
               "            compat.execute(self._context,"))
#: name -> (module, source replacements); the table (API_USES) is left as it was unless the mutation edits it
CODE_MUTANTS = {
    "set_input_shape(shape, name)": (compat, [("context.set_input_shape(name, shape)",
                                               "context.set_input_shape(shape, name)")]),
    'set_flag("FP16")': (compat, [("config.set_flag(trt.BuilderFlag.FP16)", 'config.set_flag("FP16")')]),
    # the table declares parse() honestly (it takes the model bytes); the code passes the path
    "parser.parse(path)": (compat, [("parser.parse_from_file(onnx_path)", "parser.parse(onnx_path)"),
                                    ('_m("OnnxParser", "parse_from_file", 1, "bool", types=("str",))',
                                     '_m("OnnxParser", "parse", 1, "bool", types=("bytes",))')]),
    "set_tensor_address(address, name)": (compat, [("context.set_tensor_address(name, address)",
                                                    "context.set_tensor_address(address, name)")]),
    "get_tensor_profile_shape(0, name)": (compat, [("engine.get_tensor_profile_shape(name, 0)",
                                                    "engine.get_tensor_profile_shape(0, name)")]),
    "alias in the backend's run": (tensorrt_backend, [_ALIAS_RUN]),
}


@pytest.mark.parametrize("version", compat.TARGET_VERSIONS)
@pytest.mark.parametrize("misuse", list(CODE_MUTANTS))
def test_recording_catches_a_misuse_planted_in_the_code(misuse, version, tmp_path):
    module, replacements = CODE_MUTANTS[misuse]
    mutant = recorder.load_variant(module, replacements, "mutant")
    table_module = mutant if module is compat else compat
    kwargs = {"compat": mutant} if module is compat else {"backend": mutant}
    got = recorder.record_run(version, tmp_path, **kwargs)
    extra = got - recorder.expected(table_module.plan_for(version).api_uses())
    if misuse == 'set_flag("FP16")' and not compat.plan_for(version).precision_flags:
        # 11.x never runs the FP16-flag line (no builder flags): the run cannot see it, the typed scan does
        assert not extra
        assert _scan_mutant(misuse)
        return
    assert extra, "the mutant recorded exactly the table"
    assert all(r[0] == "?" or r[5] for r in extra)  # an undeclared name, or a call with other argument types


def _scan_mutant(misuse: str) -> list[str]:
    module, replacements = CODE_MUTANTS[misuse]
    assert module.__file__ is not None
    rel = str(Path(module.__file__).resolve().relative_to(REPO))
    text = (REPO / rel).read_text()
    for old, new in replacements:
        text = text.replace(old, new)
    table = recorder.load_variant(compat, replacements, "t").API_USES if module is compat else API_USES
    return table_vs_code(table, {rel: text})


def test_scan_catches_the_statically_visible_code_misuses():
    """Literal argument types and aliases are visible without running: the scan alone fails these mutants."""
    for misuse in ('set_flag("FP16")', "get_tensor_profile_shape(0, name)", "alias in the backend's run",
                   "parser.parse(path)"):
        assert _scan_mutant(misuse), misuse


def test_calibrator_refused_where_unreachable():
    from calibration.trt_calibrator import make_entropy_calibrator
    from emonext_edge.errors import UsageError

    for version in ("10.1.0", "10.13.3", "11.4.0"):
        with pytest.raises(UsageError, match="no usable INT8 calibrator"):
            make_entropy_calibrator(compat.plan_for(version), None, None, None)
        with pytest.raises(UsageError, match="--int8-mode explicit"):
            compat.plan_for(version).path("int8", "calibrator")
    assert compat.plan_for("10.0.1").path("int8", "calibrator").calibrator


@pytest.mark.parametrize("field,version,precision,mode", [
    ("calibrator", "11.4.0", "int8", "calibrator"),  # an 11.x calibrator: the class is gone
    ("precision_flags", "11.4.0", "fp16", "explicit"),  # FP16 builder flag on 11.x
    ("progress_monitor", "8.6.1", "fp32", "explicit"),  # IProgressMonitor before 10.0
])
def test_plan_check_refuses_an_impossible_plan(field, version, precision, mode):
    """A plan field opened where the version lacks the calls: the shipped-dump check fails (what --check-only runs)."""
    plan = dataclasses.replace(compat.plan_for(version), **{field: True})
    if field == "precision_flags":
        plan = dataclasses.replace(plan, strongly_typed=False)
    _, problems = trt_api.check_plan(plan, plan.path(precision, mode))
    assert problems
    assert trt_api.check_plan(compat.plan_for(version), compat.plan_for(version).path("fp32"))[1] == []


#: what the exporter (``_build_and_gate`` included) and the backend may touch of TensorRT themselves; everything
#: else goes through the compat functions, which the recording run executes
OUTSIDE_COMPAT = {("tensorrt", "__version__", "value", 0, (), ())}


def test_exporter_and_backend_call_tensorrt_only_through_compat():
    for rel in ("export/tensorrt.py", "emonext_edge/backends/tensorrt_backend.py"):
        assert scan((REPO / rel).read_text()) <= OUTSIDE_COMPAT, rel
    # an alias of the module in _build_and_gate is seen (the scan follows local aliases)
    text = (REPO / "export/tensorrt.py").read_text()
    old = "    trt = compat.import_tensorrt()\n"
    assert text.count(old) == 1
    bad = text.replace(old, old + "    t = trt\n    t.Builder(compat.make_logger(trt)).create_network(0)\n")
    found = scan(bad)
    assert ("tensorrt", "Builder", "class", 1, (), ("?",)) in found
    assert ("Builder", "create_network", "method", 1, (), ("int",)) in found
