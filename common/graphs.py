"""One-time graph logging: the op graph of the train step, the Keras graph, the model summary.

Why this module exists: `tf.summary.trace_on(graph=True)` records a `tf.function`'s graph only while
the function is *traced*, i.e. on its first execution for a given input signature. Turn tracing on
around a function that already ran and `trace_export` writes a few unrelated fragments and no error.
So `trace_step_graph` runs the step for its first time inside the trace window, checks with the
function's tracing count that it really was traced there, and otherwise falls back to
`tf.summary.graph` of the step's concrete function, which needs no timing, with a warning. An
XLA-compiled step (`jit_compile=True`) exports no graph through a trace at all, so for it the
concrete function's graph is written directly.

The graph is that of the real step (forward pass, loss, gradients, optimizer update), and the call
is the run's first real training step: the graph costs no extra execution and no retrace.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf
from absl import logging
from tensorboard.compat.proto import summary_pb2
from tensorflow.python.eager import context  # For disable_graph_collection; see _finish_trace.

from common.summaries import markdown_code_block

# The plugin name under which TensorBoard's Graphs dashboard looks for a Keras model's JSON config
# (its "conceptual graph"); see tensorboard/plugins/graph/metadata.py.
KERAS_MODEL_PLUGIN_NAME = "graph_keras_model"
# Tag prefixes. The Graphs dashboard opens on a run's first tag in sorted order and asks for its
# *op* graph; if that tag holds only a conceptual graph it shows "Graph visualization failed".
# "graph/..." sorts before "keras/...", so it opens on the step's op graph. (One tag cannot hold
# both: TensorBoard keeps one plugin per tag, and the second is lost.)
OP_GRAPH_TAG_PREFIX = "graph/"
KERAS_GRAPH_TAG_PREFIX = "keras/"


def trace_step_graph(
    step_function: Callable[..., Any],
    args: Sequence[Any],
    writer: tf.summary.SummaryWriter,
    name: str = "train_step",
    step: int = 0,
) -> Any:
    """Runs `step_function(*args)` and writes the op graph that it runs to `writer`.

    Call it for the step's first execution, before the training loop, so tracing happens inside
    the trace window. Build the model and the optimizer first (`optimizer.build(variables)`): a
    step that creates variables is traced twice and its graph is cluttered with initializers.

    Args:
        step_function: a `tf.function`. Plain Python or eager code has no graph to record.
        args: the positional arguments of its first call (a real batch).
        writer: where to write the graph (the train writer).
        name: the step's name; its graph's tag in the Graphs dashboard is `graph/<name>`.
        step: the summary step to stamp it with.

    Returns:
        Whatever `step_function(*args)` returns.

    Raises:
        TypeError: if `step_function` is not a `tf.function`.
    """
    if not hasattr(step_function, "experimental_get_tracing_count"):
        raise TypeError(
            f"trace_step_graph needs a tf.function, got {type(step_function).__name__}: "
            "eager code exports one-op fragments, not a graph"
        )
    if getattr(step_function, "_jit_compile", False):
        # An XLA-compiled function runs as one cluster: trace_export records no graph of it at
        # all (0 function graphs). Its concrete function's graph holds the ops as written.
        outputs = step_function(*args)
        _write_concrete_graph(step_function, args, writer)
        return outputs
    tracing_count_before = step_function.experimental_get_tracing_count()
    tf.summary.trace_on(graph=True, profiler=False)
    try:
        outputs = step_function(*args)
    except BaseException:
        _finish_trace(writer=None)
        raise
    if step_function.experimental_get_tracing_count() > tracing_count_before:
        _finish_trace(writer, name=OP_GRAPH_TAG_PREFIX + name, step=step)
    else:
        _finish_trace(writer=None)
        logging.warning(
            "%s had already run with these input shapes, so trace_on/trace_export would record "
            "an empty graph; writing the graph of its concrete function instead.",
            name,
        )
        _write_concrete_graph(step_function, args, writer)
    return outputs


def _write_concrete_graph(
    step_function: Callable[..., Any], args: Sequence[Any], writer: tf.summary.SummaryWriter
) -> None:
    """Writes the graph of the function's existing concrete function (no retrace) as the run's
    graph: TensorBoard shows it as the run-level op graph, with no tag."""
    with writer.as_default():
        tf.summary.graph(step_function.get_concrete_function(*args).graph)


def _finish_trace(
    writer: tf.summary.SummaryWriter | None, name: str = "discarded", step: int = 0
) -> None:
    """Exports what the trace collected to `writer` (or drops it if None) and stops collecting.

    `tf.summary.trace_off()` alone keeps what was collected, and the next `trace_export` would write
    it beside its own graphs; exporting into a no-op writer is the public way to drop it.
    """
    with (writer or tf.summary.create_noop_writer()).as_default():
        tf.summary.trace_export(name=name, step=step)
    # trace_export ends with trace_off(), which in TF 2.21 disables run metadata but leaves graph
    # collection on (its comment says the one implies the other; it does not): every function
    # instantiated afterwards would be collected for the rest of the run and land in the next
    # export. There is no public call for this, so use the eager context's, if it is there.
    disable_graph_collection = getattr(context.context(), "disable_graph_collection", None)
    if disable_graph_collection is not None:
        disable_graph_collection()


def write_keras_graph(
    model: keras.Model, writer: tf.summary.SummaryWriter, step: int = 0, tag: str | None = None
) -> None:
    """Writes the model's conceptual graph (its layers) for TensorBoard's Graphs dashboard.

    Keras 3's TensorBoard callback no longer writes it; this writes the same summary that Keras 2's
    did: the model's JSON config under plugin name `graph_keras_model`.
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = KERAS_MODEL_PLUGIN_NAME
    metadata.plugin_data.content = b"1"  # The format version the Graphs plugin accepts.
    with writer.as_default():
        tf.summary.write(
            tag=tag or KERAS_GRAPH_TAG_PREFIX + model.name,
            tensor=tf.constant(model.to_json()),
            step=step,
            metadata=metadata.SerializeToString(),
        )


def model_summary_text(model: keras.Model, line_length: int = 100) -> str:
    """Returns `model.summary()` as a string (the method itself prints and returns None)."""
    pieces: list[str] = []
    # Keras 3 renders the table with `rich`, whose capture console takes its width from $COLUMNS
    # (80 when unset) and silently drops the columns that do not fit, "Param #" first.
    saved_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(line_length)
    try:
        model.summary(line_length=line_length, print_fn=lambda text, **_: pieces.append(text))
    finally:
        if saved_columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved_columns
    return "\n".join(pieces)


def write_model_summary(
    model: keras.Model, writer: tf.summary.SummaryWriter, step: int = 0, tag: str | None = None
) -> None:
    """Writes `model.summary()` to TensorBoard's Text dashboard as a Markdown code block."""
    with writer.as_default():
        tf.summary.text(
            tag or f"model_summary/{model.name}",
            markdown_code_block(model_summary_text(model)),
            step=step,
        )


def trace_and_write_graphs(
    step_function: Callable[..., Any],
    args: Sequence[Any],
    models: Sequence[keras.Model],
    writer: tf.summary.SummaryWriter,
    name: str = "train_step",
    step: int = 0,
) -> Any:
    """Writes every graph view of a run once: the step's op graph, and each model's conceptual
    graph and summary text. Runs the step (see `trace_step_graph`) and returns its outputs.
    """
    for model in models:
        write_keras_graph(model, writer, step=step)
        write_model_summary(model, writer, step=step)
    return trace_step_graph(step_function, args, writer, name=name, step=step)
