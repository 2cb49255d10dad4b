"""Where one log's host time goes, per sample, with a near-free model (bench_scale's):
which part is fastevalcb's and which is wandb's.

Runs a task callback inline (``async_logging=False``: every step in this thread), logs a
few versions after the data table, and charges each version's thread CPU time to the
stages below (``time.thread_time`` around each; nested stages are shown indented and are
part of their parent). "wandb" rows are wandb's own code:

* ``run.log_artifact``: the manifest's protobuf record, or for more than 10,000 entries
  the gzipped JSON-lines manifest file wandb writes entry by entry (~2.3 µs an entry
  with the entries' JSON ready, ``json_util.dumps`` + ``GzipFile.write``);
* ``run.log`` of the version's metrics and charts: wandb writes each chart's
  ``wandb.Table`` into an artifact of its own (``Table.to_json`` per cell, ``json.dump``).

Python's cyclic garbage collector, which a version's allocations set off and which walks
the whole heap (TF, Keras, numba: ~450k objects), runs inside those stages: its wall time
is shown on a line of its own, already counted in the stage it interrupted.

The PNG encoder threads (segmentation's predicted masks) are not in these figures:
``bench_scale`` counts them.

Run: ``python benchmarks/profile_log.py [TASK] [N]`` (a ``bench_scale.TASKS`` key), or
``--all`` for classification 10,000, detection 1,000 and trained-like segmentation 300,
each in a fresh process, written to ``benchmarks/results/profile.{json,md}``.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
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
ALL = ("classification", "detection", "segmentation-trained")
RESULTS = Path(__file__).resolve().parent / "results"
GC = "garbage collection, inside the stages (wall)"


def profile(task: str, n: int) -> dict:
    """Each stage's thread CPU seconds, per log, for 4 logs of ``task`` at ``n`` samples."""
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
        (task_cls, "_summary", "  summary metrics"),
        (task_cls, "_summary_charts", "  charts' tables"),
        (tables, "log_metrics", "  wandb: run.log of the metrics and charts"),
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
    logs = []
    for epoch in range(1, 5):
        spent.clear()
        gc_wall[0] = 0.0
        cb.on_epoch_end(epoch)
        logs.append({**spent, GC: gc_wall[0]})
    run.finish()
    labels = [label for _, _, label in stages] + [GC]
    return {"task": task, "n": n, "labels": labels, "logs": logs}


def per_sample(row: dict) -> dict[str, tuple[float, float]]:
    """Each stage's (min, max) µs per sample over the logs."""
    out = {}
    for label in row["labels"]:
        values = [log.get(label, 0.0) / row["n"] * 1e6 for log in row["logs"]]
        out[label] = (min(values), max(values))
    return out


def split(row: dict) -> dict[str, float]:
    """The best log's µs per sample: all of it, wandb's rows, and the rest (ours). The
    garbage collections ran inside the stages, whose thread time holds them already."""
    top = ("rows of each batch (worker)", "finish the version (worker)")
    totals = [sum(log.get(k, 0.0) for k in top) for log in row["logs"]]
    best = row["logs"][totals.index(min(totals))]
    wandbs = sum(v for k, v in best.items() if k.strip().startswith("wandb:"))
    scale = 1e6 / row["n"]
    return {
        "total": min(totals) * scale,
        "wandb": wandbs * scale,
        "ours": (min(totals) - wandbs) * scale,
    }


def markdown(rows: list[dict]) -> str:
    head = "| stage | " + " | ".join(f"{r['task']} (N={r['n']:,})" for r in rows) + " |\n"
    head += "|---|" + "---:|" * len(rows) + "\n"
    cells = [per_sample(r) for r in rows]
    lines = []
    for label in rows[0]["labels"]:
        shown = label.replace(" ", "&nbsp;", len(label) - len(label.lstrip()))
        lines.append(
            f"| {shown} | "
            + " | ".join(f"{c[label][0]:.1f}–{c[label][1]:.1f}" for c in cells)
            + " |"
        )
    splits = [split(r) for r in rows]
    for key, what in (
        ("total", "**all, best log**"),
        ("wandb", "of it wandb's"),
        ("ours", "of it ours"),
    ):
        lines.append(f"| {what} | " + " | ".join(f"{s[key]:.1f}" for s in splits) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--all"]:
        rows = []
        for task in ALL:  # a fresh process each
            out = subprocess.run(
                [sys.executable, __file__, task, str(DEFAULT_N[task]), "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append(json.loads(out.splitlines()[-1]))
        write_results(rows, machine())
        return
    task = sys.argv[1] if len(sys.argv) > 1 else "classification"  # a bench_scale.TASKS key
    n = int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_N[task]
    row = profile(task, n)
    if "--json" in sys.argv:
        print(json.dumps(row))
        return
    print(f"{task}, N={n}: µs per sample per log, {len(row['logs'])} logs (min / max)")
    for label, (low, high) in per_sample(row).items():
        print(f"  {label:48s} {low:8.1f} / {high:8.1f}")
    print("best log, µs per sample: " + ", ".join(f"{k} {v:.1f}" for k, v in split(row).items()))


def write_results(rows: list[dict], machine_info: dict) -> None:
    """``benchmarks/results/profile.{json,md}`` of ``--all``'s rows."""
    table = markdown(rows)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile.json").write_text(
        json.dumps({"machine": machine_info, "rows": rows}, indent=1)
    )
    (RESULTS / "profile.md").write_text(
        "`python benchmarks/profile_log.py --all`: each stage's thread CPU µs per sample "
        "per log (min–max of 4 logs), every stage inline on one thread, near-free models "
        "(bench_scale's), offline W&B. Indented stages are part of the one above; "
        "`wandb:` rows are wandb's code; garbage collections ran inside the stages and are "
        "counted there too. The PNG encoder threads are not counted here (`bench_scale` "
        "counts them).\n\n" + table
    )


def machine() -> dict:
    import platform

    return {
        "cpu": bench_scale.cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "wandb": wandb.__version__,
        "loadavg_at_end": os.getloadavg(),
    }


if __name__ == "__main__":
    main()
