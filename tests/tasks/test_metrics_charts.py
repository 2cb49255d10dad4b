"""fastevalcb.tasks._metrics: group names, folding a big confusion matrix, chart tables."""

from __future__ import annotations

import numpy as np
import pytest

from fastevalcb.tasks import _metrics


def test_groups_default_to_all_and_unknown_names_fail():
    assert _metrics.check_metrics(None, "segmentation") == {"per_class", "confusion_matrix"}
    assert _metrics.check_metrics([], "detection") == frozenset()
    with pytest.raises(ValueError, match=r"unknown metrics groups \['ece'\] for segmentation"):
        _metrics.check_metrics(["ece"], "segmentation")
    with pytest.raises(TypeError, match="a list of group names"):
        _metrics.check_metrics("coco", "detection")


def test_folding_keeps_the_most_frequent_classes_and_sums_the_rest():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 9, (12, 12))
    m[:, -1] = 0  # the last row/column: detection's background, always kept
    folded, labels = _metrics.fold_classes(m, [f"c{i}" for i in range(12)], 6, keep_last=True)
    assert folded.shape == (6, 6) and folded.sum() == m.sum()
    top = sorted(np.argsort(-m[:-1].sum(axis=1), kind="stable")[:4])
    assert labels == [f"c{i}" for i in top] + [_metrics.OTHER, "c11"]
    np.testing.assert_array_equal(folded[:4, :4], m[np.ix_(top, top)])
    same, names = _metrics.fold_classes(m, list("abcdefghijkl"), 12)
    assert same is m and names == list("abcdefghijkl")


def test_chart_tables_leave_out_undefined_points_and_cells():
    chart = _metrics.pr_chart(np.array([0.0, 0.5, 1.0]), np.array([[1.0, np.nan, 0.5]]), ["a"], "t")
    assert chart.table.data == [["a", 1.0, 0.0], ["a", 0.5, 1.0]]
    table = _metrics.per_class_table(
        {"class": ["a", "b"], "ap": np.array([np.nan, 0.25]), "n": np.array([0, 3])}
    )
    assert table.data == [["a", None, 0], ["b", 0.25, 3]]
    cm = _metrics.confusion_chart(np.array([[2, 1], [0, 3]]), ["x", "y"], "t")
    assert cm.table.data == [["x", "x", 2], ["x", "y", 1], ["y", "x", 0], ["y", "y", 3]]
    assert cm.spec.spec_name == "wandb/confusion_matrix/v1"


def test_macro_counts_undefined_as_zero_over_the_classes_asked():
    assert _metrics.macro(np.array([1.0, np.nan, 0.5]), np.array([True, True, False])) == 0.5
    assert np.isnan(_metrics.macro(np.array([1.0]), np.array([False])))
