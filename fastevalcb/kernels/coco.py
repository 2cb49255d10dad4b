"""COCO box evaluation (pycocotools ``COCOeval``, ``iouType="bbox"``) on packed batches.

Two steps, so a fit can evaluate batch by batch and keep only small arrays:

1. :func:`coco_match` matches one batch of images (``COCOeval.evaluateImg`` for every
   image, class, area range and IoU threshold) and returns one row per *kept* detection
   (the best ``max_dets[-1]`` of each image and class): its class, score, rank in its image
   and class, and two bit sets (bit ``t * A + a``: IoU threshold ``t``, area range ``a``),
   ``matched`` and ``ignored``; plus the count of non-ignored ground truth per class and
   area range. Nothing here depends on other images, so batches concatenate.
2. :func:`coco_accumulate` turns the concatenated rows into ``COCOeval.accumulate``'s
   precision (101 recall points) and recall, and :func:`coco_stats` into
   ``COCOeval.summarize``'s 12 numbers.

The rules are COCOeval's, to the last tie:

* **Ranking.** Detections of one image and class are sorted by descending score with a
  stable sort (ties: the earlier row first); only the first ``max_dets[-1]`` are matched
  and kept (COCO's ``maxDets`` caps each image *and class*). Across images, the rows of a
  class are merged by a stable sort on descending score (ties: earlier image, then rank).
* **IoU** is ``maskApi.c``'s ``bbIou`` in float64 on xyxy boxes: 0 unless the boxes overlap
  with positive width and height; ``inter / (area_d + area_g - inter)``, or
  ``inter / area_d`` against a crowd box. Zero-area and inverted boxes overlap nothing but
  still take a ``maxDets`` slot and count as false positives, as in COCO.
* **Areas** are box areas ``(x2 - x1) * (y2 - y1)`` (no segmentation areas); a ground-truth
  box is ignored in an area range when it is a crowd box or its area lies outside the
  closed range; ignored boxes are visited last.
* **Matching** (per IoU threshold ``t``): detections in rank order; each takes, among the
  ground truth not yet matched (crowd boxes can be matched again), the last box with the
  highest IoU ``>= min(t, 1 - 1e-10)`` (an IoU equal to the best so far replaces it), and
  stops at the first ignored box once it holds a non-ignored match. A detection matched to
  an ignored box is ignored; an unmatched one whose area is outside the range is ignored.
* **Precision** at recall ``r`` is the precision envelope at the first rank whose recall
  is ``>= r`` (``np.searchsorted(..., side="left")``), 0 past the last recall reached;
  ``precision = tp / (tp + fp + eps)``. A class with no non-ignored ground truth in an
  area range gets -1 (COCO's "absent"), so it drops out of every mean, and predictions
  of a class absent from the ground truth change nothing.

About 700 lines, one algorithm: matching, accumulation and the 12 summary numbers follow
``COCOeval`` step by step and are checked against it together.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids

#: ``COCOeval.Params``' defaults (bbox), built exactly as pycocotools builds them.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array([[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], np.float64)
AREA_NAMES = ("all", "small", "medium", "large")
MAX_DETS = np.array([1, 10, 100], np.int64)
#: The names of :func:`coco_stats`' 12 numbers, in ``COCOeval.stats`` order.
STAT_NAMES = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)
_EPS = np.spacing(1)


class CocoMatches(NamedTuple):
    """One batch's kept detections (see the module docstring), concatenable by row."""

    det_class: np.ndarray  # (K,) int32
    det_score: np.ndarray  # (K,) float32
    det_rank: np.ndarray  # (K,) int32, rank in its image and class (0 = best)
    matched: np.ndarray  # (K,) uint64 bit set, bit t * A + a
    ignored: np.ndarray  # (K,) uint64 bit set
    num_gt: np.ndarray  # (C, A) int64 non-ignored ground-truth boxes
    det_index: np.ndarray  # (K,) int64 row of the detection in the batch's arrays


