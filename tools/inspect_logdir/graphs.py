"""The graph checks: op graphs counted as the Graphs dashboard draws them, and conceptual graphs.

Op graphs are merged with the dashboard's own `graph_util.merge_graph_defs`, so a node count here is
what the dashboard draws; conceptual (Keras) graphs are built by its own `keras_util`, so what fails
here is what its server fails on.
"""

import json

from tensorboard.compat.proto import config_pb2, graph_pb2
from tensorboard.plugins.graph import graph_util, keras_util

from tools.inspect_logdir.findings import RunReport

# Nodes that every function graph has or that move data without computing: a graph made of these
# and at most one other op is a fragment. `_EagerConst` is an eager constant copied in.
_PLUMBING_OPS = frozenset(
    {"_Arg", "_Retval", "_DeviceArg", "_DeviceRetval", "Identity", "Const", "NoOp", "_EagerConst"}
)


def _node_count(graph: graph_pb2.GraphDef) -> int:
    """Nodes of a graph and of its function library: what the Graphs dashboard can open."""
    return len(graph.node) + sum(len(function.node_def) for function in graph.library.function)


def _computing_op_count(graph: graph_pb2.GraphDef) -> int:
    """Nodes that compute something, in a graph and its function library."""
    nodes = list(graph.node) + [
        node for function in graph.library.function for node in function.node_def
    ]
    return sum(node.op not in _PLUMBING_OPS for node in nodes)


def _is_fragmented(graphs: list[graph_pb2.GraphDef]) -> bool:
    """True for what a trace leaves when it caught no tf.function being traced.

    A trace that saw a tf.function traced exports one function graph (more when several were
    traced in the window), each a whole computation. A trace around an eager call exports one
    small graph per op it ran (a few of two ops, as oneDNN adds its own beside a MatMul), and one
    around an already-traced function exports a lone graph that computes nothing (its input copied
    in). One graph of one op can be an honest tiny function, so it is not flagged, and neither is
    a whole graph beside a stray eager op or two: flagged are graphs mostly made of fragments.
    """
    if len(graphs) == 1:
        return _computing_op_count(graphs[0]) == 0
    fragments = sum(_computing_op_count(graph) <= 1 for graph in graphs)
    return fragments * 2 > len(graphs)


def _unreadable(report: RunReport, what: str, error: Exception) -> None:
    """Flags a graph that TensorBoard's own code fails on, with that failure in one line."""
    message = str(error).splitlines()[0] if str(error) else ""
    report.lines.append(f"{what}: unreadable")
    report.flag(
        "unreadable-graph",
        f"{what}: TensorBoard cannot read it ({type(error).__name__}"
        + (f": {message})" if message else ")"),
    )


def report_op_graphs(accumulator, tags: dict, op_graph_tags: list[str], report: RunReport) -> None:
    """Lists the run-level op graph and each traced one (`tf.summary.trace_export`), with their
    node counts, and flags the empty, fragmented and unreadable ones."""
    if tags["graph"]:
        # The run-level graph: tf.summary.graph, or a TF1 FileWriter's graph.
        try:
            graph = graph_pb2.GraphDef.FromString(accumulator.Graph().SerializeToString())
        except Exception as error:  # A corrupt graph is a finding, not a crash of the report.
            _unreadable(report, "op graph (run-level)", error)
            graph = None
    if tags["graph"] and graph is not None:
        count = _node_count(graph)
        report.lines.append(f"op graph (run-level): {count} nodes")
        if count == 0:
            report.flag("empty-op-graph", "the run-level graph has no nodes")
    for tag in op_graph_tags:
        try:
            run_metadata = config_pb2.RunMetadata.FromString(
                accumulator.Tensors(tag)[0].tensor_proto.string_val[0]
            )
            graphs = [function.pre_optimization_graph for function in run_metadata.function_graphs]
            merged = graph_util.merge_graph_defs(graphs) if graphs else graph_pb2.GraphDef()
        except Exception as error:  # What the dashboard would fail on too.
            _unreadable(report, f"op graph {tag}", error)
            continue
        count = _node_count(merged)
        report.lines.append(
            f"op graph {tag}: {count} nodes in {len(graphs)} function graph"
            + ("" if len(graphs) == 1 else "s")
        )
        if count == 0:
            report.flag("empty-op-graph", f"op graph {tag} has no nodes")
        elif _is_fragmented(graphs):
            fragments = sum(_computing_op_count(graph) <= 1 for graph in graphs)
            detail = (
                f"op graph {tag} is {len(graphs)} function graphs, {fragments} of them one-op "
                "fragments"
                if len(graphs) > 1
                else f"op graph {tag} is one function graph that computes nothing"
            )
            report.flag("op-graph-fragments", detail)


def report_conceptual_graphs(accumulator, keras_tags: list[str], report: RunReport) -> None:
    """Lists each conceptual (Keras) graph with its node count, and flags the unreadable ones
    and those of no layers."""
    for tag in keras_tags:
        # The Graphs plugin's own steps (graphs_plugin.py): json.loads, then keras_util. What
        # fails here is what its server answers with HTTP 500.
        try:
            config = json.loads(accumulator.Tensors(tag)[0].tensor_proto.string_val[0])
        except Exception as error:
            _unreadable(report, f"conceptual graph {tag}", error)
            continue
        if not isinstance(config, dict) or not (config.get("config") or {}).get("layers"):
            # A subclassed model's config: at best one node, the model (keras_util fails on
            # one without a name). Flagged for what it is, whether or not it can be drawn.
            model = config.get("class_name", "?") if isinstance(config, dict) else "?"
            report.lines.append(f"conceptual graph {tag}: no layers")
            report.flag(
                "conceptual-graph-no-layers",
                f"conceptual graph {tag} has no layers: the model {model} alone (a subclassed "
                "model's config lists none)",
            )
            continue
        try:
            graph = keras_util.keras_model_to_graph_def(config)
        except Exception as error:
            _unreadable(report, f"conceptual graph {tag}", error)
            continue
        report.lines.append(f"conceptual graph {tag}: {len(graph.node)} nodes")
