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


class Diverge(keras.callbacks.Callback):
    """Sets the model's last layer to NaN at the end of epoch ``at`` (list it before ours)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            layer = self.model.layers[-1]
            layer.set_weights([w * float("nan") for w in layer.get_weights()])


def fast_eval_warnings(caught) -> list[str]:
    from fastevalcb import FastEvalWarning

    return [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
