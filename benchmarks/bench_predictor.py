"""Throughput of BatchedPredictor vs keras ``Model.predict`` vs a per-sample loop.

Not a test: a script. Same model, same inputs, one process; every method is warmed up
first (traces / data adapters built) and timed over several repeats, the median reported.
Ratios are taken against ``Model.predict`` from the same run; µs per sample is reported
too, and a near-free model shows the host cost alone. The KerasHub classifier is timed
with its preprocessor on both sides (``Model.predict`` maps it over its tf.data
pipeline, BatchedPredictor runs it on the host before the step). Each BatchedPredictor
result is checked against ``Model.predict``'s before it is reported.

    python benchmarks/bench_predictor.py            # full: 1024 samples, 5 repeats
    python benchmarks/bench_predictor.py --quick    # smoke run: 256 samples, 3 repeats

Writes ``benchmarks/results/predictor.json`` and ``benchmarks/results/predictor.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fastevalcb.predictor import BatchedPredictor  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TOP_K = 5


def conv_net(seed: int = 0) -> keras.Model:
    """Small classifier: `(64, 64, 3)` float32 -> `(10,)` logits, 3 strided Conv2D."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64, 64, 3))
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def softmax_top_k_tf(logits):
    """Fused output_fn: `(B, 10)` logits -> scores `(B, k)` f32, class_id `(B, k)` i32."""
    scores, class_id = tf.math.top_k(tf.nn.softmax(logits), k=TOP_K)
    return {"scores": scores, "class_id": class_id}


def softmax_top_k_np(logits: np.ndarray) -> dict:
    """The stock post-processing on host: same result as :func:`softmax_top_k_tf`."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    class_id = np.argsort(-probs, axis=1)[:, :TOP_K]
    return {"scores": np.take_along_axis(probs, class_id, 1), "class_id": class_id}


def timed(fns: dict, repeats: int) -> dict:
    """Time several ways of doing the same work, interleaved so background load hits all.

    Each gets a cold call (includes tracing / adapter build) and one warm-up call, then
    ``repeats`` rounds in which every way runs once.

    Returns:
        ``{name: {"cold_s", "median_s", "all_s"}}``.
    """
    out = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        out[name] = {"cold_s": time.perf_counter() - t0, "all_s": []}
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name]["all_s"].append(time.perf_counter() - t0)
    for timing in out.values():
        timing["median_s"] = statistics.median(timing["all_s"])
    return out


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "devices": [d.name for d in tf.config.list_physical_devices()],
    }
    try:
        import keras_hub

        info["keras_hub"] = keras_hub.__version__
    except ImportError:
        pass
    info["load_avg_1_5_15"] = list(os.getloadavg())
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["physical_cores"] = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    return info


def tiny_resnet_classifier(seed: int = 0):
    """KerasHub ``ResNetImageClassifier`` (small random ResNet, 5 classes) with its
    preprocessor: ``(48, 48, 3)`` [0, 255] images resized to 32x32 and rescaled."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    )
    converter = keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255)
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(converter)
    return keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=10, preprocessor=preprocessor
    )


