"""SIGINT and SIGTERM as requests to stop at the next loop boundary, not as sudden death.

A signal that kills a run mid-step leaves no checkpoint of the progress since the last one; a
signal handled here only sets a flag, and the loop saves, flushes and exits at its next boundary.
A second signal while the first is pending gets the default behaviour (Ctrl-C twice kills), so a
user is never stuck.
"""

import signal
import threading
import types

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set `received` instead of stopping the process.

    Only the main thread can install signal handlers; elsewhere (a test runner's worker thread,
    say) it does nothing and `received` stays None.
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

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for handled in HANDLED_SIGNALS:
                self._previous[handled] = signal.signal(handled, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handled, previous in self._previous.items():
            signal.signal(handled, previous)
        self._previous.clear()

    @property
    def name(self) -> str:
        """`SIGINT`, `SIGTERM`, or '' if none was received."""
        return signal.Signals(self.received).name if self.received else ""
