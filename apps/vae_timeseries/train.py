"""Trains a variational autoencoder on windows of a multivariate time series.

The loss is reconstruction + beta * KL. The two pull against each other: reconstruction wants an
informative latent code, KL wants it to look like the N(0, I) prior. With `kl_warmup_steps`, beta
rises linearly from 0 to 1, so the decoder learns to use the code before KL squeezes it; beta is
computed from the global step inside the graph, so the schedule costs no retrace. The ELBO reported
is -(reconstruction + KL) at beta 1, per window (up to a constant: the reconstruction term is the
Gaussian log-likelihood with unit variance).

The loop follows Orbit, checkpoints (`common.training_run`) make a run resumable, and
`common.distribution` runs it on several replicas or workers, as in mnist_mlp.
What lands in `<logdir>`:
  train/  the whole VAE step's op graph (tag `graph/train_step`); conceptual graphs and model
          summaries of `encoder` and `decoder`; config and dataset text; scalars
          `reconstruction_loss`, `kl`, `elbo`, `loss`, `beta`, `learning_rate`, `steps_per_second`,
          `examples_per_second` every loop; at every eval, histograms `latent/mean` and
          `latent/log_variance` of the eval windows, and weight histograms.
  eval/   `reconstruction_loss`, `kl`, `elbo` every `eval_every_steps`, and an image summary
          `reconstructions`: a few eval windows (top, channels by time) over their
          reconstructions (bottom), as heatmaps.
  checkpoints/  encoder, decoder, optimizer and global step.
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from common import distribution, graphs, metrics, progress, step_counter, summaries, training_run

from . import data
from . import model as model_lib

NUM_IMAGES = 3
IMAGE_SCALE = 4  # Each value becomes a 4x4 pixel block, so 32 channels read clearly.


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; `main.py` builds it from flags, tests build it directly."""

    num_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    data_path: str | None = None
    latent_dim: int = 8
    window_length: int = 64
    num_channels: int = 32  # Synthetic data only; a CSV has as many channels as data columns.
    kl_warmup_steps: int = 1000
    steps_per_loop: int = 100
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 1000
    strategy: str = "default"  # One of common.distribution.STRATEGY_NAMES.
    num_cpu_devices: int = 1  # Logical CPUs to split the CPU into (for mirrored on CPU).


