"""Score the test images of each category and compute the MVTec AD metrics.

``python eval.py --config configs/mvtec.yaml`` loads ``<output.dir>/<category>/model`` (refusing a
bank built with other feature settings), scores every image under ``test/``, and writes per
category ``results.json``, ``scores.csv`` and side-by-side pictures, then ``results.json`` /
``results.csv`` for all categories with a mean row, and prints the results table.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from src import cli
from src.config import Config, add_config_arguments, load_config
from src.data.mvtec import Sample, list_test
from src.data.transform import read_mask
from src.errors import DatasetError, PatchCoreError
from src.fileio import atomic_write_text, write_csv, write_json
from src.memory_bank import MemoryBank
from src.metrics import evaluate
from src.patchcore import PatchCore, Prediction
from src.report import picture, results_table, write_png, write_results
from train import model_dir

logger = logging.getLogger("eval")


def load_masks(samples: Sequence[Sample], model: PatchCore) -> np.ndarray | None:
    """(N, H, W) bool ground truth in the network's geometry; None if the dataset has no masks."""
    if not any(sample.mask_path for sample in samples):
        return None
    height, width = model.geometry.output_hw
    masks = np.zeros((len(samples), height, width), dtype=bool)
    for index, sample in enumerate(samples):
        if sample.mask_path is not None:
            mask = read_mask(sample.mask_path)
            with Image.open(sample.path) as image:  # reads the header only
                image_hw = (image.height, image.width)
            if mask.shape != image_hw:
                raise DatasetError(
                    f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"{sample.path} is {image_hw[1]}x{image_hw[0]}; a mask must have its image's "
                    "size, or the pixel metrics compare misaligned pixels."
                )
            masks[index] = model.geometry.apply(mask, nearest=True)
    return masks


def picture_indices(count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``count`` images (all of them for -1)."""
    if wanted < 0 or wanted >= count:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, wanted)}) if wanted else []


def write_pictures(
    directory: Path,
    samples: Sequence[Sample],
    prediction: Prediction,
    masks: np.ndarray | None,
    config: Config,
    threshold: float | None,
) -> tuple[float, float]:
    """Side-by-side PNGs on one colour scale for the category; returns the scale used."""
    maps = prediction.anomaly_maps
    scale = config.evaluation.map_scale
    low, high = (float(maps.min()), float(maps.max())) if scale is None else scale
    assert prediction.images is not None
    for index in picture_indices(len(samples), config.evaluation.num_pictures):
        sample = samples[index]
        title = f"{sample.defect}/{sample.path.name} score {prediction.image_scores[index]:.3f}"
        if threshold is not None:
            verdict = "anomalous" if prediction.image_scores[index] >= threshold else "normal"
            title += f" ({verdict}, threshold {threshold:.3f})"
        image = picture(
            prediction.images[index],
            maps[index],
            None if masks is None else masks[index],
            (low, high),
            threshold,
            title,
        )
        write_png(directory / f"{sample.name}.png", image)
    return low, high


def evaluate_category(model: PatchCore, config: Config, category: str) -> dict[str, Any]:
    """Score one category's test set, write its files, return its metrics."""
    model.use_bank(MemoryBank.load(model_dir(config, category)))
    samples = list_test(config.data.root, category)
    started = time.perf_counter()
    prediction = model.predict([s.path for s in samples], name=category)
    seconds = time.perf_counter() - started
    labels = np.array([s.label for s in samples])
    masks = load_masks(samples, model)
    try:
        metrics = evaluate(
            labels,
            prediction.image_scores,
            masks,
            prediction.anomaly_maps if masks is not None else None,
            fpr_limit=config.evaluation.pro_fpr_limit,
        )
    except ValueError as error:  # e.g. a test set holding only good or only defective images
        raise DatasetError(
            f"{category}: the metrics cannot be computed on this test set ({error}). The test "
            "folder needs both good and defective images."
        ) from None
    out = Path(config.output.dir) / category
    scale = write_pictures(out / "pictures", samples, prediction, masks, config, metrics.threshold)
    result = {
        "image_auroc": metrics.image_auroc,
        "pixel_auroc": metrics.pixel_auroc,
        "pro": metrics.pro,
        "f1": metrics.f1,
        "threshold": metrics.threshold,
        "map_scale": list(scale),
        "test_images": len(samples),
        "defective_images": int(labels.sum()),
        "seconds_per_image": round(seconds / len(samples), 4),
    }
    write_json(out / "results.json", result)
    write_csv(
        out / "scores.csv",
        ["image", "defect", "label", "score", "predicted_anomalous"],
        [
            [str(s.path), s.defect, s.label, f"{score:.6f}", int(score >= metrics.threshold)]
            for s, score in zip(samples, prediction.image_scores)
        ],
    )
    logger.info(
        "%s: image AUROC %.4f, pixel AUROC %s, PRO %s, %d images at %.3f s/image",
        category,
        metrics.image_auroc,
        "-" if metrics.pixel_auroc is None else f"{metrics.pixel_auroc:.4f}",
        "-" if metrics.pro is None else f"{metrics.pro:.4f}",
        len(samples),
        seconds / len(samples),
    )
    return result


def collect_results(config: Config) -> dict[str, dict[str, Any]]:
    """Read each category's results.json; categories without one are skipped with a warning."""
    results = {}
    for category in config.data.categories:
        path = Path(config.output.dir) / category / "results.json"
        if path.is_file():
            results[category] = json.loads(path.read_text(encoding="utf-8"))
        else:
            logger.warning("%s: no results at %s (not evaluated yet)", category, path)
    if not results:
        raise PatchCoreError(
            f"no category under {config.output.dir} has results yet; run eval.py without "
            "--summary-only first."
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    def body(args_list: Sequence[str] | None) -> int:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        add_config_arguments(parser)
        parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
        parser.add_argument(
            "--summary-only",
            action="store_true",
            help="score nothing: gather the categories' existing results.json into one table",
        )
        args = parser.parse_args(args_list)
        cli.setup_logging(args.verbose)
        config = load_config(args.config, args.overrides)
        out_dir = Path(config.output.dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if args.summary_only:
            results = collect_results(config)
        else:
            atomic_write_text(
                out_dir / "eval_config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
            )
            model = PatchCore(config)
            results = {
                category: evaluate_category(model, config, category)
                for category in config.data.categories
            }
        paths = write_results(out_dir, results)
        print(results_table(results))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        logger.info(
            "eval: %d categories in %.1f s, peak memory %.0f MiB",
            len(results),
            time.perf_counter() - started,
            peak_mib,
        )
        print(f"\nresults: {', '.join(map(str, paths))}")
        print(f"per category: {out_dir}/<category>/results.json, scores.csv, pictures/*.png")
        return 0

    return cli.run(body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
