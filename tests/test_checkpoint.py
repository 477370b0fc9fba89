"""Checkpoint loading: official layouts, EMA preference, architecture inference, bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from emonext_edge import ArchitectureMismatchError, CheckpointError, load_model
from emonext_edge.model import EmoNeXt

SMALL = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))


def _small_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return EmoNeXt(**SMALL).state_dict()


def _first_logit(model) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return model(torch.rand(1, 3, 224, 224))


def test_official_fixture_loads_without_architecture_arguments(official_checkpoint, shared_dir):
    import json

    model = load_model(official_checkpoint)
    card = json.loads((official_checkpoint.with_suffix(".json")).read_text())
    assert list(model.architecture.depths) == card["depths"]
    assert list(model.architecture.dims) == card["dims"]
    assert model.architecture.num_classes == card["num_classes"]
    assert model.checkpoint_info["weights"] == "ema"
    assert not model.training


def test_reference_model_loads_with_no_other_argument(reference_checkpoint, reference_info):
    model = load_model(reference_checkpoint)
    assert model.architecture.to_dict() == reference_info["architecture"]
    assert list(model.labels) == reference_info["labels"]
    assert model.checkpoint_info["sha256"] == reference_info["sha256"]
    assert model.architecture.name == "atto"


def test_ema_weights_preferred_and_switchable(tmp_path):
    raw, ema = _small_state(1), _small_state(2)
    ema_state = {"initted": torch.tensor(True), "step": torch.tensor(10)}
    ema_state.update({f"ema_model.{k}": v for k, v in ema.items()})
    ema_state.update({f"online_model.{k}": v for k, v in raw.items()})
    path = tmp_path / "train_layout.pt"
    torch.save({"model": raw, "ema": ema_state, "best_acc": 71.5, "scheduler": {"last_epoch": 3}}, path)

    reference_ema = EmoNeXt(**SMALL)
    reference_ema.load_state_dict(ema)
    reference_raw = EmoNeXt(**SMALL)
    reference_raw.load_state_dict(raw)

    with_ema = load_model(path)
    without = load_model(path, prefer_ema=False)
    assert with_ema.checkpoint_info["weights"] == "ema"
    assert without.checkpoint_info["weights"] == "model"
    assert with_ema.checkpoint_info["best_acc"] == 71.5
    assert torch.equal(_first_logit(with_ema), _first_logit(reference_ema.eval()))
    assert torch.equal(_first_logit(without), _first_logit(reference_raw.eval()))


def test_bare_dataparallel_and_safetensors_state_dicts(tmp_path):
    state = _small_state(3)
    torch.save(state, tmp_path / "bare.pth")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "dp.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    outputs = [_first_logit(load_model(tmp_path / name)) for name in ("bare.pth", "dp.pt", "w.safetensors")]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_label_override_and_count_check(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(_small_state(4), path)
    labels = ["a", "b", "c", "d", "e", "f", "g"]
    assert load_model(path, labels=labels).labels == tuple(labels)
    with pytest.raises(CheckpointError, match="3 labels given but the head has 7"):
        load_model(path, labels=["a", "b", "c"])


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        load_model(path)


def test_truncated_file(tmp_path, official_checkpoint):
    path = tmp_path / "cut.pt"
    data = Path(official_checkpoint).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: file is truncated or corrupt"):
        load_model(path)


def test_other_architecture(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(ArchitectureMismatchError, match="not an EmoNeXt state dict.*conv1.weight"):
        load_model(path)


def test_shape_mismatch_names_keys(tmp_path):
    state = _small_state(5)
    state["fc_loc.0.weight"] = torch.zeros(32, 100)
    del state["norm.bias"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ArchitectureMismatchError, match=r"missing keys, first: \['norm.bias'\].*fc_loc.0.weight"):
        load_model(path)


class _Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _small_state(6), "extra": _Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_model(path)
