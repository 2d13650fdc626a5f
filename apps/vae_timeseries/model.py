"""The VAE: a Conv1D encoder to a Gaussian latent, a sampling layer, a Conv1D decoder back.

Two Functional models, so TensorBoard draws two conceptual graphs and `model.summary()` gives two
tables; the train step in train.py joins them.
"""

import keras
import tensorflow as tf

FILTERS = 64
KERNEL_SIZE = 5


class Sampling(keras.layers.Layer):
    """The reparameterization trick: z = mean + exp(log_variance / 2) * noise, noise ~ N(0, I).

    Sampling this way keeps z differentiable in mean and log_variance, so the encoder learns
    through it.
    """

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        mean, log_variance = inputs
        noise = keras.random.normal(tf.shape(mean), seed=self.seed_generator)
        return mean + tf.exp(0.5 * log_variance) * noise

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


def create_encoder(window_length: int, num_channels: int, latent_dim: int, seed: int = 0):
    """[batch, time, channels] -> (mean, log_variance, z), each [batch, latent_dim]."""
    windows = keras.Input(shape=(window_length, num_channels), name="window")
    hidden = keras.layers.Conv1D(
        FILTERS, KERNEL_SIZE, strides=2, padding="same", activation="relu", name="conv_1"
    )(windows)
    hidden = keras.layers.Conv1D(
        FILTERS, KERNEL_SIZE, strides=2, padding="same", activation="relu", name="conv_2"
    )(hidden)
    hidden = keras.layers.Flatten(name="flatten")(hidden)
    # The latent code in float32 under any --mixed_precision policy: exp(log_variance) and the
    # KL term overflow float16 for log-variances past about 11.
    mean = keras.layers.Dense(latent_dim, name="latent_mean", dtype="float32")(hidden)
    log_variance = keras.layers.Dense(latent_dim, name="latent_log_variance", dtype="float32")(
        hidden
    )
    z = Sampling(seed=seed, name="sampling", dtype="float32")([mean, log_variance])
    return keras.Model(windows, [mean, log_variance, z], name="encoder")


def create_decoder(window_length: int, num_channels: int, latent_dim: int):
    """[batch, latent_dim] -> [batch, time, channels] (unbounded: the data are standardized)."""
    if window_length % 4:
        raise ValueError(f"window_length must be a multiple of 4, got {window_length}")
    z = keras.Input(shape=(latent_dim,), name="z")
    hidden = keras.layers.Dense((window_length // 4) * FILTERS, activation="relu", name="expand")(z)
    hidden = keras.layers.Reshape((window_length // 4, FILTERS), name="unflatten")(hidden)
    hidden = keras.layers.Conv1DTranspose(
        FILTERS, KERNEL_SIZE, strides=2, padding="same", activation="relu", name="deconv_1"
    )(hidden)
    hidden = keras.layers.Conv1DTranspose(
        FILTERS, KERNEL_SIZE, strides=2, padding="same", activation="relu", name="deconv_2"
    )(hidden)
    # float32 under any --mixed_precision policy: the squared error stays numerically safe.
    reconstruction = keras.layers.Conv1D(
        num_channels, KERNEL_SIZE, padding="same", name="reconstruction", dtype="float32"
    )(hidden)
    return keras.Model(z, reconstruction, name="decoder")
