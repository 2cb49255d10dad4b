"""Subclasses of the drop-in ``WandbEvalCallback`` written the way wandb documents them.

Shared by the drop-in's tests on Keras 3 and tf_keras and by the multi-worker script.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import wandb

from fastevalcb import WandbEvalCallback


class DocsClfCallback(WandbEvalCallback):
    """wandb's documented example, verbatim but for the import (no `logs` parameters)."""

    def __init__(self, validation_data, data_table_columns, pred_table_columns):
        super().__init__(data_table_columns, pred_table_columns)
        self.x = validation_data[0]
        self.y = validation_data[1]

    def add_ground_truth(self):
        for idx, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(idx, wandb.Image(image), label)

    def add_model_predictions(self, epoch):
        preds = self.model.predict(self.x, verbose=0)
        preds = tf.argmax(preds, axis=-1)

        data_table_ref = self.data_table_ref
        table_idxs = data_table_ref.get_index()

        for idx in table_idxs:
            pred = preds[idx]
            self.pred_table.add_data(
                epoch,
                data_table_ref.data[idx][0],
                data_table_ref.data[idx][1],
                data_table_ref.data[idx][2],
                pred,
            )


class LogsClfCallback(WandbEvalCallback):
    """Stock's abstract signatures (with `logs`), using `data_table_ref[idx][col]`."""

    def __init__(self, x, y, **kwargs):
        super().__init__(
            ["id", "image", "label"], ["epoch", "id", "image", "label", "pred"], **kwargs
        )
        self.x, self.y = x, y
        self.seen_logs = []

    def add_ground_truth(self, logs=None):
        self.seen_logs.append(("gt", logs))
        self.data_table.add_columns(
            {
                "id": np.arange(len(self.x)),
                "image": [wandb.Image(i) for i in self.x],
                "label": self.y,
            }
        )

    def add_model_predictions(self, epoch, logs=None):
        self.seen_logs.append(("pred", epoch, logs))
        preds = np.argmax(self.model(self.x, training=False), axis=-1)
        ref = self.data_table_ref
        for idx in ref.get_index():
            self.pred_table.add_data(
                epoch, ref[idx]["id"], ref[idx]["image"], ref[idx]["label"], int(preds[idx])
            )
