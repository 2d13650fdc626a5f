"""Trains a variational autoencoder on windows of a multivariate time series.

The loss is reconstruction + beta * KL. The two pull against each other: reconstruction wants an
informative latent code, KL wants it to look like the N(0, I) prior. With `kl_warmup_steps`, beta
rises linearly from 0 to 1, so the decoder learns to use the code before KL squeezes it; beta is
computed from the global step inside the graph, so the schedule costs no retrace. The ELBO reported
is -(reconstruction + KL) at beta 1, per window (up to a constant: the reconstruction term is the
Gaussian log-likelihood with unit variance). The outer loop is `common.loop.training_loop.run`.

What lands in `<logdir>`:
  train/  the whole VAE step's op graph (tag `graph/train_step`); conceptual graphs and model
          summaries of `encoder` and `decoder`; config and dataset text; scalars
          `reconstruction_loss`, `kl`, `elbo`, `loss`, `beta`, `learning_rate`, `steps_per_second`,
          `examples_per_second` every loop; at every eval, histograms `latent/mean` and
          `latent/log_variance` of the eval windows, weight and gradient histograms, and
          `gradients/global_norm`; the Custom Scalars layout at step 0.
  eval/   `reconstruction_loss`, `kl`, `elbo` every `eval_every_steps`, and an image summary
          `reconstructions`: a few eval windows (top, channels by time) over their
          reconstructions (bottom), as heatmaps; the latent means for the Projector
          (`eval/projector/`).
  checkpoints/  encoder, decoder, optimizer and global step.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from common import summaries
from common.loop import actions, input_pipeline, steps, train_state, training_loop
from common.summaries import metrics, projector

from . import data, images
from . import model as model_lib
from .config import Config

__all__ = ["Config", "create_state", "eval_step", "train_and_evaluate", "train_step"]

# The Custom Scalars tab's charts: each curve beside the ones it is read against.
SCALARS_LAYOUT = summaries.scalars_layout(
    {
        "vae_timeseries": {
            "ELBO, train against eval": ["elbo"],
            "ELBO terms: reconstruction against KL": ["reconstruction_loss", "kl"],
            "KL weight beta and the loss it weighs": ["beta", "loss"],
            "learning rate and gradient norm": ["learning_rate", "gradients/global_norm"],
        }
    }
)


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


def train_step(
    state: train_state.TrainState, windows: tf.Tensor, *, kl_warmup_steps: int
) -> steps.StepOutputs:
    """One replica's share of a train step on a batch of windows."""
    encoder, decoder = state.models
    beta = kl_weight(state.global_step, kl_warmup_steps)  # In the graph: never retraces.
    with tf.GradientTape() as tape:
        mean, log_variance, z = encoder(windows, training=True)
        reconstruction = reconstruction_loss(windows, decoder(z, training=True))  # Per window.
        kl = kl_divergence(mean, log_variance)
        loss = state.average_loss(reconstruction + beta * kl)  # See TrainState.average_loss.
        # --mixed_precision=mixed_float16: times the loss scale, so small float16 gradients do
        # not underflow to 0. Otherwise the loss itself (as are `unscale`'s gradients).
        scaled_loss = state.scale_loss(loss)
    scaled_gradients = tape.gradient(scaled_loss, state.trainable_variables)
    gradients = state.unscale(scaled_gradients)  # Before the update, which may change the scale.
    # The scaled ones: the loss-scale optimizer unscales them, and skips a step they overflowed.
    state.optimizer.apply_gradients(zip(scaled_gradients, state.trainable_variables, strict=True))
    update_metrics(state.train_metrics, reconstruction, kl)
    state.train_metrics["loss"].update_state(reconstruction + beta * kl)
    # The loss for the loop's check, NaN if a gradient is even where the loss looks finite (see
    # TrainState.loss_or_nan); and the gradients, which the loop writes as histograms at each eval.
    return state.loss_or_nan(loss, gradients), gradients


