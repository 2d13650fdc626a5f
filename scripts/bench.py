"""`make bench`: how fast is this repo's GradientTape loop, against model.fit and the usual loops?

For each workload (an app's model, its loss, its batch size, synthetic data of its shape, fed by the
apps' own input pipeline), it measures, in one process, on the same model, data and batch size:

  eager                 a Python loop over an eager GradientTape step
  step_function         a Python loop calling a per-step tf.function
  step_function_record_if  the same with a scalar summary under record_if every 100 steps, inside
                        the step: the popular way to log from a custom loop
  repo_loop             this repo's loop, not a copy: the app's own TrainState and train step
                        (its create_state and train_step) run by common.loop.training_loop, the
                        app's
                        default steps_per_loop steps per tf.function call, and at each boundary
                        the NaN check, the train metrics read and reset and the train scalars
                        written, as training_loop.run does them
  repo_loop_no_summaries  the same with no summary written: the summaries' cost is the difference
  repo_loop_1000        steps_per_loop=1000: what a longer loop buys
  repo_loop_jit         repo_loop with the step XLA-compiled (`--jit_compile`)
  repo_loop_textbook_pipeline  repo_loop fed by `cache().shuffle().repeat().batch()` instead of
                        the apps' pipeline (common.loop.input_pipeline): what that pipeline buys
  fit                   model.fit, defaults (Keras 3 on TensorFlow resolves jit_compile to False)
  fit_spe32             model.fit with steps_per_execution=32, the baseline of the ratios
  fit_spe32_jit         model.fit with steps_per_execution=32 and jit_compile=True
  fit_spe32_textbook_pipeline  fit_spe32 fed by the textbook pipeline
  ceiling_one_batch     the bare step (model, loss, gradients, optimizer update; no metrics, step
                        counter or checks) on one batch held in memory, 1000 steps per
                        tf.function call: no input pipeline at all. What a loop of this model
                        can reach on this machine, so it bounds every ratio above
  ceiling_fed           the same bare step fed a fresh batch per step by the apps' pipeline, as
                        repo_loop is fed, 1000 steps per call: against the ceiling, what fresh
                        batches cost
  app_step_one_batch    the app's own train step (make_train_step: metrics, NaN check, global
                        step, strategy.run) on one batch in memory, 1000 steps per call: against
                        the ceiling, what the step's extras cost. With ceiling_fed, what bounds
                        repo_loop's share of the ceiling

`model.fit` gets the same model and loss the Keras way; for the VAE, whose loss needs the encoder's
mean and log-variance, the KL term is a layer's `add_loss`, the usual way to fit a VAE without a
custom train step.

Each measurement warms up first (tracing and the data cache are not timed), then times `--steps`
steps; methods are interleaved round-robin over `--repeats` rounds, and the median is reported, so
drift on a shared machine hits them all alike. The result is ratios within this run; the absolute
numbers are this machine's, named in the output. It also measures the one-time cost of the graph
trace (common.summaries.graphs.trace_step_graph) and a float32 matmul's throughput as the machine's
ceiling.

Then, end to end (`--end_to_end_pairs`, default 3; 0 skips it): each app's own command at its
defaults, as a user runs it (whole process: TensorFlow's import, the graph trace, evals,
histograms, checkpoints), against `scripts/fit_baseline.py` doing the same work with `model.fit`
(same model, data, steps, eval cadence, TensorBoard callback with histograms, BackupAndRestore),
alternated; and where the app's time goes, from the `time:` line each run prints
(common.loop.phase_times): start-up before the run's clock, then each phase, and the boundary work
(evals, eval summaries, boundaries, checkpoints, close) against the issue's targets.

Usage: python scripts/bench.py [--steps 2000] [--repeats 3] [--workloads mnist_mlp,vae_timeseries]
       [--output results/bench.json] [--end_to_end_pairs 3] [--end_to_end_steps N]
       [--end_to_end_apps mnist_mlp,regression_tape]
"""

import argparse
import dataclasses
import datetime
import functools
import importlib
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# Level 2 also hides the C++ warning that an iterator stopped inside a cache() before the epoch's
# end: the eager and first-call measurements do that on purpose.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import startup

# TensorFlow's C++ start-up lines would stand above the tables; an import failure still shows.
startup.import_tensorflow(show_startup_logs=False)

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from apps.mnist_mlp import model as mnist_model
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import model as regression_model
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import data as vae_data
from apps.vae_timeseries import model as vae_model
from apps.vae_timeseries import train as vae_train
from common import distribution
from common import summaries as summaries_lib
from common.loop import input_pipeline, phase_times, training_loop, training_run
from common.summaries import graphs, metrics
from scripts import fit_baseline
from scripts.measure_results import machine_name

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

BASELINE = "fit_spe32"
SUMMARY_EVERY_STEPS = 100
# The work a run does around its loops, and the targets for it: under 5% of a default
# run's whole process, and the eval summaries under 2% of the loops' time.
BOUNDARY_WORK = ("evals", "eval summaries", "boundaries", "checkpoints", "close")
BOUNDARY_WORK_TARGET = 0.05
EVAL_SUMMARIES_TARGET = 0.02
# The goal for repo_loop: this share of ceiling_one_batch's rate.
CEILING_TARGET = 0.8


