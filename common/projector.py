"""Embeddings for TensorBoard's Projector tab, written from TensorFlow 2 with no session.

The Projector reads no summaries: it reads a run directory's `projector_config.pbtxt`, which
names a checkpoint holding the embedding as a 2-D variable, a metadata TSV (one row per point)
and, optionally, a sprite (one image of every point's thumbnail in a grid). This writes all four
into a run directory (`<logdir>/eval`, say) that TensorBoard already lists as a run, so the tab
finds them beside that run's event files.
"""

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from common import summaries

SUBDIRECTORY = "projector"  # Beside the config: the plugin reads assets only below it.


def write_embeddings(
    run_directory: str,
    embeddings: np.ndarray,
    metadata: Mapping[str, Sequence[object]],
    sprite: np.ndarray | None = None,
) -> None:
    """Writes `embeddings` with their metadata (and sprite) for the Projector, replacing any
    earlier ones of the run.

    Args:
        run_directory: a directory of the run's event files.
        embeddings: [points, dimensions] floats.
        metadata: `{column: one value per point}`, e.g. `{"label": labels}`.
        sprite: [points, height, width] or [points, height, width, 3] uint8 thumbnails.
    """
    directory = f"{run_directory}/{SUBDIRECTORY}"
    tf.io.gfile.makedirs(directory)
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(np.asarray(embeddings, np.float32)))
    checkpoint_path = checkpoint.write(f"{directory}/embedding")
    # The plugin opens the checkpoint by this path: absolute, so any server's working directory
    # finds it (a URL such as gs://... is already).
    if "://" not in checkpoint_path:
        checkpoint_path = os.path.abspath(checkpoint_path)

    columns = list(metadata)
    rows = zip(*(metadata[column] for column in columns), strict=True)
    lines = ["\t".join(str(value) for value in row) for row in rows]
    # A header row only with two or more columns: the plugin reads a single column without one.
    header = ["\t".join(columns)] if len(columns) > 1 else []
    with tf.io.gfile.GFile(f"{directory}/metadata.tsv", "w") as metadata_file:
        metadata_file.write("\n".join(header + lines) + "\n")

    config = projector.ProjectorConfig(model_checkpoint_path=checkpoint_path)
    embedding = config.embeddings.add(
        tensor_name="embedding/.ATTRIBUTES/VARIABLE_VALUE",
        metadata_path=f"{SUBDIRECTORY}/metadata.tsv",
    )
    if sprite is not None:
        height, width = sprite.shape[1:3]
        with tf.io.gfile.GFile(f"{directory}/sprite.png", "wb") as sprite_file:
            sprite_file.write(summaries.encode_png(sprite_grid(sprite)))
        embedding.sprite.image_path = f"{SUBDIRECTORY}/sprite.png"
        embedding.sprite.single_image_dim.extend([width, height])
    projector.visualize_embeddings(run_directory, config)


def sprite_grid(thumbnails: np.ndarray) -> np.ndarray:
    """[points, height, width(, 3)] uint8 -> one square grid image [rows * height, columns *
    width, channels], row by row in the points' order, as the Projector expects."""
    if thumbnails.ndim == 3:
        thumbnails = thumbnails[..., None]
    count, height, width, channels = thumbnails.shape
    side = int(np.ceil(np.sqrt(count)))
    grid = np.zeros((side * side, height, width, channels), np.uint8)
    grid[:count] = thumbnails
    grid = grid.reshape(side, side, height, width, channels).transpose(0, 2, 1, 3, 4)
    return grid.reshape(side * height, side * width, channels)
