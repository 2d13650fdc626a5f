"""The inner loop: one train step on every replica as a `tf.function`, many of them in one call,
and the steps between two boundaries run as the outer loop asks (with the last step's gradients
for an eval, or one profiler step marker per step).

    train_function = make_train_step(state, train_step)     # What the Graphs tab shows.
    train_loop = make_train_loop(train_function)            # n steps, ONE tf.function call.
    loss, gradients = run_steps(train_loop, train_function, iterator, n, with_gradients=True)
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from common import tracing
from common.loop import train_state

# train_step(state, *batch) -> (loss_or_nan(loss, gradients), gradients)
TrainStep = Callable[..., tuple[tf.Tensor, Sequence[tf.Tensor | None]]]
# The loss, the gradients (`None` for a variable the loss does not reach): see make_train_step.
StepOutputs = tuple[tf.Tensor, list[tf.Tensor | None]]
EvalStep = Callable[..., None]  # eval_step(state, *batch): updates state.eval_metrics


def as_tuple(batch: Any) -> tuple:
    """A batch as step arguments: `(images, labels)` stays as it is; a lone tensor, `(x,)`."""
    return batch if isinstance(batch, tuple) else (batch,)


def make_train_step(
    state: train_state.TrainState, train_step: TrainStep, jit_compile: bool = False
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


def reduce_gradients(
    state: train_state.TrainState, per_replica_gradients: Sequence[Any]
) -> list[tf.Tensor]:
    """A train step's gradients (`make_train_step`) summed across replicas and workers: the whole
    batch's gradients, as on one device (each replica's loss is divided by the global batch, see
    `TrainState.average_loss`); one replica's pass through. Each is dense: a variable the loss
    does not reach (its gradient `None`) gets zeros, a sparse gradient (`tf.IndexedSlices`, an
    embedding's) its dense tensor. One reduction per variable: on several workers, as many
    round trips at each eval (not at each step)."""
    trainable = len(state.trainable_variables)
    if len(per_replica_gradients) != trainable:  # Else zip's bare ValueError, at the first eval.
        raise TypeError(
            f"the train step returned {len(per_replica_gradients)} gradients for {trainable} "
            "trainable variables: return one per variable of state.trainable_variables, in its "
            "order (None where there is none)"
        )
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
