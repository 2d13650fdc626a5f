"""One-time graph logging: the op graph of the train step, the Keras graph, the model summary.

Why this module exists: `tf.summary.trace_on(graph=True)` records a `tf.function`'s graph only while
the function is *traced*, i.e. on its first execution for a given input signature. Turn tracing on
around a function that already ran and `trace_export` writes a few unrelated fragments and no error.
So `trace_step_graph` runs the step for its first time inside the trace window, checks with the
function's tracing count that it really was traced there, once, and otherwise (not traced: it
ran before; traced twice: it created variables) falls back to `tf.summary.graph` of the step's
concrete function, which needs no timing, with a warning. An
XLA-compiled step (`jit_compile=True`) exports no graph through a trace at all, so for it the
concrete function's graph is written directly.

The graph is that of the real step (forward pass, loss, gradients, optimizer update), and the call
is the run's first real training step: the graph costs no extra execution and no retrace.
"""

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf
from absl import logging
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.graph import keras_util
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
    step that creates variables is traced twice, its trace cluttered with initializers, so then
    (as for a step that already ran) its concrete function's graph is written instead, as the
    run-level graph, and one warning says why. Nothing is written to any writer but `writer`.

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
    traces = step_function.experimental_get_tracing_count() - tracing_count_before
    if traces == 1:
        _finish_trace(writer, name=OP_GRAPH_TAG_PREFIX + name, step=step)
        return outputs
    _finish_trace(writer=None)
    if traces == 0:
        logging.warning(
            "%s had already run with these input shapes, so trace_on/trace_export would record "
            "an empty graph; writing the graph of its concrete function instead.",
            name,
        )
    else:
        # tf.function traces a function that creates variables twice (once to create them, once
        # to run without creating them), and the trace holds both, with every initializer as a
        # one-op graph: 15 to 21 function graphs for a small MLP. The second trace is the step.
        logging.warning(
            "%s created variables on its first call (an optimizer not yet built?), so it was "
            "traced %d times and its trace is cluttered with their initializers; writing the "
            "graph of its concrete function instead. Build them before the first step, e.g. "
            "optimizer.build(model.trainable_variables), to get the graph as %s%s.",
            name,
            traces,
            OP_GRAPH_TAG_PREFIX,
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
    it beside its own graphs, so it is dropped by an export that records nothing. Not an export
    into `tf.summary.create_noop_writer()`: its `as_default()` does not replace the default writer,
    so the export went to the caller's own default writer, if it had one. `record_if(False)` holds
    for this thread only, and the export still drains what was collected.
    """
    if writer is None:
        with tf.summary.record_if(False):
            tf.summary.trace_export(name=name, step=step)
    else:
        with writer.as_default():
            tf.summary.trace_export(name=name, step=step)
    # trace_export ends with trace_off(), which in TF 2.21 disables run metadata but leaves graph
    # collection on (its comment says the one implies the other; it does not): every function
    # instantiated afterwards would be collected for the rest of the run and land in the next
    # export. There is no public call for this, so use the eager context's, if it is there.
    disable_graph_collection = getattr(context.context(), "disable_graph_collection", None)
    if disable_graph_collection is not None:
        disable_graph_collection()


def keras_graph_config(model: keras.Model) -> dict[str, Any]:
    """`model.to_json()`, parsed, in the shape TensorBoard's Graphs plugin reads (`keras_util`).

    Keras 3 writes a model's inputs and outputs as it was built: a dict for named inputs or
    outputs (`{"score": ["score", 0, 0]}`), where keras_util indexes a list (`KeyError: 0`, an
    HTTP 500 for the dashboard); and a layer called on a dict of tensors (a sub-model with named
    inputs) lists them in a dict that keras_util does not look into, so the edges into it are
    lost. Here, in every model of the config, nested ones included:

    - `output_layers` of a dict (any nesting) becomes the list of its layer references, in the
      order Keras numbers a model's outputs (`keras.tree.flatten`: dict keys sorted), so a
      reference `[sub_model, 0, i]` still names its output i;
    - `input_layers` of more than one input becomes the list of their layer names, the form
      keras_util links a nested model's inputs by (it names them by the list's items);
    - a layer call's tensors inside dicts (or keyword arguments) become one list of them, in
      that same order.

    A model of one input, no dicts anywhere, is left as Keras wrote it (byte for byte: the apps'
    models). A list of inputs drew at the top level before, but a sub-model's was drawn with its
    inputs cut off from the layers feeding them; now they are linked. The result is for drawing
    only, not for `model_from_json`.
    """
    config = json.loads(model.to_json())
    _normalize_layer(config)
    return config


def _keras_graph_json(model: keras.Model, config: dict[str, Any]) -> str:
    """`config` as JSON: `model.to_json()` itself when normalizing changed nothing."""
    written = model.to_json()
    return written if json.loads(written) == config else json.dumps(config)


def _normalize_layer(layer: dict[str, Any]) -> None:
    """Normalizes one layer's config in place (see `keras_graph_config`), then its layers'."""
    layer_config = layer.get("config") or {}
    outputs = layer_config.get("output_layers")
    if outputs is not None and not _is_layer_reference(outputs) and isinstance(outputs, dict):
        layer_config["output_layers"] = _layer_references(outputs)
    inputs = layer_config.get("input_layers")
    if inputs is not None and not _is_layer_reference(inputs):
        references = _layer_references(inputs)
        layer_config["input_layers"] = [reference[0] for reference in references]
    for node in layer.get("inbound_nodes") or []:
        if not isinstance(node, dict):
            continue
        arguments = node.get("args", [])
        keyword_tensors = _keras_tensors(node.get("kwargs", {}))
        if keyword_tensors or any(not _is_flat_argument(argument) for argument in arguments):
            node["args"] = [_keras_tensors(arguments) + keyword_tensors]
    for sublayer in layer_config.get("layers") or []:
        if isinstance(sublayer, dict):
            _normalize_layer(sublayer)


def _is_layer_reference(value: Any) -> bool:
    """True for `[layer name, node index, tensor index]`, how a config names a layer's output."""
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and all(isinstance(index, int) for index in value[1:])
    )


