"""The task callbacks log what ``model.predict`` says, on the model classes users train.

Real classes with random weights (nothing downloaded), built small (``tests/real_models.py``),
trained one epoch with a real ``fit`` and real offline W&B. Each test reads the last pred
version back from the offline run and compares it with ``model.predict`` on the same
samples after ``fit`` (the weights the epoch-end log saw), and with the metrics computed
from those predictions by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image as PILImage

from fastevalcb import (
    ClassificationEvalCallback,
    DetectionEvalCallback,
    FastEvalInputError,
    SegmentationEvalCallback,
)
from tests.helpers import real_models as rm
from tests.helpers.tasks import EpochRecorder, pred_versions

keras_hub = pytest.importorskip("keras_hub")
pytestmark = pytest.mark.slow

NAMES3 = ["a", "b", "c"]


def last_table(log, run):
    return log.load_table(pred_versions(log, run.id)[-1], "eval_data")


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_classification_rows(table, probs, labels, names):
    """Logged pred/confidence/correct equal argmax/max of ``probs`` (model.predict's)."""
    names = np.asarray(names)
    np.testing.assert_array_equal(table.column("pred"), names[probs.argmax(1)])
    np.testing.assert_allclose(table.column("confidence"), probs.max(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table.column("correct"), probs.argmax(1) == labels)


# ------------------------------------------------------------------- classification
def test_keras_hub_image_classifier_with_a_resizing_preprocessor(offline_run):
    run, read = offline_run
    model = rm.resnet_classifier(image_size=(24, 24), num_classes=5)
    model.compile(optimizer="sgd")
    x, y = rm.images(10, (40, 40)), np.arange(10) % 5  # raw 40x40 -> the model's 24x24
    names = [f"c{i}" for i in range(5)]
    cb = ClassificationEvalCallback((x, y), names, batch_size=4, verbose=0)
    model.fit(x, y, epochs=1, batch_size=5, callbacks=[cb], verbose=0)
    logits = model.predict(x, batch_size=4, verbose=0)  # ImageClassifier: logits
    table = last_table(read(), run)
    assert_classification_rows(table, softmax(logits), y, names)
    # model(x) skips the preprocessor: its predictions are not what was logged.
    raw = model(tf.image.resize(x, (24, 24)), training=False).numpy()
    assert not np.allclose(softmax(raw).max(1), table.column("confidence"), atol=1e-3)


def test_keras_applications_classifier(offline_run):
    run, read = offline_run
    model = rm.mobilenet(num_classes=4)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rm.images(9, (32, 32)), np.arange(9) % 4  # applications rescale inside
    cb = ClassificationEvalCallback((x, y), list("wxyz"), batch_size=4, verbose=0)
    model.fit(x, y, epochs=1, batch_size=9, callbacks=[cb], verbose=0)
    probs = model.predict(x, batch_size=4, verbose=0)  # softmax head
    assert_classification_rows(last_table(read(), run), probs, y, list("wxyz"))


def test_custom_predict_step_confidences_are_predicts(offline_run):
    run, read = offline_run
    model = rm.calibrated_classifier((16, 16), num_classes=3)
    model.compile("sgd", keras_loss())
    x, y = rm.images(7, (16, 16)), np.arange(7) % 3
    cb = ClassificationEvalCallback((x, y), NAMES3, batch_size=3, verbose=0)
    model.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    probs = model.predict(x, batch_size=3, verbose=0)  # temperature-scaled probabilities
    table = last_table(read(), run)
    assert_classification_rows(table, probs, y, NAMES3)
    uncalibrated = softmax(model(x, training=False).numpy())
    assert not np.allclose(uncalibrated.max(1), table.column("confidence"), atol=1e-3)


def test_two_input_model_shows_its_image_input(offline_run):
    run, read = offline_run
    model = rm.two_input_model(num_classes=3)
    model.compile("sgd", keras_loss())
    rng = np.random.default_rng(0)
    x = {
        "image": rm.images(8, (16, 16)).astype("uint8"),
        "meta": rng.normal(size=(8, 4)).astype("float32"),
    }
    y = np.arange(8) % 3
    cb = ClassificationEvalCallback((x, y), NAMES3, batch_size=3, verbose=0)
    model.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    probs = softmax(model.predict(x, batch_size=3, verbose=0))
    log = read()
    assert_classification_rows(last_table(log, run), probs, y, NAMES3)
    data = log.artifact("val")
    cell = log.load_table(data, "val_data").column("image")[2]
    shown = np.asarray(PILImage.open(data.entries[cell["path"]].local_path))
    np.testing.assert_array_equal(shown, x["image"][2])  # the image input, as given


def test_ambiguous_image_inputs_ask_for_image_key(offline_run):
    import keras

    a, b = keras.Input((8, 8, 3), name="a"), keras.Input((8, 8, 3), name="b")
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in (a, b)]
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(3)(keras.layers.Concatenate()(pooled)))
    model.compile("sgd", keras_loss())
    x = {"a": rm.images(4, (8, 8)), "b": rm.images(4, (8, 8), seed=1)}
    y = np.arange(4) % 3
    with pytest.raises(FastEvalInputError, match="image_key"):
        ClassificationEvalCallback((x, y), NAMES3, verbose=0)
    cb = ClassificationEvalCallback((x, y), NAMES3, image_key="b", verbose=0)
    epochs = EpochRecorder()
    model.fit(x, y, epochs=1, callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == [0]


def keras_loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# ------------------------------------------------------------------- segmentation
def segmentation_truth(logits, masks, num_classes):
    """model.predict's class maps, nearest-resized to the masks, and their metrics."""
    from tests.helpers.reference import resize_nearest

    pred = resize_nearest(logits.argmax(-1), masks.shape[1:])
    iou = np.full((len(masks), num_classes), np.nan)
    for i in range(len(masks)):
        for c in range(num_classes):
            union = ((pred[i] == c) | (masks[i] == c)).sum()
            if union:
                iou[i, c] = ((pred[i] == c) & (masks[i] == c)).sum() / union
    return pred, iou


@pytest.mark.parametrize("family", [rm.deeplab, rm.segformer])
@pytest.mark.parametrize("raw_hw", [(32, 32), (48, 48)], ids=["rescale", "resize"])
def test_keras_hub_segmenters_with_preprocessors(offline_run, family, raw_hw):
    run, read = offline_run
    model = family(image_size=(32, 32), num_classes=3)
    model.compile(optimizer="sgd", loss=keras_loss())
    rng = np.random.default_rng(0)
    x_train, m_train = rm.images(4, (32, 32)), rng.integers(0, 3, (4, 32, 32, 1))
    x = rm.images(5, raw_hw, seed=2)
    masks = np.zeros((5, *raw_hw), "int32")
    masks[:, raw_hw[0] // 2 :] = 1
    masks[:, :, : raw_hw[1] // 3] = 2
    cb = SegmentationEvalCallback((x, masks), NAMES3, batch_size=2, verbose=0)
    model.fit(x_train, m_train, epochs=1, callbacks=[cb], verbose=0)
    logits = model.predict(x, batch_size=2, verbose=0)
    assert logits.shape == (5, 32, 32, 3)
    pred, iou = segmentation_truth(logits, masks, 3)
    log = read()
    last = pred_versions(log, run.id)[-1]
    table = log.load_table(last, "eval_data")
    np.testing.assert_allclose(
        np.array([table.column(f"iou/{n}") for n in NAMES3], float).T, iou, rtol=1e-6
    )
    np.testing.assert_allclose(
        table.column("pixel_accuracy"), (pred == masks).mean(axis=(1, 2)), rtol=1e-6
    )
    for i in (0, 4):  # the logged mask is predict's argmax, at the displayed image's size
        entry = last.entries[table.column("image")[i]["masks"]["predictions"]["path"]]
        np.testing.assert_array_equal(np.asarray(PILImage.open(entry.local_path)), pred[i])


# ------------------------------------------------------------------- detection
def yxyx_to_xyxy(b):
    return b[..., [1, 0, 3, 2]]


@pytest.mark.parametrize("bounding_box_format", ["yxyx", "xyxy"])
def test_keras_hub_retinanet_boxes_are_predicts_on_the_shown_image(
    offline_run, bounding_box_format
):
    """RetinaNet decodes (anchors + NMS) in predict_step, its preprocessor resizes 48x48 ->
    32x32, its format is its own: the logged boxes are predict's, scaled to 48x48."""
    run, read = offline_run
    model = rm.retinanet(bounding_box_format, image_size=(32, 32))
    model.prediction_decoder = rm.nms_decoder(bounding_box_format, threshold=0.25)
    model.compile(optimizer="sgd")
    train_x = rm.images(4, (32, 32))
    train_y = {
        "boxes": np.tile(np.array([[4, 4, 20, 20]], "float32"), (4, 1, 1)),
        "labels": np.zeros((4, 1), "int32"),
    }
    x = rm.images(5, (48, 48), seed=4)
    gt = np.array([[6, 6, 30, 30], [0, 0, 0, 0]], "float32")  # in the model's own format
    targets = {"boxes": np.tile(gt, (5, 1, 1)), "labels": np.tile([[1, -1]], (5, 1))}
    cb = DetectionEvalCallback((x, targets), NAMES3, batch_size=2, verbose=0)
    model.fit(train_x, train_y, epochs=1, batch_size=4, callbacks=[cb], verbose=0)
    assert cb.box_format == bounding_box_format  # the model's own, by default
    want = rm.predict_static_batches(model, x, 2)
    table = last_table(read(), run)
    counts = want["num_detections"]
    assert counts.sum() > 0
    np.testing.assert_array_equal(table.column("num_predictions"), counts)
    for i, cell in enumerate(table.column("image")):
        boxes = want["boxes"][i, : counts[i]]
        if bounding_box_format == "yxyx":
            boxes = yxyx_to_xyxy(boxes)
        expected = boxes * 1.5  # 32x32 model frame -> the 48x48 image, unclipped (as COCO)
        logged = cell["boxes"]["predictions"]
        got = np.array(
            [[b["position"][k] for k in ("minX", "minY", "maxX", "maxY")] for b in logged]
        ).reshape(-1, 4)
        np.testing.assert_allclose(got, expected, atol=0.006)  # box_decimals=2
        np.testing.assert_allclose(
            [b["scores"]["score"] for b in logged], want["confidence"][i, : counts[i]], atol=6e-5
        )
        assert [b["class_id"] for b in logged] == want["labels"][i, : counts[i]].tolist()
        gt_boxes = cell["boxes"]["ground_truth"]
        gt_xyxy = yxyx_to_xyxy(gt[0]) if bounding_box_format == "yxyx" else gt[0]
        assert [[b["position"][k] for k in ("minX", "minY", "maxX", "maxY")] for b in gt_boxes] == [
            gt_xyxy.tolist()
        ]


def test_a_cropping_preprocessor_of_another_aspect_ratio_is_refused(offline_run):
    model = rm.retinanet("yxyx", image_size=(32, 32))
    model.compile(optimizer="sgd")
    converter = model.preprocessor.image_converter
    assert converter.resizing.crop_to_aspect_ratio  # KerasHub's default
    x = rm.images(3, (32, 48))
    targets = {"boxes": np.zeros((3, 1, 4), "float32"), "labels": np.full((3, 1), -1)}
    cb = DetectionEvalCallback((x, targets), NAMES3, verbose=0)
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match="crop_to_aspect_ratio=True.*aspect ratio"):
        model.fit(
            rm.images(2, (32, 32)),
            {"boxes": np.zeros((2, 1, 4), "float32"), "labels": np.zeros((2, 1), "int32")},
            epochs=1,
            callbacks=[cb, epochs],
            verbose=0,
        )
    assert epochs.epochs == []
