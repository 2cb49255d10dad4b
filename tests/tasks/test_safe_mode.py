"""FASTEVALCB_SAFE=1 (wandb's public API for every write) records what the fast paths record:
the same parsed tables, the same entry names and digests (references resolving to the same
files), the same summary metrics. Each run is a real fit logged to real offline wandb."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import wandb

from fastevalcb import (
    ClassificationEvalCallback,
    DetectionEvalCallback,
    SegmentationEvalCallback,
    WandbEvalCallback,
)
from fastevalcb.offline import OfflineRun
from fastevalcb.tables import _wandb
from tests.helpers.tasks import pred_versions

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")


def _frozen(model):
    """The model compiled afresh with a zero learning rate: both runs predict the same, at
    the same steps."""
    model.compile(keras.optimizers.SGD(learning_rate=0.0), model.loss)
    return model


def _run(wandb_env, monkeypatch, mode, fit):
    """``fit()`` inside a fresh offline run, FASTEVALCB_SAFE as ``mode`` says; the run read
    back."""
    monkeypatch.setenv("FASTEVALCB_SAFE", "1" if mode == "safe" else "0")
    folder = wandb_env / f"run-{mode}"
    folder.mkdir()
    run = wandb.init(project="safe-mode", dir=str(folder), reinit="finish_previous")
    fit()
    run_id = run.id
    run.finish()
    return OfflineRun.latest(folder).wait_complete(), run_id


def _difference(a, b):
    """None, or where two recorded tables first differ and how."""
    if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
        return None
    from fastevalcb.tables.checks import _difference as first

    return first(a, b)


def _resolved_files(log, artifact, table):
    """Each media cell's file as the run records it: ``(entry name, digest, bytes md5)``,
    following a reference to the artifact it names."""
    out = []
    for row in table.rows:
        for cell in row:
            if isinstance(cell, dict) and "path" in cell and "sha256" in cell:
                owner, entry = log.resolve(artifact, cell["path"])
                out.append((cell["path"], entry.digest, owner.entries[entry.path].digest))
    return out


def _assert_same_runs(fast, safe):
    (fast_log, fast_id), (safe_log, safe_id) = fast, safe
    data_name = [a.name for a in fast_log.artifacts() if not a.name.startswith("run_")][0]
    fast_data, safe_data = fast_log.artifact(data_name), safe_log.artifact(data_name)
    table_name = [p for p in fast_data.entries if p.endswith(".table.json")][0]
    table_name = table_name[: -len(".table.json")]
    for artifact in (fast_data, safe_data):
        assert artifact.entries, "the data artifact recorded no entries"
    fast_table = fast_log.load_table(fast_data, table_name)
    safe_table = safe_log.load_table(safe_data, table_name)
    assert fast_table.columns == safe_table.columns
    assert _difference(fast_table.raw, safe_table.raw) is None
    assert {p: e.digest for p, e in fast_data.entries.items() if p.startswith("media/")} == {
        p: e.digest for p, e in safe_data.entries.items() if p.startswith("media/")
    }
    fast_versions, safe_versions = (
        pred_versions(fast_log, fast_id),
        pred_versions(safe_log, safe_id),
    )
    assert len(fast_versions) == len(safe_versions) >= 1
    pred_name = [p for p in fast_versions[0].entries if p.endswith(".table.json")][0]
    pred_name = pred_name[: -len(".table.json")]
    for f, s in zip(fast_versions, safe_versions):
        ft, st = fast_log.load_table(f, pred_name), safe_log.load_table(s, pred_name)
        assert ft.columns == st.columns
        assert _difference(ft.raw, st.raw) is None
        # fast: references into the data artifact; safe: copies. The same files either way.
        assert _resolved_files(fast_log, f, ft) == _resolved_files(safe_log, s, st)
        assert any(e.is_reference for e in f.entries.values())
        assert not any(e.is_reference for e in s.entries.values())
    keys = {k for k in fast_log.summary() if k.startswith("eval/")}
    assert keys and keys == {k for k in safe_log.summary() if k.startswith("eval/")}
    for key in keys:
        fast_value, safe_value = fast_log.summary()[key], safe_log.summary()[key]
        if isinstance(fast_value, (int, float)):
            np.testing.assert_allclose(fast_value, safe_value, err_msg=key)
        elif not key.endswith("artifact_path"):  # a chart's table: the same digest and
            assert fast_value == safe_value, key  # rows (its artifact is the run's own)


@pytest.fixture
def both_modes(wandb_env, monkeypatch):
    def run_both(fit):
        return [_run(wandb_env, monkeypatch, mode, fit) for mode in ("fast", "safe")]

    yield run_both
    _wandb.reset_checks()


def test_classification_records_the_same_in_safe_mode(both_modes, shapes, classifier):
    x, y = shapes.images[:20], shapes.labels[:20]

    def fit():
        model = _frozen(classifier)
        cb = ClassificationEvalCallback((x, y), list(shapes.class_names), batch_size=8, verbose=0)
        model.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb], verbose=0)

    _assert_same_runs(*both_modes(fit))


def test_segmentation_records_the_same_in_safe_mode(both_modes, shapes, segmenter):
    x, y = shapes.images[:12], shapes.masks[:12]

    def fit():
        model = _frozen(segmenter)
        cb = SegmentationEvalCallback((x, y), ["bg", "a", "b", "c"], batch_size=8, verbose=0)
        model.fit(shapes.images, shapes.masks, epochs=1, batch_size=16, callbacks=[cb], verbose=0)

    _assert_same_runs(*both_modes(fit))


class _Constant(keras.layers.Layer):
    """A constant per image, nudged by the image's brightness (scores differ by image)."""

    def __init__(self, value, nudge=0.0, **kwargs):
        super().__init__(**kwargs)
        self.value, self.nudge = np.asarray(value, np.float32), nudge

    def call(self, images):
        ops = keras.ops
        brightness = ops.mean(ops.cast(images, "float32"), axis=(1, 2, 3)) / 255.0
        value = ops.broadcast_to(
            ops.convert_to_tensor(self.value)[None], (ops.shape(images)[0],) + self.value.shape
        )
        return value + ops.reshape(brightness, (-1,) + (1,) * self.value.ndim) * self.nudge