class CocoResult(NamedTuple):
    """``COCOeval.accumulate`` + ``summarize``, reduced to what is logged.

    Attributes:
        stats: ``(12,)`` float64, ``COCOeval.stats`` (names in :data:`STAT_NAMES`); -1
            where COCO prints -1 (no ground truth in the range).
        ap: ``(T, C, A)`` float64, per IoU threshold, class and area range, the mean of the
            101-point precision at the largest ``maxDets``; -1 for absent classes.
        recall: ``(T, C, A, M)`` float64, COCO's recall; -1 for absent classes.
        precision: ``(R, C)`` float64, COCO's interpolated precision at the first IoU
            threshold (0.5), all areas, the largest ``maxDets``: the PR curve of a class.
        num_gt: ``(C, A)`` int64 non-ignored ground-truth boxes.
    """

    stats: np.ndarray
    ap: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    num_gt: np.ndarray

    def class_ap(self, t: int | None = None, area: int = 0) -> np.ndarray:
        """``(C,)`` AP per class: over all IoU thresholds (``t=None``) or at index ``t``;
        NaN for classes without ground truth."""
        values = self.ap[:, :, area].mean(axis=0) if t is None else self.ap[t, :, area]
        return np.where(self.num_gt[:, area] > 0, values, np.nan)


