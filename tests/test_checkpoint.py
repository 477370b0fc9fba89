"""Checkpoint loading: official layouts, EMA preference, architecture inference, bad files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TypedDict

import pytest
import torch

from emonext_edge import ArchitectureMismatchError, CheckpointError, load_model
from emonext_edge.model import EmoNeXt


class _Widths(TypedDict):
    depths: tuple[int, ...]
    dims: tuple[int, ...]


SMALL: _Widths = {"depths": (1, 1, 2, 1), "dims": (16, 32, 64, 128)}


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


# -- integrity (issue 15) -----------------------------------------------------------------------

def _flip_in_member(src: Path, dst: Path, member_index: int = -1) -> str:
    """Copy a zip checkpoint with one bit flipped in the data of a tensor member; returns the member name."""
    import struct
    import zipfile

    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        members = sorted((i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 64),
                         key=lambda i: i.file_size)
    info = members[member_index]
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 3] ^= 0x04
    dst.write_bytes(bytes(data))
    return info.filename


@pytest.mark.parametrize("member_index", [0, -1])
def test_bit_flip_in_pt_tensor_data_is_caught_by_crc(tmp_path, member_index):
    good = tmp_path / "good.pt"
    torch.save({"model": _small_state(9)}, good)
    load_model(good)  # intact: loads
    member = _flip_in_member(good, tmp_path / "flipped.pt", member_index)
    with pytest.raises(CheckpointError, match=rf"flipped\.pt: member '{member}' is corrupt \(Bad CRC-32"):
        load_model(tmp_path / "flipped.pt")


def test_official_fixture_bit_flip_names_file_and_member(tmp_path, official_checkpoint):
    member = _flip_in_member(Path(official_checkpoint), tmp_path / "official_flipped.pt")
    with pytest.raises(CheckpointError, match=rf"official_flipped\.pt: member '{member}'"):
        load_model(tmp_path / "official_flipped.pt")


def test_zip_without_central_directory_is_named_truncated(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(_small_state(1), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(CheckpointError, match="cut.pt: file is truncated or corrupt"):
        load_model(cut)


def test_legacy_pickle_checkpoint_still_loads(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(_small_state(2), path, _use_new_zipfile_serialization=False)
    from emonext_edge.integrity import check_zip_crcs

    assert check_zip_crcs(path) is False  # nothing to check in that format
    assert load_model(path).architecture.num_classes == 7


def test_nonfinite_weights_are_refused(tmp_path):
    state = _small_state(3)
    state["head.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="nan.pt: tensor 'head.weight' holds NaN or inf"):
        load_model(path)


def _safetensors_file(tmp_path: Path) -> Path:
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "w.safetensors"
    st.save_file(_small_state(4), str(path))
    return path


def _rewrite_header(path: Path, dst: Path, edit) -> None:
    import json
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * max(0, n - len(text))  # keep the data offset where it was
    assert len(text) == n
    dst.write_bytes(raw[:0] + struct.pack("<Q", n) + text + raw[8 + n :])


def test_safetensors_header_checks(tmp_path):
    from emonext_edge.integrity import check_safetensors

    good = _safetensors_file(tmp_path)
    assert "head.weight" in check_safetensors(good)
    raw = good.read_bytes()

    (tmp_path / "cut.safetensors").write_bytes(raw[:-7])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: the tensors cover \d+ bytes of data but the file holds"):
        load_model(tmp_path / "cut.safetensors")

    (tmp_path / "tiny.safetensors").write_bytes(raw[:5])
    with pytest.raises(CheckpointError, match="tiny.safetensors: not a safetensors file"):
        load_model(tmp_path / "tiny.safetensors")

    data = bytearray(raw)
    data[3] = 0x7F  # header length far beyond the file
    (tmp_path / "len.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="len.safetensors: safetensors header length"):
        load_model(tmp_path / "len.safetensors")

    data = bytearray(raw)
    data[8] = ord("X")  # JSON broken
    (tmp_path / "json.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="json.safetensors: safetensors header is not valid JSON"):
        load_model(tmp_path / "json.safetensors")

    def shrink(header):
        header["head.weight"]["shape"] = [7, 100]

    _rewrite_header(good, tmp_path / "shape.safetensors", shrink)
    with pytest.raises(CheckpointError, match=r"shape\.safetensors: tensor 'head.weight': F32 \[7, 100\] needs 2800 bytes"):
        load_model(tmp_path / "shape.safetensors")

    def dtype(header):
        header["head.weight"]["dtype"] = "F31"

    _rewrite_header(good, tmp_path / "dtype.safetensors", dtype)
    with pytest.raises(CheckpointError, match=r"dtype\.safetensors: tensor 'head.weight': unknown dtype 'F31'"):
        load_model(tmp_path / "dtype.safetensors")


def test_safetensors_data_flip_needs_a_recorded_hash(tmp_path):
    """The format has no checksum: a flipped weight bit loads (and changes the logits); the
    sidecar's artifact_sha256 is what catches it, in the Runtime."""
    import json

    from emonext_edge import ModelFileError, Runtime
    from emonext_edge.fileio import sha256_file

    good = _safetensors_file(tmp_path)
    data = bytearray(good.read_bytes())
    data[-5] ^= 0x40  # exponent bit of the last float of the last tensor
    bad = tmp_path / "changed.safetensors"
    bad.write_bytes(bytes(data))
    assert not torch.equal(_first_logit(load_model(bad)), _first_logit(load_model(good)))
    bad.with_suffix(".json").write_text(json.dumps({"artifact_sha256": {"changed.safetensors": sha256_file(good)}}))
    with pytest.raises(ModelFileError, match=r"changed\.safetensors: SHA-256 .* recorded in .*changed\.json"):
        Runtime(bad)
    with Runtime(bad, verify=False) as rt:
        assert rt.info["backend"] == "torch"
