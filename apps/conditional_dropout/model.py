"""The model: a wide MLP with dropout that is switched two ways, both of which work on Keras 3.

1. By the `training` argument, at trace time: `model(x, training=True)` and `training=False` give
   two graphs; the inference graph holds no random ops at all.
2. At run time, by a `tf.Variable`: `SwitchableDropout.call` runs `tf.cond` on its `enabled`
   variable, so the training graph holds a real conditional (`If`) op, and assigning the variable
   turns dropout off or on without retracing anything.

The popular alternative, `tf.cond` around a Keras layer applied to a symbolic KerasTensor, raises on
Keras 3; and a `tf.constant` switch cannot be assigned. Conditions belong inside a layer's `call`.
"""

import keras
import tensorflow as tf


class SwitchableDropout(keras.layers.Layer):
    """Dropout in training only while its `enabled` variable is True; identity at inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape) -> None:
        # A non-trainable weight, not a bare tf.Variable: it is saved in checkpoints with the model.
        self.enabled = self.add_weight(
            shape=(), dtype="bool", initializer="ones", trainable=False, name="enabled"
        )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return inputs  # Decided while tracing: the inference graph has no dropout ops.
        return tf.cond(
            tf.convert_to_tensor(self.enabled),
            lambda: keras.random.dropout(inputs, self.rate, seed=self.seed_generator),
            lambda: tf.identity(inputs),
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def create_model(
    num_features: int, dropout_rate: float, hidden_units: int = 256, seed: int = 0
) -> keras.Model:
    """Builds features -> [Dense(relu) -> SwitchableDropout] x 2 -> one logit."""
    features = keras.Input(shape=(num_features,), name="features")
    hidden = features
    for index in (1, 2):
        hidden = keras.layers.Dense(hidden_units, activation="relu", name=f"hidden_{index}")(hidden)
        hidden = SwitchableDropout(dropout_rate, seed=seed + index, name=f"dropout_{index}")(hidden)
    # float32 under any --mixed_precision policy: the sigmoid and the loss stay numerically safe.
    logit = keras.layers.Dense(1, name="logit", dtype="float32")(hidden)
    return keras.Model(inputs=features, outputs=logit, name="conditional_dropout")


def dropout_layers(model: keras.Model) -> list[SwitchableDropout]:
    """The model's switchable dropout layers."""
    return [layer for layer in model.layers if isinstance(layer, SwitchableDropout)]


def set_dropout_enabled(model: keras.Model, enabled: bool) -> None:
    """Turns every switchable dropout layer on or off; no retrace follows."""
    for layer in dropout_layers(model):
        layer.enabled.assign(enabled)
