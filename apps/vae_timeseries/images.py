"""What the VAE writes at each eval: the eval windows' latent code as histograms, and a few windows
over their reconstructions as heatmap images, for TensorBoard's Histograms and Images tabs; and the
windows' latent means for the Projector."""

import keras
import numpy as np
import tensorflow as tf

from common import summaries
from common.summaries import projector

NUM_IMAGES = 3
IMAGE_SCALE = 4  # Each value becomes a 4x4 pixel block, so 32 channels read clearly.


def heatmap_rgb(values: np.ndarray, limit: float = 3.0) -> np.ndarray:
    """[rows, columns] standardized values -> uint8 RGB: blue (-limit), white (0), red (+limit)."""
    scaled = np.clip(values / limit, -1.0, 1.0)[..., None]
    white = np.ones(3)
    red, blue = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    rgb = np.where(scaled > 0, white + scaled * (red - white), white - scaled * (blue - white))
    return (rgb * 255).round().astype(np.uint8)


def reconstruction_images(windows: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """[n, time, channels] pairs -> [n, height, width, 3] uint8: each window above its
    reconstruction, channels as rows and time as columns, a grey line between them."""
    images = []
    for window, reconstruction in zip(windows, reconstructions, strict=True):
        separator = np.full((1, window.shape[0], 3), 128, np.uint8)
        image = np.concatenate(
            [heatmap_rgb(window.T), separator, heatmap_rgb(reconstruction.T)], axis=0
        )
        images.append(image.repeat(IMAGE_SCALE, axis=0).repeat(IMAGE_SCALE, axis=1))
    return np.stack(images)


def write_latent_summaries(
    means: tf.Tensor,
    log_variances: tf.Tensor,
    decoder: keras.Model,
    eval_windows: tf.Tensor,
    writers: summaries.SummaryWriters,
    step: int,
) -> None:
    """Histograms of the eval windows' latent code (`means`, `log_variances`: the encoder's
    deterministic part, one row per window of `eval_windows`), and a few windows over their
    reconstructions."""
    latent = {"latent/mean": means, "latent/log_variance": log_variances}
    summaries.write_histograms(writers.train, latent, step)
    # Reconstruct from the latent mean: the decoder's best guess, without sampling noise.
    windows = eval_windows[:NUM_IMAGES]
    reconstructions = decoder(means[:NUM_IMAGES], training=False)
    pictures = reconstruction_images(np.asarray(windows), np.asarray(reconstructions))
    with writers.eval.as_default(step=step):
        summaries.write_image("reconstructions", pictures)


def latent_embedding_writer(
    eval_windows: tf.Tensor, run_directory: str
) -> projector.EmbeddingWriter:
    """Writes the eval windows' latent means for the Projector at each call of its `write`, each
    with its index in the eval series (neighbours in time overlap, so a smooth code draws them as
    a path) and its RMS: the same windows at every eval, so their metadata is written once."""
    windows = np.asarray(eval_windows)
    metadata = {
        "window": range(len(windows)),
        "rms": np.sqrt(np.mean(np.square(windows), axis=(1, 2))).round(3),
    }
    return projector.EmbeddingWriter(run_directory, metadata)
