"""Load EmoNeXt checkpoints as the official training code writes them (torch).

Accepted: the official ``train.py`` layout ``{"model", "ema", "opt", "scaler", "scheduler",
"best_acc"}``, a bare state dict, ``module.``-prefixed keys (DataParallel) and
``.safetensors``. The ``ema`` entry is an ``ema_pytorch`` state: ``initted``, ``step``,
the EMA weights under ``ema_model.`` and (current releases) the raw weights again under
``online_model.``. Nothing but tensors and plain containers is ever unpickled.

Integrity: the CRC-32 of every member of a zip-format ``.pt`` is checked before
``torch.load`` and a ``.safetensors`` header before it is read
(:mod:`emonext_edge.integrity`); weights holding NaN/inf are refused.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import ArchitectureMismatchError, CheckpointError
from .fileio import sha256_file
from .integrity import check_safetensors, check_zip_crcs
from .labels import DEFAULT_LABELS, validate_labels
from .model import EmoNeXt, stn_features
from .preprocess import SPEC

log = logging.getLogger(__name__)

_EMA_PREFIX = "ema_model."
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _read_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        check_safetensors(path)  # header, dtypes, offsets, length: what the format lets us check
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - depends on environment
            raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package") from None
        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the engine's own exception types are not exported; re-raised as a named error
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if not check_zip_crcs(path):  # CRC-32 of every member before anything is unpickled
        log.info("%s: legacy (non-zip) checkpoint: it carries no checksum to verify", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the engine's own exception types are not exported; re-raised as a named error
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: holds pickled Python objects other than tensors; refusing to unpickle them "
                "(only weights_only checkpoints are loaded)"
            ) from None
        if "zip archive" in text or "central directory" in text or "EOF" in text or "truncated" in text:
            raise CheckpointError(f"{path}: file is truncated or corrupt ({text.splitlines()[0]})") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({text.splitlines()[0] if text else type(exc).__name__})") from None


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _unwrap(state: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = _strip(out, prefix)
    return out


def extract_state_dict(raw: Any, *, prefer_ema: bool = True, where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """Pick the weights to use from a loaded checkpoint; returns (state_dict, which) with which in {ema, model, state_dict}."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{where}: expected a dict of tensors or the official training layout, got {type(raw).__name__}")
    ema = raw.get("ema")
    if prefer_ema and isinstance(ema, Mapping):
        ema_weights = _strip(ema, _EMA_PREFIX)
        if ema_weights:
            return _unwrap(ema_weights), "ema"
        log.warning("%s: 'ema' entry holds no '%s' weights; using 'model'", where, _EMA_PREFIX)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(raw.get(key), Mapping):
            return _unwrap(raw[key]), "model"
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return _unwrap(raw), "state_dict"
    keys = ", ".join(sorted(map(str, raw))[:8])
    raise CheckpointError(f"{where}: no model weights found; top-level keys are [{keys}], expected 'model', 'ema' or tensors")


_STAGE_KEY = re.compile(r"^stages\.(\d)\.(\d+)\.dwconv\.weight$")


def infer_architecture(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> dict[str, Any]:
    """depths, dims, num_classes and layer-scale use, read off tensor shapes."""
    depths = [0, 0, 0, 0]
    for key in state:
        m = _STAGE_KEY.match(key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            if stage < 4:
                depths[stage] = max(depths[stage], block + 1)
    try:
        dims = [int(state[f"downsample_layers.{i}.{1 if i else 0}.weight"].shape[0]) for i in range(4)]
        num_classes = int(state["head.weight"].shape[0])
    except KeyError as exc:
        sample = ", ".join(list(state)[:5])
        raise ArchitectureMismatchError(
            f"{where}: not an EmoNeXt state dict: key {exc.args[0]!r} is missing (first keys found: {sample})"
        ) from None
    if 0 in depths:
        raise ArchitectureMismatchError(f"{where}: EmoNeXt stage blocks missing, inferred depths {depths}")
    return {
        "depths": depths,
        "dims": dims,
        "num_classes": num_classes,
        "layer_scale": any(k.endswith(".gamma") for k in state),
    }


def _describe_mismatch(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> Optional[str]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys, first: {missing[:5]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:5]}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches, first: {wrong[:3]}")
    return "; ".join(parts) or None


def load_model(
    path: str | os.PathLike,
    prefer_ema: bool = True,
    labels: Optional[Sequence[str]] = None,
) -> EmoNeXt:
    """Load an EmoNeXt checkpoint into an eval-mode model; architecture inferred from tensor shapes.

    ``model.architecture``, ``model.labels`` and ``model.checkpoint_info`` describe what was loaded.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    raw = _read_file(p)
    state, which = extract_state_dict(raw, prefer_ema=prefer_ema, where=str(p))
    arch = infer_architecture(state, str(p))
    if labels is None and isinstance(raw, Mapping) and isinstance(raw.get("labels"), (list, tuple)):
        labels = list(validate_labels(list(raw["labels"]), f"{p} ('labels' entry)", CheckpointError))
    elif labels is not None:
        labels = list(validate_labels(labels, f"{p} (labels=)", CheckpointError))
    if labels is None and arch["num_classes"] != len(DEFAULT_LABELS):
        raise CheckpointError(
            f"{p}: the head has {arch['num_classes']} classes, not the 7 FER2013 emotions; pass labels=[...]"
        )
    if labels is not None and len(labels) != arch["num_classes"]:
        raise CheckpointError(f"{p}: {len(labels)} labels given but the head has {arch['num_classes']} outputs")
    model = EmoNeXt(
        arch["depths"],
        arch["dims"],
        arch["num_classes"],
        layer_scale_init_value=1e-6 if arch["layer_scale"] else 0.0,
        labels=labels,
    )
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(f"{p}: tensor {bad!r} holds NaN or inf values; the checkpoint is corrupt or diverged")
    problem = _describe_mismatch(model, state)
    fc_loc = state.get("fc_loc.0.weight")
    if problem and fc_loc is not None and fc_loc.ndim == 2 and int(fc_loc.shape[1]) != stn_features(SPEC.crop_size):
        problem += (f"; the STN's fc_loc takes {int(fc_loc.shape[1])} features, the preprocessing spec's "
                    f"{SPEC.crop_size}x{SPEC.crop_size} crop gives {stn_features(SPEC.crop_size)}: trained on another "
                    "input size (emonext_edge.preprocess.SPEC)?")
    if problem:
        raise ArchitectureMismatchError(f"{p}: weights do not fit EmoNeXt {arch}: {problem}")
    model.load_state_dict(state, strict=True)
    model.eval()
    model.checkpoint_info = {  # type: ignore[attr-defined,assignment]
        "path": str(p),
        "sha256": sha256_file(p),
        "weights": which,
        "architecture": arch,
        "best_acc": float(raw["best_acc"]) if isinstance(raw, Mapping) and isinstance(raw.get("best_acc"), (int, float)) else None,
    }
    log.info("loaded %s (%s weights, depths=%s dims=%s)", p, which, arch["depths"], arch["dims"])
    return model
