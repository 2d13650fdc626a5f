"""common.summaries.metrics: a loop boundary reads every metric and resets it, in one TensorFlow
call."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import distribution, summaries
from common.summaries import metrics


def test_read_and_reset_returns_the_results_then_starts_every_metric_afresh():
    loss = keras.metrics.Mean(name="loss")
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    loss.update_state([1.0, 2.0, 6.0])
    accuracy.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])  # One of two right.

    assert metrics.read_and_reset({"loss": loss, "accuracy": accuracy}) == pytest.approx(
        {"loss": 3.0, "accuracy": 0.5}
    )
    assert float(loss.result()) == 0.0 and float(accuracy.result()) == 0.0

    loss.update_state([4.0])  # The next loop's values, and nothing of the last loop's.
    assert metrics.read_and_reset({"loss": loss}) == {"loss": 4.0}


def test_read_and_reset_sums_the_replicas_under_a_mirrored_strategy():
    strategy = distribution.create_strategy("mirrored", num_cpu_devices=2)
    with strategy.scope():
        loss = keras.metrics.Mean(name="loss")

    @tf.function
    def update(values):
        strategy.run(loss.update_state, args=(values,))

    # Each replica gets half of the batch: [1, 2] and [3, 6].
    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices([1.0, 2.0, 3.0, 6.0]).batch(4)
    )
    for batch in batches:
        update(batch)
    assert metrics.read_and_reset({"loss": loss}) == {"loss": 3.0}
    assert float(loss.result()) == 0.0


def test_a_reader_runs_eagerly_then_traces_once_and_reads_the_same_all_along():
    """Its first 20 reads are eager, the rest one tf.function call each, traced once: the
    values are the same either way."""
    loss = keras.metrics.Mean(name="loss")
    read = metrics.MetricReader({"loss": loss})
    for boundary in range(25):
        loss.update_state([float(boundary), float(boundary) + 2.0])
        assert read() == {"loss": boundary + 1.0}
        assert read.tracing_count == (0 if boundary < 20 else 1)


# Probabilities on and around bucket edges (0, 1/200, 1/2, 199/200, 1) besides random ones: a
# streaming count must put each example in the very bucket the PR Curves plugin's pb does.
EDGES = np.float32([0.0, 0.005, 0.0049999, 0.5, 0.995, 0.99500006, 1.0])


def binary_examples(count: int = 301) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    probabilities = rng.random(count).astype(np.float32)
    probabilities[: len(EDGES)] = EDGES
    return (rng.random(count) > 0.6).astype(np.float32), probabilities


def test_pr_curve_counts_over_several_batches_give_the_curve_of_all_the_data_at_once():
    """pr_curve_data is the plugin's own pb on all the data (test_common_summaries): counts
    streamed batch by batch, in a tf.function as an eval step runs, draw exactly that curve."""
    labels, probabilities = binary_examples()
    counts = metrics.PRCurveCounts()

    @tf.function
    def update(labels, probabilities):
        counts.update_state(labels, probabilities)

    for start in range(0, len(labels), 64):  # The last batch is smaller.
        batch = slice(start, start + 64)
        update(labels[batch, None], probabilities[batch, None])  # [batch, 1], as logits are.
    result = counts.result().numpy()
    assert result.shape == (2, summaries.PR_CURVE_THRESHOLDS) and result.dtype == np.float64
    assert result.sum() == len(labels) and result[0].sum() == labels.sum()
    np.testing.assert_array_equal(
        summaries.pr_curve_from_counts(result), summaries.pr_curve_data(labels, probabilities)
    )
    # [batch]-shaped labels and probabilities, and bools: the same counts.
    flat = metrics.PRCurveCounts()
    flat.update_state(labels.astype(bool), probabilities)
    np.testing.assert_array_equal(flat.result().numpy(), result)


def test_pr_curve_counts_per_class_are_each_class_against_the_rest():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, size=150)
    probabilities = rng.dirichlet(np.ones(4), size=150).astype(np.float32)
    probabilities[: len(EDGES), 0] = EDGES
    counts = metrics.PRCurveCounts(num_thresholds=11, num_classes=4)
    for start in range(0, 150, 40):
        counts.update_state(labels[start : start + 40], probabilities[start : start + 40])
    result = counts.result().numpy()
    assert result.shape == (4, 2, 11)
    for digit in range(4):
        np.testing.assert_array_equal(
            summaries.pr_curve_from_counts(result[digit]),
            summaries.pr_curve_data(labels == digit, probabilities[:, digit], num_thresholds=11),
        )


def test_pr_curve_counts_leave_out_what_the_plugins_histogram_leaves_out():
    counts = metrics.PRCurveCounts(num_thresholds=3)
    counts.update_state([1.0, 1.0, 0.0, 0.0], [np.nan, -0.1, 1.6, 1.001])
    # NaN, below 0 and 1.6 fall in no bucket; 1.001 rounds down to the last one, as in pb.
    np.testing.assert_array_equal(counts.result().numpy(), [[0, 0, 0], [0, 0, 1]])
    with np.errstate(invalid="ignore"):  # NumPy's NaN to a bucket index, as in pb.
        expected = summaries.pr_curve_counts([1, 1, 0, 0], [np.nan, -0.1, 1.6, 1.001], 3)
    np.testing.assert_array_equal(counts.result().numpy(), expected)


def test_the_confusion_matrix_counts_true_against_predicted_classes():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, size=90)
    logits = rng.normal(size=(90, 5)).astype(np.float32)
    confusion = metrics.ConfusionMatrix(5)
    for start in range(0, 90, 32):
        confusion.update_state(labels[start : start + 32], logits[start : start + 32])
    expected = np.zeros((5, 5))
    np.add.at(expected, (labels, logits.argmax(axis=1)), 1)
    np.testing.assert_array_equal(confusion.result().numpy(), expected)


def test_a_reader_returns_arrays_for_array_results_floats_for_scalars_and_resets_them_all():
    loss, counts, confusion = (
        keras.metrics.Mean(),
        metrics.PRCurveCounts(num_thresholds=5),
        metrics.ConfusionMatrix(2),
    )
    every = {"loss": loss, "pr_curve": counts, "confusion_matrix": confusion}
    read = metrics.MetricReader(every)
    for _ in range(2):  # The second read sees the second update only: the first one reset.
        loss.update_state([1.0, 3.0])
        counts.update_state([1.0, 0.0], [0.9, 0.1])
        confusion.update_state([0, 1], [[2.0, 1.0], [3.0, 0.0]])
        results = read()
        assert results["loss"] == 2.0 and isinstance(results["loss"], float)
        np.testing.assert_array_equal(results["pr_curve"], [[0, 0, 0, 1, 0], [1, 0, 0, 0, 0]])
        np.testing.assert_array_equal(results["confusion_matrix"], [[1, 0], [1, 0]])
        assert metrics.scalar_results(results) == {"loss": 2.0}
    assert all(not np.any(value) for value in metrics.read_and_reset(every).values())


def test_counts_sum_the_replicas_under_a_mirrored_strategy_as_one_device_counts():
    """Keras makes metric variables ON_READ with SUM aggregation: each replica counts its share
    of a batch (here unevenly split: 7 examples over 2), a read adds them up."""
    labels, probabilities = binary_examples(count=7 * 9)
    classes = (probabilities * 3).astype(np.int32)
    strategy = distribution.create_strategy("mirrored", num_cpu_devices=2)
    with strategy.scope():
        mirrored = {"pr_curve": metrics.PRCurveCounts(), "confusion": metrics.ConfusionMatrix(3)}

    def update(metrics_, labels, probabilities, classes):
        metrics_["pr_curve"].update_state(labels, probabilities)
        scores = tf.one_hot(classes, 3)  # Predicts each example's own class: a diagonal.
        metrics_["confusion"].update_state(classes, scores)

    @tf.function
    def update_replicas(batch):
        strategy.run(functools.partial(update, mirrored), args=batch)

    dataset = tf.data.Dataset.from_tensor_slices((labels, probabilities, classes)).batch(7)
    for batch in strategy.experimental_distribute_dataset(dataset):
        update_replicas(batch)
    one_device = {"pr_curve": metrics.PRCurveCounts(), "confusion": metrics.ConfusionMatrix(3)}
    update(one_device, labels, probabilities, classes)
    read_mirrored = metrics.MetricReader(mirrored)()
    for name, expected in metrics.read_and_reset(one_device).items():
        np.testing.assert_array_equal(read_mirrored[name], expected)
    assert read_mirrored["pr_curve"].sum() == len(labels)  # Each example once, not per replica.
