"""Synthetic regression data from a known nonlinear function of 10 inputs, plus Gaussian noise.

Because the function and the noise are known, so is the best possible error: a perfect model's RMSE
equals `noise_std`. The trivial predictor (always the training mean) sets the other end of the
scale. Both are reported with the data, so a user can read the eval curves against them.
"""

import dataclasses

import numpy as np
import tensorflow as tf

NUM_FEATURES = 10
NUM_TRAIN_EXAMPLES = 8192
NUM_TEST_EXAMPLES = 2048


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Unbatched (features float32 [10], target float32 [1]) pairs, and reference errors."""

    train: tf.data.Dataset
    eval: tf.data.Dataset  # Held out: the test split where the source has one.
    description: str
    noise_std: float
    trivial_rmse: float  # RMSE on the test split of always predicting the training mean.


def target_function(features: np.ndarray) -> np.ndarray:
    """The function to learn: smooth, nonlinear, with interactions; all 10 inputs matter.

    Args:
        features: [num_examples, 10] values in [-1, 1].

    Returns:
        [num_examples] targets, before noise.
    """
    x = features
    return (
        np.sin(np.pi * x[:, 0])
        + 0.5 * x[:, 1] ** 2
        - x[:, 2] * x[:, 3]
        + np.exp(0.5 * x[:, 4])
        + 0.5 * np.abs(x[:, 5])
        + 0.3 * np.cos(2.0 * x[:, 6]) * x[:, 7]
        + 0.2 * (x[:, 8] + x[:, 9])
    )


def make_datasets(
    seed: int,
    noise_std: float = 0.1,
    num_train: int = NUM_TRAIN_EXAMPLES,
    num_test: int = NUM_TEST_EXAMPLES,
) -> Datasets:
    """Draws inputs uniformly from [-1, 1]^10 and targets as `target_function + noise`."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(-1.0, 1.0, size=(num_train + num_test, NUM_FEATURES))
    targets = target_function(features) + rng.normal(0.0, noise_std, size=num_train + num_test)
    features = features.astype(np.float32)
    targets = targets.astype(np.float32)[:, None]
    train_targets, test_targets = targets[:num_train], targets[num_train:]
    trivial_rmse = float(np.sqrt(np.mean((test_targets - train_targets.mean()) ** 2)))
    return Datasets(
        train=tf.data.Dataset.from_tensor_slices((features[:num_train], train_targets)),
        eval=tf.data.Dataset.from_tensor_slices((features[num_train:], test_targets)),
        description=(
            f"synthetic regression, {NUM_FEATURES} inputs ({num_train} train, {num_test} test); "
            f"noise std {noise_std:g} (a perfect model's RMSE); "
            f"predicting the mean gives RMSE {trivial_rmse:.4f}"
        ),
        noise_std=noise_std,
        trivial_rmse=trivial_rmse,
    )
