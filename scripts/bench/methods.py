"""The loops the bench times on one workload, one function each: eager, per-step tf.function,
this repo's loop, `model.fit`, and the bare step's ceilings. Each returns (seconds, steps, ...)."""

import tempfile
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from common import summaries as summaries_lib
from common.loop import input_pipeline, non_finite, standard_actions
from common.loop import steps as train_steps  # `steps` is a count here.
from common.summaries import metrics
from scripts.bench.workloads import Workload

SUMMARY_EVERY_STEPS = 100


def batches(
    workload: Workload, textbook: bool = False, features_only: bool = False
) -> tf.data.Dataset:
    """The apps' pipeline (common.loop.input_pipeline), the same for every method; or, with
    `textbook`, the usual `cache().shuffle().repeat().batch()` it replaces."""
    examples = tf.data.Dataset.from_tensor_slices(
        workload.features if features_only else (workload.features, workload.labels)
    )
    if not textbook:
        return input_pipeline.shuffled_batches(examples, workload.batch_size, seed=0)
    return (
        examples.cache()
        .shuffle(10_000, seed=0, reshuffle_each_iteration=True)
        .repeat()
        .batch(workload.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def fresh_state(workload: Workload):
    """A new model and a built optimizer, as the apps make them."""
    model = workload.create_model()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def step_body(
    workload: Workload,
    model,
    optimizer,
    loss_metric=None,
    global_step=None,
    check_gradients: bool = False,
):
    """The train step every custom loop here runs; with all options, the apps' train_step
    (minus accuracy, whose metric is read at boundaries all the same)."""

    def train_step(features, labels):
        with tf.GradientTape() as tape:
            loss = workload.compute_loss(labels, model(features, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        if loss_metric is not None:
            loss_metric.update_state(loss)
        if global_step is not None:
            global_step.assign_add(1)
        if check_gradients:
            return non_finite.loss_or_nan(loss, gradients)
        return loss

    return train_step


def timed(run_steps: Callable[[int], None], warmup_steps: int, steps: int) -> float:
    """Runs `warmup_steps` untimed, then returns the seconds `steps` more take."""
    run_steps(warmup_steps)
    start = time.perf_counter()
    run_steps(steps)
    return time.perf_counter() - start


def bench_eager(workload: Workload, steps: int) -> tuple[float, int]:
    """A Python loop over an eager GradientTape step (a tenth of the steps: it is that much
    slower)."""
    model, optimizer = fresh_state(workload)
    step = step_body(workload, model, optimizer)
    iterator = iter(batches(workload))

    def run(count):
        for _ in range(count):
            loss = step(*next(iterator))
        float(loss)

    steps = max(1, steps // 10)  # An order of magnitude slower: fewer steps, same wall time.
    return timed(run, max(1, steps // 10), steps), steps


def bench_step_function(workload: Workload, steps: int, record_if: bool = False):
    """A Python loop calling a per-step tf.function; with `record_if`, a scalar summary inside
    the step every SUMMARY_EVERY_STEPS steps, the popular way to log from a custom loop."""
    model, optimizer = fresh_state(workload)
    global_step = tf.Variable(0, dtype=tf.int64)
    body = step_body(workload, model, optimizer, global_step=global_step)
    logdir = tempfile.mkdtemp()
    writer = tf.summary.create_file_writer(logdir)

    @tf.function
    def step(features, labels):
        loss = body(features, labels)
        if record_if:
            with (
                writer.as_default(step=global_step),
                tf.summary.record_if(global_step % SUMMARY_EVERY_STEPS == 0),
            ):
                tf.summary.scalar("loss", loss)
        return loss

    iterator = iter(batches(workload))

    def run(count):
        for _ in range(count):
            loss = step(*next(iterator))
        float(loss)

    seconds = timed(run, 100, steps)
    writer.close()
    return seconds, steps


def bench_repo_loop(
    workload: Workload,
    steps: int,
    steps_per_loop: int | None = None,
    summaries: bool = True,
    jit_compile: bool = False,
    textbook: bool = False,
):
    """This repo's loop: the app's own TrainState and train step, run by common.loop.steps'
    train_loop, with the boundary's train scalars read and written as `training_loop.run`'s
    train-scalars action does; by default at the app's steps_per_loop."""
    steps_per_loop = steps_per_loop or workload.steps_per_loop
    state, train_step = workload.create_state()
    train_function = train_steps.make_train_step(state, train_step, jit_compile)
    train_loop = train_steps.make_train_loop(train_function)
    read_train_metrics = metrics.MetricReader(state.train_metrics)
    writer = tf.summary.create_file_writer(tempfile.mkdtemp())
    write_train_scalars = summaries_lib.ScalarWriter(writer)
    batches_ = batches(workload, textbook, features_only=workload.features_only)
    iterator = iter(state.strategy.experimental_distribute_dataset(batches_))
    boundary_seconds = [0.0]

    def run(count):
        done = 0
        while done < count:
            loop_steps = min(steps_per_loop, count - done)
            loop_start = time.perf_counter()
            loss = train_loop(iterator, tf.constant(loop_steps))
            step = int(state.global_step.numpy())  # As the loop does: waits for the steps.
            loop_seconds = time.perf_counter() - loop_start
            done += loop_steps
            # The boundary, as training_loop.run has it: the NaN check, the metrics read and
            # reset, the scalars written.
            start = time.perf_counter()
            float(loss)
            scalars = standard_actions.train_scalars(
                read_train_metrics, state, loop_steps, loop_seconds
            )
            if summaries:
                write_train_scalars(scalars, step)
            boundary_seconds[0] += time.perf_counter() - start

    run(steps_per_loop)  # Warm-up: tracing is not timed.
    boundary_seconds[0] = 0.0
    start = time.perf_counter()
    run(max(steps, steps_per_loop))
    seconds = time.perf_counter() - start
    writer.close()
    traces = train_function.experimental_get_tracing_count()
    # The loop boundary's share of this run's own time: measured directly, in the same loop, so it
    # is not drowned by the noise between two separately timed runs.
    return seconds, max(steps, steps_per_loop), traces, boundary_seconds[0] / seconds


def bench_fit(
    workload: Workload,
    steps: int,
    steps_per_execution: int = 1,
    jit: bool = False,
    textbook: bool = False,
):
    """`model.fit` on the workload's model the Keras way, `steps_per_execution` steps per call
    (the timed steps rounded down to a multiple of it)."""
    model, loss = workload.create_fit_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss,
        steps_per_execution=steps_per_execution,
        jit_compile=jit,
    )
    dataset = batches(workload, textbook)
    steps = max(steps_per_execution, steps // steps_per_execution * steps_per_execution)

    def run(count):
        model.fit(dataset, steps_per_epoch=count, epochs=1, verbose=0)

    return timed(run, steps_per_execution * 4, steps), steps


def in_loops(loop: Callable[[tf.Tensor], tf.Tensor], steps_per_loop: int) -> Callable[[int], None]:
    """`run(count)`: `count` steps as calls of `loop(num_steps)`, at most `steps_per_loop` steps
    each, every call waited for (its loss read)."""

    def run(count):
        done = 0
        while done < count:
            loop_steps = min(steps_per_loop, count - done)
            float(loop(tf.constant(loop_steps)))
            done += loop_steps

    return run


def bench_ceiling(workload: Workload, steps: int, steps_per_loop: int = 1000):
    """The bare step on one batch held in memory: no pipeline, metrics, step counter or checks."""
    model, optimizer = fresh_state(workload)
    step = step_body(workload, model, optimizer)
    features, labels = next(iter(batches(workload)))

    @tf.function
    def loop(num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss = step(features, labels)
        return loss

    return timed(in_loops(loop, steps_per_loop), min(steps, steps_per_loop), steps), steps


def bench_ceiling_fed(workload: Workload, steps: int, steps_per_loop: int = 1000):
    """The bare step of `bench_ceiling`, fed a fresh batch per step by the apps' pipeline as
    repo_loop is: against the ceiling, what feeding fresh batches costs, step extras apart."""
    model, optimizer = fresh_state(workload)
    step = step_body(workload, model, optimizer)
    # As repo_loop feeds it: an autoencoder's pipeline carries the features alone, which are also
    # its targets, so the step gets them twice rather than the pipeline carrying two copies.
    iterator = iter(batches(workload, features_only=workload.features_only))

    @tf.function
    def loop(iterator, num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            batch = next(iterator)
            loss = step(batch, batch) if workload.features_only else step(*batch)
        return loss

    def run(count):
        done = 0
        while done < count:
            loop_steps = min(steps_per_loop, count - done)
            float(loop(iterator, tf.constant(loop_steps)))
            done += loop_steps

    return timed(run, min(steps, steps_per_loop), steps), steps


def bench_app_step_one_batch(workload: Workload, steps: int, steps_per_loop: int = 1000):
    """The app's own train step (its create_state and train_step through
    steps.make_train_step: metrics, NaN check, global step, strategy.run) on one batch
    held in memory, breaking on a NaN as training_loop's loop does: against the ceiling, what the
    step's extras cost, the input pipeline apart."""
    state, train_step = workload.create_state()
    train_function = train_steps.make_train_step(state, train_step)
    batch = train_steps.as_tuple(
        next(iter(batches(workload, features_only=workload.features_only)))
    )

    @tf.function
    def loop(num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss, _ = train_function(*batch)
            if not tf.math.is_finite(loss):
                break
        return loss

    return timed(in_loops(loop, steps_per_loop), min(steps, steps_per_loop), steps), steps
