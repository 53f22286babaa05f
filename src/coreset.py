"""Greedy coreset subsampling of the patch-feature memory bank (PatchCore, Sec. 3.2 / Alg. 1).

PatchCore keeps, for every training image, one feature vector per patch. For MVTec AD that is
~160k vectors of 1024 floats per category, too many to search at test time. The paper therefore
keeps a *coreset*: the subset ``M_C`` of size ``M`` chosen by greedy minimax facility location
(Gonzalez' greedy k-center), which approximately minimises the covering radius
``max_m min_n ||m - n||`` of the full bank ``M`` by ``M_C``. As in the paper, distances during the
selection are computed on a Johnson-Lindenstrauss random projection of the features (Alg. 1,
``psi``), and only the selected indices are returned, so the caller keeps full-width vectors.

Greedy k-center is inherently sequential: step ``t`` picks the point farthest from the ``t``
centres already selected, then lowers every point's distance-to-nearest-centre. The textbook loop
(``_greedy_coreset_naive``) reads all ``N x d`` projected floats at every one of the ``M`` steps.
``_greedy_coreset_fast`` returns the same picks but skips, with rigorous lower bounds, the points
whose distance cannot decrease:

* cells: points are grouped (and laid out contiguously in memory) by their nearest centre at the
  time of the last re-layout; a cell whose every member is provably closer to some centre than to
  the new one is skipped (triangle inequality with the cell radius);
* partial distances: the distance between the ``k`` leading principal coordinates of two points
  is a lower bound of their full distance; points whose bound already exceeds their current
  distance are skipped without touching their ``d``-wide row.

Both bounds carry explicit float32 rounding-error terms, so pruning never skips a point that the
naive loop would update: the fast selection is identical to the naive one, not an approximation.
Every distance that decides a pick goes through one row-wise kernel whose rounding does not depend
on the batch a row is in, so "identical" holds bit for bit, near-ties included.

The bounds are selective only once there are many centres and on data of moderate intrinsic
dimension (patch features: a few dominant directions). Otherwise a step falls back to one BLAS
pass over all rows, as the naive loop, followed by the exact kernel on the few points it leaves;
which of the two a step takes is decided by timing both, so the selection is never much slower
than the naive loop and, on MVTec-sized banks, several times faster (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass

import numpy as np

from src.errors import ConfigError
from src.progress import progress_bar

logger = logging.getLogger(__name__)

PROJECTIONS = ("dense", "sparse", "none")
STARTS = ("random", "first", "authors")

_CHUNK_ROWS = 8192  # rows per block in the row-wise passes: bounds temporaries to a few MB
_U = 2.0**-24  # unit roundoff of float32
_FIRST_RELAYOUT = 32  # cells are rebuilt when the number of centres reaches 32, 64, 128, ...
_RELAYOUT_GROWTH = 2.0  # ... (each time it doubles)
_PDS_WIDTHS = (8, 32)  # leading principal coordinates used by the successive partial-distance tests
_PCA_ROWS = 8192  # rows sampled to estimate the principal directions used by the bounds
_GATHER_FRACTION = 0.5  # above this share of live points, scan all rows instead of gathering
_SKIP_RATE = 0.5  # a narrow partial-distance stage that keeps more than this is skipped ...
_RECHECK = 32  # ... except every 32nd step, to notice when it becomes selective again
_BURST = 3  # steps of the other candidate path per trial (the median is kept)
_SWITCH = 0.8  # switch paths when the other one takes less than 0.8x the time per step
_FORCE_MODE: str | None = None  # tests only: "dense" or "pruned" instead of timing both


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def coreset_size(num_features: int, ratio: float | None = None, count: int | None = None) -> int:
    """Number of coreset elements to keep out of ``num_features`` patch features.

    Args:
        num_features: Size ``N`` of the full memory bank (at least 1).
        ratio: Fraction of the bank to keep, ``0 < ratio <= 1`` (the paper's subsampling
            percentage, e.g. 0.1 or 0.01). Like the authors' code the size is
            ``int(N * ratio)``, but never below 1.
        count: Absolute number of elements to keep (at least 1); clipped to ``N``.

    Returns:
        The coreset size, in ``[1, num_features]``.

    Raises:
        ConfigError: If not exactly one of ``ratio`` and ``count`` is given, or it is out of range.
        ValueError: If ``num_features`` is not a positive integer.
    """
    if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral):
        raise ValueError(f"num_features must be an integer, got {num_features!r}")
    if num_features < 1:
        raise ValueError(
            f"cannot build a coreset of an empty memory bank: num_features={num_features}; "
            "check that the training set holds at least one image"
        )
    if (ratio is None) == (count is None):
        raise ConfigError(
            "coreset size: expected exactly one of ratio (0 < ratio <= 1) or count (>= 1), got "
            f"ratio={ratio!r} and count={count!r}; set one of them and leave the other empty"
        )
    if ratio is not None:
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, numbers.Real)
            or not math.isfinite(float(ratio))
            or not 0.0 < float(ratio) <= 1.0
        ):
            raise ConfigError(
                f"coreset ratio must be a number with 0 < ratio <= 1, got {ratio!r}; "
                "use e.g. 0.1 (paper default for MVTec AD) or 0.01"
            )
        return max(1, min(int(num_features), int(num_features * float(ratio))))
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ConfigError(
            f"coreset count must be an integer >= 1, got {count!r}; "
            "give the number of patch features to keep, or use ratio instead"
        )
    return int(min(int(count), int(num_features)))


def random_projection(
    features: np.ndarray, dim: int | None, kind: str = "dense", seed: int = 0
) -> np.ndarray:
    """Johnson-Lindenstrauss random projection ``psi`` used for the coreset distances (Alg. 1).

    Args:
        features: Patch features, shape ``(N, D)``, any float dtype.
        dim: Target dimension ``d``. ``None`` or ``dim >= D`` returns the features unchanged.
        kind: ``"dense"``: Gaussian matrix ``(D, d)`` scaled by ``1/sqrt(d)``, which preserves
            squared distances in expectation. ``"sparse"``: Achlioptas / Li "very sparse"
            projection, entries ``+-sqrt(s/d)`` with probability ``1/(2s)`` each and 0 otherwise,
            ``s = sqrt(D)`` (same expectation, ~``sqrt(D)`` times fewer non-zeros). ``"none"``:
            no projection.
        seed: Seed of the projection matrix.

    Returns:
        Projected features, float32, shape ``(N, d)`` (or ``(N, D)`` if not projected). Without a
        projection the input is returned as is when it already is C-contiguous float32.

    Raises:
        ConfigError: If ``kind`` or ``dim`` is invalid.
        ValueError: If ``features`` is not a 2-D float array of finite values.
    """
    features = _check_features(features)
    if kind not in PROJECTIONS:
        raise ConfigError(
            f"unknown coreset projection {kind!r}; expected one of {', '.join(PROJECTIONS)}"
        )
    if dim is not None and (
        isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1
    ):
        raise ConfigError(
            f"coreset projection dimension must be an integer >= 1 or None, got {dim!r}; "
            "the paper uses 128"
        )
    num, width = features.shape
    if kind == "none" or dim is None or dim >= width:
        for lo in range(0, num, _CHUNK_ROWS):
            _check_finite(features[lo : lo + _CHUNK_ROWS], lo)
        return np.ascontiguousarray(features, dtype=np.float32)
    dim = int(dim)
    rng = np.random.default_rng((seed, 0x5EED))
    if kind == "dense":
        matrix = rng.standard_normal((width, dim), dtype=np.float32)
        matrix *= np.float32(1.0 / math.sqrt(dim))
    else:
        # Li, Hastie & Church (2006): s = sqrt(D). The matrix is small ((D, d)), so it is stored
        # densely and applied with BLAS; its sparsity only matters for the distribution.
        s = math.sqrt(width)
        draw = rng.random((width, dim))
        matrix = np.zeros((width, dim), dtype=np.float32)
        scale = np.float32(math.sqrt(s / dim))
        matrix[draw < 0.5 / s] = scale
        matrix[(draw >= 0.5 / s) & (draw < 1.0 / s)] = -scale
    out = np.empty((num, dim), dtype=np.float32)
    for lo in range(0, num, _CHUNK_ROWS):
        block = features[lo : lo + _CHUNK_ROWS]
        _check_finite(block, lo)
        np.matmul(block.astype(np.float32, copy=False), matrix, out=out[lo : lo + len(block)])
    return out


def greedy_coreset(
    features: np.ndarray,
    size: int,
    *,
    projection_dim: int | None = 128,
    projection: str = "dense",
    start: str = "random",
    num_starts: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Select a greedy k-center coreset of the patch features (PatchCore Alg. 1).

    Repeatedly adds to the coreset the point whose Euclidean distance (on the random projection)
    to its nearest selected centre is largest. The result is exactly the greedy sequence (the same
    picks as the textbook loop, ties broken towards the lowest index); pruning only removes work.

    Args:
        features: Patch features of the whole training set, shape ``(N, D)``, float.
        size: Number ``M`` of coreset elements, ``1 <= M <= N`` (see ``coreset_size``).
        projection_dim: Dimension ``d`` of the random projection (paper: 128); ``None`` selects on
            the full-width features.
        projection: ``"dense"``, ``"sparse"`` or ``"none"`` (see ``random_projection``).
        start: How the first centre is chosen. ``"random"``: a seeded random index (anomalib).
            ``"first"``: index 0 (MindSpore model zoo). ``"authors"``: as the authors' code, every
            point starts with the mean distance to ``num_starts`` seeded random points instead of
            infinity, so the first pick is the point farthest from them on average.
        num_starts: Number of random reference points for ``start="authors"`` (authors: 10).
        seed: Seed of the projection and of the random start.
        progress: Show a tqdm progress bar over the selection steps.

    Returns:
        Indices into ``features`` of the selected elements, int64, shape ``(M,)``, unique, in
        selection order.

    Raises:
        ConfigError: If ``size``, ``projection``, ``projection_dim``, ``start`` or ``num_starts``
            is invalid.
        ValueError: If ``features`` is not a 2-D float array of finite values.
    """
    began = time.perf_counter()
    features = _check_features(features)
    num = features.shape[0]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 1 <= size <= num:
        raise ConfigError(
            f"coreset size must be an integer in [1, {num}] (the number of patch features), got "
            f"{size!r}; compute it with coreset_size(N, ratio=...) or coreset_size(N, count=...)"
        )
    if start not in STARTS:
        raise ConfigError(f"unknown coreset start {start!r}; expected one of {', '.join(STARTS)}")
    if (
        isinstance(num_starts, bool)
        or not isinstance(num_starts, numbers.Integral)
        or (num_starts < 1)
    ):
        raise ConfigError(
            f"coreset num_starts must be an integer >= 1, got {num_starts!r}; the authors use 10"
        )
    prepared = _prepare(features, projection_dim, projection, seed)
    state = _start_state(prepared, start, int(num_starts), seed)
    picks = _greedy_coreset_fast(
        prepared, int(size), state, progress=progress, seed=seed, scratch=True
    )
    logger.info(
        "coreset: %d -> %d patches in %.1f s (d=%d, start=%s)",
        num,
        size,
        time.perf_counter() - began,
        prepared.shape[1],
        start,
    )
    return picks


