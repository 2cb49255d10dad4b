"""Confusion matrices: class ids (classification, segmentation pixels) and matched boxes.

Rows are true classes, columns predicted ones (``sklearn.metrics.confusion_matrix``'s
layout). :func:`per_class_scores` reads per-class precision, recall, F1, IoU and Dice off
a matrix, the way scikit-learn's ``precision_recall_fscore_support`` does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids
from fastevalcb.kernels.coco import _box_iou


# ---------------------------------------------------------------- kernels
@njit(cache=True, nogil=True)
def _confusion_counts(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, ignore: int, out: np.ndarray
) -> int:
    """Adds the counts of flat ``(N,)`` id pairs to ``(C, C)`` int64 ``out``; pairs whose
    true id is ``ignore`` are skipped. Returns the first position with an id outside
    ``[0, C)``, or -1."""
    bad = -1
    for i in range(y_true.shape[0]):
        t = np.int64(y_true[i])
        if t == ignore:
            continue
        p = np.int64(y_pred[i])
        if t < 0 or t >= num_classes or p < 0 or p >= num_classes:
            if bad < 0:
                bad = i
            continue
        out[t, p] += 1
    return bad


@njit(cache=True, nogil=True)
def _detection_confusion(
    pred_offsets: np.ndarray,
    pred_xyxy: np.ndarray,
    pred_scores: np.ndarray,
    pred_class: np.ndarray,
    gt_offsets: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_class: np.ndarray,
    num_classes: int,
    iou_threshold: float,
    score_threshold: float,
    out: np.ndarray,
) -> None:
    """Adds to ``(C + 1, C + 1)`` counts ``out``; see :func:`detection_confusion`."""
    bg = num_classes
    for img in range(pred_offsets.shape[0] - 1):
        ps, pe = pred_offsets[img], pred_offsets[img + 1]
        gs, ge = gt_offsets[img], gt_offsets[img + 1]
        preds = np.empty(pe - ps, dtype=np.int64)
        n_p = 0
        for p in range(ps, pe):
            if pred_scores[p] >= score_threshold:
                preds[n_p] = p
                n_p += 1
        n_g = ge - gs
        pair_iou = np.empty(n_p * n_g, dtype=np.float64)
        pair_g = np.empty(n_p * n_g, dtype=np.int64)
        pair_p = np.empty(n_p * n_g, dtype=np.int64)
        k = 0
        for g in range(n_g):
            for j in range(n_p):
                v = _box_iou(pred_xyxy, preds[j], gt_xyxy, gs + g, False)
                if v >= iou_threshold:
                    pair_iou[k] = -v
                    pair_g[k] = g
                    pair_p[k] = j
                    k += 1
        order = np.argsort(pair_iou[:k], kind="mergesort")  # IoU desc; ties: gt, then pred
        g_used = np.zeros(n_g, dtype=np.bool_)
        p_used = np.zeros(n_p, dtype=np.bool_)
        for r in range(k):
            g, j = pair_g[order[r]], pair_p[order[r]]
            if g_used[g] or p_used[j]:
                continue
            g_used[g] = True
            p_used[j] = True
            out[gt_class[gs + g], pred_class[preds[j]]] += 1
        for g in range(n_g):
            if not g_used[g]:
                out[gt_class[gs + g], bg] += 1
        for j in range(n_p):
            if not p_used[j]:
                out[bg, pred_class[preds[j]]] += 1


# ---------------------------------------------------------------- wrappers
def confusion_matrix(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    num_classes: int,
    ignore_index: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(C, C)`` int64 counts, ``[true, predicted]``, of integer ids of any (equal) shape.

    Equal to ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(C))`` on the
    pairs whose true id is not ``ignore_index``. With ``out`` (a ``(C, C)`` int64 array),
    the counts are added to it in place (batch after batch, no ``C x C`` array a batch).

    Raises:
        ValueError: on a shape mismatch or an id outside ``[0, num_classes)``.
    """
    t = np.ascontiguousarray(y_true).reshape(-1)
    p = np.ascontiguousarray(y_pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_pred must have as many ids as y_true ({t.shape[0]}), got {p.shape[0]}")
    if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"ids must be integers, got {t.dtype} and {p.dtype}")
    ignore = -(2**62) if ignore_index is None else int(ignore_index)
    c = int(num_classes)
    out = _check_out(out, c)
    bad = _confusion_counts(t, p, c, ignore, out)
    if bad >= 0:
        check_class_ids(t, num_classes, "y_true", ignore=ignore)
        check_class_ids(p, num_classes, "y_pred")
    return out


