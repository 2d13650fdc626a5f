"""The loop's own boundary work, as actions (see common/loop/actions.py), in the order the loop
runs them at a boundary: the train scalars first, then the eval (common/loop/evaluation.py) and
the app's actions, then the progress line and the checkpoint. And the profile window, which
wraps the run's second inner loop rather than following it.
"""

from collections.abc import Sequence

import tensorflow as tf

from common import summaries
from common.loop import actions, mixed_precision, progress, train_state, training_run
from common.summaries import metrics


class WriteTrainScalars(actions.Action):
    """At every boundary: the train metrics (read and reset: each boundary's cover its loop),
    the learning rates, the loss scale, the loop's speed, and whatever the actions' `scalars`
    add, written to `train/` in one call and kept as the boundary's `train/<tag>` values."""

    def __init__(
        self,
        state: train_state.TrainState,
        writers: summaries.SummaryWriters,
        scalar_sources: Sequence[actions.Action],
    ) -> None:
        """Args:
        state: the run's state.
        writers: the run's writers (`train/`).
        scalar_sources: the actions whose `scalars` to add (the app's `TrainScalars`).
        """
        super().__init__()
        self.state = state
        self.scalar_sources = scalar_sources
        self.read_train_metrics = metrics.MetricReader(state.train_metrics)
        self.write_train_scalars = summaries.ScalarWriter(writers.train)

    def run(self, boundary: actions.Boundary) -> None:
        scalars = train_scalars(
            self.read_train_metrics, self.state, boundary.loop_steps, boundary.loop_seconds
        )
        for source in self.scalar_sources:
            scalars.update(source.scalars(boundary))
        self.write_train_scalars(scalars, boundary.step)
        boundary.values.update({f"train/{name}": value for name, value in scalars.items()})


def train_scalars(
    read_train_metrics: metrics.MetricReader,
    state: train_state.TrainState,
    loop_steps: int,
    loop_seconds: float,
) -> dict[str, float]:
    """A boundary's train scalars: the metrics (read and reset), the learning rate and loss scale
    (`learning_rate`, or `learning_rate/<name>` for each of several optimizers: the value now, a
    schedule's at the optimizer's step), the speed."""
    scalars = read_train_metrics()
    for name, optimizer in state.optimizers.items():
        suffix = "" if len(state.optimizers) == 1 else f"/{name}"
        scalars[f"learning_rate{suffix}"] = float(optimizer.learning_rate.numpy())
        scale = mixed_precision.loss_scale(optimizer)
        if scale is not None:  # mixed_float16: it halves at each overflowed (skipped) step.
            scalars[f"loss_scale{suffix}"] = float(scale.numpy())
    if loop_steps:  # (A one-step run's only boundary follows no loop: no speed.)
        scalars["steps_per_second"] = loop_steps / loop_seconds
        scalars["examples_per_second"] = loop_steps * state.global_batch_size / loop_seconds
    return scalars


class PrintProgress(actions.Action):
    """At every boundary, on the chief: `step 500/2000 ( 25%)  train/loss=...  ETA 0:01:23`,
    this boundary's values only (no eval values from an earlier boundary)."""

    def __init__(self, console_names: Sequence[str], num_steps: int) -> None:
        """Args:
        console_names: the `train/<tag>` and `eval/<tag>` values to show, in order.
        num_steps: the run's last step.
        """
        super().__init__()
        self.console_names = console_names
        self.time_left = progress.TimeLeft(num_steps)  # The console's ETA.

    def run(self, boundary: actions.Boundary) -> None:
        values = boundary.values
        console = {name: values[name] for name in self.console_names if name in values}
        seconds_left = self.time_left.after_loop(
            boundary.step, boundary.loop_steps, boundary.loop_seconds
        )
        progress.print_progress(boundary.step, boundary.num_steps, console, seconds_left)


class SaveCheckpoints(actions.Action):
    """At every boundary, a checkpoint when `checkpoint_every_steps` says (and on SIGINT/SIGTERM,
    a save, then `common.errors.Interrupted`): `TrainingRun.end_of_loop`. At the run's last
    step, a save unless that step's is saved already."""

    phase = "checkpoints"

    def __init__(self, run: training_run.TrainingRun) -> None:
        """Args:
        run: the run's `TrainingRun`, which knows the checkpoints' cadence.
        """
        super().__init__()
        self.training_run = run

    def run(self, boundary: actions.Boundary) -> None:
        self.training_run.end_of_loop(boundary.step)  # When due; on a signal, save and stop.
        if boundary.is_last and self.training_run.last_saved_step != boundary.step:
            self.training_run.save(boundary.step)


class ProfileWindow(actions.Action):
    """`--profile`: the run's second inner loop traced by the profiler into
    `train/plugins/profile/<time>/`, each step in a step marker of its own (see
    `steps.run_with_step_markers`). The second, not the first: the first includes the loop's
    one-time tracing. Never due at a boundary: its work is around the loop."""

    PROFILED_LOOP = 1  # The loop's index: the second one this process runs.

    def __init__(self, output_dir: str, is_chief: bool) -> None:
        """Args:
        output_dir: the run's directory (the profile goes to its `train/`).
        is_chief: whether this worker says where the profile is.
        """
        super().__init__()
        self.output_dir = output_dir
        self.is_chief = is_chief

    def before_loop(self, loop: actions.Loop) -> None:
        if loop.index == self.PROFILED_LOOP:
            tf.profiler.experimental.start(f"{self.output_dir}/train")
            loop.step_markers = True  # An unprofiled loop stays one call of many steps.

    def is_due(self, step: int) -> bool:
        del step
        return False  # Its work is before and after the loop it profiles.

    def after_loop(self, loop: actions.Loop) -> None:
        if loop.index == self.PROFILED_LOOP:
            tf.profiler.experimental.stop()  # Writes train/plugins/profile/<time>/.
            if self.is_chief:
                print(
                    f"profile: {loop.num_steps} steps traced into {self.output_dir}/train/plugins/"
                    "profile, one step marker each; open TensorBoard's Profile tab (overview_page: "
                    "the step-time breakdown)",
                    flush=True,
                )
