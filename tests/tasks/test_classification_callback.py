"""ClassificationEvalCallback end to end: real fit, real offline wandb, read back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from wandb.sdk.lib.hashutil import md5_file_b64

from fastevalcb import ClassificationEvalCallback, FastEvalInputError, FastEvalWarning
from fastevalcb.offline import OfflineRun
from tests.helpers.tasks import (
    Diverge,
    EpochRecorder,
    fast_eval_warnings,
    metric_definitions,
    pred_versions,
)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.slow
@pytest.mark.fast_path
def test_tables_references_and_metrics(offline_run, shapes, classifier):
    run, read = offline_run
    x, y = shapes.images[:20], shapes.labels[:20]
    cb = ClassificationEvalCallback(
        (x, y), list(shapes.class_names), top_k=2, batch_size=8, verbose=0
    )
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    # After fit, the weights are those of the last epoch-end log: predict independently.
    probs = _softmax(classifier.predict(x, verbose=0))
    log = read()

    data = log.artifact("val")
    data_table = log.load_table(data, "val_data")
    assert data_table.columns == ["id", "image", "label"]
    assert data_table.column("id") == list(range(20))
    assert data_table.column("label") == [shapes.class_names[i] for i in y]

    versions = pred_versions(log, run.id)
    assert len(versions) == 2
    assert "epoch-0" in versions[0].aliases and {"latest", "epoch-1"} <= set(versions[1].aliases)
    assert [v.metadata["epoch"] for v in versions] == [0, 1]
    assert [v.metadata["global_step"] for v in versions] == [3, 6]  # 48 samples / 16

    last = versions[-1]
    table = log.load_table(last, "eval_data")
    assert table.columns == [
        "epoch",
        "step",
        "id",
        "image",
        "label",
        "pred",
        "confidence",
        "correct",
        "top_k",
        "top_k_scores",
        "finite",
    ]
    assert table.column("finite") == [True] * 20
    names = np.array(shapes.class_names)
    pred = probs.argmax(1)
    assert table.column("id") == list(range(20))
    assert table.column("pred") == names[pred].tolist()
    np.testing.assert_allclose(table.column("confidence"), probs.max(1), rtol=1e-4)
    assert table.column("correct") == (pred == y).tolist()
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    assert table.column("top_k") == names[top2].tolist()
    np.testing.assert_allclose(
        table.column("top_k_scores"), np.take_along_axis(probs, top2, 1), rtol=1e-4
    )

    # Every image cell is a reference entry into the data artifact, not a copy.
    paths = {cell["path"] for cell in table.column("image")}
    assert len(paths) == 20
    for path in paths:
        entry = last.entries[path]
        assert entry.is_reference and entry.referenced_client_id == data.client_id
        assert data.entries[path].size > 0 and not data.entries[path].is_reference
    assert last.stored_bytes() < data.stored_bytes() / 2

    # Summary metrics: keyed by eval/global_step through define_metric, no explicit step.
    rows = [r for r in log.history() if "eval/accuracy" in r]
    assert [r["eval/global_step"] for r in rows] == [3, 6]
    assert rows[-1]["eval/accuracy"] == pytest.approx(float((pred == y).mean()))
    in_top2 = (top2 == y[:, None]).any(1).mean()
    assert rows[-1]["eval/top_2_accuracy"] == pytest.approx(float(in_top2))
    defs = metric_definitions(log)
    assert defs["eval/*"] == "eval/global_step"
    assert cb.timings[-1]["samples"] == 20 and cb.timings[-1]["logged_s"] > 0


@pytest.mark.slow
@pytest.mark.fast_path
def test_large_manifests_go_as_wandbs_manifest_file(offline_run, shapes, classifier, monkeypatch):
    """Past MANIFEST_FILE_ENTRIES, the data and pred manifests are wandb's manifest file
    (not one protobuf record: its transient copies were the peak RSS of a large set); the
    run records the same entries, and wandb's own threshold never changes."""
    from wandb.sdk.interface import interface

    from fastevalcb.tables import _wandb

    before = interface.MANIFEST_FILE_SIZE_THRESHOLD
    monkeypatch.setattr(_wandb, "MANIFEST_FILE_ENTRIES", 5)
    run, read = offline_run
    x, y = shapes.images[:20], shapes.labels[:20]
    cb = ClassificationEvalCallback(
        (x, y), list(shapes.class_names), batch_size=8, verbose=0, metrics=[]
    )  # metric tables: wandb's own run_table artifacts
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    assert before == interface.MANIFEST_FILE_SIZE_THRESHOLD
    log = read()
    records = [r.artifact for r in log.records if r.HasField("artifact")]
    assert len(records) == 3
    assert all(r.manifest.manifest_file_path and not r.manifest.contents for r in records)
    data, versions = log.artifact("val"), pred_versions(log, run.id)
    images = [e for e in data.entries.values() if e.path.endswith(".png")]
    assert len(images) == 20
    for entry in images:  # the staged files, their digests as wandb computes them
        assert md5_file_b64(entry.local_path) == entry.digest
    table = log.load_table(versions[-1], "eval_data")
    assert table.column("id") == list(range(20))
    for cell in table.column("image"):
        entry = versions[-1].entries[cell["path"]]
        assert entry.referenced_client_id == data.client_id
        assert log.resolve(versions[-1], cell["path"])[1] == data.entries[cell["path"]]