def test_detection_records_the_same_in_safe_mode(both_modes, shapes):
    images = keras.Input((16, 16, 3))
    aux = keras.layers.Dense(1, name="aux")(keras.layers.Flatten()(images))
    model = keras.Model(
        images,
        {
            "aux": aux,
            "boxes": _Constant([[1, 1, 8, 8], [6, 6, 15, 15], [0, 0, 4, 4]], name="boxes")(images),
            "scores": _Constant([0.9, 0.6, 0.3], nudge=0.05, name="scores")(images),
            "classes": _Constant([0, 1, 2], name="classes")(images),
        },
    )
    x = shapes.images[:10]
    y = {"boxes": shapes.boxes[:10, None], "labels": shapes.labels[:10, None]}

    def fit():
        model.compile(keras.optimizers.SGD(learning_rate=0.0), loss={"aux": "mse"})
        cb = DetectionEvalCallback((x, y), ["a", "b", "c"], batch_size=4, verbose=0)
        model.fit(
            x, {"aux": np.zeros((len(x), 1))}, epochs=1, batch_size=5, callbacks=[cb], verbose=0
        )

    _assert_same_runs(*both_modes(fit))


class _StockSubclass(WandbEvalCallback):
    """wandb's documented subclass, as users write it."""

    def __init__(self, data, labels):
        super().__init__(["idx", "image", "label"], ["epoch", "idx", "image", "label", "pred"])
        self.x, self.y = data, labels

    def add_ground_truth(self, logs=None):
        for idx, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(idx, wandb.Image(image), int(label))

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0).argmax(1)
        ref = self.data_table_ref
        for idx in ref.get_index():
            row = ref.data[idx]
            self.pred_table.add_data(epoch, row[0], row[1], row[2], int(preds[idx]))


def test_the_drop_in_base_records_the_same_in_safe_mode(both_modes, shapes, classifier):
    x, y = shapes.images[:10], shapes.labels[:10]

    def fit():
        model = _frozen(classifier)
        model.fit(
            shapes.images,
            shapes.labels,
            epochs=2,
            batch_size=16,
            callbacks=[_StockSubclass(x, y)],
            verbose=0,
        )

    fast, safe = both_modes(fit)
    (fast_log, fast_id), (safe_log, safe_id) = fast, safe
    for log, run_id in ((fast_log, fast_id), (safe_log, safe_id)):
        assert len(pred_versions(log, run_id)) == 2
    f, s = pred_versions(fast_log, fast_id)[-1], pred_versions(safe_log, safe_id)[-1]
    name = [p for p in f.entries if p.endswith(".table.json")][0][: -len(".table.json")]
    ft, st = fast_log.load_table(f, name), safe_log.load_table(s, name)
    assert json.dumps(ft.raw, sort_keys=True) == json.dumps(st.raw, sort_keys=True)
    assert _resolved_files(fast_log, f, ft) == _resolved_files(safe_log, s, st)
