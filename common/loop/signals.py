"""SIGINT and SIGTERM as requests to stop at the next loop boundary, not as sudden death.

A signal that kills a run mid-step leaves no checkpoint of the progress since the last one; a
signal handled here only sets a flag, and the loop saves, flushes and exits at its next boundary.
A second signal while the first is pending stops the run at once, so a user is never stuck: the
same signal again gets its default behaviour (Ctrl-C twice raises KeyboardInterrupt; SIGTERM twice
kills), the other one raises `StopNow`.

Why the other one is not simply given its default back too: Python runs a signal's handler some
time after the signal arrived, and when two arrive together (SIGTERM, then SIGINT 20 ms later) it
runs them one after the other. Had the first handler reset the second signal to its default, the
second would find no Python handler and CPython would print `OSError: Signal 15 ignored due to
race condition` (a traceback) and drop it. So this handler stays installed for the other signal
as long as the block lasts.

A signal the process started with ignored stays ignored, as POSIX asks of a program that catches
signals and as Python, make and the shell's own tools do: a shell without job control (a script)
starts a background job (`make run-mnist &`) with SIGINT ignored so that the Ctrl-C meant for the
foreground does not stop it. Not silently: each such signal prints one line saying it was ignored
and how to stop the run (SIGTERM, which saves first).
"""

import os
import signal
import sys
import threading
import types

from common.errors import Interrupted

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopNow(KeyboardInterrupt):
    """A second stop signal while the first was pending, with no Python handler of its own to
    give it back to (SIGTERM's default is the kernel's): stop at once.

    A KeyboardInterrupt, so it unwinds like a second Ctrl-C (nothing catches it on the way) and
    `stopped_at_once` reports it the same way, with `description` and `signal_number`.
    """

    def __init__(self, signal_number: int, first: int) -> None:
        self.signal_number = signal_number
        second_name, first_name = signal.Signals(signal_number).name, signal.Signals(first).name
        # Not "after": two signals that arrive together are handled in the order of their numbers.
        self.description = (
            f"a second {second_name}"
            if signal_number == first
            else f"a second stop signal ({second_name} while {first_name} was pending)"
        )
        super().__init__(self.description)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set `received` instead of stopping the process.

    Only the main thread can install signal handlers; elsewhere (a test runner's worker thread,
    say) it does nothing and `received` stays None. A signal the process started ignoring stays
    ignored, with one line on stderr each time it comes (see the module's docstring).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signal_number: int, frame: types.FrameType | None) -> None:
        if self.received is None:
            self.received = signal_number
            # The same signal again acts as if we had never caught any; the other one keeps
            # this handler (see the module docstring), which stops the run at once.
            previous = self._previous.get(signal_number, signal.SIG_DFL)
            signal.signal(signal_number, previous)
            return
        previous = self._previous.get(signal_number, signal.SIG_DFL)
        if callable(previous):  # Python's own SIGINT handler raises KeyboardInterrupt.
            previous(signal_number, frame)
        elif previous != signal.SIG_IGN:
            raise StopNow(signal_number, self.received)

    def _say_ignored(self, signal_number: int, frame: types.FrameType | None) -> None:
        del frame
        name = signal.Signals(signal_number).name
        how_to_stop = ""
        if self._previous.get(signal.SIGTERM) != signal.SIG_IGN:
            how_to_stop = f"; stop it with `kill {os.getpid()}` (SIGTERM), which saves first"
        sys.stderr.write(
            f"{name} ignored: this run was started with {name} ignored (as a shell starts a "
            f"background job without job control: `make run-mnist &` in a script), so it keeps "
            f"training{how_to_stop}\n"
        )
        sys.stderr.flush()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for handled in HANDLED_SIGNALS:
                started_ignored = signal.getsignal(handled) == signal.SIG_IGN
                handler = self._say_ignored if started_ignored else self._handle
                self._previous[handled] = signal.signal(handled, handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handled, previous in self._previous.items():
            signal.signal(handled, previous)
        self._previous.clear()

    @property
    def name(self) -> str:
        """`SIGINT`, `SIGTERM`, or '' if none was received."""
        return signal.Signals(self.received).name if self.received else ""


def interrupted(received: int | None, step: int, checkpoint: str | None) -> Interrupted:
    """What a run raises once it has saved checkpoint `checkpoint` at `step` because of a stop
    signal: the one it `received`, or (None) another worker's, which all workers agree on."""
    if received is None:
        return Interrupted(
            signal.SIGTERM, f"another worker was stopped at step {step}; stopping too."
        )
    return Interrupted(
        received,
        f"{signal.Signals(received).name} at step {step}; checkpoint saved to {checkpoint}. "
        "Run the same command again to resume.",
    )


def stopped_at_once(error: KeyboardInterrupt, kept: str) -> Interrupted:
    """What a run raises for a second stop signal (a KeyboardInterrupt or `StopNow`), which
    stopped it at once, without saving: the first one's handler gave the default back, so the
    user is never stuck. `kept` says which checkpoint survives it."""
    return Interrupted(
        getattr(error, "signal_number", signal.SIGINT),
        f"{getattr(error, 'description', 'a second SIGINT')} stopped the run at once, "
        f"without saving. {kept} Run the same command again to resume.",
    )
