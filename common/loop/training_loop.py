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
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from common import distribution, errors, settings, summaries
from common.checkpoints import resumed_settings
from common.logdir import run_record
from common.loop import input_pipeline, phase_times, progress, step_counter, tracing, training_run
from common.summaries import graphs, metrics

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


# For the helpers a train step calls: plain Python over Python values (which optimizer, whether a
# scale exists), so AutoGraph's conversion, which would rewrite their `if`s and `for`s at every
# trace, is skipped: it added 0.3 s to mnist_mlp's one-time trace of the step (0.45 -> 0.8 s).
_NOT_CONVERTED = tf.autograph.experimental.do_not_convert


class ModelNotBuiltError(errors.UserError):
    """A model has no weights yet, so nothing could train or restore it."""


def _check_built(model: keras.Model) -> None:
    """Refuses a model without weights: a subclassed model makes them at its first call (and
    `model.build(shape)` does not call it), too late for the optimizer, which is built over the
    models' variables before the first step (see `TrainState.create`)."""
    if not model.weights:
        raise ModelNotBuiltError(
            f"model {model.name!r} has no weights yet: a subclassed model makes them at its first "
            "call (model.build(shape) does not call it), so call it once on example inputs, "
            "e.g. model(features[:1]), before TrainState.create"
        )


