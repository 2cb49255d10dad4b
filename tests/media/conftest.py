"""Fixtures for media tests: a real offline wandb run under tmp_path, synthetic batches."""

import os

import numpy as np
import pytest

from fastevalcb.types import PackedDetections


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """Real wandb, offline and silent, with every folder under tmp_path; yields a run."""
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
                "WANDB_ARTIFACT_DIR"):
        path = tmp_path / var.lower()
        path.mkdir()
        monkeypatch.setenv(var, str(path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    import wandb

    run = wandb.init(project="t", dir=os.environ["WANDB_DIR"])
    yield run
    if wandb.run is not None:
        run.finish()


@pytest.fixture
def det_batch():
    """4 RGB 48x64 images with padded predictions and ground truth (one image empty)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    xy = rng.uniform(-10, 60, (4, 6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 30, (4, 6, 2))], -1).astype(np.float32)
    boxes[0, 0] = [5, 5, 5, 20]  # zero-area
    scores = rng.uniform(0, 1, (4, 6)).astype(np.float32)
    scores[1, 2] = np.inf
    cls = rng.integers(0, 5, (4, 6))
    preds = PackedDetections.from_padded(boxes, cls, scores, counts=[6, 3, 0, 5],
                                         image_size=(48, 64), iou_threshold=0.5, num_classes=5)
    gt = PackedDetections.from_padded(boxes[:, ::-1], cls, None, counts=[2, 0, 1, 6],
                                      image_size=(48, 64))
    labels = {i: f"class {i} é" for i in range(5)}
    return images, preds, gt, labels
