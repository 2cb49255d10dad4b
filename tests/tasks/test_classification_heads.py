"""ClassificationEvalCallback on the other heads Keras users train: one-unit sigmoid,
multi-label sigmoid, and more classes than a uint8 holds. Real fit, real offline wandb,
every recorded cell compared with ``model.predict``'s outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fastevalcb import ClassificationEvalCallback, FastEvalInputError, SegmentationEvalCallback
from tests.helpers.tasks import EpochRecorder, pred_versions

SIZE = 16


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _head(units, activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(units, activation=activation),
        ]
    )


def _last_table(read, run):
    log = read()
    return log, log.load_table(pred_versions(log, run.id)[-1], "eval_data")


def _last_metrics(log, key):
    return [r for r in log.history() if key in r][-1]


@pytest.mark.slow
@pytest.mark.parametrize("activation, output", [(None, "logits"), ("sigmoid", "auto")])
def test_one_unit_sigmoid_head(offline_run, shapes, activation, output):
    run, read = offline_run
    x, y = shapes.images[:24], (shapes.labels[:24] == 0).astype(np.int64)
    model = _head(1, activation)
    model.compile(
        "adam",
        keras.losses.BinaryCrossentropy(from_logits=activation is None),
        metrics=[keras.metrics.BinaryAccuracy()],
    )
    names = ["other", "rectangle"]
    cb = ClassificationEvalCallback((x, y), names, output=output, batch_size=10, verbose=0)
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[cb], verbose=0)
    out = model.predict(x, verbose=0)[:, 0]
    p1 = _sigmoid(out) if activation is None else out
    pred = (p1 > 0.5).astype(int)
    log, table = _last_table(read, run)

    assert table.column("label") == [names[i] for i in y]
    assert table.column("pred") == [names[i] for i in pred]
    np.testing.assert_allclose(
        table.column("confidence"), np.where(pred == 1, p1, 1 - p1), rtol=1e-4
    )
    assert table.column("correct") == (pred == y).tolist()
    assert table.column("top_k") == [[names[i], names[1 - i]] for i in pred]  # top_k capped at 2
    np.testing.assert_allclose([s[0] + s[1] for s in table.column("top_k_scores")], 1, rtol=1e-5)
    # The same decision as Keras' own BinaryAccuracy on predict's outputs.
    keras_acc = keras.metrics.BinaryAccuracy()
    keras_acc.update_state(y[:, None], p1[:, None])
    row = _last_metrics(log, "eval/accuracy")
    assert row["eval/accuracy"] == pytest.approx(float(keras_acc.result()))
    assert row["eval/top_2_accuracy"] == 1.0


def test_one_unit_head_needs_two_class_names(offline_run, shapes):
    model = _head(1)
    model.compile("adam", "mse")
    cb = ClassificationEvalCallback((shapes.images[:8], shapes.labels[:8]), shapes.class_names)
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match=r"one-unit sigmoid head \(batch, 1\) needs two"):
        model.fit(shapes.images[:8], shapes.labels[:8], callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == []


def _multi_hot(shapes, n):
    """Tags: the shape's class, plus "bright" for bright images (several per sample)."""
    y = np.zeros((n, 4), np.int64)
    y[np.arange(n), shapes.labels[:n]] = 1
    y[:, 3] = shapes.images[:n].mean(axis=(1, 2, 3)) > np.median(shapes.images[:n].mean((1, 2, 3)))
    return y


