"""``SegmentationEvalCallback``: semantic segmentation tables with mask overlays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import wandb

from fastevalcb import _keras, tables
from fastevalcb.errors import FastEvalInputError
from fastevalcb.kernels import (
    blend_overlay,
    resize_nearest,
    segmentation_counts,
)
from fastevalcb.media import build_images, default_palette, stage_masks
from fastevalcb.predictor import PredictionBatch
from fastevalcb.tasks import _metrics
from fastevalcb.tasks._base import TaskEvalCallback
from fastevalcb.tasks._eval_set import check_class_range
from fastevalcb.tasks._versions import Version

OUTPUTS = ("auto", "logits", "probabilities", "labels")


def _class_maps(output: str | Callable[..., Any], num_classes: int) -> Callable[[Any], Any]:
    """The step that turns the model's output into ``(B, H, W)`` uint8 class ids.

    Written in ``keras.ops``, so the same code runs inside the compiled predict step of
    every backend (``tf.function`` on TensorFlow, ``jax.jit`` on JAX; tf_keras models next
    to another backend: :func:`fastevalcb._keras.ops_for`). Only one byte per pixel
    reaches the host (21-class float32 logits would be 84), plus ``(B,)`` bool: every
    score of the sample is finite (an argmax of NaN scores looks like any other class
    map).

    Returns:
        A function ``outputs -> {"class_maps": (B, H, W) uint8, "finite": (B,) bool}``.
    """

    def with_finite(out: Any) -> dict[str, Any]:
        if callable(output):
            out = output(out)
        ops = _keras.ops_for(out)
        maps = class_maps(out, ops)
        if not _keras.is_float_dtype(out.dtype):
            return {"class_maps": maps, "finite": ops.ones(ops.shape(maps)[:1], "bool")}
        finite = ops.all(ops.reshape(ops.isfinite(out), (ops.shape(out)[0], -1)), axis=1)
        return {"class_maps": maps, "finite": finite}

    def class_maps(out: Any, ops: Any) -> Any:
        if isinstance(out, (list, tuple, dict)):
            raise ValueError(
                "the model has several outputs; pass output=<function> (keras.ops) returning "
                "the (B, H, W, C) logits to use"
            )
        rank = len(out.shape)
        if output == "labels" or rank == 3:
            if rank == 4 and out.shape[-1] == 1:
                out = out[..., 0]
            return ops.cast(ops.round(ops.cast(out, "float32")), "uint8")
        if rank != 4:
            raise ValueError(f"the model must output (B, H, W, C) scores, got {out.shape}")
        channels = out.shape[-1]
        if channels == 1 and num_classes == 2:  # one foreground channel: threshold it
            if output == "logits":
                cut = 0.0
            elif output == "probabilities":
                cut = 0.5
            else:  # auto: probabilities when the batch lies in [0, 1]
                in_unit = ops.logical_and(ops.min(out) >= 0, ops.max(out) <= 1)
                cut = ops.where(in_unit, 0.5, 0.0)
            return ops.cast(out[..., 0] > ops.cast(cut, out.dtype), "uint8")
        if channels != num_classes:
            raise ValueError(
                f"the model outputs {channels} channels, but there are {num_classes} "
                "class_names; they must match"
            )
        return ops.cast(ops.argmax(out, axis=-1), "uint8")

    return with_finite


class SegmentationEvalCallback(TaskEvalCallback):
    """Log validation images with ground-truth masks once and predicted masks every log.

    Data table: ``id, image`` (with a ``ground_truth`` mask layer), ``classes`` (names
    present). Pred table: ``epoch, step, id, image`` (the data table's image and
    ground-truth mask by reference plus a new ``predictions`` mask layer),
    ``pixel_accuracy, mean_iou`` and one ``iou/<class>`` column per class (NaN where the
    class is in neither mask), ``finite`` (False: the model's scores for that image hold
    NaN/inf; its metrics are NaN). Summary metrics over the logged samples, from pixel
    counts summed over them (not means of per-image values), equal to scikit-learn's on
    the flattened masks (ignored pixels left out):

    * ``mIoU``: the mean IoU (Jaccard) over the classes in the prediction or the ground
      truth; ``iou/<class>`` for each of those classes.
    * ``pixel_accuracy``: correct pixels / labelled pixels.
    * ``mean_class_accuracy``: the mean over the classes in the ground truth of their
      pixels' recall (``balanced_accuracy_score``).
    * ``fw_iou``: frequency-weighted IoU, each class's IoU weighted by its share of the
      labelled pixels.
    * ``mean_dice``: the mean Dice (F1) over the classes in the prediction or the ground
      truth.

    Per version, by ``metrics`` group: ``"per_class"``, a table with one row per class
    (``class, pixels`` labelled, ``predicted`` pixels, ``iou, accuracy, dice``; empty
    where 0/0); ``"confusion_matrix"``, W&B's confusion-matrix chart of pixels (at most
    ``max_confusion_classes`` classes, the rest summed into ``"(other)"``).

    Args:
        validation_data: ``(x, masks)`` arrays or a ``tf.data.Dataset`` of them:
            ``x`` images ``(N, H, W[, C])``; ``masks`` class ids ``(N, H, W)`` or
            ``(N, H, W, 1)`` of the same ``H, W``.
        class_names: one name per class id (at most 256).
        ignore_index: a mask value that marks unlabelled pixels (e.g. 255); they count
            in no metric and show as ``"ignored"`` in the mask overlay.
        output: the model's output: ``(B, h, w, C)`` scores (argmax inside the compiled
            step; ``"auto"``, ``"logits"`` and ``"probabilities"`` agree there),
            ``"labels"`` (class maps already), or a function mapping the outputs to one of
            those, compiled into the step: ``keras.ops`` run on every backend (TensorFlow
            ops on the TensorFlow backend only). With 2 classes, one channel is the foreground
            score, thresholded at 0 (``"logits"``), 0.5 (``"probabilities"``) or, with
            ``"auto"``, at 0.5 when a batch lies in [0, 1] (sigmoid) and 0 otherwise.
            Predictions of another size than the image are resized (nearest neighbour).
        overlay_alpha: when set, the pred table's image is a new picture with the
            predicted class colours blended in at this opacity (for viewers that don't
            draw mask layers); by default it is the data table's image, by reference.
        metrics: the groups to compute and log, some of ``["per_class",
            "confusion_matrix"]``; None (default) for both.
        max_confusion_classes: the confusion chart shows at most this many classes.
        **options: the shared options of :class:`~fastevalcb.tasks._base.TaskEvalCallback`.

    Raises:
        FastEvalInputError: masks of another size than their image, class ids outside
            ``class_names`` (at construction for arrays, at train begin for datasets), or a
            model whose channel count is not the number of classes (at train begin).
    """

    task = "segmentation"
    kernel_groups = ("masks",)
    stores_targets = False  # masks are pixels: read from each batch, never held
    max_classes = 256  # class maps are uint8

    def __init__(
        self,
        validation_data: Any,
        class_names: Sequence[str],
        *,
        ignore_index: int | None = None,
        output: str | Callable[..., Any] = "auto",
        overlay_alpha: float | None = None,
        metrics: Sequence[str] | None = None,
        max_confusion_classes: int = 30,
        **options: Any,
    ) -> None:
        if not (callable(output) or output in OUTPUTS):
            raise ValueError(f"output must be one of {OUTPUTS} or a callable, got {output!r}")
        if ignore_index is not None and (
            not isinstance(ignore_index, int) or not len(class_names) <= ignore_index <= 255
        ):
            raise ValueError(
                f"ignore_index must be an int in [{len(class_names)}, 255] (not a class id), "
                f"got {ignore_index!r}"
            )
        if overlay_alpha is not None and not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha!r}")
        self.metrics = _metrics.check_metrics(metrics, self.task)
        if (
            isinstance(max_confusion_classes, bool)
            or not isinstance(max_confusion_classes, int)
            or max_confusion_classes < 1
        ):
            raise ValueError(
                f"max_confusion_classes must be a positive int, got {max_confusion_classes!r}"
            )
        self.max_confusion_classes = max(max_confusion_classes, 2)
        self.output = output
        self.ignore_index = ignore_index
        self.overlay_alpha = overlay_alpha
        self._class_names_for_columns = list(class_names)
        super().__init__(
            validation_data, class_names, return_x=overlay_alpha is not None, **options
        )
        self.mask_labels: dict[int, str] = dict(self.class_labels)
        if ignore_index is not None:
            self.mask_labels[ignore_index] = "ignored"
        self.palette = default_palette(256)

    @classmethod
    def data_columns(cls) -> list[str]:
        return ["id", "image", "classes"]

    def pred_columns(self) -> list[str]:
        return [
            "epoch",
            "step",
            "id",
            "image",
            "pixel_accuracy",
            "mean_iou",
            *(f"iou/{name}" for name in self._class_names_for_columns),
            "finite",
        ]

    # -- steps ---------------------------------------------------------------------------
    def _output_fn(self) -> Callable[[Any], Any] | None:
        return _class_maps(self.output, len(self._class_names_for_columns))

    def _check_outputs(self, batch: PredictionBatch) -> None:
        out = batch.outputs["class_maps"]
        if out.ndim != 3:
            raise FastEvalInputError(f"the model's class maps must be (B, H, W), got {out.shape}")
        check_class_range(
            out.astype(np.int64), self.num_classes, "predicted class", np.asarray(batch.index)
        )

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(y)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        expected = (len(index), *image_shape[1:3])
        if arr.shape != expected:
            raise FastEvalInputError(
                f"masks must be class ids of shape (N, H, W) or (N, H, W, 1) matching the "
                f"images' size {tuple(image_shape[1:3])}; got {tuple(np.shape(y))[1:]} per "
                "sample"
            )
        if not np.issubdtype(arr.dtype, np.integer) and (
            not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
        ):
            raise FastEvalInputError(
                f"masks must hold integer class ids, got non-integral {arr.dtype} values"
            )
        if arr.size and arr.min() >= 0 and arr.max() < self.num_classes:  # the usual case
            return np.ascontiguousarray(arr, dtype=np.uint8)
        allowed = () if self.ignore_index is None else (self.ignore_index,)
        ids = arr.astype(np.int64)
        check_class_range(ids, self.num_classes, "a mask pixel", index, allowed)
        return np.ascontiguousarray(ids, dtype=np.uint8)

    def _data_columns_for(
        self, index: np.ndarray, images: np.ndarray, labels: np.ndarray
    ) -> dict[str, Any]:
        counts = np.stack([np.bincount(m.reshape(-1), minlength=256) for m in labels])
        present = [
            [self.class_names[c] for c in np.flatnonzero(row[: self.num_classes])] for row in counts
        ]
        return {
            "id": index.tolist(),
            "image": build_images(
                images,
                masks={"ground_truth": labels},
                class_labels=self.mask_labels,
                compress_level=self.compress_level,
                keep_mask_data=False,
                stager=self._stager,
            ),
            "classes": present,
        }

    def _pred_columns_for(
        self,
        version: Version,
        batch: PredictionBatch,
        labels: np.ndarray,
        base_images: tables.ImageColumn,
    ) -> dict[str, Any]:
        pred = np.asarray(batch.outputs["class_maps"])
        finite = np.asarray(batch.outputs["finite"], bool)  # False: NaN/inf scores
        if pred.shape[1:] != labels.shape[1:]:
            pred = resize_nearest(pred, labels.shape[1:])
        staging = (
            None
            if self.overlay_alpha is not None
            else stage_masks(
                pred, self.mask_labels, self._pred_stager(version), self.compress_level
            )
        )
        state = version.state
        confusion = None  # the pixels' confusion matrix: from the same pass as the counts
        if "confusion_matrix" in self.metrics:
            confusion = state.setdefault(
                "confusion", np.zeros((self.num_classes, self.num_classes), np.int64)
            )
        tp, pred_count, target_count = segmentation_counts(
            pred, labels, self.num_classes, self.ignore_index, confusion
        )
        union = pred_count + target_count - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
            pixel_acc = np.where(
                target_count.sum(1) > 0, tp.sum(1) / np.maximum(target_count.sum(1), 1), np.nan
            )
            seen = union > 0
            mean_iou = np.where(seen.any(1), np.nansum(iou, 1) / np.maximum(seen.sum(1), 1), np.nan)
            pixel_acc, mean_iou = (np.where(finite, v, np.nan) for v in (pixel_acc, mean_iou))
            iou = np.where(finite[:, None], iou, np.nan)
        for key, value in (("tp", tp), ("union", union), ("target", target_count)):
            state[key] = state.get(key, 0) + value.sum(axis=0)

        if staging is not None:  # the masks' PNGs were encoding meanwhile
            images: tables.LayeredImages | list[wandb.Image] = tables.LayeredImages(
                base_images, self.mask_labels, masks={"predictions": staging.results()}
            )
        else:
            assert self.overlay_alpha is not None  # the masks are staged unless overlaid
            pixels = self._display_images(batch.x)
            if pixels.ndim == 3:  # grey: blend in colour
                pixels = np.repeat(pixels[..., None], 3, axis=-1)
            shown = blend_overlay(
                np.ascontiguousarray(pixels[..., :3]), pred, self.palette, self.overlay_alpha
            )
            images = build_images(
                shown,
                masks={"predictions": pred, "ground_truth": labels},
                class_labels=self.mask_labels,
                compress_level=self.compress_level,
                keep_mask_data=False,
                stager=self._pred_stager(version),
            )
        columns = {
            "image": images,
            "pixel_accuracy": pixel_acc.tolist(),
            "mean_iou": mean_iou.tolist(),
            "finite": self._quality.add(version, batch.index, finite),
        }
        for c, name in enumerate(self.class_names):
            columns[f"iou/{name}"] = iou[:, c].tolist()
        return columns

    def _class_scores(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per-class pixel counts and IoU, accuracy (recall), Dice; NaN where 0/0."""
        tp, union, target = state["tp"], state["union"], state["target"]
        predicted = union - target + tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "pixels": target,
                "predicted": predicted,
                "iou": np.where(union > 0, tp / np.maximum(union, 1), np.nan),
                "accuracy": np.where(target > 0, tp / np.maximum(target, 1), np.nan),
                "dice": np.where(union > 0, 2 * tp / np.maximum(target + predicted, 1), np.nan),
            }

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        if "tp" not in state:
            return {}
        scores = self._class_scores(state)
        iou, target = scores["iou"], state["target"]
        seen, labelled = state["union"] > 0, target > 0
        nan = float("nan")
        out = {"pixel_accuracy": float(state["tp"].sum() / max(target.sum(), 1))}
        out["mIoU"] = float(iou[seen].mean()) if seen.any() else nan
        out["mean_class_accuracy"] = (
            float(scores["accuracy"][labelled].mean()) if labelled.any() else nan
        )
        out["fw_iou"] = (
            float(np.sum(target[labelled] * iou[labelled]) / target.sum())
            if labelled.any()
            else nan
        )
        out["mean_dice"] = float(scores["dice"][seen].mean()) if seen.any() else nan
        for c, name in enumerate(self.class_names):
            if seen[c]:
                out[f"iou/{name}"] = float(iou[c])
        return out

    def _summary_charts(self, state: dict[str, Any]) -> dict[str, Any]:
        if "tp" not in state or state.get("quality", {}).get("non_finite"):
            return {}  # no charts of a version whose metrics are NaN
        charts: dict[str, Any] = {}
        if "per_class" in self.metrics:
            charts["per_class"] = _metrics.per_class_table(
                {"class": list(self.class_names), **self._class_scores(state)}
            )
        if "confusion" in state:
            charts["confusion_matrix"] = _metrics.confusion_chart(
                state["confusion"], self.class_names, "Pixels", self.max_confusion_classes
            )
        return charts
