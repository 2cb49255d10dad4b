"""Large validation sets with a near-free model: what the host pays per sample.

On a GPU the forward pass costs almost nothing, so what decides is the host-side cost per
sample. This script measures it with a near-free model (global average pool + one dense
layer for classification), in one process, offline W&B, per N:

* **train-begin block**: wall time from our ``on_train_begin`` to epoch 0's
  ``on_epoch_begin`` (what ``fit`` waits before training starts).
* **data table**: wall time until the data table artifact is logged (on the worker), next
  to the PNG encoding time of the same images on the same encoder threads
  (``fastevalcb.media.encode_images``, level 1): the ratio is the staging overhead.
* **peak RSS growth per sample**: process RSS high-water during construction + fit
  (psutil, sampled every 10 ms), minus the RSS before construction, over N.
* **per log**: training-thread time (``cb.timings`` ``eval_s``) and time until the version
  is written (``logged_s``), both over the raw compiled forward of the same samples
  (``BatchedPredictor.predict_all``, warm, best of 3), and the worker's CPU time per sample
  (CPU seconds of the ``fastevalcb-*`` threads, from /proc, over N) during one extra log
  made after the fit, when nothing else is in flight.

Run: ``python benchmarks/bench_scale.py`` (10k and 50k; ``--full`` adds 200k; ``--quick``
is a 2k smoke run). Writes ``benchmarks/results/scale.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
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
from _machine import cpu_name  # noqa: E402

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

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def fastevalcb_cpu_s() -> float:
    """CPU seconds so far of this process's threads named ``fastevalcb-*`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for thread in threading.enumerate():
        if not thread.name.startswith("fastevalcb") or thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            continue
    return total / tick


def near_free_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Smooth random images (PNG-compressible like photos, unlike white noise).
    base = rng.integers(0, 255, (n, SIZE // 4, SIZE // 4, 3), dtype=np.uint8)
    x = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)
    return x, rng.integers(0, 10, n)


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


def measure(n: int, workdir: Path) -> dict:
    x, y = data(n)
    model = near_free_model()
    x_train, y_train = x[:256], y[:256]
    model.fit(x_train, y_train, epochs=1, verbose=0)  # build + trace training

    forward = []
    predictor = BatchedPredictor(model, x, batch_size=256)
    for _ in range(3):
        t = time.perf_counter()
        predictor.predict_all()
        forward.append(time.perf_counter() - t)
    forward_s = min(forward)

    encode = []
    for _ in range(2):
        t = time.perf_counter()
        for s in range(0, n, 256):
            encode_images(x[s:s + 256], compress_level=1)
        encode.append(time.perf_counter() - t)
    encode_s = min(encode)

    run = wandb.init(project="bench-scale", mode="offline", dir=str(workdir),
                     reinit="finish_previous")
    rss0 = psutil.Process().memory_info().rss
    with PeakRSS() as rss:
        cb = ClassificationEvalCallback((x, y), [f"c{i}" for i in range(10)],
                                        batch_size=256, verbose=0)
        start, clock = Start(), Clock()
        cpu0 = fastevalcb_cpu_s()
        t_fit = time.perf_counter()
        model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0,
                  callbacks=[start, cb, clock])
        fit_s = time.perf_counter() - t_fit
        cpu_s = fastevalcb_cpu_s() - cpu0
        # One more log on its own, after the data table and both epochs' versions are
        # written: the worker's CPU per sample with nothing else in flight.
        cb.flush()
        cpu_before, wall = fastevalcb_cpu_s(), time.perf_counter()
        cb.on_epoch_end(2)
        thread_s = time.perf_counter() - wall
        cb.flush()
        isolated = {"thread_s": thread_s, "logged_s": time.perf_counter() - wall,
                    "worker_cpu_s": fastevalcb_cpu_s() - cpu_before}
    run.finish()
    timings = [t for t in cb.timings if t["logged_s"] is not None]
    data_table_s = cb.data_table_seconds if hasattr(cb, "data_table_seconds") else None
    best_eval = min(t["eval_s"] for t in timings)
    best_logged = min(t["logged_s"] for t in timings)
    return {
        "n": n,
        "train_begin_block_s": clock.epoch_begin - start.t,
        "on_train_begin_s": clock.train_begin_done - start.t,
        "data_table_s": data_table_s,
        "png_encode_s": encode_s,
        "forward_s": forward_s,
        "forward_us_per_sample": forward_s / n * 1e6,
        "eval_thread_s": best_eval,
        "logged_s": best_logged,
        "thread_over_forward": best_eval / forward_s,
        "logged_over_forward": best_logged / forward_s,
        "worker_cpu_s_total": cpu_s,
        "worker_cpu_us_per_sample_per_log": isolated["worker_cpu_s"] / n * 1e6,
        "isolated_log_thread_over_forward": isolated["thread_s"] / forward_s,
        "isolated_log_logged_over_forward": isolated["logged_s"] / forward_s,
        "peak_rss_delta_mb": (rss.peak - rss0) / 2**20,
        "peak_rss_bytes_per_sample": (rss.peak - rss0) / n,
        "fit_s": fit_s,
        "versions": len(timings),
    }


