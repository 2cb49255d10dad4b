"""Cost per log of the task callbacks on Keras 3's TensorFlow and JAX backends.

Not a test: a script. Keras fixes its backend at import, so each backend runs in a fresh
process (``--row BACKEND``) on the same generated inputs, and the parent prints and writes
the rows side by side. Per backend and model, all warmed up, medians of ``--repeats``:

* **forward floor**: the model's compiled forward over the same batches (``tf.function``
  / ``jax.jit`` of ``model(x)``), outputs left on the device;
* **model.predict**: what the stock ``WandbEvalCallback`` subclass calls in its hook;
* **BatchedPredictor**: ours, ``predict_all`` (host numpy, padding dropped; checked against
  ``model.predict`` before it is reported);
* **per log**: a real ``fit`` with the task callback (real offline W&B), one log per
  epoch: the training thread's share (the forward pass) and the time until the version
  is logged (the worker), the better of the epochs after the first.

Models: a small CNN classifier and a small segmenter (argmax in ``keras.ops`` in the
step), plus a near-free classifier (pooling + dense) whose forward costs almost nothing,
so its rows show the host cost a fast accelerator leaves.

    python benchmarks/bench_backends.py            # 512 samples, 3 repeats, 3 epochs
    python benchmarks/bench_backends.py --quick    # 128 samples, 2 repeats, 2 epochs

Writes ``benchmarks/results/backends.json`` and ``benchmarks/results/backends.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BACKENDS = ("tensorflow", "jax")
BATCH = 32


def build(kind: str, hw: tuple[int, int]):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((*hw, 3))
    if kind == "near_free":
        h = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, keras.layers.Dense(3)(h))
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    if kind == "segmentation":
        h = keras.layers.UpSampling2D(2)(h)
        return keras.Model(inputs, keras.layers.Conv2D(3, 1)(h))
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def timed(fn, repeats: int) -> float:
    fn()  # warm: traces, data adapters
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_fn(model, x):
    """The compiled forward over ``x`` in batches of BATCH, outputs left on the device."""
    import keras
    import numpy as np

    batches = [x[i : i + BATCH] for i in range(0, len(x) - BATCH + 1, BATCH)]
    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(lambda tv, ntv, b: model.stateless_call(tv, ntv, b, training=False)[0])
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        def run():
            out = [step(tv, ntv, b) for b in batches]
            jax.block_until_ready(out)
    else:
        import tensorflow as tf

        step = tf.function(lambda b: model(b, training=False), reduce_retracing=True)
        batches = [tf.constant(b) for b in batches]

        def run():
            out = [step(b) for b in batches]
            np.asarray(out[-1])  # wait for the device

    return run


def row(backend: str, n: int, hw: tuple[int, int], repeats: int, epochs: int) -> dict:
    """One backend's measurements (this process' KERAS_BACKEND must be ``backend``)."""
    import keras
    import numpy as np
    import wandb

    from fastevalcb import (
        BatchedPredictor,
        ClassificationEvalCallback,
        SegmentationEvalCallback,
    )

    assert keras.backend.backend() == backend, keras.backend.backend()
    rng = np.random.default_rng(0)
    x = rng.random((n, *hw, 3)).astype("float32")
    labels = np.arange(n) % 3
    masks = rng.integers(0, 3, (n, *hw)).astype("int32")
    out = {}
    for kind in ("classification", "near_free", "segmentation"):
        model = build(kind, hw)
        y = masks if kind == "segmentation" else labels
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        predictor = BatchedPredictor(model, x, batch_size=BATCH)
        np.testing.assert_allclose(
            predictor.predict_all(),
            model.predict(x, batch_size=BATCH, verbose=0),
            rtol=1e-4,
            atol=1e-5,
        )
        forward_s = timed(forward_fn(model, x), repeats)
        predict_s = timed(lambda: model.predict(x, batch_size=BATCH, verbose=0), repeats)
        ours_s = timed(predictor.predict_all, repeats)
        with tempfile.TemporaryDirectory() as folder:
            run = wandb.init(project="bench-backends", dir=folder, mode="offline")
            task = (
                SegmentationEvalCallback if kind == "segmentation" else ClassificationEvalCallback
            )
            cb = task((x, y), ["a", "b", "c"], batch_size=BATCH, verbose=0)
            model.fit(
                x[: BATCH * 2],
                y[: BATCH * 2],
                epochs=epochs,
                batch_size=BATCH,
                callbacks=[cb],
                verbose=0,
            )
            cb.flush()
            run.finish()
        later = cb.timings[1:] or cb.timings  # the first log shares its epoch with compiles
        out[kind] = {
            "forward_s": forward_s,
            "predict_s": predict_s,
            "predictor_s": ours_s,
            "log_thread_s": min(t["eval_s"] for t in later),
            "log_logged_s": min(t["logged_s"] for t in later),
            "trace_count": cb.predictor.trace_count,
        }
    return out


def machine() -> dict:
    sys.path.insert(0, str(HERE))
    import jax
    import keras
    import tensorflow as tf
    import wandb
    from _machine import cpu_name

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "jax": jax.__version__,
        "keras": keras.__version__,
        "wandb": wandb.__version__,
        "load_avg_1min": os.getloadavg()[0],
    }


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:,.0f}"


def markdown(result: dict) -> str:
    n, hw = result["n"], result["hw"]
    m = result["machine"]
    lines = [
        "# Cost per log by Keras backend (TensorFlow vs JAX)",
        "",
        f"Machine: {m['cores']} CPU cores ({m['cpu']}), no GPU; Python {m['python']}, "
        f"TF {m['tensorflow']}, JAX {m['jax']}, Keras {m['keras']}, wandb {m['wandb']} "
        f"(offline). Load average at start {m['load_avg_1min']:.1f} (shared machine). "
        f"N = {n} samples of {hw[0]}x{hw[1]}x3, batch {BATCH}; medians of "
        f"{result['repeats']} repeats; per log: best epoch after the first of "
        f"{result['epochs']}. Each backend in its own process.",
        "",
        "µs per sample (ratios to the same backend's forward floor in brackets):",
        "",
        "| model | backend | forward floor | model.predict | BatchedPredictor | "
        "per log: training thread | per log: until logged | traces |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("classification", "near_free", "segmentation"):
        for backend in BACKENDS:
            r = result["rows"][backend][kind]
            f = r["forward_s"]
            cells = [
                us(r[k], n) + f" ({r[k] / f:.1f}x)"
                for k in ("predict_s", "predictor_s", "log_thread_s", "log_logged_s")
            ]
            lines.append(
                f"| {kind} | {backend} | {us(f, n)} | "
                + " | ".join(cells)
                + f" | {r['trace_count']} |"
            )
    lines += ["", "JAX / TensorFlow, per log (training thread, until logged):", ""]
    for kind in ("classification", "near_free", "segmentation"):
        tf_r, jax_r = result["rows"]["tensorflow"][kind], result["rows"]["jax"][kind]
        lines.append(
            f"- {kind}: {jax_r['log_thread_s'] / tf_r['log_thread_s']:.2f}x, "
            f"{jax_r['log_logged_s'] / tf_r['log_logged_s']:.2f}x"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--row", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    n = args.n or (128 if args.quick else 512)
    repeats, epochs, hw = (2, 2, (32, 32)) if args.quick else (3, 3, (32, 32))
    if args.row:
        print("RESULT " + json.dumps(row(args.row, n, hw, repeats, epochs)), flush=True)
        return
    rows = {}
    for backend in BACKENDS:
        env = dict(
            os.environ,
            KERAS_BACKEND=backend,
            TF_CPP_MIN_LOG_LEVEL="3",
            WANDB_SILENT="true",
            WANDB_MODE="offline",
        )
        command = [sys.executable, __file__, "--row", backend, "--n", str(n)]
        if args.quick:
            command.append("--quick")
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            sys.exit(f"{backend} row failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        rows[backend] = json.loads(found[-1][len("RESULT ") :])
    result = {
        "n": n,
        "hw": list(hw),
        "repeats": repeats,
        "epochs": epochs,
        "machine": machine(),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backends.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "backends.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
