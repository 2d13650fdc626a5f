"""common.summaries.projector: an embedding the Projector plugin reads from a tensor file named
relative to its run, checked against TensorBoard's own plugin code (not a reimplementation of
it)."""

import os
import pathlib
import shutil

import numpy as np
import pytest
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector import projector_plugin
from werkzeug import test as werkzeug_test

from common.summaries import projector
from tests import tensorboard_events as events

POINTS, DIMENSIONS = 20, 3


class ProjectorRoutes:
    """The Projector plugin's routes as TensorBoard serves them, over `logdir` as its one run "."
    (the plugin reads the logdir itself as a run when it lists no others)."""

    def __init__(self, logdir: pathlib.Path) -> None:
        plugin = projector_plugin.ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir)))
        self.apps = plugin.get_plugin_apps()

    def get(self, route: str, **query: str) -> werkzeug_test.TestResponse:
        return werkzeug_test.Client(self.apps[route]).get(route, query_string=query)


def write_run(run: pathlib.Path, embeddings: np.ndarray) -> None:
    labels = [index % 10 for index in range(len(embeddings))]
    thumbnails = np.full((len(embeddings), 4, 4), 255, np.uint8)
    projector.write_embeddings(str(run), embeddings, {"label": labels}, sprite=thumbnails)


def served_tensor(logdir: pathlib.Path) -> np.ndarray:
    """The tensor the plugin serves for the embedding of run "." (float32 bytes, as the frontend
    fetches them), checked to be listed with its shape first."""
    routes = ProjectorRoutes(logdir)
    assert routes.get("/runs").json == ["."]
    (embedding,) = routes.get("/info", run=".").json["embeddings"]
    response = routes.get("/tensor", run=".", name=embedding["tensorName"])
    assert response.status_code == 200, response.text
    return np.frombuffer(response.data, np.float32).reshape(
        [int(size) for size in embedding["tensorShape"]]
    )


# Binary: random floats' bytes are not UTF-8. Text: zeros, and values whose every byte is ASCII
# (0x3E2A2A2B is 0.16617... which needs 9 significant digits to read back as the same float32).
BINARY = np.random.default_rng(0).normal(size=(POINTS, DIMENSIONS)).astype(np.float32)
ZEROS = np.zeros((POINTS, DIMENSIONS), np.float32)
ASCII_BYTES = np.full((POINTS, DIMENSIONS), 0x3E2A2A2B, np.uint32).view(np.float32)


@pytest.mark.parametrize(
    ("embeddings", "tensor_file"),
    [
        (BINARY, "embedding.bytes"),
        (ZEROS, "embedding.tsv"),
        (ASCII_BYTES, "embedding.tsv"),
    ],
    ids=["binary", "zeros-as-text", "ascii-bytes-as-text"],
)
def test_the_embedding_is_a_tensor_file_the_plugin_reads_back_exactly(
    tmp_path, embeddings, tensor_file
):
    write_run(tmp_path, embeddings)
    # No checkpoint anywhere: the config names only files below the run, relative to it.
    assert sorted(path.name for path in (tmp_path / "projector").iterdir()) == sorted(
        [tensor_file, "metadata.tsv", "sprite.png"]
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "projector",
        "projector_config.pbtxt",
    ]
    config_text = (tmp_path / "projector_config.pbtxt").read_text()
    assert "model_checkpoint_path" not in config_text

    embedding, tensor, labels = events.projector_embedding(tmp_path)
    assert embedding.tensor_name == "embedding"
    assert embedding.tensor_path == f"projector/{tensor_file}"
    assert list(embedding.tensor_shape) == [POINTS, DIMENSIONS]
    assert tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor, embeddings)
    assert len(labels) == POINTS
    # And through the plugin's routes: listed with no checkpoint, and served bit for bit.
    assert served_tensor(tmp_path).tobytes() == embeddings.tobytes()


