"""Failures show where users look: the run's summary and, for the user's own hooks, an alert.

Every test reads the offline run's ``.wandb`` log: the summary records and the alert
records wandb wrote (offline runs keep alerts in the log; ``wandb sync`` sends them).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import wandb

from fastevalcb import FastEvalWarning, WandbEvalCallback

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

wandb_removes_temp_dirs_early = pytest.mark.skipif(
    tuple(int(x) for x in wandb.__version__.split(".")[:2]) < (0, 21),
    reason="wandb < 0.21 keeps new_file()s in the artifact's temp dir until the artifact "
    "is collected (its own design): it cannot be removed earlier",
)


class BuggyPredictions(WandbEvalCallback):
    """A stock-style subclass whose ``add_model_predictions`` uses an undefined name, as one
    of W&B's own example notebooks did."""

    def __init__(self, x, y, **kwargs):
        super().__init__(["id", "label"], ["epoch", "id", "pred"], **kwargs)
        self.x, self.y = x, y

    def add_ground_truth(self, logs=None):
        for i, label in enumerate(self.y):
            self.data_table.add_data(i, int(label))

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0)  # noqa: F841
        for i in self.data_table_ref.get_index():
            self.pred_table.add_data(epoch, i, int(undefined_name[i]))  # noqa: F821


class BuggyGroundTruth(BuggyPredictions):
    def add_ground_truth(self, logs=None):
        raise KeyError("label_map")


def _alerts(log):
    return [r.alert for r in log.records if r.HasField("alert")]


def _fit(model, x, y, cb, epochs=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=10, callbacks=[cb], verbose=0)
    return history, [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]


def test_a_bug_in_add_model_predictions_is_in_the_summary_and_alerted_once(
    offline_run, tiny_classifier
):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = BuggyPredictions(x, y)
    history, warned = _fit(model, x, y, cb)
    assert len(history.history["loss"]) == 3  # fit went on
    assert len([m for m in warned if "was skipped" in m]) == 1  # the console: once
    log = read()

    summary = log.summary()
    assert summary["fastevalcb/failures"] == 3  # one per epoch
    assert summary["fastevalcb/last_failure"] == (
        "pred table: NameError: name 'undefined_name' is not defined"
    )
    alerts = _alerts(log)
    assert len(alerts) == 1, alerts  # once per run, not once per epoch
    assert alerts[0].level == "WARN"
    assert alerts[0].title == (
        "fastevalcb: BuggyPredictions.add_model_predictions raised; pred table not logged"
    )
    assert "NameError: name 'undefined_name' is not defined" in alerts[0].text
    assert log.artifacts(f"run_{run.id}_pred") == []


def test_a_bug_in_add_ground_truth_is_alerted(offline_run, tiny_classifier):
    _run, read = offline_run
    model, x, y = tiny_classifier
    _fit(model, x, y, BuggyGroundTruth(x, y), epochs=2)
    log = read()
    assert log.summary()["fastevalcb/failures"] == 1  # no pred table without a data table
    assert log.summary()["fastevalcb/last_failure"] == "data table: KeyError: 'label_map'"
    [alert] = _alerts(log)
    assert alert.title.startswith("fastevalcb: BuggyGroundTruth.add_ground_truth raised")


def test_a_failure_outside_the_users_hooks_is_in_the_summary_without_an_alert(
    offline_run, tiny_classifier
):
    _run, read = offline_run
    model, x, y = tiny_classifier

    class BadRows(BuggyPredictions):  # the hook is fine; logging its table is not
        def add_model_predictions(self, epoch, logs=None):
            for i in self.data_table_ref.get_index():
                self.pred_table.add_data(epoch, int(i), float(i))

        def log_pred_table(self, *args, **kwargs):
            raise OSError(5, "Input/output error")  # not transient here: not a task callback

    _fit(model, x, y, BadRows(x, y), epochs=2)
    log = read()
    assert log.summary()["fastevalcb/failures"] == 2
    assert "OSError: [Errno 5] Input/output error" in log.summary()["fastevalcb/last_failure"]
    assert _alerts(log) == []


def test_strict_still_raises_and_alerts_nothing(offline_run, tiny_classifier):
    _run, read = offline_run
    model, x, y = tiny_classifier
    with pytest.raises(NameError, match="undefined_name"):
        model.fit(
            x,
            y,
            epochs=2,
            batch_size=10,
            callbacks=[BuggyPredictions(x, y, strict=True)],
            verbose=0,
        )
    log = read()
    assert "fastevalcb/failures" not in log.summary()
    assert _alerts(log) == []


def test_a_clean_fit_records_no_failure(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier

    class Fine(BuggyPredictions):
        def add_model_predictions(self, epoch, logs=None):
            preds = np.argmax(self.model.predict(self.x, verbose=0), axis=-1)
            for i in self.data_table_ref.get_index():
                self.pred_table.add_data(epoch, int(i), int(preds[i]))

    _fit(model, x, y, Fine(x, y), epochs=2)
    log = read()
    assert "fastevalcb/failures" not in log.summary()
    assert len(log.artifacts(f"run_{run.id}_pred")) == 2
    assert wandb.run is None


@wandb_removes_temp_dirs_early
def test_no_temp_dir_is_left_to_the_garbage_collector(offline_run, tiny_classifier):
    import gc

    run, read = offline_run
    model, x, y = tiny_classifier
    names = {0: "a", 1: "b", 2: "c"}

    class Masks(BuggyPredictions):  # masks with class labels: each version has a class set
        def add_ground_truth(self, logs=None):
            for i, label in enumerate(self.y):
                self.data_table.add_data(i, int(label))

        def add_model_predictions(self, epoch, logs=None):
            for i in self.data_table_ref.get_index():
                mask = np.full((16, 16), int(self.y[i]), np.uint8)
                image = wandb.Image(
                    self.x[i], masks={"p": {"mask_data": mask, "class_labels": names}}
                )
                self.pred_table.add_data(epoch, int(i), image)

    gc.collect()  # what earlier tests left is not this fit's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, batch_size=10, callbacks=[Masks(x, y)], verbose=0)
        gc.collect()
    log = read()
    assert len(log.artifacts(f"run_{run.id}_pred")) == 3
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


@wandb_removes_temp_dirs_early
def test_a_task_callbacks_chart_tables_leave_no_temp_dir(offline_run, tiny_classifier):
    """wandb writes each table run.log records (the metric charts') through a run_table
    artifact with a temp dir of its own, kept in wandb's instance cache: removed once
    staged, not left to the collector whenever the cache lets the artifact go."""
    import os

    from fastevalcb import ClassificationEvalCallback
    from fastevalcb.tables._wandb import artifact_cache_by_client_id

    run, read = offline_run
    model, x, y = tiny_classifier
    cb = ClassificationEvalCallback((x, y), ["a", "b", "c"], verbose=0)
    model.fit(x, y, epochs=2, batch_size=10, callbacks=[cb], verbose=0)
    cb.flush()
    charts = [a for a in list(artifact_cache_by_client_id().values()) if a.type == "run_table"]
    assert charts, "no run_table artifact in wandb's cache: the charts were not logged"
    left = [a._tmp_dir.name for a in charts if a._tmp_dir and os.path.exists(a._tmp_dir.name)]
    assert left == []
    log = read()
    assert len(log.artifacts(f"run_{run.id}_pred")) == 2
    assert any("confusion_matrix_table" in key for key in log.summary()), list(log.summary())
