"""Summary writers for `<logdir>/train` and `<logdir>/eval`, and small helpers around them.

Train and eval write to sibling directories with the same tag names (`loss`, `accuracy`), so
TensorBoard treats them as two runs and overlays their curves on one chart per tag.

Paths go through `tf.io.gfile`, so a logdir may also be a cloud bucket (`gs://...`) on a cluster.
"""

import collections
import dataclasses
import functools
import re
import struct
import zlib
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.pr_curve import metadata as pr_curve_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from common.logdir.prepare import prepare_logdir
from common.logdir.trim import write_restart_markers
from common.loop import tracing
from common.loop.background import BackgroundWork


@dataclasses.dataclass(frozen=True)
class SummaryWriters:
    """The train and eval writers of one run, and the thread that writes its eval summaries.

    The writers take writes from any thread: TensorFlow's default writer and step are per thread,
    so a job on `background` names its writer and step itself (`writer.as_default(step=step)`).
    """

    logdir: str
    train: tf.summary.SummaryWriter
    eval: tf.summary.SummaryWriter
    background: BackgroundWork = dataclasses.field(default_factory=BackgroundWork)

    def flush(self) -> None:
        """Flushes both writers, so TensorBoard sees everything written so far (on the background
        thread too: not what it has yet to write; `background.wait()` waits for that)."""
        self.train.flush()
        self.eval.flush()

    def close(self) -> None:
        """Waits for the background thread, then flushes and closes both writers (also when a
        background job failed: its error is raised after)."""
        try:
            self.background.close()
        finally:
            self.train.close()
            self.eval.close()


def create_writers(logdir: str, first_step: int = 0) -> SummaryWriters:
    """Checks `logdir` (see `prepare_logdir`) and opens writers on `<logdir>/train` and `/eval`.

    A new writer appends a new event file beside any earlier ones; see
    `common.logdir.trim.trim_events_after` for keeping a resumed run's curves clean in the files,
    and `write_restart_markers` (which each new file begins with) for keeping them clean in a
    TensorBoard that is already showing them.

    Args:
        logdir: the run's directory.
        first_step: the first step this run writes: 0 for a new run, S + 1 for one resumed from
            the checkpoint of step S.
    """
    prepare_logdir(logdir)
    writers = SummaryWriters(
        logdir=logdir,
        train=tf.summary.create_file_writer(f"{logdir}/train"),
        eval=tf.summary.create_file_writer(f"{logdir}/eval"),
    )
    write_restart_markers(writers.train, first_step)
    write_restart_markers(writers.eval, first_step)
    return writers


def write_hparams(logdir: str, settings: dict[str, object]) -> None:
    """Logs a run's settings for TensorBoard's HParams dashboard, at the run's root.

    The root makes the run an HParams "session" whose metrics are the scalars of its `train/` and
    `eval/` runs (groups `train` and `eval`): several runs of an app under one parent logdir then
    compare in one table, with no experiment-wide configuration to write first. Settings that are
    None are logged as ''; other non-scalar values are left out.

    The trial id, which the dashboard's table shows in a narrow Trial ID column cut after about 14
    characters, is the logdir's last folder first and then its parent, `lr_3e-4_h32
    (logs/sweep_mnist)`: runs side by side differ at the start, and two runs in folders of the same
    name under different parents still get different ids (runs of one id would be merged as one
    trial).
    """
    values = {
        name: "" if value is None else value
        for name, value in settings.items()
        if value is None or isinstance(value, bool | int | float | str)
    }
    writer = tf.summary.create_file_writer(logdir)
    # A run killed before its first checkpoint starts over and writes these again, at step 0.
    write_restart_markers(writer, 0)
    with writer.as_default():
        hparams_api.hparams(values, trial_id=trial_id(logdir))
    writer.close()


def trial_id(logdir: str) -> str:
    """`logs/sweep_mnist/lr_3e-4_h32` -> `lr_3e-4_h32 (logs/sweep_mnist)`; `run` -> `run`."""
    parent, _, name = logdir.rstrip("/").rpartition("/")
    return f"{name} ({parent})" if parent else name


