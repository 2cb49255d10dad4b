"""Score filtering, class-wise non-maximum suppression and top-k, per image or per batch.

Rules (the numpy twins in ``tests/helpers/reference.py`` follow the same ones):

* A box is a candidate when its score is not NaN, ``score >= score_threshold`` and its four
  coordinates are finite. NaN scores and non-finite boxes are dropped; ``+inf`` scores are
  kept and rank first; ``-inf`` scores are kept only when ``score_threshold`` is ``-inf``.
* Candidates are visited by descending score, ties by lower index. A visited box is kept
  unless an already kept box of the same class (any class when ``class_agnostic``) has
  ``IoU > iou_threshold`` with it. Zero-area boxes have IoU 0, so they are never suppressed.
* At most ``max_detections`` boxes are kept per image (the highest scoring); ``-1`` = all.
* The result is a boolean keep mask in the input order; slicing is the caller's job
  (see :class:`fastevalcb.types.PackedDetections`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids
from fastevalcb.kernels.boxes import _iou


@njit(cache=True, nogil=True)
def _nms_keep(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_detections: int,
    class_agnostic: bool,
) -> np.ndarray:
    """Keep mask ``(N,)`` bool for one image; see the module docstring for the rules."""
    n = scores.shape[0]
    keep = np.zeros(n, dtype=np.bool_)
    cand = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        s = scores[i]
        if np.isnan(s) or not s >= score_threshold:
            continue
        if not (
            np.isfinite(xyxy[i, 0])
            and np.isfinite(xyxy[i, 1])
            and np.isfinite(xyxy[i, 2])
            and np.isfinite(xyxy[i, 3])
        ):
            continue
        cand[m] = i
        m += 1
    cand = cand[:m]
    neg = np.empty(m, dtype=np.float64)
    for j in range(m):
        neg[j] = -np.float64(scores[cand[j]])
    order = cand[np.argsort(neg, kind="mergesort")]
    kept = np.empty(m, dtype=np.int64)
    n_kept = 0
    check_iou = iou_threshold < 1.0
    for j in range(m):
        if max_detections >= 0 and n_kept >= max_detections:
            break
        i = order[j]
        suppressed = False
        if check_iou:
            for t in range(n_kept):
                k = kept[t]
                if (class_agnostic or class_id[k] == class_id[i]) and _iou(
                    xyxy[k], xyxy[i]
                ) > iou_threshold:
                    suppressed = True
                    break
        if not suppressed:
            kept[n_kept] = i
            n_kept += 1
            keep[i] = True
    return keep


@njit(cache=True, nogil=True)
def _batched_nms_keep(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray,
    counts: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_detections: int,
    class_agnostic: bool,
) -> np.ndarray:
    """Keep mask ``(B, M)`` bool for padded ``(B, M, ...)`` inputs with valid ``counts``."""
    b, mx = scores.shape
    keep = np.zeros((b, mx), dtype=np.bool_)
    for i in range(b):
        c = counts[i]
        keep[i, :c] = _nms_keep(
            xyxy[i, :c],
            scores[i, :c],
            class_id[i, :c],
            iou_threshold,
            score_threshold,
            max_detections,
            class_agnostic,
        )
    return keep


def _check_threshold(iou_threshold: float) -> float:
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    return float(iou_threshold)


def nms_keep(
    xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    class_id: npt.ArrayLike | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float = -np.inf,
    max_detections: int = -1,
    num_classes: int | None = None,
    class_agnostic: bool = False,
) -> np.ndarray:
    """Class-wise NMS with score threshold and top-k for one image.

    Args:
        xyxy: ``(N, 4)`` float xyxy boxes (pixels or normalized, just be consistent).
        scores: ``(N,)`` float scores.
        class_id: ``(N,)`` integer class ids, or None (all class 0).
        iou_threshold: suppress when IoU with a kept box is strictly greater, in ``[0, 1]``;
            ``1.0`` disables suppression (threshold and top-k only).
        score_threshold: drop scores below this.
        max_detections: keep at most this many per image; ``-1`` for no limit.
        num_classes: when given, class ids must lie in ``[0, num_classes)``.
        class_agnostic: suppress across classes.

    Returns:
        ``(N,)`` bool keep mask in input order.
    """
    boxes = as_array(xyxy, "xyxy", np.float32, (None, 4))
    n = boxes.shape[0]
    s = as_array(scores, "scores", np.float32, (n,))
    cid = (
        np.zeros(n, np.int32)
        if class_id is None
        else as_array(class_id, "class_id", np.int64, (n,))
    )
    check_class_ids(cid, num_classes, "class_id")
    return _nms_keep(
        boxes,
        s,
        cid.astype(np.int32),
        _check_threshold(iou_threshold),
        float(score_threshold),
        int(max_detections),
        bool(class_agnostic),
    )


def batched_nms_keep(
    xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    class_id: npt.ArrayLike | None = None,
    counts: npt.ArrayLike | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float = -np.inf,
    max_detections: int = -1,
    num_classes: int | None = None,
    class_agnostic: bool = False,
) -> np.ndarray:
    """:func:`nms_keep` for a padded batch.

    Args:
        xyxy: ``(B, M, 4)`` float xyxy boxes, padded to ``M`` per image.
        scores: ``(B, M)`` float scores.
        class_id: ``(B, M)`` integer class ids, or None (all class 0).
        counts: ``(B,)`` number of valid boxes per image (the first ``counts[i]`` rows);
            None means all ``M`` are valid.
        iou_threshold, score_threshold, max_detections, num_classes, class_agnostic:
            as in :func:`nms_keep`.

    Returns:
        ``(B, M)`` bool keep mask; padded rows are False.
    """
    boxes = as_array(xyxy, "xyxy", np.float32, (None, None, 4))
    b, m = boxes.shape[:2]
    s = as_array(scores, "scores", np.float32, (b, m))
    cid = (
        np.zeros((b, m), np.int32)
        if class_id is None
        else as_array(class_id, "class_id", np.int64, (b, m))
    )
    if counts is None:
        cnt = np.full(b, m, dtype=np.int64)
    else:
        cnt = as_array(counts, "counts", np.int64, (b,))
        bad = np.flatnonzero((cnt < 0) | (cnt > m))
        if bad.size:
            raise ValueError(
                f"counts must be in [0, {m}], got {int(cnt[bad[0]])} for image {bad[0]}"
            )
    valid = np.arange(m)[None, :] < cnt[:, None]
    check_class_ids(np.where(valid, cid, 0), num_classes, "class_id")
    return _batched_nms_keep(
        boxes,
        s,
        cid.astype(np.int32),
        cnt,
        _check_threshold(iou_threshold),
        float(score_threshold),
        int(max_detections),
        bool(class_agnostic),
    )
