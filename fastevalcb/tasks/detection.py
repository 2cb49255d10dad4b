"""``DetectionEvalCallback``: object detection tables with box overlays and COCO metrics.

About 900 lines, one task: the detection callback, its box-format and KerasHub output
adapters and the COCO / VOC metric state are read together; the kernels they call live in
``fastevalcb.kernels``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastevalcb import tables
from fastevalcb.errors import FastEvalInputError
from fastevalcb.kernels import (
    box_format_name,
    coco_accumulate,
    coco_match,
    concat_matches,
    detection_confusion,
    f1_sweep,
    match_detections,
    mean_average_precision,
    per_image_ap,
    precision_recall,
)
from fastevalcb.kernels.coco import RECALL_THRESHOLDS, STAT_NAMES
from fastevalcb.media import build_images
from fastevalcb.media.boxes import box_data_json
from fastevalcb.predictor import PredictionBatch
from fastevalcb.tasks import _metrics
from fastevalcb.tasks._base import TaskEvalCallback
from fastevalcb.tasks._eval_set import check_class_range
from fastevalcb.tasks._quality import BoxCheck
from fastevalcb.tasks._versions import Version
from fastevalcb.types import PackedDetections

_SCORE_KEYS = ("confidence", "scores")
_LABEL_KEYS = ("labels", "classes")
_COUNT_KEYS = ("num_detections", "counts")
# Detectors whose predict builds boxes in another format than their bounding_box_format
# says (keras_hub 0.32): D-FINE decodes yxyx pixels whatever it is set to, and its loss
# reads the targets as rel_center_xywh. {class name: (predicted, target) formats}.
_DECLARED_ELSEWHERE = {"DFineObjectDetector": ("yxyx", "rel_center_xywh")}
AP_CONVENTIONS = ("coco", "voc")


@dataclass
class Targets(PackedDetections):
    """Packed ground truth plus COCO's crowd flags, ``crowd`` ``(N,)`` bool (or None)."""

    crowd: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[PackedDetections]) -> Targets:
        base = PackedDetections.concat(parts)
        flags = [getattr(p, "crowd", None) for p in parts]
        crowd = (
            None
            if all(f is None for f in flags)
            else np.concatenate(
                [np.zeros(len(p.class_id), bool) if f is None else f for p, f in zip(parts, flags)]
            )
        )
        return cls(base.offsets, base.xyxy, base.class_id, None, crowd)

    def slice(self, start: int, stop: int) -> Targets:
        base = PackedDetections.slice(self, start, stop)
        s, e = int(self.offsets[start]), int(self.offsets[stop])
        return Targets(
            base.offsets,
            base.xyxy,
            base.class_id,
            None,
            None if self.crowd is None else self.crowd[s:e],
        )


def _one_key(outputs: Mapping[str, Any], keys: tuple[str, ...], what: str) -> str | None:
    """The one of ``keys`` that ``outputs`` has (None if none); two of them is an error."""
    found = [k for k in keys if k in outputs]
    if len(found) > 1:
        raise FastEvalInputError(
            f"detection {what} has both {found[0]!r} and {found[1]!r}; keep one, or pass "
            "adapter=<fn> to pick"
        )
    return found[0] if found else None


def default_adapter(outputs: Any) -> dict[str, Any]:
    """Read the padded detection layouts Keras models return.

    Accepts a dict in KerasHub's ``ObjectDetector.predict`` layout, ``{"boxes": (B, K, 4),
    "confidence": (B, K), "labels": (B, K), "num_detections": (B,)}`` with every slot past
    ``num_detections`` set to -1, or in ours, ``{"boxes", "scores", "classes"[,
    "num_detections"]}`` (any mix of ``labels``/``classes`` and ``confidence``/``scores``;
    ``num_detections`` optional); or a tuple/list ``(boxes, scores, classes[,
    num_detections])``. Extra dict keys are ignored. Which rows are padding is decided by
    :func:`detections_from_outputs`.

    Returns:
        ``{"boxes", "scores", "classes", "num_detections" (or None)}``.
    """
    if isinstance(outputs, Mapping):
        label_key = _one_key(outputs, _LABEL_KEYS, "outputs")
        score_key = _one_key(outputs, _SCORE_KEYS, "outputs")
        count_key = _one_key(outputs, _COUNT_KEYS, "outputs")
        if "boxes" not in outputs or label_key is None or score_key is None:
            raise FastEvalInputError(
                "detection outputs must be a dict with 'boxes', 'confidence' (or 'scores') and "
                f"'labels' (or 'classes'), like KerasHub's predict; got keys {sorted(outputs)}; "
                "pass adapter=<fn> to map them"
            )
        return {
            "boxes": outputs["boxes"],
            "scores": outputs[score_key],
            "classes": outputs[label_key],
            "num_detections": outputs[count_key] if count_key else None,
        }
    if isinstance(outputs, (list, tuple)) and len(outputs) in (3, 4):
        return {
            "boxes": outputs[0],
            "scores": outputs[1],
            "classes": outputs[2],
            "num_detections": outputs[3] if len(outputs) == 4 else None,
        }
    raise FastEvalInputError(
        "detection outputs must be a dict {'boxes', 'confidence', 'labels'[, "
        "'num_detections']} (KerasHub's) or {'boxes', 'scores', 'classes'}, or a tuple "
        f"(boxes, scores, classes[, num_detections]); got {type(outputs).__name__}; pass "
        "adapter=<fn> to map the model's outputs"
    )


