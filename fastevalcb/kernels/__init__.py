"""Pure numba post-processing kernels (classification, boxes, NMS, masks, detection metrics).

Each public function here is a thin wrapper that validates and coerces its inputs and calls
a private ``@njit(cache=True)`` kernel. Compiled code is cached in ``__pycache__`` next to
each module, so only the very first process pays the compile cost; :func:`warmup` pays
it (or loads the cache) up front, e.g. at train begin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from fastevalcb.kernels.box_json import box_json
from fastevalcb.kernels.boxes import (
    BOX_FORMATS,
    box_format_name,
    box_iou_batch,
    box_validity,
    clip_boxes,
    convert_boxes,
)
from fastevalcb.kernels.classification import (
    binary_probabilities,
    classification_summary,
    multilabel_summary,
    sigmoid,
    softmax,
    topk,
)
from fastevalcb.kernels.coco import (
    CocoMatches,
    CocoResult,
    coco_accumulate,
    coco_match,
    concat_matches,
    f1_sweep,
)
from fastevalcb.kernels.confusion import (
    confusion_matrix,
    detection_confusion,
    per_class_scores,
)
from fastevalcb.kernels.curves import (
    calibration_bins,
    expected_calibration_error,
    pr_curves,
    score_histograms,
)
from fastevalcb.kernels.detection_metrics import (
    average_precision,
    match_detections,
    mean_average_precision,
    per_image_ap,
    precision_recall,
)
from fastevalcb.kernels.masks import (
    blend_overlay,
    logits_argmax,
    palette_lookup,
    resize_nearest,
    segmentation_counts,
    segmentation_metrics,
)
from fastevalcb.kernels.nms import batched_nms_keep, nms_keep

__all__ = [
    "BOX_FORMATS",
    "KERNEL_GROUPS",
    "CocoMatches",
    "CocoResult",
    "average_precision",
    "batched_nms_keep",
    "binary_probabilities",
    "blend_overlay",
    "box_format_name",
    "box_iou_batch",
    "box_json",
    "box_validity",
    "calibration_bins",
    "classification_summary",
    "clip_boxes",
    "coco_accumulate",
    "coco_match",
    "concat_matches",
    "confusion_matrix",
    "convert_boxes",
    "detection_confusion",
    "expected_calibration_error",
    "f1_sweep",
    "logits_argmax",
    "match_detections",
    "mean_average_precision",
    "multilabel_summary",
    "nms_keep",
    "palette_lookup",
    "per_class_scores",
    "per_image_ap",
    "pr_curves",
    "precision_recall",
    "resize_nearest",
    "score_histograms",
    "segmentation_counts",
    "segmentation_metrics",
    "sigmoid",
    "softmax",
    "topk",
    "warmup",
]


def warmup(groups: Iterable[str] | None = None) -> dict[str, float]:
    """Compile (or load from cache) kernels on tiny arrays of the dtypes we use.

    A cold cache (the first process after an install, or a read-only ``__pycache__``)
    compiles for seconds per group: the task callbacks run this on their logging worker,
    for their own groups only, so ``fit`` does not wait for it.

    Args:
        groups: kernel groups to warm (:data:`KERNEL_GROUPS`); None: all of them.

    Returns:
        Seconds spent per kernel group, e.g. ``{"classification": 0.01, ...}``.

    Raises:
        ValueError: on an unknown group name.
    """
    names = list(KERNEL_GROUPS) if groups is None else list(groups)
    unknown = sorted(set(names) - set(KERNEL_GROUPS))
    if unknown:
        raise ValueError(f"unknown kernel groups {unknown}; expected some of {list(KERNEL_GROUPS)}")
    timings: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        KERNEL_GROUPS[name]()
        timings[name] = time.perf_counter() - t0
    return timings


_LOGITS = np.zeros((2, 3), np.float32)
_BOXES = np.array([[[0, 0, 2, 2], [1, 1, 3, 3]]], np.float32)
_SCORES = np.ones((1, 2), np.float32)
_MASKS = np.zeros((1, 2, 2), np.uint8)


def _warm_classification() -> None:
    logits = _LOGITS
    softmax(logits)
    topk(logits, 1)
    classification_summary(logits, [0, 1], 1)
    binary_probabilities(logits[:, :1])
    binary_probabilities(logits[:, :1], False)
    multilabel_summary(logits, logits > 0)
    multilabel_summary(logits, None, 0.5, False)


def _warm_boxes() -> None:
    boxes, scores = _BOXES, _SCORES
    convert_boxes(boxes, "rel_center_xywh", "yxyx", (2, 2))
    clip_boxes(boxes, (2, 2))
    box_iou_batch(boxes[0], boxes[0])
    box_validity(boxes, scores, "xyxy", scores > 0)
    box_json([0, 2], boxes[0], [0, 0], scores[0], {0: "a"})
    box_json([0, 2], boxes[0], [0, 0], None, {0: "a"})


def _warm_nms() -> None:
    nms_keep(_BOXES[0], _SCORES[0], [0, 1])
    batched_nms_keep(_BOXES, _SCORES, [[0, 1]], [2])


def _warm_masks() -> None:
    masks, palette = _MASKS, np.zeros((1, 3), np.uint8)
    logits_argmax(np.zeros((1, 2, 2, 3), np.float32))
    resize_nearest(masks, (3, 3))
    segmentation_metrics(masks, masks, 1)
    palette_lookup(masks, palette)
    blend_overlay(np.zeros((1, 2, 2, 3), np.uint8), masks, palette)


def _warm_detection_metrics() -> None:
    boxes, scores = _BOXES[0], _SCORES[0]
    offsets, cls = np.array([0, 2], np.int64), np.zeros(2, np.int64)
    tp, counts = match_detections(offsets, boxes, scores, cls, offsets, boxes, cls)
    average_precision(scores, tp, 2)
    per_image_ap(offsets, scores, cls, tp, offsets, cls, 1)
    mean_average_precision(scores, cls, tp, cls, 1)
    precision_recall(counts)


def _warm_coco() -> None:
    boxes, scores = _BOXES[0], _SCORES[0]
    offsets, cls = np.array([0, 2], np.int64), np.zeros(2, np.int64)
    matches = coco_match(offsets, boxes, scores, cls, offsets, boxes, cls, 1, cls > 0)
    coco_accumulate(concat_matches([matches], 1))
    f1_sweep(matches)


def _warm_confusion() -> None:
    ids = np.zeros(2, np.int64)
    confusion_matrix(ids, ids, 1)
    confusion_matrix(_MASKS, _MASKS, 1, 255)
    offsets = np.array([0, 2], np.int64)
    detection_confusion(offsets, _BOXES[0], _SCORES[0], ids, offsets, _BOXES[0], ids, 1)


def _warm_curves() -> None:
    score_histograms(_LOGITS, _LOGITS > 0)
    calibration_bins(_LOGITS[:, 0], _LOGITS[:, 0] > 0)


#: Kernel groups :func:`warmup` knows, each compiled by one call on tiny arrays.
KERNEL_GROUPS: dict[str, Callable[[], None]] = {
    "classification": _warm_classification,
    "boxes": _warm_boxes,
    "nms": _warm_nms,
    "masks": _warm_masks,
    "detection_metrics": _warm_detection_metrics,
    "coco": _warm_coco,
    "confusion": _warm_confusion,
    "curves": _warm_curves,
}