@dataclasses.dataclass(frozen=True)
class TrainState:
    """One run's models, optimizers and metrics: what the steps use and a checkpoint saves."""

    models: tuple[keras.Model, ...]
    # By name: one optimizer over every model (`{"optimizer": Adam}`, the default), or one per
    # group of models (a GAN's `{"generator": ..., "discriminator": ...}`), each checkpointed.
    optimizers: dict[str, keras.optimizers.Optimizer]
    train_metrics: Metrics  # Updated by the train step; logged and reset at every boundary.
    # Updated by the eval step; read at every eval: scalar results logged to eval/, every result
    # (arrays too, e.g. a PRCurveCounts') handed to the app's on_eval.
    eval_metrics: Metrics
    global_step: tf.Variable  # Optimizer steps so far; stamps every summary.
    global_batch_size: int  # Examples per step over all replicas.
    strategy: tf.distribute.Strategy
    # The run's settings, for a step that needs one (a loss weight): `state.config.<name>`.
    config: settings.TrainingSettings | None = None
    # Which models each optimizer updates (`create`'s groups): whose gradients its scale judges.
    optimizer_models: dict[str, tuple[keras.Model, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: settings.TrainingSettings,
        models: Sequence[keras.Model],
        train_metrics: Metrics,
        eval_metrics: Metrics,
        optimizer: keras.optimizers.Optimizer | None = None,
        optimizers: Mapping[str, tuple[keras.optimizers.Optimizer, Sequence[keras.Model]]]
        | None = None,
    ) -> "TrainState":
        """Call it in `strategy.scope()`, so every variable is mirrored on every replica.

        Args:
            config: for the learning rate and the global batch size; the steps read it as
                `state.config`.
            models: the Keras models the steps use (checkpointed, graphed, histogrammed), each
                built: a subclassed model makes its weights at its first call, so call it once
                on example inputs first (`model(features[:1])`).
            train_metrics, eval_metrics: `{tag: metric}`; the tags are what TensorBoard shows.
                An eval metric may have an array result (`metrics.PRCurveCounts`,
                `metrics.ConfusionMatrix`): counted in the eval step, it reaches `run`'s
                `on_eval` as a NumPy array, for the app to draw; only scalar results are
                logged as scalars, shown and returned.
            optimizer: the one optimizer over every model's variables; default
                `keras.optimizers.Adam(config.learning_rate)`.
            optimizers: instead, several: `{name: (optimizer, [models it updates])}`, e.g. a
                GAN's generator and discriminator, each built over its own models' trainable
                variables, checkpointed as `<name>_optimizer` and logged as
                `learning_rate/<name>`; the step takes `state.optimizers[name]`.

        Raises:
            ModelNotBuiltError: if a model has no weights yet (an unbuilt subclassed model).
            ValueError: for both `optimizer` and `optimizers`, or an optimizer's model that is
                not among `models`.
        """
        for model in models:
            _check_built(model)
        if optimizer is not None and optimizers is not None:
            raise ValueError("pass optimizer or optimizers, not both")
        if optimizers is None:
            default = optimizer or keras.optimizers.Adam(config.learning_rate)
            groups = {"optimizer": (default, models)}
        else:
            groups = dict(optimizers)
        # Each wrapped for --mixed_precision (a loss scale of its own under mixed_float16).
        groups = {
            name: (for_mixed_precision(group_optimizer, config.mixed_precision), updated)
            for name, (group_optimizer, updated) in groups.items()
        }
        for name, (_, updated) in groups.items():
            strangers = [model.name for model in updated if not any(model is m for m in models)]
            if strangers:
                raise ValueError(f"optimizer {name!r} updates {strangers}, which are not in models")
        state = cls(
            models=tuple(models),
            optimizers={name: group[0] for name, group in groups.items()},
            train_metrics=train_metrics,
            eval_metrics=eval_metrics,
            global_step=step_counter.create_global_step(),
            global_batch_size=config.batch_size,
            strategy=tf.distribute.get_strategy(),
            config=config,
            optimizer_models={name: tuple(group[1]) for name, group in groups.items()},
        )
        # Its slot variables now rather than inside the first step: a tf.function that creates
        # variables is traced twice, and its graph fills up with initializers. Each optimizer
        # over its own models' variables only: one holding slots for another's would also
        # checkpoint them twice.
        for group_optimizer, updated in groups.values():
            group_optimizer.build([v for model in updated for v in model.trainable_variables])
        return state

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The run's one optimizer; a state with several has none by this name: see `optimizers`."""
        if len(self.optimizers) != 1:
            raise AttributeError(
                f"this state has {len(self.optimizers)} optimizers "
                f"({', '.join(self.optimizers)}): take one by name, state.optimizers[name]"
            )
        return next(iter(self.optimizers.values()))

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

    # Mixed precision: a step calls these whatever --mixed_precision says, and reads the same
    # with or without it (each is the identity, adding no op, unless the optimizer scales the
    # loss, as it does under mixed_float16: see for_mixed_precision).

    @_NOT_CONVERTED
    def scale_loss(
        self, loss: tf.Tensor, optimizer: keras.optimizers.Optimizer | None = None
    ) -> tf.Tensor:
        """The loss to take the gradients of: `loss` times the loss scale under mixed_float16
        (float16 gradients of small values would underflow to 0), else `loss` itself.

        Args:
            loss: the step's loss (float32: a model's last layer computes in float32).
            optimizer: the optimizer its gradients go to (default `self.optimizer`).
        """
        scale = loss_scale(optimizer or self.optimizer)
        return loss if scale is None else loss * scale

    @_NOT_CONVERTED
    def unscale(
        self,
        scaled_gradients: Sequence[tf.Tensor | None],
        optimizer: keras.optimizers.Optimizer | None = None,
    ) -> list[tf.Tensor | None]:
        """The true gradients, from those of `scale_loss`'s loss: what the histograms and any
        gradient metric must see. Call it before `apply_gradients`, which may change the scale;
        apply the *scaled* gradients (the LossScaleOptimizer divides them itself, and skips a
        step whose gradients overflowed).

        Args:
            scaled_gradients: `tape.gradient(state.scale_loss(loss), variables)`.
            optimizer: the optimizer that scaled the loss (default `self.optimizer`).
        """
        scale = loss_scale(optimizer or self.optimizer)
        if scale is None:
            return list(scaled_gradients)
        return [_divide(gradient, scale) for gradient in scaled_gradients]

    @_NOT_CONVERTED
    def loss_or_nan(
        self,
        loss: tf.Tensor,
        gradients: Sequence[tf.Tensor | None],
        optimizer: keras.optimizers.Optimizer | None = None,
    ) -> tf.Tensor:
        """`training_run.loss_or_nan(loss, gradients)`, what a train step returns for the loop's
        non-finite check, knowing about loss scaling: under mixed_float16 a step whose gradients
        overflowed is skipped by the optimizer (and the scale halved), which is expected and does
        not stop the run; a non-finite loss does, and so do non-finite gradients once the loss
        scale has fallen below `training_run.MIN_LOSS_SCALE` (every step skipped: NaN data, or a
        model float16 cannot hold). Call it after `apply_gradients`. With several optimizers
        and no `optimizer`, `gradients` in `trainable_variables`' order, each optimizer's are
        judged by its own scale.
        """
        if optimizer is not None or len(self.optimizers) == 1:
            scale = loss_scale(optimizer or self.optimizer)
            return training_run.loss_or_nan(loss, gradients, loss_scale=scale)
        # Several: each optimizer's gradients judged by its own scale (one may be far below
        # another's), those of variables no optimizer updates by none.
        of_variable = {
            id(variable): gradient
            for variable, gradient in zip(self.trainable_variables, gradients, strict=True)
        }
        judged: set[int] = set()
        for name, models in self.optimizer_models.items():
            variables = [v for model in models for v in model.trainable_variables]
            judged.update(id(variable) for variable in variables)
            group = [of_variable[id(variable)] for variable in variables]
            loss = training_run.loss_or_nan(loss, group, loss_scale(self.optimizers[name]))
        rest = [gradient for key, gradient in of_variable.items() if key not in judged]
        return training_run.loss_or_nan(loss, rest) if rest else loss


def for_mixed_precision(
    optimizer: keras.optimizers.Optimizer, mixed_precision: str
) -> keras.optimizers.Optimizer:
    """`optimizer` as `--mixed_precision` needs it: under mixed_float16 wrapped in Keras's
    `LossScaleOptimizer` (dynamic loss scaling: its scale is checkpointed with it), otherwise as
    it is (bfloat16 has float32's range: no scaling).

    Args:
        optimizer: an optimizer over float32 variables.
        mixed_precision: one of `settings.MIXED_PRECISION_NAMES`.
    """
    if mixed_precision == "mixed_float16" and loss_scale(optimizer) is None:
        return ReplicaAgreeingLossScaleOptimizer(optimizer)
    user_scaled = loss_scale(optimizer) is not None and not optimizer.built
    if user_scaled and not isinstance(optimizer, ReplicaAgreeingLossScaleOptimizer):
        # A user's own Keras LossScaleOptimizer: the same settings, replicas agreeing.
        return ReplicaAgreeingLossScaleOptimizer(
            optimizer.inner_optimizer,
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
        )
    return optimizer


class ReplicaAgreeingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's `LossScaleOptimizer`, with every replica skipping a step if any replica must.

    Keras 3.x decides from one replica's own gradients, before they are summed: the first
    replica's under MirroredStrategy, each its own under MultiWorkerMirroredStrategy. Measured
    here on 2 mirrored CPUs: a step whose second replica overflowed was applied, and the summed
    infinity made the weights non-finite. So each replica's gradients are made NaN if any
    replica's are not finite (a scalar all-reduce, with several replicas only): the optimizer
    then skips that step everywhere. Its checkpoint is the `LossScaleOptimizer`'s.
    """

    def apply(self, grads: Sequence[Any], trainable_variables: Any = None) -> None:
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            non_finite = tf.cast(tf.logical_not(self.check_finite(grads)), tf.float32)
            replicas_non_finite = context.all_reduce(tf.distribute.ReduceOp.SUM, non_finite)
            # 0, or NaN on every replica once any replica's gradients are not finite.
            poison = tf.math.sqrt(-replicas_non_finite)
            grads = [_add(gradient, poison) for gradient in grads]
        super().apply(grads, trainable_variables)


@_NOT_CONVERTED
def loss_scale(optimizer: keras.optimizers.Optimizer) -> keras.Variable | None:
    """The optimizer's dynamic loss scale (a float32 variable), or None if it scales no loss."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None


@_NOT_CONVERTED
def _add(gradient: tf.Tensor | tf.IndexedSlices | None, value: tf.Tensor) -> Any:
    """`gradient + value` (a float32 scalar), keeping an embedding's sparse gradient sparse."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        values = gradient.values + tf.cast(value, gradient.values.dtype)
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return gradient + tf.cast(value, gradient.dtype)


@_NOT_CONVERTED
def _divide(gradient: tf.Tensor | tf.IndexedSlices | None, scale: Any) -> Any:
    """`gradient / scale`, keeping an embedding's sparse gradient sparse."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values / scale, gradient.indices, gradient.dense_shape)
    return gradient / scale


# train_step(state, *batch) -> (loss_or_nan(loss, gradients), gradients)
TrainStep = Callable[..., tuple[tf.Tensor, Sequence[tf.Tensor | None]]]
# The loss, the gradients (`None` for a variable the loss does not reach): see make_train_step.
StepOutputs = tuple[tf.Tensor, list[tf.Tensor | None]]
EvalStep = Callable[..., None]  # eval_step(state, *batch): updates state.eval_metrics


# --mixed_precision's Keras policy: layers compute in its 16-bit type, variables stay float32.
MIXED_PRECISION_POLICIES = {
    "none": "float32",
    "mixed_float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
}


def create_strategy(config: settings.TrainingSettings) -> tf.distribute.Strategy:
    """A run's first TensorFlow calls: the `tf.distribute` strategy, the mixed-precision policy
    (before any model is built), then every seed."""
    # First: the threads and the split of the CPU into logical devices must precede every other
    # TensorFlow call.
    distribution.set_compute_threads()
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    # Before any model is built: a layer takes the global policy when it is made. Set for every
    # run, "none" too, since a process may train several runs (tests do).
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[config.mixed_precision])
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
            see common.summaries.graphs, as a traced export of an XLA step is empty).

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
                "`return state.loss_or_nan(loss, gradients), gradients`, the gradients "
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


