"""WideResNet-50-2 (Zagoruyko & Komodakis, 2016) with torchvision's module structure.

PatchCore (Roth et al., CVPR 2022, Sec. 3.1) reads mid-level feature maps of an ImageNet-pretrained
WideResNet-50-2. Parameter names follow torchvision's (``layer2.0.downsample.1.weight`` ...), with
MindSpore's BatchNorm spelling (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``), so that
torchvision's ImageNet weights and the MindSpore model zoo's converted checkpoint load one to one.

Only the stages up to the deepest requested layer are built: PatchCore never runs layer4 or the
classifier head, so neither costs time nor memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from src.errors import ConfigError
from src.models import STAGE_NAMES


def stage_output_size(input_size: int, stage: str) -> int:
    """Spatial size of a stage's output for a square input of ``input_size`` pixels.

    The stem (7x7 conv, stride 2, pad 3; 3x3 max pool, stride 2, pad 1) and every stride-2 3x3 conv
    with pad 1 map a side of length n to ceil(n / 2).
    """
    if stage not in STAGE_NAMES:
        raise ConfigError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGE_NAMES)}")
    size = input_size
    for _ in range(2 + STAGE_NAMES.index(stage)):  # conv1, maxpool, then one halving per stage >1
        size = -(-size // 2)
    return size


class Bottleneck(nn.Cell):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution, as in torchvision."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int, width_per_group: int, downsample: bool
    ) -> None:
        super().__init__()
        width = planes * width_per_group // 64
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, has_bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, pad_mode="pad", padding=1, has_bias=False
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, has_bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.SequentialCell(
                [
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, has_bias=False),
                    nn.BatchNorm2d(out_channels),
                ]
            )
            if downsample
            else None
        )

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class WideResNet(nn.Cell):
    """A bottleneck ResNet that returns the requested intermediate stages and nothing deeper.

    The defaults build WideResNet-50-2. Smaller ``depths``/``width_per_group``/``stem_channels``
    build reduced networks with the same parameter names (used for test fixtures).

    Args:
        out_layers: stage names to return, in network order, e.g. ("layer2", "layer3").
        depths: bottleneck blocks per stage (torchvision's ``layers``).
        width_per_group: 128 for the "wide" variant, 64 for plain ResNet-50.
        stem_channels: output channels of the 7x7 stem (torchvision's ``inplanes``, 64).

    Inputs:
        x: (B, 3, H, W) normalised images.

    Outputs:
        tuple of (B, C_l, H_l, W_l) feature maps, one per requested stage.
    """

    def __init__(
        self,
        out_layers: Sequence[str] = ("layer2", "layer3"),
        depths: Sequence[int] = (3, 4, 6, 3),
        width_per_group: int = 128,
        stem_channels: int = 64,
    ) -> None:
        super().__init__()
        unknown = [name for name in out_layers if name not in STAGE_NAMES]
        if not out_layers or unknown:
            raise ConfigError(
                f"backbone.layers must name stages among {', '.join(STAGE_NAMES)}; got "
                f"{list(out_layers)!r}."
            )
        order = [STAGE_NAMES.index(name) for name in out_layers]
        if order != sorted(set(order)):
            raise ConfigError(
                f"backbone.layers must be distinct and in network order; got {list(out_layers)!r}."
            )
        self.out_layers = tuple(out_layers)
        self.num_stages = max(order) + 1

        self.conv1 = nn.Conv2d(
            3, stem_channels, 7, stride=2, pad_mode="pad", padding=3, has_bias=False
        )
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU()
        # Zero padding then an unpadded pool equals torchvision's -inf-padded pool here because the
        # input is post-ReLU (non-negative); unlike a padded pool it also exports to ONNX.
        self.pad = nn.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")

        channels = stem_channels
        self.out_channels: dict[str, int] = {}
        self.out_strides: dict[str, int] = {}
        stages: list[nn.SequentialCell | None] = [None] * len(STAGE_NAMES)
        for index in range(self.num_stages):
            planes = stem_channels * 2**index
            blocks = []
            for block in range(depths[index]):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(
                    Bottleneck(channels, planes, stride, width_per_group, downsample=block == 0)
                )
                channels = planes * Bottleneck.expansion
            stages[index] = nn.SequentialCell(blocks)
            self.out_channels[STAGE_NAMES[index]] = channels
            self.out_strides[STAGE_NAMES[index]] = 4 * 2**index
        # Plain attributes (not a CellList) so that parameter names read layer2.0.conv1.weight.
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.return1, self.return2, self.return3, self.return4 = (
            index in order for index in range(len(STAGE_NAMES))
        )

    def construct(self, x: ms.Tensor) -> tuple[ms.Tensor, ...]:
        x = self.maxpool(self.pad(self.relu(self.bn1(self.conv1(x)))))
        outputs = ()
        x = self.layer1(x)
        if self.return1:
            outputs = outputs + (x,)
        if self.layer2 is not None:
            x = self.layer2(x)
            if self.return2:
                outputs = outputs + (x,)
        if self.layer3 is not None:
            x = self.layer3(x)
            if self.return3:
                outputs = outputs + (x,)
        if self.layer4 is not None:
            x = self.layer4(x)
            if self.return4:
                outputs = outputs + (x,)
        return outputs


def initialise_randomly(network: nn.Cell, seed: int) -> None:
    """Deterministic stand-in weights: each layer type's default initialisation, seeded.

    Convolutions get torch's and MindSpore's default (Kaiming-uniform with a = sqrt(5), i.e.
    uniform in +-1/sqrt(fan_in)), BatchNorm the identity. These weights shrink every residual
    branch, so the untrained network stays close to its identity paths and its features keep the
    image's local structure; He initialisation (as for training) lets the residual branches
    dominate and gives features too chaotic to match across images. Used when no checkpoint is
    given: enough for the generated demo data, not for real inspection.
    """
    rng = np.random.default_rng(seed)
    for name, param in sorted(network.parameters_and_names(), key=lambda item: item[0]):
        shape = tuple(param.shape)
        if name.endswith(".weight") and len(shape) == 4:
            bound = 1.0 / np.sqrt(shape[1] * shape[2] * shape[3])
            value = rng.uniform(-bound, bound, size=shape)
        elif name.endswith((".gamma", ".moving_variance")):
            value = np.ones(shape)
        else:  # beta, moving_mean
            value = np.zeros(shape)
        param.set_data(ms.Tensor(value.astype(np.float32)))
