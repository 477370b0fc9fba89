"""EmoNeXt model: golden outputs of the official implementation, sizes, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emonext_edge.model import SIZES, EmoNeXt, build_model, seeded_model


def test_golden_outputs_match_official_implementation(official_model, official_io):
    x = torch.from_numpy(official_io["inputs"])
    with torch.no_grad():
        stn_out = official_model.stn(x).numpy()
        features = official_model.forward_features(torch.from_numpy(official_io["stn_output"])).numpy()
        logits = official_model(x).numpy()
    # The warped image is a sampled function of theta: a last-bit difference in the
    # localization net's output moves pixels on steep edges a little more. Measured max |diff|:
    # 0.0 on AMD EPYC (Zen 4), 2.7e-5 on Intel Xeon (torch 2.13 CPU, any ATen ISA); logits stay
    # within 1.2e-6 on both.
    assert np.abs(stn_out - official_io["stn_output"]).max() <= 1e-4
    assert np.abs(features - official_io["features"]).max() <= 1e-5
    assert np.abs(logits - official_io["logits"]).max() <= 1e-5
    assert (logits.argmax(1) == official_io["preds"]).all()


def test_fixture_warp_is_not_identity(official_io):
    # guards the golden test against a trivially identity STN
    assert np.abs(official_io["stn_output"] - official_io["inputs"]).mean() > 0.05


def test_decomposed_sampler_matches_golden_logits(official_model, official_io):
    x = torch.from_numpy(official_io["inputs"])
    try:
        official_model.stn_mode = "decomposed"
        with torch.no_grad():
            logits = official_model(x).numpy()
    finally:
        official_model.stn_mode = "native"
    assert np.abs(logits - official_io["logits"]).max() <= 1e-5


def test_channels_first_blocks_match_golden_logits(official_model, official_io):
    x = torch.from_numpy(official_io["inputs"])
    try:
        official_model.block_layout = "channels_first"
        assert {b.layout for b in official_model.modules() if hasattr(b, "layout")} == {"channels_first"}
        with torch.no_grad():
            logits = official_model(x).numpy()
    finally:
        official_model.block_layout = "channels_last"
    assert np.abs(logits - official_io["logits"]).max() <= 1e-5
    assert (logits.argmax(1) == official_io["preds"]).all()


def test_unknown_block_layout_is_refused(official_model):
    with pytest.raises(ValueError, match=r"block_layout must be one of \['channels_last', 'channels_first'\]"):
        official_model.block_layout = "NHWC"
    assert official_model.block_layout == "channels_last"


def test_attention_branch_does_not_affect_logits(official_model, official_io):
    x = torch.from_numpy(official_io["inputs"][:2])
    with torch.no_grad():
        before = official_model(x)
        saved = {k: v.clone() for k, v in official_model.attention.state_dict().items()}
        for p in official_model.attention.parameters():
            p.add_(1.0)
        after = official_model(x)
        official_model.attention.load_state_dict(saved)
    assert torch.equal(before, after)


@pytest.mark.parametrize("shape", [(1, 3, 112, 112), (1, 1, 224, 224), (3, 224, 224)])
def test_wrong_input_shape_is_a_clear_error(official_model, shape):
    with pytest.raises(ValueError, match=r"\[N, 3, 224, 224\]"):
        official_model(torch.zeros(shape))


def test_named_sizes_have_official_widths():
    assert SIZES["tiny"] == ((3, 3, 9, 3), (96, 192, 384, 768))
    assert SIZES["small"] == ((3, 3, 27, 3), (96, 192, 384, 768))
    assert SIZES["base"] == ((3, 3, 27, 3), (128, 256, 512, 1024))
    assert SIZES["large"] == ((3, 3, 27, 3), (192, 384, 768, 1536))
    assert SIZES["xlarge"] == ((3, 3, 27, 3), (256, 512, 1024, 2048))
    model = build_model("atto")
    assert model.architecture.name == "atto"
    assert model.downsample_layers[0][0].out_channels == 40
    with pytest.raises(ValueError, match="unknown EmoNeXt size"):
        build_model("huge")


def test_parameter_names_follow_official_layout():
    names = set(EmoNeXt(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)).state_dict())
    for expected in (
        "localization.0.weight",
        "localization.1.running_var",
        "fc_loc.2.bias",
        "downsample_layers.0.1.weight",
        "downsample_layers.1.2.fc.0.weight",
        "stages.3.0.gamma",
        "stages.0.0.pwconv1.weight",
        "norm.weight",
        "attention.query.weight",
        "head.weight",
    ):
        assert expected in names


def test_seeded_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = seeded_model("atto", seed=0)
    assert torch.equal(torch.rand(1), expected_next)
    b = seeded_model("atto", seed=0)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
