"""SegmentationEvalCallback's class accuracy, frequency-weighted IoU, Dice, per-class table
and pixel confusion matrix, read back from real offline runs and compared with
scikit-learn on the model's own class maps."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from fastevalcb import SegmentationEvalCallback
from tests.helpers.metrics import (
    chart_panels,
    confusion_from_chart,
    has_table,
    logged_table,
    metric_rows,
    nan_to_none,
)

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

NAMES = ["background", "rectangle", "ellipse", "triangle", "never"]  # "never": in no mask


@pytest.mark.parametrize("ignore", [None, 255])
def test_pixel_metrics_equal_sklearn(offline_run, shapes, ignore):
    _, read = offline_run
    x, masks = shapes.images[:10], shapes.masks[:10].copy()
    if ignore is not None:
        masks[:, :3] = ignore  # unlabelled rows count nowhere
    keras.utils.set_random_seed(0)  # a 5-class head: "never" may be predicted, never true
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(5, 3, padding="same"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = SegmentationEvalCallback((x, masks), NAMES, batch_size=4, verbose=0, ignore_index=ignore)
    model.fit(x, np.where(masks == 255, 0, masks), epochs=1, callbacks=[cb], verbose=0)
    pred = model.predict(x, verbose=0).argmax(-1)
    keep = masks.reshape(-1) != 255
    t, p = masks.reshape(-1)[keep], pred.reshape(-1)[keep]
    labels = list(range(5))
    log = read()
    row = metric_rows(log, "eval/mIoU")[-1]

    cm = skm.confusion_matrix(t, p, labels=labels)
    seen = (cm.sum(0) + cm.sum(1)) > 0
    iou = np.where(
        seen, skm.jaccard_score(t, p, labels=labels, average=None, zero_division=0), np.nan
    )
    assert row["eval/mIoU"] == pytest.approx(np.mean(iou[seen]))
    assert row["eval/pixel_accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
        warnings.simplefilter("ignore", UserWarning)
        balanced = skm.balanced_accuracy_score(t, p)
    assert row["eval/mean_class_accuracy"] == pytest.approx(balanced)
    freq = cm.sum(1) / cm.sum()
    assert row["eval/fw_iou"] == pytest.approx(np.sum(freq[freq > 0] * iou[freq > 0]))
    dice = skm.f1_score(t, p, labels=labels, average=None, zero_division=np.nan)
    assert row["eval/mean_dice"] == pytest.approx(np.mean(dice[seen]))

    table = logged_table(log, row, "eval/per_class")
    assert table["class"] == NAMES
    assert table["pixels"] == cm.sum(1).tolist()
    assert table["predicted"] == cm.sum(0).tolist()
    assert nan_to_none(table["iou"]) == pytest.approx(nan_to_none(iou.tolist()))
    assert nan_to_none(table["dice"]) == pytest.approx(nan_to_none(dice.tolist()))
    recall = skm.recall_score(t, p, labels=labels, average=None, zero_division=np.nan)
    assert nan_to_none(table["accuracy"]) == pytest.approx(nan_to_none(recall.tolist()))

    got = confusion_from_chart(logged_table(log, row, "eval/confusion_matrix_table"), NAMES)
    np.testing.assert_array_equal(got, cm)
    assert chart_panels(log)["eval/confusion_matrix"] == "wandb/confusion_matrix/v1"


def test_confusion_matrix_can_be_switched_off(offline_run, shapes, segmenter):
    _, read = offline_run
    x, masks = shapes.images[:6], shapes.masks[:6]
    cb = SegmentationEvalCallback((x, masks), NAMES[:4], verbose=0, metrics=["per_class"])
    segmenter.fit(x, masks, epochs=1, callbacks=[cb], verbose=0)
    row = metric_rows(read(), "eval/mIoU")[-1]
    assert has_table(row, "eval/per_class")
    assert not has_table(row, "eval/confusion_matrix_table")
