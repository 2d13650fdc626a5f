"""One run per logdir at a time: an exclusive `flock` on the logdir directory itself.

The lock is held on an open descriptor of the directory, not on a file in it: however the logdir
is spelled (a `file://` URL, a symbolic link, a relative path) two runs open the same directory,
and no file a user can delete, or may have put there, takes part. No file is created or written
(a `.lock` in the logdir is the user's, and is left as it is). The kernel releases a `flock` when
its process dies, however it dies (`kill -9` included), so a lock can never go stale: a killed
run never blocks its own resume. The owner's pid, for the error message only, is read from the
kernel's table of locks (`/proc/locks`, Linux).

What holds elsewhere: a `gs://`-style logdir (any URL but `file://`) cannot be locked, and a
filesystem that refuses `flock` on a directory (NFS may: it emulates `flock` with the server's
byte-range locks; untested here) is not locked either; in both cases one `warning:` line says
that a second run started on the same logdir at the same time is not refused.
"""

import errno
import fcntl
import os
import sys

from common.errors import UserError
from common.logdir.paths import local_path

# The file older versions locked and wrote their pid into: now left alone like any file in the
# logdir (a leftover one, or a user's notes).
LOCK_FILE_NAME = ".lock"
# The kernel's table of locks: `1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF`,
# the device numbers in hex (fs/locks.c, lock_get_status).
PROC_LOCKS = "/proc/locks"
# What flock on a directory raises where the filesystem cannot lock one: not "in use".
_CANNOT_LOCK_ERRNOS = (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class LogdirInUseError(UserError):
    """Another live process is running in this logdir."""


class LogdirLockError(UserError):
    """The logdir cannot be opened to hold the lock on it."""


def lock_owner(descriptor: int) -> int | None:
    """The pid holding a `flock` on the file open as `descriptor`, from `/proc/locks`, or None
    where that table is missing or does not name it (another pid namespace shows no pid)."""
    status = os.fstat(descriptor)
    device = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # A waiting lock's line has `->` after its number; only the holders' lines are wanted.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            pid = int(fields[4]) if fields[4].lstrip("-").isdigit() else 0
            return pid if pid > 0 else None
    return None


class LogdirLock:
    """Holds the logdir's lock from `acquire()` until `release()` (or the process's end)."""

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self._descriptor: int | None = None

    def acquire(self) -> "LogdirLock":
        """Takes the lock on the logdir directory (which must exist).

        Raises:
            LogdirInUseError: if another live process holds it; names the logdir and its pid.
            LogdirLockError: if the directory cannot be opened.
        """
        path = local_path(self.logdir)
        if path is None:
            self._warn(
                "only a local directory can be locked, so a second run started on it at the same "
                "time is not refused: start one run per logdir"
            )
            return self
        try:
            # O_DIRECTORY: a path that is not a directory (or a link to one) fails here, never
            # blocks (a FIFO would, opened for reading).
            descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise LogdirLockError(
                f"logdir {self.logdir} cannot be opened to lock it ({error.strerror}); pass a "
                "new --logdir"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = lock_owner(descriptor)
            os.close(descriptor)
            # The directory itself, when its spelling hides it (a link, a relative path).
            resolved = os.path.realpath(path)
            where = "" if resolved == os.path.normpath(path) else f" ({resolved})"
            raise LogdirInUseError(
                f"logdir {self.logdir}{where} is in use by another run (pid {owner or 'unknown'}); "
                "wait for it to finish, stop it, or pass a different --logdir"
            ) from None
        except OSError as error:
            os.close(descriptor)
            if error.errno not in _CANNOT_LOCK_ERRNOS:
                raise
            self._warn(
                f"its filesystem cannot lock a directory ({error.strerror}), so a second run "
                "started on it at the same time is not refused: start one run per logdir"
            )
            return self
        self._descriptor = descriptor
        return self

    def _warn(self, why: str) -> None:
        print(f"warning: no run lock on logdir {self.logdir}: {why}", file=sys.stderr, flush=True)

    def release(self) -> None:
        """Releases the lock (closing the descriptor releases the flock)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> "LogdirLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
