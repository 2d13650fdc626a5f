"""The outer training loop, written once for every app: Orbit's `Controller`, as one function.

An app's `train.py` writes what is its own (the model, the metrics, one replica's train step and
eval step as top-level functions, and whatever it does at a boundary) and hands them to `run`,
which does everything else, the same way for every app and every `tf.distribute` strategy:

    strategy = create_strategy(config)                # Devices first, then every seed.
    with strategy.scope():
        state = TrainState.create(config, [model], train_metrics, eval_metrics)
    run(config, logdir, state, train_step, eval_step, load_datasets):
        with TrainingRun(logdir, ...) as run:          # Lock, restore, signals: training_run.py.
            start_step = run.restore()                 # A finished run stops here, untouched.
            datasets = load_datasets()                 # Shuffle reseeded with the step on resume.
            writers = run.open_writers()               # Drops points a crash left behind.
            if start_step == 0:
                hparams, config and dataset text at step 0
                step one, inside the graph trace       # The one moment trace_on sees the step.
            while step < num_steps:
                loss = train_loop(iterator, n)         # n = steps_per_loop steps, ONE call
                                                       # (before an eval: n - 1, then one step
                                                       # whose gradients come out: run_steps).
                stop if the loss (or a gradient) is not finite
                boundary: train scalars; eval when due, its summaries (histograms of the weights
                          and of the loop's last gradients, on_eval) handed to their own thread
                          with a weights snapshot;
                          on_boundary; one progress line; a checkpoint when due (and on
                          SIGINT/SIGTERM)
            final checkpoint
        print and return the final metrics

Loops end on multiples of `steps_per_loop` (and at `boundary_steps`), so points land on round steps.
Python runs once per loop, not once per step; a boundary costs a few `tf.function` calls (about
0.2 ms each on 2 CPU cores), so a loop should last well over 10 ms.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from common import (
    distribution,
    graphs,
    input_pipeline,
    metrics,
    phase_times,
    progress,
    run_record,
    settings,
    step_counter,
    summaries,
    tracing,
    training_run,
)

# What a train step returns for the loop's non-finite check, beside its gradients: see
# training_run.loss_or_nan.
loss_or_nan = training_run.loss_or_nan

Metrics = dict[str, keras.metrics.Metric]

# --debugger: the dump's folder in the run's directory, and how many of the latest op executions
# it keeps (per kind: eager and in-graph). The loop stops inside the step that first went
# non-finite, so the op that started it is among the last ones; a bounded buffer keeps a long run
# from writing every op of every step to disk.
DEBUGGER_DIRECTORY = "debugger"
DEBUGGER_BUFFER_SIZE = 100_000


class Datasets(Protocol):
    """What an app's `data.py` loads: unbatched train and eval examples, and their origin."""

    train: tf.data.Dataset
    eval: tf.data.Dataset
    description: str


@dataclasses.dataclass(frozen=True)
class TrainState:
    """One run's models, optimizer and metrics: what the steps use and a checkpoint saves."""

    models: tuple[keras.Model, ...]
    optimizer: keras.optimizers.Optimizer
    train_metrics: Metrics  # Updated by the train step; logged and reset at every boundary.
    # Updated by the eval step; read at every eval: scalar results logged to eval/, every result
    # (arrays too, e.g. a PRCurveCounts') handed to the app's on_eval.
    eval_metrics: Metrics
    global_step: tf.Variable  # Optimizer steps so far; stamps every summary.
    global_batch_size: int  # Examples per step over all replicas.
    strategy: tf.distribute.Strategy

    @classmethod
    def create(
        cls,
        config: settings.TrainingSettings,
        models: Sequence[keras.Model],
        train_metrics: Metrics,
        eval_metrics: Metrics,
        optimizer: keras.optimizers.Optimizer | None = None,
    ) -> "TrainState":
        """Call it in `strategy.scope()`, so every variable is mirrored on every replica.

        Args:
            config: for the learning rate and the global batch size.
            models: the Keras models the steps use (checkpointed, graphed, histogrammed).
            train_metrics, eval_metrics: `{tag: metric}`; the tags are what TensorBoard shows.
                An eval metric may have an array result (`metrics.PRCurveCounts`,
                `metrics.ConfusionMatrix`): counted in the eval step, it reaches `run`'s
                `on_eval` as a NumPy array, for the app to draw; only scalar results are
                logged as scalars, shown and returned.
            optimizer: default `keras.optimizers.Adam(config.learning_rate)`.
        """
        state = cls(
            models=tuple(models),
            optimizer=optimizer or keras.optimizers.Adam(config.learning_rate),
            train_metrics=train_metrics,
            eval_metrics=eval_metrics,
            global_step=step_counter.create_global_step(),
            global_batch_size=config.batch_size,
            strategy=tf.distribute.get_strategy(),
        )
        # Its slot variables now rather than inside the first step: a tf.function that creates
        # variables is traced twice, and its graph fills up with initializers.
        state.optimizer.build(state.trainable_variables)
        return state

    @property
    def model(self) -> keras.Model:
        """The first (for most apps the only) model."""
        return self.models[0]

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        """Every model's trainable variables, in order: what the gradients are taken of."""
        return [variable for model in self.models for variable in model.trainable_variables]

    def average_loss(self, per_example_losses: tf.Tensor) -> tf.Tensor:
        """One replica's per-example losses summed and divided by the *global* batch size.

        Under a strategy each replica sees a slice of the batch; dividing by the global batch, not
        the slice, makes the replicas' losses (and gradients, which the optimizer sums) add up to
        the whole batch's mean, exactly as on one device.
        """
        return tf.nn.compute_average_loss(
            per_example_losses, global_batch_size=self.global_batch_size
        )


