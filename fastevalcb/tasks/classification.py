"""``ClassificationEvalCallback``: image classification tables with no subclass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastevalcb.callback import FastEvalInputError
from fastevalcb.kernels import classification_summary
from fastevalcb.media import build_images
from fastevalcb.predictor import PredictionBatch
from fastevalcb.tasks._base import TaskEvalCallback, _Version, check_class_range

OUTPUTS = ("auto", "probabilities", "logits")


class ClassificationEvalCallback(TaskEvalCallback):
    """Log a data table of validation images once and a pred table at every log.

    Data table: ``id, image, label``. Pred table: ``epoch, step, id, image`` (the data
    table's image, by reference: no copy per version), ``label, pred, confidence,
    correct, top_k, top_k_scores, finite`` (False: the model's scores hold NaN/inf).
    Summary metrics ``<prefix>/accuracy`` and ``<prefix>/top_<k>_accuracy`` over the
    logged samples (NaN for a version with a non-finite sample).

    Args:
        validation_data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)``:
            ``x`` images ``(N, H, W[, C])`` (uint8, or float in [0, 1] or [0, 255]);
            ``y`` class ids ``(N,)`` / ``(N, 1)``, or one-hot ``(N, num_classes)``.
        class_names: one name per class id; the model must output
            ``(B, len(class_names))`` scores.
        top_k: how many best classes the ``top_k`` column lists (capped at the number
            of classes).
        output: what the model's ``(B, C)`` output is: ``"probabilities"``, ``"logits"``
            (softmax is applied), ``"auto"`` (probabilities when the first batch's rows
            are in [0, 1] and sum to 1), or a TensorFlow function ``outputs -> (B, C)``
            logits compiled into the predict step (e.g. to pick one head of a
            multi-output model).
        **options: the shared options of :class:`~fastevalcb.tasks._base.TaskEvalCallback`
            (``max_samples``, ``batch_size``, ``log_every_n_batches``, ``async_logging``,
            ``strict``, ...).

    Raises:
        FastEvalInputError: labels of the wrong shape or outside ``class_names``
            (at construction for arrays, at train begin for datasets), or model outputs
            that are not ``(B, len(class_names))`` (at train begin).
    """

    task = "classification"

    def __init__(
        self,
        validation_data: Any,
        class_names: Sequence[str],
        *,
        top_k: int = 3,
        output: str | Callable = "auto",
        **options: Any,
    ) -> None:
        if not (callable(output) or output in OUTPUTS):
            raise ValueError(f"output must be one of {OUTPUTS} or a callable, got {output!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        self.output = output
        self.top_k = min(top_k, len(class_names)) if isinstance(class_names, Sequence) else top_k
        self._from_logits = output != "probabilities"
        super().__init__(validation_data, class_names, **options)

    @classmethod
    def data_columns(cls) -> list[str]:
        return ["id", "image", "label"]

    def pred_columns(self) -> list[str]:
        return ["epoch", "step", "id", "image", "label", "pred", "confidence", "correct",
                "top_k", "top_k_scores", "finite"]

    # -- steps ---------------------------------------------------------------------------
    def _output_fn(self) -> Callable | None:
        return self.output if callable(self.output) else None

    def _check_outputs(self, batch: PredictionBatch) -> None:
        out = batch.outputs
        if not isinstance(out, np.ndarray) or out.ndim != 2 or out.shape[1] != self.num_classes:
            shape = out.shape if isinstance(out, np.ndarray) else type(out).__name__
            raise FastEvalInputError(
                f"the model must output (batch, {self.num_classes}) class scores for "
                f"{self.num_classes} class_names, got {shape}; pass output=<tf function> "
                "to map the model's outputs to class scores"
            )
        if self.output == "auto":
            rows = out.sum(axis=1)
            self._from_logits = not (
                np.all(out >= 0) and np.all(out <= 1) and np.allclose(rows, 1, atol=1e-3)
            )

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(y)
        n = len(index)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2 and arr.shape == (n, self.num_classes):
            arr = np.argmax(arr, axis=1)  # one-hot
        if arr.shape != (n,):
            raise FastEvalInputError(
                f"labels must be class ids of shape (N,) or (N, 1), or one-hot (N, "
                f"{self.num_classes}); got shape {tuple(np.shape(y))[1:]} per batch of {n}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise FastEvalInputError(
                    f"labels must be integer class ids, got non-integral values of dtype {arr.dtype}"
                )
        ids = arr.astype(np.int64)
        check_class_range(ids, self.num_classes, "label", index)
        return ids

    def _data_columns_for(self, index: np.ndarray, images: np.ndarray, labels: np.ndarray) -> dict:
        names = np.asarray(self.class_names, dtype=object)
        return {
            "id": index.tolist(),
            "image": build_images(images, compress_level=self.compress_level),
            "label": names[labels].tolist(),
        }

    def _pred_columns_for(self, version: _Version, batch: PredictionBatch, labels: np.ndarray,
                          base_images: list) -> dict:
        pred, conf, topk_ids, topk_scores, correct = classification_summary(
            batch.outputs, labels, self.top_k, self._from_logits)
        finite = np.isfinite(batch.outputs).all(axis=1)  # a NaN/inf row is never correct
        correct = correct & finite
        in_top_k = (topk_ids == labels[:, None]).any(axis=1) & finite
        state = version.state
        state["n"] = state.get("n", 0) + len(labels)
        state["correct"] = state.get("correct", 0) + int(correct.sum())
        state["top_k"] = state.get("top_k", 0) + int(in_top_k.sum())
        names = np.asarray(self.class_names, dtype=object)
        return {
            "image": base_images,
            "label": names[labels].tolist(),
            "pred": names[pred].tolist(),
            "confidence": conf.tolist(),
            "correct": correct.tolist(),
            "top_k": names[topk_ids].tolist(),
            "top_k_scores": topk_scores.tolist(),
            "finite": self._quality.add(version, batch.index, finite),
        }

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        n = state.get("n", 0)
        if not n:
            return {}
        return {"accuracy": state["correct"] / n, f"top_{self.top_k}_accuracy": state["top_k"] / n}
