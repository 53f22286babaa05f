"""Tests of src.metrics against independent references (scikit-learn, brute force, hand values)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import f1_score, roc_auc_score

from src.metrics import (
    CategoryMetrics,
    auroc,
    evaluate,
    f1_optimal_threshold,
    image_auroc,
    pixel_auroc,
    pro_auc,
)

_trapezoid = getattr(np, "trapezoid", None) or np.trapz


# --------------------------------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------------------------------


def reference_pro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float) -> float:
    """Straightforward PRO: one pass over the pixels per distinct threshold."""
    regions = []
    for i in range(masks.shape[0]):
        labelled, count = ndimage.label(masks[i], structure=np.ones((3, 3), dtype=int))
        for r in range(1, count + 1):
            regions.append((i, labelled == r))
    normal = ~masks.astype(bool)
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        predicted = maps >= t
        pros.append(np.mean([predicted[i][region].mean() for i, region in regions]))
        fprs.append(predicted[normal].mean())
    fprs_arr, pros_arr = np.array(fprs), np.array(pros)
    keep = fprs_arr <= fpr_limit
    xs, ys = list(fprs_arr[keep]), list(pros_arr[keep])
    if xs[-1] < fpr_limit:
        j = int(np.flatnonzero(fprs_arr > fpr_limit)[0])
        x0, y0 = xs[-1], ys[-1]
        ys.append(y0 + (pros_arr[j] - y0) * (fpr_limit - x0) / (fprs_arr[j] - x0))
        xs.append(fpr_limit)
    return float(_trapezoid(ys, xs) / fpr_limit)


def brute_force_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 over every candidate threshold, computed by scikit-learn."""
    return max(f1_score(labels, scores >= t) for t in np.unique(scores))


