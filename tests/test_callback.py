"""The drop-in WandbEvalCallback, end to end on real Keras + real offline wandb.

Every assertion reads what the run recorded: its .wandb transaction log, the artifact
manifests in it and the tables staged for upload (through fastevalcb.offline).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import wandb
from keras.src.utils import python_utils
from PIL import Image as PILImage

import fastevalcb
from fastevalcb import FastEvalWarning, TableSchemaError, WandbEvalCallback
from tests.helpers.callbacks import DocsClfCallback, LogsClfCallback


def _fit(model, x, y, callback, epochs=2, batch_size=32):
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[callback])


@pytest.mark.slow
def test_documented_stock_example_runs_unchanged_offline(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = DocsClfCallback(
        validation_data=(x, y),
        data_table_columns=["idx", "image", "label"],
        pred_table_columns=["epoch", "idx", "image", "label", "pred"],
    )
    _fit(model, x, y, cb, epochs=2)
    final_preds = np.argmax(model.predict(x, verbose=0), axis=-1)
    rec = read()

    data_versions = rec.artifacts(type="dataset")
    assert [(a.name, a.version) for a in data_versions] == [("val", 0)]
    data = rec.load_table(data_versions[0], "val_data")
    assert data.columns == ["idx", "image", "label"]
    assert data.column("idx") == list(range(20))
    assert data.column("label") == y.tolist()

    preds = rec.artifacts(type="evaluation")
    assert [a.name for a in preds] == [f"run_{run.id}_pred"] * 2
    assert [sorted(a.aliases) for a in preds] == [["epoch-0", "latest"], ["epoch-1", "latest"]]
    assert [a.metadata["epoch"] for a in preds] == [0, 1]
    assert [a.metadata["global_step"] for a in preds] == [1, 2]  # one batch per epoch

    last = rec.load_table(preds[1], "eval_data")
    assert last.columns == ["epoch", "idx", "image", "label", "pred"]
    assert last.column("epoch") == [1] * 20
    assert last.column("pred") == final_preds.tolist()
    assert last.column("image") == data.column("image")  # same files, same sha256


@pytest.mark.slow
@pytest.mark.fast_path
def test_pred_image_cells_are_references_into_the_data_artifact(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    _fit(model, x, y, LogsClfCallback(x, y), epochs=2)
    rec = read()
    data_art = rec.artifact("val")
    for pred_art in rec.artifacts(type="evaluation"):
        table = rec.load_table(pred_art, "eval_data")
        for row_id, cell in zip(table.column("id"), table.column("image")):
            entry = pred_art.entries[cell["path"]]
            assert entry.is_reference and entry.size == 0 and entry.local_path is None
            assert entry.referenced_client_id == data_art.client_id
            assert entry.referenced_path == cell["path"]
            source_art, stored = rec.resolve(pred_art, cell["path"])
            assert source_art.qualified_name == "val:v0"
            assert stored.digest == entry.digest
            pixels = np.asarray(PILImage.open(stored.local_path).convert("RGB"))
            np.testing.assert_array_equal(pixels, x[row_id])
        # the version stores its table JSON and nothing else
        stored_paths = [p for p, e in pred_art.entries.items() if not e.is_reference]
        assert stored_paths == ["eval_data.table.json"]


@pytest.mark.slow
def test_logs_signatures_receive_logs_and_ref_indexing_by_column(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = LogsClfCallback(x, y)
    _fit(model, x, y, cb, epochs=1)
    assert cb.seen_logs[0] == ("gt", {})  # what Keras gives on_train_begin, passed on
    kind, epoch, logs = cb.seen_logs[1]
    assert (kind, epoch) == ("pred", 0) and "loss" in logs
    table = read().load_table(read().artifact(f"run_{run.id}_pred"), "eval_data")
    assert table.column("id") == list(range(20)) and table.column("label") == y.tolist()


@pytest.mark.slow
@pytest.mark.fast_path
def test_pred_version_bytes_do_not_grow_with_image_size(offline_run):
    """N=1,000 images: a pred version costs the same bytes at 8x8 and at 64x64."""
    run, read = offline_run
    n = 1000
    rng = np.random.default_rng(1)
    stored = {}
    for side in (8, 64):
        images = rng.integers(0, 255, (n, side, side, 3), dtype=np.uint8)
        cb = _ManualCallback(images, name=f"val{side}")
        cb.on_train_begin()
        cb.on_epoch_end(0)
        stored[side] = cb
    rec = read()
    data_bytes = {s: rec.artifact(f"val{s}").stored_bytes() for s in stored}
    pred_arts = rec.artifacts(type="evaluation")
    pred_bytes = {s: a.stored_bytes() for s, a in zip(stored, pred_arts)}
    assert data_bytes[64] > 10 * data_bytes[8] / 2  # the images themselves do grow
    # table JSON only: same row count, same path lengths; "8" vs "64" in width/height
    assert abs(pred_bytes[64] - pred_bytes[8]) <= 2 * 2 * n
    assert pred_bytes[64] < data_bytes[64] / 10


class _ManualCallback(WandbEvalCallback):
    """Driven by hand (no fit): data table of images, pred table referencing them."""

    def __init__(self, images, name):
        super().__init__(["id", "image"], ["id", "image", "score"])
        self.images, self.name = images, name

    def add_ground_truth(self, logs=None):
        self.data_table.add_columns(
            {"id": np.arange(len(self.images)), "image": [wandb.Image(i) for i in self.images]}
        )

    def log_data_table(self, name="val", type="dataset", table_name="val_data"):
        super().log_data_table(name=self.name, type=type, table_name=table_name)

    def add_model_predictions(self, epoch, logs=None):
        ref = self.data_table_ref
        self.pred_table.add_columns(
            {
                "id": ref.get_column("id"),
                "image": ref.get_column("image"),
                "score": np.linspace(0, 1, len(ref), dtype=np.float32),
            }
        )


@pytest.mark.slow
def test_log_every_n_batches_versions_and_async_dispatch(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = LogsClfCallback(x, y, log_every_n_batches=3)
    assert not python_utils.is_default(cb.on_train_batch_end)
    _fit(model, x, y, cb, epochs=2, batch_size=4)  # 5 batches/epoch, 10 in all
    versions = read().artifacts(type="evaluation")
    aliases = [sorted(a.aliases) for a in versions]
    assert aliases == [
        ["latest", "step-3"],
        ["epoch-0", "latest"],
        ["latest", "step-6"],
        ["latest", "step-9"],
        ["epoch-1", "latest"],
    ]
    assert [a.metadata["global_step"] for a in versions] == [3, 5, 6, 9, 10]
    assert [a.metadata["trigger"] for a in versions] == ["batch", "epoch_end"] * 1 + [
        "batch",
        "batch",
        "epoch_end",
    ]


@pytest.mark.slow
def test_batch_logging_counts_steps_with_steps_per_execution(offline_run, tiny_classifier):
    model, x, y = tiny_classifier
    model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=2)
    cb = LogsClfCallback(x, y, log_every_n_batches=3)
    _fit(model, x, y, cb, epochs=1, batch_size=2)  # 10 steps, hooks after steps 2, 4, ...
    versions = offline_run[1]().artifacts(type="evaluation")
    # Crossing 3 is seen at step 4, 6 at 6, 9 at 10: the last step is the epoch end's.
    assert [v.metadata["global_step"] for v in versions] == [4, 6, 10]
    assert [v.metadata["trigger"] for v in versions] == ["batch", "batch", "epoch_end"]


def test_without_batch_logging_batch_hooks_stay_default(offline_run, tiny_classifier):
    """Keras may dispatch batch callbacks asynchronously only while every hook is default.

    (The TF backend reports IS_THREAD_SAFE=False and never dispatches async; the check
    here is that our callback never makes Keras' choice worse than with no callback.)
    """
    _, x, y = tiny_classifier
    cb = LogsClfCallback(x, y)
    for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end"):
        assert python_utils.is_default(getattr(cb, hook)), hook
    baseline = keras.callbacks.CallbackList([keras.callbacks.Callback()])
    assert keras.callbacks.CallbackList([cb])._async_train == baseline._async_train
    assert not hasattr(fastevalcb, "FastEvalCallback")  # one public name per class


def test_construction_without_run_is_a_clear_error(wandb_env):
    assert wandb.run is None
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        LogsClfCallback(np.zeros((1, 4, 4, 3)), np.zeros(1))


@pytest.mark.parametrize(
    "columns, match",
    [
        ("image", "must be a list of column names"),
        ([], "at least one column"),
        (["a", "a"], "duplicate column names"),
        (["epoch", "", "pred"], "names must be non-empty, got '' at position 1"),
        (["a", 1.5], "str or int"),
    ],
)
def test_bad_column_lists_fail_at_construction(offline_run, columns, match):
    with pytest.raises(TableSchemaError, match=match):
        DocsClfCallback((None, None), columns, ["p"])


def test_bad_cadence_fails_at_construction(offline_run):
    with pytest.raises(ValueError, match="log_every_n_batches must be a positive int"):
        LogsClfCallback(np.zeros((1, 4, 4, 3)), np.zeros(1), log_every_n_batches=0)


def test_row_and_column_mismatches_name_expected_and_got(offline_run):
    cb = LogsClfCallback(np.zeros((1, 4, 4, 3)), np.zeros(1))
    cb.init_pred_table(cb.pred_table_columns)
    with pytest.raises(TableSchemaError, match=r"got 3 values, expected 5 .*'epoch', 'id'"):
        cb.pred_table.add_data(0, 1, 2)
    with pytest.raises(TableSchemaError, match=r"missing \['image', 'label', 'pred'\]"):
        cb.pred_table.add_columns({"epoch": [0], "id": [0], "oops": [1]})
    with pytest.raises(TableSchemaError, match="different lengths"):
        cb.pred_table.add_columns({c: [0] * (1 + (c == "pred")) for c in cb.pred_table_columns})


def test_data_table_ref_before_log_data_table_is_a_clear_error(offline_run):
    cb = LogsClfCallback(np.zeros((1, 4, 4, 3)), np.zeros(1))
    with pytest.raises(RuntimeError, match=r"only available after log_data_table\(\)"):
        cb.data_table_ref
    with pytest.raises(RuntimeError, match=r"init_pred_table"):
        cb.pred_table


class _FlakyCallback(LogsClfCallback):
    def add_model_predictions(self, epoch, logs=None):
        if epoch < 2:
            raise ZeroDivisionError(f"boom at epoch {epoch}")
        super().add_model_predictions(epoch, logs)


def test_logging_fault_warns_once_and_fit_survives(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = _FlakyCallback(x, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    assert len(history.history["loss"]) == 3
    assert len(ours) == 2  # the first failure, then the end-of-fit summary
    assert "ZeroDivisionError: boom at epoch 0" in ours[0]
    assert "failed 2 times" in ours[1]
    versions = read().artifacts(type="evaluation")
    assert [a.metadata["epoch"] for a in versions] == [2]  # later logs still happen


def test_strict_mode_reraises(offline_run, tiny_classifier):
    model, x, y = tiny_classifier
    cb = _FlakyCallback(x, y, strict=True)
    with pytest.raises(ZeroDivisionError, match="boom at epoch 0"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])


def test_schema_error_inside_fit_is_reported_with_its_message(offline_run, tiny_classifier):
    model, x, y = tiny_classifier

    class WrongRow(LogsClfCallback):
        def add_model_predictions(self, epoch, logs=None):
            self.pred_table.add_data(epoch, 1)

    with pytest.warns(FastEvalWarning, match=r"add_data got 2 values, expected 5"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[WrongRow(x, y)])
