"""The machinery every ready-made task callback shares.

A task callback is a :class:`~fastevalcb.callback.WandbEvalCallback` that needs no
subclass: give it validation data and class names. It goes through the base's one
train-begin path and one version-writing path (``_write_version``); per fit:

* **train begin** (before epoch 1, on the training thread): the model's compiled predict
  step is built and run on one batch (output shapes checked) and the first source batch's
  labels are validated (arrays: all labels, at construction). Bad inputs raise
  :class:`~fastevalcb.callback.FastEvalInputError` here. Nothing else: ``fit`` starts.
* **the data table** (once per W&B run, on the worker): the source is streamed batch by
  batch into the data table (labels validated, images PNG-encoded on threads, ground-truth
  overlays) and into an :class:`EvalSet`: sample ids, validated targets and the data
  table's image handles, which every log reads instead of re-validating.
* **every log** (epoch end, or every N batches): the training thread only runs the
  compiled forward pass (:class:`~fastevalcb.predictor.BatchedPredictor`) and hands each
  batch of host outputs to a :class:`~fastevalcb.worker.LoggingWorker`, which queues it
  behind the data table. The worker turns outputs into rows (numba kernels), media
  (overlays sharing the data table's image files, so the pred version references them)
  and per-sample metrics, then logs the version and the summary metrics. The bounded
  queue keeps memory to a few batches.

Subclasses define the columns and five small steps: ``_output_fn``, ``_check_outputs``,
``_labels``, ``_data_columns_for`` and ``_pred_columns_for`` (+ ``_summary``).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import wandb

from fastevalcb import _keras, distributed, sources, tables
from fastevalcb.callback import DataTableRef, FastEvalInputError, WandbEvalCallback
from fastevalcb.predictor import BatchedPredictor, PredictionBatch
from fastevalcb.tasks._cost import CostLog, VersionCost
from fastevalcb.tasks._quality import NonFiniteCounter
from fastevalcb.types import PackedDetections
from fastevalcb.worker import LoggingWorker, Retries, RunGuard, transient_cause


def check_class_names(class_names: Any, max_classes: int | None = None) -> tuple[str, ...]:
    """A non-empty sequence of unique, non-empty strings (at most ``max_classes``)."""
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
    if max_classes is not None and len(names) > max_classes:
        raise FastEvalInputError(
            f"at most {max_classes} classes are supported here, got {len(names)}"
        )
    return names


def check_class_range(
    ids: np.ndarray, num_classes: int, what: str, index: np.ndarray, allowed: tuple[int, ...] = ()
) -> None:
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

    @staticmethod
    def displayable(x: Any, what: str = "validation images") -> np.ndarray:
        """``x`` as an array of a shape that can be shown (one channel squeezed), unscaled."""
        arr = np.asarray(x)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
            raise FastEvalInputError(
                f"{what} must have shape (N, H, W), (N, H, W, 1), (N, H, W, 3) or "
                f"(N, H, W, 4), got {tuple(arr.shape)}"
            )
        return arr

    def __call__(self, x: Any, what: str = "validation images") -> np.ndarray:
        arr = self.displayable(x, what)
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
class EvalSet:
    """What every log reads, built once per run while the data table is written.

    Attributes:
        ids: ``(N,)`` int64 global sample ids, increasing (the source's order).
        images: the data table's image file per sample (arrays, no object per sample):
            pred rows show them by reference.
        masks: the data table's ground-truth mask file per sample, for tasks whose data
            table has a mask layer (segmentation), else None.
        targets: the task's validated targets of all ``N`` samples, concatenated
            (``(N,)`` class ids, packed boxes), or None when the task reads them from each
            batch instead (segmentation masks: pixels are never held for the whole set).
        first_ids, first_fingerprints: the first batch's ids and label crc32s, to refuse
            a source that comes back in another order.
    """

    ids: np.ndarray
    images: tables.MediaFiles | None
    targets: Any
    first_ids: np.ndarray
    first_fingerprints: list[int]
    masks: tables.MediaFiles | None = None

    def rows(self, index: np.ndarray) -> slice:
        """The positions of a batch's (contiguous, increasing) sample ids."""
        start = int(np.searchsorted(self.ids, index[0])) if len(index) else 0
        stop = start + len(index)
        if stop > len(self.ids) or not np.array_equal(self.ids[start:stop], index):
            raise FastEvalInputError(
                f"predicted samples {index[:5].tolist()}... are not a run of the data table's "
                "samples: the source gives other samples on this pass than when the data "
                "table was built"
            )
        return slice(start, stop)

    def check_same_samples(self, index: np.ndarray, y: Any) -> None:
        """The first batch of a pass must be the data table's first batch, same labels.

        Pred rows show the data table's image for their id: a source that comes back in
        another order (a shuffled ``tf.data``) would pair images with other samples'
        predictions, so it is refused.
        """
        index = np.asarray(index)
        n = min(len(index), len(self.first_ids))
        same = np.array_equal(index[:n], self.first_ids[:n]) and (
            label_fingerprints(y, n) == self.first_fingerprints[:n]
        )
        if not same:
            raise FastEvalInputError(
                "the validation source came back with other samples or labels than when the "
                "data table was built: it changes order or content between passes (a "
                "shuffled or randomly augmented tf.data?). Pass a deterministic source: no "
                ".shuffle() (or shuffle once with reshuffle_each_iteration=False) and no "
                "random augmentation."
            )


def _queue_bytes(megabytes: Any) -> int:
    if isinstance(megabytes, bool) or not isinstance(megabytes, (int, float)) or megabytes <= 0:
        raise ValueError(f"max_queue_mb must be a positive number, got {megabytes!r}")
    return max(1, int(megabytes * 2**20))


def _nbytes(batch: PredictionBatch) -> int:
    """Host bytes a queued batch holds (outputs, labels, inputs)."""

    def size(value: Any) -> int:
        if isinstance(value, dict):
            return sum(map(size, value.values()))
        if isinstance(value, (list, tuple)):
            return sum(map(size, value))
        return getattr(value, "nbytes", 0)

    return int(batch.index.nbytes + size(batch.outputs) + size(batch.y) + size(batch.x))


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _concat(parts: list) -> Any:
    if isinstance(parts[0], PackedDetections):
        return type(parts[0]).concat(parts)  # detection's targets carry crowd flags
    return np.concatenate(parts)


def _take(targets: Any, rows: slice) -> Any:
    if isinstance(targets, PackedDetections):
        return targets.slice(rows.start, rows.stop)
    return targets[rows]


@dataclass
class _Version:
    """One pred-table version being assembled by the worker."""

    epoch: int
    global_step: int
    trigger: str
    alias: str
    started: float
    table: tables.StreamedTable | None = None  # serialized batch by batch
    stager: tables.Stager | None = None  # its new media files, straight into staging
    state: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    failed: bool = False
    timing: dict[str, Any] = field(default_factory=dict)
    kept: list | None = field(default_factory=list)  # its batches, for a retry (budget)
    kept_bytes: int = 0
    transient: BaseException | None = None  # what refused it (it is retried)
    deferred: bool | None = None  # queued behind a retry (decided at its first job)
    # Set once its artifact is logged: the summary run.log records (a retry logs only it).
    metrics: dict[str, Any] | None = None
    cost: VersionCost = field(default_factory=VersionCost)  # fastevalcb/<prefix>/* keys

    def describe(self) -> str:
        return f"epoch {self.epoch} step {self.global_step} ({self.alias})"


class _InlineWorker:
    """``async_logging=False``: run jobs in the caller's thread."""

    pending = 0
    blocked_s = 0.0

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def submit(self, fn: Callable[..., Any], *args: Any, nbytes: int = 0) -> None:
        fn(*args)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    @contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def pause_while_held(self) -> None:
        pass


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
        max_queue: batches of predictions that may wait for the worker; None (default): as
            many as ``max_queue_mb`` holds.
        max_queue_mb: megabytes of host predictions that may wait for the worker
            (back-pressure beyond it). The default 256 holds a whole pass of class scores
            for most validation sets, so the training thread only ever runs the forward
            pass; segmentation maps (64 KB a 256x256 sample) wait for the worker sooner.
        metrics_prefix: summary metrics are ``<prefix>/<name>``, keyed by
            ``<prefix>/global_step`` through ``define_metric``.
        verbose: ``"auto"`` follows ``fit(verbose=...)``; 0 silent, 1 progress bar,
            2 one line per log.
        strict: raise logging errors instead of warning and going on. Not strict, a
            transient OS error while writing (ENOSPC, EDQUOT, EIO, EAGAIN, EINTR) keeps the
            version (or the data table) and writes it again, in order, at the next log, at
            ``flush()`` and at the run's end; what is given up is named in one warning and
            the run's summary.
        data_artifact_name: name of the data table artifact.
        compress_level: zlib level of the PNGs we write (1: fast; 6: smaller files).
        return_x: hand each batch's raw inputs to the task's steps (overlays drawn on them).
        image_key: for multi-input models (``x`` a dict or tuple), the input the tables
            show: a dict key, a tuple index or a path. Default: the only image-shaped
            input; ambiguous inputs are a ``FastEvalInputError`` asking for it.
        multi_worker_eval: under ``MultiWorkerMirroredStrategy``, ``"sharded"`` (every
            worker predicts its slice of each batch through the compiled step; the batch is
            all-gathered in sample order) or ``"chief_only"`` (the chief predicts every
            sample on a local step while the others wait). Ignored in a single process.
    """

    task: str = "task"
    kernel_groups: tuple[str, ...] = ()  # numba kernels the worker compiles first (warmup)
    stores_targets: bool = True  # keep validated targets in the EvalSet (else: per batch)
    max_classes: int | None = None  # segmentation: 256 (uint8 masks)
    mask_labels: dict[int, str] | None = None  # segmentation: the mask layers' class labels
    run_end_timeout: float = 300.0  # seconds the run's end waits for queued versions
    progress_every_s: float = 10.0  # a data-table progress line this often (verbose >= 1)

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
        max_queue: int | None = None,
        max_queue_mb: float = 256,
        metrics_prefix: str = "eval",
        verbose: int | str = "auto",
        strict: bool = False,
        data_artifact_name: str = "val",
        compress_level: int = 1,
        return_x: bool = False,
        image_key: Any = None,
        multi_worker_eval: str = "sharded",
    ) -> None:
        if _keras.loaded_tf_keras() is None:  # else the model may be tf_keras: set_model
            _keras.check_backend(_keras.keras3().backend.backend(), type(self).__name__)
        self.class_names = check_class_names(class_names, self.max_classes)
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
            image_key=image_key,
        )
        self._worker: LoggingWorker | _InlineWorker = (
            LoggingWorker(max_queue, max_queue_bytes=_queue_bytes(max_queue_mb))
            if async_logging
            else _InlineWorker()
        )
        self._eval_set: EvalSet | None = None  # built with the data table, once per run
        self._data_table_run: str | None = None
        self._retries = Retries(_queue_bytes(max_queue_mb))  # what transient errors refused
        self._run_guard = RunGuard(
            self._worker,
            self.run_end_timeout,  # run end waits
            on_end=self._retry_at_run_end,
        )
        self._quality = NonFiniteCounter(self.task)  # NaN/inf predictions: flagged, warned
        self._to_uint8 = ImageScaler()
        self.image_key = image_key
        self._image_path: tuple | None = None  # where the image is among the inputs
        self._model_hw: tuple[int, int] | None = None  # the image size the model sees
        self._stager: tables.Stager | None = None  # while the data table is being built
        self._built_eval_set: EvalSet | None = None  # until the data table is logged
        self._image_shape: tuple[int, ...] | None = None
        self._run_obj: Any = None
        self._lock = threading.Lock()
        self.timings: list[dict[str, Any]] = []
        self._cost = CostLog(self.metrics_prefix)  # what logging costs, in the run
        self.data_table_seconds: float | None = None  # train begin -> data table logged
        self._check_table_size()
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

    def _pred_columns_for(
        self, version: _Version, batch: PredictionBatch, labels: Any, base_images: list
    ) -> dict:
        """Pred-table columns (minus epoch/step/id) for one batch; updates version.state."""
        raise NotImplementedError

    def _summary(self, state: dict[str, Any]) -> dict[str, float]:
        """Summary metrics over one version's samples."""
        raise NotImplementedError

    def _summary_charts(self, state: dict[str, Any]) -> dict[str, Any]:
        """W&B tables and charts of one version (per-class results, confusion matrix,
        curves), logged with its summary metrics; see :mod:`fastevalcb.tasks._metrics`."""
        return {}

    # -- construction-time checks ---------------------------------------------------------
    def _check_table_size(self, rows: int | None = None) -> None:
        """A W&B artifact table holds at most ``wandb.Table.MAX_ARTIFACT_ROWS`` rows."""
        if rows is None and type(self.predictor.source).__name__ == "ArraySource":
            rows = len(self.predictor.selected_indices())  # known before any model
        limit = wandb.Table.MAX_ARTIFACT_ROWS
        if rows is not None and rows > limit:
            raise FastEvalInputError(
                f"validation_data has {rows:,} samples, but a W&B artifact table holds at "
                f"most {limit:,} rows (wandb.Table.MAX_ARTIFACT_ROWS): pass max_samples= "
                f"(at most {limit:,}; selection='random' for a fixed random subset)"
            )

    def _check_array_data(self) -> None:
        """Validate labels of in-memory arrays now, not at train begin."""
        source = self.predictor.source
        if type(source).__name__ != "ArraySource":
            return
        for host in source.batches():
            self._check_batch(host)

    def _check_batch(self, host: Any) -> Any:
        """Validate one source batch's images and labels; returns the labels."""
        if host.y is None:
            raise FastEvalInputError(
                f"{type(self).__name__} needs labels: pass validation_data=(x, y)"
            )
        shape = ImageScaler.displayable(self._image_input(host.x)).shape  # no pixel work
        return self._labels(host.y, np.asarray(host.index), shape)

    def _image_input(self, x: Any) -> Any:
        """The batch's image input: ``image_key``, else the only image-shaped one."""
        if self._image_path is None:
            self._image_path = sources.image_input(x, self.image_key)
        return sources.input_at(x, self._image_path)

    def _display_images(self, x: Any) -> np.ndarray:
        """The batch's image input as ``(B, H, W[, C])`` uint8 for the table."""
        return self._to_uint8(self._image_input(x))

    # -- train begin ------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Refuse a model whose backend the compiled step does not run on (torch...)."""
        super().set_model(model)
        _keras.check_backend(_keras.backend_of(model), type(self).__name__)

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        started = time.perf_counter()
        super().on_train_begin(logs)
        self._cost.begin_fit(self._run_obj, time.perf_counter() - started)

    def _begin_fit(self) -> None:
        """Before epoch 1: the model's compiled step on one batch, the first labels, metrics.

        Everything slow (reading the whole source, PNG encoding, staging the data table)
        runs on the worker (:meth:`_log_ground_truth`), so ``fit`` starts at once.

        Multi-worker: the chief does all of it; the other workers build and check the same
        compiled step on the same first batch (``distributed``: chief-only I/O).
        """
        # Chief-only: the chief's step ignores the strategy. Sharded multi-worker: the step
        # is a collective, so it runs in this thread (exactly the steps asked for).
        self.predictor.local = self._dist.chief_predicts_locally
        if self._dist.sharded:
            self.predictor.prefetch = 0
        if not self._dist.is_chief:
            self._prepare_model()
            return
        run = self._run()
        if self._run_obj is not None and run.id != self._run_obj.id:
            self._worker.flush()  # the old run's leftovers go to the old run first
            self._forget_data_table()  # a new W&B run gets its own data table to reference
        self._run_obj = run
        self._run_guard.attach(run, timeout=self.run_end_timeout)
        self._quality.new_fit()
        self._worker.submit(self._warm_kernels)  # first in the queue: fit does not wait
        first = self._prepare_model()
        if self._eval_set is not None:
            self._eval_set.check_same_samples(first.index, first.y)
        elif type(self.predictor.source).__name__ != "ArraySource":
            # A second pass's first batch: its labels, and that the pass gives the same.
            host = next(iter(self.predictor.source.batches()))
            self._check_batch(host)
            index = np.asarray(host.index)
            EvalSet(
                index, [], None, index, label_fingerprints(host.y, len(index))
            ).check_same_samples(first.index, first.y)
        tables.define_step_metrics(run, self.metrics_prefix)

    def _multi_worker_mode(self) -> str:
        return self.multi_worker_eval

    def _needs_data_table(self) -> bool:
        if not self._dist.is_chief:
            return False  # chief-only I/O: the others build no table
        return self._data_table_run != self._run_obj.id  # once per W&B run

    def _data_table_failed_for_good(self) -> bool:
        # Multi-worker builds it inline (the workers agree on the outcome before epoch 1);
        # in one process it may still be streaming on the worker (no verdict yet).
        if self._dist.multi_worker:
            return self._dist.is_chief and self._eval_set is None
        return self._eval_set is None and "data table" in self._failures

    def _log_ground_truth(self, logs: dict[str, float] | None = None, fatal: Any = ()) -> None:
        """Stream the data table on the worker; pred versions queue behind it.

        In strict mode, and under multi-worker training (every worker must learn the
        outcome at the same point), it runs here, before epoch 1.
        """
        self._data_table_run = self._run_obj.id
        started = time.perf_counter()

        def job(fatal: tuple[type[BaseException], ...]) -> None:
            super(TaskEvalCallback, self)._log_ground_truth(logs, fatal)
            if self._eval_set is not None:
                self.data_table_seconds = time.perf_counter() - started
                if self._verbosity() >= 1:
                    print(
                        f"fastevalcb: {self.task} data table logged: "
                        f"{len(self._eval_set.ids):,} rows in {self.data_table_seconds:.1f} s"
                    )

        if self.strict:
            job((Exception,))
        elif self._dist.multi_worker:
            job(())
        else:
            self._worker.submit(job, ())

    def _forget_data_table(self) -> None:
        self._data_table_ref = None
        self._media_index = None
        self._eval_set = None
        self._data_table_run = None

    # -- ground truth (once per run, on the worker) ------------------------------------------
    def add_ground_truth(self, logs: dict[str, float] | None = None) -> None:
        """Stream the validation set once into the data table and the :class:`EvalSet`.

        Image and mask files are written once, straight into the data artifact's staging
        (:class:`~fastevalcb.tables.Stager`), as the task steps build them.
        """
        artifact = wandb.Artifact(self.data_artifact_name, type="dataset")
        self._staged_artifact, self._stager = artifact, tables.Stager(artifact)
        self.data_table = tables.StreamedTable(self.data_table_columns, artifact)
        ids, images, masks, targets, first = [], [], [], [], None
        progress, rows = self._data_table_progress(), 0
        for host in self.predictor.source.batches():
            self._worker.pause_while_held()  # an eval pass runs: leave it the GIL
            progress(rows)
            pixels = self._display_images(host.x)
            if self._image_shape is None:
                self._image_shape = pixels.shape[1:]
            elif pixels.shape[1:] != self._image_shape:
                raise FastEvalInputError(
                    f"validation images must all have one size: got {pixels.shape[1:]} "
                    f"after {self._image_shape}"
                )
            index = np.asarray(host.index)
            labels = self._labels(host.y, index, pixels.shape)
            if first is None:
                first = (index, label_fingerprints(host.y, len(index)))
            columns = self._data_columns_for(index, pixels, labels)
            ids.append(index)
            rows += len(index)
            self._check_table_size(rows)  # sources of unknown length, as they stream
            batch = columns["image"]
            images.append(
                tables.MediaFiles.of(batch, self._stager, tables.IMAGE_DIR, tables.IMAGE_SUFFIX)
            )
            boxes, layers = tables.image_layers(batch[0])
            if "ground_truth" in layers:
                masks.append(
                    tables.MediaFiles.of(
                        [tables.image_layers(im)[1]["ground_truth"] for im in batch],
                        self._stager,
                        tables.MASK_DIR,
                        tables.MASK_SUFFIX,
                    )
                )
            elif not boxes and not layers:  # plain images: serialized from their arrays
                columns["image"] = tables.ImageColumn(images[-1], slice(0, len(batch)))
            self.data_table.add_columns(columns)  # serialized now: no row outlives its batch
            if self.stores_targets:
                targets.append(labels)
        if first is None:
            raise FastEvalInputError("validation_data is empty")
        files = tables.MediaFiles.concat(images)
        masks = tables.MediaFiles.concat(masks) if masks else None
        self._built_eval_set = EvalSet(
            np.concatenate(ids),
            files,
            _concat(targets) if self.stores_targets else None,
            *first,
            masks=masks,
        )
        self._staged_index = tables.MediaIndex.from_files(artifact, [files, masks])
        self._stager = None

    def _data_table_progress(self) -> Callable[[int], None]:
        """A progress line every ``progress_every_s`` seconds of a long data-table build
        (verbose >= 1): lines, not a bar, as it runs beside ``fit``'s own progress bar."""
        selected = self.predictor.selected_indices()
        total = None if selected is None else len(selected)
        started = last = time.perf_counter()

        def report(rows: int) -> None:
            nonlocal last
            now = time.perf_counter()
            if not rows or now - last < self.progress_every_s or self._verbosity() < 1:
                return
            last = now
            of = "" if total is None else f"/{total:,} ({100 * rows / max(total, 1):.0f}%)"
            print(f"fastevalcb: {self.task} data table: {rows:,}{of} rows in {now - started:.0f} s")

        return report

    def log_data_table(
        self, name: str | None = None, type: str = "dataset", table_name: str = "val_data"
    ) -> None:
        """Log the data table, then keep only its arrays (:class:`EvalSet`): no row, image
        object or per-file dict stays in memory for the rest of the fit."""
        super().log_data_table(name or self.data_artifact_name, type, table_name)
        tables.release_table(self._data_table)
        self._eval_set, self._built_eval_set = self._built_eval_set, None  # logged: usable
        self._data_table = tables.ColumnarTable(self.data_table_columns)
        self._data_table_ref = DataTableRef(self._data_table, self._data_table_ref.link)

    def _base_images(self, rows: slice) -> tables.ImageColumn:
        """The data table's images of ``rows`` (with their ground-truth mask layer) for one
        pred batch: by reference, as arrays; read as a sequence, media objects sharing
        the data table's files."""
        eval_set = self._eval_set
        return tables.ImageColumn(eval_set.images, rows, eval_set.masks, self.mask_labels)

    # -- predictions (every log) -----------------------------------------------------------
    def add_model_predictions(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Run the compiled forward pass; the worker builds and logs the version."""
        context = self._log_context or {
            "epoch": epoch,
            "global_step": self._global_step,
            "trigger": "epoch_end",
            "alias": f"epoch-{epoch}",
        }
        self._predict_and_queue(
            _Version(
                context["epoch"],
                context["global_step"],
                context["trigger"],
                context["alias"],
                time.perf_counter(),
            )
        )

    def _make_version(self, epoch: int, logs: dict[str, float] | None) -> None:
        multi_worker = self._dist.multi_worker
        if not multi_worker:
            self._raise_worker_errors()  # a strict error of an earlier version comes first
        if not self._dist.is_chief:  # join the sharded step's collectives, log nothing
            if self._dist.sharded:
                distributed.for_each(self.predictor.iter_batches(self.model), lambda b: None)
            return
        alias = self._log_context.get("alias", f"epoch-{epoch}")
        if self._run_guard.lost(epoch, self._global_step, alias) and not multi_worker:
            return  # the run has finished: reported at train end
        self.add_model_predictions(epoch, logs)
        if self.strict:
            self.flush()  # strict: a failure building or writing it raises here, now
        elif multi_worker:
            self._raise_worker_errors()

    def _predict_and_queue(self, version: _Version) -> None:
        version.timing = {
            "epoch": version.epoch,
            "global_step": version.global_step,
            "trigger": version.trigger,
            "samples": None,
            "eval_s": None,
            "logged_s": None,
        }
        with self._lock:
            self.timings.append(version.timing)
        progbar = self._progbar()
        batches = 0
        if self._retries.waiting():
            self._worker.submit(self._retry_job, "log")

        def queue(batch: PredictionBatch) -> None:
            nonlocal batches
            self._worker.submit(
                self._job, "pred table", self._add_batch, version, batch, nbytes=_nbytes(batch)
            )
            batches += 1
            if progbar is not None:
                progbar.update(batches)

        # Sharded multi-worker: each batch is a collective, so a failure keeps drawing them.
        with self._worker.hold():  # the worker waits for the pass (no GIL contention)
            distributed.for_each(
                self.predictor.iter_batches(self.model), queue, drain=self._dist.sharded
            )
        version.cost.hand_over()
        self._worker.submit(self._job, "pred table", self._finish_version, version)
        eval_s = time.perf_counter() - version.started
        self._cost.add(eval_s)
        with self._lock:
            version.timing["eval_s"] = eval_s
        if self._verbosity() == 2:
            print(
                f"fastevalcb: {self.task} eval ({version.alias}) {batches} batches "
                f"in {eval_s:.2f} s; writing in the background"
            )

    def _job(self, stage: str, fn: Callable[..., None], version: _Version, *args: Any) -> None:
        """A worker job. An error warns once (or, strict, is kept for the training thread)
        and marks the version failed, so its remaining batches are skipped, not logged.

        A transient OS error (:data:`~fastevalcb.worker.TRANSIENT_ERRNOS`) instead parks the
        version with its batches (while they fit the queue's byte budget), to be written
        again, in order; a version that comes while one waits queues behind it.
        """
        finishing = fn == self._finish_version
        if fn == self._add_batch:
            self._retries.keep(version, args[0], _nbytes(args[0]))
        if version.deferred is None:
            version.deferred = self._retries.waiting() and not self._dist.multi_worker
        if self._run_guard.lost(version.epoch, version.global_step, version.alias):
            self._retries.release(version)
            return
        if version.failed:
            return
        if version.deferred or version.transient is not None:
            if finishing:
                self._park(version)
            return
        if self._eval_set is None:  # the data table failed (warned): nothing to reference
            version.failed = True
            self._retries.release(version)
            return
        done = False
        try:
            with self._guard(stage, fatal=()):
                try:
                    version.cost.timed(fn, version, *args)
                except Exception as exc:
                    if not self._transient(exc):
                        raise
                    version.transient = exc
                    self._drop_partial(version)
                    if finishing:
                        self._park(version)
                done = True
        finally:
            if not done:
                version.failed = True
                self._retries.release(version)
            elif finishing and version.transient is None:
                self._retries.release(version)  # written: its batches are not needed

    # -- retrying what transient errors refused ------------------------------------------
    def _transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is kept for a retry (not in strict mode, not multi-worker)."""
        return not self.strict and not self._dist.multi_worker and transient_cause(exc) is not None

    def _retry_later(self, stage: str, exc: BaseException) -> bool:
        if stage != "data table" or not self._transient(exc):
            return False
        self._retries.data_table = exc  # rebuilt from the source at the next attempt
        if self._stager is not None:
            self._stager.discard()
        self._stager = None
        return True

    def _data_table_failed(self) -> bool:
        if self._retries.data_table is not None:
            return False  # it will be rebuilt: versions queue behind it
        return self._data_table_failed_for_good()

    @staticmethod
    def _drop_partial(version: _Version) -> None:
        """Delete what a refused attempt wrote of the version (its staged table and media
        files: on a full disk, the space its retry needs)."""
        if version.table is not None:
            version.table.close()
        if version.stager is not None:
            version.stager.discard()
        version.table = version.stager = None

    def _park(self, version: _Version) -> None:
        """Keep a refused (or deferred) version for a retry, or give it up."""
        if version.kept is None:
            cause = version.transient or self._retries.data_table
            self._give_up(
                version.describe(),
                "its predictions were larger than the queue's "
                f"byte budget (max_queue_mb) to keep for a retry; cause: "
                f"{_cause(cause) if cause is not None else 'an earlier refusal'}",
            )
            return
        self._retries.parked.append(version)

    def _give_up(self, which: str, why: str) -> None:
        self._retries.give_up(which, why)
        self._record_failure("retry", f"{which} not written: {why}")

    def _retry_job(self, when: str) -> None:
        """Write again what transient errors refused, in order: the data table (re-streamed
        from the source), then the parked versions. Stops at the first refusal and backs
        off. ``when``: ``"log"`` (only once the backoff is over), ``"flush"`` (now) or
        ``"end"`` (the run's end: now, and what is still refused is given up)."""
        retries = self._retries
        final = when == "end"
        if not retries.waiting() or (when == "log" and not retries.due()):
            return
        if retries.data_table is not None:
            retries.data_table = None
            super()._log_ground_truth(None, ())  # re-streamed (still this run's)
            if self._eval_set is not None:
                retries.written_again.append("the data table")
        refused = retries.data_table
        while refused is None and retries.parked:
            version = retries.parked[0]
            if self._rewrite(version):
                retries.parked.pop(0)
                retries.release(version)
                retries.written_again.append(version.describe())
            else:
                refused = version.transient
        if refused is None:
            retries.succeeded()
            return
        retries.failed_again()
        if final:
            self._give_up_all(f"{_cause(refused)} (still, when the run ended)")

    def _rewrite(self, version: _Version) -> bool:
        """Build and log a parked version again from its batches; False if refused again."""
        version.transient, version.deferred, version.failed = None, False, False
        with self._guard("pred table", fatal=()):
            try:
                if version.metrics is None:  # else its artifact is logged: metrics only
                    version.samples, version.state = 0, {}
                    for batch in version.kept:
                        self._add_batch(version, batch)
                self._finish_version(version)
            except Exception as exc:
                if not self._transient(exc):
                    raise  # a lasting error: warned by the guard, the version is dropped
                version.transient = exc
                self._drop_partial(version)
                return False
        return True

    def _give_up_all(self, why: str) -> None:
        retries = self._retries
        if retries.data_table is not None:
            retries.data_table = None
            self._give_up("the data table", why)
        while retries.parked:
            version = retries.parked.pop(0)
            retries.release(version)
            self._give_up(version.describe(), why)

    def _retry_at_run_end(self) -> None:
        """The run is ending: a last attempt at what transient errors refused, then one
        warning naming what is lost."""
        if self._retries.waiting():
            self._worker.submit(self._retry_job, "end")
        self._worker.submit(self._report_given_up)

    def _report_given_up(self) -> None:
        """One warning naming every version given up since the last report, and why."""
        lost = self._retries.take_given_up()
        if not lost:
            return
        from fastevalcb.callback import FastEvalWarning

        listed = "; ".join(f"{which}: {why}" for which, why in lost)
        warnings.warn(
            f"fastevalcb: {len(lost)} table(s) not written after transient write errors: {listed}",
            FastEvalWarning,
            stacklevel=2,
        )

    def _add_batch(self, version: _Version, batch: PredictionBatch) -> None:
        eval_set = self._eval_set
        index = np.asarray(batch.index)
        if version.samples == 0:  # a reordered source shows in its first batch
            eval_set.check_same_samples(index, batch.y)
        rows = eval_set.rows(index)
        n = len(index)
        labels = (
            _take(eval_set.targets, rows)
            if self.stores_targets
            else self._labels(batch.y, index, (n, *self._image_shape))
        )
        columns = {
            "epoch": [version.epoch] * n,
            "step": [version.global_step] * n,
            "id": index.tolist(),
        }
        columns.update(self._pred_columns_for(version, batch, labels, self._base_images(rows)))
        self._version_table(version).add_columns(columns)
        version.samples += n

    def _version_table(self, version: _Version) -> tables.StreamedTable:
        if version.table is None:
            version.table = tables.StreamedTable(
                self.pred_table_columns, tables.pred_artifact(self._run_obj), self._media_index
            )
        return version.table

    def _pred_stager(self, version: _Version) -> tables.Stager:
        """Writes the version's new media files (predicted masks) straight into its
        artifact's staging, as the data table's are: no temp file for wandb to copy."""
        if version.stager is None:
            version.stager = tables.Stager(self._version_table(version).artifact)
        return version.stager

    def _finish_version(self, version: _Version) -> None:
        """Log the version's artifact, then its metrics and charts (``run.log``). A write
        refused after the artifact was logged (a chart's table file) retries the metrics
        only: the artifact is never logged twice."""
        if version.metrics is None:
            table = self._version_table(version)
            context = {
                "epoch": version.epoch,
                "global_step": version.global_step,
                "trigger": version.trigger,
                "alias": version.alias,
            }
            self._write_version(table, context, run=self._run_obj)
            version.table = version.stager = None
            metrics = self._quality.finish(version, self._summary(version.state))
            summary = {f"{self.metrics_prefix}/{k}": v for k, v in metrics.items()}
            summary[f"{self.metrics_prefix}/epoch"] = version.epoch
            summary[f"{self.metrics_prefix}/global_step"] = version.global_step
            with self._lock:
                version.timing["samples"] = version.samples
                version.timing["metrics"] = dict(summary)
            version.metrics = summary
        charts = {
            f"{self.metrics_prefix}/{k}": v  # metric tables and plots, one log; new
            for k, v in self._summary_charts(version.state).items()
        }  # each attempt
        cost = self._cost.version_keys(self._run_obj, version.cost, version.samples)
        tables.log_metrics(self._run_obj, {**version.metrics, **charts, **cost})
        with self._lock:
            version.timing["logged_s"] = time.perf_counter() - version.started

    # -- flushing and errors --------------------------------------------------------------
    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        waited = time.perf_counter()
        self.flush()
        self._cost.end_fit(self._run_obj, time.perf_counter() - waited)
        super().on_train_end(logs)
        done = [t for t in self.timings if t["logged_s"] is not None]
        if done and self._verbosity() >= 1 and self._dist.is_chief:
            last = done[-1]
            print(
                f"fastevalcb: {len(self.logged_versions)} {self.task} table version(s) logged "
                f"to run_{self._run_obj.id}_pred; last: {last['samples']} samples, "
                f"eval {last['eval_s']:.2f} s, written after {last['logged_s']:.2f} s"
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued version is written. Returns False on timeout.

        What transient write errors refused is tried again first (``strict`` in the class
        docstring). ``on_train_end`` calls it. It is never required: the run's end
        (``run.finish()``, ``wandb.finish()``, a new ``wandb.init(reinit=...)``, interpreter
        exit) waits up to ``run_end_timeout`` seconds for what is queued, after a last
        retry. Versions that came after their run had finished, or were given up, are
        warned about here.
        """
        if self._retries.waiting():
            self._worker.submit(self._retry_job, "flush")
        done = self._worker.flush(timeout)
        self._report_given_up()
        self._run_guard.report_lost()
        self._raise_worker_errors()
        return done

    def _failure_run(self) -> Any:
        return self._run_obj if self._run_obj is not None else wandb.run

    def _raise_worker_errors(self) -> None:
        """In strict mode, a worker error surfaces in the training thread."""
        errors = self._worker.errors
        if errors and self.strict:
            first = errors[0]
            errors.clear()
            raise first

    # -- helpers ---------------------------------------------------------------------------
    def _warm_kernels(self) -> None:
        """Compile (or load from numba's cache) this task's kernels, on the worker: a cold
        cache takes seconds a group, which ``fit`` does not wait for. A check on the
        training thread that needs a kernel before then compiles just that one."""
        from fastevalcb import kernels

        with self._guard("kernel warmup", fatal=()):
            seconds = sum(kernels.warmup(self.kernel_groups).values())
            if seconds > 1 and self._verbosity() >= 1:
                print(
                    f"fastevalcb: compiled the {self.task} kernels in {seconds:.1f} s "
                    "(cached for later processes)"
                )

    def _prepare_model(self) -> PredictionBatch:
        """Build the compiled step and check the model's outputs on one batch.

        Two kinds of failure, told apart: the source does not match the model's declared
        inputs ("validation_data does not fit the model"), or the step itself fails on
        the first batch (the model's ``predict_step``, the backend, an ``output=``
        function): that error is named with the backend, never blamed on the data.
        """
        model = self.model  # on JAX, Callback.model syncs the weights (jax_state_sync)
        try:
            batches = self.predictor.iter_batches(model)  # checks inputs, builds the step
        except FastEvalInputError:
            raise
        except (ValueError, TypeError) as exc:
            raise FastEvalInputError(f"validation_data does not fit the model: {exc}") from exc
        try:
            first = next(iter(batches))
        except StopIteration:
            raise FastEvalInputError("validation_data is empty") from None
        except FastEvalInputError:
            raise
        except Exception as exc:
            raise FastEvalInputError(self._step_failed(model, exc)) from exc
        self._check_resize(first)
        self._check_outputs(first)
        return first

    def _step_failed(self, model: Any, exc: Exception) -> str:
        """What failed in the compiled step, with its backend (the data fit the inputs)."""
        backend = _keras.backend_of(model)
        custom = callable(getattr(self, "output", None))
        where = f"{type(model).__name__}.predict_step"
        if custom:
            where += ", then your output= function"
            if backend != "tensorflow":
                where += (
                    " (it runs inside the compiled step: on JAX write it in keras.ops, "
                    "not TensorFlow)"
                )
        elif self._output_fn() is not None:
            where += f", then the {self.task} post-processing"
        return (
            f"the compiled predict step failed on the first validation batch on the "
            f"{backend} backend, in {where}: {type(exc).__name__}: {exc}"
        )

    def _check_resize(self, batch: PredictionBatch) -> None:
        """Predictions are at the model's resolution; the tables show the user's images.

        A preprocessor that resizes (KerasHub image converters) is undone by scaling boxes
        and nearest-resizing masks, which is exact for a plain resize. One that crops or
        pads to another aspect ratio cannot be undone that way: refused here.
        """
        model_hw, image_hw = batch.model_hw, batch.image_hw
        self._model_hw = model_hw
        if model_hw is None or image_hw is None or model_hw == image_hw:
            return
        same_aspect = abs(model_hw[0] * image_hw[1] - model_hw[1] * image_hw[0]) < 1e-6
        resizing = getattr(
            getattr(getattr(self.model, "preprocessor", None), "image_converter", None),
            "resizing",
            None,
        )
        reshapes = [
            name
            for name in ("crop_to_aspect_ratio", "pad_to_aspect_ratio")
            if getattr(resizing, name, False)
        ]
        if not same_aspect and reshapes:
            raise FastEvalInputError(
                f"the model's preprocessor resizes the {image_hw[0]}x{image_hw[1]} validation "
                f"images to {model_hw[0]}x{model_hw[1]} with {reshapes[0]}=True, so its "
                "predictions cannot be mapped back onto the images the tables show. Pass "
                f"validation images with the model's aspect ratio ({model_hw[0]}:"
                f"{model_hw[1]}), or an image converter with {reshapes[0]}=False"
            )

    def _verbosity(self) -> int:
        if self.verbose != "auto":
            return int(self.verbose)
        fit = (self.params or {}).get("verbose", 1)  # Keras 3 keeps fit's "auto" as it is
        return 1 if fit == "auto" else int(fit or 0)

    def _progbar(self) -> Any:
        if self._verbosity() != 1:
            return None
        selected = self.predictor.selected_indices()
        size = self.predictor.batch_size
        if selected is None or not size:
            return None
        print(f"\nfastevalcb: {self.task} eval")
        return _keras.progbar(self.model, math.ceil(len(selected) / size), unit_name="batch")
