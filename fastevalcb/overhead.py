"""What logging predictions costs on your own model and data, measured without training.

``fastevalcb overhead --model model.keras --data val.npz --task classification`` (or
:func:`measure`) runs, on the same samples, in one process:

1. **forward alone**: the model's compiled predict step
   (:class:`~fastevalcb.predictor.BatchedPredictor`, outputs copied to host arrays), warm;
   no callback can log predictions faster than it computes them. For segmentation the step
   also takes the argmax to ``(B, H, W)`` class maps, as any mask logger must (float scores
   copied to the host would time a transfer, not the forward).
2. **fastevalcb**: the task callback's log, as ``fit`` calls it at an epoch end, on a
   throwaway offline W&B run in a temporary folder: the training thread's seconds (what
   ``fit`` waits) and the seconds until the version is written. The worker's CPU µs a
   sample and the queue wait are read back from the run (the ``fastevalcb/<prefix>/*``
   keys every version records).
3. **stock** (optional): W&B's documented ``WandbEvalCallback`` subclass
   (:mod:`fastevalcb._stock`) on the same samples; it logs on the training thread.

Each log is repeated (``repeats``) and the best is reported (a shared machine is noisy);
every run is in the JSON. The data table, built once per run, is timed apart.

Data files (``.npz``, :func:`load_data`): ``x`` ``(N, H, W[, C])`` images as the model takes
them, and per task:

* classification: ``y`` ``(N,)`` int class ids (or ``(N, C)`` one-hot);
* segmentation: ``y`` ``(N, H, W)`` int class-id masks;
* detection: ``boxes`` ``(N, M, 4)`` and ``labels`` ``(N, M)`` int, padded with label -1
  (``box_format``: the model's ``bounding_box_format``, else ``"xyxy"`` pixels).
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("classification", "detection", "segmentation")
_WANDB_DIRS = ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR")


class OverheadError(ValueError):
    """Inputs :func:`measure` cannot use (a missing key, a wrong task, an active run)."""


def load_model(path: str | Path) -> Any:
    """A saved ``.keras`` model (KerasHub classes are registered first when installed)."""
    path = Path(path)
    if not path.is_file():
        raise OverheadError(f"model file not found: {path}")
    with contextlib.suppress(ImportError):
        import keras_hub  # noqa: F401 - registers KerasHub's classes for deserialization
    import keras

    return keras.saving.load_model(path, compile=False)


def load_data(path: str | Path, task: str) -> tuple[np.ndarray, Any]:
    """``(x, y)`` from an ``.npz`` (see the module docstring for its keys per task)."""
    _check_task(task)
    path = Path(path)
    if not path.is_file():
        raise OverheadError(f"data file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        needed = ("x", "boxes", "labels") if task == "detection" else ("x", "y")
        missing = [k for k in needed if k not in data.files]
        if missing:
            raise OverheadError(
                f"{path} needs the keys {list(needed)} for {task}, missing {missing} "
                f"(it has {sorted(data.files)})"
            )
        if task == "detection":
            return data["x"], {"boxes": data["boxes"], "labels": data["labels"]}
        return data["x"], data["y"]


def measure(
    model: Any,
    data: Any,
    task: str,
    *,
    class_names: Sequence[str] | None = None,
    batch_size: int = 32,
    max_samples: int | None = None,
    repeats: int = 3,
    stock: bool = False,
    jit_compile: bool = False,
    callback_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time the forward pass alone, fastevalcb's log and (``stock``) stock's on one set.

    Args:
        model: a Keras model or the path of a saved ``.keras`` file.
        data: ``(x, y)`` (``y`` as the task callback takes it) or the path of an ``.npz``.
        task: ``"classification"``, ``"detection"`` or ``"segmentation"``.
        class_names: one per class id; default ``class_0``... from the model's output
            width (classification, segmentation) or the largest label (detection).
        batch_size: samples per compiled step, for every side.
        max_samples: the first this many samples only.
        repeats: logs per side (the best is reported; at least 1).
        stock: also time W&B's documented ``WandbEvalCallback`` subclass.
        jit_compile: compile the forward step with XLA (the forward alone and ours; stock's
            ``model.predict`` follows ``model.jit_compile``).
        callback_options: more keyword arguments for the task callback (``top_k``,
            ``box_format``, ``score_threshold``...).

    Returns:
        A JSON-ready dict: ``samples``, ``forward``, ``fastevalcb``, ``stock`` (or None),
        the setup and the machine. Times in seconds, ``*_us_per_sample`` in µs.

    Raises:
        OverheadError: an unknown task, unreadable files or an active W&B run.
    """
    _check_task(task)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise OverheadError(f"repeats must be a positive int, got {repeats!r}")
    import wandb

    if wandb.run is not None:
        raise OverheadError(
            "a W&B run is active: measure() logs to throwaway offline runs of its own; "
            "finish the run first"
        )
    if isinstance(model, (str, Path)):
        model = load_model(model)
    x, y = load_data(data, task) if isinstance(data, (str, Path)) else data
    if max_samples is not None:
        x, y = _head(x, max_samples), _head(y, max_samples)
    n = len(x)
    if n == 0:
        raise OverheadError("the data holds no samples")
    options = dict(callback_options or {})
    names = list(class_names) if class_names is not None else _default_names(model, task, y)
    forward = _forward(model, x, batch_size, repeats, jit_compile, _floor_fn(task, names, options))
    with _throwaway_wandb():
        ours = _ours(model, x, y, task, names, batch_size, repeats, jit_compile, options)
        theirs = _stock(model, x, y, task, names, repeats, jit_compile, options) if stock else None
    result = {
        "task": task,
        "samples": n,
        "batch_size": batch_size,
        "image_shape": list(np.shape(x)[1:]),
        "model": type(model).__name__,
        "jit_compile": jit_compile,
        "repeats": repeats,
        "forward": forward,
        "fastevalcb": ours,
        "stock": theirs,
        "machine": _machine(),
    }
    for side in (ours, theirs):
        if side is not None:
            for key in ("train_thread_s", "until_written_s"):
                side[f"{key[:-2]}_over_forward"] = side[key] / forward["s"]
    return result


