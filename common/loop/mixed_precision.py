"""Mixed precision for the loop: the Keras policies of `--mixed_precision`, and the loss scaling
a float16 step needs, with every replica agreeing on which steps to skip.

`TrainState` (common/loop/train_state.py) wraps each optimizer with `for_mixed_precision` and
scales, unscales and judges a step's loss through `loss_scale`; under bfloat16 or float32 nothing
here adds an op to the step.
"""

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

# --mixed_precision's Keras policy: layers compute in its 16-bit type, variables stay float32.
POLICIES = {
    "none": "float32",
    "mixed_float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
}

# For the helpers a train step calls: plain Python over Python values (which optimizer, whether a
# scale exists), so AutoGraph's conversion, which would rewrite their `if`s and `for`s at every
# trace, is skipped: it added 0.3 s to mnist_mlp's one-time trace of the step (0.45 -> 0.8 s).
NOT_CONVERTED = tf.autograph.experimental.do_not_convert


def for_mixed_precision(
    optimizer: keras.optimizers.Optimizer, mixed_precision: str
) -> keras.optimizers.Optimizer:
    """`optimizer` as `--mixed_precision` needs it: under mixed_float16 wrapped in Keras's
    `LossScaleOptimizer` (dynamic loss scaling: its scale is checkpointed with it), otherwise as
    it is (bfloat16 has float32's range: no scaling).

    Args:
        optimizer: an optimizer over float32 variables.
        mixed_precision: one of `settings.MIXED_PRECISION_NAMES`.
    """
    if mixed_precision == "mixed_float16" and loss_scale(optimizer) is None:
        return ReplicaAgreeingLossScaleOptimizer(optimizer)
    user_scaled = loss_scale(optimizer) is not None and not optimizer.built
    if user_scaled and not isinstance(optimizer, ReplicaAgreeingLossScaleOptimizer):
        # A user's own Keras LossScaleOptimizer: the same settings, replicas agreeing.
        return ReplicaAgreeingLossScaleOptimizer(
            optimizer.inner_optimizer,
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
        )
    return optimizer


class ReplicaAgreeingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's `LossScaleOptimizer`, with every replica skipping a step if any replica must.

    Keras 3.x decides from one replica's own gradients, before they are summed: the first
    replica's under MirroredStrategy, each its own under MultiWorkerMirroredStrategy. Measured
    here on 2 mirrored CPUs: a step whose second replica overflowed was applied, and the summed
    infinity made the weights non-finite. So each replica's gradients are made NaN if any
    replica's are not finite (a scalar all-reduce, with several replicas only): the optimizer
    then skips that step everywhere. Its checkpoint is the `LossScaleOptimizer`'s.
    """

    def apply(self, grads: Sequence[Any], trainable_variables: Any = None) -> None:
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            non_finite = tf.cast(tf.logical_not(self.check_finite(grads)), tf.float32)
            replicas_non_finite = context.all_reduce(tf.distribute.ReduceOp.SUM, non_finite)
            # 0, or NaN on every replica once any replica's gradients are not finite.
            poison = tf.math.sqrt(-replicas_non_finite)
            grads = [_add_to_gradient(gradient, poison) for gradient in grads]
        super().apply(grads, trainable_variables)


@NOT_CONVERTED
def loss_scale(optimizer: keras.optimizers.Optimizer) -> keras.Variable | None:
    """The optimizer's dynamic loss scale (a float32 variable), or None if it scales no loss."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None


@NOT_CONVERTED
def _add_to_gradient(gradient: tf.Tensor | tf.IndexedSlices | None, value: tf.Tensor) -> Any:
    """`gradient + value` (a float32 scalar), keeping an embedding's sparse gradient sparse."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        values = gradient.values + tf.cast(value, gradient.values.dtype)
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return gradient + tf.cast(value, gradient.dtype)


@NOT_CONVERTED
def divide_gradient(gradient: tf.Tensor | tf.IndexedSlices | None, scale: Any) -> Any:
    """`gradient / scale`, keeping an embedding's sparse gradient sparse."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values / scale, gradient.indices, gradient.dense_shape)
    return gradient / scale
