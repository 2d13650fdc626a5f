"""Trains a wide MLP with switchable dropout, logging the training and the inference graphs.

Two graphs land in TensorBoard, under two tags of the `train` run:
  `graph/train_step`      the whole train step with `training=True`: dropout's random ops sit
                          inside the branch of an `If` op that reads each layer's `enabled` weight.
  `graph/inference_step`  the model with `training=False`: no dropout, no random ops, no `If`.
`--dropout_off_at_step` flips the variables mid-run: dropout stops at once, and nothing is retraced
(the returned `train_step_traces` stays 1). The dropout switches are model weights, so a resumed run
keeps their state. The outer loop is `common.training_loop.run`, as in every app.

What lands in `<logdir>`:
  train/  both graphs, the Keras graph, model summary, config and dataset text; scalars `loss`,
          `accuracy`, `dropout_enabled`, `learning_rate`, `steps_per_second`,
          `examples_per_second` every loop; weight histograms at every eval.
  eval/   `loss` and `accuracy` through the inference graph, every `eval_every_steps`.
"""

import functools
from collections.abc import Callable

import keras
import tensorflow as tf

from common import distribution, training_loop

from . import data
from . import model as model_lib
from .config import Config

__all__ = ["Config", "eval_step", "train_and_evaluate", "train_step"]


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Sigmoid cross-entropy of each 0/1 label against its logit: shape [batch]."""
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(losses, axis=-1)  # Labels and logits are [batch, 1].


def train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    metrics: dict[str, keras.metrics.Metric],
    features: tf.Tensor,
    labels: tf.Tensor,
    *,
    global_batch_size: int,
) -> tf.Tensor:
    """One replica's share of a train step, with dropout as the layers' switches say."""
    with tf.GradientTape() as tape:
        logits = model(features, training=True)
        losses = per_example_loss(labels, logits)
        # Divided by the global batch: the replicas' losses then add up to the batch's mean.
        loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch_size)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    metrics["loss"].update_state(losses)
    metrics["accuracy"].update_state(labels, logits)
    # NaN if a gradient is, even where the loss looks finite: see loss_or_nan.
    return training_loop.loss_or_nan(loss, gradients)


def eval_step(
    inference_step: Callable[[tf.Tensor], tf.Tensor],
    metrics: dict[str, keras.metrics.Metric],
    features: tf.Tensor,
    labels: tf.Tensor,
) -> None:
    """One replica's share of an eval batch, through the one traced inference graph."""
    logits = inference_step(features)
    metrics["loss"].update_state(per_example_loss(labels, logits))  # Per example: ragged batches.
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
        datasets: data to use instead of generating it from `config` (tests inject here).

    Returns:
        `train/loss`, `train/accuracy`, `train/dropout_enabled`, `eval/loss`, `eval/accuracy` at
        the last step, `eval/min_loss` over the run (final far above min: overfitting),
        `inference_step_traces` (1: never retraced, even by the dropout switch), and the run's
        figures (see `common.training_loop.run`).

    Raises:
        common.errors.UserError: for an unusable logdir, a checkpoint of another model, or a
            NaN/Inf loss (then the last good checkpoint is kept).
        common.errors.Interrupted: after SIGINT/SIGTERM, once a checkpoint is saved.
    """
    strategy, global_step = training_loop.start(config)
    datasets = datasets or data.make_datasets(config.seed)  # Synthetic: instant.
    with strategy.scope():  # Variables made here are mirrored on every replica.
        model = model_lib.create_model(
            data.NUM_FEATURES, config.dropout_rate, config.hidden_units, config.seed
        )
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)  # Now: a step that builds it traces twice.
        # Logits, so the decision threshold is 0, not 0.5.
        train_metrics = {
            "loss": keras.metrics.Mean(),
            "accuracy": keras.metrics.BinaryAccuracy(threshold=0.0),
        }
        eval_metrics = {
            "loss": keras.metrics.Mean(),
            "accuracy": keras.metrics.BinaryAccuracy(threshold=0.0),
        }

    # The inference graph: a batch dimension of None, so every eval batch, the smaller last one
    # included, runs through this one traced graph.
    @tf.function(input_signature=[tf.TensorSpec([None, data.NUM_FEATURES], tf.float32)])
    def inference_step(features: tf.Tensor) -> tf.Tensor:
        return model(features, training=False)

    eval_losses: list[float] = []

    def dropout_enabled() -> dict[str, float]:
        enabled = bool(model_lib.dropout_layers(model)[0].enabled.numpy())
        return {"dropout_enabled": float(enabled and config.dropout_rate > 0)}

    def switch_dropout_off(step: int) -> None:
        if step == config.dropout_off_at_step:
            # The runtime switch: assigning the layers' variables changes what the traced If op
            # runs from the next step on. No retrace.
            model_lib.set_dropout_enabled(model, False)
            if distribution.is_chief(strategy):
                print(f"step {step}: dropout turned off", flush=True)

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
        eval_step=functools.partial(eval_step, inference_step, eval_metrics),
        eval_metrics=eval_metrics,
        load_datasets=lambda: datasets,
        train_pipeline=data.train_pipeline,
        eval_pipeline=data.eval_pipeline,
        eval_batch_size=data.EVAL_BATCH_SIZE,
        boundary_scalars=dropout_enabled,
        on_eval=lambda step, results, writers: eval_losses.append(results["loss"]),
        # A loop ends at the switch, so it flips at exactly that step.
        boundary_steps=[config.dropout_off_at_step],
        on_boundary=switch_dropout_off,
        # Traced on its first call, which the trace makes (on zeros: its signature fixes the
        # graph, whatever the values).
        extra_graphs=[
            ("inference_step", inference_step, (tf.zeros([1, data.NUM_FEATURES]),)),
        ],
        final_metrics=lambda: {
            "eval/min_loss": min(eval_losses),
            "inference_step_traces": inference_step.experimental_get_tracing_count(),
        },
    )
