"""Shared fixtures: real wandb in offline mode inside tmp_path, tiny seeded Keras models."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """With FASTEVALCB_SAFE=1 (wandb's public API for every write), tests of how the fast
    paths record (references, entry rows, the manifest file) do not apply."""
    if os.environ.get("FASTEVALCB_SAFE", "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    skip = pytest.mark.skip(reason="FASTEVALCB_SAFE=1: records copies, not fast-path references")
    for item in items:
        if "fast_path" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Offline, silent wandb whose every folder lives under tmp_path."""
    from tests.helpers.wandb_env import offline_wandb_env

    for var, value in offline_wandb_env(tmp_path).items():
        monkeypatch.setenv(var, value)
    return tmp_path


@pytest.fixture
def offline_run(wandb_env):
    """A real offline run; yields (run, reader) where reader() finishes it and reads it."""
    import wandb

    from fastevalcb.offline import OfflineRun

    run = wandb.init(
        project="fastevalcb-tests", dir=str(wandb_env / "run"), reinit="finish_previous"
    )

    def finish_and_read() -> OfflineRun:
        if wandb.run is not None:
            run.finish()
        return OfflineRun.latest(wandb_env / "run").wait_complete()

    yield run, finish_and_read
    if wandb.run is not None:
        run.finish()


@pytest.fixture
def tiny_classifier():
    """A seeded 3-class classifier on 16x16x3 uint8 images, plus its data."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (20, 16, 16, 3)).astype("uint8")
    y = rng.integers(0, 3, 20)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y


@pytest.fixture(scope="session")
def browser():
    """A headless system Chromium under Playwright, one for the session (the report's and
    the docs site's tests): Playwright's sync API refuses a second one while the first
    runs. Skip (fail under CI) without one."""
    from tests.helpers.report import find_chromium

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        missing = (
            "playwright (pip install playwright)"
            if sync_playwright is None
            else "a Chromium (apt-get install chromium)"
        )
        if in_ci:
            pytest.fail(f"the browser tests need {missing}; .ci/run installs it")
        pytest.skip(f"no browser: install {missing}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()