# train_step(state, *batch) -> (loss_or_nan(loss, gradients), gradients)
TrainStep = Callable[..., tuple[tf.Tensor, Sequence[tf.Tensor | None]]]
# The loss, the gradients (`None` for a variable the loss does not reach): see make_train_step.
StepOutputs = tuple[tf.Tensor, list[tf.Tensor | None]]
EvalStep = Callable[..., None]  # eval_step(state, *batch): updates state.eval_metrics


def create_strategy(config: settings.TrainingSettings) -> tf.distribute.Strategy:
    """A run's first TensorFlow calls: the `tf.distribute` strategy, then every seed."""
    # First: the threads and the split of the CPU into logical devices must precede every other
    # TensorFlow call.
    distribution.set_compute_threads()
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    keras.utils.set_random_seed(config.seed)
    return strategy


def as_tuple(batch: Any) -> tuple:
    """A batch as step arguments: `(images, labels)` stays as it is; a lone tensor, `(x,)`."""
    return batch if isinstance(batch, tuple) else (batch,)


def make_train_step(
    state: TrainState, train_step: TrainStep, jit_compile: bool = False
) -> Callable[..., tuple[tf.Tensor, Any]]:
    """The `tf.function` that runs one train step on every replica: what the Graphs tab shows.

    Args:
        state: the run's state, passed to `train_step` first.
        train_step: one replica's share of a step, `train_step(state, *batch) -> (loss,
            gradients)`: the loss averaged with `state.average_loss`, the gradients of it taken
            with respect to `state.trainable_variables` and applied, the train metrics updated,
            and `loss_or_nan(loss, gradients), gradients` returned (this replica's gradients, of
            its share of the batch, in `state.trainable_variables`' order).
        jit_compile: XLA-compile the step (its graph is then written from the concrete function,
            see common.graphs, as a traced export of an XLA step is empty).

    Returns:
        `step(*batch) -> (loss, gradients)`: the replicas' losses summed, the whole batch's mean
        loss, the same on every worker, so all of them break out of a loop on a NaN together; and
        each replica's gradients as they are (one replica's: tensors; more: per-replica values,
        for `reduce_gradients`). Summing them across replicas at every step would cost the step a
        second all-reduce beside the optimizer's; the loop sums its last step's only. Inside
        `make_train_loop`'s loop the gradients go unused and cost nothing (the step is inlined
        and they are pruned), except under `jit_compile`: an XLA step is one compiled unit, which
        outputs them at every step (about 3% of a small MLP's step on 2 CPU cores).

    Raises:
        TypeError: when first traced, if `train_step` returns anything but a pair (an app
            written for the loss alone).
    """

    def replica_step(*batch: tf.Tensor) -> tuple[tf.Tensor, Sequence[tf.Tensor | None]]:
        outputs = train_step(state, *batch)
        if not (isinstance(outputs, tuple | list) and len(outputs) == 2):
            raise TypeError(
                f"{getattr(train_step, '__name__', 'train_step')} must return (loss, gradients): "
                "`return training_loop.loss_or_nan(loss, gradients), gradients`, the gradients "
                f"in state.trainable_variables' order; it returned {type(outputs).__name__}"
            )
        return tuple(outputs)

    def train_step_on_every_replica(*batch: tf.Tensor) -> tuple[tf.Tensor, Any]:
        per_replica_loss, per_replica_gradients = state.strategy.run(replica_step, args=batch)
        state.global_step.assign_add(1)  # ONLY_FIRST_REPLICA aggregation: once per step.
        loss = state.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
        return loss, list(per_replica_gradients)

    return tracing.per_run_function(train_step_on_every_replica, jit_compile=jit_compile)


