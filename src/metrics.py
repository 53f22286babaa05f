"""Evaluation metrics of the MVTec AD protocol, in plain NumPy (and SciPy for connected components).

The MVTec AD benchmark (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021) scores
an anomaly detector per object or texture category with:

* **image AUROC**: area under the ROC curve of the per-image anomaly scores against the image labels
  (defective = 1, good = 0);
* **pixel AUROC**: area under the ROC curve of the anomaly-map values against the ground-truth
  masks, pooled over every pixel of every test image of the category;
* **PRO** (per-region overlap): area under the curve of the mean per-region overlap against the
  false-positive rate on defect-free pixels, integrated for FPR in ``[0, 0.3]`` and normalised by
  0.3, so that a perfect detector scores 1.0. Every connected component (8-connectivity) of every
  ground-truth mask counts as one region, whatever its size.

PatchCore (Roth et al., CVPR 2022) reports these three numbers. This module also provides the
image-level threshold that maximises F1, for turning scores into decisions.

Every metric is exact: no score binning and no sampled threshold grid. Tied scores are handled like
scikit-learn does for the ROC curve: all samples that share a score value cross the threshold
together. Everything is sort-based, O(n log n) in time, with a few n-sized temporaries, so a whole
category (tens of millions of pixels) is evaluated in seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "CategoryMetrics",
    "auroc",
    "evaluate",
    "f1_optimal_threshold",
    "image_auroc",
    "pixel_auroc",
    "pro_auc",
]

# 8-connectivity inside one 2-D mask.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _as_binary(values: np.ndarray, name: str) -> np.ndarray:
    """Returns ``values`` as a boolean array, accepting bool or numeric 0/1 input.

    Args:
        values: Array of any shape holding booleans or the numbers 0 and 1.
        name: Argument name used in error messages.

    Returns:
        Boolean array of the same shape (a view when the input is already boolean).

    Raises:
        ValueError: If the dtype is not boolean or real-numeric, or a value other than 0/1 occurs.
    """
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be boolean or 0/1 numbers, got dtype {arr.dtype}")
    is_binary = (arr == 0) | (arr == 1)
    if not is_binary.all():
        raise ValueError(
            f"{name} must hold only 0/1 (or booleans), found values in [{arr.min()}, {arr.max()}]; "
            "binarise first, e.g. mask > 0 for 0/255 mask images"
        )
    return arr != 0


def _as_scores(values: np.ndarray, name: str) -> np.ndarray:
    """Returns ``values`` as a real-valued array with only finite entries.

    Args:
        values: Array of any shape of real numbers (booleans are read as 0/1).
        name: Argument name used in error messages.

    Returns:
        The array, keeping its numeric dtype (float32 stays float32, no copy is made).

    Raises:
        ValueError: If the dtype is not real-numeric or an entry is NaN or infinite.
    """
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = arr.size - int(np.count_nonzero(finite))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf) of {arr.size}")
    return arr


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raises ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )


def _check_both_classes(n_pos: int, n_neg: int, what: str) -> None:
    """Raises ValueError unless both classes are present."""
    if n_pos == 0 or n_neg == 0:
        missing = "positive (anomalous)" if n_pos == 0 else "negative (normal)"
        raise ValueError(
            f"{what} is undefined when only one class is present: found {n_pos} positive and "
            f"{n_neg} negative samples, no {missing} sample"
        )


# --------------------------------------------------------------------------------------------------
# ROC
# --------------------------------------------------------------------------------------------------


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact area under the ROC curve, with tied scores handled like scikit-learn.

    Computed as the Mann-Whitney statistic: the fraction of (positive, negative) pairs in which the
    positive scores higher, a tie counting one half. This equals the trapezoidal area under the ROC
    curve drawn through every distinct score threshold (``sklearn.metrics.roc_auc_score``). The
    larger class is sorted once and the (sorted) smaller class is located in it by binary search:
    O(n log n) time, memory about two copies of ``scores``.

    Args:
        labels: Ground truth of any shape, boolean or 0/1; true/1 marks the positive (anomalous)
            class. Flattened.
        scores: Real scores of the same shape as ``labels``; higher means more anomalous.

    Returns:
        The AUROC in [0, 1].

    Raises:
        ValueError: If the shapes differ, the input is empty, labels are not binary, a score is NaN
            or infinite, or only one class is present.
    """
    labels_arr = np.asarray(labels)
    scores_arr = np.asarray(scores)
    _check_same_shape(labels_arr, scores_arr, "labels", "scores")
    if labels_arr.size == 0:
        raise ValueError("auroc needs at least one sample, got empty arrays")
    is_pos = _as_binary(labels_arr, "labels").ravel()
    values = _as_scores(scores_arr, "scores").ravel()
    pos = values[is_pos]  # boolean indexing copies, so the in-place sorts below are safe
    neg = values[~is_pos]
    _check_both_classes(pos.size, neg.size, "AUROC")
    return _mann_whitney_auc(pos, neg)


