"""common.metrics: a loop boundary reads every metric and resets it, in one TensorFlow call."""

import keras
import pytest
import tensorflow as tf

from common import distribution, metrics


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
