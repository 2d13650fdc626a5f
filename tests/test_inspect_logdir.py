"""tools.inspect_logdir on logdirs written by the mistaken code itself, and on real app runs.

Each broken logdir is made the way users make it (docs/popular-advice.md's patterns and the
others the inspector names), so a test here shows that the inspector catches the real artifact,
not a hand-made imitation of it.
"""

import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import projector as tensorboard_projector

from apps.conditional_dropout import train as dropout_train
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import train as regression_train
from common import summaries
from common.summaries import graphs, projector
from tools import inspect_logdir
from tools.inspect_logdir import projector as inspect_projector

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


def drop_collected_graphs() -> None:
    """Stops graph collection and drops what it collected. (`_finish_trace` exports what was
    collected into a no-op writer, which needs a trace on.)"""
    tf.summary.trace_on(graph=True, profiler=False)
    graphs._finish_trace(writer=None)


@pytest.fixture(autouse=True)
def no_graph_collection_left_on():
    """The mistaken traces below leave graph collection on (trace_export does not turn it off):
    stop it after each test, or later traces, here and in other test files, collect leftovers.
    And before: a test that ran earlier in this process (any file's, in any order, as under
    pytest-xdist) may have left it on, and the first call below would be collected too."""
    drop_collected_graphs()
    yield
    drop_collected_graphs()


def codes(logdir: pathlib.Path) -> set[str]:
    """The codes of every mistake flagged in a logdir."""
    _, findings = inspect_logdir.inspect_logdir(str(logdir))
    return {finding.code for finding in findings}


def write_scalars(directory: pathlib.Path, points: list[tuple[str, int, float]]) -> None:
    """Writes (tag, step, value) scalars through one new writer, as a (re)started run does."""
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        for tag, step, value in points:
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def test_graph_traced_after_the_function_ran_is_flagged(tmp_path):
    @tf.function
    def step(x):
        return tf.reduce_sum(tf.matmul(x, x) + 1.0)

    batch = tf.ones((3, 3))
    step(batch)  # The first call traces it: the trace window below sees no tracing.
    writer = tf.summary.create_file_writer(str(tmp_path))
    tf.summary.trace_on(graph=True)
    step(batch)
    with writer.as_default():
        tf.summary.trace_export("train_step", step=0)
    writer.close()
    # What such a trace holds depends on the eager ops around it: nothing at all, or a stray
    # constant's one-op graph. Either is flagged, by the code that names it.
    found = codes(tmp_path)
    assert len(found) == 1 and found <= {"empty-op-graph", "op-graph-fragments"}, found


def test_traced_eager_call_is_flagged(tmp_path):
    layer = tf.keras.layers.Dense(4)
    writer = tf.summary.create_file_writer(str(tmp_path))
    tf.summary.trace_on(graph=True)
    tf.reduce_sum(layer(tf.ones((3, 3))) * 2.0)
    with writer.as_default():
        tf.summary.trace_export("model", step=0)
    writer.close()
    assert codes(tmp_path) == {"op-graph-fragments"}