def model_box_formats(model: Any) -> tuple[str | None, str | None]:
    """The formats a model declares: ``(predicted boxes, targets)``, or ``(None, None)``.

    KerasHub ``ObjectDetector``s have a ``bounding_box_format`` (RetinaNet: ``"yxyx"`` by
    default) that their ``predict`` returns and their loss reads. D-FINE is the exception:
    its ``predict`` returns ``"yxyx"`` whatever the setting and its loss reads
    ``"rel_center_xywh"`` targets.
    """
    for cls in type(model).__mro__:
        if cls.__name__ in _DECLARED_ELSEWHERE:
            return _DECLARED_ELSEWHERE[cls.__name__]
    declared = getattr(model, "bounding_box_format", None)
    if not isinstance(declared, str):
        return None, None
    try:
        name = box_format_name(declared)
    except ValueError:
        return None, None
    return name, name


def _integral(arr: np.ndarray, what: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.integer) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise FastEvalInputError(f"{what} must be integer class ids, got {arr.dtype} values")
    return arr.astype(np.int64)


def detections_from_outputs(
    outputs: Any,
    n: int,
    image_size: tuple[int, int],
    *,
    box_format: str,
    num_classes: int,
    adapter: Callable[[Any], Any] | None = None,
    score_threshold: float | None = None,
    nms_iou_threshold: float | None = None,
    max_detections: int | None = None,
    index: np.ndarray | None = None,
    box_check: Callable[..., np.ndarray] | None = None,
    clip: bool = False,
) -> PackedDetections:
    """A batch of the model's (numpy) outputs -> packed xyxy pixel boxes, padding dropped.

    A row is padding when its class is negative, it lies past ``num_detections``, or its
    box and score are all -1 (KerasHub's ``mask_invalid_detections``). Nothing else is
    dropped unless asked: ``score_threshold``, ``nms_iou_threshold`` and
    ``max_detections`` default to None (keep what ``predict`` returned).

    Args:
        outputs: what the predict step returned for ``n`` images (numpy).
        n: images in the batch.
        image_size: ``(height, width)`` the boxes are clipped to (and ``rel_*`` boxes are
            fractions of).
        box_format: the predicted boxes' format (:data:`fastevalcb.kernels.BOX_FORMATS`).
        num_classes: class ids must lie in ``[0, num_classes)``.
        adapter: maps ``outputs`` to one of :func:`default_adapter`'s forms first.
        score_threshold: drop lower scores; None keeps all.
        nms_iou_threshold: class-wise NMS at this IoU; None for none.
        max_detections: keep the best this many per image; None for all.
        index: sample ids of the batch, for error messages.
        box_check: ``(boxes, scores, padding, box_format) -> (B, K) bool`` of the
            non-padding rows to drop as well (NaN/inf, inverted or zero-area boxes:
            :class:`fastevalcb.tasks._quality.BoxCheck`, which counts them).
        clip: clip the boxes to ``image_size`` (COCO does not: off by default).

    Returns:
        PackedDetections: ``xyxy`` float32 pixels, ``scores`` float32, ``class_id`` int32.
    """
    boxes, scores, classes, counts, padding = padded_outputs(
        outputs, n, adapter, num_classes, index
    )
    if box_check is not None:
        padding |= box_check(boxes, scores, padding, box_format)  # bad boxes: dropped
    scores = np.where(padding, np.nan, scores)  # NaN scores are dropped by the kernel
    classes = np.where(padding, 0, classes)
    return PackedDetections.from_padded(
        boxes,
        classes,
        scores,
        counts,
        box_format=box_format,
        image_size=image_size,
        clip=clip,
        iou_threshold=nms_iou_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
        num_classes=num_classes,
    )


