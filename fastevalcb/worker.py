"""A background thread that runs logging jobs in order, behind a bounded queue.

Task callbacks hand it the host-side work of a log (kernels, media encoding, table and
artifact writing) batch by batch, so ``model.fit`` continues while W&B files are written.
The queue is bounded: when the worker falls behind, ``submit`` blocks (back-pressure), so
memory stays at most ``max_queue`` batches of predictions. Jobs run one at a time in
submission order, so pred-table versions are logged in order.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("fastevalcb")

_STOP = object()


class LoggingWorker:
    """Runs ``submit``-ted callables on one daemon thread, first in, first out.

    A job that raises does not stop the worker: the exception is kept (``errors``) for the
    owner to report, and the next job runs. Everything still queued when the interpreter
    exits is run first (``atexit``), so an interrupted ``fit`` loses no queued data.

    Args:
        max_queue: jobs that may wait; ``submit`` blocks beyond that.
        name: thread name.
    """

    def __init__(self, max_queue: int = 8, name: str = "fastevalcb-logger") -> None:
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int, got {max_queue!r}")
        self.max_queue = max_queue
        self.name = name
        self.errors: list[BaseException] = []
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.blocked_s = 0.0  # time submit() spent waiting for room (back-pressure)
        _register_exit_flush(self)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; blocks while the queue is full."""
        self._ensure_thread()
        start = time.perf_counter()
        self._queue.put((fn, args))
        self.blocked_s += time.perf_counter() - start

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued job has run. Returns False on timeout."""
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
            self._queue.put((_STOP, ()))
            thread.join()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                if fn is _STOP:
                    return
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - kept and reported by the owner
                self.errors.append(exc)
                logger.debug("fastevalcb logging job failed", exc_info=True)
            finally:
                self._queue.task_done()


_live_workers: weakref.WeakSet = weakref.WeakSet()
_exit_hook_registered = False


def _register_exit_flush(worker: LoggingWorker) -> None:
    """Flush every live worker at interpreter exit (before wandb's own exit hook runs:
    atexit is last-in first-out and wandb registers its hook at ``wandb.init``)."""
    global _exit_hook_registered
    _live_workers.add(worker)
    if not _exit_hook_registered:
        atexit.register(_flush_all_at_exit)
        _exit_hook_registered = True


def _flush_all_at_exit() -> None:
    for worker in list(_live_workers):
        if worker.pending:
            logger.warning("fastevalcb: writing %d queued logging jobs before exit", worker.pending)
            worker.flush(timeout=600)
