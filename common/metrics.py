"""Reading Keras metrics at a loop boundary in one TensorFlow call.

Eagerly, each `float(metric.result())` and each `metric.reset_state()` is its own round of op
dispatch, about 0.15 ms apiece on a 2-core CPU: two metrics took 0.6 ms per boundary, against
0.37 ms for one `tf.function` call, and the gap grows with every metric (regression_tape reads
eight). Under a `tf.distribute` strategy the reads sum the replicas, as `result()` does eagerly.

A loop creates one `MetricReader` per run, for its metrics, and calls it at every boundary: its
`tf.function` belongs to those metric objects and is traced once. (One module-level `tf.function`
shared by every run, as `read_and_reset` had, is traced again for each run's new metric objects,
and several runs in one process, as `make results` and `make bench` do, set off TensorFlow's
"triggered tf.function retracing" warning.)
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
        # per_run_function, not tf.function: TensorFlow would count every run's reader as
        # retracing one function (see common/tracing.py).
        self._results_then_reset = tracing.per_run_function(
            functools.partial(_results_then_reset, self._metrics)
        )

    def __call__(self) -> dict[str, float]:
        """Returns `{name: metric.result()}` as floats, then resets every metric."""
        return {name: float(value) for name, value in self._results_then_reset().items()}

    @property
    def tracing_count(self) -> int:
        """How often this reader's `tf.function` was traced: 1 after any number of calls."""
        return self._results_then_reset.experimental_get_tracing_count()


def read_and_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, float]:
    """Returns `{name: metric.result()}` as floats, then resets every metric for the next loop.

    A shorthand for a `MetricReader` of these metrics, kept from the last few calls: calls with the
    same metric objects reuse one traced function. A loop should hold its own `MetricReader`.
    """
    return _cached_reader(tuple(metrics.items()))()


# The readers of the latest few sets of metrics (a run reads one or two sets); the metrics of those
# stay alive while cached, which bounds what the shorthand keeps to 8 sets.
@functools.lru_cache(maxsize=8)
def _cached_reader(named_metrics: tuple[tuple[str, keras.metrics.Metric], ...]) -> MetricReader:
    return MetricReader(dict(named_metrics))


def _results_then_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, tf.Tensor]:
    results = {name: tf.identity(metric.result()) for name, metric in metrics.items()}
    with tf.control_dependencies(list(results.values())):  # Read first, then reset.
        for metric in metrics.values():
            metric.reset_state()
    return results
