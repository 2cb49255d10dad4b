"""Cells of every kind a task table holds, shared by the staging and streamed-table tests."""

from __future__ import annotations

import functools

import numpy as np

from fastevalcb.media import build_images
from fastevalcb.types import PackedDetections


def mixed_batches():
    """Two batches of every kind of cell a task table holds, NaNs and boxes included."""
    rng = np.random.default_rng(3)
    labels = {0: "a", 1: "b"}
    batches = []
    for b in range(2):
        pixels = rng.integers(0, 255, (3, 6, 8, 3), dtype=np.uint8)
        det = PackedDetections(
            [0, 1, 1, 3], [[1, 1, 4, 4], [0, 0, 2, 3], [2, 2, 5, 5]], [1, 0, 1], [0.5, 0.25, 0.75]
        )
        scores = [[0.5, 0.1 * b], [0.25, 0.5], [1.0, 0.0]]
        batches.append(
            {
                "id": [3 * b + i for i in range(3)],
                "score": [0.5, float("nan"), 2.0] if b else [0.5, 1.5, 2.0],
                "name": ["x", "y", "z"],
                "ok": [True, False, True],
                "top": [["a", "b"]] * 3,
                "scores": scores,
                "image": pixels,
                "boxes": (pixels, det, labels),
                "masks": (
                    pixels,
                    (np.arange(3 * 6 * 8) % 2).astype(np.uint8).reshape(3, 6, 8),
                    labels,
                ),
            }
        )
    return batches


def batch_cells(batch, stager=None, compress_level=None):
    """The batch's media cells. PIL encoding by default: the tables compared are built from
    two encodes of the same pixels, and only zlib's output is byte-for-byte reproducible.
    ISA-L's level 1 (our default) now and then deflates the same input to other bytes, both
    decoding to it (seen in CI, and in a stress run: threads encoding while others churn
    the heap); the fast path's pixels are checked in the test below."""
    pixels, det, labels = batch["boxes"]
    _, masks, _ = batch["masks"]
    build = functools.partial(build_images, stager=stager, compress_level=compress_level)
    return {
        **batch,
        "image": build(batch["image"]),
        "boxes": build(pixels, boxes={"predictions": det}, class_labels=labels),
        "masks": build(pixels, masks={"truth": masks}, boxes={"b": det}, class_labels=labels),
    }
