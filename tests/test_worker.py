"""LoggingWorker: order, back-pressure, errors, flush and close; RunGuard: the run's end."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

from fastevalcb.worker import LoggingWorker


class _WaitWatch(threading.Condition):
    """A worker's condition that tells the test when a thread waits on it: a submit with no
    room, or a held worker, waits there and stays until the worker's state changes. Waiting
    for this event, not for time to pass, shows that something has not happened."""

    def __init__(self):
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waiting.set()
        return super().wait(timeout)


def _watch_waits(worker: LoggingWorker) -> threading.Event:
    """Set whenever a thread starts to wait on ``worker``'s condition (clear it to rearm)."""
    worker._room = _WaitWatch()
    return worker._room.waiting


def test_jobs_run_in_order_on_one_background_thread():
    worker = LoggingWorker(max_queue=4)
    seen = []
    for i in range(20):
        worker.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    assert worker.flush(timeout=10)
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"fastevalcb-logger"}
    worker.close()


def test_a_full_queue_blocks_the_submitter_until_the_worker_catches_up():
    worker = LoggingWorker(max_queue=1)
    waits = _watch_waits(worker)
    release, started = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait()))  # running: holds the worker
    assert started.wait(5)
    worker.submit(lambda: None)  # queued: the queue is now full
    submitted = threading.Event()
    blocked = threading.Thread(target=lambda: (worker.submit(lambda: None), submitted.set()))
    blocked.start()
    assert waits.wait(5), "the third submit never waited for room"
    assert not submitted.is_set(), "submit returned although the queue was full"
    assert worker.pending == 2  # one running, one queued; the third is not in yet
    assert not worker.flush(timeout=0.1)
    time.sleep(0.25)  # the third submit stays blocked meanwhile: blocked_s counts it
    release.set()
    assert submitted.wait(5)
    blocked.join(5)
    assert worker.flush(timeout=5) and worker.pending == 0
    assert worker.blocked_s > 0.2  # the third submit waited for room
    worker.close()


def test_a_failing_job_is_kept_and_the_next_job_still_runs():
    worker = LoggingWorker(max_queue=2)
    ran = []

    def boom():
        raise RuntimeError("disk full")

    worker.submit(boom)
    worker.submit(lambda: ran.append(1))
    worker.flush(timeout=5)
    assert ran == [1]
    assert [str(e) for e in worker.errors] == ["disk full"]
    worker.close()


def test_close_runs_what_is_queued_then_stops():
    worker = LoggingWorker(max_queue=8)
    done = []
    for i in range(5):
        worker.submit(lambda i=i: (time.sleep(0.01), done.append(i)))
    worker.close()
    assert done == [0, 1, 2, 3, 4]
    assert worker.pending == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])  # None: no count limit
def test_bad_queue_size_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="max_queue must be a positive int"):
        LoggingWorker(max_queue=bad)


# --- RunGuard: the run's end waits for the queue ----------------------------------------
def _run(wandb_env):
    import wandb

    return wandb.init(project="guard", dir=str(wandb_env / "run"), reinit="create_new")


def _read(run):
    from pathlib import Path

    from fastevalcb.offline import OfflineRun

    return OfflineRun(Path(run.dir).parent).wait_complete()


@pytest.mark.slow
def test_run_finish_waits_for_every_job_queued_before_it(wandb_env):
    from fastevalcb.worker import RunGuard

    run = _run(wandb_env)
    worker = LoggingWorker(max_queue=8)
    guard = RunGuard(worker)
    guard.attach(run)
    for i in range(4):
        worker.submit(lambda i=i: (time.sleep(0.2), run.log({"job": i})))
    assert worker.pending == 4
    run.finish()  # no flush: the guard waits
    assert worker.pending == 0 and guard.ended
    assert [r["job"] for r in _read(run).history() if "job" in r] == [0, 1, 2, 3]
    worker.close()


def test_a_run_end_that_times_out_warns_and_later_versions_are_reported_lost(wandb_env):
    from fastevalcb.errors import FastEvalWarning
    from fastevalcb.worker import RunGuard

    run = _run(wandb_env)
    worker = LoggingWorker(max_queue=8)
    guard = RunGuard(worker, timeout=0.2)
    guard.attach(run)
    release = threading.Event()
    worker.submit(release.wait)
    with pytest.warns(
        FastEvalWarning,
        match=r"finishes while 1 logging job\(s\) are still "
        r"running after waiting 0.2 s",
    ):
        run.finish()
    release.set()
    assert worker.flush(timeout=5)
    assert guard.ended
    assert guard.lost(3, 30, "epoch-3") and guard.lost(4, 40, "epoch-4")
    assert guard.lost(4, 40, "epoch-4")  # the same version (another of its jobs): once
    with pytest.warns(
        FastEvalWarning,
        match=rf"2 pred-table version\(s\) not written: W&B run "
        rf"{run.id} had already finished: epoch 3 step 30 "
        r"\(epoch-3\), epoch 4 step 40 \(epoch-4\)",
    ):
        guard.report_lost()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guard.report_lost()  # reported once
    worker.close()


def test_a_guard_on_a_live_run_refuses_nothing(wandb_env):
    from fastevalcb.worker import RunGuard

    run = _run(wandb_env)
    guard = RunGuard(LoggingWorker())
    assert not guard.lost(0, 1, "epoch-0")  # not attached
    guard.attach(run)
    assert not guard.ended and not guard.lost(0, 1, "epoch-0")
    run.finish()
    assert guard.ended


