"""Plain-numpy twins of the kernels in ``fastevalcb.kernels``, same names, same rules.

Written for readability, not speed: the tests assert ``kernel(x) == reference(x)``.
"""

from __future__ import annotations

import numpy as np

FORMATS = (
    "xyxy",
    "yxyx",
    "xywh",
    "center_xywh",
    "center_yxhw",
    "rel_xyxy",
    "rel_yxyx",
    "rel_xywh",
    "rel_center_xywh",
)


# ---------------------------------------------------------------- classification
def softmax(logits):
    x = np.asarray(logits, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(np.where(np.isnan(x), -np.inf, x), axis=1, keepdims=True, initial=-np.inf)
        e = np.exp(x - m)
        out = e / e.sum(axis=1, keepdims=True)
    out[np.isnan(x).any(axis=1)] = np.nan
    return out.astype(np.float32)


def topk(scores, k):
    s = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order.astype(np.int32), np.take_along_axis(s, order, axis=1)


def classification_summary(logits_or_probs, labels=None, k=1, from_logits=True):
    probs = softmax(logits_or_probs) if from_logits else np.asarray(logits_or_probs, np.float32)
    ids, vals = topk(probs, k)
    correct = np.zeros(len(probs), bool) if labels is None else ids[:, 0] == np.asarray(labels)
    return ids[:, 0], vals[:, 0], ids, vals, correct


def sigmoid(logits):
    x = np.asarray(logits, dtype=np.float32)
    with np.errstate(over="ignore"):
        pos = 1 / (1 + np.exp(-np.where(x >= 0, x, 0)))
        e = np.exp(np.where(x < 0, x, 0))
        neg = e / (1 + e)
    out = np.where(x >= 0, pos, neg)
    return np.where(np.isnan(x), np.nan, out).astype(np.float32)


def binary_probabilities(scores, from_logits=True):
    s = np.asarray(scores, dtype=np.float32).reshape(-1, 1)
    p = sigmoid(s) if from_logits else s
    return np.concatenate([1 - p, p], axis=1).astype(np.float32)


def multilabel_summary(logits_or_probs, labels=None, threshold=0.5, from_logits=True):
    s = np.asarray(logits_or_probs, np.float32)
    probs = sigmoid(s) if from_logits else s
    pred = probs > np.float32(threshold)
    true = np.zeros_like(pred) if labels is None else np.asarray(labels) != 0
    return (
        probs,
        pred,
        (pred & true).sum(1).astype(np.int32),
        pred.sum(1).astype(np.int32),
        true.sum(1).astype(np.int32),
    )


# ---------------------------------------------------------------- boxes
def convert_boxes(boxes, in_format="xyxy", out_format="xyxy", image_size=None):
    """Any keras format -> any, through xyxy pixels (``cxcywh`` is ``center_xywh``)."""
    b = np.asarray(boxes, dtype=np.float32).astype(np.float64)
    h, w = (1.0, 1.0) if image_size is None else map(float, image_size)
    fin = {"cxcywh": "center_xywh"}.get(in_format, in_format)
    fout = {"cxcywh": "center_xywh"}.get(out_format, out_format)
    a0, a1, a2, a3 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    if fin.startswith("rel_"):
        fin = fin[4:]
        sx, sy = (h, w) if fin.startswith(("yx", "center_yx")) else (w, h)
        a0, a1, a2, a3 = a0 * sx, a1 * sy, a2 * sx, a3 * sy
    x0, y0, x1, y1 = {
        "xyxy": lambda: (a0, a1, a2, a3),
        "yxyx": lambda: (a1, a0, a3, a2),
        "xywh": lambda: (a0, a1, a0 + a2, a1 + a3),
        "center_xywh": lambda: (a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2),
        "center_yxhw": lambda: (a1 - a3 / 2, a0 - a2 / 2, a1 + a3 / 2, a0 + a2 / 2),
    }[fin]()
    rel = fout.startswith("rel_")
    fout = fout[4:] if rel else fout
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    out = {
        "xyxy": (x0, y0, x1, y1),
        "yxyx": (y0, x0, y1, x1),
        "xywh": (x0, y0, bw, bh),
        "center_xywh": (cx, cy, bw, bh),
        "center_yxhw": (cy, cx, bh, bw),
    }[fout]
    if rel:
        sx, sy = (h, w) if fout.startswith(("yx", "center_yx")) else (w, h)
        out = (out[0] / sx, out[1] / sy, out[2] / sx, out[3] / sy)
    return np.stack(out, -1).astype(np.float32)


def clip_boxes(xyxy, image_size):
    h, w = image_size
    b = np.asarray(xyxy, dtype=np.float32)
    hi = np.array([w, h, w, h], dtype=np.float32)
    return np.minimum(np.maximum(b, 0), hi).astype(np.float32)


def box_validity(boxes, scores, box_format, skip=None):
    boxes = np.asarray(boxes, np.float32)
    finite = np.isfinite(boxes).all(axis=-1) & np.isfinite(scores)
    name = {"cxcywh": "center_xywh"}.get(box_format.lower(), box_format.lower())
    with np.errstate(invalid="ignore"):
        if "xyxy" in name or "yxyx" in name:
            extent_a, extent_b = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        else:
            extent_a, extent_b = boxes[..., 2], boxes[..., 3]
        positive = (extent_a > 0) & (extent_b > 0)
    code = np.where(~finite, 1, np.where(positive, 0, 2)).astype(np.uint8)
    if skip is not None:
        code[np.asarray(skip, bool)] = 0
    return code


def _iou_matrix(a, b):
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _iou_matrix_f64(
            np.asarray(a, np.float32).astype(np.float64),
            np.asarray(b, np.float32).astype(np.float64),
        )


def _iou_matrix_f64(a, b):
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = iw * ih
    ok = (iw > 0) & (ih > 0) & (area_a[:, None] > 0) & (area_b[None, :] > 0)
    iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    return np.where(ok, iou, 0.0)


def box_iou_batch(boxes_a, boxes_b):
    return _iou_matrix(boxes_a, boxes_b).astype(np.float32)


# ---------------------------------------------------------------- nms
def nms_keep(
    xyxy,
    scores,
    class_id=None,
    iou_threshold=0.5,
    score_threshold=-np.inf,
    max_detections=-1,
    num_classes=None,
    class_agnostic=False,
):
    """Greedy NMS in the supervision ``box_non_max_suppression`` style."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32)
    cid = np.zeros(len(s), int) if class_id is None else np.asarray(class_id)
    with np.errstate(invalid="ignore"):
        cand = ~np.isnan(s) & (s >= score_threshold) & np.isfinite(boxes).all(axis=1)
    idx = np.flatnonzero(cand)
    order = idx[np.argsort(-s[idx].astype(np.float64), kind="stable")]
    iou = _iou_matrix(boxes, boxes)
    keep = np.zeros(len(s), bool)
    kept = []
    for i in order:
        if max_detections >= 0 and len(kept) >= max_detections:
            break
        same = [k for k in kept if class_agnostic or cid[k] == cid[i]]
        if iou_threshold < 1.0 and any(iou[k, i] > iou_threshold for k in same):
            continue
        kept.append(i)
        keep[i] = True
    return keep


def batched_nms_keep(
    xyxy,
    scores,
    class_id=None,
    counts=None,
    iou_threshold=0.5,
    score_threshold=-np.inf,
    max_detections=-1,
    num_classes=None,
    class_agnostic=False,
):
    boxes = np.asarray(xyxy, np.float32)
    s = np.asarray(scores, np.float32)
    b, m = s.shape
    cid = np.zeros((b, m), int) if class_id is None else np.asarray(class_id)
    cnt = np.full(b, m) if counts is None else np.asarray(counts)
    keep = np.zeros((b, m), bool)
    for i in range(b):
        c = int(cnt[i])
        keep[i, :c] = nms_keep(
            boxes[i, :c],
            s[i, :c],
            cid[i, :c],
            iou_threshold,
            score_threshold,
            max_detections,
            class_agnostic=class_agnostic,
        )
    return keep


# ---------------------------------------------------------------- masks
def logits_argmax(logits):
    x = np.asarray(logits)
    out = np.argmax(x, axis=-1)
    return out.astype(np.uint8 if x.shape[-1] <= 256 else np.int32)


def resize_nearest(masks, size):
    m = np.asarray(masks)
    h, w = m.shape[-2:]
    oh, ow = size
    ys = ((2 * np.arange(oh) + 1) * h) // (2 * oh)
    xs = ((2 * np.arange(ow) + 1) * w) // (2 * ow)
    return m[..., ys[:, None], xs[None, :]]


def segmentation_metrics(pred, target, num_classes, ignore_index=None):
    p = np.asarray(pred).astype(np.int64)
    p = p.reshape(len(p), int(np.prod(p.shape[1:])))
    t = np.asarray(target).astype(np.int64).reshape(p.shape)
    iou = np.full((len(p), num_classes), np.nan, np.float32)
    acc = np.full(len(p), np.nan, np.float32)
    for i in range(len(p)):
        valid = np.ones(p.shape[1], bool) if ignore_index is None else t[i] != ignore_index
        pi, ti = p[i][valid], t[i][valid]
        for c in range(num_classes):
            union = np.sum((pi == c) | (ti == c))
            if union:
                iou[i, c] = np.sum((pi == c) & (ti == c)) / union
        if valid.any():
            acc[i] = np.mean(pi == ti)
    return iou, acc


def segmentation_counts(pred, target, num_classes, ignore_index=None):
    """Per image per class ``(tp, pred_count, target_count)`` over non-ignored pixels."""
    p = np.asarray(pred).astype(np.int64)
    p = p.reshape(len(p), int(np.prod(p.shape[1:])))
    t = np.asarray(target).astype(np.int64).reshape(p.shape)
    out = np.zeros((3, len(p), num_classes), np.int64)
    for i in range(len(p)):
        valid = np.ones(p.shape[1], bool) if ignore_index is None else t[i] != ignore_index
        pi, ti = p[i][valid], t[i][valid]
        out[0, i] = np.bincount(pi[pi == ti], minlength=num_classes)
        out[1, i] = np.bincount(pi, minlength=num_classes)
        out[2, i] = np.bincount(ti, minlength=num_classes)
    return tuple(out)


def palette_lookup(masks, palette):
    return np.asarray(palette, np.uint8)[np.asarray(masks)]


def blend_overlay(images, masks, palette, alpha=0.5):
    a = int(round(alpha * 256))
    col = palette_lookup(masks, palette).astype(np.int32)
    img = np.asarray(images).astype(np.int32)
    return ((img * (256 - a) + col * a + 128) >> 8).astype(np.uint8)


# ---------------------------------------------------------------- detection metrics
def _rank(scores):
    """Descending score order, ties by lower index; numpy sorts NaN (of ``-s``) last."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


def match_detections(
    pred_offsets,
    pred_xyxy,
    pred_scores,
    pred_class,
    gt_offsets,
    gt_xyxy,
    gt_class,
    iou_threshold=0.5,
    num_classes=None,
):
    """Greedy matching in the COCO ``evaluateImg`` style, one image at a time."""
    po, go = np.asarray(pred_offsets), np.asarray(gt_offsets)
    pb = np.asarray(pred_xyxy, np.float32).reshape(-1, 4)
    gb = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    s = np.asarray(pred_scores, np.float32)
    pc, gc = np.asarray(pred_class), np.asarray(gt_class)
    tp = np.zeros(len(s), bool)
    counts = np.zeros((len(po) - 1, 3), np.int64)
    for i in range(len(po) - 1):
        p = np.arange(po[i], po[i + 1])
        g = np.arange(go[i], go[i + 1])
        iou = _iou_matrix(pb[p], gb[g])
        iou[~np.isfinite(pb[p]).all(axis=1)] = 0.0  # non-finite boxes overlap nothing
        iou[:, ~np.isfinite(gb[g]).all(axis=1)] = 0.0
        same_class = pc[p][:, None] == gc[g][None, :]
        matched = np.zeros(len(g), bool)
        for j in _rank(s[p]):
            cand = np.where(same_class[j] & ~matched, iou[j], -1.0)
            if len(g) and cand.max() >= iou_threshold:
                k = int(np.argmax(cand))  # first maximum: lower GT index
                matched[k] = True
                tp[p[j]] = True
        n_tp = int(matched.sum())
        counts[i] = n_tp, len(p) - n_tp, len(g) - n_tp
    return tp, counts


def average_precision(scores, tp, num_gt):
    """``voc_ap(rec, prec, use_07_metric=False)`` of the PASCAL VOC devkit (py-faster-rcnn)."""
    if num_gt == 0:
        return np.nan
    order = _rank(scores)
    hits = np.asarray(tp, bool)[order]
    ctp = np.cumsum(hits)
    rec = ctp / num_gt
    prec = ctp / np.arange(1, len(hits) + 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def per_image_ap(pred_offsets, pred_scores, pred_class, tp, gt_offsets, gt_class, num_classes):
    po, go = np.asarray(pred_offsets), np.asarray(gt_offsets)
    s = np.asarray(pred_scores, np.float64)
    pc, gc, t = np.asarray(pred_class), np.asarray(gt_class), np.asarray(tp, bool)
    out = np.full(len(po) - 1, np.nan, np.float32)
    for i in range(len(po) - 1):
        p, g = slice(po[i], po[i + 1]), slice(go[i], go[i + 1])
        aps = [
            average_precision(s[p][pc[p] == c], t[p][pc[p] == c], np.sum(gc[g] == c))
            for c in range(num_classes)
            if np.any(gc[g] == c)
        ]
        if aps:
            out[i] = np.mean(aps)
    return out


def mean_average_precision(pred_scores, pred_class, tp, gt_class, num_classes):
    s = np.asarray(pred_scores, np.float64)
    pc, gc, t = np.asarray(pred_class), np.asarray(gt_class), np.asarray(tp, bool)
    ap = np.array(
        [average_precision(s[pc == c], t[pc == c], np.sum(gc == c)) for c in range(num_classes)],
        np.float64,
    )
    has_gt = ~np.isnan(ap)
    return (float(np.mean(ap[has_gt])) if has_gt.any() else np.nan), ap


def precision_recall(counts):
    c = np.asarray(counts, np.int64).reshape(-1, 3)
    tp, fp, fn = c[:, 0], c[:, 1], c[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tp / (tp + fp)).astype(np.float32), (tp / (tp + fn)).astype(np.float32)


def box_json(
    offsets, xyxy, class_id, scores, class_labels, domain="pixel", decimals=2, score_decimals=4
):
    """json.dumps of the stock box dicts, numbers rounded half-even to fixed decimals."""
    import json

    def rounded(x, d):
        return int(np.rint(float(x) * 10**d)) / 10**d

    out = []
    for i in range(len(offsets) - 1):
        boxes = []
        for b in range(offsets[i], offsets[i + 1]):
            x0, y0, x1, y1 = (rounded(v, decimals) for v in xyxy[b])
            k = int(class_id[b])
            box = {
                "position": {"minX": x0, "maxX": x1, "minY": y0, "maxY": y1},
                "class_id": k,
                "box_caption": class_labels[k],
            }
            if scores is not None:
                box["box_caption"] = f"{class_labels[k]} {rounded(scores[b], 2):.2f}"
                box["scores"] = {"score": rounded(scores[b], score_decimals)}
            if domain == "pixel":
                box["domain"] = "pixel"
            boxes.append(box)
        out.append(json.dumps(boxes, sort_keys=True))
    return out


# ---------------------------------------------------------------- COCO (pycocotools' rules)
def _coco_iou(d, g, crowd):
    """``maskApi.c``'s ``bbIou`` on xyxy boxes ``(D, 4)``, ``(G, 4)`` in float64."""
    d, g = np.asarray(d, np.float64).reshape(-1, 4), np.asarray(g, np.float64).reshape(-1, 4)
    w = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    h = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = w * h
    da = ((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]))[:, None]
    ga = ((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]))[None, :]
    union = np.where(np.asarray(crowd, bool)[None, :], da, da + ga - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def _area(b):
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def coco_match(
    pred_offsets,
    pred_xyxy,
    pred_scores,
    pred_class,
    gt_offsets,
    gt_xyxy,
    gt_class,
    num_classes,
    gt_crowd=None,
    iou_thresholds=None,
    area_ranges=None,
    max_dets=None,
):
    """``COCOeval.evaluateImg`` per image and class, transcribed; same rows and bits as the
    kernel (images in order, classes ascending, detections by rank)."""
    from fastevalcb.kernels.coco import AREA_RANGES, IOU_THRESHOLDS, MAX_DETS, CocoMatches

    thrs = IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds)
    areas = AREA_RANGES if area_ranges is None else np.asarray(area_ranges)
    max_det = int((MAX_DETS if max_dets is None else np.asarray(max_dets))[-1])
    po, go = np.asarray(pred_offsets), np.asarray(gt_offsets)
    pb, gb = np.asarray(pred_xyxy, np.float32), np.asarray(gt_xyxy, np.float32)
    ps, pc, gc = np.asarray(pred_scores, np.float32), np.asarray(pred_class), np.asarray(gt_class)
    crowd = np.zeros(len(gc), bool) if gt_crowd is None else np.asarray(gt_crowd, bool)
    n_a = len(areas)
    rows, ranks, matched, ignored = [], [], [], []
    num_gt = np.zeros((num_classes, n_a), np.int64)
    for i in range(len(po) - 1):
        p_img, g_img = np.arange(po[i], po[i + 1]), np.arange(go[i], go[i + 1])
        for c in range(num_classes):
            dt = p_img[pc[p_img] == c]
            dt = dt[np.argsort(-ps[dt].astype(np.float64), kind="mergesort")][:max_det]
            gt = g_img[gc[g_img] == c]
            if len(dt) == 0 and len(gt) == 0:
                continue
            bits_m = np.zeros(len(dt), np.uint64)
            bits_i = np.zeros(len(dt), np.uint64)
            for a, (lo, hi) in enumerate(areas):
                g_area = _area(gb[gt])
                gt_ig = crowd[gt] | (g_area < lo) | (g_area > hi)
                num_gt[c, a] += int(np.count_nonzero(~gt_ig))
                order = np.argsort(gt_ig, kind="mergesort")
                g_sorted, ig, iscrowd = gt[order], gt_ig[order], crowd[gt][order]
                ious = _coco_iou(pb[dt], gb[g_sorted], iscrowd)
                d_out = (_area(pb[dt]) < lo) | (_area(pb[dt]) > hi)
                for t, thr in enumerate(thrs):
                    bit = np.uint64(1 << (t * n_a + a))
                    gtm = np.zeros(len(g_sorted), bool)
                    for di in range(len(dt)):
                        best, m = min(thr, 1 - 1e-10), -1
                        for gi in range(len(g_sorted)):
                            if gtm[gi] and not iscrowd[gi]:
                                continue
                            if m > -1 and not ig[m] and ig[gi]:
                                break
                            if ious[di, gi] < best:
                                continue
                            best, m = ious[di, gi], gi
                        if m == -1:
                            if d_out[di]:
                                bits_i[di] |= bit
                            continue
                        gtm[m] = True
                        bits_m[di] |= bit
                        if ig[m]:
                            bits_i[di] |= bit
            rows += dt.tolist()
            ranks += list(range(len(dt)))
            matched += bits_m.tolist()
            ignored += bits_i.tolist()
    rows = np.array(rows, np.int64)
    return CocoMatches(
        pc[rows].astype(np.int32),
        ps[rows],
        np.array(ranks, np.int32),
        np.array(matched, np.uint64),
        np.array(ignored, np.uint64),
        num_gt,
        rows,
    )


