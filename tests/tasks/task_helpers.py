"""Helpers of the task callback tests (fixtures live in conftest.py)."""

from __future__ import annotations

import keras


class EpochRecorder(keras.callbacks.Callback):
    """Records which epochs began, to prove an error came before epoch 1."""

    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def pred_versions(run_log, run_id):
    return run_log.artifacts(f"run_{run_id}_pred")


def metric_definitions(run_log) -> dict[str, str]:
    """``{metric name or glob: step metric}`` from the run's define_metric records."""
    out = {}
    for record in run_log.records:
        if record.HasField("metric"):
            name = record.metric.name or record.metric.glob_name
            out[name] = record.metric.step_metric
    return out
