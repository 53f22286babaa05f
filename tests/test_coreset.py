"""Tests of the greedy coreset selection (PatchCore Sec. 3.2 / Alg. 1).

Reference values are computed here independently, by brute force in float64: covering radii,
the farthest-point property of every pick, the first pick of the authors' start. The pruned loop
is compared pick for pick with the textbook loop.
"""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest

from src import coreset
from src.errors import ConfigError


def _clustered(seed: int, num: int = 1500, dim: int = 256, latent: int = 8) -> np.ndarray:
    """Patch-feature-like data: clusters of Zipf-distributed sizes on a low-dimensional manifold,
    embedded in ``dim`` dimensions with a little isotropic noise. Small far clusters are what a
    random subset misses and greedy k-center covers."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 31) ** 1.5
    labels = rng.choice(30, size=num, p=weights / weights.sum())
    centres = rng.standard_normal((30, latent)) * 4
    spread = rng.uniform(0.2, 1.0, 30)[labels, None]
    codes = centres[labels] + rng.standard_normal((num, latent)) * spread
    mixing = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    return (codes @ mixing + 0.05 * rng.standard_normal((num, dim))).astype(np.float32)


def _min_distances(points: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Brute-force float64 distance of every point to its nearest picked point."""
    x = points.astype(np.float64)
    y = x[picks]
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ y.T + (y * y).sum(1)[None, :]
    return np.sqrt(np.maximum(d2, 0.0).min(axis=1))


def _radius(points: np.ndarray, picks: np.ndarray) -> float:
    """Covering radius ``max_x min_{s in picks} ||x - s||`` (the quantity Alg. 1 minimises)."""
    return float(_min_distances(points, picks).max())


def _datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    gaussian = rng.standard_normal((1200, 40)).astype(np.float32)
    clustered = _clustered(3, num=1500, dim=96)
    base = rng.standard_normal((400, 24)).astype(np.float32)
    duplicates = np.concatenate([base, base, base[:200]])[rng.permutation(1000)]
    lattice = np.round(rng.standard_normal((900, 6)) * 1.5).astype(np.float32)  # many exact ties
    return {
        "gaussian": gaussian,
        "clustered": clustered,
        "duplicates": duplicates,
        "lattice": lattice,
    }


DATASETS = _datasets()


# --------------------------------------------------------------------------------------------
# Exactness of the pruned loop
# --------------------------------------------------------------------------------------------


def test_distance_kernel_is_independent_of_the_batch() -> None:
    """The exact loop relies on a row's distance not depending on which rows surround it."""
    rng = np.random.default_rng(0)
    for width in (3, 16, 100, 128):
        points = rng.standard_normal((5000, width)).astype(np.float32) * 3 + 1
        sq = coreset._row_sq_norms(points)
        centre = points[17]
        full = coreset._sq_dists(points, sq, centre, sq[17])
        for _ in range(20):
            rows = np.sort(rng.choice(len(points), int(rng.integers(1, 300)), replace=False))
            part = coreset._sq_dists(np.take(points, rows, axis=0), sq[rows], centre, sq[17])
            np.testing.assert_array_equal(part, full[rows])


