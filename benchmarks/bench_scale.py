"""Large validation sets with a near-free model: what the host pays per sample.

On a GPU the forward pass costs almost nothing, so what decides is the host-side cost per
sample. This script measures it with near-free models (global average pool + one dense
layer for classification and detection, a 1x1 convolution for segmentation), in one
process per row, offline W&B:

* **train-begin block**: wall time from our ``on_train_begin`` to epoch 0's
  ``on_epoch_begin`` (what ``fit`` waits before training starts).
* **data table**: wall time until the data table artifact is logged (on the worker), next
  to the PNG encoding time of the same images on the same encoder threads
  (``fastevalcb.media.encode_images``, level 1), and to the time the file system takes to
  create that many files of those sizes in a fresh staging folder (``os.open`` + write,
  on as many threads; ``os.sync()`` before each, as this disk slows file creation down
  several-fold once dirty pages pile up): a W&B artifact needs one file per image, so
  encode + file creation is the floor of staging. Measured twice: during ``fit`` (what a
  user waits for) and alone, after the logs, with nothing else in flight (as the encode
  and the file creation are measured; the ratios are of this one).
* **cold start**: the train-begin wait and the time until the first version is logged
  on a cold numba cache (a fresh process with an empty ``NUMBA_CACHE_DIR``: the first
  run after an install), small N per task.
* **peak RSS growth per sample**: process RSS high-water during construction + fit
  (psutil, sampled every 10 ms), minus the RSS before construction, over N; the
  per-sample slope between two N (what grows with the set, beyond fixed costs such as
  numba and TF) is in the markdown notes.
* **per log**: training-thread time (``cb.timings`` ``eval_s``) and time until the version
  is written (``logged_s``), over the raw compiled forward of the same samples (a
  ``BatchedPredictor`` pass streamed to host arrays, warm), and over the callback's own
  compiled step (the forward plus what it adds on the device: segmentation's argmax);
  measured on 5 extra logs after the fit, each right after one pass of each of those,
  best of each; and the worker's CPU time per sample (CPU seconds of the logging
  worker's and PNG encoder's threads, from /proc, over N) during those logs, when
  nothing else is in flight (best of 5), with the share of it spent in the kernel.

Run: ``python benchmarks/bench_scale.py`` (classification 10k and 50k, detection 1k and
segmentation 300; ``--full`` adds classification 200k; ``--quick`` is a smoke run;
``--safe`` runs every row again with ``FASTEVALCB_SAFE=1``, wandb's public API for every
write, beside the fast rows; ``--rows TASK:N,...`` picks the rows).
Writes ``benchmarks/results/scale.{json,md,png}`` (``scale-safe.*`` with ``--safe``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_SILENT", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import wandb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name, fresh_memory_costs  # noqa: E402

from fastevalcb import BatchedPredictor, ClassificationEvalCallback  # noqa: E402
from fastevalcb.media import encode_images  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 32


class PeakRSS:
    """Samples the process RSS every 10 ms on a thread; ``peak`` is the high-water mark."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def worker_threads(what: str) -> list[str]:
    """``/proc/self/task/<tid>/<what>`` of each of the worker's threads (``fastevalcb-logger``
    and the PNG pool; not ``fastevalcb-predictor``, which runs the forward pass ahead of
    the training thread) that is still there."""
    texts = []
    for thread in threading.enumerate():
        if (
            not thread.name.startswith("fastevalcb")
            or thread.name == "fastevalcb-predictor"
            or thread.native_id is None
        ):
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/{what}") as f:
                texts.append(f.read())
        except OSError:  # the thread ended meanwhile
            continue
    return texts


def fastevalcb_cpu_s() -> float:
    """CPU seconds so far of the worker's threads, from each one's ``schedstat`` (run time
    in ns; ``stat``'s utime + stime count 10 ms ticks, 33 µs a sample at N=300)."""
    return sum(int(text.split()[0]) for text in worker_threads("schedstat")) / 1e9