def coco_accumulate(matches, iou_thresholds=None, recall_thresholds=None, max_dets=None):
    """``COCOeval.accumulate`` transcribed (the rows of a class sorted by a stable sort on
    descending score; ignored rows kept, as COCO keeps them)."""
    from fastevalcb.kernels.coco import (
        IOU_THRESHOLDS,
        MAX_DETS,
        RECALL_THRESHOLDS,
        CocoResult,
        coco_stats,
    )

    thrs = IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds)
    rec_thrs = RECALL_THRESHOLDS if recall_thresholds is None else np.asarray(recall_thresholds)
    caps = MAX_DETS if max_dets is None else np.asarray(max_dets)
    num_gt = np.asarray(matches.num_gt)
    n_c, n_a = num_gt.shape
    n_t, n_r, n_m = len(thrs), len(rec_thrs), len(caps)
    ap = -np.ones((n_t, n_c, n_a))
    recall = -np.ones((n_t, n_c, n_a, n_m))
    precision = -np.ones((n_r, n_c))
    for c in range(n_c):
        mine = np.flatnonzero(np.asarray(matches.det_class) == c)
        for a in range(n_a):
            npig = num_gt[c, a]
            if npig == 0:
                continue
            for m, cap in enumerate(caps):
                rows = mine[np.asarray(matches.det_rank)[mine] < cap]
                rows = rows[
                    np.argsort(
                        -np.asarray(matches.det_score)[rows].astype(np.float64), kind="mergesort"
                    )
                ]
                for t in range(n_t):
                    bit = np.uint64(1 << (t * n_a + a))
                    dtm = (np.asarray(matches.matched)[rows] & bit) != 0
                    dtig = (np.asarray(matches.ignored)[rows] & bit) != 0
                    tp = np.cumsum(dtm & ~dtig).astype(float)
                    fp = np.cumsum(~dtm & ~dtig).astype(float)
                    rc = tp / npig
                    pr = (tp / (fp + tp + np.spacing(1))).tolist()
                    recall[t, c, a, m] = rc[-1] if len(tp) else 0
                    for i in range(len(pr) - 1, 0, -1):
                        pr[i - 1] = max(pr[i - 1], pr[i])
                    q = np.zeros(n_r)
                    for ri, pi in enumerate(np.searchsorted(rc, rec_thrs, side="left")):
                        if pi >= len(pr):
                            break
                        q[ri] = pr[pi]
                    if m == n_m - 1:
                        ap[t, c, a] = q.mean()
                        if t == 0 and a == 0:
                            precision[:, c] = q
    return CocoResult(coco_stats(ap, recall, thrs), ap, recall, precision, num_gt)