def values_of(
    state: TrainState, values: Sequence[tf.Tensor], variables: Sequence[keras.Variable]
) -> list[tf.Tensor]:
    """Of every model variable's `values` (`model_variables`' order), those of `variables`."""
    position = {id(variable): index for index, variable in enumerate(model_variables(state))}
    return [values[position[id(variable)]] for variable in variables]


def histogrammed_variables(state: TrainState) -> list[keras.Variable]:
    """What an eval histograms: the trainable variables (`state.trainable_variables`' order, the
    gradients'), then every model's non-trainable float ones (a batch norm's moving mean and
    variance). Not integer state: a dropout's or a noise layer's seed generator."""
    trainable = {id(variable) for variable in state.trainable_variables}
    return state.trainable_variables + [
        variable
        for variable in model_variables(state)
        if id(variable) not in trainable and keras.backend.is_float_dtype(variable.dtype)
    ]


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
    """What a checkpoint holds: `model=` (or each model by its name) and `optimizer=` (or each
    of several as `<name>_optimizer=`)."""
    models = state.models
    named = {"model": models[0]} if len(models) == 1 else {model.name: model for model in models}
    if len(state.optimizers) == 1:
        return {**named, "optimizer": state.optimizer}
    return {**named, **{f"{name}_optimizer": opt for name, opt in state.optimizers.items()}}


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
    scalars.update(learning_rates(state))
    for name, optimizer in state.optimizers.items():
        scale = loss_scale(optimizer)
        if scale is not None:  # mixed_float16: it halves at each overflowed (skipped) step.
            scalars["loss_scale" if len(state.optimizers) == 1 else f"loss_scale/{name}"] = float(
                scale.numpy()
            )
    if loop_steps:  # (A one-step run's only boundary follows no loop: no speed.)
        scalars["steps_per_second"] = loop_steps / loop_seconds
        scalars["examples_per_second"] = loop_steps * state.global_batch_size / loop_seconds
    return scalars


