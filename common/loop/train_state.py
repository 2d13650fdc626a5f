"""What a run trains and saves: its models, optimizers and metrics (`TrainState`), the datasets an
app loads, what a checkpoint holds, and copies of the models' weights for the eval's summaries.

    with strategy.scope():
        state = TrainState.create(config, [model], train_metrics, eval_metrics)
    loss = state.average_loss(per_example_losses)      # in one replica's train step
"""

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from common import errors, settings
from common.loop import mixed_precision, non_finite, step_counter

Metrics = dict[str, keras.metrics.Metric]


class Datasets(Protocol):
    """What an app's `data.py` loads: unbatched train and eval examples, and their origin."""

    train: tf.data.Dataset
    eval: tf.data.Dataset
    description: str


class ModelNotBuiltError(errors.UserError):
    """A model has no weights yet, so nothing could train or restore it."""


def _check_built(model: keras.Model) -> None:
    """Refuses a model without weights: a subclassed model makes them at its first call (and
    `model.build(shape)` does not call it), too late for the optimizer, which is built over the
    models' variables before the first step (see `TrainState.create`)."""
    if not model.weights:
        raise ModelNotBuiltError(
            f"model {model.name!r} has no weights yet: a subclassed model makes them at its first "
            "call (model.build(shape) does not call it), so call it once on example inputs, "
            "e.g. model(features[:1]), before TrainState.create"
        )


