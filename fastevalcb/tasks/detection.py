"""``DetectionEvalCallback``: object detection tables with box overlays and AP50."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fastevalcb.callback import FastEvalInputError
from fastevalcb.kernels import (
    BOX_FORMATS,
    match_detections,
    mean_average_precision,
    per_image_ap,
    precision_recall,
)
from fastevalcb.media import build_images
from fastevalcb.predictor import PredictionBatch
from fastevalcb.tasks._base import TaskEvalCallback, _Version, check_class_range
from fastevalcb.tasks._quality import BoxCheck
from fastevalcb.types import PackedDetections

_SCORE_KEYS = ("scores", "confidence")
_COUNT_KEYS = ("num_detections", "counts")


def default_adapter(outputs: Any) -> dict[str, np.ndarray]:
    """Read the common padded detection heads.

    Accepts a dict with ``boxes`` ``(B, K, 4)``, ``scores`` (or ``confidence``)
    ``(B, K)``, ``classes`` ``(B, K)`` and optionally ``num_detections`` ``(B,)``
    (the KerasCV / KerasHub layout), or a tuple/list ``(boxes, scores, classes[,
    num_detections])``. Rows whose class is negative are padding.

    Returns:
        ``{"boxes", "scores", "classes", "num_detections" (or None)}``.
    """
    if isinstance(outputs, Mapping):
        missing = [k for k in ("boxes", "classes") if k not in outputs]
        score_key = next((k for k in _SCORE_KEYS if k in outputs), None)
        if missing or score_key is None:
            raise FastEvalInputError(
                "detection outputs must be a dict with 'boxes', 'scores' (or 'confidence') and "
                f"'classes'; got keys {sorted(outputs)}; pass adapter=<fn> to map them")
        count_key = next((k for k in _COUNT_KEYS if k in outputs), None)
        return {"boxes": outputs["boxes"], "scores": outputs[score_key],
                "classes": outputs["classes"],
                "num_detections": outputs[count_key] if count_key else None}
    if isinstance(outputs, (list, tuple)) and len(outputs) in (3, 4):
        return {"boxes": outputs[0], "scores": outputs[1], "classes": outputs[2],
                "num_detections": outputs[3] if len(outputs) == 4 else None}
    raise FastEvalInputError(
        "detection outputs must be a dict {'boxes', 'scores', 'classes'} or a tuple "
        f"(boxes, scores, classes[, num_detections]); got {type(outputs).__name__}; pass "
        "adapter=<fn> to map the model's outputs")


def _integral(arr: np.ndarray, what: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise FastEvalInputError(f"{what} must be integer class ids, got {arr.dtype} values")
    return arr.astype(np.int64)


class DetectionEvalCallback(TaskEvalCallback):
    """Log validation images with ground-truth boxes once and predicted boxes every log.

    Data table: ``id, image`` (with a ``ground_truth`` box layer), ``num_objects``,
    ``classes``. Pred table: ``epoch, step, id, image`` (the data table's image and its
    ground-truth boxes by reference, plus a new ``predictions`` box layer with scores),
    ``num_predictions, tp, fp, fn, precision, recall, ap50, finite``: predictions are
    matched greedily by score to same-class ground truth at ``match_iou_threshold``. Summary
    metrics over the logged samples: ``<prefix>/mAP50`` (all-point interpolated AP per
    class, averaged over classes with ground truth), ``<prefix>/precision``,
    ``<prefix>/recall``. Predicted boxes with a NaN/inf coordinate or score (the row's
    ``finite`` is False, the version's summary metrics NaN), or inverted or zero-area, are
    dropped from the overlay and the metrics, and warned about once per fit.

    Args:
        validation_data: ``(x, targets)`` arrays or a ``tf.data.Dataset`` of them: ``x``
            images ``(N, H, W[, C])``; ``targets`` a dict ``{"boxes": (N, M, 4),
            "classes": (N, M)}`` (or a tuple ``(boxes, classes)``) padded with class -1.
        class_names: one name per class id.
        box_format: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``, for both the targets and the
            model's boxes.
        normalized: boxes are fractions of the image size (else pixels).
        adapter: host-side function mapping the model's (numpy) outputs to
            :func:`default_adapter`'s forms; default reads ``{"boxes", "scores",
            "classes"[, "num_detections"]}`` or a 3/4-tuple.
        score_threshold: drop predictions scoring lower (the W&B UI can filter further).
        nms_iou_threshold: class-wise NMS IoU threshold, or None when the model already
            applies NMS.
        match_iou_threshold: IoU at which a prediction matches ground truth (0.5: AP50).
        max_detections: keep at most this many predictions per image (best scores).
        box_decimals: decimals of the box positions written to the tables (scores get 4);
            2 is 1/100 of a pixel (or of the image, normalized). None writes full float
            precision, like a hand-built ``wandb.Image``, at ~10x the formatting cost.
        **options: the shared options of :class:`~fastevalcb.tasks._base.TaskEvalCallback`.

    Raises:
        FastEvalInputError: targets of the wrong shape or class ids outside
            ``class_names`` (at construction for arrays, at train begin for datasets),
            model outputs the adapter cannot read (at train begin).
    """

    task = "detection"

    def __init__(
        self,
        validation_data: Any,
        class_names: Sequence[str],
        *,
        box_format: str = "xyxy",
        normalized: bool = False,
        adapter: Callable[[Any], Any] | None = None,
        score_threshold: float = 0.05,
        nms_iou_threshold: float | None = None,
        match_iou_threshold: float = 0.5,
        max_detections: int = 100,
        box_decimals: int | None = 2,
        **options: Any,
    ) -> None:
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        if not 0.0 < match_iou_threshold <= 1.0:
            raise ValueError(f"match_iou_threshold must be in (0, 1], got {match_iou_threshold}")
        if adapter is not None and not callable(adapter):
            raise TypeError(f"adapter must be callable, got {type(adapter).__name__}")
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) \
                or max_detections < 1:
            raise ValueError(f"max_detections must be a positive int, got {max_detections!r}")
        self.box_format = box_format
        self.normalized = normalized
        self.adapter = adapter
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = nms_iou_threshold
        self.match_iou_threshold = float(match_iou_threshold)
        self.max_detections = max_detections
        if box_decimals is not None and (not isinstance(box_decimals, int)
                                         or not 0 <= box_decimals <= 9):
            raise ValueError(
                f"box_decimals must be an int in [0, 9] or None, got {box_decimals!r}")
        self.box_decimals = box_decimals
        self._box_check = BoxCheck()  # NaN/inf, inverted, zero-area boxes: counted, dropped
        super().__init__(validation_data, class_names, **options)

    @classmethod
    def data_columns(cls) -> list[str]:
        return ["id", "image", "num_objects", "classes"]

    def pred_columns(self) -> list[str]:
        return ["epoch", "step", "id", "image", "num_predictions", "tp", "fp", "fn",
                "precision", "recall", "ap50", "finite"]

    # -- steps ---------------------------------------------------------------------------
    def _check_outputs(self, batch: PredictionBatch) -> None:
        self._predictions(batch.outputs, len(batch), self._hw_of(batch), np.asarray(batch.index))

    def _hw_of(self, batch: PredictionBatch) -> tuple[int, int]:
        if self._image_shape is not None:
            return self._image_shape[0], self._image_shape[1]
        spec = tuple(self.predictor.source.x_spec().shape)
        if len(spec) >= 2 and None not in spec[:2]:
            return int(spec[0]), int(spec[1])
        raise FastEvalInputError(f"cannot tell the image size from the inputs' shape {spec}")

    def _predictions(self, outputs: Any, n: int, hw: tuple[int, int],
                     index: np.ndarray | None = None) -> PackedDetections:
        """The model's padded outputs -> thresholded, NMS-ed, packed xyxy pixel boxes."""
        raw = (self.adapter or default_adapter)(outputs)
        if self.adapter is not None and not (isinstance(raw, dict) and "boxes" in raw):
            raw = default_adapter(raw)
        boxes = np.asarray(raw["boxes"], np.float32)
        scores = np.asarray(raw["scores"], np.float32)
        if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[2] != 4:
            raise FastEvalInputError(
                f"predicted boxes must have shape (B, K, 4), got {boxes.shape} for B={n}")
        k = boxes.shape[1]
        classes = _integral(np.asarray(raw["classes"]), "predicted classes")
        if scores.shape != (n, k) or classes.shape != (n, k):
            raise FastEvalInputError(
                f"predicted scores and classes must have shape ({n}, {k}) like the boxes, got "
                f"{scores.shape} and {classes.shape}")
        counts = raw.get("num_detections")
        padding = classes < 0
        if counts is not None:
            counts = np.clip(np.asarray(counts).reshape(n).astype(np.int64), 0, k)
            padding |= np.arange(k)[None, :] >= counts[:, None]
        padding |= self._box_check(boxes, scores, padding, self.box_format)  # bad: dropped
        scores = np.where(padding, np.nan, scores)  # NaN scores are dropped by the kernel
        classes = np.where(padding, 0, classes)
        check_class_range(classes, self.num_classes, "a predicted class",
                          np.arange(n) if index is None else index)
        return PackedDetections.from_padded(
            boxes, classes, scores, counts, box_format=self.box_format,
            normalized=self.normalized, image_size=hw, clip=True,
            iou_threshold=self.nms_iou_threshold, score_threshold=self.score_threshold,
            max_detections=self.max_detections, num_classes=self.num_classes)

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> PackedDetections:
        n = len(index)
        if isinstance(y, Mapping) and {"boxes", "classes"} <= set(y):
            boxes, classes = y["boxes"], y["classes"]
        elif isinstance(y, (list, tuple)) and len(y) == 2:
            boxes, classes = y
        else:
            raise FastEvalInputError(
                "detection targets must be a dict {'boxes': (N, M, 4), 'classes': (N, M)} or a "
                f"tuple (boxes, classes), padded with class -1; got {type(y).__name__}")
        try:
            if hasattr(boxes, "to_tensor") or hasattr(classes, "to_tensor"):
                raise ValueError("ragged tensors")
            boxes = np.asarray(boxes, np.float32)
            classes = np.asarray(classes)
            if classes.dtype == object:
                raise ValueError("ragged lists")
        except (ValueError, TypeError) as exc:
            raise FastEvalInputError(
                f"detection targets must be padded arrays, got {exc}: pad each image's boxes "
                "to (M, 4) with class -1 (e.g. tf.data .padded_batch(..., padding_values=-1) "
                "or ragged.to_tensor(-1))") from None
        if classes.ndim == 1 and boxes.ndim == 2:  # one box per image
            boxes, classes = boxes[:, None], classes[:, None]
        if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[2] != 4:
            raise FastEvalInputError(
                f"target boxes must have shape (N, M, 4), got {tuple(boxes.shape)[1:]} per "
                f"sample in a batch of {n}")
        if classes.shape != boxes.shape[:2]:
            raise FastEvalInputError(
                f"target classes must have shape (N, {boxes.shape[1]}) like the boxes, got "
                f"{tuple(classes.shape)}")
        classes = _integral(classes, "target classes")
        check_class_range(classes, self.num_classes, "a target box class", index, (-1,))
        valid = classes >= 0
        if not np.all(np.isfinite(boxes[valid])):
            raise FastEvalInputError("target boxes must be finite numbers")
        order = np.argsort(~valid, axis=1, kind="stable")  # padding rows last
        boxes = np.take_along_axis(boxes, order[..., None], axis=1)
        classes = np.take_along_axis(classes, order, axis=1)
        return PackedDetections.from_padded(
            boxes, np.maximum(classes, 0), None, valid.sum(axis=1), box_format=self.box_format,
            normalized=self.normalized, image_size=tuple(image_shape[1:3]), clip=True,
            num_classes=self.num_classes)

    def _data_columns_for(self, index: np.ndarray, images: np.ndarray,
                          labels: PackedDetections) -> dict:
        names = np.asarray(self.class_names, dtype=object)
        off = labels.offsets
        return {
            "id": index.tolist(),
            "image": build_images(images, boxes={"ground_truth": labels},
                                  class_labels=self.class_labels,
                                  compress_level=self.compress_level, table_only=True,
                                  box_decimals=self.box_decimals),
            "num_objects": np.diff(off).tolist(),
            "classes": [names[labels.class_id[off[i]:off[i + 1]]].tolist()
                        for i in range(len(index))],
        }

    def _pred_columns_for(self, version: _Version, batch: PredictionBatch,
                          labels: PackedDetections, base_images: list) -> dict:
        dets = self._predictions(batch.outputs, len(batch), self._image_shape[:2],
                                 np.asarray(batch.index))
        check = self._box_check  # what _predictions just dropped, per sample
        finite = self._quality.add(version, batch.index, check.finite, check.non_finite,
                                   check.degenerate)
        tp, counts = match_detections(
            dets.offsets, dets.xyxy, dets.scores, dets.class_id,
            labels.offsets, labels.xyxy, labels.class_id, self.match_iou_threshold)
        precision, recall = precision_recall(counts)
        ap = per_image_ap(dets.offsets, dets.scores, dets.class_id, tp,
                          labels.offsets, labels.class_id, self.num_classes)
        state = version.state
        for key, value in (("scores", dets.scores), ("classes", dets.class_id), ("tp", tp),
                           ("gt_classes", labels.class_id)):
            state.setdefault(key, []).append(value)
        state["counts"] = state.get("counts", 0) + counts.sum(axis=0)
        return {
            "image": build_images(base_images, boxes={"predictions": dets},
                                  class_labels=self.class_labels,
                                  compress_level=self.compress_level, table_only=True,
                                  box_decimals=self.box_decimals),
            "num_predictions": np.diff(dets.offsets).tolist(),
            "tp": counts[:, 0].tolist(),
            "fp": counts[:, 1].tolist(),
            "fn": counts[:, 2].tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "ap50": ap.tolist(),
            "finite": finite,
        }

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        if "tp" not in state:
            return {}
        mean_ap, _ = mean_average_precision(
            np.concatenate(state["scores"]), np.concatenate(state["classes"]),
            np.concatenate(state["tp"]), np.concatenate(state["gt_classes"]), self.num_classes)
        tp, fp, fn = (int(v) for v in state["counts"])
        return {
            "mAP50": float(mean_ap),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
        }