# ---------------------------------------------------------------- kernels
@njit(cache=True, nogil=True)
def _stable_desc(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``(N,)`` scores descending, stably (``argsort(-s, 'mergesort')``:
    NaN last)."""
    neg = np.empty(scores.shape[0], dtype=np.float64)
    for i in range(scores.shape[0]):
        neg[i] = -np.float64(scores[i])
    return np.argsort(neg, kind="mergesort")


@njit(cache=True, nogil=True, inline="always")
def _box_iou(boxes_d: np.ndarray, i: int, boxes_g: np.ndarray, j: int, crowd: bool) -> float:
    """``bbIou`` of xyxy float32 box ``boxes_d[i]`` and ``boxes_g[j]``, in float64."""
    dx1, dy1 = np.float64(boxes_d[i, 0]), np.float64(boxes_d[i, 1])
    dx2, dy2 = np.float64(boxes_d[i, 2]), np.float64(boxes_d[i, 3])
    gx1, gy1 = np.float64(boxes_g[j, 0]), np.float64(boxes_g[j, 1])
    gx2, gy2 = np.float64(boxes_g[j, 2]), np.float64(boxes_g[j, 3])
    w = min(dx2, gx2) - max(dx1, gx1)
    if not w > 0:
        return 0.0
    h = min(dy2, gy2) - max(dy1, gy1)
    if not h > 0:
        return 0.0
    inter = w * h
    da = (dx2 - dx1) * (dy2 - dy1)
    if crowd:
        return float(inter / da)
    ga = (gx2 - gx1) * (gy2 - gy1)
    return float(inter / (da + ga - inter))


@njit(cache=True, nogil=True, inline="always")
def _box_area(boxes: np.ndarray, i: int) -> float:
    return float(
        (np.float64(boxes[i, 2]) - np.float64(boxes[i, 0]))
        * (np.float64(boxes[i, 3]) - np.float64(boxes[i, 1]))
    )


@njit(cache=True, nogil=True)
def _match_image_class(
    dets: np.ndarray,
    gts: np.ndarray,
    pred_xyxy: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_crowd: np.ndarray,
    iou_thrs: np.ndarray,
    area_rng: np.ndarray,
    matched: np.ndarray,
    ignored: np.ndarray,
    num_gt: np.ndarray,
    cls: int,
    scratch_iou: np.ndarray,
    scratch_g: np.ndarray,
    scratch_d: np.ndarray,
    scratch_ig: np.ndarray,
) -> None:
    """``evaluateImg`` of one image and class for every area range and IoU threshold.

    ``dets``: rows of the kept detections, best first; ``gts``: rows of the ground truth.
    Writes the bits of ``dets`` (positions ``0..D-1`` of ``matched``/``ignored``) and adds
    to ``num_gt[cls]``. ``scratch_*``: work arrays of at least ``(D, G)``, ``(4, G)``,
    ``(2, D)`` and ``(A, G)`` (one allocation per batch, not per image and class).

    An area range that ignores the same ground truth as an earlier one matches the same
    way (only its unmatched detections' area test differs): its bits are copied.
    """
    d_n, g_n = dets.shape[0], gts.shape[0]
    n_t, n_a = iou_thrs.shape[0], area_rng.shape[0]
    if g_n == 0:  # nothing to match: a detection is ignored where its area is out of range
        for i in range(d_n):
            area = _box_area(pred_xyxy, dets[i])
            for a in range(n_a):
                if area < area_rng[a, 0] or area > area_rng[a, 1]:
                    for t in range(n_t):
                        ignored[i] |= np.uint64(1) << np.uint64(t * n_a + a)
        return
    iou = scratch_iou
    for i in range(d_n):
        for j in range(g_n):
            iou[i, j] = _box_iou(pred_xyxy, dets[i], gt_xyxy, gts[j], gt_crowd[gts[j]])
    g_area, order, g_ig, taken = scratch_g[0], scratch_g[1], scratch_g[2], scratch_g[3]
    d_area, d_out = scratch_d[0], scratch_d[1]
    for j in range(g_n):
        g_area[j] = _box_area(gt_xyxy, gts[j])
    for i in range(d_n):
        d_area[i] = _box_area(pred_xyxy, dets[i])
    for a in range(n_a):
        lo, hi = area_rng[a, 0], area_rng[a, 1]
        k = 0
        for j in range(g_n):
            ig = gt_crowd[gts[j]] or g_area[j] < lo or g_area[j] > hi
            g_ig[j] = 1.0 if ig else 0.0
            scratch_ig[a, j] = g_ig[j]
            if not ig:
                order[k] = j
                k += 1
        num_gt[cls, a] += k
        for j in range(g_n):
            if g_ig[j] != 0.0:
                order[k] = j
                k += 1
        for i in range(d_n):
            d_out[i] = 1.0 if (d_area[i] < lo or d_area[i] > hi) else 0.0
        same = -1  # an earlier area range ignoring the same ground truth
        for b in range(a):
            equal = True
            for j in range(g_n):
                if scratch_ig[b, j] != g_ig[j]:
                    equal = False
                    break
            if equal:
                same = b
                break
        if same >= 0:
            for t in range(n_t):
                src = np.uint64(1) << np.uint64(t * n_a + same)
                bit = np.uint64(1) << np.uint64(t * n_a + a)
                for i in range(d_n):
                    if (matched[i] & src) != 0:
                        matched[i] |= bit
                        if (ignored[i] & src) != 0:
                            ignored[i] |= bit
                    elif d_out[i] != 0.0:
                        ignored[i] |= bit
            continue
        for t in range(n_t):
            bit = np.uint64(1) << np.uint64(t * n_a + a)
            taken[:g_n] = 0.0
            for i in range(d_n):
                best = min(iou_thrs[t], 1 - 1e-10)
                m = -1
                for k in range(g_n):
                    j = int(order[k])
                    if taken[k] != 0.0 and not gt_crowd[gts[j]]:
                        continue
                    if m > -1 and g_ig[int(order[m])] == 0.0 and g_ig[j] != 0.0:
                        break
                    if iou[i, j] < best:
                        continue
                    best = iou[i, j]
                    m = k
                if m == -1:
                    if d_out[i] != 0.0:
                        ignored[i] |= bit
                    continue
                taken[m] = 1.0
                matched[i] |= bit
                if g_ig[int(order[m])] != 0.0:
                    ignored[i] |= bit


@njit(cache=True, nogil=True)
def _group_by_class(rows: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``rows`` (of one image) sorted by class, each class's best score first (stable)."""
    by_score = rows[_stable_desc(scores[rows])]
    grouped: np.ndarray = by_score[np.argsort(classes[by_score], kind="mergesort")]
    return grouped


@njit(cache=True, nogil=True)
def _coco_match(
    pred_offsets: np.ndarray,
    pred_xyxy: np.ndarray,
    pred_scores: np.ndarray,
    pred_class: np.ndarray,
    gt_offsets: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_class: np.ndarray,
    gt_crowd: np.ndarray,
    num_classes: int,
    iou_thrs: np.ndarray,
    area_rng: np.ndarray,
    max_det: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match a batch; see :func:`coco_match`."""
    n_images = pred_offsets.shape[0] - 1
    n = pred_scores.shape[0]
    det_index = np.empty(n, dtype=np.int64)
    det_rank = np.empty(n, dtype=np.int32)
    matched = np.zeros(n, dtype=np.uint64)
    ignored = np.zeros(n, dtype=np.uint64)
    num_gt = np.zeros((num_classes, area_rng.shape[0]), dtype=np.int64)
    max_g = 1
    for img in range(n_images):
        max_g = max(max_g, gt_offsets[img + 1] - gt_offsets[img])
    scratch_iou = np.empty((max_det, max_g), dtype=np.float64)
    scratch_g = np.empty((4, max_g), dtype=np.float64)  # area, order, ignored, taken
    scratch_d = np.empty((2, max_det), dtype=np.float64)  # area, out of range
    scratch_ig = np.empty((area_rng.shape[0], max_g), dtype=np.float64)  # ignored, per area
    kept = 0
    for img in range(n_images):
        preds = _group_by_class(
            np.arange(pred_offsets[img], pred_offsets[img + 1]), pred_class, pred_scores
        )
        gts = np.arange(gt_offsets[img], gt_offsets[img + 1])
        gts = gts[np.argsort(gt_class[gts], kind="mergesort")]
        p, g = 0, 0
        while p < preds.shape[0] or g < gts.shape[0]:
            cp = pred_class[preds[p]] if p < preds.shape[0] else num_classes
            cg = gt_class[gts[g]] if g < gts.shape[0] else num_classes
            cls = min(cp, cg)
            p_end = p
            while p_end < preds.shape[0] and pred_class[preds[p_end]] == cls:
                p_end += 1
            g_end = g
            while g_end < gts.shape[0] and gt_class[gts[g_end]] == cls:
                g_end += 1
            dets = preds[p : min(p_end, p + max_det)]
            _match_image_class(
                dets,
                gts[g:g_end],
                pred_xyxy,
                gt_xyxy,
                gt_crowd,
                iou_thrs,
                area_rng,
                matched[kept : kept + dets.shape[0]],
                ignored[kept : kept + dets.shape[0]],
                num_gt,
                cls,
                scratch_iou,
                scratch_g,
                scratch_d,
                scratch_ig,
            )
            for r in range(dets.shape[0]):
                det_index[kept + r] = dets[r]
                det_rank[kept + r] = r
            kept += dets.shape[0]
            p, g = p_end, g_end
    return det_index[:kept], det_rank[:kept], matched[:kept], ignored[:kept], num_gt


@njit(cache=True, nogil=True)
def _class_order(
    det_class: np.ndarray, det_score: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by class (counting sort, stable), each class by descending score
    (stable); and ``(C + 1,)`` start offsets."""
    n = det_class.shape[0]
    start = np.zeros(num_classes + 1, dtype=np.int64)
    for i in range(n):
        start[det_class[i] + 1] += 1
    for c in range(num_classes):
        start[c + 1] += start[c]
    fill = start[:num_classes].copy()
    grouped = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = det_class[i]
        grouped[fill[c]] = i
        fill[c] += 1
    for c in range(num_classes):
        rows = grouped[start[c] : start[c + 1]]
        grouped[start[c] : start[c + 1]] = rows[_stable_desc(det_score[rows])]
    return grouped, start


@njit(cache=True, nogil=True)
def _coco_accumulate(
    det_class: np.ndarray,
    det_score: np.ndarray,
    det_rank: np.ndarray,
    matched: np.ndarray,
    ignored: np.ndarray,
    num_gt: np.ndarray,
    iou_thrs: np.ndarray,
    rec_thrs: np.ndarray,
    max_dets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``COCOeval.accumulate``; see :func:`coco_accumulate`."""
    num_classes, n_a = num_gt.shape[0], num_gt.shape[1]
    n_t, n_r, n_m = iou_thrs.shape[0], rec_thrs.shape[0], max_dets.shape[0]
    ap = np.full((n_t, num_classes, n_a), -1.0)
    recall = np.full((n_t, num_classes, n_a, n_m), -1.0)
    precision = np.full((n_r, num_classes), -1.0)
    grouped, start = _class_order(det_class, det_score, num_classes)
    top = max_dets[n_m - 1]
    tp_m = np.zeros(n_m, dtype=np.int64)
    for c in range(num_classes):
        # the class's rows within the largest cap, best first, copied contiguous
        rows = grouped[start[c] : start[c + 1]]
        nd = 0
        for i in range(rows.shape[0]):
            if det_rank[rows[i]] < top:
                nd += 1
        rank = np.empty(nd, dtype=np.int64)
        hit = np.empty(nd, dtype=np.uint64)
        skip = np.empty(nd, dtype=np.uint64)
        k = 0
        for i in range(rows.shape[0]):
            r = rows[i]
            if det_rank[r] < top:
                rank[k], hit[k], skip[k] = det_rank[r], matched[r], ignored[r]
                k += 1
        pr = np.empty(nd, dtype=np.float64)
        rc = np.empty(nd, dtype=np.float64)
        for a in range(n_a):
            npig = num_gt[c, a]
            if npig == 0:
                continue
            for t in range(n_t):
                bit = np.uint64(1) << np.uint64(t * n_a + a)
                tp_m[:] = 0
                # one pass: recall at every cap, precision at the largest (COCO keeps the
                # ignored rows as entries of its arrays: the same interpolated result)
                tp, fp, k = 0.0, 0.0, 0
                for i in range(nd):
                    if (skip[i] & bit) != 0:
                        continue
                    if (hit[i] & bit) != 0:
                        tp += 1.0
                        for m in range(n_m):
                            if rank[i] < max_dets[m]:
                                tp_m[m] += 1
                    else:
                        fp += 1.0
                    rc[k] = tp / npig
                    pr[k] = tp / (fp + tp + _EPS)
                    k += 1
                for m in range(n_m):
                    recall[t, c, a, m] = tp_m[m] / npig
                for i in range(k - 1, 0, -1):
                    pr[i - 1] = max(pr[i - 1], pr[i])
                total = 0.0
                i = 0
                for ri in range(n_r):
                    while i < k and rc[i] < rec_thrs[ri]:
                        i += 1
                    q = pr[i] if i < k else 0.0
                    total += q
                    if t == 0 and a == 0:
                        precision[ri, c] = q
                ap[t, c, a] = total / n_r
    return ap, recall, precision


@njit(cache=True, nogil=True)
def _f1_sweep(
    det_class: np.ndarray,
    det_score: np.ndarray,
    det_rank: np.ndarray,
    matched: np.ndarray,
    ignored: np.ndarray,
    num_gt: np.ndarray,
    max_det: int,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class counts at IoU bit 0 (t=0.5, all areas): the mean F1 over classes with
    ground truth at each threshold (``score >= thr``); returns ``(mean_f1 (G,), tp (C, G),
    fp (C, G))`` where the counts are cumulative from the highest threshold."""
    num_classes, n_g = num_gt.shape[0], thresholds.shape[0]
    tp = np.zeros((num_classes, n_g), dtype=np.int64)
    fp = np.zeros((num_classes, n_g), dtype=np.int64)
    one = np.uint64(1)
    for r in range(det_class.shape[0]):
        if det_rank[r] >= max_det or (ignored[r] & one) != 0:
            continue
        s = det_score[r]
        # the last threshold <= s: the detection counts at thresholds[0..j]
        lo, hi = 0, n_g
        while lo < hi:
            mid = (lo + hi) // 2
            if thresholds[mid] <= s:
                lo = mid + 1
            else:
                hi = mid
        j = lo - 1
        if j < 0:
            continue
        if (matched[r] & one) != 0:
            tp[det_class[r], j] += 1
        else:
            fp[det_class[r], j] += 1
    mean_f1 = np.zeros(n_g, dtype=np.float64)
    k = 0
    for c in range(num_classes):
        for j in range(n_g - 2, -1, -1):
            tp[c, j] += tp[c, j + 1]
            fp[c, j] += fp[c, j + 1]
        npig = num_gt[c, 0]
        if npig == 0:
            continue
        k += 1
        for j in range(n_g):
            denom = 2 * tp[c, j] + fp[c, j] + (npig - tp[c, j])
            mean_f1[j] += 2 * tp[c, j] / denom
    if k > 0:
        mean_f1 /= k
    return mean_f1, tp, fp


# ---------------------------------------------------------------- wrappers
def _offsets(offsets: npt.ArrayLike, name: str, n: int) -> np.ndarray:
    off = as_array(offsets, name, np.int64, (None,))
    if off.shape[0] == 0 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0):
        raise ValueError(
            f"{name} must start at 0, be non-decreasing and end at {n}, got "
            f"{off[:8].tolist()} of length {off.shape[0]}"
        )
    return off


def coco_match(
    pred_offsets: npt.ArrayLike,
    pred_xyxy: npt.ArrayLike,
    pred_scores: npt.ArrayLike,
    pred_class: npt.ArrayLike,
    gt_offsets: npt.ArrayLike,
    gt_xyxy: npt.ArrayLike,
    gt_class: npt.ArrayLike,
    num_classes: int,
    gt_crowd: npt.ArrayLike | None = None,
    iou_thresholds: npt.ArrayLike = IOU_THRESHOLDS,
    area_ranges: npt.ArrayLike = AREA_RANGES,
    max_dets: npt.ArrayLike = MAX_DETS,
) -> CocoMatches:
    """COCO matching of one batch of images (``COCOeval.evaluateImg``), by the module's rules.

    Args:
        pred_offsets: ``(B + 1,)`` offsets of each image's predictions.
        pred_xyxy: ``(N, 4)`` float32 xyxy pixel boxes.
        pred_scores: ``(N,)`` float32 scores.
        pred_class: ``(N,)`` class ids in ``[0, num_classes)``.
        gt_offsets: ``(B + 1,)`` offsets of each image's ground truth.
        gt_xyxy: ``(G, 4)`` float32 xyxy pixel boxes.
        gt_class: ``(G,)`` class ids in ``[0, num_classes)``.
        num_classes: ``C``.
        gt_crowd: ``(G,)`` bool crowd flags (COCO's ``iscrowd``), or None for none.
        iou_thresholds: ``(T,)`` IoU thresholds (COCO's 0.5:0.05:0.95).
        area_ranges: ``(A, 2)`` closed area ranges (all, small, medium, large);
            ``T * A <= 64``.
        max_dets: ``(M,)`` increasing detection caps per image and class (1, 10, 100).

    Returns:
        :class:`CocoMatches` of the kept detections, in image, class, rank order.
    """
    pb = as_array(pred_xyxy, "pred_xyxy", np.float32, (None, 4))
    n = pb.shape[0]
    ps = as_array(pred_scores, "pred_scores", np.float32, (n,))
    pc = as_array(pred_class, "pred_class", np.int64, (n,))
    gb = as_array(gt_xyxy, "gt_xyxy", np.float32, (None, 4))
    gc = as_array(gt_class, "gt_class", np.int64, (gb.shape[0],))
    crowd = (
        np.zeros(gb.shape[0], np.bool_)
        if gt_crowd is None
        else as_array(gt_crowd, "gt_crowd", np.bool_, (gb.shape[0],))
    )
    po = _offsets(pred_offsets, "pred_offsets", n)
    go = _offsets(gt_offsets, "gt_offsets", gb.shape[0])
    if po.shape != go.shape:
        raise ValueError(
            f"pred_offsets and gt_offsets must describe the same images: got "
            f"{po.shape[0] - 1} and {go.shape[0] - 1}"
        )
    check_class_ids(pc, num_classes, "pred_class")
    check_class_ids(gc, num_classes, "gt_class")
    thrs = as_array(iou_thresholds, "iou_thresholds", np.float64, (None,))
    areas = as_array(area_ranges, "area_ranges", np.float64, (None, 2))
    caps = as_array(max_dets, "max_dets", np.int64, (None,))
    if thrs.shape[0] * areas.shape[0] > 64:
        raise ValueError(
            f"at most 64 (IoU threshold, area range) pairs, got {thrs.shape[0]} x {areas.shape[0]}"
        )
    if caps.shape[0] == 0 or np.any(caps < 1) or np.any(np.diff(caps) <= 0):
        raise ValueError(f"max_dets must be increasing positive ints, got {caps.tolist()}")
    index, rank, matched, ignored, num_gt = _coco_match(
        po, pb, ps, pc, go, gb, gc, crowd, int(num_classes), thrs, areas, int(caps[-1])
    )
    return CocoMatches(pc[index].astype(np.int32), ps[index], rank, matched, ignored, num_gt, index)


def concat_matches(
    parts: list[CocoMatches], num_classes: int, num_areas: int = len(AREA_RANGES)
) -> CocoMatches:
    """Rows of several batches' :class:`CocoMatches` in order, ground-truth counts summed."""
    if not parts:
        empty = np.zeros(0, np.int64)
        return CocoMatches(
            empty.astype(np.int32),
            empty.astype(np.float32),
            empty.astype(np.int32),
            empty.astype(np.uint64),
            empty.astype(np.uint64),
            np.zeros((num_classes, num_areas), np.int64),
            empty,
        )
    return CocoMatches(
        np.concatenate([p.det_class for p in parts]),
        np.concatenate([p.det_score for p in parts]),
        np.concatenate([p.det_rank for p in parts]),
        np.concatenate([p.matched for p in parts]),
        np.concatenate([p.ignored for p in parts]),
        np.sum([p.num_gt for p in parts], axis=0),
        np.zeros(0, np.int64),
    )


def coco_accumulate(
    matches: CocoMatches,
    iou_thresholds: npt.ArrayLike = IOU_THRESHOLDS,
    recall_thresholds: npt.ArrayLike = RECALL_THRESHOLDS,
    max_dets: npt.ArrayLike = MAX_DETS,
) -> CocoResult:
    """``COCOeval.accumulate`` and ``summarize`` over the rows of every batch.

    Args:
        matches: :func:`coco_match` rows of all images, in image order
            (:func:`concat_matches`), matched with the same thresholds, ranges and caps.
        iou_thresholds: ``(T,)`` the thresholds the rows were matched at.
        recall_thresholds: ``(R,)`` increasing recall points (COCO's 101).
        max_dets: ``(M,)`` the caps (COCO's 1, 10, 100).

    Returns:
        :class:`CocoResult`; ``stats`` equal ``COCOeval.stats`` (-1 where undefined).
    """
    thrs = np.ascontiguousarray(iou_thresholds, np.float64)
    caps = np.ascontiguousarray(max_dets, np.int64)
    num_gt = np.ascontiguousarray(matches.num_gt, np.int64)
    ap, recall, precision = _coco_accumulate(
        np.ascontiguousarray(matches.det_class, np.int64),
        np.ascontiguousarray(matches.det_score, np.float32),
        np.ascontiguousarray(matches.det_rank, np.int32),
        np.ascontiguousarray(matches.matched, np.uint64),
        np.ascontiguousarray(matches.ignored, np.uint64),
        num_gt,
        thrs,
        np.ascontiguousarray(recall_thresholds, np.float64),
        caps,
    )
    return CocoResult(coco_stats(ap, recall, thrs), ap, recall, precision, num_gt)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def coco_stats(
    ap: np.ndarray, recall: np.ndarray, iou_thresholds: npt.ArrayLike = IOU_THRESHOLDS
) -> np.ndarray:
    """``COCOeval.summarize``'s 12 numbers (:data:`STAT_NAMES`) from :class:`CocoResult`'s
    ``ap`` ``(T, C, A)`` and ``recall`` ``(T, C, A, M)``: means over the entries > -1, -1
    when there are none (the mean over classes and thresholds of the mean over recall
    points is COCO's mean over all three, as every present class fills all of them)."""
    thrs = np.asarray(iou_thresholds, np.float64)
    stats = [_mean_valid(ap[:, :, 0])]
    for iou in (0.5, 0.75):  # looked up as summarize looks them up
        t = np.where(iou == thrs)[0]
        stats.append(_mean_valid(ap[t, :, 0]))
    stats += [_mean_valid(ap[:, :, a]) for a in (1, 2, 3)]
    m_last = recall.shape[3] - 1
    stats += [_mean_valid(recall[:, :, 0, min(m, m_last)]) for m in (0, 1, 2)]
    stats += [_mean_valid(recall[:, :, a, m_last]) for a in (1, 2, 3)]
    return np.array(stats, np.float64)


def f1_sweep(
    matches: CocoMatches, thresholds: npt.ArrayLike | None = None, max_det: int = int(MAX_DETS[-1])
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision/recall/F1 per class on a confidence grid, at IoU 0.5 over all areas.

    A detection counts at threshold ``s`` when its score is ``>= s`` (ultralytics' P/R
    columns, without their curve smoothing). Matching is COCO's (:func:`coco_match`'s
    first bit), so crowd matches and the ``max_det`` cap apply.

    Args:
        matches: concatenated :func:`coco_match` rows.
        thresholds: ``(G,)`` increasing score thresholds; default 0, 0.001, ..., 1.
        max_det: detections per image and class that count.

    Returns:
        ``(thresholds (G,), mean_f1 (G,), tp (C, G), fp (C, G))``: the mean F1 over the
        classes with ground truth (0 for none) and the per-class counts.
    """
    grid = (
        np.linspace(0.0, 1.0, 1001)
        if thresholds is None
        else np.ascontiguousarray(thresholds, np.float64)
    )
    mean_f1, tp, fp = _f1_sweep(
        np.ascontiguousarray(matches.det_class, np.int64),
        np.ascontiguousarray(matches.det_score, np.float32),
        np.ascontiguousarray(matches.det_rank, np.int32),
        np.ascontiguousarray(matches.matched, np.uint64),
        np.ascontiguousarray(matches.ignored, np.uint64),
        np.ascontiguousarray(matches.num_gt, np.int64),
        int(max_det),
        grid,
    )
    return grid, mean_f1, tp, fp
