"""What logging costs, recorded in the run itself (``fastevalcb/<prefix>/*`` keys).

Each pred-table version a task callback logs carries a :class:`VersionCost`: the training
thread's seconds for its forward pass and queueing, the worker's seconds (wall and thread
CPU) on its jobs, and how long it waited for the worker. Its keys go into the same
``run.log`` as the version's ``<prefix>/*`` metrics, so they share its row and its step
metric ``<prefix>/global_step`` (no explicit ``step``: "step must only increase" cannot
drop them, and per-N-batch versions chart on the same axis). :class:`CostLog` keeps the
callback's total of training-thread seconds, the time logging added to ``fit``, in the
run's summary.

Keys (``P`` is the callback's ``metrics_prefix``):

* ``fastevalcb/P/train_thread_s``: seconds the log held ``fit``'s training thread: the
  compiled forward pass and handing its batches to the worker (waits for room in the
  queue included).
* ``fastevalcb/P/worker_wall_s``, ``fastevalcb/P/worker_cpu_s``: the worker's seconds on
  the version's jobs (rows, media, metrics, writing), wall and the worker thread's CPU
  time (``time.thread_time``), up to its metrics log.
* ``fastevalcb/P/worker_cpu_us_per_sample``, ``fastevalcb/P/train_thread_us_per_sample``.
* ``fastevalcb/P/queue_s``: seconds between the training thread handing the version over
  and the worker starting on it (behind the data table or earlier versions); 0 when the
  worker started during the pass.
* ``fastevalcb/P/written_s``: seconds from the log's start to its metrics log.
* summary ``fastevalcb/P/fit_added_s``: the training thread's seconds in this callback
  over the run: train begin, every log, and the wait for the queue at train end.

With ``async_logging=False`` the worker's jobs run on the training thread, after the pass.
In ``strict`` mode each log also waits for its version (``flush``): not counted here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

ROOT = "fastevalcb"


class VersionCost:
    """The cost of one pred-table version, filled by the training thread and the worker."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.handed_over: float | None = None  # the training thread is done with it
        self.first_job: float | None = None  # the worker started on it
        self.worker_wall_s = 0.0
        self.worker_cpu_s = 0.0
        self._open: tuple[float, float] | None = None  # a job running now: (wall, cpu)

    def hand_over(self) -> None:
        """The training thread has queued the version's last batch (before its finish)."""
        self.handed_over = time.perf_counter()

    def timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one of the version's worker jobs, adding its wall and CPU seconds."""
        wall, cpu = time.perf_counter(), time.thread_time()
        if self.first_job is None:
            self.first_job = wall
        self._open = (wall, cpu)
        try:
            return fn(*args)
        finally:
            self._open = None
            self.worker_wall_s += time.perf_counter() - wall
            self.worker_cpu_s += time.thread_time() - cpu

    def keys(self, prefix: str, samples: int) -> dict[str, float]:
        """The version's ``fastevalcb/<prefix>/*`` history keys, as of now (a job that is
        still running, the version's finish, counts up to here)."""
        now, wall, cpu = time.perf_counter(), self.worker_wall_s, self.worker_cpu_s
        if self._open is not None:
            wall += now - self._open[0]
            cpu += time.thread_time() - self._open[1]
        handed = self.handed_over if self.handed_over is not None else now
        thread = handed - self.started
        queued = 0.0 if self.first_job is None else max(0.0, self.first_job - handed)
        per_sample = 1e6 / samples if samples else 0.0
        values = {
            "train_thread_s": thread,
            "train_thread_us_per_sample": thread * per_sample,
            "worker_wall_s": wall,
            "worker_cpu_s": cpu,
            "worker_cpu_us_per_sample": cpu * per_sample,
            "queue_s": queued,
            "written_s": now - self.started,
        }
        return {f"{ROOT}/{prefix}/{k}": v for k, v in values.items()}


class CostLog:
    """One callback's cost keys in its run: their step metric, and the summary total."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.fit_added_s = 0.0  # training-thread seconds in the current run
        self._run_id: str | None = None

    def begin_fit(self, run: Any, seconds: float) -> None:
        """Train begin took ``seconds`` of the training thread. A new W&B run gets the keys'
        step metric (``define_metric``, as the ``<prefix>/*`` metrics get theirs) and a
        total of its own."""
        if run is None:  # a non-chief worker logs nothing
            return
        if run.id != self._run_id:
            run.define_metric(f"{ROOT}/{self.prefix}/*", step_metric=f"{self.prefix}/global_step")
            self._run_id, self.fit_added_s = run.id, 0.0
        self.fit_added_s += seconds

    def add(self, seconds: float) -> None:
        """Training-thread seconds of one log (its pass and queueing)."""
        self.fit_added_s += seconds

    def end_fit(self, run: Any, seconds: float) -> None:
        """Train end waited ``seconds`` for the queue: added, and the total written."""
        self.fit_added_s += seconds
        self.write_summary(run)

    def version_keys(self, run: Any, version: VersionCost, samples: int) -> dict[str, float]:
        """The version's keys for its ``run.log``; the summary total is refreshed too (a
        run that never reaches train end still has it)."""
        self.write_summary(run)
        return version.keys(self.prefix, samples)

    def write_summary(self, run: Any) -> None:
        """``fastevalcb/<prefix>/fit_added_s`` in the run's summary. Never raises: the run
        may be finishing or gone, and the cost must never cost a version."""
        if run is None or run.id != self._run_id:
            return
        try:
            run.summary.update({f"{ROOT}/{self.prefix}/fit_added_s": self.fit_added_s})
        except Exception:
            logger.debug("fastevalcb: recording the logging cost failed", exc_info=True)
