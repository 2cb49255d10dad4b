"""``DetectionEvalCallback``: object detection tables with box overlays and AP50."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fastevalcb import tables
from fastevalcb.callback import FastEvalInputError
from fastevalcb.kernels import (
    box_format_name,
    match_detections,
    mean_average_precision,
    per_image_ap,
    precision_recall,
)
from fastevalcb.media import build_images
from fastevalcb.media.boxes import box_data_json
from fastevalcb.predictor import PredictionBatch
from fastevalcb.tasks._base import TaskEvalCallback, _Version, check_class_range
from fastevalcb.tasks._quality import BoxCheck
from fastevalcb.types import PackedDetections

_SCORE_KEYS = ("confidence", "scores")
_LABEL_KEYS = ("labels", "classes")
_COUNT_KEYS = ("num_detections", "counts")
# Detectors whose predict builds boxes in another format than their bounding_box_format
# says (keras_hub 0.32): D-FINE decodes yxyx pixels whatever it is set to, and its loss
# reads the targets as rel_center_xywh. {class name: (predicted, target) formats}.
_DECLARED_ELSEWHERE = {"DFineObjectDetector": ("yxyx", "rel_center_xywh")}


def _one_key(outputs: Mapping, keys: tuple[str, ...], what: str) -> str | None:
    """The one of ``keys`` that ``outputs`` has (None if none); two of them is an error."""
    found = [k for k in keys if k in outputs]
    if len(found) > 1:
        raise FastEvalInputError(
            f"detection {what} has both {found[0]!r} and {found[1]!r}; keep one, or pass "
            "adapter=<fn> to pick")
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
                "pass adapter=<fn> to map them")
        return {"boxes": outputs["boxes"], "scores": outputs[score_key],
                "classes": outputs[label_key],
                "num_detections": outputs[count_key] if count_key else None}
    if isinstance(outputs, (list, tuple)) and len(outputs) in (3, 4):
        return {"boxes": outputs[0], "scores": outputs[1], "classes": outputs[2],
                "num_detections": outputs[3] if len(outputs) == 4 else None}
    raise FastEvalInputError(
        "detection outputs must be a dict {'boxes', 'confidence', 'labels'[, "
        "'num_detections']} (KerasHub's) or {'boxes', 'scores', 'classes'}, or a tuple "
        f"(boxes, scores, classes[, num_detections]); got {type(outputs).__name__}; pass "
        "adapter=<fn> to map the model's outputs")


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
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
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

    Returns:
        PackedDetections: ``xyxy`` float32 pixels, ``scores`` float32, ``class_id`` int32.
    """
    boxes, scores, classes, counts, padding = padded_outputs(outputs, n, adapter, num_classes,
                                                             index)
    if box_check is not None:
        padding |= box_check(boxes, scores, padding, box_format)  # bad boxes: dropped
    scores = np.where(padding, np.nan, scores)  # NaN scores are dropped by the kernel
    classes = np.where(padding, 0, classes)
    return PackedDetections.from_padded(
        boxes, classes, scores, counts, box_format=box_format, image_size=image_size,
        clip=True, iou_threshold=nms_iou_threshold, score_threshold=score_threshold,
        max_detections=max_detections, num_classes=num_classes)