def table(result: dict[str, Any]) -> str:
    """The result as a small plain-text table (seconds a log, µs a sample, x forward)."""
    n = result["samples"]
    forward = result["forward"]["s"]
    label = "forward + argmax" if result["task"] == "segmentation" else "forward alone"
    rows = [(f"{label} (compiled step)", forward)]
    ours = result["fastevalcb"]
    rows.append(("fastevalcb: training thread", ours["train_thread_s"]))
    rows.append(("fastevalcb: until written", ours["until_written_s"]))
    if result["stock"] is not None:
        rows.append(("stock WandbEvalCallback subclass", result["stock"]["until_written_s"]))
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{result['task']}: {n:,} samples {tuple(result['image_shape'])}, "
        f"{result['model']}, batch {result['batch_size']}, best of {result['repeats']}",
        f"{'per log':<{width}}  {'seconds':>9}  {'µs/sample':>10}  {'x forward':>9}",
    ]
    for label, seconds in rows:
        lines.append(
            f"{label:<{width}}  {seconds:>9.3f}  {seconds / n * 1e6:>10.1f}  "
            f"{seconds / forward:>8.2f}x"
        )
    lines.append(
        f"fastevalcb worker: {ours['worker_cpu_us_per_sample']:.1f} µs CPU a sample, "
        f"data table once {ours['data_table_s']:.2f} s"
    )
    return "\n".join(lines)


# -- the three sides ------------------------------------------------------------------------
def _floor_fn(task: str, names: list[str], options: dict[str, Any]) -> Any:
    """What the forward floor brings to the host besides the model: segmentation's masks.

    A segmentation eval must turn ``(B, H, W, C)`` scores into class maps; copying float
    scores to the host instead (84 bytes a pixel at 21 classes, not one) would make the
    floor a transfer, not the forward. Classification and detection bring the outputs.
    """
    if task != "segmentation":
        return None
    from fastevalcb.tasks.segmentation import _class_maps

    return _class_maps(options.get("output", "auto"), len(names))


def _forward(
    model: Any, x: Any, batch_size: int, repeats: int, jit: bool, output_fn: Any = None
) -> dict[str, Any]:
    from fastevalcb.predictor import BatchedPredictor

    predictor = BatchedPredictor(
        model, x, batch_size=batch_size, jit_compile=jit, output_fn=output_fn
    )
    first = _pass_s(predictor, model)  # traces the step
    runs = [_pass_s(predictor, model) for _ in range(repeats)]
    best = min(runs)
    return {"s": best, "us_per_sample": best / len(x) * 1e6, "first_s": first, "runs": runs}


def _pass_s(predictor: Any, model: Any) -> float:
    """One pass of ``predictor`` over its data, batches to host arrays."""
    start = time.perf_counter()
    for _batch in predictor.iter_batches(model):
        pass
    return time.perf_counter() - start


