"""Command-line plumbing shared by every app's `main.py`: one-line errors, no tracebacks."""

import contextlib
import sys
from collections.abc import Iterator

from absl import flags

from common.errors import UserError

# The exit code for bad usage (flags), as argparse and most Unix tools use it.
EXIT_USAGE = 2
# The exit code for bad input found while running (paths, data files).
EXIT_USER_ERROR = 1


def _fail(message: str, exit_code: int) -> None:
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"error: {one_line}\n")
    sys.stderr.flush()
    sys.exit(exit_code)


def parse_flags(argv: list[str]) -> list[str]:
    """An `absl.app.run` flags parser that reports a bad flag as one line and exits 2.

    absl's own parser prints two lines and a hint; this prints `error: flag --name=value: why`.

    Args:
        argv: the command line, program name first.

    Returns:
        The arguments left after the flags, program name first.
    """
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as error:
        _fail(str(error), EXIT_USAGE)
        raise AssertionError("unreachable") from error
    if len(remaining) > 1:
        _fail(f"unexpected argument {remaining[1]!r}; flags look like --name=value", EXIT_USAGE)
    return remaining


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turns a `UserError` raised inside the block into `error: <message>` and exit code 1."""
    try:
        yield
    except UserError as error:
        _fail(str(error), EXIT_USER_ERROR)