@pytest.mark.slow
def test_tf_data_one_hot_and_random_subset(offline_run, shapes, classifier):
    run, read = offline_run
    one_hot = np.eye(3, dtype=np.float32)[shapes.labels]
    ds = tf.data.Dataset.from_tensor_slices((shapes.images, one_hot))
    cb = ClassificationEvalCallback(
        ds,
        shapes.class_names,
        max_samples=10,
        selection="random",
        seed=1,
        output="logits",
        verbose=0,
    )
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=24, callbacks=[cb], verbose=0)
    log = read()
    tables = [log.load_table(v, "eval_data") for v in pred_versions(log, run.id)]
    ids = tables[0].column("id")
    assert len(ids) == 10 and len(set(ids)) == 10 and ids != list(range(10))
    assert tables[1].column("id") == ids  # the same subset every log
    labels = tables[1].column("label")
    assert labels == [shapes.class_names[shapes.labels[i]] for i in ids]


@pytest.mark.slow
def test_logging_runs_on_the_worker_and_everything_is_flushed_at_train_end(
    offline_run, shapes, classifier
):
    run, read = offline_run

    class Recording(ClassificationEvalCallback):
        threads: set = set()

        def _pred_columns_for(self, *args):
            self.threads.add(threading.current_thread().name)
            return super()._pred_columns_for(*args)

    cb = Recording(
        (shapes.images, shapes.labels),
        shapes.class_names,
        batch_size=4,
        max_queue=1,
        log_every_n_batches=2,
        verbose=0,
    )
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    assert cb.threads == {"fastevalcb-logger"}
    # fit returned: on_train_end flushed every queued version, in order.
    steps = [v["global_step"] for v in cb.logged_versions]
    # Steps 2 and 4, epoch ends at 3 and 6 (step 6 is left to the epoch-end log).
    assert steps == [2, 3, 4, 6]
    log = read()
    versions = pred_versions(log, run.id)
    assert [v.metadata["global_step"] for v in versions] == steps
    assert [a for v in versions for a in v.aliases if a != "latest"] == [
        "step-2",
        "epoch-0",
        "step-4",
        "epoch-1",
    ]


