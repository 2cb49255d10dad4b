"""Helpers of the report tests: real offline runs of the task callbacks, page driving."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.wandb_env import offline_wandb_env

SIZE = 32
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _callback(task: str):
    import keras

    from fastevalcb import (
        ClassificationEvalCallback,
        DetectionEvalCallback,
        SegmentationEvalCallback,
    )
    from fastevalcb.synthetic import CLASS_NAMES, make_shapes

    keras.utils.set_random_seed(0)
    val = make_shapes(24, SIZE, seed=1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    if task == "classification":
        pooled = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(3)(pooled))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        cb = ClassificationEvalCallback((val.images, val.labels), CLASS_NAMES, top_k=2)
        return model, cb, val.images, val.labels
    if task == "segmentation":
        model = keras.Model(inputs, keras.layers.Conv2D(4, 1)(x))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        names = ("background", *CLASS_NAMES)
        cb = SegmentationEvalCallback((val.images, val.masks), names)
        return model, cb, val.images, val.masks
    flat = keras.layers.Flatten()(keras.layers.MaxPooling2D(4)(x))
    model = keras.Model(
        inputs,
        {
            "box": keras.layers.Dense(4, activation="sigmoid", name="box")(flat),
            "cls": keras.layers.Dense(3, activation="softmax", name="cls")(flat),
        },
    )
    model.compile("adam", {"box": "mse", "cls": "sparse_categorical_crossentropy"})

    def adapter(out):
        return {
            "boxes": out["box"][:, None, :] * SIZE,
            "scores": out["cls"].max(axis=1)[:, None],
            "classes": out["cls"].argmax(axis=1)[:, None],
        }

    targets = {"boxes": val.boxes[:, None, :], "classes": val.labels[:, None]}
    cb = DetectionEvalCallback(
        (val.images, targets), CLASS_NAMES, adapter=adapter, score_threshold=0.0
    )
    return model, cb, val.images, {"box": val.boxes / SIZE, "cls": val.labels}


def make_run(task: str, root: Path):
    """Fit a tiny model 2 epochs with the task's callback into an offline run under root."""
    import wandb

    from fastevalcb.offline import OfflineRun

    with pytest.MonkeyPatch.context() as mp:
        for key, value in offline_wandb_env(root).items():
            mp.setenv(key, value)
        run = wandb.init(
            project="fastevalcb-report-tests", dir=str(root / "run"), reinit="finish_previous"
        )
        model, cb, x, y = _callback(task)
        model.fit(x, y, epochs=2, batch_size=8, callbacks=[cb], verbose=0)
        run.finish()
        return OfflineRun.latest(root / "run").wait_complete()


def find_chromium() -> str | None:
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    return None


def open_report(page, html: Path) -> None:
    """Load a report from file:// and wait for its first render."""
    page.goto(html.resolve().as_uri())
    page.wait_for_function("document.body.dataset.ready", timeout=20_000)
    assert page.errors == []


def rendered(page, before: str) -> None:
    """Wait for the render after an action (the ready token changes)."""
    page.wait_for_function(f"document.body.dataset.ready !== {before!r}", timeout=10_000)


def ready(page) -> str:
    return page.evaluate("document.body.dataset.ready")
