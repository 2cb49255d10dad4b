"""Detection metrics on packed batches: greedy matching, per-image counts, AP and mAP.

Layout: image ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of the flat prediction and
ground-truth arrays (see :class:`fastevalcb.types.PackedDetections`).

Rules (the numpy twins in ``tests/helpers/reference.py`` follow the same ones):

* **Ranking.** Predictions are ranked by descending score, ties by lower index (a stable
  sort); NaN scores rank last (still in index order) and still count as predictions.
  ``+inf`` ranks first and ``-inf`` just before NaN.
* **Matching** (COCO ``evaluateImg`` greedy rule, per image and per class). Visiting the
  predictions in rank order, each takes the not-yet-matched ground-truth box *of its class*
  with the highest IoU (IoU ties: lower ground-truth index). It is a true positive when that
  IoU is ``>= iou_threshold``, and the ground-truth box is then marked matched; otherwise it
  is a false positive. So a duplicate of an already matched box is a false positive, and a
  prediction whose class has no ground truth in the image is a false positive. Unmatched
  ground-truth boxes are false negatives.
* **IoU** is :func:`fastevalcb.kernels.boxes._iou` on xyxy pixel boxes: 0 when either box
  has zero area (``x_max <= x_min`` or ``y_max <= y_min``). A box with a non-finite
  coordinate also has IoU 0 with every box, so such a prediction is a false positive and
  such a ground-truth box a false negative.
* **AP** is all-point interpolated (PASCAL VOC 2010+): with ``n_gt`` ground-truth boxes,
  ``AP = (1 / n_gt) * sum over true-positive ranks k of max(precision[j] for j >= k)``,
  i.e. the area under the precision-recall curve after making precision monotone
  non-increasing, summed at the recall steps. Every prediction is its own PR point (tied
  scores are not merged). AP is NaN when ``n_gt == 0`` and 0.0 when there are no
  predictions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids
from fastevalcb.kernels.boxes import _iou


# ---------------------------------------------------------------- kernels
@njit(cache=True, nogil=True)
def _score_order(scores: np.ndarray) -> np.ndarray:
    """Indices ranking ``(N,)`` float scores: descending, ties by lower index, NaN last."""
    n = scores.shape[0]
    finite = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        if not np.isnan(scores[i]):
            finite[m] = i
            m += 1
    finite = finite[:m]
    neg = np.empty(m, dtype=np.float64)
    for j in range(m):
        neg[j] = -np.float64(scores[finite[j]])
    order = np.empty(n, dtype=np.int64)
    order[:m] = finite[np.argsort(neg, kind="mergesort")]
    k = m
    for i in range(n):
        if np.isnan(scores[i]):
            order[k] = i
            k += 1
    return order


@njit(cache=True, nogil=True)
def _finite_rows(xyxy: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: all four coordinates of row ``i`` of ``(N, 4)`` boxes are finite."""
    n = xyxy.shape[0]
    ok = np.empty(n, dtype=np.bool_)
    for i in range(n):
        ok[i] = (
            np.isfinite(xyxy[i, 0])
            and np.isfinite(xyxy[i, 1])
            and np.isfinite(xyxy[i, 2])
            and np.isfinite(xyxy[i, 3])
        )
    return ok


