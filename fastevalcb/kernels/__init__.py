"""Pure numba post-processing kernels (classification, boxes, NMS, masks, detection metrics).

Each public function here is a thin wrapper that validates and coerces its inputs and calls
a private ``@njit(cache=True)`` kernel. Compiled code is cached in ``__pycache__`` next to
each module, so only the very first process pays the compile cost; :func:`warmup` pays
it (or loads the cache) up front, e.g. at train begin.
"""

from __future__ import annotations

import time

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
    "average_precision",
    "batched_nms_keep",
    "binary_probabilities",
    "blend_overlay",
    "box_format_name",
    "box_iou_batch",
    "box_json",
    "box_validity",
    "classification_summary",
    "clip_boxes",
    "convert_boxes",
    "logits_argmax",
    "match_detections",
    "mean_average_precision",
    "multilabel_summary",
    "nms_keep",
    "palette_lookup",
    "per_image_ap",
    "precision_recall",
    "resize_nearest",
    "segmentation_counts",
    "segmentation_metrics",
    "sigmoid",
    "softmax",
    "topk",
    "warmup",
]


def warmup() -> dict[str, float]:
    """Compile (or load from cache) every kernel on tiny arrays of the dtypes we use.

    Returns:
        Seconds spent per kernel group, e.g. ``{"classification": 0.01, ...}``.
    """
    timings: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - t0

    logits = np.zeros((2, 3), np.float32)
    boxes = np.array([[[0, 0, 2, 2], [1, 1, 3, 3]]], np.float32)
    scores = np.ones((1, 2), np.float32)
    masks = np.zeros((1, 2, 2), np.uint8)

    timed("classification", lambda: (softmax(logits), topk(logits, 1),
                                     classification_summary(logits, [0, 1], 1),
                                     binary_probabilities(logits[:, :1]),
                                     binary_probabilities(logits[:, :1], False),
                                     multilabel_summary(logits, logits > 0),
                                     multilabel_summary(logits, None, 0.5, False)))
    timed("boxes", lambda: (convert_boxes(boxes, "rel_center_xywh", "yxyx", (2, 2)),
                            clip_boxes(boxes, (2, 2)),
                            box_iou_batch(boxes[0], boxes[0]),
                            box_validity(boxes, scores, "xyxy", scores > 0),
                            box_json([0, 2], boxes[0], [0, 0], scores[0], {0: "a"}),
                            box_json([0, 2], boxes[0], [0, 0], None, {0: "a"})))
    timed("nms", lambda: (nms_keep(boxes[0], scores[0], [0, 1]),
                          batched_nms_keep(boxes, scores, [[0, 1]], [2])))
    palette = np.zeros((1, 3), np.uint8)
    timed("masks", lambda: (logits_argmax(np.zeros((1, 2, 2, 3), np.float32)),
                            resize_nearest(masks, (3, 3)),
                            segmentation_metrics(masks, masks, 1),
                            palette_lookup(masks, palette),
                            blend_overlay(np.zeros((1, 2, 2, 3), np.uint8), masks, palette)))
    offsets = np.array([0, 2], np.int64)
    cls = np.zeros(2, np.int64)

    def detection_metrics():
        tp, counts = match_detections(offsets, boxes[0], scores[0], cls, offsets, boxes[0], cls)
        average_precision(scores[0], tp, 2)
        per_image_ap(offsets, scores[0], cls, tp, offsets, cls, 1)
        mean_average_precision(scores[0], cls, tp, cls, 1)
        precision_recall(counts)

    timed("detection_metrics", detection_metrics)
    return timings
