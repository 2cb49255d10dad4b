"""Classification post-processing: softmax, top-k, and a per-example summary.

Conventions (shared with the numpy twins in ``tests/reference.py``):

* ``softmax`` subtracts the row maximum before exponentiating. A row containing NaN
  becomes all-NaN; a row containing ``+inf`` yields NaN where ``inf - inf`` occurs, exactly
  like ``exp(x - x.max()) / sum``.
* ``topk`` orders by descending score, ties broken by the lower class index, NaN last
  (the order of ``np.argsort(-scores, kind="stable")``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids


@njit(cache=True, nogil=True)
def _softmax(logits):
    """Row-wise softmax of ``(B, C)`` float32 logits -> ``(B, C)`` float32."""
    n, c = logits.shape
    out = np.empty((n, c), dtype=np.float32)
    for i in range(n):
        row = logits[i]
        m = -np.inf
        has_nan = False
        for j in range(c):
            v = row[j]
            if np.isnan(v):
                has_nan = True
            elif v > m:
                m = v
        if has_nan:
            out[i, :] = np.nan
            continue
        total = np.float32(0.0)
        for j in range(c):
            e = np.exp(np.float32(row[j] - m))
            out[i, j] = e
            total += e
        for j in range(c):
            out[i, j] = out[i, j] / total
    return out


@njit(cache=True, nogil=True)
def _topk(scores, k):
    """Top-``k`` indices ``(B, k)`` int32 and values ``(B, k)`` float32 of ``(B, C)`` scores."""
    n = scores.shape[0]
    idx = np.empty((n, k), dtype=np.int32)
    val = np.empty((n, k), dtype=np.float32)
    for i in range(n):
        order = np.argsort(-scores[i], kind="mergesort")
        for j in range(k):
            idx[i, j] = order[j]
            val[i, j] = scores[i, order[j]]
    return idx, val


@njit(cache=True, nogil=True)
def _classification_summary(scores, labels, k, from_logits):
    """Kernel behind :func:`classification_summary` (see there for shapes)."""
    probs = _softmax(scores) if from_logits else scores
    topk_ids, topk_scores = _topk(probs, k)
    n = scores.shape[0]
    correct = np.zeros(n, dtype=np.bool_)
    for i in range(labels.shape[0]):
        correct[i] = topk_ids[i, 0] == labels[i]
    return probs, topk_ids, topk_scores, correct


def softmax(logits) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    Args:
        logits: ``(B, C)`` array, any float dtype (computed in float32).

    Returns:
        ``(B, C)`` float32 probabilities.
    """
    return _softmax(as_array(logits, "logits", np.float32, (None, None)))


def topk(scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k class ids and scores per row.

    Args:
        scores: ``(B, C)`` float scores or probabilities.
        k: number of classes to return, ``1 <= k <= C``.

    Returns:
        ``(ids, values)``: ``(B, k)`` int32 and ``(B, k)`` float32, best first.
    """
    arr = as_array(scores, "scores", np.float32, (None, None))
    if not 1 <= k <= arr.shape[1]:
        raise ValueError(f"k must be in [1, {arr.shape[1]}] for {arr.shape[1]} classes, got {k}")
    return _topk(arr, int(k))


def classification_summary(
    logits_or_probs, labels=None, k: int = 1, from_logits: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predicted class, confidence, top-k and correctness for a batch.

    Args:
        logits_or_probs: ``(B, C)`` float logits (``from_logits=True``) or probabilities.
        labels: optional ``(B,)`` integer true class ids in ``[0, C)``.
        k: top-k size, ``1 <= k <= C``.
        from_logits: apply softmax first.

    Returns:
        ``(pred, confidence, topk_ids, topk_scores, correct)`` with shapes ``(B,)`` int32,
        ``(B,)`` float32, ``(B, k)`` int32, ``(B, k)`` float32 and ``(B,)`` bool
        (all False when ``labels`` is None).

    Raises:
        ValueError: on bad shapes, bad ``k`` or a label outside ``[0, C)``.
    """
    scores = as_array(logits_or_probs, "logits_or_probs", np.float32, (None, None))
    n, c = scores.shape
    if not 1 <= k <= c:
        raise ValueError(f"k must be in [1, {c}] for {c} classes, got {k}")
    if labels is None:
        lab = np.zeros(0, dtype=np.int32)
    else:
        lab = as_array(labels, "labels", np.int64, (n,))
        check_class_ids(lab, c, "labels")
        lab = lab.astype(np.int32)
    _, ids, vals, correct = _classification_summary(scores, lab, int(k), bool(from_logits))
    return ids[:, 0].copy(), vals[:, 0].copy(), ids, vals, correct
