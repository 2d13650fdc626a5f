"""Trains the 10 -> 32 -> 16 -> 1 regression network with a `tf.GradientTape` loop.

The popular version of this example logs the loss every step and leaves its data and loss to the
reader. Here both are explicit (`data.py`, `compute_loss`) and the loop follows Orbit, as in
mnist_mlp: an int64 global step, `steps_per_loop` steps per `tf.function` call, summaries, eval and
console output at loop boundaries, and the first step run inside the graph trace.

Checkpoints (`common.training_run`) make a run resumable, and `common.distribution` runs the same
loop on several replicas or workers, as in mnist_mlp.

What lands in `<logdir>`:
  train/  the step's op graph (tag `graph/train_step`), the Keras graph, model summary, config and
          dataset text; scalars `loss` (MSE), `gradient_norm/global` and one
          `gradient_norm/<variable>` per variable (means over the loop), `learning_rate`,
          `steps_per_second`, `examples_per_second`; weight histograms at every eval.
  eval/   scalars `loss` (MSE), `mae`, `rmse` on the held-out split, every `eval_every_steps`.
"""

import dataclasses
import time

import keras
import tensorflow as tf

from common import distribution, graphs, metrics, progress, step_counter, summaries, training_run

from . import data
from . import model as model_lib


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; `main.py` builds it from flags, tests build it directly."""

    num_steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    noise_std: float = 0.1
    steps_per_loop: int = 500
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 1000
    jit_compile: bool = False  # XLA-compile the train step (default strategy only).
    strategy: str = "default"  # One of common.distribution.STRATEGY_NAMES.
    num_cpu_devices: int = 1  # Logical CPUs to split the CPU into (for mirrored on CPU).


def per_example_loss(targets: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
    """Squared error of each example: shape [batch] (targets and predictions are [batch, 1])."""
    return tf.reduce_sum(tf.square(predictions - targets), axis=-1)


def compute_loss(targets: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
    """Mean squared error: the loss whose minimum, for Gaussian noise, is the noise variance."""
    return tf.reduce_mean(per_example_loss(targets, predictions))


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`; returns the final metrics.

    Running it again on the same logdir resumes from the latest checkpoint; on a finished run it
    does nothing and says so (and returns only `steps`).

    Args:
        config: the run's settings.
        logdir: the run's directory: `train/` and `eval/` summaries, `checkpoints/`.
        datasets: data to use instead of generating it from `config` (tests inject here).

    Returns:
        `train/loss`, `eval/loss`, `eval/mae`, `eval/rmse` at the last step; `noise_std` and
        `trivial_rmse` to judge them by; `steps`, `resumed_from_step`, `examples_per_second`,
        `wall_time_seconds`, and `train_step_traces` (1: the step was never retraced).

    Raises:
        common.errors.UserError: for an unusable logdir, a checkpoint of another model, or a
            NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    start_time = time.perf_counter()
    # First: splitting the CPU into logical devices must precede every other TensorFlow call.
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():  # Variables made here are mirrored on every replica.
        model = model_lib.create_model()
        optimizer = keras.optimizers.Adam(config.learning_rate)
        # Slot variables now, not in the first step: a tf.function that creates variables
        # traces twice.
        optimizer.build(model.trainable_variables)
        global_step = step_counter.create_global_step()
        train_loss = keras.metrics.Mean(name="loss")
        global_gradient_norm = keras.metrics.Mean(name="gradient_norm/global")
        # One norm per variable shows which layer's gradients vanish or explode; the global norm
        # alone hides that.
        gradient_norms = [
            keras.metrics.Mean(name=f"gradient_norm/{variable.path}")
            for variable in model.trainable_variables
        ]
        eval_loss = keras.metrics.MeanSquaredError(name="loss")
        eval_mae = keras.metrics.MeanAbsoluteError(name="mae")
        eval_rmse = keras.metrics.RootMeanSquaredError(name="rmse")
    run = training_run.TrainingRun(
        logdir,
        global_step,
        config.checkpoint_every_steps,
        strategy=strategy,
        model=model,
        optimizer=optimizer,
    )
    with run:  # Checks and locks the logdir first, so a bad one fails before anything slow.
        start_step = run.restore()
        if run.already_finished(config.num_steps):
            return {"steps": start_step}
        if datasets is None:
            datasets = data.make_datasets(config.seed, config.noise_std)
        if run.is_chief:
            print(f"dataset: {datasets.description}", flush=True)
            print(f"logdir:  {logdir}   (view with: tensorboard --logdir {logdir})", flush=True)
        if strategy.num_replicas_in_sync > 1:
            print(distribution.describe(strategy, config.strategy, config.batch_size), flush=True)
        # Pipelines batch by the global batch size; the strategy splits each batch over the
        # replicas. A resumed run reshuffles with another seed, so it does not replay the same
        # batches.
        train_batches = iter(
            strategy.experimental_distribute_dataset(
                data.train_pipeline(datasets.train, config.batch_size, config.seed + start_step)
            )
        )
        eval_batches = strategy.experimental_distribute_dataset(
            data.eval_pipeline(datasets.test, config.batch_size)
        )

        def replica_step(features: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
            """One replica's share of a step; the optimizer sums the replicas' gradients."""
            with tf.GradientTape() as tape:
                predictions = model(features, training=True)
                losses = per_example_loss(targets, predictions)
                # Divided by the global batch, not this replica's: the sum over replicas is then
                # the mean over the whole batch, as on one device.
                loss = tf.nn.compute_average_loss(losses, global_batch_size=config.batch_size)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            train_loss.update_state(losses)
            # The norms of the whole batch's gradient, not of this replica's share: sum the
            # shares first (the identity with one replica).
            gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, gradients
            )
            global_gradient_norm.update_state(tf.linalg.global_norm(gradients))
            for gradient, norm in zip(gradients, gradient_norms, strict=True):
                norm.update_state(tf.norm(gradient))
            global_step.assign_add(1)  # ONLY_FIRST_REPLICA: counts once per step.
            # NaN if a gradient is, even where the loss looks finite: see loss_or_nan.
            return training_run.loss_or_nan(loss, gradients)

        # With jit_compile, XLA fuses the step's ops; its graph is then written from the concrete
        # function (see common.graphs), as a traced export of an XLA step is empty.
        @tf.function(jit_compile=config.jit_compile)
        def train_step(features: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
            per_replica_loss = strategy.run(replica_step, args=(features, targets))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

        @tf.function
        def train_loop(iterator: tf.data.Iterator, num_steps: tf.Tensor) -> tf.Tensor:
            # `num_steps` is a tensor, so a shorter loop reuses this graph instead of retracing,
            # and calling the train_step tf.function reuses its one traced graph.
            loss = tf.constant(0.0)
            for _ in tf.range(num_steps):
                features, targets = next(iterator)
                loss = train_step(features, targets)
                if not tf.math.is_finite(loss):
                    break  # Stop at the first NaN/Inf step; the caller reports it.
            return loss

        def replica_eval_step(features: tf.Tensor, targets: tf.Tensor) -> None:
            predictions = model(features, training=False)
            for metric in (eval_loss, eval_mae, eval_rmse):
                metric.update_state(targets, predictions)

        @tf.function
        def eval_loop(batches: tf.distribute.DistributedDataset) -> None:
            for features, targets in batches:
                strategy.run(replica_eval_step, args=(features, targets))

        def evaluate() -> dict[str, float]:
            for metric in (eval_loss, eval_mae, eval_rmse):
                metric.reset_state()
            eval_loop(eval_batches)
            return {
                metric.name: float(metric.result()) for metric in (eval_loss, eval_mae, eval_rmse)
            }

        writers = run.open_writers()
        if start_step == 0:
            summaries.write_hparams(run.output_dir, dataclasses.asdict(config))  # The HParams tab.
            with writers.train.as_default(step=0):
                tf.summary.text("config", summaries.markdown_table(dataclasses.asdict(config)))
                tf.summary.text("dataset", datasets.description)

            # Step one runs inside the graph trace: trace_on records a tf.function's graph only
            # while it is first traced, so this is the one moment to capture the whole step.
            loss = graphs.trace_and_write_graphs(
                train_step, next(train_batches), [model], writers.train
            )
            run.check_loss(float(loss), step=1)
        step = int(global_step.numpy())
        train_seconds = 0.0  # Time inside train_loop only: eval and summaries are not speed.
        first_step = step
        last_eval_step = start_step
        final_metrics: dict[str, float] = {}

        # `or not final_metrics`: a one-step run still gets one boundary, with summaries and eval.
        while step < config.num_steps or not final_metrics:
            # Loops end on multiples of steps_per_loop, so summaries land on round step numbers.
            steps_to_boundary = config.steps_per_loop - step % config.steps_per_loop
            loop_steps = min(steps_to_boundary, config.num_steps - step)
            loop_start = time.perf_counter()
            loss = train_loop(train_batches, tf.constant(loop_steps))
            step = int(global_step.numpy())  # Reading the step waits for the loop to finish.
            loop_seconds = time.perf_counter() - loop_start
            train_seconds += loop_seconds
            if loop_steps:
                run.check_loss(float(loss), step)

            # Loop boundary: everything below runs once per steps_per_loop steps.
            scalars = metrics.read_and_reset(
                {
                    metric.name: metric
                    for metric in (train_loss, global_gradient_norm, *gradient_norms)
                }
            )
            scalars["learning_rate"] = float(optimizer.learning_rate.numpy())
            if loop_steps:  # (A one-step run's only boundary follows no loop, so it has no speed.)
                scalars["steps_per_second"] = loop_steps / loop_seconds
                scalars["examples_per_second"] = loop_steps * config.batch_size / loop_seconds
            summaries.write_scalars(writers.train, scalars, step)
            final_metrics["train/loss"] = scalars["loss"]
            console = {"train/loss": scalars["loss"], "grad_norm": scalars["gradient_norm/global"]}

            if step // config.eval_every_steps > last_eval_step // config.eval_every_steps or (
                step == config.num_steps
            ):
                eval_metrics = evaluate()
                summaries.write_scalars(writers.eval, eval_metrics, step)
                summaries.write_weight_histograms(writers.train, model.trainable_variables, step)
                last_eval_step = step
                final_metrics.update(
                    {f"eval/{name}": value for name, value in eval_metrics.items()}
                )
                console.update({f"eval/{name}": value for name, value in eval_metrics.items()})
            if "steps_per_second" in scalars:
                console["steps/s"] = round(scalars["steps_per_second"], 1)
            if run.is_chief:
                progress.print_progress(step, config.num_steps, console)
            run.end_of_loop(step)  # Checkpoint when due; on SIGINT/SIGTERM, save and stop.

        if run.last_saved_step != step:
            run.save(step)

    final_metrics["noise_std"] = datasets.noise_std
    final_metrics["trivial_rmse"] = datasets.trivial_rmse
    final_metrics["steps"] = step
    final_metrics["resumed_from_step"] = start_step
    final_metrics["examples_per_second"] = (
        (step - first_step) * config.batch_size / train_seconds if train_seconds else 0.0
    )
    final_metrics["wall_time_seconds"] = time.perf_counter() - start_time
    final_metrics["train_step_traces"] = train_step.experimental_get_tracing_count()
    print("final: " + progress.format_metrics(final_metrics), flush=True)
    return final_metrics