@dataclasses.dataclass(frozen=True)
class TrainState:
    """One run's models, optimizers and metrics: what the steps use and a checkpoint saves."""

    models: tuple[keras.Model, ...]
    # By name: one optimizer over every model (`{"optimizer": Adam}`, the default), or one per
    # group of models (a GAN's `{"generator": ..., "discriminator": ...}`), each checkpointed.
    optimizers: dict[str, keras.optimizers.Optimizer]
    train_metrics: Metrics  # Updated by the train step; logged and reset at every boundary.
    # Updated by the eval step; read at every eval: scalar results logged to eval/, every result
    # (arrays too, e.g. a PRCurveCounts') handed to the app's on_eval.
    eval_metrics: Metrics
    global_step: tf.Variable  # Optimizer steps so far; stamps every summary.
    global_batch_size: int  # Examples per step over all replicas.
    strategy: tf.distribute.Strategy
    # The run's settings, for a step that needs one (a loss weight): `state.config.<name>`.
    config: settings.TrainingSettings | None = None
    # Which models each optimizer updates (`create`'s groups): whose gradients its scale judges.
    optimizer_models: dict[str, tuple[keras.Model, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: settings.TrainingSettings,
        models: Sequence[keras.Model],
        train_metrics: Metrics,
        eval_metrics: Metrics,
        optimizer: keras.optimizers.Optimizer | None = None,
        optimizers: Mapping[str, tuple[keras.optimizers.Optimizer, Sequence[keras.Model]]]
        | None = None,
    ) -> "TrainState":
        """Call it in `strategy.scope()`, so every variable is mirrored on every replica.

        Args:
            config: for the learning rate and the global batch size; the steps read it as
                `state.config`.
            models: the Keras models the steps use (checkpointed, graphed, histogrammed), each
                built: a subclassed model makes its weights at its first call, so call it once
                on example inputs first (`model(features[:1])`).
            train_metrics, eval_metrics: `{tag: metric}`; the tags are what TensorBoard shows.
                An eval metric may have an array result (`metrics.PRCurveCounts`,
                `metrics.ConfusionMatrix`): counted in the eval step, it reaches the app's
                `training_loop.AppSummaries.on_eval` as a NumPy array, for the app to draw;
                only scalar results are logged as scalars, shown and returned.
            optimizer: the one optimizer over every model's variables; default
                `keras.optimizers.Adam(config.learning_rate)`.
            optimizers: instead, several: `{name: (optimizer, [models it updates])}`, e.g. a
                GAN's generator and discriminator, each built over its own models' trainable
                variables, checkpointed as `<name>_optimizer` and logged as
                `learning_rate/<name>`; the step takes `state.optimizers[name]`.

        Raises:
            ModelNotBuiltError: if a model has no weights yet (an unbuilt subclassed model).
            ValueError: for both `optimizer` and `optimizers`, or an optimizer's model that is
                not among `models`.
        """
        for model in models:
            _check_built(model)
        if optimizer is not None and optimizers is not None:
            raise ValueError("pass optimizer or optimizers, not both")
        if optimizers is None:
            default = optimizer or keras.optimizers.Adam(config.learning_rate)
            groups = {"optimizer": (default, models)}
        else:
            groups = dict(optimizers)
        # Each wrapped for --mixed_precision (a loss scale of its own under mixed_float16).
        groups = {
            name: (
                mixed_precision.for_mixed_precision(group_optimizer, config.mixed_precision),
                updated,
            )
            for name, (group_optimizer, updated) in groups.items()
        }
        for name, (_, updated) in groups.items():
            strangers = [model.name for model in updated if not any(model is m for m in models)]
            if strangers:
                raise ValueError(f"optimizer {name!r} updates {strangers}, which are not in models")
        state = cls(
            models=tuple(models),
            optimizers={name: group[0] for name, group in groups.items()},
            train_metrics=train_metrics,
            eval_metrics=eval_metrics,
            global_step=step_counter.create_global_step(),
            global_batch_size=config.batch_size,
            strategy=tf.distribute.get_strategy(),
            config=config,
            optimizer_models={name: tuple(group[1]) for name, group in groups.items()},
        )
        # Its slot variables now rather than inside the first step: a tf.function that creates
        # variables is traced twice, and its graph fills up with initializers. Each optimizer
        # over its own models' variables only: one holding slots for another's would also
        # checkpoint them twice.
        for group_optimizer, updated in groups.values():
            group_optimizer.build([v for model in updated for v in model.trainable_variables])
        return state

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The run's one optimizer; a state with several has none by this name: see `optimizers`."""
        if len(self.optimizers) != 1:
            raise AttributeError(
                f"this state has {len(self.optimizers)} optimizers "
                f"({', '.join(self.optimizers)}): take one by name, state.optimizers[name]"
            )
        return next(iter(self.optimizers.values()))

    @property
    def model(self) -> keras.Model:
        """The first (for most apps the only) model."""
        return self.models[0]

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        """Every model's trainable variables, in order: what the gradients are taken of."""
        return [variable for model in self.models for variable in model.trainable_variables]

    def average_loss(self, per_example_losses: tf.Tensor) -> tf.Tensor:
        """One replica's per-example losses summed and divided by the *global* batch size.

        Under a strategy each replica sees a slice of the batch; dividing by the global batch, not
        the slice, makes the replicas' losses (and gradients, which the optimizer sums) add up to
        the whole batch's mean, exactly as on one device.
        """
        return tf.nn.compute_average_loss(
            per_example_losses, global_batch_size=self.global_batch_size
        )

    # Mixed precision: a step calls these whatever --mixed_precision says, and reads the same
    # with or without it (each is the identity, adding no op, unless the optimizer scales the
    # loss, as it does under mixed_float16: see for_mixed_precision).

    @mixed_precision.NOT_CONVERTED
    def scale_loss(
        self, loss: tf.Tensor, optimizer: keras.optimizers.Optimizer | None = None
    ) -> tf.Tensor:
        """The loss to take the gradients of: `loss` times the loss scale under mixed_float16
        (float16 gradients of small values would underflow to 0), else `loss` itself.

        Args:
            loss: the step's loss (float32: a model's last layer computes in float32).
            optimizer: the optimizer its gradients go to (default `self.optimizer`).
        """
        scale = mixed_precision.loss_scale(optimizer or self.optimizer)
        return loss if scale is None else loss * scale

    @mixed_precision.NOT_CONVERTED
    def unscale(
        self,
        scaled_gradients: Sequence[tf.Tensor | None],
        optimizer: keras.optimizers.Optimizer | None = None,
    ) -> list[tf.Tensor | None]:
        """The true gradients, from those of `scale_loss`'s loss: what the histograms and any
        gradient metric must see. Call it before `apply_gradients`, which may change the scale;
        apply the *scaled* gradients (the LossScaleOptimizer divides them itself, and skips a
        step whose gradients overflowed).

        Args:
            scaled_gradients: `tape.gradient(state.scale_loss(loss), variables)`.
            optimizer: the optimizer that scaled the loss (default `self.optimizer`).
        """
        scale = mixed_precision.loss_scale(optimizer or self.optimizer)
        if scale is None:
            return list(scaled_gradients)
        return [mixed_precision.divide_gradient(gradient, scale) for gradient in scaled_gradients]

    @mixed_precision.NOT_CONVERTED
    def loss_or_nan(
        self,
        loss: tf.Tensor,
        gradients: Sequence[tf.Tensor | None],
        optimizer: keras.optimizers.Optimizer | None = None,
    ) -> tf.Tensor:
        """`non_finite.loss_or_nan(loss, gradients)`, what a train step returns for the loop's
        non-finite check, knowing about loss scaling: under mixed_float16 a step whose gradients
        overflowed is skipped by the optimizer (and the scale halved), which is expected and does
        not stop the run; a non-finite loss does, and so do non-finite gradients once the loss
        scale has fallen below `non_finite.MIN_LOSS_SCALE` (every step skipped: NaN data, or a
        model float16 cannot hold). Call it after `apply_gradients`. With several optimizers
        and no `optimizer`, `gradients` in `trainable_variables`' order, each optimizer's are
        judged by its own scale.
        """
        if optimizer is not None or len(self.optimizers) == 1:
            scale = mixed_precision.loss_scale(optimizer or self.optimizer)
            return non_finite.loss_or_nan(loss, gradients, loss_scale=scale)
        # Several: each optimizer's gradients judged by its own scale (one may be far below
        # another's), those of variables no optimizer updates by none.
        of_variable = {
            id(variable): gradient
            for variable, gradient in zip(self.trainable_variables, gradients, strict=True)
        }
        judged: set[int] = set()
        for name, models in self.optimizer_models.items():
            variables = [v for model in models for v in model.trainable_variables]
            judged.update(id(variable) for variable in variables)
            group = [of_variable[id(variable)] for variable in variables]
            loss = non_finite.loss_or_nan(
                loss, group, mixed_precision.loss_scale(self.optimizers[name])
            )
        rest = [gradient for key, gradient in of_variable.items() if key not in judged]
        return non_finite.loss_or_nan(loss, rest) if rest else loss


def model_variables(state: TrainState) -> list[keras.Variable]:
    """Every model's variables, trainable and not, in order: what a weights snapshot holds."""
    return [variable for model in state.models for variable in model.variables]


def snapshot_weights(state: TrainState) -> list[np.ndarray]:
    """Every model variable's value now, copied to the host (`model_variables`' order): what the
    eval's summaries read on their own thread while the next loop changes the weights."""
    return [variable.numpy() for variable in model_variables(state)]


def snapshot_tensors(state: TrainState, snapshot: Sequence[np.ndarray]) -> list[tf.Tensor]:
    """A `snapshot_weights` snapshot as tensors, each of its variable's dtype: what `weights_as_of`
    takes. Made on the thread that reads them, not the loop's."""
    return [
        tf.constant(value, dtype=variable.dtype)
        for variable, value in zip(model_variables(state), snapshot, strict=True)
    ]


def values_of(
    state: TrainState, values: Sequence[tf.Tensor], variables: Sequence[keras.Variable]
) -> list[tf.Tensor]:
    """Of every model variable's `values` (`model_variables`' order), those of `variables`."""
    position = {id(variable): index for index, variable in enumerate(model_variables(state))}
    return [values[position[id(variable)]] for variable in variables]


def histogrammed_variables(state: TrainState) -> list[keras.Variable]:
    """What an eval histograms: the trainable variables (`state.trainable_variables`' order, the
    gradients'), then every model's non-trainable float ones (a batch norm's moving mean and
    variance). Not integer state: a dropout's or a noise layer's seed generator."""
    trainable = {id(variable) for variable in state.trainable_variables}
    return state.trainable_variables + [
        variable
        for variable in model_variables(state)
        if id(variable) not in trainable and keras.backend.is_float_dtype(variable.dtype)
    ]


@contextlib.contextmanager
def weights_as_of(state: TrainState, values: Sequence[tf.Tensor]) -> Iterator[None]:
    """Inside the block, on this thread, every call of the models reads its variables from
    `values` (see `snapshot_tensors`), and whatever a call assigns (a dropout layer's random
    generator state, a batch norm's statistics) goes nowhere: the run's variables stay as
    training leaves them.

    Keras 3's `StatelessScope`, which `Layer.stateless_call` uses. Eager calls only: a
    `tf.function` traced before reads the live variables, whatever the scope says; one that
    enters the block inside its own body reads the values it is given.
    """
    with keras.StatelessScope(state_mapping=list(zip(model_variables(state), values, strict=True))):
        yield


def checkpoint_objects(state: TrainState) -> dict[str, Any]:
    """What a checkpoint holds: `model=` (or each model by its name) and `optimizer=` (or each
    of several as `<name>_optimizer=`)."""
    models = state.models
    named = {"model": models[0]} if len(models) == 1 else {model.name: model for model in models}
    if len(state.optimizers) == 1:
        return {**named, "optimizer": state.optimizer}
    return {**named, **{f"{name}_optimizer": opt for name, opt in state.optimizers.items()}}
