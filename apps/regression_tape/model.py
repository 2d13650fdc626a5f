"""The model: the popular 10 -> 32 -> 16 -> 1 Functional regression network."""

import keras

from .data import NUM_FEATURES


def create_model() -> keras.Model:
    """Builds the network with named layers; it outputs one unbounded value (no activation)."""
    features = keras.Input(shape=(NUM_FEATURES,), name="features")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden_1")(features)
    hidden = keras.layers.Dense(16, activation="relu", name="hidden_2")(hidden)
    # float32 under any --mixed_precision policy: the squared error stays numerically safe.
    prediction = keras.layers.Dense(1, name="prediction", dtype="float32")(hidden)
    return keras.Model(inputs=features, outputs=prediction, name="regression_tape")