def test_empty_run_level_graph_is_flagged(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tf.summary.graph(tf.Graph())  # A graph made but never filled: nothing to draw.
    writer.close()
    assert codes(tmp_path) == {"empty-op-graph"}


def test_graph_traced_inside_the_window_is_clean(tmp_path):
    @tf.function
    def step(x):
        return tf.reduce_sum(tf.matmul(x, x) + 1.0)

    batch = tf.ones((3, 3))  # Made before the window: an eager op in it would be a fragment.
    writer = tf.summary.create_file_writer(str(tmp_path))
    tf.summary.trace_on(graph=True)
    step(batch)  # Its first call, so it is traced here.
    with writer.as_default():
        tf.summary.trace_export("train_step", step=0)
    writer.close()
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    assert any(line.startswith("op graph train_step:") for line in reports[0].lines)


def test_restart_without_trimming_is_flagged(tmp_path):
    write_scalars(tmp_path, [("loss", step, 1.0 / step) for step in (1, 2, 3, 4)])
    # The restarted run resumed from a checkpoint at step 2 and wrote steps 3 and 4 again.
    write_scalars(tmp_path, [("loss", step, 1.0 / step) for step in (3, 4, 5)])
    assert codes(tmp_path) == {"duplicate-steps", "steps-go-back"}


def test_two_writers_on_one_run_are_flagged(tmp_path):
    first = tf.summary.create_file_writer(str(tmp_path))
    second = tf.summary.create_file_writer(str(tmp_path))
    for step in (1, 2, 3):
        for writer in (first, second):
            with writer.as_default():
                tf.summary.scalar("loss", 0.5, step=step)
    first.close()
    second.close()
    assert "duplicate-steps" in codes(tmp_path)


def test_non_finite_scalar_is_flagged(tmp_path):
    write_scalars(tmp_path, [("loss", 1, 0.5), ("loss", 2, math.nan), ("loss", 3, math.inf)])
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["non-finite"]
    assert "at step 2 (2 of 3 points)" in findings[0].detail


@pytest.mark.parametrize(
    "tags", [("train_loss", "val_loss"), ("train/loss", "eval/loss"), ("loss/train", "loss/test")]
)
def test_train_and_eval_tags_in_one_run_are_flagged(tmp_path, tags):
    write_scalars(tmp_path, [(tag, step, 1.0) for step in (1, 2) for tag in tags])
    assert codes(tmp_path) == {"mixed-train-eval"}


def test_scalar_written_repeatedly_at_step_zero_is_flagged(tmp_path):
    write_scalars(tmp_path, [("loss", 0, 1.0 / (index + 1)) for index in range(5)])
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["no-step"]
    assert "loss (5 points, all at step 0)" in findings[0].detail


def test_folder_without_event_files_is_flagged(tmp_path):
    assert codes(tmp_path) == {"no-event-files"}


def test_debugger_data_is_listed_with_where_tensorboard_reads_it(tmp_path):
    @tf.function
    def double(x):
        return x * 2.0

    tf.debugging.experimental.enable_dump_debug_info(str(tmp_path / "debug"), "NO_TENSOR")
    try:
        double(tf.ones(2))
    finally:
        tf.debugging.experimental.disable_dump_debug_info()
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert (reports, findings) == ([], [])  # Debugger data alone is something to show.
    text = inspect_logdir.format_report(str(tmp_path), reports, findings)
    assert (
        f"debugger: Debugger V2 data in debug (Debugger V2 reads only --logdir's own folder: "
        f"serve {tmp_path}/debug)" in text
    )


def write_projector_run(
    run: pathlib.Path, columns: int = 1, sprite: bool = True, embeddings: np.ndarray | None = None
) -> None:
    """A run (one scalar, so TensorBoard lists it) with 20 embeddings of 3 dimensions written by
    `common.summaries.projector`, with `columns` metadata columns and a sprite of 4x4 thumbnails."""
    write_scalars(run, [("loss", 1, 1.0)])
    points = 20
    metadata = {"label": [index % 10 for index in range(points)]}
    if columns > 1:
        metadata["index"] = list(range(points))
    thumbnails = np.full((points, 4, 4), 255, np.uint8) if sprite else None
    if embeddings is None:
        embeddings = np.random.default_rng(0).normal(size=(points, 3))
    projector.write_embeddings(str(run), embeddings, metadata, sprite=thumbnails)


def edit_projector_config(run: pathlib.Path, edit) -> None:
    """Rewrites a run's projector_config.pbtxt after `edit(config)`, as a user's own code would."""
    config_path = run / inspect_logdir.PROJECTOR_CONFIG
    config = text_format.Parse(config_path.read_text(), tensorboard_projector.ProjectorConfig())
    edit(config)
    tensorboard_projector.visualize_embeddings(str(run), config)


# The key a TF2 object-based checkpoint gives a `tf.train.Checkpoint(embedding=variable)`.
CHECKPOINT_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"


def write_checkpoint_projector_run(run: pathlib.Path) -> None:
    """`write_projector_run`, but with the embedding in a checkpoint that the config names by its
    absolute prefix, as a user's own code (and this repo's, before tensor files) writes it."""
    write_projector_run(run)
    embedding_path = run / "projector" / "embedding.bytes"
    embeddings = np.fromfile(embedding_path, np.float32).reshape(20, 3)
    embedding_path.unlink()
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(embeddings))
    prefix = checkpoint.write(str(run / "projector" / "embedding"))

    def name_the_checkpoint(config):
        config.model_checkpoint_path = str(pathlib.Path(prefix).resolve())
        embedding = config.embeddings[0]
        embedding.tensor_name = CHECKPOINT_TENSOR
        embedding.ClearField("tensor_path")
        embedding.ClearField("tensor_shape")

    edit_projector_config(run, name_the_checkpoint)


