"""Command-line plumbing shared by every app's `main.py`: one-line errors, no tracebacks."""

import contextlib
import signal
import sys
from collections.abc import Iterator

from absl import flags, logging

from common import errors
from common.errors import Interrupted, UserError

# The exit code for bad usage (flags), as argparse and most Unix tools use it.
EXIT_USAGE = 2
# The exit code for bad input found while running (paths, data files).
EXIT_USER_ERROR = 1


def _fail(message: str, exit_code: int, prefix: str = "error") -> None:
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"{prefix}: {one_line}\n")
    sys.stderr.flush()
    # Keep that line the last one: TensorFlow logs warnings while objects are torn down at exit
    # (after a failed checkpoint restore: "deleted with unrestored values"), which say nothing new.
    logging.set_verbosity(logging.FATAL)
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
    if not flags.FLAGS["verbosity"].present:
        # TensorFlow logs routine INFO lines (checkpoint sharding, ...) through absl: show only
        # warnings and errors unless the user asks (`--verbosity=0` brings INFO back).
        logging.set_verbosity(logging.WARNING)
    if len(remaining) > 1:
        _fail(f"unexpected argument {remaining[1]!r}; flags look like --name=value", EXIT_USAGE)
    return remaining


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Reports what a user can act on in one line and exits, instead of a traceback.

    - `UserError`: `error: <message>`, exit 1.
    - `Interrupted` (a run stopped by a signal, after saving): `interrupted: <message>`, exit
      128 + the signal's number.
    - `KeyboardInterrupt`: a SIGINT that arrived before a run installed its own handler (while
      TensorFlow imports, say, which takes seconds) or a second Ctrl-C: `interrupted: ...`,
      exit 130. A run's second Ctrl-C arrives here as `Interrupted`, with what it kept.
    - A full disk, an exhausted memory (`MemoryError`, TensorFlow's `ResourceExhaustedError`)
      or a refused access (permissions, a read-only mount), wherever it happens: `error: ...`
      naming the likely culprit, exit 1.

    Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except UserError as error:
        _fail(str(error), EXIT_USER_ERROR)
    except Interrupted as interrupted:
        _fail(str(interrupted), interrupted.exit_code, prefix="interrupted")
    except KeyboardInterrupt:
        _fail(
            "SIGINT during start-up, before training began; nothing was saved",
            128 + signal.SIGINT,
            prefix="interrupted",
        )
    except Exception as error:  # MemoryError included; anything not recognized is re-raised.
        reported = errors.as_user_error(error)
        if reported is None:
            raise
        _fail(str(reported), EXIT_USER_ERROR)


def logdir_flag_problem(logdir: str) -> str | None:
    """What is wrong with a `--logdir` value before anything uses it, or None.

    For a flag validator (`flags.register_validator`), so it fails at parsing, with exit 2:
    an empty value would put `train/` and `eval/` at the filesystem's root (`f"{logdir}/train"`),
    and TensorFlow's file functions take UTF-8 paths only.
    """
    if not logdir.strip():
        return "must not be empty: it is the directory of the run's summaries and checkpoints"
    try:
        logdir.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8; TensorFlow needs UTF-8 paths"
    return None


# The names of common.distribution.STRATEGY_NAMES, repeated so that flags parse before TensorFlow
# is imported (a test keeps the two equal).
STRATEGY_NAMES = ("default", "mirrored", "multi_worker")


def define_strategy_flags() -> None:
    """Defines `--strategy` and `--num_cpu_devices` (read by the app's `main.py`).

    Call it after `--jit_compile`, if the app has one: XLA then needs the default strategy.
    """
    flags.DEFINE_enum(
        "strategy",
        "default",
        STRATEGY_NAMES,
        "tf.distribute strategy: default (one device), mirrored (all local GPUs, else "
        "--num_cpu_devices logical CPUs), multi_worker (the cluster in TF_CONFIG; run the same "
        "command on every worker).",
    )
    flags.DEFINE_integer(
        "num_cpu_devices",
        1,
        "Split the CPU into this many logical devices (for --strategy=mirrored without GPUs).",
        lower_bound=1,
    )
    if "jit_compile" in flags.FLAGS:
        flags.register_multi_flags_validator(
            ["jit_compile", "strategy"],
            lambda values: not values["jit_compile"] or values["strategy"] == "default",
            message="--jit_compile works with --strategy=default only (XLA cannot place "
            "mirrored variables on logical CPUs)",
        )
