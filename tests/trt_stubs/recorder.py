"""A recording stand-in for the ``tensorrt`` module, typed by :data:`API_USES` (test scaffolding).

Each object it hands out knows which TensorRT class it stands for (from the ``returns`` of
the table entry that produced it), so a run of the real builder/runtime functions of
``tensorrt_compat`` (and the calibrator) records ``(owner, name, kind, args, keywords)`` for
every TensorRT access. A name the table does not declare is recorded with owner ``"?"``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from emonext_edge.tensorrt_compat import API_USES, ApiUse

Record = tuple[str, str, str, int, tuple[str, ...]]

_SHAPE = (1, 3, 224, 224)


class _Value:
    """An enum member / constant: comparable, hashable, int-able."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __int__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


class Recorder:
    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.failing = failing  # methods that return False (error paths: "OnnxParser.parse_from_file")
        self.records: set[Record] = set()
        self.table: dict[tuple[str, str], ApiUse] = {(u.owner, u.name): u for u in API_USES}
        self.module = _Instance(self, "tensorrt")

    def result(self, type_name: str | None, owner: str = "", name: str = "") -> Any:
        if type_name in (None, "None"):
            return None if type_name == "None" else _Instance(self, "?")
        simple = {"bool": True, "int": 1, "str": "/stn/x", "Dims": _SHAPE, "list[Dims]": [_SHAPE] * 3,
                  "IHostMemory": b"plan"}
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
            self.records.add(("?", f"{owner}.{name}", "unknown", 0, ()))
            return _Instance(self, "?")
        if use.kind in ("member", "value", "property"):
            self.records.add((owner, name, use.kind, 0, ()))
            if use.kind == "member":
                return _Value(name)
            return self.result(use.returns)
        if use.kind == "class":
            if use.args is None:  # only subclassed
                self.records.add((owner, name, "class", 0, ()))
                return self._base(name)
            return _Class(self, name, use)
        if use.kind == "function" and name == "nptype":
            return self._call(owner, name, "function", lambda: np.float32)
        if f"{owner}.{name}" in self.failing:
            return self._call(owner, name, use.kind, lambda: False)
        return self._call(owner, name, use.kind, lambda: self.result(use.returns))

    def _call(self, owner: str, name: str, kind: str, make: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.records.add((owner, name, kind, len(args), tuple(sorted(kwargs))))
            return make()

        return call

    def _base(self, cls_name: str) -> type:
        recorder = self

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            recorder.records.add((cls_name, "__init__", "override", len(args), ()))
            for attr, fn in vars(type(self)).items():
                if callable(fn) and not attr.startswith("__"):
                    params = tuple(inspect.signature(fn).parameters)[1:]
                    recorder.records.add((cls_name, attr, "override", len(params), params))

        return type(cls_name, (), {"__init__": __init__})


class _Class:
    def __init__(self, recorder: Recorder, name: str, use: ApiUse) -> None:
        self._recorder, self._name, self._use = recorder, name, use

    def __getattr__(self, attr: str) -> Any:
        return self._recorder.touch(self._name, attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._recorder.records.add(("tensorrt", self._name, "class", len(args), tuple(sorted(kwargs))))
        return _Instance(self._recorder, self._use.returns or self._name)


class _Instance:
    def __init__(self, recorder: Recorder, cls: str) -> None:
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_cls", cls)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)
        if name == "__version__":
            self._recorder.records.add(("tensorrt", "__version__", "value", 0, ()))
            return "0.0.0"
        return self._recorder.touch(self._cls, name)

    def __setattr__(self, name: str, value: Any) -> None:
        use = self._recorder.table.get((self._cls, name))
        self._recorder.records.add((self._cls, name, "settable" if use else "unknown", 0, ()))


def expected(uses: list[ApiUse]) -> set[Record]:
    """What a recording should hold for ``uses`` (the table's own view)."""
    out = set()
    for u in uses:
        kind = "class" if u.kind == "class" else u.kind
        args = u.args or 0
        keys = tuple(sorted(u.keywords)) if u.kind != "override" else tuple(u.keywords)
        out.add((u.owner, u.name, kind, args if u.kind != "member" and u.kind != "value" and u.kind not in (
            "property", "settable") else 0, keys if u.kind in ("method", "function", "class", "override") else ()))
    return out
