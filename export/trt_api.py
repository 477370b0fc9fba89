"""Check the TensorRT calls of a plan against one TensorRT version's real Python bindings.

Each audited version's binding module (``tensorrt_bindings/tensorrt.so`` of the PyPI
``tensorrt*-bindings`` wheels 8.6.1, 10.3.0, 10.13.3, 11.4.0) is imported in the test suite
against stub TensorRT libraries (``tests/trt_stubs/bindings.py``) and its API written as JSON:
every class with its bases, and per member its kind and pybind11 signatures (getter and
setter for properties). The reduced dumps ship with this package
(``export/data/tensorrt_api/<version>.json.gz``; a test keeps them equal to a fresh dump), so
``python -m export.tensorrt --check-only`` runs on a workstation the same per-version check
the test suite runs: :func:`check_plan`.

The check of one :class:`~emonext_edge.tensorrt_compat.ApiUse` (:func:`check`): the owner class
exists, the name exists there with the right kind (enum member, value of the right type,
property — settable where we assign it —, method, subclass override with the same parameter
names), and for a call some overload binds our positional count and keywords **and takes our
argument types in our order** (:func:`type_ok`: an enum is not a ``str``, a ``str`` not a
buffer, a shape tuple not a ``str``, an ``int`` not an enum; classes match their declared
bases), returning the class the next call relies on.

Versions without their own dump are checked against a proxy, and the output says so:
8.5 against 8.6.1 minus the names 8.6 added (:data:`~emonext_edge.tensorrt_compat.ADDED_IN_8_6`;
no 8.5 binding module can be had from a package index), another 10.x minor against the nearest
audited 10.x.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from emonext_edge import tensorrt_compat as compat
from emonext_edge.tensorrt_compat import ApiPlan, ApiUse, PrecisionPath

DATA_DIR = Path(__file__).resolve().parent / "data" / "tensorrt_api"


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Param:
    name: str
    has_default: bool
    star: str = ""  # "", "*", "**"
    type: Optional[str] = None  # normalized annotation, None when unannotated


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]  # without self
    returns: Optional[str]


def _split_top(text: str, sep: str = ",") -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out]


def normalize_type(text: str) -> str:
    """``tensorrt_bindings.tensorrt.ILogger.Severity`` -> ``ILogger.Severity``, ``List[`` -> ``list[``,
    ``typing.SupportsInt`` -> ``SupportsInt``, ``typing_extensions.Buffer`` -> ``Buffer``."""
    text = re.sub(r"\b(tensorrt_bindings\.tensorrt|tensorrt_bindings|tensorrt|typing_extensions|typing|"
                  r"collections\.abc)\.|\bnvinfer1::", "", text.strip())
    return re.sub(r"\bList\[", "list[", text)


_PARAM = re.compile(r"^(\**)(\w+)\s*(?::\s*(.+?))?\s*(?:=\s*(.*))?$")


def _params(inner: str, drop_self: bool) -> tuple[Param, ...]:
    params = []
    for i, raw in enumerate(_split_top(inner)):
        m = _PARAM.match(raw)
        if m is None:
            star = "**" if raw.startswith("**") else "*" if raw.startswith("*") else ""
            params.append(Param(raw.lstrip("*").split(":")[0].split("=")[0].strip(), "=" in raw, star))
            continue
        star, name, annotation, default = m.groups()
        if i == 0 and drop_self and name in ("self", "arg0"):
            continue
        params.append(Param(name, default is not None, star, normalize_type(annotation) if annotation else None))
    return tuple(params)


def parse_signatures(name: str, doc: str) -> list[Signature]:
    """pybind11 signatures of ``name`` found in ``doc`` (one per overload)."""
    sigs = []
    pattern = re.compile(r"^(?:\d+\. )?" + re.escape(name) + r"\((.*)\)(?: -> (.+))?$")
    for line in doc.splitlines():
        m = pattern.match(line.strip())
        if not m or m.group(1) == "*args, **kwargs":
            continue
        sigs.append(Signature(_params(m.group(1), drop_self=True), normalize_type(m.group(2)) if m.group(2) else None))
    return sigs


def property_type(doc: str) -> Optional[str]:
    m = re.match(r"^\s*\(.*\)\s*->\s*(.+)$", doc.strip().splitlines()[0] if doc.strip() else "")
    return _last(normalize_type(m.group(1))) if m else None


def setter_type(doc: str) -> Optional[str]:
    """The value type of a pybind11 property setter's signature ``(arg0: Owner, arg1: T) -> None``."""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    m = re.match(r"^\s*\((.*)\)\s*->", first)
    if not m:
        return None
    params = _params(m.group(1), drop_self=True)
    return params[0].type if params else None


def _last(text: str) -> str:
    """``ILogger.Severity`` -> ``Severity`` (nested enums); generic types stay as they are."""
    return text if "[" in text else text.split(".")[-1]


def _alternatives(declared: str) -> list[str]:
    m = re.match(r"^(Optional|Union)\[(.*)\]$", declared)
    if m:
        alts = _split_top(m.group(2))
        return alts + (["None"] if m.group(1) == "Optional" else [])
    parts = _split_top(declared, "|")
    return parts if len(parts) > 1 else [declared]


#: what our argument types (ApiUse.types) may bind to, beyond the same name and a declared base class
_ACCEPTS = {
    "int": {"int", "SupportsInt", "SupportsIndex", "float", "SupportsFloat"},
    "bool": {"bool"},
    "str": {"str"},
    "bytes": {"buffer", "Buffer", "bytes"},
    # a shape: TensorRT's Dims converts from tuples and lists of ints
    "Dims": {"Dims", "Dims32", "Dims64", "tuple", "list", "Shape"},
    "None": {"None", "NoneType"},
}


def type_ok(ours: Optional[str], declared: Optional[str], api: dict[str, Any]) -> bool:
    """Whether an argument of our type binds to a parameter annotated ``declared`` (unknown on either side: yes)."""
    if ours is None or declared is None:
        return True
    for alt in _alternatives(declared):
        d = _last(alt.strip())
        if d in ("object", "Any", "capsule") or d == ours or d in _ACCEPTS.get(ours, ()):
            return True
        if ours == "Dims" and d.startswith(("list[", "tuple[", "Sequence[")):
            return True
        bases = api["classes"].get(ours, {}).get("bases", [])
        if d in bases:
            return True
    return False


def accepts(sig: Signature, args: int, keywords: tuple[str, ...], types: tuple[str, ...] = (),
            api: Optional[dict[str, Any]] = None) -> bool:
    """Whether a call with ``args`` positional arguments and ``keywords`` (of ``types``, positional first) binds."""
    plain = [p for p in sig.params if not p.star]
    var_pos = any(p.star == "*" for p in sig.params)
    var_kw = any(p.star == "**" for p in sig.params)
    if args > len(plain) and not var_pos:
        return False
    rest = plain[args:]
    names = {p.name: p for p in rest}
    if any(k not in names and not var_kw for k in keywords):
        return False
    if not all(p.has_default or p.name in keywords for p in rest):
        return False
    if types and api is not None:
        bound = list(plain[:args]) + [names.get(k) for k in keywords]
        for ours, param in zip(types, bound):
            if param is not None and not type_ok(ours, param.type, api):
                return False
    return True


# --------------------------------------------------------------------------- one use


def _owner(api: dict[str, Any], use: ApiUse) -> Optional[dict[str, Any]]:
    if use.owner == "tensorrt":
        return {"members": api["module"]}
    return api["classes"].get(use.owner)


def _fmt(sig: Signature) -> str:
    return "(" + ", ".join(p.star + p.name + (f": {_last(p.type)}" if p.type else "") + ("=" if p.has_default else "")
                           for p in sig.params) + ")"


def check(api: dict[str, Any], use: ApiUse) -> Optional[str]:
    """``None`` if ``use`` holds on this API, else why not (one line)."""
    owner = _owner(api, use)
    if owner is None:
        return f"{use}: no class {use.owner}"
    found = owner["members"].get(use.name)
    if found is None:
        return f"{use}: {use.owner} has no {use.name!r}"
    kind = found["kind"]
    if use.kind == "member":
        return None if kind == "member" else f"{use}: {use.owner}.{use.name} is a {kind}, not an enum member"
    if use.kind == "class":
        if kind != "class":
            return f"{use}: {use.name} is a {kind}, not a class"
        if use.args is None:
            return None
        init = api["classes"][use.name]["members"].get("__init__", {})
        sigs = parse_signatures("__init__", init.get("doc", ""))
        if not any(accepts(s, use.args, use.keywords, use.types, api) for s in sigs):
            return f"{use}: no constructor of {use.name} takes it ({'; '.join(map(_fmt, sigs)) or 'none'})"
        return None
    if use.kind == "value":
        if kind != "value":
            return f"{use}: {use.name} is a {kind}, not a value"
        if use.returns and found["type"] != use.returns:
            return f"{use}: is a {found['type']}, not {use.returns}"
        return None
    if use.kind in ("property", "settable"):
        if kind != "property":
            return f"{use}: {use.name} is a {kind}, not a property"
        if use.kind == "settable" and not found["settable"]:
            return f"{use}: {use.owner}.{use.name} is read-only"
        if use.returns and property_type(found["doc"]) != use.returns:
            return f"{use}: reads as {property_type(found['doc'])}, not {use.returns}"
        if use.kind == "settable" and use.types:
            declared = setter_type(found.get("set_doc", "")) or property_type(found["doc"])
            if not type_ok(use.types[0], declared, api):
                return f"{use}: takes {_last(declared or '?')}, not {use.types[0]}"
        return None
    if use.kind in ("method", "function", "override"):
        if kind not in ("method", "function"):
            return f"{use}: {use.name} is a {kind}, not callable"
        if found.get("py_signature"):
            inner = found["py_signature"][1:found["py_signature"].rindex(")")]
            sigs = [Signature(_params(inner, drop_self=False), None)]
        else:
            sigs = parse_signatures(use.name, found["doc"])
        if not sigs:
            return f"{use}: no signature in its docstring"
        if use.kind == "override":
            want = tuple(use.keywords)
            if not any(tuple(p.name for p in s.params) == want for s in sigs):
                return f"{use}: the base method's parameters are {' / '.join(_fmt(s) for s in sigs)}"
            return None
        binds = [s for s in sigs if accepts(s, use.args or 0, use.keywords)]
        if not binds:
            return f"{use}: no overload takes it ({'; '.join(map(_fmt, sigs))})"
        matching = [s for s in binds if accepts(s, use.args or 0, use.keywords, use.types, api)]
        if not matching:
            return f"{use}: argument types do not fit ({'; '.join(map(_fmt, binds))})"
        if use.returns and not any(s.returns == use.returns for s in matching):
            return f"{use}: returns {' / '.join(str(s.returns) for s in matching)}, not {use.returns}"
        return None
    return f"{use}: unknown kind {use.kind!r}"


def audit(api: dict[str, Any], uses: list[ApiUse]) -> list[str]:
    """Every problem of ``uses`` on this API (empty: all hold)."""
    return [msg for msg in (check(api, u) for u in uses) if msg]


# --------------------------------------------------------------------------- shipped dumps


def _signature_lines(doc: str) -> str:
    keep = [line.strip() for line in doc.splitlines()
            if re.match(r"^(\d+\. )?[\w.]+\(.*\)( -> .+)?$", line.strip()) or re.match(r"^\(.*\)\s*->", line.strip())]
    return "\n".join(keep)


def reduce_dump(api: dict[str, Any]) -> dict[str, Any]:
    """What ships: names, kinds, bases, value types and the signature lines of the docstrings (no prose)."""
    def member(m: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in m.items() if k not in ("doc", "set_doc")}
        for key in ("doc", "set_doc"):
            if key in m:
                out[key] = _signature_lines(m[key] or "")
        return out

    return {
        "version": api["version"],
        "module": {n: member(m) for n, m in sorted(api["module"].items())},
        "classes": {n: {"bases": c["bases"], "members": {k: member(m) for k, m in sorted(c["members"].items())}}
                    for n, c in sorted(api["classes"].items())},
    }


def dump_path(version: str) -> Path:
    return DATA_DIR / f"{version}.json.gz"


@lru_cache(maxsize=None)
def load_dump(version: str) -> dict[str, Any]:
    """The shipped API dump of an audited version (``compat.KNOWN_VERSIONS``)."""
    with gzip.open(dump_path(version), "rt", encoding="utf-8") as f:
        return json.load(f)


def without(api: dict[str, Any], names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """A copy of ``api`` lacking ``(owner, name)`` entries (owner ``tensorrt``: module level, which removes the class)."""
    out = copy.deepcopy(api)
    for owner, name in names:
        if owner == "tensorrt":
            out["module"].pop(name, None)
            out["classes"].pop(name, None)
        elif owner in out["classes"]:
            out["classes"][owner]["members"].pop(name, None)
    return out


def dump_for(plan: ApiPlan) -> tuple[dict[str, Any], str]:
    """(API dump, which bindings it is) for ``plan``'s version; ``LookupError`` where no audited generation fits."""
    mm = plan.version[:2]
    audited = {compat.parse_version(v): v for v in compat.KNOWN_VERSIONS}
    for v, label in audited.items():
        if v[:2] == mm:
            return load_dump(label), f"the TensorRT {label} bindings"
    if mm == (8, 5):
        proxy = ("the TensorRT 8.6.1 bindings minus the names 8.6 added (proxy for 8.5: no 8.5 binding module "
                 "is published on a package index)")
        return without(load_dump("8.6.1"), compat.ADDED_IN_8_6), proxy
    same_major = sorted((v for v in audited if v[0] == plan.version[0]), key=lambda v: abs(v[1] - mm[1]))
    if not same_major:
        raise LookupError(f"no audited TensorRT {plan.version[0]}.x bindings to check TensorRT {plan.label} against "
                          f"(audited: {', '.join(compat.KNOWN_VERSIONS)}; 8.5 by proxy)")
    label = audited[same_major[0]]
    return load_dump(label), f"the TensorRT {label} bindings (nearest audited {plan.version[0]}.x)"


def path_uses(plan: ApiPlan, path: PrecisionPath) -> list[ApiUse]:
    """What the build of ``path`` needs beyond the table's plan fields (flags, typing, calibrator, pinning)."""
    uses = [ApiUse("BuilderFlag", flag, "member") for flag in path.builder_flags]
    if path.strongly_typed:
        uses.append(ApiUse("NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "member"))
    if path.calibrator:
        uses += [u for u in compat.API_USES if u.when == "calibrator"]
    if path.pin_stn_fp32:
        uses += [u for u in compat.API_USES if u.when == "layer_precision"]
    return uses


def check_plan(plan: ApiPlan, path: Optional[PrecisionPath] = None) -> tuple[str, list[str]]:
    """(which bindings, problems) of every call ``plan`` reaches (and ``path`` builds with) on its version.

    ``LookupError`` when no audited generation covers the version (e.g. 9.x)."""
    api, source = dump_for(plan)
    uses = plan.api_uses() + (path_uses(plan, path) if path is not None else [])
    seen: set[ApiUse] = set()
    unique = [u for u in uses if not (u in seen or seen.add(u))]  # type: ignore[func-returns-value]
    return source, audit(api, unique)