def projector_lines(reports: list[inspect_logdir.RunReport]) -> list[str]:
    return [line for report in reports for line in report.lines if line.startswith("projector")]


@pytest.mark.parametrize("columns", [1, 2])
def test_projector_embeddings_are_listed(tmp_path, columns):
    write_projector_run(tmp_path / "eval", columns=columns)
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    metadata = "label, index" if columns > 1 else "label (one column, no header)"
    assert projector_lines(reports) == [
        "projector embedding: 20 x 3 (points x dimensions); "
        f"metadata {metadata}: 20 rows; sprite projector/sprite.png (4x4 thumbnails)"
    ]


def test_projector_embedding_written_as_text_is_listed(tmp_path):
    # All zeros: their float32 bytes decode as UTF-8, so write_embeddings writes a TSV instead.
    write_projector_run(tmp_path / "eval", embeddings=np.zeros((20, 3)))
    assert (tmp_path / "eval" / "projector" / "embedding.tsv").exists()
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    assert projector_lines(reports)[0].startswith(
        "projector embedding: 20 x 3 (points x dimensions)"
    )


def test_projector_of_a_moved_logdir_is_kept(tmp_path):
    # Every file is named relative to the run's folder: a logdir copied or moved elsewhere
    # (downloaded from the training machine, say) keeps its Projector.
    write_projector_run(tmp_path / "old" / "eval")
    shutil.move(tmp_path / "old", tmp_path / "new")
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path / "new"))
    assert findings == []
    assert projector_lines(reports) == [
        "projector embedding: 20 x 3 (points x dimensions); "
        "metadata label (one column, no header): 20 rows; sprite projector/sprite.png "
        "(4x4 thumbnails)"
    ]


def test_projector_tensor_file_is_listed_without_tensorflow(tmp_path, monkeypatch):
    # TensorBoard without TensorFlow reads tensor files through its own stand-in, but no
    # checkpoint: the embedding common.summaries.projector writes is still shown.
    write_projector_run(tmp_path / "eval")
    write_checkpoint_projector_run(tmp_path / "checkpointed")
    monkeypatch.setattr(inspect_projector, "_import_tensorflow", lambda: None)
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    lines = {report.name: report.lines for report in reports}
    assert lines["eval"][-1].startswith("projector embedding: 20 x 3 (points x dimensions)")
    assert lines["checkpointed"][-1] == (
        "projector: projector_config.pbtxt names a checkpoint or no tensor file, unread: "
        "TensorBoard reads checkpoints only through TensorFlow, which is not installed"
    )


def test_projector_missing_tensor_file_is_flagged(tmp_path):
    write_projector_run(tmp_path / "eval")
    (tmp_path / "eval" / "projector" / "embedding.bytes").unlink()
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-missing-checkpoint"]
    assert findings[0].detail == "tensor file projector/embedding.bytes of embedding not found"
    assert projector_lines(reports) == []
    text = inspect_logdir.format_report(str(tmp_path), reports, findings)
    assert "fix: write the embedding as a tensor file below the run's folder" in text


def test_projector_binary_tensor_file_of_another_shape_is_flagged(tmp_path):
    # Float32 bytes carry no shape: the plugin cuts them by the config's tensor_shape.
    write_projector_run(tmp_path / "eval")
    edit_projector_config(
        tmp_path / "eval", lambda config: config.embeddings[0].tensor_shape.__setitem__(0, 21)
    )
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-missing-checkpoint"]
    assert findings[0].detail == (
        "tensor file projector/embedding.bytes of embedding is not UTF-8, so the plugin reads it "
        "as float32 bytes of its tensor_shape ([21, 3]): its 240 bytes do not fit"
    )


