"""The writers of a run and the writes every summary goes through.

`SummaryWriters`: the train and eval writers of `<logdir>/train` and `<logdir>/eval`, and the
thread that writes the eval summaries; `create_writers` opens them. `ScalarWriter` and
`write_scalars`: a boundary's scalars. `write_summary`: many values of any plugin in one event,
with `tensor_proto` building their tensors.

Train and eval write to sibling directories with the same tag names (`loss`, `accuracy`), so
TensorBoard treats them as two runs and overlays their curves on one chart per tag.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from common import tracing
from common.logdir.prepare import prepare_logdir
from common.logdir.trim import write_restart_markers
from common.summaries.background import BackgroundWork


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

    A new writer appends a new event file beside any earlier ones; see `trim_events_after` for
    keeping a resumed run's curves clean in the files, and `write_restart_markers` (which each
    new file begins with) for keeping them clean in a TensorBoard that is already showing them.

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
        # retracing one function (see common/tracing.py).
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


def tensor_proto(array: np.ndarray | np.floating) -> tensor_pb2.TensorProto:
    """A float32 or float64 array as the `TensorProto` `tf.summary.write` would store, built
    directly: `tf.make_tensor_proto` takes 30 us a call to get there."""
    array = np.asarray(array)
    dimensions = [tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    return tensor_pb2.TensorProto(
        dtype=_PROTO_DTYPES[array.dtype],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dimensions),
        tensor_content=array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(),
    )
