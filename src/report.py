"""Result files, the printed results table and the side-by-side pictures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from src.fileio import atomic_write_bytes, write_csv, write_json

METRIC_COLUMNS = (
    ("image_auroc", "image AUROC"),
    ("pixel_auroc", "pixel AUROC"),
    ("pro", "PRO"),
    ("f1", "image F1"),
)


def with_mean(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-category metric rows plus a "mean" row when there are several categories.

    A metric missing (None) in some category is averaged over the categories that have it.
    """
    rows = {name: dict(values) for name, values in results.items()}
    if len(rows) > 1:
        mean: dict[str, Any] = {}
        for key, _ in METRIC_COLUMNS:
            values = [row[key] for row in rows.values() if row.get(key) is not None]
            mean[key] = float(np.mean(values)) if values else None
        rows["mean"] = mean
    return rows


def results_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Fixed-width table of the metrics in percent, one row per category (+ mean)."""
    rows = with_mean(results)
    width = max(len("category"), *(len(name) for name in rows))
    header = f"{'category':<{width}}" + "".join(f"  {title:>11}" for _, title in METRIC_COLUMNS)
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        cells = []
        for key, _ in METRIC_COLUMNS:
            value = row.get(key)
            cells.append(f"  {'-' if value is None else f'{100 * value:.2f}':>11}")
        if name == "mean":
            lines.append("-" * len(header))
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def write_results(directory: str | Path, results: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """``results.json`` and ``results.csv`` for all categories (+ mean) in ``directory``."""
    rows = with_mean(results)
    keys = [key for key, _ in METRIC_COLUMNS]
    csv_rows = [[name, *(row.get(key) for key in keys)] for name, row in rows.items()]
    directory = Path(directory)
    return [
        write_json(directory / "results.json", rows),
        write_csv(directory / "results.csv", ["category", *keys], csv_rows),
    ]


def colourise(anomaly_map: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W) scores -> (H, W, 3) uint8 RGB on a fixed [low, high] scale (jet colour map)."""
    scaled = np.clip((anomaly_map - low) / max(high - low, 1e-12), 0.0, 1.0)
    coloured = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def picture(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    scale: tuple[float, float],
    threshold: float | None,
    title: str,
) -> np.ndarray:
    """Input | anomaly map | overlay | ground truth, side by side with a caption.

    The map uses the same ``scale`` for every image of a category, so colours compare across
    images; on the overlay, the region whose map exceeds the image threshold is outlined.

    Args:
        image: (H, W, 3) uint8 RGB as the network saw it.
        anomaly_map: (H, W) scores.
        mask: (H, W) bool ground truth, or None (drawn black).
        scale: (low, high) of the colour map.
        threshold: image-level decision threshold, or None.
        title: caption, e.g. the file name and its score.

    Returns:
        (H + caption, 4 W + gaps, 3) uint8 RGB.
    """
    height = anomaly_map.shape[0]
    heat = colourise(anomaly_map, *scale)
    overlay = cv2.addWeighted(image, 0.55, heat, 0.45, 0.0)
    if threshold is not None:
        region = (anomaly_map >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(overlay, contours, -1, (255, 255, 255), 1)
    truth = np.zeros_like(image)
    if mask is not None:
        truth[mask] = 255
    gap = np.full((height, 4, 3), 255, dtype=np.uint8)
    row = np.concatenate([image, gap, heat, gap, overlay, gap, truth], axis=1)
    caption = np.full((22, row.shape[1], 3), 255, dtype=np.uint8)
    text = f"{title} | map scale {scale[0]:.3g}..{scale[1]:.3g}"
    cv2.putText(caption, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([caption, row], axis=0)


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Encode (H, W, 3) RGB as PNG and write it atomically."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode a PNG for {path}")
    return atomic_write_bytes(path, encoded.tobytes())