@pytest.mark.slow
def test_interrupted_fit_loses_no_queued_version(offline_run, shapes, classifier):
    run, read = offline_run

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    cb = ClassificationEvalCallback((shapes.images, shapes.labels), shapes.class_names, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        classifier.fit(
            shapes.images, shapes.labels, epochs=3, callbacks=[cb, Interrupt()], verbose=0
        )
    cb.flush()  # optional: the run's end waits too (tests/tasks/test_logging_faults.py)
    log = read()
    versions = pred_versions(log, run.id)
    assert [v.metadata["epoch"] for v in versions] == [0]
    assert len(log.load_table(versions[0], "eval_data").rows) == 48


@pytest.mark.slow
def test_queued_versions_are_written_at_interpreter_exit(tmp_path):
    """A script that exits right after queueing (no flush, no finish) still logs it, the
    data table included: built at exit, when the encoder pool takes no more futures."""
    script = textwrap.dedent(f"""
        import os, time
        for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
                    "WANDB_ARTIFACT_DIR"):
            os.environ[var] = {str(tmp_path)!r}
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="3")
        import keras, numpy as np, wandb
        from fastevalcb import ClassificationEvalCallback

        class Slow(ClassificationEvalCallback):
            def add_ground_truth(self, logs=None):
                time.sleep(2)  # the data table and the version: still queued at the end
                super().add_ground_truth(logs)

        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 255, (8, 8, 8, 3), dtype=np.uint8), rng.integers(0, 2, 8)
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        wandb.init(project="exit")
        cb = Slow((x, y), ["a", "b"], verbose=0)
        cb.on_train_end = lambda logs=None: None  # as if fit were interrupted
        model.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
        print("PENDING", cb._worker.pending)
    """)
    # A fresh wandb service: not the one this pytest process saved in WANDB_SERVICE.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pending = int(proc.stdout.split("PENDING", 1)[1])
    assert pending >= 2, proc.stdout  # the data table's job and the version's, at least
    assert "fastevalcb" not in proc.stderr, proc.stderr[-3000:]  # no logging failure
    log = OfflineRun.latest(tmp_path).wait_complete()
    assert len(log.load_table(log.artifact("val"), "val_data").rows) == 8
    versions = [a for a in log.artifacts() if a.name.endswith("_pred")]
    assert len(versions) == 1 and versions[0].metadata["rows"] == 8


# -- bad inputs: clear errors before epoch 1 ---------------------------------------------
@pytest.mark.parametrize(
    "labels, match",
    [
        (np.zeros((48, 2), np.int64), r"labels must be class ids of shape \(N,\)"),
        (np.full(48, 3), r"label of sample 0 is 3, outside class_names \(3 classes"),
        (np.full(48, 0.5), "integer class ids"),
    ],
)
def test_bad_labels_fail_at_construction(offline_run, shapes, labels, match):
    with pytest.raises(FastEvalInputError, match=match):
        ClassificationEvalCallback((shapes.images, labels), shapes.class_names)


def _dataset_with_bad_label(shapes, at):
    """The shapes as a tf.data source (batches of 16) whose sample ``at`` has class 7."""
    labels = shapes.labels.copy()
    labels[at] = 7
    return tf.data.Dataset.from_tensor_slices((shapes.images, labels)).batch(16)


@pytest.mark.parametrize(
    "at, strict", [(3, False), (30, True)], ids=["first batch", "later batch, strict"]
)
def test_bad_dataset_labels_fail_before_epoch_1(offline_run, shapes, classifier, at, strict):
    """In the first batch (read at train begin), or anywhere when strict (the data table is
    then built before epoch 1)."""
    cb = ClassificationEvalCallback(
        _dataset_with_bad_label(shapes, at), shapes.class_names, strict=strict
    )
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match=f"label of sample {at} is 7"):
        classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == []


