"""A background thread that runs logging jobs in order, behind a bounded queue.

Task callbacks hand it the host-side work of a log (kernels, media encoding, table and
artifact writing) batch by batch, so ``model.fit`` continues while W&B files are written.
The queue is bounded: when the worker falls behind, ``submit`` blocks (back-pressure), so
memory stays at most ``max_queue`` jobs or ``max_queue_bytes`` of their data. Jobs run one
at a time in submission order, so pred-table versions are logged in order.

A :class:`RunGuard` ties a worker to the W&B run its jobs write to: however the run ends
(``run.finish()``, ``wandb.finish()``, ``wandb.init(reinit="finish_previous")``, interpreter
exit), what was queued before is written to it first, and what comes too late is reported.
"""

from __future__ import annotations

import atexit
import errno
import logging
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastevalcb.errors import FastEvalWarning

logger = logging.getLogger("fastevalcb")

_STOP = object()


class LoggingWorker:
    """Runs ``submit``-ted callables on one daemon thread, first in, first out.

    A job that raises does not stop the worker: the exception is kept (``errors``) for the
    owner to report, and the next job runs. Everything still queued when the interpreter
    exits is run first (``atexit``, ahead of wandb's), so an interrupted ``fit`` loses no
    queued data; a :class:`RunGuard` does the same when the run is finished earlier.

    Back-pressure: ``submit`` blocks while ``max_queue`` jobs wait, or while the data of the
    waiting jobs (their ``nbytes``) would exceed ``max_queue_bytes``. A job larger than the
    whole budget still goes in once the queue is empty.

    Args:
        max_queue: jobs that may wait; None: no count limit.
        name: thread name.
        max_queue_bytes: bytes of job data (``submit(..., nbytes=)``) that may wait;
            None: no byte limit.
    """

    def __init__(
        self,
        max_queue: int | None = 8,
        name: str = "fastevalcb-logger",
        max_queue_bytes: int | None = None,
    ) -> None:
        for what, value in (("max_queue", max_queue), ("max_queue_bytes", max_queue_bytes)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{what} must be a positive int or None, got {value!r}")
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.name = name
        self.errors: list[BaseException] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._room = threading.Condition()
        self._waiting = 0  # jobs queued, not yet started
        self._waiting_bytes = 0
        self.blocked_s = 0.0  # time submit() spent waiting for room (back-pressure)
        self._held = False
        _register_exit_flush(self)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Start no new job meanwhile, unless the queue is over half full.

        For the training thread's eval pass: with the worker idle it holds the GIL alone
        and runs only the forward pass; the queued batches are worked off after it.
        A job already running goes on; submit never blocks longer than without a hold.
        """
        with self._room:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def pause_while_held(self) -> None:
        """For a long job (the data table), between its steps: wait while a hold is on and
        the queue is at most half full, as a new job would."""
        with self._room:
            self._wait_while_held()

    def _wait_while_held(self) -> None:  # with self._room held
        while self._held and not self._over_half():
            self._room.wait()

    def _release(self) -> None:
        with self._room:
            self._held = False
            self._room.notify_all()

    def _over_half(self) -> bool:
        return (self.max_queue is not None and 2 * self._waiting > self.max_queue) or (
            self.max_queue_bytes is not None and 2 * self._waiting_bytes > self.max_queue_bytes
        )

    def submit(self, fn: Callable[..., Any], *args: Any, nbytes: int = 0) -> None:
        """Queue ``fn(*args)``; blocks while there is no room (see the class docstring).

        Args:
            nbytes: the size of the data the job holds (e.g. a batch of predictions).
        """
        self._ensure_thread()
        start = time.perf_counter()
        with self._room:
            while not self._has_room(nbytes):
                self._room.wait()
            self._waiting += 1
            self._waiting_bytes += nbytes
            if self._held and self._over_half():
                self._room.notify_all()  # a held worker works the queue down to half
        self._queue.put((fn, args, nbytes))
        self.blocked_s += time.perf_counter() - start

    def _has_room(self, nbytes: int) -> bool:
        if self._waiting == 0:
            return True
        if self.max_queue is not None and self._waiting >= self.max_queue:
            return False
        return self.max_queue_bytes is None or self._waiting_bytes + nbytes <= self.max_queue_bytes

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued job has run (a hold ends). Returns False on timeout."""
        self._release()
        if self._thread is None:
            return True
        if timeout is None:
            self._queue.join()
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._queue.unfinished_tasks

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put((_STOP, (), 0))
            thread.join()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self.pause_while_held()  # held: sleep here, where submit's put does not wake us
            fn, args, nbytes = self._queue.get()
            if fn is not _STOP:
                with self._room:
                    self._wait_while_held()  # a hold that began while we were in get()
                    self._waiting -= 1
                    self._waiting_bytes -= nbytes
                    self._room.notify_all()
            try:
                if fn is _STOP:
                    return
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - kept and reported by the owner
                self.errors.append(exc)
                logger.debug("fastevalcb logging job failed", exc_info=True)
            finally:
                self._queue.task_done()


TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR})
"""OS errors a later attempt may not meet: a full disk or quota, an I/O hiccup, an
interrupted or would-block call."""


