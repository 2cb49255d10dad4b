"""The machinery every ready-made task callback shares.

A task callback is a :class:`~fastevalcb.callback.WandbEvalCallback` that needs no
subclass: give it validation data and class names. Per fit:

* **train begin** (before epoch 1): the model's compiled predict step is built and run on
  one batch (output shapes checked), the kernels are compiled or loaded from cache, and
  the data table is streamed from the source batch by batch: labels validated, images
  PNG-encoded on threads, ground-truth overlays attached. Bad inputs raise
  :class:`~fastevalcb.callback.FastEvalInputError` here.
* **every log** (epoch end, or every N batches): the training thread only runs the
  compiled forward pass (:class:`~fastevalcb.predictor.BatchedPredictor`) and hands each
  batch of host outputs to a :class:`~fastevalcb.worker.LoggingWorker`. The worker
  turns outputs into rows (numba kernels), media (overlays sharing the data table's image
  files, so the pred version references them) and per-sample metrics, then logs the pred
  table version and the summary metrics. The bounded queue keeps memory to a few batches.

Subclasses define the columns and five small steps: ``_output_fn``, ``_check_outputs``,
``_labels``, ``_data_columns_for`` and ``_pred_columns_for`` (+ ``_summary``).
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import wandb

from fastevalcb import _keras, distributed, tables
from fastevalcb.callback import FastEvalInputError, WandbEvalCallback
from fastevalcb.predictor import BatchedPredictor, PredictionBatch
from fastevalcb.worker import LoggingWorker


def check_class_names(class_names: Any) -> tuple[str, ...]:
    """A non-empty sequence of unique, non-empty strings (at most 256 classes)."""
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise FastEvalInputError(
            f"class_names must be a list of str, got {type(class_names).__name__}: "
            f"{class_names!r:.80}"
        )
    names = tuple(class_names)
    if not names:
        raise FastEvalInputError("class_names must name at least one class, got []")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise FastEvalInputError(f"class_names must be non-empty str, got {bad[:5]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FastEvalInputError(f"class_names has duplicates: {dupes}")
    if len(names) > 256:
        raise FastEvalInputError(f"at most 256 classes are supported, got {len(names)}")
    return names


def check_class_range(ids: np.ndarray, num_classes: int, what: str, index: np.ndarray,
                      allowed: tuple[int, ...] = ()) -> None:
    """Raise naming the first sample whose id is outside ``[0, num_classes)``."""
    bad = (ids < 0) | (ids >= num_classes)
    for value in allowed:
        bad &= ids != value
    if np.any(bad):
        where = np.argwhere(bad)[0]
        extra = f" or {list(allowed)}" if allowed else ""
        raise FastEvalInputError(
            f"{what} of sample {int(index[where[0]])} is {int(ids[tuple(where)])}, outside "
            f"class_names ({num_classes} classes: ids 0..{num_classes - 1}{extra})"
        )


def label_fingerprints(y: Any, n: int) -> list[int]:
    """One crc32 per sample over all label arrays' rows (to spot a reordered source)."""
    from fastevalcb.sources import flatten

    leaves = [np.ascontiguousarray(np.asarray(leaf)) for leaf in flatten(y)]
    out = []
    for i in range(n):
        crc = 0
        for leaf in leaves:
            crc = zlib.crc32(leaf[i].tobytes(), crc)
        out.append(crc)
    return out


class ImageScaler:
    """Batches of images -> ``(B, H, W[, C])`` uint8 for display, one rule for all batches.

    uint8 passes through. For other dtypes the rule is fixed by the first batch seen:
    values within [0, 1] are scaled by 255, within [-1, 1] mapped to [0, 255], anything
    else clipped to [0, 255]; then rounded. (``wandb.Image`` itself only casts with
    ``astype(uint8)``, which turns [0, 1] floats black.) Pass uint8 images to decide.
    """

    def __init__(self) -> None:
        self.scale: tuple[float, float] | None = None  # (offset, factor)

    def __call__(self, x: Any, what: str = "validation images") -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
            raise FastEvalInputError(
                f"{what} must have shape (N, H, W), (N, H, W, 1), (N, H, W, 3) or "
                f"(N, H, W, 4), got {tuple(arr.shape)}"
            )
        if arr.dtype == np.uint8:
            return arr
        arr = arr.astype(np.float32, copy=False)
        if self.scale is None:
            low, high = float(np.min(arr)), float(np.max(arr))
            if low >= 0 and high <= 1:
                self.scale = (0.0, 255.0)
            elif low >= -1 and high <= 1:
                self.scale = (1.0, 127.5)
            else:
                self.scale = (0.0, 1.0)
        offset, factor = self.scale
        return np.clip(np.rint((arr + offset) * factor), 0, 255).astype(np.uint8)