def fastevalcb_kernel_share() -> tuple[int, int]:
    """``(user, system)`` clock ticks so far of the worker's threads (``stat``: 10 ms ticks,
    so a share, not a total)."""
    fields = [text.rsplit(")", 1)[1].split() for text in worker_threads("stat")]
    return sum(int(f[11]) for f in fields), sum(int(f[12]) for f in fields)


def near_free_classifier(size: int = SIZE) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


near_free_model = near_free_classifier  # the name other scripts import


def data(n: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Smooth random images (PNG-compressible like photos, unlike white noise).
    base = rng.integers(0, 255, (n, size // 4, size // 4, 3), dtype=np.uint8)
    x = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)
    return x, rng.integers(0, 10, n)


def classification(n: int) -> dict:
    x, y = data(n)
    return {
        "model": near_free_classifier(),
        "x": x,
        "y": y,
        "train": (x[:256], y[:256]),
        "batch_size": 256,
        "callback": lambda: ClassificationEvalCallback(
            (x, y), [f"c{i}" for i in range(10)], batch_size=256, verbose=0, metrics=METRICS
        ),
    }


def detection(n: int, size: int = 128, boxes: int = 100) -> dict:
    """A near-free head of ``boxes`` sorted, scored, classed boxes per image."""
    from fastevalcb import DetectionEvalCallback
    from fastevalcb.synthetic import CLASS_NAMES, make_shapes

    val = make_shapes(n, size, seed=1)
    keras.utils.set_random_seed(0)
    ops = keras.ops
    inputs = keras.Input((size, size, 3), dtype="uint8")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    corners = ops.sigmoid(keras.layers.Reshape((boxes, 4))(keras.layers.Dense(boxes * 4)(h)))
    xyxy = (
        ops.concatenate(
            [
                ops.minimum(corners[..., :2], corners[..., 2:]),
                ops.maximum(corners[..., :2], corners[..., 2:]),
            ],
            -1,
        )
        * size
    )
    scores, order = ops.top_k(keras.layers.Dense(boxes, activation="sigmoid")(h), boxes)
    xyxy = ops.take_along_axis(xyxy, order[..., None], axis=1)
    classes = ops.cast(
        ops.argmax(
            keras.layers.Reshape((boxes, len(CLASS_NAMES)))(
                keras.layers.Dense(boxes * len(CLASS_NAMES))(h)
            ),
            -1,
        ),
        "int32",
    )
    model = keras.Model(inputs, {"boxes": xyxy, "scores": scores, "classes": classes})
    model.compile("sgd", loss={"boxes": "mse", "scores": None, "classes": None})
    gt = {
        "boxes": val.boxes[:, None].astype(np.float32),
        "classes": val.labels[:, None].astype(np.int32),
    }
    train_y = {"boxes": np.repeat(val.boxes[:64, None], boxes, axis=1)}
    return {
        "model": model,
        "x": val.images,
        "y": gt,
        "train": (val.images[:64], train_y),
        "batch_size": 32,
        "callback": lambda: DetectionEvalCallback(
            (val.images, gt),
            list(CLASS_NAMES),
            box_format="xyxy",
            batch_size=32,
            verbose=0,
            metrics=METRICS,
        ),
    }


def segmentation(n: int, size: int = 256, classes: int = 21, pool: int = 1) -> dict:
    """A near-free per-pixel head: one 1x1 convolution to ``classes`` logits, which on
    random weights predicts per-pixel noise (~67 class edges a row: the dearest mask to
    encode). ``pool > 1``: the convolution (weights 10x larger, so that colours part)
    runs on the image average-pooled ``pool`` x ``pool``, upsampled back (nearest): maps
    of a few classes in blocks, ~3 class edges a row on these shapes, as a trained
    model's blobs have (~2, ``mask_cost.py``)."""
    from fastevalcb import SegmentationEvalCallback
    from fastevalcb.synthetic import CLASS_NAMES, make_shapes

    val = make_shapes(n, size, seed=1)
    names = ["background", *CLASS_NAMES] + [f"class_{i}" for i in range(4, classes)]
    keras.utils.set_random_seed(0)
    layers = keras.layers
    init = keras.initializers.RandomNormal(stddev=10.0) if pool > 1 else "glorot_uniform"
    head = layers.Conv2D(classes, 1, kernel_initializer=init)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3), dtype="uint8"),
            layers.Rescaling(1 / 255),
            *([layers.AveragePooling2D(pool)] if pool > 1 else []),
            head,
            *([layers.UpSampling2D(pool)] if pool > 1 else []),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return {
        "model": model,
        "x": val.images,
        "y": val.masks,
        "train": (val.images[:16], val.masks[:16]),
        "batch_size": 16,
        "callback": lambda: SegmentationEvalCallback(
            (val.images, val.masks),
            names,
            output="logits",
            batch_size=16,
            verbose=0,
            metrics=METRICS,
        ),
    }


