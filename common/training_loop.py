"""The outer training loop, written once for every app: Orbit's `Controller`, as one function.

An app's `train.py` writes what is its own (the model, the optimizer, the metrics, one replica's
train step and eval step, and whatever it does at a boundary) and hands them to `run`, which does
everything else, the same way for every app and every `tf.distribute` strategy:

    strategy, global_step = start(config)             # Strategy first, then seeds.
    ... the app builds its model, optimizer and metrics in strategy.scope() ...
    run(config, logdir, strategy, global_step, ...):
        with TrainingRun(logdir, ...) as run:          # Lock, restore, signals: training_run.py.
            start_step = run.restore()                 # A finished run stops here, untouched.
            datasets = load_datasets(); pipelines      # Shuffle reseeded with the step on resume.
            writers = run.open_writers()               # Drops points a crash left behind.
            if start_step == 0:
                hparams, config and dataset text at step 0
                step one, inside the graph trace       # The one moment trace_on sees the step.
            while step < num_steps:
                loss = train_loop(iterator, n)         # n steps in ONE tf.function call.
                stop if the loss (or a gradient) is not finite
                boundary: train scalars; eval, histograms and on_eval when due; on_boundary;
                          one progress line; a checkpoint when due (and on SIGINT/SIGTERM)
            final checkpoint
        print and return the final metrics

Loops end on multiples of `steps_per_loop` (and at `boundary_steps`), so points land on round steps.
Python runs once per loop, not once per step; a boundary costs a few `tf.function` calls (about
0.2 ms each on 2 CPU cores), so a loop should last well over 10 ms.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import keras
import tensorflow as tf

from common import (
    distribution,
    graphs,
    metrics,
    progress,
    settings,
    step_counter,
    summaries,
    training_run,
)

# What a train step returns for the loop's non-finite check: see training_run.loss_or_nan.
loss_or_nan = training_run.loss_or_nan


class Datasets(Protocol):
    """What an app's `data.py` loads: unbatched train and eval examples, and their origin."""

    train: tf.data.Dataset
    eval: tf.data.Dataset
    description: str


def start(config: settings.TrainingSettings) -> tuple[tf.distribute.Strategy, tf.Variable]:
    """A run's first TensorFlow calls: the strategy, every seed, and the global step.

    Returns:
        The strategy (build the model, optimizer and metrics in its `scope()`), and the int64
        global step that stamps every summary (the VAE reads it for its KL schedule).
    """
    # First: splitting the CPU into logical devices must precede every other TensorFlow call.
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():  # Mirrored on every replica; counts once per step (ONLY_FIRST_REPLICA).
        global_step = step_counter.create_global_step()
    return strategy, global_step


def as_tuple(batch: Any) -> tuple:
    """A batch as step arguments: `(images, labels)` stays as it is; a lone tensor, `(x,)`."""
    return batch if isinstance(batch, tuple) else (batch,)


def make_train_step(
    strategy: tf.distribute.Strategy,
    replica_step: Callable[..., tf.Tensor],
    global_step: tf.Variable,
    jit_compile: bool = False,
) -> Callable[..., tf.Tensor]:
    """The `tf.function` that runs one train step on every replica: what the Graphs tab shows.

    Args:
        strategy: the run's strategy.
        replica_step: one replica's share of a step, `replica_step(*batch) -> loss`: per-example
            losses scaled by the global batch (`tf.nn.compute_average_loss`), the gradients
            applied, the train metrics updated, and `loss_or_nan(loss, gradients)` returned.
        global_step: incremented once per step.
        jit_compile: XLA-compile the step (its graph is then written from the concrete function,
            see common.graphs, as a traced export of an XLA step is empty).

    Returns:
        `train_step(*batch) -> loss`, the replicas' losses summed: the whole batch's mean loss,
        the same on every worker, so all of them break out of a loop on a NaN together.
    """

    @tf.function(jit_compile=jit_compile)
    def train_step(*batch: tf.Tensor) -> tf.Tensor:
        per_replica_loss = strategy.run(replica_step, args=batch)
        global_step.assign_add(1)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

    return train_step


def make_train_loop(train_step: Callable[..., tf.Tensor]) -> Callable[..., tf.Tensor]:
    """`train_loop(iterator, num_steps) -> last loss`: many steps in one `tf.function` call.

    `num_steps` is a tensor, so a shorter loop reuses the graph instead of retracing, and calling
    the `train_step` tf.function reuses its one traced graph. The loop breaks at the first step
    whose loss (or gradient) is not finite, and returns that NaN for the caller to report.
    """

    @tf.function
    def train_loop(iterator: Any, num_steps: tf.Tensor) -> tf.Tensor:
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss = train_step(*as_tuple(next(iterator)))
            if not tf.math.is_finite(loss):
                break
        return loss

    return train_loop


