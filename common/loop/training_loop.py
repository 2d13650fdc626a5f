"""The outer training loop, written once for every app, in the manner of Orbit's `Controller`.

An app's `train.py` writes what is its own (the model, the metrics, one replica's train step and
eval step as top-level functions, and whatever it does at a boundary, as actions) and hands them
to `run`, which does everything else, the same way for every app and every `tf.distribute`
strategy:

    strategy = create_strategy(config)                # Devices first, then every seed.
    with strategy.scope():
        state = TrainState.create(config, [model], train_metrics, eval_metrics)
    run(config, logdir, state, train_step, eval_step, load_datasets, actions=[...]):
        with TrainingRun(logdir, ...) as run:          # Lock, restore, signals: training_run.py.
            start_step = run.restore()                 # A finished run stops here, untouched.
            datasets = load_datasets()                 # Shuffle reseeded with the step on resume.
            writers = run.open_writers()               # Drops points a crash left behind.
            if start_step == 0:
                hparams, config and dataset text at step 0 (run_start.py)
                step one, inside the graph trace       # The one moment trace_on sees the step.
            while step < num_steps:                    # _Controller.train
                n = steps to the next boundary         # actions.steps_to_next_boundary
                loss = train_loop(iterator, n)         # n steps, ONE call (before an eval: n - 1,
                                                       # then one step whose gradients come out).
                stop if the loss (or a gradient) is not finite
                boundary: each action, when due (actions.py):
                    train scalars; the eval, its summaries handed to their own thread with a
                    weights snapshot; the app's actions; one progress line; a checkpoint when
                    due (and on SIGINT/SIGTERM; at the last step)
        print and return the final metrics

Loops end on multiples of `steps_per_loop`, at the last step and where an action must run
exactly (`actions.Schedule.at_steps`), so points land on round steps. Python runs once per loop,
not once per step; a boundary costs a few `tf.function` calls (about 0.2 ms each on 2 CPU
cores), so a loop should last well over 10 ms.
"""

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from common import distribution, settings, summaries
from common.checkpoints import resumed_settings
from common.logdir import run_record
from common.loop import actions as actions_lib
from common.loop import (
    evaluation,
    input_pipeline,
    mixed_precision,
    phase_times,
    progress,
    run_start,
    standard_actions,
    steps,
    train_state,
    training_run,
)


def create_strategy(config: settings.TrainingSettings) -> tf.distribute.Strategy:
    """A run's first TensorFlow calls: the `tf.distribute` strategy, the mixed-precision policy
    (before any model is built), then every seed."""
    # First: the threads and the split of the CPU into logical devices must precede every other
    # TensorFlow call.
    distribution.set_compute_threads()
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    # Before any model is built: a layer takes the global policy when it is made. Set for every
    # run, "none" too, since a process may train several runs (tests do).
    keras.mixed_precision.set_global_policy(mixed_precision.POLICIES[config.mixed_precision])
    keras.utils.set_random_seed(config.seed)
    return strategy


@dataclasses.dataclass(frozen=True)
class AppSummaries:
    """What an app adds to TensorBoard beside the loop's own summaries."""

    # on_eval(step, eval_results, writers) after each eval: the app's own eval summaries
    # (images, curves, embeddings), or what it keeps of the results. `eval_results` holds every
    # eval metric's result: a float for a scalar, a NumPy array otherwise (counts a PR curve or
    # a confusion matrix is drawn from, taken in the eval's own pass: see
    # common/summaries/metrics.py), which only on_eval sees. It runs on the summaries' thread
    # (common/summaries/background.py), in order, while training goes on, inside
    # `train_state.weights_as_of`: calling the models eagerly there reads their weights as they
    # were at `step` (a `tf.function` would read the live ones). What it writes names its writer
    # and step (`writers.eval.as_default(step=step)`).
    on_eval: evaluation.OnEval | None = None
    # The Custom Scalars charts (see `summaries.scalars_layout`), written once at step 0.
    scalars_layout: summaries.layout_pb2.Layout | None = None
    # (name, tf.function, args) of other functions whose op graphs to log as `graph/<name>`,
    # each traced on its first call, right after the train step's, in a new run.
    graphs: Sequence[run_start.Graph] = ()