def padded_outputs(
    outputs: Any,
    n: int,
    adapter: Callable[[Any], Any] | None,
    num_classes: int,
    index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """The model's outputs for ``n`` images, checked with numpy alone (no kernel: train
    begin checks the first batch with it while the worker compiles the kernels).

    Returns:
        ``(boxes (n, K, 4) float32, scores (n, K) float32, classes (n, K) int64, counts
        (n,) int64 or None, padding (n, K) bool)``; the classes of rows that are not
        padding lie in ``[0, num_classes)``.

    Raises:
        FastEvalInputError: on shapes, non-integer classes or class ids out of range.
    """
    raw = (adapter or default_adapter)(outputs)
    if adapter is not None and not (isinstance(raw, dict) and "boxes" in raw):
        raw = default_adapter(raw)
    boxes = np.asarray(raw["boxes"], np.float32)
    scores = np.asarray(raw["scores"], np.float32)
    if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[2] != 4:
        raise FastEvalInputError(
            f"predicted boxes must have shape (B, K, 4), got {boxes.shape} for B={n}"
        )
    k = boxes.shape[1]
    classes = _integral(np.asarray(raw["classes"]), "predicted classes")
    if scores.shape != (n, k) or classes.shape != (n, k):
        raise FastEvalInputError(
            f"predicted scores and classes must have shape ({n}, {k}) like the boxes, got "
            f"{scores.shape} and {classes.shape}"
        )
    padding = (classes < 0) | ((scores == -1) & np.all(boxes == -1, axis=2))
    counts = raw.get("num_detections")
    if counts is not None:
        counts = np.clip(np.asarray(counts).reshape(n).astype(np.int64), 0, k)
        padding |= np.arange(k)[None, :] >= counts[:, None]
    check_class_range(
        np.where(padding, 0, classes),
        num_classes,
        "a predicted class",
        np.arange(n) if index is None else index,
    )
    return boxes, scores, classes, counts, padding


class DetectionEvalCallback(TaskEvalCallback):
    """Log validation images with ground-truth boxes once and predicted boxes every log.

    Data table: ``id, image`` (with a ``ground_truth`` box layer), ``num_objects``,
    ``classes``. Pred table: ``epoch, step, id, image`` (the data table's image and its
    ground-truth boxes by reference, plus a new ``predictions`` box layer with scores),
    ``num_predictions, tp, fp, fn, precision, recall, ap50, finite``: per image,
    predictions matched greedily by score to same-class ground truth at
    ``match_iou_threshold``; ``ap50`` is the image's all-point AP.

    Summary metrics of each version, over the logged samples and from the same predictions
    the table shows (``<prefix>/<key>``; NaN where undefined, see below):

    * ``metrics`` group ``"coco"``, with ``ap_convention="coco"`` (default): pycocotools'
      ``COCOeval`` (bbox) numbers, equal to its ``stats``: ``mAP`` (AP over IoU
      0.50:0.05:0.95, the COCO headline number), ``mAP50``, ``mAP75``, ``mAP_small``,
      ``mAP_medium``, ``mAP_large`` (box area < 32², 32²-96², > 96² pixels), ``AR1``,
      ``AR10``, ``AR100`` (recall with at most 1/10/100 detections per image and class),
      ``AR_small``, ``AR_medium``, ``AR_large``. COCO's rules apply: 101-point
      interpolated precision, at most 100 detections per image and class, greedy matching
      by score with COCO's tie rule, areas of the boxes, ``iscrowd`` boxes when the targets
      carry them, classes without ground truth left out of every mean. Where COCO prints
      -1 (no ground truth in a range) the key is NaN. ``ap_convention="voc"`` logs instead
      ``mAP50`` as PASCAL VOC's all-point AP at ``match_iou_threshold`` (every prediction,
      no cap), the convention of earlier versions.
    * with any of ``"coco"``, ``"per_class"``, ``"pr_curve"`` (they share COCO's
      matching): ``precision``, ``recall``, ``f1``: means over the classes with ground truth
      at ``f1_threshold``, the confidence that maximizes the mean F1 on a 0.001 grid
      (ultralytics' P and R), matched as COCO matches at IoU 0.5. With a
      ``score_threshold``, also ``precision_at_score_threshold``,
      ``recall_at_score_threshold``, ``f1_at_score_threshold`` over every kept prediction.

    Tables and charts of each version (``metrics`` groups): ``per_class`` (a table, one row
    per class: ``class, num_gt`` (non-crowd ground-truth boxes), ``num_pred`` (predictions
    scored: at most 100 per image and class), ``AP, AP50, AP75``, ``precision, recall,
    f1`` at ``f1_threshold``, plus the ``*_at_score_threshold`` columns; empty cells where
    undefined), ``confusion_matrix`` (W&B's confusion-matrix chart of boxes paired
    one-to-one at IoU >= 0.5 among the predictions scoring ``>= confusion_score_threshold``,
    with a ``background`` row (predictions on no object) and column (missed objects):
    :func:`fastevalcb.kernels.detection_confusion`), ``pr_curve`` (COCO's 101-point
    precision at IoU 0.5 of the ``pr_top_k`` classes with the most ground truth, and the
    mean over classes). Without ground truth, or without predictions, the numbers are
    COCO's (AP -1 -> NaN, or 0) and nothing raises.

    Predicted boxes with a NaN/inf coordinate or score are dropped from the overlay and
    the metrics (the row's ``finite`` is False, the version's summary metrics NaN);
    inverted or zero-area boxes are kept, as COCO scores them (false positives that take a
    ``maxDets`` slot), unless ``drop_degenerate_boxes=True``; both are warned about once
    per fit.

    The predictions logged are those ``model.predict`` returns: a KerasHub detector has
    already decoded, thresholded (its ``NonMaxSuppression``'s ``confidence_threshold``)
    and NMS-ed them, so by default nothing is dropped here but padding.

    Box formats are ``keras.utils.bounding_boxes``' names (``xyxy, yxyx, xywh,
    center_xywh, center_yxhw, rel_xyxy, rel_yxyx, rel_xywh, rel_center_xywh``; ``rel_*``
    are fractions of the image height/width). By default (``box_format=None``) both the
    targets and the predictions are in the model's own ``bounding_box_format`` (KerasHub
    ``ObjectDetector``s: RetinaNet's default is ``"yxyx"``), else ``"xyxy"`` pixels,
    resolved at train begin.

    Args:
        validation_data: ``(x, targets)`` arrays or a ``tf.data.Dataset`` of them: ``x``
            images ``(N, H, W[, C])``; ``targets`` a dict ``{"boxes": (N, M, 4),
            "labels": (N, M)}`` (KerasHub's keys; ``"classes"`` also works) or a tuple
            ``(boxes, labels)``, padded with label -1 (padded boxes are ignored, e.g. -1).
            A dict may carry ``"iscrowd": (N, M)`` 0/1 flags: COCO's crowd regions, which
            can absorb any number of detections and never count as missed.
        class_names: one name per class id.
        box_format: format of the model's predicted boxes, and of the targets unless
            ``target_box_format`` says otherwise. None: the model's
            ``bounding_box_format``, else ``"xyxy"``. A format that differs from the
            model's ``bounding_box_format`` is an error at train begin (the model predicts
            in its own), unless an ``adapter`` (whose output is yours) is given.
            ``"cxcywh"`` is kept as an alias of ``"center_xywh"``.
        target_box_format: format of the validation targets when it is not
            ``box_format``'s (e.g. targets stored ``"xyxy"`` for a ``"yxyx"`` model).
        normalized: deprecated: ``normalized=True`` means the ``rel_`` version of
            ``box_format`` (``box_format="rel_xyxy"``); it warns and will be removed.
        adapter: host-side function mapping the model's (numpy) outputs to
            :func:`default_adapter`'s forms; default reads KerasHub's ``{"boxes",
            "confidence", "labels", "num_detections"}`` (-1 padded), ours (``scores``,
            ``classes``) or a 3/4-tuple.
        score_threshold: drop predictions scoring lower; None (default) keeps all the
            model returned (the W&B UI can filter further).
        nms_iou_threshold: class-wise NMS IoU threshold, or None (default) when the model
            already applies NMS.
        match_iou_threshold: IoU at which a prediction matches ground truth (0.5: AP50).
        max_detections: keep at most this many predictions per image (best scores);
            None (default) keeps all.
        box_decimals: decimals of the box positions written to the tables (scores get 4);
            2 is 1/100 of a pixel. None writes full float precision, like a hand-built
            ``wandb.Image``, at ~10x the formatting cost.
        ap_convention: ``"coco"`` (pycocotools' numbers) or ``"voc"`` (``mAP50`` only,
            VOC all-point AP at ``match_iou_threshold``).
        metrics: the groups to compute and log, some of ``["coco", "per_class",
            "confusion_matrix", "pr_curve"]``; None (default) for all.
        clip_boxes: clip predicted and target boxes to the image before drawing and
            scoring them. Off by default: COCO scores the boxes as they are.
        drop_degenerate_boxes: drop inverted and zero-area predicted boxes (off by
            default: COCO counts them as false positives).
        confusion_score_threshold: the score a prediction needs to enter the confusion
            matrix (ultralytics' 0.25 by default).
        pr_top_k: classes with the most ground truth drawn in the PR chart (plus the mean).
        max_confusion_classes: the confusion chart shows at most this many classes (the
            most frequent; the rest summed into ``"(other)"``).
        **options: the shared options of :class:`~fastevalcb.tasks._base.TaskEvalCallback`.

    Raises:
        FastEvalInputError: targets of the wrong shape or class ids outside
            ``class_names`` (at construction for arrays, at train begin for datasets),
            ``rel_*`` targets that are not fractions, a ``box_format`` that contradicts
            the model's, model outputs the adapter cannot read (at train begin).
    """

    task = "detection"
    kernel_groups = ("boxes", "nms", "detection_metrics", "coco", "confusion")

    def __init__(
        self,
        validation_data: Any,
        class_names: Sequence[str],
        *,
        box_format: str | None = None,
        target_box_format: str | None = None,
        normalized: bool | None = None,
        adapter: Callable[[Any], Any] | None = None,
        score_threshold: float | None = None,
        nms_iou_threshold: float | None = None,
        match_iou_threshold: float = 0.5,
        max_detections: int | None = None,
        box_decimals: int | None = 2,
        ap_convention: str = "coco",
        metrics: Sequence[str] | None = None,
        clip_boxes: bool = False,
        drop_degenerate_boxes: bool = False,
        confusion_score_threshold: float = 0.25,
        pr_top_k: int = 5,
        max_confusion_classes: int = 30,
        **options: Any,
    ) -> None:
        if normalized is not None:
            warnings.warn(
                "DetectionEvalCallback(normalized=...) is deprecated and will be removed: "
                "name a relative format instead, e.g. box_format='rel_xyxy' "
                "(keras.utils.bounding_boxes' names)",
                DeprecationWarning,
                stacklevel=2,
            )
            if normalized:
                box_format = box_format_name(box_format or "xyxy", normalized=True)
        self._box_format_arg = None if box_format is None else box_format_name(box_format)
        self._target_box_format_arg = (
            None if target_box_format is None else box_format_name(target_box_format)
        )
        # Resolved when the model is known (train begin), or now when given.
        self.box_format = self._box_format_arg
        self.target_box_format = self._target_box_format_arg or self._box_format_arg
        if not 0.0 < match_iou_threshold <= 1.0:
            raise ValueError(f"match_iou_threshold must be in (0, 1], got {match_iou_threshold}")
        if adapter is not None and not callable(adapter):
            raise TypeError(f"adapter must be callable, got {type(adapter).__name__}")
        if max_detections is not None and (
            isinstance(max_detections, bool)
            or not isinstance(max_detections, int)
            or max_detections < 1
        ):
            raise ValueError(
                f"max_detections must be a positive int or None, got {max_detections!r}"
            )
        self.adapter = adapter
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.nms_iou_threshold = nms_iou_threshold
        self.match_iou_threshold = float(match_iou_threshold)
        self.max_detections = max_detections
        if box_decimals is not None and (
            not isinstance(box_decimals, int) or not 0 <= box_decimals <= 9
        ):
            raise ValueError(f"box_decimals must be an int in [0, 9] or None, got {box_decimals!r}")
        self.box_decimals = box_decimals
        if ap_convention not in AP_CONVENTIONS:
            raise ValueError(
                f"ap_convention must be one of {AP_CONVENTIONS}, got {ap_convention!r}"
            )
        self.ap_convention = ap_convention
        self.metrics = _metrics.check_metrics(metrics, self.task)
        self.clip_boxes = bool(clip_boxes)
        for name, value in (
            ("pr_top_k", pr_top_k),
            ("max_confusion_classes", max_confusion_classes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.pr_top_k, self.max_confusion_classes = pr_top_k, max(max_confusion_classes, 3)
        self.confusion_score_threshold = float(confusion_score_threshold)
        # NaN/inf boxes: counted, dropped; inverted/zero-area: counted, kept unless asked
        self._box_check = BoxCheck(drop_degenerate=bool(drop_degenerate_boxes))
        super().__init__(validation_data, class_names, **options)
        self._quality.degenerate_kept = not drop_degenerate_boxes

    @classmethod
    def data_columns(cls) -> list[str]:
        return ["id", "image", "num_objects", "classes"]

    def pred_columns(self) -> list[str]:
        return [
            "epoch",
            "step",
            "id",
            "image",
            "num_predictions",
            "tp",
            "fp",
            "fn",
            "precision",
            "recall",
            "ap50",
            "finite",
        ]

    # -- steps ---------------------------------------------------------------------------
    def _check_outputs(self, batch: PredictionBatch) -> None:
        self._resolve_box_formats(self.model)
        self._hw_of(batch)  # the image size must be known: raises here otherwise
        # numpy alone: a cold numba cache compiles for seconds, on the worker meanwhile
        padded_outputs(
            batch.outputs, len(batch), self.adapter, self.num_classes, np.asarray(batch.index)
        )

    def _resolve_box_formats(self, model: Any) -> None:
        """Fix the predicted and target box formats now that the model is known."""
        declared, declared_target = model_box_formats(model)
        wanted = self._box_format_arg
        if (
            wanted is not None
            and declared is not None
            and wanted != declared
            and self.adapter is None
        ):
            raise FastEvalInputError(
                f"box_format={wanted!r}, but {type(model).__name__}.predict returns "
                f"{declared!r} boxes (its bounding_box_format); KerasHub detectors also train "
                f"on targets in it. Leave box_format=None to use the model's; if only your "
                f"validation targets are in another format, pass box_format={declared!r}, "
                f"target_box_format={wanted!r}"
            )
        box_format = wanted or declared or "xyxy"
        target = self._target_box_format_arg or wanted or declared_target or "xyxy"
        if self._data_table_ref is not None and target != self.target_box_format:
            raise FastEvalInputError(
                f"this run's data table was built from {self.target_box_format!r} targets, "
                f"but this model's are {target!r}: use a new callback (or W&B run)"
            )
        self.box_format, self.target_box_format = box_format, target

    def _hw_of(self, batch: PredictionBatch) -> tuple[int, int]:
        if self._image_shape is not None:
            return self._image_shape[0], self._image_shape[1]
        spec = tuple(self.predictor.source.x_spec().shape)
        if len(spec) >= 2 and None not in spec[:2]:
            return int(spec[0]), int(spec[1])
        raise FastEvalInputError(f"cannot tell the image size from the inputs' shape {spec}")

    def _predictions(
        self,
        outputs: Any,
        n: int,
        hw: tuple[int, int],
        index: np.ndarray | None = None,
        model_hw: tuple[int, int] | None = None,
    ) -> PackedDetections:
        """The model's padded outputs -> packed xyxy pixel boxes on the displayed image.

        Boxes come in the frame of the image the model saw (``model_hw``, after a resizing
        preprocessor); they are converted there, then scaled to the displayed ``hw``.
        See :func:`detections_from_outputs`.
        """
        frame = model_hw or hw
        assert self.box_format is not None  # resolved at train begin, before any prediction
        dets = detections_from_outputs(
            outputs,
            n,
            frame,
            box_format=self.box_format,
            num_classes=self.num_classes,
            adapter=self.adapter,
            score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
            index=index,
            box_check=self._box_check,
            clip=self.clip_boxes,
        )
        if tuple(frame) == tuple(hw):
            return dets
        sy, sx = hw[0] / frame[0], hw[1] / frame[1]
        scale = np.array([sx, sy, sx, sy], np.float32)
        return PackedDetections(dets.offsets, dets.xyxy * scale, dets.class_id, dets.scores)

    def _labels(
        self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]
    ) -> PackedDetections | None:
        """Validated targets as packed xyxy pixels; None while the format is unknown
        (construction with ``box_format=None``: only what needs no format is checked)."""
        boxes, classes = self._check_targets(y, index)
        if self.target_box_format is None:
            return None
        valid = classes >= 0
        hw = (image_shape[1], image_shape[2])
        if self.target_box_format.startswith("rel_") and np.any(valid):
            far = np.abs(boxes[valid]).max()
            if far > 2.0:
                sample = int(index[np.argwhere(valid & (np.abs(boxes) > 2.0).any(axis=2))[0, 0]])
                raise FastEvalInputError(
                    f"target boxes are {self.target_box_format!r}: fractions of the image, but "
                    f"sample {sample} has a coordinate of {float(far):g}; pixel boxes want the "
                    f"format without rel_ (e.g. {self.target_box_format[4:]!r})"
                )
        order = np.argsort(~valid, axis=1, kind="stable")  # padding rows last
        boxes = np.take_along_axis(boxes, order[..., None], axis=1)
        classes = np.take_along_axis(classes, order, axis=1)
        counts = valid.sum(axis=1)
        packed = PackedDetections.from_padded(
            boxes,
            np.maximum(classes, 0),
            None,
            counts,
            box_format=self.target_box_format,
            image_size=hw,
            clip=self.clip_boxes,
            num_classes=self.num_classes,
        )
        crowd = _crowd_flags(y, classes.shape, index)
        if crowd is not None:  # in the packed rows' order
            crowd = np.take_along_axis(crowd, order, axis=1)
            crowd = crowd[np.arange(crowd.shape[1])[None, :] < counts[:, None]]
        return Targets(packed.offsets, packed.xyxy, packed.class_id, None, crowd)

    def _check_targets(self, y: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (N, M, 4) float32, labels (N, M) int64)`` of one batch, checked."""
        n = len(index)
        label_key = _one_key(y, _LABEL_KEYS, "targets") if isinstance(y, Mapping) else None
        if isinstance(y, Mapping) and "boxes" in y and label_key is not None:
            boxes, classes = y["boxes"], y[label_key]
        elif isinstance(y, (list, tuple)) and len(y) == 2:
            boxes, classes = y
        else:
            raise FastEvalInputError(
                "detection targets must be a dict {'boxes': (N, M, 4), 'labels': (N, M)} "
                "(or 'classes') or a tuple (boxes, labels), padded with label -1; got "
                f"{type(y).__name__}"
                + (f" with keys {sorted(y)}" if isinstance(y, Mapping) else "")
            )
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
                "to (M, 4) with label -1 (e.g. tf.data .padded_batch(..., padding_values=-1) "
                "or ragged.to_tensor(-1))"
            ) from None
        if classes.ndim == 1 and boxes.ndim == 2:  # one box per image
            boxes, classes = boxes[:, None], classes[:, None]
        if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[2] != 4:
            raise FastEvalInputError(
                f"target boxes must have shape (N, M, 4), got {tuple(boxes.shape)[1:]} per "
                f"sample in a batch of {n}"
            )
        if classes.shape != boxes.shape[:2]:
            raise FastEvalInputError(
                f"target labels must have shape (N, {boxes.shape[1]}) like the boxes, got "
                f"{tuple(classes.shape)}"
            )
        classes = _integral(classes, "target labels")
        check_class_range(classes, self.num_classes, "a target box label", index, (-1,))
        if not np.all(np.isfinite(boxes[classes >= 0])):
            raise FastEvalInputError("target boxes must be finite numbers")
        _crowd_flags(y, classes.shape, index)  # checked now, whatever the box format
        return boxes, classes

    def _data_columns_for(
        self, index: np.ndarray, images: np.ndarray, labels: PackedDetections
    ) -> dict[str, Any]:
        names = np.asarray(self.class_names, dtype=object)
        off = labels.offsets
        return {
            "id": index.tolist(),
            "image": build_images(
                images,
                boxes={"ground_truth": labels},
                class_labels=self.class_labels,
                compress_level=self.compress_level,
                table_only=True,
                box_decimals=self.box_decimals,
                stager=self._stager,
            ),
            "num_objects": np.diff(off).tolist(),
            "classes": [
                names[labels.class_id[off[i] : off[i + 1]]].tolist() for i in range(len(index))
            ],
        }

    def _pred_columns_for(
        self,
        version: Version,
        batch: PredictionBatch,
        labels: PackedDetections,
        base_images: tables.ImageColumn,
    ) -> dict[str, Any]:
        dets = self._predictions(
            batch.outputs,
            len(batch),
            self._hw_of(batch),
            np.asarray(batch.index),
            batch.model_hw,
        )
        check = self._box_check  # what _predictions just dropped, per sample
        assert dets.scores is not None  # predictions always carry scores
        finite = self._quality.add(
            version, batch.index, check.finite, check.non_finite, check.degenerate
        )
        tp, counts = match_detections(
            dets.offsets,
            dets.xyxy,
            dets.scores,
            dets.class_id,
            labels.offsets,
            labels.xyxy,
            labels.class_id,
            self.match_iou_threshold,
        )
        precision, recall = precision_recall(counts)
        ap = per_image_ap(
            dets.offsets,
            dets.scores,
            dets.class_id,
            tp,
            labels.offsets,
            labels.class_id,
            self.num_classes,
        )
        self._add_to_metrics(version.state, dets, labels, tp)
        return {
            "image": tables.LayeredImages(
                base_images,
                self.class_labels,
                boxes={
                    key: box_data_json(boxes, self.class_labels, "pixel", self.box_decimals)
                    for key, boxes in (("predictions", dets), ("ground_truth", labels))
                },
            ),
            "num_predictions": np.diff(dets.offsets).tolist(),
            "tp": counts[:, 0].tolist(),
            "fp": counts[:, 1].tolist(),
            "fn": counts[:, 2].tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "ap50": ap.tolist(),
            "finite": finite,
        }

    # -- summary metrics (on the worker, per version) -----------------------------------
    def _add_to_metrics(
        self,
        state: dict[str, Any],
        dets: PackedDetections,
        labels: PackedDetections,
        tp: np.ndarray,
    ) -> None:
        """Keep what the version's metrics need of one batch: COCO's per-detection rows
        (a few bytes a kept detection), the confusion counts, and for ``"voc"`` the
        scores, classes and matches of every prediction."""
        assert dets.scores is not None  # predictions always carry scores
        if self.metrics & {"coco", "per_class", "pr_curve"}:
            matches = coco_match(
                dets.offsets,
                dets.xyxy,
                dets.scores,
                dets.class_id,
                labels.offsets,
                labels.xyxy,
                labels.class_id,
                self.num_classes,
                getattr(labels, "crowd", None),
            )
            state.setdefault("coco", []).append(matches._replace(det_index=_NO_ROWS))
        if "confusion_matrix" in self.metrics:
            state["confusion"] = detection_confusion(
                dets.offsets,
                dets.xyxy,
                dets.scores,
                dets.class_id,
                labels.offsets,
                labels.xyxy,
                labels.class_id,
                self.num_classes,
                score_threshold=self.confusion_score_threshold,
                out=state.get("confusion"),
            )
        if self.ap_convention == "voc":
            for key, value in (
                ("scores", dets.scores),
                ("classes", dets.class_id),
                ("tp", tp),
                ("gt_classes", labels.class_id),
            ):
                state.setdefault(key, []).append(value)

    def _evaluate(self, state: dict[str, Any]) -> dict[str, Any]:
        """The version's COCO evaluation and per-class results, computed once."""
        if "evaluated" in state:
            done: dict[str, Any] = state["evaluated"]
            return done
        matches = concat_matches(state["coco"], self.num_classes)
        result = coco_accumulate(matches)
        num_gt = matches.num_gt[:, 0]
        grid, mean_f1, tp, fp = f1_sweep(matches)
        best = int(np.argmax(mean_f1))  # the lowest of equally good thresholds
        per_class = {
            "class": list(self.class_names),
            "num_gt": num_gt,
            "num_pred": np.bincount(matches.det_class, minlength=self.num_classes),
            "AP": result.class_ap(),
            "AP50": result.class_ap(0),
            "AP75": result.class_ap(5),
        }
        if self.ap_convention == "voc":
            per_class["AP50"] = self._voc_ap(state)[1]
            del per_class["AP"], per_class["AP75"]
        means = {"f1_threshold": float(grid[best]) if np.any(num_gt > 0) else float("nan")}
        at = [("", tp[:, best], fp[:, best])]
        if self.score_threshold is not None:
            _, _, tp_s, fp_s = f1_sweep(matches, np.array([self.score_threshold]))
            at.append(("_at_score_threshold", tp_s[:, 0], fp_s[:, 0]))
        for suffix, t, f in at:
            scores = _prf(t, f, num_gt)
            for name, values in scores.items():
                per_class[name + suffix] = values
                # a class with ground truth and no prediction has precision 0 in the mean
                present = num_gt > 0
                mean = np.nan_to_num(values[present]).mean() if present.any() else np.nan
                means[name + suffix] = float(mean)
        evaluated = {"result": result, "per_class": per_class, "means": means}
        state["evaluated"] = evaluated
        return evaluated

    def _voc_ap(self, state: dict[str, Any]) -> tuple[float, np.ndarray]:
        if "tp" not in state:
            return float("nan"), np.full(self.num_classes, np.nan)
        mean_ap, ap = mean_average_precision(
            np.concatenate(state["scores"]),
            np.concatenate(state["classes"]),
            np.concatenate(state["tp"]),
            np.concatenate(state["gt_classes"]),
            self.num_classes,
        )
        return float(mean_ap), ap

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.ap_convention == "voc" and "coco" in self.metrics:
            out["mAP50"] = self._voc_ap(state)[0]
        if "coco" not in state:
            return out
        evaluated = self._evaluate(state)
        if "coco" in self.metrics and self.ap_convention != "voc":
            out.update(
                (name, _metrics.nan_if_negative(value))
                for name, value in zip(STAT_NAMES, evaluated["result"].stats)
            )
        out.update(evaluated["means"])
        return out

    def _summary_charts(self, state: dict[str, Any]) -> dict[str, Any]:
        if state.get("quality", {}).get("non_finite"):
            return {}  # no charts of a version whose metrics are NaN
        charts: dict[str, Any] = {}
        if "confusion_matrix" in self.metrics and "confusion" in state:
            charts["confusion_matrix"] = _metrics.confusion_chart(
                state["confusion"],
                [*self.class_names, _metrics.BACKGROUND],
                f"Boxes at IoU 0.5, score >= {self.confusion_score_threshold:g}",
                self.max_confusion_classes,
                keep_last=True,
            )
        if "coco" not in state:
            return charts
        evaluated = self._evaluate(state)
        if "per_class" in self.metrics:
            charts["per_class"] = _metrics.per_class_table(evaluated["per_class"])
        if "pr_curve" in self.metrics:
            result = evaluated["result"]
            present = result.num_gt[:, 0] > 0
            top = _metrics.top_k_by_support(result.num_gt[:, 0], self.pr_top_k)
            if present.any():
                curves = [result.precision[:, c] for c in top]
                curves.append(result.precision[:, present].mean(axis=1))
                charts["pr_curve"] = _metrics.pr_chart(
                    RECALL_THRESHOLDS,
                    np.array(curves),
                    [self.class_names[c] for c in top] + ["mean"],
                    "PR at IoU 0.5 (COCO)",
                )
        return charts


_NO_ROWS = np.zeros(0, np.int64)


def _crowd_flags(y: Any, shape: tuple[int, ...], index: np.ndarray) -> np.ndarray | None:
    """The targets' ``iscrowd`` ``(N, M)`` 0/1 flags as bool, or None without them."""
    if not isinstance(y, Mapping) or "iscrowd" not in y:
        return None
    flags = np.asarray(y["iscrowd"])
    if flags.shape != tuple(shape):
        raise FastEvalInputError(
            f"target iscrowd must have shape (N, {shape[1]}) like the labels, got "
            f"{tuple(flags.shape)}"
        )
    bad = ~((flags == 0) | (flags == 1))
    if np.any(bad):
        row = int(np.argwhere(bad)[0, 0])
        raise FastEvalInputError(
            f"target iscrowd must be 0 or 1, got {flags[bad][0].item()!r} for sample "
            f"{int(index[row])}"
        )
    return flags.astype(bool)


def _prf(tp: np.ndarray, fp: np.ndarray, num_gt: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 from counts; NaN where 0/0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan),
            "recall": np.where(num_gt > 0, tp / np.maximum(num_gt, 1), np.nan),
            "f1": np.where(tp + fp + num_gt > 0, 2 * tp / np.maximum(tp + fp + num_gt, 1), np.nan),
        }
