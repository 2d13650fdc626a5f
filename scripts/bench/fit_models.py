"""The models `model.fit` gets where an app's own does not fit it: the VAE, its KL term an
`add_loss`. Used by the bench's fit rows and by `scripts/fit_baseline.py`, which it does not
import."""

from collections.abc import Callable

import keras
import tensorflow as tf

from apps.vae_timeseries import model as vae_model
from apps.vae_timeseries import train as vae_train


class KLDivergenceLoss(keras.layers.Layer):
    """Adds the VAE's KL term to the model's losses: how `model.fit` learns a VAE without a
    custom train step. Passes the code `z` through: a layer whose output no other layer uses is
    not part of a Functional model, and its loss would be silently dropped."""

    def call(self, inputs):
        mean, log_variance, z = inputs
        self.add_loss(tf.reduce_mean(vae_train.kl_divergence(mean, log_variance)))
        return z


def vae_fit_model(
    window_length: int, num_channels: int, latent_dim: int
) -> tuple[keras.Model, Callable]:
    """The app's encoder and decoder as one model for `fit`, its KL term an `add_loss`, and the
    reconstruction loss for `compile`."""
    encoder = vae_model.create_encoder(window_length, num_channels, latent_dim)
    decoder = vae_model.create_decoder(window_length, num_channels, latent_dim)
    windows = keras.Input(shape=(window_length, num_channels))
    mean, log_variance, z = encoder(windows)
    z = KLDivergenceLoss()([mean, log_variance, z])
    return keras.Model(windows, decoder(z)), vae_train.reconstruction_loss