def f1_sweep(matches, thresholds=None, max_det=100):
    """Per-class tp/fp with ``score >= threshold`` at IoU bit 0, and the mean F1 over the
    classes with ground truth, threshold by threshold."""
    grid = np.linspace(0.0, 1.0, 1001) if thresholds is None else np.asarray(thresholds)
    num_gt = np.asarray(matches.num_gt)[:, 0]
    cls = np.asarray(matches.det_class)
    s = np.asarray(matches.det_score, np.float64)
    counted = (np.asarray(matches.det_rank) < max_det) & ((np.asarray(matches.ignored) & 1) == 0)
    hit = (np.asarray(matches.matched) & 1) != 0
    tp = np.zeros((len(num_gt), len(grid)), np.int64)
    fp = np.zeros_like(tp)
    for j, thr in enumerate(grid):
        at = counted & (s >= thr)
        tp[:, j] = np.bincount(cls[at & hit], minlength=len(num_gt))
        fp[:, j] = np.bincount(cls[at & ~hit], minlength=len(num_gt))
    present = num_gt > 0
    f1 = (
        2
        * tp[present]
        / np.maximum(2 * tp[present] + fp[present] + num_gt[present, None] - tp[present], 1)
    )
    mean_f1 = f1.mean(axis=0) if present.any() else np.zeros(len(grid))
    return grid, mean_f1, tp, fp


