"""A GPU suite in one command: real KerasHub models at realistic sizes, random weights.

For a ResNet-50 classifier at 224², RetinaNet (ResNet-50) at 512² and DeepLabV3
(ResNet-50) at 512², each built from its classes' configs (nothing is downloaded), and for
``jit_compile`` off / on and float32 / ``mixed_float16``, it runs
:func:`fastevalcb.overhead.measure` (what ``fastevalcb overhead`` runs) on the same
samples: the compiled forward alone (µs a sample), fastevalcb's log (training thread and
until written), the worker's CPU µs a sample, and stock's documented subclass (at float32
with ``jit_compile`` off, the way the W&B docs run it). Best of ``--repeats`` logs.

    python benchmarks/gpu_suite.py             # about 8 minutes on one GPU
    python benchmarks/gpu_suite.py --quick     # CPU, small models and sizes, a minute or two

Writes ``gpu.json`` and ``gpu.md`` to ``benchmarks/results`` (``--out-dir`` elsewhere). A
variant that fails is recorded with its error and the suite goes on; one that would start
after ``--budget-s`` seconds is recorded as skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _machine import cpu_name  # noqa: E402

from fastevalcb import overhead  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: KerasHub's ``predict`` maps its preprocessor with tf.data (or grain), and stock's callback
#: subclasses ``tf.keras``: on a machine without TensorFlow (Keras 3 on JAX), the models run
#: without their preprocessor (inputs fed already scaled) and stock is not timed.
HAVE_TF = importlib.util.find_spec("tensorflow") is not None
VARIANTS = [  # (jit_compile, mixed precision)
    (False, False),
    (True, False),
    (False, True),
    (True, True),
]
#: task -> (image size, samples, classes); the quick sizes second.
SIZES = {
    "classification": ((224, 1024, 1000), (32, 64, 10)),
    "detection": ((512, 256, 80), (64, 32, 5)),
    "segmentation": ((512, 128, 21), (64, 32, 5)),
}
MODELS = {
    "classification": "ResNet-50 ImageClassifier",
    "detection": "RetinaNet (ResNet-50 FPN)",
    "segmentation": "DeepLabV3 (ResNet-50)",
}


# -- models: KerasHub classes from configs, random weights ------------------------------------
RESNET = {  # ResNetBackbone configs: ResNet-50 (v1, as its preset's), and a tiny one
    "resnet50": {
        "input_conv_kernel_sizes": [7],
        "stackwise_num_filters": [64, 128, 256, 512],
        "stackwise_num_blocks": [3, 4, 6, 3],
        "block_type": "bottleneck_block",
    },
    "tiny": {  # ResNetBackbone insists on 64 filters for the stem and the first stack
        "input_conv_kernel_sizes": [3],
        "stackwise_num_filters": [64, 8, 8, 8],
        "stackwise_num_blocks": [1, 1, 1, 1],
        "block_type": "basic_block",
    },
}


def resnet(quick: bool):
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        stackwise_num_strides=[1, 2, 2, 2],
        use_pre_activation=False,
        image_shape=(None, None, 3),
        **RESNET["tiny" if quick else "resnet50"],
    )


def build(task: str, size: int, classes: int, quick: bool):
    model = _build(task, size, classes, quick)
    if not HAVE_TF:
        model.preprocessor = None
    return model


def _build(task: str, size: int, classes: int, quick: bool):
    import keras_hub

    keras.utils.set_random_seed(0)
    hw = (size, size)
    if task == "classification":
        converter = keras_hub.layers.ResNetImageConverter(image_size=hw, scale=1 / 255)
        return keras_hub.models.ResNetImageClassifier(
            backbone=resnet(quick),
            num_classes=classes,
            preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
        )
    if task == "detection":
        backbone = keras_hub.models.RetinaNetBackbone(
            image_encoder=resnet(quick), min_level=3, max_level=5 if quick else 7, use_p5=False
        )
        converter = keras_hub.layers.RetinaNetImageConverter(image_size=hw, scale=1 / 255)
        return keras_hub.models.RetinaNetObjectDetector(
            backbone=backbone,
            num_classes=classes,
            bounding_box_format="yxyx",
            preprocessor=keras_hub.models.RetinaNetObjectDetectorPreprocessor(
                image_converter=converter
            ),
            classification_head_prior_probability=0.3,  # random weights: scores near 0.3
        )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=resnet(quick),
        spatial_pyramid_pooling_key="P4" if quick else "P5",
        upsampling_size=4 if quick else 8,
        dilation_rates=[1, 2] if quick else [6, 12, 18],
        low_level_feature_key="P2",
        projection_filters=8 if quick else 48,
    )
    converter = keras_hub.layers.DeepLabV3ImageConverter(image_size=hw, scale=1 / 127.5, offset=-1)
    return keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=backbone,
        num_classes=classes,
        preprocessor=keras_hub.models.DeepLabV3ImageSegmenterPreprocessor(
            image_converter=converter
        ),
    )


def data(task: str, size: int, n: int, classes: int, seed: int = 0):
    """Images in [0, 255] (what a KerasHub preprocessor takes) and random targets."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3)).astype("float32")
    if task == "classification":
        return x, rng.integers(0, classes, n)
    if task == "segmentation":
        return x, rng.integers(0, classes, (n, size, size)).astype("uint8")
    slots = 4  # yxyx pixel boxes, 1-3 objects an image, -1 padded
    corner = rng.uniform(0, size * 0.6, (n, slots, 2))
    extent = rng.uniform(size * 0.1, size * 0.4, (n, slots, 2))
    boxes = np.concatenate([corner, corner + extent], axis=-1).astype("float32")
    labels = rng.integers(0, classes, (n, slots))
    labels[np.arange(slots)[None, :] >= rng.integers(1, slots, (n, 1))] = -1
    return x, {"boxes": boxes, "labels": labels}


