"""Where a run's time goes: seconds per phase of the loop, summed over the run, and one line.

    times = PhaseTimes()
    with times.phase("loops"):
        train_loop(iterator, steps)
    print(times.line())      # time: 4.14 s = setup 0.31 + first step 0.62 + loops 1.67 + ...

What a user reads to see whether the loops or the work around them (evals, summaries,
checkpoints) dominate a run, and what `make bench` prints for each app. The loop's phases wait for
their work (a loop ends reading the step; an eval reads its metrics), so each phase's time is its
own work, not work it queued for the next one. A phase inside another (a wait for the
summaries' thread inside another phase) counts to the inner one alone.
"""

import contextlib
import re
import time
from collections.abc import Iterator

# The loop's phases, in the order a run meets them (see common.loop.training_loop.run).
PHASES = (
    "setup",  # Restore, datasets and pipelines, writers, the run's description at step 0.
    "first step",  # Step one inside the graph trace: tracing, the step, the graph summaries.
    "loops",  # The train_loop calls (the first one includes the loop's tracing).
    "boundaries",  # Train scalars, the console line, the app's actions (common.loop.actions).
    "evals",  # The eval passes (the first one includes the eval loop's tracing).
    # The loop's share of the eval's summaries: its weights snapshot, handing the histograms,
    # gradients and the app's on_eval to their thread (common/summaries/background.py), and any
    # wait for that thread (with two evals' work pending, and for the last eval's at the run's
    # end).
    "eval summaries",
    "checkpoints",  # Checkpoint saves, each with its writer flush.
    "close",  # Closing the writers, the run record, the lock.
)
# Phases entered once per loop or per eval, whose first time includes a `tf.function`'s tracing:
# the line gives their count and first time too, `evals 0.19 (4x, first 0.12)`, so the cost of
# each later one reads apart from the one-time trace.
REPEATED_PHASES = ("loops", "evals", "eval summaries")
BACKGROUND_SEPARATOR = "; in the background: "


class PhaseTimes:
    """Seconds per phase, summed over a run, with a `perf_counter` per phase entered."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # Phases met so far.
        self.first_seconds: dict[str, float] = {}  # Each phase's first entry.
        self.counts: dict[str, int] = {}  # Entries per phase.
        self._start = time.perf_counter()
        self._inner_seconds: list[float] = []  # Per open phase: time in phases inside it.
        # The eval summaries' own thread's CPU time, beside the phases
        # (common/summaries/background.py).
        self.background_seconds: float | None = None

    @contextlib.contextmanager
    def phase(self, name: str, count: bool = True) -> Iterator[None]:
        """Adds the time spent inside the block to `name` (one of `PHASES`), less the time of
        phases opened inside it, which count to their own.

        Args:
            name: the phase.
            count: whether this is an entry of the phase (`(4x, first 0.12)`), or more time for
                its entries so far (a wait for work an entry began).
        """
        start = time.perf_counter()
        self._inner_seconds.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self._inner_seconds.pop()
            if self._inner_seconds:
                self._inner_seconds[-1] += elapsed
            self.add(name, elapsed - inner, count)

    def add(self, name: str, seconds: float, count: bool = True) -> None:
        """Adds `seconds` to `name` (one of `PHASES`): for a phase that is not one block. With
        `count=False`, to its entries so far rather than as a new one."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {PHASES}")
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if count or name not in self.counts:
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
        other 0.01; in the background: eval summaries 0.250`, phases not met left out; `other`
        is what no phase covered (between phases, Python's own bookkeeping), and takes up the
        rounding of the others, so the printed figures add up to the printed total; the
        background's seconds are the CPU time of the eval summaries' own thread, beside the
        phases, and are not in the total."""
        total = self.total()
        parts = [self._part(name) for name in PHASES if name in self.seconds]
        other = round(total, 2) - sum(round(seconds, 2) for seconds in self.seconds.values())
        line = f"time: {total:.2f} s = " + " + ".join([*parts, f"other {other:.2f}"])
        if self.background_seconds is not None:
            # To the millisecond: a short run's thread may use less CPU than 0.01 s.
            line += f"{BACKGROUND_SEPARATOR}eval summaries {self.background_seconds:.3f}"
        return line

    def _part(self, name: str) -> str:
        part = f"{name} {self.seconds[name]:.2f}"
        if name in REPEATED_PHASES and self.counts[name] > 1:
            part += f" ({self.counts[name]}x, first {self.first_seconds[name]:.2f})"
        return part


def parse_line(text: str) -> tuple[float, dict[str, float], dict[str, tuple[int, float]]]:
    """The `time:` line in `text` (a run's output), read back: its total, its seconds per phase
    (the phases met, `other`, and `background`: the eval summaries' thread's), and `{phase:
    (times entered, first time's seconds)}` for the repeated phases that say so. What `make
    bench` and the tests read of a run.

    Raises:
        ValueError: if `text` has no `time:` line, or it names a phase that is not one.
    """
    line = next((line for line in text.splitlines() if line.startswith("time:")), None)
    match = re.fullmatch(r"time: (\S+) s = (.+)", line or "")
    if not match:
        raise ValueError(f"no `time: <total> s = <phase> <seconds> + ...` line in:\n{text}")
    seconds, repeats = {}, {}
    phases, _, background = match.group(2).partition(BACKGROUND_SEPARATOR)
    if background:
        parsed = re.fullmatch(r"eval summaries ([\d.]+)", background)
        if not parsed:
            raise ValueError(f"unknown background part {background!r} in {line!r}")
        seconds["background"] = float(parsed.group(1))
    for part in phases.split(" + "):
        # Phase names have spaces ("first step"); a repeated phase ends in "(8x, first 0.25)".
        parsed = re.fullmatch(r"(.+) (-?[\d.]+)(?: \((\d+)x, first ([\d.]+)\))?", part)
        if not parsed or parsed.group(1) not in (*PHASES, "other"):
            raise ValueError(f"unknown phase {part!r} in {line!r}")
        name = parsed.group(1)
        seconds[name] = float(parsed.group(2))
        if parsed.group(3):
            repeats[name] = (int(parsed.group(3)), float(parsed.group(4)))
    return float(match.group(1)), seconds, repeats
