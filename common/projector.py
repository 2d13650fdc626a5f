"""Embeddings for TensorBoard's Projector tab, written from TensorFlow 2 with no session.

The Projector reads no summaries: it reads a run directory's `projector_config.pbtxt`, which
names a tensor file holding the embedding (points x dimensions), a metadata TSV (one row per point)
and, optionally, a sprite (one image of every point's thumbnail in a grid). This writes all four
into a run directory (`<logdir>/eval`, say) that TensorBoard already lists as a run, so the tab
finds them beside that run's event files.

Every file is named relative to the config, below the run directory (where the plugin reads
assets), so a logdir copied or moved elsewhere keeps its Projector. No checkpoint is written: the
plugin reads a tensor file by itself, and lists the run without any checkpoint when its config
names one.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from common import summaries

SUBDIRECTORY = "projector"  # Beside the config: the plugin reads assets only below it.
TENSOR_NAME = "embedding"  # The name the Projector lists the embedding by.
# The tensor file, in one of two formats (see `write_embeddings`), relative to the run directory.
BINARY_TENSOR_PATH = f"{SUBDIRECTORY}/embedding.bytes"
TEXT_TENSOR_PATH = f"{SUBDIRECTORY}/embedding.tsv"
# Enough significant digits for any float32 to read back as the same float32.
TEXT_FORMAT = "%.9g"
# What an older version of this module wrote instead of a tensor file: a tf.train.Checkpoint.
_OLD_CHECKPOINT_FILES = ("embedding.index", "embedding.data-*")


def write_embeddings(
    run_directory: str,
    embeddings: np.ndarray,
    metadata: Mapping[str, Sequence[object]],
    sprite: np.ndarray | None = None,
) -> None:
    """Writes `embeddings` with their metadata (and sprite) for the Projector, replacing any
    earlier ones of the run.

    The embedding goes to a tensor file below `<run_directory>/projector/`, named in
    `<run_directory>/projector_config.pbtxt` by a path relative to it: raw float32 bytes
    (`embedding.bytes`), or a TSV (`embedding.tsv`) when those bytes would read as UTF-8 text.

    Args:
        run_directory: a directory of the run's event files.
        embeddings: [points, dimensions] floats, stored as float32.
        metadata: `{column: one value per point}`, e.g. `{"label": labels}`.
        sprite: [points, height, width] or [points, height, width, 3] uint8 thumbnails.
    """
    directory = f"{run_directory}/{SUBDIRECTORY}"
    tf.io.gfile.makedirs(directory)
    tensor = np.ascontiguousarray(embeddings, np.float32)
    if tensor.ndim != 2:
        raise ValueError(f"embeddings must be [points, dimensions], got shape {tensor.shape}")
    tensor_path = _write_tensor(run_directory, tensor)

    columns = list(metadata)
    rows = zip(*(metadata[column] for column in columns), strict=True)
    lines = ["\t".join(str(value) for value in row) for row in rows]
    # A header row only with two or more columns: the plugin reads a single column without one.
    header = ["\t".join(columns)] if len(columns) > 1 else []
    with tf.io.gfile.GFile(f"{directory}/metadata.tsv", "w") as metadata_file:
        metadata_file.write("\n".join(header + lines) + "\n")

    config = projector.ProjectorConfig()
    embedding = config.embeddings.add(
        tensor_name=TENSOR_NAME,
        tensor_path=tensor_path,
        tensor_shape=list(tensor.shape),
        metadata_path=f"{SUBDIRECTORY}/metadata.tsv",
    )
    if sprite is not None:
        height, width = sprite.shape[1:3]
        with tf.io.gfile.GFile(f"{directory}/sprite.png", "wb") as sprite_file:
            sprite_file.write(summaries.encode_png(sprite_grid(sprite)))
        embedding.sprite.image_path = f"{SUBDIRECTORY}/sprite.png"
        embedding.sprite.single_image_dim.extend([width, height])
    projector.visualize_embeddings(run_directory, config)


def _write_tensor(run_directory: str, tensor: np.ndarray) -> str:
    """Writes float32 [points, dimensions] `tensor` as the plugin reads it back, and returns its
    path relative to `run_directory`.

    The plugin reads a tensor file as TSV text first and as float32 bytes (of the config's
    tensor_shape) only when that text fails to decode as UTF-8. Raw bytes are the fast write, but
    some embeddings' bytes decode (all zeros, or small positive values), and the plugin would then
    parse them as TSV and fail: those are written as a TSV.
    """
    data = tensor.tobytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        path, stale = BINARY_TENSOR_PATH, TEXT_TENSOR_PATH
        with tf.io.gfile.GFile(f"{run_directory}/{path}", "wb") as tensor_file:
            tensor_file.write(data)
    else:
        path, stale = TEXT_TENSOR_PATH, BINARY_TENSOR_PATH
        text = "".join(
            "\t".join(TEXT_FORMAT % value for value in row) + "\n" for row in tensor.tolist()
        )
        with tf.io.gfile.GFile(f"{run_directory}/{path}", "w") as tensor_file:
            tensor_file.write(text)
    # The other format's file, or an older version's checkpoint, of an earlier call: nothing names
    # them any more, and a reader of the folder should not take them for this embedding.
    leftovers = [f"{run_directory}/{stale}"] + [
        found
        for pattern in _OLD_CHECKPOINT_FILES
        for found in tf.io.gfile.glob(f"{run_directory}/{SUBDIRECTORY}/{pattern}")
    ]
    for leftover in leftovers:
        if tf.io.gfile.exists(leftover):
            tf.io.gfile.remove(leftover)
    return path


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
