"""What the outer loop does between its inner loops, as actions: each says when it is due and
what it does, in the manner of CLU's `periodic_actions.py` and Orbit's `Controller` actions.

The outer loop (common/loop/training_loop.py) runs the steps in inner loops of one `tf.function`
call each, and gives Python control back only at a loop's end, a *boundary*. An inner loop ends
at the next multiple of `steps_per_loop`, at the run's last step, or at the next step an action
must run at exactly (`Schedule.at_steps`), whichever comes first (`steps_to_next_boundary`). At
every boundary each action due there runs, in turn:

    actions = [
        Callback(switch_dropout_off, at_steps=[500]),  # A loop ends at step 500: it runs there.
        TrainScalars(lambda: {"beta": beta()}),        # At every boundary, beside the loss.
    ]
    training_loop.run(config, logdir, state, train_step, eval_step, load_datasets,
                      actions=actions)

Each says when in a `Schedule` (every boundary; the first boundary at or past each multiple of
N; given steps; the run's last step); an eval is `Schedule(every_steps=N, at_end=True)`.

The loop's own work at a boundary is made of actions too (common/loop/standard_actions.py: the
train scalars, the progress line, checkpoints, the profile window; common/loop/evaluation.py:
the eval and its summaries). An app adds an action (`Callback`, `TrainScalars`, or its own
subclass of `Action`) rather than the loop gaining a parameter.

Python work per boundary, not per step: a run's steps stay inside the inner loops' graphs.
"""

import dataclasses
from collections.abc import Callable, Iterable, Sequence


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When an action is due, at the boundaries the loop reaches.

    With no field set, at every boundary. Otherwise at a boundary that is any of:
      - the first at or past each multiple of `every_steps` (the loop does not end a loop there:
        an eval every 4 steps, with loops of 3 steps, runs at steps 6, 9, 12...);
      - one of `at_steps`: a loop ends exactly there (a switch that must flip at a given step);
      - the run's last step, with `at_end`.
    """

    every_steps: int | None = None
    at_steps: tuple[int, ...] = ()
    at_end: bool = False

    @property
    def every_boundary(self) -> bool:
        """True when no field is set: due at every boundary."""
        return self.every_steps is None and not self.at_steps and not self.at_end

    def next_loop_end(self, step: int) -> int | None:
        """The first of `at_steps` after `step`, where a loop must end; None if there is none."""
        later = [at_step for at_step in self.at_steps if at_step > step]
        return min(later) if later else None

    def is_due(self, step: int, last_step: int, num_steps: int) -> bool:
        """Whether a boundary at `step` is due, the last one due having been at `last_step`
        (or the run having started there) and the run ending at `num_steps`."""
        if self.every_boundary or step in self.at_steps:
            return True
        if self.at_end and step == num_steps:
            return True
        every = self.every_steps
        return every is not None and step // every > last_step // every


@dataclasses.dataclass
class Loop:
    """The inner loop about to run, as the actions see it before it runs (and may change it)."""

    index: int  # How many inner loops this run ran before this one (0: the first).
    first_step: int  # The global step before it.
    num_steps: int  # How many steps it runs (0 for a one-step run's only boundary).
    # Set by an action that needs the gradients of the loop's last step (an eval's histograms):
    # that step then runs on its own, outside the loop (see common.loop.steps.run_steps).
    with_gradients: bool = False
    # Set by the profile window: each step in a profiler step marker of its own.
    step_markers: bool = False

    @property
    def end_step(self) -> int:
        """The global step at its end: the boundary that follows it."""
        return self.first_step + self.num_steps


@dataclasses.dataclass
class Boundary:
    """What the loop knows at the end of an inner loop, for the actions to read and add to."""

    step: int  # The global step reached.
    num_steps: int  # The run's last step.
    loop_steps: int  # Steps the loop just ended ran.
    loop_seconds: float  # Its time, inside the loop only.
    # The last step's gradients, as each replica took them (see steps.reduce_gradients), when a
    # loop was asked for them, or the first step's; else None.
    gradients: list | None = None
    # `train/<tag>` and `eval/<tag>` values of this boundary, filled by the actions that write
    # them: what the console shows and the run returns.
    values: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        """True at the run's last step."""
        return self.step >= self.num_steps


