"""apps.vae_timeseries end to end on tiny configs, read back as TensorBoard shows the run."""

import math

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.util import tensor_util

from apps.vae_timeseries import data, images, train
from tests import tensorboard_events as events

TINY = train.Config(
    num_steps=6,
    batch_size=8,
    latent_dim=4,
    window_length=16,
    num_channels=6,
    kl_warmup_steps=4,
    steps_per_loop=2,
    eval_every_steps=4,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny synthetic run shared by the assertions below: (metrics, train run, eval run)."""
    logdir = tmp_path_factory.mktemp("vae") / "run"
    metrics = train.train_and_evaluate(TINY, str(logdir))
    return metrics, events.load_run(logdir / "train"), events.load_run(logdir / "eval")


def test_custom_scalars_layout_is_written_once_and_charts_the_run(tiny_run):
    _, train_run, eval_run = tiny_run
    layout = events.scalars_layout(train_run)
    assert layout["vae_timeseries"]["ELBO terms: reconstruction against KL"] == [
        "^reconstruction_loss$",
        "^kl$",
    ]
    assert events.chart_tags_without_data(layout, [train_run, eval_run]) == set()


def test_op_graph_is_the_whole_vae_step(tiny_run):
    _, train_run, _ = tiny_run
    assert events.tags_by_plugin(train_run)[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert events.function_graph_count(train_run, "graph/train_step") == 1
    ops = events.op_types(events.op_graph(train_run, "graph/train_step"))
    assert ops & {"Conv2D", "Conv1D"}  # Keras' Conv1D runs as a 2-D convolution.
    assert ops >= {"Exp", "StatelessRandomNormalV2"}  # The sampling layer.
    assert ops & {"Conv2DBackpropInput", "Conv2DBackpropFilter"}  # Gradients.
    assert ops >= {"AssignSubVariableOp", "Sqrt"}  # Adam's update.


def test_encoder_and_decoder_graphs_and_summaries(tiny_run):
    _, train_run, _ = tiny_run
    plugins = events.tags_by_plugin(train_run)
    assert sorted(plugins[events.KERAS_GRAPH_PLUGIN]) == ["keras/decoder", "keras/encoder"]
    encoder_nodes = {node.name for node in events.conceptual_graph(train_run, "keras/encoder").node}
    assert {"encoder/conv_1", "encoder/latent_mean", "encoder/sampling"} <= encoder_nodes
    decoder_nodes = {node.name for node in events.conceptual_graph(train_run, "keras/decoder").node}
    assert {"decoder/deconv_1", "decoder/reconstruction"} <= decoder_nodes
    assert "Sampling" in events.text(train_run, "model_summary/encoder")
    assert "Conv1DTranspose" in events.text(train_run, "model_summary/decoder")


def test_scalars_are_finite_on_the_boundaries_and_kl_is_positive(tiny_run):
    metrics, train_run, eval_run = tiny_run
    for tag in ("reconstruction_loss", "kl", "elbo", "loss", "beta", "learning_rate"):
        points = events.scalars(train_run, tag)
        assert [step for step, _ in points] == [2, 4, 6], tag
        assert all(math.isfinite(value) for _, value in points), tag
    for tag in ("reconstruction_loss", "kl", "elbo"):
        points = events.scalars(eval_run, tag)
        assert [step for step, _ in points] == [4, 6], tag
        assert all(math.isfinite(value) for _, value in points), tag
    assert all(value > 0 for _, value in events.scalars(train_run, "kl"))
    assert all(value > 0 for _, value in events.scalars(eval_run, "kl"))
    # ELBO = -(reconstruction + KL), point by point.
    for (_, elbo), (_, reconstruction), (_, kl) in zip(
        *(events.scalars(eval_run, tag) for tag in ("elbo", "reconstruction_loss", "kl")),
        strict=True,
    ):
        assert elbo == pytest.approx(-(reconstruction + kl), rel=1e-5)
    assert metrics["train_step_traces"] == 1


def test_beta_warms_up_linearly_then_stays_at_one(tiny_run):
    _, train_run, _ = tiny_run
    assert events.scalars(train_run, "beta") == [(2, 0.5), (4, 1.0), (6, 1.0)]


def test_latent_histograms_and_reconstruction_images(tiny_run):
    _, train_run, eval_run = tiny_run
    histograms = set(events.tags_by_plugin(train_run)["histograms"])
    assert {"latent/mean", "latent/log_variance"} <= histograms
    assert [event.step for event in train_run.Tensors("latent/mean")] == [4, 6]
    assert events.tags_by_plugin(eval_run)["images"] == ["reconstructions"]
    (first, *_) = eval_run.Tensors("reconstructions")
    # An image summary holds width, height, then one PNG per image.
    values = tensor_util.make_ndarray(first.tensor_proto)
    width, height = int(values[0]), int(values[1])
    channels, window = TINY.num_channels, TINY.window_length
    assert (height, width) == ((2 * channels + 1) * images.IMAGE_SCALE, window * images.IMAGE_SCALE)
    assert len(values) - 2 == images.NUM_IMAGES
    image = tf.io.decode_png(values[2]).numpy()
    assert image.shape == (height, width, 3) and image.std() > 0  # A picture, not a blank.


def test_projector_gets_the_eval_windows_latent_means(tiny_run):
    _, _, eval_run = tiny_run
    _, embeddings, metadata = events.projector_embedding(eval_run.path)
    assert embeddings.shape[1] == TINY.latent_dim and np.isfinite(embeddings).all()
    assert metadata[0] == "window\trms" and len(metadata) == len(embeddings) + 1


def test_the_elbo_improves(tmp_path):
    """Measured: eval ELBO -295 at step 200, -81 at step 800, jumping once the decoder starts to
    use the latent code (a shorter KL warm-up collapses it: -234 after 600 steps, warm-up 200)."""
    config = train.Config(num_steps=800, eval_every_steps=200, kl_warmup_steps=800)
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["eval/elbo"] > metrics["eval/first_elbo"] + 100
    assert metrics["eval/kl"] > 0 and math.isfinite(metrics["eval/kl"])
    elbo = events.scalars(events.load_run(tmp_path / "train"), "elbo")
    assert elbo[-1][1] > elbo[0][1]


def write_csv(path, rows):
    path.write_text("\n".join(",".join(str(cell) for cell in row) for row in rows) + "\n")
    return str(path)


def test_csv_with_header_and_time_column_trains(tmp_path):
    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(size=(200, 5)), axis=0)
    rows = [["timestamp", "a", "b", "c", "d", "e"]]
    rows += [
        [f"2026-01-01T00:{index // 60:02d}:{index % 60:02d}", *values]
        for index, values in enumerate(series)
    ]
    path = write_csv(tmp_path / "series.csv", rows)
    config = train.Config(
        num_steps=4, batch_size=4, window_length=16, latent_dim=2, steps_per_loop=2, data_path=path
    )
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["steps"] == 4 and math.isfinite(metrics["eval/elbo"])
    assert "5 channels" in events.text(events.load_run(tmp_path / "run" / "train"), "dataset")


def test_standardization_uses_the_training_part_only():
    series = np.concatenate([np.zeros((80, 2)), np.full((20, 2), 100.0)]).astype(np.float32)
    series[:80] += np.arange(80)[:, None] % 2  # Train part: mean 0.5, std 0.5.
    train_windows, eval_windows = data.split_and_window(series, window_length=8, source="test")
    assert abs(train_windows.mean()) < 0.1
    np.testing.assert_allclose(eval_windows, (100.0 - 0.5) / 0.5)  # Train statistics, not eval's.


@pytest.mark.parametrize(
    ("rows", "complaint"),
    [
        ([["a", "b"], [1, 2], [3]], "row 3 has 1 columns, expected 2"),
        ([["a", "b"], [1, 2], [3, "oops"]], "row 3 column 2 ('b'): 'oops' is not a finite number"),
        ([[1, 2], [3, "nan"]], "row 2 column 2 ('column 2'): 'nan' is not a finite number"),
        ([["a", "b"]] + [[i, i] for i in range(30)], "has 30 rows: too short for windows of 16"),
        ([["time"], [1], [2]], "has no data columns"),
    ],
)
def test_bad_csvs_fail_with_one_line_naming_file_and_place(tmp_path, rows, complaint):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(data.DataFileError) as raised:
        data.load_datasets(path, window_length=16, num_channels=0, seed=0)
    message = str(raised.value)
    assert path in message and complaint in message and "\n" not in message


def test_a_missing_csv_is_named(tmp_path):
    with pytest.raises(data.DataFileError, match="does not exist"):
        data.load_datasets(str(tmp_path / "nope.csv"), window_length=16, num_channels=0, seed=0)


def test_heatmap_colors():
    rgb = images.heatmap_rgb(np.array([[-3.0, 0.0, 3.0]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert tuple(rgb[0, 1]) == (255, 255, 255)  # Zero is white.
    assert rgb[0, 0, 2] > rgb[0, 0, 0] and rgb[0, 2, 0] > rgb[0, 2, 2]  # Blue low, red high.


def test_jit_compile_and_profile_come_with_the_shared_loop(tmp_path):
    """Flags the VAE never had before the loop moved to common/: every app has them now."""
    config = train.Config(
        num_steps=4,
        batch_size=8,
        latent_dim=2,
        window_length=8,
        num_channels=2,
        steps_per_loop=2,
        jit_compile=True,
        profile=True,
    )
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert math.isfinite(metrics["eval/elbo"]) and metrics["train_step_traces"] == 1
    ops = events.op_types(events.load_run(tmp_path / "train").Graph())  # XLA: the concrete graph.
    assert ops & {"Conv2D", "Conv1D"}
    assert list((tmp_path / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
