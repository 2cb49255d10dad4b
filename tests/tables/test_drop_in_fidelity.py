"""What stock ``WandbEvalCallback`` records besides its tables, the drop-in records too."""

from __future__ import annotations

import pytest
import wandb

from fastevalcb import ClassificationEvalCallback, WandbEvalCallback


def _features(log):
    """The telemetry features the run recorded."""
    found = set()
    for record in log.records:
        if record.HasField("telemetry"):
            feature = record.telemetry.feature
            found |= {field.name for field, value in feature.ListFields() if value}
    return found


class _Stock(WandbEvalCallback):
    def __init__(self, x, y):
        super().__init__(["idx", "image", "label"], ["epoch", "idx", "label", "pred"])
        self.x, self.y = x, y

    def add_ground_truth(self, logs=None):
        for i, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(i, wandb.Image(image), int(label))

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0).argmax(1)
        for i in self.data_table_ref.get_index():
            self.pred_table.add_data(epoch, i, int(self.y[int(i)]), int(preds[int(i)]))


def test_the_drop_in_records_the_eval_callback_telemetry_feature(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    model.fit(x, y, epochs=1, batch_size=10, callbacks=[_Stock(x[:4], y[:4])], verbose=0)
    assert "keras_wandb_eval_callback" in _features(read())


@pytest.mark.slow
def test_a_task_callback_records_it_too(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = ClassificationEvalCallback((x[:6], y[:6]), ["a", "b", "c"], verbose=0)
    model.fit(x, y, epochs=1, batch_size=10, callbacks=[cb], verbose=0)
    assert "keras_wandb_eval_callback" in _features(read())


@pytest.mark.slow
def test_a_run_without_it_records_no_such_feature(offline_run, tiny_classifier):
    """The reader sees features, not everything: a plain fit records none of ours."""
    run, read = offline_run
    model, x, y = tiny_classifier
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    assert "keras_wandb_eval_callback" not in _features(read())
