"""Command-line plumbing shared by every app's `main.py`: one-line errors, no tracebacks."""

import atexit
import contextlib
import dataclasses
import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from absl import app, flags, logging

from common import errors, settings, startup
from common.errors import Interrupted, UserError

# The exit code for bad usage (flags), as argparse and most Unix tools use it.
EXIT_USAGE = 2
# absl's help flags, which print the usage and exit.
HELP_FLAGS = {"--help", "-help", "--helpshort", "--helpfull", "--helpxml", "-?", "-h"}
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
    except SystemExit as exit_request:
        # absl prints the help the user asked for and exits 1, as for an error; asking for help
        # is not one.
        if set(argv[1:]) & HELP_FLAGS:
            sys.exit(0)
        raise exit_request
    if not flags.FLAGS["verbosity"].present:
        # TensorFlow logs routine INFO lines (checkpoint sharding, ...) through absl: show only
        # warnings and errors unless the user asks (`--verbosity=0` brings INFO back).
        logging.set_verbosity(logging.WARNING)
    if len(remaining) > 1:
        _fail(f"unexpected argument {remaining[1]!r}; flags look like --name=value", EXIT_USAGE)
    return remaining


def startup_logs_requested() -> bool:
    """True when the user passed `--verbosity=0` or higher: show TensorFlow's start-up lines.

    For `common.startup.import_tensorflow`; by default they are hidden (see common/startup.py).
    """
    return flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 0


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


def define_flags(config_class: type, logdir: str) -> flags.FlagValues:
    """Defines `--logdir` and one flag per field of `config_class`, from its `setting(...)`s.

    The flags belong to the calling module (the app's `main.py`), so `--helpshort` lists them
    all. A field's type picks the flag's kind: int, float, bool, str with `choices` (an enum), or
    str (None allowed). Bounds and checks become absl validators: a bad value fails at parsing,
    before TensorFlow is imported.

    Args:
        config_class: the app's frozen settings dataclass (a `TrainingSettings` subclass).
        logdir: the default `--logdir`.

    Returns:
        `absl.flags.FLAGS`, for `config_from_flags` and `--logdir`.
    """
    module_name = sys._getframe(1).f_globals["__name__"]  # As absl does for its own DEFINEs.
    flags.DEFINE_string(
        "logdir",
        logdir,
        "Run directory: summaries and checkpoints; reruns resume.",
        module_name=module_name,
    )
    flags.register_validator(
        "logdir",
        lambda value: value is not None and logdir_flag_problem(value) is None,
        message="must be a non-empty UTF-8 path: the directory of the run's summaries and "
        "checkpoints",
    )
    for field in dataclasses.fields(config_class):
        _define_flag(field, settings.field_metadata(config_class, field.name), module_name)
    if {"jit_compile", "strategy"} <= {field.name for field in dataclasses.fields(config_class)}:
        flags.register_multi_flags_validator(
            ["jit_compile", "strategy"],
            lambda values: not values["jit_compile"] or values["strategy"] == "default",
            message="--jit_compile works with --strategy=default only (XLA cannot place "
            "mirrored variables on logical CPUs)",
        )
    return flags.FLAGS


def _define_flag(field: dataclasses.Field, metadata: dict, module_name: str) -> None:
    name, default, help_text = field.name, field.default, metadata["help"]
    field_type = str(field.type)  # `int`, or "int" where annotations are strings.
    if field_type in ("bool", str(bool)):
        flags.DEFINE_bool(name, default, help_text, module_name=module_name)
    elif field_type in ("int", str(int), "float", str(float)):
        define = flags.DEFINE_integer if "int" in field_type else flags.DEFINE_float
        define(
            name,
            default,
            help_text,
            lower_bound=metadata["lower_bound"],
            upper_bound=metadata["upper_bound"],
            module_name=module_name,
        )
    elif metadata["choices"]:
        flags.DEFINE_enum(name, default, metadata["choices"], help_text, module_name=module_name)
    elif "str" in field_type:
        flags.DEFINE_string(name, default, help_text, module_name=module_name)
    else:
        raise TypeError(f"setting {name}: no flag for type {field_type}")
    check = metadata["check"]
    if check is not None:
        flags.register_validator(name, check.condition, message=check.message)


def config_from_flags(config_class: type) -> Any:
    """The frozen `config_class` with every field from its flag (see `define_flags`)."""
    return config_class(
        **{field.name: flags.FLAGS[field.name].value for field in dataclasses.fields(config_class)}
    )


def run_app(
    config_class: type,
    train_module: str,
    before_tensorflow: Callable[[Any], None] | None = None,
) -> None:
    """An app's `main`: parses its flags, then trains with them, every error in one line.

    A bad flag fails in `parse_flags` (exit 2) before TensorFlow is imported. Then TensorFlow is
    imported with its C++ start-up lines hidden (`--verbosity=0` shows them), and
    `<train_module>.train_and_evaluate(config, --logdir)` runs with the frozen `config_class`
    built from the flags; a `UserError` ends as one `error:` line (exit 1), a signal as one
    `interrupted:` line (exit 130 or 143).

    Args:
        config_class: the app's settings dataclass, whose flags `define_flags` defined.
        train_module: the app's `train` module, by name (imported only after the flags parse).
        before_tensorflow: `before_tensorflow(config)`, called once the flags parse and before
            TensorFlow's import (2 s): to start slow I/O that would otherwise wait for it, such as
            mnist_mlp's probe of its download host. It must not import TensorFlow.
    """

    def main(argv: list[str]) -> None:
        del argv  # parse_flags has rejected stray arguments.
        with exit_on_user_error():
            config = config_from_flags(config_class)
            if not startup_logs_requested():
                # First: it forks, which must precede any thread (before_tensorflow's).
                startup.hide_known_harmless_lines()
            if before_tensorflow:
                before_tensorflow(config)
            startup.import_tensorflow(show_startup_logs=startup_logs_requested())
            train = importlib.import_module(train_module)
            train.train_and_evaluate(config, flags.FLAGS.logdir)
        exit_now()

    app.run(main, flags_parser=parse_flags)


def exit_now(code: int = 0) -> NoReturn:
    """Ends a finished run's process at once: output flushed, `atexit` handlers run (logging's
    flush among them), then `os._exit`, without the interpreter's teardown.

    With TensorFlow loaded, that teardown (freeing every module and object, stopping its thread
    pools) takes 0.5 to 0.7 s on 2 CPU cores after every run, a tenth of a default mnist_mlp run,
    and writes nothing: the run has closed its writers, saved its checkpoint and released its
    lock before this is called.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # What a normal exit runs first (CPython's own).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
