"""The pipeline end to end on generated data: scripts via main(), the Python API, persistence."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import eval as eval_script
import train as train_script
from src.config import load_config
from src.errors import MemoryBankError
from src.patchcore import PatchCore

ROOT = Path(__file__).resolve().parents[1]


def _overrides(demo_root: Path, out_dir: Path, *extra: str) -> list[str]:
    return [
        f"data.root={demo_root}",
        f"output.dir={out_dir}",
        "data.categories=[weave,washer]",
        *extra,
    ]


@pytest.mark.slow
def test_train_then_eval_scripts_on_generated_data(demo_root, tmp_path, caplog, capsys):
    args = ["--config", str(ROOT / "configs" / "demo.yaml"), *_overrides(demo_root, tmp_path)]
    assert train_script.main(args) == 0
    assert eval_script.main(args) == 0
    printed = capsys.readouterr().out
    assert "image AUROC" in printed and "mean" in printed

    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary) == {"weave", "washer", "mean"}
    for category in ("weave", "washer"):
        result = json.loads((tmp_path / category / "results.json").read_text())
        # Random backbone, synthetic defects: the bar the issue sets for the demo data.
        assert result["image_auroc"] > 0.9, (category, result)
        assert result["pixel_auroc"] > 0.9, (category, result)
        with open(tmp_path / category / "scores.csv", newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert len(rows) == result["test_images"]
        pictures = sorted((tmp_path / category / "pictures").glob("*.png"))
        assert len(pictures) == 6  # evaluation.num_pictures in configs/demo.yaml
    assert (tmp_path / "train_config.yaml").is_file() and (tmp_path / "eval_config.yaml").is_file()

    # --summary-only gathers the per-category results without scoring again.
    (tmp_path / "results.json").unlink()
    assert eval_script.main([*args, "--summary-only"]) == 0
    assert json.loads((tmp_path / "results.json").read_text()) == summary

    # A rerun reuses the finished models instead of training again.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="train"):
        assert train_script.main(args) == 0
    assert caplog.text.count("reusing") == 2

    # ... and refuses to silently replace a model built with other settings.
    changed = [*args, "coreset.ratio=0.05"]
    assert train_script.main(changed) == 2
    assert "output.overwrite=true" in capsys.readouterr().err


def _small_config(demo_root: Path, *extra: str):
    return load_config(
        ROOT / "configs" / "demo.yaml",
        [f"data.root={demo_root}", "data.resize=128", "data.crop=112", *extra],
    )


@pytest.fixture(scope="module")
def fitted(demo_root, mindspore_runtime):
    """A model fitted on four training images with every patch kept (coreset ratio 1)."""
    config = _small_config(demo_root, "coreset.ratio=1.0")
    train_images = sorted((demo_root / "washer" / "train" / "good").glob("*.png"))[:4]
    return PatchCore(config).fit(train_images, name="washer"), train_images


def test_training_images_score_near_zero_against_their_own_bank(fitted, demo_root):
    model, train_images = fitted
    own = model.predict(train_images)
    defective = sorted((demo_root / "washer" / "test").glob("[!g]*/*.png"))
    other = model.predict(defective[:3])
    # Every training patch is in the bank, so its distance is zero up to float32 rounding
    # (faiss expands |q - b|^2, whose square root magnifies the rounding of tiny values).
    assert np.median(own.patch_scores) < 1e-3 * other.image_scores.min()
    assert own.patch_scores.max() < 1e-2 * other.image_scores.min()
    assert own.anomaly_maps.shape == (len(train_images), 112, 112)


def test_save_then_load_gives_identical_scores(fitted, demo_root, tmp_path):
    model, _ = fitted
    test_images = sorted((demo_root / "washer" / "test").glob("*/*.png"))[::4]
    before = model.predict(test_images)
    model.save(tmp_path / "model")
    loaded = PatchCore.load(tmp_path / "model")
    assert loaded.config.runtime == model.config.runtime.__class__()  # this machine's defaults
    after = loaded.predict(test_images)
    assert np.array_equal(before.image_scores, after.image_scores)
    assert np.array_equal(before.anomaly_maps, after.anomaly_maps)


def test_predict_accepts_arrays_of_any_size_and_depth(fitted, demo_root):
    model, train_images = fitted
    from src.data.transform import read_image

    rgb = read_image(train_images[0])
    gray16 = (rgb[:, :, 0].astype(np.uint16) * 257)[:, 40:]  # 16-bit, single channel, not square
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    result = model.predict([rgb, gray16, rgba])
    assert result.image_scores.shape == (3,)
    assert result.image_scores[0] == pytest.approx(result.image_scores[2])  # alpha is ignored


def test_bank_built_with_other_settings_is_refused(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "model")
    for override in ("features.aggregation=concat", "backbone.seed=1", "data.crop=96"):
        config = _small_config(Path(model.config.data.root), override)
        with pytest.raises(MemoryBankError):
            PatchCore.load(tmp_path / "model", config)


def test_scripts_report_bad_input_in_one_line(tmp_path, capsys):
    missing = ["data.root=" + str(tmp_path / "nowhere"), f"output.dir={tmp_path}"]
    assert train_script.main(["--config", str(ROOT / "configs" / "demo.yaml"), *missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset root") and "Traceback" not in err
    assert eval_script.main(["--config", str(ROOT / "configs" / "demo.yaml"), *missing]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert train_script.main(["coreset.ratio=2"]) == 2
    assert "coreset.ratio must be in (0, 1]" in capsys.readouterr().err


def test_coreset_count_overrides_ratio(demo_root, mindspore_runtime):
    config = _small_config(demo_root, "coreset.count=50")
    images = sorted((demo_root / "washer" / "train" / "good").glob("*.png"))[:2]
    model = PatchCore(config).fit(images)
    assert len(model.bank) == 50 and model.bank.metadata["num_patches"] == 2 * 14 * 14


def test_mask_of_another_size_is_refused(demo_root, tmp_path):
    import shutil

    import cv2

    from eval import load_masks
    from src.data.mvtec import list_test
    from src.errors import DatasetError

    root = tmp_path / "data"
    shutil.copytree(demo_root / "washer", root / "washer")
    samples = list_test(root, "washer")
    defective = next(s for s in samples if s.mask_path is not None)
    cv2.imwrite(str(defective.mask_path), np.zeros((100, 120), np.uint8))
    with pytest.raises(DatasetError, match="120x100 but its image"):
        load_masks(samples, PatchCore(load_config(None)))
