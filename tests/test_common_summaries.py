"""common.summaries: writers in train/ and eval/, and a logdir that fails loudly and safely."""

import io
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.util import tensor_util

from common import summaries
from common.logdir import event_files, prepare, trim
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
    with pytest.raises(prepare.LogdirError, match=re.escape(f"logdir {not_a_directory} is a file")):
        summaries.create_writers(str(not_a_directory))
    assert not_a_directory.read_text() == "my notes"


def test_logdir_that_cannot_be_created_names_the_path(tmp_path):
    (tmp_path / "a_file").write_text("")
    impossible = tmp_path / "a_file" / "run"
    with pytest.raises(
        prepare.LogdirError, match=re.escape(f"logdir {impossible} cannot be created")
    ):
        summaries.create_writers(str(impossible))


def write_steps(logdir, steps, run="train"):
    writer = tf.summary.create_file_writer(str(logdir / run))
    summaries.write_scalars(writer, {"loss": 1.0}, step=0) if 0 in steps else None
    for step in steps:
        if step:
            summaries.write_scalars(writer, {"loss": float(step)}, step=step)
    writer.close()


def test_trim_drops_points_after_the_step_and_keeps_the_rest(tmp_path):
    write_steps(tmp_path, [1, 2, 3, 4, 5, 6])
    write_steps(tmp_path, [2, 4, 6], run="eval")
    assert trim.trim_events_after(str(tmp_path), last_step=4) == 3
    assert events.scalars(events.load_run(tmp_path / "train"), "loss") == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 4.0),
    ]
    assert [step for step, _ in events.scalars(events.load_run(tmp_path / "eval"), "loss")] == [
        2,
        4,
    ]


def test_trim_repairs_a_torn_last_record(tmp_path):
    write_steps(tmp_path, [1, 2, 3])
    (path,) = event_files.event_files(str(tmp_path))
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:-5])  # A kill -9 in the middle of writing step 3.
    trim.trim_events_after(str(tmp_path), last_step=10)
    assert [s for s, _ in events.scalars(events.load_run(tmp_path / "train"), "loss")] == [1, 2]


def test_trim_to_minus_one_leaves_no_points(tmp_path):
    write_steps(tmp_path, [0, 1, 2])
    trim.trim_events_after(str(tmp_path), last_step=-1)
    assert events.load_run(tmp_path / "train").Tags()["tensors"] == []


def test_trim_leaves_files_without_later_points_untouched(tmp_path):
    write_steps(tmp_path, [1, 2])
    (path,) = event_files.event_files(str(tmp_path))
    before = (pathlib.Path(path).read_bytes(), pathlib.Path(path).stat().st_mtime_ns)
    assert trim.trim_events_after(str(tmp_path), last_step=2) == 0
    assert (pathlib.Path(path).read_bytes(), pathlib.Path(path).stat().st_mtime_ns) == before


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(prepare.LogdirError) as raised:
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
    summaries.write_variable_histograms(writer, layer.trainable_variables, step=7)
    writer.close()
    run = events.load_run(tmp_path)
    tags = events.tags_by_plugin(run)["histograms"]
    assert sorted(tags) == ["weights/dense_layer/bias", "weights/dense_layer/kernel"]
    assert "scalars" not in events.tags_by_plugin(run)  # No gradients given: no norm.
    (kernel_event,) = run.Tensors("weights/dense_layer/kernel")
    assert kernel_event.step == 7
    # A histogram tensor is [bucket_count, 3] rows of (left edge, right edge, count).
    buckets = tensor_util.make_ndarray(kernel_event.tensor_proto)
    assert buckets[:, 2].sum() == 2 * 3  # Every weight of the 2x3 kernel is counted once.


def test_gradient_histograms_and_their_global_norm_share_the_weights_event(tmp_path):
    import keras

    layer = keras.layers.Dense(3, name="dense_layer")
    layer.build((None, 2))
    gradients = [np.full((2, 3), 2.0, np.float32), np.full(3, -1.0, np.float32)]
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_variable_histograms(writer, layer.trainable_variables, 4, gradients=gradients)
    writer.close()
    run = events.load_run(tmp_path)
    assert sorted(events.tags_by_plugin(run)["histograms"]) == [
        "gradients/dense_layer/bias",
        "gradients/dense_layer/kernel",
        "weights/dense_layer/bias",
        "weights/dense_layer/kernel",
    ]
    (bias_event,) = run.Tensors("gradients/dense_layer/bias")
    buckets = tensor_util.make_ndarray(bias_event.tensor_proto)
    assert buckets[:, 2].sum() == 3 and buckets[-1, 0] == buckets[-1, 1] == -1.0
    assert events.scalars(run, "gradients/global_norm") == [(4, pytest.approx(np.sqrt(27.0)))]


