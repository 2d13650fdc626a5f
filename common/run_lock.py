"""One run per logdir at a time: an exclusive `flock` on `<logdir>/.lock`.

The kernel releases a `flock` when its process dies, however it dies (`kill -9` included), so a
lock can never go stale: a killed run never blocks its own resume. The file holds the owner's pid,
for the error message only. Locks need a local (or NFS with locking) filesystem; on a `gs://`-style
logdir there is no lock and a warning says so.
"""

import fcntl
import os

from absl import logging

from common.errors import UserError

LOCK_FILE_NAME = ".lock"


class LogdirInUseError(UserError):
    """Another live process is running in this logdir."""


class LogdirLock:
    """Holds the logdir's lock from `acquire()` until `release()` (or the process's end)."""

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self.path = os.path.join(logdir, LOCK_FILE_NAME)
        self._file = None

    def acquire(self) -> "LogdirLock":
        """Takes the lock or raises LogdirInUseError naming the logdir and the owner's pid."""
        if "://" in self.logdir:
            logging.warning("No run lock on %s: only local logdirs can be locked.", self.logdir)
            return self
        lock_file = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise LogdirInUseError(
                f"logdir {self.logdir} is in use by another run (pid {owner}); wait for it to "
                "finish, stop it, or pass a different --logdir"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._file = lock_file
        return self

    def release(self) -> None:
        """Releases the lock (closing the file releases the flock)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "LogdirLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
