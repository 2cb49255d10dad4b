"""End to end: stock ``WandbEvalCallback`` used the documented way vs fastevalcb's task callbacks.

For each task, in one process, offline W&B (a fresh run per side, temp dirs), same model,
same samples:

1. **Forward floor**: the model's compiled forward (``tf.function``, batch 32, inputs
   pre-converted to tensors, outputs left as tensors) over the N evaluation samples, warm;
   the best of 6 runs (3 before and 3 after both sides). No callback can log predictions
   faster than it computes them. The same with the outputs copied to numpy is reported too.
2. **Per-log evaluation**: wall time inside ``on_epoch_end`` (training-thread time; for ours
   also the time until its background worker has written the version: ``cb.timings``'s
   ``logged_s``); the better of the 2 epochs. The machine is shared and noisy (the same
   forward pass has measured 2x apart between runs), so every time that feeds a ratio is a
   best-of (all samples are in the JSON). Stock's epoch 1 includes tracing ``predict``.
3. **Extra wall time added to ``model.fit``**: ``fit`` for 2 epochs on a small training set
   with the callback (plus ``cb.flush()`` for ours, so queued work is counted) minus the
   same ``fit`` without callbacks (warm; median of 3 baseline fits: 2 before, 1 after both
   sides). ``on_train_begin`` (data table) is timed separately; ``run.finish()`` too, since
   offline W&B may defer work to it.
4. **Peak memory**: process RSS high-water (psutil, sampled every 10 ms on a thread) during
   each side's fit, as a delta from the RSS when the fit starts. tracemalloc is not used: it
   slows Python-heavy code (the stock side) several-fold and would skew the times. Ours runs
   first: memory freed by the stock side could otherwise be reused by ours and hide its
   growth (running stock second can only understate stock's delta).
5. **One-off process costs** are kept out of the per-task numbers and reported on their own:
   ``fastevalcb.kernels.warmup()`` (numba compile on a cold cache, a cache load otherwise) runs
   once before any timing; ours' ``on_train_begin`` calls it again (then a no-op).

Tasks (images from ``fastevalcb.synthetic.make_shapes``: one shape per image; models untrained
beyond the 2 timed epochs, so predictions are noisy, which is the expensive case: nothing is
filtered away):

Training sets for the timed fits: 512 images (classification, detection), 128 (segmentation).

- classification: N=10,000 64x64, 3 classes, small CNN (softmax). The stock subclass is W&B's
  docstring example as written (``tf.argmax`` on the predictions, a tensor index per row).
- detection: N=2,000 128x128, a toy head that outputs a dict ``boxes (B, 100, 4)`` xyxy
  pixels (sigmoid * 128, min/max so x0 <= x1), ``scores (B, 100)`` sigmoid, ``classes
  (B, 100)`` argmax of a per-box class head, sorted by score; ground truth 1 box per image
  padded to ``(N, 4)`` with class -1. Both sides log the predicted boxes with score >= 0.05
  (ours' default ``score_threshold``) plus the ground-truth boxes on the pred image.
- segmentation: N=500 256x256, 21 class names (ground-truth ids 0..3 from the shapes),
  a tiny FCN with ``(B, 256, 256, 21)`` logits; predicted and ground-truth masks on the pred
  image.

**The stock side** is a subclass of ``wandb.integration.keras.WandbEvalCallback`` written like
W&B's docstring example: ``add_ground_truth`` loops ``add_data`` with ``wandb.Image``;
``add_model_predictions`` calls ``self.model.predict(self.x)`` on all N samples, loops the rows
and builds one ``wandb.Image(data_table_ref.data[idx][1], boxes=/masks=...)`` per row (the data
table's image reused, new box dicts / masks per row). Stock cannot run offline as shipped, so
``log_data_table`` differs in the smallest way that runs:

- ``wandb.run.use_artifact(data_artifact)`` raises ``TypeError`` offline -> ``log_artifact``;
- ``data_artifact.wait()`` raises ``ArtifactNotLoggedError`` offline (no save handle) -> dropped;
- ``data_artifact.get(table_name)`` is refused offline -> ``data_table_ref`` is the in-memory
  ``data_table`` itself (what ``get`` would rebuild from the artifact's JSON). This skips
  online stock's download + deserialization, so it can only flatter stock; in exchange the
  pred versions copy the image files (offline stock has no logged entry to reference).

Stock's ``on_train_begin`` passes ``logs`` to ``add_ground_truth``, so the subclass takes it.
Ours logs more than the stock subclass (per-row metrics, summary metrics such as mAP50/mIoU,
top-k), it is not given less work.

    python benchmarks/bench_e2e.py                 # full sizes (~6 min on 2 cores)
    python benchmarks/bench_e2e.py --quick         # small N, ~1-2 minutes (smoke test)
    python benchmarks/bench_e2e.py --tasks detection,segmentation --sides stock

Writes benchmarks/results/e2e.json, e2e.md and e2e.png (``--quick`` too, unless
``--no-write``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

WORKDIR = tempfile.mkdtemp(prefix="fastevalcb-e2e-")
for _var in (
    "WANDB_DIR",
    "WANDB_DATA_DIR",
    "WANDB_CACHE_DIR",
    "WANDB_ARTIFACT_DIR",
    "WANDB_CONFIG_DIR",
):
    os.environ[_var] = WORKDIR
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import wandb  # noqa: E402
from _machine import cpu_name  # noqa: E402

from fastevalcb._stock import (  # noqa: E402
    SCORE_THRESHOLD,
    StockClassification,
    StockDetection,
    StockSegmentation,
)
from fastevalcb.synthetic import CLASS_NAMES, make_shapes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# The toy detection head's class logits get no loss (its classes are an argmax output).
warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
BATCH = 32
EPOCHS = 2
MAX_BOXES = 100
GT_SLOTS = 4
SEG_CLASSES = 21

#: task -> (N, image size, training samples for the timed fits); quick sizes second.
SIZES = {
    "classification": ((10_000, 64, 512), (500, 64, 128)),
    "detection": ((2_000, 128, 512), (100, 128, 128)),
    "segmentation": ((500, 256, 128), (32, 256, 32)),
}


# -- tasks: data, model, both callbacks ----------------------------------------------------
def classification_task(n, size, train_n):
    val, train = make_shapes(n, size, seed=1), make_shapes(train_n, size, seed=2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    class_names = list(CLASS_NAMES)

    def stock():
        return StockClassification(
            (val.images, val.labels),
            ["idx", "image", "label"],
            ["epoch", "idx", "image", "label", "pred"],
        )

    def ours():
        from fastevalcb import ClassificationEvalCallback

        return ClassificationEvalCallback((val.images, val.labels), class_names)

    return {
        "model": model,
        "x": val.images,
        "train": (train.images, train.labels),
        "stock": stock,
        "ours": ours,
    }


def padded_gt(shapes):
    n = len(shapes.labels)
    boxes = np.zeros((n, GT_SLOTS, 4), np.float32)
    classes = np.full((n, GT_SLOTS), -1, np.int32)
    boxes[:, 0], classes[:, 0] = shapes.boxes, shapes.labels
    return {"boxes": boxes, "classes": classes}


def detection_model(size, num_classes):
    keras.utils.set_random_seed(0)
    ops = keras.ops
    inputs = keras.Input((size, size, 3), dtype="uint8")
    h = keras.layers.Rescaling(1 / 255)(inputs)
    for filters in (16, 32, 64):
        h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    raw = keras.layers.Reshape((MAX_BOXES, 4))(keras.layers.Dense(MAX_BOXES * 4)(h))
    corners = ops.sigmoid(raw) * float(size)
    boxes = ops.concatenate(
        [
            ops.minimum(corners[..., :2], corners[..., 2:]),
            ops.maximum(corners[..., :2], corners[..., 2:]),
        ],
        axis=-1,
    )
    scores = keras.layers.Dense(MAX_BOXES, activation="sigmoid")(h)
    class_logits = keras.layers.Reshape((MAX_BOXES, num_classes))(
        keras.layers.Dense(MAX_BOXES * num_classes)(h)
    )
    scores, order = ops.top_k(scores, MAX_BOXES)  # sorted by score, like a real head
    boxes = ops.take_along_axis(boxes, order[..., None], axis=1)
    class_logits = ops.take_along_axis(class_logits, order[..., None], axis=1)
    classes = ops.cast(ops.argmax(class_logits, axis=-1), "int32")
    model = keras.Model(inputs, {"boxes": boxes, "scores": scores, "classes": classes})
    model.compile("adam", loss={"boxes": "mse", "scores": "binary_crossentropy", "classes": None})
    return model


def detection_task(n, size, train_n):
    val, train = make_shapes(n, size, seed=1), make_shapes(train_n, size, seed=2)
    gt = padded_gt(val)
    model = detection_model(size, len(CLASS_NAMES))
    train_y = {
        "boxes": np.repeat(train.boxes[:, None], MAX_BOXES, axis=1),
        "scores": np.ones((train_n, MAX_BOXES), np.float32),
        "classes": np.zeros((train_n, MAX_BOXES), np.int32),
    }
    class_labels = dict(enumerate(CLASS_NAMES))

    def stock():
        return StockDetection((val.images, gt), class_labels)

    def ours():
        from fastevalcb import DetectionEvalCallback

        return DetectionEvalCallback(
            (val.images, gt),
            list(CLASS_NAMES),
            box_format="xyxy",
            score_threshold=SCORE_THRESHOLD,
            max_detections=MAX_BOXES,
        )

    return {
        "model": model,
        "x": val.images,
        "train": (train.images, train_y),
        "stock": stock,
        "ours": ours,
    }


def segmentation_task(n, size, train_n):
    val, train = make_shapes(n, size, seed=1), make_shapes(train_n, size, seed=2)
    class_names = ["background", *CLASS_NAMES] + [f"class_{i}" for i in range(4, SEG_CLASSES)]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(SEG_CLASSES, 1),
            keras.layers.UpSampling2D(4, interpolation="bilinear"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    class_labels = dict(enumerate(class_names))

    def stock():
        return StockSegmentation((val.images, val.masks), class_labels)

    def ours():
        from fastevalcb import SegmentationEvalCallback

        return SegmentationEvalCallback((val.images, val.masks), class_names, output="logits")

    return {
        "model": model,
        "x": val.images,
        "train": (train.images, train.masks),
        "stock": stock,
        "ours": ours,
    }


TASKS = {
    "classification": classification_task,
    "detection": detection_task,
    "segmentation": segmentation_task,
}
OURS_CLASS = {
    "classification": "ClassificationEvalCallback",
    "detection": "DetectionEvalCallback",
    "segmentation": "SegmentationEvalCallback",
}


# -- measurement helpers --------------------------------------------------------------------
class PeakRSS:
    """Process RSS high-water mark, sampled on a daemon thread."""

    def __init__(self, interval=0.01):
        self.interval, self.proc = interval, psutil.Process()
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def instrument(cb):
    """Time the callback's Keras hooks from outside (instance attributes wrap the methods)."""
    rec = {"train_begin_s": None, "epoch_end_s": [], "train_end_s": None}

    def wrap(name, store):
        orig = getattr(cb, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                store(time.perf_counter() - start)

        setattr(cb, name, timed)

    wrap("on_train_begin", lambda s: rec.__setitem__("train_begin_s", s))
    wrap("on_epoch_end", rec["epoch_end_s"].append)
    wrap("on_train_end", lambda s: rec.__setitem__("train_end_s", s))
    return rec


def combine_floor(before, after):
    out = {"before": before, "after": after}
    for key, runs in (("forward_s", "runs_s"), ("forward_to_host_s", "to_host_runs_s")):
        all_runs = before[runs] + after[runs]
        out[key] = min(all_runs)
        out[key.replace("_s", "_median_s")] = statistics.median(all_runs)
    return out


def forward_floor(model, x, repeats=3):
    """The compiled forward over ``x`` in batches of 32, warm: median seconds of ``repeats``.

    ``runs_s`` keep the outputs as tensors (the floor); ``to_host_runs_s`` also copy them
    to numpy, which is what a host-side loop over raw outputs pays on top (for the
    segmentation logits, ``(500, 256, 256, 21)`` float32 = 2.75 GB). Interleaved.
    """
    step = tf.function(lambda b: model(b, training=False), reduce_retracing=True)
    batches = [tf.constant(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]

    def run(to_host):
        for b in batches:
            out = step(b)  # on CPU the op runs synchronously; the result is ready here
            if to_host:
                tf.nest.map_structure(lambda t: t.numpy(), out)

    start = time.perf_counter()
    step(batches[0]), step(batches[-1])  # trace full and short batch
    trace_s = time.perf_counter() - start
    runs = {False: [], True: []}
    for _ in range(repeats):
        for to_host in (False, True):
            start = time.perf_counter()
            run(to_host)
            runs[to_host].append(time.perf_counter() - start)
    return {"runs_s": runs[False], "to_host_runs_s": runs[True], "trace_s": trace_s}


def fit(model, train, callbacks=None):
    start = time.perf_counter()
    model.fit(*train, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def run_side(task_name, side, task):
    """One side: fresh W&B run, build the callback, fit with it, flush, finish."""
    gc.collect()
    run = wandb.init(project="fastevalcb-e2e", name=f"{task_name}-{side}", dir=WORKDIR)
    start = time.perf_counter()
    cb = task[side]()
    construct_s = time.perf_counter() - start
    rec = instrument(cb)
    with PeakRSS() as mem:
        fit_s = fit(task["model"], task["train"], [cb])
        start = time.perf_counter()
        if hasattr(cb, "flush"):
            cb.flush()
        flush_s = time.perf_counter() - start
    start = time.perf_counter()
    run.finish()
    finish_s = time.perf_counter() - start
    out = {
        "construct_s": construct_s,
        "train_begin_s": rec["train_begin_s"],
        "epoch_end_s": rec["epoch_end_s"],
        "train_end_s": rec["train_end_s"],
        "fit_s": fit_s,
        "flush_after_fit_s": flush_s,
        "finish_s": finish_s,
        "rss_start_mb": mem.start / 2**20,
        "peak_rss_mb": mem.peak / 2**20,
        "peak_rss_delta_mb": (mem.peak - mem.start) / 2**20,
    }
    if hasattr(cb, "timings"):
        out["timings"] = [dict(t) for t in cb.timings]
        out["logged_s"] = [t.get("logged_s") for t in cb.timings]
    if hasattr(cb, "timings") and cb.timings:
        out["rows_logged"] = cb.timings[-1].get("samples")
    elif getattr(cb, "pred_table", None) is not None:
        out["rows_logged"] = len(cb.pred_table.data)
    if getattr(cb, "predict_s", None):
        out["stock_model_predict_s"] = cb.predict_s
    if getattr(cb, "boxes_logged", None):
        out["pred_boxes_per_image"] = cb.boxes_logged
    del cb
    gc.collect()
    return out


def bench_task(name, n, size, train_n, sides):
    print(f"== {name}: N={n} {size}x{size}, train {train_n} x {EPOCHS} epochs", flush=True)
    task = TASKS[name](n, size, train_n)
    res = {
        "n": n,
        "size": size,
        "train_n": train_n,
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "loadavg_start": os.getloadavg(),
    }
    if "ours" in sides:
        try:
            getattr(__import__("fastevalcb"), OURS_CLASS[name])
        except (ImportError, AttributeError) as exc:
            print(f"   ours skipped: {OURS_CLASS[name]} not importable ({exc})", flush=True)
            res["ours_skipped"] = str(exc)
            sides = [s for s in sides if s != "ours"]
    floor_before = forward_floor(task["model"], task["x"])
    print(f"   forward floor {min(floor_before['runs_s']):.2f} s", flush=True)
    fit(task["model"], task["train"])  # warm: trace train step
    baselines = [fit(task["model"], task["train"]) for _ in range(2)]
    for side in sides:
        print(f"   {side} ...", flush=True)
        res[side] = run_side(name, side, task)
        s = res[side]
        print(
            f"   {side}: train_begin {s['train_begin_s']:.2f} s, epoch_end "
            f"{', '.join(f'{t:.2f}' for t in s['epoch_end_s'])} s, fit {s['fit_s']:.2f} s, "
            f"flush {s['flush_after_fit_s']:.2f} s, finish {s['finish_s']:.2f} s",
            flush=True,
        )
    baselines.append(fit(task["model"], task["train"]))
    res["forward"] = combine_floor(floor_before, forward_floor(task["model"], task["x"]))
    res["loadavg_end"] = os.getloadavg()
    res["fit_baseline_runs_s"] = baselines
    res["fit_baseline_s"] = statistics.median(baselines)
    derive(res, sides)
    return res


def derive(res, sides):
    fwd, base = res["forward"]["forward_s"], res["fit_baseline_s"]
    for side in sides:
        s = res[side]
        if s.get("rows_logged") != res["n"]:
            print(f"   WARNING: {side} logged {s.get('rows_logged')} rows, expected {res['n']}")
        s["per_log_train_thread_s"] = min(s["epoch_end_s"])
        logged = [v for v in s.get("logged_s") or [] if v is not None]
        s["per_log_until_logged_s"] = min(logged) if logged else min(s["epoch_end_s"])
        s["fit_extra_s"] = s["fit_s"] + s["flush_after_fit_s"] - base
        s["per_log_over_forward"] = s["per_log_until_logged_s"] / fwd
        s["per_log_train_thread_over_forward"] = s["per_log_train_thread_s"] / fwd
        s["per_log_beyond_forward_s"] = s["per_log_until_logged_s"] - fwd
    if "stock" in sides and "ours" in sides:
        st, us = res["stock"], res["ours"]
        res["speedup"] = {
            "per_log_until_logged": st["per_log_until_logged_s"] / us["per_log_until_logged_s"],
            "per_log_train_thread": st["per_log_train_thread_s"] / us["per_log_train_thread_s"],
            "per_log_beyond_forward": (
                st["per_log_beyond_forward_s"] / max(us["per_log_beyond_forward_s"], 1e-3)
            ),
            "fit_extra": st["fit_extra_s"] / max(us["fit_extra_s"], 1e-9),
            "train_begin": st["train_begin_s"] / us["train_begin_s"],
        }


# -- report ---------------------------------------------------------------------------------
def machine_info():
    cpu = cpu_name()
    import fastevalcb

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "wandb": wandb.__version__,
        "fastevalcb": fastevalcb.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


def ours_process_warmup():
    """Once per process, before any timing: import + compile/load fastevalcb's numba kernels.

    Ours' ``on_train_begin`` calls the same ``warmup()``; paying it here keeps a one-off
    process cost (cold: compile, seconds; warm: load from the on-disk cache) out of the first
    task's numbers. It is reported here instead.
    """
    start = time.perf_counter()
    from fastevalcb import kernels

    imported = time.perf_counter()
    first = kernels.warmup()
    done = time.perf_counter()
    second = kernels.warmup()
    return {
        "import_s": imported - start,
        "warmup_s": done - imported,
        "warmup_per_group_s": first,
        "warmup_again_s": sum(second.values()),
    }


def fmt_s(v):
    return "—" if v is None else (f"{v:.2f} s" if v >= 0.1 else f"{v * 1e3:.0f} ms")


def beyond(st, us, sp):
    if not sp:
        return "—"
    if us["per_log_beyond_forward_s"] <= 0.05 * us["per_log_until_logged_s"]:
        return (
            f"— ({fmt_s(st['per_log_beyond_forward_s'])} vs ours at the floor: "
            f"{fmt_s(us['per_log_beyond_forward_s'])})"
        )
    return (
        f"{sp['per_log_beyond_forward']:.1f}x ({fmt_s(st['per_log_beyond_forward_s'])} vs "
        f"{fmt_s(us['per_log_beyond_forward_s'])})"
    )


def render(r):
    m = r["machine"]
    lines = [
        f"# End-to-end benchmark: stock `WandbEvalCallback` (documented subclass) vs fastevalcb"
        f"{' (--quick)' if r['quick'] else ''}",
        "",
        f"Machine: {m['cores']} CPU cores ({m['cpu']}), {m['memory_gib']:.1f} GiB, no GPU; "
        f"Python {m['python']}, TF {m['tensorflow']}, Keras {m['keras']}, wandb {m['wandb']}. "
        f"Load average at start {m['loadavg_at_start'][0]:.1f} (shared machine). W&B offline; "
        f"batch {BATCH}; per-log numbers: the better of the 2 epochs; forward floor: best of 6.",
        "",
        "**Per-log evaluation** (one pred-table version over all N samples):",
        "",
        "| task | N | forward floor | stock | ours: training thread | ours: until logged "
        "| ours / forward (thread, logged) | stock / ours | stock / ours, time beyond forward |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in r["tasks"].items():
        st, us, sp = t.get("stock"), t.get("ours"), t.get("speedup")
        row = [
            name,
            f"{t['n']:,} x {t['size']}²",
            fmt_s(t["forward"]["forward_s"]),
            fmt_s(st["per_log_until_logged_s"]) if st else "—",
            fmt_s(us["per_log_train_thread_s"]) if us else "—",
            fmt_s(us["per_log_until_logged_s"]) if us else "—",
            f"{us['per_log_train_thread_over_forward']:.2f}x, {us['per_log_over_forward']:.2f}x"
            if us
            else "—",
            f"**{sp['per_log_until_logged']:.1f}x**" if sp else "—",
            beyond(st, us, sp),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"**Extra wall time added to `model.fit`** ({EPOCHS} epochs, callback minus no callback; "
        "ours includes `flush()` after fit), data-table cost at train begin, `run.finish()`, "
        "and peak RSS growth during the fit:",
        "",
        "| task | fit alone | stock extra | ours extra | stock / ours | train begin stock / ours "
        "| finish stock / ours | peak RSS Δ stock / ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in r["tasks"].items():
        st, us = t.get("stock") or {}, t.get("ours") or {}

        def pair(key, fmt=fmt_s):
            return f"{fmt(st.get(key)) if st else '—'} / {fmt(us.get(key)) if us else '—'}"

        lines.append(
            f"| {name} | {fmt_s(t['fit_baseline_s'])} | {fmt_s(st.get('fit_extra_s'))} | "
            f"{fmt_s(us.get('fit_extra_s'))} | "
            + (f"**{t['speedup']['fit_extra']:.1f}x** | " if "speedup" in t else "— | ")
            + f"{pair('train_begin_s')} | {pair('finish_s')} | "
            + pair("peak_rss_delta_mb", lambda v: "—" if v is None else f"{v:,.0f} MB")
            + " |"
        )
    w = r.get("ours_process_warmup")
    if w:
        lines += [
            "",
            f"One-off per process, before timing (ours): `import fastevalcb.kernels` "
            f"{w['import_s']:.1f} s + `kernels.warmup()` {w['warmup_s']:.1f} s "
            "(numba: compile on a cold cache, else load from it).",
        ]
    lines += [
        "",
        "Targets: classification ours/forward <= 1.3x; detection and segmentation "
        "stock/ours >= 10x (per-log evaluation).",
        "",
    ]
    notes = []
    for name, t in r["tasks"].items():
        for side in ("stock", "ours"):
            s = t.get(side)
            if s:
                notes.append(
                    f"- {name} {side}: epoch-end hook "
                    + ", ".join(fmt_s(v) for v in s["epoch_end_s"])
                    + (
                        f"; until logged {', '.join(fmt_s(v) for v in s['logged_s'])}"
                        if s.get("logged_s")
                        else ""
                    )
                    + (
                        f" (of which `model.predict` "
                        f"{', '.join(fmt_s(v) for v in s['stock_model_predict_s'])})"
                        if s.get("stock_model_predict_s")
                        else ""
                    )
                    + f"; fit {fmt_s(s['fit_s'])}, flush after fit "
                    f"{fmt_s(s['flush_after_fit_s'])}"
                )
    lines += [
        "Forward floor = compiled forward, outputs left as tensors; copying them to numpy "
        "as well: "
        + ", ".join(
            f"{n} {fmt_s(t['forward']['forward_to_host_s'])}" for n, t in r["tasks"].items()
        )
        + ". 1-min load average at task start / end: "
        + ", ".join(
            f"{n} {t['loadavg_start'][0]:.1f} / {t['loadavg_end'][0]:.1f}"
            for n, t in r["tasks"].items()
        )
        + ".",
        "",
    ]
    lines += [
        "Per-epoch detail (stock's epoch 1 includes tracing `predict`; stock's "
        "`model.predict` share of its hook is timed inside the subclass):",
        "",
        *notes,
        "",
    ]
    return "\n".join(lines)


def plot(r, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r["tasks"])
    series = [
        ("forward floor", lambda t: t["forward"]["forward_s"], "#999999"),
        ("stock", lambda t: (t.get("stock") or {}).get("per_log_until_logged_s"), "#d62728"),
        ("fastevalcb", lambda t: (t.get("ours") or {}).get("per_log_until_logged_s"), "#1f77b4"),
    ]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(9, 3.3), dpi=90, gridspec_kw={"width_ratios": [3, 2]}
    )
    width = 0.27
    for k, (label, get, colour) in enumerate(series):
        vals = [get(r["tasks"][n]) for n in names]
        xs = [i + (k - 1) * width for i, v in enumerate(vals) if v and v > 0]
        vs = [v for v in vals if v and v > 0]
        bars = ax.bar(xs, vs, width, label=label, color=colour)
        ax.bar_label(bars, labels=[f"{v:.2g}s" for v in vs], fontsize=7)
    extra = [("stock", "#d62728"), ("ours", "#1f77b4")]
    for k, (side, colour) in enumerate(extra):
        vals = [(r["tasks"][n].get(side) or {}).get("fit_extra_s") for n in names]
        xs = [i + (k - 0.5) * width for i, v in enumerate(vals) if v and v > 0]
        vs = [v for v in vals if v and v > 0]
        bars = ax2.bar(xs, vs, width, color=colour)
        ax2.bar_label(bars, labels=[f"{v:.2g}s" for v in vs], fontsize=7)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for a in (ax, ax2):
        a.set_yscale("log")
        a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a.yaxis.set_minor_formatter(NullFormatter())
        a.set_xticks(range(len(names)))
        a.set_xticklabels([f"{n}\nN={r['tasks'][n]['n']:,}" for n in names], fontsize=8)
        low, high = a.get_ylim()
        a.set_ylim(low, high * 4)  # room for the labels and the legend
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("Per-log evaluation, until the version is written", fontsize=9)
    ax2.set_title(f"Extra wall time added to fit ({EPOCHS} epochs)", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N smoke run")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument(
        "--sides", default="ours,stock", help="order matters for memory, see the module docstring"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if unknown := set(tasks) - set(TASKS):
        parser.error(f"unknown tasks {sorted(unknown)}; choose from {list(TASKS)}")
    result = {
        "quick": args.quick,
        "machine": machine_info(),
        "ours_process_warmup": ours_process_warmup() if "ours" in sides else None,
        "settings": {
            "batch_size": BATCH,
            "epochs": EPOCHS,
            "score_threshold": SCORE_THRESHOLD,
            "max_boxes": MAX_BOXES,
            "gt_slots": GT_SLOTS,
            "seg_classes": SEG_CLASSES,
            "sides_order": sides,
            "rss_sample_interval_s": 0.01,
            "wandb_mode": "offline",
        },
        "tasks": {},
    }
    try:
        for name in tasks:
            n, size, train_n = SIZES[name][1 if args.quick else 0]
            result["tasks"][name] = bench_task(name, n, size, train_n, sides)
            gc.collect()
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)
    md = render(result)
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "e2e.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        (RESULTS / "e2e.md").write_text(md)
        plot(result, RESULTS / "e2e.png")


if __name__ == "__main__":
    main()
