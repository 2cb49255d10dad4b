"""What the per-sample ``finite`` flag costs segmentation's compiled step.

Segmentation turns logits into uint8 class maps inside the step, so NaN/inf scores are
flagged there too (``tf.math.is_finite`` reduced per sample). This times the step with
and without the flag on the same logits, interleaved, in one process.

    python benchmarks/bench_finite_flags.py            # (32, 128, 128, 21) logits
    python benchmarks/bench_finite_flags.py --reps 50
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fastevalcb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--shape", type=int, nargs=4, default=(32, 128, 128, 21))
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from _machine import cpu_name

    import fastevalcb
    from fastevalcb.tasks.segmentation import _class_maps

    assert isinstance(_class_maps("auto", 2)(tf.zeros((1, 2, 2, 2))), dict), fastevalcb.__file__

    logits = tf.constant(np.random.default_rng(0).normal(size=args.shape).astype("float32"))
    with_flags = tf.function(_class_maps("auto", args.shape[-1]))
    maps_only = tf.function(lambda out: tf.cast(tf.argmax(out, axis=-1), tf.uint8))
    times: dict[str, list[float]] = {"class maps": [], "class maps + finite": []}
    for fn in (maps_only, with_flags):
        fn(logits)  # trace
    for _ in range(args.reps):
        for name, fn in (("class maps", maps_only), ("class maps + finite", with_flags)):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn(logits))
            times[name].append(time.perf_counter() - start)
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, tf {tf.__version__}, logits {tuple(args.shape)}")
    base = float(np.median(times["class maps"]))
    for name, values in times.items():
        med = float(np.median(values))
        print(
            f"  {name:<22} median {med * 1e3:7.1f} ms  min {min(values) * 1e3:7.1f} ms  "
            f"({med / base:.2f}x)  {med / args.shape[0] * 1e6:7.0f} us/sample"
        )


if __name__ == "__main__":
    main()
