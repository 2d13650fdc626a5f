"""Where a run's time goes: seconds per phase of the loop, summed over the run, and one line.

    times = PhaseTimes()
    with times.phase("loops"):
        train_loop(iterator, steps)
    print(times.line())      # time: 4.14 s = setup 0.31 + first step 0.62 + loops 1.67 + ...

What a user reads to see whether the loops or the work around them (evals, summaries,
checkpoints) dominate a run, and what `make bench` prints for each app. The loop's phases wait for
their work (a loop ends reading the step; an eval reads its metrics), so each phase's time is its
own work, not work it queued for the next one.
"""

import contextlib
import re
import time
from collections.abc import Iterator

# The loop's phases, in the order a run meets them (see common.training_loop.run).
PHASES = (
    "setup",  # Restore, datasets and pipelines, writers, the run's description at step 0.
    "first step",  # Step one inside the graph trace: tracing, the step, the graph summaries.
    "loops",  # The train_loop calls (the first one includes the loop's tracing).
    "boundaries",  # Train scalars, the console line, the app's on_boundary.
    "evals",  # The eval passes (the first one includes the eval loop's tracing).
    "eval summaries",  # Weight and gradient histograms, the app's on_eval (images, curves...).
    "checkpoints",  # Checkpoint saves, each with its writer flush.
    "close",  # Closing the writers, the run record, the lock.
)
# Phases entered once per loop or per eval, whose first time includes a `tf.function`'s tracing:
# the line gives their count and first time too, `evals 0.19 (4x, first 0.12)`, so the cost of
# each later one reads apart from the one-time trace.
REPEATED_PHASES = ("loops", "evals", "eval summaries")


class PhaseTimes:
    """Seconds per phase, summed over a run, with a `perf_counter` per phase entered."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # Phases met so far.
        self.first_seconds: dict[str, float] = {}  # Each phase's first entry.
        self.counts: dict[str, int] = {}  # Entries per phase.
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the time spent inside the block to `name` (one of `PHASES`)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Adds `seconds` to `name` (one of `PHASES`): for a phase that is not one block."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {PHASES}")
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.first_seconds.setdefault(name, seconds)
        self.counts[name] = self.counts.get(name, 0) + 1

    def total(self) -> float:
        """Seconds since this object was made."""
        return time.perf_counter() - self._start

    def as_metrics(self) -> dict[str, float]:
        """`{"time/<phase>": seconds}` for every phase, met or not (`first step`: `first_step`)."""
        return {f"time/{name.replace(' ', '_')}": self.seconds.get(name, 0.0) for name in PHASES}

    def line(self) -> str:
        """`time: 4.14 s = setup 0.31 + first step 0.62 + loops 1.60 (8x, first 0.25) + ... +
        other 0.01`, phases not met left out; `other` is what no phase covered (between phases,
        Python's own bookkeeping)."""
        total = self.total()
        parts = [self._part(name) for name in PHASES if name in self.seconds]
        other = total - sum(self.seconds.values())
        return f"time: {total:.2f} s = " + " + ".join([*parts, f"other {other:.2f}"])

    def _part(self, name: str) -> str:
        part = f"{name} {self.seconds[name]:.2f}"
        if name in REPEATED_PHASES and self.counts[name] > 1:
            part += f" ({self.counts[name]}x, first {self.first_seconds[name]:.2f})"
        return part


def parse_line(text: str) -> tuple[float, dict[str, float], dict[str, tuple[int, float]]]:
    """The `time:` line in `text` (a run's output), read back: its total, its seconds per phase
    (the phases met and `other`), and `{phase: (times entered, first time's seconds)}` for the
    repeated phases that say so. What `make bench` and the tests read of a run.

    Raises:
        ValueError: if `text` has no `time:` line, or it names a phase that is not one.
    """
    line = next((line for line in text.splitlines() if line.startswith("time:")), None)
    match = re.fullmatch(r"time: (\S+) s = (.+)", line or "")
    if not match:
        raise ValueError(f"no `time: <total> s = <phase> <seconds> + ...` line in:\n{text}")
    seconds, repeats = {}, {}
    for part in match.group(2).split(" + "):
        # Phase names have spaces ("first step"); a repeated phase ends in "(8x, first 0.25)".
        parsed = re.fullmatch(r"(.+) (-?[\d.]+)(?: \((\d+)x, first ([\d.]+)\))?", part)
        if not parsed or parsed.group(1) not in (*PHASES, "other"):
            raise ValueError(f"unknown phase {part!r} in {line!r}")
        name = parsed.group(1)
        seconds[name] = float(parsed.group(2))
        if parsed.group(3):
            repeats[name] = (int(parsed.group(3)), float(parsed.group(4)))
    return float(match.group(1)), seconds, repeats