TASKS = {
    "classification": (classification, "32x32, 10 classes"),
    "detection": (detection, "128x128, 100 boxes"),
    "segmentation": (segmentation, "256x256, 21 classes, noise masks"),
    "segmentation-trained": (
        lambda n: segmentation(n, pool=8),
        "256x256, 21 classes, trained-like masks",
    ),
}


def staging_floor_s(sizes: list[int], workers: int) -> float:
    """Seconds to create ``len(sizes)`` files of those sizes in a fresh staging folder,
    on ``workers`` threads: what the file system charges for one file per image. The files
    stay until every row is done (see :func:`run_all`)."""
    from concurrent.futures import ThreadPoolExecutor

    from wandb.sdk.artifacts.staging import get_staging_dir

    folder = tempfile.mkdtemp(prefix="fastevalcb-floor-", dir=get_staging_dir())
    payloads = [os.urandom(size) for size in sizes]

    def create(rows: range) -> None:
        for i in rows:
            fd = os.open(f"{folder}/f-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            os.write(fd, payloads[i])
            os.close(fd)

    chunk = -(-len(sizes) // workers)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                create, [range(i, min(i + chunk, len(sizes))) for i in range(0, len(sizes), chunk)]
            )
        )
    return time.perf_counter() - start


class Clock(keras.callbacks.Callback):
    """Put right after ours: its on_train_begin runs when ours has returned."""

    def __init__(self) -> None:
        super().__init__()
        self.train_begin_done = None
        self.epoch_begin = None

    def on_train_begin(self, logs=None):
        self.train_begin_done = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch_begin is None:
            self.epoch_begin = time.perf_counter()


class Start(keras.callbacks.Callback):
    """Put right before ours."""

    def __init__(self) -> None:
        super().__init__()
        self.t = None

    def on_train_begin(self, logs=None):
        self.t = time.perf_counter()


def forward_s(model, x, batch_size: int) -> float:
    """The raw compiled forward over ``x``, streamed batch by batch to host arrays as the
    callback's pass runs it (``predict_all`` would also gather every output: 1.6 GB of
    segmentation logits at N=300, which the peak RSS would then charge to the callback).
    The first pass traces the step; the second is timed."""
    predictor = BatchedPredictor(model, x, batch_size=batch_size)
    pass_s(predictor, model)
    return pass_s(predictor, model)


def pass_s(predictor: BatchedPredictor, model) -> float:
    """One pass of ``predictor`` over its data, batches to host arrays (warm)."""
    t = time.perf_counter()
    for _batch in predictor.iter_batches(model):
        pass
    return time.perf_counter() - t