def run(
    config: settings.TrainingSettings,
    logdir: str,
    state: train_state.TrainState,
    train_step: steps.TrainStep,
    eval_step: steps.EvalStep,
    load_datasets: Callable[[], train_state.Datasets],
    *,
    actions: Sequence[actions_lib.Action] = (),
    app_summaries: AppSummaries = AppSummaries(),
    progress_metrics: Sequence[str] | None = None,
    eval_batch_size: int | None = None,
    final_metrics: Callable[[], dict[str, float]] | None = None,
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps in `logdir`, resuming from its latest checkpoint.

    Running it again on the same logdir resumes from the latest checkpoint; on a finished run it
    does nothing and says so (and returns only `steps`).

    Args:
        config: the app's settings (a `TrainingSettings`): steps, batch, loop, eval and checkpoint
            cadence, profile, XLA.
        logdir: the run's directory: `train/` and `eval/` summaries, `checkpoints/`.
        state: from `TrainState.create`, in the strategy's scope.
        train_step: `train_step(state, *batch) -> (loss_or_nan(loss, gradients), gradients)`,
            one replica's share of a step (see `steps.make_train_step`). At every eval, the
            gradients of the step before it (summed over the replicas) are written to `train/` as
            histograms `gradients/<variable>` and the scalar `gradients/global_norm`.
        eval_step: `eval_step(state, *batch)`, one replica's share of an eval batch.
        load_datasets: returns the app's datasets, unbatched; called once the checkpoint is
            restored, so a finished run loads nothing.
        actions: the app's own boundary work (common/loop/actions.py), run after the eval and
            before the progress line, each when due: `actions.Callback(function, at_steps=...)`
            (a loop ends at each of `at_steps`), `actions.TrainScalars(function)` (more train
            scalars at every boundary), or a subclass of `actions.Action`.
        app_summaries: the app's `on_eval`, Custom Scalars layout and other graphs.
        progress_metrics: the console's `train/<tag>` and `eval/<tag>` values, in order
            (default: every train metric, every eval metric with a scalar result,
            `train/steps_per_second`).
        eval_batch_size: the eval batch, if not `config.batch_size`.
        final_metrics: more values for the returned metrics, called once training is done.

    Returns:
        `train/<tag>` and `eval/<tag>` at the last step (scalars only: an eval metric's array
        result is on_eval's alone), whatever `final_metrics` adds, and
        `steps`, `resumed_from_step`, `examples_per_second` (inside the loops only),
        `wall_time_seconds` (all of this call), `train_step_traces` and `eval_step_traces` (1:
        never retraced), and `time/<phase>` (see common.loop.phase_times).

    Raises:
        common.errors.UserError: for an unusable logdir, unavailable data, a checkpoint of
            another model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    times = phase_times.PhaseTimes()  # Setup: from now to the first step.
    # Before the restore: the settings, and the learning rates as this code built them.
    run_settings = resumed_settings.describe(config, state.optimizers)
    training = training_run.TrainingRun(
        logdir,
        state.global_step,
        config.checkpoint_every_steps,
        strategy=state.strategy,
        run_settings=run_settings,
        app=run_record.app_name(config),  # A logdir holding another app's run is refused.
        **train_state.checkpoint_objects(state),
    )
    # Checks and locks the logdir first, so a bad one fails before anything slow; the debugger's
    # dump (if on) is written out before the run's lock is released.
    with training, contextlib.ExitStack() as debugger:
        start_step = training.restore()
        if training.already_finished(config.num_steps):
            return {"steps": start_step}
        training.check_resume()  # A refused resume says so before the debugger writes a dump.
        # What this command changed: said, and applied (or refused).
        config_changed = bool(start_step) and run_start.apply_resumed_settings(
            training, config, state, run_settings, start_step
        )
        if config.debugger:  # Before any step is traced: only functions traced after it are seen.
            run_start.start_debugger(training, debugger)
        datasets = load_datasets()
        run_start.print_where_it_runs(
            training, config, state.strategy, datasets.description, logdir
        )
        controller = _Controller(config, training, state, train_step, datasets, start_step, times)
        evaluate = evaluation.make_evaluate(
            state, eval_step, datasets.eval, eval_batch_size or config.batch_size
        )
        writers = training.open_writers()
        # Waits for the eval summaries' thread (two evals' work pending, the run's end) are
        # theirs, whichever phase they happen in.
        writers.background.wait_phase = lambda: times.phase("eval summaries", count=False)
        console_names = list(progress_metrics or _default_progress(state))
        controller.actions = _boundary_actions(
            controller, evaluate, writers, app_summaries.on_eval, actions, console_names
        )
        if config_changed:  # The Text tab's config as of the resume, beside step 0's.
            # At the resumed run's first step: a later resume from the same checkpoint trims it
            # (and writes its own), so the Text tab never shows two configs at one step.
            run_start.write_config_text(config, writers, start_step + 1)
        if start_step == 0:
            run_start.write_run_description(
                config, training.output_dir, writers, datasets.description
            )
            if app_summaries.scalars_layout:
                summaries.write_scalars_layout(writers.train, app_summaries.scalars_layout)
        times.add("setup", times.total())
        if start_step == 0:
            with times.phase("first step"):
                controller.gradients = run_start.first_step(
                    training,
                    state,
                    controller.train_function,
                    controller.iterator,
                    writers,
                    app_summaries.graphs,
                )
        controller.train()
        writers.background.wait()  # The last eval's summaries: on disk before the run ends.
        close_start = time.perf_counter()
    times.add("close", time.perf_counter() - close_start)  # The writers, the record, the lock.
    times.background_seconds = writers.background.cpu_seconds

    extra = final_metrics() if final_metrics else {}
    extra["eval_step_traces"] = evaluate.tracing_count()
    return controller.finish(console_names, extra)


def _boundary_actions(
    controller: "_Controller",
    evaluate: Callable[[], dict],
    writers: summaries.SummaryWriters,
    on_eval: evaluation.OnEval | None,
    app_actions: Sequence[actions_lib.Action],
    console_names: Sequence[str],
) -> list[actions_lib.Action]:
    """Every action of the run, in the order they run at a boundary: the train scalars (with
    what the app's actions add), the eval, the app's own, the progress line (the chief's), the
    checkpoint; and the profile window, which works around the second loop."""
    config, training, state = controller.config, controller.training, controller.state
    every_action: list[actions_lib.Action] = [
        standard_actions.WriteTrainScalars(state, writers, app_actions),
        evaluation.Evaluate(
            state,
            evaluate,
            writers,
            controller.times,
            config.eval_every_steps,
            training.is_chief,
            on_eval,
        ),
        *app_actions,
    ]
    if training.is_chief:
        every_action.append(standard_actions.PrintProgress(console_names, config.num_steps))
    every_action.append(standard_actions.SaveCheckpoints(training))
    if config.profile:
        every_action.append(standard_actions.ProfileWindow(training.output_dir, training.is_chief))
    return every_action


class _Controller:
    """One run's outer loop: inner loops of many steps, and the actions at their boundaries."""

    def __init__(
        self,
        config: settings.TrainingSettings,
        training: training_run.TrainingRun,
        state: train_state.TrainState,
        train_step: steps.TrainStep,
        datasets: train_state.Datasets,
        start_step: int,
        times: phase_times.PhaseTimes,
    ) -> None:
        self.config, self.training, self.state, self.times = config, training, state, times
        self.start_step = start_step  # The restored step: 0 for a new run.
        # Batches of the global batch size; the strategy splits each over the replicas. A resumed
        # run reshuffles with another seed, so it does not replay the same batches.
        train_batches = input_pipeline.shuffled_batches(
            datasets.train, config.batch_size, config.seed + start_step
        )
        self.iterator = iter(state.strategy.experimental_distribute_dataset(train_batches))
        self.train_function = steps.make_train_step(state, train_step, config.jit_compile)
        self.train_loop = steps.make_train_loop(self.train_function)
        self.actions: list[actions_lib.Action] = []
        self.gradients = None  # The last step's, as each replica took them, before an eval.
        self.loops_run = 0
        self.train_seconds = 0.0  # Inside train_loop only: eval and summaries are not speed.
        self.metrics: dict[str, float] = {}  # The returned metrics, as of the last boundary.
        self.step = self.first_loop_step = start_step

    def train(self) -> None:
        """Inner loops to `config.num_steps`, each followed by its boundary's actions."""
        num_steps = self.config.num_steps
        for action in self.actions:
            action.start(self.start_step, num_steps)
        # After a new run's first step: its speed is left out of the run's.
        self.step = self.first_loop_step = int(self.state.global_step.numpy())
        # `or not self.loops_run`: a one-step run still gets one boundary (after a loop of no
        # steps), with summaries and eval.
        while self.step < num_steps or not self.loops_run:
            loop_steps = actions_lib.steps_to_next_boundary(
                self.step, num_steps, self.config.steps_per_loop, self.actions
            )
            boundary = self.train_n_steps(loop_steps)
            for action in self.actions:
                if action.is_due(boundary.step):
                    with self.times.phase(action.phase):
                        action.run(boundary)
                    action.last_step = boundary.step
            # The returned metrics keep what was measured; the run's speed is reported whole.
            values = boundary.values
            self.metrics.update({name: values[name] for name in values if not _is_rate(name)})

    def train_n_steps(self, num_steps: int) -> actions_lib.Boundary:
        """One inner loop of `num_steps` steps (one `tf.function` call, unless an action asks
        for the last step's gradients or step markers), and the boundary after it.

        Raises:
            common.errors.UserError: for a non-finite loss (or gradient) in the loop.
        """
        loop = actions_lib.Loop(self.loops_run, self.step, num_steps)
        for action in self.actions:  # E.g. the eval asks for gradients, the profiler starts.
            action.before_loop(loop)
        loop_start = time.perf_counter()
        with self.times.phase("loops"):
            loss, last_gradients = steps.run_steps(
                self.train_loop,
                self.train_function,
                self.iterator,
                num_steps,
                with_gradients=loop.with_gradients,
                profile_from_step=self.step if loop.step_markers else None,
            )
            self.step = int(self.state.global_step.numpy())  # Reading the step waits for it.
        loop_seconds = time.perf_counter() - loop_start
        self.train_seconds += loop_seconds
        self.loops_run += 1
        for action in self.actions:  # E.g. the profiler stops, even if the loss is NaN.
            action.after_loop(loop)
        if num_steps:
            self.training.check_loss(float(loss), self.step)
            self.gradients = last_gradients
        return actions_lib.Boundary(
            step=self.step,
            num_steps=self.config.num_steps,
            loop_steps=num_steps,
            loop_seconds=loop_seconds,
            gradients=self.gradients,
        )

    def finish(self, console_names: Sequence[str], extra: dict[str, float]) -> dict[str, float]:
        """The returned metrics, and the `final:` line: the console's values, then the run's."""
        results = {**self.metrics, **extra}
        results["steps"] = self.step
        results["resumed_from_step"] = self.start_step
        examples = (self.step - self.first_loop_step) * self.state.global_batch_size
        seconds = self.train_seconds
        results["examples_per_second"] = examples / seconds if seconds else 0.0
        results["wall_time_seconds"] = self.times.total()
        # 1 unless something forced a retrace (a new input shape or dtype): worth watching.
        results["train_step_traces"] = self.train_function.experimental_get_tracing_count()
        shown = {
            name: value
            for name, value in results.items()
            if name in console_names
            or name in extra
            or not name.startswith(("train/", "eval/", "time/"))
        }
        # Where the time went, then the run's figures: `final:` stays the last line.
        print(self.times.line(), flush=True)
        print("final: " + progress.format_metrics(shown), flush=True)
        return {**results, **self.times.as_metrics()}


def _default_progress(state: train_state.TrainState) -> list[str]:
    # An eval metric with an array result is named here too, but never shown: the console shows
    # a boundary's `values`, which hold scalar results only (what an array metric is, the reader
    # tells only once it has read it).
    return [
        *(f"train/{name}" for name in state.train_metrics),
        *(f"eval/{name}" for name in state.eval_metrics),
        "train/steps_per_second",
    ]


def _is_rate(name: str) -> bool:
    """Train scalars about the loop rather than the model, left out of the returned metrics."""
    return name in _RATES or name.startswith("train/learning_rate/")


_RATES = ("train/learning_rate", "train/steps_per_second", "train/examples_per_second")
