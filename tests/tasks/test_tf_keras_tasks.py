"""The three task callbacks on Keras 2 (tf_keras) models record the Keras 3 tables.

Each test trains a tf_keras model and its Keras 3 twin (tests/tf_keras_twins.py) with the
same callback configuration in two real offline runs and compares what they recorded, cell
by cell, plus a check against the tf_keras ``model.predict``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

tf_keras = pytest.importorskip("tf_keras")

from fastevalcb import (  # noqa: E402
    ClassificationEvalCallback,
    DetectionEvalCallback,
    SegmentationEvalCallback,
)
from tests.helpers.detection import (  # noqa: E402
    EXPECTED,
    GT_BOXES,
    GT_CLASSES,
    NAMES,
    PRED_BOXES,
    PRED_CLASSES,
    PRED_SCORES,
    fixed_detector,
    val_images,
)
from tests.helpers.detection import SIZE as DET_SIZE  # noqa: E402
from tests.helpers.tf_keras_twins import RTOL, assert_same_runs, cnn, record, twins  # noqa: E402

pytestmark = [pytest.mark.tf_keras, pytest.mark.slow]


@pytest.mark.parametrize("log_every_n_batches", [None, 2])
def test_classification_records_the_keras3_tables(wandb_env, shapes, log_every_n_batches):
    x, y = shapes.images[:10], shapes.labels[:10]
    logs = {}
    for model, name in zip(twins(lambda k: cnn(k, 3, True)), ("keras3", "tf_keras")):
        logs[name] = record(
            wandb_env,
            name,
            model,
            lambda: ClassificationEvalCallback(
                (x, y),
                shapes.class_names,
                top_k=2,
                batch_size=4,
                verbose=0,
                log_every_n_batches=log_every_n_batches,
            ),
            x=shapes.images[:24],
            y=shapes.labels[:24],
            epochs=2,
            batch_size=8,
        )
    last = assert_same_runs(logs["keras3"], logs["tf_keras"])
    probs = tf.nn.softmax(model.predict(x, verbose=0)).numpy()
    np.testing.assert_allclose(last.column("confidence"), probs.max(1), rtol=RTOL)
    assert len(logs["tf_keras"].artifacts(type="evaluation")) == (4 if log_every_n_batches else 2)
    rows3 = [r["eval/accuracy"] for r in logs["keras3"].history() if "eval/accuracy" in r]
    rows2 = [r["eval/accuracy"] for r in logs["tf_keras"].history() if "eval/accuracy" in r]
    assert rows2 == rows3 and rows2


def test_segmentation_records_the_keras3_tables(wandb_env, shapes):
    names = ["background", *shapes.class_names]
    x, masks = shapes.images[:6], shapes.masks[:6]
    logs = {}
    for model, name in zip(twins(lambda k: cnn(k, len(names), False)), ("keras3", "tf_keras")):
        logs[name] = record(
            wandb_env,
            name,
            model,
            lambda: SegmentationEvalCallback((x, masks), names, batch_size=4, verbose=0),
            x=shapes.images[:24],
            y=shapes.masks[:24],
            epochs=1,
            batch_size=8,
        )
    last = assert_same_runs(logs["keras3"], logs["tf_keras"])
    pred = model.predict(x, verbose=0).argmax(-1)
    np.testing.assert_allclose(
        last.column("pixel_accuracy"), (pred == masks).mean(axis=(1, 2)), rtol=1e-6
    )


class _Fixed2(tf_keras.layers.Layer):
    """tf_keras twin of test_detection_callback.Fixed: a constant plus brightness * nudge."""

    def __init__(self, value, nudge=0.0, **kwargs):
        super().__init__(**kwargs)
        self.value = np.asarray(value, np.float32)
        self.nudge = nudge

    def call(self, images, aux):
        brightness = tf.reduce_mean(tf.cast(images, "float32"), axis=(1, 2, 3)) / 255.0
        shape = tf.concat([tf.shape(images)[:1], self.value.shape], 0)
        value = tf.broadcast_to(tf.constant(self.value)[None], shape)
        per_image = (-1,) + (1,) * self.value.ndim
        extra = tf.reshape(brightness, per_image) * self.nudge
        return value + extra + 0.0 * tf.reshape(aux[:, 0], per_image)


def _fixed_detector2():
    k = tf_keras
    images = k.Input((DET_SIZE, DET_SIZE, 3))
    aux = k.layers.Dense(1, name="aux")(k.layers.Flatten()(images))
    outputs = {
        "aux": aux,
        "boxes": _Fixed2(PRED_BOXES, name="boxes")(images, aux),
        "scores": _Fixed2(PRED_SCORES, nudge=0.01, name="scores")(images, aux),
        "classes": _Fixed2(PRED_CLASSES, name="classes")(images, aux),
    }
    model = k.Model(images, outputs)
    model.compile("sgd", loss={"aux": "mse"})
    return model


def test_detection_records_the_keras3_tables(wandb_env):
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    logs = {}
    for name, build in (("keras3", fixed_detector), ("tf_keras", _fixed_detector2)):
        keras.utils.set_random_seed(0)
        model = build()
        logs[name] = record(
            wandb_env,
            name,
            model,
            lambda: DetectionEvalCallback(
                (val_images(), targets), NAMES, batch_size=3, verbose=0, score_threshold=0.05
            ),
            x=val_images(),
            y={"aux": np.zeros((4, 1))},
            epochs=2,
            batch_size=2,
        )
    last = assert_same_runs(logs["keras3"], logs["tf_keras"])
    assert last.column("tp") == EXPECTED["tp"] and last.column("fp") == EXPECTED["fp"]
