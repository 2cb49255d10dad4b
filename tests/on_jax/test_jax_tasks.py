"""The task callbacks and BatchedPredictor on Keras 3's JAX backend (CPU).

Run with ``KERAS_BACKEND=jax`` (CI's ``jax`` leg; ``tests/test_jax.py`` runs this folder in
a subprocess when jax is installed); skipped under any other backend, which is fixed
when keras is first imported. Real ``fit`` with real offline W&B; each test reads the
last pred version back and compares it with ``model.predict`` after ``fit`` (the weights
the epoch-end log saw).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("run with KERAS_BACKEND=jax (tests/test_jax.py does)", allow_module_level=True)

from fastevalcb import (
    BatchedPredictor,
    ClassificationEvalCallback,
    DetectionEvalCallback,
    FastEvalInputError,
    SegmentationEvalCallback,
    WandbEvalCallback,
)
from tests.helpers import real_models as rm
from tests.helpers.tasks import EpochRecorder, pred_versions

NAMES3 = ["a", "b", "c"]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def last_table(log, run):
    return log.load_table(pred_versions(log, run.id)[-1], "eval_data")


def assert_classification_rows(table, probs, labels, names):
    names = np.asarray(names)
    np.testing.assert_array_equal(table.column("pred"), names[probs.argmax(1)])
    np.testing.assert_allclose(table.column("confidence"), probs.max(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table.column("correct"), probs.argmax(1) == labels)


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def small_cnn(num_classes=3, hw=(8, 8)):
    """BatchNorm (non-trainable state the stateless step must get) and Dropout
    (``training=False`` in predict_step)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((*hw, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
    )


def classification_data(n=11, hw=(8, 8)):
    rng = np.random.default_rng(0)
    return rng.random((n, *hw, 3)).astype("float32"), np.arange(n) % 3


# ------------------------------------------------------------------- predictor
def test_predictor_is_predict_with_one_trace_over_ragged_batches():
    model = small_cnn()
    x, _ = classification_data(11)
    predictor = BatchedPredictor(model, x, batch_size=4)  # 4 + 4 + 3 (padded)
    for _ in range(2):
        np.testing.assert_allclose(
            predictor.predict_all(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
        )
    assert predictor.trace_count == 1 and predictor._step.pad_to == 4


def test_predictor_reads_new_weights_without_retracing():
    model = small_cnn()
    x, _ = classification_data(6)
    predictor = BatchedPredictor(model, x, batch_size=4)
    before = predictor.predict_all()
    dense = model.layers[-1]
    dense.set_weights([w + 1.0 for w in dense.get_weights()])
    after = predictor.predict_all()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert predictor.trace_count == 1


def test_predictor_on_a_tf_data_source_hands_arrays_to_the_jax_step():
    import tensorflow as tf

    model = small_cnn()
    x, _ = classification_data(10)
    source = tf.data.Dataset.from_tensor_slices(x).batch(4)  # 4 + 4 + 2
    predictor = BatchedPredictor(model, source)
    np.testing.assert_allclose(
        predictor.predict_all(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert predictor.trace_count == 1


# ------------------------------------------------------------------- classification
def test_classification_logs_predicts_after_fit_and_traces_once(offline_run):
    run, read = offline_run
    model = small_cnn()
    model.compile("adam", loss())
    x, y = classification_data(11)
    cb = ClassificationEvalCallback((x, y), NAMES3, batch_size=4, verbose=0)
    model.fit(x, y, epochs=2, batch_size=4, callbacks=[cb], verbose=0)
    probs = softmax(model.predict(x, batch_size=4, verbose=0))
    log = read()
    assert len(pred_versions(log, run.id)) == 2
    assert_classification_rows(last_table(log, run), probs, y, NAMES3)
    assert cb.predictor.trace_count == 1  # two passes, a ragged last batch: one trace


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_per_n_batch_logging_logs_at_the_right_steps(offline_run, steps_per_execution):
    run, read = offline_run
    model = small_cnn()
    model.compile("adam", loss(), steps_per_execution=steps_per_execution)
    x, y = classification_data(12)
    cb = ClassificationEvalCallback(
        (x, y), NAMES3, batch_size=5, log_every_n_batches=2, log_on_epoch_end=False, verbose=0
    )
    model.fit(x, y, epochs=2, batch_size=3, callbacks=[cb], verbose=0)  # 4 steps an epoch
    assert [(t["global_step"], t["trigger"]) for t in cb.timings] == [
        (2, "batch"),
        (4, "batch"),
        (6, "batch"),
        (8, "batch"),
    ]
    log = read()
    versions = pred_versions(log, run.id)
    assert len(versions) == 4
    table = last_table(log, run)
    assert set(table.column("step")) == {8}
    # The last log ran after the last train step: its weights are predict's after fit.
    assert_classification_rows(table, softmax(model.predict(x, verbose=0)), y, NAMES3)
    assert cb.predictor.trace_count == 1


def test_keras_hub_resnet_classifier_with_a_resizing_preprocessor(offline_run):
    run, read = offline_run
    model = rm.resnet_classifier(image_size=(24, 24), num_classes=5)
    model.compile(optimizer="sgd")
    x, y = rm.images(10, (40, 40)), np.arange(10) % 5  # raw 40x40 -> the model's 24x24
    names = [f"c{i}" for i in range(5)]
    cb = ClassificationEvalCallback((x, y), names, batch_size=4, verbose=0)
    model.fit(x, y, epochs=1, batch_size=5, callbacks=[cb], verbose=0)
    logits = model.predict(x, batch_size=4, verbose=0)
    assert_classification_rows(last_table(read(), run), softmax(logits), y, names)
    assert cb.predictor._step.prep.trace_count == 1


def test_output_function_in_keras_ops_picks_a_head(offline_run):
    run, read = offline_run
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(
        inputs, {"cls": keras.layers.Dense(3)(pooled), "aux": keras.layers.Dense(2)(pooled)}
    )
    model.compile("sgd", {"cls": loss(), "aux": "mse"})
    x, y = classification_data(7)
    cb = ClassificationEvalCallback(
        (x, y),
        NAMES3,
        batch_size=3,
        verbose=0,
        output=lambda out: keras.ops.log_softmax(out["cls"]),
    )  # logits, up to a shift
    model.fit(
        x, {"cls": y, "aux": np.zeros((7, 2), "float32")}, epochs=1, callbacks=[cb], verbose=0
    )
    probs = softmax(model.predict(x, verbose=0)["cls"])
    assert_classification_rows(last_table(read(), run), probs, y, NAMES3)


def test_a_tensorflow_output_function_fails_naming_the_backend(offline_run):
    import tensorflow as tf

    model = small_cnn()
    model.compile("sgd", loss())
    x, y = classification_data(6)
    cb = ClassificationEvalCallback(
        (x, y), NAMES3, batch_size=3, verbose=0, output=lambda out: tf.nn.softmax(out)
    )
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError) as info:
        model.fit(x, y, epochs=1, callbacks=[cb, epochs], verbose=0)
    message = str(info.value)
    assert "jax backend" in message and "keras.ops" in message
    assert "does not fit" not in message
    assert epochs.epochs == []  # refused at train begin, before epoch 1


# ------------------------------------------------------------------- segmentation
def test_keras_hub_deeplab_masks_are_predicts_argmax(offline_run):
    from PIL import Image as PILImage

    from tests.helpers.reference import resize_nearest

    run, read = offline_run
    model = rm.deeplab(image_size=(32, 32), num_classes=3)
    model.compile(optimizer="sgd", loss=loss())
    rng = np.random.default_rng(0)
    x_train, m_train = rm.images(4, (32, 32)), rng.integers(0, 3, (4, 32, 32, 1))
    x = rm.images(5, (48, 48), seed=2)  # resized to 32x32 by the preprocessor
    masks = np.zeros((5, 48, 48), "int32")
    masks[:, 24:] = 1
    masks[:, :, :16] = 2
    cb = SegmentationEvalCallback((x, masks), NAMES3, batch_size=2, verbose=0)
    model.fit(x_train, m_train, epochs=1, callbacks=[cb], verbose=0)
    logits = model.predict(x, batch_size=2, verbose=0)
    pred = resize_nearest(logits.argmax(-1), masks.shape[1:])
    log = read()
    last = pred_versions(log, run.id)[-1]
    table = log.load_table(last, "eval_data")
    np.testing.assert_allclose(
        table.column("pixel_accuracy"), (pred == masks).mean(axis=(1, 2)), rtol=1e-6
    )
    assert table.column("finite") == [True] * 5
    for i in (0, 4):
        entry = last.entries[table.column("image")[i]["masks"]["predictions"]["path"]]
        np.testing.assert_array_equal(np.asarray(PILImage.open(entry.local_path)), pred[i])
    assert cb.predictor.trace_count == 1


def test_one_channel_sigmoid_segmenter_thresholds_in_keras_ops(offline_run):
    run, read = offline_run
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")]
    )
    model.compile("sgd", "binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((5, 8, 8, 3)).astype("float32")
    masks = (rng.random((5, 8, 8)) > 0.5).astype("int32")
    cb = SegmentationEvalCallback((x, masks), ["bg", "fg"], batch_size=2, verbose=0)
    model.fit(x, masks[..., None].astype("float32"), epochs=1, callbacks=[cb], verbose=0)
    pred = (model.predict(x, verbose=0)[..., 0] > 0.5).astype(int)  # "auto": probabilities
    table = last_table(read(), run)
    np.testing.assert_allclose(
        table.column("pixel_accuracy"), (pred == masks).mean(axis=(1, 2)), rtol=1e-6
    )


def test_a_tf_keras_segmenter_next_to_the_jax_backend(offline_run):
    """A tf_keras model runs on TensorFlow whatever KERAS_BACKEND says: its step is a
    tf.function, and the post-processing takes TensorFlow's twins of keras.ops."""
    tf_keras = pytest.importorskip("tf_keras")
    run, read = offline_run
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [tf_keras.Input((8, 8, 3)), tf_keras.layers.Conv2D(3, 3, padding="same")]
    )
    model.compile("sgd", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((5, 8, 8, 3)).astype("float32")
    masks = rng.integers(0, 3, (5, 8, 8))
    cb = SegmentationEvalCallback((x, masks), NAMES3, batch_size=2, verbose=0)
    model.fit(x, masks, epochs=1, callbacks=[cb], verbose=0)
    pred = model.predict(x, verbose=0).argmax(-1)
    table = last_table(read(), run)
    np.testing.assert_allclose(
        table.column("pixel_accuracy"), (pred == masks).mean(axis=(1, 2)), rtol=1e-6
    )
    assert type(cb.predictor._step).__name__ == "_TFStep"


# ------------------------------------------------------------------- detection
def test_keras_hub_retinanet_boxes_are_predicts(offline_run):
    run, read = offline_run
    model = rm.retinanet("xyxy", image_size=(32, 32))
    model.prediction_decoder = rm.nms_decoder("xyxy", threshold=0.25)
    model.compile(optimizer="sgd")
    train_x = rm.images(4, (32, 32))
    train_y = {
        "boxes": np.tile(np.array([[4, 4, 20, 20]], "float32"), (4, 1, 1)),
        "labels": np.zeros((4, 1), "int32"),
    }
    x = rm.images(5, (48, 48), seed=4)
    gt = np.array([[6, 6, 30, 30], [0, 0, 0, 0]], "float32")
    targets = {"boxes": np.tile(gt, (5, 1, 1)), "labels": np.tile([[1, -1]], (5, 1))}
    cb = DetectionEvalCallback((x, targets), NAMES3, batch_size=2, verbose=0)
    model.fit(train_x, train_y, epochs=1, batch_size=4, callbacks=[cb], verbose=0)
    want = rm.predict_static_batches(model, x, 2)
    table = last_table(read(), run)
    counts = want["num_detections"]
    assert counts.sum() > 0
    np.testing.assert_array_equal(table.column("num_predictions"), counts)
    for i, cell in enumerate(table.column("image")):
        # the 32x32 model frame -> the 48x48 image, unclipped (clip_boxes=False, as COCO)
        expected = want["boxes"][i, : counts[i]] * 1.5
        logged = cell["boxes"]["predictions"]
        got = np.array(
            [[b["position"][k] for k in ("minX", "minY", "maxX", "maxY")] for b in logged]
        ).reshape(-1, 4)
        np.testing.assert_allclose(got, expected, atol=0.006)
        np.testing.assert_allclose(
            [b["scores"]["score"] for b in logged], want["confidence"][i, : counts[i]], atol=6e-5
        )
        assert [b["class_id"] for b in logged] == want["labels"][i, : counts[i]].tolist()
    assert cb.predictor.trace_count == 1


# ------------------------------------------------------------------- drop-in base
class ArgmaxCallback(WandbEvalCallback):
    """The stock pattern: the user's own ``add_*`` methods, ``model.predict`` inside."""

    def __init__(self, x, y, **kwargs):
        super().__init__(["id", "label"], ["epoch", "id", "label", "pred"], **kwargs)
        self.x, self.y = x, y

    def add_ground_truth(self, logs=None):
        for i, label in enumerate(self.y):
            self.data_table.add_data(i, int(label))

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0).argmax(-1)
        ref = self.data_table_ref
        for i in ref.get_index():
            self.pred_table.add_data(epoch, ref[i]["id"], ref[i]["label"], int(preds[i]))


def test_drop_in_base_with_per_n_batch_logging(offline_run):
    run, read = offline_run
    model = small_cnn()
    model.compile("adam", loss())
    x, y = classification_data(9)
    cb = ArgmaxCallback(x, y, log_every_n_batches=2)
    model.fit(x, y, epochs=1, batch_size=2, callbacks=[cb], verbose=0)  # 5 steps
    log = read()
    assert log.load_table(log.artifact("val"), "val_data").column("id") == list(range(9))
    versions = pred_versions(log, run.id)
    assert len(versions) == 3  # steps 2, 4 and the epoch end
    table = log.load_table(versions[-1], "eval_data")
    np.testing.assert_array_equal(table.column("pred"), model.predict(x, verbose=0).argmax(-1))


# ------------------------------------------------------------------- distribution
DATA_PARALLEL = textwrap.dedent("""
    import os, sys
    import numpy as np
    import keras, jax
    assert keras.backend.backend() == "jax" and len(jax.devices()) == 2, jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    from fastevalcb import BatchedPredictor, ClassificationEvalCallback
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((11, 8, 8, 3)).astype("float32")
    y = np.arange(11) % 3
    predictor = BatchedPredictor(model, x, batch_size=3)  # padded to 4: 2 devices
    # Keras' own predict needs batches the devices divide: 12 rows, batches of 4.
    padded = np.concatenate([x, np.zeros((1, 8, 8, 3), "float32")])
    want = model.predict(padded, batch_size=4, verbose=0)[:11]
    np.testing.assert_allclose(predictor.predict_all(), want, rtol=1e-5, atol=1e-6)
    assert predictor._step.pad_to == 4 and predictor.trace_count == 1
    import wandb
    run = wandb.init(project="jax-dp")
    cb = ClassificationEvalCallback((x, y), ["a", "b", "c"], batch_size=4, verbose=0)
    model.fit(x[:8], y[:8], epochs=2, batch_size=4, callbacks=[cb], verbose=0)
    cb.flush()
    assert len(cb.logged_versions) == 2 and cb.predictor.trace_count == 1
    run.finish()
    print("DATA_PARALLEL_OK")
""")


def test_data_parallel_distribution_on_two_devices(wandb_env):
    env = dict(  # two CPU devices, also on a machine with one GPU (jax would pick the GPU)
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    script = DATA_PARALLEL
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=500, env=env
    )
    assert proc.returncode == 0 and "DATA_PARALLEL_OK" in proc.stdout, proc.stderr[-4000:]