def random_masks(rng: np.random.Generator, n: int, h: int, w: int, p_good: float) -> np.ndarray:
    """Blobby random masks (several regions per image), some images entirely good."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        if rng.random() < p_good:
            continue
        noise = ndimage.uniform_filter(rng.random((h, w)), size=3)
        masks[i] = noise > np.quantile(noise, 0.85)
    return masks


# --------------------------------------------------------------------------------------------------
# AUROC
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    labels = rng.random(n) < rng.uniform(0.05, 0.95)
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    labels = rng.random(5000) < 0.3 + 0.1 * seed
    scores = rng.integers(0, 6, size=5000) + labels * rng.integers(0, 3, size=5000)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # Float scores with the same ties, and int 0/1 labels.
    as_float = scores.astype(np.float32) / 7
    assert auroc(labels.astype(int), as_float) == pytest.approx(
        roc_auc_score(labels, as_float), abs=1e-12
    )


def test_auroc_all_scores_tied_is_half() -> None:
    labels = np.array([0, 1, 0, 1, 1])
    assert auroc(labels, np.full(5, 0.7)) == 0.5


def test_auroc_perfect_and_inverted() -> None:
    labels = np.array([0, 0, 0, 1, 1], dtype=bool)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert auroc(labels, scores) == 1.0
    assert auroc(labels, -scores) == 0.0
    # The larger class positive (other branch of the computation).
    assert auroc(~labels, -scores) == 1.0
    assert auroc(~labels, scores) == 0.0


def test_auroc_large() -> None:
    rng = np.random.default_rng(7)
    n = 1_000_000
    labels = rng.random(n) < 0.05
    scores = (rng.normal(size=n) + 1.5 * labels).astype(np.float32)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # Many ties at large n: float16 has few distinct values.
    scores16 = scores.astype(np.float16)
    assert auroc(labels, scores16) == pytest.approx(roc_auc_score(labels, scores16), abs=1e-12)


def test_auroc_any_shape_is_flattened() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random((4, 5, 6)) < 0.4
    scores = rng.random((4, 5, 6))
    assert auroc(labels, scores) == pytest.approx(
        roc_auc_score(labels.ravel(), scores.ravel()), abs=1e-12
    )


def test_image_auroc() -> None:
    labels = np.array([0, 1, 1, 0, 1])
    scores = np.array([0.3, 0.9, 0.2, 0.1, 0.9])
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(ValueError, match="1-D"):
        image_auroc(labels.reshape(5, 1), scores.reshape(5, 1))


def test_pixel_auroc_pooled_matches_sklearn() -> None:
    rng = np.random.default_rng(11)
    masks = random_masks(rng, 6, 20, 24, p_good=0.3)
    masks[0, 0, 0] = True
    maps = rng.random(masks.shape).astype(np.float32) + 0.5 * masks
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(masks.astype(np.uint8), maps) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        (np.ones(4), np.arange(4.0), "only one class"),
        (np.zeros(4), np.arange(4.0), "only one class"),
        (np.array([0, 1, 1]), np.arange(4.0), "same shape"),
        (np.array([0, 1, 0]), np.array([0.1, np.nan, 0.3]), "non-finite"),
        (np.array([0, 1, 0]), np.array([0.1, np.inf, 0.3]), "non-finite"),
        (np.array([0, 255, 0]), np.array([0.1, 0.2, 0.3]), "0/1"),
        (np.array([], dtype=bool), np.array([]), "empty"),
        (np.array([0, 1]), np.array(["a", "b"]), "real numbers"),
    ],
)
def test_auroc_errors(labels: np.ndarray, scores: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        auroc(labels, scores)


def test_pixel_auroc_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"3-D \(N, H, W\)"):
        pixel_auroc(np.zeros((4, 4), dtype=bool), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(np.zeros((2, 4, 4), dtype=bool), np.zeros((2, 4, 5)))


# --------------------------------------------------------------------------------------------------
# F1-optimal threshold
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_f1_threshold_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(10, 120))
    labels = rng.random(n) < rng.uniform(0.2, 0.8)
    labels[:2] = [True, False]
    ties = bool(seed % 2)
    scores = rng.integers(0, 8, size=n) + 2 * labels if ties else rng.normal(size=n) + labels
    threshold, f1 = f1_optimal_threshold(labels, scores)
    best = brute_force_f1(labels, scores)
    assert f1 == pytest.approx(best, abs=1e-12)
    assert threshold in set(scores.tolist())
    assert f1_score(labels, scores >= threshold) == pytest.approx(best, abs=1e-12)


def test_f1_threshold_hand_values() -> None:
    # Perfect separation: threshold is the lowest anomalous score.
    labels = np.array([0, 0, 1, 1])
    assert f1_optimal_threshold(labels, np.array([0.1, 0.2, 0.7, 0.9])) == (0.7, 1.0)
    # Ties between the maxima: t=0.9 gives F1 = 2/3 (TP 1, FP 0, FN 1), t=0.5 gives 2/3 too
    # (TP 2, FP 2); the larger threshold is returned.
    labels = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    threshold, f1 = f1_optimal_threshold(labels, scores)
    assert (threshold, f1) == (0.9, pytest.approx(2 / 3))


def test_f1_threshold_errors() -> None:
    with pytest.raises(ValueError, match="only one class"):
        f1_optimal_threshold(np.zeros(3), np.arange(3.0))
    with pytest.raises(ValueError, match="same shape"):
        f1_optimal_threshold(np.zeros(3), np.arange(4.0))
    with pytest.raises(ValueError, match="non-finite"):
        f1_optimal_threshold(np.array([0, 1]), np.array([0.0, np.nan]))


# --------------------------------------------------------------------------------------------------
# PRO
# --------------------------------------------------------------------------------------------------


def hand_made_masks() -> np.ndarray:
    """3 images 16x16: two regions, one region touching only diagonally, one good image."""
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:5, 2:6] = True  # region of 12 pixels
    masks[0, 10:12, 9:14] = True  # region of 10 pixels
    # Image 1: an L-shape plus a pixel touching it only at a corner: one 8-connected region.
    masks[1, 5:9, 5] = True
    masks[1, 8, 6:8] = True
    masks[1, 9, 8] = True
    return masks  # image 2 is good


def test_hand_made_masks_region_count() -> None:
    counts = [ndimage.label(m, structure=np.ones((3, 3)))[1] for m in hand_made_masks()]
    assert counts == [2, 1, 0]


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_pro_matches_reference_hand_made(fpr_limit: float, ties: bool) -> None:
    rng = np.random.default_rng(5)
    masks = hand_made_masks()
    maps = rng.random(masks.shape) + 0.6 * masks
    if ties:
        maps = np.round(maps * 4) / 4
    assert pro_auc(masks, maps, fpr_limit) == pytest.approx(
        reference_pro(masks, maps, fpr_limit), abs=1e-10
    )


@pytest.mark.parametrize("seed", range(8))
def test_pro_matches_reference_random(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    n, h, w = int(rng.integers(1, 5)), int(rng.integers(6, 14)), int(rng.integers(6, 14))
    masks = random_masks(rng, n, h, w, p_good=0.3)
    masks[0, h // 2, w // 2] = True  # at least one region
    masks[-1, 0, 0] = False  # at least one normal pixel
    maps = rng.random(masks.shape) + rng.uniform(0, 1) * masks
    if seed % 2:
        maps = np.round(maps * 5).astype(np.float32)  # many ties across classes
    fpr_limit = float(rng.choice([0.3, 0.1, 0.5, 1.0]))
    assert pro_auc(masks, maps, fpr_limit) == pytest.approx(
        reference_pro(masks, maps, fpr_limit), abs=1e-10
    )


def test_pro_perfect_and_inverted_maps() -> None:
    masks = hand_made_masks()
    assert pro_auc(masks, masks.astype(float)) == pytest.approx(1.0, abs=1e-12)
    assert pro_auc(masks, 1.0 - masks.astype(float)) == 0.0


def test_pro_hand_value_regions_weigh_equally() -> None:
    # Region A: 1 pixel at 0.9. Region B: 4 pixels, two at 0.9, two at 0.1. Ten normal pixels,
    # one at 0.95, nine at 0. Curve: (0,0) -> (0.1,0) -> (0.1, mean(1, 1/2)) -> (0.1, 1) -> (1,1).
    # Area up to FPR 0.3: 0.2 * 1 -> normalised 2/3.
    masks = np.zeros((1, 3, 5), dtype=bool)
    maps = np.zeros((1, 3, 5))
    masks[0, 0, 0] = True
    maps[0, 0, 0] = 0.9
    masks[0, 2, 1:5] = True
    maps[0, 2, 1:5] = [0.9, 0.9, 0.1, 0.1]
    maps[0, 1, 4] = 0.95
    assert pro_auc(masks, maps) == pytest.approx(2 / 3, abs=1e-12)


def test_pro_hand_value_ties_across_classes() -> None:
    # All pixels tied: a single diagonal segment from (0,0) to (1,1); area up to 0.3 is
    # 0.3 * 0.3 / 2, normalised 0.15. Ties must not be broken by pixel order.
    masks = np.zeros((1, 3, 4), dtype=bool)
    masks[0, 1, 1:3] = True
    maps = np.full(masks.shape, 0.5)
    assert pro_auc(masks, maps) == pytest.approx(0.15, abs=1e-12)


def test_pro_uses_eight_connectivity() -> None:
    # Two diagonally touching pixels (scores 1 and 0) form one region with 8-connectivity, and a
    # separate one-pixel region scores 0. Normals at 0.5. At t = 1: PRO = mean(1/2, 0) = 1/4 and
    # FPR 0, so the normalised area is 1/4 (4-connectivity would give mean(1, 0, 0) = 1/3).
    masks = np.zeros((1, 6, 6), dtype=bool)
    maps = np.full(masks.shape, 0.5)
    masks[0, 1, 1] = masks[0, 2, 2] = masks[0, 5, 5] = True
    maps[0, 1, 1], maps[0, 2, 2], maps[0, 5, 5] = 1.0, 0.0, 0.0
    assert pro_auc(masks, maps) == pytest.approx(0.25, abs=1e-12)


def test_pro_regions_of_different_images_are_distinct() -> None:
    # Same location in two images: a 1-pixel region found (score 1), a 3-pixel region missed.
    # Per image: PRO(1) = mean(1, 0) = 1/2; merged across images it would be 1/4.
    masks = np.zeros((2, 5, 5), dtype=bool)
    maps = np.full(masks.shape, 0.5)
    masks[0, 2, 2] = True
    maps[0, 2, 2] = 1.0
    masks[1, 2, 2:5] = True
    maps[1, 2, 2:5] = 0.0
    assert pro_auc(masks, maps) == pytest.approx(0.5, abs=1e-12)


def test_pro_errors() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    with pytest.raises(ValueError, match="at least one defect region"):
        pro_auc(np.zeros((2, 4, 4), dtype=bool), maps)
    with pytest.raises(ValueError, match="defect-free pixel"):
        pro_auc(np.ones((2, 4, 4), dtype=bool), maps)
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_auc(np.eye(4, dtype=bool)[None], maps[:1], fpr_limit=0.0)
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_auc(np.eye(4, dtype=bool)[None], maps[:1], fpr_limit=float("nan"))
    with pytest.raises(ValueError, match="3-D"):
        pro_auc(np.eye(4, dtype=bool), maps[0])
    with pytest.raises(ValueError, match="non-finite"):
        bad = maps.copy()
        bad[0, 0, 0] = np.nan
        pro_auc(np.ones((2, 4, 4)) * np.eye(4), bad)
    with pytest.raises(ValueError, match="0/1"):
        pro_auc(np.full((2, 4, 4), 255, dtype=np.uint8), maps)


# --------------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------------


def test_evaluate_with_masks() -> None:
    rng = np.random.default_rng(21)
    masks = random_masks(rng, 8, 12, 12, p_good=0.0)
    masks[:3] = False
    labels = masks.any(axis=(1, 2))
    maps = rng.random(masks.shape) + 0.8 * masks
    scores = maps.max(axis=(1, 2))
    result = evaluate(labels, scores, masks.astype(np.uint8), maps)
    assert isinstance(result, CategoryMetrics)
    assert result.image_auroc == pytest.approx(roc_auc_score(labels, scores))
    assert result.pixel_auroc == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert result.pro == pytest.approx(reference_pro(masks, maps, 0.3), abs=1e-10)
    assert result.f1 == pytest.approx(brute_force_f1(labels, scores))
    assert f1_score(labels, scores >= result.threshold) == pytest.approx(result.f1)


def test_evaluate_without_pixel_metrics_warns(caplog: pytest.LogCaptureFixture) -> None:
    labels = np.array([0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.6, 0.3])
    with caplog.at_level(logging.WARNING, logger="src.metrics"):
        result = evaluate(labels, scores)
    assert result.pixel_auroc is None and result.pro is None
    assert result.image_auroc == 1.0 and result.f1 == 1.0 and result.threshold == 0.6
    assert "no ground-truth masks" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.metrics"):
        result = evaluate(labels, scores, np.zeros((4, 3, 3), dtype=bool), np.zeros((4, 3, 3)))
    assert result.pixel_auroc is None and result.pro is None
    assert "no defect pixel" in caplog.text


def test_evaluate_errors() -> None:
    labels = np.array([0, 1])
    scores = np.array([0.1, 0.8])
    with pytest.raises(ValueError, match="without anomaly_maps"):
        evaluate(labels, scores, masks=np.ones((2, 3, 3), dtype=bool))
    with pytest.raises(ValueError, match="3 masks for 2 image labels"):
        evaluate(labels, scores, np.eye(3, dtype=bool)[None].repeat(3, 0), np.zeros((3, 3, 3)))
