"""Separable 1-D resampling written as matrices, bit-compatible with torch's ``interpolate``.

Used twice: inside the exported network (deeper feature maps onto the first layer's grid) and in
the scoring (patch-score grid up to image resolution). A matrix form needs no special operator
in exported graphs and gives identical numbers wherever it runs.
"""

from __future__ import annotations

import numpy as np

from src.errors import ConfigError

UPSAMPLE_MODES = ("bilinear", "nearest")


def interpolation_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
    """Matrix ``R`` of shape (out_size, in_size) with ``R @ v`` = torch's 1-D resampling of ``v``.

    Bilinear follows ``align_corners=False`` (half-pixel centres, clamped at the borders); nearest
    follows torch's legacy ``mode="nearest"`` (source index ``floor(i * in / out)``).
    """
    if mode not in UPSAMPLE_MODES:
        raise ConfigError(
            f"upsampling mode must be one of {', '.join(UPSAMPLE_MODES)}; got {mode!r}."
        )
    scale = in_size / out_size
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    if mode == "nearest":
        matrix[rows, np.minimum(np.floor(rows * scale).astype(int), in_size - 1)] = 1.0
        return matrix.astype(np.float32)
    source = np.maximum((rows + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = source - low
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix.astype(np.float32)


def resize_maps(maps: np.ndarray, out_hw: tuple[int, int], mode: str) -> np.ndarray:
    """Resize (B, h, w) maps to (B, H, W) like torch's ``interpolate`` (float32)."""
    rows = interpolation_matrix(maps.shape[1], out_hw[0], mode)
    cols = interpolation_matrix(maps.shape[2], out_hw[1], mode)
    return np.einsum("Hh,bhw,Ww->bHW", rows, maps.astype(np.float32), cols, optimize=True)
