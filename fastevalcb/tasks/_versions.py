"""Pred-table versions, from the compiled pass's batches to a logged artifact and its metrics.

A task callback composes one :class:`VersionWriter`. At every log the training thread runs
the compiled forward pass (:meth:`VersionWriter.predict_and_queue`) and hands each batch of
host outputs to the logging worker, which turns it into rows of the version's
:class:`~fastevalcb.tables.StreamedTable` (:meth:`VersionWriter.add_batch`), then logs the
version's artifact and its summary metrics (:meth:`VersionWriter.finish_version`, reached
through the callback's ``_finish_version``). One :class:`Version` per log carries its state.

A transient OS error while writing (:data:`~fastevalcb.worker.TRANSIENT_ERRNOS`) parks the
version with its batches (while they fit the queue's byte budget) in
:class:`~fastevalcb.worker.Retries`; what is parked, and a refused data table, is written
again in order at the next log, at ``flush()`` and at the run's end, and what is given up
is named in one warning and the run's summary.

What the writer needs of its callback (the task's steps, the failure guard, the run) is
the :class:`TaskSteps` protocol: the writer holds no task logic of its own. About 520
lines: the retry path shares each step of the first write, and reads best beside it.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fastevalcb import distributed, tables
from fastevalcb.errors import FastEvalWarning
from fastevalcb.predictor import BatchedPredictor, PredictionBatch
from fastevalcb.tasks._cost import CostLog, VersionCost
from fastevalcb.tasks._eval_set import EvalSet, take_targets
from fastevalcb.tasks._quality import NonFiniteCounter
from fastevalcb.worker import LoggingWorker, Retries, RunGuard, transient_cause


def queue_bytes(megabytes: Any) -> int:
    """``max_queue_mb`` in bytes (at least 1); a clear error for anything not positive."""
    if isinstance(megabytes, bool) or not isinstance(megabytes, (int, float)) or megabytes <= 0:
        raise ValueError(f"max_queue_mb must be a positive number, got {megabytes!r}")
    return max(1, int(megabytes * 2**20))


def batch_nbytes(batch: PredictionBatch) -> int:
    """Host bytes a queued batch holds (outputs, labels, inputs)."""

    def size(value: Any) -> int:
        if isinstance(value, dict):
            return sum(map(size, value.values()))
        if isinstance(value, (list, tuple)):
            return sum(map(size, value))
        return int(getattr(value, "nbytes", 0))

    return int(batch.index.nbytes + size(batch.outputs) + size(batch.y) + size(batch.x))


def describe_error(exc: BaseException) -> str:
    """``"OSError: [Errno 28] No space left on device"``: an error as warnings name it."""
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Version:
    """One pred-table version being assembled by the worker.

    Attributes:
        epoch, global_step, trigger, alias: the log it belongs to (``trigger``:
            ``"epoch_end"`` or ``"batch"``; ``alias``: ``epoch-E`` or ``step-S``).
        started: ``time.perf_counter()`` when its forward pass began.
        table: its table, serialized batch by batch (None until the first batch, and once
            logged).
        stager: its new media files (predicted masks), straight into its artifact's staging.
        state: the task's running metric state over the version's samples.
        samples: rows added so far.
        failed: a lasting error: its remaining batches are skipped, not logged.
        timing: the row of ``callback.timings`` it fills (samples, eval_s, logged_s).
        kept: its batches, kept for a retry while the byte budget allows (None: past it).
        kept_bytes: host bytes of ``kept``.
        transient: the transient error that refused it (it is retried).
        deferred: queued behind a retry (decided at its first job).
        metrics: the summary ``run.log`` records, set once its artifact is logged (a retry
            then logs only them).
    """

    epoch: int
    global_step: int
    trigger: str
    alias: str
    started: float
    table: tables.StreamedTable | None = None
    stager: tables.Stager | None = None
    state: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    failed: bool = False
    timing: dict[str, Any] = field(default_factory=dict)
    kept: list[PredictionBatch] | None = field(default_factory=list)
    kept_bytes: int = 0
    transient: BaseException | None = None
    deferred: bool | None = None
    metrics: dict[str, Any] | None = None
    cost: VersionCost = field(default_factory=VersionCost)  # fastevalcb/<prefix>/* keys

    def describe(self) -> str:
        return f"epoch {self.epoch} step {self.global_step} ({self.alias})"


class InlineWorker:
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


class TaskSteps(Protocol):
    """What a :class:`VersionWriter` reads and calls on the task callback that composes it."""

    task: str
    strict: bool
    stores_targets: bool
    metrics_prefix: str
    pred_table_columns: list[str]
    predictor: BatchedPredictor
    _dist: distributed.Session
    _eval_set: EvalSet | None
    _run_obj: Any
    _media_index: tables.MediaIndex | None
    _image_shape: tuple[int, ...] | None
    _quality: NonFiniteCounter

    @property
    def model(self) -> Any: ...

    def _guard(
        self, stage: str, fatal: tuple[type[BaseException], ...] = ...
    ) -> AbstractContextManager[None]: ...

    def _record_failure(self, stage: str, cause: str, hook: str | None = None) -> None: ...

    def _write_version(self, table: tables.StreamedTable, context: dict[str, Any]) -> None: ...

    def _write_data_table(self) -> None: ...

    def _finish_version(self, version: Version) -> None: ...

    def _labels(self, y: Any, index: np.ndarray, image_shape: tuple[int, ...]) -> Any: ...

    def _pred_columns_for(
        self, version: Version, batch: PredictionBatch, labels: Any, base_images: Any
    ) -> dict[str, Any]: ...

    def _base_images(self, rows: slice) -> tables.ImageColumn: ...

    def _summary(self, state: dict[str, Any]) -> dict[str, float]: ...

    def _summary_charts(self, state: dict[str, Any]) -> dict[str, Any]: ...

    def _progbar(self) -> Any: ...

    def _verbosity(self) -> int: ...


class VersionWriter:
    """The logging worker, the versions it assembles, and what transient errors refused.

    Args:
        steps: the task callback (see :class:`TaskSteps`).
        async_logging: run jobs on a background :class:`~fastevalcb.worker.LoggingWorker`
            (else in the calling thread, :class:`InlineWorker`).
        max_queue: batches that may wait for the worker (None: as many as the bytes allow).
        max_queue_mb: megabytes of host predictions that may wait for the worker; also the
            budget of batches kept for retries.
        run_end_timeout: seconds the run's end waits for what is queued.

    Attributes:
        worker: runs the jobs (the data table's too).
        retries: what transient errors refused, written again in order.
        run_guard: holds the run open until its queued versions are written.
        timings: one row per version: epoch, global_step, trigger, samples, eval_s,
            logged_s (None until known).
    """

    def __init__(
        self,
        steps: TaskSteps,
        *,
        async_logging: bool,
        max_queue: int | None,
        max_queue_mb: float,
        run_end_timeout: float,
    ) -> None:
        self._steps = steps
        self.worker: LoggingWorker | InlineWorker = (
            LoggingWorker(max_queue, max_queue_bytes=queue_bytes(max_queue_mb))
            if async_logging
            else InlineWorker()
        )
        self.retries = Retries(queue_bytes(max_queue_mb))
        self.run_guard = RunGuard(self.worker, run_end_timeout, on_end=self.retry_at_run_end)
        self.timings: list[dict[str, Any]] = []
        self.cost = CostLog(steps.metrics_prefix)  # what logging costs, in the run
        self._lock = threading.Lock()

    # -- the training thread ----------------------------------------------------------------
    def predict_and_queue(self, version: Version) -> None:
        """Run the compiled pass; queue each batch, then the version's finish, to the worker."""
        steps = self._steps
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
        progbar = steps._progbar()
        batches = 0
        if self.retries.waiting():
            self.worker.submit(self.retry_job, "log")

        def queue(batch: PredictionBatch) -> None:
            nonlocal batches
            self.worker.submit(
                self.job, "pred table", self.add_batch, version, batch, nbytes=batch_nbytes(batch)
            )
            batches += 1
            if progbar is not None:
                progbar.update(batches)

        # Sharded multi-worker: each batch is a collective, so a failure keeps drawing them.
        with self.worker.hold():  # the worker waits for the pass (no GIL contention)
            distributed.for_each(
                steps.predictor.iter_batches(steps.model), queue, drain=steps._dist.sharded
            )
        version.cost.hand_over()
        self.worker.submit(self.job, "pred table", steps._finish_version, version)
        eval_s = time.perf_counter() - version.started
        self.cost.add(eval_s)
        with self._lock:
            version.timing["eval_s"] = eval_s
        if steps._verbosity() == 2:
            print(
                f"fastevalcb: {steps.task} eval ({version.alias}) {batches} batches "
                f"in {eval_s:.2f} s; writing in the background"
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Retry what transient errors refused, wait for the worker, report what was lost.

        Returns False on timeout; in strict mode a worker error is raised here.
        """
        if self.retries.waiting():
            self.worker.submit(self.retry_job, "flush")
        done = self.worker.flush(timeout)
        self.report_given_up()
        self.run_guard.report_lost()
        self.raise_errors()
        return done

    def raise_errors(self) -> None:
        """In strict mode, a worker error surfaces in the training thread."""
        errors = self.worker.errors
        if errors and self._steps.strict:
            first = errors[0]
            errors.clear()
            raise first

    # -- worker jobs --------------------------------------------------------------------------
    def job(self, stage: str, fn: Callable[..., None], version: Version, *args: Any) -> None:
        """A worker job. An error warns once (or, strict, is kept for the training thread)
        and marks the version failed, so its remaining batches are skipped, not logged.

        A transient OS error (:data:`~fastevalcb.worker.TRANSIENT_ERRNOS`) instead parks the
        version with its batches (while they fit the queue's byte budget), to be written
        again, in order; a version that comes while one waits queues behind it.
        """
        steps, retries = self._steps, self.retries
        finishing = fn == steps._finish_version
        if fn == self.add_batch:
            retries.keep(version, args[0], batch_nbytes(args[0]))
        if version.deferred is None:
            version.deferred = retries.waiting() and not steps._dist.multi_worker
        if self.run_guard.lost(version.epoch, version.global_step, version.alias):
            retries.release(version)
            return
        if version.failed:
            return
        if version.deferred or version.transient is not None:
            if finishing:
                self._park(version)
            return
        if steps._eval_set is None:  # the data table failed (warned): nothing to reference
            version.failed = True
            retries.release(version)
            return
        done = False
        try:
            with steps._guard(stage, ()):
                try:
                    version.cost.timed(fn, version, *args)
                except Exception as exc:
                    if not self.transient(exc):
                        raise
                    version.transient = exc
                    self._drop_partial(version)
                    if finishing:
                        self._park(version)
                done = True
        finally:
            if not done:
                version.failed = True
                retries.release(version)
            elif finishing and version.transient is None:
                retries.release(version)  # written: its batches are not needed

    def add_batch(self, version: Version, batch: PredictionBatch) -> None:
        """One batch of predictions -> rows of the version's table (and its metric state)."""
        steps = self._steps
        eval_set = steps._eval_set
        assert eval_set is not None  # job() skips versions without a data table
        index = np.asarray(batch.index)
        if version.samples == 0:  # a reordered source shows in its first batch
            eval_set.check_same_samples(index, batch.y)
        rows = eval_set.rows(index)
        n = len(index)
        labels = (
            take_targets(eval_set.targets, rows)
            if steps.stores_targets
            else steps._labels(batch.y, index, (n, *(steps._image_shape or ())))
        )
        columns = {
            "epoch": [version.epoch] * n,
            "step": [version.global_step] * n,
            "id": index.tolist(),
        }
        columns.update(steps._pred_columns_for(version, batch, labels, steps._base_images(rows)))
        self.version_table(version).add_columns(columns)
        version.samples += n

    def version_table(self, version: Version) -> tables.StreamedTable:
        """The version's table, created (with its artifact) at its first batch."""
        if version.table is None:
            steps = self._steps
            version.table = tables.StreamedTable(
                steps.pred_table_columns, tables.pred_artifact(steps._run_obj), steps._media_index
            )
        return version.table

    def stager(self, version: Version) -> tables.Stager:
        """Writes the version's new media files (predicted masks) straight into its
        artifact's staging, as the data table's are: no temp file for wandb to copy."""
        if version.stager is None:
            version.stager = tables.Stager(self.version_table(version).artifact)
        return version.stager

    def finish_version(self, version: Version) -> None:
        """Log the version's artifact, then its metrics and charts (``run.log``). A write
        refused after the artifact was logged (a chart's table file) retries the metrics
        only: the artifact is never logged twice."""
        steps = self._steps
        prefix = steps.metrics_prefix
        if version.metrics is None:
            table = self.version_table(version)
            context = {
                "epoch": version.epoch,
                "global_step": version.global_step,
                "trigger": version.trigger,
                "alias": version.alias,
            }
            steps._write_version(table, context)
            version.table = version.stager = None
            metrics = steps._quality.finish(version, steps._summary(version.state))
            summary = {f"{prefix}/{k}": v for k, v in metrics.items()}
            summary[f"{prefix}/epoch"] = version.epoch
            summary[f"{prefix}/global_step"] = version.global_step
            with self._lock:
                version.timing["samples"] = version.samples
                version.timing["metrics"] = dict(summary)
            version.metrics = summary
        charts = {
            f"{prefix}/{k}": v  # metric tables and plots, one log; new each attempt
            for k, v in steps._summary_charts(version.state).items()
        }
        cost = self.cost.version_keys(steps._run_obj, version.cost, version.samples)
        tables.log_metrics(steps._run_obj, {**version.metrics, **charts, **cost})
        with self._lock:
            version.timing["logged_s"] = time.perf_counter() - version.started

    # -- retrying what transient errors refused ----------------------------------------------
    def transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is kept for a retry (not in strict mode, not multi-worker)."""
        steps = self._steps
        if steps.strict or steps._dist.multi_worker:
            return False
        return transient_cause(exc) is not None

    @staticmethod
    def _drop_partial(version: Version) -> None:
        """Delete what a refused attempt wrote of the version (its staged table and media
        files: on a full disk, the space its retry needs)."""
        if version.table is not None:
            version.table.close()
        if version.stager is not None:
            version.stager.discard()
        version.table = version.stager = None

    def _park(self, version: Version) -> None:
        """Keep a refused (or deferred) version for a retry, or give it up."""
        if version.kept is None:
            cause = version.transient or self.retries.data_table
            self._give_up(
                version.describe(),
                "its predictions were larger than the queue's "
                f"byte budget (max_queue_mb) to keep for a retry; cause: "
                f"{describe_error(cause) if cause is not None else 'an earlier refusal'}",
            )
            return
        self.retries.parked.append(version)

    def _give_up(self, which: str, why: str) -> None:
        self.retries.give_up(which, why)
        self._steps._record_failure("retry", f"{which} not written: {why}")

    def retry_job(self, when: str) -> None:
        """Write again what transient errors refused, in order: the data table (re-streamed
        from the source), then the parked versions. Stops at the first refusal and backs
        off. ``when``: ``"log"`` (only once the backoff is over), ``"flush"`` (now) or
        ``"end"`` (the run's end: now, and what is still refused is given up)."""
        retries = self.retries
        final = when == "end"
        if not retries.waiting() or (when == "log" and not retries.due()):
            return
        if retries.data_table is not None:
            retries.data_table = None
            self._steps._write_data_table()  # re-streamed (still this run's)
            if self._steps._eval_set is not None:
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
            self._give_up_all(f"{describe_error(refused)} (still, when the run ended)")

    def _rewrite(self, version: Version) -> bool:
        """Build and log a parked version again from its batches; False if refused again."""
        steps = self._steps
        version.transient, version.deferred, version.failed = None, False, False
        with steps._guard("pred table", ()):
            try:
                if version.metrics is None:  # else its artifact is logged: metrics only
                    version.samples, version.state = 0, {}
                    for batch in version.kept or ():
                        self.add_batch(version, batch)
                steps._finish_version(version)
            except Exception as exc:
                if not self.transient(exc):
                    raise  # a lasting error: warned by the guard, the version is dropped
                version.transient = exc
                self._drop_partial(version)
                return False
        return True

    def _give_up_all(self, why: str) -> None:
        retries = self.retries
        if retries.data_table is not None:
            retries.data_table = None
            self._give_up("the data table", why)
        while retries.parked:
            version = retries.parked.pop(0)
            retries.release(version)
            self._give_up(version.describe(), why)

    def retry_at_run_end(self) -> None:
        """The run is ending: a last attempt at what transient errors refused, then one
        warning naming what is lost."""
        if self.retries.waiting():
            self.worker.submit(self.retry_job, "end")
        self.worker.submit(self.report_given_up)

    def report_given_up(self) -> None:
        """One warning naming every version given up since the last report, and why."""
        lost = self.retries.take_given_up()
        if not lost:
            return
        listed = "; ".join(f"{which}: {why}" for which, why in lost)
        warnings.warn(
            f"fastevalcb: {len(lost)} table(s) not written after transient write errors: {listed}",
            FastEvalWarning,
            stacklevel=2,
        )