def measure(task: str, n: int, workdir: Path) -> dict:
    setup = TASKS[task][0](n)
    model, x = setup["model"], setup["x"]
    model.fit(*setup["train"], epochs=1, verbose=0)  # build + trace training
    batch_size = setup["batch_size"]

    encode = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        encoded = [
            e for s in range(0, n, 256) for e in encode_images(x[s : s + 256], compress_level=1)
        ]
        encode = min(encode, time.perf_counter() - t)
    # The file system throttles file creation once enough dirty data piles up: each
    # phase starts with the page cache written back, so neither pays for the other's.
    os.sync()
    floor_s = staging_floor_s([len(e.data) for e in encoded], os.cpu_count() or 1)
    del encoded
    os.sync()

    run = wandb.init(
        project="bench-scale", mode="offline", dir=str(workdir), reinit="finish_previous"
    )
    rss0 = psutil.Process().memory_info().rss
    with PeakRSS() as rss:
        cb = setup["callback"]()
        start, clock = Start(), Clock()
        t_fit = time.perf_counter()
        model.fit(*setup["train"], epochs=2, batch_size=16, verbose=0, callbacks=[start, cb, clock])
        fit_s = time.perf_counter() - t_fit
        cb.flush()
        # Five more logs on their own, after the data table and the fit's versions are
        # written, each right after one raw forward pass and one pass of the callback's
        # step over the same samples (one try each per log, the best of each reported):
        # the training thread vs the forward, and the worker's CPU per sample with
        # nothing else in flight.
        raw = BatchedPredictor(model, x, batch_size=batch_size)
        pass_s(raw, model)  # traces
        logs = []
        for epoch in range(2, 7):
            fwd = pass_s(raw, model)
            # The callback's own compiled step: the forward plus what it adds on the device
            # (segmentation: argmax + finite check; free on a GPU, not on 2 CPU cores).
            own_step = pass_s(cb.predictor, model)
            cpu_before, wall = fastevalcb_cpu_s(), time.perf_counter()
            ticks_before = fastevalcb_kernel_share()
            cb.on_epoch_end(epoch)
            thread_s = time.perf_counter() - wall
            cb.flush()
            user, system = (b - a for a, b in zip(ticks_before, fastevalcb_kernel_share()))
            logs.append(
                {
                    "forward_s": fwd,
                    "own_step_s": own_step,
                    "thread_s": thread_s,
                    "logged_s": time.perf_counter() - wall,
                    "worker_cpu_s": fastevalcb_cpu_s() - cpu_before,
                    "worker_kernel_share": system / max(user + system, 1),
                }
            )
        # The data table once more, on its own (no fit, forward or version competing for
        # the cores), as the PNG encode is measured: staging's cost next to the encode's.
        alone = setup["callback"]()
        alone.set_model(model)
        alone.on_train_begin()
        alone.flush()
        data_table_alone_s = alone.data_table_seconds
        del alone
    run.finish()
    best = {key: min(log[key] for log in logs) for key in logs[0]}
    best["worker_kernel_share"] = min(logs, key=lambda log: log["worker_cpu_s"])[
        "worker_kernel_share"
    ]  # of the log whose CPU is reported
    return {
        "task": task,
        "n": n,
        "shape": TASKS[task][1],
        "train_begin_block_s": clock.epoch_begin - start.t,
        "on_train_begin_s": clock.train_begin_done - start.t,
        "data_table_s": cb.data_table_seconds,
        "png_encode_s": encode,
        "file_creation_s": floor_s,
        "data_table_over_encode": cb.data_table_seconds / encode,
        "data_table_over_floor": cb.data_table_seconds / (encode + floor_s),
        "data_table_alone_s": data_table_alone_s,
        "data_table_alone_over_encode": data_table_alone_s / encode,
        "data_table_alone_over_floor": data_table_alone_s / (encode + floor_s),
        "forward_s": best["forward_s"],
        "forward_us_per_sample": best["forward_s"] / n * 1e6,
        "eval_thread_s": best["thread_s"],
        "logged_s": best["logged_s"],
        "thread_over_forward": best["thread_s"] / best["forward_s"],
        "own_step_s": best["own_step_s"],
        "thread_over_own_step": best["thread_s"] / best["own_step_s"],
        "logged_over_forward": best["logged_s"] / best["forward_s"],
        "worker_cpu_us_per_sample_per_log": best["worker_cpu_s"] / n * 1e6,
        "worker_kernel_share": best["worker_kernel_share"],
        "logs": logs,
        "peak_rss_delta_mb": (rss.peak - rss0) / 2**20,
        "peak_rss_bytes_per_sample": (rss.peak - rss0) / n,
        "fit_s": fit_s,
        "versions": len(cb.logged_versions),
    }