def test_histograms_written_together_read_back_as_one_tag_each(tmp_path):
    """write_histograms puts every histogram and scalar in one event; TensorBoard's loader still
    sees each as its own tag, on its own dashboard, with the values tf.summary would write."""
    rng = np.random.default_rng(2)
    kernel, bias = rng.normal(size=(4, 5)).astype(np.float32), np.linspace(-1, 1, 5)
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_histograms(
        writer, {"weights/kernel": kernel, "weights/bias": bias}, 9, scalars={"norm": 2.5}
    )
    writer.close()
    run = events.load_run(tmp_path)
    by_plugin = events.tags_by_plugin(run)
    assert sorted(by_plugin["histograms"]) == ["weights/bias", "weights/kernel"]
    assert events.scalars(run, "norm") == [(9, 2.5)]
    for tag, values in (("weights/kernel", kernel), ("weights/bias", bias)):
        (event,) = run.Tensors(tag)
        assert event.step == 9
        np.testing.assert_array_equal(
            tensor_util.make_ndarray(event.tensor_proto), summaries.histogram_buckets(values)
        )
    # One event holds them all: the write was one op.
    (path,) = event_files.event_files(str(tmp_path))
    records = [event for event in tf.compat.v1.train.summary_iterator(path) if event.summary.value]
    assert len(records) == 1 and len(records[0].summary.value) == 3


def test_nested_logdir_is_created(tmp_path):
    writers = summaries.create_writers(str(tmp_path / "nested" / "run"))
    writers.close()
    assert (tmp_path / "nested" / "run" / "train").is_dir()
    assert (tmp_path / "nested" / "run" / "eval").is_dir()


def test_histogram_buckets_match_tensorboards_own():
    """Our buckets are the library's: what TensorBoard's `histogram_pb` and `tf.summary.histogram`
    write, same edges, same counts, for small and large, spread and constant values."""
    from tensorboard.plugins.histogram import summary_v2 as histogram_summary
    from tensorboard.util import tensor_util

    rng = np.random.default_rng(0)
    samples = (
        rng.normal(size=(64, 10)),
        np.full(7, 2.5),
        np.array([1.0, 1.0, 4.0]),
        np.full(100_000, -0.125, np.float32),
        rng.normal(size=100_000).astype(np.float32),
    )
    # Values on bucket edges, where rounding decides the bucket: TensorBoard's rule, not NumPy's.
    for values in (*samples, np.arange(91) / 90 * 3 - 1.1, np.arange(121) / 120 * 3 - 1.1):
        ours = summaries.histogram_buckets(values)
        (library,) = histogram_summary.histogram_pb("", values, buckets=30).value
        np.testing.assert_allclose(ours, tensor_util.make_ndarray(library.tensor), rtol=1e-12)
        theirs = histogram_summary._buckets(tf.constant(values), bucket_count=30).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # No values, no buckets, as before histogram_pb (which writes 30 empty ones).
    assert summaries.histogram_buckets(np.zeros([0, 4])).shape == (0, 3)
    # Weights gone to NaN or Inf (the step before the loop stops): the finite ones, no error.
    buckets = summaries.histogram_buckets(np.array([np.nan, -np.inf, 1.0, 3.0]))
    assert buckets[0, 0] == 1.0 and buckets[-1, 1] == 3.0 and buckets[:, 2].sum() == 2
    assert summaries.histogram_buckets(np.array([np.nan, np.inf])).shape == (0, 3)


