"""A broken step, found and explained: `loss_or_nan`, which every train step returns for the loop's
non-finite check, and what the message of a run stopped by a NaN says about it."""

from collections.abc import Iterable, Sequence
from typing import Any

import tensorflow as tf

from common.loop import mixed_precision

# What the NaN messages suggest: a huge learning rate is one cause, huge or missing values in the
# data another (float32 overflows past 3.4e38).
NON_FINITE_ADVICE = (
    "Try a lower --learning_rate, or check the data for very large or missing values."
)
# Below it, a dynamic loss scale (mixed_float16, from 2**15) has been halved at 16 skipped steps
# more than it grew: the gradients overflow float16 even unscaled, or are NaN. See loss_or_nan.
MIN_LOSS_SCALE = 1.0


# Plain Python around its ops: AutoGraph's conversion at every trace of a step would only cost.
@tf.autograph.experimental.do_not_convert
def loss_or_nan(
    loss: tf.Tensor,
    gradients: Sequence[tf.Tensor | None],
    loss_scale: tf.Variable | None = None,
) -> tf.Tensor:
    """`loss`, or NaN if it is finite but a gradient holds a NaN or an infinity: what a train step
    should return for the loop's non-finite check.

    The loss alone can hide a broken step. On CPUs where oneDNN fuses MatMul, BiasAdd and Relu
    (TensorFlow 2.21 in a tf.function), the fused op turns a NaN input into 0: a NaN in the data
    gives a finite loss but NaN gradients, and from then on NaN weights behind a loss that still
    looks fine. Call it inside the step, after `tape.gradient`; `None` gradients are skipped.

    Args:
        loss: the step's loss.
        gradients: its gradients (unscaled).
        loss_scale: under dynamic loss scaling (mixed_float16), the optimizer's scale, read after
            its update. Non-finite gradients are then expected now and again: the optimizer
            skips that step and halves the scale, and the weights never see them. They count
            only once the scale is below MIN_LOSS_SCALE: after that many halvings every step is
            being skipped (NaN data, or values float16 cannot hold even unscaled), and the run
            would otherwise go on without learning, saying nothing.
    """
    checks = [
        tf.reduce_all(tf.math.is_finite(getattr(gradient, "values", gradient)))  # IndexedSlices.
        for gradient in gradients
        if gradient is not None
    ]
    all_finite = tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)
    if loss_scale is not None:
        all_finite = tf.logical_or(all_finite, loss_scale >= MIN_LOSS_SCALE)
    # A loss that is already Inf stays Inf (its gradients are NaN then), so the error says so.
    keep_loss = tf.logical_or(all_finite, tf.logical_not(tf.math.is_finite(loss)))
    # The NaN is sqrt(-1), computed only in a broken step (sqrt(-0) is 0): a NaN constant would
    # be computed at every step, and --debugger's Debugger V2 would report it as every run's first
    # NaN. (A tf.cond would add a conditional to every app's step graph.)
    broken = tf.cast(tf.logical_not(keep_loss), loss.dtype)
    return tf.where(keep_loss, loss, tf.math.sqrt(-broken))


def loss_scale_note(trackables: Iterable[Any]) -> str:
    """Under dynamic loss scaling whose scale collapsed (see loss_or_nan): what happened, as a
    sentence for the NaN message (or nothing)."""
    for trackable in trackables:
        scale = mixed_precision.loss_scale(trackable)  # mixed_float16's, else None.
        if scale is not None and float(scale.numpy()) < MIN_LOSS_SCALE:
            return (
                " Under --mixed_precision=mixed_float16 the steps whose gradients were not "
                "finite were skipped, and the loss scale fell to "
                f"{float(scale.numpy()):g}: they overflow float16 even unscaled, or are "
                "NaN (try --mixed_precision=mixed_bfloat16 or none)."
            )
    return ""


def advice(debugger_dir: str | None) -> str:
    """What a NaN message suggests: the usual causes, then how to find the op."""
    if debugger_dir:
        return (
            f"{NON_FINITE_ADVICE} To find the op, open TensorBoard's Debugger V2 tab on "
            f"{debugger_dir} (make tensorboard LOGS={debugger_dir}): its alerts "
            "name the first op that produced NaN/Inf."
        )
    return (
        f"{NON_FINITE_ADVICE} To find the op that produced the first NaN/Inf, rerun with "
        "--debugger (slower) on a new --logdir."
    )