def _mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC of positive scores ``pos`` (P,) against negative scores ``neg`` (M,), ties as 1/2.

    Both arrays are sorted in place (callers pass private copies).
    """
    n_pos, n_neg = pos.size, neg.size
    pos.sort()
    neg.sort()
    if n_pos <= n_neg:
        # For each positive: below = #neg < p, not_above = #neg <= p;
        # its pair credit is below + (not_above - below) / 2, so 2U = sum(below + not_above).
        below = np.searchsorted(neg, pos, side="left")
        not_above = np.searchsorted(neg, pos, side="right")
        twice_u = int(below.sum(dtype=np.int64)) + int(not_above.sum(dtype=np.int64))
    else:
        # For each negative: below = #pos < q, not_above = #pos <= q; the positives that beat it
        # number n_pos - not_above and tie with it not_above - below, so its doubled credit is
        # 2 n_pos - below - not_above.
        below = np.searchsorted(pos, neg, side="left")
        not_above = np.searchsorted(pos, neg, side="right")
        twice_u = (
            2 * n_pos * n_neg - int(below.sum(dtype=np.int64)) - int(not_above.sum(dtype=np.int64))
        )
    return twice_u / (2 * n_pos * n_neg)


def image_auroc(labels: np.ndarray, image_scores: np.ndarray) -> float:
    """Image-level AUROC of the MVTec AD protocol.

    Args:
        labels: (N,) bool or 0/1, true for defective test images.
        image_scores: (N,) float, one anomaly score per image.

    Returns:
        The AUROC in [0, 1].

    Raises:
        ValueError: If the inputs are not 1-D of equal length, or see :func:`auroc`.
    """
    labels_arr = np.asarray(labels)
    scores_arr = np.asarray(image_scores)
    if labels_arr.ndim != 1 or scores_arr.ndim != 1:
        raise ValueError(
            "image_auroc expects 1-D labels (N,) and image_scores (N,), got shapes "
            f"{labels_arr.shape} and {scores_arr.shape}"
        )
    return auroc(labels_arr, scores_arr)


def pixel_auroc(masks: np.ndarray, anomaly_maps: np.ndarray) -> float:
    """Pixel-level AUROC of the MVTec AD protocol, pooled over all pixels of all images.

    Args:
        masks: (N, H, W) bool or 0/1 ground-truth masks, true on defect pixels (all false for good
            images).
        anomaly_maps: (N, H, W) float anomaly maps at mask resolution.

    Returns:
        The AUROC in [0, 1].

    Raises:
        ValueError: If the inputs are not 3-D of equal shape, or see :func:`auroc`.
    """
    masks_arr = np.asarray(masks)
    maps_arr = np.asarray(anomaly_maps)
    _check_maps(masks_arr, maps_arr)
    return auroc(masks_arr, maps_arr)


def _check_maps(masks: np.ndarray, anomaly_maps: np.ndarray) -> None:
    """Raises ValueError unless masks and maps are both (N, H, W) of the same shape."""
    if masks.ndim != 3 or anomaly_maps.ndim != 3:
        raise ValueError(
            "masks and anomaly_maps must be 3-D (N, H, W), got shapes "
            f"{masks.shape} and {anomaly_maps.shape}"
        )
    _check_same_shape(masks, anomaly_maps, "masks", "anomaly_maps")


# --------------------------------------------------------------------------------------------------
# PRO
# --------------------------------------------------------------------------------------------------


def pro_auc(masks: np.ndarray, anomaly_maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve (Bergmann et al., IJCV 2021).

    Every connected component (8-connectivity) of every ground-truth mask is one region; regions of
    different images are distinct. For a threshold ``t`` (a pixel is predicted anomalous iff its
    score is ``>= t``):

    * ``PRO(t)`` is the mean over all regions of the fraction of the region's pixels predicted
      anomalous, so every region weighs the same whatever its size;
    * ``FPR(t)`` is the fraction of all defect-free pixels (mask 0, in every image including the
      good ones) predicted anomalous.

    The curve has one point per distinct score value (tied pixels cross the threshold together),
    starts at (0, 0) and ends at (1, 1). It is integrated with the trapezoid rule for FPR in
    ``[0, fpr_limit]``, the point at ``fpr_limit`` being linearly interpolated, and divided by
    ``fpr_limit``: 1.0 means every defect is fully found before any false positive.

    Exact computation. The curve is the cumulative sum, in descending score order, of per-pixel
    weights ``1 / (|region| * num_regions)`` (defect pixels, PRO axis) and ``1 / num_normal``
    (normal pixels, FPR axis), read at the last pixel of each distinct score. Runs of normal-only
    scores give collinear horizontal segments, so it is enough to evaluate the curve just above and
    at each distinct defect score: the normal scores are sorted once and counted by binary search,
    and only the (few) defect pixels are argsorted. The area is identical to the all-pixel curve.
    Memory: about one copy of the normal scores plus a few boolean masks.

    Args:
        masks: (N, H, W) bool or 0/1 ground-truth masks, true on defect pixels.
        anomaly_maps: (N, H, W) float anomaly maps at mask resolution.
        fpr_limit: Upper integration limit on the false-positive rate, in (0, 1]; 0.3 in the
            MVTec AD protocol.

    Returns:
        The normalised PRO area in [0, 1].

    Raises:
        ValueError: If the inputs are not 3-D of equal shape, masks are not binary, a score is not
            finite, ``fpr_limit`` is outside (0, 1], there is no defect region, or there is no
            defect-free pixel.
    """
    if not 0.0 < fpr_limit <= 1.0:  # also rejects NaN
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    masks_arr = np.asarray(masks)
    maps_arr = np.asarray(anomaly_maps)
    _check_maps(masks_arr, maps_arr)
    is_defect = _as_binary(masks_arr, "masks")
    values = _as_scores(maps_arr, "anomaly_maps")

    defect_scores, defect_weights = _region_weighted_defect_pixels(is_defect, values)
    if defect_scores.size == 0:
        raise ValueError(
            "pro_auc needs at least one defect region, but every ground-truth mask is empty"
        )
    normal_scores = values[~is_defect]  # copy, sorted in place below
    if normal_scores.size == 0:
        raise ValueError(
            "pro_auc needs at least one defect-free pixel to measure the false-positive rate, "
            "but every pixel of every mask is marked defective"
        )
    normal_scores.sort()
    fprs, pros = _pro_curve(defect_scores, defect_weights, normal_scores)
    return _area_up_to(fprs, pros, fpr_limit) / fpr_limit