# ---------------------------------------------------------------- confusion matrices
def confusion_matrix(y_true, y_pred, num_classes, ignore_index=None):
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred).reshape(-1).astype(np.int64)
    keep = np.ones(len(t), bool) if ignore_index is None else t != ignore_index
    return np.bincount(
        t[keep] * num_classes + p[keep], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


def detection_confusion(
    pred_offsets,
    pred_xyxy,
    pred_scores,
    pred_class,
    gt_offsets,
    gt_xyxy,
    gt_class,
    num_classes,
    iou_threshold=0.5,
    score_threshold=0.25,
):
    """Greedy one-to-one pairing by descending IoU (a stable sort of all pairs, gt-major)."""
    out = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    po, go = np.asarray(pred_offsets), np.asarray(gt_offsets)
    pb, gb = np.asarray(pred_xyxy, np.float32), np.asarray(gt_xyxy, np.float32)
    ps, pc, gc = np.asarray(pred_scores, np.float32), np.asarray(pred_class), np.asarray(gt_class)
    for i in range(len(po) - 1):
        p = np.arange(po[i], po[i + 1])
        p = p[ps[p] >= np.float32(score_threshold)]
        g = np.arange(go[i], go[i + 1])
        iou = _coco_iou(gb[g], pb[p], np.zeros(len(p), bool))  # (G, P), symmetric formula
        gi, pj = np.nonzero(iou >= iou_threshold)
        order = np.argsort(-iou[gi, pj], kind="stable")
        g_used, p_used = set(), set()
        for r in order:
            if gi[r] in g_used or pj[r] in p_used:
                continue
            g_used.add(gi[r])
            p_used.add(pj[r])
            out[gc[g[gi[r]]], pc[p[pj[r]]]] += 1
        for k in range(len(g)):
            if k not in g_used:
                out[gc[g[k]], num_classes] += 1
        for k in range(len(p)):
            if k not in p_used:
                out[num_classes, pc[p[k]]] += 1
    return out


# ---------------------------------------------------------------- curves
def score_histograms(scores, targets, edges=None, out=None):
    from fastevalcb.kernels.curves import PR_EDGES

    e = PR_EDGES if edges is None else np.asarray(edges, np.float64)
    s = np.asarray(scores, np.float32).astype(np.float64)
    t = np.asarray(targets, bool)
    pos = np.zeros((s.shape[1], len(e)), np.int64)
    neg = np.zeros_like(pos)
    for k in range(s.shape[1]):
        j = np.searchsorted(e, s[:, k], side="right") - 1
        ok = ~np.isnan(s[:, k]) & (j >= 0)
        pos[k] = np.bincount(j[ok & t[:, k]], minlength=len(e))
        neg[k] = np.bincount(j[ok & ~t[:, k]], minlength=len(e))
    return pos, neg


def calibration_bins(conf, correct, n_bins=15, out=None):
    c = np.asarray(conf, np.float32).astype(np.float64)
    ok = ~np.isnan(c)
    ids = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], c[ok])
    return (
        np.bincount(ids, minlength=n_bins),
        np.bincount(ids, c[ok], minlength=n_bins),
        np.bincount(ids, np.asarray(correct, bool)[ok], minlength=n_bins).astype(np.int64),
    )
