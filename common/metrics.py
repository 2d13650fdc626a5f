"""Reading Keras metrics at a loop boundary: every result, then every metric reset.

Eagerly, each `float(metric.result())` and each `metric.reset_state()` is its own round of op
dispatch, about 0.15 ms apiece on 2 CPU cores: regression_tape's nine metrics cost 3 ms a
boundary eagerly, 5% of its 500-step loops, against 0.3 ms in one `tf.function` call, which
takes 15 ms to trace (without AutoGraph; 70 ms with it). A run's first 20 reads run eagerly, the
rest in the function (`tracing.EagerThenTraced`): a default run of 6 to 20 boundaries traces
nothing, a long one traces once. Under a `tf.distribute` strategy the reads sum the replicas, as
`result()` does eagerly.

A loop creates one `MetricReader` per run, for its metrics, and calls it at every boundary: its
`tf.function` belongs to those metric objects and is traced once. (One module-level `tf.function`
shared by every run would be traced again for each run's new metric objects, and several runs in
one process, as `make results` and `make bench` do, would set off TensorFlow's "triggered
tf.function retracing" warning.)
"""

import functools

import keras
import tensorflow as tf

from common import tracing


class MetricReader:
    """Reads a fixed set of metrics and resets them, in one `tf.function` call traced once.

    Usage, once per run: `read_train_metrics = MetricReader({"loss": loss, "accuracy": accuracy})`,
    then at every loop boundary `read_train_metrics()` -> `{"loss": 0.31, "accuracy": 0.9}`.
    """

    def __init__(self, metrics: dict[str, keras.metrics.Metric]) -> None:
        """Builds the reader; nothing is traced until the first call.

        Args:
            metrics: `{name: metric}`; a call returns the same names.
        """
        self._metrics = dict(metrics)
        # Traced through tracing.per_run_function: TensorFlow would count every run's reader as
        # retracing one function (see common/tracing.py).
        self._results_then_reset = tracing.EagerThenTraced(
            functools.partial(_results_then_reset, self._metrics)
        )

    def __call__(self) -> dict[str, float]:
        """Returns `{name: metric.result()}` as floats, then resets every metric."""
        return {name: float(value) for name, value in self._results_then_reset().items()}

    @property
    def tracing_count(self) -> int:
        """How often this reader's `tf.function` was traced: 0 for its first 20 calls (eager),
        then 1, after any number of calls."""
        return self._results_then_reset.tracing_count


def read_and_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, float]:
    """Returns `{name: metric.result()}` as floats, then resets every metric, eagerly: for a
    one-off read (a loop reads at every boundary through its `MetricReader`)."""
    return {name: float(value) for name, value in _results_then_reset(metrics).items()}


def _results_then_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, tf.Tensor]:
    results = {name: tf.identity(metric.result()) for name, metric in metrics.items()}
    with tf.control_dependencies(list(results.values())):  # Read first, then reset.
        for metric in metrics.values():
            metric.reset_state()
    return results