class Action:
    """One piece of boundary work: when it is due (its `schedule`) and what it does (`run`).

    The loop calls `start` once, then for each inner loop `before_loop` and `after_loop`, then
    at the boundary `run` if `is_due` (its time counted to `phase`, see common.loop.phase_times).
    Subclasses override `run` (and, for work around the loop itself, the other methods).
    """

    phase = "boundaries"  # The phase its work counts to, in the run's `time:` line.

    def __init__(self, schedule: Schedule = Schedule()) -> None:
        """Args:
        schedule: when it is due (default: at every boundary).
        """
        self.schedule = schedule
        self.last_step = 0  # The last boundary it was due at, or where the run started.
        self.num_steps = 0  # The run's last step: see `start`.

    def start(self, step: int, num_steps: int) -> None:
        """Before the first inner loop: the step the run started from (0, or a resumed run's
        checkpoint), from which `every_steps` counts, and the run's last step."""
        self.last_step = step
        self.num_steps = num_steps

    def next_loop_end(self, step: int) -> int | None:
        """A step after `step` at which a loop must end for this action, or None."""
        return self.schedule.next_loop_end(step)

    def is_due(self, step: int) -> bool:
        """Whether this action is due at a boundary at `step`."""
        return self.schedule.is_due(step, self.last_step, self.num_steps)

    def before_loop(self, loop: Loop) -> None:
        """Before an inner loop runs (and outside its timing): e.g. ask for its gradients."""

    def after_loop(self, loop: Loop) -> None:
        """Right after an inner loop, before its loss is checked: e.g. stop the profiler."""

    def scalars(self, boundary: Boundary) -> dict[str, float]:
        """More train scalars for this boundary, written to `train/` with the loop's own (and
        shown and returned as `train/<tag>`). Asked of every app action at every boundary, before
        any action runs; none by default."""
        del boundary
        return {}

    def run(self, boundary: Boundary) -> None:
        """What the action does when due (the loop then records `boundary.step` as its
        `last_step`)."""
        raise NotImplementedError


class Callback(Action):
    """`function(step)` at the boundaries its schedule picks (default: every boundary), after
    the eval and before the progress line, on the loop's thread: the weights are those the
    boundary's eval read, and nothing trains meanwhile.

        # A loop ends at the switch, so it flips at exactly that step.
        Callback(switch_dropout_off, at_steps=(config.dropout_off_at_step,))
    """

    def __init__(
        self,
        function: Callable[[int], None],
        every_steps: int | None = None,
        at_steps: Iterable[int] = (),
        at_end: bool = False,
    ) -> None:
        """Args:
        function: called with the global step.
        every_steps, at_steps, at_end: when (see `Schedule`); none of them: every boundary.
        """
        super().__init__(Schedule(every_steps, tuple(at_steps), at_end))
        self.function = function

    def run(self, boundary: Boundary) -> None:
        self.function(boundary.step)


class TrainScalars(Action):
    """More train scalars at every boundary (`function() -> {tag: value}`): written to `train/`
    with the loop's own (loss, learning rate, speed), shown on the console as `train/<tag>` when
    `progress_metrics` names them, and returned as such. E.g. a schedule's value:

        TrainScalars(lambda: {"beta": float(kl_weight(state.global_step))})
    """

    def __init__(self, function: Callable[[], dict[str, float]]) -> None:
        """Args:
        function: the scalars now, by tag (without `train/`).
        """
        super().__init__()
        self.function = function

    def scalars(self, boundary: Boundary) -> dict[str, float]:
        del boundary
        return self.function()

    def run(self, boundary: Boundary) -> None:
        """Nothing more: its scalars are written by the loop's train scalars."""


def steps_to_next_boundary(
    step: int, num_steps: int, steps_per_loop: int, actions: Sequence[Action] = ()
) -> int:
    """How many steps the next inner loop runs: to the next multiple of `steps_per_loop`, the
    run's last step, or the first step after `step` at which an action must run exactly (see
    `Schedule.at_steps`), whichever comes first (0 when `step` is already `num_steps`)."""
    loop_end = min((step // steps_per_loop + 1) * steps_per_loop, num_steps)
    for action in actions:
        action_end = action.next_loop_end(step)
        if action_end is not None and step < action_end < loop_end:
            loop_end = action_end
    return max(loop_end - step, 0)