@pytest.mark.parametrize("mode", [None, "pruned", "dense"])
@pytest.mark.parametrize("start", coreset.STARTS)
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fast_selection_equals_naive_reference(
    name: str, start: str, mode: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same picks, in the same order, whichever path (timed choice, pruned, dense) runs."""
    monkeypatch.setattr(coreset, "_FORCE_MODE", mode)
    features = DATASETS[name]
    prepared = coreset._prepare(features, 32, "dense", seed=1)
    state = coreset._start_state(prepared, start, num_starts=10, seed=1)
    for size in (1, 37, 300):  # 300 crosses several cell re-layouts (32, 64, 128, 256)
        naive = coreset._greedy_coreset_naive(prepared, size, state)
        fast = coreset._greedy_coreset_fast(prepared, size, state)
        np.testing.assert_array_equal(fast, naive)


@pytest.mark.parametrize("start", coreset.STARTS)
def test_selecting_every_point_matches_naive_with_ties(start: str) -> None:
    """Up to M = N, where the last picks are all ties at distance 0 (duplicates)."""
    base = np.random.default_rng(5).standard_normal((60, 5)).astype(np.float32)
    features = np.concatenate([base, base, base[:30]])
    prepared = coreset._prepare(features, None, "none", seed=0)
    state = coreset._start_state(prepared, start, num_starts=4, seed=2)
    naive = coreset._greedy_coreset_naive(prepared, len(features), state)
    fast = coreset._greedy_coreset_fast(prepared, len(features), state)
    np.testing.assert_array_equal(fast, naive)
    assert sorted(fast.tolist()) == list(range(len(features)))


def test_public_function_runs_the_documented_pipeline() -> None:
    """greedy_coreset == naive loop on the projected, centred features with the same start."""
    features = DATASETS["clustered"]
    for projection, start in (("dense", "random"), ("sparse", "first"), ("none", "authors")):
        picks = coreset.greedy_coreset(
            features,
            120,
            projection_dim=48,
            projection=projection,
            start=start,
            seed=4,
            progress=False,
        )
        prepared = coreset._prepare(features, 48, projection, seed=4)
        state = coreset._start_state(prepared, start, num_starts=10, seed=4)
        np.testing.assert_array_equal(picks, coreset._greedy_coreset_naive(prepared, 120, state))


def test_inputs_are_not_modified() -> None:
    features = DATASETS["clustered"].copy()
    prepared = coreset._prepare(features, None, "none", seed=0)
    kept = prepared.copy()
    state = coreset._start_state(prepared, "random", num_starts=10, seed=0)
    coreset._greedy_coreset_fast(prepared, 600, state)  # several re-layouts of the rows
    coreset.greedy_coreset(features, 600, projection="none", progress=False)
    np.testing.assert_array_equal(prepared, kept)
    np.testing.assert_array_equal(features, DATASETS["clustered"])


def test_narrow_single_partial_distance_stage_is_still_exact() -> None:
    features = DATASETS["gaussian"]
    prepared = coreset._prepare(features, None, "none", seed=0)
    state = coreset._start_state(prepared, "random", num_starts=10, seed=0)
    naive = coreset._greedy_coreset_naive(prepared, 200, state)
    for pds_dim in (1, 3, 40):
        fast = coreset._greedy_coreset_fast(prepared, 200, state, pds_dim=pds_dim)
        np.testing.assert_array_equal(fast, naive)


# --------------------------------------------------------------------------------------------
# Properties of the picks
# --------------------------------------------------------------------------------------------


def test_picks_are_unique_valid_deterministic_and_seeded() -> None:
    features = DATASETS["clustered"]
    picks = coreset.greedy_coreset(features, 150, seed=0, progress=False)
    assert picks.dtype == np.int64 and picks.shape == (150,)
    assert len(np.unique(picks)) == 150
    assert picks.min() >= 0 and picks.max() < len(features)
    again = coreset.greedy_coreset(features, 150, seed=0, progress=False)
    np.testing.assert_array_equal(picks, again)
    other = coreset.greedy_coreset(features, 150, seed=1, progress=False)
    assert not np.array_equal(picks, other)


def test_every_pick_is_the_farthest_point_from_the_previous_picks() -> None:
    """The greedy rule itself, checked by brute force in float64 on the full-width features."""
    features = DATASETS["clustered"][:600]
    picks = coreset.greedy_coreset(features, 80, projection="none", start="first", progress=False)
    assert picks[0] == 0
    points = features.astype(np.float64)
    for step in range(1, len(picks)):
        dist = _min_distances(points, picks[:step])
        assert dist[picks[step]] >= dist.max() * (1 - 1e-5), step


def test_authors_start_picks_the_point_farthest_on_average_from_the_references() -> None:
    features = DATASETS["gaussian"]
    prepared = coreset._prepare(features, None, "none", seed=3)
    state = coreset._start_state(prepared, "authors", num_starts=10, seed=3)
    assert state.anchors is not None and len(np.unique(state.anchors)) == 10
    points = features.astype(np.float64)
    mean_dist = np.stack([np.linalg.norm(points - points[a], axis=1) for a in state.anchors]).mean(
        axis=0
    )
    picks = coreset.greedy_coreset(
        features, 5, projection="none", start="authors", seed=3, progress=False
    )
    assert mean_dist[picks[0]] >= mean_dist.max() * (1 - 1e-5)


def test_projected_coreset_covers_almost_as_well_as_exact_greedy_and_beats_random() -> None:
    ratios = []
    for seed in range(4):
        features = _clustered(seed)
        exact = coreset.greedy_coreset(features, 120, projection="none", seed=seed, progress=False)
        projected = coreset.greedy_coreset(
            features, 120, projection_dim=128, seed=seed, progress=False
        )
        r_exact, r_projected = _radius(features, exact), _radius(features, projected)
        rng = np.random.default_rng(100 + seed)
        r_random = min(
            _radius(features, rng.choice(len(features), 120, replace=False)) for _ in range(20)
        )
        ratios.append(r_projected / r_exact)
        # Both greedy variants cover far better than the best of 20 random subsets.
        assert r_exact < 0.5 * r_random
        assert r_projected < 0.5 * r_random
    # The 128-d JL projection costs a few percent of covering radius on average; a single draw
    # can cost more (up to ~14 % measured), hence the looser bound per instance.
    assert np.mean(ratios) <= 1.10, ratios
    assert max(ratios) <= 1.20, ratios


def test_greedy_is_a_two_approximation() -> None:
    """Gonzalez: the first M + 1 picks are pairwise >= R_M apart, so any M-subset has radius
    >= R_M / 2; in particular R_M <= 2 * radius of every random subset of the same size."""
    features = _clustered(11, num=1200, dim=64)
    size = 60
    picks = coreset.greedy_coreset(features, size + 1, projection="none", progress=False)
    r_greedy = _radius(features, picks[:size])
    chosen = features[picks].astype(np.float64)
    gaps = np.linalg.norm(chosen[:, None, :] - chosen[None, :, :], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() >= r_greedy * (1 - 1e-5)
    rng = np.random.default_rng(0)
    for _ in range(30):
        other = rng.choice(len(features), size, replace=False)
        assert r_greedy <= 2.0 * _radius(features, other)


# --------------------------------------------------------------------------------------------
# Random projection
# --------------------------------------------------------------------------------------------


def test_dense_projection_is_a_scaled_gaussian_that_preserves_distances() -> None:
    matrix = coreset.random_projection(np.eye(512, dtype=np.float32), 128, "dense", seed=0)
    assert matrix.shape == (512, 128) and matrix.dtype == np.float32
    assert abs(float(matrix.mean())) < 0.01 / np.sqrt(128) * 10
    assert abs(float(matrix.std()) * np.sqrt(128) - 1.0) < 0.02
    rng = np.random.default_rng(1)
    points = rng.standard_normal((200, 512)).astype(np.float32)
    projected = coreset.random_projection(points, 128, "dense", seed=0)
    i, j = rng.integers(200, size=(2, 500))
    i, j = i[i != j], j[i != j]
    ratio = (
        np.linalg.norm(projected[i] - projected[j], axis=1) ** 2
        / np.linalg.norm(points[i] - points[j], axis=1) ** 2
    )
    assert abs(float(ratio.mean()) - 1.0) < 0.05
    np.testing.assert_array_equal(
        projected, coreset.random_projection(points, 128, "dense", seed=0)
    )
    assert not np.array_equal(projected, coreset.random_projection(points, 128, "dense", seed=1))


def test_sparse_projection_has_the_very_sparse_distribution() -> None:
    width, dim = 400, 64  # s = sqrt(400) = 20: non-zero with probability 1/20
    matrix = coreset.random_projection(np.eye(width, dtype=np.float32), dim, "sparse", seed=0)
    nonzero = matrix[matrix != 0]
    assert abs(nonzero.size / matrix.size - 1 / 20) < 0.005
    np.testing.assert_allclose(np.abs(nonzero), np.sqrt(20 / dim), rtol=1e-6)
    assert abs(float(np.mean(nonzero > 0)) - 0.5) < 0.05


def test_no_projection_returns_the_features_as_float32() -> None:
    features = np.random.default_rng(0).standard_normal((50, 20))
    for kind, dim in (("none", 8), ("dense", None), ("dense", 20), ("sparse", 64)):
        out = coreset.random_projection(features, dim, kind)
        assert out.dtype == np.float32 and out.shape == (50, 20)
        np.testing.assert_array_equal(out, features.astype(np.float32))


# --------------------------------------------------------------------------------------------
# Sizes, validation, logging, memory
# --------------------------------------------------------------------------------------------


def test_coreset_size_follows_the_authors_rounding() -> None:
    assert coreset.coreset_size(163856, ratio=0.1) == 16385
    assert coreset.coreset_size(163856, ratio=0.01) == 1638
    assert coreset.coreset_size(10, ratio=0.01) == 1
    assert coreset.coreset_size(10, ratio=1.0) == 10
    assert coreset.coreset_size(10, count=3) == 3
    assert coreset.coreset_size(10, count=50) == 10


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"ratio": 0.0}, "0.0"),
        ({"ratio": 1.5}, "1.5"),
        ({"ratio": float("nan")}, "nan"),
        ({"ratio": "0.1"}, "'0.1'"),
        ({"count": 0}, "got 0"),
        ({"count": 2.5}, "2.5"),
        ({"count": True}, "True"),
        ({}, "ratio=None and count=None"),
        ({"ratio": 0.1, "count": 5}, "ratio=0.1 and count=5"),
    ],
)
def test_coreset_size_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        coreset.coreset_size(100, **kwargs)
    assert needle in str(info.value)
    assert "expected" in str(info.value) or "must be" in str(info.value)


def test_coreset_size_rejects_an_empty_bank() -> None:
    with pytest.raises(ValueError, match="num_features=0"):
        coreset.coreset_size(0, ratio=0.1)


def test_greedy_coreset_rejects_bad_arguments() -> None:
    features = DATASETS["gaussian"][:100]
    cases = [
        ({"size": 0}, "got 0"),
        ({"size": 101}, "[1, 100]"),
        ({"size": 5, "start": "middle"}, "random, first, authors"),
        ({"size": 5, "projection": "pca"}, "dense, sparse, none"),
        ({"size": 5, "projection_dim": 0}, "got 0"),
        ({"size": 5, "num_starts": 0}, "got 0"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(ConfigError) as info:
            coreset.greedy_coreset(features, progress=False, **kwargs)
        assert needle in str(info.value), (kwargs, str(info.value))


def test_greedy_coreset_rejects_bad_features() -> None:
    good = DATASETS["gaussian"][:100]
    with pytest.raises(ValueError, match="shape"):
        coreset.greedy_coreset(good[0], 5, progress=False)
    with pytest.raises(ValueError, match="float"):
        coreset.greedy_coreset(good.astype(np.int64), 5, progress=False)
    bad = good.copy()
    bad[42, 3] = np.nan
    with pytest.raises(ValueError, match="row 42"):
        coreset.greedy_coreset(bad, 5, progress=False)
    bad[42, 3] = np.inf
    with pytest.raises(ValueError, match="row 42"):
        coreset.greedy_coreset(bad, 5, projection="none", progress=False)
    with pytest.raises(ValueError, match="too large"):
        coreset.greedy_coreset(good * np.float32(1e30), 5, projection="none", progress=False)


def test_logs_one_summary_line_and_shows_progress_only_when_asked(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    features = DATASETS["gaussian"][:500]
    with caplog.at_level(logging.INFO, logger="src.coreset"):
        coreset.greedy_coreset(features, 50, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "src.coreset"]
    assert len(lines) == 1 and lines[0].startswith("coreset: 500 -> 50 patches in ")
    assert capsys.readouterr().err == ""
    coreset.greedy_coreset(features, 50, progress=True)
    assert "coreset" in capsys.readouterr().err


def test_memory_stays_linear_in_the_number_of_points() -> None:
    """N = 200k points: an N x N (160 GB) or N x M (800 MB) array would show up at once."""
    num, width, size = 200_000, 16, 1000
    features = np.random.default_rng(0).standard_normal((num, width)).astype(np.float32)
    tracemalloc.start()
    try:
        picks = coreset.greedy_coreset(features, size, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(np.unique(picks)) == size
    # ~20 floats of per-point state (points, projections, distances, indices) plus copies made
    # while the cells are re-laid out: a small multiple of N * (d + 16) * 4 bytes.
    assert peak < 8 * num * (width + 16) * 4, peak
    assert peak < num * size * 4 / 4, peak
