"""Bounded-memory curves of class scores: precision-recall and calibration.

A fit may score hundreds of thousands of samples over a thousand classes, so nothing here
keeps a score per sample. Each batch adds to fixed-size histograms; the curves are read
off them at the histogram's edges, where they are exact:

* :func:`score_histograms`: per class, how many positive and negative samples score in
  ``[edges[j], edges[j + 1])`` (the last bin is ``[edges[-1], inf)``). The counts with a
  score ``>= edges[j]`` are suffix sums, so :func:`pr_curves` gives at threshold
  ``edges[j]`` exactly the precision and recall of ``sklearn.metrics.
  precision_recall_curve`` at its first threshold ``>= edges[j]``.
* :func:`calibration_bins`: per confidence bin (``sklearn.calibration.calibration_curve``'s
  uniform bins: ``np.searchsorted(edges[1:-1], conf)``), the count, the summed confidence
  and the summed correctness; :func:`expected_calibration_error` is the count-weighted
  mean gap between accuracy and confidence.

NaN scores fall in no bin.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array

#: Score thresholds of the PR curves: 0, 0.01, ..., 1 (101 points).
PR_EDGES = np.linspace(0.0, 1.0, 101)


# ---------------------------------------------------------------- kernels
@njit(cache=True, nogil=True, inline="always")
def _bin_right(edges: np.ndarray, v: float) -> int:
    """The last ``j`` with ``edges[j] <= v`` (-1 when none): ``searchsorted(right) - 1``.

    Guessed from the edges' span (exact in one step for uniform edges), then corrected by
    comparing with the edges themselves, so the answer is the comparison's, not the
    guess's rounding."""
    g: int = edges.shape[0]
    lo, hi = edges[0], edges[g - 1]
    if v < lo:
        return -1
    if v >= hi:
        return g - 1
    j = int((v - lo) / (hi - lo) * (g - 1))
    j = min(max(j, 0), g - 1)
    while j + 1 < g and edges[j + 1] <= v:
        j += 1
    while j >= 0 and edges[j] > v:
        j -= 1
    return j


