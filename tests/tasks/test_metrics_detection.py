"""DetectionEvalCallback's COCO metrics, per-class table, confusion matrix and PR chart, read
back from real offline runs and compared with pycocotools and scikit-learn."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from keras import ops
from sklearn import metrics as skm

from fastevalcb import DetectionEvalCallback
from fastevalcb.kernels.coco import STAT_NAMES
from tests.helpers.coco_oracle import cocoeval, generated
from tests.helpers.detection import (
    EXPECTED_MAP50,
    GT_BOXES,
    GT_CLASSES,
    NAMES,
    PRED_BOXES,
    PRED_CLASSES,
    PRED_SCORES,
    fit,
    fixed_detector,
    val_images,
)
from tests.helpers.metrics import (
    chart_panels,
    confusion_from_chart,
    has_table,
    logged_table,
    metric_rows,
    nan_to_none,
)

SIZE = 32


def hand_case_packed(brightness=(200, 150, 100, 50), score_threshold=0.05) -> dict:
    """The hand case's predictions as the fixed detector makes them, packed."""
    po, go, pb, ps, pc, gb, gc = [0], [0], [], [], [], [], []
    for i, v in enumerate(brightness):
        scores = (PRED_SCORES + np.float32(0.01) * np.float32(v / 255.0)).astype(np.float32)
        keep = scores >= score_threshold
        pb += PRED_BOXES[keep].tolist()
        ps += scores[keep].tolist()
        pc += PRED_CLASSES[keep].astype(int).tolist()
        valid = GT_CLASSES[i] >= 0
        gb += GT_BOXES[i][valid].tolist()
        gc += GT_CLASSES[i][valid].tolist()
        po.append(len(pb))
        go.append(len(gb))
    return {
        "pred_offsets": np.array(po),
        "pred_xyxy": np.array(pb, np.float32),
        "pred_scores": np.array(ps, np.float32),
        "pred_class": np.array(pc),
        "gt_offsets": np.array(go),
        "gt_xyxy": np.array(gb, np.float32).reshape(-1, 4),
        "gt_class": np.array(gc),
    }


def assert_stats_equal_cocoeval(row: dict, ev, prefix: str = "eval") -> None:
    for name, want in zip(STAT_NAMES, ev.stats):
        got = row[f"{prefix}/{name}"]
        if want == -1:
            assert np.isnan(got), name
        else:
            assert got == pytest.approx(want, abs=1e-6), name


@pytest.mark.slow
def test_hand_case_logs_cocoeval_s_numbers_per_class_results_and_charts(offline_run):
    _, read = offline_run
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    cb = DetectionEvalCallback(
        (val_images(), targets),
        NAMES,
        batch_size=3,
        verbose=0,
        score_threshold=0.05,
        confusion_score_threshold=0.5,
    )
    fit(fixed_detector(), [cb], epochs=2)
    log = read()
    rows = metric_rows(log, "eval/mAP")
    assert len(rows) == 2  # every version
    row = rows[-1]
    ev = cocoeval(hand_case_packed(), len(NAMES))
    assert_stats_equal_cocoeval(row, ev)
    assert row["eval/mAP50"] != pytest.approx(EXPECTED_MAP50)  # 101 points, not VOC's

    # Max-F1 (by hand): "a" has 1 tp of 3 objects among 8 predictions, "b" 2 of 2 among 4;
    # a threshold above 0.7059 leaves "b" 1 tp and 0 fp: mean F1 (2/11 + 2/3) / 2 either
    # way, and of equal thresholds the lowest wins (every prediction counts).
    assert row["eval/f1_threshold"] == 0.0
    assert row["eval/precision"] == pytest.approx((1 / 8 + 2 / 4) / 2)
    assert row["eval/recall"] == pytest.approx((1 / 3 + 1) / 2)
    assert row["eval/f1"] == pytest.approx((2 / 11 + 2 / 3) / 2)
    assert row["eval/precision_at_score_threshold"] == pytest.approx((1 / 8 + 2 / 4) / 2)

    table = logged_table(log, row, "eval/per_class")
    assert table["class"] == NAMES
    assert table["num_gt"] == [3, 2]
    assert table["num_pred"] == [8, 4]
    ap = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, C)
    assert table["AP"] == pytest.approx(ap.mean(axis=(0, 1)).tolist())
    assert table["AP50"] == pytest.approx(ap[0].mean(axis=0).tolist())
    assert table["AP75"] == pytest.approx(ap[5].mean(axis=0).tolist())
    assert table["precision"] == pytest.approx([1 / 8, 2 / 4])
    assert table["recall"] == pytest.approx([1 / 3, 1.0])
    assert table["f1"] == pytest.approx([2 / 11, 2 / 3])

    # Confusion at IoU 0.5 among predictions scoring >= 0.5 (P0 "a", P1 "a", P2 "b"):
    # A: P0-a, P2-b paired, P1 on background; B: P0 ~ nothing ("a" GT is at P2's place,
    # paired "a" as "b"); C: three on background; D: P2-b paired, "a" missed (IoU 1/7).
    cm = confusion_from_chart(
        logged_table(log, row, "eval/confusion_matrix_table"), [*NAMES, "background"]
    )
    true = ["a", "b", "bg", "a", "bg", "bg", "bg", "bg", "bg", "b", "a", "bg", "bg"]
    pred = ["a", "b", "a", "b", "a", "a", "a", "a", "b", "b", "bg", "a", "a"]
    np.testing.assert_array_equal(cm, skm.confusion_matrix(true, pred, labels=["a", "b", "bg"]))

    pr = logged_table(log, row, "eval/pr_curve_table")
    assert sorted(set(pr["class"])) == ["a", "b", "mean"]
    got_a = [p for c, p in zip(pr["class"], pr["precision"]) if c == "a"]
    np.testing.assert_allclose(got_a, ev.eval["precision"][0, :, 0, 0, -1], atol=1e-9)
    assert len(got_a) == 101
    panels = chart_panels(log)
    assert panels["eval/confusion_matrix"] == "wandb/confusion_matrix/v1"
    assert panels["eval/pr_curve"] == "wandb/area-under-curve/v0"