@pytest.mark.slow
@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_multi_label_sigmoid_head(offline_run, shapes, activation):
    run, read = offline_run
    n = 24
    x, y = shapes.images[:n], _multi_hot(shapes, n)
    names = [*shapes.class_names, "bright"]
    model = _head(4, activation, seed=1)
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=activation is None))
    cb = ClassificationEvalCallback(
        (x, y),
        names,
        multi_label=True,
        top_k=2,
        batch_size=7,
        output="logits" if activation is None else "auto",
        verbose=0,
    )
    model.fit(x, y.astype("float32"), epochs=2, batch_size=8, callbacks=[cb], verbose=0)
    out = model.predict(x, verbose=0)
    probs = _sigmoid(out) if activation is None else out
    pred = probs > 0.5
    true = y.astype(bool)
    log = read()
    data = log.load_table(log.artifact("val"), "val_data")
    assert data.column("label") == [[names[j] for j in np.flatnonzero(r)] for r in true]
    _, table = _last_table(read, run)
    assert table.columns == [
        "epoch",
        "step",
        "id",
        "image",
        "label",
        "pred",
        "hits",
        "f1",
        "exact_match",
        "top_k",
        "top_k_scores",
        "finite",
    ]
    assert table.column("finite") == [True] * len(y)
    assert table.column("pred") == [[names[j] for j in np.flatnonzero(r)] for r in pred]
    hits = (pred & true).sum(1)
    assert table.column("hits") == hits.tolist()
    total = pred.sum(1) + true.sum(1)
    f1 = np.where(total > 0, 2 * hits / np.maximum(total, 1), 1.0)
    np.testing.assert_allclose(table.column("f1"), f1)
    assert table.column("exact_match") == (pred == true).all(1).tolist()
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    assert table.column("top_k") == [[names[j] for j in r] for r in top2]
    np.testing.assert_allclose(
        table.column("top_k_scores"), np.take_along_axis(probs, top2, 1), rtol=1e-4
    )

    row = _last_metrics(log, "eval/subset_accuracy")
    assert row["eval/subset_accuracy"] == pytest.approx((pred == true).all(1).mean())
    assert row["eval/mean_f1"] == pytest.approx(f1.mean())
    keras_f1 = keras.metrics.F1Score(average="micro", threshold=0.5)
    keras_f1.update_state(y.astype("float32"), probs)
    assert row["eval/micro_f1"] == pytest.approx(float(keras_f1.result()), abs=1e-5)
    assert "eval/accuracy" not in row


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.zeros((24,), np.int64), r"multi-hot labels of shape \(N, 4\)"),
        (np.full((24, 4), 2), "multi-hot labels must be 0 or 1, got 2 for sample 0"),
    ],
)
def test_bad_multi_hot_labels_fail_at_construction(offline_run, shapes, labels, match):
    with pytest.raises(FastEvalInputError, match=match):
        ClassificationEvalCallback(
            (shapes.images[:24], labels), ["a", "b", "c", "d"], multi_label=True
        )


def test_multi_hot_labels_without_multi_label_say_so(offline_run, shapes):
    with pytest.raises(FastEvalInputError, match="not one-hot .* want multi_label=True"):
        ClassificationEvalCallback(
            (shapes.images[:24], _multi_hot(shapes, 24)), ["a", "b", "c", "d"]
        )


@pytest.mark.slow
def test_thousand_class_classifier(offline_run, shapes):
    """ImageNet-sized heads: class ids past 255 are names and metrics like any other."""
    run, read = offline_run
    n, classes = 20, 1000
    names = [f"class_{i:04d}" for i in range(classes)]
    y = (np.arange(n) * 97 + 300) % classes  # ids up to 993, none below 256 but a few
    model = _head(classes)
    dense = model.layers[-1]
    dense.bias.assign(np.linspace(0, 3, classes, dtype="float32"))  # high ids favoured
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = shapes.images[:n]
    cb = ClassificationEvalCallback((x, y), names, top_k=5, output="logits", verbose=0)
    model.fit(x, y, epochs=1, batch_size=10, callbacks=[cb], verbose=0)
    logits = model.predict(x, verbose=0)
    log, table = _last_table(read, run)
    assert table.column("label") == [names[i] for i in y]
    assert table.column("pred") == [names[i] for i in logits.argmax(1)]
    assert all(int(name[6:]) > 255 for name in table.column("pred"))
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    assert table.column("top_k") == [[names[j] for j in r] for r in top5]
    row = _last_metrics(log, "eval/accuracy")
    assert row["eval/top_5_accuracy"] == pytest.approx((top5 == y[:, None]).any(1).mean())


def test_segmentation_keeps_the_uint8_limit(offline_run, shapes):
    with pytest.raises(FastEvalInputError, match="at most 256 classes"):
        SegmentationEvalCallback(
            (shapes.images[:4], shapes.masks[:4]), [f"c{i}" for i in range(257)]
        )
