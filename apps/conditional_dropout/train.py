"""Trains a wide MLP with switchable dropout, logging the training and the inference graphs.

Two graphs land in TensorBoard, under two tags of the `train` run:
  `graph/train_step`      the whole train step with `training=True`: dropout's random ops sit
                          inside the branch of an `If` op that reads each layer's `enabled` weight.
  `graph/inference_step`  the model with `training=False`: no dropout, no random ops, no `If`.
`--dropout_off_at_step` flips the variables mid-run: dropout stops at once, and nothing is retraced
(the returned `train_step_traces` stays 1). The dropout switches are model weights, so a resumed run
keeps their state. The outer loop is `common.loop.training_loop.run`, as in every app.

What lands in `<logdir>`:
  train/  both graphs, the Keras graph, model summary, config and dataset text; scalars `loss`,
          `accuracy`, `dropout_enabled`, `learning_rate`, `steps_per_second`,
          `examples_per_second` every loop; weight and gradient histograms and
          `gradients/global_norm` at every eval; the Custom Scalars layout at step 0.
  eval/   `loss` and `accuracy` through the inference graph, and the PR curve `pr_curve`, every
          `eval_every_steps`: the curve's counts are taken in the eval step, by a
          `common.summaries.metrics.PRCurveCounts` beside the loss, so drawing it runs no model.
"""

import functools
from collections.abc import Callable

import keras
import tensorflow as tf

from common import distribution, summaries, tracing
from common.loop import actions, steps, train_state, training_loop
from common.summaries import metrics

from . import data
from . import model as model_lib
from .config import Config

__all__ = ["Config", "create_state", "eval_step", "train_and_evaluate", "train_step"]

# The Custom Scalars tab's charts: each curve beside the ones it is read against.
SCALARS_LAYOUT = summaries.scalars_layout(
    {
        "conditional_dropout": {
            "loss, train against eval (overfitting: eval above train)": ["loss"],
            "accuracy, train against eval": ["accuracy"],
            "the dropout switch, and the gradient norm it changes": [
                "dropout_enabled",
                "gradients/global_norm",
            ],
            "learning rate": ["learning_rate"],
        }
    }
)


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Sigmoid cross-entropy of each 0/1 label against its logit: shape [batch]."""
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(losses, axis=-1)  # Labels and logits are [batch, 1].


def train_step(
    state: train_state.TrainState, features: tf.Tensor, labels: tf.Tensor
) -> steps.StepOutputs:
    """One replica's share of a train step, with dropout where the layers' switches say."""
    with tf.GradientTape() as tape:
        logits = state.model(features, training=True)  # Dropout in an If on each `enabled`.
        losses = per_example_loss(labels, logits)
        loss = state.average_loss(losses)  # Over the global batch: see TrainState.average_loss.
        # --mixed_precision=mixed_float16: times the loss scale, so small float16 gradients do
        # not underflow to 0. Otherwise the loss itself (as are `unscale`'s gradients).
        scaled_loss = state.scale_loss(loss)
    # The fraction of this loop's steps that ran dropout (the switch flips between loops).
    state.train_metrics["dropout_enabled"].update_state(dropout_is_on(state.model))
    scaled_gradients = tape.gradient(scaled_loss, state.trainable_variables)
    gradients = state.unscale(scaled_gradients)  # Before the update, which may change the scale.
    # The scaled ones: the loss-scale optimizer unscales them, and skips a step they overflowed.
    state.optimizer.apply_gradients(zip(scaled_gradients, state.trainable_variables, strict=True))
    state.train_metrics["loss"].update_state(losses)
    state.train_metrics["accuracy"].update_state(labels, logits)
    # The loss for the loop's check, NaN if a gradient is even where the loss looks finite (see
    # TrainState.loss_or_nan); and the gradients, which the loop writes as histograms at each eval.
    return state.loss_or_nan(loss, gradients), gradients


def dropout_is_on(model: keras.Model) -> tf.Tensor:
    """1.0 if the first dropout layer drops units now (switched on, with a rate above 0), else 0."""
    layer = model_lib.dropout_layers(model)[0]
    return tf.cast(tf.logical_and(layer.enabled, layer.rate > 0), tf.float32)


def eval_step(
    inference_step: Callable[[tf.Tensor], tf.Tensor],
    state: train_state.TrainState,
    features: tf.Tensor,
    labels: tf.Tensor,
) -> None:
    """One replica's share of an eval batch, through the one traced inference graph."""
    logits = inference_step(features)
    state.eval_metrics["loss"].update_state(per_example_loss(labels, logits))  # Per example.
    state.eval_metrics["accuracy"].update_state(labels, logits)
    # The PR curve's counts, from this same pass: on_eval draws the curve from them.
    state.eval_metrics["pr_curve"].update_state(labels, tf.sigmoid(logits))


