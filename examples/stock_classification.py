"""wandb's documented WandbEvalCallback example, run unchanged on fastevalcb, offline.

The subclass below is W&B's own example (``add_ground_truth(self)`` with no ``logs``,
which crashes stock with a TypeError; ``use_artifact``, which crashes stock offline).
The only change is the import. Run:

    python examples/stock_classification.py

It trains a tiny CNN on generated shapes for 2 epochs with WANDB_MODE=offline and
prints the logged data table, the pred-table versions and their reference entries.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import wandb  # noqa: E402

from fastevalcb import WandbEvalCallback  # the one changed line  # noqa: E402
from fastevalcb.offline import OfflineRun  # noqa: E402
from fastevalcb.synthetic import CLASS_NAMES, make_shapes  # noqa: E402


class WandbClfEvalCallback(WandbEvalCallback):
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


def build_model(size: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--val-samples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where wandb/ goes (default: a temp dir)")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    train = make_shapes(args.samples, size=32, seed=0)
    val = make_shapes(args.val_samples, size=32, seed=1)
    run_dir = args.dir or tempfile.mkdtemp(prefix="fastevalcb-example-")
    run = wandb.init(project="fastevalcb-examples", dir=run_dir, config=vars(args))

    model = build_model(32)
    model.fit(
        train.images,
        train.labels,
        epochs=args.epochs,
        validation_data=(val.images, val.labels),
        verbose=2,
        callbacks=[
            WandbClfEvalCallback(
                validation_data=(val.images, val.labels),
                data_table_columns=["idx", "image", "label"],
                pred_table_columns=["epoch", "idx", "image", "label", "pred"],
            )
        ],
    )
    run.finish()

    record = OfflineRun.latest(run_dir).wait_complete()
    print(f"\noffline run: {record.run_dir}")
    for art in record.artifacts():
        refs = sum(e.is_reference for e in art.entries.values())
        print(
            f"  {art.qualified_name:<28} type={art.type:<10} aliases={sorted(art.aliases)} "
            f"stored={art.stored_bytes():>7} B  reference entries={refs}"
        )
    last = record.artifacts(type="evaluation")[-1]
    table = record.load_table(last, "eval_data")
    correct = sum(p == y for p, y in zip(table.column("pred"), table.column("label")))
    print(
        f"  {last.qualified_name} columns={table.columns} accuracy={correct / len(table.rows):.2f}"
    )
    print(f"sync later with: wandb sync {record.run_dir}")


if __name__ == "__main__":
    main()