def transient_cause(exc: BaseException) -> OSError | None:
    """The transient ``OSError`` (:data:`TRANSIENT_ERRNOS`) behind ``exc``, if any: ``exc``
    itself or one in its ``__cause__`` / ``__context__`` chain (a library may wrap it)."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class Retries:
    """What a transient error refused, kept to be written again, in order.

    The owner parks each refused item (a pred-table version with the batches it was built
    from) and, when the data table itself was refused, notes it (:attr:`data_table`): it is
    rebuilt first, then the items, oldest first. Everything kept counts against
    ``budget_bytes``; an item that would exceed it is given up instead. Attempts back off
    (``first_delay`` doubling up to ``max_delay`` seconds) except when forced (a flush, the
    run's end). What is given up is collected with its reason and reported once.

    Thread-safe for the counters; the attempts themselves run on one thread (the worker).
    """

    def __init__(
        self, budget_bytes: int | None, first_delay: float = 1.0, max_delay: float = 30.0
    ) -> None:
        self.budget_bytes = budget_bytes
        self.first_delay, self.max_delay = first_delay, max_delay
        self.data_table: BaseException | None = None  # the data table must be rebuilt
        self.parked: list[Any] = []  # items waiting for a retry, oldest first
        self.kept_bytes = 0
        self.given_up: list[tuple[str, str]] = []  # (which, why), not yet reported
        self.written_again: list[str] = []  # what a retry wrote, in order
        self._delay = first_delay
        self._next_attempt = 0.0
        self._lock = threading.Lock()

    def waiting(self) -> bool:
        """Whether something earlier waits to be written (a new item must queue behind)."""
        return self.data_table is not None or bool(self.parked)

    def keep(self, item: Any, data: Any, nbytes: int) -> None:
        """Keep ``data`` (one batch) of ``item`` (its ``kept`` list) while the budget
        allows; past it the item keeps nothing and cannot be retried."""
        with self._lock:
            if item.kept is None:
                return
            if self.budget_bytes is not None and self.kept_bytes + nbytes > self.budget_bytes:
                self.kept_bytes -= item.kept_bytes
                item.kept, item.kept_bytes = None, 0
                return
            item.kept.append(data)
            item.kept_bytes += nbytes
            self.kept_bytes += nbytes

    def release(self, item: Any) -> None:
        """Free what ``item`` kept (it was written, or given up)."""
        with self._lock:
            self.kept_bytes -= item.kept_bytes
            item.kept, item.kept_bytes = None, 0

    def due(self) -> bool:
        return time.monotonic() >= self._next_attempt

    def failed_again(self) -> None:
        """An attempt met a transient error again: wait longer before the next one."""
        self._next_attempt = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.max_delay)

    def succeeded(self) -> None:
        self._delay, self._next_attempt = self.first_delay, 0.0

    def give_up(self, which: str, why: str) -> None:
        with self._lock:
            self.given_up.append((which, why))

    def take_given_up(self) -> list[tuple[str, str]]:
        with self._lock:
            out, self.given_up = self.given_up, []
        return out


class RunGuard:
    """Holds a W&B run open until a worker has written what was queued for it.

    :meth:`attach` registers with the run's own teardown (:func:`fastevalcb.tables.on_run_finish`)
    and with interpreter exit. When the run ends, the guard waits up to ``timeout`` seconds
    for the worker's queue (warning when it gives up), then marks the run ended. From then
    on the owner's versions for that run are refused (:meth:`lost`) and reported once, with
    their epochs and steps (:meth:`report_lost`).

    Args:
        worker: the worker whose queue is flushed (anything with ``pending`` and
            ``flush(timeout)``).
        on_end: called when the run ends, before its queue is waited for (e.g. to queue
            a last retry of what transient errors refused).
        timeout: seconds the run's end waits for the queue.
        what: what one queued item is, for the warnings.
    """

    def __init__(
        self,
        worker: Any,
        timeout: float = 300.0,
        what: str = "pred-table version",
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.worker = worker
        self.on_end = on_end  # queued work's last chance, before the queue is waited for
        self.timeout = timeout
        self.what = what
        self.run: Any = None
        self._ended = False
        self._lost: dict[str, tuple[int, int]] = {}  # alias -> (epoch, step), in order
        self._reported = 0
        self._lock = threading.Lock()
        _live_guards.add(self)

    def attach(self, run: Any, timeout: float | None = None) -> None:
        """Guard ``run`` (the run the owner's next versions go to); once per run."""
        if timeout is not None:
            self.timeout = timeout
        if run is self.run:
            return
        from fastevalcb import tables

        self.run, self._ended = run, False
        ref = weakref.ref(self)  # the run's hook list must not keep the owner alive

        def on_finish() -> None:
            guard = ref()
            if guard is not None:
                guard._wait_for_queue(run, "finishes")

        tables.on_run_finish(run, on_finish)
        _register_exit_hook()  # again: atexit is last in, first out, wandb's came earlier

    @property
    def ended(self) -> bool:
        """Whether the guarded run has ended (what is queued for it now is lost)."""
        if self._ended:
            return True
        if self.run is None:
            return False
        from fastevalcb import tables

        return tables.run_finished(self.run)

    def lost(self, epoch: int, step: int, alias: str) -> bool:
        """True (and the version is recorded as lost) when the guarded run has ended."""
        if not self.ended:
            return False
        with self._lock:
            self._lost.setdefault(alias, (epoch, step))
        return True

    def report_lost(self) -> None:
        """Warn once about the versions lost since the last report (none: no warning)."""
        with self._lock:
            new = list(self._lost.items())[self._reported :]
            self._reported = len(self._lost)
        if not new:
            return
        run_id = getattr(self.run, "id", "?")
        listed = ", ".join(f"epoch {epoch} step {step} ({alias})" for alias, (epoch, step) in new)
        warnings.warn(
            f"fastevalcb: {len(new)} {self.what}(s) not written: W&B run {run_id} had "
            f"already finished: {listed}. Finish the run after fit() returns (or call "
            "cb.flush() first) to keep them.",
            FastEvalWarning,
            stacklevel=2,
        )

    def _wait_for_queue(self, run: Any, how: str) -> None:
        """Write what is queued for ``run`` before it ends; never raises."""
        if run is not self.run or self._ended:
            return
        if getattr(self.worker, "_thread", None) is threading.current_thread():
            self._ended = True  # finished from inside a job: waiting would deadlock
            return
        try:
            if self.on_end is not None:
                self.on_end()
            pending = self.worker.pending
            if pending and not self.worker.flush(self.timeout):
                warnings.warn(
                    f"fastevalcb: W&B run {getattr(run, 'id', '?')} {how} while "
                    f"{self.worker.pending} logging job(s) are still running after waiting "
                    f"{self.timeout:g} s; what is left is not written to it (raise "
                    "cb.run_end_timeout to wait longer).",
                    FastEvalWarning,
                    stacklevel=2,
                )
        except BaseException:  # noqa: BLE001 - must not abort wandb's finish or exit
            logger.warning("fastevalcb: waiting for the logging queue failed", exc_info=True)
        finally:
            self._ended = True

    def _at_exit(self) -> None:
        if self.run is not None:
            self._wait_for_queue(self.run, "ends at interpreter exit")
        self.report_lost()


_live_workers: weakref.WeakSet = weakref.WeakSet()
_live_guards: weakref.WeakSet = weakref.WeakSet()


def _register_exit_flush(worker: LoggingWorker) -> None:
    """Flush every live worker at interpreter exit, before wandb's own exit hook."""
    _live_workers.add(worker)
    _register_exit_hook()


def _register_exit_hook() -> None:
    """(Re-)register the exit hook last, so it runs first: ``atexit`` is last in, first
    out, and wandb registers the hook that ends its runs when its service starts."""
    atexit.unregister(_flush_all_at_exit)
    atexit.register(_flush_all_at_exit)


def _flush_all_at_exit() -> None:
    for guard in list(_live_guards):
        guard._at_exit()
    for worker in list(_live_workers):
        if worker.pending:
            logger.warning("fastevalcb: writing %d queued logging jobs before exit", worker.pending)
            worker.flush(timeout=600)