def detection_confusion(
    pred_offsets: npt.ArrayLike,
    pred_xyxy: npt.ArrayLike,
    pred_scores: npt.ArrayLike,
    pred_class: npt.ArrayLike,
    gt_offsets: npt.ArrayLike,
    gt_xyxy: npt.ArrayLike,
    gt_class: npt.ArrayLike,
    num_classes: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.25,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Confusion of boxes with a background row and column (ultralytics' layout, transposed
    to ``[true, predicted]``).

    Per image, the predictions scoring ``>= score_threshold`` are paired one-to-one with the
    ground truth, class-agnostically: pairs with IoU ``>= iou_threshold`` (COCO's box IoU)
    taken greedily by descending IoU (ties: lower ground-truth row, then lower prediction
    row). A pair counts at ``[true class, predicted class]``; an unpaired ground-truth box
    at ``[class, C]`` (missed), an unpaired prediction at ``[C, class]`` (background
    predicted as the class).

    Args:
        pred_offsets, pred_xyxy, pred_scores, pred_class: the packed predictions
            (``(B + 1,)``, ``(N, 4)`` float32 xyxy, ``(N,)``, ``(N,)`` ids).
        gt_offsets, gt_xyxy, gt_class: the packed ground truth.
        num_classes: ``C``.
        iou_threshold: the IoU a pair needs.
        score_threshold: predictions scoring lower are left out.
        out: a ``(C + 1, C + 1)`` int64 array to add the counts to, or None.

    Returns:
        ``(C + 1, C + 1)`` int64 (``out`` when given); index ``C`` is the background.
    """
    pb = as_array(pred_xyxy, "pred_xyxy", np.float32, (None, 4))
    n = pb.shape[0]
    gb = as_array(gt_xyxy, "gt_xyxy", np.float32, (None, 4))
    pc = as_array(pred_class, "pred_class", np.int64, (n,))
    gc = as_array(gt_class, "gt_class", np.int64, (gb.shape[0],))
    check_class_ids(pc, num_classes, "pred_class")
    check_class_ids(gc, num_classes, "gt_class")
    size = int(num_classes) + 1
    out = _check_out(out, size)
    _detection_confusion(
        as_array(pred_offsets, "pred_offsets", np.int64, (None,)),
        pb,
        as_array(pred_scores, "pred_scores", np.float32, (n,)),
        pc,
        as_array(gt_offsets, "gt_offsets", np.int64, (None,)),
        gb,
        gc,
        int(num_classes),
        float(iou_threshold),
        float(score_threshold),
        out,
    )
    return out


def _check_out(out: np.ndarray | None, size: int) -> np.ndarray:
    if out is None:
        return np.zeros((size, size), np.int64)
    if out.shape != (size, size) or out.dtype != np.int64 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous ({size}, {size}) int64 array, got {out.shape} {out.dtype}"
        )
    return out


def per_class_scores(matrix: npt.ArrayLike) -> dict[str, np.ndarray]:
    """Per-class scores of a ``(C, C)`` ``[true, predicted]`` count matrix.

    Returns:
        ``{"support", "predicted", "tp"}`` ``(C,)`` int64 (row sums, column sums, diagonal)
        and ``{"precision", "recall", "f1", "iou", "dice"}`` ``(C,)`` float64, NaN where
        the ratio is 0/0 (``precision``: never predicted; ``recall``: no support;
        ``f1``/``iou``/``dice``: neither). ``recall`` is also the class accuracy.
    """
    m = np.asarray(matrix, np.int64)
    tp = np.diag(m).copy()
    support, predicted = m.sum(axis=1), m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        both = support + predicted
        dice = np.where(both > 0, 2 * tp / np.maximum(both, 1), np.nan)
        iou = np.where(both > 0, tp / np.maximum(both - tp, 1), np.nan)
    return {
        "support": support,
        "predicted": predicted,
        "tp": tp,
        "precision": precision,
        "recall": recall,
        "f1": dice,
        "iou": iou,
        "dice": dice,
    }