def test_projector_checkpoint_of_a_moved_logdir_is_flagged(tmp_path):
    # A config that names a checkpoint names it by an absolute path: a logdir moved elsewhere
    # still points at the old place.
    write_checkpoint_projector_run(tmp_path / "old" / "eval")
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path / "old"))
    assert findings == []
    assert projector_lines(reports)[0].startswith(f"projector {CHECKPOINT_TENSOR}: 20 x 3 ")
    shutil.move(tmp_path / "old", tmp_path / "new")
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path / "new"))
    assert [finding.code for finding in findings] == ["projector-missing-checkpoint"]
    assert f"checkpoint {tmp_path}/old/eval/projector/embedding not found" in findings[0].detail


def test_projector_relative_checkpoint_path_is_flagged(tmp_path):
    # A relative model_checkpoint_path is read from TensorBoard's working directory, not from the
    # run's folder as the tensor, metadata and sprite paths are.
    write_checkpoint_projector_run(tmp_path / "eval")
    edit_projector_config(
        tmp_path / "eval",
        lambda config: setattr(config, "model_checkpoint_path", "projector/embedding"),
    )
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-missing-checkpoint"]
    assert "it is there relative to the run's folder" in findings[0].detail


def test_projector_tensor_named_as_the_variable_is_flagged(tmp_path):
    # A TF2 object-based checkpoint keys the variable by its path in the object graph, not by the
    # variable's own name as TF1's Saver did: "embedding" is not in it.
    write_checkpoint_projector_run(tmp_path / "eval")
    edit_projector_config(
        tmp_path / "eval", lambda config: setattr(config.embeddings[0], "tensor_name", "embedding")
    )
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-missing-checkpoint"]
    assert "tensor embedding is not in checkpoint" in findings[0].detail
    assert f"(its 2-D tensors: {CHECKPOINT_TENSOR})" in findings[0].detail
    # The plugin still shows the checkpoint's 2-D tensor, with no metadata: so is it listed.
    assert projector_lines(reports) == [
        f"projector {CHECKPOINT_TENSOR}: 20 x 3 (points x dimensions); no metadata; no sprite"
    ]


def test_projector_single_column_metadata_with_a_header_is_flagged(tmp_path):
    write_projector_run(tmp_path / "eval")
    metadata_path = tmp_path / "eval" / "projector" / "metadata.tsv"
    metadata_path.write_text("label\n" + metadata_path.read_text())  # The classic header row.
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-metadata-mismatch"]
    assert findings[0].detail == (
        "metadata projector/metadata.tsv has 21 rows for the 20 points of embedding (a header "
        "row on a single column is read as a point)"
    )
    text = inspect_logdir.format_report(str(tmp_path), reports, findings)
    assert "fix: write one TSV row per embedding point" in text


def test_projector_multi_column_metadata_without_a_header_is_flagged(tmp_path):
    write_projector_run(tmp_path / "eval", columns=2)
    metadata_path = tmp_path / "eval" / "projector" / "metadata.tsv"
    metadata_path.write_text(metadata_path.read_text().split("\n", 1)[1])  # Header dropped.
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-metadata-mismatch"]
    assert "has 19 rows for the 20 points" in findings[0].detail
    assert "with no header row, its first row is read as the column names" in findings[0].detail


def test_projector_missing_metadata_is_flagged(tmp_path):
    write_projector_run(tmp_path / "eval")
    (tmp_path / "eval" / "projector" / "metadata.tsv").unlink()
    _, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-missing-metadata"]


def test_projector_sprite_named_relative_to_its_own_folder_is_flagged(tmp_path):
    # Asset paths are read relative to the config's folder (the run's), not the assets' folder.
    write_projector_run(tmp_path / "eval")
    edit_projector_config(
        tmp_path / "eval",
        lambda config: setattr(config.embeddings[0].sprite, "image_path", "sprite.png"),
    )
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in findings] == ["projector-missing-sprite"]
    assert findings[0].detail == "sprite sprite.png of embedding not found"
    assert projector_lines(reports)[0].endswith("; sprite sprite.png missing")


