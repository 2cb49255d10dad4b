"""ClassificationEvalCallback on generated shapes, offline: no account, no downloads.

    python examples/classification.py [--epochs 3] [--dir out/]

Trains a small CNN to tell rectangles, ellipses and triangles apart for a few epochs,
logging a data table once and a prediction table (pred, confidence, correct, top-k)
per epoch, then reads the offline run back and prints what it recorded.
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import wandb  # noqa: E402
from _common import parse_args, report  # noqa: E402

from fastevalcb import ClassificationEvalCallback  # noqa: E402
from fastevalcb.synthetic import CLASS_NAMES, make_shapes  # noqa: E402


def build_model(size: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASS_NAMES)),  # logits
        ]
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return model


def main() -> None:
    args = parse_args(__doc__, samples=1024, val_samples=256, epochs=3)

    keras.utils.set_random_seed(0)
    train = make_shapes(args.samples, size=32, seed=0)
    val = make_shapes(args.val_samples, size=32, seed=1)
    run = wandb.init(project="fastevalcb-examples", dir=args.dir, config=vars(args))

    eval_callback = ClassificationEvalCallback(
        (val.images, val.labels), CLASS_NAMES, top_k=2, batch_size=64
    )
    model = build_model(32)
    model.fit(train.images, train.labels, epochs=args.epochs, verbose=2, callbacks=[eval_callback])
    run.finish()
    report(args.dir, ["id", "label", "pred", "confidence", "correct", "top_k"])


if __name__ == "__main__":
    main()