@pytest.mark.slow
def test_voc_convention_keeps_the_all_point_map50(offline_run):
    _, read = offline_run
    cb = DetectionEvalCallback(
        (val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
        NAMES,
        verbose=0,
        score_threshold=0.05,
        ap_convention="voc",
        metrics=["coco", "per_class"],
    )
    fit(fixed_detector(), [cb])
    row = metric_rows(read(), "eval/mAP50")[-1]
    assert row["eval/mAP50"] == pytest.approx(EXPECTED_MAP50)
    assert "eval/mAP" not in row and "eval/AR100" not in row
    assert has_table(row, "eval/per_class")
    assert not has_table(row, "eval/confusion_matrix_table")
    assert logged_table(read(), row, "eval/per_class")["AP50"] == pytest.approx([1 / 3, 0.75])


@pytest.mark.slow
def test_metric_groups_switch_off(offline_run):
    _, read = offline_run
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    none = DetectionEvalCallback((val_images(), targets), NAMES, verbose=0, metrics=[])
    only_cm = DetectionEvalCallback(
        (val_images(), targets),
        NAMES,
        verbose=0,
        metrics=["confusion_matrix"],
        metrics_prefix="cm",
        data_artifact_name="cm",
    )
    fit(fixed_detector(), [none, only_cm])
    row = metric_rows(read(), "eval/epoch")[-1]
    assert sorted(k for k in row if k.startswith("eval/")) == ["eval/epoch", "eval/global_step"]
    row = metric_rows(read(), "cm/epoch")[-1]
    assert [k for k in row if k.endswith("/_type")] == ["cm/confusion_matrix_table/_type"]
    with pytest.raises(ValueError, match=r"unknown metrics groups \['mAP'\]"):
        DetectionEvalCallback(
            (val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}), NAMES, metrics=["mAP"]
        )


