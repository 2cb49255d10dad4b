"""``WandbEvalCallback``: the stock-compatible template, online and offline.

A subclass written for ``wandb.integration.keras.WandbEvalCallback`` runs unchanged:
it fills ``self.data_table`` once in ``add_ground_truth`` and ``self.pred_table`` in
``add_model_predictions``, taking cells from ``self.data_table_ref``. What differs is
underneath: tables are columnar (cheap to fill), pred versions reference the data
table's media instead of copying them, offline runs work, logging can also run every
N batches, and a failure inside logging warns instead of killing ``model.fit``.

Its size (about 600 lines) is the stock surface: ``DataTableRef`` must be a
``wandb.Table`` that reads like stock's, and the template's hooks, failure guard and
multi-worker agreement are one class; the task callbacks add their steps in ``tasks/``.
"""

from __future__ import annotations

import abc
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import keras
import wandb

from fastevalcb import _keras, distributed, tables
from fastevalcb.errors import FastEvalInputError, FastEvalWarning
from fastevalcb.tables import DataTableLink

logger = logging.getLogger("fastevalcb")

_HOOK_ATTR = "_fastevalcb_user_hook"  # set on an exception raised by a user's hook


class RefRow(Sequence[Any]):
    """One data-table row, indexable by position or by column name."""

    __slots__ = ("_values", "_columns")

    def __init__(self, values: list[Any], columns: list[str | int]) -> None:
        self._values = values
        self._columns = columns

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._columns.index(key)]
            except ValueError:
                raise KeyError(
                    f"data table has no column {key!r}; columns are {self._columns}"
                ) from None
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RefRow({dict(zip(self._columns, self._values))!r})"


class DataTableRef(wandb.Table):
    """The logged data table, as pred tables see it: a ``wandb.Table`` for reading.

    Stock's ``data_table_ref`` is ``data_artifact.get(table_name)``; this is the same
    table without reading it back: ``data``, ``columns``, ``get_index()``,
    ``get_column(name, convert_to=None | "numpy")``, ``iterrows()``, ``get_dataframe()``
    (pandas only if installed), ``index_ref()`` and ``cast()`` are ``wandb.Table``'s.
    It adds ``ref[idx][column]`` indexing, ``len(ref)`` and row iteration.

    What a pred table records of its cells is what stock records, without copying the data
    table into every version:

    * a media cell is the logged object itself: the pred version gets a reference entry to
      the data artifact's file, not a copy;
    * an index value (``get_index()``, ``iterrows()``, ``index_ref()``: wandb's
      ``_TableIndex``, an int linked to this table) makes its column a ``foreignIndex``
      column whose table is a reference entry to the data artifact's table file (``link``).

    Without fastevalcb's fast paths (``FASTEVALCB_SAFE=1``), wandb's public API records
    both as copies: it can link the data table only by adding it to each version (a
    ``media/tables/<digest>.table.json`` of the same rows, its media copied too), as it
    does for a linked table it has no artifact for.

    Args:
        table: the data table (its rows are shared, not copied).
        link: where the data table was logged, for index columns to reference (None before
            it is logged, on non-chief workers, and without the "links" fast path).
    """

    def __init__(self, table: wandb.Table, link: DataTableLink | None = None) -> None:
        super().__init__(columns=list(table.columns), allow_mixed_types=True)
        self.data: list[list[Any]] = table.data  # shared: no row is copied
        tables.share_column_types(self, table)
        self.link = link

    def __getitem__(self, idx: int) -> RefRow:
        return RefRow(self.data[idx], self.columns)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[RefRow]:
        return (RefRow(row, self.columns) for row in self.data)


def _accepts_positional(method: Callable[..., Any], count: int) -> bool:
    """Whether a bound method takes ``count`` positional arguments (``logs`` compat)."""
    params = inspect.signature(method).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= count