# --------------------------------------------------------------------------------------------
# Shared preparation and the exact distance kernel
# --------------------------------------------------------------------------------------------


def _check_features(features: np.ndarray) -> np.ndarray:
    """Checks that ``features`` is a non-empty 2-D float array (finiteness is checked later)."""
    if not isinstance(features, np.ndarray):
        raise ValueError(
            f"features must be a numpy array of shape (N, D), got {type(features).__name__}"
        )
    if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] < 1:
        raise ValueError(
            f"features must have shape (N, D) with N, D >= 1, got shape {features.shape}"
        )
    if not np.issubdtype(features.dtype, np.floating):
        raise ValueError(
            f"features must be a float array, got dtype {features.dtype}; "
            "convert with features.astype(np.float32)"
        )
    return features


def _check_finite(block: np.ndarray, offset: int) -> None:
    """Raises ValueError naming the first row of ``block`` with a NaN or an infinity."""
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        row = offset + int(np.argmin(finite))
        raise ValueError(
            f"features must be finite, but row {row} holds NaN or inf; "
            "check the feature extractor output"
        )


def _prepare(
    features: np.ndarray, projection_dim: int | None, projection: str, seed: int
) -> np.ndarray:
    """Projects and centres the features: the coordinates both selection loops work on.

    Centring does not change any distance, but it shrinks the norms that enter the expansion
    ``|x|^2 - 2 x.c + |c|^2``, hence its cancellation error (post-ReLU features share a large
    mean).

    Args:
        features: ``(N, D)`` float features.
        projection_dim: Target dimension, or ``None``.
        projection: Projection kind.
        seed: Projection seed.

    Returns:
        C-contiguous float32 array ``(N, d)``, never a view of ``features``.
    """
    projected = random_projection(features, projection_dim, projection, seed)
    if projected is features or np.shares_memory(projected, features):
        projected = projected.copy()
    mean = np.zeros(projected.shape[1], dtype=np.float64)
    for lo in range(0, len(projected), _CHUNK_ROWS):
        mean += projected[lo : lo + _CHUNK_ROWS].sum(axis=0, dtype=np.float64)
    mean /= len(projected)
    projected -= mean.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        sq = _row_sq_norms(projected)
    if not (np.isfinite(sq).all() and float(sq.max()) <= 1e36):
        raise ValueError(
            "features are too large for float32 distance computations (squared norms overflow); "
            "rescale the features"
        )
    return projected


