"""Trains and evaluates the MNIST MLP with a `tf.GradientTape` step and full TensorBoard logging.

This file holds what is the app's own: the loss, one replica's train step and eval step, and the
model, optimizer and metrics they use. The outer loop (the graph trace at step one, many steps per
`tf.function` call, summaries, eval, checkpoints, resume, signals, NaN stops, tf.distribute) is
`common.training_loop.run`, the same for every app.

What lands in `<logdir>`:
  train/  the step's op graph (tag `graph/train_step`), the Keras graph, the model summary, the
          config and the dataset as text; scalars `loss`, `accuracy`, `learning_rate`,
          `steps_per_second`, `examples_per_second` every loop; weight histograms at every eval.
  eval/   scalars `loss` and `accuracy` on the held-out split, every `eval_every_steps`.
  checkpoints/  model, optimizer and global step, every `checkpoint_every_steps` and at the end.
"""

import functools

import keras
import tensorflow as tf

from common import training_loop

from . import data
from . import model as model_lib
from .config import Config

__all__ = ["Config", "eval_step", "train_and_evaluate", "train_step"]


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each integer label against its logits: shape [batch]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    metrics: dict[str, keras.metrics.Metric],
    images: tf.Tensor,
    labels: tf.Tensor,
    *,
    global_batch_size: int,
) -> tf.Tensor:
    """One replica's share of a train step; the optimizer sums the replicas' gradients."""
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        losses = per_example_loss(labels, logits)
        # Divided by the global batch, not this replica's: the sum over replicas is then the mean
        # over the whole batch, as on one device.
        loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch_size)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    metrics["loss"].update_state(losses)
    metrics["accuracy"].update_state(labels, logits)
    # NaN if a gradient is, even where the loss looks finite: see loss_or_nan.
    return training_loop.loss_or_nan(loss, gradients)


def eval_step(
    model: keras.Model,
    metrics: dict[str, keras.metrics.Metric],
    images: tf.Tensor,
    labels: tf.Tensor,
) -> None:
    """One replica's share of an eval batch, as per-example values: the last batch is smaller."""
    logits = model(images, training=False)
    metrics["loss"].update_state(per_example_loss(labels, logits))
    metrics["accuracy"].update_state(labels, logits)


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`; returns the final metrics.

    Running it again on the same logdir resumes from the latest checkpoint; on a finished run it
    does nothing and says so (and returns only `steps`).

    Args:
        config: the run's settings.
        logdir: the run's directory: `train/` and `eval/` summaries, `checkpoints/`.
        datasets: data to use instead of loading `config.dataset` (tests inject small sets here).

    Returns:
        `train/loss`, `train/accuracy`, `eval/loss`, `eval/accuracy` at the last step, and the
        run's figures (see `common.training_loop.run`).

    Raises:
        common.errors.UserError: for an unusable logdir, unavailable data, a checkpoint of another
            model, or a NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    strategy, global_step = training_loop.start(config)
    with strategy.scope():  # Variables made here are mirrored on every replica.
        model = model_lib.create_model(config.hidden_units)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        # Its slot variables now rather than inside the first step: a tf.function that creates
        # variables is traced twice, and its graph fills up with initializers.
        optimizer.build(model.trainable_variables)
        train_metrics = {
            "loss": keras.metrics.Mean(),
            "accuracy": keras.metrics.SparseCategoricalAccuracy(),
        }
        eval_metrics = {
            "loss": keras.metrics.Mean(),
            "accuracy": keras.metrics.SparseCategoricalAccuracy(),
        }
    return training_loop.run(
        config,
        logdir,
        strategy,
        global_step,
        models=[model],
        optimizer=optimizer,
        train_step=functools.partial(
            train_step, model, optimizer, train_metrics, global_batch_size=config.batch_size
        ),
        train_metrics=train_metrics,
        eval_step=functools.partial(eval_step, model, eval_metrics),
        eval_metrics=eval_metrics,
        # Loaded once the checkpoint is restored: a finished run loads nothing.
        load_datasets=lambda: (
            datasets or data.load_datasets(config.dataset, config.data_dir, config.seed)
        ),
        train_pipeline=data.train_pipeline,
        eval_pipeline=data.eval_pipeline,
    )
