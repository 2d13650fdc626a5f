"""The console side of a run: one progress line per loop boundary, and how to view the run."""

import datetime
import pathlib
import shlex
import sys

# The repository's root, where the Makefile and its .venv are.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]  # common/loop/progress.py


def format_number(value: float) -> str:
    """4 significant digits for small numbers, whole numbers from 1000 up (no `9.07e+04`)."""
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_metrics(metrics: dict[str, float]) -> str:
    """`{'train/loss': 0.1234, 'steps': 2000}` -> `train/loss=0.1234  steps=2000`, in order."""
    return "  ".join(f"{name}={format_number(value)}" for name, value in metrics.items())


def print_progress(
    step: int, num_steps: int, metrics: dict[str, float], seconds_left: float | None = None
) -> None:
    """Prints `step   500/2000 ( 25%)  train/loss=...  ETA 0:01:23` and flushes, so logs stream
    under pipes.

    The ETA is written `ETA h:mm:ss`, never `name=value`: every `name=value` of the line is a
    TensorBoard tag's value (`train/loss=...`), and the time left is none.

    Args:
        step: the global step reached.
        num_steps: the run's last step.
        metrics: the console's values, `<run>/<tag>` to value, in order.
        seconds_left: the estimated time to `num_steps` (see `TimeLeft`), or None for no ETA.
    """
    width = len(str(num_steps))
    percent = 100 * step // max(num_steps, 1)
    line = f"step {step:>{width}}/{num_steps} ({percent:3d}%)  {format_metrics(metrics)}"
    if seconds_left is not None:
        line += f"  ETA {format_duration(seconds_left)}"
    print(line, flush=True)


def format_duration(seconds: float) -> str:
    """`83.4` -> `0:01:23`, `90061` -> `1 day, 1:01:01` (whole seconds, as `datetime` writes)."""
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class TimeLeft:
    """A run's ETA from its train loops' measured speed, fed once per loop boundary.

    The first loop is left out: it includes `train_loop`'s one-time tracing (and the first
    step's too, on a resumed run), which can be most of its time, so its speed would put the ETA
    far too late. So the first boundary shows no ETA, and later ones the steps left at the speed
    of every loop since the first (their steps over their time). The loops' time only: evals,
    summaries and checkpoints to come add to it, as `time:` at the end of a run shows.
    """

    def __init__(self, num_steps: int) -> None:
        self._num_steps = num_steps
        self._loops_seen = 0
        self._steps = 0  # Of the loops after the first.
        self._seconds = 0.0

    def after_loop(self, step: int, loop_steps: int, loop_seconds: float) -> float | None:
        """Records one loop; returns the seconds left to `num_steps`, or None when there is no
        measure yet (the first loop) or nothing left (the run's last boundary)."""
        self._loops_seen += 1
        if self._loops_seen > 1:
            self._steps += loop_steps
            self._seconds += loop_seconds
        if step >= self._num_steps or not self._steps or self._seconds <= 0:
            return None
        return (self._num_steps - step) * self._seconds / self._steps


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
