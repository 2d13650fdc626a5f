"""Histograms for TensorBoard's Histograms dashboard: of any values (`write_histograms`), and of
a model's variables and gradients, tagged by their paths (`write_variable_histograms`)."""

import collections
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from common.summaries.writers import tensor_proto, write_summary

HISTOGRAM_BUCKETS = 30  # TensorBoard's default.
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)
_HISTOGRAM_METADATA = histogram_metadata.create_summary_metadata(
    display_name=None, description=None
)


def histogram_buckets(values: np.ndarray, bucket_count: int = HISTOGRAM_BUCKETS) -> np.ndarray:
    """The Histograms dashboard's tensor for `values` (any shape): `[bucket_count, 3]` float64
    rows of (left edge, right edge, count), equal-width buckets from the minimum to the maximum,
    as TensorBoard's `histogram_pb` and `tf.summary.histogram` make them (a value's bucket is
    `floor((value - min) / width)`, the maximum's clamped into the last; one value repeated:
    every edge at it, all counted last); no values: no buckets. NaN and infinite values are left
    out (they turn the library's whole histogram into NaNs; a run stops on them anyway, at its
    next loss or weights check). tests/test_common_summaries.py holds it equal to `histogram_pb`.
    """
    # Ours, not histogram_pb's: its one-hot of every value takes 2.3 ms (ours 0.16) for
    # mnist_mlp's weights and peaks at 70 MB per 1M values (ours 17), at every eval (2 CPU cores).
    values = np.asarray(values, np.float64).ravel()
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    if not values.size:
        return np.zeros([0, 3])
    low, high = values.min(), values.max()
    if low == high:
        counts = np.zeros(bucket_count)
        counts[-1] = values.size
        edges = np.full(bucket_count + 1, low)
    else:
        # Offsets are >= 0, so truncation is the floor.
        indices = ((values - low) / ((high - low) / bucket_count)).astype(np.intp)
        np.minimum(indices, bucket_count - 1, out=indices)
        counts = np.bincount(indices, minlength=bucket_count)
        edges = np.linspace(low, high, bucket_count + 1)
        edges[-1] = high  # As TensorBoard does: the last edge is the maximum, not a rounding of it.
    return np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)


def write_histograms(
    writer: tf.summary.SummaryWriter,
    histograms: Mapping[str, tf.Tensor | np.ndarray],
    step: int,
    scalars: Mapping[str, float] | None = None,
) -> None:
    """Writes a histogram of each `tag: values` (any shape) and each `tag: scalar` at `step`,
    all in one event: one op, not one per tag.

    What `tf.summary.histogram` would write, at a fraction of the cost: it buckets with a one-hot
    of every value (a 784x64 kernel: a 12 MB float64 tensor) under two `tf.cond`s, about 2 ms a
    histogram eagerly (29 ms for mnist_mlp's four variables), and inside a `tf.function` seconds
    to trace a dozen; TensorBoard's NumPy `histogram_pb` 2.3 ms, `histogram_buckets` 0.16 ms.

    Each eager `tf.summary.write` is an op of its own, 0.15 ms on 2 CPU cores (twice that while
    training runs beside it): 34 histograms of 64x64 values took 10.7 ms written one by one, 1.7
    ms in one `Summary`. TensorBoard reads every value of an event as its own tag.
    """
    summary = summary_pb2.Summary()
    for tag, values in histograms.items():
        summary.value.add(
            tag=tag, metadata=_HISTOGRAM_METADATA, tensor=tensor_proto(histogram_buckets(values))
        )
    for tag, value in (scalars or {}).items():
        summary.value.add(
            tag=tag, metadata=_SCALAR_METADATA, tensor=tensor_proto(np.float32(value))
        )
    write_summary(writer, summary, step)


def variable_tags(
    variables: Sequence[tf.Variable], models: Sequence[keras.Model] = ()
) -> list[str]:
    """One tag per variable, unique: its Keras path (`hidden/kernel`) where no other variable has
    that path, and, where several do (two models, or a model and its sub-model, with layers of
    the same name), the path of models down to it before it: `generator/dense/kernel`,
    `outer/encoder/dense/kernel`, the models named as in `models` and their nested sub-models.

    Args:
        variables: the variables to name; the same variable twice gets the same tag.
        models: the models that hold them (the state's): needed only when paths collide.

    Raises:
        ValueError: if paths collide and `models` do not tell the variables apart (not given,
            or models and sub-models of one name): a histogram would overwrite another.
    """
    paths = collections.Counter(
        variable.path for variable in {id(v): v for v in variables}.values()
    )
    # The models' walk only when needed: most runs' paths are all unique.
    owners = _owning_models(models) if max(paths.values(), default=0) > 1 else {}
    tags, taken = [], {}
    for variable in variables:
        tag = variable.path
        if paths[tag] > 1 and id(variable) in owners:
            tag = f"{owners[id(variable)]}/{variable.path}"
        if taken.setdefault(tag, id(variable)) != id(variable):
            raise ValueError(
                f"two variables would share the histogram tag {tag!r}: "
                + (
                    "pass models= (the models that hold them), so their tags name their model"
                    if not models
                    else "give the models (and sub-models) that hold them different names"
                )
            )
        tags.append(tag)
    return tags


def _owning_models(models: Sequence[keras.Model]) -> dict[int, str]:
    """`{id(variable): "model/sub_model/..."}`: the innermost model holding each variable, by
    the path of model names down to it."""
    owners: dict[int, str] = {}

    def visit(model: keras.Model, path: str) -> None:
        for variable in model.variables:  # Sub-models below claim theirs again, deeper.
            owners[id(variable)] = path
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                visit(layer, f"{path}/{layer.name}")

    for model in models:
        visit(model, model.name)
    return owners


def write_variable_histograms(
    writer: tf.summary.SummaryWriter,
    variables: Sequence[tf.Variable],
    step: int,
    values: Sequence[np.ndarray | tf.Tensor] | None = None,
    gradients: Sequence[np.ndarray | tf.Tensor | None] | None = None,
    models: Sequence[keras.Model] = (),
) -> None:
    """Writes one histogram per variable of its `values` (default: its value now), tagged by its
    Keras path (`weights/hidden/kernel`; see `variable_tags` for paths that collide); with
    `gradients` (one per variable, None for one that has none, as a non-trainable batch-norm
    statistic), one of each gradient (`gradients/hidden/kernel`) and their global norm as the
    scalar `gradients/global_norm`, what Keras's `write_grads` once showed. All in one event (see
    `write_histograms`).

    Raises:
        ValueError: if two variables would get one tag (see `variable_tags`).
    """
    if values is None:
        values = [variable.numpy() for variable in variables]
    tags = variable_tags(variables, models)
    histograms = {f"weights/{tag}": value for tag, value in zip(tags, values, strict=True)}
    scalars = {}
    if gradients is not None:
        arrays = [None if gradient is None else np.asarray(gradient) for gradient in gradients]
        for tag, gradient in zip(tags, arrays, strict=True):
            if gradient is not None:
                histograms[f"gradients/{tag}"] = gradient
        squares = sum(np.sum(np.square(gradient)) for gradient in arrays if gradient is not None)
        scalars["gradients/global_norm"] = np.sqrt(squares)
    write_histograms(writer, histograms, step, scalars=scalars)
