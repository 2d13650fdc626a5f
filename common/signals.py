"""SIGINT and SIGTERM as requests to stop at the next loop boundary, not as sudden death.

A signal that kills a run mid-step leaves no checkpoint of the progress since the last one; a
signal handled here only sets a flag, and the loop saves, flushes and exits at its next boundary.
A second signal while the first is pending gets the default behaviour (Ctrl-C twice kills), so a
user is never stuck.

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

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        del frame
        self.received = signal_number
        # The next one of these signals acts as if we had never caught any.
        for handled in HANDLED_SIGNALS:
            signal.signal(handled, self._previous.get(handled, signal.SIG_DFL))

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
