"""Multi-worker training (``tf.distribute.MultiWorkerMirroredStrategy``): who does W&B I/O.

Under ``MultiWorkerMirroredStrategy`` every worker process runs ``fit`` and every callback.
The callbacks keep three rules:

* **Only the chief does W&B I/O** (the data table, pred versions, metrics): the ``chief``
  task, or ``worker`` 0 when the cluster names no chief (the rule of
  ``tf.distribute``'s ``should_checkpoint`` and Keras' own ``ModelCheckpoint``). The other
  workers need no ``wandb.init()``: they build the same callback with no active run and
  log nothing.
* **Every worker joins the same collectives in the same order.** A stage that may run a
  collective (the compiled predict step in sharded mode, a stock subclass'
  ``model.predict``) runs on every worker, and ends with :meth:`Session.agreed`: one small
  all-gather where each worker says how the stage ended. So a failure on one worker (a
  strict logging error on the chief, a bad label) is raised on every worker at the same
  point instead of leaving the others waiting in the next collective forever.
* **Evaluation is sharded or chief-only** (:data:`MODES`): in ``"sharded"`` every worker
  predicts its slice of each batch through the compiled step and an all-gather returns the
  batch in sample order (see :mod:`fastevalcb.predictor`); in ``"chief_only"`` the chief
  predicts all samples on a local, non-distributed step while the others wait at the
  stage's agreement.

Keras 3's ``fit`` does not run under ``MultiWorkerMirroredStrategy`` (keras#20585): the
callbacks refuse that pairing at ``set_model`` / train begin with a clear error.

Which process is a non-chief worker is known for sure only from the model's strategy
(``set_model`` / train begin). At construction, where ``wandb.run`` is checked, it is
read from the strategy in scope (``tf.distribute.get_strategy()`` inside
``strategy.scope()``), else from ``TF_CONFIG``: see :func:`construction_role`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastevalcb import _keras
from fastevalcb.errors import FastEvalInputError, FastEvalWorkerError

MODES = ("sharded", "chief_only")
KERAS_ISSUE = "https://github.com/keras-team/keras/issues/20585"

# How a stage ended on one worker; the agreement is the worst over all workers.
OK, LOGGING_OFF, FAILED = 0, 1, 2


@dataclass(frozen=True)
class Role:
    """Where this process stands in its cluster.

    Attributes:
        multi_worker: trained by ``MultiWorkerMirroredStrategy`` (or, before the model is
            known, ``TF_CONFIG`` names more than one worker).
        is_chief: does the W&B I/O (always true outside multi-worker training).
        task_type: ``"chief"``, ``"worker"`` or ``None`` (no cluster).
        task_id: index of the task in its type, or ``None``.
        num_workers: chief + workers in the cluster (1 without one).
    """

    multi_worker: bool = False
    is_chief: bool = True
    task_type: str | None = None
    task_id: int | None = None
    num_workers: int = 1


SINGLE = Role()


def _chief_of(cluster: dict[str, Any], task_type: str | None, task_id: int | None) -> bool:
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and not cluster.get("chief")


def _workers_in(cluster: dict[str, Any]) -> int:
    return len(cluster.get("chief", ())) + len(cluster.get("worker", ()))


def role_from_tf_config(tf_config: str | None = None) -> Role:
    """The role ``TF_CONFIG`` (JSON: ``cluster`` and ``task``) gives this process.

    Args:
        tf_config: the JSON text; default the ``TF_CONFIG`` environment variable.

    Returns:
        :data:`SINGLE` without a ``TF_CONFIG`` naming at least two workers.
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    try:
        config = json.loads(text) if text.strip() else {}
        cluster = dict(config.get("cluster") or {})
        task = dict(config.get("task") or {})
    except (ValueError, TypeError, AttributeError):
        return SINGLE  # TensorFlow refuses a malformed TF_CONFIG itself, more precisely
    workers = _workers_in(cluster)
    if workers < 2:
        return SINGLE
    task_type, task_id = task.get("type"), task.get("index")
    return Role(
        True,
        _chief_of(cluster, task_type, task_id),
        task_type,
        None if task_id is None else int(task_id),
        workers,
    )


