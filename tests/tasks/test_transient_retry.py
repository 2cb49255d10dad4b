"""Transient write errors are retried: a real tmpfs fills up mid-fit.

Each test runs a fit in a fresh process whose W&B folders and TMPDIR are on an 8 MiB tmpfs
of its own (a private mount namespace: root, as CI runs). Something else fills the disk at
epoch 1's end, before our log; either it frees the space before ``run.finish()`` (every
version must then be in the run) or never does (one warning names the lost versions, fit is
not held, ``run.finish()`` returns). The offline run's log is read back in both cases.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers.tasks import run_on_small_tmpfs

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

_SCRIPT = textwrap.dedent("""
    import json, os, sys, time, warnings
    small, fill_at, free_at = sys.argv[1], sys.argv[2], sys.argv[3]
    # fill_at: "begin" (train begin, before the data table) or an epoch (its end, before our
    # log); free_at: an epoch (its end), "finish" (before run.finish()) or "never".
    for var, sub in (("WANDB_DIR", "runs"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_ARTIFACT_DIR", "artifacts"), ("TMPDIR", "tmp")):
        os.makedirs(os.path.join(small, sub))
        os.environ[var] = os.path.join(small, sub)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="3")
    import keras, numpy as np, wandb
    from fastevalcb import ClassificationEvalCallback, FastEvalWarning
    from fastevalcb.offline import OfflineRun
    from fastevalcb.synthetic import make_shapes

    filler = os.path.join(small, "filler")

    def fill():  # to the last byte
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 16, 1 << 12, 1 << 8, 1):
                try:
                    while True:
                        os.write(fd, bytes(size))
                except OSError as exc:
                    assert exc.errno == 28, exc
        finally:
            os.close(fd)

    class FillDisk(keras.callbacks.Callback):  # listed before ours: fills before our log
        def on_train_begin(self, logs=None):
            if fill_at == "begin":
                fill()

        def on_epoch_end(self, epoch, logs=None):
            if str(epoch) == fill_at:
                cb.flush()  # the earlier versions written: this log is the one refused
            if str(epoch) == free_at and fill_at == "begin":
                # Free only once the worker has met the full disk: a fit this short can
                # reach the free before the worker first tries to write the data table.
                deadline = time.monotonic() + 60
                while not cb._retries.waiting() and time.monotonic() < deadline:
                    time.sleep(0.01)
            self.before = time.perf_counter()
            if str(epoch) == free_at:
                os.remove(filler)
            if str(epoch) == fill_at:
                fill()

    class Held(keras.callbacks.Callback):  # listed after ours: how long our log held fit
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - fill_disk.before)

    shapes = make_shapes(200, 16, seed=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    run = wandb.init(project="disk-fills")
    cb = ClassificationEvalCallback((shapes.images, shapes.labels), shapes.class_names,
                                    verbose=0)
    fill_disk, held = FillDisk(), Held()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(shapes.images[:64], shapes.labels[:64], epochs=4, batch_size=16,
                            callbacks=[fill_disk, cb, held], verbose=0)
        if free_at == "finish":
            os.remove(filler)
        start = time.perf_counter()
        run.finish()
        finish_s = time.perf_counter() - start
    if free_at == "never":
        os.remove(filler)  # only now, to read the run (wandb-core has exited)
    log = OfflineRun.latest(os.environ["WANDB_DIR"])
    try:
        log.wait_complete(timeout=20)
        complete = True
    except Exception:
        complete = False
    versions = log.artifacts(f"run_{run.id}_pred")
    print("RESULT", json.dumps({
        "epochs": len(history.history["loss"]),
        "held_s": held.seconds,
        "finish_s": finish_s,
        "complete": complete,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)],
        "data_rows": len(log.load_table(log.artifact("val"), "val_data").rows)
                     if log.artifacts("val") else None,
        "pred_epochs": [v.metadata["epoch"] for v in versions],
        "pred_rows": [len(log.load_table(v, "eval_data").rows) for v in versions],
        "metric_epochs": [r["eval/epoch"] for r in log.history() if "eval/accuracy" in r],
        "written_again": cb._retries.written_again,
        "summary": {k: v for k, v in log.summary().items() if k.startswith("fastevalcb/")},
    }))
""")


def test_a_disk_freed_before_the_run_ends_gets_every_version(tmp_path):
    result = run_on_small_tmpfs(tmp_path, _SCRIPT, "1", "finish")
    assert result["epochs"] == 4
    assert "epoch 3 step 16 (epoch-3)" in result["written_again"]  # refused, then written
    assert result["data_rows"] == 200
    assert result["pred_epochs"] == [0, 1, 2, 3], str(result)  # in order, none lost
    assert result["pred_rows"] == [200] * 4
    assert result["metric_epochs"] == [0, 1, 2, 3]
    assert result["complete"], result
    assert result["warnings"] == [], result["warnings"]
    assert result["finish_s"] < 30


def test_a_disk_never_freed_names_the_lost_versions_once(tmp_path):
    result = run_on_small_tmpfs(tmp_path, _SCRIPT, "1", "never")
    assert result["epochs"] == 4
    assert max(result["held_s"]) < 5, result["held_s"]  # fit is not held by the retries
    assert result["finish_s"] < 30, result["finish_s"]
    lost = [m for m in result["warnings"] if "not written after transient" in m]
    assert len(lost) == 1, result["warnings"]
    for epoch, step in ((1, 8), (2, 12), (3, 16)):
        assert f"epoch {epoch} step {step} (epoch-{epoch})" in lost[0], lost[0]
    assert "No space left on device" in lost[0]
    # Epoch 0's version was handed to wandb before the disk filled; whether it reaches
    # the log is wandb-core's: its transaction log buffers records in 32 KiB blocks and
    # drops a block it cannot write (see /work/notes/reliability.md), so it may be missing.
    assert result["pred_epochs"] in ([], [0])
    assert not ("epoch 0 " in lost[0] and result["pred_epochs"] == [0])  # not lost and in


def test_a_data_table_refused_by_a_full_disk_is_re_streamed_with_every_version(tmp_path):
    # Full before the data table is written; freed at epoch 1's end. Versions queue behind
    # the data table, which is rebuilt from the source at the next due attempt.
    result = run_on_small_tmpfs(tmp_path, _SCRIPT, "begin", "1")
    assert result["epochs"] == 4
    assert result["written_again"][0] == "the data table", result["written_again"]
    assert result["data_rows"] == 200
    assert result["pred_epochs"] == [0, 1, 2, 3], str(result)
    assert result["pred_rows"] == [200] * 4
    assert result["metric_epochs"] == [0, 1, 2, 3]
    assert result["warnings"] == [], result["warnings"]
    assert max(result["held_s"]) < 5, result["held_s"]