def learning_rates(state: TrainState) -> dict[str, float]:
    """`learning_rate`, or `learning_rate/<name>` for each of several optimizers: the value now
    (a schedule's at the optimizer's step)."""
    if len(state.optimizers) == 1:
        return {"learning_rate": float(state.optimizer.learning_rate.numpy())}
    return {
        f"learning_rate/{name}": float(optimizer.learning_rate.numpy())
        for name, optimizer in state.optimizers.items()
    }


def _is_rate(name: str) -> bool:
    """Train scalars about the loop rather than the model, left out of the returned metrics."""
    return name in _RATES or name.startswith("train/learning_rate/")


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
            the eval's own pass: see common/summaries/metrics.py), which only on_eval sees. It runs
            on
            the summaries' thread (common/loop/background.py), in order, while training goes on,
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
        never retraced), and `time/<phase>` (see common.loop.phase_times).

    Raises:
        common.errors.UserError: for an unusable logdir, unavailable data, a checkpoint of
            another model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    times = phase_times.PhaseTimes()  # Setup: from now to the first step.
    strategy = state.strategy
    # Before the restore: the settings, and the learning rates as this code built them.
    run_settings = resumed_settings.describe(config, state.optimizers)
    run = training_run.TrainingRun(
        logdir,
        state.global_step,
        config.checkpoint_every_steps,
        strategy=strategy,
        run_settings=run_settings,
        app=run_record.app_name(config),  # A logdir holding another app's run is refused.
        **checkpoint_objects(state),
    )
    # Checks and locks the logdir first, so a bad one fails before anything slow; the debugger's
    # dump (if on) is written out before the run's lock is released.
    with run, contextlib.ExitStack() as debugger:
        start_step = run.restore()
        if run.already_finished(config.num_steps):
            return {"steps": start_step}
        run.check_resume()  # A refused resume says so before the debugger writes a dump.
        config_changed = False
        if start_step:  # What this command changed: said, and applied (or refused).
            text = run.restored_settings()
            previous = None if text is None else json.loads(text)
            lines = resumed_settings.apply(
                previous, config, state.optimizers, run_settings, start_step
            )
            for line in lines if run.is_chief else []:
                print(line, flush=True)
            # A longer --num_steps is how a run trains further, said but no new config text.
            config_changed = bool(
                previous and set(resumed_settings.changes(previous, config)) - {"num_steps"}
            )
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
            the weights as they were at `step` (non-trainable float ones too: a batch norm's
            statistics) and of the gradients that made them (the last step's), each tagged by
            its path, or by its models' where paths collide (`summaries.variable_tags`); then
            the app's on_eval at those weights, once the eval's results are in."""
            variables = histogrammed_variables(state)
            values = snapshot_tensors(state, snapshot)
            if gradients is not None and _skipped_by_loss_scaling(state, gradients):
                if run.is_chief:
                    print(
                        f"eval at step {step}: its last train step overflowed float16 and the "
                        "loss scaling skipped it (nothing applied), so no gradient histograms "
                        "at this step",
                        flush=True,
                    )
                gradients = None
            if gradients is not None:  # None for the non-trainable variables after them.
                trainable = len(state.trainable_variables)
                if len(gradients) != trainable:
                    raise TypeError(
                        f"the train step returned {len(gradients)} gradients for {trainable} "
                        "trainable variables: return one per variable of "
                        "state.trainable_variables, in its order (None where there is none)"
                    )
                gradients = list(gradients) + [None] * (len(variables) - trainable)
            summaries.write_variable_histograms(
                writers.train,
                variables,
                step,
                values_of(state, values, variables),
                gradients,
                models=state.models,
            )
            if on_eval:
                with weights_as_of(state, values):
                    on_eval(step, eval_results.result(), writers)

        write_train_scalars = summaries.ScalarWriter(writers.train)
        write_eval_scalars = summaries.ScalarWriter(writers.eval)
        if config_changed:  # The Text tab's config as of the resume, beside step 0's.
            # At the resumed run's first step: a later resume from the same checkpoint trims it
            # (and writes its own), so the Text tab never shows two configs at one step.
            _write_config_text(config, writers, start_step + 1)
        if start_step == 0:
            _write_run_description(config, run.output_dir, writers, datasets.description)
            if scalars_layout:
                summaries.write_scalars_layout(writers.train, scalars_layout)
        times.add("setup", times.total())
        gradients = None  # The last step's, as each replica took them, when an eval follows it.
        if start_step == 0:
            with times.phase("first step"), _explaining_unknown_variables(state):
                # Step one runs inside the graph trace: trace_on records a tf.function's graph
                # only while it is first traced, so this is the one moment to capture the step.
                loss, gradients = graphs.trace_and_write_graphs(
                    train_function,
                    as_tuple(next(train_iterator)),
                    state.models,
                    writers.train,
                    quiet=not run.is_chief,
                )
                run.check_loss(float(loss), step=1)
                for name, function, args in extra_graphs:
                    graphs.trace_step_graph(function, args, writers.train, name=name)

        step = int(state.global_step.numpy())
        loop = _Progress(step=step, start_step=step, last_eval_step=start_step)
        console_names = list(progress_metrics or _default_progress(state))
        time_left = progress.TimeLeft(config.num_steps)  # The console's ETA.
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
                loop.metrics.update({name: values[name] for name in values if not _is_rate(name)})
                if on_boundary:
                    on_boundary(loop.step)
                if run.is_chief:  # This boundary's values only: no eval values from before.
                    console = {name: values[name] for name in console_names if name in values}
                    seconds_left = time_left.after_loop(loop.step, loop_steps, loop_seconds)
                    progress.print_progress(loop.step, config.num_steps, console, seconds_left)
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


def _skipped_by_loss_scaling(state: TrainState, gradients: Sequence[Any]) -> bool:
    """True if an optimizer scales the loss and `gradients` (summed, dense) are not all finite:
    a step the loss scaling skipped, whose gradients were never applied."""
    if all(loss_scale(optimizer) is None for optimizer in state.optimizers.values()):
        return False
    return not all(np.isfinite(np.asarray(gradient)).all() for gradient in gradients)


@contextlib.contextmanager
def _explaining_unknown_variables(state: TrainState) -> Iterator[None]:
    """Turns Keras's "Unknown variable ... This optimizer can only be called for the variables it
    was originally built with" (63 lines of traceback from inside the first step) into one line:
    a layer made its weights inside the step, after `TrainState.create` built the optimizers."""
    try:
        yield
    except ValueError as error:
        if "originally built with" not in str(error):
            raise
        raise ModelNotBuiltError(
            "the train step updates variables that its optimizer was not built over: a layer of "
            f"{', '.join(repr(model.name) for model in state.models)} made its weights inside the "
            "step (a subclassed model's at its first call), or the step passes one optimizer "
            "another's variables; call each model once on example inputs before "
            "TrainState.create, and give each optimizer its own models (optimizers=)"
        ) from None


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
    summaries.write_hparams(output_dir, dataclasses.asdict(config))
    _write_config_text(config, writers, 0)
    with writers.train.as_default(step=0):
        tf.summary.text("dataset", dataset_description)


def _write_config_text(
    config: settings.TrainingSettings, writers: summaries.SummaryWriters, step: int
) -> None:
    """The settings as a table in the Text tab's `config`, at `step` (0, or a resume's)."""
    with writers.train.as_default(step=step):
        tf.summary.text("config", summaries.markdown_table(dataclasses.asdict(config)))


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