def _row_sq_norms(points: np.ndarray) -> np.ndarray:
    """Squared row norms ``(N,)`` float32, accumulated in float64 so they are correctly rounded."""
    out = np.empty(len(points), dtype=np.float32)
    for lo in range(0, len(points), _CHUNK_ROWS):
        block = points[lo : lo + _CHUNK_ROWS].astype(np.float64)
        out[lo : lo + len(block)] = np.einsum("ij,ij->i", block, block)
    return out


def _sq_dists(
    rows: np.ndarray, rows_sq: np.ndarray, centre: np.ndarray, centre_sq: np.float32
) -> np.ndarray:
    """Squared distances from ``rows`` ``(n, d)`` to one ``centre`` ``(d,)``, float32 ``(n,)``.

    This is the single kernel through which both selection loops compute every distance that
    enters a decision. The row-wise dot product uses ``einsum`` rather than BLAS on purpose: BLAS
    gemv rounds a row differently depending on where it falls in the batch (blocking, threads),
    while einsum's per-row reduction is the same for a row whatever rows surround it. So a
    distance computed on a gathered subset is bitwise equal to the one computed on the whole
    bank, and the pruned loop reproduces the naive picks exactly, near-ties included. Values are
    clamped at 0 because cancellation can make them slightly negative.
    """
    out = np.einsum("ij,j->i", rows, centre)
    out *= np.float32(-2.0)
    out += rows_sq
    out += centre_sq
    np.maximum(out, np.float32(0.0), out=out)
    return out


@dataclass
class _StartState:
    """How the greedy loop starts (see ``greedy_coreset``'s ``start``).

    Attributes:
        first: Index of the first centre, or ``None`` to take the argmax of ``initial``.
        initial: Initial squared distance of every point ``(N,)`` float32; ``+inf`` when the
            first centre is given.
        anchors: For ``start="authors"``, indices ``(S,)`` of the random reference points.
        anchor_of: Index into ``anchors`` of each point's nearest reference point ``(N,)``.
        anchor_sq: Squared distance to that reference point ``(N,)`` float32. The fast loop uses
            the reference points as cell centres until real centres take over.
    """

    first: int | None
    initial: np.ndarray
    anchors: np.ndarray | None = None
    anchor_of: np.ndarray | None = None
    anchor_sq: np.ndarray | None = None


