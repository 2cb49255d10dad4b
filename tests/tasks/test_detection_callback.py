"""DetectionEvalCallback end to end on a model whose boxes are known in advance.

The model predicts the same four boxes for every image (scores nudged by the image's
brightness so no two images tie), and each image's ground truth is chosen so every
per-image and summary metric can be worked out by hand.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from fastevalcb import DetectionEvalCallback, FastEvalInputError, FastEvalWarning
from task_helpers import EpochRecorder, pred_versions

SIZE = 32
NAMES = ["a", "b"]
# Fixed predictions (xyxy pixels): P0 a .9, P1 a .8 (P0's duplicate), P2 b .7, P3 b .01.
PRED_BOXES = np.array([[2, 2, 12, 12], [2, 2, 12, 11], [20, 20, 30, 30], [0, 20, 8, 30]],
                      np.float32)
PRED_SCORES = np.array([0.9, 0.8, 0.7, 0.01], np.float32)
PRED_CLASSES = np.array([0, 0, 1, 1], np.float32)
# Ground truth per image, padded with class -1.
GT_BOXES = np.zeros((4, 2, 4), np.float32)
GT_CLASSES = np.full((4, 2), -1)
GT_BOXES[0] = [[2, 2, 12, 12], [20, 20, 30, 30]]  # A: P0 tp, P1 fp (dup), P2 tp
GT_CLASSES[0] = [0, 1]
GT_BOXES[1, 0] = [20, 20, 30, 30]  # B: one "a" where only a "b" is predicted: all fp
GT_CLASSES[1, 0] = 0
# C: no objects at all
GT_BOXES[3] = [[7, 7, 17, 17], [20, 20, 30, 30]]  # D: "a" at IoU 25/175 with P0; "b" tp
GT_CLASSES[3] = [0, 1]

EXPECTED = {  # P3 (score .01) falls under score_threshold=0.05 everywhere
    "num_predictions": [3, 3, 3, 3],
    "tp": [2, 0, 0, 1],
    "fp": [1, 3, 3, 2],
    "fn": [0, 1, 0, 1],
    "precision": [2 / 3, 0.0, 0.0, 1 / 3],
    "recall": [1.0, 0.0, None, 0.5],  # None: NaN (no ground truth)
    "ap50": [1.0, 0.0, None, 0.5],  # D: mean(AP a = 0, AP b = 1)
}
# Dataset AP, predictions ranked A > B > C > D (brighter images score higher):
# a: tp at rank 1 of 8, 3 GT -> AP 1/3.  b: A tp, B fp, C fp, D tp of 2 GT ->
# precision envelope 1 up to recall .5, then 2/4 -> AP .5 * 1 + .5 * .5 = .75.
EXPECTED_MAP50 = (1 / 3 + 0.75) / 2


class Fixed(keras.layers.Layer):
    """Broadcasts a constant to the batch, plus ``brightness * nudge``."""

    def __init__(self, value, nudge=0.0, **kwargs):
        super().__init__(**kwargs)
        self.value = np.asarray(value, np.float32)
        self.nudge = nudge

    def call(self, images, aux):
        brightness = ops.mean(ops.cast(images, "float32"), axis=(1, 2, 3)) / 255.0
        shape = (ops.shape(images)[0],) + self.value.shape
        value = ops.broadcast_to(ops.convert_to_tensor(self.value)[None], shape)
        per_image = (-1,) + (1,) * self.value.ndim
        extra = ops.reshape(brightness, per_image) * self.nudge
        return value + extra + 0.0 * ops.reshape(aux[:, 0], per_image)


def fixed_detector():
    images = keras.Input((SIZE, SIZE, 3))
    aux = keras.layers.Dense(1, name="aux")(keras.layers.Flatten()(images))
    outputs = {
        "aux": aux,
        "boxes": Fixed(PRED_BOXES, name="boxes")(images, aux),
        "scores": Fixed(PRED_SCORES, nudge=0.01, name="scores")(images, aux),
        "classes": Fixed(PRED_CLASSES, name="classes")(images, aux),
    }
    model = keras.Model(images, outputs)
    model.compile("sgd", loss={"aux": "mse"})
    return model


def val_images():
    # A, B, C, D from brightest to darkest.
    return np.stack([np.full((SIZE, SIZE, 3), v, np.uint8) for v in (200, 150, 100, 50)])


def fit(model, callbacks, epochs=1):
    x = val_images()
    return model.fit(x, {"aux": np.zeros((4, 1))}, epochs=epochs, batch_size=2,
                     callbacks=callbacks, verbose=0)


def _nan_to_none(values):
    return [None if v is None or np.isnan(v) else v for v in values]


def test_per_image_and_summary_metrics_match_the_hand_computed_case(offline_run):
    run, read = offline_run
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    cb = DetectionEvalCallback((val_images(), targets), NAMES, batch_size=3, verbose=0,
                               score_threshold=0.05)
    fit(fixed_detector(), [cb], epochs=2)
    log = read()

    data = log.artifact("val")
    data_table = log.load_table(data, "val_data")
    assert data_table.columns == ["id", "image", "num_objects", "classes"]
    assert data_table.column("num_objects") == [2, 1, 0, 2]
    assert data_table.column("classes") == [["a", "b"], ["a"], [], ["a", "b"]]

    last = pred_versions(log, run.id)[-1]
    table = log.load_table(last, "eval_data")
    for name, expected in EXPECTED.items():
        got = _nan_to_none(table.column(name))
        assert got == pytest.approx(expected, abs=1e-6), name

    # Box layers are inline in the table JSON (wandb writes no file for them in
    # artifacts): three predictions with captions and scores, the ground truth kept.
    cell = table.column("image")[0]
    pred_boxes = cell["boxes"]["predictions"]
    assert [b["class_id"] for b in pred_boxes] == [0, 0, 1]
    assert pred_boxes[0]["position"] == {"minX": 2.0, "minY": 2.0, "maxX": 12.0, "maxY": 12.0}
    assert pred_boxes[0]["box_caption"].startswith("a 0.9")
    assert pred_boxes[0]["scores"]["score"] == round(0.9 + 0.01 * 200 / 255, 4)  # 4 decimals
    assert [b["class_id"] for b in cell["boxes"]["ground_truth"]] == [0, 1]
    # The image itself is a reference into the data artifact: nothing re-uploaded.
    assert last.entries[cell["path"]].is_reference
    assert last.entries[cell["path"]].referenced_client_id == data.client_id
    stored = [p for p, e in last.entries.items() if not e.is_reference]
    assert not [p for p in stored if p.endswith(".png")], stored

    row = [r for r in log.history() if "eval/mAP50" in r][-1]
    assert row["eval/mAP50"] == pytest.approx(EXPECTED_MAP50)
    assert row["eval/precision"] == pytest.approx(3 / 12)
    assert row["eval/recall"] == pytest.approx(3 / 5)


def test_deprecated_normalized_cxcywh_targets_and_tuple_outputs_via_adapter(offline_run):
    run, read = offline_run
    xyxy = GT_BOXES / SIZE
    cxcywh = np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]],
                            -1)

    def adapter(outputs):  # model boxes are xyxy pixels: convert to the targets' format
        b = outputs["boxes"] / SIZE
        boxes = np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], -1)
        return boxes, outputs["scores"], outputs["classes"]

    ds = tf.data.Dataset.from_tensor_slices((val_images(), (cxcywh, GT_CLASSES)))
    with pytest.warns(DeprecationWarning, match="box_format='rel_xyxy'"):
        cb = DetectionEvalCallback(ds, NAMES, box_format="cxcywh", normalized=True,
                                   adapter=adapter, verbose=0, score_threshold=0.05)
    assert cb.box_format == cb.target_box_format == "rel_center_xywh"
    fit(fixed_detector(), [cb])
    table = read().load_table(pred_versions(read(), run.id)[-1], "eval_data")
    assert table.column("tp") == EXPECTED["tp"]
    assert table.column("fn") == EXPECTED["fn"]


@pytest.mark.parametrize(
    "targets, match",
    [
        ({"boxes": GT_BOXES[:, :, :3], "classes": GT_CLASSES},
         r"target boxes must have shape \(N, M, 4\)"),
        ({"boxes": GT_BOXES, "classes": GT_CLASSES[:, :1]},
         r"target labels must have shape \(N, 2\)"),
        ({"boxes": GT_BOXES, "classes": np.where(GT_CLASSES == 1, 2, GT_CLASSES)},
         r"target box label of sample 0 is 2, outside class_names \(2 classes"),
        (GT_BOXES, "detection targets must be a dict"),
    ],
)
def test_bad_targets_fail_at_construction(offline_run, targets, match):
    with pytest.raises(FastEvalInputError, match=match):
        DetectionEvalCallback((val_images(), targets), NAMES)


def test_unreadable_model_outputs_fail_at_train_begin(offline_run):
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    cb = DetectionEvalCallback((val_images(), targets), NAMES,
                               adapter=lambda out: (out["boxes"][..., :2], out["scores"],
                                                    out["classes"]))
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match=r"predicted boxes must have shape \(B, K, 4\)"):
        fit(fixed_detector(), [cb, epochs])
    assert epochs.epochs == []


def test_adapter_failing_mid_training_warns_once_and_fit_goes_on(offline_run):
    run, read = offline_run
    calls = {"n": 0}

    def adapter(outputs):
        calls["n"] += 1
        if calls["n"] > 1:  # fine at the train-begin check, broken afterwards
            raise KeyError("scores_v2")
        return outputs

    cb = DetectionEvalCallback((val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
                               NAMES, adapter=adapter, verbose=2)  # 2: prints at train end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(fixed_detector(), [cb], epochs=2)
    assert len(history.history["loss"]) == 2
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    assert "scores_v2" in ours[0]
    assert pred_versions(read(), run.id) == []


def test_ragged_targets_ask_for_padding(offline_run):
    boxes = tf.ragged.constant([[[1.0, 1, 5, 5]], [[1.0, 1, 5, 5], [2.0, 2, 6, 6]]],
                               ragged_rank=1)
    classes = tf.ragged.constant([[0], [0, 1]])
    ds = tf.data.Dataset.from_tensor_slices((val_images()[:2], (boxes, classes))).batch(2)
    cb = DetectionEvalCallback(ds, NAMES, verbose=0)
    with pytest.raises(FastEvalInputError, match="must be padded arrays"):
        fit(fixed_detector(), [cb])


def test_rows_past_num_detections_are_padding(offline_run):
    run, read = offline_run

    def adapter(outputs):  # only the first prediction counts; the rest carry junk classes
        classes = outputs["classes"].copy()
        classes[:, 1:] = 7
        return {**outputs, "classes": classes, "num_detections": np.ones(len(classes))}

    cb = DetectionEvalCallback((val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
                               NAMES, adapter=adapter, verbose=0)
    fit(fixed_detector(), [cb])
    table = read().load_table(pred_versions(read(), run.id)[-1], "eval_data")
    assert table.column("num_predictions") == [1, 1, 1, 1]
    assert table.column("tp") == [1, 0, 0, 0]  # P0 matches A's box only


def test_nan_inf_inverted_and_zero_area_boxes_are_counted_dropped_and_warned_once(offline_run):
    run, read = offline_run
    calls = {"n": 0}

    def adapter(outputs):  # clean at the train-begin check, then a model gone bad
        calls["n"] += 1
        if calls["n"] == 1:
            return outputs
        boxes, scores = outputs["boxes"].copy(), outputs["scores"].copy()
        boxes[1, 2, 0] = np.nan  # B: P2 has a NaN corner
        scores[2, 0] = np.inf  # C: P0 scores inf
        boxes[3, 1] = [12, 2, 2, 11]  # D: P1 inverted (x2 < x1)
        boxes[3, 2] = [20, 20, 20, 30]  # D: P2 zero-width
        return {**outputs, "boxes": boxes, "scores": scores}

    cb = DetectionEvalCallback((val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
                               NAMES, adapter=adapter, verbose=0, score_threshold=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(fixed_detector(), [cb], epochs=2)
    log = read()
    versions = pred_versions(log, run.id)
    assert len(versions) == 2
    for version in versions:
        table = log.load_table(version, "eval_data")
        assert table.column("finite") == [True, False, False, True]
        assert table.column("num_predictions") == [3, 2, 2, 1]  # the bad boxes are dropped
        overlays = [cell["boxes"]["predictions"] for cell in table.column("image")]
        assert [len(boxes) for boxes in overlays] == [3, 2, 2, 1]
        assert overlays[3][0]["position"]["minX"] == 2.0  # D keeps P0 only
    rows = [r for r in log.history() if "eval/mAP50" in r]
    assert len(rows) == 2 and all(np.isnan(r["eval/mAP50"]) for r in rows)
    assert all(np.isnan(r["eval/precision"]) for r in rows)
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    nan = [m for m in ours if "non-finite" in m]
    bad = [m for m in ours if "inverted or zero-area" in m]
    assert len(nan) == 1 and len(bad) == 1, ours  # once per fit each
    assert "2 of 4 detection samples had non-finite predictions (NaN/inf) (2 boxes or " \
        "scores, dropped from the overlay and the metrics) at epoch 0 (step 2); first " \
        "sample id 1." in nan[0]
    assert "2 predicted boxes in 1 samples were inverted or zero-area at epoch 0 (step 2); " \
        "first sample id 3." in bad[0]