def eval_step(state: train_state.TrainState, windows: tf.Tensor) -> None:
    """Per-window terms of one replica's share of an eval batch (the last batch is smaller)."""
    encoder, decoder = state.models
    mean, log_variance, z = encoder(windows, training=False)
    reconstruction = reconstruction_loss(windows, decoder(z, training=False))
    update_metrics(state.eval_metrics, reconstruction, kl_divergence(mean, log_variance))


def update_metrics(metrics: train_state.Metrics, reconstruction: tf.Tensor, kl: tf.Tensor) -> None:
    """The per-window reconstruction loss, KL and ELBO (at beta 1) into their means."""
    metrics["reconstruction_loss"].update_state(reconstruction)
    metrics["kl"].update_state(kl)
    metrics["elbo"].update_state(-(reconstruction + kl))


def create_state(config: Config, num_channels: int) -> train_state.TrainState:
    """The encoder and decoder, Adam, and the ELBO's terms as metrics (train also logs its loss).
    Call it in the strategy's scope, so every variable is mirrored on every replica."""
    shape = (config.window_length, num_channels, config.latent_dim)
    encoder = model_lib.create_encoder(*shape, config.seed)
    decoder = model_lib.create_decoder(*shape)
    names = ("reconstruction_loss", "kl", "elbo")
    train_metrics = {name: keras.metrics.Mean() for name in (*names, "loss")}
    eval_metrics = {name: keras.metrics.Mean() for name in names}
    return train_state.TrainState.create(config, [encoder, decoder], train_metrics, eval_metrics)


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`: see `training_loop.run`.

    `datasets` replaces the windows of `config.data_path` or the synthetic series. Returns the
    train and eval `reconstruction_loss`, `kl`, `elbo` (and train `loss`, `beta`) at the last
    step, `eval/first_elbo` (at the first eval), and the run's figures.
    """
    strategy = training_loop.create_strategy(config)
    # The data decide the number of channels, so they come before the model; a bad data file is
    # reported before the logdir is touched.
    datasets = datasets or data.load_datasets(
        config.data_path, config.window_length, config.num_channels, config.seed
    )
    with strategy.scope():
        state = create_state(config, datasets.num_channels)
    encoder, decoder = state.models
    # The encoder's deterministic part, its own layers: on_eval's latent code without a sample,
    # so it draws no noise (the sampling layer's eager ops cost more than the code's own).
    latent_code = keras.Model(encoder.inputs, encoder.outputs[:2], name="latent_code")

    eval_windows = input_pipeline.materialize(datasets.eval, "the eval set")  # In memory, once.
    first_elbo: list[float] = []
    embedding_writer: list[projector.EmbeddingWriter] = []  # At the first eval: its run's path.

    def on_eval(step: int, results: metrics.Results, writers: summaries.SummaryWriters) -> None:
        # On the summaries' thread, while training goes on: the models' calls here are eager and
        # read their weights as they were at `step` (see training_loop.AppSummaries.on_eval).
        means, log_variances = latent_code(eval_windows, training=False)
        images.write_latent_summaries(means, log_variances, decoder, eval_windows, writers, step)
        if not embedding_writer:
            run_directory = f"{writers.logdir}/eval"
            embedding_writer.append(images.latent_embedding_writer(eval_windows, run_directory))
        embedding_writer[0].write(np.asarray(means))
        first_elbo[:] = first_elbo or [results["elbo"]]

    return training_loop.run(
        config,
        logdir,
        state,
        functools.partial(train_step, kl_warmup_steps=config.kl_warmup_steps),
        eval_step,
        lambda: datasets,
        progress_metrics=[
            "train/elbo",
            "train/kl",
            "train/beta",
            "eval/elbo",
            "train/steps_per_second",
        ],
        # The KL weight of the warm-up, beside the loop's own train scalars at every boundary.
        actions=[
            actions.TrainScalars(
                lambda: {"beta": float(kl_weight(state.global_step, config.kl_warmup_steps))}
            )
        ],
        app_summaries=training_loop.AppSummaries(on_eval=on_eval, scalars_layout=SCALARS_LAYOUT),
        final_metrics=lambda: {"eval/first_elbo": first_elbo[0]},
    )