def reconstruction_loss(windows: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Per window: 0.5 * squared error summed over time and channels (a unit Gaussian's NLL)."""
    return 0.5 * tf.reduce_sum(tf.square(windows - reconstructions), axis=[1, 2])


def kl_divergence(mean: tf.Tensor, log_variance: tf.Tensor) -> tf.Tensor:
    """Per window: KL(N(mean, exp(log_variance)) || N(0, I)), summed over latent dimensions."""
    return -0.5 * tf.reduce_sum(1.0 + log_variance - tf.square(mean) - tf.exp(log_variance), axis=1)


def kl_weight(step: tf.Tensor, warmup_steps: int) -> tf.Tensor:
    """beta: linear from 0 at step 0 to 1 at `warmup_steps`, then 1 (always 1 without warm-up)."""
    if warmup_steps <= 0:
        return tf.constant(1.0)
    return tf.minimum(1.0, tf.cast(step, tf.float32) / float(warmup_steps))


def heatmap_rgb(values: np.ndarray, limit: float = 3.0) -> np.ndarray:
    """[rows, columns] standardized values -> uint8 RGB: blue (-limit), white (0), red (+limit)."""
    scaled = np.clip(values / limit, -1.0, 1.0)[..., None]
    white = np.ones(3)
    red, blue = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    rgb = np.where(scaled > 0, white + scaled * (red - white), white - scaled * (blue - white))
    return (rgb * 255).round().astype(np.uint8)


def reconstruction_images(windows: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """[n, time, channels] pairs -> [n, height, width, 3] uint8: each window above its
    reconstruction, channels as rows and time as columns, a grey line between them."""
    images = []
    for window, reconstruction in zip(windows, reconstructions, strict=True):
        separator = np.full((1, window.shape[0], 3), 128, np.uint8)
        image = np.concatenate(
            [heatmap_rgb(window.T), separator, heatmap_rgb(reconstruction.T)], axis=0
        )
        images.append(image.repeat(IMAGE_SCALE, axis=0).repeat(IMAGE_SCALE, axis=1))
    return np.stack(images)


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`; returns the final metrics.

    Running it again on the same logdir resumes from the latest checkpoint; on a finished run it
    does nothing and says so (and returns only `steps`).

    Args:
        config: the run's settings.
        logdir: the run's directory: `train/` and `eval/` summaries, `checkpoints/`.
        datasets: windows to use instead of loading `config.data_path` or the synthetic series.

    Returns:
        `train/reconstruction_loss`, `train/kl`, `train/elbo`, `train/beta`, and
        `eval/reconstruction_loss`, `eval/kl`, `eval/elbo` at the last step; `eval/first_elbo`,
        the ELBO at the first eval; `steps`, `resumed_from_step`, `examples_per_second`,
        `wall_time_seconds`, and `train_step_traces` (1: never retraced).

    Raises:
        common.errors.UserError: for an unusable logdir, a missing or malformed data file, a
            checkpoint of another model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    start_time = time.perf_counter()
    # First: splitting the CPU into logical devices must precede every other TensorFlow call.
    strategy = distribution.create_strategy(config.strategy, config.num_cpu_devices)
    keras.utils.set_random_seed(config.seed)
    # The data decide the number of channels, so they come before the model; a bad data file is
    # reported before the logdir is touched.
    if datasets is None:
        datasets = data.load_datasets(
            config.data_path, config.window_length, config.num_channels, config.seed
        )
    with strategy.scope():  # Variables made here are mirrored on every replica.
        encoder = model_lib.create_encoder(
            config.window_length, datasets.num_channels, config.latent_dim, config.seed
        )
        decoder = model_lib.create_decoder(
            config.window_length, datasets.num_channels, config.latent_dim
        )
        trainable_variables = encoder.trainable_variables + decoder.trainable_variables
        optimizer = keras.optimizers.Adam(config.learning_rate)
        # Slot variables now, not in the first step: a tf.function that creates variables
        # traces twice.
        optimizer.build(trainable_variables)
        global_step = step_counter.create_global_step()
        train_metrics = {
            name: keras.metrics.Mean(name=name)
            for name in ("reconstruction_loss", "kl", "elbo", "loss")
        }
        eval_metrics = {
            name: keras.metrics.Mean(name=name) for name in ("reconstruction_loss", "kl", "elbo")
        }
    run = training_run.TrainingRun(
        logdir,
        global_step,
        config.checkpoint_every_steps,
        strategy=strategy,
        encoder=encoder,
        decoder=decoder,
        optimizer=optimizer,
    )
    with run:  # Checks and locks the logdir first.
        start_step = run.restore()
        if run.already_finished(config.num_steps):
            return {"steps": start_step}
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
        eval_batches = data.eval_pipeline(datasets.eval, config.batch_size)
        distributed_eval_batches = strategy.experimental_distribute_dataset(eval_batches)

        def replica_step(windows: tf.Tensor) -> tf.Tensor:
            """One replica's share of a step; the optimizer sums the replicas' gradients."""
            beta = kl_weight(global_step, config.kl_warmup_steps)
            with tf.GradientTape() as tape:
                mean, log_variance, z = encoder(windows, training=True)
                reconstructions = decoder(z, training=True)
                reconstruction = reconstruction_loss(windows, reconstructions)  # Per window.
                kl = kl_divergence(mean, log_variance)
                # Divided by the global batch, not this replica's: the sum over replicas is then
                # the mean over the whole batch, as on one device.
                loss = tf.nn.compute_average_loss(
                    reconstruction + beta * kl, global_batch_size=config.batch_size
                )
            gradients = tape.gradient(loss, trainable_variables)
            optimizer.apply_gradients(zip(gradients, trainable_variables, strict=True))
            train_metrics["reconstruction_loss"].update_state(reconstruction)
            train_metrics["kl"].update_state(kl)
            train_metrics["elbo"].update_state(-(reconstruction + kl))
            train_metrics["loss"].update_state(reconstruction + beta * kl)
            global_step.assign_add(1)  # ONLY_FIRST_REPLICA: counts once per step.
            # NaN if a gradient is, even where the loss looks finite: see loss_or_nan.
            return training_run.loss_or_nan(loss, gradients)

        @tf.function
        def train_step(windows: tf.Tensor) -> tf.Tensor:
            per_replica_loss = strategy.run(replica_step, args=(windows,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

        @tf.function
        def train_loop(iterator: tf.data.Iterator, num_steps: tf.Tensor) -> tf.Tensor:
            # `num_steps` is a tensor, so a shorter loop reuses this graph instead of retracing,
            # and calling the train_step tf.function reuses its one traced graph.
            loss = tf.constant(0.0)
            for _ in tf.range(num_steps):
                loss = train_step(next(iterator))
                if not tf.math.is_finite(loss):
                    break  # Stop at the first NaN/Inf step; the caller reports it.
            return loss

        def replica_eval_step(windows: tf.Tensor) -> None:
            # Per-window terms: the last batch is smaller, and a replica may even get none.
            mean, log_variance, z = encoder(windows, training=False)
            reconstruction = reconstruction_loss(windows, decoder(z, training=False))
            kl = kl_divergence(mean, log_variance)
            eval_metrics["reconstruction_loss"].update_state(reconstruction)
            eval_metrics["kl"].update_state(kl)
            eval_metrics["elbo"].update_state(-(reconstruction + kl))

        @tf.function
        def eval_loop(batches: tf.distribute.DistributedDataset) -> None:
            for windows in batches:
                strategy.run(replica_eval_step, args=(windows,))

        # The latent code of every eval window, for histograms: one pass, off the replicas (the
        # last batch is smaller; reduce_retracing gives it a shape-generic graph).
        @tf.function(reduce_retracing=True)
        def encode(windows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            mean, log_variance, _ = encoder(windows, training=False)
            return mean, log_variance

        def evaluate(step: int) -> dict[str, float]:
            for metric in eval_metrics.values():
                metric.reset_state()
            eval_loop(distributed_eval_batches)
            results = {name: float(metric.result()) for name, metric in eval_metrics.items()}
            summaries.write_scalars(writers.eval, results, step)
            means, log_variances = [], []
            for windows in eval_batches:
                mean, log_variance = encode(windows)
                means.append(mean)
                log_variances.append(log_variance)
            with writers.train.as_default(step=step):
                tf.summary.histogram("latent/mean", tf.concat(means, axis=0))
                tf.summary.histogram("latent/log_variance", tf.concat(log_variances, axis=0))
            # Reconstruct from the latent mean: the decoder's best guess, without sampling noise.
            windows = next(iter(eval_batches))[:NUM_IMAGES]
            mean, _, _ = encoder(windows, training=False)
            images = reconstruction_images(windows.numpy(), decoder(mean).numpy())
            with writers.eval.as_default(step=step):
                tf.summary.image("reconstructions", images, max_outputs=NUM_IMAGES)
            summaries.write_weight_histograms(writers.train, trainable_variables, step)
            return results

        writers = run.open_writers()
        if start_step == 0:
            summaries.write_hparams(run.output_dir, dataclasses.asdict(config))  # The HParams tab.
            with writers.train.as_default(step=0):
                tf.summary.text("config", summaries.markdown_table(dataclasses.asdict(config)))
                tf.summary.text("dataset", datasets.description)
            # Step one runs inside the graph trace: trace_on records a tf.function's graph only
            # while it is first traced, so this is the one moment to capture the whole step.
            loss = graphs.trace_and_write_graphs(
                train_step, (next(train_batches),), [encoder, decoder], writers.train
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
            scalars = metrics.read_and_reset(train_metrics)
            scalars["beta"] = float(kl_weight(global_step, config.kl_warmup_steps))
            scalars["learning_rate"] = float(optimizer.learning_rate.numpy())
            if loop_steps:  # (A one-step run's only boundary follows no loop: no speed.)
                scalars["steps_per_second"] = loop_steps / loop_seconds
                scalars["examples_per_second"] = loop_steps * config.batch_size / loop_seconds
            summaries.write_scalars(writers.train, scalars, step)
            for name in ("reconstruction_loss", "kl", "elbo", "beta"):
                final_metrics[f"train/{name}"] = scalars[name]
            console = {"train/elbo": scalars["elbo"], "kl": scalars["kl"], "beta": scalars["beta"]}

            if step // config.eval_every_steps > last_eval_step // config.eval_every_steps or (
                step == config.num_steps
            ):
                results = evaluate(step)
                last_eval_step = step
                final_metrics.setdefault("eval/first_elbo", results["elbo"])
                final_metrics.update({f"eval/{name}": value for name, value in results.items()})
                console["eval/elbo"] = results["elbo"]
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
    final_metrics["train_step_traces"] = train_step.experimental_get_tracing_count()
    print("final: " + progress.format_metrics(final_metrics), flush=True)
    return final_metrics
