"""BatchedPredictor predicts what ``model.predict`` predicts, on the models users train.

Real classes with random weights (nothing downloaded), built small: KerasHub detectors,
segmenters and classifiers with their preprocessors, a ``keras.applications`` model, a
custom ``predict_step`` and a two-input model. Every test compares against
``model.predict`` on the same samples, with a ragged last batch, and checks one trace.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from fastevalcb.errors import FastEvalInputError  # noqa: E402
from fastevalcb.predictor import BatchedPredictor  # noqa: E402
from tests.helpers.real_models import (  # noqa: E402
    Calibrated,
    deeplab,
    images,
    predict_static_batches,
    retinanet,
    segformer,
    tiny_resnet,
    two_input_model,
)
from tests.helpers.real_models import nms_decoder as decoder  # noqa: E402

keras_hub = pytest.importorskip("keras_hub")

ATOL = 1e-5
B = 4  # step batch size; the sets below have a ragged last batch


def assert_same(got, want, atol=ATOL):
    """Same structure (dict keys / list length) and values, leaf by leaf."""
    got_leaves, want_leaves = keras.tree.flatten(got), keras.tree.flatten(want)
    keras.tree.assert_same_structure(got, want)
    for g, w in zip(got_leaves, want_leaves):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=atol, rtol=1e-5)


def run(model, x, y=None, **kwargs):
    """(predictor, batches) after one pass."""
    source = x if y is None else (x, y)
    predictor = BatchedPredictor(model, source, batch_size=B, **kwargs)
    return predictor, list(predictor.iter_batches())


def outputs_of(batches):
    return keras.tree.map_structure(
        lambda *leaves: np.concatenate(leaves), *[b.outputs for b in batches]
    )


# ---------------------------------------------------------------- KerasHub detection


@pytest.mark.slow
@pytest.mark.parametrize("bounding_box_format", ["yxyx", "xyxy"])
def test_retinanet_detections_equal_predict(bounding_box_format):
    model = retinanet(bounding_box_format)
    model.prediction_decoder = decoder(bounding_box_format, threshold=0.25)
    x = images(7, (48, 48))  # the converter resizes 48x48 -> 32x32
    y = {"boxes": np.zeros((7, 2, 4), "float32"), "labels": np.zeros((7, 2), "int32")}
    predictor, batches = run(model, x, y, return_x=True)
    got = outputs_of(batches)
    want = predict_static_batches(model, x, B)
    assert sorted(got) == ["boxes", "confidence", "labels", "num_detections"]
    assert_same(got, want)
    assert (got["num_detections"] > 0).all()  # the test sees real boxes, not only padding
    assert predictor.trace_count == 1 and len(batches[-1]) == 3
    # The labels and inputs handed back are the user's own, not the preprocessed ones.
    np.testing.assert_array_equal(np.concatenate([b.y["boxes"] for b in batches]), y["boxes"])
    np.testing.assert_array_equal(np.concatenate([b.x for b in batches]), x)
    assert all(b.image_hw == (48, 48) and b.model_hw == (32, 32) for b in batches)


@pytest.mark.slow
def test_retinanet_new_prediction_decoder_rebuilds_the_step():
    model = retinanet()
    x = images(5, (32, 32))
    predictor = BatchedPredictor(model, x, batch_size=B)
    first = predictor.predict_all()
    assert_same(first, predict_static_batches(model, x, B))
    assert first["boxes"].shape == (5, 100, 4)  # NonMaxSuppression's default
    old_step = predictor._step

    model.prediction_decoder = decoder("yxyx", threshold=0.2, max_detections=7)
    again = predictor.predict_all()
    assert predictor._step is not old_step and predictor.trace_count == 1
    assert again["boxes"].shape == (5, 7, 4)
    assert_same(again, predict_static_batches(model, x, B))
    predictor.predict_all()
    assert predictor._step.trace_count == 1 and predictor._step.prep.trace_count == 1


# ---------------------------------------------------------------- KerasHub segmentation


# The converters rescale [0, 255] -> [-1, 1] (scale 1/127.5, offset -1), as presets do.


@pytest.mark.slow
@pytest.mark.parametrize("family", [deeplab, segformer])
@pytest.mark.parametrize("raw_hw", [(32, 32), (48, 48)], ids=["rescale", "resize"])
def test_segmenters_with_preprocessors_equal_predict(family, raw_hw):
    model = family(image_size=(32, 32))
    x = images(6, raw_hw)
    masks = np.zeros((6, *raw_hw), "int32")
    predictor, batches = run(model, x, masks)
    got = outputs_of(batches)
    want = model.predict(x, batch_size=B, verbose=0)
    assert got.shape == (6, 32, 32, 3)
    assert_same(got, want)
    assert predictor.trace_count == 1
    if raw_hw == (32, 32):  # model(x) skips the rescaling: a miss the test would see
        assert not np.allclose(got, model(x, training=False).numpy(), atol=1e-3)
    assert all(b.model_hw == (32, 32) and b.image_hw == raw_hw for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), masks)


# ---------------------------------------------------------------- classifiers


@pytest.mark.slow
def test_resnet_image_classifier_with_preprocessor_equals_predict():
    keras.utils.set_random_seed(0)
    converter = keras_hub.layers.ResNetImageConverter(image_size=(24, 24), scale=1 / 255)
    model = keras_hub.models.ResNetImageClassifier(
        backbone=tiny_resnet(),
        num_classes=5,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
    )
    x = images(9, (40, 40))
    y = np.arange(9) % 5
    predictor, batches = run(model, x, y, jit_compile=True)
    assert_same(outputs_of(batches), model.predict(x, batch_size=B, verbose=0))
    assert predictor.trace_count == 1 and [len(b) for b in batches] == [4, 4, 1]
    assert batches[0].model_hw == (24, 24) and batches[0].image_hw == (40, 40)


@pytest.mark.slow
def test_keras_applications_classifier_equals_predict():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.75, minimalistic=True
    )
    x = images(6, (32, 32))  # applications rescale inside: [0, 255] in
    predictor, batches = run(model, x)
    assert_same(outputs_of(batches), model.predict(x, batch_size=B, verbose=0))
    assert predictor.trace_count == 1
    assert predictor._step.prep is None  # no KerasHub preprocessing for a plain model


# ---------------------------------------------------------------- custom predict_step


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_custom_predict_step_is_what_the_callback_gets(jit_compile):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = Calibrated(inputs, keras.layers.Dense(4)(inputs))
    x = np.random.default_rng(0).normal(size=(11, 6)).astype("float32")
    predictor, batches = run(model, x, jit_compile=jit_compile)
    got = outputs_of(batches)
    assert_same(got, model.predict(x, batch_size=B, verbose=0))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # probabilities, not logits
    assert predictor.trace_count == 1


class EchoesData(keras.Model):
    """``predict_step`` reports how ``data`` arrived: bare, or wrapped as ``(x,)``."""

    def predict_step(self, data):
        wrapped = isinstance(data, (tuple, list)) and len(data) == 1
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = self(x, training=False)
        return {"out": out, "wrapped": keras.ops.ones_like(out[:, :1]) * float(wrapped)}


@pytest.mark.slow
def test_predict_step_gets_bare_x_or_x_wrapped_in_a_tuple_like_predict():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(7, 3)).astype("float32"), rng.normal(size=(7, 2)).astype("float32")
    for inputs, x, wrapped in [
        (a, xa, 0.0),  # one array: bare
        ({"a": a, "b": b}, {"a": xa, "b": xb}, 0.0),  # a dict: bare
        ((a, b), (xa, xb), 1.0),  # a tuple of inputs: (x,)
    ]:
        flat = keras.tree.flatten(inputs)
        joined = flat[0] if len(flat) == 1 else keras.layers.Concatenate()(flat)
        model = EchoesData(inputs, keras.layers.Dense(2)(joined))
        source = x if not isinstance(x, tuple) else (x,)  # (x,): x is the tuple of inputs
        predictor, batches = run(model, source)
        got = outputs_of(batches)
        want = model.predict(x, batch_size=B, verbose=0)
        assert_same(got, want)
        np.testing.assert_array_equal(got["wrapped"], wrapped)
        assert predictor.trace_count == 1


# ---------------------------------------------------------------- multi-input


@pytest.mark.slow
def test_two_input_model_with_a_dict_x():
    model = two_input_model()
    rng = np.random.default_rng(0)
    x = {"image": images(10, (16, 16)) / 255, "meta": rng.normal(size=(10, 4))}
    y = np.arange(10) % 3
    for jit in (False, True):
        predictor, batches = run(model, x, y, return_x=True, jit_compile=jit)
        assert_same(outputs_of(batches), model.predict(x, batch_size=B, verbose=0))
        assert predictor.trace_count == 1
        assert all(b.image_hw == (16, 16) == b.model_hw for b in batches)
        np.testing.assert_array_equal(np.concatenate([b.x["meta"] for b in batches]), x["meta"])
    # tf.data gives the same, with the image named explicitly.
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    predictor, batches = run(model, ds, image_key="image")
    assert_same(outputs_of(batches), model.predict(x, batch_size=B, verbose=0))
    assert batches[0].image_hw == (16, 16)


def test_image_key_that_names_no_image_is_refused_before_predicting():
    model = two_input_model()
    x = {"image": images(3, (16, 16)), "meta": np.zeros((3, 4), "float32")}
    with pytest.raises(FastEvalInputError, match=r"image_key='meta'.*x\['meta'\].*\(N, 4\)"):
        BatchedPredictor(model, x, image_key="meta")
    with pytest.raises(
        FastEvalInputError,
        match=r"image_key='picture' names no input.*"
        r"x\['image'\] \(N, 16, 16, 3\), x\['meta'\] \(N, 4\)",
    ):
        BatchedPredictor(model, x, image_key="picture")
