"""Deprecated home of the fidelity gate (removal: 0.5): it moved to :mod:`export.fidelity`,
beside the export contract it is part of. Every name still resolves here, with one
``DeprecationWarning`` per name."""

from __future__ import annotations

from typing import Any

#: what ``calibration.fidelity`` exported in 0.3
NAMES = (
    "DEFAULT_IMAGES", "DEFAULT_MAX_DROP_PP", "DEFAULT_MIN_AGREEMENT", "DEFAULT_SYNTHETIC_IMAGES", "FidelityOptions",
    "FidelityReport", "Predictor", "add_fidelity_arguments", "agreement_fraction", "fidelity_gate", "gate_from_args",
    "held_out_images", "nonnegative_pp", "softmax",
)


def __getattr__(name: str) -> Any:
    if name not in NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from emonext_edge.metadata import warn_deprecated
    from export import fidelity as moved  # the one upward import, allowed in pyproject until 0.5

    warn_deprecated(f"calibration.fidelity.{name}", f"export.fidelity.{name}", "0.5")
    return getattr(moved, name)