# -- the suite ---------------------------------------------------------------------------------
def run_variant(task, quick, jit, mixed, stock, repeats) -> dict:
    size, n, classes = SIZES[task][1 if quick else 0]
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        model = build(task, size, classes, quick)
    finally:
        keras.config.set_dtype_policy("float32")
    x, y = data(task, size, n, classes)
    if not HAVE_TF:  # no preprocessor: scale as the converter would
        x = x / 255.0
    options = {"top_k": 5} if task == "classification" else {}
    result = overhead.measure(
        model,
        (x, y),
        task,
        batch_size=32 if quick else 16,
        repeats=repeats,
        stock=stock,
        jit_compile=jit,
        callback_options=options,
    )
    result["size"], result["classes"] = size, classes
    return result


def run_suite(quick: bool, repeats: int, budget_s: float, tasks: list[str]) -> dict:
    started = time.perf_counter()
    rows = []
    # On JAX the step is always a jax.jit: jit_compile off would time the same thing twice.
    variants = [v for v in VARIANTS if v[0]] if keras.backend.backend() == "jax" else VARIANTS
    # Precision-major, so a spent budget skips the later variants of every task, not a task.
    for jit, mixed in variants:
        for task in tasks:
            row = {"task": task, "model": MODELS[task], "jit_compile": jit, "mixed": mixed}
            elapsed = time.perf_counter() - started
            if elapsed > budget_s:
                row["skipped"] = f"time budget ({budget_s:.0f} s) spent"
            else:
                stock = not jit and not mixed and HAVE_TF
                try:
                    row["result"] = run_variant(task, quick, jit, mixed, stock, repeats)
                except Exception as exc:  # recorded; the suite goes on
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:300]} (in {where(exc)})"
            row["wall_s"] = time.perf_counter() - started - elapsed
            print(describe(row), flush=True)
            rows.append(row)
    rows.sort(key=lambda r: tasks.index(r["task"]))  # stable: each task's variants in order
    return {
        "quick": quick,
        "repeats": repeats,
        "total_s": time.perf_counter() - started,
        "machine": machine(),
        "rows": rows,
    }


def where(exc: BaseException) -> str:
    """The innermost frame in keras_hub, keras or fastevalcb: the model's code, or ours."""
    found, tb = "?", exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        package = next((p for p in ("keras_hub", "keras", "fastevalcb") if p in path.parts), None)
        if package is not None:
            found = f"{package}: {path.name}, {tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return found


def describe(row: dict) -> str:
    name = f"{row['task']} jit={'on' if row['jit_compile'] else 'off'} " + (
        "mixed" if row["mixed"] else "fp32"
    )
    if "result" not in row:
        return f"{name}: {row.get('error') or row.get('skipped')}"
    r = row["result"]
    return (
        f"{name}: forward {r['forward']['us_per_sample']:.0f} µs/sample, ours thread "
        f"{r['fastevalcb']['train_thread_s']:.3f} s, written {r['fastevalcb']['until_written_s']:.3f} s"
    )