COLD_N = {"classification": 1000, "detection": 64, "segmentation": 32}  # cold-start rows


def cold_start(task: str, workdir: Path) -> dict:
    """``fit``'s wait at train begin on a cold numba cache (run with ``NUMBA_CACHE_DIR``
    set to an empty folder: the first process after an install, or a read-only
    ``__pycache__``), and until the worker has compiled the kernels and logged."""
    setup = TASKS[task][0](COLD_N[task])
    model = setup["model"]
    model.fit(*setup["train"], epochs=1, verbose=0)
    run = wandb.init(
        project="bench-scale", mode="offline", dir=str(workdir), reinit="finish_previous"
    )
    cb = setup["callback"]()
    start, clock = Start(), Clock()
    model.fit(*setup["train"], epochs=1, batch_size=16, verbose=0, callbacks=[start, cb, clock])
    cb.flush()
    until_logged = time.perf_counter() - start.t
    run.finish()
    return {
        "task": task,
        "n": COLD_N[task],
        "train_begin_block_s": clock.epoch_begin - start.t,
        "until_logged_s": until_logged,
    }


# Worker CPU µs per sample per log, issue 30's targets (segmentation's is for trained-like
# masks: a noise mask's PNG alone costs ~120 µs, see mask_cost.py).
TARGET_US = {"classification": 5, "detection": 60, "segmentation-trained": 200}


def markdown(rows: list[dict]) -> str:
    head = (
        "| task | N | fit waits at train begin | data table in fit / alone | PNG encode | "
        "file creation | data table alone / encode, / (encode + files) | forward "
        "(µs/sample) | per log: thread / forward (/ own step) | until written / forward | "
        "worker CPU µs/sample/log (target) | of it in the kernel | peak RSS Δ / sample |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['task']} ({r['shape']}){' **safe**' if r.get('mode') == 'safe' else ''}"
            f" | {r['n']:,} | {r['train_begin_block_s']:.2f} s | "
            f"{r['data_table_s']:.2f} / {r['data_table_alone_s']:.2f} s | "
            f"{r['png_encode_s']:.2f} s | {r['file_creation_s']:.2f} s | "
            f"{r['data_table_alone_over_encode']:.1f}x, "
            f"{r['data_table_alone_over_floor']:.2f}x | "
            f"{r['forward_us_per_sample']:.1f} | {r['thread_over_forward']:.2f}x "
            f"({r['thread_over_own_step']:.2f}x) | "
            f"{r['logged_over_forward']:.2f}x | {r['worker_cpu_us_per_sample_per_log']:.0f} "
            f"({TARGET_US.get(r['task'], '—')}) | {100 * r['worker_kernel_share']:.0f}% | "
            f"{r['peak_rss_bytes_per_sample'] / 1024:.1f} KB |"
        )
    cls = sorted(
        (r for r in rows if r["task"] == "classification" and r.get("mode", "fast") == "fast"),
        key=lambda r: r["n"],
    )
    notes = ""
    if len(cls) >= 2:
        a, b = cls[0], cls[-1]
        slope = (b["peak_rss_delta_mb"] - a["peak_rss_delta_mb"]) * 2**20 / (b["n"] - a["n"])
        notes = (
            f"\nPeak RSS growth per added sample, classification {a['n']:,} -> "
            f"{b['n']:,}: {slope / 1024:.2f} KB (the rest of the per-sample column is "
            "fixed cost: TF, numba, wandb).\n"
        )
    return head + "\n".join(lines) + "\n" + notes


