"""common.summaries.background: the eval summaries' thread runs jobs in order, off the caller's
thread, and never loses an error or a job."""

import contextlib
import threading
import time

import pytest

from common.summaries.background import BackgroundWork


def test_jobs_run_in_order_on_another_thread_and_wait_returns_when_all_are_done():
    work = BackgroundWork(max_pending=100)
    done, threads = [], set()
    release = threading.Event()

    def job(number):
        release.wait(5)  # The caller goes on meanwhile: submit does not wait for the job.
        done.append(number)
        threads.add(threading.get_ident())

    for number in range(5):
        work.submit(job, number)
    assert done == []
    release.set()
    work.wait()
    assert done == [0, 1, 2, 3, 4]
    assert threading.get_ident() not in threads and len(threads) == 1
    work.close()


def test_the_threads_cpu_time_is_counted_and_its_waits_are_not():
    work = BackgroundWork()
    work.submit(threading.Event().wait, 0.3)  # Waits, as a job waiting for an eval's results.
    work.wait()
    assert work.cpu_seconds < 0.1

    def spin(cpu_seconds):  # However busy the machine, until it has had that much CPU.
        start = time.thread_time()
        while time.thread_time() - start < cpu_seconds:
            pass

    work.submit(spin, 0.2)
    work.close()
    assert work.cpu_seconds >= 0.2


def test_submit_waits_once_max_pending_jobs_are_pending_and_times_the_wait():
    entered = []

    @contextlib.contextmanager
    def wait_phase():
        entered.append("wait")
        yield

    work = BackgroundWork(max_pending=2, wait_phase=wait_phase)
    release = threading.Event()
    work.submit(release.wait, 5)
    work.submit(release.wait, 5)
    assert entered == []  # Two pending: room still.
    waiter = threading.Thread(target=work.submit, args=(lambda: None,))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # The third waits for the first to finish...
    release.set()
    waiter.join(5)
    assert not waiter.is_alive() and entered == ["wait"]  # ...and the wait was timed.
    work.close()
    assert entered == ["wait", "wait"]


def test_a_failed_job_raises_at_the_next_submit_or_wait_with_its_own_error():
    work = BackgroundWork()

    def fail():
        raise ValueError("the job's own error")

    work.submit(fail)
    with pytest.raises(ValueError, match="the job's own error"):
        work.wait()
    work.submit(fail)
    work._pending[0].exception(5)  # Let it fail before the next submit.
    with pytest.raises(ValueError, match="the job's own error"):
        work.submit(lambda: None)
    work.close()


def test_close_runs_what_was_submitted_and_ends_the_thread_even_after_a_failure():
    work = BackgroundWork()
    done = []
    release = threading.Event()

    def fail():
        release.wait(5)
        raise OSError("disk full")

    work.submit(fail)
    work.submit(done.append, "after")
    release.set()
    with pytest.raises(OSError, match="disk full"):
        work.close()
    assert done == ["after"]  # The later job ran: nothing submitted is dropped.
    assert work._executor._shutdown