def _leaves(structure: Any, is_leaf: Callable[[Any], bool]) -> list[Any]:
    """The items of a nested structure that `is_leaf`, in `keras.tree.flatten`'s order (dict keys
    sorted); anything else that is not a dict, list or tuple is left out."""
    if is_leaf(structure):
        return [structure]
    if isinstance(structure, dict):
        return [item for key in sorted(structure) for item in _leaves(structure[key], is_leaf)]
    if isinstance(structure, list | tuple):
        return [item for element in structure for item in _leaves(element, is_leaf)]
    return []


def _layer_references(structure: Any) -> list[list[Any]]:
    """The layer references in a nested structure, in `keras.tree.flatten`'s order."""
    return _leaves(structure, _is_layer_reference)


def _is_keras_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _is_flat_argument(argument: Any) -> bool:
    """True for what keras_util reads of a call: a tensor, or a flat list of tensors (or not
    tensors at all)."""
    if isinstance(argument, list):
        return not any(
            isinstance(element, dict | list) and not _is_keras_tensor(element)
            for element in argument
        )
    return not isinstance(argument, dict) or _is_keras_tensor(argument)


def _keras_tensors(structure: Any) -> list[dict[str, Any]]:
    """The serialized Keras tensors in a call's arguments, in `keras.tree.flatten`'s order."""
    return _leaves(structure, _is_keras_tensor)


def write_keras_graph(
    model: keras.Model,
    writer: tf.summary.SummaryWriter,
    step: int = 0,
    tag: str | None = None,
    op_graph_name: str = "train_step",
    quiet: bool = False,
) -> str | None:
    """Writes the model's conceptual graph (its layers) for TensorBoard's Graphs dashboard.

    Keras 3's TensorBoard callback no longer writes it; this writes the same summary that Keras 2's
    did: the model's JSON config (`keras_graph_config`: dict inputs and outputs in the shape the
    dashboard reads) under plugin name `graph_keras_model`. It is built here with the dashboard's
    own `keras_util` first, and not written when the dashboard could not draw it: a subclassed
    model (Keras's config of it lists no layers, so the graph would be one node), or a config
    keras_util fails on. Then one console line says why, and that the op graph
    (`graph/<op_graph_name>`) is the view of the model.

    `quiet`: return the line without printing it (a worker other than the chief, whose console
    would repeat the chief's).

    Returns:
        None when written; otherwise the line that says why not.
    """
    tag = tag or KERAS_GRAPH_TAG_PREFIX + model.name
    config = keras_graph_config(model)
    reason = None
    if not (config.get("config") or {}).get("layers"):
        reason = (
            f"{model.name} is a subclassed keras.Model (class {type(model).__name__}), whose "
            "layers Keras's config does not list, so its conceptual graph would be one node"
        )
    else:
        try:
            keras_util.keras_model_to_graph_def(config)
        except Exception as error:  # Any failure there is the dashboard's too.
            reason = (
                f"TensorBoard's Graphs plugin cannot draw {model.name}'s config "
                f"({type(error).__name__}: {error})"
            )
    if reason:
        line = (
            f"graphs: {tag} not written: {reason}; the op graph "
            f"{OP_GRAPH_TAG_PREFIX}{op_graph_name} is the view of it"
        )
        if not quiet:
            print(line, flush=True)
        return line
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = KERAS_MODEL_PLUGIN_NAME
    metadata.plugin_data.content = b"1"  # The format version the Graphs plugin accepts.
    with writer.as_default():
        tf.summary.write(
            tag=tag,
            tensor=tf.constant(_keras_graph_json(model, config)),
            step=step,
            metadata=metadata.SerializeToString(),
        )
    return None


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
    quiet: bool = False,
) -> Any:
    """Writes every graph view of a run once: the step's op graph, and each model's conceptual
    graph and summary text. Runs the step (see `trace_step_graph`) and returns its outputs.
    `quiet`: no console line for a conceptual graph not written (see `write_keras_graph`).
    """
    for model in models:
        write_keras_graph(model, writer, step=step, op_graph_name=name, quiet=quiet)
        write_model_summary(model, writer, step=step)
    return trace_step_graph(step_function, args, writer, name=name, step=step)