@dataclasses.dataclass(frozen=True)
class Workload:
    """One app's training problem, as the bench needs it."""

    name: str
    create_model: Callable[[], keras.Model]
    compute_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (labels, outputs) -> mean loss
    # The same model and loss the Keras way, for model.fit: (model, loss for compile()).
    create_fit_model: Callable[[], tuple[keras.Model, Callable]]
    # The app's own TrainState and train step (its create_state and train_step): what repo_loop
    # runs, through common.loop.training_loop, exactly as the app does.
    create_state: Callable[[], tuple[training_loop.TrainState, training_loop.TrainStep]]
    features: np.ndarray
    labels: np.ndarray
    batch_size: int
    flops_per_example: int  # Forward, weight gradients and input gradients past the first layer.
    steps_per_loop: int  # The app's default: what repo_loop runs.
    # Timed steps relative to --steps: the VAE's step costs about 40x the MLP's, and a quarter
    # of the steps still lasts several seconds per measurement.
    steps_scale: float = 1.0
    features_only: bool = False  # The app's step takes the features alone (an autoencoder).


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of a model and of the models nested in it, in order."""
    layers = []
    for layer in model.layers:
        layers.extend(all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return layers


def training_flops(model: keras.Model) -> int:
    """Flops per example of a train step of a Dense/Conv1D/Conv1DTranspose model: 2 per
    multiply-add, for the forward pass, the weight gradients, and the input gradients of every
    layer but the first (whose input needs none)."""
    multiply_adds = []
    for layer in all_layers(model):
        if not hasattr(layer, "kernel"):
            continue
        if isinstance(layer, keras.layers.Conv1DTranspose):
            positions = layer.input.shape[1]
        elif isinstance(layer, keras.layers.Conv1D):
            positions = layer.output.shape[1]
        else:
            positions = 1
        multiply_adds.append(int(np.prod(layer.kernel.shape)) * positions)
    return 2 * (3 * sum(multiply_adds) - multiply_adds[0])


def same_model_for_fit(create_model: Callable[[], keras.Model], keras_loss: Callable):
    return lambda: (create_model(), keras_loss())


def mean_loss(per_example_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]):
    """(labels, outputs) -> the batch's mean loss, from an app's per-example loss."""
    return lambda labels, outputs: tf.reduce_mean(per_example_loss(labels, outputs))


def mnist_workload(num_examples: int) -> Workload:
    rng = np.random.default_rng(0)
    return Workload(
        name="mnist_mlp",
        create_model=mnist_model.create_model,
        compute_loss=mean_loss(mnist_train.per_example_loss),
        create_fit_model=same_model_for_fit(
            mnist_model.create_model,
            lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ),
        create_state=lambda: (
            mnist_train.create_state(mnist_train.Config()),
            mnist_train.train_step,
        ),
        features=rng.random((num_examples, 784), dtype=np.float32),
        labels=rng.integers(0, 10, num_examples).astype(np.int32),
        batch_size=128,
        flops_per_example=training_flops(mnist_model.create_model()),
        steps_per_loop=mnist_train.Config().steps_per_loop,
    )


def regression_workload(num_examples: int) -> Workload:
    rng = np.random.default_rng(0)
    return Workload(
        name="regression_tape",
        create_model=regression_model.create_model,
        compute_loss=mean_loss(regression_train.per_example_loss),
        create_fit_model=same_model_for_fit(
            regression_model.create_model, keras.losses.MeanSquaredError
        ),
        create_state=lambda: (
            regression_train.create_state(regression_train.Config()),
            regression_train.train_step,
        ),
        features=rng.uniform(-1, 1, (num_examples, 10)).astype(np.float32),
        labels=rng.normal(size=(num_examples, 1)).astype(np.float32),
        batch_size=64,
        flops_per_example=training_flops(regression_model.create_model()),
        steps_per_loop=regression_train.Config().steps_per_loop,
    )


class KLDivergenceLoss(keras.layers.Layer):
    """Adds the VAE's KL term to the model's losses: how `model.fit` learns a VAE without a
    custom train step. Passes the code `z` through: a layer whose output no other layer uses is
    not part of a Functional model, and its loss would be silently dropped."""

    def call(self, inputs):
        mean, log_variance, z = inputs
        self.add_loss(tf.reduce_mean(vae_train.kl_divergence(mean, log_variance)))
        return z


def vae_fit_model(
    window_length: int, num_channels: int, latent_dim: int
) -> tuple[keras.Model, Callable]:
    """The app's encoder and decoder as one model for `fit`, its KL term an `add_loss`, and the
    reconstruction loss for `compile`."""
    encoder = vae_model.create_encoder(window_length, num_channels, latent_dim)
    decoder = vae_model.create_decoder(window_length, num_channels, latent_dim)
    windows = keras.Input(shape=(window_length, num_channels))
    mean, log_variance, z = encoder(windows)
    z = KLDivergenceLoss()([mean, log_variance, z])
    return keras.Model(windows, decoder(z)), vae_train.reconstruction_loss


def vae_workload(num_examples: int) -> Workload:
    config = vae_train.Config()
    # 8,192 windows of 64 x 32 floats are 64 MB; 60,000 would be half a gigabyte per copy.
    num_examples = min(num_examples, 8192)
    shape = (config.window_length, config.num_channels, config.latent_dim)

    def create_vae() -> keras.Model:
        """windows -> (mean, log_variance, reconstructions), as the app's two models compose."""
        encoder = vae_model.create_encoder(*shape)
        decoder = vae_model.create_decoder(*shape)
        windows = keras.Input(shape=shape[:2])
        mean, log_variance, z = encoder(windows)
        return keras.Model(windows, [mean, log_variance, decoder(z)])

    def compute_loss(windows, outputs):
        mean, log_variance, reconstructions = outputs
        return tf.reduce_mean(
            vae_train.reconstruction_loss(windows, reconstructions)
            + vae_train.kl_divergence(mean, log_variance)
        )

    def create_fit_model():
        return vae_fit_model(*shape)

    windows = vae_data.make_windows(
        vae_data.synthetic_series(
            # The series generator needs a thousand points or so to place its regime changes.
            config.num_channels,
            max(num_examples, 1024) + config.window_length,
            seed=0,
        ),
        config.window_length,
        stride=1,
    )[:num_examples]
    return Workload(
        name="vae_timeseries",
        create_model=create_vae,
        compute_loss=compute_loss,
        create_fit_model=create_fit_model,
        create_state=lambda: (
            vae_train.create_state(config, config.num_channels),
            functools.partial(vae_train.train_step, kl_warmup_steps=config.kl_warmup_steps),
        ),
        features=windows,
        labels=windows,  # An autoencoder's target is its input.
        batch_size=config.batch_size,
        flops_per_example=training_flops(create_vae()),
        steps_per_loop=config.steps_per_loop,
        steps_scale=0.25,
        features_only=True,
    )