def reduce_gradients(state: TrainState, per_replica_gradients: Sequence[Any]) -> list[tf.Tensor]:
    """A train step's gradients (`make_train_step`) summed across replicas and workers: the whole
    batch's gradients, as on one device (each replica's loss is divided by the global batch, see
    `TrainState.average_loss`); one replica's pass through. Each is dense: a variable the loss
    does not reach (its gradient `None`) gets zeros, a sparse gradient (`tf.IndexedSlices`, an
    embedding's) its dense tensor. One reduction per variable: on several workers, as many
    round trips at each eval (not at each step)."""
    return [
        tf.zeros_like(variable)
        if gradient is None
        else tf.convert_to_tensor(
            state.strategy.reduce(tf.distribute.ReduceOp.SUM, gradient, axis=None)
        )
        for variable, gradient in zip(state.trainable_variables, per_replica_gradients, strict=True)
    ]


def make_train_loop(
    train_step: Callable[..., tuple[tf.Tensor, Any]],
) -> Callable[..., tf.Tensor]:
    """`train_loop(iterator, num_steps) -> last loss`: many steps in one `tf.function` call.

    `num_steps` is a tensor, so a shorter loop reuses the graph instead of retracing, and calling
    the `train_step` tf.function reuses its one traced graph. The loop breaks at the first step
    whose loss (or gradient) is not finite, and returns that NaN for the caller to report. The
    steps' gradients stay in the graph: `run_steps` takes a loop's last step's, when wanted.
    """

    def train_loop(iterator: Any, num_steps: tf.Tensor) -> tf.Tensor:
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss, _ = train_step(*as_tuple(next(iterator)))
            if not tf.math.is_finite(loss):
                break
        return loss

    return tracing.per_run_function(train_loop)


def run_steps(
    train_loop: Callable[..., tf.Tensor],
    train_step: Callable[..., tuple[tf.Tensor, Any]],
    iterator: Any,
    num_steps: int,
    with_gradients: bool,
    profile_from_step: int | None = None,
) -> tuple[tf.Tensor, Any]:
    """Runs `num_steps` train steps; returns the last one's loss and, `with_gradients`, its
    gradients as `train_step` returns them (each replica's: `reduce_gradients` sums them), the
    ones the optimizer applied last.

    Without gradients, one `train_loop` call. With them, `train_loop` runs all steps but the
    last, and the last is one call of `train_step` (from `make_train_step`) itself, whose outputs
    hold its gradients: one more call from Python (about 0.2 ms), at eval boundaries only. Inside
    `train_loop` they would cost every step (as its loop variables, 10% of
    conditional_dropout's steps on 2 CPU cores) or its trace (a second call of the step in its
    graph: 0.3 s more to build and optimize, once a run). Gradients are `None` when no step ran,
    or a step before the last was not finite (the loss returned is then that one).

    `profile_from_step`: run every step in a profiler step marker of its own, numbered from
    that step + 1 (see `run_with_step_markers`).
    """

    def last_step() -> tuple[tf.Tensor, Any]:
        return train_step(*as_tuple(next(iterator)))

    loop_steps = num_steps - 1 if with_gradients and num_steps else num_steps
    if profile_from_step is not None:
        loss, gradients = run_with_step_markers(
            train_loop,
            iterator,
            profile_from_step,
            loop_steps,
            last_step if loop_steps < num_steps else None,
        )
    else:
        loss = train_loop(iterator, tf.constant(loop_steps)) if loop_steps else tf.constant(0.0)
        finished = loop_steps == num_steps or not math.isfinite(float(loss))
        loss, gradients = (loss, None) if finished else last_step()
    return loss, gradients


