"""Tests of the synthetic MVTec-AD-style dataset generator (src/data/synthetic.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from src.data import synthetic
from src.data.synthetic import (
    DEFECT_TYPES,
    DEMO_CATEGORIES,
    GRAYSCALE_CATEGORIES,
    SyntheticSpec,
    generate_dataset,
    main,
)
from src.errors import ConfigError, DatasetError

# Small images and counts keep the whole module well under the 10 s budget; the drawing code
# scales with the image size, so the same properties hold at the default 256 px.
SMALL = SyntheticSpec(image_size=128, num_train=3, num_test_good=2, num_test_per_defect=2, seed=7)


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"unreadable {path}"
    return image


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every category this module knows, generated once with the small spec."""
    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(root, list(DEFECT_TYPES), SMALL)


def test_demo_categories_cover_textures_and_an_object() -> None:
    assert len(DEMO_CATEGORIES) >= 3
    assert set(DEMO_CATEGORIES) <= set(DEFECT_TYPES)
    assert "washer" in DEMO_CATEGORIES  # the object category
    assert GRAYSCALE_CATEGORIES & set(DEMO_CATEGORIES), "demo should exercise greyscale input"
    assert all(len(defects) >= 3 for defects in DEFECT_TYPES.values())


def test_layout_matches_mvtec_ad(dataset: Path) -> None:
    readme = (dataset / "README.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in readme and "NOT MVTec AD" in readme
    assert "--seed 7" in readme
    for category, defects in DEFECT_TYPES.items():
        folder = dataset / category
        assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {
            "train",
            "test",
            "ground_truth",
        }
        assert [p.name for p in (folder / "train").iterdir()] == ["good"]
        assert {p.name for p in (folder / "test").iterdir()} == {"good", *defects}
        assert {p.name for p in (folder / "ground_truth").iterdir()} == set(defects)
        train = sorted((folder / "train" / "good").iterdir())
        assert [p.name for p in train] == ["000.png", "001.png", "002.png"]
        assert len(list((folder / "test" / "good").iterdir())) == SMALL.num_test_good
        for defect in defects:
            images = sorted((folder / "test" / defect).iterdir())
            masks = sorted((folder / "ground_truth" / defect).iterdir())
            assert len(images) == SMALL.num_test_per_defect
            assert [p.name for p in masks] == [f"{p.stem}_mask.png" for p in images]
            for image_path, mask_path in zip(images, masks, strict=True):
                image, mask = _read(image_path), _read(mask_path)
                assert mask.dtype == np.uint8 and mask.ndim == 2
                assert mask.shape == image.shape[:2] == (SMALL.image_size,) * 2
                assert set(np.unique(mask).tolist()) == {0, 255}
                # Local defects: between 0.2 % and 15 % of the image.
                assert 0.002 < (mask > 0).mean() < 0.15, (image_path, (mask > 0).mean())


def test_grayscale_category_is_single_channel(dataset: Path) -> None:
    assert set(GRAYSCALE_CATEGORIES) == {"tiles"}
    for category in DEFECT_TYPES:
        for path in sorted((dataset / category).glob("*/*/*.png")):
            if path.parent.parent.name == "ground_truth":
                continue
            with Image.open(path) as image:
                expected = "L" if category in GRAYSCALE_CATEGORIES else "RGB"
                assert image.mode == expected, path


def test_masks_are_exact(dataset: Path) -> None:
    """Outside the mask the image equals the clean rendering; inside, it clearly differs."""
    for category, defects in DEFECT_TYPES.items():
        for k, defect in enumerate(defects):
            split = synthetic._FIRST_DEFECT_SPLIT + k
            for index in range(SMALL.num_test_per_defect):
                clean, image, mask = synthetic._render_sample(category, SMALL, split, index)
                assert mask is not None
                stored = _read(dataset / category / "test" / defect / f"{index:03d}.png")
                stored_mask = _read(
                    dataset / category / "ground_truth" / defect / f"{index:03d}_mask.png"
                )
                np.testing.assert_array_equal(stored.reshape(image.shape), image)
                np.testing.assert_array_equal(stored_mask, mask)

                inside = mask > 0
                diff = np.abs(image.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
                assert not diff[~inside].any(), f"{category}/{defect}/{index} changed off-mask"
                assert diff[inside].mean() > 25, (category, defect, index, diff[inside].mean())
                visible = (diff[inside] > synthetic._MASK_TOLERANCE).mean()
                assert visible > 0.75, (category, defect, index, visible)


def test_good_images_are_clean_renderings(dataset: Path) -> None:
    for category in DEMO_CATEGORIES:
        for split, folder in ((0, "train"), (1, "test")):
            clean, image, mask = synthetic._render_sample(category, SMALL, split, 1)
            assert mask is None
            np.testing.assert_array_equal(clean, image)
            stored = _read(dataset / category / folder / "good" / "001.png")
            np.testing.assert_array_equal(stored.reshape(clean.shape), clean)


def test_normal_images_vary_but_stay_alike(dataset: Path) -> None:
    for category in DEFECT_TYPES:
        images = [
            _read(p).astype(np.float32)
            for p in sorted((dataset / category / "train" / "good").iterdir())
        ]
        assert not np.array_equal(images[0], images[1])
        means = [float(image.mean()) for image in images]
        # Same appearance: global brightness varies by a few percent only.
        assert max(means) - min(means) < 0.15 * np.mean(means), (category, means)


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    spec = SyntheticSpec(image_size=96, num_train=2, num_test_good=1, num_test_per_defect=1)
    first = _files(generate_dataset(tmp_path / "a", ["washer"], spec) / "washer")
    second = _files(generate_dataset(tmp_path / "b", ["washer"], spec) / "washer")
    assert first == second
    other = SyntheticSpec(**{**dataclasses.asdict(spec), "seed": 1})
    third = _files(generate_dataset(tmp_path / "c", ["washer"], other) / "washer")
    assert first.keys() == third.keys()
    for name in first:
        if name.endswith(".png") and "ground_truth" not in name:
            assert first[name] != third[name], name


def test_subset_generation_gives_same_images(tmp_path: Path) -> None:
    """A category's images depend on its name, not on which other categories are generated."""
    spec = SyntheticSpec(image_size=96, num_train=2, num_test_good=1, num_test_per_defect=1)
    alone = _files(generate_dataset(tmp_path / "a", ["tiles"], spec) / "tiles")
    together = _files(generate_dataset(tmp_path / "b", ["weave", "tiles"], spec) / "tiles")
    assert alone == together


def test_rerun_is_idempotent_and_mismatch_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = SyntheticSpec(image_size=96, num_train=2, num_test_good=1, num_test_per_defect=1)
    root = generate_dataset(tmp_path, ["weave"], spec)
    probe = root / "weave" / "train" / "good" / "000.png"
    before = probe.stat().st_mtime_ns
    stamp = json.loads((root / "weave" / ".synthetic.json").read_text(encoding="utf-8"))
    assert stamp["spec"]["seed"] == 0 and stamp["category"] == "weave"

    with caplog.at_level(logging.INFO, logger="src.data.synthetic"):
        generate_dataset(tmp_path, ["weave"], spec)
    assert probe.stat().st_mtime_ns == before
    assert any("skipped" in record.getMessage() for record in caplog.records)

    changed = SyntheticSpec(image_size=96, num_train=3, num_test_good=1, num_test_per_defect=1)
    with pytest.raises(DatasetError, match="overwrite"):
        generate_dataset(tmp_path, ["weave"], changed)
    assert len(list((root / "weave" / "train" / "good").iterdir())) == 2

    generate_dataset(tmp_path, ["weave"], changed, overwrite=True)
    assert len(list((root / "weave" / "train" / "good").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".weave.")]


def test_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "weave" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="not written by the synthetic generator"):
        generate_dataset(tmp_path, ["weave"], SMALL, overwrite=True)
    assert (tmp_path / "weave" / "train").is_dir()


def test_unknown_category_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        generate_dataset(tmp_path, ["weave", "bottle"], SMALL)
    message = str(info.value)
    assert "'bottle'" in message
    assert all(name in message for name in DEFECT_TYPES)
    assert not (tmp_path / "weave").exists()  # validated before anything is written


def test_invalid_spec_is_rejected() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        SyntheticSpec(image_size=16)
    with pytest.raises(ConfigError, match="seed"):
        SyntheticSpec(seed=-1)
    with pytest.raises(ConfigError, match="num_train"):
        SyntheticSpec(num_train=True)


def test_interrupted_run_leaves_no_partial_category(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = synthetic._render_sample
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_render_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, ["washer"], SMALL)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--root", str(tmp_path), "--categories", "tiles", "--image-size", "64"]
    argv += ["--num-train", "2", "--num-test-good", "1", "--num-test-per-defect", "1"]
    assert main([*argv, "--seed", "3"]) == 0
    stamp = json.loads((tmp_path / "tiles" / ".synthetic.json").read_text(encoding="utf-8"))
    assert stamp["spec"] == {
        "image_size": 64,
        "num_train": 2,
        "num_test_good": 1,
        "num_test_per_defect": 1,
        "seed": 3,
    }
    assert _read(tmp_path / "tiles" / "test" / "crack" / "000.png").shape == (64, 64)

    assert main([*argv, "--seed", "4"]) == 2  # stamp mismatch without --overwrite
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and "\n" not in err
    assert main([*argv, "--seed", "4", "--overwrite"]) == 0

    assert main(["--root", str(tmp_path), "--categories", "nope"]) == 2
    assert "valid categories are" in capsys.readouterr().err