def test_bad_dataset_labels_later_warn_without_stopping_fit(offline_run, shapes, classifier):
    """Only the first batch is read before epoch 1 (the rest streams on the worker while
    training runs): a bad label further on warns, names the sample, and logs no version."""
    run, read = offline_run
    cb = ClassificationEvalCallback(_dataset_with_bad_label(shapes, 30), shapes.class_names)
    epochs = EpochRecorder()
    with pytest.warns(FastEvalWarning, match="label of sample 30 is 7"):
        classifier.fit(shapes.images, shapes.labels, epochs=2, callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == [0, 1]
    assert pred_versions(read(), run.id) == []


def test_model_output_size_must_match_class_names(offline_run, shapes, classifier):
    cb = ClassificationEvalCallback((shapes.images, shapes.labels % 2), ["a", "b"])
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match=r"output \(batch, 2\) class scores .* got \("):
        classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"class_names": "abc"}, "class_names must be a list of str"),
        ({"class_names": ["a", "a", "b"]}, "duplicates"),
        ({"top_k": 0}, "top_k must be a positive int"),
        ({"output": "softmax"}, "output must be one of"),
        ({"max_queue": 0}, "max_queue must be a positive int"),
        ({"max_queue_mb": 0}, "max_queue_mb must be a positive number"),
    ],
)
def test_bad_options_fail_at_construction(offline_run, shapes, kwargs, match):
    args = {"class_names": shapes.class_names, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        ClassificationEvalCallback((shapes.images, shapes.labels), **args)


@pytest.mark.slow
def test_failure_inside_logging_warns_once_and_fit_goes_on(offline_run, shapes, classifier):
    run, read = offline_run

    class Flaky(ClassificationEvalCallback):
        def _pred_columns_for(self, version, *args):
            if version.epoch >= 1:
                raise RuntimeError("disk full")
            return super()._pred_columns_for(version, *args)

    cb = Flaky((shapes.images, shapes.labels), shapes.class_names, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = classifier.fit(shapes.images, shapes.labels, epochs=3, callbacks=[cb], verbose=0)
    assert len(history.history["loss"]) == 3
    ours = [w for w in caught if issubclass(w.category, FastEvalWarning)]
    assert "disk full" in str(ours[0].message)
    assert "failed 2 times" in str(ours[-1].message)  # the summary at train end
    log = read()
    assert [v.metadata["epoch"] for v in pred_versions(log, run.id)] == [0]


@pytest.mark.slow
def test_strict_mode_raises_worker_errors_in_the_training_thread(offline_run, shapes, classifier):
    class Broken(ClassificationEvalCallback):
        def _pred_columns_for(self, *args):
            raise RuntimeError("boom")

    cb = Broken((shapes.images, shapes.labels), shapes.class_names, strict=True, verbose=0)
    with pytest.raises(RuntimeError, match="boom"):
        classifier.fit(shapes.images, shapes.labels, epochs=2, callbacks=[cb], verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "verbose, expected",
    [(0, None), (2, "classification eval (epoch-0)"), (1, "fastevalcb: classification eval")],
)
def test_progress_follows_verbosity(offline_run, shapes, classifier, capsys, verbose, expected):
    cb = ClassificationEvalCallback(
        (shapes.images, shapes.labels), shapes.class_names, batch_size=8
    )
    classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb], verbose=verbose)
    out = capsys.readouterr().out
    if expected is None:
        assert "fastevalcb" not in out
    else:
        assert expected in out
        assert "table version(s) logged to run_" in out  # the summary line at train end
    if verbose == 1:
        assert "6/6" in out  # the eval progress bar reached its last batch (48 / 8)


def test_a_reshuffling_dataset_is_refused_before_epoch_1(offline_run, shapes, classifier):
    ds = tf.data.Dataset.from_tensor_slices((shapes.images, shapes.labels)).shuffle(48, seed=1)
    cb = ClassificationEvalCallback(ds.batch(8), shapes.class_names, verbose=0)
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match="changes order or content between passes"):
        classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == []


@pytest.mark.slow
@pytest.mark.fast_path
def test_a_new_run_gets_its_own_data_table(wandb_env, shapes, classifier):
    import wandb

    cb = None
    for _ in range(2):
        run = wandb.init(project="two-runs", dir=str(wandb_env / "run"), reinit="finish_previous")
        cb = cb or ClassificationEvalCallback(
            (shapes.images[:8], shapes.labels[:8]), shapes.class_names, verbose=0
        )
        classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb], verbose=0)
        run.finish()
    log = OfflineRun.latest(wandb_env / "run").wait_complete()
    data = log.artifact("val")
    last = pred_versions(log, log.run_id)[-1]
    path = log.load_table(last, "eval_data").column("image")[0]["path"]
    art, entry = log.resolve(last, path)  # resolvable within this run
    assert art.client_id == data.client_id and not entry.is_reference


def test_image_scaling_is_decided_once_from_the_first_batch():
    from fastevalcb.tasks._eval_set import ImageScaler

    scaler = ImageScaler()
    first = scaler(np.full((2, 4, 4, 3), 0.5, np.float32))
    assert first.dtype == np.uint8 and first.max() == 128  # [0, 1] -> x 255, rounded
    dark = scaler(np.full((1, 4, 4, 3), 0.2, np.float32))
    assert dark.max() == 51  # same rule for later batches
    signed = ImageScaler()(np.array([[[-1.0, 0.0, 1.0]]], np.float32))
    assert signed.tolist() == [[[0, 128, 255]]]
    big = ImageScaler()(np.array([[[3.0, 300.0, -5.0]]], np.float32))
    assert big.tolist() == [[[3, 255, 0]]]
    assert ImageScaler()(np.zeros((1, 2, 2, 1), np.uint8)).shape == (1, 2, 2)