def test_tiny_regression_run_is_clean(tmp_path):
    config = regression_train.Config(
        num_steps=4, batch_size=8, steps_per_loop=2, eval_every_steps=2
    )
    regression_train.train_and_evaluate(config, str(tmp_path))
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    assert [report.name for report in reports] == [".", "eval", "train"]
    text = inspect_logdir.format_report(str(tmp_path), reports, findings)
    assert "op graph graph/train_step:" in text
    assert "conceptual graph keras/regression_tape: 4 nodes" in text
    assert "scalars (3): loss, mae, rmse: steps 2..4, 2 points each" in text
    assert text.endswith("no mistakes found")


def test_tiny_mnist_run_is_clean(tmp_path):
    config = mnist_train.Config(
        num_steps=4, batch_size=8, steps_per_loop=2, dataset="synthetic", profile=True
    )
    mnist_train.train_and_evaluate(config, str(tmp_path))
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    train_lines = next(report.lines for report in reports if report.name == "train")
    # Four weight and four gradient histograms.
    assert any(line.startswith("histograms (8):") for line in train_lines)
    assert any(line.startswith("text (3): config, dataset") for line in train_lines)
    assert "profile: 1 session(s) in plugins/profile" in train_lines
    eval_lines = next(report.lines for report in reports if report.name == "eval")
    assert any(
        line.startswith("projector embedding: 1000 x ")
        and line.endswith("sprite projector/sprite.png (28x28 thumbnails)")
        for line in eval_lines
    ), eval_lines
    root_lines = next(report.lines for report in reports if report.name == ".")
    assert any(line.startswith("hparams (") for line in root_lines)


def test_tiny_conditional_dropout_run_is_clean(tmp_path):
    # Two op graphs (the train and the inference step), each whole. vae_timeseries is left to its
    # own tests: its tiny run alone would take a third of this file's time.
    config = dropout_train.Config(num_steps=4, batch_size=8, steps_per_loop=2, eval_every_steps=2)
    dropout_train.train_and_evaluate(config, str(tmp_path))
    reports, findings = inspect_logdir.inspect_logdir(str(tmp_path))
    assert findings == []
    train_lines = next(report.lines for report in reports if report.name == "train")
    assert sum(line.startswith("op graph graph/") for line in train_lines) == 2


def test_command_line_exit_codes(tmp_path, capsys):
    def run(path: pathlib.Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tools.inspect_logdir", str(path)],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=False,
        )

    missing = run(tmp_path / "missing")
    assert (missing.returncode, missing.stderr) == (
        2,
        f"error: {tmp_path}/missing does not exist\n",
    )

    write_scalars(tmp_path / "stuck", [("loss", 0, 1.0), ("loss", 0, 0.5)])
    flagged = run(tmp_path / "stuck")
    assert flagged.returncode == 1, flagged.stderr
    assert "[no-step] run .:" in flagged.stdout
    assert "fix: pass step=" in flagged.stdout

    # Exit 0 in-process: one more TensorFlow start in a subprocess would add seconds, not coverage.
    write_scalars(tmp_path / "clean", [("loss", 1, 1.0), ("loss", 2, 0.5)])
    assert inspect_logdir.main(["inspect_logdir", str(tmp_path / "clean")]) == 0
    assert capsys.readouterr().out.endswith("no mistakes found\n")


def two_models_with_layers_of_one_name() -> list:
    """A GAN's two models, each a `dense` layer: their variables share the paths dense/kernel and
    dense/bias."""
    models = []
    for name in ("generator", "discriminator"):
        inputs = tf.keras.Input((2,))
        models.append(
            tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="dense")(inputs), name=name)
        )
    return models