def machine() -> dict:
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    info["backend"] = keras.backend.backend()
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["gpus"] = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if not HAVE_TF:
        return _versions(info)
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        if info["backend"] != "jax":  # on JAX the GPUs are jax's, whatever TF sees
            gpus = tf.config.list_physical_devices("GPU")
            info["gpus"] = [
                tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in gpus
            ]
    except Exception as exc:  # a machine line must not stop the suite
        info.setdefault("gpus", f"unknown ({type(exc).__name__})")
    return _versions(info)


def _versions(info: dict) -> dict:
    import wandb

    info["keras"], info["wandb"] = keras.__version__, wandb.__version__
    return info


def markdown(suite: dict) -> str:
    m = suite["machine"]
    gpus = ", ".join(m["gpus"]) if isinstance(m.get("gpus"), list) and m["gpus"] else "no GPU"
    lines = [
        "# GPU suite",
        "",
        f"Machine: {gpus}; {m['cores']} CPU cores ({m['cpu']}); Python {m['python']}, "
        f"Keras {m['keras']} on {_backend(m)}, wandb {m['wandb']}. "
        f"{'' if m.get('tensorflow') else NO_TF}"
        f"{'`--quick` (small models and sizes). ' if suite['quick'] else ''}"
        f"Best of {suite['repeats']} logs; offline W&B; the whole suite took "
        f"{suite['total_s']:.0f} s.",
        "",
        "| model | N | jit | precision | forward µs/sample | ours: training thread / log "
        "| ours: until written / log | worker CPU µs/sample | stock / log | stock / ours |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in suite["rows"]:
        head = (
            f"| {row['model']} | {{n}} | {'on' if row['jit_compile'] else 'off'} | "
            f"{'mixed_float16' if row['mixed'] else 'float32'} |"
        )
        if "result" not in row:
            why = row.get("error") or row.get("skipped")
            lines.append(head.format(n="") + f" {why} | | | | | |")
            continue
        r = row["result"]
        ours, stock = r["fastevalcb"], r["stock"]
        n = f"{r['samples']:,} x {r['size']}²"
        stock_s = f"{stock['until_written_s']:.2f} s" if stock else "-"
        ratio = f"**{stock['until_written_s'] / ours['until_written_s']:.1f}x**" if stock else "-"
        lines.append(
            head.format(n=n) + f" {r['forward']['us_per_sample']:,.0f} | "
            f"{ours['train_thread_s']:.3f} s ({ours['train_thread_over_forward']:.2f}x) | "
            f"{ours['until_written_s']:.3f} s ({ours['until_written_over_forward']:.2f}x) | "
            f"{ours['worker_cpu_us_per_sample']:,.0f} | {stock_s} | {ratio} |"
        )
    lines += [
        "",
        "(x): times the compiled forward pass over the same samples (segmentation: with the "
        "argmax to class maps, as any mask logger needs). On JAX the step is always a "
        "`jax.jit`, so only `jit` on is run, and stock's variant (`jit` off) is not. "
        "Stock is W&B's documented "
        "`WandbEvalCallback` subclass (`model.predict` + a `wandb.Image` per row), run at "
        "float32 with `jit_compile` off.",
    ]
    return "\n".join(lines) + "\n"


NO_TF = (
    "No TensorFlow on this machine: the models ran without their KerasHub preprocessor "
    "(inputs fed scaled; `predict` maps a preprocessor with tf.data or grain) and stock, "
    "whose callback subclasses `tf.keras`, was not timed. "
)


def _backend(m: dict) -> str:
    backend = m.get("backend", "tensorflow")
    version = m.get("jax") if backend == "jax" else m.get("tensorflow")
    return f"{'JAX' if backend == 'jax' else 'TensorFlow'} {version or '?'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models and sizes (CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="logs a side (2; quick: 1)")
    parser.add_argument("--budget-s", type=float, default=400.0, help="start no variant after")
    parser.add_argument("--tasks", default=",".join(SIZES), help="comma-separated tasks")
    parser.add_argument("--out-dir", default=str(RESULTS), help="where gpu.json/gpu.md go")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 2)
    suite = run_suite(args.quick, repeats, args.budget_s, args.tasks.split(","))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(suite, indent=2) + "\n")
    (out / "gpu.md").write_text(markdown(suite))
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