# ---------------------------------------------------------------- a generated set, end to end
class Lookup(keras.layers.Layer):
    """Per-image outputs read from a constant table, indexed by the image's first pixel."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = np.asarray(table)

    def call(self, images, aux):
        index = ops.cast(images[:, 0, 0, 0], "int32")
        value = ops.take(ops.convert_to_tensor(self.table), index, axis=0)
        return value + ops.cast(0.0 * ops.mean(aux), value.dtype)


def lookup_detector(boxes, scores, classes):
    images = keras.Input((SIZE, SIZE, 3))
    aux = keras.layers.Dense(1, name="aux")(keras.layers.Flatten()(images))
    outputs = {
        "aux": aux,
        "boxes": Lookup(boxes, name="boxes")(images, aux),
        "scores": Lookup(scores, name="scores")(images, aux),
        "classes": Lookup(classes, name="classes")(images, aux),
    }
    model = keras.Model(images, outputs)
    model.compile("sgd", loss={"aux": "mse"})
    return model


def padded(offsets, *arrays, fill=-1):
    """Packed arrays -> ``(B, K, ...)`` padded with ``fill``."""
    b, k = len(offsets) - 1, max(int(np.diff(offsets).max(initial=0)), 1)
    out = []
    for arr in arrays:
        pad = np.full((b, k, *arr.shape[1:]), fill, arr.dtype)
        for i in range(b):
            pad[i, : offsets[i + 1] - offsets[i]] = arr[offsets[i] : offsets[i + 1]]
        out.append(pad)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed, crowd", [(0, 0.0), (1, 0.0), (2, 0.25)])
def test_a_generated_set_logs_exactly_cocoeval_s_stats(offline_run, seed, crowd):
    """Zero-area and out-of-image predictions, > 100 per image, tied scores, images
    without objects, crowd boxes: the callback keeps the boxes as they are (no clipping,
    no dropping) and logs COCOeval's numbers on them."""
    _, read = offline_run
    d = generated(seed, images=8, classes=3, max_pred=(40, 130, 30)[seed], crowd=crowd)
    g0, g1 = d["gt_offsets"][2], d["gt_offsets"][3]  # image 2: no objects
    for key in ("gt_xyxy", "gt_class", "gt_crowd"):
        d[key] = np.delete(d[key], np.s_[g0:g1], axis=0)
    d["gt_offsets"][3:] -= g1 - g0
    boxes, scores, classes = padded(
        d["pred_offsets"], d["pred_xyxy"], d["pred_scores"], d["pred_class"].astype(np.float32)
    )
    gt_boxes, gt_classes, gt_crowd = padded(
        d["gt_offsets"], d["gt_xyxy"], d["gt_class"], d["gt_crowd"].astype(np.int64)
    )
    targets = {"boxes": gt_boxes, "classes": gt_classes}
    if crowd:
        assert d["gt_crowd"].any()
        targets["iscrowd"] = np.maximum(gt_crowd, 0)
    else:
        del d["gt_crowd"]
    images = np.zeros((8, SIZE, SIZE, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(8)
    cb = DetectionEvalCallback((images, targets), ["a", "b", "c"], verbose=0, batch_size=3)
    model = lookup_detector(boxes, scores, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-area boxes are warned about
        model.fit(
            images, {"aux": np.zeros((8, 1))}, epochs=1, batch_size=4, verbose=0, callbacks=[cb]
        )
    log = read()
    row = metric_rows(log, "eval/mAP")[-1]
    ev = cocoeval(d, 3)
    assert_stats_equal_cocoeval(row, ev)
    table = logged_table(log, row, "eval/per_class")
    ap = ev.eval["precision"][:, :, :, 0, -1]
    want = [None if (ap[:, :, c] == -1).any() else ap[:, :, c].mean() for c in range(3)]
    assert nan_to_none(table["AP"]) == pytest.approx(want)


@pytest.mark.slow
def test_no_ground_truth_and_no_predictions_give_defined_values(offline_run):
    _, read = offline_run
    empty = {"boxes": np.zeros((4, 1, 4), np.float32), "classes": np.full((4, 1), -1)}
    cb = DetectionEvalCallback(
        (val_images(), empty), NAMES, verbose=0, score_threshold=0.95, strict=True
    )  # nothing passes
    fit(fixed_detector(), [cb])
    log = read()
    row = metric_rows(log, "eval/mAP")[-1]
    for name in STAT_NAMES:
        assert np.isnan(row[f"eval/{name}"]), name  # COCO's -1: no ground truth
    assert np.isnan(row["eval/precision"]) and np.isnan(row["eval/f1_threshold"])
    table = logged_table(log, row, "eval/per_class")
    assert table["num_gt"] == [0, 0] and table["num_pred"] == [0, 0]
    assert table["AP"] == [None, None]
    assert not has_table(row, "eval/pr_curve_table")  # no class to draw


def test_bad_iscrowd_flags_fail_at_construction(offline_run):
    from fastevalcb import FastEvalInputError

    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES, "iscrowd": np.full((4, 2), 2)}
    with pytest.raises(FastEvalInputError, match="iscrowd must be 0 or 1, got 2 for sample 0"):
        DetectionEvalCallback((val_images(), targets), NAMES)
    targets["iscrowd"] = np.zeros((4, 3))
    with pytest.raises(FastEvalInputError, match=r"iscrowd must have shape \(N, 2\)"):
        DetectionEvalCallback((val_images(), targets), NAMES)
