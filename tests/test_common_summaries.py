"""common.summaries: writers in train/ and eval/, and a logdir that fails loudly and safely."""

import re

import pytest
import tensorflow as tf
from tensorboard.util import tensor_util

from common import summaries
from tests import tensorboard_events as events


def test_writers_write_train_and_eval_runs_that_tensorboard_reads(tmp_path):
    writers = summaries.create_writers(str(tmp_path / "run"))
    summaries.write_scalars(writers.train, {"loss": 0.5, "accuracy": 0.75}, step=3)
    summaries.write_scalars(writers.eval, {"loss": 0.25}, step=3)
    writers.close()

    train = events.load_run(tmp_path / "run" / "train")
    eval_run = events.load_run(tmp_path / "run" / "eval")
    assert events.scalars(train, "loss") == [(3, 0.5)]
    assert events.scalars(train, "accuracy") == [(3, 0.75)]
    assert events.scalars(eval_run, "loss") == [(3, 0.25)]


def test_logdir_that_is_a_file_is_refused_and_left_alone(tmp_path):
    not_a_directory = tmp_path / "notes.txt"
    not_a_directory.write_text("my notes")
    with pytest.raises(
        summaries.LogdirError, match=re.escape(f"logdir {not_a_directory} is a file")
    ):
        summaries.create_writers(str(not_a_directory))
    assert not_a_directory.read_text() == "my notes"


def test_logdir_that_cannot_be_created_names_the_path(tmp_path):
    (tmp_path / "a_file").write_text("")
    impossible = tmp_path / "a_file" / "run"
    with pytest.raises(
        summaries.LogdirError, match=re.escape(f"logdir {impossible} cannot be created")
    ):
        summaries.create_writers(str(impossible))


def test_logdir_holding_a_run_is_refused_and_its_events_are_untouched(tmp_path):
    logdir = tmp_path / "run"
    first = summaries.create_writers(str(logdir))
    summaries.write_scalars(first.train, {"loss": 1.0}, step=1)
    first.close()
    before = {path: path.read_bytes() for path in logdir.rglob("*") if path.is_file()}

    with pytest.raises(summaries.LogdirError, match="already holds a run"):
        summaries.create_writers(str(logdir))
    after = {path: path.read_bytes() for path in logdir.rglob("*") if path.is_file()}
    assert after == before


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(summaries.LogdirError) as raised:
        summaries.create_writers(str(tmp_path / "a_file" / "run"))
    assert "\n" not in str(raised.value)


def test_markdown_helpers():
    assert summaries.markdown_code_block("a\n  b\n") == "```\na\n  b\n```"
    table = summaries.markdown_table({"num_steps": 10, "dataset": "synthetic"})
    assert table.splitlines() == [
        "| setting | value |",
        "|---|---|",
        "| num_steps | 10 |",
        "| dataset | synthetic |",
    ]


def test_weight_histograms_are_tagged_by_variable_path(tmp_path):
    import keras

    layer = keras.layers.Dense(3, name="dense_layer")
    layer.build((None, 2))
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_weight_histograms(writer, layer.trainable_variables, step=7)
    writer.close()
    run = events.load_run(tmp_path)
    tags = events.tags_by_plugin(run)["histograms"]
    assert sorted(tags) == ["weights/dense_layer/bias", "weights/dense_layer/kernel"]
    (kernel_event,) = run.Tensors("weights/dense_layer/kernel")
    assert kernel_event.step == 7
    # A histogram tensor is [bucket_count, 3] rows of (left edge, right edge, count).
    buckets = tensor_util.make_ndarray(kernel_event.tensor_proto)
    assert buckets[:, 2].sum() == 2 * 3  # Every weight of the 2x3 kernel is counted once.


def test_nested_logdir_is_created(tmp_path):
    writers = summaries.create_writers(str(tmp_path / "nested" / "run"))
    writers.close()
    assert (tmp_path / "nested" / "run" / "train").is_dir()
    assert (tmp_path / "nested" / "run" / "eval").is_dir()