@pytest.mark.slow
def test_fit_does_not_wait_for_the_data_table(offline_run, shapes, classifier):
    """The data table streams on the worker: epoch 0 begins while the worker is still busy
    (here: held by a job queued first), and the table and every version follow in order."""
    run, read = offline_run
    cb = ClassificationEvalCallback((shapes.images, shapes.labels), shapes.class_names, verbose=0)
    epoch_began = threading.Event()
    released = []
    cb._worker.submit(lambda: released.append(epoch_began.wait(timeout=60)))

    class Release(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epoch_began.set()

    classifier.fit(shapes.images, shapes.labels, epochs=2, callbacks=[cb, Release()], verbose=0)
    assert released == [True]  # train begin returned before the worker got free
    log = read()
    versions = pred_versions(log, run.id)
    assert [a for v in versions for a in v.aliases if a != "latest"] == ["epoch-0", "epoch-1"]
    assert [v.metadata["rows"] for v in versions] == [len(shapes.labels)] * 2
    assert len(log.artifacts("val")) == 1


@pytest.mark.slow
def test_kernels_compile_on_the_worker_first_for_the_task_only(offline_run, shapes, classifier):
    """A cold numba cache compiles for seconds: that runs as the worker's first job, for
    this task's kernel groups, not in train begin."""
    from fastevalcb import kernels

    calls = []
    warmup = kernels.warmup

    def recording(groups=None):
        calls.append((threading.current_thread().name, tuple(groups)))
        return warmup(groups)

    cb = ClassificationEvalCallback((shapes.images, shapes.labels), shapes.class_names, verbose=0)
    kernels.warmup = recording
    try:
        classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb], verbose=0)
    finally:
        kernels.warmup = warmup
    assert calls == [("fastevalcb-logger", ("classification", "confusion", "curves"))]
    assert len(pred_versions(offline_run[1](), offline_run[0].id)) == 1


@pytest.mark.parametrize(
    "task", ["ClassificationEvalCallback", "DetectionEvalCallback", "SegmentationEvalCallback"]
)
def test_each_task_names_kernel_groups_warmup_knows(task):
    import fastevalcb
    from fastevalcb import kernels

    groups = getattr(fastevalcb, task).kernel_groups
    assert groups and set(kernels.warmup(groups)) == set(groups)


