"""Async logging faults, one test each: the run ending first, strict failures, a full disk.

Every test reads back what the offline run recorded. A version that must still be in the
worker when the run ends is made slow on purpose (``Slow``: one second per version), so
the race is there on every run, not by chance.
"""

from __future__ import annotations

import re
import textwrap
import threading
import time
import warnings
from pathlib import Path

import keras
import pytest
import wandb

from fastevalcb import ClassificationEvalCallback, FastEvalWarning
from fastevalcb.offline import OfflineRun
from tests.helpers.tasks import EpochRecorder, pred_versions, run_on_small_tmpfs

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")


class Slow(ClassificationEvalCallback):
    """Takes a second to write each version: the worker is busy when the run ends."""

    def _finish_version(self, version):
        time.sleep(1.0)
        super()._finish_version(version)


def _fast_eval_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]


def test_a_run_finished_by_a_user_callback_mid_fit_gets_the_queued_version_first(
    offline_run, shapes, classifier
):
    run, read = offline_run

    class TimeLimit(keras.callbacks.Callback):  # what time-limit / early-stop handlers do
        pending = None

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.pending = cb._worker.pending
                wandb.finish()

    cb = Slow((shapes.images[:16], shapes.labels[:16]), shapes.class_names, verbose=0)
    limit = TimeLimit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = classifier.fit(
            shapes.images, shapes.labels, epochs=3, batch_size=16, callbacks=[cb, limit], verbose=0
        )
    assert len(history.history["loss"]) == 3  # fit went on
    assert limit.pending >= 1  # epoch 0's version was still in the worker at wandb.finish()

    log = read()
    versions = pred_versions(log, run.id)
    assert [v.metadata["epoch"] for v in versions] == [0]
    assert len(log.load_table(versions[0], "eval_data").rows) == 16
    assert [r["eval/global_step"] for r in log.history() if "eval/accuracy" in r] == [3]
    # Epochs 1 and 2 came after the run had ended: one warning names them.
    lost = [m for m in _fast_eval_warnings(caught) if "not written" in m]
    assert len(lost) == 1, lost
    assert f"2 pred-table version(s) not written: W&B run {run.id} had already finished" in lost[0]
    assert "epoch 1 step 6 (epoch-1), epoch 2 step 9 (epoch-2)" in lost[0]


@pytest.mark.parametrize("end", ["run.finish()", "wandb.finish()", "wandb.init(reinit=...)"])
def test_ending_the_run_after_a_keyboard_interrupt_writes_what_the_worker_holds(
    wandb_env, shapes, classifier, end
):
    run = wandb.init(project="interrupt", dir=str(wandb_env / "run"))
    run_dir = Path(run.dir).parent

    class Interrupt(keras.callbacks.Callback):  # Ctrl-C right after our epoch-1 log
        pending = None

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.pending = cb._worker.pending
                raise KeyboardInterrupt

    cb = Slow((shapes.images, shapes.labels), shapes.class_names, verbose=0)
    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        classifier.fit(
            shapes.images,
            shapes.labels,
            epochs=3,
            batch_size=16,
            callbacks=[cb, interrupt],
            verbose=0,
        )
    assert interrupt.pending >= 1  # the worker still holds epoch 1's version (no flush())
    if end == "run.finish()":
        run.finish()
    elif end == "wandb.finish()":
        wandb.finish()
    else:
        wandb.init(
            project="interrupt", dir=str(wandb_env / "run"), reinit="finish_previous"
        ).finish()

    log = OfflineRun(run_dir).wait_complete()
    assert log.run_id == run.id
    versions = pred_versions(log, run.id)
    assert [v.metadata["epoch"] for v in versions] == [0, 1]
    assert [len(log.load_table(v, "eval_data").rows) for v in versions] == [48, 48]
    assert [r["eval/epoch"] for r in log.history() if "eval/accuracy" in r] == [0, 1]


def test_a_strict_failure_in_the_worker_raises_before_the_hook_returns(
    offline_run, shapes, classifier
):
    run, read = offline_run

    class FailingWrite(ClassificationEvalCallback):
        threads: list = []

        def _finish_version(self, version):
            self.threads.append(threading.current_thread().name)
            time.sleep(0.5)  # without waiting, epoch 1 would be training by now
            raise OSError(28, "No space left on device")

    epochs = EpochRecorder()
    cb = FailingWrite((shapes.images, shapes.labels), shapes.class_names, strict=True, verbose=0)
    with pytest.raises(OSError, match="No space left on device"):
        classifier.fit(
            shapes.images, shapes.labels, epochs=3, batch_size=16, callbacks=[cb, epochs], verbose=0
        )
    assert cb.threads == ["fastevalcb-logger"]  # it failed in the worker...
    assert epochs.epochs == [0]  # ...and raised in epoch 0's on_epoch_end: no epoch 1
    log = read()
    assert log.artifact("val").metadata is not None  # the data table was logged
    assert pred_versions(log, run.id) == []


