"""Classification post-processing: softmax, sigmoid, top-k, and per-example summaries.

Three heads: a softmax head ``(B, C)`` (one class per sample), a one-unit sigmoid head
``(B, 1)`` (p(class 1), turned into two class probabilities), and a multi-label sigmoid head
``(B, C)`` (one independent probability per class, a set of classes per sample). Class ids
are int32: any number of classes.

Conventions (shared with the numpy twins in ``tests/helpers/reference.py``):

* ``softmax`` subtracts the row maximum before exponentiating. A row containing NaN
  becomes all-NaN; a row containing ``+inf`` yields NaN where ``inf - inf`` occurs, exactly
  like ``exp(x - x.max()) / sum``.
* ``sigmoid`` is ``1 / (1 + exp(-x))`` for ``x >= 0`` and ``exp(x) / (1 + exp(x))``
  below (no overflow); NaN stays NaN.
* A sigmoid probability ``p`` predicts its class when ``p > threshold`` (strictly, like
  ``keras.metrics.binary_accuracy`` and ``F1Score``); a one-unit head's ``p == 0.5``
  predicts class 0.
* ``topk`` orders by descending score, ties broken by the lower class index, NaN last
  (the order of ``np.argsort(-scores, kind="stable")``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids


@njit(cache=True, nogil=True)
def _softmax(logits: np.ndarray) -> np.ndarray:
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


@njit(cache=True, nogil=True, inline="always")
def _sigmoid1(v: np.float32) -> np.float32:
    p: np.float32
    if v >= 0:
        p = np.float32(1.0) / (np.float32(1.0) + np.exp(-v))
    else:
        e = np.exp(v)
        p = e / (np.float32(1.0) + e)
    return p


@njit(cache=True, nogil=True)
def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise sigmoid of ``(B, C)`` float32 logits -> ``(B, C)`` float32."""
    n, c = logits.shape
    out = np.empty((n, c), dtype=np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = _sigmoid1(logits[i, j])
    return out


@njit(cache=True, nogil=True)
def _binary_probabilities(scores: np.ndarray, from_logits: bool) -> np.ndarray:
    """``(B, 1)`` float32 sigmoid logits / p(class 1) -> ``(B, 2)`` float32 ``[1 - p, p]``."""
    n = scores.shape[0]
    out = np.empty((n, 2), dtype=np.float32)
    for i in range(n):
        p = _sigmoid1(scores[i, 0]) if from_logits else scores[i, 0]
        out[i, 0] = np.float32(1.0) - p
        out[i, 1] = p
    return out


@njit(cache=True, nogil=True)
def _multilabel_summary(
    scores: np.ndarray, labels: np.ndarray, threshold: np.float32, from_logits: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kernel behind :func:`multilabel_summary` (see there for shapes)."""
    probs = _sigmoid(scores) if from_logits else scores
    n, c = probs.shape
    pred = np.zeros((n, c), dtype=np.bool_)
    hits = np.zeros(n, dtype=np.int32)
    num_pred = np.zeros(n, dtype=np.int32)
    num_true = np.zeros(n, dtype=np.int32)
    has_labels = labels.shape[0] > 0
    for i in range(n):
        for j in range(c):
            on = probs[i, j] > threshold
            pred[i, j] = on
            if on:
                num_pred[i] += 1
            if has_labels and labels[i, j]:
                num_true[i] += 1
                if on:
                    hits[i] += 1
    return probs, pred, hits, num_pred, num_true


@njit(cache=True, nogil=True)
def _topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
def _classification_summary(
    scores: np.ndarray, labels: np.ndarray, k: int, from_logits: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kernel behind :func:`classification_summary` (see there for shapes)."""
    probs = _softmax(scores) if from_logits else scores
    topk_ids, topk_scores = _topk(probs, k)
    n = scores.shape[0]
    correct = np.zeros(n, dtype=np.bool_)
    for i in range(labels.shape[0]):
        correct[i] = topk_ids[i, 0] == labels[i]
    return probs, topk_ids, topk_scores, correct


def softmax(logits: npt.ArrayLike) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    Args:
        logits: ``(B, C)`` array, any float dtype (computed in float32).

    Returns:
        ``(B, C)`` float32 probabilities.
    """
    return _softmax(as_array(logits, "logits", np.float32, (None, None)))


def topk(scores: npt.ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
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
    logits_or_probs: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    k: int = 1,
    from_logits: bool = True,
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


def sigmoid(logits: npt.ArrayLike) -> np.ndarray:
    """Element-wise, overflow-free sigmoid.

    Args:
        logits: ``(B, C)`` array, any float dtype (computed in float32).

    Returns:
        ``(B, C)`` float32 probabilities.
    """
    return _sigmoid(as_array(logits, "logits", np.float32, (None, None)))


def binary_probabilities(scores: npt.ArrayLike, from_logits: bool = True) -> np.ndarray:
    """Two class probabilities from a one-unit sigmoid head.

    Args:
        scores: ``(B, 1)`` (or ``(B,)``) float logits (``from_logits=True``) or p(class 1).
        from_logits: apply the sigmoid first.

    Returns:
        ``(B, 2)`` float32 ``[p(class 0), p(class 1)] = [1 - p, p]``.
    """
    arr = np.asarray(scores)
    if arr.ndim == 1:
        arr = arr[:, None]
    return _binary_probabilities(as_array(arr, "scores", np.float32, (None, 1)), bool(from_logits))


def multilabel_summary(
    logits_or_probs: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    threshold: float = 0.5,
    from_logits: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class decisions of a multi-label sigmoid head and per-sample counts.

    Args:
        logits_or_probs: ``(B, C)`` float logits (``from_logits=True``) or probabilities.
        labels: optional ``(B, C)`` multi-hot true labels (nonzero = present).
        threshold: a class is predicted when its probability is ``> threshold``.
        from_logits: apply the sigmoid first (no softmax: classes are independent).

    Returns:
        ``(probs, pred, hits, num_pred, num_true)``: ``(B, C)`` float32 probabilities,
        ``(B, C)`` bool predicted set, and ``(B,)`` int32 counts of true positives,
        predicted classes and true classes (zeros without labels).
    """
    scores = as_array(logits_or_probs, "logits_or_probs", np.float32, (None, None))
    if labels is None:
        lab = np.zeros((0, scores.shape[1]), dtype=np.bool_)
    else:
        lab = as_array(labels, "labels", np.bool_, scores.shape)
    return _multilabel_summary(scores, lab, np.float32(threshold), bool(from_logits))