@njit(cache=True, nogil=True)
def _score_histograms(
    scores: np.ndarray, targets: np.ndarray, edges: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> None:
    """Adds ``(B, C)`` float32 scores, split by ``(B, C)`` bool targets, into ``(C, G)``
    int64 ``pos`` and ``neg`` counts."""
    n, c = scores.shape
    for i in range(n):
        for k in range(c):
            v = np.float64(scores[i, k])
            if np.isnan(v):
                continue
            j = _bin_right(edges, v)
            if j < 0:
                continue
            if targets[i, k]:
                pos[k, j] += 1
            else:
                neg[k, j] += 1


@njit(cache=True, nogil=True)
def _label_histograms(
    scores: np.ndarray, labels: np.ndarray, edges: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> None:
    """:func:`_score_histograms` with one positive class per sample, ``labels`` ``(B,)``."""
    n, c = scores.shape
    for i in range(n):
        for k in range(c):
            v = np.float64(scores[i, k])
            if np.isnan(v):
                continue
            j = _bin_right(edges, v)
            if j < 0:
                continue
            if labels[i] == k:
                pos[k, j] += 1
            else:
                neg[k, j] += 1


@njit(cache=True, nogil=True)
def _calibration_bins(
    conf: np.ndarray,
    correct: np.ndarray,
    inner_edges: np.ndarray,
    count: np.ndarray,
    conf_sum: np.ndarray,
    correct_sum: np.ndarray,
) -> None:
    """Adds ``(B,)`` confidences and bool correctness into per-bin sums (left search on
    the inner edges, as scikit-learn bins)."""
    for i in range(conf.shape[0]):
        v = np.float64(conf[i])
        if np.isnan(v):
            continue
        lo, hi = 0, inner_edges.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if inner_edges[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        count[lo] += 1
        conf_sum[lo] += v
        if correct[i]:
            correct_sum[lo] += 1


# ---------------------------------------------------------------- wrappers
def score_histograms(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    edges: npt.ArrayLike = PR_EDGES,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class histograms of the scores of positive and negative samples.

    Args:
        scores: ``(B, C)`` float scores (probabilities, for edges in [0, 1]).
        targets: ``(B, C)`` bool, True where the sample belongs to the class, or ``(B,)``
            class ids (one class per sample).
        edges: ``(G,)`` increasing bin edges (:data:`PR_EDGES`).
        out: ``(pos, neg)`` ``(C, G)`` int64 arrays to add to, or None for new ones.

    Returns:
        ``(pos, neg)``, each ``(C, G)`` int64.
    """
    s = as_array(scores, "scores", np.float32, (None, None))
    t = np.asarray(targets)
    single = t.ndim == 1  # class ids: one positive class per sample
    t = (
        as_array(t, "targets", np.int64, (s.shape[0],))
        if single
        else as_array(t, "targets", np.bool_, s.shape)
    )
    e = as_array(edges, "edges", np.float64, (None,))
    if e.shape[0] < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges must be at least two increasing values, got {e[:8].tolist()}")
    if out is None:
        out = (
            np.zeros((s.shape[1], e.shape[0]), np.int64),
            np.zeros((s.shape[1], e.shape[0]), np.int64),
        )
    pos, neg = out
    if pos.shape != (s.shape[1], e.shape[0]) or neg.shape != pos.shape:
        raise ValueError(
            f"out must be two ({s.shape[1]}, {e.shape[0]}) arrays, got {pos.shape} and {neg.shape}"
        )
    (_label_histograms if single else _score_histograms)(s, t, e, pos, neg)
    return pos, neg


def pr_curves(pos: npt.ArrayLike, neg: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall per class at every histogram edge.

    Args:
        pos, neg: ``(C, G)`` counts from :func:`score_histograms`.

    Returns:
        ``(precision, recall)``, each ``(C, G)`` float64: at edge ``j``, over the samples
        scoring ``>= edges[j]``; precision NaN where none does, recall NaN for a class
        without positives.
    """
    tp = np.cumsum(np.asarray(pos)[:, ::-1], axis=1)[:, ::-1]
    fp = np.cumsum(np.asarray(neg)[:, ::-1], axis=1)[:, ::-1]
    positives = np.asarray(pos).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        recall = np.where(positives > 0, tp / np.maximum(positives, 1), np.nan)
    return precision, recall


def calibration_bins(
    conf: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = 15,
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin sums of the top-class confidence and correctness.

    Args:
        conf: ``(B,)`` float confidences in [0, 1] (the predicted class's probability).
        correct: ``(B,)`` bool, the prediction was right.
        n_bins: uniform bins over [0, 1] (15, the usual ECE setting).
        out: ``(count, conf_sum, correct_sum)`` arrays to add to, or None.

    Returns:
        ``(count (n_bins,) int64, conf_sum (n_bins,) float64, correct_sum (n_bins,) int64)``.
    """
    c = as_array(conf, "conf", np.float32, (None,))
    ok = as_array(correct, "correct", np.bool_, (c.shape[0],))
    if out is None:
        out = (np.zeros(n_bins, np.int64), np.zeros(n_bins, np.float64), np.zeros(n_bins, np.int64))
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    _calibration_bins(c, ok, inner, *out)
    return out


def expected_calibration_error(
    count: npt.ArrayLike, conf_sum: npt.ArrayLike, correct_sum: npt.ArrayLike
) -> float:
    """``sum_b n_b / N * |accuracy_b - confidence_b|`` over the non-empty bins; NaN with
    no sample."""
    n = np.asarray(count)
    total = n.sum()
    if total == 0:
        return float("nan")
    seen = n > 0
    gap = np.abs(np.asarray(correct_sum)[seen] - np.asarray(conf_sum)[seen])  # n_b * |a - c|
    return float(gap.sum() / total)
