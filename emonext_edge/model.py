"""EmoNeXt: ConvNeXt + Spatial Transformer Network + Squeeze-and-Excitation (torch).

Parameter names match the authors' official ``models.py`` so official checkpoints load
with ``strict=True``. Blocks first, then the network, then size builders.

Deployment differences from the training code, none of which change the logits:

* the self-attention block is kept (so checkpoints load) but never computed: the official
  ``forward`` feeds its output only into the training loss;
* the affine grid is built from a constant base grid and a batched matmul instead of
  ``F.affine_grid`` (exporters cannot lower ``affine_grid`` below opset 20, and the
  ``AffineGrid`` op of opset 20 is not supported by TensorRT);
* the bilinear sampler can be switched (``model.stn_mode = "decomposed"``) to a
  Gather-and-arithmetic implementation valid at ONNX opset 13 (see ``stn.py``);
* stochastic depth (a training-time regulariser) is omitted; it holds no parameters;
* the blocks can be switched (``model.block_layout = "channels_first"``) to an export form
  without the NCHW<->NHWC permutes: LayerNorm over the channel axis and the pointwise
  ``Linear`` layers applied as 1x1 convolutions of the same weights. Same arithmetic up to
  float rounding; it saves OpenVINO the transposes and layout reorders around every block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .labels import DEFAULT_LABELS
from .preprocess import SPEC, PreprocessSpec
from .stn import affine_grid_plain, grid_sample_bilinear_zeros


class SELayer(nn.Module):
    """Squeeze-and-Excitation (reduction 16, no biases), as in the official code."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(2, 3))
        return x * self.fc(y)[:, :, None, None]


class DotProductSelfAttention(nn.Module):
    """Training-only branch: present so official checkpoints load; inference never calls it."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.norm = nn.LayerNorm(input_dim)
        self.query = nn.Linear(input_dim, input_dim)
        self.key = nn.Linear(input_dim, input_dim)
        self.value = nn.Linear(input_dim, input_dim)


class LayerNorm(nn.Module):
    """LayerNorm over channels for channels_last (N,H,W,C) or channels_first (N,C,H,W) tensors."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be channels_last or channels_first, got {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return layer_norm_channels_first(x, self.weight, self.bias, self.eps)


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over dim 1 of an (N, C, H, W) tensor, written out as the official code does."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return weight[:, None, None] * x + bias[:, None, None]


#: ``channels_last``: the official block (permute, LayerNorm, Linear); ``channels_first``: export form.
BLOCK_LAYOUTS = ("channels_last", "channels_first")


class Block(nn.Module):
    """ConvNeXt block: dw 7x7 -> LayerNorm -> Linear(4x) -> GELU -> Linear -> layer scale, residual."""

    def __init__(self, dim: int, layer_scale_init_value: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma: Optional[nn.Parameter] = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim)) if layer_scale_init_value > 0 else None
        )
        self.layout = "channels_last"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "channels_first":
            return self._forward_channels_first(x)
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + x.permute(0, 3, 1, 2)

    def _forward_channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """The same block on (N, C, H, W) throughout: no permutes, pointwise layers as 1x1 convs."""
        y = self.dwconv(x)
        y = layer_norm_channels_first(y, self.norm.weight, self.norm.bias, self.norm.eps)
        y = self.act(F.conv2d(y, self.pwconv1.weight[:, :, None, None], self.pwconv1.bias))
        y = F.conv2d(y, self.pwconv2.weight[:, :, None, None], self.pwconv2.bias)
        if self.gamma is not None:
            y = self.gamma[:, None, None] * y
        return x + y


@dataclass(frozen=True)
class Architecture:
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]
    num_classes: int = len(DEFAULT_LABELS)
    layer_scale: bool = True

    def to_dict(self) -> dict:
        return {"depths": list(self.depths), "dims": list(self.dims), "num_classes": self.num_classes}

    @property
    def name(self) -> str:
        for size, (depths, dims) in SIZES.items():
            if (self.depths, self.dims) == (depths, dims):
                return size
        return "custom"


#: Official sizes (authors' ``get_model``) and ConvNeXt-V2 edge sizes.
SIZES: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}

STN_MODES = ("native", "decomposed")
#: the STN localisation net (official code): conv 7 -> max-pool 2 -> conv 5 -> max-pool 2, 10 channels out
_STN_CHANNELS = 10


def stn_features(crop_size: int) -> int:
    """fc_loc's input size for a ``crop_size`` x ``crop_size`` input: the localisation net's output,
    flattened. It fixes the input size: a checkpoint's fc_loc says which crop it was trained on."""
    side = ((crop_size - 6) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"crop size {crop_size} is too small for the STN's localisation net (needs >= 16)")
    return _STN_CHANNELS * side * side


