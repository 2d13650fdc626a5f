"""apps.mnist_mlp end to end on tiny configs, read back as TensorBoard shows the run."""

import math
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw
from tensorboard.util import tensor_util

from apps.mnist_mlp import data, train, visuals
from common import summaries
from tests import tensorboard_events as events

TINY = train.Config(
    num_steps=6, batch_size=16, steps_per_loop=2, eval_every_steps=4, dataset="synthetic"
)


def small_datasets(num_train: int = 64, num_test: int = 24) -> data.Datasets:
    """A few real digits from the bundled sample: fast, and real pixels."""
    sample = data.load_sample()
    return data.Datasets(
        sample.train.take(num_train), sample.eval.take(num_test), "tiny", "tiny sample"
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny synthetic run shared by the assertions below: (metrics, train run, eval run)."""
    logdir = tmp_path_factory.mktemp("mnist") / "run"
    metrics = train.train_and_evaluate(TINY, str(logdir))
    return metrics, events.load_run(logdir / "train"), events.load_run(logdir / "eval")


def test_op_graph_is_the_whole_train_step(tiny_run):
    _, train_run, _ = tiny_run
    assert events.tags_by_plugin(train_run)[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert events.function_graph_count(train_run, "graph/train_step") == 1
    graph = events.op_graph(train_run, "graph/train_step")
    ops = events.op_types(graph)
    assert ops >= {"MatMul", "BiasAdd", "Relu", "SparseSoftmaxCrossEntropyWithLogits"}  # forward
    assert ops >= {"ReluGrad", "BiasAddGrad"}  # gradients
    assert ops >= {"AssignSubVariableOp", "Sqrt"}  # Adam's update
    node_names = " ".join(node.name for node in graph.node)
    assert "hidden" in node_names and "logits" in node_names  # Named layers show up as scopes.


def test_conceptual_graph_and_model_summary(tiny_run):
    _, train_run, _ = tiny_run
    plugins = events.tags_by_plugin(train_run)
    assert plugins[events.KERAS_GRAPH_PLUGIN] == ["keras/mnist_mlp"]
    nodes = {node.name for node in events.conceptual_graph(train_run, "keras/mnist_mlp").node}
    assert {"mnist_mlp/image", "mnist_mlp/hidden", "mnist_mlp/logits"} <= nodes
    summary = events.text(train_run, "model_summary/mnist_mlp")
    assert summary.startswith("```")
    for expected in ("hidden (Dense)", "(None, 64)", "50,240", "Total params: 50,890"):
        assert expected in summary
    assert "| num_steps | 6 |" in events.text(train_run, "config")
    assert "synthetic" in events.text(train_run, "dataset")


def test_scalars_are_finite_and_land_on_loop_boundaries(tiny_run):
    _, train_run, eval_run = tiny_run
    for tag in ("loss", "accuracy", "learning_rate", "steps_per_second", "examples_per_second"):
        points = events.scalars(train_run, tag)
        assert [step for step, _ in points] == [2, 4, 6], tag
        assert all(math.isfinite(value) for _, value in points), tag
    assert events.scalars(train_run, "learning_rate")[0][1] == pytest.approx(TINY.learning_rate)
    for tag in ("loss", "accuracy"):
        points = events.scalars(eval_run, tag)
        assert [step for step, _ in points] == [4, 6], tag
        assert all(math.isfinite(value) for _, value in points), tag


def test_histograms_and_returned_metrics(tiny_run):
    metrics, train_run, eval_run = tiny_run
    histograms = events.tags_by_plugin(train_run)["histograms"]
    variables = ["hidden/bias", "hidden/kernel", "logits/bias", "logits/kernel"]
    assert sorted(histograms) == [
        f"{kind}/{name}" for kind in ("gradients", "weights") for name in variables
    ]
    assert metrics["steps"] == 6
    assert metrics["eval/loss"] == pytest.approx(events.scalars(eval_run, "loss")[-1][1])
    assert metrics["eval/accuracy"] == pytest.approx(events.scalars(eval_run, "accuracy")[-1][1])
    assert metrics["train/loss"] == pytest.approx(events.scalars(train_run, "loss")[-1][1])
    assert metrics["examples_per_second"] > 0
    assert metrics["train_step_traces"] == 1  # Traced once, by the graph trace; never retraced.
    assert metrics["eval_step_traces"] == 1  # Every eval, the smaller last batch too.


def test_loops_end_on_multiples_of_steps_per_loop(tmp_path):
    config = train.Config(num_steps=7, batch_size=8, steps_per_loop=3, eval_every_steps=100)
    train.train_and_evaluate(config, str(tmp_path), datasets=small_datasets())
    train_run = events.load_run(tmp_path / "train")
    assert [step for step, _ in events.scalars(train_run, "loss")] == [3, 6, 7]
    # Eval at the end even when eval_every_steps is never reached.
    assert [step for step, _ in events.scalars(events.load_run(tmp_path / "eval"), "loss")] == [7]


def test_a_single_step_run_still_logs_and_evaluates(tmp_path):
    config = train.Config(num_steps=1, batch_size=8)
    metrics = train.train_and_evaluate(config, str(tmp_path), datasets=small_datasets())
    assert metrics["steps"] == 1 and math.isfinite(metrics["eval/loss"])
    train_run = events.load_run(tmp_path / "train")
    assert [step for step, _ in events.scalars(train_run, "loss")] == [1]
    assert "steps_per_second" not in events.tags_by_plugin(train_run)["scalars"]


def test_it_learns_real_digits_on_the_bundled_sample(tmp_path):
    """Chance is 10%; 300 steps measured 92.4% here, so 85% leaves margin for seeds and BLAS."""
    config = train.Config(num_steps=300, dataset="mnist_sample", eval_every_steps=300)
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["eval/accuracy"] > 0.85
    assert metrics["train/loss"] < 0.5
    eval_points = events.scalars(events.load_run(tmp_path / "eval"), "accuracy")
    assert eval_points[-1] == (300, pytest.approx(metrics["eval/accuracy"]))


def test_full_mnist_through_tfds_under_mock_data(tmp_path, monkeypatch):
    """The real tfds.load path, offline: mock_data replaces the download and the files."""
    monkeypatch.setattr(data, "download_host_answers", lambda *args, **kwargs: True)
    config = train.Config(num_steps=4, batch_size=8, steps_per_loop=2, dataset="mnist")
    with tfds.testing.mock_data(num_examples=32):
        metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["steps"] == 4 and math.isfinite(metrics["eval/loss"])
    train_run = events.load_run(tmp_path / "train")
    assert "full MNIST through tensorflow-datasets" in events.text(train_run, "dataset")
    assert events.OP_GRAPH_PLUGIN in events.tags_by_plugin(train_run)


def test_auto_offline_chooses_the_sample_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "mnist_is_prepared", lambda data_dir: False)
    monkeypatch.setattr(data, "download_host_answers", lambda *args, **kwargs: False)
    config = train.Config(num_steps=2, batch_size=8, steps_per_loop=2, dataset="auto")
    train.train_and_evaluate(config, str(tmp_path))
    dataset_text = events.text(events.load_run(tmp_path / "train"), "dataset")
    assert "bundled MNIST sample" in dataset_text and "auto: offline" in dataset_text
    assert "auto: offline" in capsys.readouterr().out


def test_auto_uses_prepared_mnist_without_probing_the_network(monkeypatch):
    monkeypatch.setattr(data, "mnist_is_prepared", lambda data_dir: True)
    monkeypatch.setattr(data, "download_host_answers", lambda *a, **k: pytest.fail("probed"))
    assert data.choose_dataset(None) == ("mnist", "auto: full MNIST is prepared on disk")


def test_explicit_mnist_offline_fails_fast_with_a_hint(monkeypatch):
    monkeypatch.setattr(data, "mnist_is_prepared", lambda data_dir: False)
    monkeypatch.setattr(data, "download_host_answers", lambda *args, **kwargs: False)
    with pytest.raises(data.UserError, match="use --dataset=mnist_sample"):
        data.load_datasets("mnist")


def test_download_probe_against_local_sockets():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert data.download_host_answers("127.0.0.1", port=port, seconds=2)
    assert not data.download_host_answers("127.0.0.1", port=port, seconds=2)  # Closed: refused.
    assert not data.download_host_answers("no-such-host.invalid", seconds=2)


def test_bundled_sample_is_real_balanced_mnist():
    with np.load(data.SAMPLE_PATH) as arrays:
        assert arrays["train_images"].shape == (4000, 28, 28)
        assert arrays["test_images"].shape == (1000, 28, 28)
        assert arrays["train_images"].dtype == np.uint8
        for split in ("train", "test"):
            counts = np.bincount(arrays[f"{split}_labels"], minlength=10)
            assert counts.size == 10 and counts.min() > 0.07 * counts.sum(), (split, counts)
        # Handwriting, not noise: most pixels are background, strokes reach full intensity.
        assert (arrays["train_images"] == 0).mean() > 0.7
        assert arrays["train_images"].max() == 255


def test_preprocess_flattens_a_split_of_either_image_shape():
    for shape in ((5, 28, 28), (5, 28, 28, 1)):
        pixels, labels = data.preprocess(tf.fill(shape, tf.constant(255, tf.uint8)), [3] * 5)
        assert pixels.shape == (5, 784) and float(tf.reduce_max(pixels)) == 1.0
        assert labels.dtype == tf.int32 and labels.shape == (5,)


def test_profile_captures_the_second_loop_and_says_where(tmp_path, capsys):
    config = train.Config(num_steps=6, batch_size=8, steps_per_loop=2, profile=True)
    train.train_and_evaluate(config, str(tmp_path), datasets=small_datasets())
    traces = list((tmp_path / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    output = capsys.readouterr().out
    assert f"profile: 2 steps traced into {tmp_path}/train/plugins/profile" in output
    assert "one step marker each" in output


def test_jit_compile_trains_and_still_logs_the_step_graph(tmp_path):
    config = train.Config(num_steps=4, batch_size=8, steps_per_loop=2, jit_compile=True)
    metrics = train.train_and_evaluate(config, str(tmp_path), datasets=small_datasets())
    assert math.isfinite(metrics["eval/loss"]) and metrics["train_step_traces"] == 1
    # An XLA step's traced export is empty; its concrete graph is the run's graph instead.
    ops = events.op_types(events.load_run(tmp_path / "train").Graph())
    assert ops >= {"MatMul", "ReluGrad", "AssignSubVariableOp"}


def test_gradient_histograms_and_norm_at_every_eval_charted_by_the_custom_scalars(tiny_run):
    _, train_run, eval_run = tiny_run
    layout = events.scalars_layout(train_run)  # Written once, at step 0.
    assert layout["mnist_mlp"]["loss, train against eval"] == ["^loss$"]
    assert events.chart_tags_without_data(layout, [train_run, eval_run]) == set()
    assert [step for step, _ in events.scalars(train_run, "gradients/global_norm")] == [4, 6]
    assert all(value > 0 for _, value in events.scalars(train_run, "gradients/global_norm"))
    (first, _) = train_run.Tensors("gradients/hidden/kernel")
    assert first.step == 4
    # A histogram's buckets are [left, right, count]: every kernel entry has a gradient.
    counts = tensor_util.make_ndarray(first.tensor_proto)[:, 2]
    assert counts.sum() == 784 * TINY.hidden_units


def test_pr_curve_per_digit_misclassified_digits_and_confusion_matrix_at_every_eval(tiny_run):
    _, _, eval_run = tiny_run
    plugins = events.tags_by_plugin(eval_run)
    assert plugins["pr_curves"] == [f"pr_curve/{digit}" for digit in range(10)]
    assert [event.step for event in eval_run.Tensors("pr_curve/9")] == [4, 6]
    # Counted in the eval step over the whole eval set: at every threshold each digit's curve
    # counts every eval digit once, and that digit's own as its positives.
    _, labels = data.make_synthetic(TINY.seed).eval.batch(10_000).get_single_element()
    for digit in range(10):
        (*_, last) = eval_run.Tensors(f"pr_curve/{digit}")
        curve = tensor_util.make_ndarray(last.tensor_proto)
        np.testing.assert_array_equal(curve[:4].sum(axis=0), len(labels))
        assert curve[0, 0] + curve[3, 0] == np.sum(labels.numpy() == digit)  # TP + FN.
    assert plugins["images"] == ["misclassified", "confusion_matrix"]
    for tag in plugins["images"]:
        (*_, last) = eval_run.Tensors(tag)
        png = tensor_util.make_ndarray(last.tensor_proto)[2]  # Width, height, then the PNG.
        assert tf.io.decode_png(png).numpy().std() > 0, tag  # A picture, not a blank.


def test_misclassified_grid_captions_only_the_wrong_digits():
    images = np.zeros((5, 784), np.float32)
    labels, predicted = np.array([0, 1, 2, 3, 4]), np.array([0, 7, 2, 8, 9])
    grid = visuals.misclassified_grid(images, labels, predicted)
    side = visuals.DIGIT_SIDE * visuals.DIGIT_SCALE
    assert grid.shape == (visuals.CAPTION_HEIGHT + side, visuals.GRID_COLUMNS * side, 1)
    captions = grid[: visuals.CAPTION_HEIGHT].max(axis=(0, 2)).reshape(-1, side).max(axis=1)
    assert (captions > 0).tolist() == [True] * 3 + [False] * 5  # Three: 1>7, 3>8, 4>9.


def test_confusion_matrix_shades_each_cell_by_its_share_of_the_row():
    counts = np.zeros((10, 10))  # Four 0s, one taken for a 1; two 1s, both right.
    counts[0, 0], counts[0, 1], counts[1, 1] = 3, 1, 2
    image = visuals.confusion_matrix_image(counts)

    def corner(true: int, guess: int) -> int:  # A cell's bottom-right pixel: no text there.
        edge = visuals.MARGIN + visuals.CELL - 2
        return int(image[edge + true * visuals.CELL, edge + guess * visuals.CELL, 0])

    assert corner(1, 1) == 0 and corner(0, 0) == 63 and corner(0, 1) == 191
    assert corner(5, 5) == 255  # A digit never seen: white.


def pillow_misclassified_grid(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray
) -> np.ndarray:
    """The misclassified grid as Pillow draws it, digit by digit (pasted, resized) and caption by
    caption: what visuals' grid (digits tiled by NumPy, captions by Pillow) must be, pixel for
    pixel."""
    wrong = np.flatnonzero(labels != predicted)[: visuals.MAX_MISCLASSIFIED]
    side, caption = visuals.DIGIT_SIDE * visuals.DIGIT_SCALE, visuals.CAPTION_HEIGHT
    rows = max(1, -(-len(wrong) // visuals.GRID_COLUMNS))
    grid = Image.new("L", (visuals.GRID_COLUMNS * side, rows * (caption + side)), 0)
    draw = ImageDraw.Draw(grid)
    if not len(wrong):
        draw.text((4, 4), "no misclassified digits", fill=255)
    for position, index in enumerate(wrong):
        left = (position % visuals.GRID_COLUMNS) * side
        top = (position // visuals.GRID_COLUMNS) * (caption + side)
        pixels = (images[index].reshape(28, 28) * 255).clip(0, 255).astype(np.uint8)
        digit = Image.fromarray(pixels).resize((side, side), Image.NEAREST)
        grid.paste(digit, (left, top + caption))
        draw.text((left + 2, top), f"{labels[index]}>{predicted[index]}", fill=255)
    return np.asarray(grid)[..., None]


@pytest.mark.parametrize("num_wrong", [0, 1, 9, 40])
def test_misclassified_grid_is_pillows_drawing_pixel_for_pixel(num_wrong):
    images, labels = (
        tensor.numpy()
        for tensor in data.load_sample().eval.take(200).batch(200).get_single_element()
    )
    predicted = labels.copy()
    wrong = np.random.default_rng(num_wrong).choice(len(labels), num_wrong, replace=False)
    predicted[wrong] = (labels[wrong] + 1 + np.arange(num_wrong) % 9) % 10  # Every wrong digit.
    grid = visuals.misclassified_grid(images, labels, predicted)
    np.testing.assert_array_equal(grid, pillow_misclassified_grid(images, labels, predicted))


def test_confusion_matrix_cells_each_show_their_count_as_pillow_writes_it_alone():
    """Every cell holds its count as ImageDraw.text writes it on a cell of that shade alone: the
    number readable, on its shade, in its ink, uncovered by its neighbours' and cut only at its
    own edge (a five-digit count)."""
    rng = np.random.default_rng(0)
    # Counts of one to five digits, light and dark cells, and a digit never seen.
    counts = rng.integers(0, 10, (10, 10)) * 10 ** rng.integers(0, 4, (10, 10))
    counts[np.diag_indices(10)] = rng.integers(100, 9999, 10)
    counts[3, 3], counts[4] = 54321, 0
    image = visuals.confusion_matrix_image(counts.astype(np.float64))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    cell, margin = visuals.CELL, visuals.MARGIN
    for true in range(10):
        for guess in range(10):
            shade = int(255 * (1 - shares[true, guess]))
            expected = Image.new("RGB", (cell, cell), (shade, shade, 255))
            ink = "white" if shade < 128 else "black"
            ImageDraw.Draw(expected).text(
                visuals.COUNT_POSITION, str(counts[true, guess]), fill=ink
            )
            top, left = margin + true * cell, margin + guess * cell
            np.testing.assert_array_equal(
                image[top : top + cell, left : left + cell],
                np.asarray(expected),
                err_msg=f"cell {true}, {guess}: {counts[true, guess]}",
            )
    frame = image.copy()
    frame[margin:, margin:] = 255
    np.testing.assert_array_equal(frame, visuals._confusion_matrix_frame())  # Labels intact.
    assert visuals._confusion_matrix_frame()[margin:, margin:].min() == 255  # Not drawn on.


def test_captions_of_the_misclassified_grid_tell_their_digits_apart():
    """Each caption `true>predicted` is its own picture: no two pairs look alike."""
    images = np.zeros((90, 784), np.float32)
    labels = np.repeat(np.arange(10), 9)
    predicted = (labels + 1 + np.tile(np.arange(9), 10)) % 10  # Every wrong pair, once.
    side = visuals.DIGIT_SIDE * visuals.DIGIT_SCALE
    height = visuals.CAPTION_HEIGHT + side
    captions = set()
    for start in range(0, 90, visuals.MAX_MISCLASSIFIED):
        chunk = slice(start, start + visuals.MAX_MISCLASSIFIED)
        grid = visuals.misclassified_grid(images[chunk], labels[chunk], predicted[chunk])
        for position in range(len(labels[chunk])):
            row, column = divmod(position, visuals.GRID_COLUMNS)
            band = grid[row * height : row * height + visuals.CAPTION_HEIGHT]
            captions.add(band[:, column * side : (column + 1) * side].tobytes())
    assert len(captions) == 90


def test_projector_gets_the_hidden_layer_of_eval_digits_with_labels_and_sprite(tiny_run):
    _, _, eval_run = tiny_run
    embedding, embeddings, labels = events.projector_embedding(eval_run.path)
    assert embeddings.shape == (visuals.NUM_EMBEDDED, TINY.hidden_units)
    assert len(labels) == visuals.NUM_EMBEDDED and set(labels) <= set("0123456789")
    sprite = tf.io.decode_png(
        (pathlib.Path(eval_run.path) / embedding.sprite.image_path).read_bytes()
    )
    assert list(embedding.sprite.single_image_dim) == [28, 28]
    assert sprite.shape[0] == sprite.shape[1] >= 28 * math.isqrt(visuals.NUM_EMBEDDED)


def test_each_eval_draws_its_own_pictures_and_the_projector_holds_the_latest(tmp_path):
    digits = data.load_sample().eval.take(50).batch(50).get_single_element()
    images, labels = (tensor.numpy() for tensor in digits)
    calls = []

    def embed_and_classify(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Right about every digit at the first eval, wrong about every one after; embeddings
        that say which eval made them (2.5, then 3.5)."""
        calls.append(batch)
        guesses = labels if len(calls) == 1 else (labels + 1) % 10
        return tf.fill([len(batch), 3], 1.5 + len(calls)), tf.one_hot(guesses, 10)

    writers = summaries.create_writers(str(tmp_path))
    eval_summaries = visuals.EvalSummaries(embed_and_classify, digits)
    results = {"pr_curve": np.ones((10, 2, 201)), "confusion_matrix": np.eye(10) * 5}
    for step in (4, 6):
        eval_summaries.write(results, writers, step)
    writers.close()
    assert len(calls) == 2  # One model call an eval, for the grid and the Projector both.

    eval_run = events.load_run(tmp_path / "eval")
    pictures = {}
    for tag in ("misclassified", "confusion_matrix"):
        assert [event.step for event in eval_run.Tensors(tag)] == [4, 6], tag
        for event in eval_run.Tensors(tag):
            png = tensor_util.make_ndarray(event.tensor_proto)[2]
            pictures[tag, event.step] = tf.io.decode_png(png).numpy()
    np.testing.assert_array_equal(
        pictures["misclassified", 4], pillow_misclassified_grid(images, labels, labels)
    )
    np.testing.assert_array_equal(
        pictures["misclassified", 6], pillow_misclassified_grid(images, labels, (labels + 1) % 10)
    )
    np.testing.assert_array_equal(
        pictures["confusion_matrix", 6], visuals.confusion_matrix_image(results["confusion_matrix"])
    )
    embedding, embeddings, metadata = events.projector_embedding(tmp_path / "eval")
    np.testing.assert_array_equal(embeddings, np.full((50, 3), 3.5, np.float32))  # The latest.
    assert metadata == [str(label) for label in labels]
    sprite = tf.io.decode_png((tmp_path / "eval" / embedding.sprite.image_path).read_bytes())
    first_digit = (images[0].reshape(28, 28) * 255).round()
    np.testing.assert_array_equal(sprite.numpy()[:28, :28, 0], first_digit)


def test_a_probe_started_before_tensorflow_is_the_one_the_data_loader_waits_for():
    """main.py starts the probe as the flags parse; `auto` then takes its answer, once."""
    import socket

    from apps.mnist_mlp import host_probe

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert host_probe.start("127.0.0.1", port, seconds=2).wait(2)  # Answered, early.
    # The host is gone now, but the early probe's answer is the one taken...
    assert data.download_host_answers("127.0.0.1", port=port, seconds=2)
    # ...once: the next call probes afresh, and is refused.
    assert not data.download_host_answers("127.0.0.1", port=port, seconds=2)


@pytest.mark.parametrize(("dataset", "probed"), [("auto", True), ("mnist_sample", False)])
def test_main_probes_the_download_host_before_tensorflow_only_for_auto(
    dataset, probed, monkeypatch
):
    from apps.mnist_mlp import host_probe, main

    started = []
    monkeypatch.setattr(host_probe, "start", lambda *args: started.append(args))
    main.probe_download_host(train.Config(dataset=dataset))
    assert started == ([("storage.googleapis.com", 443, 3.0)] if probed else [])
