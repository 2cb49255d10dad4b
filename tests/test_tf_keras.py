"""Keras 2 (tf_keras) models: the drop-in base, batch hooks and BatchedPredictor.

fastevalcb picks the Keras per model (``fastevalcb._keras``), so one process holds both: the
table tests train a tf_keras model and its Keras 3 twin (same layers, same initial weights,
same data and batch order), record both in real offline W&B runs and assert the tf_keras run
recorded what the Keras 3 run did (and what ``model.predict`` says). The task callbacks are
in tests/tasks/test_tf_keras_tasks.py. Skipped where tf_keras is not installed; CI's
``tf_keras`` leg installs it and runs the whole suite with ``TF_USE_LEGACY_KERAS=1``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

tf_keras = pytest.importorskip("tf_keras")

from fastevalcb import ClassificationEvalCallback  # noqa: E402
from fastevalcb.predictor import BatchedPredictor  # noqa: E402
from fastevalcb.synthetic import make_shapes  # noqa: E402
from tests.helpers.callbacks import DocsClfCallback, LogsClfCallback  # noqa: E402
from tests.helpers.tf_keras_twins import SIZE, assert_same_runs, cnn, record, twins  # noqa: E402

pytestmark = pytest.mark.tf_keras


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(24, SIZE, seed=3)


# ------------------------------------------------------------------------- drop-in base


@pytest.mark.slow
@pytest.mark.parametrize("callback", ["docs", "per_n_batches"])
def test_stock_subclasses_record_the_keras3_tables(wandb_env, shapes, callback):
    x, y = shapes.images[:12], shapes.labels[:12]

    def make():
        if callback == "docs":
            return DocsClfCallback(
                (x, y), ["idx", "image", "label"], ["epoch", "idx", "image", "label", "pred"]
            )
        return LogsClfCallback(x, y, log_every_n_batches=2)

    logs = {}
    for model, name in zip(twins(lambda k: cnn(k, 3, True)), ("keras3", "tf_keras")):
        logs[name] = record(
            wandb_env, name, model, make, x=shapes.images, y=shapes.labels, epochs=2, batch_size=8
        )
    last = assert_same_runs(logs["keras3"], logs["tf_keras"])
    np.testing.assert_array_equal(last.column("pred"), model.predict(x, verbose=0).argmax(-1))
    aliases = [sorted(a.aliases) for a in logs["tf_keras"].artifacts(type="evaluation")]
    if callback == "per_n_batches":  # 3 steps per epoch: step-2, epoch-0, step-4, epoch-1
        assert aliases == [
            ["latest", "step-2"],
            ["epoch-0", "latest"],
            ["latest", "step-4"],
            ["epoch-1", "latest"],
        ]
    else:
        assert aliases == [["epoch-0", "latest"], ["epoch-1", "latest"]]


@pytest.mark.slow
def test_batch_logging_counts_steps_with_steps_per_execution(offline_run, shapes):
    """tf_keras passes an execution's last step, as Keras >= 3.11 does: same steps logged."""
    _, model = twins(lambda k: cnn(k, 3, True))
    model.compile(
        tf_keras.optimizers.SGD(0.05),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=2,
    )
    x, y = shapes.images[:20], shapes.labels[:20]
    cb = LogsClfCallback(x, y, log_every_n_batches=3)
    model.fit(x, y, epochs=1, batch_size=2, shuffle=False, callbacks=[cb], verbose=0)
    versions = offline_run[1]().artifacts(type="evaluation")
    # As in test_callback: crossing 3 is seen at step 4, 6 at 6, 9 at 10 (the epoch end's).
    assert [v.metadata["global_step"] for v in versions] == [4, 6, 10]
    assert [v.metadata["trigger"] for v in versions] == ["batch", "batch", "epoch_end"]


