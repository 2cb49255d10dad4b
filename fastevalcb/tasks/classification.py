"""``ClassificationEvalCallback``: image classification tables with no subclass."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastevalcb import tables
from fastevalcb.errors import FastEvalInputError
from fastevalcb.kernels import (
    binary_probabilities,
    calibration_bins,
    classification_summary,
    confusion_matrix,
    expected_calibration_error,
    multilabel_summary,
    per_class_scores,
    pr_curves,
    score_histograms,
    softmax,
    topk,
)
from fastevalcb.kernels.curves import PR_EDGES
from fastevalcb.media import build_images
from fastevalcb.predictor import PredictionBatch
from fastevalcb.tasks import _metrics
from fastevalcb.tasks._base import TaskEvalCallback
from fastevalcb.tasks._eval_set import check_class_range
from fastevalcb.tasks._versions import Version

OUTPUTS = ("auto", "probabilities", "logits")


def _in_unit_range(out: np.ndarray) -> bool:
    return bool(np.all(out >= 0) and np.all(out <= 1))


class ClassificationEvalCallback(TaskEvalCallback):
    """Log a data table of validation images once and a pred table at every log.

    Three heads (told apart by the model's output at train begin, and ``multi_label``):

    * **softmax** ``(B, C)``, ``C = len(class_names)``: one class per sample. Pred table
      ``epoch, step, id, image, label, pred, confidence, correct, top_k,
      top_k_scores``; summary ``<prefix>/accuracy``, ``<prefix>/top_<k>_accuracy``.
    * **one-unit sigmoid** ``(B, 1)`` with two ``class_names`` ``[negative, positive]``:
      ``p`` is p(class 1) and the predicted class is 1 when ``p > threshold``, as
      ``keras.metrics.BinaryAccuracy`` decides. Same columns and metrics as softmax, with
      the two classes' probabilities ``[1 - p, p]``.
    * **multi-label sigmoid** ``(B, C)`` (``multi_label=True``): one independent
      probability per class (no softmax); a class is predicted when its probability is
      ``> threshold``. ``label`` and ``pred`` cells are lists of class names; pred table
      ``epoch, step, id, image, label, pred, hits, f1, exact_match, top_k,
      top_k_scores`` (``hits``: classes both predicted and true; ``f1``: the sample's F1
      of the two sets, 1.0 when both are empty). Summary ``<prefix>/subset_accuracy``
      (exact set matches), ``<prefix>/mean_f1`` (sample-averaged F1) and
      ``<prefix>/micro_f1`` (over all sample-class pairs, like
      ``keras.metrics.F1Score(average="micro")``).

    The data table is ``id, image, label``; pred rows reference its images (no copy per
    version). Every pred table also has ``finite`` (False: the model's scores for
    the sample hold NaN/inf; such a sample is never correct, and the version's summary
    metrics are NaN). Any number of classes (ImageNet-1k, LVIS's 1,203).

    More summary metrics (``<prefix>/<key>``) and charts of each version, by ``metrics``
    group, all over the logged samples and equal to scikit-learn's on them:

    * always: ``macro_precision``, ``macro_recall``, ``macro_f1``
      (``precision_recall_fscore_support(average="macro", zero_division=0)``: the mean over
      the classes that occur as a label or a prediction, or over every class for
      multi-label) and ``micro_f1`` (single-label: equal to ``accuracy``).
    * ``"per_class"``: a table, one row per class: ``class, support`` (samples labelled
      with it), ``predicted`` (samples predicted as it), ``precision, recall, f1``
      (empty where 0/0).
    * ``"confusion_matrix"`` (single-label): W&B's confusion-matrix chart (at most
      ``max_confusion_classes`` classes: the most frequent, the rest summed into
      ``"(other)"``).
    * ``"pr_curve"``: one-vs-rest precision-recall curves at the scores 0, 0.01, ..., 1
      (exactly ``sklearn.metrics.precision_recall_curve``'s points at those thresholds),
      for the ``pr_top_k`` classes with most support and the macro mean.
    * ``"calibration"`` (single-label): ``ece`` (expected calibration error of the top
      class's probability over ``calibration_bins`` uniform bins, scikit-learn's
      ``calibration_curve`` bins) and a reliability chart (accuracy and mean confidence
      per bin).

    Args:
        validation_data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)``:
            ``x`` images ``(N, H, W[, C])`` (uint8, or float in [0, 1] or [0, 255]);
            ``y`` class ids ``(N,)`` / ``(N, 1)``, or one-hot ``(N, num_classes)``;
            with ``multi_label=True``, multi-hot ``(N, num_classes)`` of 0/1.
        class_names: one name per class id; the model must output
            ``(B, len(class_names))`` scores, or ``(B, 1)`` for two classes.
        top_k: how many best classes the ``top_k`` column lists (capped at the number
            of classes).
        output: what the model's output is: ``"probabilities"``, ``"logits"``
            (softmax, or sigmoid for sigmoid heads, is applied), ``"auto"``
            (probabilities when the first batch's values are in [0, 1], and for a softmax
            head its rows sum to 1; a sigmoid head of logits that happen to lie in [0, 1]
            is mistaken for probabilities, so say ``"logits"`` for those), or a function
            ``outputs -> logits`` compiled into the predict step (e.g. to pick one head
            of a multi-output model): ``keras.ops`` run on every backend (TensorFlow ops
            on the TensorFlow backend only).
        multi_label: the model is a multi-label sigmoid head and ``y`` multi-hot.
        threshold: probability above which a sigmoid head predicts a class (0.5).
        metrics: the groups to compute and log, some of ``["per_class",
            "confusion_matrix", "pr_curve", "calibration"]``; None (default) for all.
        pr_top_k: classes with the most support drawn in the PR chart (plus the mean).
        max_confusion_classes: the confusion chart shows at most this many classes.
        calibration_bins: uniform confidence bins of ``ece`` and the reliability chart.
        **options: the shared options of :class:`~fastevalcb.tasks._base.TaskEvalCallback`
            (``max_samples``, ``batch_size``, ``log_every_n_batches``, ``async_logging``,
            ``strict``, ...).

    Raises:
        FastEvalInputError: labels of the wrong shape or outside ``class_names``
            (at construction for arrays, at train begin for datasets), or model outputs
            that fit no head (at train begin).
    """

    task = "classification"
    kernel_groups = ("classification", "confusion", "curves")

    def __init__(
        self,
        validation_data: Any,
        class_names: Sequence[str],
        *,
        top_k: int = 3,
        output: str | Callable[..., Any] = "auto",
        multi_label: bool = False,
        threshold: float = 0.5,
        metrics: Sequence[str] | None = None,
        pr_top_k: int = 5,
        max_confusion_classes: int = 30,
        calibration_bins: int = 15,
        **options: Any,
    ) -> None:
        if not (callable(output) or output in OUTPUTS):
            raise ValueError(f"output must be one of {OUTPUTS} or a callable, got {output!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        if not isinstance(multi_label, bool):
            raise ValueError(f"multi_label must be a bool, got {multi_label!r}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        self.metrics = _metrics.check_metrics(metrics, self.task)
        for name, value in (
            ("pr_top_k", pr_top_k),
            ("max_confusion_classes", max_confusion_classes),
            ("calibration_bins", calibration_bins),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.pr_top_k, self.max_confusion_classes = pr_top_k, max(max_confusion_classes, 2)
        self.calibration_bins = calibration_bins
        self.output = output
        self.multi_label = multi_label
        self.threshold = float(threshold)
        self.top_k = min(top_k, len(class_names)) if isinstance(class_names, Sequence) else top_k
        self._from_logits = output != "probabilities"
        self._binary = False  # a one-unit sigmoid head (known at train begin)
        super().__init__(validation_data, class_names, **options)

    @classmethod
    def data_columns(cls) -> list[str]:
        return ["id", "image", "label"]

    def pred_columns(self) -> list[str]:
        if self.multi_label:
            return [
                "epoch",
                "step",
                "id",
                "image",
                "label",
                "pred",
                "hits",
                "f1",
                "exact_match",
                "top_k",
                "top_k_scores",
                "finite",
            ]
        return [
            "epoch",
            "step",
            "id",
            "image",
            "label",
            "pred",
            "confidence",
            "correct",
            "top_k",
            "top_k_scores",
            "finite",
        ]

    # -- steps ---------------------------------------------------------------------------
    def _output_fn(self) -> Callable[..., Any] | None:
        return self.output if callable(self.output) else None

    def _check_outputs(self, batch: PredictionBatch) -> None:
        out = batch.outputs
        shape = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        c = self.num_classes
        if not isinstance(out, np.ndarray) or out.ndim != 2 or out.shape[1] not in (1, c):
            raise FastEvalInputError(
                f"the model must output (batch, {c}) class scores for {c} class_names"
                + (" (or (batch, 1) for a one-unit sigmoid head)" if c == 2 else "")
                + f", got {shape}; pass output=<function> (keras.ops) to map the model's "
                "outputs to class scores"
            )
        self._binary = out.shape[1] == 1 and c != 1
        if self._binary and c != 2:
            raise FastEvalInputError(
                f"a one-unit sigmoid head (batch, 1) needs two class_names [class 0, class "
                f"1], got {c}; for {c} classes the model must output (batch, {c})"
            )
        if self.multi_label and self._binary:
            raise FastEvalInputError(
                "multi_label=True needs one sigmoid unit per class: (batch, 2) for 2 "
                "class_names, got (batch, 1)"
            )
        if self.output == "auto":
            if self._binary or self.multi_label:
                self._from_logits = not _in_unit_range(out)
            else:
                self._from_logits = not (
                    _in_unit_range(out) and np.allclose(out.sum(axis=1), 1, atol=1e-3)
                )

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        if self.multi_label:
            return self._multi_hot(y, index)
        arr = np.asarray(y)
        n = len(index)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2 and arr.shape == (n, self.num_classes):
            hot = (arr == 0) | (arr == 1)
            if np.all(hot) and np.any(arr.sum(axis=1) != 1):
                raise FastEvalInputError(
                    f"labels of shape (N, {self.num_classes}) are 0/1 but not one-hot (a row "
                    "has other than one 1): multi-hot labels want multi_label=True"
                )
            arr = np.argmax(arr, axis=1)  # one-hot
        if arr.shape != (n,):
            raise FastEvalInputError(
                f"labels must be class ids of shape (N,) or (N, 1), or one-hot (N, "
                f"{self.num_classes}); got shape {tuple(np.shape(y))[1:]} per batch of {n}"
                + ("; multi-hot labels want multi_label=True" if arr.ndim == 2 else "")
            )
        if not np.issubdtype(arr.dtype, np.integer) and (
            not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
        ):
            raise FastEvalInputError(
                f"labels must be integer class ids, got non-integral values of dtype {arr.dtype}"
            )
        ids = arr.astype(np.int64)
        check_class_range(ids, self.num_classes, "label", index)
        return ids

    def _multi_hot(self, y: Any, index: np.ndarray) -> np.ndarray:
        """``(N, C)`` bool from multi-hot 0/1 labels."""
        arr = np.asarray(y)
        n, c = len(index), self.num_classes
        if arr.shape != (n, c):
            raise FastEvalInputError(
                f"multi_label=True wants multi-hot labels of shape (N, {c}) (one 0/1 column "
                f"per class name), got shape {tuple(arr.shape)[1:]} per batch of {n}"
            )
        bad = ~((arr == 0) | (arr == 1))
        if np.any(bad):
            row, col = np.argwhere(bad)[0]
            raise FastEvalInputError(
                f"multi-hot labels must be 0 or 1, got {arr[row, col].tolist()!r} for sample "
                f"{int(index[row])}, class {self.class_names[col]!r}"
            )
        return arr.astype(bool)

    def _data_columns_for(
        self, index: np.ndarray, images: np.ndarray, labels: np.ndarray
    ) -> dict[str, Any]:
        return {
            "id": index.tolist(),
            "image": build_images(images, compress_level=self.compress_level, stager=self._stager),
            "label": self._names(labels),
        }

    def _names(self, labels: np.ndarray) -> list[Any]:
        """Class names of ``(N,)`` ids, or lists of names of ``(N, C)`` bool sets."""
        names = np.asarray(self.class_names, dtype=object)
        if labels.ndim == 2:
            return [names[row].tolist() for row in labels]
        flat: list[str] = names[labels].tolist()
        return flat

    def _pred_columns_for(
        self,
        version: Version,
        batch: PredictionBatch,
        labels: np.ndarray,
        base_images: tables.ImageColumn,
    ) -> dict[str, Any]:
        if self.multi_label:
            return self._multi_label_columns(
                version, batch.outputs, labels, base_images, batch.index
            )
        scores, from_logits = batch.outputs, self._from_logits
        if self._binary:
            scores, from_logits = binary_probabilities(scores, from_logits), False
        finite = np.isfinite(scores).all(axis=1)  # a NaN/inf row is never correct
        if from_logits and "pr_curve" in self.metrics:  # the PR histograms want them too
            scores, from_logits = softmax(scores), False
        pred, conf, topk_ids, topk_scores, correct = classification_summary(
            scores, labels, self.top_k, from_logits
        )
        correct = correct & finite
        in_top_k = (topk_ids == labels[:, None]).any(axis=1) & finite
        state = version.state
        state["n"] = state.get("n", 0) + len(labels)
        state["correct"] = state.get("correct", 0) + int(correct.sum())
        state["top_k"] = state.get("top_k", 0) + int(in_top_k.sum())
        self._add_to_metrics(state, scores, labels, pred, conf, correct)
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

    def _multi_label_columns(
        self,
        version: Version,
        outputs: np.ndarray,
        labels: np.ndarray,
        base_images: tables.ImageColumn,
        index: np.ndarray,
    ) -> dict[str, Any]:
        probs, pred, hits, num_pred, num_true = multilabel_summary(
            outputs, labels, self.threshold, self._from_logits
        )
        total = num_pred + num_true
        f1 = np.where(total > 0, 2 * hits / np.maximum(total, 1), 1.0)
        finite = np.isfinite(outputs).all(axis=1)  # a NaN/inf row never matches
        exact = (hits == num_pred) & (hits == num_true) & finite
        topk_ids, topk_scores = topk(probs, self.top_k)
        state = version.state
        for key, value in (
            ("class_tp", (pred & labels).sum(axis=0)),
            ("class_pred", pred.sum(axis=0)),
            ("class_true", labels.sum(axis=0)),
        ):
            state[key] = state.get(key, 0) + value
        if "pr_curve" in self.metrics:
            state["pr"] = score_histograms(probs, labels, PR_EDGES, state.get("pr"))
        for key, value in (
            ("n", len(labels)),
            ("exact", int(exact.sum())),
            ("f1", float(f1.sum())),
            ("tp", int(hits.sum())),
            ("fp", int((num_pred - hits).sum())),
            ("fn", int((num_true - hits).sum())),
        ):
            state[key] = state.get(key, 0) + value
        names = np.asarray(self.class_names, dtype=object)
        return {
            "image": base_images,
            "label": self._names(labels),
            "pred": self._names(pred),
            "hits": hits.tolist(),
            "f1": f1.tolist(),
            "exact_match": exact.tolist(),
            "top_k": names[topk_ids].tolist(),
            "top_k_scores": topk_scores.tolist(),
            "finite": self._quality.add(version, index, finite),
        }

    # -- summary metrics (on the worker, per version) -----------------------------------
    def _add_to_metrics(
        self,
        state: dict[str, Any],
        probs: np.ndarray,
        labels: np.ndarray,
        pred: np.ndarray,
        conf: np.ndarray,
        correct: np.ndarray,
    ) -> None:
        """Fold one single-label batch into the version's bounded accumulators: the
        confusion counts, the PR histograms, the calibration bins."""
        c = self.num_classes
        state["confusion"] = confusion_matrix(labels, pred, c, out=state.get("confusion"))
        if "pr_curve" in self.metrics:
            state["pr"] = score_histograms(probs, labels, PR_EDGES, state.get("pr"))
        if "calibration" in self.metrics:
            state["calibration"] = calibration_bins(
                conf, correct, self.calibration_bins, state.get("calibration")
            )

    def _class_scores(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per-class support, predicted, precision, recall, F1 (NaN where 0/0)."""
        if "confusion" in state:
            return per_class_scores(state["confusion"])
        tp, predicted, support = state["class_tp"], state["class_pred"], state["class_true"]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "support": support,
                "predicted": predicted,
                "precision": np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan),
                "recall": np.where(support > 0, tp / np.maximum(support, 1), np.nan),
                "f1": np.where(
                    support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), np.nan
                ),
            }

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        n = state.get("n", 0)
        if not n:
            return {}
        scores = self._class_scores(state)
        # scikit-learn's labels: those seen (single-label), every column (multi-label)
        over = (
            np.ones(self.num_classes, bool)
            if self.multi_label
            else (scores["support"] + scores["predicted"]) > 0
        )
        out = {
            f"macro_{name}": _metrics.macro(scores[name], over)
            for name in ("precision", "recall", "f1")
        }
        if self.multi_label:
            tp, wrong = state["tp"], state["fp"] + state["fn"]
            out.update(
                {
                    "subset_accuracy": state["exact"] / n,
                    "mean_f1": state["f1"] / n,
                    "micro_f1": 2 * tp / (2 * tp + wrong) if tp + wrong else float("nan"),
                }
            )
            return out
        out.update(
            {
                "accuracy": state["correct"] / n,
                f"top_{self.top_k}_accuracy": state["top_k"] / n,
                "micro_f1": state["correct"] / n,
            }
        )
        if "calibration" in state:
            out["ece"] = expected_calibration_error(*state["calibration"])
        return out

    def _summary_charts(self, state: dict[str, Any]) -> dict[str, Any]:
        if not state.get("n") or state.get("quality", {}).get("non_finite"):
            return {}  # no charts of a version whose metrics are NaN
        scores = self._class_scores(state)
        charts: dict[str, Any] = {}
        if "per_class" in self.metrics:
            charts["per_class"] = _metrics.per_class_table(
                {
                    "class": list(self.class_names),
                    **{k: scores[k] for k in ("support", "predicted", "precision", "recall", "f1")},
                }
            )
        if "confusion_matrix" in self.metrics and "confusion" in state:
            charts["confusion_matrix"] = _metrics.confusion_chart(
                state["confusion"], self.class_names, "Classes", self.max_confusion_classes
            )
        if "pr" in state:
            precision, recall = pr_curves(*state["pr"])
            top = _metrics.top_k_by_support(scores["support"], self.pr_top_k)
            present = scores["support"] > 0
            if present.any():
                with warnings.catch_warnings():  # thresholds no class reaches: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    means = [np.nanmean(a[present], axis=0) for a in (recall, precision)]
                charts["pr_curve"] = _metrics.pr_chart(
                    np.vstack([recall[top], means[0]]),
                    np.vstack([precision[top], means[1]]),
                    [self.class_names[c] for c in top] + ["mean"],
                    "One-vs-rest precision-recall",
                )
        if "calibration" in state:
            count, conf_sum, correct_sum = state["calibration"]
            with np.errstate(invalid="ignore", divide="ignore"):
                acc = np.where(count > 0, correct_sum / np.maximum(count, 1), np.nan)
                conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
            centers = (np.arange(len(count)) + 0.5) / len(count)
            charts["reliability"] = _metrics.line_chart(
                centers,
                np.vstack([acc, conf]),
                ["accuracy", "confidence"],
                "Reliability (bins of the top class's probability)",
                "confidence bin",
            )
        return charts
