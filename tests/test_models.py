"""Backbone geometry and patch aggregation against independent numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from src.errors import ConfigError
from src.resample import interpolation_matrix


def _unfold_pool_reference(feature_map: np.ndarray, patch: int, bins: int) -> np.ndarray:
    """Unfold (channel-major, zero padded) then adaptive average pool, written with loops."""
    channels, height, width = feature_map.shape
    pad = patch // 2
    padded = np.pad(feature_map, ((0, 0), (pad, pad), (pad, pad)))
    length = channels * patch * patch
    out = np.zeros((bins, height, width))
    for y in range(height):
        for x in range(width):
            vector = padded[:, y : y + patch, x : x + patch].reshape(length)
            for i in range(bins):
                start = (i * length) // bins
                end = -((-(i + 1) * length) // bins)
                out[i, y, x] = vector[start:end].mean()
    return out


def _bilinear_reference(value: np.ndarray, out_size: int) -> np.ndarray:
    """torch.nn.functional.interpolate(mode="bilinear", align_corners=False) on one axis."""
    in_size = len(value)
    result = np.zeros(out_size)
    for i in range(out_size):
        source = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
        low = min(int(np.floor(source)), in_size - 1)
        high = min(low + 1, in_size - 1)
        frac = source - low
        result[i] = (1 - frac) * value[low] + frac * value[high]
    return result


@pytest.mark.parametrize("size", [64, 96, 100, 224, 231])
def test_backbone_output_shapes_follow_strides(mindspore_runtime, size):
    import mindspore as ms

    from src.models.backbone import WideResNet, initialise_randomly, stage_output_size

    net = WideResNet(
        ("layer1", "layer2", "layer3"), depths=(1, 1, 1), width_per_group=16, stem_channels=8
    )
    initialise_randomly(net, 0)
    net.set_train(False)
    outputs = net(ms.Tensor(np.zeros((2, 3, size, size), np.float32)))
    assert len(outputs) == 3
    for output, name in zip(outputs, ("layer1", "layer2", "layer3")):
        side = -(-size // net.out_strides[name])  # ceil(size / stride)
        assert output.shape == (2, net.out_channels[name], side, side)
        assert stage_output_size(size, name) == side


def test_wide_resnet50_2_layout_matches_torchvision(mindspore_runtime):
    from src.models.backbone import WideResNet

    net = WideResNet(("layer2", "layer3"))
    params = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    # Shapes and names of torchvision's wide_resnet50_2 (BatchNorm renamed).
    assert params["conv1.weight"] == (64, 3, 7, 7)
    assert params["layer1.0.conv1.weight"] == (128, 64, 1, 1)
    assert params["layer2.0.conv2.weight"] == (256, 256, 3, 3)
    assert params["layer2.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert params["layer3.5.bn3.moving_variance"] == (1024,)
    assert not any(name.startswith(("layer4", "fc")) for name in params)
    # 1 stem conv + 13 blocks x 3 convs + 3 downsample convs, each with 4 BatchNorm tensors.
    convs = [name for name in params if name.endswith(".weight")]
    assert len(convs) == 1 + 13 * 3 + 3
    assert len(params) == len(convs) * 5


def test_layers_validation():
    from src.models.backbone import WideResNet

    with pytest.raises(ConfigError, match="layer5"):
        WideResNet(("layer2", "layer5"))
    with pytest.raises(ConfigError, match="network order"):
        WideResNet(("layer3", "layer2"))


@pytest.mark.parametrize(("channels", "bins"), [(8, 16), (12, 16), (16, 16), (24, 10), (6, 7)])
def test_patch_pool_equals_unfold_then_adaptive_pool(mindspore_runtime, channels, bins):
    import mindspore as ms

    from src.models.patch_features import PatchPool

    rng = np.random.default_rng(channels * 100 + bins)
    feature_map = rng.normal(size=(1, channels, 5, 6)).astype(np.float32)
    cell = PatchPool(channels, bins, 3)
    cell.set_train(False)
    got = cell(ms.Tensor(feature_map)).asnumpy()[0]
    np.testing.assert_allclose(got, _unfold_pool_reference(feature_map[0], 3, bins), atol=1e-5)


@pytest.mark.parametrize(("in_size", "out_size"), [(14, 28), (15, 29), (7, 28), (28, 224), (5, 3)])
def test_interpolation_matrix_matches_torch_formula(in_size, out_size):
    value = np.random.default_rng(in_size).normal(size=in_size)
    got = interpolation_matrix(in_size, out_size, "bilinear") @ value
    np.testing.assert_allclose(got, _bilinear_reference(value, out_size), atol=1e-6)
    nearest = interpolation_matrix(in_size, out_size, "nearest") @ value
    expected = value[np.minimum((np.arange(out_size) * in_size) // out_size, in_size - 1)]
    np.testing.assert_allclose(nearest, expected, atol=1e-6)


def test_patch_features_equal_numpy_pipeline(mindspore_runtime):
    """The whole aggregation (authors' order: unfold, resample, pool, pool) against numpy."""
    import mindspore as ms

    from src.models.backbone import WideResNet, initialise_randomly
    from src.models.patch_features import PatchFeatures

    net = WideResNet(("layer2", "layer3"), depths=(1, 1, 1), width_per_group=16, stem_channels=8)
    initialise_randomly(net, 3)
    features = PatchFeatures(net, (64, 64), layer_dim=24, target_dim=20)
    features.set_train(False)
    images = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    got = features(ms.Tensor(images)).asnumpy()[0]  # (h, w, D)
    layer2, layer3 = (t.asnumpy()[0] for t in net(ms.Tensor(images)))
    assert got.shape == (layer2.shape[1], layer2.shape[2], 20)

    # Authors' order: unfold on each layer's own grid, resample the unfolded values onto
    # layer2's grid, pool each layer to layer_dim, then pool the stacked layers to target_dim.
    def unfold(feature_map):
        channels, height, width = feature_map.shape
        padded = np.pad(feature_map, ((0, 0), (1, 1), (1, 1)))
        stacks = [
            padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)
        ]
        return np.stack(stacks, axis=1).reshape(channels * 9, height, width)

    def pool(vectors, bins):  # (L, ...) -> (bins, ...)
        length = vectors.shape[0]
        return np.stack(
            [
                vectors[(i * length) // bins : -((-(i + 1) * length) // bins)].mean(axis=0)
                for i in range(bins)
            ]
        )

    unfolded3 = unfold(layer3)
    grid = layer2.shape[1:]
    resampled3 = np.stack(
        [np.stack([_bilinear_reference(col, grid[0]) for col in plane.T]).T for plane in unfolded3]
    )
    resampled3 = np.stack(
        [np.stack([_bilinear_reference(row, grid[1]) for row in plane]) for plane in resampled3]
    )
    expected = pool(np.concatenate([pool(unfold(layer2), 24), pool(resampled3, 24)]), 20)
    np.testing.assert_allclose(got, expected.transpose(1, 2, 0), rtol=1e-4, atol=1e-5)


def test_concat_aggregation_width(mindspore_runtime):
    import mindspore as ms

    from src.models.backbone import WideResNet, initialise_randomly
    from src.models.patch_features import PatchFeatures

    net = WideResNet(("layer2", "layer3"), depths=(1, 1, 1), width_per_group=16, stem_channels=8)
    initialise_randomly(net, 0)
    features = PatchFeatures(net, (64, 64), aggregation="concat", upsample="nearest")
    features.set_train(False)
    out = features(ms.Tensor(np.ones((2, 3, 64, 64), np.float32))).asnumpy()
    expected_width = net.out_channels["layer2"] + net.out_channels["layer3"]
    assert out.shape == (2, 8, 8, expected_width) and features.feature_dim == expected_width