def test_strict_async_logging_still_writes_every_version(offline_run, shapes, classifier):
    run, read = offline_run
    cb = ClassificationEvalCallback(
        (shapes.images, shapes.labels),
        shapes.class_names,
        strict=True,
        log_every_n_batches=2,
        verbose=0,
    )
    classifier.fit(shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    assert cb._worker.pending == 0
    versions = pred_versions(read(), run.id)
    assert [v.metadata["global_step"] for v in versions] == [2, 3, 4, 6]


_DISK_FULL_SCRIPT = textwrap.dedent("""
    import json, os, sys, time, warnings
    small, runs = sys.argv[1], sys.argv[2]
    for var, where in (("WANDB_DIR", runs), ("WANDB_CONFIG_DIR", runs),
                       ("WANDB_DATA_DIR", small), ("WANDB_CACHE_DIR", small),
                       ("WANDB_ARTIFACT_DIR", small), ("TMPDIR", small)):
        os.environ[var] = where
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="3")
    import keras, numpy as np, wandb
    from fastevalcb import ClassificationEvalCallback, FastEvalWarning
    from fastevalcb.offline import OfflineRun
    from fastevalcb.synthetic import make_shapes

    class FillDisk(keras.callbacks.Callback):
        # Something else fills the disk as epoch 0 ends, once the data table is written
        # (on the worker, after its kernel warmup) and before any version is queued.
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                cb.flush()
                fd = os.open(os.path.join(small, "filler"), os.O_WRONLY | os.O_CREAT)
                try:
                    while True:
                        os.write(fd, bytes(1 << 16))
                except OSError as exc:
                    assert exc.errno == 28, exc
                finally:
                    os.close(fd)

    shapes = make_shapes(48, 16, seed=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    run = wandb.init(project="disk-full")
    cb = ClassificationEvalCallback((shapes.images, shapes.labels), shapes.class_names,
                                    verbose=0)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(shapes.images, shapes.labels, epochs=3, batch_size=16,
                            callbacks=[FillDisk(), cb], verbose=0)
        fit_s = time.perf_counter() - start
        run.finish()  # the last retry, and the warning naming what is lost
    log = OfflineRun.latest(runs).wait_complete()
    print("RESULT", json.dumps({
        "epochs": len(history.history["loss"]),
        "fit_s": fit_s,
        "pending": cb._worker.pending,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)],
        "data_rows": len(log.load_table(log.artifact("val"), "val_data").rows),
        "pred_versions": len(log.artifacts(f"run_{run.id}_pred")),
        "metric_rows": len([r for r in log.history() if "eval/accuracy" in r]),
    }))
""")


def test_a_full_disk_during_the_workers_write_warns_once_and_fit_completes(tmp_path):
    """Never freed: the versions are retried until the run ends, then named in a warning."""
    runs = tmp_path / "runs"
    runs.mkdir()
    # A fresh wandb service (not this pytest process's), on a 16 MiB disk of its own.
    result = run_on_small_tmpfs(tmp_path, _DISK_FULL_SCRIPT, str(runs), size="16m")

    assert result["epochs"] == 3 and result["pending"] == 0  # fit completed, nothing hangs
    assert result["data_rows"] == 48  # logged before the disk filled up
    assert result["pred_versions"] == 0  # every version's write hit the full disk...
    assert result["metric_rows"] == 0  # ...so none of them logged half of itself
    # Each was kept and retried (ENOSPC is transient) until the run ended: one warning
    # names them all, with the cause (tests/tasks/test_transient_retry.py: freed in time).
    assert len(result["warnings"]) == 1, result["warnings"]
    lost = result["warnings"][0]
    assert "3 table(s) not written after transient write errors" in lost
    for epoch, step in ((0, 3), (1, 6), (2, 9)):  # (wandb's public path names its files)
        pattern = (
            rf"epoch {epoch} step {step} \(epoch-{epoch}\): OSError: \[Errno 28\] No space "
            r"left on device[^;]* \(still, when the run ended\)"
        )
        assert re.search(pattern, lost), lost