def padded_outputs(outputs: Any, n: int, adapter: Callable[[Any], Any] | None,
                   num_classes: int, index: np.ndarray | None = None) -> tuple:
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
            f"predicted boxes must have shape (B, K, 4), got {boxes.shape} for B={n}")
    k = boxes.shape[1]
    classes = _integral(np.asarray(raw["classes"]), "predicted classes")
    if scores.shape != (n, k) or classes.shape != (n, k):
        raise FastEvalInputError(
            f"predicted scores and classes must have shape ({n}, {k}) like the boxes, got "
            f"{scores.shape} and {classes.shape}")
    padding = (classes < 0) | ((scores == -1) & np.all(boxes == -1, axis=2))
    counts = raw.get("num_detections")
    if counts is not None:
        counts = np.clip(np.asarray(counts).reshape(n).astype(np.int64), 0, k)
        padding |= np.arange(k)[None, :] >= counts[:, None]
    check_class_range(np.where(padding, 0, classes), num_classes, "a predicted class",
                      np.arange(n) if index is None else index)
    return boxes, scores, classes, counts, padding


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
        **options: the shared options of :class:`~fastevalcb.tasks._base.TaskEvalCallback`.

    Raises:
        FastEvalInputError: targets of the wrong shape or class ids outside
            ``class_names`` (at construction for arrays, at train begin for datasets),
            ``rel_*`` targets that are not fractions, a ``box_format`` that contradicts
            the model's, model outputs the adapter cannot read (at train begin).
    """

    task = "detection"
    kernel_groups = ("boxes", "nms", "detection_metrics")

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
        **options: Any,
    ) -> None:
        if normalized is not None:
            warnings.warn(
                "DetectionEvalCallback(normalized=...) is deprecated and will be removed: "
                "name a relative format instead, e.g. box_format='rel_xyxy' "
                "(keras.utils.bounding_boxes' names)", DeprecationWarning, stacklevel=2)
            if normalized:
                box_format = box_format_name(box_format or "xyxy", normalized=True)
        self._box_format_arg = None if box_format is None else box_format_name(box_format)
        self._target_box_format_arg = (None if target_box_format is None
                                       else box_format_name(target_box_format))
        # Resolved when the model is known (train begin), or now when given.
        self.box_format = self._box_format_arg
        self.target_box_format = self._target_box_format_arg or self._box_format_arg
        if not 0.0 < match_iou_threshold <= 1.0:
            raise ValueError(f"match_iou_threshold must be in (0, 1], got {match_iou_threshold}")
        if adapter is not None and not callable(adapter):
            raise TypeError(f"adapter must be callable, got {type(adapter).__name__}")
        if max_detections is not None and (isinstance(max_detections, bool)
                                           or not isinstance(max_detections, int)
                                           or max_detections < 1):
            raise ValueError(
                f"max_detections must be a positive int or None, got {max_detections!r}")
        self.adapter = adapter
        self.score_threshold = None if score_threshold is None else float(score_threshold)
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
        self._resolve_box_formats(self.model)
        self._hw_of(batch)  # the image size must be known: raises here otherwise
        # numpy alone: a cold numba cache compiles for seconds, on the worker meanwhile
        padded_outputs(batch.outputs, len(batch), self.adapter, self.num_classes,
                       np.asarray(batch.index))

    def _resolve_box_formats(self, model: Any) -> None:
        """Fix the predicted and target box formats now that the model is known."""
        declared, declared_target = model_box_formats(model)
        wanted = self._box_format_arg
        if wanted is not None and declared is not None and wanted != declared \
                and self.adapter is None:
            raise FastEvalInputError(
                f"box_format={wanted!r}, but {type(model).__name__}.predict returns "
                f"{declared!r} boxes (its bounding_box_format); KerasHub detectors also train "
                f"on targets in it. Leave box_format=None to use the model's; if only your "
                f"validation targets are in another format, pass box_format={declared!r}, "
                f"target_box_format={wanted!r}")
        box_format = wanted or declared or "xyxy"
        target = (self._target_box_format_arg or wanted or declared_target or "xyxy")
        if self._data_table_ref is not None and target != self.target_box_format:
            raise FastEvalInputError(
                f"this run's data table was built from {self.target_box_format!r} targets, "
                f"but this model's are {target!r}: use a new callback (or W&B run)")
        self.box_format, self.target_box_format = box_format, target

    def _hw_of(self, batch: PredictionBatch) -> tuple[int, int]:
        if self._image_shape is not None:
            return self._image_shape[0], self._image_shape[1]
        spec = tuple(self.predictor.source.x_spec().shape)
        if len(spec) >= 2 and None not in spec[:2]:
            return int(spec[0]), int(spec[1])
        raise FastEvalInputError(f"cannot tell the image size from the inputs' shape {spec}")

    def _predictions(self, outputs: Any, n: int, hw: tuple[int, int],
                     index: np.ndarray | None = None,
                     model_hw: tuple[int, int] | None = None) -> PackedDetections:
        """The model's padded outputs -> packed xyxy pixel boxes on the displayed image.

        Boxes come in the frame of the image the model saw (``model_hw``, after a resizing
        preprocessor); they are converted there, then scaled to the displayed ``hw``.
        See :func:`detections_from_outputs`.
        """
        frame = model_hw or hw
        dets = detections_from_outputs(
            outputs, n, frame, box_format=self.box_format, num_classes=self.num_classes,
            adapter=self.adapter, score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold, max_detections=self.max_detections,
            index=index, box_check=self._box_check)
        if tuple(frame) == tuple(hw):
            return dets
        sy, sx = hw[0] / frame[0], hw[1] / frame[1]
        scale = np.array([sx, sy, sx, sy], np.float32)
        return PackedDetections(dets.offsets, dets.xyxy * scale, dets.class_id, dets.scores)

    def _labels(self, y: Any, index: np.ndarray,
                image_shape: tuple[int, ...]) -> PackedDetections | None:
        """Validated targets as packed xyxy pixels; None while the format is unknown
        (construction with ``box_format=None``: only what needs no format is checked)."""
        boxes, classes = self._check_targets(y, index)
        if self.target_box_format is None:
            return None
        valid = classes >= 0
        hw = tuple(image_shape[1:3])
        if self.target_box_format.startswith("rel_") and np.any(valid):
            far = np.abs(boxes[valid]).max()
            if far > 2.0:
                sample = int(index[np.argwhere(valid & (np.abs(boxes) > 2.0).any(axis=2))[0, 0]])
                raise FastEvalInputError(
                    f"target boxes are {self.target_box_format!r}: fractions of the image, but "
                    f"sample {sample} has a coordinate of {float(far):g}; pixel boxes want the "
                    f"format without rel_ (e.g. {self.target_box_format[4:]!r})")
        order = np.argsort(~valid, axis=1, kind="stable")  # padding rows last
        boxes = np.take_along_axis(boxes, order[..., None], axis=1)
        classes = np.take_along_axis(classes, order, axis=1)
        return PackedDetections.from_padded(
            boxes, np.maximum(classes, 0), None, valid.sum(axis=1),
            box_format=self.target_box_format, image_size=hw, clip=True,
            num_classes=self.num_classes)

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
                f"{type(y).__name__}" + (f" with keys {sorted(y)}" if isinstance(y, Mapping)
                                         else ""))
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
                "or ragged.to_tensor(-1))") from None
        if classes.ndim == 1 and boxes.ndim == 2:  # one box per image
            boxes, classes = boxes[:, None], classes[:, None]
        if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[2] != 4:
            raise FastEvalInputError(
                f"target boxes must have shape (N, M, 4), got {tuple(boxes.shape)[1:]} per "
                f"sample in a batch of {n}")
        if classes.shape != boxes.shape[:2]:
            raise FastEvalInputError(
                f"target labels must have shape (N, {boxes.shape[1]}) like the boxes, got "
                f"{tuple(classes.shape)}")
        classes = _integral(classes, "target labels")
        check_class_range(classes, self.num_classes, "a target box label", index, (-1,))
        if not np.all(np.isfinite(boxes[classes >= 0])):
            raise FastEvalInputError("target boxes must be finite numbers")
        return boxes, classes

    def _data_columns_for(self, index: np.ndarray, images: np.ndarray,
                          labels: PackedDetections) -> dict:
        names = np.asarray(self.class_names, dtype=object)
        off = labels.offsets
        return {
            "id": index.tolist(),
            "image": build_images(images, boxes={"ground_truth": labels},
                                  class_labels=self.class_labels,
                                  compress_level=self.compress_level, table_only=True,
                                  box_decimals=self.box_decimals, stager=self._stager),
            "num_objects": np.diff(off).tolist(),
            "classes": [names[labels.class_id[off[i]:off[i + 1]]].tolist()
                        for i in range(len(index))],
        }

    def _pred_columns_for(self, version: _Version, batch: PredictionBatch,
                          labels: PackedDetections, base_images: list) -> dict:
        dets = self._predictions(batch.outputs, len(batch), self._image_shape[:2],
                                 np.asarray(batch.index), batch.model_hw)
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
            "image": tables.LayeredImages(base_images, self.class_labels, boxes={
                key: box_data_json(boxes, self.class_labels, "pixel", self.box_decimals)
                for key, boxes in (("predictions", dets), ("ground_truth", labels))}),
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