def create_state(config: Config) -> train_state.TrainState:
    """The model with its dropout switches, Adam, and metrics (dropout_enabled for train too;
    the PR curve's counts for eval). Call it in the strategy's scope, so every variable is
    mirrored on every replica."""
    model = model_lib.create_model(
        data.NUM_FEATURES, config.dropout_rate, config.hidden_units, config.seed
    )
    # Logits, so the decision threshold is 0, not 0.5.
    train_metrics = {"loss": keras.metrics.Mean(), "dropout_enabled": keras.metrics.Mean()}
    train_metrics["accuracy"] = keras.metrics.BinaryAccuracy(threshold=0.0)
    eval_metrics = {"loss": keras.metrics.Mean()}
    eval_metrics["accuracy"] = keras.metrics.BinaryAccuracy(threshold=0.0)
    eval_metrics["pr_curve"] = metrics.PRCurveCounts()  # An array result: on_eval's alone.
    return train_state.TrainState.create(config, [model], train_metrics, eval_metrics)


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`: see `training_loop.run`.

    `datasets` replaces the data generated from `config` (tests inject here). Returns the train
    and eval `loss` and `accuracy` at the last step, `train/dropout_enabled`, `eval/min_loss` over
    the run (final far above min: overfitting), `inference_step_traces` (1: never retraced, even
    by the dropout switch), and the run's figures.
    """
    strategy = training_loop.create_strategy(config)
    datasets = datasets or data.make_datasets(config.seed)  # Synthetic: instant.
    with strategy.scope():
        state = create_state(config)
    model = state.model

    # The inference graph: a batch dimension of None, so every eval batch, the smaller last one
    # included, runs through this one traced graph (a function of its own in every run).
    def inference_step(features: tf.Tensor) -> tf.Tensor:
        return model(features, training=False)

    inference_step = tracing.per_run_function(
        inference_step, input_signature=[tf.TensorSpec([None, data.NUM_FEATURES], tf.float32)]
    )

    def switch_dropout_off(step: int) -> None:
        # The runtime switch: assigning the layers' variables changes what the traced If op runs
        # from the next step on. No retrace.
        model_lib.set_dropout_enabled(model, False)
        if distribution.is_chief(strategy):
            print(f"step {step}: dropout turned off", flush=True)

    eval_losses: list[float] = []

    def on_eval(step: int, results: metrics.Results, writers: summaries.SummaryWriters) -> None:
        eval_losses.append(results["loss"])
        # The eval step counted every example into its probability bucket: the curve is drawn
        # from those counts, with no second pass of the model over the eval set.
        summaries.write_pr_curves(writers.eval, {"pr_curve": results["pr_curve"]}, step)

    return training_loop.run(
        config,
        logdir,
        state,
        train_step,
        functools.partial(eval_step, inference_step),
        lambda: datasets,
        eval_batch_size=data.EVAL_BATCH_SIZE,
        progress_metrics=[
            *(f"{run}/{tag}" for run in ("train", "eval") for tag in ("loss", "accuracy")),
            "train/steps_per_second",
        ],
        app_summaries=training_loop.AppSummaries(
            on_eval=on_eval,
            scalars_layout=SCALARS_LAYOUT,
            # Traced on its first call, made here on zeros: its signature fixes the graph.
            graphs=[("inference_step", inference_step, (tf.zeros([1, data.NUM_FEATURES]),))],
        ),
        # Due at that step alone, and a loop ends there, so the switch flips at exactly that
        # step (0, the default, is never reached: dropout stays on).
        actions=[actions.Callback(switch_dropout_off, at_steps=[config.dropout_off_at_step])],
        final_metrics=lambda: {
            "eval/min_loss": min(eval_losses),
            "inference_step_traces": inference_step.experimental_get_tracing_count(),
        },
    )
