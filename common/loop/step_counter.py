"""The global step: one int64 `tf.Variable` that counts optimizer steps and stamps every summary.

A variable (not a Python int) because the train loop increments it inside `tf.function`, a
checkpoint saves and restores it with the model, and `tf.summary` reads it as the default step, so
a resumed run continues its curves where they stopped. This is Orbit's design (tensorflow/models).
"""

import tensorflow as tf


def create_global_step() -> tf.Variable:
    """Creates the global step at 0 and makes it the default step of every `tf.summary` call.

    Create it inside a `tf.distribute` strategy's scope when there is one: its aggregation,
    ONLY_FIRST_REPLICA, makes `assign_add(1)` in a replicated step count once, not once per replica.

    Returns:
        A non-trainable int64 scalar variable named `global_step`.
    """
    global_step = tf.Variable(
        0,
        dtype=tf.int64,
        trainable=False,
        name="global_step",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    tf.summary.experimental.set_step(global_step)
    return global_step