class WandbEvalCallback(keras.callbacks.Callback, abc.ABC):  # type: ignore[misc]  # Keras is untyped
    """Abstract Keras callback that logs a data table once and a pred table per log.

    Works with Keras 3 and Keras 2 (``tf_keras``) models alike: the Keras is the model's,
    found at ``set_model`` (see ``fastevalcb._keras``); a model of neither is refused there.

    Under ``tf.distribute.MultiWorkerMirroredStrategy`` (tf_keras models) every worker runs
    the hooks, ``add_ground_truth`` and ``add_model_predictions`` alike (so a
    ``model.predict`` there runs on all of them), but only the chief logs; a non-chief
    worker needs no W&B run (see ``fastevalcb.distributed``).

    Args:
        data_table_columns: column names of the data (ground truth) table.
        pred_table_columns: column names of the prediction table.
        log_every_n_batches: also log a pred-table version every N training steps
            (alias ``step-S``; with ``steps_per_execution=k``, at the first execution end
            past each multiple of N). A log due at an epoch's last step is left to the
            epoch-end log. ``None`` (default) logs at epoch end only and leaves Keras'
            batch hooks untouched, so ``fit`` keeps async dispatch.
        log_on_epoch_end: log a pred-table version at every epoch end (alias ``epoch-E``).
        strict: re-raise errors from logging instead of warning and going on. Not strict,
            a failure is also recorded in the run's summary (``fastevalcb/failures``,
            ``fastevalcb/last_failure``), and one raised by ``add_ground_truth`` /
            ``add_model_predictions`` is a W&B alert (level WARN), once per run.
        *args, **kwargs: passed to ``keras.callbacks.Callback``.

    Raises:
        wandb.Error: no active run (call ``wandb.init()`` first), unless this process is a
            non-chief worker of a multi-worker cluster (the strategy in scope, else
            ``TF_CONFIG``, says so).
        FastEvalInputError: multi-worker training with Keras 3 only (keras#20585).
        TableSchemaError: the column lists are not lists of unique names.
        ValueError: ``log_every_n_batches`` is not a positive int.
    """

    def __init__(
        self,
        data_table_columns: list[str],
        pred_table_columns: list[str],
        *args: Any,
        log_every_n_batches: int | None = None,
        log_on_epoch_end: bool = True,
        strict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        role = distributed.construction_role()
        distributed.check_keras_at_construction(role)
        if wandb.run is None and role.is_chief:
            raise wandb.Error(
                f"{type(self).__name__} needs an active W&B run: call wandb.init() "
                "(mode='offline' works without an account) before creating the callback."
            )
        if wandb.run is not None:  # as stock's __init__ records it
            tables.record_feature(wandb.run, "keras_wandb_eval_callback")
        self.data_table_columns = tables.validate_columns(data_table_columns, "data_table_columns")
        self.pred_table_columns = tables.validate_columns(pred_table_columns, "pred_table_columns")
        if log_every_n_batches is not None and (
            isinstance(log_every_n_batches, bool)
            or not isinstance(log_every_n_batches, int)
            or log_every_n_batches < 1
        ):
            raise ValueError(
                f"log_every_n_batches must be a positive int or None, got {log_every_n_batches!r}"
            )
        self.log_every_n_batches = log_every_n_batches
        self.log_on_epoch_end = log_on_epoch_end
        self.strict = strict

        self._data_table: tables.ColumnarTable | None = None
        self._pred_table: tables.ColumnarTable | None = None
        self._data_table_ref: DataTableRef | None = None
        self._media_index: tables.MediaIndex | None = None
        self._staged_artifact: Any = None  # a data artifact whose media are already staged
        self._staged_index: tables.MediaIndex | None = None  # and the index of its files
        self._gt_takes_logs = _accepts_positional(self.add_ground_truth, 1)
        self._preds_take_logs = _accepts_positional(self.add_model_predictions, 2)
        self._epoch = 0
        self._global_step = 0
        self._epoch_start_step = 0
        self._log_context: dict[str, Any] = {}
        self._failures: dict[str, int] = {}
        self._first_failure: dict[str, str] = {}
        self._failure_count = 0  # every failure of this callback, for the run's summary
        self._alerted_run: str | None = None  # the run already alerted (once per run)
        self.logged_versions: list[dict[str, Any]] = []
        self._dist = distributed.Session()
        self._logging_off = False
        self._run_obj: Any = None  # the run versions go to; None: the active one
        if log_every_n_batches is not None:
            # Only now is the batch hook overridden: Keras turns off async dispatch for
            # the whole fit when any callback's on_train_batch_end is not the default.
            self.on_train_batch_end = self._on_train_batch_end

    # -- stock public surface -----------------------------------------------------
    @abc.abstractmethod
    def add_ground_truth(self, logs: dict[str, float] | None = None) -> None:
        """Fill ``self.data_table`` (called once, at train begin)."""
        raise NotImplementedError(f"{type(self).__name__}.add_ground_truth")

    @abc.abstractmethod
    def add_model_predictions(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Fill ``self.pred_table`` (called at every log)."""
        raise NotImplementedError(f"{type(self).__name__}.add_model_predictions")

    def init_data_table(self, column_names: list[str | int]) -> None:
        """Start a new data table with these columns."""
        self._data_table = tables.ColumnarTable(column_names, allow_mixed_types=True)

    def init_pred_table(self, column_names: list[str | int]) -> None:
        """Start a new pred table with these columns."""
        self._pred_table = tables.ColumnarTable(column_names)

    def log_data_table(
        self, name: str = "val", type: str = "dataset", table_name: str = "val_data"
    ) -> None:
        """Log ``data_table`` as an artifact and make ``data_table_ref`` point at it.

        On a non-chief worker nothing is logged: ``data_table_ref`` points at the table.
        """
        table = self.data_table
        if not self._dist.is_chief:
            self._data_table_ref = DataTableRef(table)
            return
        run = self._run()
        if not tables.num_rows(table):
            warnings.warn(
                "fastevalcb: the data table is empty; add_ground_truth added no rows",
                FastEvalWarning,
                stacklevel=2,
            )
        artifact, self._staged_artifact = self._staged_artifact, None
        artifact = artifact if artifact is not None else wandb.Artifact(name, type=type)
        index, self._staged_index = self._staged_index, None
        self._media_index = tables.log_data_artifact(
            run, table, name, type, table_name, artifact, index
        )
        self._data_table_ref = DataTableRef(table, tables.data_table_link(artifact, table_name))

    def log_pred_table(
        self,
        type: str = "evaluation",
        table_name: str = "eval_data",
        aliases: list[str] | None = None,
    ) -> None:
        """Log ``pred_table`` as a new version of ``run_<id>_pred``.

        Default aliases: ``latest`` plus ``epoch-E`` (epoch-end logs) or ``step-S``
        (per-N-batch logs). Metadata records the epoch and global step. A non-chief worker
        logs nothing.
        """
        self._write_version(
            self.pred_table,
            dict(self._log_context),
            type=type,
            table_name=table_name,
            aliases=aliases,
        )

    def _write_version(
        self,
        table: tables.ColumnarTable,
        context: dict[str, Any],
        *,
        type: str = "evaluation",
        table_name: str = "eval_data",
        aliases: list[str] | None = None,
    ) -> None:
        """The one path every pred-table version takes, stock subclass or task callback.

        Args:
            table: the filled pred table.
            context: ``{epoch, global_step, trigger, alias}`` of the log it belongs to.

        A non-chief worker of a multi-worker cluster logs nothing.
        """
        if not self._dist.is_chief:
            return
        run = self._run_obj if self._run_obj is not None else self._run()
        if aliases is None:
            aliases = ["latest"] + ([context["alias"]] if "alias" in context else [])
        metadata = {k: v for k, v in context.items() if k != "alias"}
        metadata["rows"] = tables.num_rows(table)
        tables.log_pred_artifact(
            run, table, self._media_index, type, table_name, list(aliases), metadata
        )
        self.logged_versions.append({"aliases": list(aliases), **metadata})

    @property
    def data_table(self) -> tables.ColumnarTable:
        if self._data_table is None:
            raise RuntimeError("data_table is not initialised: call init_data_table(columns) first")
        return self._data_table

    @data_table.setter
    def data_table(self, table: tables.ColumnarTable) -> None:
        self._data_table = table

    @property
    def pred_table(self) -> tables.ColumnarTable:
        if self._pred_table is None:
            raise RuntimeError("pred_table is not initialised: call init_pred_table(columns) first")
        return self._pred_table

    @pred_table.setter
    def pred_table(self, table: tables.ColumnarTable) -> None:
        self._pred_table = table

    @property
    def data_table_ref(self) -> DataTableRef:
        if self._data_table_ref is None:
            raise RuntimeError(
                "data_table_ref is only available after log_data_table(): it points at the "
                "logged data artifact. It is set at train begin, after add_ground_truth()."
            )
        return self._data_table_ref

    @data_table_ref.setter
    def data_table_ref(self, ref: DataTableRef) -> None:
        self._data_table_ref = ref

    # -- Keras hooks ----------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Keep ``model``; raise ``TypeError`` unless it is a Keras 3 or tf_keras model.

        Raises ``FastEvalInputError`` for a Keras 3 model under MultiWorkerMirroredStrategy.
        """
        distributed.check_keras(model, _keras.of_model(model))
        super().set_model(model)

    # tf_keras' CallbackList asks these (Keras 3 reads its hooks' ``is_default`` marks
    # instead): batch hooks count only when per-N-batch logging assigned one.
    _supports_tf_logs = False
    _chief_worker_only = None

    def _implements_train_batch_hooks(self) -> bool:
        return _keras.implements_batch_hooks(self, _keras.TRAIN_BATCH_HOOKS)

    def _implements_test_batch_hooks(self) -> bool:
        return _keras.implements_batch_hooks(self, _keras.TEST_BATCH_HOOKS)

    def _implements_predict_batch_hooks(self) -> bool:
        return _keras.implements_batch_hooks(self, _keras.PREDICT_BATCH_HOOKS)

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self._start_session()
        self._agree_on_data_table(logs)  # as stock: a data table at every train begin

    def _agree_on_data_table(self, logs: dict[str, float] | None) -> None:
        """Log the data table; under multi-worker training every worker learns whether it
        failed (then none logs pred versions this fit)."""
        with self._dist.agreed("data table") as outcome:
            self._log_ground_truth(logs)
            if self._data_table_failed():
                outcome.turn_logging_off()
        self._logging_off = outcome.agreed >= distributed.LOGGING_OFF

    def _data_table_failed(self) -> bool:
        """Whether the data table failed, so pred versions have nothing to reference."""
        return self._data_table_ref is None and "data table" in self._failures

    def _log_ground_truth(
        self,
        logs: dict[str, float] | None = None,
        fatal: tuple[type[BaseException], ...] = (FastEvalInputError,),
    ) -> None:
        """``add_ground_truth`` into a new data table, then log it."""
        with self._guard("data table", fatal):
            self.init_data_table(column_names=self.data_table_columns)
            with self._user_hook("add_ground_truth"):
                if self._gt_takes_logs:
                    self.add_ground_truth(logs)
                else:
                    self.add_ground_truth()
            self.log_data_table()

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._epoch = epoch
        self._epoch_start_step = self._global_step

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._epoch = epoch
        if not self.log_on_epoch_end:
            return
        self._global_step = max(self._global_step, self._optimizer_step())
        self._log_predictions(epoch, logs, alias=f"epoch-{epoch}", trigger="epoch_end")

    def _on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        # Keras calls this once per execution: with steps_per_execution=k, the step is that
        # execution's last (``batch``, or its first on Keras < 3.11: see _keras), and a log
        # is due when it crosses a multiple of N.
        steps = (self.params or {}).get("steps")
        batch = _keras.last_step_of_execution(self.model, batch)
        batch = min(batch, steps - 1) if steps else batch
        previous = self._global_step
        self._global_step = self._epoch_start_step + batch + 1
        every = self.log_every_n_batches
        if self._global_step // every == previous // every:  # type: ignore[operator]
            return
        if self.log_on_epoch_end and steps and batch + 1 >= steps:
            return  # the epoch-end log follows at this very step: don't log twice
        self._log_predictions(self._epoch, logs, alias=f"step-{self._global_step}", trigger="batch")

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        for stage, count in self._failures.items():
            if count > 1:
                warnings.warn(
                    f"fastevalcb: {stage} logging failed {count} times during fit; "
                    f"first cause: {self._first_failure[stage]}",
                    FastEvalWarning,
                    stacklevel=2,
                )

    # -- helpers ------------------------------------------------------------------------
    def _log_predictions(
        self, epoch: int, logs: dict[str, float] | None, alias: str, trigger: str
    ) -> None:
        if self._logging_off or (not self._dist.multi_worker and self._data_table_failed()):
            return  # the data table failed (already warned, on the chief): nothing to reference
        self._log_context = {
            "epoch": epoch,
            "global_step": self._global_step,
            "trigger": trigger,
            "alias": alias,
        }
        with self._dist.agreed("pred table"), self._guard("pred table"):
            self._make_version(epoch, logs)

    def _make_version(self, epoch: int, logs: dict[str, float] | None) -> None:
        """The stock way: the subclass fills ``pred_table``, then it is logged."""
        self.init_pred_table(column_names=self.pred_table_columns)
        with self._user_hook("add_model_predictions"):
            if self._preds_take_logs:
                self.add_model_predictions(epoch, logs)
            else:
                self.add_model_predictions(epoch)
        self.log_pred_table()

    def _start_session(self, mode: str = "sharded") -> None:
        """At train begin: this fit's multi-worker role, from the model's strategy, and the
        optimizer's step. ``mode``: how task callbacks evaluate multi-worker
        (:data:`~fastevalcb.distributed.MODES`)."""
        if self.model is not None:  # a subclass' set_model may not call ours
            distributed.check_keras(self.model, _keras.of_model(self.model))
        self._dist = distributed.Session(self.model, mode)
        self._global_step = self._optimizer_step()

    @contextmanager
    def _guard(
        self, stage: str, fatal: tuple[type[BaseException], ...] = (FastEvalInputError,)
    ) -> Iterator[None]:
        """Turn an exception into one warning per stage, unless strict or ``fatal``."""
        try:
            yield
        except Exception as exc:
            if self.strict or isinstance(exc, fatal):
                raise
            if self._retry_later(stage, exc):
                return  # transient: kept and retried (see TaskEvalCallback)
            count = self._failures.get(stage, 0) + 1
            self._failures[stage] = count
            cause = f"{type(exc).__name__}: {exc}"
            self._record_failure(stage, cause, getattr(exc, _HOOK_ATTR, None))
            if count == 1:
                self._first_failure[stage] = cause
                warnings.warn(
                    f"fastevalcb: {stage} logging failed and was skipped; training goes on "
                    f"(strict=True raises instead). Cause: {cause}",
                    FastEvalWarning,
                    stacklevel=3,
                )
            logger.debug("%s logging failed", stage, exc_info=True)

    def _retry_later(self, stage: str, exc: BaseException) -> bool:
        """Whether ``exc`` is kept to be retried instead of reported (default: never)."""
        return False

    @contextmanager
    def _user_hook(self, name: str) -> Iterator[None]:
        """Mark an exception raised by the user's own ``name`` hook (an override of
        ``add_ground_truth`` / ``add_model_predictions`` outside fastevalcb), so the
        failure is also raised as a W&B alert: its cause is in code the user can fix."""
        try:
            yield
        except Exception as exc:
            method = getattr(type(self), name, None)
            if not getattr(method, "__module__", "fastevalcb").startswith("fastevalcb"):
                with suppress(AttributeError, TypeError):
                    setattr(exc, _HOOK_ATTR, f"{type(self).__qualname__}.{name}")
            raise

    def _record_failure(self, stage: str, cause: str, hook: str | None = None) -> None:
        """Show a logging failure where users look: the run's summary
        (``fastevalcb/failures``, ``fastevalcb/last_failure``) and, for a failure in the
        user's own hook, one W&B alert per run (level WARN; offline runs record it and
        ``wandb sync`` sends it). Never raises: the run may be finishing or gone."""
        self._failure_count += 1
        if not self._dist.is_chief:
            return
        run = self._run_obj if self._run_obj is not None else wandb.run
        if run is None:
            return
        try:
            run.summary.update(
                {
                    "fastevalcb/failures": self._failure_count,
                    "fastevalcb/last_failure": f"{stage}: {cause}"[:1000],
                }
            )
            if hook is not None and self._alerted_run != run.id:
                self._alerted_run = run.id
                run.alert(
                    title=f"fastevalcb: {hook} raised; {stage} not logged",
                    text=(
                        f"{hook} raised {cause[:800]}. Training went on without this "
                        f"{stage}; fix the hook (or pass strict=True to stop fit at the "
                        "first error)."
                    ),
                    level="WARN",  # wandb.AlertLevel.WARN, which wandb's stubs omit
                )
        except Exception:  # reporting must never break logging or fit
            logger.debug("fastevalcb: recording a failure in the run failed", exc_info=True)

    def _optimizer_step(self) -> int:
        optimizer = getattr(self.model, "optimizer", None) if self.model is not None else None
        iterations = getattr(optimizer, "iterations", None)
        # Old Keras 3 variables have no __int__: read their backend (tf) variable. (A tf
        # variable, as tf_keras has, converts as it is; its ``value`` is a method.)
        value = getattr(iterations, "value", None)
        if value is not None and not callable(value):
            iterations = value
        if iterations is None:
            return self._global_step
        try:
            return int(iterations)
        except (TypeError, ValueError):
            pass
        try:  # a tf.distribute MirroredVariable (tf_keras under a strategy) has no __int__
            return int(iterations.numpy())
        except (AttributeError, TypeError, ValueError):
            return self._global_step

    @staticmethod
    def _run() -> Any:
        if wandb.run is None:
            raise wandb.Error("the W&B run has finished; call wandb.init() before fit()")
        return wandb.run
