"""What a local path is, found without opening it: a FIFO opened for reading blocks until a writer
comes (forever, for a run or `make inspect`), and a symbolic link that loops fails deep inside
TensorFlow. TensorFlow-free, so `tools.inspect_logdir` can use it without TensorFlow.
"""

import errno
import os
import stat

FILE_URL_PREFIX = "file://"


def local_path(path: str) -> str | None:
    """The local path of `path` (a `file://` URL's path), or None for a remote URL (`gs://`)."""
    if path.startswith(FILE_URL_PREFIX):
        return path[len(FILE_URL_PREFIX) :] or "/"
    if "://" in path:
        return None
    return path


def broken_link(path: str) -> str | None:
    """Why `path` is a symbolic link that cannot be followed (`is a symbolic link that loops`,
    `... that leads nowhere`), or None if it is no link, or one that leads somewhere."""
    local = local_path(path)
    if local is None or not os.path.islink(local):
        return None
    try:
        os.stat(local)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link that loops (too many levels of symbolic links)"
        return f"is a symbolic link that leads nowhere ({error.strerror})"
    return None


def not_a_regular_file(path: str) -> str | None:
    """Why `path` cannot be read as a file (`is a directory`, `is a FIFO (a named pipe)`, a broken
    link, ...), or None for a regular file or a link to one. Remote URLs are not looked at (None).
    """
    local = local_path(path)
    if local is None:
        return None
    link = broken_link(local)
    if link is not None:
        return link
    try:
        mode = os.stat(local).st_mode
    except FileNotFoundError:
        return None  # Gone since it was listed: nothing to read, nothing to hang on.
    except OSError as error:
        return f"cannot be looked at ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (a named pipe)"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is a device"