@pytest.mark.slow
def test_nan_predictions_are_flagged_warned_once_and_their_summary_is_nan(
    offline_run, shapes, classifier
):
    run, read = offline_run
    cb = ClassificationEvalCallback(
        (shapes.images[:12], shapes.labels[:12]),
        shapes.class_names,
        selection="random",
        max_samples=8,
        seed=1,
        verbose=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier.fit(
            shapes.images,
            shapes.labels,
            epochs=3,
            batch_size=16,
            callbacks=[Diverge(at=1), cb],
            verbose=0,
        )
    log = read()
    tables = [log.load_table(v, "eval_data") for v in pred_versions(log, run.id)]
    assert [t.column("finite") for t in tables] == [[True] * 8, [False] * 8, [False] * 8]
    assert tables[1].column("confidence") == [None] * 8  # NaN, written as wandb writes it
    assert not any(tables[1].column("correct"))  # a NaN row is never counted correct
    rows = [r for r in log.history() if "eval/accuracy" in r]
    assert [np.isnan(r["eval/accuracy"]) for r in rows] == [False, True, True]
    assert np.isnan(rows[1]["eval/top_3_accuracy"])
    nan = [m for m in fast_eval_warnings(caught) if "non-finite" in m]
    assert len(nan) == 1, nan  # once per fit, at the first NaN version
    first = tables[1].column("id")[0]
    assert (
        f"8 of 8 classification samples had non-finite predictions (NaN/inf) at epoch 1 "
        f"(step 6); first sample id {first}." in nan[0]
    )


def test_more_rows_than_a_wandb_artifact_table_holds_are_refused_at_construction(offline_run):
    import wandb

    limit = wandb.Table.MAX_ARTIFACT_ROWS
    x = np.zeros((limit + 1, 2, 2, 3), np.uint8)  # 2x2 images: 2.4 MB
    y = np.zeros(limit + 1, np.int64)
    with pytest.raises(
        FastEvalInputError,
        match=r"200,001 samples.*at most 200,000 rows.*"
        r"max_samples=",
    ):
        ClassificationEvalCallback((x, y), ["a", "b"])
    cb = ClassificationEvalCallback((x, y), ["a", "b"], max_samples=limit, selection="random")
    assert len(cb.predictor.selected_indices()) == limit


@pytest.mark.slow
def test_a_long_data_table_build_reports_progress(offline_run, shapes, classifier, capsys):
    """Progress lines while the data table streams (every progress_every_s), then its total."""
    cb = ClassificationEvalCallback(
        (shapes.images, shapes.labels), shapes.class_names, batch_size=8, verbose=1
    )
    cb.progress_every_s = 0.0  # every batch, for the test
    classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[cb], verbose=1)
    out = capsys.readouterr().out
    assert "fastevalcb: classification data table: 8/48 (17%) rows" in out
    assert "fastevalcb: classification data table: 40/48 (83%) rows" in out
    assert "fastevalcb: classification data table logged: 48 rows in" in out
    quiet = ClassificationEvalCallback(
        (shapes.images, shapes.labels),
        shapes.class_names,
        batch_size=8,
        verbose=0,
        data_artifact_name="quiet",
    )
    quiet.progress_every_s = 0.0
    classifier.fit(shapes.images, shapes.labels, epochs=1, callbacks=[quiet], verbose=0)
    assert "data table" not in capsys.readouterr().out


class _NaNWhereBright(keras.layers.Layer):
    """NaN scores for the images brighter than ``threshold`` (a model that diverges on
    some inputs only)."""

    def __init__(self, threshold: float, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold

    def call(self, inputs):
        images, scores = inputs
        bright = keras.ops.mean(keras.ops.cast(images, "float32"), axis=(1, 2, 3)) > self.threshold
        return keras.ops.where(bright[:, None], float("nan"), scores)


def test_a_version_with_some_nan_rows_is_logged_with_them_flagged(offline_run, shapes):
    """Some rows NaN, the others not: the version is logged whole, NaN rows flagged (a NaN
    inside the top-k scores lists must not make the column's wandb type Invalid)."""
    run, read = offline_run
    means = shapes.images.reshape(len(shapes.images), -1).mean(axis=1)
    inputs = keras.Input(shapes.images.shape[1:])
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    scores = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, _NaNWhereBright(float(np.median(means)))([inputs, scores]))
    model.compile("sgd", "sparse_categorical_crossentropy")
    cb = ClassificationEvalCallback(
        (shapes.images, shapes.labels), shapes.class_names, batch_size=8, verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(shapes.images[:8], shapes.labels[:8], epochs=1, callbacks=[cb], verbose=0)
    (version,) = pred_versions(read(), run.id)
    table = read().load_table(version, "eval_data")
    finite = np.array(table.column("finite"))
    assert finite.tolist() == (means <= np.median(means)).tolist()
    assert 0 < finite.sum() < len(finite)
    confidence = np.array(table.column("confidence"), float)
    assert np.isnan(confidence[~finite]).all() and np.isfinite(confidence[finite]).all()
    assert any(np.isnan(s).all() for s in np.array(table.column("top_k_scores"), float))
    assert [m for m in fast_eval_warnings(caught) if "non-finite" in m]


@pytest.mark.slow
def test_fit_s_default_verbose_logs_every_version(offline_run, shapes, classifier):
    """``fit()`` without ``verbose=`` passes Keras 3's ``"auto"`` to the callbacks' params:
    the task callback's progress output reads it as 1, and every version is logged."""
    run, read = offline_run
    cb = ClassificationEvalCallback(
        (shapes.images[:8], shapes.labels[:8]), list(shapes.class_names)
    )
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb])
    assert len(pred_versions(read(), run.id)) == 2
