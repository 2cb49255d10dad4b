"""Keras 3 / Keras 2 (tf_keras) twins: the same model in both, runs recorded and compared.

Used by tests/test_tf_keras.py and tests/tasks/test_tf_keras_tasks.py (importorskip
tf_keras before importing this module).
"""

from __future__ import annotations

import keras
import pytest
import tf_keras
import wandb

from fastevalcb.offline import OfflineRun

SIZE = 16
RTOL = 1e-4  # two Kerases, the same TF kernels: only the loss/optimizer arithmetic differs


def cnn(k, channels_out, dense_head):
    """The same small CNN in Keras 3 (``k=keras``) or Keras 2 (``k=tf_keras``)."""
    layers = [
        k.Input((SIZE, SIZE, 3)),
        k.layers.Rescaling(1 / 255),
        k.layers.Conv2D(6, 3, padding="same", activation="relu"),
    ]
    if dense_head:
        layers += [k.layers.GlobalAveragePooling2D(), k.layers.Dense(channels_out)]
    else:
        layers += [k.layers.Conv2D(channels_out, 1)]
    model = k.Sequential(layers)
    model.compile(k.optimizers.SGD(0.05), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def twins(build):
    """``(keras3_model, tf_keras_model)`` built by ``build(module)``, with equal weights."""
    keras.utils.set_random_seed(0)
    k3 = build(keras)
    k2 = build(tf_keras)
    k2.set_weights(k3.get_weights())
    return k3, k2


def record(wandb_env, name, model, make_callback, **fit_kwargs):
    """``model.fit`` with ``make_callback()`` inside a fresh offline run; read it back."""
    folder = wandb_env / name
    folder.mkdir()
    run = wandb.init(project="fastevalcb-tf-keras", dir=str(folder), reinit="finish_previous")
    try:
        fit_kwargs.setdefault("shuffle", False)
        model.fit(callbacks=[make_callback()], verbose=0, **fit_kwargs)
    finally:
        run.finish()
    return OfflineRun.latest(folder).wait_complete()


def assert_same(a, b, where=""):
    """Equal JSON-like values, floats to ``RTOL``; ``where`` names the cell on failure."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=RTOL, abs=1e-6, nan_ok=True), where
    else:
        assert a == b, where


def assert_same_runs(log3, log2, table="eval_data", data_table="val_data"):
    """The tf_keras run logged the Keras 3 run's data table and pred versions, cell by cell."""
    data3, data2 = log3.artifacts(type="dataset"), log2.artifacts(type="dataset")
    assert [a.name for a in data2] == [a.name for a in data3] and data3
    t3, t2 = log3.load_table(data3[0], data_table), log2.load_table(data2[0], data_table)
    assert t2.columns == t3.columns
    assert_same(t3.rows, t2.rows, "data")
    preds3, preds2 = log3.artifacts(type="evaluation"), log2.artifacts(type="evaluation")
    assert [sorted(a.aliases) for a in preds2] == [sorted(a.aliases) for a in preds3] and preds3
    assert [a.metadata for a in preds2] == [a.metadata for a in preds3]
    for v3, v2 in zip(preds3, preds2):
        t3, t2 = log3.load_table(v3, table), log2.load_table(v2, table)
        assert t2.columns == t3.columns
        assert_same(t3.rows, t2.rows, f"{sorted(v3.aliases)}")
    return log2.load_table(preds2[-1], table)
