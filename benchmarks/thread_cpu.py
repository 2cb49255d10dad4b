"""Which threads one log's host time lands on, per sample, with bench_scale's near-free model.

Runs a task callback as users do (async worker, encoder pool), then logs a few versions and
prints, per log, each thread's CPU µs per sample (from ``/proc/self/task/<tid>/schedstat``,
nanoseconds) and its minor page faults per 1,000 samples (``flt:`` rows). Python threads
show by name (``fastevalcb-logger``, ``fastevalcb-png_0``, ...); TF's own threads as the
kernel names them (``python``, ``tf_Compute``). ``--after-forward`` runs bench_scale's
forward measurement before each log, as ``bench_scale`` does.

Run: ``python benchmarks/thread_cpu.py [classification|detection|segmentation] [N]
[--after-forward]``.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("WANDB_SILENT", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale  # noqa: E402
import wandb  # noqa: E402

DEFAULT_N = {"classification": 10_000, "detection": 1000, "segmentation": 300}


def per_thread() -> collections.Counter:
    """CPU seconds and minor faults so far of each thread, by name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: collections.Counter = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ran_ns = int(f.read().split()[0])
        except OSError:  # the thread ended meanwhile
            continue
        name = names.get(int(tid), stat[stat.index("(") + 1 : stat.rindex(")")])
        out[name] += ran_ns / 1e9
        out["flt:" + name] += int(stat.rsplit(")", 1)[1].split()[7])
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    task = args[0] if args else "segmentation"
    n = int(args[1]) if len(args) > 1 else DEFAULT_N[task]
    after_forward = "--after-forward" in sys.argv
    setup = bench_scale.TASKS[task][0](n)
    model = setup["model"]
    model.fit(*setup["train"], epochs=1, verbose=0)
    run = wandb.init(project="thread-cpu", mode="offline", dir=tempfile.mkdtemp())
    cb = setup["callback"]()
    model.fit(*setup["train"], epochs=1, verbose=0, callbacks=[cb])
    cb.flush()
    print(
        f"{task}, N={n}: per log, CPU µs per sample by thread"
        f"{' (each log right after a forward pass)' if after_forward else ''}; "
        "flt: minor faults per 1,000 samples"
    )
    for epoch in range(2, 6):
        if after_forward:
            bench_scale.forward_s(model, setup["x"], setup.get("batch_size", 32))
        before = per_thread()
        cb.on_epoch_end(epoch)
        cb.flush()
        after = per_thread()
        spent = {
            name: (after[name] - before.get(name, 0))
            / n
            * (1e3 if name.startswith("flt:") else 1e6)
            for name in after
        }
        shown = sorted(((k, v) for k, v in spent.items() if v >= 1), key=lambda kv: -kv[1])
        print(f"  log {epoch - 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in shown))
    run.finish()


if __name__ == "__main__":
    main()
