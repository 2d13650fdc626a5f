"""Trains the 10 -> 32 -> 16 -> 1 regression network with a `tf.GradientTape` step.

The popular version of this example logs the loss every step and leaves its data and loss to the
reader. Here both are explicit (`data.py`, `per_example_loss`), the step also measures the norm of
each variable's gradient, and the outer loop is `common.loop.training_loop.run`, as in every app.

What lands in `<logdir>`:
  train/  the step's op graph (tag `graph/train_step`), the Keras graph, model summary, config and
          dataset text; scalars `loss` (MSE), `gradient_norm/global` and one
          `gradient_norm/<variable>` per variable (means over the loop), `learning_rate`,
          `steps_per_second`, `examples_per_second`; weight and gradient histograms and
          `gradients/global_norm` at every eval; the Custom Scalars layout at step 0.
  eval/   scalars `loss` (MSE), `mae`, `rmse` on the held-out split, every `eval_every_steps`.
"""

import keras
import tensorflow as tf

from common import summaries
from common.loop import steps, train_state, training_loop

from . import data
from . import model as model_lib
from .config import Config

__all__ = ["Config", "create_state", "eval_step", "train_and_evaluate", "train_step"]


def per_example_loss(targets: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
    """Squared error of each example: shape [batch] (targets and predictions are [batch, 1])."""
    return tf.reduce_sum(tf.square(predictions - targets), axis=-1)


def train_step(
    state: train_state.TrainState, features: tf.Tensor, targets: tf.Tensor
) -> steps.StepOutputs:
    """One replica's share of a train step, and the gradient norms of the whole batch."""
    with tf.GradientTape() as tape:
        losses = per_example_loss(targets, state.model(features, training=True))
        loss = state.average_loss(losses)  # Over the global batch: see TrainState.average_loss.
        # --mixed_precision=mixed_float16: times the loss scale, so small float16 gradients do
        # not underflow to 0. Otherwise the loss itself (as are `unscale`'s gradients).
        scaled_loss = state.scale_loss(loss)
    scaled_gradients = tape.gradient(scaled_loss, state.trainable_variables)
    gradients = state.unscale(scaled_gradients)  # Before the update, which may change the scale.
    # The scaled ones: the loss-scale optimizer unscales them, and skips a step they overflowed.
    state.optimizer.apply_gradients(zip(scaled_gradients, state.trainable_variables, strict=True))
    metrics = state.train_metrics
    metrics["loss"].update_state(losses)
    # The norms of the whole batch's gradient, not of this replica's share: sum the shares first
    # (the identity with one replica).
    batch_gradients = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, gradients
    )
    global_norm = tf.linalg.global_norm(batch_gradients)
    # 0 for a step whose gradients overflowed float16 (mixed_float16: the loss scaling skipped
    # it, and nothing was applied), so the loop's mean norms are of the steps taken; else 1.
    taken = tf.cast(tf.math.is_finite(global_norm), tf.float32)
    metrics["gradient_norm/global"].update_state(tf.math.multiply_no_nan(global_norm, taken), taken)
    for variable, gradient in zip(state.trainable_variables, batch_gradients, strict=True):
        norm = tf.math.multiply_no_nan(tf.norm(gradient), taken)
        metrics[f"gradient_norm/{variable.path}"].update_state(norm, taken)
    # The loss for the loop's check, NaN if a gradient is even where the loss looks finite (see
    # TrainState.loss_or_nan); and this replica's gradients, which the loop sums over the
    # replicas (once a loop, not at every step) and writes as histograms at each eval.
    return state.loss_or_nan(loss, batch_gradients), gradients


def eval_step(state: train_state.TrainState, features: tf.Tensor, targets: tf.Tensor) -> None:
    """MSE, MAE and RMSE of one replica's share of an eval batch."""
    predictions = state.model(features, training=False)
    for metric in state.eval_metrics.values():
        metric.update_state(targets, predictions)


# The Custom Scalars tab's charts: each curve beside the ones it is read against.
SCALARS_LAYOUT = summaries.scalars_layout(
    {
        "regression_tape": {
            "MSE, train against eval": ["loss"],
            "eval errors: MAE and RMSE": ["mae", "rmse"],
            "learning rate and gradient norm": ["learning_rate", "gradient_norm/global"],
        }
    }
)


def create_state(config: Config) -> train_state.TrainState:
    """The model, Adam, the train loss and gradient norms, and MSE, MAE and RMSE for eval. Call it
    in the strategy's scope, so every variable is mirrored on every replica."""
    model = model_lib.create_model()
    # One norm per variable shows which layer's gradients vanish or explode; the global norm
    # alone hides that.
    norms = ["global", *(variable.path for variable in model.trainable_variables)]
    train_metrics = {"loss": keras.metrics.Mean()}
    train_metrics.update({f"gradient_norm/{name}": keras.metrics.Mean() for name in norms})
    eval_metrics = {
        "loss": keras.metrics.MeanSquaredError(),
        "mae": keras.metrics.MeanAbsoluteError(),
        "rmse": keras.metrics.RootMeanSquaredError(),
    }
    return train_state.TrainState.create(config, [model], train_metrics, eval_metrics)


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`: see `training_loop.run`.

    `datasets` replaces the data generated from `config` (tests inject here). Returns `train/loss`,
    the gradient norms, `eval/loss`, `eval/mae`, `eval/rmse` at the last step; `noise_std` and
    `trivial_rmse` to judge them by; and the run's figures.
    """
    strategy = training_loop.create_strategy(config)
    datasets = datasets or data.make_datasets(config.seed, config.noise_std)  # Synthetic: instant.
    with strategy.scope():
        state = create_state(config)
    return training_loop.run(
        config,
        logdir,
        state,
        train_step,
        eval_step,
        lambda: datasets,
        progress_metrics=[
            "train/loss",
            "train/gradient_norm/global",
            *(f"eval/{name}" for name in state.eval_metrics),
            "train/steps_per_second",
        ],
        app_summaries=training_loop.AppSummaries(scalars_layout=SCALARS_LAYOUT),
        final_metrics=lambda: {
            "noise_std": datasets.noise_std,
            "trivial_rmse": datasets.trivial_rmse,
        },
    )
