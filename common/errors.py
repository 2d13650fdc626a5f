"""The error type for bad user input: reported as one line, never as a traceback.

Also the machine's limits that a user can act on (a full disk, memory, a path that cannot be
written), recognized here without importing TensorFlow: `common.cli` uses them before TensorFlow is
loaded, and `common.loop.training_run` to add which checkpoint is kept.
"""

import errno
from collections.abc import Sequence

# TensorFlow reports an operating system's ENOSPC as RESOURCE_EXHAUSTED (tsl's ErrnoToCode), the
# same code as an allocation that fails: only the message tells a full disk from a full memory.
_DISK_FULL_MESSAGES = ("no space left on device", "disk quota exceeded")
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class UserError(Exception):
    """Bad input from the user (a path, a data file, a setting) that the user can fix.

    Apps catch it at the top level (see `common.cli.exit_on_user_error`) and print
    `error: <message>` with no traceback, so the message must name the culprit on its own.
    """


class Interrupted(Exception):  # noqa: N818 (it is not an error: the user asked for it)
    """SIGINT or SIGTERM stopped the run after a checkpoint was saved.

    Apps exit with the conventional code, 128 + the signal's number (130 for Ctrl-C, 143 for
    SIGTERM), after printing the message.
    """

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite: training stopped before saving anything of it."""


class NonFiniteWeightsError(NonFiniteLossError):
    """A variable to be saved holds NaN or Inf: the checkpoint was not written."""


class DiskFullError(UserError):
    """A write failed because the disk (or the user's quota) is full."""


class OutOfMemoryError(UserError):
    """An allocation failed: the batch, the model or the data is too large for this machine."""


class UnwritablePathError(UserError):
    """An access was refused: a read-only mount, missing permissions."""


# What an out-of-memory error tells the user to change. Every app has --batch_size; the model's
# size flags differ between apps, so they are named by kind.
OUT_OF_MEMORY_ADVICE = "try a smaller --batch_size or a smaller model (fewer units or latent size)"


# Lines of TensorFlow's op errors that say nothing about the cause: a graph function's wrapper
# (`Graph execution error:`, then where the op was defined), the failing node, an OOM hint.
_NOISE_PREFIXES = ("graph execution error", "detected at node", "[[", "hint:", 'file "')


def first_line(error: BaseException, limit: int = 300, containing: Sequence[str] = ()) -> str:
    """The first telling line of an error's message, at most `limit` characters: what fits in a
    one-line report. TensorFlow's wrappers and hints are skipped, and so is its op context
    (`{{function_node __wrapped__SaveV2_...}}`); with `containing`, the first line holding one of
    those texts (lower case) is preferred."""
    message = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
    lines = []
    for line in str(message).splitlines():
        line = line.strip()
        if line.startswith("{{") and "}}" in line:
            line = line.split("}}", 1)[1].strip()
        if line and not line.lower().startswith(_NOISE_PREFIXES):
            lines.append(line.rstrip(".:"))
    preferred = [line for line in lines if any(text in line.lower() for text in containing)]
    line = (preferred or lines or [type(error).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError of ENOSPC or EDQUOT, or TensorFlow's RESOURCE_EXHAUSTED of a write."""
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
        return True
    if "OpError" in _class_names(error):
        message = str(getattr(error, "message", error)).lower()
        return any(text in message for text in _DISK_FULL_MESSAGES)
    return False


def is_out_of_memory(error: BaseException) -> bool:
    """True for MemoryError, and for TensorFlow's ResourceExhaustedError unless the disk is full."""
    if isinstance(error, MemoryError):
        return True
    return "ResourceExhaustedError" in _class_names(error) and not is_disk_full(error)


def is_unwritable(error: BaseException) -> bool:
    """True for a write refused by permissions or a read-only filesystem."""
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return True
    if "PermissionDeniedError" in _class_names(error):
        return True
    return "OpError" in _class_names(error) and "read-only file system" in str(error).lower()


def as_user_error(error: BaseException, context: str = "", kept: str = "") -> UserError | None:
    """A one-line UserError for a full disk, an exhausted memory or a refused access, else None.

    Args:
        error: what was raised.
        context: where it happened, e.g. `while saving checkpoint X`; may be empty.
        kept: what survives, e.g. `The last good checkpoint, step 40 (...), is kept.`; may be empty.
    """
    where = f" {context}" if context else ""
    after = f" {kept}" if kept else ""
    if is_disk_full(error):
        cause = first_line(error, containing=_DISK_FULL_MESSAGES)
        return DiskFullError(
            f"disk full{where}: {cause}.{after} Free some space, then run the same command again."
        )
    if is_out_of_memory(error):
        return OutOfMemoryError(
            f"out of memory{where}: {first_line(error)}; {OUT_OF_MEMORY_ADVICE}.{after}"
        )
    if is_unwritable(error):
        # Reads are refused too (a data file without read permission): the cause line says which.
        return UnwritablePathError(f"access refused{where}: {first_line(error)}.{after}")
    return None
