"""Whether a logdir can be used, checked before a run writes anything to it: a directory (or one
that can be made) that can be written, whose `train` and `eval` are directories too
(`prepare_logdir`, else LogdirError); and the refusal of one whose contents do not add up
(LogdirStateError: see common/checkpoints/repair.py).

Paths go through `tf.io.gfile`, so a logdir may also be a cloud bucket (`gs://...`) on a cluster.
"""

import uuid

import tensorflow as tf

from common import errors
from common.errors import UserError
from common.logdir import paths


class LogdirError(UserError):
    """The logdir cannot be used: it is a file, or cannot be created or written."""


class LogdirStateError(UserError):
    """The logdir's contents do not add up: the run would have to rewrite what it cannot prove
    its own, or start over on top of an earlier run's work. Nothing was written."""


class OtherAppError(LogdirStateError):
    """The logdir holds a run of another app (its record says which). Nothing was written."""


def display_path(path: str) -> str:
    """`path` as it can be printed: bytes that are not UTF-8 (kept by Python as surrogates) are
    shown as `\\xff` escapes instead of breaking the message."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def prepare_logdir(logdir: str) -> str:
    """Checks that `logdir` is (or can be made) a writable directory, and creates it.

    Also refuses a `train` or `eval` inside it that is not a directory: the writers need them.

    Args:
        logdir: a local path or a `tf.io.gfile` URL.

    Returns:
        `logdir`, created.

    Raises:
        LogdirError: with a one-line message that names the path.
    """
    try:
        logdir.encode("utf-8")
    except UnicodeEncodeError:
        # TensorFlow's file functions take UTF-8 paths only (they fail deep inside otherwise).
        raise LogdirError(
            f"logdir {display_path(logdir)} is not valid UTF-8; TensorFlow needs UTF-8 paths: pass "
            "a --logdir whose name is UTF-8 text"
        ) from None
    try:
        link = paths.broken_link(logdir)
        if link is not None:  # TensorFlow sees no directory there, and fails to make one.
            raise LogdirError(f"logdir {logdir} {link}; pass a new --logdir")
        if tf.io.gfile.exists(logdir) and not tf.io.gfile.isdir(logdir):
            raise LogdirError(f"logdir {logdir} is a file, not a directory")
        for run in ("train", "eval"):
            path = f"{logdir}/{run}"
            link = paths.broken_link(path)
            if link is not None:
                raise LogdirError(
                    f"logdir {logdir}: {run} {link}, not the directory of the {run} run's event "
                    f"files; move {path} away, or pass a new --logdir"
                )
            if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
                raise LogdirError(
                    f"logdir {logdir}: {run} is a file, not the directory of the {run} run's event "
                    f"files; move {path} away, or pass a new --logdir"
                )
    except (tf.errors.OpError, OSError) as error:
        # An unreachable bucket, a path TensorFlow has no filesystem for (`s3://` here), ...
        raise LogdirError(
            f"logdir {logdir} cannot be reached: {errors.first_line(error)}"
        ) from error
    try:
        tf.io.gfile.makedirs(logdir)
        probe_writable(logdir)
    except (tf.errors.OpError, OSError) as error:
        raise LogdirError(
            f"logdir {logdir} cannot be created or written: {errors.first_line(error)}"
        ) from error
    return logdir


def probe_writable(directory: str) -> None:
    """Writes and removes a hidden file in `directory`: writing is the only reliable test, as
    permission bits say nothing on read-only mounts or buckets, and nothing at all to root.

    Raises:
        tf.errors.OpError, OSError: if `directory` cannot be written.
    """
    probe = f"{directory}/.write_test_{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(probe, "w") as probe_file:
        probe_file.write("ok")
    tf.io.gfile.remove(probe)