def make_evaluate(
    strategy: tf.distribute.Strategy,
    replica_eval_step: Callable[..., None],
    eval_metrics: dict[str, keras.metrics.Metric],
    batches: tf.data.Dataset,
) -> Callable[[], dict[str, float]]:
    """`evaluate() -> {name: value}`: one pass over `batches` in one `tf.function` call.

    `replica_eval_step(*batch)` updates the eval metrics with per-example values: the last batch
    is smaller, and a replica may get none of it. The metrics are read and reset in one call.
    """
    distributed_batches = strategy.experimental_distribute_dataset(batches)

    @tf.function
    def eval_loop(batches: Any) -> None:
        for batch in batches:
            strategy.run(replica_eval_step, args=as_tuple(batch))

    def evaluate() -> dict[str, float]:
        eval_loop(distributed_batches)
        return metrics.read_and_reset(eval_metrics)

    return evaluate


def checkpoint_objects(
    models: Sequence[keras.Model], optimizer: keras.optimizers.Optimizer
) -> dict[str, Any]:
    """What a checkpoint holds: `model=` (or each model by its name) and `optimizer=`."""
    named = {"model": models[0]} if len(models) == 1 else {model.name: model for model in models}
    return {**named, "optimizer": optimizer}


def next_loop_steps(
    step: int, num_steps: int, steps_per_loop: int, boundary_steps: Sequence[int] = ()
) -> int:
    """Steps until the next boundary: the next multiple of `steps_per_loop`, the last step, or
    one of `boundary_steps`, whichever comes first (0 when `step` is already `num_steps`)."""
    loop_end = min((step // steps_per_loop + 1) * steps_per_loop, num_steps)
    for boundary in boundary_steps:
        if step < boundary < loop_end:
            loop_end = boundary
    return max(loop_end - step, 0)


def eval_is_due(step: int, last_eval_step: int, config: settings.TrainingSettings) -> bool:
    """At the first boundary at or after each multiple of `eval_every_steps`, and at the end."""
    every = config.eval_every_steps
    return step // every > last_eval_step // every or step == config.num_steps


# Train scalars about the loop rather than the model, left out of the returned metrics.
_RATES = ("train/learning_rate", "train/steps_per_second", "train/examples_per_second")


@dataclasses.dataclass
class _Progress:
    """What the loop remembers between boundaries."""

    step: int
    first_step: int
    last_eval_step: int
    loops_run: int = 0
    train_seconds: float = 0.0  # Inside train_loop only: eval and summaries are not speed.
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


def run(
    config: settings.TrainingSettings,
    logdir: str,
    strategy: tf.distribute.Strategy,
    global_step: tf.Variable,
    *,
    models: Sequence[keras.Model],
    optimizer: keras.optimizers.Optimizer,
    train_step: Callable[..., tf.Tensor],
    train_metrics: dict[str, keras.metrics.Metric],
    eval_step: Callable[..., None],
    eval_metrics: dict[str, keras.metrics.Metric],
    load_datasets: Callable[[], Datasets],
    train_pipeline: Callable[[tf.data.Dataset, int, int], tf.data.Dataset],
    eval_pipeline: Callable[[tf.data.Dataset, int], tf.data.Dataset],
    eval_batch_size: int | None = None,
    progress_metrics: Sequence[str] | None = None,
    boundary_scalars: Callable[[], dict[str, float]] | None = None,
    on_eval: Callable[[int, dict[str, float], summaries.SummaryWriters], None] | None = None,
    on_boundary: Callable[[int], None] | None = None,
    boundary_steps: Sequence[int] = (),
    extra_graphs: Sequence[tuple[str, Callable[..., Any], tuple]] = (),
    final_metrics: Callable[[], dict[str, float]] | None = None,
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps in `logdir`, resuming from its latest checkpoint.

    Args:
        config: the app's settings (a `TrainingSettings`): steps, batch, loop, eval, checkpoint
            cadence, profile, XLA.
        logdir: the run's directory: `train/` and `eval/` summaries, `checkpoints/`.
        strategy, global_step: from `start(config)`.
        models: the Keras models, for the Graphs and Text tabs, weight histograms and the
            checkpoint.
        optimizer: its learning rate is logged; it is checkpointed with the models.
        train_step: one replica's train step, `train_step(*batch) -> loss_or_nan(...)`.
        train_metrics: updated by `train_step`; read, logged under their keys and reset at every
            boundary.
        eval_step: one replica's eval step, `eval_step(*batch)`, updating `eval_metrics`.
        eval_metrics: read and logged to `eval/` under their keys at every eval.
        load_datasets: returns the app's datasets; called after the checkpoint is restored, so a
            finished run loads nothing.
        train_pipeline: `(dataset, batch_size, seed) -> endless batches`.
        eval_pipeline: `(dataset, batch_size) -> one pass of batches`.
        eval_batch_size: the eval batch, if not `config.batch_size`.
        progress_metrics: the console's `train/<name>` and `eval/<name>` values, in order
            (default: every train metric, every eval metric, `train/steps_per_second`).
        boundary_scalars: more train scalars at each boundary, e.g. a schedule's value.
        on_eval: `on_eval(step, eval_results, writers)` after each eval: the app's own eval
            summaries (images, latent histograms), or what it keeps of the results.
        on_boundary: `on_boundary(step)` at each boundary, after eval: e.g. a switch that must
            flip at an exact step (add that step to `boundary_steps`).
        boundary_steps: steps at which a loop must end, besides multiples of `steps_per_loop`.
        extra_graphs: `(name, tf.function, args)` of other functions whose op graphs to log as
            `graph/<name>`, each traced on its first call, right after the train step's.
        final_metrics: more values for the returned metrics, called once training is done.

    Returns:
        `train/<name>` and `eval/<name>` at the last step, whatever `final_metrics` adds, and
        `steps`, `resumed_from_step`, `examples_per_second`, `wall_time_seconds` and
        `train_step_traces` (1: the step was never retraced). Only `steps` for a finished run.

    Raises:
        common.errors.UserError: for an unusable logdir, unavailable data, a checkpoint of
            another model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    start_time = time.perf_counter()
    run = training_run.TrainingRun(
        logdir,
        global_step,
        config.checkpoint_every_steps,
        strategy=strategy,
        **checkpoint_objects(models, optimizer),
    )
    with run:  # Checks and locks the logdir first, so a bad one fails before anything slow.
        start_step = run.restore()
        if run.already_finished(config.num_steps):
            return {"steps": start_step}
        datasets = load_datasets()
        if run.is_chief:
            print(f"dataset: {datasets.description}", flush=True)
            print(f"logdir:  {logdir}   (view with: tensorboard --logdir {logdir})", flush=True)
        if strategy.num_replicas_in_sync > 1:
            print(distribution.describe(strategy, config.strategy, config.batch_size), flush=True)
        # Pipelines batch by the global batch size; the strategy splits each batch over the
        # replicas. A resumed run reshuffles with another seed, so it does not replay the same
        # batches.
        train_iterator = iter(
            strategy.experimental_distribute_dataset(
                train_pipeline(datasets.train, config.batch_size, config.seed + start_step)
            )
        )
        evaluate = make_evaluate(
            strategy,
            eval_step,
            eval_metrics,
            eval_pipeline(datasets.eval, eval_batch_size or config.batch_size),
        )
        train_function = make_train_step(strategy, train_step, global_step, config.jit_compile)
        train_loop = make_train_loop(train_function)
        variables = [variable for model in models for variable in model.trainable_variables]

        writers = run.open_writers()
        if start_step == 0:
            _write_run_description(config, run.output_dir, writers, datasets.description)
            # Step one runs inside the graph trace: trace_on records a tf.function's graph only
            # while it is first traced, so this is the one moment to capture the whole step.
            loss = graphs.trace_and_write_graphs(
                train_function, as_tuple(next(train_iterator)), models, writers.train
            )
            run.check_loss(float(loss), step=1)
            for name, function, args in extra_graphs:
                graphs.trace_step_graph(function, args, writers.train, name=name)

        state = _Progress(step=int(global_step.numpy()), first_step=0, last_eval_step=start_step)
        state.first_step = state.step
        console_names = list(progress_metrics or _default_progress(train_metrics, eval_metrics))
        # `or not state.metrics`: a one-step run still gets one boundary, with summaries and eval.
        while state.step < config.num_steps or not state.metrics:
            loop_steps = next_loop_steps(
                state.step, config.num_steps, config.steps_per_loop, boundary_steps
            )
            # The second loop, not the first: the first includes train_loop's one-time tracing.
            profiling = config.profile and state.loops_run == 1
            if profiling:
                tf.profiler.experimental.start(f"{run.output_dir}/train")
            loop_start = time.perf_counter()
            loss = train_loop(train_iterator, tf.constant(loop_steps))
            state.step = int(global_step.numpy())  # Reading the step waits for the loop.
            loop_seconds = time.perf_counter() - loop_start
            state.train_seconds += loop_seconds
            state.loops_run += 1
            if profiling:
                tf.profiler.experimental.stop()  # Writes train/plugins/profile/<time>/.
                if run.is_chief:
                    _print_profile_location(run.output_dir, loop_steps)
            if loop_steps:
                run.check_loss(float(loss), state.step)

            # Loop boundary: everything below runs once per loop.
            scalars = metrics.read_and_reset(train_metrics)
            scalars.update(boundary_scalars() if boundary_scalars else {})
            scalars["learning_rate"] = float(optimizer.learning_rate.numpy())
            if loop_steps:  # (A one-step run's only boundary follows no loop: no speed.)
                scalars["steps_per_second"] = loop_steps / loop_seconds
                scalars["examples_per_second"] = loop_steps * config.batch_size / loop_seconds
            summaries.write_scalars(writers.train, scalars, state.step)
            values = {f"train/{name}": value for name, value in scalars.items()}

            if eval_is_due(state.step, state.last_eval_step, config):
                results = evaluate()
                summaries.write_scalars(writers.eval, results, state.step)
                summaries.write_weight_histograms(writers.train, variables, state.step)
                if on_eval:
                    on_eval(state.step, results, writers)
                state.last_eval_step = state.step
                values.update({f"eval/{name}": value for name, value in results.items()})
            # The returned metrics keep what was measured; the run's speed is reported whole.
            state.metrics.update({name: values[name] for name in values if name not in _RATES})
            if on_boundary:
                on_boundary(state.step)
            if run.is_chief:  # This boundary's values only: no eval values from an earlier eval.
                console = {name: values[name] for name in console_names if name in values}
                progress.print_progress(state.step, config.num_steps, console)
            run.end_of_loop(state.step)  # Checkpoint when due; on SIGINT/SIGTERM, save and stop.

        if run.last_saved_step != state.step:
            run.save(state.step)

    return _finish(
        state, start_step, start_time, config, train_function, console_names, final_metrics
    )


def _default_progress(
    train_metrics: dict[str, keras.metrics.Metric], eval_metrics: dict[str, keras.metrics.Metric]
) -> list[str]:
    return [
        *(f"train/{name}" for name in train_metrics),
        *(f"eval/{name}" for name in eval_metrics),
        "train/steps_per_second",
    ]


def _write_run_description(
    config: settings.TrainingSettings,
    output_dir: str,
    writers: summaries.SummaryWriters,
    dataset_description: str,
) -> None:
    """The HParams tab's entry, and the config and dataset in the Text tab, at step 0."""
    settings_dict = dataclasses.asdict(config)
    summaries.write_hparams(output_dir, settings_dict)
    with writers.train.as_default(step=0):
        tf.summary.text("config", summaries.markdown_table(settings_dict))
        tf.summary.text("dataset", dataset_description)


def _print_profile_location(output_dir: str, loop_steps: int) -> None:
    print(
        f"profile: {loop_steps} steps traced into {output_dir}/train/plugins/profile; view it in "
        "TensorBoard's Profile tab (needs the tensorboard-plugin-profile package)",
        flush=True,
    )


def _finish(
    state: _Progress,
    start_step: int,
    start_time: float,
    config: settings.TrainingSettings,
    train_function: Any,
    console_names: Sequence[str],
    final_metrics: Callable[[], dict[str, float]] | None,
) -> dict[str, float]:
    """The returned metrics, and the `final:` line: the console's values, then the run's."""
    results = dict(state.metrics)
    extra = final_metrics() if final_metrics else {}
    results.update(extra)
    steps_trained = state.step - state.first_step
    results["steps"] = state.step
    results["resumed_from_step"] = start_step
    results["examples_per_second"] = (
        steps_trained * config.batch_size / state.train_seconds if state.train_seconds else 0.0
    )
    results["wall_time_seconds"] = time.perf_counter() - start_time
    # 1 unless something forced a retrace (a new input shape or dtype): worth watching.
    results["train_step_traces"] = train_function.experimental_get_tracing_count()
    shown = {
        name: value
        for name, value in results.items()
        if name in console_names or name in extra or not name.startswith(("train/", "eval/"))
    }
    print("final: " + progress.format_metrics(shown), flush=True)
    return results
