"""Export-friendly pieces of the Spatial Transformer Network (torch).

``affine_grid_plain`` equals ``F.affine_grid(theta, size, align_corners=True)`` but is a
constant base grid times theta (MatMul), so no exporter emits ``AffineGrid``.

``grid_sample_bilinear_zeros`` equals ``F.grid_sample(x, grid, "bilinear", "zeros",
align_corners=True)`` written with Floor/Clip/GatherElements and arithmetic only, all of
which exist at ONNX opset 13 — for runtimes without ``GridSample`` (TensorRT < 8.5,
e.g. JetPack 4.6 on the Jetson Nano).
"""

from __future__ import annotations

import torch


def affine_grid_plain(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid ``[N, H, W, 2]`` for affine matrices ``theta`` ``[N, 2, 3]`` (align_corners=True)."""
    ys = torch.linspace(-1.0, 1.0, height, dtype=theta.dtype, device=theta.device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=theta.dtype, device=theta.device)
    base = torch.stack(
        [xs.repeat(height), ys.repeat_interleave(width), torch.ones(height * width, dtype=theta.dtype)], dim=1
    )  # [H*W, 3]: (x, y, 1) in row-major order
    grid = torch.matmul(base, theta.transpose(1, 2))  # [N, H*W, 2]
    return grid.view(-1, height, width, 2)


def grid_sample_bilinear_zeros(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling with zero padding and align_corners=True from Gather-family ops."""
    n, c, h, w = image.shape
    out_h, out_w = grid.shape[1], grid.shape[2]
    # same coordinate arithmetic as ATen's grid_sampler_compute_source_index(align_corners=True)
    ix = ((grid[..., 0] + 1) / 2) * (w - 1)
    iy = ((grid[..., 1] + 1) / 2) * (h - 1)
    x0 = torch.floor(ix)
    y0 = torch.floor(iy)
    x1 = x0 + 1
    y1 = y0 + 1
    corners = (
        (x0, y0, (x1 - ix) * (y1 - iy)),
        (x1, y0, (ix - x0) * (y1 - iy)),
        (x0, y1, (x1 - ix) * (iy - y0)),
        (x1, y1, (ix - x0) * (iy - y0)),
    )
    flat = image.reshape(n, c, h * w)
    out = torch.zeros(n, c, out_h * out_w, dtype=image.dtype, device=image.device)
    for cx, cy, weight in corners:
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).to(torch.int64).reshape(n, 1, -1)
        values = torch.gather(flat, 2, index.expand(n, c, out_h * out_w))
        out = out + values * (weight * inside.to(image.dtype)).reshape(n, 1, -1)
    return out.reshape(n, c, out_h, out_w)
