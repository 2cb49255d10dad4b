"""box_validity over box formats; NonFiniteCounter's counts, NaN summaries and warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastevalcb import FastEvalWarning
from fastevalcb.tasks._quality import (
    DEGENERATE,
    NON_FINITE,
    VALID,
    BoxCheck,
    NonFiniteCounter,
    box_validity,
)
from fastevalcb.tasks._versions import Version as _Version

# One good, one inverted, one zero-area box per format, then a NaN coordinate.
CASES = {
    "xyxy": [[1, 2, 5, 6], [5, 2, 1, 6], [1, 2, 1, 6]],
    "rel_xyxy": [[0.1, 0.2, 0.5, 0.6], [0.1, 0.6, 0.5, 0.2], [0.1, 0.2, 0.5, 0.2]],
    "yxyx": [[2, 1, 6, 5], [6, 1, 2, 5], [2, 1, 6, 1]],
    "xywh": [[1, 2, 4, 4], [1, 2, -4, 4], [1, 2, 4, 0]],
    "cxcywh": [[3, 4, 4, 4], [3, 4, 4, -4], [3, 4, 0, 4]],
    "center_yxhw": [[4, 3, 4, 4], [4, 3, -1, 4], [4, 3, 4, 0]],
}


@pytest.mark.parametrize("box_format", sorted(CASES))
def test_box_validity_per_format(box_format):
    boxes = np.array([CASES[box_format] + [[np.nan, 1, 2, 3]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    assert box_validity(boxes, scores, box_format).tolist() == [
        [VALID, DEGENERATE, DEGENERATE, NON_FINITE]
    ]
    scores[0, 0] = np.inf
    assert box_validity(boxes, scores, box_format)[0, 0] == NON_FINITE


def test_box_check_ignores_padding_and_counts_per_sample():
    boxes = np.array([[[1, 1, 5, 5], [np.nan] * 4], [[5, 5, 1, 1], [1, 1, 5, 5]]], np.float32)
    scores = np.array([[0.9, 0.5], [0.9, np.nan]], np.float32)
    check = BoxCheck()
    drop = check(boxes, scores, np.array([[False, False], [False, True]]), "xyxy")
    assert drop.tolist() == [[False, True], [True, False]]  # padding is never "bad"
    assert check.finite.tolist() == [False, True]
    assert check.non_finite.tolist() == [1, 0] and check.degenerate.tolist() == [0, 1]


def _version(epoch=2, step=20):
    return _Version(epoch, step, "epoch_end", f"epoch-{epoch}", 0.0)


def test_counter_nans_the_summary_and_warns_once_per_fit():
    counter = NonFiniteCounter("classification")
    clean = _version()
    assert counter.add(clean, [0, 1], [True, True]) == [True, True]
    clean.samples = 2
    assert counter.finish(clean, {"accuracy": 0.5}) == {"accuracy": 0.5}

    bad = _version()
    counter.add(bad, [4, 5, 6], [True, False, True])
    counter.add(bad, [7, 8], [False, False])
    bad.samples = 5
    with pytest.warns(
        FastEvalWarning,
        match=r"3 of 5 classification samples had non-finite "
        r"predictions \(NaN/inf\) at epoch 2 \(step 20\); "
        r"first sample id 5\.",
    ):
        metrics = counter.finish(bad, {"accuracy": 0.5, "top_3_accuracy": 1.0})
    assert all(np.isnan(v) for v in metrics.values()) and len(metrics) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(counter.finish(bad, {"accuracy": 0.5})["accuracy"])  # no 2nd warning
    counter.new_fit()
    with pytest.warns(FastEvalWarning, match="non-finite"):
        counter.finish(bad, {"accuracy": 0.5})