class ScalarWriter:
    """Writes a run's scalars to one writer, at each boundary, in one `tf.function` call once
    past a run's first 20 boundaries.

    One eager `tf.summary.scalar` costs about 0.2 ms on 2 CPU cores, as much as a whole
    `tf.function` call: regression_tape's twelve train scalars take 2.5 ms a boundary eagerly,
    0.5 ms in one call, which takes 20 ms to trace (without AutoGraph; 60 ms with it). The first
    20 writes run eagerly, the rest in the function (`tracing.EagerThenTraced`), traced once per
    set of names. The function is this object's, made for its writer: create one per writer per
    run, e.g.
    `write_train_scalars = ScalarWriter(writers.train)`, then at every boundary
    `write_train_scalars({"loss": 0.31, "learning_rate": 0.001}, step)`.
    """

    def __init__(self, writer: tf.summary.SummaryWriter) -> None:
        """Builds the function; nothing is traced until the first call.

        Args:
            writer: where the scalars go.
        """
        self.writer = writer
        # Traced through tracing.per_run_function: TensorFlow would count every run's writer as
        # retracing one function (see common/loop/tracing.py).
        self._write = tracing.EagerThenTraced(functools.partial(write_scalars, writer))

    def __call__(self, scalars: dict[str, float], step: int) -> None:
        """Writes each `name: value` as a scalar at `step`."""
        # Tensors, not Python numbers: a new number would be a new trace.
        values = {name: tf.constant(value, tf.float32) for name, value in scalars.items()}
        self._write(values, tf.constant(step, tf.int64))

    @property
    def tracing_count(self) -> int:
        """How often this writer's `tf.function` was traced: 0 for its first 20 calls (eager),
        then once per set of names written."""
        return self._write.tracing_count


def write_scalars(
    writer: tf.summary.SummaryWriter,
    scalars: dict[str, float | tf.Tensor],
    step: int | tf.Tensor,
) -> None:
    """Writes each `name: value` as a scalar at `step`: eagerly for a one-off write, or inside a
    `ScalarWriter`'s function (a loop writes at every boundary through its `ScalarWriter`)."""
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)


def markdown_code_block(text: str) -> str:
    """Wraps text in a fenced Markdown code block, so TensorBoard's Text tab keeps its layout."""
    return f"```\n{text.rstrip()}\n```"


def markdown_table(rows: dict[str, object]) -> str:
    """Renders `name: value` pairs as a two-column Markdown table (TensorBoard renders tables)."""
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows.items()]
    return "\n".join(lines)


HISTOGRAM_BUCKETS = 30  # TensorBoard's default.
_IMAGE_METADATA = image_metadata.create_summary_metadata(display_name=None, description=None)
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)
_HISTOGRAM_METADATA = histogram_metadata.create_summary_metadata(
    display_name=None, description=None
)


