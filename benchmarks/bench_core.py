"""Core overhead: stock WandbEvalCallback vs fastevalcb's drop-in, same subclass, same run.

Two measurements, both in one process on the same inputs, offline:

1. **Pred-table build**: a 10,000-row table [epoch, id, image, label, pred] whose image
   cells come from the data table, filled the stock way (``wandb.Table.add_data`` row
   loop) and ours (``ColumnarTable.add_data`` row loop, and ``add_columns`` from arrays),
   then serialized into an artifact (stock copies every image file; ours references).
2. **Per-epoch callback time** for wandb's documented classification subclass (its code
   unchanged: ``model.predict`` + a Python ``add_data`` loop), stock vs ours, with the
   compiled forward pass over the same samples as the floor. Stock runs offline-compatibly:
   ``log_artifact`` in place of the ``use_artifact`` that crashes offline, and the data
   table itself as ``data_table_ref`` (``artifact.get`` is refused offline too).

    python benchmarks/bench_core.py            # N=10,000 64x64 (a few minutes)
    python benchmarks/bench_core.py --quick    # N=1,000

Writes benchmarks/results/core.json and core.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import wandb  # noqa: E402
from wandb.integration.keras import WandbEvalCallback as StockEvalCallback  # noqa: E402

from fastevalcb import (
    ColumnarTable,  # noqa: E402
    WandbEvalCallback,  # noqa: E402
)

RESULTS = Path(__file__).parent / "results"


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- 1. table build -----------------------------------------------------------------------
def bench_table_build(images, labels, preds):
    n = len(images)
    data = wandb.Table(columns=["id", "image", "label"], allow_mixed_types=True)
    for i in range(n):
        data.add_data(i, wandb.Image(images[i]), int(labels[i]))
    data_art = wandb.Artifact("bench_val", type="dataset")
    data_art.add(data, "val_data")
    cells = [row[1] for row in data.data]

    def stock_fill():
        table = wandb.Table(columns=["epoch", "id", "image", "label", "pred"])
        for i in range(n):
            table.add_data(0, i, cells[i], int(labels[i]), int(preds[i]))
        return table

    def ours_rows():
        table = ColumnarTable(["epoch", "id", "image", "label", "pred"])
        for i in range(n):
            table.add_data(0, i, cells[i], int(labels[i]), int(preds[i]))
        return table

    def ours_columns():
        table = ColumnarTable(["epoch", "id", "image", "label", "pred"])
        table.add_columns(
            {
                "epoch": np.zeros(n, np.int64),
                "id": np.arange(n),
                "image": cells,
                "label": labels,
                "pred": preds,
            }
        )
        return table

    from fastevalcb.tables import MediaIndex

    index = MediaIndex.from_table(data_art, data)

    def serialize(table, ours):
        art = wandb.Artifact("bench_pred", type="evaluation")
        if ours:
            index.add_references(art, table)
        art.add(table, "eval_data")
        return art

    res = {
        "rows": n,
        "stock_fill_s": timed(stock_fill),
        "ours_add_data_fill_s": timed(ours_rows),
        "ours_add_columns_fill_s": timed(ours_columns),
    }
    stock_table, our_table = stock_fill(), ours_columns()
    res["stock_serialize_s"] = timed(lambda: serialize(stock_table, False), repeats=1)
    res["ours_serialize_s"] = timed(lambda: serialize(our_table, True), repeats=1)
    stock_art, our_art = serialize(stock_table, False), serialize(our_table, True)
    res["stock_version_bytes"] = sum(
        e.size or 0 for e in stock_art.manifest.entries.values() if not e.ref
    )
    res["ours_version_bytes"] = sum(
        e.size or 0 for e in our_art.manifest.entries.values() if not e.ref
    )
    return res


# -- 2. per-epoch callback --------------------------------------------------------------------
def docs_callback(base):
    """wandb's documented example, defined on either base class."""

    class DocsClf(base):
        def __init__(self, validation_data, data_table_columns, pred_table_columns):
            super().__init__(data_table_columns, pred_table_columns)
            self.x, self.y = validation_data

        def add_ground_truth(self, logs=None):
            for idx, (image, label) in enumerate(zip(self.x, self.y)):
                self.data_table.add_data(idx, wandb.Image(image), label)

        def add_model_predictions(self, epoch, logs=None):
            preds = self.model.predict(self.x, verbose=0)
            preds = tf.argmax(preds, axis=-1)
            ref = self.data_table_ref
            for idx in ref.get_index():
                self.pred_table.add_data(
                    epoch, ref.data[idx][0], ref.data[idx][1], ref.data[idx][2], preds[idx]
                )

    return DocsClf


