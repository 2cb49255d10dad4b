"""SegmentationEvalCallback on generated shapes, offline: no account, no downloads.

    python examples/segmentation.py [--epochs 3] [--dir out/]

Trains a tiny fully convolutional net to segment shapes (background + 3 classes),
logging images with ground-truth masks once and predicted masks with per-class IoU
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

from fastevalcb import SegmentationEvalCallback  # noqa: E402
from fastevalcb.synthetic import CLASS_NAMES, make_shapes  # noqa: E402

NAMES = ["background", *CLASS_NAMES]  # shapes masks: 0 background, class id + 1 on the shape


def build_model(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", dilation_rate=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", dilation_rate=4, activation="relu")(x)
    logits = keras.layers.Conv2D(len(NAMES), 1)(x)
    model = keras.Model(inputs, logits)
    model.compile(
        keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def main() -> None:
    args = parse_args(__doc__, samples=512, val_samples=64, epochs=4)

    keras.utils.set_random_seed(0)
    train = make_shapes(args.samples, size=32, seed=0)
    val = make_shapes(args.val_samples, size=32, seed=1)
    run = wandb.init(project="fastevalcb-examples", dir=args.dir, config=vars(args))

    eval_callback = SegmentationEvalCallback((val.images, val.masks), NAMES, batch_size=32)
    model = build_model(32)
    model.fit(train.images, train.masks, epochs=args.epochs, verbose=2, callbacks=[eval_callback])
    run.finish()
    report(args.dir, ["id", "pixel_accuracy", "mean_iou", *(f"iou/{n}" for n in NAMES)])


if __name__ == "__main__":
    main()