def test_histograms_of_two_models_tagged_by_path_are_flagged_as_written_twice(tmp_path):
    """The popular per-variable loop, `tf.summary.histogram(variable.path, variable)`, over two
    models whose layers share names: one tag, two histograms at every step; the dashboard shows
    one of them. Not a restart: no `duplicate-steps`, and the fix says how to tell them apart."""
    variables = [v for model in two_models_with_layers_of_one_name() for v in model.variables]
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step in (1, 2):
            for variable in variables:
                tf.summary.histogram(variable.path, variable, step=step)
    writer.close()
    _, found = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in found] == ["tag-written-twice"]
    assert found[0].detail == (
        "written twice at one step: histograms dense/bias (step 1), "
        "histograms dense/kernel (step 1)"
    )
    assert "models=" in found[0].fix


def test_the_loops_histograms_of_two_such_models_are_clean(tmp_path):
    models = two_models_with_layers_of_one_name()
    variables = [v for model in models for v in model.variables]
    writer = tf.summary.create_file_writer(str(tmp_path))
    for step in (1, 2):
        summaries.write_variable_histograms(writer, variables, step, models=models)
    writer.close()
    reports, found = inspect_logdir.inspect_logdir(str(tmp_path))
    assert found == []
    assert reports[0].lines == [
        "histograms (4): weights/discriminator/dense/bias, weights/discriminator/dense/kernel, "
        "weights/generator/dense/bias, weights/generator/dense/kernel: steps 1..2, 2 points each"
    ]


def write_conceptual_graph(directory: pathlib.Path, config: str, tag: str) -> None:
    """A `graph_keras_model` summary of `config`, as Keras 2's TensorBoard callback wrote it."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = inspect_logdir.KERAS_GRAPH_PLUGIN
    metadata.plugin_data.content = b"1"
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        tf.summary.write(tag, tf.constant(config), step=0, metadata=metadata)
    writer.close()


def test_a_conceptual_graph_tensorboard_cannot_build_is_flagged_not_a_crash(tmp_path, capsys):
    """A model with named outputs, its `to_json()` written as it is: keras_util fails on it
    (KeyError: 0), as the Graphs dashboard's server does (HTTP 500)."""
    inputs = {name: tf.keras.Input((2,), name=name) for name in ("left", "right")}
    joined = tf.keras.layers.Concatenate(name="join")([inputs["left"], inputs["right"]])
    outputs = {"score": tf.keras.layers.Dense(1, name="score")(joined)}
    model = tf.keras.Model(inputs, outputs, name="named")
    write_conceptual_graph(tmp_path, model.to_json(), "keras/named")
    assert inspect_logdir.main(["inspect_logdir", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "  conceptual graph keras/named: unreadable\n" in printed
    assert (
        "[unreadable-graph] run .: conceptual graph keras/named: TensorBoard cannot read it "
        "(KeyError: 0)"
    ) in printed


def test_an_op_graph_tensorboard_cannot_read_is_flagged_not_a_crash(tmp_path):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = inspect_logdir.OP_GRAPH_PLUGIN
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():  # Not a RunMetadata: a few bytes of something else.
        tf.summary.write("graph/train_step", tf.constant(b"\xff\xfe"), step=0, metadata=metadata)
    writer.close()
    _, found = inspect_logdir.inspect_logdir(str(tmp_path))
    assert [finding.code for finding in found] == ["unreadable-graph"]
    assert found[0].detail.startswith("op graph graph/train_step: TensorBoard cannot read it (")


def test_a_conceptual_graph_of_no_layers_is_flagged(tmp_path):
    """A subclassed model's `to_json()`: Keras lists no layers (nor, here, the model's name, on
    which keras_util fails): flagged for what it is, not as unreadable."""

    class Subclassed(tf.keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.dense = tf.keras.layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model(tf.zeros([1, 2]))
    write_conceptual_graph(tmp_path, model.to_json(), "keras/subclassed")
    reports, found = inspect_logdir.inspect_logdir(str(tmp_path))
    assert reports[0].lines == ["conceptual graph keras/subclassed: no layers"]
    assert [(finding.code, finding.detail) for finding in found] == [
        (
            "conceptual-graph-no-layers",
            "conceptual graph keras/subclassed has no layers: the model Subclassed alone "
            "(a subclassed model's config lists none)",
        )
    ]
    assert "graph/train_step" in found[0].fix
