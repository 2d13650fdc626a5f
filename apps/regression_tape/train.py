"""Trains the 10 -> 32 -> 16 -> 1 regression network with a `tf.GradientTape` step.

The popular version of this example logs the loss every step and leaves its data and loss to the
reader. Here both are explicit (`data.py`, `per_example_loss`), the step also measures the norm of
each variable's gradient, and the outer loop is `common.training_loop.run`, as in every app.

What lands in `<logdir>`:
  train/  the step's op graph (tag `graph/train_step`), the Keras graph, model summary, config and
          dataset text; scalars `loss` (MSE), `gradient_norm/global` and one
          `gradient_norm/<variable>` per variable (means over the loop), `learning_rate`,
          `steps_per_second`, `examples_per_second`; weight histograms at every eval.
  eval/   scalars `loss` (MSE), `mae`, `rmse` on the held-out split, every `eval_every_steps`.
"""

import functools

import keras
import tensorflow as tf

from common import training_loop

from . import data
from . import model as model_lib
from .config import Config

__all__ = ["Config", "eval_step", "train_and_evaluate", "train_step"]


def per_example_loss(targets: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
    """Squared error of each example: shape [batch] (targets and predictions are [batch, 1])."""
    return tf.reduce_sum(tf.square(predictions - targets), axis=-1)


def train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    metrics: dict[str, keras.metrics.Metric],
    features: tf.Tensor,
    targets: tf.Tensor,
    *,
    global_batch_size: int,
) -> tf.Tensor:
    """One replica's share of a train step, and the gradient norms of the whole batch."""
    with tf.GradientTape() as tape:
        losses = per_example_loss(targets, model(features, training=True))
        # Divided by the global batch: the replicas' losses then add up to the batch's mean.
        loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch_size)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    metrics["loss"].update_state(losses)
    # The norms of the whole batch's gradient, not of this replica's share: sum the shares first
    # (the identity with one replica).
    gradients = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, gradients
    )
    metrics["gradient_norm/global"].update_state(tf.linalg.global_norm(gradients))
    for variable, gradient in zip(model.trainable_variables, gradients, strict=True):
        metrics[f"gradient_norm/{variable.path}"].update_state(tf.norm(gradient))
    # NaN if a gradient is, even where the loss looks finite: see loss_or_nan.
    return training_loop.loss_or_nan(loss, gradients)


def eval_step(
    model: keras.Model,
    metrics: dict[str, keras.metrics.Metric],
    features: tf.Tensor,
    targets: tf.Tensor,
) -> None:
    """MSE, MAE and RMSE of one replica's share of an eval batch."""
    predictions = model(features, training=False)
    for metric in metrics.values():
        metric.update_state(targets, predictions)


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
        `train/loss`, the gradient norms, `eval/loss`, `eval/mae`, `eval/rmse` at the last step;
        `noise_std` and `trivial_rmse` to judge them by; and the run's figures (see
        `common.training_loop.run`).

    Raises:
        common.errors.UserError: for an unusable logdir, a checkpoint of another model, or a
            NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    strategy, global_step = training_loop.start(config)
    datasets = datasets or data.make_datasets(config.seed, config.noise_std)  # Synthetic: instant.
    with strategy.scope():  # Variables made here are mirrored on every replica.
        model = model_lib.create_model()
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)  # Now: a step that builds it traces twice.
        # One norm per variable shows which layer's gradients vanish or explode; the global norm
        # alone hides that.
        train_metrics = {
            "loss": keras.metrics.Mean(),
            "gradient_norm/global": keras.metrics.Mean(),
            **{f"gradient_norm/{v.path}": keras.metrics.Mean() for v in model.trainable_variables},
        }
        eval_metrics = {
            "loss": keras.metrics.MeanSquaredError(),
            "mae": keras.metrics.MeanAbsoluteError(),
            "rmse": keras.metrics.RootMeanSquaredError(),
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
        load_datasets=lambda: datasets,
        train_pipeline=data.train_pipeline,
        eval_pipeline=data.eval_pipeline,
        progress_metrics=[
            "train/loss",
            "train/gradient_norm/global",
            *(f"eval/{name}" for name in eval_metrics),
            "train/steps_per_second",
        ],
        final_metrics=lambda: {
            "noise_std": datasets.noise_std,
            "trivial_rmse": datasets.trivial_rmse,
        },
    )
