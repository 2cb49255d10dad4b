"""W&B's documented ``WandbEvalCallback`` subclasses, to measure fastevalcb against.

Used by ``fastevalcb overhead --stock`` and the benchmarks: each class is a subclass of
``wandb.integration.keras.WandbEvalCallback`` written like W&B's docstring example.
``add_ground_truth`` loops ``add_data`` with a ``wandb.Image`` per sample;
``add_model_predictions`` calls ``self.model.predict(self.x)`` on all samples, loops the
rows and builds one ``wandb.Image(data_table_ref.data[idx][1], boxes=/masks=...)`` per row.

Stock cannot run offline as shipped, so ``log_data_table`` differs in the smallest way that
runs:

- ``wandb.run.use_artifact(data_artifact)`` raises ``TypeError`` offline -> ``log_artifact``;
- ``data_artifact.wait()`` raises ``ArtifactNotLoggedError`` offline -> dropped;
- ``data_artifact.get(table_name)`` is refused offline -> ``data_table_ref`` is the in-memory
  ``data_table`` itself (what ``get`` would rebuild from the artifact's JSON). This skips
  online stock's download and deserialization, so it can only flatter stock.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import wandb
from wandb.integration.keras import WandbEvalCallback as StockEvalCallback

SCORE_THRESHOLD = 0.05


class OfflineStock(StockEvalCallback):
    """Stock base, with ``log_data_table`` made to run offline (see the module docstring)."""

    def log_data_table(self, name="val", type="dataset", table_name="val_data"):
        data_artifact = wandb.Artifact(name, type=type)
        data_artifact.add(self.data_table, table_name)
        # stock: wandb.run.use_artifact(data_artifact); data_artifact.wait()
        wandb.run.log_artifact(data_artifact)
        # stock: self.data_table_ref = data_artifact.get(table_name)
        self.data_table_ref = self.data_table

    predict_s = None

    def predict_all(self):
        """``self.model.predict(self.x, verbose=0)``, timed (where stock's time goes)."""
        start = time.perf_counter()
        preds = self.model.predict(self.x, verbose=0)
        self.predict_s = [*(self.predict_s or []), time.perf_counter() - start]
        return preds


class StockClassification(OfflineStock):
    """W&B's docstring example verbatim, but ``add_ground_truth`` accepts ``logs``."""

    def __init__(self, validation_data, data_table_columns, pred_table_columns):
        super().__init__(data_table_columns, pred_table_columns)
        self.x = validation_data[0]
        self.y = validation_data[1]

    def add_ground_truth(self, logs=None):
        for idx, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(idx, wandb.Image(image), label)

    def add_model_predictions(self, epoch, logs=None):
        import tensorflow as tf

        preds = self.predict_all()
        preds = tf.argmax(preds, axis=-1)
        data_table_ref = self.data_table_ref
        table_idxs = data_table_ref.get_index()
        for idx in table_idxs:
            pred = preds[idx]
            self.pred_table.add_data(
                epoch,
                data_table_ref.data[idx][0],
                data_table_ref.data[idx][1],
                data_table_ref.data[idx][2],
                pred,
            )


def box_dicts(boxes, classes, class_labels, scores=None):
    """The documented per-box dict format, pixel domain."""
    out = []
    for i, (box, cls) in enumerate(zip(boxes, classes)):
        entry = {
            "position": {
                "minX": float(box[0]),
                "minY": float(box[1]),
                "maxX": float(box[2]),
                "maxY": float(box[3]),
            },
            "domain": "pixel",
            "class_id": int(cls),
            "box_caption": class_labels[int(cls)],
        }
        if scores is not None:
            entry["scores"] = {"score": float(scores[i])}
            entry["box_caption"] = f"{class_labels[int(cls)]} {float(scores[i]):.2f}"
        out.append(entry)
    return out


def _concat(parts: list) -> Any:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if isinstance(parts[0], (list, tuple)):
        return type(parts[0])(np.concatenate(leaves) for leaves in zip(*parts))
    return np.concatenate(parts)


def _xyxy(boxes: Any, box_format: str) -> np.ndarray:
    """What a user's subclass does first: boxes to ``xyxy`` pixels for ``box_dicts``."""
    boxes = np.asarray(boxes, np.float32)
    if box_format == "xyxy":
        return boxes
    import keras

    return np.asarray(
        keras.utils.bounding_boxes.convert_format(boxes, box_format, "xyxy"), np.float32
    )


class StockDetection(OfflineStock):
    """Predicted boxes scoring ``score_threshold`` or more, and the ground truth, drawn on
    each pred row's image. Targets ``{"boxes": (N, M, 4), "labels"/"classes": (N, M)}``
    padded with -1; outputs any layout :func:`fastevalcb.tasks.detection.default_adapter`
    reads (KerasHub's, ``{"boxes", "scores", "classes"}``), boxes in ``box_format``."""

    def __init__(
        self, validation_data, class_labels, score_threshold=SCORE_THRESHOLD, box_format="xyxy"
    ):
        super().__init__(
            ["id", "image", "num_objects"], ["epoch", "id", "image", "num_predictions"]
        )
        self.x, y = validation_data
        self.box_format = box_format
        self.gt_boxes = _xyxy(y["boxes"], box_format)
        self.gt_classes = np.asarray(y["labels"] if "labels" in y else y["classes"])
        self.class_labels = class_labels
        self.score_threshold = score_threshold
        self.boxes_logged = []

    def predict_all(self):
        """``model.predict(self.x)``; for a KerasHub detector in static batches of 32, as
        a user must: its NMS needs a static batch dim, which ``predict`` on arrays does
        not give ("Expected int32, but got None"). The rest runs as one batch of its own."""
        if getattr(self.model, "prediction_decoder", None) is None:
            return super().predict_all()
        import tensorflow as tf

        start, x, size = time.perf_counter(), self.x, 32
        full = len(x) // size * size
        parts = []
        if full:
            data = tf.data.Dataset.from_tensor_slices(x[:full]).batch(size, drop_remainder=True)
            parts.append(self.model.predict(data, verbose=0))
        if full < len(x):
            self.model.make_predict_function(force=True)  # a static shape of its own
            parts.append(self.model.predict(tf.data.Dataset.from_tensors(x[full:]), verbose=0))
        preds = _concat(parts)
        self.predict_s = [*(self.predict_s or []), time.perf_counter() - start]
        return preds

    def gt_box_data(self, idx):
        valid = self.gt_classes[idx] >= 0
        return box_dicts(self.gt_boxes[idx][valid], self.gt_classes[idx][valid], self.class_labels)

    def add_ground_truth(self, logs=None):
        for idx, image in enumerate(self.x):
            box_data = self.gt_box_data(idx)
            self.data_table.add_data(
                idx,
                wandb.Image(
                    image,
                    boxes={
                        "ground_truth": {"box_data": box_data, "class_labels": self.class_labels}
                    },
                ),
                len(box_data),
            )

    def add_model_predictions(self, epoch, logs=None):
        from fastevalcb.tasks.detection import default_adapter

        preds = default_adapter(self.predict_all())
        boxes = _xyxy(preds["boxes"], self.box_format)
        scores, classes = np.asarray(preds["scores"]), np.asarray(preds["classes"])
        data_table_ref = self.data_table_ref
        total = 0
        for idx in data_table_ref.get_index():
            keep = scores[idx] >= self.score_threshold
            box_data = box_dicts(
                boxes[idx][keep], classes[idx][keep], self.class_labels, scores[idx][keep]
            )
            total += len(box_data)
            image = wandb.Image(
                data_table_ref.data[idx][1],
                boxes={
                    "predictions": {"box_data": box_data, "class_labels": self.class_labels},
                    "ground_truth": {
                        "box_data": self.gt_box_data(idx),
                        "class_labels": self.class_labels,
                    },
                },
            )
            self.pred_table.add_data(epoch, data_table_ref.data[idx][0], image, len(box_data))
        self.boxes_logged.append(total / max(len(data_table_ref.get_index()), 1))


class StockSegmentation(OfflineStock):
    """Predicted (argmax) and ground-truth masks on each pred row's image."""

    def __init__(self, validation_data, class_labels):
        super().__init__(["id", "image"], ["epoch", "id", "image"])
        self.x, self.y = validation_data
        self.class_labels = class_labels

    def add_ground_truth(self, logs=None):
        for idx, (image, mask) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(
                idx,
                wandb.Image(
                    image,
                    masks={"ground_truth": {"mask_data": mask, "class_labels": self.class_labels}},
                ),
            )

    def add_model_predictions(self, epoch, logs=None):
        preds = self.predict_all()
        preds = np.argmax(preds, axis=-1)
        data_table_ref = self.data_table_ref
        for idx in data_table_ref.get_index():
            image = wandb.Image(
                data_table_ref.data[idx][1],
                masks={
                    "predictions": {"mask_data": preds[idx], "class_labels": self.class_labels},
                    "ground_truth": {"mask_data": self.y[idx], "class_labels": self.class_labels},
                },
            )
            self.pred_table.add_data(epoch, data_table_ref.data[idx][0], image)


def stock_callback(task: str, x: Any, y: Any, class_names: list[str], **kwargs: Any) -> Any:
    """The stock subclass of ``task`` on ``(x, y)`` (``kwargs``: detection's options)."""
    labels = dict(enumerate(class_names))
    if task == "classification":
        return StockClassification(
            (x, y), ["idx", "image", "label"], ["epoch", "idx", "image", "label", "pred"]
        )
    if task == "detection":
        return StockDetection((x, y), labels, **kwargs)
    if task == "segmentation":
        return StockSegmentation((x, y), labels)
    raise ValueError(f"task must be classification, detection or segmentation, got {task!r}")