def test_pr_curves_from_our_counts_are_what_the_plugins_own_pb_computes():
    """pr_curve_counts and pr_curve_from_counts stay ours (the eval step adds counts up): their
    curve is the plugin's, bit for bit, at the default thresholds and at few."""
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary

    rng = np.random.default_rng(1)
    labels, probabilities = rng.random(300) > 0.6, rng.random(300).astype(np.float32)
    for num_thresholds in (summaries.PR_CURVE_THRESHOLDS, 11, 2):
        theirs = pr_curve_summary.pb("curve", labels, probabilities, num_thresholds).value[0]
        ours = summaries.pr_curve_from_counts(
            summaries.pr_curve_counts(labels, probabilities, num_thresholds)
        )
        np.testing.assert_array_equal(ours, tf.make_ndarray(theirs.tensor))
        np.testing.assert_array_equal(
            summaries.pr_curve_data(labels, probabilities, num_thresholds), ours
        )


def test_pr_curves_from_counts_read_back_as_the_plugins_own_pb_in_one_event(tmp_path):
    """write_pr_curves draws each curve from bucket counts (a PRCurveCounts result) and writes
    them all in one event; TensorBoard reads each as a curve of its own, the plugin's pb values."""
    from tensorboard.plugins.pr_curve import metadata as pr_curve_metadata
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary

    rng = np.random.default_rng(6)
    curves = {}
    for tag in ("pr_curve/0", "pr_curve/1"):
        labels, probabilities = rng.random(200) > 0.5, rng.random(200).astype(np.float32)
        theirs = pr_curve_summary.pb(tag, labels, probabilities).value[0].tensor
        curves[tag] = (summaries.pr_curve_counts(labels, probabilities), tf.make_ndarray(theirs))
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_pr_curves(writer, {tag: counts for tag, (counts, _) in curves.items()}, 5)
    writer.close()
    run = events.load_run(tmp_path)
    assert events.tags_by_plugin(run)["pr_curves"] == list(curves)
    for tag, (_, expected) in curves.items():
        (event,) = run.Tensors(tag)
        assert event.step == 5
        np.testing.assert_array_equal(tensor_util.make_ndarray(event.tensor_proto), expected)
        content = run.SummaryMetadata(tag).plugin_data.content
        assert pr_curve_metadata.parse_plugin_metadata(content).num_thresholds == 201
    (path,) = event_files.event_files(str(tmp_path))
    records = [event for event in tf.compat.v1.train.summary_iterator(path) if event.summary.value]
    assert len(records) == 1 and len(records[0].summary.value) == 2


def test_images_read_back_as_the_images_plugin_expects(tmp_path):
    grey = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4, 1)
    colour = np.stack([grey[..., 0], grey[..., 0] // 2, grey[..., 0] // 3], axis=-1)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=3):
        summaries.write_image("grey", grey)
        summaries.write_image("colour", colour)
    writer.close()
    run = events.load_run(tmp_path)
    assert sorted(events.tags_by_plugin(run)["images"]) == ["colour", "grey"]
    for tag, image in (("grey", grey), ("colour", colour)):
        (event,) = run.Tensors(tag)
        width, height, png = tensor_util.make_ndarray(event.tensor_proto)
        assert (event.step, int(width), int(height)) == (3, 4, 6)
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)


def test_pictures_and_curves_in_one_event_read_back_as_their_plugins_expect(tmp_path):
    grey = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4, 1)
    colour = np.stack([grey[..., 0], grey[..., 0] // 2, grey[..., 0] // 3], axis=-1)
    counts = np.ones((2, summaries.PR_CURVE_THRESHOLDS))
    summary = summaries.pr_curves_summary({"pr_curve/0": counts})
    summary.MergeFrom(summaries.images_summary({"grey": grey, "colour": colour}))
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_summary(writer, summary, 7)
    writer.close()
    run = events.load_run(tmp_path)
    assert events.tags_by_plugin(run)["images"] == ["grey", "colour"]
    assert events.tags_by_plugin(run)["pr_curves"] == ["pr_curve/0"]
    for tag, image in (("grey", grey), ("colour", colour)):
        (event,) = run.Tensors(tag)
        width, height, png = tensor_util.make_ndarray(event.tensor_proto)
        assert (event.step, int(width), int(height)) == (7, 4, 6)
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)
    (path,) = event_files.event_files(str(tmp_path))
    records = [event for event in tf.compat.v1.train.summary_iterator(path) if event.summary.value]
    assert len(records) == 1 and len(records[0].summary.value) == 3


@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (7, 5, 1), (272, 448, 1), (3, 9, 3), (278, 278, 3), (4, 6, 2), (5, 3, 4)]
)
def test_pngs_decode_to_their_pixels_in_tensorflow_and_pillow(shape):
    """Pillow's PNG holds what TensorFlow's own encoder's does: the same pixels, channels kept."""
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    png = summaries.encode_png(image)
    decoded_by_tensorflow = tf.io.decode_png(png).numpy()
    np.testing.assert_array_equal(decoded_by_tensorflow, image)
    np.testing.assert_array_equal(
        decoded_by_tensorflow, tf.io.decode_png(tf.io.encode_png(image)).numpy()
    )
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[shape[-1]]
        np.testing.assert_array_equal(np.asarray(decoded).reshape(shape), image)


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 5), (2, 4, 4, 3)])
def test_an_image_of_another_shape_is_refused_with_its_shape(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        summaries.encode_png(np.zeros(shape, np.uint8))


def test_a_flat_drawing_compresses():
    drawing = np.full((278, 278, 3), 255, np.uint8)
    drawing[18:, 18:] = (40, 40, 255)
    drawing[100:110, 50:60] = 0
    assert len(summaries.encode_png(drawing)) < drawing.nbytes / 50


def test_a_scalar_writer_runs_eagerly_then_traces_once_and_writes_every_point(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    write = summaries.ScalarWriter(writer)
    for step in range(1, 26):
        write({"loss": 1.0 / step}, step)
    writer.close()
    assert write.tracing_count == 1  # Traced at the 21st write, reused after.
    points = events.scalars(events.load_run(tmp_path), "loss")
    assert [step for step, _ in points] == list(range(1, 26))
    assert points[-1][1] == pytest.approx(1 / 25)


def two_models(first: str = "generator", second: str = "discriminator"):
    """Two models, each of a layer named `dense`: both have the paths dense/kernel, dense/bias."""
    import keras

    models = []
    for name in (first, second):
        inputs = keras.Input((2,))
        models.append(keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs), name=name))
    return models


