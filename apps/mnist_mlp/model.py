"""The model: a Functional MLP, 784 pixels -> 64 ReLU units -> 10 logits."""

import keras

NUM_PIXELS = 28 * 28
NUM_CLASSES = 10


def create_model(hidden_units: int = 64) -> keras.Model:
    """Builds the MLP with named layers, so TensorBoard's graphs read `hidden` and `logits`.

    It returns logits, not probabilities: the loss applies the softmax itself, which is more stable.
    """
    images = keras.Input(shape=(NUM_PIXELS,), name="image")
    hidden = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(images)
    # float32 under any --mixed_precision policy: the softmax and the loss stay numerically safe.
    logits = keras.layers.Dense(NUM_CLASSES, name="logits", dtype="float32")(hidden)
    return keras.Model(inputs=images, outputs=logits, name="mnist_mlp")