WORKLOADS = {
    "mnist_mlp": mnist_workload,
    "regression_tape": regression_workload,
    "vae_timeseries": vae_workload,
}


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
            return training_run.loss_or_nan(loss, gradients)
        return loss

    return train_step


def timed(run_steps: Callable[[int], None], warmup_steps: int, steps: int) -> float:
    """Runs `warmup_steps` untimed, then returns the seconds `steps` more take."""
    run_steps(warmup_steps)
    start = time.perf_counter()
    run_steps(steps)
    return time.perf_counter() - start


def bench_eager(workload: Workload, steps: int) -> tuple[float, int]:
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
    """This repo's loop: the app's own TrainState and train step, run by common.loop.training_loop's
    train_loop, with the boundary's train scalars as `training_loop.run` reads and writes them;
    by default at the app's steps_per_loop."""
    steps_per_loop = steps_per_loop or workload.steps_per_loop
    state, train_step = workload.create_state()
    train_function = training_loop.make_train_step(state, train_step, jit_compile)
    train_loop = training_loop.make_train_loop(train_function)
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
            scalars = training_loop.train_scalars(
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
    training_loop.make_train_step: metrics, NaN check, global step, strategy.run) on one batch
    held in memory, breaking on a NaN as training_loop's loop does: against the ceiling, what the
    step's extras cost, the input pipeline apart."""
    state, train_step = workload.create_state()
    train_function = training_loop.make_train_step(state, train_step)
    batch = training_loop.as_tuple(
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


def bench_trace_cost(workload: Workload) -> dict[str, float]:
    """Wall time of a train step's first call (tracing included), with and without the graph
    trace around it, each on a fresh model; the difference is the trace's one-time cost."""
    results = {}
    for with_trace in (False, True, False, True):
        model, optimizer = fresh_state(workload)
        step = tf.function(step_body(workload, model, optimizer))
        batch = next(iter(batches(workload)))
        start = time.perf_counter()
        if with_trace:
            writer = tf.summary.create_file_writer(tempfile.mkdtemp())
            float(graphs.trace_step_graph(step, batch, writer))
            writer.close()
        else:
            float(step(*batch))
        results.setdefault(with_trace, []).append(time.perf_counter() - start)
        assert step.experimental_get_tracing_count() == 1
    first_call = min(results[False])
    traced_first_call = min(results[True])
    return {
        "first_call_seconds": first_call,
        "first_call_with_graph_trace_seconds": traced_first_call,
        "graph_trace_extra_seconds": traced_first_call - first_call,
        # How much two first calls of the same kind differ: the trace's cost is measurable only
        # above this.
        "first_call_spread_seconds": max(
            max(results[False]) - first_call, max(results[True]) - traced_first_call
        ),
    }


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Float32 matmul throughput on this machine: the ceiling the MLP's arithmetic is held to."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))

    @tf.function
    def multiply(count):
        total = tf.zeros((size, size))
        for _ in tf.range(count):
            total += tf.matmul(a, b)
        return total

    multiply(tf.constant(1)).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        multiply(tf.constant(repeats)).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def bench_workload(workload: Workload, steps: int, repeats: int) -> dict:
    steps = max(1, round(steps * workload.steps_scale))
    methods: dict[str, Callable[[], tuple]] = {
        "eager": lambda: bench_eager(workload, steps),
        "step_function": lambda: bench_step_function(workload, steps),
        "step_function_record_if": lambda: bench_step_function(workload, steps, record_if=True),
        "repo_loop": lambda: bench_repo_loop(workload, steps),
        "repo_loop_no_summaries": lambda: bench_repo_loop(workload, steps, summaries=False),
        "repo_loop_1000": lambda: bench_repo_loop(workload, steps, steps_per_loop=1000),
        "repo_loop_jit": lambda: bench_repo_loop(workload, steps, jit_compile=True),
        "repo_loop_textbook_pipeline": lambda: bench_repo_loop(workload, steps, textbook=True),
        "fit": lambda: bench_fit(workload, steps),
        "fit_spe32": lambda: bench_fit(workload, steps, steps_per_execution=32),
        "fit_spe32_jit": lambda: bench_fit(workload, steps, steps_per_execution=32, jit=True),
        "fit_spe32_textbook_pipeline": lambda: bench_fit(
            workload, steps, steps_per_execution=32, textbook=True
        ),
        "ceiling_one_batch": lambda: bench_ceiling(workload, steps),
        "ceiling_fed": lambda: bench_ceiling_fed(workload, steps),
        "app_step_one_batch": lambda: bench_app_step_one_batch(workload, steps),
    }
    rates: dict[str, list[float]] = {name: [] for name in methods}
    traces: dict[str, int] = {}
    summary_shares: list[float] = []
    for round_number in range(repeats):
        for name, method in methods.items():
            seconds, measured_steps, *extra = method()
            rates[name].append(measured_steps * workload.batch_size / seconds)
            if extra:
                traces[name] = extra[0]
            if name == "repo_loop":
                summary_shares.append(extra[1])
            print(
                f"  round {round_number + 1}/{repeats} {name:<24} "
                f"{rates[name][-1]:>12,.0f} examples/s",
                flush=True,
            )
    median = {name: statistics.median(values) for name, values in rates.items()}
    ceiling = matmul_gflops()
    return {
        "batch_size": workload.batch_size,
        "timed_steps": steps,
        "flops_per_example": workload.flops_per_example,
        "methods": {
            name: {
                "examples_per_second": median[name],
                "all_rounds": rates[name],
                "ratio_to_fit_spe32": median[name] / median[BASELINE],
            }
            for name in methods
        },
        # Two estimates: the share of repo_loop's time spent at loop boundaries reading metrics
        # and writing summaries (direct), and the throughput difference to
        # repo_loop_no_summaries (two separate timings: noisier).
        "boundary_time_share": statistics.median(summary_shares),
        "summaries_cost_fraction": 1 - median["repo_loop"] / median["repo_loop_no_summaries"],
        "train_step_traces": traces,
        "trace": bench_trace_cost(workload),
        "matmul_gflops": ceiling,
        "repo_loop_gflops": median["repo_loop"] * workload.flops_per_example / 1e9,
        "repo_loop_fraction_of_matmul": median["repo_loop"]
        * workload.flops_per_example
        / 1e9
        / ceiling,
    }


# What single runs of one method move by on this shared 2-core machine (docs/speed.md): the noise
# floor assumed when one round gives no spread to measure.
SINGLE_ROUND_NOISE = 0.20


def noise_floor(workload: dict) -> float:
    """The median relative spread, (max - min) / median, of each method's rounds: differences in
    rate smaller than this are noise, not findings."""
    spreads = [
        (max(row["all_rounds"]) - min(row["all_rounds"])) / statistics.median(row["all_rounds"])
        for row in workload["methods"].values()
        if len(row["all_rounds"]) > 1
    ]
    return statistics.median(spreads) if spreads else SINGLE_ROUND_NOISE


def bounds_text(rates: dict[str, float], noise: float) -> str:
    """What bounds repo_loop against ceiling_one_batch: the cost of fresh batches (ceiling_fed)
    and of the app's step extras (app_step_one_batch), each a factor of the ceiling, and so
    whether the issue's CEILING_TARGET is within reach."""
    ceiling = rates["ceiling_one_batch"]
    of_ceiling = rates["repo_loop"] / ceiling
    fed = rates["ceiling_fed"] / ceiling
    app_step = rates["app_step_one_batch"] / ceiling
    # If the two costs are independent, a loop that pays both reaches about their product; what
    # repo_loop falls short of that is its own: boundaries, the distributed iterator.
    both = fed * app_step
    rest = (
        " (over 100%: the two costs overlap, or the noise)"
        if of_ceiling > both
        else ", the rest lost to its loop boundaries and its distributed iterator"
    )
    # A cost whose factor alone is under the target puts the target out of reach whatever the
    # loop does; two that are each above it can still be under it together.
    alone = [
        cost
        for cost, factor in (("fresh batches", fed), ("the step's extras", app_step))
        if factor < CEILING_TARGET
    ]
    if of_ceiling >= CEILING_TARGET:
        verdict = f"repo_loop reaches the target ({CEILING_TARGET:.0%} of the ceiling)"
    elif alone:
        verdict = (
            f"{CEILING_TARGET:.0%} of the ceiling is out of reach for this step and pipeline: "
            f"{' and '.join(alone)} {'each ' if len(alone) > 1 else ''}alone bring the step "
            "below it"
        )
    elif both < CEILING_TARGET:
        verdict = (
            f"{CEILING_TARGET:.0%} of the ceiling is out of reach for this step and pipeline: "
            "each cost alone leaves room, both together do not"
        )
    else:
        verdict = (
            f"{CEILING_TARGET:.0%} of the ceiling is within the bounds: the gap is in the loop "
            "itself"
        )
    return (
        f"bounds: repo_loop reaches {of_ceiling:.0%} of ceiling_one_batch (the issue's target: "
        f"{CEILING_TARGET:.0%}). Fresh batches: the bare step fed by the apps' pipeline "
        f"(ceiling_fed) runs at {fed:.0%} of the ceiling; the step's extras: the app's own step "
        f"(metrics, NaN check, global step, strategy.run) on one batch (app_step_one_batch) at "
        f"{app_step:.0%}. Both together allow about {both:.0%} ({fed:.2f} x {app_step:.2f}); "
        f"repo_loop reaches {of_ceiling / both:.0%} of that{rest}. So {verdict}. (Each factor "
        f"is a ratio of two rates: within {noise:.0%} of 1, or of each other, it is noise.)"
    )


def print_table(results: dict) -> None:
    threads = results.get("compute_threads") or "TensorFlow's default"
    print(f"\nmachine: {results['machine']}; {results['date']}; intra-op threads: {threads}")
    for name, workload in results["workloads"].items():
        noise = noise_floor(workload)
        print(f"\n### {name} (batch {workload['batch_size']})\n")
        print("| method | examples/s | vs fit, steps_per_execution=32 | rounds' spread |")
        print("|---|---|---|---|")
        for method, row in workload["methods"].items():
            rounds = row["all_rounds"]
            spread = (max(rounds) - min(rounds)) / statistics.median(rounds)
            print(
                f"| {method} | {row['examples_per_second']:,.0f} | "
                f"{row['ratio_to_fit_spe32']:.2f}x | "
                f"{f'±{spread / 2:.0%}' if len(rounds) > 1 else '1 round'} |"
            )
        measured = "measured" if noise != SINGLE_ROUND_NOISE else "assumed (1 round)"
        print(
            f"\nnoise floor: ±{noise / 2:.0%} ({measured}); rates closer than {noise:.0%} to "
            "each other are not findings (more --repeats narrow it)."
        )
        trace = workload["trace"]
        extra = trace["graph_trace_extra_seconds"]
        trace_noise = trace["first_call_spread_seconds"]
        trace_text = (
            f"the graph trace adds {extra:.3f} s once"
            if extra > trace_noise
            else f"the graph trace's one-time cost is below the noise (first calls vary by "
            f"{trace_noise:.3f} s)"
        )
        print(
            f"loop boundaries (the NaN check, reading and resetting the app's train metrics, "
            f"writing its train scalars) take {workload['boundary_time_share']:.1%} of "
            f"repo_loop's time (measured in the loop; the throughput difference to "
            f"repo_loop_no_summaries, {workload['summaries_cost_fraction']:+.1%}, is within "
            f"the noise floor unless larger than it); {trace_text} (first call "
            f"{trace['first_call_seconds']:.3f} s); train step traced "
            f"{workload['train_step_traces']['repo_loop']} time(s); repo_loop runs at "
            f"{workload['repo_loop_gflops']:.1f} GFLOP/s, "
            f"{workload['repo_loop_fraction_of_matmul']:.0%} of a {workload['matmul_gflops']:.1f} "
            "GFLOP/s float32 matmul."
        )
        rates = {name: row["examples_per_second"] for name, row in workload["methods"].items()}
        of_ceiling = rates["repo_loop"] / rates["ceiling_one_batch"]
        print(
            f"ceiling: the bare step with no input pipeline runs at "
            f"{rates['ceiling_one_batch'] / rates[BASELINE]:.2f}x fit_spe32, an upper bound for "
            f"any loop of this model here; repo_loop reaches {of_ceiling:.0%} of it"
            f"{' (over 100%: equal within the noise floor)' if of_ceiling > 1 else ''}, and runs "
            f"at {rates['repo_loop'] / rates['fit']:.2f}x plain fit."
        )
        print(bounds_text(rates, noise))


def run_process(command: list[str]) -> tuple[float, str]:
    """Runs a whole process from the repository's root; returns its wall time and stdout."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return seconds, result.stdout


def final_values(stdout: str, prefix: str) -> dict[str, float]:
    """The `name=value` pairs of the line starting with `prefix` (`final:` or `fit:`)."""
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return {name: float(value) for name, value in re.findall(r"(\S+)=(\S+)", line)}


def bench_end_to_end(apps: list[str], pairs: int, num_steps: int | None = None) -> dict:
    """Each app's own command, as a user runs it, against `scripts/fit_baseline.py` doing the
    same work with `model.fit`: whole processes (TensorFlow's import included), alternated, who
    goes first switching every pair; medians of `pairs` pairs. Also where the app's time goes."""
    steps_flag = [f"--num_steps={num_steps}"] if num_steps else []
    results = {}
    for app in apps:
        app_runs, fit_runs, fit_threads_runs = [], [], []
        for pair in range(pairs):
            with tempfile.TemporaryDirectory() as temporary:
                commands = {
                    "app": [
                        sys.executable,
                        "-m",
                        f"apps.{app}",
                        *fit_baseline.APP_FLAGS[app],
                        f"--logdir={temporary}/app",
                        *steps_flag,
                    ],
                    "fit": [
                        sys.executable,
                        "scripts/fit_baseline.py",
                        f"--app={app}",
                        f"--logdir={temporary}/fit",
                        *steps_flag,
                    ],
                    # fit with the threads the app sets itself (common.distribution.
                    # set_compute_threads): the same machine settings, only the loops differ.
                    "fit_app_threads": [
                        sys.executable,
                        "scripts/fit_baseline.py",
                        f"--app={app}",
                        f"--logdir={temporary}/fit_app_threads",
                        "--app_threads",
                        *steps_flag,
                    ],
                }
                order = ["app", "fit", "fit_app_threads"]
                for name in order[pair % 3 :] + order[: pair % 3]:  # Each goes first in turn.
                    seconds, stdout = run_process(commands[name])
                    if name.startswith("fit"):
                        runs = fit_runs if name == "fit" else fit_threads_runs
                        runs.append({"seconds": seconds, **final_values(stdout, "fit:")})
                        continue
                    total, phases, repeats = phase_times.parse_line(stdout)
                    app_runs.append(
                        {
                            "seconds": seconds,
                            **final_values(stdout, "final:"),
                            # Before the run's clock starts: Python, TensorFlow's import, the
                            # flags, the model build.
                            "start_up_seconds": seconds - total,
                            "run_seconds": total,
                            "phase_seconds": phases,
                            "phase_repeats": repeats,
                        }
                    )
            print(
                f"  pair {pair + 1}/{pairs} {app}: app {app_runs[-1]['seconds']:.1f} s, "
                f"fit {fit_runs[-1]['seconds']:.1f} s, fit with the app's threads "
                f"{fit_threads_runs[-1]['seconds']:.1f} s",
                flush=True,
            )
        app_seconds = statistics.median(run["seconds"] for run in app_runs)
        fit_seconds = statistics.median(run["seconds"] for run in fit_runs)
        fit_threads_seconds = statistics.median(run["seconds"] for run in fit_threads_runs)
        app_steps, fit_steps = app_runs[0]["steps"], fit_runs[0]["steps"]
        # Where the app's time goes, from its own `time:` line: medians over the pairs, of the
        # phases and of the shares (a median of shares, not a share of medians, which come from
        # different runs).
        phase_names = [*phase_times.PHASES, "other"]
        phases = {
            name: statistics.median(run["phase_seconds"].get(name, 0.0) for run in app_runs)
            for name in phase_names
            if any(name in run["phase_seconds"] for run in app_runs)
        }
        results[app] = {
            "app_seconds": app_seconds,
            "fit_seconds": fit_seconds,
            "app_steps": app_steps,
            "fit_steps": fit_steps,
            # Speed at equal work: fit's time per step over the app's.
            "app_speed_vs_fit": (fit_seconds / fit_steps) / (app_seconds / app_steps),
            "fit_app_threads_seconds": fit_threads_seconds,
            "app_speed_vs_fit_app_threads": (fit_threads_seconds / fit_steps)
            / (app_seconds / app_steps),
            "start_up_seconds": statistics.median(run["start_up_seconds"] for run in app_runs),
            "run_seconds": statistics.median(run["run_seconds"] for run in app_runs),
            "phase_seconds": phases,
            "boundary_work_share": statistics.median(
                sum(run["phase_seconds"].get(name, 0.0) for name in BOUNDARY_WORK) / run["seconds"]
                for run in app_runs
            ),
            "eval_summaries_share_of_loops": statistics.median(
                run["phase_seconds"].get("eval summaries", 0.0) / run["phase_seconds"]["loops"]
                for run in app_runs
            ),
            # fit's process outside model.fit: the same imports, its model and data.
            "fit_start_up_seconds": statistics.median(
                run["seconds"] - run["wall_time_seconds"] for run in fit_runs
            ),
            # What bounds the ratio: the app with nothing but its start-up and its loops, every
            # one-time trace, eval, summary and checkpoint free, against fit as measured.
            "best_case_speed_vs_fit": (fit_seconds / fit_steps)
            / (
                (statistics.median(run["start_up_seconds"] for run in app_runs) + phases["loops"])
                / app_steps
            ),
            "all_pairs": {"app": app_runs, "fit": fit_runs, "fit_app_threads": fit_threads_runs},
        }
    return results


def print_end_to_end(results: dict, pairs: int, num_steps: int | None = None) -> None:
    """The end-to-end table, then, per app, where its process's time goes (from its `time:`
    line) and the boundary work against the issue's targets."""
    print(
        f"\n### End to end: each app's command against model.fit doing the same work (whole "
        f"processes, alternated, median of {pairs} pair(s))\n"
    )
    print(
        "| app | app (s) | fit (s) | app speed vs fit, per step | fit, app's threads (s) | app "
        "speed vs it | steps app / fit | start-up | loops | rest of the run (setup, trace, "
        "evals, summaries, checkpoints) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for app, row in results.items():
        loops = row["phase_seconds"]["loops"]
        print(
            f"| {app} | {row['app_seconds']:.1f} | {row['fit_seconds']:.1f} | "
            f"{row['app_speed_vs_fit']:.2f}x | {row['fit_app_threads_seconds']:.1f} | "
            f"{row['app_speed_vs_fit_app_threads']:.2f}x | "
            f"{row['app_steps']:.0f} / {row['fit_steps']:.0f} | "
            f"{row['start_up_seconds']:.1f} s | {loops:.1f} s | "
            f"{row['run_seconds'] - loops:.1f} s |"
        )
    # The 5% is of a default run: a shorter one weighs its one-time phases more.
    length = f"--end_to_end_steps {num_steps}, not the default" if num_steps else "a default run"
    for app, row in results.items():
        whole = row["app_seconds"]
        print(
            f"\n#### {app}: where the app's {whole:.1f} s go (medians over {pairs} pair(s); "
            f"{length})\n"
        )
        print("| part | seconds | share of the process |")
        print("|---|---|---|")
        parts = {
            "start-up (Python, TensorFlow's import, flags, model build)": row["start_up_seconds"],
            **row["phase_seconds"],
        }
        for name, seconds in parts.items():
            print(f"| {name} | {seconds:.2f} | {seconds / whole:.0%} |")
        print(
            f"\nstart-up: app {row['start_up_seconds']:.1f} s, fit "
            f"{row['fit_start_up_seconds']:.1f} s (TensorFlow's import is most of both). With "
            f"nothing but its start-up and its loops (every trace, eval, summary and checkpoint "
            f"free) the app would run at {row['best_case_speed_vs_fit']:.2f}x fit per step: the "
            "bound on this ratio at this run length."
        )
        print(
            f"boundary work ({' + '.join(BOUNDARY_WORK)}): {row['boundary_work_share']:.1%} of "
            f"the process (the issue's target: under {BOUNDARY_WORK_TARGET:.0%} of a default "
            f"run); eval summaries on the loop's thread: "
            f"{row['eval_summaries_share_of_loops']:.1%} of the loops' time (their whole cost, "
            "their thread's included: the eval summaries section)."
        )


# Every app's command at its defaults, for the eval summaries' cost (mnist_mlp on synthetic digits,
# as in the end-to-end section: the same work whatever the network).
SUMMARY_APPS = {
    "mnist_mlp": ("--dataset=synthetic",),
    "regression_tape": (),
    "vae_timeseries": (),
    "conditional_dropout": (),
}


def bench_eval_summaries(
    apps: list[str], pairs: int, num_steps: int | None = None, length: int = 1
) -> dict:
    """Each app's command at its defaults with its eval summaries and without them (the same
    command through `scripts/without_eval_summaries.py`, which drops the jobs the loop hands to
    their thread), alternated, who goes first switching every pair.

    Three measures, per app, medians over the pairs: the summaries' time on the loop's own thread
    (the `eval summaries` phase: the weights snapshot, handing the jobs over, waiting for them),
    their CPU time on their own thread, and what they cost the run: its `time:` total (the run from
    setup to close, TensorFlow's import left out) with them less without them, which also holds
    whatever their thread took from the loops' cores. Each as a share of the loops' time without
    them. The runs' spread says how far the last one can be trusted on a shared machine.
    `num_steps` replaces the apps' default length (the tests' tiny runs); `length` multiplies it
    instead, every cadence left at its default: a run `length` times as long makes `length` times
    the evals, so their one-time costs (the first eager calls, the first pictures, the
    Projector's sprite) weigh less, as in a user's long run.
    """
    results = {}
    for app in apps:
        if num_steps:
            steps_flag = [f"--num_steps={num_steps}"]
        elif length != 1:
            default_steps = importlib.import_module(f"apps.{app}.config").Config().num_steps
            steps_flag = [f"--num_steps={default_steps * length}"]
        else:
            steps_flag = []
        with_them, without_them = [], []
        for pair in range(pairs):
            with tempfile.TemporaryDirectory() as temporary:
                commands = {
                    "with": [sys.executable, "-m", f"apps.{app}"],
                    "without": [sys.executable, "scripts/without_eval_summaries.py", f"apps.{app}"],
                }
                for name in ("with", "without") if pair % 2 == 0 else ("without", "with"):
                    logdir = f"--logdir={temporary}/{name}"
                    flags = [*SUMMARY_APPS[app], *steps_flag, logdir]
                    _, stdout = run_process([*commands[name], *flags])
                    total, phases, repeats = phase_times.parse_line(stdout)
                    runs = with_them if name == "with" else without_them
                    runs.append({"total": total, "phases": phases, "repeats": repeats})
            print(
                f"  pair {pair + 1}/{pairs} {app}: with {with_them[-1]['total']:.2f} s, without "
                f"{without_them[-1]['total']:.2f} s",
                flush=True,
            )
        loops = statistics.median(run["phases"]["loops"] for run in without_them)
        totals_without = [run["total"] for run in without_them]
        results[app] = {
            "evals": with_them[0]["repeats"].get("evals", (1, 0.0))[0],
            "loops_seconds": loops,
            "loops_seconds_with": statistics.median(run["phases"]["loops"] for run in with_them),
            "loop_thread_seconds": statistics.median(
                run["phases"].get("eval summaries", 0.0) for run in with_them
            ),
            "background_seconds": statistics.median(
                run["phases"].get("background", 0.0) for run in with_them
            ),
            "cost_seconds": statistics.median(
                with_run["total"] - without_run["total"]
                for with_run, without_run in zip(with_them, without_them, strict=True)
            ),
            "spread_seconds": max(totals_without) - min(totals_without),
            "all_pairs": {"with": with_them, "without": without_them},
        }
    return results


def print_eval_summaries(results: dict, pairs: int, length: int = 1) -> None:
    """The eval summaries' cost per app, against the issue's 2% of the loops' time."""
    runs = "at each app's defaults" if length == 1 else f"{length}x each app's default length"
    print(
        f"\n### Eval summaries, {runs}: their cost against the loops' time (median "
        f"of {pairs} pair(s) of runs with and without them; target: under "
        f"{EVAL_SUMMARIES_TARGET:.0%})\n"
    )
    print(
        "| app | evals | loops (s) | on the loop's thread | their own thread's CPU | run with them "
        "less without | runs' spread without them |"
    )
    print("|---|---|---|---|---|---|---|")
    for app, row in results.items():
        loops = row["loops_seconds"]

        def share(seconds: float, loops: float = loops) -> str:
            return f"{seconds:.2f} s ({seconds / loops:.1%})"

        print(
            f"| {app} | {row['evals']} | {loops:.2f} | {share(row['loop_thread_seconds'])} | "
            f"{share(row['background_seconds'])} | {share(row['cost_seconds'])} | "
            f"{share(row['spread_seconds'])} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--examples", type=int, default=60000, help="synthetic examples")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("results/bench.json"))
    parser.add_argument(
        "--end_to_end_pairs", type=int, default=3, help="app/fit process pairs (0: skip)"
    )
    parser.add_argument(
        "--end_to_end_steps", type=int, default=None, help="steps per process (default: app's)"
    )
    parser.add_argument(
        "--end_to_end_apps", default=None, help="apps for the end-to-end section (default: all)"
    )
    parser.add_argument(
        "--eval_summaries_pairs",
        type=int,
        default=3,
        help="pairs of runs with and without the eval summaries, per app (0: skip)",
    )
    parser.add_argument("--eval_summaries_apps", default=",".join(SUMMARY_APPS))
    parser.add_argument(
        "--eval_summaries_steps", type=int, default=None, help="steps per run (default: app's)"
    )
    parser.add_argument(
        "--eval_summaries_length",
        type=int,
        default=1,
        help="runs this many times each app's default length, cadences unchanged",
    )
    args = parser.parse_args()
    logging.set_verbosity(logging.ERROR)  # Keras/TF retracing and deprecation chatter.
    # Every method below runs on the threads the apps run on (fit's rows too): the table compares
    # loops, not thread settings. The end-to-end section runs fit both ways.
    compute_threads = distribution.set_compute_threads()

    results = {
        "machine": machine_name(),
        "compute_threads": compute_threads,
        "date": datetime.date.today().isoformat(),
        "steps": args.steps,
        "repeats": args.repeats,
        "workloads": {},
    }
    for name in filter(None, args.workloads.split(",")):  # --workloads= : end to end only.
        print(f"{name}:", flush=True)
        workload = WORKLOADS[name](args.examples)
        results["workloads"][name] = bench_workload(workload, args.steps, args.repeats)
    end_to_end_apps = (args.end_to_end_apps or ",".join(fit_baseline.APPS)).split(",")
    if args.end_to_end_pairs and end_to_end_apps:
        print("end to end:", flush=True)
        results["end_to_end"] = bench_end_to_end(
            end_to_end_apps, args.end_to_end_pairs, args.end_to_end_steps
        )
    summary_apps = list(filter(None, args.eval_summaries_apps.split(",")))
    if args.eval_summaries_pairs and summary_apps:
        print("eval summaries:", flush=True)
        results["eval_summaries"] = bench_eval_summaries(
            summary_apps,
            args.eval_summaries_pairs,
            args.eval_summaries_steps,
            args.eval_summaries_length,
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print_table(results)
    if "end_to_end" in results:
        print_end_to_end(results["end_to_end"], args.end_to_end_pairs, args.end_to_end_steps)
    if "eval_summaries" in results:
        print_eval_summaries(
            results["eval_summaries"], args.eval_summaries_pairs, args.eval_summaries_length
        )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