def run_with_step_markers(
    train_loop: Callable[..., tf.Tensor],
    iterator: Any,
    step: int,
    num_steps: int,
    last_step: Callable[[], tuple[tf.Tensor, Any]] | None = None,
) -> tuple[tf.Tensor, Any]:
    """`num_steps` steps as `num_steps` one-step `train_loop` calls, each inside a profiler step
    marker numbered by the step it runs: the Profile tab's overview page then has one row per
    step in its step-time graph, and averages over them. Then `last_step()`, if given, in a
    marker of its own (`run_steps`' step with gradients).

    A marker is a Python-side `tf.profiler.experimental.Trace`: it cannot be placed inside the
    `tf.range` loop of a `tf.function`, so a many-step call would be a single "step". Only the
    profiled loop pays for one call per step (about 0.2 ms of dispatch on 2 CPU cores, shown
    between steps); `train_loop` reuses its graph for the one-step count (`num_steps` is a
    tensor). Stops at the first non-finite loss, as `train_loop` does.

    Args:
        train_loop: from `make_train_loop`.
        iterator: the distributed train iterator.
        step: the global step before the loop; the first marker is `step + 1`.
        num_steps: how many steps to run in `train_loop`.
        last_step: one more step, returning its loss and gradients.

    Returns:
        The last step's loss (a NaN or Inf one if the loop stopped there) and, from
        `last_step`, its gradients (else `None`).
    """
    loss, gradients = tf.constant(0.0), None
    one_step = tf.constant(1)
    steps = [lambda: (train_loop(iterator, one_step), None)] * num_steps
    steps += [last_step] if last_step else []
    for index, run_step in enumerate(steps):
        # `_r=1` makes the profiler treat this trace as a step marker (TensorFlow's documented
        # way for custom loops); `float(loss)` waits inside it, so the marker spans the step.
        with tf.profiler.experimental.Trace("train", step_num=step + index + 1, _r=1):
            loss, gradients = run_step()
            finite = math.isfinite(float(loss))
        if not finite:
            break
    return loss, gradients


def slice_examples(tensors: Any, start: tf.Tensor, size: int) -> Any:
    """Examples `start` to `start + size` (fewer at the end) of every tensor in a nest."""
    return tf.nest.map_structure(lambda tensor: tensor[start : start + size], tensors)


def make_evaluate(
    state: TrainState, eval_step: EvalStep, examples: tf.data.Dataset, batch_size: int
) -> Callable[[], metrics.Results]:
    """`evaluate() -> {tag: value}`: one pass over `examples` in batches, in one `tf.function`
    call, the eval metrics read and reset in another (a scalar result as a float, any other as
    a NumPy array: see `metrics.MetricReader`).

    On one replica the examples are held in memory and each batch is a slice inside the graph:
    iterating a tf.data dataset inside a `tf.function` builds an iterator and its threads at
    every call, about 30 ms for 8 small batches on 2 CPU cores, against 2 ms for the slices (it
    was most of an MLP's eval). Several replicas get the batches through
    `experimental_distribute_dataset`, which splits each over them.

    `eval_step(state, *batch)` updates the eval metrics with per-example values: the last batch
    is smaller, and a replica may get none of it.

    Raises:
        common.errors.UserError: if `examples` is empty or endless.
    """
    replica_step = functools.partial(eval_step, state)
    if state.strategy.num_replicas_in_sync == 1:
        tensors = input_pipeline.materialize(examples, "the eval set")
        num_examples = tf.shape(tf.nest.flatten(tensors)[0])[0]

        def eval_loop() -> None:
            for start in tf.range(0, num_examples, batch_size):
                batch = slice_examples(tensors, start, batch_size)
                state.strategy.run(replica_step, args=as_tuple(batch))

        run_eval_loop = eval_function = tracing.per_run_function(eval_loop)
    else:
        batches = input_pipeline.eval_batches(examples, batch_size)
        distributed_batches = state.strategy.experimental_distribute_dataset(batches)

        def distributed_eval_loop(batches: Any) -> None:
            for batch in batches:
                state.strategy.run(replica_step, args=as_tuple(batch))

        distributed_loop = eval_function = tracing.per_run_function(distributed_eval_loop)

        def run_eval_loop() -> None:
            distributed_loop(distributed_batches)

    read_eval_metrics = metrics.MetricReader(state.eval_metrics)

    def evaluate() -> metrics.Results:
        run_eval_loop()
        return read_eval_metrics()

    evaluate.tracing_count = eval_function.experimental_get_tracing_count  # 1: never retraced.
    return evaluate