def histogram_buckets(values: np.ndarray, bucket_count: int = HISTOGRAM_BUCKETS) -> np.ndarray:
    """The Histograms dashboard's tensor for `values` (any shape): `[bucket_count, 3]` float64
    rows of (left edge, right edge, count), equal-width buckets from the minimum to the maximum,
    as `tf.summary.histogram` makes them; one value repeated: every edge at it, all counted last;
    no values: no buckets. NaN and infinite values are left out (tf.summary.histogram turns the
    whole histogram into NaNs; a run stops on them anyway, at its next loss or weights check).

    TensorBoard's own bucketing (`summary_v2._buckets`), in NumPy: a value's bucket is
    `floor((value - min) / width)`, the maximum's clamped into the last. `np.histogram` would
    put some values on a bucket's edge in the other bucket, and takes four times as long (1.2 ms
    against 0.3 ms for a 256x256 kernel on 2 CPU cores).
    """
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
    histogram eagerly, and inside a `tf.function` seconds to trace a dozen; NumPy buckets a small
    model's variable in microseconds (`histogram_buckets`).

    Each eager `tf.summary.write` is an op of its own, 0.15 ms on 2 CPU cores (twice that while
    training runs beside it): 34 histograms of 64x64 values took 10.7 ms written one by one with
    `np.histogram`'s buckets, 1.7 ms in one `Summary` with these. TensorBoard reads every value
    of an event as its own tag.
    """
    summary = summary_pb2.Summary()
    for tag, values in histograms.items():
        summary.value.add(
            tag=tag, metadata=_HISTOGRAM_METADATA, tensor=_tensor_proto(histogram_buckets(values))
        )
    for tag, value in (scalars or {}).items():
        summary.value.add(
            tag=tag, metadata=_SCALAR_METADATA, tensor=_tensor_proto(np.float32(value))
        )
    write_summary(writer, summary, step)


def write_summary(
    writer: tf.summary.SummaryWriter, summary: summary_pb2.Summary, step: int
) -> None:
    """Writes every value of `summary` at `step` as one event, in one op (`write_raw_pb`), and
    flushes `writer` once (as every writer scope does when it ends)."""
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


_PROTO_DTYPES = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
}


def _tensor_proto(array: np.ndarray | np.floating) -> tensor_pb2.TensorProto:
    """A float32 or float64 array as the `TensorProto` `tf.summary.write` would store, built
    directly: `tf.make_tensor_proto` takes 30 us a call to get there."""
    array = np.asarray(array)
    dimensions = [tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    return tensor_pb2.TensorProto(
        dtype=_PROTO_DTYPES[array.dtype],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dimensions),
        tensor_content=array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(),
    )


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


def scalars_layout(charts: Mapping[str, Mapping[str, Sequence[str]]]) -> layout_pb2.Layout:
    """A Custom Scalars layout: `{category: {chart title: [scalar tags drawn together]}}`.

    Each tag is matched whole (`loss` is not `reconstruction_loss`), in every run that has it, so
    a chart of `loss` draws the train and eval curves together. TensorBoard merges the layouts of
    all runs by category title: name a category after its app, so two apps in one logdir keep
    their charts apart.
    """
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title=category,
                chart=[
                    layout_pb2.Chart(
                        title=title,
                        multiline=layout_pb2.MultilineChartContent(
                            tag=[f"^{re.escape(tag)}$" for tag in tags]
                        ),
                    )
                    for title, tags in category_charts.items()
                ],
            )
            for category, category_charts in charts.items()
        ]
    )


def write_scalars_layout(writer: tf.summary.SummaryWriter, layout: layout_pb2.Layout) -> None:
    """Writes `layout` for the Custom Scalars dashboard, at step 0: once, at a run's start.

    The plugin has no TF2 summary op; this writes what its `summary.pb` would, as a TF2 summary.
    """
    with writer.as_default(step=0):
        tf.summary.write(
            custom_scalar_metadata.CONFIG_SUMMARY_TAG,
            tf.constant(layout.SerializeToString()),
            metadata=custom_scalar_metadata.create_summary_metadata(),
        )


PR_CURVE_THRESHOLDS = 201  # The PR Curves plugin's default.
_MINIMUM_COUNT = 1e-7  # The plugin's: no division by zero where nothing is predicted true.


def pr_curve_data(
    labels: np.ndarray, probabilities: np.ndarray, num_thresholds: int = PR_CURVE_THRESHOLDS
) -> np.ndarray:
    """The PR Curves dashboard's tensor: `[6, num_thresholds]` float32 rows of true positives,
    false positives, true negatives, false negatives, precision and recall at evenly spaced
    thresholds on the probability, computed as the plugin's own `pr_curve.summary.pb` does."""
    return pr_curve_from_counts(pr_curve_counts(labels, probabilities, num_thresholds))


