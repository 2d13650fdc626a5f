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

A metric's result is a float when it is a scalar and a NumPy array otherwise: `PRCurveCounts` and
`ConfusionMatrix` below count in the eval step, inside the graph, what a PR curve or a confusion
matrix needs, as TensorBoard's TF1 `pr_curve.summary.streaming_op` did, so nothing runs the
model a second time over the eval set to draw them. Their counts are Keras metric variables,
which Keras creates `ON_READ` with `SUM` aggregation: under a `tf.distribute` strategy each
replica counts its share of a batch and a read adds the replicas up, as for a `Mean`.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from common import summaries, tracing

# What a read returns: `{name: result}`, a float for a scalar result, an array for any other.
Results = dict[str, float | np.ndarray]


class MetricReader:
    """Reads a fixed set of metrics and resets them, in one `tf.function` call traced once.

    Usage, once per run: `read_train_metrics = MetricReader({"loss": loss, "accuracy": accuracy})`,
    then at every loop boundary `read_train_metrics()` -> `{"loss": 0.31, "accuracy": 0.9}`.
    A metric whose result is not a scalar (`PRCurveCounts`) reads as a NumPy array.
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

    def __call__(self) -> Results:
        """Returns `{name: metric.result()}`, scalars as floats and the rest as NumPy arrays, then
        resets every metric."""
        return _on_host(self._results_then_reset())

    @property
    def tracing_count(self) -> int:
        """How often this reader's `tf.function` was traced: 0 for its first 20 calls (eager),
        then 1, after any number of calls."""
        return self._results_then_reset.tracing_count


def read_and_reset(metrics: dict[str, keras.metrics.Metric]) -> Results:
    """Returns `{name: metric.result()}`, scalars as floats and the rest as NumPy arrays, then
    resets every metric, eagerly: for a one-off read (a loop reads at every boundary through its
    `MetricReader`)."""
    return _on_host(_results_then_reset(metrics))


def scalar_results(results: Results) -> dict[str, float]:
    """The scalar results of a read: what goes to scalar summaries, the console and a run's
    returned metrics (an array result goes to whoever draws it, e.g. an app's `on_eval`)."""
    return {name: value for name, value in results.items() if isinstance(value, float)}


def _on_host(results: dict[str, tf.Tensor]) -> Results:
    return {
        name: float(value) if value.shape.rank == 0 else value.numpy()
        for name, value in results.items()
    }


def _results_then_reset(metrics: dict[str, keras.metrics.Metric]) -> dict[str, tf.Tensor]:
    results = {name: tf.identity(metric.result()) for name, metric in metrics.items()}
    with tf.control_dependencies(list(results.values())):  # Read first, then reset.
        for metric in metrics.values():
            metric.reset_state()
    return results


class PRCurveCounts(keras.metrics.Metric):
    """Per-threshold-bucket counts of true and false examples: what a PR curve is drawn from.

    An example whose probability is `p` falls in bucket `floor(p * (num_thresholds - 1))`, as in
    the PR Curves plugin's own `pb` (and `common.summaries.pr_curve_data`); `result()` is
    `[2, num_thresholds]`: row 0 the true examples per bucket, row 1 the false ones. With
    `num_classes`, one curve per class, that class against the rest: `[num_classes, 2,
    num_thresholds]`. `common.summaries.write_pr_curves` turns counts into the dashboard's curve.

    The counts are float64, not int64: an example's label is the weight of its true count (and
    `1 - label` of its false count), as in the plugin's histogram, so 0/1 floats and bools count
    alike in one sum; and float64 counts whole examples exactly up to 2**53 (float32
    only up to 2**24, 16.7 million). A probability that rounds to no bucket (below 0, or 1.005
    and above) or is NaN is left out, as the plugin's histogram leaves it out.
    """

    def __init__(
        self,
        num_thresholds: int = summaries.PR_CURVE_THRESHOLDS,
        num_classes: int | None = None,
        name: str = "pr_curve_counts",
        **kwargs,
    ) -> None:
        """Starts from zero counts.

        Args:
            num_thresholds: buckets per curve, evenly spaced on the probability (at least 2).
            num_classes: None for one binary curve; else the number of classes, one curve each.
            name: the metric's name.
        """
        super().__init__(name=name, dtype="float64", **kwargs)
        self.num_thresholds = num_thresholds
        self.num_classes = num_classes
        curves = 1 if num_classes is None else num_classes
        shape = (2, num_thresholds) if num_classes is None else (curves, 2, num_thresholds)
        self.counts = self.add_variable(
            shape=shape, initializer="zeros", dtype="float64", name="counts"
        )

    # Plain TensorFlow ops, no Python control flow on tensors: nothing for AutoGraph to rewrite,
    # and rewriting it (the eval loop's trace converts what its step calls) costs the first eval
    # more than the rest of its trace.
    @tf.autograph.experimental.do_not_convert
    def update_state(self, labels: tf.Tensor, probabilities: tf.Tensor) -> None:
        """Counts a batch of examples into their buckets.

        Args:
            labels: binary: 0/1 (or bools) of shape [batch] or [batch, 1]; with `num_classes`:
                integer classes of shape [batch] (or [batch, 1]).
            probabilities: binary: the probability of true, [batch] or [batch, 1]; with
                `num_classes`: [batch, num_classes], each class's probability.
        """
        probabilities = tf.convert_to_tensor(probabilities)
        if self.num_classes is None:
            curves = 1
            probabilities = tf.reshape(probabilities, [-1, 1])
            positives = tf.reshape(tf.cast(labels, tf.float64), [-1, 1])
        else:
            curves = self.num_classes
            probabilities = tf.reshape(probabilities, [-1, curves])
            classes = tf.reshape(tf.cast(labels, tf.int32), [-1])
            positives = tf.one_hot(classes, curves, dtype=tf.float64)  # One vs the rest.
        # In the probabilities' own dtype, as pr_curve_data's NumPy multiplies them: a product
        # rounded in another precision could put an example in the next bucket.
        buckets = tf.floor(probabilities * (self.num_thresholds - 1))
        counted = tf.logical_and(buckets >= 0, buckets <= self.num_thresholds - 1)  # NaN: no.
        weights = tf.cast(counted, tf.float64)
        # Where each example counts in the flattened [curves, 2, num_thresholds]: curve c's true
        # row starts at c * 2 * num_thresholds, its false row num_thresholds further on.
        size = self.num_thresholds
        true_indices = tf.cast(tf.where(counted, buckets, tf.zeros_like(buckets)), tf.int32)
        true_indices += tf.range(curves, dtype=tf.int32) * 2 * size
        indices = tf.concat([true_indices, true_indices + size], axis=0)
        weights = tf.concat([weights * positives, weights * (1.0 - positives)], axis=0)
        # One unsorted_segment_sum: the sums two tf.math.bincount calls would make (exact:
        # whole numbers in float64, in any order) in fewer ops (bincount also computes its
        # output's size from the data). The first eval pays for them: a binary update took
        # 13-17 ms to trace and 11 ms to run first, against 19-21 and 14-16 ms (2 CPU cores).
        counts = tf.math.unsorted_segment_sum(
            tf.reshape(weights, [-1]), tf.reshape(indices, [-1]), curves * 2 * size
        )
        self.counts.assign_add(tf.reshape(counts, self.counts.shape))

    def result(self) -> tf.Tensor:
        """The counts so far: `[2, num_thresholds]`, or `[num_classes, 2, num_thresholds]`."""
        return tf.convert_to_tensor(self.counts)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "num_classes": self.num_classes,
        }


