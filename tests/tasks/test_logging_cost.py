"""Each version's own cost in the run (``fastevalcb/<prefix>/*``), read back offline."""

from __future__ import annotations

import time

import keras
import pytest

from fastevalcb import ClassificationEvalCallback
from tests.helpers.tasks import metric_definitions

KEYS = (
    "train_thread_s",
    "train_thread_us_per_sample",
    "worker_wall_s",
    "worker_cpu_s",
    "worker_cpu_us_per_sample",
    "queue_s",
    "written_s",
)


class BusyWorker(keras.callbacks.Callback):
    """At the end of epoch ``at`` (listed before the callback), puts a job that sleeps
    ``seconds`` in the callback's worker queue: the version queues behind it."""

    def __init__(self, cb, at: int, seconds: float):
        super().__init__()
        self.cb, self.at, self.seconds = cb, at, seconds

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            self.cb._worker.flush()  # the data table and earlier versions are out of the way
            self.cb._worker.submit(time.sleep, self.seconds)


def test_each_version_records_its_cost_at_its_step(offline_run, shapes, classifier):
    run, read = offline_run
    cb = ClassificationEvalCallback(
        (shapes.images[:20], shapes.labels[:20]),
        shapes.class_names,
        batch_size=8,
        log_every_n_batches=2,
        verbose=0,
    )
    busy = BusyWorker(cb, at=1, seconds=0.6)
    started = time.perf_counter()
    classifier.fit(
        shapes.images, shapes.labels, epochs=2, batch_size=16, callbacks=[busy, cb], verbose=0
    )
    fit_s = time.perf_counter() - started
    log = read()

    rows = [r for r in log.history() if "eval/accuracy" in r]
    # Per-N-batch and epoch-end versions, each with its cost in its own metrics row.
    assert [r["eval/global_step"] for r in rows] == [2, 3, 4, 6]
    for row, timing in zip(rows, cb.timings, strict=True):
        cost = {k: row[f"fastevalcb/eval/{k}"] for k in KEYS}
        assert cost["train_thread_s"] > 0 and cost["worker_wall_s"] > 0
        assert 0 < cost["worker_cpu_s"] <= cost["worker_wall_s"] + 0.01  # one thread's CPU
        assert cost["train_thread_s"] <= timing["eval_s"] <= cost["written_s"]
        assert cost["written_s"] <= timing["logged_s"]
        assert cost["worker_cpu_us_per_sample"] == pytest.approx(cost["worker_cpu_s"] / 20 * 1e6)
        assert cost["train_thread_us_per_sample"] == pytest.approx(
            cost["train_thread_s"] / 20 * 1e6
        )
    # The epoch-1 version waited behind the 0.6 s job (which may itself wait for the pass).
    last = rows[-1]
    assert 0.3 < last["fastevalcb/eval/queue_s"] < last["fastevalcb/eval/written_s"]
    assert all(r["fastevalcb/eval/queue_s"] >= 0 for r in rows)
    assert metric_definitions(log)["fastevalcb/eval/*"] == "eval/global_step"

    total = log.summary()["fastevalcb/eval/fit_added_s"]
    logs_s = sum(r["fastevalcb/eval/train_thread_s"] for r in rows)
    assert logs_s < total < fit_s


def test_two_callbacks_keep_their_costs_apart(offline_run, shapes, classifier):
    """Keys and totals are per ``metrics_prefix``: two callbacks never overwrite each other."""
    run, read = offline_run
    kwargs = {"batch_size": 8, "verbose": 0}
    first = ClassificationEvalCallback(
        (shapes.images[:8], shapes.labels[:8]), shapes.class_names, **kwargs
    )
    second = ClassificationEvalCallback(
        (shapes.images[:16], shapes.labels[:16]),
        shapes.class_names,
        metrics_prefix="val2",
        data_artifact_name="val2",
        **kwargs,
    )
    classifier.fit(
        shapes.images, shapes.labels, epochs=1, batch_size=16, callbacks=[first, second], verbose=0
    )
    log = read()
    rows = log.history()
    mine = [r for r in rows if "eval/accuracy" in r]
    theirs = [r for r in rows if "val2/accuracy" in r]
    assert len(mine) == len(theirs) == 1
    assert "fastevalcb/val2/queue_s" not in mine[0] and "fastevalcb/eval/queue_s" not in theirs[0]
    assert metric_definitions(log)["fastevalcb/val2/*"] == "val2/global_step"
    summary = log.summary()
    assert summary["fastevalcb/eval/fit_added_s"] > 0 and summary["fastevalcb/val2/fit_added_s"] > 0