def _ours(
    model: Any,
    x: Any,
    y: Any,
    task: str,
    names: list[str],
    batch_size: int,
    repeats: int,
    jit: bool,
    options: dict[str, Any],
) -> dict[str, Any]:
    import wandb

    from fastevalcb import tasks
    from fastevalcb.offline import OfflineRun

    cls = {
        "classification": tasks.ClassificationEvalCallback,
        "detection": tasks.DetectionEvalCallback,
        "segmentation": tasks.SegmentationEvalCallback,
    }[task]
    run = wandb.init(project="fastevalcb-overhead", mode="offline", reinit="finish_previous")
    try:
        cb = cls((x, y), names, batch_size=batch_size, verbose=0, **options)
        cb.predictor.jit_compile = jit
        cb.set_model(model)
        start = time.perf_counter()
        cb.on_train_begin()
        begin = time.perf_counter() - start
        cb.flush()  # the data table, once per run: not a log's cost
        data_table = time.perf_counter() - start
        threads, written = [], []
        for epoch in range(repeats):
            start = time.perf_counter()
            cb.on_epoch_end(epoch)
            threads.append(time.perf_counter() - start)
            cb.flush()
            written.append(time.perf_counter() - start)
        cb.on_train_end()
        prefix = f"fastevalcb/{cb.metrics_prefix}/"
        directory = Path(run.dir).parent
    finally:
        run.finish()
    rows = [r for r in OfflineRun(directory).wait_complete().history() if f"{prefix}queue_s" in r]
    if len(rows) != repeats:
        raise RuntimeError(
            f"fastevalcb logged {len(rows)} of {repeats} versions: see the warnings above"
        )
    cost = {k: [r[prefix + k] for r in rows] for k in ("worker_cpu_us_per_sample", "queue_s")}
    cost["worker_wall_s"] = [r[prefix + "worker_wall_s"] for r in rows]
    n = len(x)
    return {
        "train_begin_s": begin,
        "data_table_s": data_table,
        "train_thread_s": min(threads),
        "train_thread_us_per_sample": min(threads) / n * 1e6,
        "until_written_s": min(written),
        "until_written_us_per_sample": min(written) / n * 1e6,
        "worker_cpu_us_per_sample": min(cost["worker_cpu_us_per_sample"]),
        "worker_wall_s": min(cost["worker_wall_s"]),
        "runs": {"train_thread_s": threads, "until_written_s": written, **cost},
    }


def _stock(
    model: Any,
    x: Any,
    y: Any,
    task: str,
    names: list[str],
    repeats: int,
    jit: bool,
    options: dict[str, Any],
) -> dict[str, Any]:
    import wandb

    from fastevalcb._stock import stock_callback

    kwargs = {}
    if task == "detection":
        box_format = options.get("box_format") or getattr(model, "bounding_box_format", "xyxy")
        kwargs = {"box_format": box_format}
        if options.get("score_threshold") is not None:
            kwargs["score_threshold"] = options["score_threshold"]
    if hasattr(model, "jit_compile"):
        with contextlib.suppress(AttributeError, ValueError):
            model.jit_compile = jit
    run = wandb.init(project="fastevalcb-overhead", mode="offline", reinit="finish_previous")
    try:
        cb = stock_callback(task, x, y, names, **kwargs)
        cb.set_model(model)
        start = time.perf_counter()
        cb.on_train_begin()
        data_table = time.perf_counter() - start
        logs = []
        for epoch in range(repeats):
            start = time.perf_counter()
            cb.on_epoch_end(epoch)
            logs.append(time.perf_counter() - start)
    finally:
        run.finish()
    best = min(logs)
    return {
        "data_table_s": data_table,
        "train_thread_s": best,  # stock logs on the training thread: written when it returns
        "until_written_s": best,
        "until_written_us_per_sample": best / len(x) * 1e6,
        "predict_s": min(cb.predict_s),
        "runs": {"until_written_s": logs, "predict_s": cb.predict_s},
    }


# -- helpers ----------------------------------------------------------------------------------
def _check_task(task: str) -> None:
    if task not in TASKS:
        raise OverheadError(f"task must be one of {list(TASKS)}, got {task!r}")


def _head(values: Any, n: int) -> Any:
    if isinstance(values, dict):
        return {k: v[:n] for k, v in values.items()}
    return values[:n]


def _default_names(model: Any, task: str, y: Any) -> list[str]:
    """``class_0``... as many as the model's output has classes (detection: the labels')."""
    if task == "detection":
        count = getattr(model, "num_classes", None)
        if count is None:
            labels = np.asarray(y["labels"])
            count = int(labels.max()) + 1 if labels.size else 1
    else:
        shape = getattr(model, "output_shape", None)
        count = shape[-1] if isinstance(shape, tuple) and shape else None
        if not isinstance(count, int):
            raise OverheadError(
                "cannot tell the number of classes from the model's output: pass class_names"
            )
        if task == "classification" and count == 1:
            count = 2  # one sigmoid unit: a binary classifier
    return [f"class_{i}" for i in range(int(count))]


@contextlib.contextmanager
def _throwaway_wandb() -> Iterator[None]:
    """Offline, silent W&B writing only into a temporary folder, removed afterwards.

    wandb's service process, started here if it was not running, keeps its log in that
    folder: it is shut down (``wandb.teardown()``) before the folder goes, so a later
    ``wandb.init`` starts a new one with the caller's settings (else later runs' log
    links would point into the removed folder).
    """
    import wandb

    saved = {k: os.environ.get(k) for k in (*_WANDB_DIRS, "WANDB_MODE", "WANDB_SILENT")}
    with tempfile.TemporaryDirectory(prefix="fastevalcb-overhead-") as folder:
        os.environ.update(dict.fromkeys(_WANDB_DIRS, folder))
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
        try:
            yield
        finally:
            wandb.teardown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _machine() -> dict[str, Any]:
    import keras
    import wandb

    from fastevalcb import _keras

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "keras": keras.__version__,
        "backend": _keras.keras3().backend.backend(),
        "wandb": wandb.__version__,
    }
    if info["backend"] == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info