def markdown(rows: list[dict]) -> str:
    head = ("| N (32x32) | fit waits at train begin | data table | PNG encode alone | "
            "forward (µs/sample) | per log: thread / forward | until written / forward | "
            "worker CPU µs/sample/log | peak RSS Δ / sample |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        table = "n/a" if r["data_table_s"] is None else f"{r['data_table_s']:.2f} s"
        lines.append(
            f"| {r['n']:,} | {r['train_begin_block_s']:.2f} s | {table} | "
            f"{r['png_encode_s']:.2f} s | {r['forward_us_per_sample']:.1f} | "
            f"{r['thread_over_forward']:.2f}x | {r['logged_over_forward']:.2f}x | "
            f"{r['worker_cpu_us_per_sample_per_log']:.0f} | "
            f"{r['peak_rss_bytes_per_sample'] / 1024:.1f} KB |")
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ns, [r["train_begin_block_s"] for r in rows], "o-", label="fit waits")
    axes[0].plot(ns, [r["png_encode_s"] for r in rows], "s--", label="PNG encode (all images)")
    axes[0].plot(ns, [r["data_table_s"] for r in rows], "^-", label="data table (worker)")
    axes[0].set(title="train begin and data table", xlabel="N", ylabel="s")
    axes[1].plot(ns, [r["worker_cpu_us_per_sample_per_log"] for r in rows], "o-")
    axes[1].set(title="worker CPU per sample per log", xlabel="N", ylabel="µs")
    axes[1].axhline(15, color="grey", ls=":", label="15 µs target")
    axes[1].set_ylim(bottom=0)
    axes[1].legend()
    axes[2].plot(ns, [r["peak_rss_bytes_per_sample"] / 1024 for r in rows], "o-")
    axes[2].axhline(1.0, color="grey", ls=":", label="1 KB target")
    axes[2].set(title="peak RSS growth per sample", xlabel="N", ylabel="KB")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=2,000 only (smoke run)")
    parser.add_argument("--full", action="store_true", help="also N=200,000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one N, in this process
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(measure(args.one, Path(tmp))), flush=True)
        return
    sizes = [2000] if args.quick else [10_000, 50_000] + ([200_000] if args.full else [])
    rows = []
    for n in sizes:  # a fresh process per N: RSS growth is not hidden by reused memory
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(next(line for line in out.splitlines()
                                    if line.startswith("RESULT "))[7:]))
        print(json.dumps(rows[-1]), flush=True)
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_at_end": os.getloadavg(),
            "keras": keras.__version__, "wandb": wandb.__version__}
    table = markdown(rows)
    print(table)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scale.json").write_text(json.dumps({"machine": info, "rows": rows},
                                                       indent=1))
        (RESULTS / "scale.md").write_text(
            "`python benchmarks/bench_scale.py` (near-free classifier, 32x32, offline)\n\n"
            + table)
        plot(rows, RESULTS / "scale.png")


if __name__ == "__main__":
    main()