def cold_markdown(cold: list[dict]) -> str:
    if not cold:
        return ""
    cells = ", ".join(
        f"{c['task']} (N={c['n']:,}) {c['train_begin_block_s']:.2f} s "
        f"({c['until_logged_s']:.1f} s until logged)"
        for c in cold
    )
    return (
        "\nOn a cold numba cache (an empty `NUMBA_CACHE_DIR`, a fresh process each; "
        f"the kernels compile on the worker), fit waits at train begin: {cells}.\n"
    )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cls = sorted(
        (r for r in rows if r["task"] == "classification" and r.get("mode", "fast") == "fast"),
        key=lambda r: r["n"],
    )
    ns = [r["n"] for r in cls]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ns, [r["train_begin_block_s"] for r in cls], "o-", label="fit waits")
    axes[0].plot(ns, [r["png_encode_s"] for r in cls], "s--", label="PNG encode")
    axes[0].plot(
        ns,
        [r["png_encode_s"] + r["file_creation_s"] for r in cls],
        "x--",
        label="PNG encode + file creation",
    )
    axes[0].plot(ns, [r["data_table_s"] for r in cls], "^-", label="data table (worker)")
    axes[0].set(title="classification 32x32: train begin, data table", xlabel="N", ylabel="s")
    for task, marker in (
        ("classification", "o-"),
        ("detection", "s"),
        ("segmentation-trained", "^"),
    ):
        mine = [r for r in rows if r["task"] == task]
        axes[1].plot(
            [r["n"] for r in mine],
            [r["worker_cpu_us_per_sample_per_log"] / TARGET_US[task] for r in mine],
            marker,
            label=task,
        )
    axes[1].axhline(1, color="grey", ls=":", label="target")
    axes[1].set(title="worker CPU per sample per log / target", xlabel="N", ylabel="x target")
    axes[1].set_ylim(bottom=0)
    axes[1].legend()
    axes[2].plot(ns, [r["peak_rss_bytes_per_sample"] / 1024 for r in cls], "o-")
    axes[2].axhline(1.0, color="grey", ls=":", label="1 KB target")
    axes[2].set(title="classification: peak RSS growth / sample", xlabel="N", ylabel="KB")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# BENCH_METRICS=off: every metric group off (metrics=[]), to measure what the metrics cost
