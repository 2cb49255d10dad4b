"""LoggingWorker: order, back-pressure, errors, flush and close."""

from __future__ import annotations

import threading
import time

import pytest

from fastevalcb.worker import LoggingWorker


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
    release = threading.Event()
    worker.submit(release.wait)  # running: holds the worker
    time.sleep(0.05)
    worker.submit(lambda: None)  # queued: the queue is now full
    submitted = threading.Event()
    blocked = threading.Thread(target=lambda: (worker.submit(lambda: None), submitted.set()))
    blocked.start()
    assert not submitted.wait(0.3), "submit returned although the queue was full"
    assert worker.pending == 2  # one running, one queued; the third is not in yet
    assert not worker.flush(timeout=0.1)
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


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_bad_queue_size_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="max_queue must be a positive int"):
        LoggingWorker(max_queue=bad)
