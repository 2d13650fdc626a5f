"""Trains a wide MLP with switchable dropout, logging the training and the inference graphs.

Two graphs land in TensorBoard, under two tags of the `train` run:
  `graph/train_step`      the whole train step with `training=True`: dropout's random ops sit
                          inside the branch of an `If` op that reads each layer's `enabled` weight.
  `graph/inference_step`  the model with `training=False`: no dropout, no random ops, no `If`.
`--dropout_off_at_step` flips the variables mid-run: dropout stops at once, and nothing is retraced
(the returned `train_step_traces` stays 1).

The loop follows Orbit, and checkpoints (`common.training_run`) make a run resumable, as in
mnist_mlp; the dropout switches are model weights, so a resumed run keeps their state.

What lands in `<logdir>`:
  train/  both graphs, the Keras graph, model summary, config and dataset text; scalars `loss`,
          `accuracy`, `dropout_enabled`, `learning_rate`, `steps_per_second`,
          `examples_per_second` every loop; weight histograms at every eval.
  eval/   `loss` and `accuracy` through the inference graph, every `eval_every_steps`.
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

    num_steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    dropout_rate: float = 0.5
    dropout_off_at_step: int = 0  # 0: never. Otherwise dropout stops from this step on.
    hidden_units: int = 256
    steps_per_loop: int = 100
    eval_every_steps: int = 100
    checkpoint_every_steps: int = 500
    strategy: str = "default"  # One of common.distribution.STRATEGY_NAMES.
    num_cpu_devices: int = 1  # Logical CPUs to split the CPU into (for mirrored on CPU).


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Sigmoid cross-entropy of each 0/1 label against its logit: shape [batch]."""
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(losses, axis=-1)  # Labels and logits are [batch, 1].


