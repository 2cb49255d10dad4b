"""The hand-computed detection case: a model whose boxes are known in advance.

The model predicts the same four boxes for every image (scores nudged by the image's
brightness so no two images tie), and each image's ground truth is chosen so every
per-image and summary metric can be worked out by hand. Shared by the detection callback,
detection metrics and tf_keras task tests.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

SIZE = 32
NAMES = ["a", "b"]
# Fixed predictions (xyxy pixels): P0 a .9, P1 a .8 (P0's duplicate), P2 b .7, P3 b .01.
PRED_BOXES = np.array(
    [[2, 2, 12, 12], [2, 2, 12, 11], [20, 20, 30, 30], [0, 20, 8, 30]], np.float32
)
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
    return model.fit(
        x, {"aux": np.zeros((4, 1))}, epochs=epochs, batch_size=2, callbacks=callbacks, verbose=0
    )
