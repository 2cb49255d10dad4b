"""Shared pieces of the task callback tests: shapes data, tiny seeded models, run readers."""

from __future__ import annotations

import keras
import pytest

from fastevalcb.synthetic import make_shapes

SIZE = 16


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(48, SIZE, seed=3)


@pytest.fixture
def classifier():
    """A seeded 3-class CNN emitting logits on 16x16 RGB uint8 images."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture
def segmenter():
    """A seeded fully convolutional net: (B, 16, 16, 3) -> (B, 16, 16, 4) logits."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(4, 1),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