# (the rows are otherwise the callbacks' defaults: every group on).
METRICS: list[str] | None = [] if os.environ.get("BENCH_METRICS") == "off" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--full", action="store_true", help="also classification N=200,000")
    parser.add_argument(
        "--safe",
        action="store_true",
        help="each row also with FASTEVALCB_SAFE=1 (wandb's public API)",
    )
    parser.add_argument("--rows", help="TASK:N,... instead of the default rows")
    parser.add_argument("--one", nargs=2, metavar=("TASK", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--cold", metavar="TASK", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one or args.cold:
        # wandb's staging folder too (WANDB_DATA_DIR): an offline run's staged files stay
        # there (until a sync uploads them), and a folder holding millions of old files
        # makes creating new ones slower; each row starts with an empty one.
        work = Path(tempfile.mkdtemp(dir=args.workdir))
        os.environ["WANDB_DATA_DIR"] = str(work)
        row = (
            cold_start(args.cold, work)
            if args.cold
            else measure(args.one[0], int(args.one[1]), work)
        )
        row["mode"] = "safe" if os.environ.get("FASTEVALCB_SAFE") == "1" else "fast"
        print("RESULT " + json.dumps(row), flush=True)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory() as workdir:
        run_all(args, workdir)


def file_creation_us(folder: str, files: int = 2000) -> float:
    """CPU µs per file to create ``files`` files of 1.5 KB in a new subfolder of ``folder``
    (kept: deleting them would slow the next creations down, see :func:`run_all`)."""
    target = tempfile.mkdtemp(dir=folder)
    data = os.urandom(1500)
    start = time.thread_time()
    for i in range(files):
        fd = os.open(f"{target}/f-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        os.write(fd, data)
        os.close(fd)
    return (time.thread_time() - start) / files * 1e6


def wait_for_settled_disk(folder: str, limit_us: float = 100.0, patience_s: float = 600.0) -> float:
    """Wait (up to ``patience_s``) until creating a file costs under ``limit_us`` of CPU:
    right after many files were deleted (an earlier run's), it costs 10-20x its usual
    ~30 µs here, and every row would be charged for it. Returns the last probe's µs."""
    start = time.perf_counter()
    while (us := file_creation_us(folder)) > limit_us and time.perf_counter() - start < patience_s:
        print(
            f"file creation costs {us:.0f} µs a file (files were deleted lately); "
            "waiting 30 s for it to settle",
            flush=True,
        )
        time.sleep(30)
    return us


def row_in_process(args: list[str], workdir: str, **env: str) -> dict:
    """This script's ``RESULT`` row for ``args`` (``--one TASK N`` or ``--cold TASK``), run
    in a fresh process with its files under ``workdir``; printed as it comes."""
    out = subprocess.run(
        [sys.executable, __file__, *args, "--workdir", workdir],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    ).stdout
    row = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    print(json.dumps({k: v for k, v in row.items() if k != "logs"}), flush=True)
    return row


def run_all(args: argparse.Namespace, workdir: str) -> None:
    """Every row in a fresh process; the files they make are deleted together at the end.

    Not row by row: on ext4 without a journal (this machine's disk), creating a file
    within a minute or so of deleting many costs 10-20x more CPU in the kernel (the inode
    allocator steps over recently deleted inodes: ``find_inode_bit`` -> ``recently_deleted``
    in ``perf``), so a row right after the previous row's 200,000 staged files went was
    charged for them.
    """
    if args.rows:
        runs = [(row.split(":")[0], int(row.split(":")[1])) for row in args.rows.split(",")]
    elif args.quick:
        runs = [("classification", 2000), ("detection", 64), ("segmentation", 32)]
    else:
        runs = [("classification", 10_000), ("classification", 50_000)]
        runs += [("classification", 200_000)] if args.full else []
        runs += [("detection", 1000), ("segmentation", 300), ("segmentation-trained", 300)]
    settled_us = (
        file_creation_us(workdir)
        if args.quick  # a smoke run does not wait
        else wait_for_settled_disk(workdir)
    )
    # A fresh process per row: RSS growth is not hidden by reused memory.
    rows = []
    for task, n in runs:
        rows.append(row_in_process(["--one", task, str(n)], workdir, FASTEVALCB_SAFE="0"))
        if args.safe:
            rows.append(row_in_process(["--one", task, str(n)], workdir, FASTEVALCB_SAFE="1"))
    cold = []
    for task in [] if args.safe else COLD_N:  # and an empty numba cache each
        with tempfile.TemporaryDirectory() as cache:
            cold.append(row_in_process(["--cold", task], workdir, NUMBA_CACHE_DIR=cache))
    with tempfile.TemporaryDirectory() as tmp:
        memory = fresh_memory_costs(tmp)
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "file_creation_us_at_start": settled_us,
        "keras": keras.__version__,
        "wandb": wandb.__version__,
        "fresh_memory": memory,
    }
    table = (
        markdown(rows)
        + cold_markdown(cold)
        + (
            f"\nCreating a 1.5 KB file cost {settled_us:.0f} µs of CPU at the start (the run "
            "waits until it is under 100 µs: see `run_all`).\n"
            "\nFresh memory on this machine (`_machine.fresh_memory_costs`, after the rows): "
            f"{memory['fresh_page_us']:.2f} µs per 4 KiB page on first touch, "
            f"{memory['touched_page_us']:.2f} on the next; a new file is written at "
            f"{memory['new_file_mb_s']} MB/s, the same bytes overwritten at "
            f"{memory['overwrite_mb_s']} MB/s.\n"
        )
    )
    print(table)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        name = "scale-safe" if args.safe else "scale"
        command = " ".join(["python benchmarks/bench_scale.py", *sys.argv[1:]])
        (RESULTS / f"{name}.json").write_text(
            json.dumps(
                {"machine": info, "rows": rows, "cold_start": cold, "command": command}, indent=1
            )
        )
        (RESULTS / f"{name}.md").write_text(
            f"`{command}` (near-free models, offline W&B, 2 shared cores)\n\n" + table
        )
        if not args.safe:
            plot(rows, RESULTS / "scale.png")


if __name__ == "__main__":
    main()