@contextlib.contextmanager
def dump_debug_info(output_dir: str) -> Iterator[str]:
    """Records every op's output health into `<output_dir>/debugger/<time>` while it runs.

    `tf.debugging.experimental.enable_dump_debug_info` in FULL_HEALTH mode (NaN, -Inf and +Inf
    counts of each op's output, in eager code and inside every tf.function traced from now on):
    what TensorBoard's Debugger V2 tab reads. Must be entered before the steps are traced.
    A folder per process (named by its UTC start time): Debugger V2 and tf.debugging's reader
    refuse a folder holding two dumps, which a resumed run would otherwise add to the first.

    Yields:
        The dump's directory.
    """
    started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dump_root = f"{output_dir}/{DEBUGGER_DIRECTORY}/{started}"
    tf.debugging.experimental.enable_dump_debug_info(
        dump_root, tensor_debug_mode="FULL_HEALTH", circular_buffer_size=DEBUGGER_BUFFER_SIZE
    )
    try:
        yield dump_root
    finally:
        # Writes the buffers out (also when a NaN stops the run) and stops instrumenting, so
        # whatever runs next in this process is not slowed down.
        tf.debugging.experimental.disable_dump_debug_info()


def model_variables(state: TrainState) -> list[keras.Variable]:
    """Every model's variables, trainable and not, in order: what a weights snapshot holds."""
    return [variable for model in state.models for variable in model.variables]


def snapshot_weights(state: TrainState) -> list[np.ndarray]:
    """Every model variable's value now, copied to the host (`model_variables`' order): what the
    eval's summaries read on their own thread while the next loop changes the weights."""
    return [variable.numpy() for variable in model_variables(state)]


def snapshot_tensors(state: TrainState, snapshot: Sequence[np.ndarray]) -> list[tf.Tensor]:
    """A `snapshot_weights` snapshot as tensors, each of its variable's dtype: what `weights_as_of`
    takes. Made on the thread that reads them, not the loop's."""
    return [
        tf.constant(value, dtype=variable.dtype)
        for variable, value in zip(model_variables(state), snapshot, strict=True)
    ]


def trainable_values(state: TrainState, values: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Of every model variable's `values` (`model_variables`' order), the trainable variables',
    in `state.trainable_variables`' order."""
    position = {id(variable): index for index, variable in enumerate(model_variables(state))}
    return [values[position[id(variable)]] for variable in state.trainable_variables]


@contextlib.contextmanager
def weights_as_of(state: TrainState, values: Sequence[tf.Tensor]) -> Iterator[None]:
    """Inside the block, on this thread, every call of the models reads its variables from
    `values` (see `snapshot_tensors`), and whatever a call assigns (a dropout layer's random
    generator state, a batch norm's statistics) goes nowhere: the run's variables stay as
    training leaves them.

    Keras 3's `StatelessScope`, which `Layer.stateless_call` uses. Eager calls only: a
    `tf.function` traced before reads the live variables, whatever the scope says; one that
    enters the block inside its own body reads the values it is given.
    """
    with keras.StatelessScope(state_mapping=list(zip(model_variables(state), values, strict=True))):
        yield


def checkpoint_objects(state: TrainState) -> dict[str, Any]:
    """What a checkpoint holds: `model=` (or each model by its name) and `optimizer=`."""
    models = state.models
    named = {"model": models[0]} if len(models) == 1 else {model.name: model for model in models}
    return {**named, "optimizer": state.optimizer}


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


def train_scalars(
    read_train_metrics: metrics.MetricReader,
    state: TrainState,
    loop_steps: int,
    loop_seconds: float,
) -> dict[str, float]:
    """A boundary's train scalars: the metrics (read and reset), the learning rate, the speed."""
    scalars = read_train_metrics()
    scalars["learning_rate"] = float(state.optimizer.learning_rate.numpy())
    if loop_steps:  # (A one-step run's only boundary follows no loop: no speed.)
        scalars["steps_per_second"] = loop_steps / loop_seconds
        scalars["examples_per_second"] = loop_steps * state.global_batch_size / loop_seconds
    return scalars


# Train scalars about the loop rather than the model, left out of the returned metrics.
_RATES = ("train/learning_rate", "train/steps_per_second", "train/examples_per_second")


@dataclasses.dataclass
class _Progress:
    """What the loop keeps between boundaries."""

    step: int
    start_step: int
    last_eval_step: int
    loops_run: int = 0
    train_seconds: float = 0.0  # Inside train_loop only: eval and summaries are not speed.
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


