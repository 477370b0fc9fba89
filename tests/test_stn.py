"""STN sampler: plain affine grid + decomposed sampler (torch and ONNX) vs torch's affine_grid/grid_sample."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emonext_edge.stn import affine_grid_plain, grid_sample_bilinear_zeros

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

H, W = 24, 32  # non-square, so a swapped x/y shows up


def _theta() -> torch.Tensor:
    """One affine matrix per batch item: rotation, scale, translation, partly out of bounds, shear, identity."""
    a = math.radians(30)
    rotation = [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]
    zoom_shift = [[0.7, 0.0, 0.2], [0.0, 0.8, -0.15]]
    out_of_bounds = [[1.3, 0.1, 0.45], [-0.2, 1.25, -0.5]]  # a large part samples outside the image
    b = math.radians(-12)
    like_fixture = [[0.9 * math.cos(b), -0.9 * math.sin(b), 0.08], [0.9 * math.sin(b), 0.9 * math.cos(b), -0.05]]
    shear_flip = [[-1.0, 0.3, 0.0], [0.0, 1.0, 0.1]]
    identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # samples exactly on pixel centres and borders
    return torch.tensor([rotation, zoom_shift, out_of_bounds, like_fixture, shear_flip, identity], dtype=torch.float32)


def _image(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, H, W, generator=gen) + 0.5  # strictly positive, so zero padding is visible


def _reference(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(image.shape), align_corners=True)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


class _Sampler(torch.nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        grid = affine_grid_plain(theta, image.shape[-2], image.shape[-1])
        if self.mode == "decomposed":
            return grid_sample_bilinear_zeros(image, grid)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _export_sampler(mode: str, opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Sampler(mode),
            (_image(2), _theta()[:2]),
            buffer,  # type: ignore[arg-type]  # torch's stub omits file-like f, which the TorchScript exporter accepts
            dynamo=False,
            opset_version=opset,
            input_names=["image", "theta"],
            output_names=["out"],
            dynamic_axes={"image": {0: "n"}, "theta": {0: "n"}, "out": {0: "n"}},
        )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def case() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    theta = _theta()
    image = _image(len(theta))
    with torch.no_grad():
        reference = _reference(image, theta).numpy()
    return image, theta, reference


def test_case_is_non_trivial(case):
    image, theta, reference = case
    grid = F.affine_grid(theta, list(image.shape), align_corners=True)
    outside = (grid.abs() > 1).any(-1).float().mean(dim=(1, 2))
    assert outside[2] > 0.2  # the out-of-bounds item really samples outside
    assert (reference[2] == 0).mean() > 0.1  # ... and gets zero padding there
    assert np.abs(reference[0] - image[0].numpy()).mean() > 0.1  # the rotation really moves pixels
    assert len({tuple(t.flatten().tolist()) for t in theta}) == len(theta)  # a different theta per item


def test_plain_affine_grid_equals_torch_affine_grid(case):
    image, theta, _ = case
    expected = F.affine_grid(theta, list(image.shape), align_corners=True)
    assert torch.abs(affine_grid_plain(theta, H, W) - expected).max() <= 1e-6


def test_decomposed_sampler_equals_torch_grid_sample(case):
    image, theta, reference = case
    with torch.no_grad():
        out = grid_sample_bilinear_zeros(image, affine_grid_plain(theta, H, W)).numpy()
    assert np.abs(out - reference).max() <= 1e-5


@pytest.mark.parametrize(("mode", "opset"), [("native", 17), ("decomposed", 13)])
def test_onnx_sampler_equals_torch_grid_sample(case, mode, opset):
    image, theta, reference = case
    proto = _export_sampler(mode, opset)
    model = onnx.load_from_string(proto)
    ops = {n.op_type for n in model.graph.node}
    assert "AffineGrid" not in ops
    assert ("GridSample" in ops) == (mode == "native")
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [opset]
    session = ort.InferenceSession(proto, providers=["CPUExecutionProvider"])
    out = session.run(["out"], {"image": image.numpy(), "theta": theta.numpy()})[0]
    assert out.shape == reference.shape
    assert np.abs(out - reference).max() <= 1e-5
    # batch 1 through the same graph: per-item theta is not mixed across the batch
    single = session.run(["out"], {"image": image[2:3].numpy(), "theta": theta[2:3].numpy()})[0]
    assert np.abs(single - reference[2:3]).max() <= 1e-5
