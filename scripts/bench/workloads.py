"""The bench's workloads: each app's model, loss, train step, batch size and synthetic data of its
shape, and the same model the Keras way for `model.fit`."""

import dataclasses
import functools
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from apps.mnist_mlp import model as mnist_model
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import model as regression_model
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import data as vae_data
from apps.vae_timeseries import model as vae_model
from apps.vae_timeseries import train as vae_train
from common.loop import steps, train_state
from scripts.bench.fit_models import vae_fit_model


@dataclasses.dataclass(frozen=True)
class Workload:
    """One app's training problem, as the bench needs it."""

    name: str
    create_model: Callable[[], keras.Model]
    compute_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (labels, outputs) -> mean loss
    # The same model and loss the Keras way, for model.fit: (model, loss for compile()).
    create_fit_model: Callable[[], tuple[keras.Model, Callable]]
    # The app's own TrainState and train step (its create_state and train_step): what repo_loop
    # runs, through common.loop.training_loop, exactly as the app does.
    create_state: Callable[[], tuple[train_state.TrainState, steps.TrainStep]]
    features: np.ndarray
    labels: np.ndarray
    batch_size: int
    flops_per_example: int  # Forward, weight gradients and input gradients past the first layer.
    steps_per_loop: int  # The app's default: what repo_loop runs.
    # Timed steps relative to --steps: the VAE's step costs about 40x the MLP's, and a quarter
    # of the steps still lasts several seconds per measurement.
    steps_scale: float = 1.0
    features_only: bool = False  # The app's step takes the features alone (an autoencoder).


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of a model and of the models nested in it, in order."""
    layers = []
    for layer in model.layers:
        layers.extend(all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return layers


def training_flops(model: keras.Model) -> int:
    """Flops per example of a train step of a Dense/Conv1D/Conv1DTranspose model: 2 per
    multiply-add, for the forward pass, the weight gradients, and the input gradients of every
    layer but the first (whose input needs none)."""
    multiply_adds = []
    for layer in all_layers(model):
        if not hasattr(layer, "kernel"):
            continue
        if isinstance(layer, keras.layers.Conv1DTranspose):
            positions = layer.input.shape[1]
        elif isinstance(layer, keras.layers.Conv1D):
            positions = layer.output.shape[1]
        else:
            positions = 1
        multiply_adds.append(int(np.prod(layer.kernel.shape)) * positions)
    return 2 * (3 * sum(multiply_adds) - multiply_adds[0])


def same_model_for_fit(create_model: Callable[[], keras.Model], keras_loss: Callable):
    """`create_fit_model` for an app whose model fits as it is: the model and a Keras loss."""
    return lambda: (create_model(), keras_loss())


def mean_loss(per_example_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]):
    """(labels, outputs) -> the batch's mean loss, from an app's per-example loss."""
    return lambda labels, outputs: tf.reduce_mean(per_example_loss(labels, outputs))


def mnist_workload(num_examples: int) -> Workload:
    """mnist_mlp on `num_examples` random images and labels."""
    rng = np.random.default_rng(0)
    return Workload(
        name="mnist_mlp",
        create_model=mnist_model.create_model,
        compute_loss=mean_loss(mnist_train.per_example_loss),
        create_fit_model=same_model_for_fit(
            mnist_model.create_model,
            lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ),
        create_state=lambda: (
            mnist_train.create_state(mnist_train.Config()),
            mnist_train.train_step,
        ),
        features=rng.random((num_examples, 784), dtype=np.float32),
        labels=rng.integers(0, 10, num_examples).astype(np.int32),
        batch_size=128,
        flops_per_example=training_flops(mnist_model.create_model()),
        steps_per_loop=mnist_train.Config().steps_per_loop,
    )


def regression_workload(num_examples: int) -> Workload:
    """regression_tape on `num_examples` random features and targets."""
    rng = np.random.default_rng(0)
    return Workload(
        name="regression_tape",
        create_model=regression_model.create_model,
        compute_loss=mean_loss(regression_train.per_example_loss),
        create_fit_model=same_model_for_fit(
            regression_model.create_model, keras.losses.MeanSquaredError
        ),
        create_state=lambda: (
            regression_train.create_state(regression_train.Config()),
            regression_train.train_step,
        ),
        features=rng.uniform(-1, 1, (num_examples, 10)).astype(np.float32),
        labels=rng.normal(size=(num_examples, 1)).astype(np.float32),
        batch_size=64,
        flops_per_example=training_flops(regression_model.create_model()),
        steps_per_loop=regression_train.Config().steps_per_loop,
    )


def vae_workload(num_examples: int) -> Workload:
    """vae_timeseries on windows of a synthetic series (at most 8,192 of them)."""
    config = vae_train.Config()
    # 8,192 windows of 64 x 32 floats are 64 MB; 60,000 would be half a gigabyte per copy.
    num_examples = min(num_examples, 8192)
    shape = (config.window_length, config.num_channels, config.latent_dim)

    def create_vae() -> keras.Model:
        """windows -> (mean, log_variance, reconstructions), as the app's two models compose."""
        encoder = vae_model.create_encoder(*shape)
        decoder = vae_model.create_decoder(*shape)
        windows = keras.Input(shape=shape[:2])
        mean, log_variance, z = encoder(windows)
        return keras.Model(windows, [mean, log_variance, decoder(z)])

    def compute_loss(windows, outputs):
        mean, log_variance, reconstructions = outputs
        return tf.reduce_mean(
            vae_train.reconstruction_loss(windows, reconstructions)
            + vae_train.kl_divergence(mean, log_variance)
        )

    def create_fit_model():
        return vae_fit_model(*shape)

    windows = vae_data.make_windows(
        vae_data.synthetic_series(
            # The series generator needs a thousand points or so to place its regime changes.
            config.num_channels,
            max(num_examples, 1024) + config.window_length,
            seed=0,
        ),
        config.window_length,
        stride=1,
    )[:num_examples]
    return Workload(
        name="vae_timeseries",
        create_model=create_vae,
        compute_loss=compute_loss,
        create_fit_model=create_fit_model,
        create_state=lambda: (
            vae_train.create_state(config, config.num_channels),
            functools.partial(vae_train.train_step, kl_warmup_steps=config.kl_warmup_steps),
        ),
        features=windows,
        labels=windows,  # An autoencoder's target is its input.
        batch_size=config.batch_size,
        flops_per_example=training_flops(create_vae()),
        steps_per_loop=config.steps_per_loop,
        steps_scale=0.25,
        features_only=True,
    )


WORKLOADS = {
    "mnist_mlp": mnist_workload,
    "regression_tape": regression_workload,
    "vae_timeseries": vae_workload,
}