class ConfusionMatrix(keras.metrics.Metric):
    """Counts of examples by true class (rows) and predicted class (columns): `[num_classes,
    num_classes]`, float64 as `PRCurveCounts`'. A label outside `[0, num_classes)` is left out."""

    def __init__(self, num_classes: int, name: str = "confusion_matrix", **kwargs) -> None:
        """Starts from zero counts.

        Args:
            num_classes: the number of classes.
            name: the metric's name.
        """
        super().__init__(name=name, dtype="float64", **kwargs)
        self.num_classes = num_classes
        self.counts = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float64", name="counts"
        )

    @tf.autograph.experimental.do_not_convert  # As PRCurveCounts.update_state.
    def update_state(self, labels: tf.Tensor, scores: tf.Tensor) -> None:
        """Counts a batch.

        Args:
            labels: integer classes, [batch] (or [batch, 1]).
            scores: [batch, num_classes] logits or probabilities; the prediction is their argmax.
        """
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        predicted = tf.argmax(
            tf.reshape(scores, [-1, self.num_classes]), axis=1, output_type=tf.int32
        )
        counted = tf.logical_and(labels >= 0, labels < self.num_classes)
        cells = tf.where(counted, labels * self.num_classes + predicted, 0)
        size = self.num_classes * self.num_classes
        counts = tf.math.unsorted_segment_sum(tf.cast(counted, tf.float64), cells, size)
        self.counts.assign_add(tf.reshape(counts, [self.num_classes, self.num_classes]))

    def result(self) -> tf.Tensor:
        """The counts so far, [true class, predicted class]."""
        return tf.convert_to_tensor(self.counts)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}