def _start_state(prepared: np.ndarray, start: str, num_starts: int, seed: int) -> _StartState:
    """Builds the start of the greedy loop for ``start`` in ``STARTS`` (shared by both loops)."""
    num = len(prepared)
    rng = np.random.default_rng((seed, 0x57A27))
    if start == "first":
        return _StartState(0, np.full(num, np.inf, dtype=np.float32))
    if start == "random":
        return _StartState(int(rng.integers(num)), np.full(num, np.inf, dtype=np.float32))
    if start != "authors":
        raise ConfigError(f"unknown coreset start {start!r}; expected one of {', '.join(STARTS)}")
    # Authors' ApproximateGreedyCoresetSampler: the initial "distance" of a point is its mean
    # Euclidean distance to a few random points, which are not themselves selected.
    anchors = rng.choice(num, size=min(num_starts, num), replace=False).astype(np.int64)
    sq = _row_sq_norms(prepared)
    total = np.zeros(num, dtype=np.float32)
    anchor_sq = np.full(num, np.inf, dtype=np.float32)
    anchor_of = np.zeros(num, dtype=np.int64)
    for j, a in enumerate(anchors):
        for lo in range(0, num, _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, num)
            d2 = _sq_dists(prepared[lo:hi], sq[lo:hi], prepared[a], sq[a])
            total[lo:hi] += np.sqrt(d2)
            closer = d2 < anchor_sq[lo:hi]
            anchor_sq[lo:hi][closer] = d2[closer]
            anchor_of[lo:hi][closer] = j
    mean = total / np.float32(len(anchors))
    return _StartState(None, mean * mean, anchors, anchor_of, anchor_sq)


# --------------------------------------------------------------------------------------------
# Naive reference
# --------------------------------------------------------------------------------------------


def _greedy_coreset_naive(
    prepared: np.ndarray, size: int, state: _StartState, *, progress: bool = False
) -> np.ndarray:
    """Textbook greedy k-center: one full pass over the ``(N, d)`` points per step.

    Reference for tests and benchmarks; the fast loop must return exactly these picks.

    Args:
        prepared: Points ``(N, d)`` float32 as returned by ``_prepare``.
        size: Number of picks ``M``.
        state: Start of the loop (``_start_state``).
        progress: Show a progress bar.

    Returns:
        Selected indices, int64 ``(M,)``.
    """
    num = len(prepared)
    sq = _row_sq_norms(prepared)
    min_sq = state.initial.astype(np.float32, copy=True)
    picks = np.empty(size, dtype=np.int64)
    for step in progress_bar(range(size), desc="coreset (naive)", enabled=progress):
        if step == 0 and state.first is not None:
            pick = state.first
        else:
            pick = int(np.argmax(min_sq))  # ties -> lowest index
        picks[step] = pick
        for lo in range(0, num, _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, num)
            d2 = _sq_dists(prepared[lo:hi], sq[lo:hi], prepared[pick], sq[pick])
            np.minimum(min_sq[lo:hi], d2, out=min_sq[lo:hi])
        min_sq[pick] = -1.0  # selected: never picked again, even when all distances reach 0
    return picks


# --------------------------------------------------------------------------------------------
# Fast exact loop
# --------------------------------------------------------------------------------------------