def compute_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean sigmoid cross-entropy of 0/1 labels against logits."""
    return tf.reduce_mean(per_example_loss(labels, logits))


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
        `train/loss`, `train/accuracy`, `eval/loss`, `eval/accuracy` at the last step,
        `eval/min_loss` over the run (final far above min: overfitting), `steps`,
        `resumed_from_step`, `examples_per_second`, `wall_time_seconds`, and `train_step_traces`
        and
        `inference_step_traces` (1 each: never retraced, even by the dropout switch).

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
        model = model_lib.create_model(
            data.NUM_FEATURES, config.dropout_rate, config.hidden_units, config.seed
        )
        optimizer = keras.optimizers.Adam(config.learning_rate)
        # Slot variables now, not in the first step: a tf.function that creates variables
        # traces twice.
        optimizer.build(model.trainable_variables)
        global_step = step_counter.create_global_step()
        train_loss = keras.metrics.Mean(name="loss")
        # Logits, so the decision threshold is 0, not 0.5.
        train_accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
        eval_loss = keras.metrics.Mean(name="loss")
        eval_accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
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
            datasets = data.make_datasets(config.seed)
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
        eval_batches = strategy.experimental_distribute_dataset(data.eval_pipeline(datasets.test))

        def replica_step(features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
            """One replica's share of a step; the optimizer sums the replicas' gradients."""
            with tf.GradientTape() as tape:
                logits = model(features, training=True)  # Dropout as the layers' switches say.
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

        @tf.function
        def train_step(features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
            per_replica_loss = strategy.run(replica_step, args=(features, labels))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

        @tf.function
        def train_loop(iterator: tf.data.Iterator, num_steps: tf.Tensor) -> tf.Tensor:
            # `num_steps` is a tensor, so a shorter loop reuses this graph instead of retracing,
            # and calling the train_step tf.function reuses its one traced graph.
            loss = tf.constant(0.0)
            for _ in tf.range(num_steps):
                features, labels = next(iterator)
                loss = train_step(features, labels)
                if not tf.math.is_finite(loss):
                    break  # Stop at the first NaN/Inf step; the caller reports it.
            return loss

        # The inference graph: a batch dimension of None, so every eval batch, the smaller last one
        # included, runs through this one traced graph.
        @tf.function(input_signature=[tf.TensorSpec([None, data.NUM_FEATURES], tf.float32)])
        def inference_step(features: tf.Tensor) -> tf.Tensor:
            return model(features, training=False)

        def replica_eval_step(features: tf.Tensor, labels: tf.Tensor) -> None:
            logits = inference_step(features)  # Reuses the one traced inference graph.
            # Per-example losses: the last batch is smaller, and a replica may even get none.
            eval_loss.update_state(per_example_loss(labels, logits))
            eval_accuracy.update_state(labels, logits)

        @tf.function
        def eval_loop(batches: tf.distribute.DistributedDataset) -> None:
            for features, labels in batches:
                strategy.run(replica_eval_step, args=(features, labels))

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

            # Both graphs are recorded at their first execution, the one moment trace_on sees
            # them: the train step's is the run's first step; the inference step's, a prediction.
            loss = graphs.trace_and_write_graphs(
                train_step, next(train_batches), [model], writers.train
            )
            run.check_loss(float(loss), step=1)
            # (From an uncached view: stopping early inside a cache() discards it, with a warning.)
            first_eval_features, _ = next(iter(datasets.test.batch(data.EVAL_BATCH_SIZE)))
            graphs.trace_step_graph(
                inference_step, (first_eval_features,), writers.train, name="inference_step"
            )
        step = int(global_step.numpy())
        train_seconds = 0.0  # Time inside train_loop only: eval and summaries are not speed.
        first_step = step
        last_eval_step = start_step
        final_metrics: dict[str, float] = {}
        eval_losses: list[float] = []

        # `or not final_metrics`: a one-step run still gets one boundary, with summaries and eval.
        while step < config.num_steps or not final_metrics:
            # Loops end on multiples of steps_per_loop, and at dropout_off_at_step, so the switch
            # flips at exactly that step.
            loop_end = min(
                (step // config.steps_per_loop + 1) * config.steps_per_loop, config.num_steps
            )
            if step < config.dropout_off_at_step < loop_end:
                loop_end = config.dropout_off_at_step
            loop_steps = max(loop_end - step, 0)
            dropout_enabled = bool(model_lib.dropout_layers(model)[0].enabled.numpy())
            loop_start = time.perf_counter()
            loss = train_loop(train_batches, tf.constant(loop_steps))
            step = int(global_step.numpy())  # Reading the step waits for the loop to finish.
            loop_seconds = time.perf_counter() - loop_start
            train_seconds += loop_seconds
            if loop_steps:
                run.check_loss(float(loss), step)

            # Loop boundary: everything below runs once per loop.
            train_metrics = metrics.read_and_reset({"loss": train_loss, "accuracy": train_accuracy})
            scalars = {
                **train_metrics,
                "dropout_enabled": float(dropout_enabled and config.dropout_rate > 0),
                "learning_rate": float(optimizer.learning_rate.numpy()),
            }
            if loop_steps:  # (A one-step run's only boundary follows no loop, so it has no speed.)
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
                eval_losses.append(eval_metrics["loss"])
                final_metrics.update(
                    {f"eval/{name}": value for name, value in eval_metrics.items()}
                )
                console.update({f"eval/{name}": value for name, value in eval_metrics.items()})
            if step == config.dropout_off_at_step:
                # The runtime switch: assigning the layers' variables changes what the traced If op
                # runs from the next step on. No retrace.
                model_lib.set_dropout_enabled(model, False)
                if run.is_chief:
                    print(f"step {step}: dropout turned off", flush=True)
            if "steps_per_second" in scalars:
                console["steps/s"] = round(scalars["steps_per_second"], 1)
            if run.is_chief:
                progress.print_progress(step, config.num_steps, console)
            run.end_of_loop(step)  # Checkpoint when due; on SIGINT/SIGTERM, save and stop.

        if run.last_saved_step != step:
            run.save(step)

    final_metrics["eval/min_loss"] = min(eval_losses)
    final_metrics["steps"] = step
    final_metrics["resumed_from_step"] = start_step
    final_metrics["examples_per_second"] = (
        (step - first_step) * config.batch_size / train_seconds if train_seconds else 0.0
    )
    final_metrics["wall_time_seconds"] = time.perf_counter() - start_time
    final_metrics["train_step_traces"] = train_step.experimental_get_tracing_count()
    final_metrics["inference_step_traces"] = inference_step.experimental_get_tracing_count()
    print("final: " + progress.format_metrics(final_metrics), flush=True)
    return final_metrics