def _region_weighted_defect_pixels(
    is_defect: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and PRO weights of all defect pixels.

    Args:
        is_defect: (N, H, W) bool ground-truth masks.
        values: (N, H, W) anomaly maps.

    Returns:
        ``(scores, weights)``, both (D,) for the D defect pixels: the pixel's score and
        ``1 / (|region| * num_regions)`` for the 8-connected region it belongs to. Empty arrays if
        there is no defect pixel.
    """
    score_parts: list[np.ndarray] = []
    inverse_size_parts: list[np.ndarray] = []
    num_regions = 0
    for mask, amap in zip(is_defect, values, strict=True):
        if not mask.any():
            continue
        regions, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        region_of_pixel = regions[mask]  # row-major, same order as amap[mask]
        sizes = np.bincount(region_of_pixel, minlength=count + 1)
        inverse_size_parts.append(1.0 / sizes[region_of_pixel])
        score_parts.append(amap[mask])
        num_regions += count
    if num_regions == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty
    return np.concatenate(score_parts), np.concatenate(inverse_size_parts) / num_regions


def _pro_curve(
    defect_scores: np.ndarray, defect_weights: np.ndarray, normal_sorted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the PRO-vs-FPR curve.

    Args:
        defect_scores: (D,) scores of the defect pixels.
        defect_weights: (D,) their PRO weights (summing to 1).
        normal_sorted: (M,) scores of the defect-free pixels, sorted ascending.

    Returns:
        ``(fprs, pros)``, both (2K + 2,) for K distinct defect scores, FPR non-decreasing: the
        origin; for each distinct defect score ``d`` in descending order the point just above ``d``
        (normals ``> d``, PRO of the previous defect score) and the point at ``d`` (normals
        ``>= d``, defects ``>= d``); and the end point at FPR 1. Omitted vertices of the full curve
        lie on its horizontal segments, so the polyline is the same.
    """
    order = np.argsort(defect_scores, kind="stable")[::-1]
    scores_desc = defect_scores[order]
    weights_desc = defect_weights[order]
    new_value = np.empty(scores_desc.size, dtype=bool)
    new_value[0] = True
    np.not_equal(scores_desc[1:], scores_desc[:-1], out=new_value[1:])
    starts = np.flatnonzero(new_value)
    levels = scores_desc[starts]  # distinct defect scores, descending
    pro_at = np.cumsum(np.add.reduceat(weights_desc, starts))

    num_normal = normal_sorted.size
    normal_above = num_normal - np.searchsorted(normal_sorted, levels, side="right")
    normal_at_or_above = num_normal - np.searchsorted(normal_sorted, levels, side="left")

    k = levels.size
    fprs = np.empty(2 * k + 2, dtype=np.float64)
    pros = np.empty(2 * k + 2, dtype=np.float64)
    fprs[0] = pros[0] = 0.0
    fprs[1 : 2 * k : 2] = normal_above / num_normal
    pros[1] = 0.0
    pros[3 : 2 * k : 2] = pro_at[:-1]
    fprs[2 : 2 * k + 1 : 2] = normal_at_or_above / num_normal
    pros[2 : 2 * k + 1 : 2] = pro_at
    fprs[-1] = 1.0
    pros[-1] = pro_at[-1]
    return fprs, pros


def _area_up_to(x: np.ndarray, y: np.ndarray, x_limit: float) -> float:
    """Trapezoidal area under the polyline ``(x, y)`` for ``x`` in ``[x[0], x_limit]``.

    Args:
        x: (K,) non-decreasing abscissae with ``x[0] <= x_limit``; repeated values (vertical
            segments) are allowed.
        y: (K,) ordinates.
        x_limit: Upper integration limit. If it falls strictly inside a segment, the ordinate there
            is linearly interpolated.

    Returns:
        The area.
    """
    inside = int(np.searchsorted(x, x_limit, side="right"))  # vertices with x <= x_limit
    xs, ys = x[:inside], y[:inside]
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1])) / 2.0)
    if inside < x.size and xs[-1] < x_limit:
        x0, y0, x1, y1 = xs[-1], ys[-1], x[inside], y[inside]
        y_limit = y0 + (y1 - y0) * (x_limit - x0) / (x1 - x0)
        area += float((x_limit - x0) * (y0 + y_limit) / 2.0)
    return area