@dataclass
class _Version:
    """One pred-table version being assembled by the worker."""

    epoch: int
    global_step: int
    trigger: str
    alias: str
    started: float
    columns: dict[str, list] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    failed: bool = False
    timing: dict[str, Any] = field(default_factory=dict)


class _InlineWorker:
    """``async_logging=False``: run jobs in the caller's thread."""

    pending = 0
    blocked_s = 0.0

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)

    def flush(self, timeout: float | None = None) -> bool:
        return True


class TaskEvalCallback(WandbEvalCallback):
    """Base of the ready-made callbacks; see the module docstring.

    Args:
        validation_data: ``(x, y)`` numpy arrays or a ``tf.data.Dataset`` of ``(x, y)``
            (batched or not); ``x`` is a batch of images. What ``y`` holds depends on the task.
        class_names: one name per class id.
        max_samples: log at most this many validation samples (the same ones every log).
        selection: ``"first"`` or ``"random"`` (a fixed ``seed`` subset) ``max_samples``.
        seed: seed of the random subset.
        batch_size: samples per compiled predict step (default 32, or the dataset's own).
        log_every_n_batches: also log every N training batches; None: epoch ends only.
        log_on_epoch_end: log at every epoch end.
        async_logging: build and write tables on a background thread while ``fit`` goes on.
        max_queue: batches of predictions that may wait for the worker (back-pressure).
        metrics_prefix: summary metrics are ``<prefix>/<name>``, keyed by
            ``<prefix>/global_step`` through ``define_metric``.
        verbose: ``"auto"`` follows ``fit(verbose=...)``; 0 silent, 1 progress bar,
            2 one line per log.
        strict: raise logging errors instead of warning and going on.
        data_artifact_name: name of the data table artifact.
        compress_level: zlib level of the PNGs we write (1: fast; 6: smaller files).
        multi_worker_eval: under ``MultiWorkerMirroredStrategy``, ``"sharded"`` (every
            worker predicts its slice of each batch through the compiled step; the batch is
            all-gathered in sample order) or ``"chief_only"`` (the chief predicts every
            sample on a local step while the others wait). Ignored in a single process.
    """

    task: str = "task"

    def __init__(
        self,
        validation_data: Any,
        class_names: Sequence[str],
        *,
        max_samples: int | None = None,
        selection: str = "first",
        seed: int = 0,
        batch_size: int | None = None,
        log_every_n_batches: int | None = None,
        log_on_epoch_end: bool = True,
        async_logging: bool = True,
        max_queue: int = 8,
        metrics_prefix: str = "eval",
        verbose: int | str = "auto",
        strict: bool = False,
        data_artifact_name: str = "val",
        compress_level: int = 1,
        return_x: bool = False,
        multi_worker_eval: str = "sharded",
    ) -> None:
        self.class_names = check_class_names(class_names)
        self.class_labels = dict(enumerate(self.class_names))
        self.num_classes = len(self.class_names)
        super().__init__(
            self.data_columns(),
            self.pred_columns(),
            log_every_n_batches=log_every_n_batches,
            log_on_epoch_end=log_on_epoch_end,
            strict=strict,
        )
        if verbose not in ("auto", 0, 1, 2):
            raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
        if not isinstance(metrics_prefix, str) or not metrics_prefix.strip("/"):
            raise ValueError(f"metrics_prefix must be a non-empty str, got {metrics_prefix!r}")
        if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level must be an int in [0, 9], got {compress_level!r}")
        self.verbose = verbose
        self.metrics_prefix = metrics_prefix.strip("/")
        self.data_artifact_name = data_artifact_name
        self.compress_level = compress_level
        self.async_logging = async_logging
        if multi_worker_eval not in distributed.MODES:
            raise ValueError(
                f"multi_worker_eval must be one of {distributed.MODES}, got {multi_worker_eval!r}"
            )
        self.multi_worker_eval = multi_worker_eval
        self.predictor = BatchedPredictor(
            None,
            validation_data,
            batch_size=batch_size,
            max_samples=max_samples,
            selection=selection,
            seed=seed,
            output_fn=self._output_fn(),
            return_x=return_x,
        )
        self._worker: LoggingWorker | _InlineWorker = (
            LoggingWorker(max_queue) if async_logging else _InlineWorker()
        )
        self._images_by_id: dict[int, wandb.Image] = {}
        self._fingerprints: dict[int, int] = {}
        self._to_uint8 = ImageScaler()
        self._image_shape: tuple[int, ...] | None = None
        self._run_obj: Any = None
        self._lock = threading.Lock()
        self.timings: list[dict[str, Any]] = []
        self._check_array_data()

    # -- what a task defines ------------------------------------------------------------
    @classmethod
    def data_columns(cls) -> list[str]:
        raise NotImplementedError

    def pred_columns(self) -> list[str]:
        raise NotImplementedError

    def _output_fn(self) -> Callable | None:
        """TensorFlow post-processing fused into the compiled step (or None)."""
        return None

    def _check_outputs(self, batch: PredictionBatch) -> None:
        """Validate one batch of model outputs at train begin (raise FastEvalInputError)."""

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> Any:
        """Validated ground truth of one batch, in the form the task's steps use."""
        raise NotImplementedError

    def _data_columns_for(self, index: np.ndarray, images: np.ndarray, labels: Any) -> dict:
        """Data-table columns for one batch of samples."""
        raise NotImplementedError

    def _pred_columns_for(self, version: _Version, batch: PredictionBatch, labels: Any,
                          base_images: list) -> dict:
        """Pred-table columns (minus epoch/step/id) for one batch; updates version.state."""
        raise NotImplementedError

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        """Summary metrics over one version's samples."""
        raise NotImplementedError

    # -- construction-time checks ---------------------------------------------------------
    def _check_array_data(self) -> None:
        """Validate labels of in-memory arrays now, not at train begin."""
        source = self.predictor.source
        if type(source).__name__ != "ArraySource":
            return
        for host in source.batches():
            images = np.asarray(host.x) if not isinstance(host.x, (dict, list, tuple)) else None
            if images is None:
                raise FastEvalInputError(
                    f"{type(self).__name__} needs x to be one image array (N, H, W[, C]), "
                    f"got a {type(host.x).__name__} of inputs"
                )
            if host.y is None:
                raise FastEvalInputError(
                    f"{type(self).__name__} needs labels: pass validation_data=(x, y)"
                )
            self._labels(host.y, host.index, images.shape)

    # -- Keras hooks ---------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self._global_step = self._optimizer_step()
        self._worker.flush()  # leftovers of an interrupted fit go first
        self._start_session(self.multi_worker_eval)
        # Chief-only: the chief's step ignores the strategy. Sharded multi-worker: the step
        # is a collective, so it runs in this thread (exactly the steps asked for).
        self.predictor.local = self._dist.chief_predicts_locally
        if self._dist.sharded:
            self.predictor.prefetch = 0
        with self._dist.agreed("train begin") as outcome:
            if self._dist.is_chief:
                self._begin_on_chief(logs)
            else:
                self._prepare_model()  # the same first-batch check (and step) as the chief
            if self._dist.is_chief and self._data_table_ref is None:
                outcome.turn_logging_off()
        self._logging_off = outcome.agreed >= distributed.LOGGING_OFF

    def _begin_on_chief(self, logs: dict[str, float] | None) -> None:
        run = self._run()
        if self._run_obj is not None and run.id != self._run_obj.id:
            self._forget_data_table()  # a new W&B run gets its own data table to reference
        self._run_obj = run
        first = self._prepare_model()
        tables.define_step_metrics(self._run_obj, self.metrics_prefix)
        if self._data_table_ref is None:  # the data table is logged once per run
            with self._guard("data table"):
                self.init_data_table(column_names=self.data_table_columns)
                self.add_ground_truth(logs)
                self.log_data_table(name=self.data_artifact_name)
        if self._data_table_ref is not None:
            self._check_same_samples(first.index, first.y)

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.flush()
        super().on_train_end(logs)
        done = [t for t in self.timings if t["logged_s"] is not None]
        if done and self._verbosity() >= 1 and self._dist.is_chief:
            last = done[-1]
            print(
                f"fastevalcb: {len(self.logged_versions)} {self.task} table version(s) logged "
                f"to run_{self._run_obj.id}_pred; last: {last['samples']} samples, "
                f"eval {last['eval_s']:.2f} s, written after {last['logged_s']:.2f} s"
            )

    def _forget_data_table(self) -> None:
        self._data_table_ref = None
        self._media_index = None
        self._images_by_id = {}
        self._fingerprints = {}

    # -- ground truth (once) ---------------------------------------------------------------
    def add_ground_truth(self, logs: dict[str, float] | None = None) -> None:
        """Stream the validation set once into the data table (bounded memory)."""
        for host in self.predictor.source.batches():
            images = self._to_uint8(host.x)
            if self._image_shape is None:
                self._image_shape = images.shape[1:]
            elif images.shape[1:] != self._image_shape:
                raise FastEvalInputError(
                    f"validation images must all have one size: got {images.shape[1:]} "
                    f"after {self._image_shape}")
            labels = self._labels(host.y, np.asarray(host.index), images.shape)
            self._fingerprints.update(zip(np.asarray(host.index).tolist(),
                                          label_fingerprints(host.y, len(host.index))))
            columns = self._data_columns_for(np.asarray(host.index), images, labels)
            self.data_table.add_columns(columns)
            for i, image in zip(np.asarray(host.index).tolist(), columns["image"]):
                self._images_by_id[i] = image

    # -- predictions (every log) -----------------------------------------------------------
    def add_model_predictions(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Run the compiled forward pass; the worker builds and logs the version."""
        self._predict_and_queue(
            _Version(epoch, self._global_step, "epoch_end", f"epoch-{epoch}", time.perf_counter())
        )

    def _log_predictions(self, epoch: int, logs: dict[str, float] | None, alias: str,
                         trigger: str) -> None:
        if self._logging_off:
            return  # the data table failed (already warned): nothing to reference
        multi_worker = self._dist.multi_worker
        if not multi_worker:
            self._raise_worker_errors()  # a strict error of an earlier version comes first
        version = _Version(epoch, self._global_step, trigger, alias, time.perf_counter())
        # Multi-worker: every worker joins the sharded step's collectives, then the
        # agreement, where a strict error of the chief's logging thread stops every worker.
        with self._dist.agreed("predictions"):
            if self._dist.is_chief:
                with self._guard("predictions"):
                    self._predict_and_queue(version)
            elif self._dist.sharded:
                distributed.for_each(self.predictor.iter_batches(self.model), lambda b: None)
            if multi_worker:
                self._raise_worker_errors()

    def _predict_and_queue(self, version: _Version) -> None:
        version.timing = {"epoch": version.epoch, "global_step": version.global_step,
                          "trigger": version.trigger, "samples": None, "eval_s": None,
                          "logged_s": None}
        with self._lock:
            self.timings.append(version.timing)
        progbar = self._progbar()
        batches = 0

        def queue(batch: PredictionBatch) -> None:
            nonlocal batches
            self._worker.submit(self._job, "pred table", self._add_batch, version, batch)
            batches += 1
            if progbar is not None:
                progbar.update(batches)

        # Sharded multi-worker: each batch is a collective, so a failure keeps drawing them.
        distributed.for_each(self.predictor.iter_batches(self.model), queue,
                             drain=self._dist.sharded)
        self._worker.submit(self._job, "pred table", self._finish_version, version)
        eval_s = time.perf_counter() - version.started
        with self._lock:
            version.timing["eval_s"] = eval_s
        if self._verbosity() == 2:
            print(f"fastevalcb: {self.task} eval ({version.alias}) {batches} batches "
                  f"in {eval_s:.2f} s; writing in the background")

    def _job(self, stage: str, fn: Callable[..., None], version: _Version, *args: Any) -> None:
        """A worker job. An error warns once (or, strict, is kept for the training thread)
        and marks the version failed, so its remaining batches are skipped, not logged."""
        if version.failed:
            return
        done = False
        try:
            with self._guard(stage, fatal=()):
                fn(version, *args)
                done = True
        finally:
            if not done:
                version.failed = True

    def _add_batch(self, version: _Version, batch: PredictionBatch) -> None:
        index = np.asarray(batch.index)
        self._check_same_samples(index, batch.y)
        base_images = [self._images_by_id[i] for i in index.tolist()]
        labels = self._labels(batch.y, index, (len(index), *self._image_shape))
        n = len(index)
        columns = {"epoch": [version.epoch] * n, "step": [version.global_step] * n,
                   "id": index.tolist()}
        columns.update(self._pred_columns_for(version, batch, labels, base_images))
        for name, values in columns.items():
            version.columns.setdefault(name, []).extend(values)
        version.samples += n

    def _finish_version(self, version: _Version) -> None:
        table = tables.ColumnarTable(self.pred_table_columns)
        if version.samples:
            table.add_columns({name: version.columns[name] for name in self.pred_table_columns})
        metadata = {"epoch": version.epoch, "global_step": version.global_step,
                    "trigger": version.trigger, "rows": version.samples}
        aliases = ["latest", version.alias]
        tables.log_pred_artifact(self._run_obj, table, self._media_index, "evaluation",
                                 "eval_data", aliases, metadata)
        self.logged_versions.append({"aliases": aliases, **metadata})
        summary = {f"{self.metrics_prefix}/{k}": v
                   for k, v in self._summary(version.state).items()}
        summary[f"{self.metrics_prefix}/epoch"] = version.epoch
        summary[f"{self.metrics_prefix}/global_step"] = version.global_step
        tables.log_metrics(self._run_obj, summary)
        with self._lock:
            timing = version.timing
            timing["samples"] = version.samples
            timing["logged_s"] = time.perf_counter() - version.started
            timing["metrics"] = {k: v for k, v in summary.items()}
        version.columns.clear()

    # -- flushing and errors --------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued version is written. Returns False on timeout.

        ``on_train_end`` calls it; after an interrupted ``fit`` (e.g. KeyboardInterrupt,
        which skips ``on_train_end``) call it before ``wandb.finish()``. Queued work is
        also written at interpreter exit.
        """
        done = self._worker.flush(timeout)
        self._raise_worker_errors()
        return done

    def _raise_worker_errors(self) -> None:
        """In strict mode, a worker error surfaces in the training thread."""
        errors = self._worker.errors
        if errors and self.strict:
            first = errors[0]
            errors.clear()
            raise first

    # -- helpers ---------------------------------------------------------------------------
    def _check_same_samples(self, index: np.ndarray, y: Any) -> None:
        """The labels of these sample ids must be those the data table was built from.

        Pred rows show the data table's image for their id: a source that comes back in
        another order (a shuffled ``tf.data``) would pair images with other samples'
        predictions, so it is refused.
        """
        ids = np.asarray(index).tolist()
        for i, fingerprint in zip(ids, label_fingerprints(y, len(ids))):
            expected = self._fingerprints.get(i)
            if expected is not None and expected != fingerprint:
                raise FastEvalInputError(
                    f"validation sample {i} came back with other labels than when the data "
                    "table was built: the source changes order or content between passes "
                    "(a shuffled or randomly augmented tf.data?). Pass a deterministic "
                    "source: no .shuffle() (or shuffle once with reshuffle_each_iteration="
                    "False) and no random augmentation."
                )

    def _prepare_model(self) -> PredictionBatch:
        """Build the compiled step and check the model's outputs on one batch."""
        from fastevalcb import kernels

        kernels.warmup()
        try:
            first = next(iter(self.predictor.iter_batches(self.model)))
        except StopIteration:
            raise FastEvalInputError("validation_data is empty") from None
        except (ValueError, TypeError) as exc:
            raise FastEvalInputError(f"validation_data does not fit the model: {exc}") from exc
        self._check_outputs(first)
        return first

    def _verbosity(self) -> int:
        if self.verbose != "auto":
            return int(self.verbose)
        return int((self.params or {}).get("verbose", 1) or 0)

    def _progbar(self) -> Any:
        if self._verbosity() != 1:
            return None
        selected = self.predictor.selected_indices()
        size = self.predictor.batch_size
        if selected is None or not size:
            return None
        print(f"\nfastevalcb: {self.task} eval")
        return _keras.progbar(self.model, math.ceil(len(selected) / size), unit_name="batch")

