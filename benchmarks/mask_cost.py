"""What a predicted mask costs the host, by how it looks: noise vs blobs.

``bench_scale``'s near-free segmentation model (a 1x1 convolution with random weights)
predicts per-pixel noise; a trained model predicts blobs with a few class edges a row.
The two per-mask costs that depend on it, on one thread, best of 8 over 32 maps:
the predicted mask's PNG (``encode_png(mask, 1, row_filter="none")``, as
``SegmentationEvalCallback`` stages it) and the per-class counts
(``kernels.segmentation_counts`` against the ground truth).

Run: ``python benchmarks/mask_cost.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale  # noqa: E402

from fastevalcb.kernels import segmentation_counts  # noqa: E402
from fastevalcb.media.png import encode_png  # noqa: E402

N = 32


def best_us(fn) -> float:
    times = []
    for _ in range(8):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return min(times) / N * 1e6


def blobs(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Blob-shaped predictions: the ground truth, shifted, with a few wrong rectangles."""
    rng = np.random.default_rng(seed)
    pred = np.roll(truth, (3, 2), axis=(1, 2)).copy()
    for i in range(len(pred)):
        for _ in range(4):
            y, x = rng.integers(0, 200, 2)
            h, w = rng.integers(10, 60, 2)
            pred[i, y : y + h, x : x + w] = rng.integers(0, 21)
    return pred


def main() -> None:
    setup = bench_scale.segmentation(N)
    truth = np.asarray(setup["y"][:N], np.uint8)
    noise = setup["model"].predict(setup["x"][:N], verbose=0).argmax(-1).astype(np.uint8)
    segmentation_counts(truth[:1], truth[:1], 21)  # compile / load the kernel
    print(
        "| predicted masks (256², 21 classes) | class edges / row | PNG bytes | PNG µs | "
        "counts µs |\n|---|---:|---:|---:|---:|"
    )
    for name, pred in (("near-free model (noise)", noise), ("blobs (trained-like)", blobs(truth))):
        edges = np.count_nonzero(np.diff(pred, axis=2), axis=2).mean()
        size = np.mean([len(encode_png(m, 1, row_filter="none")) for m in pred])
        png = best_us(lambda: [encode_png(m, 1, row_filter="none") for m in pred])
        counts = best_us(lambda: segmentation_counts(pred, truth, 21))
        print(f"| {name} | {edges:.1f} | {size:,.0f} | {png:.0f} | {counts:.0f} |")


if __name__ == "__main__":
    main()
