"""The eval: one pass over the eval set in one `tf.function` call (`make_evaluate`), and the
`Evaluate` action that runs it when due, logs its scalars, and hands its summaries (weight and
gradient histograms, the app's `on_eval`) to their own thread with a copy of the weights.

    evaluate = make_evaluate(state, eval_step, datasets.eval, batch_size)
    results = evaluate()                               # {tag: float, or an array result}
"""

import concurrent.futures
import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from common import summaries, tracing
from common.loop import (
    actions,
    input_pipeline,
    mixed_precision,
    phase_times,
    steps,
    train_state,
)
from common.summaries import metrics

# on_eval(step, eval_results, writers): the app's own summaries of an eval (see `Evaluate`).
OnEval = Callable[[int, metrics.Results, summaries.SummaryWriters], None]


def slice_examples(tensors: Any, start: tf.Tensor, size: int) -> Any:
    """Examples `start` to `start + size` (fewer at the end) of every tensor in a nest."""
    return tf.nest.map_structure(lambda tensor: tensor[start : start + size], tensors)


def make_evaluate(
    state: train_state.TrainState,
    eval_step: steps.EvalStep,
    examples: tf.data.Dataset,
    batch_size: int,
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
                state.strategy.run(replica_step, args=steps.as_tuple(batch))

        run_eval_loop = eval_function = tracing.per_run_function(eval_loop)
    else:
        batches = input_pipeline.eval_batches(examples, batch_size)
        distributed_batches = state.strategy.experimental_distribute_dataset(batches)

        def distributed_eval_loop(batches: Any) -> None:
            for batch in batches:
                state.strategy.run(replica_step, args=steps.as_tuple(batch))

        distributed_loop = eval_function = tracing.per_run_function(distributed_eval_loop)

        def run_eval_loop() -> None:
            distributed_loop(distributed_batches)

    read_eval_metrics = metrics.MetricReader(state.eval_metrics)

    def evaluate() -> metrics.Results:
        run_eval_loop()
        return read_eval_metrics()

    evaluate.tracing_count = eval_function.experimental_get_tracing_count  # 1: never retraced.
    return evaluate


class Evaluate(actions.Action):
    """The eval, at the first boundary at or past each multiple of `eval_every_steps` and at the
    run's last step: its scalars to `eval/`, and its summaries handed to the summaries' thread.

    The summaries go first: their thread starts on the histograms (of a copy of the weights)
    while this one evaluates the same weights, and takes the eval's results after. An eval
    asks the loop before it for its last step's gradients, which it histograms.
    """

    phase = "evals"  # The summaries' hand-over inside it counts to "eval summaries".

    def __init__(
        self,
        state: train_state.TrainState,
        evaluate: Callable[[], metrics.Results],
        writers: summaries.SummaryWriters,
        times: phase_times.PhaseTimes,
        every_steps: int,
        is_chief: bool,
        on_eval: OnEval | None = None,
    ) -> None:
        """Args:
        state: the run's state.
        evaluate: from `make_evaluate`.
        writers: the run's writers: histograms to `train/`, scalars to `eval/`.
        times: the run's phase times (`eval summaries`).
        every_steps: `eval_every_steps`.
        is_chief: whether this worker says what it skipped.
        on_eval: the app's own summaries of each eval (see `training_loop.AppSummaries`).
        """
        super().__init__(actions.Schedule(every_steps=every_steps, at_end=True))
        self.state = state
        self.evaluate = evaluate
        self.writers = writers
        self.times = times
        self.is_chief = is_chief
        self.on_eval = on_eval
        self.write_eval_scalars = summaries.ScalarWriter(writers.eval)

    def before_loop(self, loop: actions.Loop) -> None:
        # An eval after this loop histograms the gradients of its last step.
        loop.with_gradients = loop.with_gradients or self.is_due(loop.end_step)

    def run(self, boundary: actions.Boundary) -> None:
        state, gradients = self.state, boundary.gradients
        # The gradients are summed over the replicas here, on every worker (a collective each
        # joins): tensors the loop made and never changes, handed over as they are.
        eval_results = concurrent.futures.Future()
        with self.times.phase("eval summaries"):
            self.writers.background.submit(
                self.write_summaries,
                boundary.step,
                eval_results,
                train_state.snapshot_weights(state),
                None if gradients is None else steps.reduce_gradients(state, gradients),
            )
        with _resolving(eval_results):
            results = self.evaluate()
            # Arrays (PR-curve counts, ...) are on_eval's: the scalar summaries, the console and
            # the returned metrics take floats.
            scalar_results = metrics.scalar_results(results)
            self.write_eval_scalars(scalar_results, boundary.step)
            eval_results.set_result(results)
        boundary.values.update({f"eval/{name}": value for name, value in scalar_results.items()})

    def write_summaries(
        self,
        step: int,
        eval_results: concurrent.futures.Future,
        snapshot: list,
        gradients: Sequence[tf.Tensor] | None,
    ) -> None:
        """On the summaries' thread, while the eval and the next loop run: the histograms of the
        weights as they were at `step` (non-trainable float ones too: a batch norm's statistics)
        and of the gradients that made them (the last step's), each tagged by its path, or by
        its models' where paths collide (`summaries.variable_tags`); then the app's on_eval at
        those weights, once the eval's results are in."""
        state = self.state
        variables = train_state.histogrammed_variables(state)
        values = train_state.snapshot_tensors(state, snapshot)
        if gradients is not None and _skipped_by_loss_scaling(state, gradients):
            if self.is_chief:
                print(
                    f"eval at step {step}: its last train step overflowed float16 and the "
                    "loss scaling skipped it (nothing applied), so no gradient histograms "
                    "at this step",
                    flush=True,
                )
            gradients = None
        if gradients is not None:  # None for the non-trainable variables after them.
            # As many as the trainable variables: steps.reduce_gradients checked.
            gradients = list(gradients) + [None] * (len(variables) - len(gradients))
        summaries.write_variable_histograms(
            self.writers.train,
            variables,
            step,
            train_state.values_of(state, values, variables),
            gradients,
            models=state.models,
        )
        if self.on_eval:
            with train_state.weights_as_of(state, values):
                self.on_eval(step, eval_results.result(), self.writers)


def _skipped_by_loss_scaling(state: train_state.TrainState, gradients: Sequence[Any]) -> bool:
    """True if an optimizer scales the loss and `gradients` (summed, dense) are not all finite:
    a step the loss scaling skipped, whose gradients were never applied."""
    if all(
        mixed_precision.loss_scale(optimizer) is None for optimizer in state.optimizers.values()
    ):
        return False
    return not all(np.isfinite(np.asarray(gradient)).all() for gradient in gradients)


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
