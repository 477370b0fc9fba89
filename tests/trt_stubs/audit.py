"""The binding check lives in ``export/trt_api.py`` (``--check-only`` runs it from shipped dumps); re-exported here."""

from __future__ import annotations

from export.trt_api import (  # noqa: F401
    Param,
    Signature,
    accepts,
    audit,
    check,
    normalize_type,
    parse_signatures,
    property_type,
    setter_type,
    type_ok,
)
