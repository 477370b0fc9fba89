"""Check :data:`emonext_edge.tensorrt_compat.API_USES` entries against one version's real API dump.

The dump comes from :func:`trt_stubs.bindings.dump_api`. Signatures are pybind11's
docstring signatures (``name(self: T, a: A, b: B = 0) -> R``, or ``Overloaded function.``
followed by numbered ones); Python-level functions of the bindings' ``__init__.py`` (e.g.
``nptype``) carry an ``inspect.signature``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from emonext_edge.tensorrt_compat import ApiUse


@dataclass(frozen=True)
class Param:
    name: str
    has_default: bool
    star: str = ""  # "", "*", "**"


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]  # without self
    returns: Optional[str]


def _split_top(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out]


def normalize_type(text: str) -> str:
    text = re.sub(r"\b(tensorrt_bindings\.tensorrt|tensorrt_bindings|tensorrt|typing)\.|\bnvinfer1::", "", text.strip())
    return re.sub(r"\bList\[", "list[", text)


def _params(inner: str, drop_self: bool) -> tuple[Param, ...]:
    params = []
    for i, raw in enumerate(_split_top(inner)):
        star = "**" if raw.startswith("**") else "*" if raw.startswith("*") else ""
        name = raw.lstrip("*").split(":")[0].split("=")[0].strip()
        if i == 0 and drop_self and name in ("self", "arg0"):
            continue
        params.append(Param(name, "=" in raw, star))
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
    return normalize_type(m.group(1)) if m else None


def accepts(sig: Signature, args: int, keywords: tuple[str, ...]) -> bool:
    """Whether a call with ``args`` positional arguments and ``keywords`` binds to ``sig``."""
    plain = [p for p in sig.params if not p.star]
    var_pos = any(p.star == "*" for p in sig.params)
    var_kw = any(p.star == "**" for p in sig.params)
    if args > len(plain) and not var_pos:
        return False
    rest = plain[args:]
    names = {p.name for p in rest}
    if any(k not in names and not var_kw for k in keywords):
        return False
    return all(p.has_default or p.name in keywords for p in rest)


def _owner(api: dict[str, Any], use: ApiUse) -> Optional[dict[str, Any]]:
    if use.owner == "tensorrt":
        return {"members": api["module"]}
    return api["classes"].get(use.owner)


def check(api: dict[str, Any], use: ApiUse) -> Optional[str]:
    """``None`` if ``use`` holds on this API, else why not."""
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
        if not any(accepts(s, use.args, use.keywords) for s in sigs):
            return f"{use}: no constructor of {use.name} takes it ({'; '.join(map(_fmt, sigs)) or 'none'})"
        return None
    if use.kind == "value":
        if kind not in ("value",):
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
        matching = [s for s in sigs if accepts(s, use.args or 0, use.keywords)]
        if not matching:
            return f"{use}: no overload takes it ({'; '.join(map(_fmt, sigs))})"
        if use.returns and not any(s.returns == use.returns for s in matching):
            return f"{use}: returns {' / '.join(str(s.returns) for s in matching)}, not {use.returns}"
        return None
    return f"{use}: unknown kind {use.kind!r}"


def _fmt(sig: Signature) -> str:
    return "(" + ", ".join(p.star + p.name + ("=" if p.has_default else "") for p in sig.params) + ")"


def audit(api: dict[str, Any], uses: list[ApiUse]) -> list[str]:
    """Every problem of ``uses`` on this API (empty: all hold)."""
    return [msg for msg in (check(api, u) for u in uses) if msg]
