"""Test-time scoring (PatchCore Sec. 3.3): patch scores, image scores and anomaly maps.

Patch score: distance of a test patch feature to its nearest memory-bank entry (or the mean over
``k`` nearest). Image score: the largest patch score, optionally reweighted by the paper's Eq. 7,
which lowers the score when the nearest bank entry is itself far from its own neighbours (a rare
normal pattern) and keeps it when it sits in a dense region. Anomaly map: patch scores resampled
to the network input size and smoothed with a Gaussian (sigma 4 in the paper).

Plain numpy; ``eval.py`` and ``postprocess.py`` both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from src.config import ScoringConfig
from src.memory_bank import MemoryBank
from src.resample import resize_maps


@dataclass
class Scores:
    """Scores of a batch of images.

    Attributes:
        image_scores: (B,) one score per image.
        patch_scores: (B, h, w) on the patch grid.
        anomaly_maps: (B, H, W) at the network input resolution, smoothed.
    """

    image_scores: np.ndarray
    patch_scores: np.ndarray
    anomaly_maps: np.ndarray


def patch_scores(
    bank: MemoryBank, features: np.ndarray, num_neighbours: int = 1, distance: str = "l2"
) -> np.ndarray:
    """Distance of every patch to the memory bank.

    Args:
        bank: the memory bank.
        features: (B, h, w, D) patch features.
        num_neighbours: k nearest bank entries averaged (1 in the paper and the authors' code).
        distance: "l2" (paper) or "squared_l2" (what the authors' code averages, faiss's output).

    Returns:
        (B, h, w) float32 patch scores.
    """
    batch, height, width, dim = features.shape
    distances, _ = bank.search(features.reshape(-1, dim), num_neighbours)
    if distance == "squared_l2":
        distances = distances**2
    return distances.mean(axis=1).reshape(batch, height, width).astype(np.float32)


def reweighted_image_scores(
    bank: MemoryBank, features: np.ndarray, scores: np.ndarray, support: int
) -> np.ndarray:
    """Image scores with the paper's Eq. 7 reweighting.

    For the patch ``m_test`` with the largest score ``s*`` and its nearest bank entry ``m*``:
    ``s = (1 - exp(|m_test - m*|) / sum_{m in N_b(m*)} exp(|m_test - m|)) * s*``, where
    ``N_b(m*)`` are the ``b`` nearest bank entries of ``m*`` (including ``m*`` itself).

    Args:
        bank: the memory bank.
        features: (B, h, w, D) patch features.
        scores: (B, h, w) patch scores.
        support: b, the neighbourhood size of ``m*`` in the bank.

    Returns:
        (B,) reweighted image scores.
    """
    batch = features.shape[0]
    flat_scores = scores.reshape(batch, -1)
    worst = flat_scores.argmax(axis=1)
    queries = features.reshape(batch, -1, features.shape[-1])[np.arange(batch), worst]
    _, nearest = bank.search(queries, 1)
    _, support_rows = bank.search(bank.vectors[nearest[:, 0]], support)
    support_vectors = bank.vectors[support_rows]  # (B, b, D); row 0 is m* itself
    distances = np.linalg.norm(support_vectors - queries[:, None, :], axis=2)
    # Softmax of distances, stabilised; its first entry is exp(|m_test - m*|) / sum exp(...).
    exponent = np.exp(distances - distances.max(axis=1, keepdims=True))
    weights = 1.0 - exponent[:, 0] / exponent.sum(axis=1)
    return (weights * flat_scores[np.arange(batch), worst]).astype(np.float32)


def anomaly_maps(
    scores: np.ndarray, output_hw: tuple[int, int], sigma: float, mode: str = "bilinear"
) -> np.ndarray:
    """Patch-score grids to smoothed maps at image resolution.

    The Gaussian's radius is ``int(4 * sigma + 0.5)`` pixels (scipy's ``truncate=4``), so the
    kernel follows sigma; borders are mirrored as in the authors' code (scipy's default).

    Args:
        scores: (B, h, w) patch scores.
        output_hw: (H, W) of the network input.
        sigma: Gaussian standard deviation in pixels; 0 disables smoothing.
        mode: "bilinear" (authors) or "nearest" (anomalib).

    Returns:
        (B, H, W) float32 anomaly maps.
    """
    maps = resize_maps(scores, output_hw, mode)
    if sigma > 0:
        for index in range(len(maps)):
            maps[index] = ndimage.gaussian_filter(maps[index], sigma=sigma, truncate=4.0)
    return maps


def score_features(
    bank: MemoryBank, features: np.ndarray, settings: ScoringConfig, output_hw: tuple[int, int]
) -> Scores:
    """Image scores, patch scores and anomaly maps of (B, h, w, D) patch features."""
    grid = patch_scores(bank, features, settings.num_neighbours, settings.distance)
    if settings.reweight:
        images = reweighted_image_scores(bank, features, grid, settings.reweight_neighbours)
    else:
        images = grid.reshape(len(grid), -1).max(axis=1)
    maps = anomaly_maps(grid, output_hw, settings.sigma, settings.map_upsample)
    return Scores(images, grid, maps)
