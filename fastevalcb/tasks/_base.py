"""The machinery every ready-made task callback shares.

A task callback is a :class:`~fastevalcb.callback.WandbEvalCallback` that needs no
subclass: give it validation data and class names. It goes through the base's one
train-begin path and one version-writing path (``_write_version``); per fit:

* **train begin** (before epoch 1, on the training thread): the model's compiled predict
  step is built and run on one batch (output shapes checked) and the first source batch's
  labels are validated (arrays: all labels, at construction). Bad inputs raise
  :class:`~fastevalcb.errors.FastEvalInputError` here. Nothing else: ``fit`` starts.
* **the data table** (once per W&B run, on the worker): the source is streamed batch by
  batch into the data table (labels validated, images PNG-encoded on threads, ground-truth
  overlays) and into an :class:`~fastevalcb.tasks._eval_set.EvalSet`: sample ids,
  validated targets and the data table's image handles, which every log reads instead of
  re-validating.
* **every log** (epoch end, or every N batches): the training thread only runs the
  compiled forward pass (:class:`~fastevalcb.predictor.BatchedPredictor`) and hands each
  batch of host outputs to a :class:`~fastevalcb.worker.LoggingWorker`, which queues it
  behind the data table. The worker turns outputs into rows (numba kernels), media
  (overlays sharing the data table's image files, so the pred version references them)
  and per-sample metrics, then logs the version and the summary metrics. The bounded
  queue keeps memory to a few batches.

Subclasses define the columns and five small steps: ``_output_fn``, ``_check_outputs``,
``_labels``, ``_data_columns_for`` and ``_pred_columns_for`` (+ ``_summary``).

The jobs are split by module: what is known at train begin (the label and image checks,
:class:`~fastevalcb.tasks._eval_set.EvalSet`) is in :mod:`fastevalcb.tasks._eval_set`;
version assembly, the logging worker and the retries of refused writes are the
:class:`~fastevalcb.tasks._versions.VersionWriter` this callback composes. What stays here
is the callback itself: its options, the train-begin checks of the model, the data table's
streaming and the task's steps. It is one class of about 650 lines, kept whole: cutting it
further would turn those steps back into hooks across modules.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import wandb

from fastevalcb import _keras, distributed, image_inputs, tables
from fastevalcb.callback import DataTableRef, WandbEvalCallback
from fastevalcb.errors import FastEvalInputError
from fastevalcb.predictor import BatchedPredictor, PredictionBatch
from fastevalcb.tasks._eval_set import (
    EvalSet,
    ImageScaler,
    check_class_names,
    check_resize,
    concat_targets,
    label_fingerprints,
)
from fastevalcb.tasks._quality import NonFiniteCounter
from fastevalcb.tasks._versions import InlineWorker, Version, VersionWriter
from fastevalcb.worker import LoggingWorker, Retries, RunGuard


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A task callback whose constructor passes ``**options`` on to this one shows every
        keyword in its signature (``help()``, ``inspect.signature``), and refuses an unknown
        keyword naming the closest valid one, before anything is built."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        own = inspect.signature(init)
        if not any(p.kind is p.VAR_KEYWORD for p in own.parameters.values()):
            return
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        names = {p.name for p in params}
        parent_init = cls.__mro__[1].__init__  # type: ignore[misc]  # a class's, not an instance's
        base = inspect.signature(parent_init).parameters.values()  # its parent's
        params += [p for p in base if p.kind is p.KEYWORD_ONLY and p.name not in names]
        signature = own.replace(parameters=params)
        valid = [p.name for p in params[1:]]

        @functools.wraps(init)
        def checked_init(self: Any, *args: Any, **kw: Any) -> None:
            for name in kw:
                if name not in valid:
                    close = difflib.get_close_matches(name, valid, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise TypeError(
                        f"{cls.__name__} got an unexpected keyword argument {name!r}{hint} "
                        f"(valid: {', '.join(valid)})"
                    )
            init(self, *args, **kw)

        checked_init.__signature__ = signature  # type: ignore[attr-defined]
        setattr(cls, "__init__", checked_init)  # noqa: B010 - mypy: no method assignment

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
        self._versions = VersionWriter(  # the worker, the versions, what errors refused
            self,
            async_logging=async_logging,
            max_queue=max_queue,
            max_queue_mb=max_queue_mb,
            run_end_timeout=self.run_end_timeout,
        )
        self._eval_set: EvalSet | None = None  # built with the data table, once per run
        self._data_table_run: str | None = None
        self._quality = NonFiniteCounter(self.task)  # NaN/inf predictions: flagged, warned
        self._to_uint8 = ImageScaler()
        self.image_key = image_key
        self._image_path: tuple[Any, ...] | None = None  # where the image is among the inputs
        self._model_hw: tuple[int, int] | None = None  # the image size the model sees
        self._stager: tables.Stager | None = None  # while the data table is being built
        self._built_eval_set: EvalSet | None = None  # until the data table is logged
        self._image_shape: tuple[int, ...] | None = None
        self.data_table_seconds: float | None = None  # train begin -> data table logged
        self._check_table_size()
        self._check_array_data()

    # -- the composed version writer ---------------------------------------------------------
    @property
    def timings(self) -> list[dict[str, Any]]:
        """One row per pred version: epoch, global_step, trigger, samples, eval_s (the
        forward pass), logged_s (written, from the pass's start); None until known."""
        return self._versions.timings

    @property
    def _worker(self) -> LoggingWorker | InlineWorker:
        return self._versions.worker

    @property
    def _retries(self) -> Retries:
        return self._versions.retries

    @property
    def _run_guard(self) -> RunGuard:
        return self._versions.run_guard

    # -- what a task defines ------------------------------------------------------------
    @classmethod
    def data_columns(cls) -> list[str]:
        raise NotImplementedError

    def pred_columns(self) -> list[str]:
        raise NotImplementedError

    def _output_fn(self) -> Callable[..., Any] | None:
        """TensorFlow post-processing fused into the compiled step (or None)."""
        return None

    def _check_outputs(self, batch: PredictionBatch) -> None:
        """Validate one batch of model outputs at train begin (raise FastEvalInputError)."""

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> Any:
        """Validated ground truth of one batch, in the form the task's steps use."""
        raise NotImplementedError

    def _data_columns_for(
        self, index: np.ndarray, images: np.ndarray, labels: Any
    ) -> dict[str, Any]:
        """Data-table columns for one batch of samples."""
        raise NotImplementedError

    def _pred_columns_for(
        self,
        version: Version,
        batch: PredictionBatch,
        labels: Any,
        base_images: tables.ImageColumn,
    ) -> dict[str, Any]:
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
        if rows is None and self.predictor.source.in_memory:
            selected = self.predictor.selected_indices()  # known before any model
            rows = None if selected is None else len(selected)
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
        if not source.in_memory:
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
            self._image_path = image_inputs.image_input(x, self.image_key)
        return image_inputs.input_at(x, self._image_path)

    def _display_images(self, x: Any) -> np.ndarray:
        """The batch's image input as ``(B, H, W[, C])`` uint8 for the table."""
        return self._to_uint8(self._image_input(x))

    # -- train begin ------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Refuse a model whose backend the compiled step does not run on (torch...)."""
        super().set_model(model)
        _keras.check_backend(_keras.backend_of(model), type(self).__name__)

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        """Before epoch 1: the model's checks, agreed by every worker, then the data table
        (once per W&B run, streamed on the worker)."""
        started = time.perf_counter()
        self._start_session(self.multi_worker_eval)
        with self._dist.agreed("train begin"):
            self._begin_fit()
        self._agree_on_data_table(logs)
        self._versions.cost.begin_fit(self._run_obj, time.perf_counter() - started)

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
        elif not self.predictor.source.in_memory:
            # A second pass's first batch: its labels, and that the pass gives the same.
            host = next(iter(self.predictor.source.batches()))
            self._check_batch(host)
            index = np.asarray(host.index)
            EvalSet(
                index, None, None, index, label_fingerprints(host.y, len(index))
            ).check_same_samples(first.index, first.y)
        tables.define_step_metrics(run, self.metrics_prefix)

    def _needs_data_table(self) -> bool:
        if not self._dist.is_chief:
            return False  # chief-only I/O: the others build no table
        return bool(self._data_table_run != self._run_obj.id)  # once per W&B run

    def _data_table_failed_for_good(self) -> bool:
        # Multi-worker builds it inline (the workers agree on the outcome before epoch 1);
        # in one process it may still be streaming on the worker (no verdict yet).
        if self._dist.multi_worker:
            return self._dist.is_chief and self._eval_set is None
        return self._eval_set is None and "data table" in self._failures

    def _log_ground_truth(self, logs: dict[str, float] | None = None, fatal: Any = ()) -> None:
        """Stream the data table on the worker; pred versions queue behind it.

        In strict mode, and under multi-worker training (every worker must learn the
        outcome at the same point), it runs here, before epoch 1. Nothing is logged when
        this run has its data table already, or on a non-chief worker.
        """
        if not self._needs_data_table():
            return
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

    def _write_data_table(self) -> None:
        """Stream and log the data table now, in this thread (a retry, on the worker)."""
        super()._log_ground_truth(None, ())

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
        ids: list[np.ndarray] = []
        images: list[tables.MediaFiles] = []
        masks: list[tables.MediaFiles] = []
        targets: list[Any] = []
        first: tuple[np.ndarray, Any] | None = None
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
        mask_files = tables.MediaFiles.concat(masks) if masks else None
        self._built_eval_set = EvalSet(
            np.concatenate(ids),
            files,
            concat_targets(targets) if self.stores_targets else None,
            *first,
            masks=mask_files,
        )
        self._staged_index = tables.MediaIndex.from_files(
            artifact, [files] if mask_files is None else [files, mask_files]
        )
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
        logged, ref = self._data_table, self._data_table_ref
        assert logged is not None and ref is not None  # the base just logged and linked it
        tables.release_table(logged)
        self._eval_set, self._built_eval_set = self._built_eval_set, None  # logged: usable
        self._data_table = tables.ColumnarTable(self.data_table_columns)
        self._data_table_ref = DataTableRef(self._data_table, ref.link)

    def _base_images(self, rows: slice) -> tables.ImageColumn:
        """The data table's images of ``rows`` (with their ground-truth mask layer) for one
        pred batch: by reference, as arrays; read as a sequence, media objects sharing
        the data table's files."""
        eval_set = self._eval_set
        assert eval_set is not None and eval_set.images is not None  # logged at train begin
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
            Version(
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
            self._versions.raise_errors()  # a strict error of an earlier version comes first
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
            self._versions.raise_errors()

    def _predict_and_queue(self, version: Version) -> None:
        """Run the compiled forward pass; the worker builds and logs the version."""
        self._versions.predict_and_queue(version)

    def _finish_version(self, version: Version) -> None:
        """The worker's last step of a version: log its artifact, then its metrics."""
        self._versions.finish_version(version)

    def _pred_stager(self, version: Version) -> tables.Stager:
        """Where the version's new media files (predicted masks) are written."""
        return self._versions.stager(version)

    # -- what transient errors refused ----------------------------------------------------
    def _retry_later(self, stage: str, exc: BaseException) -> bool:
        if stage != "data table" or not self._versions.transient(exc):
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

    # -- flushing and errors --------------------------------------------------------------
    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        waited = time.perf_counter()
        self.flush()
        self._versions.cost.end_fit(self._run_obj, time.perf_counter() - waited)
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
        return self._versions.flush(timeout)

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
        """Keep the model's resolution; refuse a preprocessor whose resize the tables cannot
        undo (:func:`~fastevalcb.tasks._eval_set.check_resize`)."""
        self._model_hw = batch.model_hw
        check_resize(self.model, batch.model_hw, batch.image_hw)

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
