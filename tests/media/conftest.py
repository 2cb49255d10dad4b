"""Fixtures for media tests: a real offline wandb run under tmp_path, synthetic batches."""

import numpy as np
import pytest

from fastevalcb.types import PackedDetections


@pytest.fixture
def wandb_offline(offline_run):
    """The root ``offline_run`` fixture's live run (offline, silent, under tmp_path)."""
    run, _ = offline_run
    return run


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
    preds = PackedDetections.from_padded(
        boxes,
        cls,
        scores,
        counts=[6, 3, 0, 5],
        image_size=(48, 64),
        iou_threshold=0.5,
        num_classes=5,
    )
    gt = PackedDetections.from_padded(
        boxes[:, ::-1], cls, None, counts=[2, 0, 1, 6], image_size=(48, 64)
    )
    labels = {i: f"class {i} é" for i in range(5)}
    return images, preds, gt, labels
