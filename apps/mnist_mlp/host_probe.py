"""Is MNIST's download host reachable? Asked in a background thread, from before TensorFlow's
import on: `--dataset=auto` on an offline machine otherwise waits out the whole probe (3 s) after
the import (2 s), every run. No TensorFlow here: `main.py` starts the probe before importing it.
"""

import socket
import threading
import time

# Probes started ahead, by (host, port): (their answer, when they started). Each is taken once.
_started: dict[tuple[str, int], tuple[threading.Event, float]] = {}


def start(host: str, port: int, seconds: float) -> threading.Event:
    """Starts a TCP connection attempt to `host:port`, DNS lookup included, in a daemon thread (a
    DNS lookup ignores socket timeouts and can hang far longer); the event is set if it opens.
    A later `answers(host, port, seconds)` waits for this one instead of starting another."""
    answered = threading.Event()

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            answered.set()
        except OSError:
            pass

    threading.Thread(target=connect, daemon=True).start()
    _started[(host, port)] = (answered, time.monotonic())
    return answered


def answers(host: str, port: int, seconds: float) -> bool:
    """True when a connection to `host:port` opens within `seconds` of its probe's start: the
    probe `start` began earlier (taken, so the next call probes afresh), or a new one."""
    answered, started_at = _started.pop((host, port), (None, 0.0))
    if answered is None:
        answered, started_at = start(host, port, seconds), time.monotonic()
        _started.pop((host, port), None)
    return answered.wait(max(0.0, seconds - (time.monotonic() - started_at)))