def run(
    config: settings.TrainingSettings,
    logdir: str,
    state: TrainState,
    train_step: TrainStep,
    eval_step: EvalStep,
    load_datasets: Callable[[], Datasets],
    *,
    eval_batch_size: int | None = None,
    progress_metrics: Sequence[str] | None = None,
    boundary_scalars: Callable[[], dict[str, float]] | None = None,
    on_eval: Callable[[int, metrics.Results, summaries.SummaryWriters], None] | None = None,
    on_boundary: Callable[[int], None] | None = None,
    boundary_steps: Sequence[int] = (),
    extra_graphs: Sequence[tuple[str, Callable[..., Any], tuple]] = (),
    final_metrics: Callable[[], dict[str, float]] | None = None,
    scalars_layout: summaries.layout_pb2.Layout | None = None,
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
            one replica's share of a step (see `make_train_step`). At every eval, the gradients
            of the step before it (summed over the replicas) are written to `train/` as
            histograms `gradients/<variable>` and the scalar `gradients/global_norm`.
        eval_step: `eval_step(state, *batch)`, one replica's share of an eval batch.
        load_datasets: returns the app's datasets, unbatched; called once the checkpoint is
            restored, so a finished run loads nothing.
        eval_batch_size: the eval batch, if not `config.batch_size`.
        progress_metrics: the console's `train/<tag>` and `eval/<tag>` values, in order
            (default: every train metric, every eval metric with a scalar result,
            `train/steps_per_second`).
        boundary_scalars: more train scalars at each boundary, e.g. a schedule's value.
        on_eval: `on_eval(step, eval_results, writers)` after each eval: the app's own eval
            summaries (images, curves, embeddings), or what it keeps of the results.
            `eval_results` holds every eval metric's result: a float for a scalar, a NumPy
            array otherwise (counts a PR curve or a confusion matrix is drawn from, taken in
            the eval's own pass: see common/metrics.py), which only on_eval sees. It runs on
            the summaries' thread (common/background.py), in order, while training goes on,
            inside `weights_as_of`: calling the models eagerly there reads their weights as
            they were at `step` (a `tf.function` would read the live ones). What it writes
            names its writer and step (`writers.eval.as_default(step=step)`).
        on_boundary: `on_boundary(step)` at each boundary, after eval: e.g. a switch that must
            flip at an exact step (add that step to `boundary_steps`).
        boundary_steps: steps at which a loop must end, besides multiples of `steps_per_loop`.
        extra_graphs: `(name, tf.function, args)` of other functions whose op graphs to log as
            `graph/<name>`, each traced on its first call, right after the train step's.
        final_metrics: more values for the returned metrics, called once training is done.
        scalars_layout: the app's Custom Scalars charts (see `summaries.scalars_layout`), written
            once at step 0 of a new run.

    Returns:
        `train/<tag>` and `eval/<tag>` at the last step (scalars only: an eval metric's array
        result is on_eval's alone), whatever `final_metrics` adds, and
        `steps`, `resumed_from_step`, `examples_per_second` (inside the loops only),
        `wall_time_seconds` (all of this call), `train_step_traces` and `eval_step_traces` (1:
        never retraced), and `time/<phase>` (see common.phase_times).

    Raises:
        common.errors.UserError: for an unusable logdir, unavailable data, a checkpoint of
            another model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    times = phase_times.PhaseTimes()  # Setup: from now to the first step.
    strategy = state.strategy
    run = training_run.TrainingRun(
        logdir,
        state.global_step,
        config.checkpoint_every_steps,
        strategy=strategy,
        app=run_record.app_name(config),  # A logdir holding another app's run is refused.
        **checkpoint_objects(state),
    )
    # Checks and locks the logdir first, so a bad one fails before anything slow; the debugger's
    # dump (if on) is written out before the run's lock is released.
    with run, contextlib.ExitStack() as debugger:
        start_step = run.restore()
        if run.already_finished(config.num_steps):
            return {"steps": start_step}
        if config.debugger:  # Before any step is traced: only functions traced after it are seen.
            run.debugger_dir = debugger.enter_context(dump_debug_info(run.output_dir))
            if run.is_chief:
                print(f"debugger: recording op health into {run.debugger_dir}", flush=True)
        datasets = load_datasets()
        if run.is_chief:
            print(f"dataset: {datasets.description}", flush=True)
            print(f"logdir:  {logdir}   (view with: {progress.view_command(logdir)})", flush=True)
        if strategy.num_replicas_in_sync > 1:
            print(distribution.describe(strategy, config.strategy, config.batch_size), flush=True)
        # Batches of the global batch size; the strategy splits each over the replicas. A resumed
        # run reshuffles with another seed, so it does not replay the same batches.
        train_batches = input_pipeline.shuffled_batches(
            datasets.train, config.batch_size, config.seed + start_step
        )
        train_iterator = iter(strategy.experimental_distribute_dataset(train_batches))
        evaluate = make_evaluate(
            state, eval_step, datasets.eval, eval_batch_size or config.batch_size
        )
        train_function = make_train_step(state, train_step, config.jit_compile)
        train_loop = make_train_loop(train_function)
        read_train_metrics = metrics.MetricReader(state.train_metrics)
        writers = run.open_writers()
        # Waits for the eval summaries' thread (two evals' work pending, the run's end) are
        # theirs, whichever phase they happen in.
        writers.background.wait_phase = lambda: times.phase("eval summaries", count=False)

        def write_eval_summaries(
            step: int,
            eval_results: concurrent.futures.Future,
            snapshot: list,
            gradients: Sequence[tf.Tensor] | None,
        ) -> None:
            """On the summaries' thread, while the eval and the next loop run: the histograms of
            the weights as they were at `step` and of the gradients that made them (the last
            step's), then the app's on_eval at those weights, once the eval's results are in."""
            variables = state.trainable_variables
            values = snapshot_tensors(state, snapshot)
            summaries.write_variable_histograms(
                writers.train, variables, step, trainable_values(state, values), gradients
            )
            if on_eval:
                with weights_as_of(state, values):
                    on_eval(step, eval_results.result(), writers)

        write_train_scalars = summaries.ScalarWriter(writers.train)
        write_eval_scalars = summaries.ScalarWriter(writers.eval)
        if start_step == 0:
            _write_run_description(config, run.output_dir, writers, datasets.description)
            if scalars_layout:
                summaries.write_scalars_layout(writers.train, scalars_layout)
        times.add("setup", times.total())
        gradients = None  # The last step's, as each replica took them, when an eval follows it.
        if start_step == 0:
            with times.phase("first step"):
                # Step one runs inside the graph trace: trace_on records a tf.function's graph
                # only while it is first traced, so this is the one moment to capture the step.
                loss, gradients = graphs.trace_and_write_graphs(
                    train_function, as_tuple(next(train_iterator)), state.models, writers.train
                )
                run.check_loss(float(loss), step=1)
                for name, function, args in extra_graphs:
                    graphs.trace_step_graph(function, args, writers.train, name=name)

        step = int(state.global_step.numpy())
        loop = _Progress(step=step, start_step=step, last_eval_step=start_step)
        console_names = list(progress_metrics or _default_progress(state))
        # `or not loop.metrics`: a one-step run still gets one boundary, with summaries and eval.
        while loop.step < config.num_steps or not loop.metrics:
            loop_steps = next_loop_steps(
                loop.step, config.num_steps, config.steps_per_loop, boundary_steps
            )
            # The second loop, not the first: the first includes train_loop's one-time tracing.
            # Its steps run one call each, in step markers (see run_with_step_markers); an
            # unprofiled loop stays one call of many steps.
            profiling = config.profile and loop.loops_run == 1
            if profiling:
                tf.profiler.experimental.start(f"{run.output_dir}/train")
            # An eval after this loop histograms the gradients of its last step.
            eval_next = eval_is_due(loop.step + loop_steps, loop.last_eval_step, config)
            loop_start = time.perf_counter()
            with times.phase("loops"):
                loss, last_gradients = run_steps(
                    train_loop,
                    train_function,
                    train_iterator,
                    loop_steps,
                    with_gradients=eval_next,
                    profile_from_step=loop.step if profiling else None,
                )
                loop.step = int(state.global_step.numpy())  # Reading the step waits for it.
            loop_seconds = time.perf_counter() - loop_start
            loop.train_seconds += loop_seconds
            loop.loops_run += 1
            if profiling:
                tf.profiler.experimental.stop()  # Writes train/plugins/profile/<time>/.
                if run.is_chief:
                    _print_profile_location(run.output_dir, loop_steps)
            if loop_steps:
                run.check_loss(float(loss), loop.step)
                gradients = last_gradients

            # Loop boundary: everything below runs once per loop.
            with times.phase("boundaries"):
                scalars = train_scalars(read_train_metrics, state, loop_steps, loop_seconds)
                scalars.update(boundary_scalars() if boundary_scalars else {})
                write_train_scalars(scalars, loop.step)
                values = {f"train/{name}": value for name, value in scalars.items()}
            if eval_is_due(loop.step, loop.last_eval_step, config):
                # The summaries first: their thread starts on the histograms while this one
                # evaluates (the same weights), and takes the results after. The gradients are
                # summed over the replicas here, on every worker (a collective each joins):
                # tensors the loop made and never changes, handed over as they are.
                eval_results = concurrent.futures.Future()
                with times.phase("eval summaries"):
                    writers.background.submit(
                        write_eval_summaries,
                        loop.step,
                        eval_results,
                        snapshot_weights(state),
                        None if gradients is None else reduce_gradients(state, gradients),
                    )
                with times.phase("evals"), _resolving(eval_results):
                    results = evaluate()
                    # Arrays (PR-curve counts, ...) are on_eval's: the scalar summaries, the
                    # console and the returned metrics take floats.
                    scalar_results = metrics.scalar_results(results)
                    write_eval_scalars(scalar_results, loop.step)
                    eval_results.set_result(results)
                loop.last_eval_step = loop.step
                values.update({f"eval/{name}": value for name, value in scalar_results.items()})
            with times.phase("boundaries"):
                # The returned metrics keep what was measured; the run's speed is reported whole.
                loop.metrics.update({name: values[name] for name in values if name not in _RATES})
                if on_boundary:
                    on_boundary(loop.step)
                if run.is_chief:  # This boundary's values only: no eval values from before.
                    console = {name: values[name] for name in console_names if name in values}
                    progress.print_progress(loop.step, config.num_steps, console)
            with times.phase("checkpoints"):
                run.end_of_loop(loop.step)  # When due; on SIGINT/SIGTERM, save and stop.

        with times.phase("checkpoints"):
            if run.last_saved_step != loop.step:
                run.save(loop.step)
        writers.background.wait()  # The last eval's summaries: on disk before the run ends.
        close_start = time.perf_counter()
    times.add("close", time.perf_counter() - close_start)  # The writers, the record, the lock.
    times.background_seconds = writers.background.cpu_seconds

    extra = final_metrics() if final_metrics else {}
    extra["eval_step_traces"] = evaluate.tracing_count()
    return _finish(loop, start_step, times, state, train_function, console_names, extra)


@contextlib.contextmanager
def _resolving(future: concurrent.futures.Future) -> Iterator[None]:
    """Sets the block's error on `future` if the block leaves it unset: a job waiting on it then
    raises instead of waiting for ever (and the block's own error is the one reported)."""
    try:
        yield
    except BaseException as error:
        if not future.done():
            future.set_exception(error)
        raise


def _default_progress(state: TrainState) -> list[str]:
    # An eval metric with an array result is named here too, but never shown: the console shows
    # a boundary's `values`, which hold scalar results only (what an array metric is, the reader
    # tells only once it has read it).
    return [
        *(f"train/{name}" for name in state.train_metrics),
        *(f"eval/{name}" for name in state.eval_metrics),
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
        f"profile: {loop_steps} steps traced into {output_dir}/train/plugins/profile, one step "
        "marker each; open TensorBoard's Profile tab (overview_page: the step-time breakdown)",
        flush=True,
    )


def _finish(
    loop: _Progress,
    start_step: int,
    times: phase_times.PhaseTimes,
    state: TrainState,
    train_function: Any,
    console_names: Sequence[str],
    extra: dict[str, float],
) -> dict[str, float]:
    """The returned metrics, and the `final:` line: the console's values, then the run's."""
    results = {**loop.metrics, **extra}
    results["steps"] = loop.step
    results["resumed_from_step"] = start_step
    examples = (loop.step - loop.start_step) * state.global_batch_size
    results["examples_per_second"] = examples / loop.train_seconds if loop.train_seconds else 0.0
    results["wall_time_seconds"] = times.total()
    # 1 unless something forced a retrace (a new input shape or dtype): worth watching.
    results["train_step_traces"] = train_function.experimental_get_tracing_count()
    shown = {
        name: value
        for name, value in results.items()
        if name in console_names
        or name in extra
        or not name.startswith(("train/", "eval/", "time/"))
    }
    # Where the time went, then the run's figures: `final:` stays the last line.
    print(times.line(), flush=True)
    print("final: " + progress.format_metrics(shown), flush=True)
    return {**results, **times.as_metrics()}