def test_bytes_that_decode_as_utf8_would_not_read_back(tmp_path):
    # Why the text fallback: the plugin tries TSV first and takes bytes only on a
    # UnicodeDecodeError, so zeros written as bytes are parsed as text, and fail.
    for embeddings in (ZEROS, ASCII_BYTES):
        embeddings.tobytes().decode("utf-8")  # Decodes: no fallback to bytes.
        path = tmp_path / "raw.bytes"
        path.write_bytes(embeddings.tobytes())
        with pytest.raises(ValueError):
            projector_plugin._read_tensor_tsv_file(str(path))
    with pytest.raises(UnicodeDecodeError):
        BINARY.tobytes().decode("utf-8")


def test_a_copied_run_keeps_its_projector(tmp_path):
    write_run(tmp_path / "old", BINARY)
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    shutil.rmtree(tmp_path / "old")
    _, tensor, _ = events.projector_embedding(tmp_path / "new")
    np.testing.assert_array_equal(tensor, BINARY)
    assert served_tensor(tmp_path / "new").tobytes() == BINARY.tobytes()


def test_writing_again_names_the_new_format_and_removes_nothing(tmp_path):
    # A later eval may write zeros after a first write of floats, or the reverse: the config
    # names the file just written; the other stays (a run removes no file it cannot prove it
    # wrote), named by nothing.
    write_run(tmp_path, BINARY)
    write_run(tmp_path, ZEROS)
    assert (tmp_path / "projector" / "embedding.bytes").exists()
    np.testing.assert_array_equal(events.projector_embedding(tmp_path)[1], ZEROS)
    write_run(tmp_path, BINARY)
    np.testing.assert_array_equal(events.projector_embedding(tmp_path)[1], BINARY)
    assert served_tensor(tmp_path).tobytes() == BINARY.tobytes()


def test_a_sprite_written_once_is_named_by_every_later_write(tmp_path):
    thumbnails = np.full((len(BINARY), 4, 6), 200, np.uint8)
    sprite = projector.write_sprite(str(tmp_path), thumbnails)
    written = (tmp_path / "projector" / "sprite.png").read_bytes()
    projector.write_embeddings(str(tmp_path), BINARY, {"label": range(len(BINARY))}, sprite)
    embedding, _, _ = events.projector_embedding(tmp_path)
    assert embedding.sprite.image_path == "projector/sprite.png"
    assert list(embedding.sprite.single_image_dim) == [6, 4]  # Width, then height.
    assert (tmp_path / "projector" / "sprite.png").read_bytes() == written  # Not rewritten.


def test_an_embedding_writer_writes_the_points_files_once_and_each_new_tensor(tmp_path):
    labels = [index % 10 for index in range(POINTS)]
    thumbnails = np.full((POINTS, 4, 4), 255, np.uint8)
    writer = projector.EmbeddingWriter(str(tmp_path), {"label": labels}, thumbnails)
    writer.write(BINARY)
    # Stamped in the past: a later write that rewrote them would stamp them now.
    unchanged = [tmp_path / "projector" / name for name in ("metadata.tsv", "sprite.png")]
    for path in unchanged:
        os.utime(path, ns=(0, 0))
    # Bytes, then text, then bytes again: the config names each format as it is written.
    for embeddings in (ZEROS, BINARY * 2):
        writer.write(embeddings)
        embedding, tensor, metadata = events.projector_embedding(tmp_path)
        np.testing.assert_array_equal(tensor, embeddings)
        assert served_tensor(tmp_path).tobytes() == embeddings.tobytes()
        assert metadata == [str(label) for label in labels]
        assert embedding.sprite.image_path == "projector/sprite.png"
    assert [path.stat().st_mtime_ns for path in unchanged] == [0, 0]


def test_embeddings_that_are_not_points_by_dimensions_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\[points, dimensions\]"):
        projector.write_embeddings(str(tmp_path), np.zeros(5), {"label": list(range(5))})


def test_sprite_grid_puts_thumbnails_row_by_row():
    thumbnails = np.arange(3, dtype=np.uint8)[:, None, None] * np.ones((3, 2, 2), np.uint8)
    grid = projector.sprite_grid(thumbnails)
    assert grid.shape == (4, 4, 1)
    assert grid[::2, ::2, 0].tolist() == [[0, 1], [2, 0]]
