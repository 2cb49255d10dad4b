"""Predictions that must not be logged as if they were fine.

* :class:`NonFiniteCounter`: per pred-table version, how many samples had NaN/inf outputs
  (logits, probabilities, boxes, scores, mask scores) and the first such sample id. Each
  task's pred table gets a ``finite`` column from it, the version's summary metrics become
  NaN, and the first such version of a fit is warned about (once per fit).
* :class:`BoxCheck` (:func:`fastevalcb.kernels.box_validity`): predicted boxes with
  NaN/inf coordinates or score are counted and dropped from the overlay and the metrics;
  inverted or zero-area ones are counted and, as COCO scores them (false positives that
  take a ``maxDets`` slot), kept unless asked to drop them; warned once per fit with the
  count and the first sample id.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fastevalcb.errors import FastEvalWarning
from fastevalcb.kernels.boxes import DEGENERATE_BOX as DEGENERATE
from fastevalcb.kernels.boxes import NON_FINITE_BOX as NON_FINITE
from fastevalcb.kernels.boxes import VALID_BOX as VALID
from fastevalcb.kernels.boxes import box_validity


class BoxCheck:
    """Flags the predicted boxes of one batch to drop; keeps per-sample counts of the call.

    Called once per batch from the detection callback's ``_predictions`` (on the worker
    thread, one batch at a time); the counts are read right after, for that batch.

    Attributes:
        finite: ``(B,)`` bool, no NaN/inf box or score in the sample (padding excluded).
        non_finite: ``(B,)`` int, boxes with a NaN/inf coordinate or score.
        degenerate: ``(B,)`` int, finite boxes that are inverted or zero-area.
    """

    def __init__(self, drop_degenerate: bool = True) -> None:
        self.drop_degenerate = drop_degenerate  # False: counted, kept (COCO scores them)
        self.finite = self.non_finite = self.degenerate = np.zeros(0, np.int64)

    def __call__(
        self, boxes: np.ndarray, scores: np.ndarray, padding: np.ndarray, box_format: str
    ) -> np.ndarray:
        """``(B, K)`` bool: the non-padding boxes that must not be drawn or scored."""
        code = box_validity(boxes, scores, box_format, skip=padding)
        self.non_finite = (code == NON_FINITE).sum(axis=1)
        self.degenerate = (code == DEGENERATE).sum(axis=1)
        self.finite = self.non_finite == 0
        return code != VALID if self.drop_degenerate else code == NON_FINITE


class NonFiniteCounter:
    """Counts a version's non-finite samples; NaN summary metrics and one warning per fit.

    The counts live in ``version.state["quality"]`` (one pred-table version being built).

    Args:
        task: the task's name, for the warnings.
    """

    def __init__(self, task: str) -> None:
        self.task = task
        self.degenerate_kept = False  # detection's drop_degenerate_boxes=False
        self._warned: set[str] = set()

    def new_fit(self) -> None:
        """A new ``fit``: warn again."""
        self._warned = set()

    def add(
        self,
        version: Any,
        index: Any,
        finite: Any,
        non_finite_boxes: Any = None,
        degenerate: Any = None,
    ) -> list[bool]:
        """Count one batch.

        Args:
            version: the version being built (``.state``).
            index: ``(B,)`` sample ids.
            finite: ``(B,)`` bool, the sample's outputs are all finite.
            non_finite_boxes: optional ``(B,)`` int, dropped NaN/inf boxes per sample.
            degenerate: optional ``(B,)`` int, dropped inverted/zero-area boxes per sample.

        Returns:
            The ``finite`` column of the batch.
        """
        finite = np.asarray(finite, bool).reshape(-1)
        ids = np.asarray(index).reshape(-1)
        state = version.state.setdefault(
            "quality",
            {
                "non_finite": 0,
                "first": None,
                "boxes": 0,
                "degenerate": 0,
                "degenerate_samples": 0,
                "first_degenerate": None,
            },
        )
        bad = np.flatnonzero(~finite)
        if bad.size:
            state["non_finite"] += int(bad.size)
            if state["first"] is None:
                state["first"] = int(ids[bad[0]])
        if non_finite_boxes is not None:
            state["boxes"] += int(np.sum(non_finite_boxes))
        if degenerate is not None:
            degenerate = np.asarray(degenerate).reshape(-1)
            hit = np.flatnonzero(degenerate)
            state["degenerate"] += int(degenerate.sum())
            state["degenerate_samples"] += int(hit.size)
            if hit.size and state["first_degenerate"] is None:
                state["first_degenerate"] = int(ids[hit[0]])
        return finite.tolist()

    def finish(self, version: Any, metrics: dict[str, float]) -> dict[str, float]:
        """The version's summary metrics: all NaN when a sample was non-finite. Warns."""
        state = version.state.get("quality")
        if not state:
            return metrics
        where = f"epoch {version.epoch} (step {version.global_step})"
        if state["non_finite"]:
            metrics = {name: float("nan") for name in metrics}
            boxes = (
                f" ({state['boxes']} boxes or scores, dropped from the overlay and the metrics)"
                if state["boxes"]
                else ""
            )
            self._warn_once(
                "non_finite",
                f"fastevalcb: {state['non_finite']} of {version.samples} {self.task} samples "
                f"had non-finite predictions (NaN/inf){boxes} at {where}; first sample id "
                f"{state['first']}. Their rows have finite=False and this version's summary "
                "metrics are NaN (the model may have diverged). Warned once per fit.",
            )
        if state["degenerate"]:
            self._warn_once(
                "degenerate",
                f"fastevalcb: {state['degenerate']} predicted boxes in "
                f"{state['degenerate_samples']} samples were inverted or zero-area at {where}; "
                f"first sample id {state['first_degenerate']}. "
                + (
                    "They were kept as false positives, as COCO scores them "
                    "(drop_degenerate_boxes=True drops them)"
                    if self.degenerate_kept
                    else "They were dropped from the overlay and the metrics"
                )
                + " (is box_format right?). Warned once per fit.",
            )
        return metrics

    def _warn_once(self, kind: str, message: str) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        warnings.warn(message, FastEvalWarning, stacklevel=3)
