"""A recording stand-in for the ``tensorrt`` module, typed by :data:`API_USES` (test scaffolding).

Each object it hands out knows which TensorRT class it stands for (from the ``returns`` of
the table entry that produced it), so a run of the real builder/runtime functions of
``tensorrt_compat``, the calibrator and the Runtime's TensorRT backend (``_load``, ``run``,
``close``, with a stand-in pycuda) records ``(owner, name, kind, args, keywords, types)`` for
every TensorRT access, ``types`` being the types of the values really passed (``str``,
``int``, ``bool``, ``bytes``, ``Dims`` for a shape tuple, an enum or class name). A name the
table does not declare is recorded with owner ``"?"``, whatever variable it was reached through.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types as pytypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional
from unittest import mock

import numpy as np

from emonext_edge.tensorrt_compat import API_USES, ApiUse

Record = tuple[str, str, str, int, tuple[str, ...], tuple[str, ...]]

_IN, _OUT = "input", "logits"
_SHAPES = {_IN: (-1, 3, 224, 224), _OUT: (-1, 7)}


class _Value:
    """An enum member / constant of TensorRT type ``type``; equal to a value with the same label (or any, label None)."""

    def __init__(self, type_name: str, label: Optional[str] = None) -> None:
        self.type, self.label = type_name, label

    def __int__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Value):
            return False
        return self.label is None or other.label is None or self.label == other.label

    def __hash__(self) -> int:
        return 0


def type_of(value: Any) -> str:
    """Our name for the type of a value passed to TensorRT (see :class:`~emonext_edge.tensorrt_compat.ApiUse`)."""
    if isinstance(value, _Value):
        return value.type
    if isinstance(value, _Instance):
        return object.__getattribute__(value, "_cls")
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in value):
        return "Dims"
    trt_class = getattr(type(value), "_trt_class", None)
    return trt_class or type(value).__name__


#: what the engine stand-in answers: one float32 input, one float32 output, profile 1..8
_ENGINE: dict[str, Callable[..., Any]] = {
    "num_io_tensors": lambda: 2,
    "get_tensor_name": lambda i, *_: (_IN, _OUT)[int(i)] if isinstance(i, (int, np.integer)) else _IN,
    "get_tensor_mode": lambda name, *_: _Value("TensorIOMode", "INPUT" if name == _IN else "OUTPUT"),
    "get_tensor_shape": lambda name, *_: _SHAPES.get(name, _SHAPES[_IN]),
    "get_tensor_profile_shape": lambda *_: [(1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224)],
}


class Recorder:
    def __init__(self, failing: tuple[str, ...] = (), table: Sequence[ApiUse] = API_USES) -> None:
        self.failing = failing  # methods that return False (error paths: "OnnxParser.parse_from_file")
        self.records: set[Record] = set()
        self.table: dict[tuple[str, str], ApiUse] = {(u.owner, u.name): u for u in table}
        self.module = _Instance(self, "tensorrt")

    def result(self, type_name: str | None, owner: str = "", name: str = "") -> Any:
        if type_name in (None, "None"):
            return None if type_name == "None" else _Instance(self, "?")
        simple = {"bool": True, "int": 1, "str": "/stn/x", "Dims": (1, 3, 224, 224),
                  "list[Dims]": [(1, 3, 224, 224)] * 3, "IHostMemory": b"plan"}
        if type_name in simple:
            return simple[type_name]
        if type_name in ("Severity", "DataType", "TensorIOMode"):
            return _Value(type_name)
        return _Instance(self, type_name)

    def touch(self, owner: str, name: str) -> Any:
        use = self.table.get((owner, name))
        if use is None and owner == "tensorrt" and any(o == name for o, _ in self.table):
            return _Instance(self, name)  # an enum (trt.BuilderFlag): its member entries are what counts
        if use is None:
            self.records.add(("?", f"{owner}.{name}", "unknown", 0, (), ()))
            return _Instance(self, "?")
        if use.kind in ("member", "value", "property"):
            self.records.add((owner, name, use.kind, 0, (), ()))
            if use.kind == "member":
                return _Value(owner, name)
            if owner == "ICudaEngine" and name in _ENGINE:
                return _ENGINE[name]()
            return self.result(use.returns)
        if use.kind == "class":
            if use.args is None:  # only subclassed
                self.records.add((owner, name, "class", 0, (), ()))
                return self._base(name)
            return _Class(self, name, use)
        if use.kind == "function" and name == "nptype":
            return self._call(owner, name, "function", lambda *a: np.float32)
        if f"{owner}.{name}" in self.failing:
            return self._call(owner, name, use.kind, lambda *a: False)
        if owner == "ICudaEngine" and name in _ENGINE:
            return self._call(owner, name, use.kind, _ENGINE[name])
        return self._call(owner, name, use.kind, lambda *a: self.result(use.returns))

    def _call(self, owner: str, name: str, kind: str, make: Callable[..., Any]) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            keys = tuple(sorted(kwargs))
            types = tuple(type_of(a) for a in args) + tuple(type_of(kwargs[k]) for k in keys)
            self.records.add((owner, name, kind, len(args), keys, types))
            return make(*args, **kwargs)

        return call

    def _base(self, cls_name: str) -> type:
        recorder = self

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            recorder.records.add((cls_name, "__init__", "override", len(args), (), ()))
            for attr, fn in vars(type(self)).items():
                if callable(fn) and not attr.startswith("__"):
                    params = tuple(inspect.signature(fn).parameters)[1:]
                    recorder.records.add((cls_name, attr, "override", len(params), params, ()))

        return type(cls_name, (), {"__init__": __init__, "_trt_class": cls_name})


class _Class:
    def __init__(self, recorder: Recorder, name: str, use: ApiUse) -> None:
        self._recorder, self._name, self._use = recorder, name, use

    def __getattr__(self, attr: str) -> Any:
        return self._recorder.touch(self._name, attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        keys = tuple(sorted(kwargs))
        types = tuple(type_of(a) for a in args) + tuple(type_of(kwargs[k]) for k in keys)
        self._recorder.records.add(("tensorrt", self._name, "class", len(args), keys, types))
        return _Instance(self._recorder, self._use.returns or self._name)


class _Instance:
    def __init__(self, recorder: Recorder, cls: str) -> None:
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_cls", cls)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # an undeclared method (already recorded as "?")
        return _Instance(self._recorder, "?")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)
        if name == "__version__":
            self._recorder.records.add(("tensorrt", "__version__", "value", 0, (), ()))
            return "0.0.0"
        return self._recorder.touch(self._cls, name)

    def __setattr__(self, name: str, value: Any) -> None:
        use = self._recorder.table.get((self._cls, name))
        if use is None:
            self._recorder.records.add(("?", f"{self._cls}.{name}", "unknown", 0, (), ()))
            return
        self._recorder.records.add((self._cls, name, "settable", 0, (), (type_of(value),)))


def expected(uses: Sequence[ApiUse]) -> set[Record]:
    """What a recording should hold for ``uses`` (the table's own view, argument types included)."""
    out: set[Record] = set()
    for u in uses:
        if u.kind == "override":
            out.add((u.owner, u.name, "override", u.args or 0, tuple(u.keywords), ()))
        elif u.kind in ("method", "function", "class"):
            order = sorted(range(len(u.keywords)), key=lambda i: u.keywords[i])
            args = u.args or 0
            types = tuple(u.types[:args]) + tuple(u.types[args + i] for i in order) if u.types else ()
            out.add((u.owner, u.name, u.kind, args, tuple(sorted(u.keywords)), types))
        elif u.kind == "settable":
            out.add((u.owner, u.name, "settable", 0, (), tuple(u.types[:1])))
        else:
            out.add((u.owner, u.name, u.kind, 0, (), ()))
    return out


# --------------------------------------------------------------------------- pycuda and the CUDA context, stood in


class _DeviceBuffer:
    def __int__(self) -> int:
        return 4096

    def free(self) -> None:
        pass


class _Stream:
    handle = 7

    def synchronize(self) -> None:
        pass


FAKE_CUDA = pytypes.SimpleNamespace(
    Stream=_Stream, pagelocked_empty=lambda shape, dtype: np.zeros(shape, dtype),
    mem_alloc=lambda nbytes: _DeviceBuffer(), memcpy_htod_async=lambda *a: None, memcpy_dtoh_async=lambda *a: None,
)


class FakeCudaContext:
    """:class:`~emonext_edge.tensorrt_compat.CudaContext` without pycuda or a GPU."""

    def __init__(self, device_index: int = 0) -> None:
        self.gpu, self.compute_capability, self.cuda = "stand-in GPU", "8.7", FAKE_CUDA

    def __enter__(self) -> Any:
        return FAKE_CUDA

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- one recording run, and mutants


def load_variant(module: pytypes.ModuleType, replacements: Sequence[tuple[str, str]], suffix: str) -> pytypes.ModuleType:
    """A copy of ``module`` compiled from its source with ``replacements`` applied (each must match once)."""
    source = Path(module.__file__ or "").read_text()
    for old, new in replacements:
        if source.count(old) != 1:
            raise AssertionError(f"mutation does not apply to {module.__name__}: {old!r} found {source.count(old)}x")
        source = source.replace(old, new)
    name = f"{module.__name__}_{suffix}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    variant = importlib.util.module_from_spec(spec)
    variant.__package__ = module.__package__
    variant.__file__ = module.__file__
    sys.modules[name] = variant  # dataclasses look their module up while the class body runs
    try:
        exec(compile(source, f"{module.__file__} ({suffix})", "exec"), variant.__dict__)  # noqa: S102
    finally:
        sys.modules.pop(name, None)
    return variant


def record_run(version: str, tmp: Path, compat: Optional[pytypes.ModuleType] = None,
               backend: Optional[pytypes.ModuleType] = None) -> set[Record]:
    """Run every build path of ``version``, the calibrator, the runtime functions and the Runtime's TensorRT
    backend (``_load``/``run``/``close``) against a :class:`Recorder`; what they touched, with argument types.

    ``compat``/``backend``: the modules to run (a :func:`load_variant` mutant), default the real ones.
    """
    from calibration.trt_calibrator import make_entropy_calibrator
    from emonext_edge import tensorrt_compat as real_compat
    from emonext_edge.backends import tensorrt_backend as real_backend
    from emonext_edge.errors import ExportError

    compat = compat or real_compat
    backend = backend or real_backend
    plan = compat.plan_for(version)
    rec = Recorder(table=compat.API_USES)
    trt = rec.module
    for path in plan.precision_paths():
        calibrator = None
        if path.calibrator:
            calibrator = make_entropy_calibrator(plan, trt, np.zeros((8, 3, 224, 224), np.float32), None)
        for dla in (None, 0):
            opts = compat.BuildOptions(path=path, dla_core=dla, calibrator=calibrator, fp32_layer_names=("/stn",),
                                       progress=lambda s: None)
            compat.build_serialized(plan, trt, "model.onnx", opts)
    _, engine, _ = compat.deserialize(trt, b"")
    compat.io_tensors(trt, engine)
    compat.execute(compat.create_context(engine), {_IN: (1, 3, 224, 224)}, {_IN: 0, _OUT: 0}, 0)
    trt.__version__  # noqa: B018 - the exporter reads it
    failing = Recorder(failing=("OnnxParser.parse_from_file",), table=compat.API_USES)  # the parser's error path
    try:
        compat.parse_onnx(failing.module, _Instance(failing, "INetworkDefinition"), _Instance(failing, "Logger"),
                          "model.onnx")
    except ExportError:
        pass
    # the Runtime's backend, through its real __init__ (TensorRT and the CUDA context stood in)
    engine_file = tmp / "stand-in.engine"
    engine_file.write_bytes(b"plan")
    with mock.patch.object(real_compat, "import_tensorrt", lambda: trt), \
            mock.patch.object(real_compat, "CudaContext", FakeCudaContext):
        runner = backend.TensorRTBackend(engine_file)
        logits = runner.run(np.zeros((2, 3, 224, 224), np.float32))
        assert logits.shape == (2, 7)
        runner.close()
    return rec.records | failing.records