@njit(cache=True, nogil=True)
def _match_detections(
    pred_offsets: np.ndarray,
    pred_xyxy: np.ndarray,
    pred_scores: np.ndarray,
    pred_class: np.ndarray,
    gt_offsets: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_class: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy per-image, per-class matching; see the module docstring for the rules.

    Returns ``tp`` ``(N_pred,)`` bool and ``counts`` ``(B, 3)`` int64 (tp, fp, fn).
    """
    b = pred_offsets.shape[0] - 1
    tp = np.zeros(pred_scores.shape[0], dtype=np.bool_)
    counts = np.zeros((b, 3), dtype=np.int64)
    pred_ok = _finite_rows(pred_xyxy)
    gt_ok = _finite_rows(gt_xyxy)
    for i in range(b):
        ps, pe = pred_offsets[i], pred_offsets[i + 1]
        gs, ge = gt_offsets[i], gt_offsets[i + 1]
        matched = np.zeros(ge - gs, dtype=np.bool_)
        order = _score_order(pred_scores[ps:pe])
        n_tp = 0
        for j in range(pe - ps):
            p = ps + order[j]
            if not pred_ok[p]:
                continue
            best = -1
            best_iou = -1.0
            for g in range(gs, ge):
                if matched[g - gs] or gt_class[g] != pred_class[p] or not gt_ok[g]:
                    continue
                v = _iou(pred_xyxy[p], gt_xyxy[g])
                if v > best_iou:
                    best_iou = v
                    best = g
            if best >= 0 and best_iou >= iou_threshold:
                matched[best - gs] = True
                tp[p] = True
                n_tp += 1
        counts[i, 0] = n_tp
        counts[i, 1] = (pe - ps) - n_tp
        counts[i, 2] = (ge - gs) - n_tp
    return tp, counts


@njit(cache=True, nogil=True)
def _ranked_ap(ranked: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of predictions ``ranked`` (indices into ``tp``), best first.

    ``num_gt`` must be >= 1. Walks the ranks backwards keeping the precision envelope and adds
    it at every true positive (each is a recall step of ``1 / num_gt``).
    """
    n = ranked.shape[0]
    precision = np.empty(n, dtype=np.float64)
    n_tp = 0
    for r in range(n):
        if tp[ranked[r]]:
            n_tp += 1
        precision[r] = n_tp / (r + 1)
    total = 0.0
    envelope = 0.0
    for r in range(n - 1, -1, -1):
        if precision[r] > envelope:
            envelope = precision[r]
        if tp[ranked[r]]:
            total += envelope
    return total / num_gt


@njit(cache=True, nogil=True)
def _average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """AP of one class from ``(N,)`` scores and ``(N,)`` bool tp; NaN when ``num_gt == 0``."""
    if num_gt == 0:
        return np.nan
    return _ranked_ap(_score_order(scores), tp, num_gt)


@njit(cache=True, nogil=True)
def _class_ap(
    scores: np.ndarray, pred_class: np.ndarray, tp: np.ndarray, gt_count: np.ndarray
) -> tuple[np.ndarray, int]:
    """Per-class AP ``(C,)`` float64 (NaN where ``gt_count`` is 0) of one set of predictions.

    Also returns the first class with more true positives than ground-truth boxes, or -1.
    """
    num_classes = gt_count.shape[0]
    n = scores.shape[0]
    order = _score_order(scores)
    # counting sort by class that keeps the score order inside each class
    start = np.zeros(num_classes + 1, dtype=np.int64)
    for p in range(n):
        start[pred_class[p] + 1] += 1
    for c in range(num_classes):
        start[c + 1] += start[c]
    fill = start[:num_classes].copy()
    grouped = np.empty(n, dtype=np.int64)
    for r in range(n):
        p = order[r]
        c = pred_class[p]
        grouped[fill[c]] = p
        fill[c] += 1
    ap = np.full(num_classes, np.nan, dtype=np.float64)
    bad = -1
    for c in range(num_classes):
        ranked = grouped[start[c] : start[c + 1]]
        n_tp = 0
        for r in range(ranked.shape[0]):
            if tp[ranked[r]]:
                n_tp += 1
        if n_tp > gt_count[c] and bad < 0:
            bad = c
        if gt_count[c] > 0:
            ap[c] = _ranked_ap(ranked, tp, gt_count[c])
    return ap, bad


@njit(cache=True, nogil=True)
def _per_image_ap(
    pred_offsets: np.ndarray,
    pred_scores: np.ndarray,
    pred_class: np.ndarray,
    tp: np.ndarray,
    gt_offsets: np.ndarray,
    gt_class: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, int, int]:
    """Per-image mean AP ``(B,)`` float32 over the classes present in the image's GT.

    Also returns ``(image, class)`` of the first class with more true positives than
    ground-truth boxes, or ``(-1, -1)``.
    """
    b = pred_offsets.shape[0] - 1
    out = np.empty(b, dtype=np.float32)
    bad_image = -1
    bad_class = -1
    gt_count = np.zeros(num_classes, dtype=np.int64)
    for i in range(b):
        ps, pe = pred_offsets[i], pred_offsets[i + 1]
        gt_count[:] = 0
        for g in range(gt_offsets[i], gt_offsets[i + 1]):
            gt_count[gt_class[g]] += 1
        ap, bad = _class_ap(pred_scores[ps:pe], pred_class[ps:pe], tp[ps:pe], gt_count)
        if bad >= 0 and bad_image < 0:
            bad_image = i
            bad_class = bad
        out[i] = _mean_over_present(ap, gt_count)
    return out, bad_image, bad_class


@njit(cache=True, nogil=True)
def _mean_average_precision(
    pred_scores: np.ndarray,
    pred_class: np.ndarray,
    tp: np.ndarray,
    gt_class: np.ndarray,
    num_classes: int,
) -> tuple[float, np.ndarray, int]:
    """Dataset-level ``(map, ap_per_class (C,) float64, first over-matched class or -1)``."""
    gt_count = np.zeros(num_classes, dtype=np.int64)
    for g in range(gt_class.shape[0]):
        gt_count[gt_class[g]] += 1
    ap, bad = _class_ap(pred_scores, pred_class, tp, gt_count)
    return _mean_over_present(ap, gt_count), ap, bad


@njit(cache=True, nogil=True)
def _mean_over_present(ap: np.ndarray, gt_count: np.ndarray) -> float:
    """Mean of ``ap`` over classes with ground truth (NaN if none)."""
    total = 0.0
    k = 0
    for c in range(ap.shape[0]):
        if gt_count[c] > 0:
            total += ap[c]
            k += 1
    return np.nan if k == 0 else total / k


@njit(cache=True, nogil=True)
def _precision_recall(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image precision and recall ``(B,)`` float32 from ``(B, 3)`` tp/fp/fn counts."""
    b = counts.shape[0]
    precision = np.empty(b, dtype=np.float32)
    recall = np.empty(b, dtype=np.float32)
    for i in range(b):
        t, f, m = counts[i, 0], counts[i, 1], counts[i, 2]
        precision[i] = np.nan if t + f == 0 else t / (t + f)
        recall[i] = np.nan if t + m == 0 else t / (t + m)
    return precision, recall


# ---------------------------------------------------------------- wrappers
def _check_offsets(offsets: npt.ArrayLike, name: str, n: int, what: str) -> np.ndarray:
    """``(B + 1,)`` int64 offsets that start at 0, never decrease and end at ``n``."""
    off = as_array(offsets, name, np.int64, (None,))
    if off.shape[0] == 0 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0):
        shown = off[:8].tolist() + (["..."] if off.shape[0] > 8 else [])
        raise ValueError(
            f"{name} must start at 0, be non-decreasing and end at {n} (the number of "
            f"{what}), got {shown} of length {off.shape[0]}"
        )
    return off


def _check_same_batch(pred_off: np.ndarray, gt_off: np.ndarray) -> None:
    if pred_off.shape[0] != gt_off.shape[0]:
        raise ValueError(
            f"pred_offsets and gt_offsets must describe the same images: got "
            f"{pred_off.shape[0] - 1} and {gt_off.shape[0] - 1} images"
        )


def _check_num_classes(num_classes: int) -> int:
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return int(num_classes)


def _over_matched(
    tp: np.ndarray, pred_class: np.ndarray, gt_class: np.ndarray, c: int, where: str
) -> ValueError:
    n_tp = int(np.count_nonzero(tp[pred_class == c]))
    n_gt = int(np.count_nonzero(gt_class == c))
    return ValueError(
        f"tp marks {n_tp} predictions of class {c}{where} as true positives but there are "
        f"only {n_gt} ground-truth boxes of that class; pass the tp returned by "
        f"match_detections on the same data"
    )


def match_detections(
    pred_offsets: npt.ArrayLike,
    pred_xyxy: npt.ArrayLike,
    pred_scores: npt.ArrayLike,
    pred_class: npt.ArrayLike,
    gt_offsets: npt.ArrayLike,
    gt_xyxy: npt.ArrayLike,
    gt_class: npt.ArrayLike,
    iou_threshold: float = 0.5,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy per-image, per-class matching of predictions to ground truth.

    See the module docstring for the exact rule (COCO greedy, score-descending, NaN last).

    Args:
        pred_offsets: ``(B + 1,)`` integer offsets of the predictions of each image.
        pred_xyxy: ``(N_pred, 4)`` float xyxy pixel boxes (cast to float32).
        pred_scores: ``(N_pred,)`` float scores (cast to float32).
        pred_class: ``(N_pred,)`` integer class ids.
        gt_offsets: ``(B + 1,)`` integer offsets of the ground truth of each image.
        gt_xyxy: ``(N_gt, 4)`` float xyxy pixel boxes.
        gt_class: ``(N_gt,)`` integer class ids.
        iou_threshold: a match needs ``IoU >= iou_threshold``, in ``(0, 1]``.
        num_classes: when given, class ids must lie in ``[0, num_classes)``; otherwise
            only negative ids are rejected.

    Returns:
        ``(tp, counts)``: ``(N_pred,)`` bool, True where the prediction matched a
        ground-truth box; ``(B, 3)`` int64 per-image ``(tp, fp, fn)``.

    Raises:
        ValueError: on a shape mismatch, bad offsets, an unknown class id or a threshold
            outside ``(0, 1]``.
    """
    pb = as_array(pred_xyxy, "pred_xyxy", np.float32, (None, 4))
    n = pb.shape[0]
    ps = as_array(pred_scores, "pred_scores", np.float32, (n,))
    pc = as_array(pred_class, "pred_class", np.int64, (n,))
    gb = as_array(gt_xyxy, "gt_xyxy", np.float32, (None, 4))
    gc = as_array(gt_class, "gt_class", np.int64, (gb.shape[0],))
    po = _check_offsets(pred_offsets, "pred_offsets", n, "predictions")
    go = _check_offsets(gt_offsets, "gt_offsets", gb.shape[0], "ground-truth boxes")
    _check_same_batch(po, go)
    check_class_ids(pc, num_classes, "pred_class")
    check_class_ids(gc, num_classes, "gt_class")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    return _match_detections(po, pb, ps, pc, go, gb, gc, float(iou_threshold))


def average_precision(scores: npt.ArrayLike, tp: npt.ArrayLike, num_gt: int) -> float:
    """All-point interpolated AP of one class.

    Args:
        scores: ``(N,)`` float scores of every prediction of the class, any order (cast to
            float64; NaN ranks last).
        tp: ``(N,)`` bool, True for the predictions that matched a ground-truth box.
        num_gt: number of ground-truth boxes of the class, ``>= tp.sum()``.

    Returns:
        AP in ``[0, 1]``; NaN when ``num_gt == 0``, 0.0 when there are no predictions.

    Raises:
        ValueError: on a length mismatch or more true positives than ``num_gt``.
    """
    s = as_array(scores, "scores", np.float64, (None,))
    t = as_array(tp, "tp", np.bool_, (s.shape[0],))
    if int(num_gt) != num_gt or num_gt < 0:
        raise ValueError(f"num_gt must be an integer >= 0, got {num_gt!r}")
    n_tp = int(np.count_nonzero(t))
    if n_tp > num_gt:
        raise ValueError(f"tp has {n_tp} true positives but num_gt is only {int(num_gt)}")
    return float(_average_precision(s, t, int(num_gt)))


def per_image_ap(
    pred_offsets: npt.ArrayLike,
    pred_scores: npt.ArrayLike,
    pred_class: npt.ArrayLike,
    tp: npt.ArrayLike,
    gt_offsets: npt.ArrayLike,
    gt_class: npt.ArrayLike,
    num_classes: int,
) -> np.ndarray:
    """Per-image AP: the mean, over the classes with ground truth in the image, of AP.

    Args:
        pred_offsets: ``(B + 1,)`` integer offsets of the predictions of each image.
        pred_scores: ``(N_pred,)`` float scores (cast to float64 for ranking).
        pred_class: ``(N_pred,)`` integer class ids in ``[0, num_classes)``.
        tp: ``(N_pred,)`` bool from :func:`match_detections`.
        gt_offsets: ``(B + 1,)`` integer offsets of the ground truth of each image.
        gt_class: ``(N_gt,)`` integer class ids in ``[0, num_classes)``.
        num_classes: number of classes ``C``.

    Returns:
        ``(B,)`` float32; NaN for an image without ground-truth boxes. Predictions of
        classes absent from the image's ground truth do not enter the mean (they are still
        false positives in :func:`match_detections` counts).

    Raises:
        ValueError: on shape or offset mismatch, an unknown class id, or a ``tp`` with more
            true positives of a class in an image than it has ground-truth boxes.
    """
    c = _check_num_classes(num_classes)
    s = as_array(pred_scores, "pred_scores", np.float64, (None,))
    n = s.shape[0]
    pc = as_array(pred_class, "pred_class", np.int64, (n,))
    t = as_array(tp, "tp", np.bool_, (n,))
    gc = as_array(gt_class, "gt_class", np.int64, (None,))
    po = _check_offsets(pred_offsets, "pred_offsets", n, "predictions")
    go = _check_offsets(gt_offsets, "gt_offsets", gc.shape[0], "ground-truth boxes")
    _check_same_batch(po, go)
    check_class_ids(pc, c, "pred_class")
    check_class_ids(gc, c, "gt_class")
    ap, bad_image, bad_class = _per_image_ap(po, s, pc, t, go, gc, c)
    if bad_image >= 0:
        p, g = slice(po[bad_image], po[bad_image + 1]), slice(go[bad_image], go[bad_image + 1])
        raise _over_matched(t[p], pc[p], gc[g], bad_class, f" in image {bad_image}")
    return ap


def mean_average_precision(
    pred_scores: npt.ArrayLike,
    pred_class: npt.ArrayLike,
    tp: npt.ArrayLike,
    gt_class: npt.ArrayLike,
    num_classes: int,
) -> tuple[float, np.ndarray]:
    """Dataset-level AP per class and their mean over all images (flat arrays).

    With ``tp`` from :func:`match_detections` at ``iou_threshold=0.5`` this is VOC-style
    mAP@0.5 (AP50).

    Args:
        pred_scores: ``(N_pred,)`` float scores of all images (cast to float64).
        pred_class: ``(N_pred,)`` integer class ids in ``[0, num_classes)``.
        tp: ``(N_pred,)`` bool from :func:`match_detections`.
        gt_class: ``(N_gt,)`` integer class ids of all images in ``[0, num_classes)``.
        num_classes: number of classes ``C``.

    Returns:
        ``(map, ap_per_class)``: float mean over the classes with ground truth (NaN if
        there are none) and ``(C,)`` float64 AP, NaN for classes without ground truth.

    Raises:
        ValueError: on a length mismatch, an unknown class id, or more true positives of a
            class than it has ground-truth boxes.
    """
    c = _check_num_classes(num_classes)
    s = as_array(pred_scores, "pred_scores", np.float64, (None,))
    n = s.shape[0]
    pc = as_array(pred_class, "pred_class", np.int64, (n,))
    t = as_array(tp, "tp", np.bool_, (n,))
    gc = as_array(gt_class, "gt_class", np.int64, (None,))
    check_class_ids(pc, c, "pred_class")
    check_class_ids(gc, c, "gt_class")
    m, ap, bad = _mean_average_precision(s, pc, t, gc, c)
    if bad >= 0:
        raise _over_matched(t, pc, gc, bad, "")
    return float(m), ap


def precision_recall(counts: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-image precision ``tp / (tp + fp)`` and recall ``tp / (tp + fn)``.

    Args:
        counts: ``(B, 3)`` non-negative integer ``(tp, fp, fn)`` from
            :func:`match_detections`.

    Returns:
        ``(precision, recall)``, each ``(B,)`` float32; precision is NaN for an image without
        predictions, recall NaN for an image without ground-truth boxes.
    """
    cnt = as_array(counts, "counts", np.int64, (None, 3))
    if np.any(cnt < 0):
        raise ValueError(f"counts must be >= 0, got {int(cnt.min())}")
    return _precision_recall(cnt)
