"""One run per logdir at a time: an exclusive `flock` on `<logdir>/.lock`.

The kernel releases a `flock` when its process dies, however it dies (`kill -9` included), so a
lock can never go stale: a killed run never blocks its own resume. The file holds the owner's pid,
for the error message only. Locks need a local (or NFS with locking) filesystem; on a `gs://`-style
logdir there is no lock and a warning says so.
"""

import errno
import fcntl
import os
import stat
from typing import TextIO

from absl import logging

from common.errors import UserError

LOCK_FILE_NAME = ".lock"


class LogdirInUseError(UserError):
    """Another live process is running in this logdir."""


class LogdirLockError(UserError):
    """The logdir's `.lock` is not a file the lock can be held on (a directory, say)."""


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
        lock_file = self._open()
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

    def _open(self) -> TextIO:
        """Opens (or creates) the lock file, refusing anything but a regular file: a directory
        cannot be locked, and a symbolic link would have its target overwritten with the pid."""
        try:
            descriptor = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
            )
        except OSError as error:
            what = {
                errno.EISDIR: "is a directory",
                errno.ELOOP: "is a symbolic link",
            }.get(error.errno, f"cannot be opened ({error.strerror})")
            raise LogdirLockError(
                f"logdir {self.logdir}: {LOCK_FILE_NAME} {what}, not the run lock this app keeps "
                f"there; move {self.path} away, or pass a new --logdir"
            ) from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise LogdirLockError(
                f"logdir {self.logdir}: {LOCK_FILE_NAME} is not a regular file, not the run lock "
                f"this app keeps there; move {self.path} away, or pass a new --logdir"
            )
        # The pid is read back for a message only: bytes that are not text must not break it.
        return os.fdopen(descriptor, "a+", encoding="utf-8", errors="replace")

    def release(self) -> None:
        """Releases the lock (closing the file releases the flock)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "LogdirLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