def test_variable_tags_are_paths_where_unique_and_name_their_models_where_not():
    import keras

    models = two_models()
    inputs = keras.Input((2,))
    lone = keras.Model(inputs, keras.layers.Dense(1, name="lone")(inputs), name="third")
    variables = models[0].variables + models[1].variables + lone.variables
    assert summaries.variable_tags(variables, [*models, lone]) == [
        "generator/dense/kernel",
        "generator/dense/bias",
        "discriminator/dense/kernel",
        "discriminator/dense/bias",
        "lone/kernel",
        "lone/bias",
    ]
    # One variable listed twice is one variable: its path, not a collision.
    kernel = lone.variables[0]
    assert summaries.variable_tags([kernel, kernel]) == ["lone/kernel", "lone/kernel"]


@pytest.mark.parametrize("models", ["none", "same names"])
def test_variables_that_cannot_be_told_apart_are_refused_not_overwritten(models):
    """Without their models (or with two models of one name) two histograms would share a tag,
    the second silently replacing the first."""
    two = two_models("twin", "twin") if models == "same names" else two_models()
    variables = two[0].variables + two[1].variables
    with pytest.raises(ValueError, match=r"'(twin/)?dense/kernel'") as refused:
        summaries.variable_tags(variables, two if models == "same names" else ())
    hint = "different names" if models == "same names" else "pass models="
    assert hint in str(refused.value)


def test_a_variable_without_a_gradient_gets_its_weights_and_no_gradient(tmp_path):
    """A non-trainable statistic (None in `gradients`): its weights histogram only, and the norm
    of the others' gradients."""
    import keras

    layer = keras.layers.BatchNormalization(name="norm")
    layer.build((None, 3))
    variables = layer.variables  # gamma, beta, moving_mean, moving_variance
    gradients = [np.full(3, 2.0, np.float32), np.full(3, 1.0, np.float32), None, None]
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_variable_histograms(writer, variables, 2, gradients=gradients)
    writer.close()
    run = events.load_run(tmp_path)
    assert sorted(events.tags_by_plugin(run)["histograms"]) == [
        "gradients/norm/beta",
        "gradients/norm/gamma",
        "weights/norm/beta",
        "weights/norm/gamma",
        "weights/norm/moving_mean",
        "weights/norm/moving_variance",
    ]
    assert events.scalars(run, "gradients/global_norm") == [(2, pytest.approx(np.sqrt(15.0)))]