@pytest.mark.slow
def test_the_exit_hook_moves_last_so_it_runs_before_hooks_registered_since():
    """atexit is last in, first out: attach() re-registers ours after wandb's service hook."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent("""
        import atexit
        from fastevalcb import worker
        worker._register_exit_hook()  # first registration (an earlier worker)
        atexit.register(print, "WANDB")  # stands for a wandb service started since
        class Guard:
            def _at_exit(self):
                print("GUARD")
        guard = Guard()
        worker._live_guards.add(guard)
        worker._register_exit_hook()  # what RunGuard.attach does
    """)
    root = Path(__file__).parents[1]  # this checkout's fastevalcb
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["GUARD", "WANDB"]


def test_a_byte_budget_blocks_submit_until_the_worker_takes_data():
    """max_queue_bytes bounds the data waiting, whatever the job count."""
    worker = LoggingWorker(max_queue=None, max_queue_bytes=100)
    waits = _watch_waits(worker)
    gate, started, order = threading.Event(), threading.Event(), []

    def hold():
        started.set()
        gate.wait(10)

    worker.submit(hold)
    started.wait(5)
    for i in range(3):  # 3 x 40 bytes: the third does not fit next to the first two
        if i < 2:
            worker.submit(order.append, i, nbytes=40)
    blocked = threading.Thread(target=worker.submit, args=(order.append, 2), kwargs={"nbytes": 40})
    blocked.start()
    assert waits.wait(5), "the third submit never waited for room"
    assert blocked.is_alive()  # 80 + 40 > 100: waits
    gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    assert worker.flush(5) and order == [0, 1, 2]
    # A job larger than the whole budget still goes in once the queue is empty.
    worker.submit(order.append, 3, nbytes=1000)
    assert worker.flush(5) and order[-1] == 3
    worker.close()


def test_a_hold_defers_new_jobs_until_it_ends_or_the_queue_is_over_half_full():
    worker = LoggingWorker(max_queue=4)
    held = _watch_waits(worker)
    seen = []
    worker.submit(lambda: None)
    assert worker.flush(timeout=5)  # the thread is up and idle
    with worker.hold():
        worker.submit(lambda: seen.append(1))
        worker.submit(lambda: seen.append(2))
        assert held.wait(5), "the worker never stopped for the hold"
        assert seen == []  # two of four slots: not over half, so nothing started
        held.clear()
        worker.submit(lambda: seen.append(3))  # three of four: worked down to half
        assert held.wait(5), "the worker did not stop again at half"
        assert seen == [1]  # two left: half full, held again
    assert worker.flush(timeout=5) and seen == [1, 2, 3]
    worker.close()


def test_a_long_job_pauses_at_its_steps_while_a_hold_is_on():
    worker = LoggingWorker(max_queue=8)
    paused = _watch_waits(worker)
    steps, started = [], threading.Event()

    def long_job():
        for step in range(3):
            started.set()
            worker.pause_while_held()
            steps.append(step)
            time.sleep(0.05)

    with worker.hold():
        worker.submit(lambda: None)  # the thread starts and is held before this job
    worker.flush(timeout=5)
    worker.submit(long_job)
    assert started.wait(5)
    paused.clear()
    with worker.hold():
        done = len(steps)
        assert paused.wait(5), "the long job did not pause for the hold"
        assert len(steps) <= done + 1  # at most the step it was in finishes
    assert worker.flush(timeout=5) and steps == [0, 1, 2]
    worker.close()


# -- Retries: what transient errors refused ------------------------------------------------
def test_transient_causes_are_the_listed_os_errors_also_when_wrapped():
    import errno

    from fastevalcb.worker import transient_cause

    full = OSError(errno.ENOSPC, "No space left on device")
    assert transient_cause(full) is full
    for code in (errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR):
        assert transient_cause(OSError(code, "x")) is not None
    assert transient_cause(OSError(errno.EACCES, "Permission denied")) is None
    assert transient_cause(PermissionError(errno.EACCES, "x")) is None
    assert transient_cause(ValueError("no")) is None
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("wandb could not stage the file") from exc
    except RuntimeError as wrapped:
        assert transient_cause(wrapped) is full


class _Item:
    def __init__(self):
        self.kept, self.kept_bytes = [], 0


def test_retries_keep_within_the_byte_budget_and_give_up_past_it():
    from fastevalcb.worker import Retries

    retries = Retries(budget_bytes=100)
    a, b = _Item(), _Item()
    retries.keep(a, "a0", 60)
    retries.keep(b, "b0", 30)
    assert (a.kept, b.kept, retries.kept_bytes) == (["a0"], ["b0"], 90)
    retries.keep(b, "b1", 30)  # past the budget: b keeps nothing (cannot be retried)
    assert b.kept is None and retries.kept_bytes == 60
    retries.keep(b, "b2", 1)  # and stays so
    assert b.kept is None and retries.kept_bytes == 60
    retries.release(a)
    assert a.kept is None and retries.kept_bytes == 0


class _Clock:
    """``time`` as fastevalcb.worker sees it, with a monotonic clock the test moves."""

    def __init__(self):
        self.now = time.monotonic()

    def monotonic(self):
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def test_retries_back_off_doubling_and_reset_on_success(monkeypatch):
    from fastevalcb import worker as worker_module
    from fastevalcb.worker import Retries

    clock = _Clock()  # the delays are read off a clock that moves only when told
    monkeypatch.setattr(worker_module, "time", clock)
    retries = Retries(None, first_delay=0.2, max_delay=0.4)
    assert retries.due()
    retries.failed_again()
    assert not retries.due()
    clock.now += 0.25
    assert retries.due()
    retries.failed_again()  # now 0.4 s
    clock.now += 0.25
    assert not retries.due()
    retries.succeeded()
    assert retries.due()
    retries.give_up("epoch 1 step 8 (epoch-1)", "ENOSPC")
    assert retries.take_given_up() == [("epoch 1 step 8 (epoch-1)", "ENOSPC")]
    assert retries.take_given_up() == []
