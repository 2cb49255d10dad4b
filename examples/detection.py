"""DetectionEvalCallback on generated shapes, offline: no account, no downloads.

    python examples/detection.py [--epochs 3] [--dir out/]

Trains a toy one-box detector (a CNN regressing the shape's box and its class) and logs
images with ground-truth boxes once and predicted boxes with TP/FP, precision, recall and
AP50 per epoch. The model's outputs ({"box": (B, 4), "cls": (B, 3)}) are not the padded
detection layout, so a small ``adapter`` maps them; then the offline run is read back.
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import wandb  # noqa: E402
from _common import parse_args, report  # noqa: E402

from fastevalcb import DetectionEvalCallback  # noqa: E402
from fastevalcb.synthetic import CLASS_NAMES, make_shapes  # noqa: E402

SIZE = 64


def build_model() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for filters in (16, 32, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = {
        "box": keras.layers.Dense(4, activation="sigmoid", name="box")(x),  # rel_xyxy
        "cls": keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="cls")(x),
    }
    model = keras.Model(inputs, outputs)
    model.compile("adam", {"box": "mse", "cls": "sparse_categorical_crossentropy"})
    return model


def adapter(outputs: dict) -> dict:
    """One box per image -> the padded layout: (B, 1, 4) boxes, (B, 1) scores and classes."""
    return {
        "boxes": outputs["box"][:, None, :],
        "scores": outputs["cls"].max(axis=1)[:, None],
        "classes": outputs["cls"].argmax(axis=1)[:, None],
    }


def main() -> None:
    args = parse_args(__doc__, samples=1024, val_samples=128, epochs=3)

    keras.utils.set_random_seed(0)
    train = make_shapes(args.samples, size=SIZE, seed=0)
    val = make_shapes(args.val_samples, size=SIZE, seed=1)
    run = wandb.init(project="fastevalcb-examples", dir=args.dir, config=vars(args))

    targets = {"boxes": val.boxes[:, None, :] / SIZE, "labels": val.labels[:, None]}
    eval_callback = DetectionEvalCallback(
        (val.images, targets), CLASS_NAMES, box_format="rel_xyxy", adapter=adapter, batch_size=64
    )
    model = build_model()
    model.fit(
        train.images,
        {"box": train.boxes / SIZE, "cls": train.labels},
        epochs=args.epochs,
        verbose=2,
        callbacks=[eval_callback],
    )
    run.finish()
    report(args.dir, ["id", "num_predictions", "tp", "fp", "fn", "ap50"])


if __name__ == "__main__":
    main()
