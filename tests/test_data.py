"""Image decoding, the input geometry, masks and the MVTec AD folder listing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from src.data.mvtec import list_test, list_train
from src.data.transform import Geometry, normalise, read_image, read_mask
from src.errors import DatasetError


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def test_read_image_handles_gray_rgba_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    bgr = rgb[:, :, ::-1]
    assert np.array_equal(read_image(_write(tmp_path / "rgb.png", bgr)), rgb)
    gray = rgb[:, :, 0]
    assert np.array_equal(read_image(_write(tmp_path / "gray.png", gray)), np.dstack([gray] * 3))
    bgra = np.dstack([bgr, np.full((20, 30), 7, np.uint8)])
    assert np.array_equal(read_image(_write(tmp_path / "rgba.png", bgra)), rgb)
    deep = gray.astype(np.uint16) * 257  # 16-bit with the same levels
    assert np.array_equal(read_image(_write(tmp_path / "deep.png", deep)), np.dstack([gray] * 3))


def test_unreadable_and_missing_images_raise(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(DatasetError, match="does not exist"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize(
    ("shape", "mode", "resized"),
    [
        ((300, 400), "shorter", (256, 341)),
        ((400, 300), "shorter", (341, 256)),
        ((900, 900), "shorter", (256, 256)),
        ((300, 400), "square", (256, 256)),
    ],
)
def test_geometry_follows_torchvision_rounding(shape, mode, resized):
    geometry = Geometry(256, mode, 224)
    assert geometry.resized_hw(*shape) == resized
    image = np.zeros((*shape, 3), np.uint8)
    assert geometry.apply(image).shape == (224, 224, 3)


def test_centre_crop_is_centred():
    geometry = Geometry(256, "square", 200)
    image = np.zeros((256, 256), np.uint8)
    image[28:228, 28:228] = 255  # exactly the central 200 x 200
    assert geometry.apply(image).min() == 255


def test_masks_stay_binary_and_aligned():
    geometry = Geometry(256, "shorter", 224)
    mask = np.zeros((512, 700), bool)
    mask[200:300, 300:420] = True
    image = np.zeros((512, 700, 3), np.uint8)
    image[mask] = 255
    small_mask = geometry.apply(mask, nearest=True)
    small_image = geometry.apply(image)
    assert small_mask.dtype == bool
    # Nearest-resampled mask lies where the bilinear image is bright.
    assert small_image[small_mask].min() > 100 and small_image[~small_mask].mean() < 30


def test_normalise_uses_imagenet_statistics():
    pixel = np.array([[[[124, 116, 104]]]], np.uint8)
    out = normalise(pixel)
    assert out.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(out.ravel(), [0.0, 0.0, 0.0], atol=0.02)


def _make_category(root: Path, with_masks: bool = True) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("001.png", "000.png"):
        _write(root / "cat" / "train" / "good" / name, image)
    _write(root / "cat" / "test" / "good" / "000.png", image)
    _write(root / "cat" / "test" / "crack" / "000.png", image)
    if with_masks:
        _write(
            root / "cat" / "ground_truth" / "crack" / "000_mask.png", np.full((8, 8), 255, np.uint8)
        )


def test_listing_follows_mvtec_layout(tmp_path):
    _make_category(tmp_path)
    train = list_train(tmp_path, "cat")
    assert [s.path.name for s in train] == ["000.png", "001.png"]
    test = list_test(tmp_path, "cat")
    assert [(s.defect, s.label) for s in test] == [("good", 0), ("crack", 1)]
    assert test[0].mask_path is None and test[1].mask_path.name == "000_mask.png"
    assert read_mask(test[1].mask_path).all()


def test_listing_errors_say_what_to_fix(tmp_path):
    with pytest.raises(DatasetError, match="make demo"):
        list_train(tmp_path / "nowhere", "cat")
    _make_category(tmp_path)
    with pytest.raises(DatasetError, match="Folders in .*: cat"):
        list_train(tmp_path, "bottle")
    (tmp_path / "cat" / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(DatasetError, match="mask of .* is missing"):
        list_test(tmp_path, "cat")


def test_dataset_without_ground_truth_is_image_level_only(tmp_path):
    _make_category(tmp_path, with_masks=False)
    assert all(s.mask_path is None for s in list_test(tmp_path, "cat"))