# The official geometry: the trained spec's crop gives 10 x 52 x 52 into fc_loc (official models.py: nn.Linear(10 * 52 * 52, 32)).
assert stn_features(SPEC.crop_size) == 10 * 52 * 52, "the spec's crop size no longer matches the official STN"


class EmoNeXt(nn.Module):
    """EmoNeXt. ``forward(x)`` -> logits ``[N, num_classes]`` for ``x`` of shape ``[N, *spec.input_shape]``.

    ``spec`` (default: the trained one, :data:`emonext_edge.preprocess.SPEC`) fixes the STN's geometry
    (:func:`stn_features`) and travels with the model into every artifact it is exported to.
    """

    def __init__(
        self,
        depths: Sequence[int] = SIZES["tiny"][0],
        dims: Sequence[int] = SIZES["tiny"][1],
        num_classes: int = len(DEFAULT_LABELS),
        layer_scale_init_value: float = 1e-6,
        labels: Optional[Sequence[str]] = None,
        spec: PreprocessSpec = SPEC,
    ) -> None:
        super().__init__()
        if spec.channels != 3:
            raise ValueError(f"EmoNeXt's stem takes 3 channels; the preprocessing spec gives {spec.channels}")
        self.spec = spec
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"depths and dims need 4 stages, got depths={list(depths)} dims={list(dims)}")
        self.architecture = Architecture(
            tuple(depths), tuple(dims), num_classes, layer_scale_init_value > 0  # type: ignore[arg-type]
        )
        self.labels: tuple[str, ...] = tuple(labels) if labels is not None else tuple(DEFAULT_LABELS)
        if len(self.labels) != num_classes:
            raise ValueError(f"{len(self.labels)} labels given for {num_classes} classes")
        self.stn_mode = "native"

        self.localization = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=7),
            nn.BatchNorm2d(8),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.BatchNorm2d(10),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
        )
        self.fc_loc = nn.Sequential(nn.Linear(stn_features(spec.crop_size), 32), nn.ReLU(True), nn.Linear(32, 3 * 2))

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(3, dims[0], kernel_size=4, stride=4),
                LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
            )
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                    nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2),
                    SELayer(dims[i + 1]),
                )
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(dims[i], layer_scale_init_value) for _ in range(depths[i])]) for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.attention = DotProductSelfAttention(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self._init_weights()

    @property
    def block_layout(self) -> str:
        """``channels_last`` (official blocks) or ``channels_first`` (export form, see the module doc)."""
        layouts = {block.layout for block in self.modules() if isinstance(block, Block)}
        return layouts.pop() if len(layouts) == 1 else "mixed"

    @block_layout.setter
    def block_layout(self, layout: str) -> None:
        if layout not in BLOCK_LAYOUTS:
            raise ValueError(f"block_layout must be one of {list(BLOCK_LAYOUTS)}, got {layout!r}")
        for block in self.modules():
            if isinstance(block, Block):
                block.layout = layout

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        last = self.fc_loc[2]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input: the spec's (the STN's fc_loc fixes it)."""
        return self.spec.input_shape

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"EmoNeXt expects input [N, {', '.join(map(str, self.input_shape))}] (the preprocessing spec's "
                f"crop; the STN's fc_loc fixes the size), got {list(x.shape)}"
            )

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The STN's affine matrices ``[N, 2, 3]``."""
        xs = self.localization(x).flatten(1)
        return self.fc_loc(xs).view(-1, 2, 3)

    def stn(self, x: torch.Tensor) -> torch.Tensor:
        grid = affine_grid_plain(self.theta(x), x.shape[-2], x.shape[-1])
        if self.stn_mode == "decomposed":
            return grid_sample_bilinear_zeros(x, grid)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x.mean([-2, -1]))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self._check_input(x)
        return self.forward_head(self.forward_features(self.stn(x)))


def build_model(size: str = "tiny", num_classes: int = len(DEFAULT_LABELS), **kwargs) -> EmoNeXt:
    """EmoNeXt of a named size (``tiny``, ``small``, ``base``, ``large``, ``xlarge``, ``atto``..``nano``)."""
    if size not in SIZES:
        raise ValueError(f"unknown EmoNeXt size {size!r}; expected one of {list(SIZES)}")
    depths, dims = SIZES[size]
    return EmoNeXt(depths, dims, num_classes, **kwargs)


def seeded_model(size: str = "tiny", seed: int = 0, spec: PreprocessSpec = SPEC) -> EmoNeXt:
    """Untrained model with deterministic weights and a non-identity STN (for latency work)."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(size, spec=spec)
        with torch.no_grad():
            last = model.fc_loc[2]
            assert isinstance(last, nn.Linear)
            last.bias.copy_(torch.tensor([0.95, -0.1, 0.02, 0.1, 0.95, -0.03]))
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()
