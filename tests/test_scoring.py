"""Patch scores, Eq. 7 reweighting and anomaly maps against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from src.config import ScoringConfig
from src.memory_bank import MemoryBank
from src.scoring import anomaly_maps, patch_scores, reweighted_image_scores, score_features


@pytest.fixture()
def bank_and_features():
    rng = np.random.default_rng(0)
    bank = MemoryBank(rng.normal(size=(200, 8)).astype(np.float32))
    features = rng.normal(size=(3, 4, 5, 8)).astype(np.float32)
    return bank, features


def _brute(bank, features):
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return np.linalg.norm(flat[:, None, :] - bank.vectors[None].astype(np.float64), axis=2)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("distance", ["l2", "squared_l2"])
def test_patch_scores_equal_brute_force(bank_and_features, k, distance):
    bank, features = bank_and_features
    nearest = np.sort(_brute(bank, features), axis=1)[:, :k]
    if distance == "squared_l2":
        nearest = nearest**2
    expected = nearest.mean(axis=1).reshape(3, 4, 5)
    got = patch_scores(bank, features, k, distance)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_eq7_reweighting_matches_a_direct_loop(bank_and_features):
    bank, features = bank_and_features
    scores = patch_scores(bank, features)
    got = reweighted_image_scores(bank, features, scores, support=5)
    all_distances = _brute(bank, features).reshape(3, 20, -1)
    bank64 = bank.vectors.astype(np.float64)
    for image in range(3):
        flat = scores[image].ravel()
        worst = int(flat.argmax())
        m_test = features[image].reshape(-1, 8)[worst].astype(np.float64)
        m_star = int(all_distances[image, worst].argmin())
        from_m_star = np.linalg.norm(bank64 - bank64[m_star], axis=1)
        support = np.argsort(from_m_star)[:5]
        distances = np.linalg.norm(bank64[support] - m_test, axis=1)
        weight = 1 - np.exp(np.linalg.norm(m_test - bank64[m_star])) / np.exp(distances).sum()
        assert got[image] == pytest.approx(weight * flat[worst], rel=1e-4)


def test_anomaly_map_is_upsampled_then_gaussian_smoothed():
    grid = np.zeros((1, 4, 4), np.float32)
    grid[0, 1, 2] = 1.0
    maps = anomaly_maps(grid, (32, 32), sigma=4.0, mode="nearest")
    upsampled = np.kron(grid[0], np.ones((8, 8), np.float32))
    expected = ndimage.gaussian_filter(upsampled, sigma=4.0, truncate=4.0)
    np.testing.assert_allclose(maps[0], expected, atol=1e-6)
    unsmoothed = anomaly_maps(grid, (32, 32), sigma=0.0, mode="nearest")
    assert np.array_equal(unsmoothed[0], upsampled)


def test_score_features_image_score_is_max_patch_score(bank_and_features):
    bank, features = bank_and_features
    scores = score_features(bank, features, ScoringConfig(), (16, 20))
    assert scores.anomaly_maps.shape == (3, 16, 20)
    np.testing.assert_allclose(scores.image_scores, scores.patch_scores.reshape(3, -1).max(axis=1))
