"""ClassificationEvalCallback's per-class table, macro/micro scores, confusion matrix, PR
curves and calibration, read back from real offline runs and compared with scikit-learn on
the model's own predictions."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from fastevalcb import ClassificationEvalCallback
from fastevalcb.kernels import softmax
from fastevalcb.kernels.curves import PR_EDGES
from tests.helpers.metrics import (
    chart_panels,
    confusion_from_chart,
    has_table,
    logged_table,
    metric_rows,
    nan_to_none,
)

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

SIZE = 16


def test_softmax_head_metrics_equal_sklearn(offline_run, shapes, classifier):
    _, read = offline_run
    x, y = shapes.images[:40], shapes.labels[:40]
    names = list(shapes.class_names)
    cb = ClassificationEvalCallback(
        (x, y), names, batch_size=16, verbose=0, calibration_bins=10, pr_top_k=2
    )
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    probs = softmax(classifier.predict(x, verbose=0))  # float32, as the callback has them
    pred = probs.argmax(axis=1)
    log = read()
    rows = metric_rows(log, "eval/macro_f1")
    assert len(rows) == 2
    row = rows[-1]
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert (
        row["eval/macro_precision"],
        row["eval/macro_recall"],
        row["eval/macro_f1"],
    ) == pytest.approx((p, r, f))
    assert row["eval/micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert row["eval/micro_f1"] == pytest.approx(row["eval/accuracy"])

    table = logged_table(log, row, "eval/per_class")
    p, r, f, support = skm.precision_recall_fscore_support(
        y, pred, labels=range(3), zero_division=np.nan
    )
    assert table["class"] == names
    assert table["support"] == support.tolist()
    assert table["predicted"] == np.bincount(pred, minlength=3).tolist()
    for name, want in (("precision", p), ("recall", r), ("f1", f)):
        assert nan_to_none(table[name]) == pytest.approx(nan_to_none(want.tolist())), name

    cm = confusion_from_chart(logged_table(log, row, "eval/confusion_matrix_table"), names)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(3)))

    pr = logged_table(log, row, "eval/pr_curve_table")
    top = np.argsort(-support, kind="stable")[:2]
    assert sorted(set(pr["class"])) == sorted([names[c] for c in top] + ["mean"])
    for c in top:  # sklearn's point at its first threshold >= each edge
        sk_p, sk_r, sk_t = skm.precision_recall_curve(y == c, probs[:, c])
        want = [
            (sk_p[np.flatnonzero(sk_t >= e)[0]], sk_r[np.flatnonzero(sk_t >= e)[0]])
            for e in PR_EDGES
            if (sk_t >= e).any()
        ]
        got = [
            (pp, rr)
            for k, pp, rr in zip(pr["class"], pr["precision"], pr["recall"])
            if k == names[c]
        ]
        assert len(got) == len(want)
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-6)

    conf, correct = probs.max(axis=1), pred == y
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], conf), minlength=10)
    ece = np.sum(counts[counts > 0] / len(y) * np.abs(prob_true - prob_pred))
    assert row["eval/ece"] == pytest.approx(ece, abs=1e-6)
    reliability = logged_table(log, row, "eval/reliability_table")
    got = [v for k, v in zip(reliability["lineKey"], reliability["lineVal"]) if k == "accuracy"]
    assert got == pytest.approx(prob_true.tolist())
    panels = chart_panels(log)
    assert panels["eval/confusion_matrix"] == "wandb/confusion_matrix/v1"
    assert panels["eval/pr_curve"] == "wandb/area-under-curve/v0"
    assert panels["eval/reliability"] == "wandb/lineseries/v0"


def test_multi_label_head_macro_scores_equal_sklearn(offline_run, shapes):
    _, read = offline_run
    x = shapes.images[:30]
    y = np.stack(
        [
            shapes.labels[:30] == 0,
            shapes.labels[:30] == 1,
            x.mean(axis=(1, 2, 3)) > x.mean(),
            np.zeros(30, bool),
        ],
        axis=1,
    )  # d: never
    names = ["a", "b", "bright", "d"]
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    cb = ClassificationEvalCallback(
        (x, y.astype(np.float32)), names, multi_label=True, output="logits", verbose=0
    )
    model.fit(x, y.astype("float32"), epochs=1, batch_size=8, callbacks=[cb], verbose=0)
    pred = model.predict(x, verbose=0) > 0  # sigmoid > 0.5
    row = metric_rows(read(), "eval/macro_f1")[-1]
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert (
        row["eval/macro_precision"],
        row["eval/macro_recall"],
        row["eval/macro_f1"],
    ) == pytest.approx((p, r, f))
    table = logged_table(read(), row, "eval/per_class")
    assert table["support"] == y.sum(axis=0).tolist()
    assert table["predicted"] == pred.sum(axis=0).tolist()
    assert not has_table(row, "eval/confusion_matrix_table")  # no single label to confuse


def test_metric_groups_switch_off_and_unknown_ones_fail(offline_run, shapes, classifier):
    _, read = offline_run
    x, y = shapes.images[:20], shapes.labels[:20]
    cb = ClassificationEvalCallback(
        (x, y), list(shapes.class_names), verbose=0, metrics=["per_class"]
    )
    classifier.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    row = metric_rows(read(), "eval/macro_f1")[-1]
    assert has_table(row, "eval/per_class")
    assert [k for k in row if k.endswith("/_type")] == ["eval/per_class/_type"]
    assert "eval/ece" not in row
    with pytest.raises(ValueError, match=r"unknown metrics groups \['roc'\]"):
        ClassificationEvalCallback((x, y), list(shapes.class_names), metrics=["roc"])