def _rowdot(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Row-wise dot products ``(n,)`` of ``rows`` ``(n, k)`` with ``vector`` ``(k,)`` (BLAS).

    Only used for pruning bounds, whose error terms hold for any summation order, so BLAS's
    batch-dependent rounding is harmless here (unlike in ``_sq_dists``).
    """
    return np.dot(rows, vector)


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each ``(s, n)``, without a Python loop."""
    total = int(counts.sum())
    shift = starts - (np.cumsum(counts) - counts)
    return np.arange(total, dtype=np.int64) + np.repeat(shift, counts)


def _principal_directions(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Orthonormal ``(d, k)`` float32 basis close to the top-``k`` principal subspace.

    Only the pruning power depends on it: any orthonormal basis gives valid lower bounds. Uses a
    strided row sample and randomised subspace iteration, so the cost is ``O(n_sample d k)``.
    """
    num, width = points.shape
    step = max(1, num // _PCA_ROWS)
    sample = points[::step].astype(np.float64)
    rng = np.random.default_rng((seed, 0xBA515))
    basis = rng.standard_normal((width, min(width, k + 8)))
    for _ in range(3):
        basis, _ = np.linalg.qr(sample.T @ (sample @ basis))
    small = basis.T @ (sample.T @ (sample @ basis))
    eigval, eigvec = np.linalg.eigh(small)
    top = basis @ eigvec[:, np.argsort(eigval)[::-1][:k]]
    top, _ = np.linalg.qr(top)
    return np.ascontiguousarray(top, dtype=np.float32)


class _PathChooser:
    """Chooses, step by step, the faster of two ways of finding the points a centre affects.

    Both ways (``_FastGreedy._candidates``, pruned by bounds, and ``_dense_candidates``, one BLAS
    pass over all rows) give the same picks; which is faster depends on the data and on the
    stage of the selection: the bounds only become selective once there are many centres, and
    never are on data of high intrinsic dimension. The current path's time per step is averaged;
    now and then the other path runs for ``_BURST`` steps (more rarely the slower it looked, so
    trials cost at most ~1/``_RECHECK`` of the time) and the loop switches if its median time is
    clearly lower. The choice only affects speed, never the result.
    """

    def __init__(self, current: str, other: str) -> None:
        self.current, self.other = current, other
        self.cost: dict[str, float | None] = {current: None, other: None}  # seconds per step
        self.trial = current  # path being timed by the running burst
        self.burst_left = 0
        self.samples: list[float] = []
        self.last_trial = 0

    def choose(self, step: int) -> str:
        """The path to run at ``step``."""
        if _FORCE_MODE is not None:
            return _FORCE_MODE
        if not self.burst_left:
            current, other = self.cost[self.current], self.cost[self.other]
            if current is None:
                self._start(self.current, step)
            elif other is None or (
                step - self.last_trial >= _RECHECK * _BURST * max(1.0, other / current)
            ):
                self._start(self.other, step)
            else:
                return self.current
        return self.trial

    def _start(self, path: str, step: int) -> None:
        self.trial, self.burst_left, self.samples, self.last_trial = path, _BURST, [], step

    def record(self, path: str, seconds: float) -> None:
        """Accounts the time one step of ``path`` took."""
        if _FORCE_MODE is not None:
            return
        if self.burst_left and path == self.trial:
            # A burst's median ignores one-off stalls (first BLAS call, page faults).
            self.samples.append(seconds)
            self.burst_left -= 1
            if not self.burst_left:
                self.cost[path] = float(np.median(self.samples))
                current = self.cost[self.current]
                if (
                    path == self.other
                    and current is not None
                    and (self.cost[path] < _SWITCH * current)
                ):
                    self.current, self.other = self.other, self.current
            return
        known = self.cost[path]
        self.cost[path] = seconds if known is None else 0.8 * known + 0.2 * seconds


class _FastGreedy:
    """Exact greedy k-center with cell and partial-distance pruning.

    Per-point state, kept in a memory layout where every cell is a contiguous range of rows:

    * ``min_sq``: squared distance to the nearest selected centre, as the naive loop keeps it
      (``+inf`` or the authors' initial value before any centre; ``-1`` once selected);
    * ``owner``: the centre the point was last assigned to; cells are rebuilt from it;
    * ``stage_limit[i]``: the point's skip threshold on the partial distance over the first
      ``k_i`` principal coordinates, minus its own projected squared norm there (so that a test
      is one gather and one comparison).

    Per cell (points sharing an owner at the last re-layout, centre ``o``): radius
    ``rho >= max_x d(x, o)``, the maximum ``min_sq`` over members and its point (so the next pick
    needs no scan over all points), and skip thresholds.

    A point ``x`` moves closer to a new centre ``c`` only if ``d(x, c) < sqrt(min_sq(x))``.
    Lower bounds of ``d(x, c)`` rule points out, cheapest first: ``d(o, c) - rho`` for a whole
    cell (``d(o, c)`` first bounded by its principal projection, then computed in full), then
    the partial distances ``||V^T (x - c)||`` on the leading ``k_1 < k_2 < ...`` principal
    directions ``V``. Every threshold is inflated by a bound on the float32 rounding error of
    both sides, so no point that the naive loop would update is ever skipped, and the picks are
    identical.
    """

    def __init__(
        self, points: np.ndarray, state: _StartState, size: int, seed: int, pds_dim: int | None
    ) -> None:
        self.points = points
        self.num, width = points.shape
        self.size = size
        self.sq = _row_sq_norms(points)
        widths = _PDS_WIDTHS if pds_dim is None else (int(pds_dim),)
        widths = sorted({min(width, max(1, w)) for w in widths})
        basis = _principal_directions(points, widths[-1], seed)
        proj = np.empty((self.num, widths[-1]), dtype=np.float32)
        for lo in range(0, self.num, _CHUNK_ROWS):
            np.matmul(points[lo : lo + _CHUNK_ROWS], basis, out=proj[lo : lo + _CHUNK_ROWS])
        # Successive filters on the leading k_1 < k_2 < ... principal coordinates: the first,
        # narrow ones are cheap to read and already carry most of the variance.
        self.stage_proj = [np.ascontiguousarray(proj[:, :w]) for w in widths[:-1]] + [proj]
        self.stage_sq = [_row_sq_norms(z) for z in self.stage_proj]
        self.proj, self.proj_sq = self.stage_proj[-1], self.stage_sq[-1]
        self._error_bounds(basis)

        self.min_sq = state.initial.astype(np.float32, copy=True)
        self.orig = np.arange(self.num, dtype=np.int64)
        self.inv = np.arange(self.num, dtype=np.int64)
        # Centres are identified by an id: the step that selected them, or size + j for the
        # authors' j-th random reference point.
        extra = 0 if state.anchors is None else len(state.anchors)
        self.centre_orig = np.empty(size + extra, dtype=np.int64)
        if state.anchors is None:
            self.owner = np.full(self.num, -1, dtype=np.int64)
            self.anchor_sq = np.full(self.num, np.inf, dtype=np.float32)
        else:
            self.centre_orig[size:] = state.anchors
            self.owner = size + state.anchor_of
            self.anchor_sq = state.anchor_sq.astype(np.float32, copy=True)
        thr = self._point_thresholds(self.min_sq)
        self.stage_limit = [(thr - z_sq).astype(np.float32) for z_sq in self.stage_sq]
        self.stage_rate = [0.0] * len(self.stage_proj)  # running share of points a stage keeps
        self.chooser = _PathChooser("pruned", "dense")
        self.first = state.first
        self._spare: np.ndarray | None = None  # second row buffer for re-layouts
        self.owns_points = False  # whether self.points may be overwritten
        self._set_cells(
            np.zeros(1, dtype=np.int64),
            np.array([self.num], dtype=np.int64),
            np.array([np.inf]),
            np.zeros(1, dtype=np.int64),
        )

    # -- rounding-error bounds -------------------------------------------------------------

    def _error_bounds(self, basis: np.ndarray) -> None:
        """Absolute float32 error terms of the distance expansions.

        ``delta`` bounds ``|d2_computed - d2_true|`` for ``|x|^2 - 2 x.c + |c|^2`` evaluated in
        float32 in any order: the dot product's error is at most ``gamma_d |x| |c|`` whatever
        the summation order, doubled, plus the roundings of the norms and of a few additions
        (16 ulps of ``max |x|^2``, more than needed). ``delta_proj`` is the same on the
        projected coordinates (it also covers their narrower prefixes). ``eps_proj`` bounds the
        error of one computed projected vector, ``|z_comp - V^T x| <= gamma_d ||V||_F |x|``, and
        ``sigma`` is the spectral norm of the float32 basis (1 up to rounding), so that
        ``|V^T w| <= sigma |w|``.
        """
        width, k = basis.shape
        gamma_d = width * _U / (1.0 - width * _U)
        gamma_k = k * _U / (1.0 - k * _U)
        max_sq = float(self.sq.max()) * (1.0 + 4 * _U)
        max_proj_sq = float(self.proj_sq.max()) * (1.0 + 4 * _U)
        self.delta = (2 * gamma_d + 16 * _U) * max_sq * 1.01 + 1e-30
        self.delta_proj = (2 * gamma_k + 16 * _U) * max_proj_sq * 1.01 + 1e-30
        basis64 = basis.astype(np.float64)
        self.eps_proj = gamma_d * float(np.linalg.norm(basis64)) * math.sqrt(max_sq) * 1.01
        self.sigma = float(np.linalg.norm(basis64, 2)) * (1.0 + 1e-6)
        self.slack = 1.0 + 1e-5  # covers the roundings of the threshold arithmetic itself
        up = 1.0 + 1e-6  # rounding a float64 constant to float32 loses at most 6e-8
        self._f32_delta = np.float32(self.delta * up)
        self._f32_sigma = np.float32(self.sigma * up)
        self._f32_two_eps = np.float32(2.0 * self.eps_proj * up)
        self._f32_slack = np.float32(self.slack * up)
        self._f32_delta_proj = np.float32(self.delta_proj * up)
        # Twice delta, plus the rounding of subtracting it from a float32 distance (<= 4 max_sq).
        self._f32_two_delta = np.float32((2.0 * self.delta + 8 * _U * max_sq) * up)

    def _point_thresholds(self, min_sq: np.ndarray) -> np.ndarray:
        """Per point: computed partial distance at or above which ``d2_computed >= min_sq``.

        ``d2_computed >= d2_true - delta``, so a true distance of ``sqrt(min_sq + delta)``
        suffices; the partial distance certifies it once it exceeds
        ``(sigma * r + 2 eps_proj)^2 + delta_proj`` (float64, ``-inf`` for selected points).
        """
        m = min_sq.astype(np.float64)
        radius = np.sqrt(np.maximum(m, 0.0) + self.delta)
        out = (self.sigma * radius + 2.0 * self.eps_proj) ** 2 * self.slack + self.delta_proj
        out[m < 0] = -np.inf
        return out

    def _moved_thresholds(self, new_sq: np.ndarray) -> np.ndarray:
        """``_point_thresholds`` for non-negative float32 ``new_sq``, in float32 (hot path).

        All terms are positive, so the relative rounding error is a few ulps, far below the
        ``slack`` factor; the constants are rounded upwards.
        """
        out = new_sq + self._f32_delta
        np.sqrt(out, out=out)
        out *= self._f32_sigma
        out += self._f32_two_eps
        out *= out
        out *= self._f32_slack
        out += self._f32_delta_proj
        return out

    # -- cells -------------------------------------------------------------------------------

    def _set_cells(
        self, starts: np.ndarray, counts: np.ndarray, rho: np.ndarray, centre_pos: np.ndarray
    ) -> None:
        """Installs cells ``[starts, starts + counts)`` with radii ``rho`` and centre rows."""
        ncell = len(starts)
        self.cell_start = starts
        self.cell_count = counts
        self.cell_rho = rho
        self.live = int(counts.sum())
        self.cell_of = np.full(self.num, -1, dtype=np.int64)
        self.cell_of[: self.live] = np.repeat(np.arange(ncell), counts)
        self.cell_points = np.ascontiguousarray(self.points[centre_pos])
        self.cell_sq = self.sq[centre_pos]
        self.cell_proj = np.ascontiguousarray(self.proj[centre_pos])
        self.cell_proj_sq = self.proj_sq[centre_pos]
        self.cell_max = np.empty(ncell, dtype=np.float32)
        self.cell_best = np.empty(ncell, dtype=np.int64)
        self.cell_limit_proj = np.empty(ncell, dtype=np.float32)
        self.cell_limit = np.empty(ncell, dtype=np.float32)
        self._refresh(np.arange(ncell))

    def _refresh(self, cells: np.ndarray) -> None:
        """Recomputes the maximum ``min_sq``, its point and the skip thresholds of ``cells``.

        A cell can be skipped when ``d(o, c) >= rho + reach`` with
        ``reach = sqrt(max min_sq + delta)``: every member ``x`` then has
        ``d(x, c) >= d(o, c) - d(x, o) >= sqrt(min_sq(x) + delta)``. The limits stored are the
        thresholds on the computed squared distance to ``o`` minus ``|o|^2``.
        """
        if len(cells) <= 8:  # a few cells (the usual case): slices and scalar arithmetic
            for cell in cells.tolist():
                self._refresh_one(cell)
            return
        counts = self.cell_count[cells]
        idx = _expand_ranges(self.cell_start[cells], counts)
        offs = np.cumsum(counts) - counts
        values = self.min_sq[idx]
        best = np.maximum.reduceat(values, offs)
        tied = np.where(values == np.repeat(best, counts), self.orig[idx], self.num)
        self.cell_max[cells] = best
        self.cell_best[cells] = np.minimum.reduceat(tied, offs)
        b = best.astype(np.float64)
        reach = np.sqrt(np.maximum(b, 0.0) + self.delta)
        radius = self.cell_rho[cells] + reach
        thr_proj = (self.sigma * radius + 2.0 * self.eps_proj) ** 2 * self.slack + self.delta_proj
        limit = radius * radius * self.slack + (self.delta - self.cell_sq[cells])
        thr_proj[b < 0] = -np.inf
        limit[b < 0] = -np.inf
        self.cell_limit_proj[cells] = thr_proj - self.cell_proj_sq[cells]
        self.cell_limit[cells] = limit

    def _refresh_one(self, cell: int) -> None:
        """``_refresh`` for a single cell."""
        lo = int(self.cell_start[cell])
        values = self.min_sq[lo : lo + int(self.cell_count[cell])]
        j = int(np.argmax(values))
        if len(values) - 1 - int(np.argmax(values[::-1])) != j:
            ties = np.flatnonzero(values == values[j])  # lowest original index, like np.argmax
            j = int(ties[np.argmin(self.orig[lo + ties])])
        best = float(values[j])
        self.cell_max[cell] = best
        self.cell_best[cell] = self.orig[lo + j]
        if best < 0:  # every member already selected
            self.cell_limit_proj[cell] = self.cell_limit[cell] = -np.inf
            return
        radius = float(self.cell_rho[cell]) + math.sqrt(best + self.delta)
        thr_proj = (self.sigma * radius + 2.0 * self.eps_proj) ** 2 * self.slack + self.delta_proj
        self.cell_limit_proj[cell] = thr_proj - float(self.cell_proj_sq[cell])
        limit = radius * radius * self.slack + self.delta
        self.cell_limit[cell] = limit - float(self.cell_sq[cell])

    def _relayout(self) -> None:
        """Regroups live points into cells by owner and permutes all per-point arrays to match.

        Called whenever the number of centres doubles, so that cell radii stay close to the
        current covering radius and the cell bound stays tight. Selected points go last,
        outside every cell.
        """
        # The last move of a point set both its owner and min_sq, so min_sq is the squared
        # distance to the owner, except for the authors' reference points as owners.
        owner_sq = np.where(self.owner < self.size, self.min_sq, self.anchor_sq)
        key = np.where(self.min_sq >= 0, self.owner, np.iinfo(np.int64).max)
        order = np.argsort(key, kind="stable")
        # The rows go to a second buffer, kept between re-layouts; mode="clip" avoids numpy's
        # buffered take (the indices are valid anyway).
        if self._spare is None:
            self._spare = np.empty_like(self.points)
        np.take(self.points, order, axis=0, out=self._spare, mode="clip")
        # The caller's array is recycled only when it is scratch (``owns_points``).
        previous = self.points if self.owns_points else None
        self.points, self._spare, self.owns_points = self._spare, previous, True
        for name in ("sq", "min_sq", "owner", "anchor_sq", "orig"):
            setattr(self, name, np.take(getattr(self, name), order, axis=0))
        for arrays in (self.stage_proj, self.stage_sq, self.stage_limit):
            arrays[:] = [np.take(a, order, axis=0) for a in arrays]
        self.proj, self.proj_sq = self.stage_proj[-1], self.stage_sq[-1]
        owner_sq = owner_sq[order]
        self.inv[self.orig] = np.arange(self.num, dtype=np.int64)
        live = int(np.count_nonzero(self.min_sq >= 0))
        owners = self.owner[:live]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        counts = np.diff(np.r_[starts, live])
        # Upper bound of each member's true distance to its cell centre.
        far = np.sqrt(owner_sq[:live].astype(np.float64) + self.delta) * self.slack
        rho = np.maximum.reduceat(far, starts)
        self._set_cells(starts, counts, rho, self.inv[self.centre_orig[owners[starts]]])

    # -- main loop ---------------------------------------------------------------------------

    def _next_pick(self, step: int) -> int:
        """Position of the point farthest from the centres (ties: lowest original index)."""
        if step == 0 and self.first is not None:
            return int(self.inv[self.first])
        top = self.cell_max
        j = int(np.argmax(top))
        if len(top) > 1 and len(top) - 1 - int(np.argmax(top[::-1])) != j:
            tied = np.flatnonzero(top == top[j])
            j = int(tied[np.argmin(self.cell_best[tied])])
        return int(self.inv[self.cell_best[j]])

    def _cell_ranges(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and length of the row ranges, one per cell, that the new centre may affect."""
        query = self.proj[pos] * np.float32(-2.0)
        dist = _rowdot(self.cell_proj, query)
        dist += self.proj_sq[pos]
        cells = np.flatnonzero(dist < self.cell_limit_proj)
        dist = _rowdot(
            np.take(self.cell_points, cells, axis=0), self.points[pos] * np.float32(-2.0)
        )
        dist += self.sq[pos]
        near = dist < self.cell_limit[cells]
        cells = cells[near]
        return self.cell_start[cells], self.cell_count[cells]

    def _candidates(self, pos: int, step: int) -> np.ndarray:
        """Positions of live points not ruled out by the cell bounds and the partial distances.

        The work adapts to how selective each bound is on the data at hand: when the cells leave
        most points (high intrinsic dimension, few centres yet), all rows are scanned in place,
        which is cheaper than gathering them; a narrow partial-distance stage that keeps most of
        its input is skipped (and re-tried every ``_RECHECK`` steps).
        """
        idx: np.ndarray | None = None
        if len(self.cell_start) > 1:
            starts, counts = self._cell_ranges(pos)
            if counts.sum() <= _GATHER_FRACTION * self.live:
                idx = _expand_ranges(starts, counts)
        elif self.cell_limit_proj[0] == -np.inf:
            return np.empty(0, dtype=np.int64)
        last = len(self.stage_proj) - 1
        for i, (proj, proj_sq, limit) in enumerate(
            zip(self.stage_proj, self.stage_sq, self.stage_limit)
        ):
            if i < last and self.stage_rate[i] > _SKIP_RATE and step % _RECHECK:
                continue
            before = self.live if idx is None else len(idx)
            query = proj[pos] * np.float32(-2.0)
            if idx is None:  # every live point: contiguous rows, no gather
                dist = _rowdot(proj[: self.live], query)
                dist += proj_sq[pos]
                idx = np.flatnonzero(dist < limit[: self.live])
            else:
                dist = _rowdot(np.take(proj, idx, axis=0), query)
                dist += proj_sq[pos]
                idx = idx[dist < limit[idx]]
            if before:
                self.stage_rate[i] = 0.8 * self.stage_rate[i] + 0.2 * len(idx) / before
        return idx

    def _dense_candidates(self, pos: int) -> np.ndarray | None:
        """Live points whose distance may drop, from one BLAS pass over all live rows.

        This is the naive loop's full pass, done with (multi-threaded) BLAS, whose rounding
        depends on the batch: a BLAS distance and the exact kernel's distance differ by at most
        ``2 delta``, so only points with ``d2_blas - 2 delta < min_sq`` (a few, once centres
        accumulate) go on to the exact kernel. ``None`` when most points qualify.
        """
        live = self.live
        dist = _rowdot(self.points[:live], self.points[pos] * np.float32(-2.0))
        dist += self.sq[:live]
        dist += self.sq[pos] - self._f32_two_delta
        sub = np.flatnonzero(dist < self.min_sq[:live])
        return None if len(sub) > _GATHER_FRACTION * live else sub

    def run(self, progress: bool) -> np.ndarray:
        """Runs ``size`` greedy steps and returns the original indices in selection order."""
        picks = np.empty(self.size, dtype=np.int64)
        next_relayout = _FIRST_RELAYOUT
        with progress_bar(total=self.size, desc="coreset", unit="centre", enabled=progress) as bar:
            for step in range(self.size):
                pos = self._next_pick(step)
                picks[step] = self.centre_orig[step] = self.orig[pos]
                centre, centre_sq = self.points[pos], self.sq[pos]
                mode = self.chooser.choose(step)
                began = time.perf_counter()
                sub = (
                    self._dense_candidates(pos) if mode == "dense" else self._candidates(pos, step)
                )
                if sub is None:  # most live points: one contiguous exact pass
                    live = self.live
                    d2 = _sq_dists(self.points[:live], self.sq[:live], centre, centre_sq)
                    closer = d2 < self.min_sq[:live]
                    moved = np.flatnonzero(closer)
                else:
                    rows = np.take(self.points, sub, axis=0)
                    d2 = _sq_dists(rows, self.sq[sub], centre, centre_sq)
                    closer = d2 < self.min_sq[sub]
                    moved = sub[closer]
                if step:  # the first step updates every point in both modes: not timed
                    self.chooser.record(mode, time.perf_counter() - began)
                touched = [self.cell_of[pos]]
                if len(moved):
                    new_sq = d2[closer]
                    self.min_sq[moved] = new_sq
                    self.owner[moved] = step
                    thr = self._moved_thresholds(new_sq)
                    for proj_sq, limit in zip(self.stage_sq, self.stage_limit):
                        limit[moved] = thr - proj_sq[moved]
                    # A cell's maximum can only change if its best point moved or was picked.
                    cell = self.cell_of[moved]
                    touched.append(cell[self.inv[self.cell_best[cell]] == moved])
                self.min_sq[pos] = -1.0
                for limit in self.stage_limit:
                    limit[pos] = -np.inf
                if len(touched) == 1:
                    self._refresh_one(int(touched[0]))
                else:
                    self._refresh(np.unique(np.hstack(touched)))
                bar.update()
                if step + 1 >= next_relayout and step + 1 < self.size:
                    self._relayout()
                    next_relayout = math.ceil(next_relayout * _RELAYOUT_GROWTH)
        return picks


def _greedy_coreset_fast(
    prepared: np.ndarray,
    size: int,
    state: _StartState,
    *,
    progress: bool = False,
    seed: int = 0,
    pds_dim: int | None = None,
    scratch: bool = False,
) -> np.ndarray:
    """Pruned greedy k-center; same picks as ``_greedy_coreset_naive``.

    Args:
        prepared: Points ``(N, d)`` float32 as returned by ``_prepare``; not modified unless
            ``scratch``.
        size: Number of picks ``M``.
        state: Start of the loop (``_start_state``).
        progress: Show a progress bar.
        seed: Seed of the principal-direction estimate (affects speed only).
        pds_dim: Use a single partial-distance test on this many principal coordinates instead
            of the default successive tests on ``_PDS_WIDTHS`` (capped at ``d``).
        scratch: ``prepared`` may be overwritten (saves one ``(N, d)`` buffer).

    Returns:
        Selected indices, int64 ``(M,)``.
    """
    greedy = _FastGreedy(prepared, state, size, seed, pds_dim)
    greedy.owns_points = scratch
    return greedy.run(progress)
