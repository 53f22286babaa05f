"""Locally aware patch features (PatchCore, Roth et al., CVPR 2022, Sec. 3.1, Eq. 1-2).

Every cell of the first requested layer's grid becomes one patch feature:

1. each layer's map is unfolded into 3x3 zero-padded neighbourhoods (stride 1), so a position holds
   the ``C * 9`` values of its neighbourhood (the paper's local aggregation);
2. ``aggregation="adaptive"`` (authors' code): that ``C * 9`` vector is adaptive-average-pooled to
   ``layer_dim`` values; deeper layers are then resampled onto the first layer's grid; the stacked
   layers are pooled once more to ``target_dim``. Pooling before resampling equals the authors'
   order (resample, then pool) because the two act on different axes and are both linear.
   ``aggregation="concat"`` (MindSpore model zoo, anomalib): each channel is averaged over its 3x3
   neighbourhood and the resampled layers are concatenated (1536 values for layer2 + layer3).

Neighbourhood pooling is one grouped convolution with a fixed kernel and resampling is two fixed
matrix products, both computed here in numpy: they reproduce torch's ``Unfold`` +
``adaptive_avg_pool1d`` and ``interpolate`` exactly, work for any input size, cost little next to
the backbone and export to MindIR/AIR/ONNX without special operators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.errors import ConfigError
from src.models.backbone import WideResNet, stage_output_size
from src.resample import interpolation_matrix

AGGREGATIONS = ("adaptive", "concat")


def adaptive_pool_tables(length: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and weight tables for 1-D adaptive average pooling of ``length`` values into ``bins``.

    Bin ``i`` averages elements ``floor(i * L / n)`` up to ``ceil((i + 1) * L / n)`` (exclusive), as
    torch's ``adaptive_avg_pool1d``. Bins are padded to the longest with zero weights.

    Returns:
        indices: (K, bins) int32, weights: (K, bins) float32, K the longest bin, such that
        ``pooled[i] = sum_k weights[k, i] * values[indices[k, i]]``.
    """
    starts = (np.arange(bins) * length) // bins
    ends = -((-(np.arange(bins) + 1) * length) // bins)
    widths = ends - starts
    longest = int(widths.max())
    offsets = np.arange(longest)[:, None]
    valid = offsets < widths[None, :]
    indices = np.where(valid, starts[None, :] + offsets, starts[None, :])
    weights = np.where(valid, 1.0 / widths[None, :], 0.0)
    return indices.astype(np.int32), weights.astype(np.float32)


def patch_pool_kernel(channels: int, bins: int, patch_size: int) -> tuple[np.ndarray, int]:
    """Grouped-convolution kernel equal to "unfold k x k, then adaptive-average-pool to ``bins``".

    Unfolding gives each position the ``C * k * k`` neighbourhood values in channel-major order;
    pooling them to ``bins`` is linear, so the two together are one convolution. Every bin lies
    within one group of ``C / g`` consecutive channels for ``g = gcd(C, bins)``: group boundaries
    fall on integer multiples of the bin width, where adaptive pooling starts a fresh bin. The
    grouped convolution therefore costs ``bins * C / g * k * k`` multiply-adds per position instead
    of ``bins * C * k * k`` for a dense one.

    Returns:
        kernel: (bins, C / g, k, k) float32 and the group count g.
    """
    groups = math.gcd(channels, bins)
    window = patch_size * patch_size
    indices, weights = adaptive_pool_tables(channels * window, bins)
    in_per_group, out_per_group = channels // groups, bins // groups
    kernel = np.zeros((bins, in_per_group * window), dtype=np.float32)
    out = np.arange(bins)
    group_start = (out // out_per_group) * in_per_group * window  # first value of each bin's group
    for index, weight in zip(indices, weights):
        np.add.at(kernel, (out, index - group_start), weight)
    return kernel.reshape(bins, in_per_group, patch_size, patch_size), groups


class PatchPool(nn.Cell):
    """(B, C, H, W) -> (B, bins, H, W): zero-padded k x k neighbourhoods pooled to ``bins`` values.

    Equals torch's ``Unfold(k, padding=k // 2)`` followed by ``adaptive_avg_pool1d(bins)`` over
    each position's neighbourhood vector; with ``bins == C`` it is a plain per-channel k x k mean.
    """

    def __init__(self, channels: int, bins: int, patch_size: int) -> None:
        super().__init__()
        kernel, groups = patch_pool_kernel(channels, bins, patch_size)
        self.conv = nn.Conv2d(
            channels,
            bins,
            patch_size,
            pad_mode="pad",
            padding=patch_size // 2,
            group=groups,
            has_bias=False,
            weight_init=ms.Tensor(kernel),
        )
        self.conv.weight.requires_grad = False

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        return self.conv(x)


class Resample(nn.Cell):
    """Resizes (B, C, h, w) to (B, C, H, W) with two fixed matrix products."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int], mode: str) -> None:
        super().__init__()
        self.rows = ms.Tensor(interpolation_matrix(in_hw[0], out_hw[0], mode))
        self.cols_t = ms.Tensor(interpolation_matrix(in_hw[1], out_hw[1], mode).T.copy())

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        return ops.matmul(ops.matmul(self.rows, x), self.cols_t)


class PatchFeatures(nn.Cell):
    """Backbone plus local patch aggregation: the network PatchCore runs on every image.

    Args:
        backbone: a WideResNet built with the layers to aggregate, first layer = output grid.
        image_hw: (height, width) of the network input; fixes the grids and resampling tables.
        patch_size: neighbourhood side (odd), 3 in the paper.
        upsample: "bilinear" (authors) or "nearest" (model zoo).
        aggregation: "adaptive" (authors) or "concat" (model zoo, anomalib).
        layer_dim: width each layer is pooled to ("adaptive" only).
        target_dim: final patch feature width ("adaptive" only).

    Inputs:
        x: (B, 3, H, W) normalised images.

    Outputs:
        (B, h, w, D) patch features on the first layer's grid.
    """

    def __init__(
        self,
        backbone: WideResNet,
        image_hw: tuple[int, int],
        patch_size: int = 3,
        upsample: str = "bilinear",
        aggregation: str = "adaptive",
        layer_dim: int = 1024,
        target_dim: int = 1024,
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"features.aggregation must be one of {', '.join(AGGREGATIONS)}; got "
                f"{aggregation!r}."
            )
        if patch_size < 1 or patch_size % 2 == 0:
            raise ConfigError(
                f"features.patch_size must be a positive odd number; got {patch_size}."
            )
        for name, value in (("layer_dim", layer_dim), ("target_dim", target_dim)):
            if value < 1:
                raise ConfigError(f"features.{name} must be a positive integer; got {value}.")
        self.backbone = backbone
        layers: Sequence[str] = backbone.out_layers
        grids = [
            (stage_output_size(image_hw[0], name), stage_output_size(image_hw[1], name))
            for name in layers
        ]
        self.grid_hw = grids[0]
        pools, resamples = [], []
        for name, grid in zip(layers, grids):
            channels = backbone.out_channels[name]
            bins = layer_dim if aggregation == "adaptive" else channels
            pools.append(PatchPool(channels, bins, patch_size))
            resamples.append(
                Resample(grid, self.grid_hw, upsample) if grid != self.grid_hw else nn.Identity()
            )
        self.layer_pools = nn.CellList(pools)
        self.resamples = nn.CellList(resamples)
        if aggregation == "adaptive":
            self.feature_dim = target_dim
            self.final_pool = PatchPool(layer_dim * len(layers), target_dim, 1)
        else:
            self.feature_dim = sum(backbone.out_channels[name] for name in layers)
            self.final_pool = None

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        maps = self.backbone(x)
        pooled = []
        for index, feature_map in enumerate(maps):
            pooled.append(self.resamples[index](self.layer_pools[index](feature_map)))
        if self.final_pool is not None:
            # Stacking then flattening puts the layers one after another along the channel axis,
            # as the authors' aggregator sees them before its final adaptive pool.
            out = self.final_pool(ops.concat(pooled, axis=1))
        else:
            out = ops.concat(pooled, axis=1)
        return ops.transpose(out, (0, 2, 3, 1))