def pr_curve_counts(
    labels: np.ndarray, probabilities: np.ndarray, num_thresholds: int = PR_CURVE_THRESHOLDS
) -> np.ndarray:
    """`[2, num_thresholds]` float64 counts of true (row 0) and false (row 1) examples in each
    probability bucket, `floor(probability * (num_thresholds - 1))`, as the plugin's `pb`
    buckets them: what `common.summaries.metrics.PRCurveCounts` counts in a graph, batch by
    batch."""
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
    predicted true."""
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
    `pb` would (its counts, precision and recall at each threshold), written with the plugin's
    metadata. (The plugin's `pb` itself builds TF1 protos first: 0.65 ms a curve here, against
    0.2 ms for an eager `tf.summary.write` of the tensor.) Written by one `write_raw_pb` for every
    curve (`write_summary`), as `write_histograms` does for histograms: TensorBoard reads each
    value of an event as its tag.
    """
    summary = summary_pb2.Summary()
    for tag, counts in curves.items():
        data = pr_curve_from_counts(counts)
        metadata = pr_curve_metadata.create_summary_metadata(
            display_name=tag, description="", num_thresholds=data.shape[1]
        )
        summary.value.add(tag=tag, metadata=metadata, tensor=_tensor_proto(data))
    return summary


def images_summary(images: Mapping[str, np.ndarray]) -> summary_pb2.Summary:
    """`{tag: image}` for TensorBoard's Images dashboard, one value each, as `write_image` writes
    them (PNG-encoded by `encode_png`), for `write_summary` to write in one event with others:
    each eager `tf.summary.write` is an op of its own, and each writer scope a flush."""
    summary = summary_pb2.Summary()
    for tag, image in images.items():
        strings = _image_strings(image)
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(strings))]
            ),
            string_val=strings,
        )
        summary.value.add(tag=tag, metadata=_IMAGE_METADATA, tensor=tensor)
    return summary


def write_image(tag: str, images: np.ndarray, step: int | None = None) -> None:
    """`tf.summary.image(tag, images, step, max_outputs=len(images))` for one [height, width,
    channels] uint8 image or several [k, height, width, channels] (1 channel: grey, 3: RGB), to
    the default writer, PNG-encoded by `encode_png` (see there: faster than Pillow and
    `tf.io.encode_png`)."""
    tensor = tf.constant(_image_strings(images))
    tf.summary.write(tag, tensor, step=step, metadata=_IMAGE_METADATA)


def _image_strings(images: np.ndarray) -> list[bytes]:
    """The Images plugin's tensor for one image or several (see `write_image`): width, height,
    then each image's PNG, as strings."""
    images = np.asarray(images, np.uint8)
    images = images[None] if images.ndim == 3 else images
    height, width = images.shape[1:3]
    return [str(width).encode(), str(height).encode(), *(encode_png(image) for image in images)]


def encode_png(image: np.ndarray) -> bytes:
    """A [height, width, channels] uint8 image (1 channel: grey, 2: grey and alpha, 3: RGB, 4:
    RGBA, as `tf.summary.image` takes) as PNG bytes: its rows unfiltered, deflated at zlib's
    fastest level.

    Pillow, even at its fastest compression, tries every PNG filter on every row to keep the
    best, which is half its time on mnist_mlp's pictures for PNGs of the same size within 1.2%:
    flat drawings and digits compress as well unfiltered (2 CPU cores: a 272x448 grey grid 0.95
    -> 0.42 ms, a 278x278 RGB confusion matrix 1.56 -> 0.66 ms, the 896x896 sprite 13 -> 7 ms).
    The VAE's heatmaps, smoother, come out about 6% larger than Pillow's (three 260x256 RGB of
    noisy sine windows: 47.6 against 45.1 KB, in 1.8 ms against 3.9); photographs would grow
    more, and nothing here writes them.
    `tf.io.encode_png`'s default takes three to five times as long, for PNGs a tenth to a fifth
    smaller.

    Raises:
        ValueError: for any other shape.
    """
    image = np.asarray(image, np.uint8)
    if image.ndim != 3 or image.shape[-1] not in _PNG_COLOR_TYPES:
        raise ValueError(f"an image must be [height, width, 1 to 4 channels], got {image.shape}")
    height, width, channels = image.shape
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # Each row: filter 0 (none), pixels.
    rows[:, 1:] = image.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _png_chunk(b"IEND", b""),
        ]
    )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # Grey, grey and alpha, RGB, RGBA; 8 bits each.


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: its length, type, data and the CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
