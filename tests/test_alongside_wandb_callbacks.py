"""Alongside W&B's own Keras callbacks in one fit: nothing dropped, no step warnings.

One ``fit`` with ``WandbMetricsLogger(log_freq=5)``, ``WandbModelCheckpoint``, our drop-in
base logging every 2 batches and a task callback. The offline run must hold every metrics
row, every checkpoint and every pred-table version of both of ours, and neither the console
nor wandb's own logs may say a step went backwards ("step must only increase": wandb drops
such rows).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import wandb
from wandb.integration.keras import WandbMetricsLogger, WandbModelCheckpoint

from fastevalcb import ClassificationEvalCallback, WandbEvalCallback
from fastevalcb.offline import OfflineRun
from fastevalcb.synthetic import make_shapes

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

EPOCHS, BATCH = 3, 8


@pytest.fixture
def loud_run(wandb_env, monkeypatch):
    """An offline run that is not silent: wandb prints its step warnings (stderr)."""
    monkeypatch.setenv("WANDB_SILENT", "false")
    run = wandb.init(
        project="alongside",
        dir=str(wandb_env / "run"),
        reinit="finish_previous",
        settings=wandb.Settings(silent=False),
    )

    def finish_and_read() -> OfflineRun:
        if wandb.run is not None:
            run.finish()
        return OfflineRun.latest(wandb_env / "run").wait_complete()

    yield run, finish_and_read
    if wandb.run is not None:
        run.finish()


class DropIn(WandbEvalCallback):
    def __init__(self, x, y, **kwargs):
        super().__init__(["id", "image", "label"], ["epoch", "id", "image", "pred"], **kwargs)
        self.x, self.y = x, y

    def add_ground_truth(self, logs=None):
        for i in range(len(self.x)):
            self.data_table.add_data(i, wandb.Image(self.x[i]), int(self.y[i]))

    def add_model_predictions(self, epoch, logs=None):
        preds = np.argmax(self.model.predict(self.x, verbose=0), axis=-1)
        for i in self.data_table_ref.get_index():
            self.pred_table.add_data(epoch, int(i), self.data_table_ref.data[i][1], int(preds[i]))


def test_one_fit_with_wandbs_keras_callbacks_loses_nothing(loud_run, tmp_path, capfd, caplog):
    run, read = loud_run
    shapes = make_shapes(40, 16, seed=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = shapes.images, shapes.labels
    steps = len(x) // BATCH  # 5 a epoch
    drop_in = DropIn(x[:8], y[:8], log_every_n_batches=2)
    task = ClassificationEvalCallback((x[:16], y[:16]), shapes.class_names, verbose=0)
    callbacks = [
        WandbMetricsLogger(log_freq=5),
        WandbModelCheckpoint(str(tmp_path / "ckpt.keras"), save_freq="epoch"),
        drop_in,
        task,
    ]
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, callbacks=callbacks, verbose=0)
    log = read()

    history = log.history()
    batch_rows = [r for r in history if "batch/batch_step" in r]
    assert [r["batch/batch_step"] for r in batch_rows] == list(
        range(0, EPOCHS * steps, 5)
    )  # every 5th batch (stock counts from 0), all kept
    assert all("batch/loss" in r for r in batch_rows)
    assert [r["epoch/epoch"] for r in history if "epoch/loss" in r] == list(range(EPOCHS))
    assert [r["eval/epoch"] for r in history if "eval/accuracy" in r] == list(range(EPOCHS))

    checkpoints = [a for a in log.artifacts() if a.type == "model"]
    assert len(checkpoints) == EPOCHS, [a.qualified_name for a in log.artifacts()]
    assert all(a.stored_bytes() > 0 for a in checkpoints)

    pred = log.artifacts(f"run_{run.id}_pred")
    # Both callbacks write run_<id>_pred versions: the drop-in every 2 batches (steps 2, 4,
    # 6, 8, 12, 14; 10 and 15 are left to the epoch-end log) and each epoch end, and the
    # task callback at each epoch end.
    drop_in_steps = sorted(v["global_step"] for v in drop_in.logged_versions)
    assert drop_in_steps == [2, 4, 5, 6, 8, 10, 12, 14, 15]
    assert len(pred) == len(drop_in.logged_versions) + len(task.logged_versions)
    assert sorted(v.metadata["global_step"] for v in pred) == sorted(
        [v["global_step"] for v in drop_in.logged_versions]
        + [v["global_step"] for v in task.logged_versions]
    )

    assert _step_warnings(log, capfd, caplog) == []


_STEP_WARNING = re.compile(
    r"less than the current step|steps must be monotonically increasing"
    r"|step must only increase",
    re.IGNORECASE,
)


def _step_warnings(log, capfd, caplog) -> list[str]:
    """wandb's "step went backwards" warnings: on the console, or (silent mode, set once per
    process) through its fallback logger, or in the run's own logs."""
    out, err = capfd.readouterr()
    texts = [out, err, caplog.text] + [p.read_text() for p in log.run_dir.glob("*/*.log")]
    return [line for text in texts for line in text.splitlines() if _STEP_WARNING.search(line)]


def test_the_step_warning_pattern_matches_wandbs_warning(tmp_path):
    """A fresh process logs a step backwards: the pattern finds wandb's own words. (In a
    long test process wandb may not repeat the console warning, so the fit test's exact
    history rows are what proves nothing was dropped; this check is a second witness.)"""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path))
    code = (
        "import wandb; run = wandb.init(project='steps'); run.log({'a': 1}, step=5); "
        "run.log({'a': 2}, step=3); run.finish()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert any(_STEP_WARNING.search(line) for line in proc.stderr.splitlines()), proc.stderr