class OfflineStock(docs_callback(StockEvalCallback)):
    def log_data_table(self, name="val", type="dataset", table_name="val_data"):
        art = wandb.Artifact(name, type=type)
        art.add(self.data_table, table_name)
        wandb.run.log_artifact(art)  # use_artifact raises offline
        self.data_table_ref = self.data_table  # artifact.get is refused offline


def small_cnn(size):
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def bench_epoch(images, labels, model):
    cols = (["idx", "image", "label"], ["epoch", "idx", "image", "label", "pred"])
    step = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    batches = [tf.constant(images[i : i + 256]) for i in range(0, len(images), 256)]
    for b in batches[:2]:
        step(b)

    def forward():
        for b in batches:
            step(b).numpy()

    res = {"forward_s": timed(forward)}
    for label, cls in (("stock", OfflineStock), ("ours", docs_callback(WandbEvalCallback))):
        cb = cls((images, labels), *cols)
        cb.set_model(model)
        start = time.perf_counter()
        cb.on_train_begin()
        res[f"{label}_train_begin_s"] = time.perf_counter() - start
        epochs = []
        for epoch in range(2):
            start = time.perf_counter()
            cb.on_epoch_end(epoch, {})
            epochs.append(time.perf_counter() - start)
        res[f"{label}_epoch_s"] = min(epochs)
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    args = parser.parse_args()
    n = args.n or (1000 if args.quick else 10_000)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    preds = rng.integers(0, 10, n)

    run = wandb.init(project="fastevalcb-bench", dir=tempfile.mkdtemp(prefix="fastevalcb-bench-"))
    table = bench_table_build(images, labels, preds)
    keras.utils.set_random_seed(0)
    epoch = bench_epoch(images, labels, small_cnn(64))
    run.finish()

    machine = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
        "wandb": wandb.__version__,
    }
    result = {"machine": machine, "table_build": table, "epoch": epoch}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(result, indent=2))
    md = render(result)
    (RESULTS / "core.md").write_text(md)
    print(md)


def render(r):
    t, e, m = r["table_build"], r["epoch"], r["machine"]
    lines = [
        f"Machine: {m['cpu_count']} CPU cores ({m['machine']}), Python {m['python']}, "
        f"TF {m['tensorflow']}, wandb {m['wandb']}.",
        "",
        f"**Pred-table build, {t['rows']:,} rows** [epoch, id, image, label, pred]:",
        "",
        "| step | stock `wandb.Table` | fastevalcb | ratio |",
        "|---|---:|---:|---:|",
        f"| fill, `add_data` row loop | {t['stock_fill_s'] * 1e3:.0f} ms | "
        f"{t['ours_add_data_fill_s'] * 1e3:.0f} ms | {t['stock_fill_s'] / t['ours_add_data_fill_s']:.0f}x |",
        f"| fill, `add_columns` from arrays | — | {t['ours_add_columns_fill_s'] * 1e3:.0f} ms | "
        f"{t['stock_fill_s'] / t['ours_add_columns_fill_s']:.0f}x |",
        f"| serialize into the version's artifact | {t['stock_serialize_s'] * 1e3:.0f} ms | "
        f"{t['ours_serialize_s'] * 1e3:.0f} ms | {t['stock_serialize_s'] / t['ours_serialize_s']:.1f}x |",
        f"| bytes the version stores | {t['stock_version_bytes'] / 1e6:.2f} MB | "
        f"{t['ours_version_bytes'] / 1e6:.2f} MB | |",
        "",
        f"**Per-epoch time of wandb's documented subclass** ({t['rows']:,} samples 64x64, "
        "small CNN), same code on both bases:",
        "",
        "| | stock (offline-compatible) | fastevalcb | ratio |",
        "|---|---:|---:|---:|",
        f"| train begin (data table) | {e['stock_train_begin_s']:.2f} s | "
        f"{e['ours_train_begin_s']:.2f} s | {e['stock_train_begin_s'] / e['ours_train_begin_s']:.1f}x |",
        f"| epoch end (pred table) | {e['stock_epoch_s']:.2f} s | {e['ours_epoch_s']:.2f} s | "
        f"{e['stock_epoch_s'] / e['ours_epoch_s']:.1f}x |",
        f"| epoch end / compiled forward ({e['forward_s']:.2f} s) | "
        f"{e['stock_epoch_s'] / e['forward_s']:.1f}x | {e['ours_epoch_s'] / e['forward_s']:.1f}x | |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
