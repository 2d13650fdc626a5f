"""Precision-recall curves for TensorBoard's PR Curves dashboard, from bucket counts of true and
false examples (`common.summaries.metrics.PRCurveCounts` counts them in the eval step)."""

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from common.summaries.writers import write_summary

PR_CURVE_THRESHOLDS = 201  # The PR Curves plugin's default.
_MINIMUM_COUNT = 1e-7  # The plugin's: no division by zero where nothing is predicted true.


def pr_curve_data(
    labels: np.ndarray, probabilities: np.ndarray, num_thresholds: int = PR_CURVE_THRESHOLDS
) -> np.ndarray:
    """The PR Curves dashboard's tensor: `[6, num_thresholds]` float32 rows of true positives,
    false positives, true negatives, false negatives, precision and recall at evenly spaced
    thresholds on the probability, computed by the plugin's own `pr_curve.summary.pb` (what
    `pr_curve_from_counts(pr_curve_counts(...))` must equal: tests/test_common_summaries.py)."""
    # Raveled, as the counts are: the plugin's pb weighs one by the other, shape for shape.
    (value,) = pr_curve_summary.pb(
        "", np.ravel(labels), np.ravel(probabilities), num_thresholds
    ).value
    return tf.make_ndarray(value.tensor)


def pr_curve_counts(
    labels: np.ndarray, probabilities: np.ndarray, num_thresholds: int = PR_CURVE_THRESHOLDS
) -> np.ndarray:
    """`[2, num_thresholds]` float64 counts of true (row 0) and false (row 1) examples in each
    probability bucket, `floor(probability * (num_thresholds - 1))`, as the plugin's `pb`
    buckets them: what `common.summaries.metrics.PRCurveCounts` counts in a graph, batch by
    batch. Ours, not the plugin's: its `pb` computes these counts inline and returns only the
    curve, and the eval step needs the counts, to add them up batch by batch."""
    labels = np.asarray(labels, np.float64).ravel()
    bucket_indices = np.int32(np.floor(np.asarray(probabilities).ravel() * (num_thresholds - 1)))
    histogram_range = (0, num_thresholds - 1)
    true_buckets, _ = np.histogram(
        bucket_indices, bins=num_thresholds, range=histogram_range, weights=labels
    )
    false_buckets, _ = np.histogram(
        bucket_indices, bins=num_thresholds, range=histogram_range, weights=1.0 - labels
    )
    return np.stack([true_buckets, false_buckets])


def pr_curve_from_counts(counts: np.ndarray) -> np.ndarray:
    """The dashboard's `[6, num_thresholds]` float32 tensor (see `pr_curve_data`) from
    `[2, num_thresholds]` bucket counts of true and false examples (`pr_curve_counts`, or a
    `PRCurveCounts` metric's result): at threshold `i`, every example of bucket `i` and above is
    predicted true. Ours, not the plugin's: its `pb` does this arithmetic inline, on labels and
    predictions, with no function that takes counts; the tests check that the two agree."""
    true_buckets, false_buckets = np.asarray(counts, np.float64)
    true_positives = np.cumsum(true_buckets[::-1])[::-1]  # Predicted true at each threshold.
    false_positives = np.cumsum(false_buckets[::-1])[::-1]
    true_negatives = false_positives[0] - false_positives
    false_negatives = true_positives[0] - true_positives
    precision = true_positives / np.maximum(_MINIMUM_COUNT, true_positives + false_positives)
    recall = true_positives / np.maximum(_MINIMUM_COUNT, true_positives + false_negatives)
    rows = (true_positives, false_positives, true_negatives, false_negatives, precision, recall)
    return np.stack(rows).astype(np.float32)


def write_pr_curves(
    writer: tf.summary.SummaryWriter, curves: Mapping[str, np.ndarray], step: int
) -> None:
    """Writes precision-recall curves for TensorBoard's PR Curves dashboard, all in one event
    (`pr_curves_summary`; `write_summary` writes them with other values in one event).

    Args:
        writer: where the curves go (an app's eval writer).
        curves: `{tag: counts}`, the tag the curve's name in the dashboard, the counts
            `[2, num_thresholds]` of true and false examples per probability bucket (a
            `common.summaries.metrics.PRCurveCounts` result, or `pr_curve_counts`).
        step: the step the curves are stamped with.
    """
    write_summary(writer, pr_curves_summary(curves), step)


def pr_curves_summary(curves: Mapping[str, np.ndarray]) -> summary_pb2.Summary:
    """Precision-recall curves for TensorBoard's PR Curves dashboard, one value each, from
    `{tag: counts}` as `write_pr_curves` takes them.

    TensorFlow 2 has no PR-curve summary op: `pr_curve_from_counts` computes what the plugin's
    `pb` would (its counts, precision and recall at each threshold), and the plugin's own
    `raw_data_pb` makes the summary value of them, its metadata included (0.06 ms a curve, 0.03
    more than building the value here did; mnist_mlp writes ten an eval, on the eval summaries'
    own thread). Written by one `write_raw_pb` for every curve (`write_summary`), as
    `write_histograms` does for histograms: TensorBoard reads each value of an event as its tag.
    """
    summary = summary_pb2.Summary()
    for tag, counts in curves.items():
        rows = pr_curve_from_counts(counts)
        curve = pr_curve_summary.raw_data_pb(tag, *rows, num_thresholds=rows.shape[1])
        # raw_data_pb's value is TensorFlow's proto class, tagged `<tag>/pr_curves` as TF1's op
        # named it: copied across, under the curve's own tag, as the dashboard has always had it.
        value = summary.value.add()
        value.ParseFromString(curve.value[0].SerializeToString())
        value.tag = tag
    return summary
