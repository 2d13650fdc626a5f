"""Reading Keras metrics at a loop boundary in one TensorFlow call.

Eagerly, each `float(metric.result())` and each `metric.reset_state()` is its own round of op
dispatch, about 0.15 ms apiece on a 2-core CPU: two metrics took 0.6 ms per boundary, against
0.37 ms for one `tf.function` call, and the gap grows with every metric (regression_tape reads
eight). Under a `tf.distribute` strategy the reads sum the replicas, as `result()` does eagerly.
"""

import keras
import tensorflow as tf


def read_and_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, float]:
    """Returns `{name: metric.result()}` as floats, then resets every metric for the next loop."""
    return {name: float(value) for name, value in _results_then_reset(metrics).items()}


@tf.function
def _results_then_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, tf.Tensor]:
    results = {name: tf.identity(metric.result()) for name, metric in metrics.items()}
    with tf.control_dependencies(list(results.values())):  # Read first, then reset.
        for metric in metrics.values():
            metric.reset_state()
    return results
