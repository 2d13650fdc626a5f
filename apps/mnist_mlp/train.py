"""Trains and evaluates the MNIST MLP with a `tf.GradientTape` loop and full TensorBoard logging.

The loop follows Orbit (tensorflow/models): an int64 `tf.Variable` global step; `steps_per_loop`
train steps inside one `tf.function` call, so Python runs once per loop instead of once per step;
summaries, eval and console output only at loop boundaries, off the hot path. Before the first loop,
the first train step runs once under `trace_on`, which writes the op graph of the whole step.

The same code runs on one device or many (`common.distribution`): variables live in the
strategy's scope, each batch is split across replicas, each replica's loss is scaled by the global
batch, and the chief alone writes to the logdir.

Checkpoints (`common.training_run`) make a run resumable: the same command again continues from
the latest checkpoint, SIGINT/SIGTERM save one before stopping, and a NaN loss stops the run without
overwriting the last good one.

What lands in `<logdir>`:
  train/  the step's op graph (tag `graph/train_step`), the Keras graph, the model summary, the
          config and the dataset as text; scalars `loss`, `accuracy`, `learning_rate`,
          `steps_per_second`, `examples_per_second` every loop; weight histograms at every eval.
  eval/   scalars `loss` and `accuracy` on the held-out split, every `eval_every_steps`.
  checkpoints/  model, optimizer and global step, every `checkpoint_every_steps` and at the end.
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

    num_steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    dataset: str = "auto"
    data_dir: str | None = None
    steps_per_loop: int = 250
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 1000
    hidden_units: int = 64
    profile: bool = False  # Profile the second loop into <logdir>/train/plugins/profile.
    jit_compile: bool = False  # XLA-compile the train step (default strategy only).
    strategy: str = "default"  # One of common.distribution.STRATEGY_NAMES.
    num_cpu_devices: int = 1  # Logical CPUs to split the CPU into (for mirrored on CPU).


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each integer label against its logits: shape [batch]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def compute_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of integer labels against logits."""
    return tf.reduce_mean(per_example_loss(labels, logits))


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`; returns the final metrics.

    Running it again on the same logdir resumes from the latest checkpoint; on a finished run it
    does nothing and says so.

    Args:
        config: the run's settings.
        logdir: the run's directory: `train/` and `eval/` summaries, `checkpoints/`.
        datasets: data to use instead of loading `config.dataset` (tests inject small sets here).

    Returns:
        `train/loss`, `train/accuracy`, `eval/loss`, `eval/accuracy` at the last step, and `steps`,
        `resumed_from_step`, `examples_per_second`, `wall_time_seconds`, and
        `train_step_traces`,
        how often the train step was traced (1: never retraced). Only `steps` for a finished run.

    Raises:
        common.errors.UserError: for an unusable logdir, unavailable data, a checkpoint of another
            model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    start_time = time.perf_counter()
    # First: splitting the CPU into logical devices must precede every other TensorFlow call.
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():  # Variables made here are mirrored on every replica.
        model = model_lib.create_model(config.hidden_units)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        # Create the optimizer's slot variables now rather than inside the first step: a
        # tf.function that creates variables is traced twice, and its graph fills up with
        # initializers.
        optimizer.build(model.trainable_variables)
        global_step = step_counter.create_global_step()
        train_loss = keras.metrics.Mean(name="loss")
        train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        eval_loss = keras.metrics.Mean(name="loss")
        eval_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
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
            datasets = data.load_datasets(config.dataset, config.data_dir, config.seed)
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

        def replica_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
            """One replica's share of a step; the optimizer sums the replicas' gradients."""
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                losses = per_example_loss(labels, logits)
                # Divided by the global batch, not this replica's: the sum over replicas is then
                # the mean over the whole batch, as on one device.
                loss = tf.nn.compute_average_loss(losses, global_batch_size=config.batch_size)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            train_loss.update_state(losses)
            train_accuracy.update_state(labels, logits)
            global_step.assign_add(1)  # ONLY_FIRST_REPLICA: counts once per step.
            # NaN if a gradient is, even where the loss looks finite: see loss_or_nan.
            return training_run.loss_or_nan(loss, gradients)

        # With jit_compile, XLA fuses the step's ops; its graph is then written from the concrete
        # function (see common.graphs), as a traced export of an XLA step is empty.
        @tf.function(jit_compile=config.jit_compile)
        def train_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
            per_replica_loss = strategy.run(replica_step, args=(images, labels))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

        @tf.function
        def train_loop(iterator: tf.data.Iterator, num_steps: tf.Tensor) -> tf.Tensor:
            # `num_steps` is a tensor, so a shorter loop reuses this graph instead of retracing,
            # and calling the train_step tf.function reuses its one traced graph.
            loss = tf.constant(0.0)
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                loss = train_step(images, labels)
                if not tf.math.is_finite(loss):
                    break  # Stop at the first NaN/Inf step; the caller reports it.
            return loss

        def replica_eval_step(images: tf.Tensor, labels: tf.Tensor) -> None:
            # Per-example losses: the last batch is smaller, and a replica may even get none.
            logits = model(images, training=False)
            eval_loss.update_state(per_example_loss(labels, logits))
            eval_accuracy.update_state(labels, logits)

        @tf.function
        def eval_loop(batches: tf.distribute.DistributedDataset) -> None:
            for images, labels in batches:
                strategy.run(replica_eval_step, args=(images, labels))

        def evaluate() -> dict[str, float]:
            eval_loss.reset_state()
            eval_accuracy.reset_state()
            eval_loop(eval_batches)
            return {"loss": float(eval_loss.result()), "accuracy": float(eval_accuracy.result())}

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
        loops_run = 0
        last_eval_step = start_step
        final_metrics: dict[str, float] = {}

        # `or not final_metrics`: a one-step run still gets one boundary, with summaries and eval.
        while step < config.num_steps or not final_metrics:
            # Loops end on multiples of steps_per_loop, so summaries land on round step numbers.
            steps_to_boundary = config.steps_per_loop - step % config.steps_per_loop
            loop_steps = min(steps_to_boundary, config.num_steps - step)
            # The second loop, not the first: the first includes train_loop's one-time tracing.
            profiling = config.profile and loops_run == 1
            if profiling:
                tf.profiler.experimental.start(f"{run.output_dir}/train")
            loop_start = time.perf_counter()
            loss = train_loop(train_batches, tf.constant(loop_steps))
            step = int(global_step.numpy())  # Reading the step waits for the loop to finish.
            loop_seconds = time.perf_counter() - loop_start
            train_seconds += loop_seconds
            loops_run += 1
            if profiling:
                tf.profiler.experimental.stop()  # Writes train/plugins/profile/<time>/.
            if loop_steps:
                run.check_loss(float(loss), step)

            # Loop boundary: everything below runs once per steps_per_loop steps.
            train_metrics = metrics.read_and_reset({"loss": train_loss, "accuracy": train_accuracy})
            scalars = {**train_metrics, "learning_rate": float(optimizer.learning_rate.numpy())}
            if loop_steps:  # (A one-step run's only boundary follows no loop: no speed.)
                scalars["steps_per_second"] = loop_steps / loop_seconds
                scalars["examples_per_second"] = loop_steps * config.batch_size / loop_seconds
            summaries.write_scalars(writers.train, scalars, step)
            final_metrics.update({f"train/{name}": value for name, value in train_metrics.items()})
            console = {f"train/{name}": value for name, value in train_metrics.items()}

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

    final_metrics["steps"] = step
    final_metrics["resumed_from_step"] = start_step
    final_metrics["examples_per_second"] = (
        (step - first_step) * config.batch_size / train_seconds if train_seconds else 0.0
    )
    final_metrics["wall_time_seconds"] = time.perf_counter() - start_time
    # 1 unless something forced a retrace (a new input shape or dtype): worth watching.
    final_metrics["train_step_traces"] = train_step.experimental_get_tracing_count()
    print("final: " + progress.format_metrics(final_metrics), flush=True)
    return final_metrics
