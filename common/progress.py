"""The console side of a run: one progress line per loop boundary, and how to view the run."""

import pathlib
import shlex
import sys

# The repository's root, where the Makefile and its .venv are.
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def format_number(value: float) -> str:
    """4 significant digits for small numbers, whole numbers from 1000 up (no `9.07e+04`)."""
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_metrics(metrics: dict[str, float]) -> str:
    """`{'train/loss': 0.1234, 'steps': 2000}` -> `train/loss=0.1234  steps=2000`, in order."""
    return "  ".join(f"{name}={format_number(value)}" for name, value in metrics.items())


def print_progress(step: int, num_steps: int, metrics: dict[str, float]) -> None:
    """Prints `step   500/2000 ( 25%)  train/loss=...` and flushes, so logs stream under pipes."""
    width = len(str(num_steps))
    percent = 100 * step // max(num_steps, 1)
    print(
        f"step {step:>{width}}/{num_steps} ({percent:3d}%)  {format_metrics(metrics)}", flush=True
    )


def view_command(logdir: str) -> str:
    """A shell command that serves `logdir` in TensorBoard, one that works where the run started.

    `tensorboard` alone is usually not on PATH: it is installed in the venv, next to the Python
    running this. From the repository's root, run by its `.venv`, the command is
    `make tensorboard LOGS=<logdir>` (what the README teaches); anywhere else, or for a logdir that
    make would split (spaces, quotes), it is the venv's `tensorboard` by its full path (or
    `python -m tensorboard.main` where the venv has no such script).

    Args:
        logdir: the run's logdir, as the run was given it (relative to the current directory).

    Returns:
        One line to copy into a shell, e.g. `make tensorboard LOGS=logs/mnist_mlp`.
    """
    quoted_logdir = shlex.quote(logdir)
    in_repo_venv = pathlib.Path(sys.prefix).resolve() == (REPO_ROOT / ".venv").resolve()
    if (
        in_repo_venv
        and pathlib.Path.cwd().resolve() == REPO_ROOT
        and (REPO_ROOT / "Makefile").is_file()
        and quoted_logdir == logdir  # make would split or expand anything shlex needs to quote.
    ):
        return f"make tensorboard LOGS={logdir}"
    tensorboard = pathlib.Path(sys.executable).parent / "tensorboard"
    if tensorboard.is_file():
        return f"{shlex.quote(str(tensorboard))} --logdir {quoted_logdir}"
    return f"{shlex.quote(sys.executable)} -m tensorboard.main --logdir {quoted_logdir}"
