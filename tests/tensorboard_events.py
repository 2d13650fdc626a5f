"""Reads a run's event files back as TensorBoard shows them, through TensorBoard's own code.

`EventAccumulator` is TensorBoard's loader; op graphs are merged with the same
`graph_util.merge_graph_defs` call the Graphs dashboard makes, and conceptual graphs are built with
its `keras_util`, so an assertion here is an assertion on what the dashboard will render.
"""

import json
import pathlib
import re

import numpy as np
from google.protobuf import text_format
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import config_pb2, graph_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.graph import graph_util, keras_util
from tensorboard.plugins.projector import projector_config_pb2, projector_plugin

OP_GRAPH_PLUGIN = "graph_run_metadata_graph"
KERAS_GRAPH_PLUGIN = "graph_keras_model"


def load_run(directory: str | pathlib.Path) -> event_accumulator.EventAccumulator:
    """Loads every event of one run (TF2 summaries all arrive as tensors; keep them all)."""
    accumulator = event_accumulator.EventAccumulator(
        str(directory),
        size_guidance={event_accumulator.TENSORS: 0, event_accumulator.GRAPH: 1},
    )
    accumulator.Reload()
    return accumulator


def tags_by_plugin(run: event_accumulator.EventAccumulator) -> dict[str, list[str]]:
    """{'scalars': ['loss', ...], 'text': [...], 'graph_run_metadata_graph': ['train_step'], ...}"""
    result: dict[str, list[str]] = {}
    for tag in run.Tags()["tensors"]:
        plugin = run.SummaryMetadata(tag).plugin_data.plugin_name
        result.setdefault(plugin, []).append(tag)
    return result


def scalars(run: event_accumulator.EventAccumulator, tag: str) -> list[tuple[int, float]]:
    """[(step, value), ...] of one scalar tag, in the order written."""
    return [(event.step, float(np.asarray(_value(event)))) for event in run.Tensors(tag)]


def text(run: event_accumulator.EventAccumulator, tag: str) -> str:
    """The first text summary of a tag."""
    return run.Tensors(tag)[0].tensor_proto.string_val[0].decode()


def op_graph(run: event_accumulator.EventAccumulator, tag: str) -> graph_pb2.GraphDef:
    """The op graph the Graphs dashboard shows for a `trace_export` tag."""
    run_metadata = config_pb2.RunMetadata.FromString(run.Tensors(tag)[0].tensor_proto.string_val[0])
    return graph_util.merge_graph_defs(
        [function_graph.pre_optimization_graph for function_graph in run_metadata.function_graphs]
    )


def function_graph_count(run: event_accumulator.EventAccumulator, tag: str) -> int:
    """How many separate function graphs a `trace_export` tag holds (1 is a clean single graph)."""
    run_metadata = config_pb2.RunMetadata.FromString(run.Tensors(tag)[0].tensor_proto.string_val[0])
    return len(run_metadata.function_graphs)


def conceptual_graph(run: event_accumulator.EventAccumulator, tag: str) -> graph_pb2.GraphDef:
    """The Keras conceptual graph the Graphs dashboard builds from a `graph_keras_model` tag."""
    config = json.loads(run.Tensors(tag)[0].tensor_proto.string_val[0])
    return keras_util.keras_model_to_graph_def(config)


def op_types(graph: graph_pb2.GraphDef) -> set[str]:
    """Every op type in a graph, including inside its function library."""
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def _value(event) -> np.ndarray:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


def scalars_layout(run: event_accumulator.EventAccumulator) -> dict[str, dict[str, list[str]]]:
    """The Custom Scalars layout a run wrote: `{category: {chart title: [tag regexes]}}`."""
    (point,) = run.Tensors(custom_scalar_metadata.CONFIG_SUMMARY_TAG)  # Written once.
    assert point.step == 0
    layout = layout_pb2.Layout.FromString(point.tensor_proto.string_val[0])
    return {
        category.title: {chart.title: list(chart.multiline.tag) for chart in category.chart}
        for category in layout.category
    }


def chart_tags_without_data(
    layout: dict[str, dict[str, list[str]]], runs: list[event_accumulator.EventAccumulator]
) -> set[str]:
    """The layout's tag regexes that match no scalar tag of `runs`: charts that would be empty."""
    tags = {tag for run in runs for tag in tags_by_plugin(run).get("scalars", [])}
    return {
        pattern
        for charts in layout.values()
        for patterns in charts.values()
        for pattern in patterns
        if not any(re.fullmatch(pattern, tag) for tag in tags)
    }


def projector_embedding(
    run_directory: str | pathlib.Path,
) -> tuple[projector_config_pb2.EmbeddingInfo, np.ndarray, list[str]]:
    """What the Projector reads of a run directory, as its plugin reads it: the one embedding's
    config, its tensor from the named tensor file, and the metadata TSV's lines.

    The tensor is read by the plugin's own functions, with its fallback: TSV text first, float32
    bytes of the config's tensor_shape when the file is not UTF-8, and its path resolved against
    the config's folder (refused outside it).
    """
    config_path = pathlib.Path(run_directory) / "projector_config.pbtxt"
    config = text_format.Parse(config_path.read_text(), projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    tensor_path = projector_plugin._rel_to_abs_asset_path(embedding.tensor_path, str(config_path))
    try:
        tensor = projector_plugin._read_tensor_tsv_file(tensor_path)
    except UnicodeDecodeError:
        tensor = projector_plugin._read_tensor_binary_file(tensor_path, embedding.tensor_shape)
    metadata = pathlib.Path(run_directory, embedding.metadata_path).read_text().splitlines()
    return embedding, tensor, metadata
