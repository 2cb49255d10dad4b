"""A synthetic "shapes" dataset generated in code: no downloads, deterministic by seed.

Each image holds one coloured shape on a noisy background: class 0 rectangle,
1 ellipse, 2 triangle. Labels, boxes and masks come with it, so classification,
detection and segmentation examples and tests all share one source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("rectangle", "ellipse", "triangle")


@dataclass(frozen=True)
class Shapes:
    """images `(N, H, W, 3)` uint8; labels `(N,)` int32; boxes `(N, 4)` float32 xyxy
    pixels; masks `(N, H, W)` uint8 with 0 background and class id + 1 on the shape."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES


def make_shapes(n: int, size: int = 32, seed: int = 0) -> Shapes:
    """Generate ``n`` images of ``size`` x ``size`` pixels."""
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, len(CLASS_NAMES), n).astype(np.int32)
    boxes = np.empty((n, 4), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        w, h = rng.uniform(0.3, 0.7, 2) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        x1, y1 = x0 + w, y0 + h
        if labels[i] == 0:
            inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        elif labels[i] == 1:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            inside = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
        else:  # apex at top centre, base along the bottom edge of the box
            t = (yy - y0) / h
            inside = (t >= 0) & (t < 1) & (np.abs(xx - (x0 + x1) / 2) <= t * w / 2)
        colour = rng.integers(120, 256, 3, dtype=np.uint8)
        images[i][inside] = colour
        masks[i][inside] = labels[i] + 1
        ys, xs = np.nonzero(inside)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (x0, y0, x1, y1)
    return Shapes(images=images, labels=labels, boxes=boxes, masks=masks)