def near_free_net(seed: int = 0) -> keras.Model:
    """GlobalAveragePooling2D + Dense(10) on `(32, 32, 3)`: almost no compute, so what is
    timed is the host cost per sample (what a GPU user pays besides the forward pass)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(pooled))


def scenarios(num_samples: int) -> list:
    """``(name, model, x)``: the same inputs go to every method."""
    rng = np.random.default_rng(0)
    out = [("conv", conv_net(), rng.uniform(size=(num_samples, 64, 64, 3)).astype("float32"))]
    try:
        classifier = tiny_resnet_classifier()
    except ImportError:
        print("keras_hub not installed: the KerasHub scenario is skipped")
    else:
        images = rng.integers(0, 256, size=(num_samples, 48, 48, 3)).astype("float32")
        out.append(("keras_hub", classifier, images))
    out.append(
        ("near-free", near_free_net(), rng.uniform(size=(num_samples, 32, 32, 3)).astype("float32"))
    )
    return out


def bench(num_samples: int, loop_samples: int, repeats: int, batch_sizes) -> list:
    rows = []

    def record(scenario, batch_size, output_fn, method, n, timing):
        rows.append(
            {
                "model": scenario,
                "batch_size": batch_size,
                "output_fn": output_fn,
                "method": method,
                "samples": n,
                "samples_per_s": n / timing["median_s"],
                "us_per_sample": 1e6 * timing["median_s"] / n,
                "median_s": timing["median_s"],
                "cold_s": timing["cold_s"],
                "repeats_s": timing["all_s"],
            }
        )
        print(
            f"  {scenario:9s} bs={batch_size!s:>4} output_fn={output_fn!s:5} {method:28s} "
            f"{n / timing['median_s']:9.1f} samples/s {1e6 * timing['median_s'] / n:8.1f} "
            f"us/sample (cold {timing['cold_s']:.2f}s)",
            flush=True,
        )

    for scenario, model, x in scenarios(num_samples):
        if scenario == "conv":
            # Per-sample loop: independent of batch size, measured once on a subset.
            xs = x[:loop_samples]

            def per_sample_loop(post=None):
                def run():
                    for i in range(len(xs)):
                        out = model(xs[i : i + 1], training=False).numpy()
                        if post is not None:
                            post(out)

                return run

            loop = "per-sample model(x[i:i+1])"
            for use_fn in (False, True):
                post = softmax_top_k_np if use_fn else None
                timing = timed({loop: per_sample_loop(post)}, repeats)[loop]
                record(scenario, 1, use_fn, loop, len(xs), timing)

        for bs in batch_sizes:
            if bs == 1 and scenario != "conv":
                continue
            n = min(num_samples, loop_samples) if bs == 1 else num_samples
            xb = x[:n]
            for use_fn in (False, True):

                def stock():
                    out = model.predict(xb, batch_size=bs, verbose=0)
                    return softmax_top_k_np(out) if use_fn else out

                fn = softmax_top_k_tf if use_fn else None
                ours = BatchedPredictor(model, xb, batch_size=bs, output_fn=fn)
                ours_sync = BatchedPredictor(model, xb, batch_size=bs, prefetch=0, output_fn=fn)
                timings = timed(
                    {
                        "Model.predict": stock,
                        "BatchedPredictor": ours.predict_all,
                        "BatchedPredictor prefetch=0": ours_sync.predict_all,
                    },
                    repeats,
                )
                for method, timing in timings.items():
                    record(scenario, bs, use_fn, method, n, timing)
                assert ours.trace_count == 1 and ours_sync.trace_count == 1
                want = stock()
                got = ours.predict_all()
                for g, w in zip(keras.tree.flatten(got), keras.tree.flatten(want)):
                    np.testing.assert_allclose(g, w, atol=1e-4)  # same predictions
    return rows


def add_ratios(rows: list) -> None:
    """ratio_vs_predict = our samples/s over Model.predict's, same batch size and output_fn."""
    stock = {
        (r["model"], r["batch_size"], r["output_fn"]): r["samples_per_s"]
        for r in rows
        if r["method"] == "Model.predict"
    }
    for r in rows:
        base = stock.get((r["model"], r["batch_size"], r["output_fn"]))
        if base is None:  # per-sample loop: compare with predict at batch 32
            base = stock.get((r["model"], 32, r["output_fn"]))
        r["ratio_vs_predict"] = None if base is None else r["samples_per_s"] / base


def markdown(rows: list, info: dict, args) -> str:
    lines = [
        "# BatchedPredictor throughput",
        "",
        "Models: `conv`: 3x Conv2D (16/32/64, stride 2) + GAP + Dense(10), input "
        "`(64, 64, 3)` float32; `keras_hub`: a KerasHub `ResNetImageClassifier` (small random "
        "ResNet) with its `ResNetImageClassifierPreprocessor` (48x48 [0, 255] images resized "
        "to 32x32 and rescaled): `Model.predict` preprocesses in its tf.data pipeline, "
        "BatchedPredictor on the host before its step, so both sides pay for it; "
        "`near-free`: GAP + Dense(10) on `(32, 32, 3)`, so the time is host cost per sample. "
        f"{args.samples} samples (batch 1 and the per-sample loop: {args.loop_samples}); "
        f"median of {args.repeats} interleaved warm repeats after warm-up. "
        f"`output_fn` = softmax + top-{TOP_K}: "
        "fused into the step for BatchedPredictor, numpy on the host for the stock ways. "
        "Ratio: samples/s over `Model.predict` at the same batch size "
        "(per-sample loop: over `Model.predict` at batch 32).",
        "",
        f"Machine: {info['processor']}, {info['cpu_count']} CPUs, "
        f"{info.get('memory_gib', '?')} GiB, {info['platform']}; "
        f"TF {info['tensorflow']}, Keras {info['keras']}, "
        f"keras-hub {info.get('keras_hub', 'not installed')}, numpy {info['numpy']}. "
        f"Load average at start: {info['load_avg_1_5_15'][0]:.2f} (the machine may be shared; "
        "methods are timed interleaved, round by round, so load hits all of them).",
        "",
        "| model | batch | output_fn | method | samples/s | µs/sample | ratio vs predict | "
        "cold (s) |",
        "|:---|---:|:---:|:---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "" if r["ratio_vs_predict"] is None else f"{r['ratio_vs_predict']:.2f}x"
        batch = "—" if r["method"].startswith("per-sample") else r["batch_size"]
        lines.append(
            f"| {r['model']} | {batch} | {'yes' if r['output_fn'] else 'no'} | {r['method']} | "
            f"{r['samples_per_s']:.0f} | {r['us_per_sample']:.1f} | {ratio} | "
            f"{r['cold_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    args.samples = args.samples or (256 if args.quick else 1024)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.loop_samples = 64 if args.quick else 256
    info = machine_info()
    print(json.dumps(info, indent=1))
    rows = bench(args.samples, args.loop_samples, args.repeats, (1, 32, 256))
    add_ratios(rows)
    md = markdown(rows, info, args)
    print(md)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        payload = {"machine": info, "config": vars(args), "results": rows}
        (RESULTS / "predictor.json").write_text(json.dumps(payload, indent=1) + "\n")
        (RESULTS / "predictor.md").write_text(md)
        print(f"wrote {RESULTS / 'predictor.json'} and {RESULTS / 'predictor.md'}")


if __name__ == "__main__":
    main()
