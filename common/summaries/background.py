"""Work the loop hands off to a thread of its own, so training goes on while it runs.

An eval's summaries (histograms, gradients, PR curves, pictures, the Projector's files) are host
work: NumPy, Pillow, PNG encoding, file writes, and a few eager model calls on a weights snapshot.
Done in the loop, they stopped training for 5-40 ms an eval, 5-37% of a default run's loop time
on 2 CPU cores. On a thread of their own they run beside the next loop's steps, whose ops spend
their time in TensorFlow's C++ runtime with Python's lock released. CLU's asynchronous metric
writer, which Flax's examples use, does the same.

    background = BackgroundWork()
    background.submit(write_pictures, step, predictions)   # Returns at once.
    ...
    background.wait()    # Everything submitted so far is done; re-raises the first error.
    background.close()

Jobs run one at a time, in the order submitted, so each summary tag's steps reach its event file
in order. At most `max_pending` jobs wait: when the summaries take longer than the training
between evals, `submit` waits for the oldest rather than letting snapshots pile up in memory.
"""

import concurrent.futures
import contextlib
import time
from collections.abc import Callable

__all__ = ["BackgroundWork"]


class BackgroundWork:
    """Runs functions on one thread of its own, one at a time, in the order submitted."""

    def __init__(
        self,
        max_pending: int = 2,
        wait_phase: Callable[[], contextlib.AbstractContextManager] | None = None,
    ) -> None:
        """Args:
        max_pending: jobs submitted and not yet finished, at most; `submit` waits beyond.
        wait_phase: a context manager around every wait for the thread (in `submit`, `wait`):
            how the loop counts that time as the summaries' (see common/loop/phase_times.py).
        """
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="summaries")
        self._pending: list[concurrent.futures.Future] = []
        self._max_pending = max_pending
        self.wait_phase = wait_phase or contextlib.nullcontext
        # The CPU time the thread spent on the finished jobs: what it takes from the cores the
        # loop runs on. Its waits (for an eval's results) are not in it; nor is the work
        # TensorFlow hands to its own thread pools (an eager op large enough to split).
        self.cpu_seconds = 0.0

    def submit(self, function: Callable[..., object], *args: object) -> None:
        """Queues `function(*args)`; returns once fewer than `max_pending` jobs are pending.

        Raises:
            Whatever an earlier job raised, the first one, once it is known.
        """
        self._collect(block=False)
        if len(self._pending) >= self._max_pending:
            with self.wait_phase():
                self._collect(block=True, keep=self._max_pending - 1)
        self._pending.append(self._executor.submit(self._timed, function, *args))

    def wait(self) -> None:
        """Returns when every job submitted so far has finished.

        Raises:
            Whatever a job raised, the first one.
        """
        if self._pending:
            with self.wait_phase():
                self._collect(block=True, keep=0)

    def close(self) -> None:
        """Waits for the jobs (see `wait`), then ends the thread, also when a job failed."""
        try:
            self.wait()
        finally:
            self._pending.clear()
            self._executor.shutdown(wait=True)

    def _timed(self, function: Callable[..., object], *args: object) -> None:
        start = time.thread_time()
        try:
            function(*args)
        finally:
            self.cpu_seconds += time.thread_time() - start  # One thread: no race.

    def _collect(self, block: bool, keep: int = 0) -> None:
        """Drops finished jobs from the front, re-raising the first one that failed; with `block`,
        first waits until at most `keep` jobs are pending."""
        while self._pending and (self._pending[0].done() or (block and len(self._pending) > keep)):
            job = self._pending.pop(0)
            job.result()  # Waits if not done; raises the job's own error, traceback and all.
