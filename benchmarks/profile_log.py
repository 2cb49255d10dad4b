"""Where one log's host time goes, per sample, with a near-free model (bench_scale's).

Runs a task callback inline (``async_logging=False``: every step in this thread), logs a
few versions after the data table, and charges each version's thread CPU time to the
stages below (``time.thread_time`` around each; nested stages are shown indented and are
part of their parent). "wandb" rows are wandb's own code: ``run.log_artifact`` (manifest
digest, protobuf records for every entry) and Python's cyclic garbage collector, which a
version's allocations set off and which walks the whole heap (TF, Keras, numba: ~450k
objects), shown as wall time.

Run: ``python benchmarks/profile_log.py [classification|detection|segmentation] [N]``.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_SILENT", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale  # noqa: E402
import wandb  # noqa: E402

from fastevalcb import tables  # noqa: E402
from fastevalcb.tasks import _versions  # noqa: E402

DEFAULT_N = {"classification": 10_000, "detection": 1000, "segmentation": 300}
DEFAULT_N["segmentation-trained"] = 300


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else "classification"  # or a bench_scale.TASKS key
    n = int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_N[task]
    setup = bench_scale.TASKS[task][0](n)
    model = setup["model"]
    model.fit(*setup["train"], epochs=1, verbose=0)
    run = wandb.init(project="profile-log", mode="offline", dir=tempfile.mkdtemp())
    cb = setup["callback"]()
    cb._versions.worker = _versions.InlineWorker()  # every stage in this thread
    cb._run_guard.worker = cb._worker
    model.fit(*setup["train"], epochs=1, verbose=0, callbacks=[cb])

    spent: dict[str, float] = {}
    task_cls = type(cb)

    def charge(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - start

        setattr(owner, name, timed)

    stages = [
        (_versions.VersionWriter, "add_batch", "rows of each batch (worker)"),
        (task_cls, "_pred_columns_for", "  task kernels, metrics, media"),
        (tables.StreamedTable, "add_columns", "  table: serialize the batch"),
        (tables.MediaIndex, "add_column_references", "    reference entries (plain images)"),
        (tables.MediaIndex, "add_references", "    reference entries (other media)"),
        (tables.StreamedTable, "_infer_column_type", "    column types"),
        (_versions.VersionWriter, "finish_version", "finish the version (worker)"),
        (tables.artifacts, "add_table", "  write the table file"),
        (run, "log_artifact", "  wandb: run.log_artifact"),
    ]
    for owner, name, label in stages:
        charge(owner, name, label)
    gc_wall = [0.0]
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            gc_wall[0] += time.perf_counter() - started.pop()

    gc.callbacks.append(on_gc)
    rows = []
    for epoch in range(1, 5):
        spent.clear()
        gc_wall[0] = 0.0
        cb.on_epoch_end(epoch)
        rows.append({**spent, "wandb: garbage collection (wall)": gc_wall[0]})
    run.finish()
    labels = [label for _, _, label in stages] + ["wandb: garbage collection (wall)"]
    print(f"{task}, N={n}: µs per sample per log, {len(rows)} logs (min / max)")
    for label in labels:
        values = [r.get(label, 0.0) / n * 1e6 for r in rows]
        print(f"  {label:48s} {min(values):8.1f} / {max(values):8.1f}")
    print(json.dumps({"task": task, "n": n, "logs": rows}))


if __name__ == "__main__":
    main()