# --------------------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------------------


def f1_optimal_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Image-level threshold that maximises F1, searched exactly over all distinct scores.

    A sample is predicted anomalous iff ``score >= threshold``. Every distinct score value is a
    candidate threshold (these give every achievable prediction), and the returned threshold is
    that score value itself, so applying ``scores >= threshold`` to the same scores reproduces the
    reported F1 exactly. When several thresholds reach the same maximal F1 the largest one (fewest
    samples flagged) is returned. Sort-based, O(n log n).

    Args:
        labels: (N,) bool or 0/1, true for anomalous samples.
        scores: (N,) real anomaly scores.

    Returns:
        ``(threshold, f1)``: the score value used as threshold and the F1 it achieves, in (0, 1].

    Raises:
        ValueError: If shapes differ, the input is empty, labels are not binary, a score is not
            finite, or only one class is present.
    """
    labels_arr = np.asarray(labels)
    scores_arr = np.asarray(scores)
    _check_same_shape(labels_arr, scores_arr, "labels", "scores")
    if labels_arr.size == 0:
        raise ValueError("f1_optimal_threshold needs at least one sample, got empty arrays")
    is_pos = _as_binary(labels_arr, "labels").ravel()
    values = _as_scores(scores_arr, "scores").ravel()
    n_pos = int(np.count_nonzero(is_pos))
    _check_both_classes(n_pos, is_pos.size - n_pos, "the F1-optimal threshold")

    order = np.argsort(values, kind="stable")[::-1]
    scores_desc = values[order]
    last_of_value = np.flatnonzero(np.append(scores_desc[1:] != scores_desc[:-1], True))
    true_pos = np.cumsum(is_pos[order], dtype=np.int64)[last_of_value]
    predicted_pos = last_of_value + 1
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted positives + actual positives).
    f1 = 2.0 * true_pos / (predicted_pos + n_pos)
    best = int(np.argmax(f1))  # first maximum in descending order = largest threshold
    return float(scores_desc[last_of_value[best]]), float(f1[best])


# --------------------------------------------------------------------------------------------------
# Per-category summary
# --------------------------------------------------------------------------------------------------


@dataclass
class CategoryMetrics:
    """All MVTec AD metrics of one category.

    Attributes:
        image_auroc: Image-level AUROC.
        pixel_auroc: Pixel-level AUROC pooled over all pixels, or None without ground-truth masks.
        pro: Normalised PRO area up to the FPR limit, or None without ground-truth masks.
        threshold: Image-score threshold maximising F1 (anomalous iff score >= threshold).
        f1: F1 reached at that threshold.
    """

    image_auroc: float
    pixel_auroc: float | None
    pro: float | None
    threshold: float
    f1: float


def evaluate(
    labels: np.ndarray,
    image_scores: np.ndarray,
    masks: np.ndarray | None = None,
    anomaly_maps: np.ndarray | None = None,
    fpr_limit: float = 0.3,
) -> CategoryMetrics:
    """Computes every MVTec AD metric of one category.

    Pixel metrics are computed only when ``masks`` and ``anomaly_maps`` are given and at least one
    defect pixel exists; otherwise they are None and a warning is logged.

    Args:
        labels: (N,) bool or 0/1, true for defective test images.
        image_scores: (N,) float image anomaly scores.
        masks: Optional (N, H, W) bool or 0/1 ground-truth masks.
        anomaly_maps: Optional (N, H, W) float anomaly maps; required when ``masks`` is given.
        fpr_limit: FPR integration limit of the PRO metric.

    Returns:
        The metrics.

    Raises:
        ValueError: On inconsistent or invalid inputs (see the individual metrics), including masks
            without anomaly maps or a number of masks that differs from the number of labels.
    """
    labels_arr = np.asarray(labels)
    img_auc = image_auroc(labels_arr, image_scores)
    threshold, f1 = f1_optimal_threshold(labels_arr, image_scores)

    pix_auc: float | None = None
    pro: float | None = None
    if masks is None:
        if anomaly_maps is not None:
            logger.warning("anomaly maps given without ground-truth masks: pixel metrics skipped")
        else:
            logger.warning("no ground-truth masks given: pixel AUROC and PRO skipped")
    elif anomaly_maps is None:
        raise ValueError("masks given without anomaly_maps: pass both to compute pixel metrics")
    else:
        is_defect = _as_binary(masks, "masks")
        if is_defect.ndim >= 1 and is_defect.shape[0] != labels_arr.shape[0]:
            raise ValueError(
                f"got {is_defect.shape[0]} masks for {labels_arr.shape[0]} image labels; "
                "they must describe the same images in the same order"
            )
        if not is_defect.any():
            logger.warning("ground-truth masks contain no defect pixel: pixel metrics skipped")
        else:
            pix_auc = pixel_auroc(is_defect, anomaly_maps)
            pro = pro_auc(is_defect, anomaly_maps, fpr_limit=fpr_limit)
    return CategoryMetrics(
        image_auroc=img_auc, pixel_auroc=pix_auc, pro=pro, threshold=threshold, f1=f1
    )
