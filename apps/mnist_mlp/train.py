"""Trains and evaluates the MNIST MLP with a `tf.GradientTape` step and full TensorBoard logging.

This file holds what is the app's own: the loss, one replica's train step and eval step, and the
model, optimizer and metrics they use. The outer loop (the graph trace at step one, many steps per
`tf.function` call, summaries, eval, checkpoints, resume, signals, NaN stops, tf.distribute) is
`common.loop.training_loop.run`, the same for every app.

What lands in `<logdir>`:
  train/  the step's op graph (tag `graph/train_step`), the Keras graph, the model summary, the
          config and the dataset as text; scalars `loss`, `accuracy`, `learning_rate`,
          `steps_per_second`, `examples_per_second` every loop; weight and gradient histograms
          and `gradients/global_norm` at every eval; the Custom Scalars layout at step 0.
  eval/   scalars `loss` and `accuracy` on the held-out split, every `eval_every_steps`; with them
          a PR curve per digit and the confusion matrix, from counts the eval step takes beside
          the loss (`common.summaries.metrics.PRCurveCounts` and `ConfusionMatrix`), and, from one
          model call on the first `visuals.NUM_EMBEDDED` eval digits, the misclassified ones among
          them and the Projector's hidden-layer embeddings (`eval/projector/`; see visuals.py).
  checkpoints/  model, optimizer and global step, every `checkpoint_every_steps` and at the end.
"""

import keras
import tensorflow as tf

from common import summaries
from common.loop import input_pipeline, steps, train_state, training_loop
from common.summaries import metrics

from . import data, visuals
from . import model as model_lib
from .config import Config

__all__ = ["Config", "create_state", "eval_step", "train_and_evaluate", "train_step"]

# The Custom Scalars tab's charts: each curve beside the ones it is read against.
SCALARS_LAYOUT = summaries.scalars_layout(
    {
        "mnist_mlp": {
            "loss, train against eval": ["loss"],
            "accuracy, train against eval": ["accuracy"],
            "learning rate and gradient norm": ["learning_rate", "gradients/global_norm"],
        }
    }
)


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each integer label against its logits: shape [batch]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def train_step(
    state: train_state.TrainState, images: tf.Tensor, labels: tf.Tensor
) -> steps.StepOutputs:
    """One replica's share of a train step; the optimizer sums the replicas' gradients."""
    with tf.GradientTape() as tape:
        logits = state.model(images, training=True)
        losses = per_example_loss(labels, logits)
        loss = state.average_loss(losses)  # Over the global batch: see TrainState.average_loss.
        # --mixed_precision=mixed_float16: times the loss scale, so small float16 gradients do
        # not underflow to 0. Otherwise the loss itself (as are `unscale`'s gradients).
        scaled_loss = state.scale_loss(loss)
    scaled_gradients = tape.gradient(scaled_loss, state.trainable_variables)
    gradients = state.unscale(scaled_gradients)  # Before the update, which may change the scale.
    # The scaled ones: the loss-scale optimizer unscales them, and skips a step they overflowed.
    state.optimizer.apply_gradients(zip(scaled_gradients, state.trainable_variables, strict=True))
    state.train_metrics["loss"].update_state(losses)
    state.train_metrics["accuracy"].update_state(labels, logits)
    # The loss for the loop's check, NaN if a gradient is even where the loss looks finite (see
    # TrainState.loss_or_nan); and the gradients, which the loop writes as histograms at each eval.
    return state.loss_or_nan(loss, gradients), gradients


def eval_step(state: train_state.TrainState, images: tf.Tensor, labels: tf.Tensor) -> None:
    """One replica's share of an eval batch, per example: the last batch is smaller. Besides the
    scalars, the counts on_eval draws the PR curves and the confusion matrix from."""
    logits = state.model(images, training=False)
    state.eval_metrics["loss"].update_state(per_example_loss(labels, logits))
    state.eval_metrics["accuracy"].update_state(labels, logits)
    state.eval_metrics["pr_curve"].update_state(labels, tf.nn.softmax(logits))
    state.eval_metrics["confusion_matrix"].update_state(labels, logits)


def create_state(config: Config) -> train_state.TrainState:
    """The model, Adam, a loss and an accuracy metric for each of train and eval, and for eval
    the counts of a PR curve per digit and of the confusion matrix (array results: on_eval's).
    Call it in the strategy's scope, so every variable is mirrored on every replica."""
    model = model_lib.create_model(config.hidden_units)
    train_metrics, eval_metrics = (
        {"loss": keras.metrics.Mean(), "accuracy": keras.metrics.SparseCategoricalAccuracy()}
        for _ in ("train", "eval")
    )
    eval_metrics["pr_curve"] = metrics.PRCurveCounts(num_classes=model_lib.NUM_CLASSES)
    eval_metrics["confusion_matrix"] = metrics.ConfusionMatrix(model_lib.NUM_CLASSES)
    return train_state.TrainState.create(config, [model], train_metrics, eval_metrics)


def train_and_evaluate(
    config: Config, logdir: str, datasets: data.Datasets | None = None
) -> dict[str, float]:
    """Trains up to `config.num_steps` steps, logging to `logdir`: see `training_loop.run`.

    `datasets` replaces the data `config.dataset` names (tests inject small sets here). Returns
    `train/loss`, `train/accuracy`, `eval/loss`, `eval/accuracy` and the run's figures.
    """
    strategy = training_loop.create_strategy(config)
    with strategy.scope():
        state = create_state(config)

    model = state.model
    # The model's own layers, with two outputs: the hidden layer's (the Projector's points) and
    # the logits, from one call. It shares the model's variables, so an eager call in on_eval
    # reads them as they were at the eval's step.
    embed_and_classify = keras.Model(
        model.inputs, [model.get_layer("hidden").output, model.output], name="embed_and_classify"
    )
    # The first NUM_EMBEDDED eval digits' summaries, once the data load: the pictures' and the
    # Projector's digits. Only these are held a second time; the PR curves and the confusion
    # matrix count all of the eval set in the eval step.
    eval_summaries: list[visuals.EvalSummaries] = []

    def load_datasets() -> data.Datasets:  # Called after the restore: a finished run loads none.
        loaded = datasets or data.load_datasets(config.dataset, config.data_dir, config.seed)
        eval_digits = loaded.eval.take(visuals.NUM_EMBEDDED)
        digits = input_pipeline.materialize(eval_digits, "the eval set")
        eval_summaries.append(visuals.EvalSummaries(embed_and_classify, digits))
        return loaded

    def on_eval(step: int, results: metrics.Results, writers: summaries.SummaryWriters) -> None:
        # On the summaries' thread, while training goes on: the model call here is eager and
        # reads its weights as they were at `step` (see training_loop.AppSummaries.on_eval).
        eval_summaries[0].write(results, writers, step)

    app_summaries = training_loop.AppSummaries(on_eval=on_eval, scalars_layout=SCALARS_LAYOUT)
    return training_loop.run(
        config, logdir, state, train_step, eval_step, load_datasets, app_summaries=app_summaries
    )