def test_batch_hooks_stay_off_under_tf_keras_unless_logging_per_n_batches(offline_run, shapes):
    """tf_keras skips batch hooks (its fast path) unless a callback implements them."""
    _, model = twins(lambda k: cnn(k, 3, True))
    x, y = shapes.images[:4], shapes.labels[:4]
    baseline = tf_keras.callbacks.CallbackList([tf_keras.callbacks.Callback()], model=model)
    assert not baseline._should_call_train_batch_hooks
    for cb in (LogsClfCallback(x, y), ClassificationEvalCallback((x, y), shapes.class_names)):
        hooks = tf_keras.callbacks.CallbackList([cb], model=model)
        assert not hooks._should_call_train_batch_hooks, type(cb).__name__
        assert not hooks._should_call_test_batch_hooks
        assert not hooks._should_call_predict_batch_hooks
    for cb in (
        LogsClfCallback(x, y, log_every_n_batches=2),
        ClassificationEvalCallback((x, y), shapes.class_names, log_every_n_batches=2),
    ):
        hooks = tf_keras.callbacks.CallbackList([cb], model=model)
        assert hooks._should_call_train_batch_hooks, type(cb).__name__
        assert not hooks._should_call_test_batch_hooks

    class OwnHooks(LogsClfCallback):  # a subclass' own batch hooks are called, as in stock
        def on_test_batch_end(self, batch, logs=None):
            pass

    hooks = tf_keras.callbacks.CallbackList([OwnHooks(x, y)], model=model)
    assert hooks._should_call_test_batch_hooks and not hooks._should_call_train_batch_hooks


def test_a_model_of_neither_keras_is_refused_at_set_model(offline_run, shapes):
    cb = LogsClfCallback(shapes.images[:4], shapes.labels[:4])
    with pytest.raises(
        TypeError,
        match=r"Keras 3 model \(keras.Model\) or a Keras 2 model "
        r"\(tf_keras.Model.*got tensorflow.*Module",
    ):
        cb.set_model(tf.Module())
    _, model = twins(lambda k: cnn(k, 3, True))
    cb.set_model(model)
    assert cb.model is model


@pytest.mark.skipif(
    os.environ.get("TF_USE_LEGACY_KERAS") != "1",
    reason="tf.keras routes to tf_keras only under TF_USE_LEGACY_KERAS=1",
)
def test_tf_keras_under_legacy_keras_is_tf_keras(offline_run, shapes):
    """The setup TF documents for Keras 2 code: ``tf.keras`` with TF_USE_LEGACY_KERAS=1."""
    run, read = offline_run
    assert tf.keras.Model is tf_keras.Model
    model = cnn(tf.keras, 3, True)
    x, y = shapes.images[:8], shapes.labels[:8]
    cb = ClassificationEvalCallback((x, y), shapes.class_names, verbose=0)
    model.fit(shapes.images, shapes.labels, epochs=1, batch_size=8, callbacks=[cb], verbose=0)
    log = read()
    table = log.load_table(log.artifacts(type="evaluation")[-1], "eval_data")
    names = np.array(shapes.class_names)
    assert table.column("pred") == names[model.predict(x, verbose=0).argmax(-1)].tolist()


# ---------------------------------------------------------------------------- predictor


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("n", [1, 7, 19])
def test_batched_predictor_matches_tf_keras_predict(n, jit_compile):
    tf_keras.utils.set_random_seed(0)
    inputs = {"a": tf_keras.Input((6,), name="a"), "b": tf_keras.Input((2,), name="b")}
    hidden = tf_keras.layers.Dense(8, activation="relu")(
        tf_keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    )
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(4)(hidden))
    rng = np.random.default_rng(n)
    x = {
        "a": rng.normal(size=(n, 6)).astype("float32"),
        "b": rng.normal(size=(n, 2)).astype("float32"),
    }
    predictor = BatchedPredictor(model, x, batch_size=8, jit_compile=jit_compile)
    for _ in range(2):
        np.testing.assert_allclose(predictor.predict_all(), model.predict(x, verbose=0), atol=1e-5)
    assert predictor.trace_count == 1


def test_batched_predictor_reads_tf_data_and_a_tf_keras_sequence():
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((6,)), tf_keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(11, 6)).astype("float32")
    expected = model.predict(x, verbose=0)

    class Batches(tf_keras.utils.Sequence):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 4 : (i + 1) * 4]

    for source in (tf.data.Dataset.from_tensor_slices(x), Batches()):
        predictor = BatchedPredictor(model, source, batch_size=4)
        np.testing.assert_allclose(predictor.predict_all(), expected, atol=1e-5)
