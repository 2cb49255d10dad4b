"""Multi-worker evaluation cost: sharded vs chief-only, on two local tf_keras workers.

Not a test: a script. For each model and each ``multi_worker_eval`` mode it starts two
worker processes on 127.0.0.1 (``MultiWorkerMirroredStrategy``, ``TF_USE_LEGACY_KERAS=1``),
trains a few epochs with a per-epoch ``ClassificationEvalCallback`` (offline W&B run on the
chief only) and records, on every worker, how long each epoch-end log held ``fit`` there.
The median over the logs is reported per worker, in ms and µs per sample, for a
near-free model (host cost, the all-gather and the waits dominate), a small CNN and a
heavier one (the forward pass dominates).

    python benchmarks/bench_multiworker.py            # 512 samples, 4 logs per run
    python benchmarks/bench_multiworker.py --quick    # 128 samples, 2 logs

Both workers share this machine's cores: on one host, sharding can only save the forward
pass work a second core takes over; across machines each worker has its own.
Writes ``benchmarks/results/multiworker.json`` and ``benchmarks/results/multiworker.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("chief_only", "sharded")
MODELS = ("near_free", "cnn", "heavy_cnn")
CHANNELS = {"cnn": (16, 32, 64), "heavy_cnn": (64, 128, 256)}
SIZE = 64
BATCH = 64


def _worker(config: dict) -> None:
    """One worker: train ``config["epochs"]`` epochs, time every epoch-end log."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    import tf_keras as k
    import wandb

    from fastevalcb import ClassificationEvalCallback, distributed

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    role = distributed.role_of(strategy)
    if role.is_chief:
        wandb.init(project="fastevalcb-bench-multiworker", mode="offline")
    rng = np.random.default_rng(0)
    n = config["samples"]
    x_val = rng.integers(0, 255, (n, SIZE, SIZE, 3)).astype("uint8")
    y_val = rng.integers(0, 10, n)
    x, y = x_val[: BATCH * 2], y_val[: BATCH * 2]
    with strategy.scope():
        k.utils.set_random_seed(0)
        layers = [k.Input((SIZE, SIZE, 3)), k.layers.Rescaling(1 / 255)]
        if config["model"] in CHANNELS:
            layers += [
                k.layers.Conv2D(c, 3, strides=2, padding="same", activation="relu")
                for c in CHANNELS[config["model"]]
            ] + [k.layers.GlobalAveragePooling2D()]
        else:
            layers += [k.layers.AveragePooling2D(SIZE), k.layers.Flatten()]
        model = k.Sequential(layers + [k.layers.Dense(10)])
        model.compile(
            k.optimizers.SGD(0.01), k.losses.SparseCategoricalCrossentropy(from_logits=True)
        )

    held: list[float] = []

    class Timed(ClassificationEvalCallback):
        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            super().on_epoch_end(epoch, logs)
            held.append(time.perf_counter() - start)

    callback = Timed(
        (x_val, y_val),
        [str(i) for i in range(10)],
        batch_size=BATCH,
        multi_worker_eval=config["mode"],
        verbose=0,
    )
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=config["epochs"],
        verbose=0,
        shuffle=False,
        callbacks=[callback],
    )
    callback.flush()
    eval_s = [t["eval_s"] for t in callback.timings if t["eval_s"] is not None]
    if wandb.run is not None:
        wandb.finish()
    with open(config["out"], "w") as f:
        json.dump({"is_chief": role.is_chief, "held_s": held, "eval_s": eval_s}, f)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster(model: str, mode: str, samples: int, epochs: int, folder: Path) -> list[dict]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for i in range(2):
        config = {
            "model": model,
            "mode": mode,
            "samples": samples,
            "epochs": epochs,
            "out": str(folder / f"{model}-{mode}-{i}.json"),
        }
        env = dict(
            os.environ,
            TF_USE_LEGACY_KERAS="1",
            TF_CPP_MIN_LOG_LEVEL="3",
            WANDB_SILENT="true",
            WANDB_DIR=str(folder),
            WANDB_MODE="offline",
            PYTHONPATH=str(Path(__file__).resolve().parents[1]),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        log = open(folder / f"{model}-{mode}-{i}.log", "w")
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", json.dumps(config)],
                    env=env,
                    stderr=log,
                    stdout=log,
                ),
                config["out"],
                log,
            )
        )
    out = []
    for proc, path, log in procs:
        rc = proc.wait(timeout=600)
        log.close()
        if rc != 0:
            tail = Path(log.name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker failed ({model}, {mode}): rc {rc}\n{tail}")
        out.append(json.loads(Path(path).read_text()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return
    samples, logs = (128, 2) if args.quick else (512, 4)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import cpu_name

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            for mode in MODES:
                workers = _cluster(model, mode, samples, logs, Path(tmp))
                for w in workers:
                    held = statistics.median(w["held_s"])
                    rows.append(
                        {
                            "model": model,
                            "mode": mode,
                            "worker": "chief" if w["is_chief"] else "worker 1",
                            "held_ms": held * 1e3,
                            "us_per_sample": held / samples * 1e6,
                            "eval_ms": (
                                statistics.median(w["eval_s"]) * 1e3 if w["eval_s"] else None
                            ),
                        }
                    )
                    print(rows[-1], flush=True)
    import tensorflow as tf

    report = {
        "samples": samples,
        "logs": logs,
        "batch_size": BATCH,
        "image": [SIZE, SIZE, 3],
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "multiworker.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"Two local tf_keras workers (MultiWorkerMirroredStrategy, 127.0.0.1), {samples} "
        f"samples of {SIZE}x{SIZE}x3, batch {BATCH}, median of {logs} epoch-end logs; "
        f"{report['cpu']}, {report['cores']} cores, TF {report['tensorflow']}.",
        "",
        "| model | mode | worker | fit held per log (ms) | µs / sample |"
        " of which chief's forward + queueing (ms) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        eval_ms = "" if r["eval_ms"] is None else f"{r['eval_ms']:.0f}"
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['worker']} | {r['held_ms']:.0f} | "
            f"{r['us_per_sample']:.0f} | {eval_ms} |"
        )
    (RESULTS / "multiworker.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