def is_multi_worker_strategy(strategy: Any) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` (v2 or experimental)."""
    if strategy is None:  # a JAX model, or none: TensorFlow need not be imported
        return False
    import tensorflow as tf

    kinds = (
        tf.distribute.MultiWorkerMirroredStrategy,
        tf.distribute.experimental.MultiWorkerMirroredStrategy,
    )
    return isinstance(strategy, kinds)


def role_of(strategy: Any) -> Role:
    """The role of this process under ``strategy`` (its cluster resolver's task)."""
    if strategy is None or not is_multi_worker_strategy(strategy):
        return SINGLE
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None)
    workers = max(_workers_in(cluster), 1)
    return Role(
        True,
        _chief_of(cluster, task_type, task_id),
        task_type,
        None if task_id is None else int(task_id),
        workers,
    )


def construction_role() -> Role:
    """This process' role before the model is known (callback construction).

    The strategy in scope says it (``with strategy.scope(): callback = ...``); outside any
    scope, ``TF_CONFIG`` does (MultiWorkerMirroredStrategy reads the same variable). Train
    begin checks again against the model's own strategy.
    """
    tf = sys.modules.get("tensorflow")  # a strategy in scope means it is imported
    if tf is not None and tf.distribute.has_strategy():
        role = role_of(tf.distribute.get_strategy())
        if role.multi_worker:
            return role
    return role_from_tf_config()


def _keras3_refused(what: str) -> Exception:
    return FastEvalInputError(
        f"{what}: {_keras.name_of(_keras.keras3())}'s fit does not run under "
        "tf.distribute.MultiWorkerMirroredStrategy (it fails with 'Attempt to convert a value "
        f"(PerReplica...) to a Tensor': keras#20585, {KERAS_ISSUE}). Train multi-worker with "
        "Keras 2: pip install tf_keras, set TF_USE_LEGACY_KERAS=1 and build the model with "
        "tf.keras (or tf_keras) inside strategy.scope()."
    )


def check_keras(model: Any, keras_module: Any) -> None:
    """Refuse a Keras 3 model under ``MultiWorkerMirroredStrategy`` (keras#20585).

    Raises:
        FastEvalInputError: the pairing Keras 3 cannot train; raised before the first epoch
            on every worker alike.
    """
    if keras_module is not _keras.keras3():
        return
    if is_multi_worker_strategy(getattr(model, "distribute_strategy", None)):
        raise _keras3_refused("a Keras 3 model under MultiWorkerMirroredStrategy")


def check_keras_at_construction(role: Role) -> None:
    """Refuse multi-worker training when only Keras 3 can be training (keras#20585).

    Keras 3's ``fit`` fails under ``MultiWorkerMirroredStrategy`` before any callback sees
    the model, with the bare ``PerReplica`` error. So the callback refuses at construction
    when this process is multi-worker (:func:`construction_role`) and ``tf_keras`` was
    never imported: then no model can be a tf_keras one. With tf_keras loaded the model
    is checked at ``set_model`` instead (:func:`check_keras`).

    Raises:
        FastEvalInputError: multi-worker, and tf_keras not loaded.
    """
    if role.multi_worker and _keras.loaded_tf_keras() is None:
        raise _keras3_refused(
            f"this process is {role.task_type}:{role.task_id} of a {role.num_workers}-worker "
            "cluster (TF_CONFIG / the strategy in scope) and tf_keras is not imported, so "
            "the model is Keras 3"
        )


class Outcome:
    """How a stage ended on this worker (``code``) and over all workers (``agreed``)."""

    def __init__(self) -> None:
        self.code = OK
        self.agreed = OK

    def turn_logging_off(self) -> None:
        self.code = max(self.code, LOGGING_OFF)


class Session:
    """One ``fit``'s multi-worker context: the role and the agreement collective.

    Args:
        model: the model being trained; its ``distribute_strategy`` decides. Outside
            multi-worker training the session is inert (no collective, chief).
        mode: evaluation mode of the task callbacks, one of :data:`MODES`.
    """

    def __init__(self, model: Any = None, mode: str = "sharded") -> None:
        if mode not in MODES:
            raise ValueError(f"multi_worker_eval must be one of {MODES}, got {mode!r}")
        strategy = getattr(model, "distribute_strategy", None) if model is not None else None
        self.role = role_of(strategy)
        self.mode = mode
        self._exchange = _exchange_fn(strategy) if self.role.multi_worker else None

    @property
    def multi_worker(self) -> bool:
        return self.role.multi_worker

    @property
    def is_chief(self) -> bool:
        return self.role.is_chief

    @property
    def sharded(self) -> bool:
        """Every worker runs the distributed predict step (multi-worker, sharded mode)."""
        return self.multi_worker and self.mode == "sharded"

    @property
    def chief_predicts_locally(self) -> bool:
        """The chief evaluates on a local step (multi-worker, chief-only mode)."""
        return self.multi_worker and self.mode == "chief_only"

    def worst(self, code: int) -> int:
        """The worst ``code`` over all workers (a collective: every worker must call it)."""
        if self._exchange is None:
            return code
        import tensorflow as tf

        return int(np.max(self._exchange(tf.constant(float(code), tf.float32)).numpy()))

    @contextmanager
    def agreed(self, stage: str) -> Iterator[Outcome]:
        """Run a stage; then every worker learns how it ended everywhere.

        An exception in the body is re-raised here after the exchange; a worker whose body
        succeeded raises :class:`FastEvalWorkerError` when another's failed. After the
        block, ``outcome.agreed`` is the worst code (``LOGGING_OFF``: stop logging).
        The body must run its own collectives even when it fails part-way (see
        :func:`for_each`), or the exchange waits on a collective the failed worker skipped.
        """
        outcome = Outcome()
        error: BaseException | None = None
        try:
            yield outcome
        except Exception as exc:
            error = exc
            outcome.code = FAILED
        outcome.agreed = self.worst(outcome.code)
        if error is not None:
            raise error
        if outcome.agreed >= FAILED:
            raise FastEvalWorkerError(
                f"fastevalcb: the {stage} stage failed on another worker (its log has the "
                f"error); stopping this one too (worker {self.role.task_type}:"
                f"{self.role.task_id}) rather than wait in a collective that won't come."
            )


def _exchange_fn(strategy: Any) -> Callable[[Any], Any]:
    """A compiled all-gather of one float per replica (every worker gets all of them)."""
    import tensorflow as tf

    def exchange(code: Any) -> Any:
        per_replica = strategy.run(lambda c: tf.reshape(c, [1]), args=(code,))
        return strategy.gather(per_replica, axis=0)

    compiled: Callable[[Any], Any] = tf.function(exchange)  # TensorFlow is untyped: Any
    return compiled


def for_each(items: Iterable[Any], fn: Callable[[Any], None], drain: bool = True) -> int:
    """``fn(item)`` for every item; after ``fn`` fails, keep drawing ``items`` if ``drain``.

    The items may come from a collective (the sharded predict step): a worker that stopped
    pulling them would leave the others waiting. The first error is re-raised once all
    items are drawn (at once when ``drain`` is false).

    Returns:
        The number of items.
    """
    error: BaseException | None = None
    count = 0
    for item in items:
        count += 1
        if error is None:
            try:
                fn(item)
            except Exception as exc:
                if not drain:
                    raise
                error = exc
    if error is not None:
        raise error
    return count
