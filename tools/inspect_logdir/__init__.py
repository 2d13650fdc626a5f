"""What TensorBoard will show for a logdir, and the classic logging mistakes in it, each with a fix.

Usage: `python -m tools.inspect_logdir LOGDIR` (or `make inspect LOGDIR=...`). It reads any
logdir, not only this repo's, through TensorBoard's own loader (`EventAccumulator`, every point
kept: by default it keeps only 10 tensors per tag) and prints, per run (every folder holding event
files): op graphs with their node counts, conceptual (Keras) graphs, scalar tags with their step
ranges and point counts, text, images, histograms, hparams, Projector embeddings (each with its
points x dimensions, metadata columns and rows, and sprite), and whether profile or Debugger V2
data are there. Op graphs are merged with the Graphs dashboard's own `graph_util.merge_graph_defs`,
so a node count here is what the dashboard draws. Projector embeddings are read as the Projector
plugin reads them: `projector_config.pbtxt` in the run's folder, its tensor files (TSV, or float32
bytes when not UTF-8) relative to that folder, and any checkpoint through TensorFlow, imported only
when a config is there (TensorBoard reads checkpoints only through it).

Then it flags the classic mistakes, each by a stable code and with its fix in one line:

- `no-event-files`: no event files (nor Debugger V2 data) under the path: nothing to show.
- `empty-op-graph`: an op graph with no nodes (a `trace_export` with nothing traced).
- `op-graph-fragments`: an op graph made mostly of one-op fragments (the function was traced before
  `trace_on`, or an eager call was traced).
- `unreadable-graph`: an op or conceptual graph that TensorBoard cannot read or build (the Graphs
  dashboard answers it with an error; for a conceptual graph, HTTP 500).
- `conceptual-graph-no-layers`: a conceptual graph of no layers (a subclassed model's config: one
  node, the model, and nothing in it).
- `tag-written-twice`: a tag written twice at one step, back to back: two values under one name
  (two models' layers of the same name, tagged by their shared path), one overwriting the other.
- `duplicate-steps`: a tag written again at an earlier step (two writers, or a restart without
  trimming).
- `steps-go-back`: a tag's steps go backwards (a restart without trimming the old events).
- `no-step`: a tag written several times, all at one step (the step is never advanced).
- `non-finite`: a scalar that is NaN or infinite.
- `mixed-train-eval`: train and eval tags in one run instead of sibling runs.
- `projector-missing-checkpoint`: a Projector embedding whose tensor file (or checkpoint) is not
  found or not read, or does not fit its tensor_shape, or whose tensor is not in the checkpoint or
  not 2-D (or a config that does not parse).
- `projector-missing-metadata`: a metadata TSV the config names that is not there (or lies outside
  the config's folder, where the plugin refuses to read).
- `projector-metadata-mismatch`: a metadata TSV whose rows are not one per point (a header row on a
  single column, or none on several columns, is the usual off-by-one).
- `projector-missing-sprite`: a sprite image the config names that is not there (or lies outside the
  config's folder).
- `not-an-event-file`: a directory, FIFO or broken symbolic link named like an event file; the run
  is not read (a FIFO would hang the reading, as it hangs TensorBoard's loader).

Exit codes: 0 when nothing was flagged, 1 when a mistake was flagged, 2 when the path does not
exist or is not a folder (one `error:` line).
"""

import collections
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import re
import sys
import types

from google.protobuf import text_format
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import config_pb2, graph_pb2
from tensorboard.plugins.graph import graph_util, keras_util
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.projector import projector_config_pb2
from tensorboard.util import tensor_util

from common.logdir import paths

EXIT_CLEAN = 0
EXIT_FLAGGED = 1
EXIT_USAGE = 2

# Plugin names, as the summaries' metadata spell them (see tensorboard/plugins/*/metadata.py).
OP_GRAPH_PLUGIN = "graph_run_metadata_graph"
KERAS_GRAPH_PLUGIN = "graph_keras_model"
RUN_METADATA_PLUGIN = "graph_run_metadata"
SCALARS_PLUGIN = "scalars"
TEXT_PLUGIN = "text"
IMAGES_PLUGIN = "images"
HISTOGRAMS_PLUGIN = "histograms"
HPARAMS_PLUGIN = "hparams"

# One fixing line per mistake code, printed under every finding of that code.
FIXES = {
    "no-event-files": "point at the folder that tf.summary.create_file_writer writes to",
    "empty-op-graph": "call the tf.function for its first time between trace_on and trace_export, "
    "or write tf.summary.graph(function.get_concrete_function(...).graph)",
    "op-graph-fragments": "trace_on must precede the tf.function's first call (its tracing), and "
    "an eager call has no graph: trace a tf.function, or write its concrete function's graph",
    "unreadable-graph": "write op graphs with tf.summary.trace_export or tf.summary.graph, and "
    "a conceptual graph as the config TensorBoard's keras_util reads "
    "(common.summaries.graphs.write_keras_graph turns a model's dict inputs and outputs into "
    "lists), or none",
    "conceptual-graph-no-layers": "write no conceptual graph of a subclassed keras.Model: its op "
    "graph (graph/train_step) is the view of it; or build the model as a Functional one",
    "tag-written-twice": "give every value its own tag: tag variables by their model too where "
    "two models (or a model and its sub-model) have layers of the same name "
    "(common.summaries.write_variable_histograms(..., models=[...]) does)",
    "duplicate-steps": "on a restart, drop the events after the restored step before writing "
    "(or start a new logdir); write each run through one writer",
    "steps-go-back": "on a restart, drop the events after the restored step before writing "
    "(or start a new logdir); stamp every summary with the global step",
    "no-step": "pass step= from a counter that advances (or tf.summary.experimental.set_step on "
    "the optimizer's iterations)",
    "non-finite": "stop at the first non-finite loss or gradient, and check the learning rate, "
    "the data and the loss' logs and divisions",
    "mixed-train-eval": "write train and eval to sibling runs (logdir/train, logdir/eval) under "
    "the same tags, so their curves overlay on one chart",
    "projector-missing-checkpoint": "write the embedding as a tensor file below the run's folder "
    "(float32 bytes, or TSV when they decode as UTF-8) and name it by tensor_path relative to "
    "projector_config.pbtxt, with tensor_shape (common.summaries.projector.write_embeddings "
    "does); with a checkpoint, set model_checkpoint_path to the absolute prefix "
    "tf.train.Checkpoint.write returned and tensor_name to a 2-D variable in it "
    "(tf.train.list_variables shows them)",
    "projector-missing-metadata": "write the metadata TSV below the run's folder and name it "
    "relative to projector_config.pbtxt",
    "projector-metadata-mismatch": "write one TSV row per embedding point: no header row for a "
    "single column, a header row of column names for several",
    "projector-missing-sprite": "write the sprite image below the run's folder and name it "
    "relative to projector_config.pbtxt",
    "not-an-event-file": "move it out of the run's folder: TensorBoard reads every file whose "
    "name holds tfevents, and hangs on a FIFO",
}

# Nodes that every function graph has or that move data without computing: a graph made of these
# and at most one other op is a fragment. `_EagerConst` is an eager constant copied in.
_PLUMBING_OPS = frozenset(
    {"_Arg", "_Retval", "_DeviceArg", "_DeviceRetval", "Identity", "Const", "NoOp", "_EagerConst"}
)
# Words that mark a tag as train or as eval, found between `/`, `_`, `-` and `.`.
_TRAIN_WORDS = frozenset({"train", "training"})
_EVAL_WORDS = frozenset({"eval", "evaluation", "val", "valid", "validation", "test"})
# How many tag names a line lists before it says how many more there are.
_NAMES_SHOWN = 6
# The file the Projector plugin looks for in a run's folder (its metadata.PROJECTOR_FILENAME).
PROJECTOR_CONFIG = "projector_config.pbtxt"
# One embedding the Projector lists: its tensor name, its [points, dimensions] and its config entry
# (None for a checkpoint tensor the config does not name).
_Listed = tuple[str, list[int], projector_config_pb2.EmbeddingInfo | None]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One flagged mistake: its code (a key of `FIXES`), the run and what was seen."""

    code: str
    run: str
    detail: str

    @property
    def fix(self) -> str:
        """The one-line fix of this mistake."""
        return FIXES[self.code]


@dataclasses.dataclass
class RunReport:
    """What TensorBoard will show for one run, as lines to print, and the mistakes found in it."""

    name: str
    lines: list[str] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def flag(self, code: str, detail: str) -> None:
        """Records a mistake of `code` in this run."""
        self.findings.append(Finding(code, self.name, detail))


def find_runs(logdir: str) -> list[str]:
    """Every folder under `logdir` (itself included) that holds event files, sorted.

    These are the runs TensorBoard lists, each named by its path relative to `logdir`.
    """
    runs = []
    for directory, folders, files in os.walk(logdir):
        if any("tfevents" in name for name in files + folders):
            runs.append(directory)
    return sorted(runs)


def find_debugger_dumps(logdir: str) -> list[str]:
    """Folders under `logdir` holding Debugger V2 data (`tfdbg_events.*.metadata` files)."""
    return sorted(
        directory
        for directory, _, files in os.walk(logdir)
        if any(name.startswith("tfdbg_events.") and name.endswith(".metadata") for name in files)
    )


def inspect_logdir(logdir: str) -> tuple[list[RunReport], list[Finding]]:
    """Reads every run under `logdir` and checks it.

    Args:
        logdir: an existing folder, laid out as TensorBoard's `--logdir` expects.

    Returns:
        One report per run, and every finding (those of the runs, and `no-event-files`).
    """
    reports = [
        inspect_run(directory, _run_name(logdir, directory)) for directory in find_runs(logdir)
    ]
    findings = [finding for report in reports for finding in report.findings]
    if not reports and not find_debugger_dumps(logdir):
        findings.append(Finding("no-event-files", ".", f"no event files under {logdir}"))
    return reports, findings


def inspect_run(directory: str, name: str) -> RunReport:
    """What TensorBoard will show for the run in `directory`, and the mistakes found in it."""
    report = RunReport(name)
    odd = {
        entry: reason
        for entry in sorted(os.listdir(directory))
        if "tfevents" in entry
        and (reason := paths.not_a_regular_file(os.path.join(directory, entry))) is not None
    }
    if odd:  # Read without opening: the loader would hang on a FIFO, or fail on the others.
        for entry, reason in odd.items():
            report.flag("not-an-event-file", f"{entry} {reason}; the run was not read")
        return report
    # TENSORS: 0 keeps every point (TF2 summaries all arrive as tensors); the TF1 kinds likewise.
    # Orphaned events are purged as TensorBoard's server does (only a TF1 SessionLog.START makes
    # any), so the steps checked are the steps the dashboards draw.
    accumulator = event_accumulator.EventAccumulator(
        directory,
        size_guidance={
            event_accumulator.TENSORS: 0,
            event_accumulator.SCALARS: 0,
            event_accumulator.HISTOGRAMS: 0,
            event_accumulator.IMAGES: 0,
            event_accumulator.GRAPH: 1,
        },
    )
    accumulator.Reload()
    tags = accumulator.Tags()
    by_plugin: dict[str, list[str]] = collections.defaultdict(list)
    for tag in tags["tensors"]:
        by_plugin[accumulator.SummaryMetadata(tag).plugin_data.plugin_name].append(tag)

    _report_op_graphs(accumulator, tags, by_plugin[OP_GRAPH_PLUGIN], report)
    _report_conceptual_graphs(accumulator, by_plugin[KERAS_GRAPH_PLUGIN], report)
    scalar_points = {tag: _tensor_points(accumulator, tag) for tag in by_plugin[SCALARS_PLUGIN]}
    # TF1's tf.summary.scalar arrives as a Summary.Value.simple_value, under Tags()['scalars'].
    for tag in tags["scalars"]:
        scalar_points[tag] = [(event.step, event.value) for event in accumulator.Scalars(tag)]
    _report_scalars(scalar_points, report)

    stepped = {tag: [step for step, _ in points] for tag, points in scalar_points.items()}
    for plugin, legacy_kind in ((HISTOGRAMS_PLUGIN, "histograms"), (IMAGES_PLUGIN, "images")):
        plugin_tags = {tag: _tensor_steps(accumulator, tag) for tag in by_plugin[plugin]}
        legacy_tags = {
            tag: _legacy_steps(accumulator, legacy_kind, tag) for tag in tags[legacy_kind]
        }
        plugin_steps = {**plugin_tags, **legacy_tags}
        report.lines.extend(_stepped_lines(plugin, plugin_steps))
        stepped.update({f"{plugin} {tag}": steps for tag, steps in plugin_steps.items()})
    if by_plugin[TEXT_PLUGIN]:
        report.lines.append(
            f"text ({len(by_plugin[TEXT_PLUGIN])}): {_names(sorted(by_plugin[TEXT_PLUGIN]))}"
        )
    _report_hparams(accumulator, by_plugin[HPARAMS_PLUGIN], report)
    if by_plugin[RUN_METADATA_PLUGIN] or tags["run_metadata"]:
        run_metadata_tags = by_plugin[RUN_METADATA_PLUGIN] + tags["run_metadata"]
        report.lines.append(f"run metadata (compute time, memory): {_names(run_metadata_tags)}")
    profile = os.path.join(directory, "plugins", "profile")
    if os.path.isdir(profile):
        sessions = [entry for entry in os.listdir(profile) if os.path.isdir(f"{profile}/{entry}")]
        report.lines.append(f"profile: {len(sessions)} session(s) in plugins/profile")
    known = {
        OP_GRAPH_PLUGIN,
        KERAS_GRAPH_PLUGIN,
        RUN_METADATA_PLUGIN,
        SCALARS_PLUGIN,
        TEXT_PLUGIN,
        IMAGES_PLUGIN,
        HISTOGRAMS_PLUGIN,
        HPARAMS_PLUGIN,
    }
    for plugin in sorted(set(by_plugin) - known):
        plugin_tags = sorted(by_plugin[plugin])
        report.lines.append(f"{plugin or 'no plugin'} ({len(plugin_tags)}): {_names(plugin_tags)}")
    _report_projector(directory, report)

    _check_steps(stepped, report)
    _check_train_and_eval_mixed(list(scalar_points), report)
    return report


def format_report(logdir: str, reports: list[RunReport], findings: list[Finding]) -> str:
    """The printed report: a few lines per run, the debugger data, then the mistakes and fixes."""
    lines = [f"logdir {logdir}: {len(reports)} run(s)"]
    for report in reports:
        lines.append(f"run {report.name}")
        lines.extend(f"  {line}" for line in report.lines or ["(no summaries)"])
    for directory in find_debugger_dumps(logdir):
        name = _run_name(logdir, directory)
        # Debugger V2 opens the dump in --logdir itself (DebugDataReader(logdir)), never below it.
        where = (
            ""
            if name == "."
            else f" (Debugger V2 reads only --logdir's own folder: serve {directory})"
        )
        lines.append(f"debugger: Debugger V2 data in {name}{where}")
    if not findings:
        lines.append("no mistakes found")
        return "\n".join(lines)
    lines.append(f"{len(findings)} mistake(s):")
    for finding in findings:
        lines.append(f"  [{finding.code}] run {finding.run}: {finding.detail}")
        lines.append(f"    fix: {finding.fix}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """The command line: `python -m tools.inspect_logdir LOGDIR`. Returns the exit code."""
    if len(argv) != 2:
        print("error: usage: python -m tools.inspect_logdir LOGDIR", file=sys.stderr)
        return EXIT_USAGE
    logdir = argv[1]
    if not os.path.exists(logdir):
        print(f"error: {logdir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if not os.path.isdir(logdir):
        print(
            f"error: {logdir} is not a folder (give the logdir, not an event file)", file=sys.stderr
        )
        return EXIT_USAGE
    # TensorBoard's file access goes through TensorFlow when it is installed: import it first,
    # with its start-up lines hidden, so they do not bury the report. (Without it, TensorBoard
    # reads local files with its own stand-in.)
    if importlib.util.find_spec("tensorflow") is not None:
        from common import startup

        startup.import_tensorflow(show_startup_logs=False)
    reports, findings = inspect_logdir(logdir)
    print(format_report(logdir, reports, findings))
    return EXIT_FLAGGED if findings else EXIT_CLEAN


def _run_name(logdir: str, directory: str) -> str:
    return os.path.relpath(directory, logdir)


def _names(tags: list[str]) -> str:
    shown = ", ".join(tags[:_NAMES_SHOWN])
    more = len(tags) - _NAMES_SHOWN
    return f"{shown}, and {more} more" if more > 0 else shown


def _tensor_points(accumulator, tag: str) -> list[tuple[int, float]]:
    return [
        (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
        for event in accumulator.Tensors(tag)
    ]


def _tensor_steps(accumulator, tag: str) -> list[int]:
    return [event.step for event in accumulator.Tensors(tag)]


def _legacy_steps(accumulator, kind: str, tag: str) -> list[int]:
    read = accumulator.Histograms if kind == "histograms" else accumulator.Images
    return [event.step for event in read(tag)]


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


def _report_op_graphs(accumulator, tags: dict, op_graph_tags: list[str], report: RunReport) -> None:
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


def _report_conceptual_graphs(accumulator, keras_tags: list[str], report: RunReport) -> None:
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


def _report_scalars(points_by_tag: dict[str, list[tuple[int, float]]], report: RunReport) -> None:
    for tag, points in sorted(points_by_tag.items()):
        bad = [(step, value) for step, value in points if not math.isfinite(value)]
        if bad:
            step, value = bad[0]
            report.flag(
                "non-finite",
                f"scalar {tag} is {value} at step {step} ({len(bad)} of {len(points)} points)",
            )
    steps_by_tag = {tag: [step for step, _ in points] for tag, points in points_by_tag.items()}
    report.lines.extend(_stepped_lines(SCALARS_PLUGIN, steps_by_tag))


def _stepped_lines(kind: str, steps_by_tag: dict[str, list[int]]) -> list[str]:
    """One line per group of tags that share a step range and a point count: a few lines, not one
    per tag, as an app's tags mostly go together."""
    groups: dict[tuple[int, int, int], list[str]] = collections.defaultdict(list)
    for tag, steps in sorted(steps_by_tag.items()):
        groups[(min(steps), max(steps), len(steps))].append(tag)
    return [
        f"{kind} ({len(group)}): {_names(group)}: "
        + (f"step {first}, " if first == last else f"steps {first}..{last}, ")
        + f"{count} point{'s' if count > 1 else ''}{' each' if len(group) > 1 else ''}"
        for (first, last, count), group in groups.items()
    ]


def _report_hparams(accumulator, hparams_tags: list[str], report: RunReport) -> None:
    for tag in hparams_tags:
        content = accumulator.SummaryMetadata(tag).plugin_data.content
        if tag == hparams_metadata.SESSION_START_INFO_TAG:
            start = hparams_metadata.parse_session_start_info_plugin_data(content)
            names = sorted(start.hparams)
            report.lines.append(f"hparams ({len(names)}): {_names(names)}")
        elif tag == hparams_metadata.EXPERIMENT_TAG:
            experiment = hparams_metadata.parse_experiment_plugin_data(content)
            report.lines.append(
                f"hparams experiment: {len(experiment.hparam_infos)} hparams, "
                f"{len(experiment.metric_infos)} metrics"
            )


def _check_steps(steps_by_tag: dict[str, list[int]], report: RunReport) -> None:
    no_step, twice, duplicated, backwards = [], [], [], []
    for tag, steps in sorted(steps_by_tag.items()):
        if len(steps) > 1 and len(set(steps)) == 1:
            no_step.append(f"{tag} ({len(steps)} points, all at step {steps[0]})")
            continue
        # Back to back at one step: two values of one name, written together (one overwrites
        # the other in the dashboard). A step seen again later: a second writer or a restart.
        repeated = [later for earlier, later in itertools.pairwise(steps) if later == earlier]
        if repeated:
            twice.append(f"{tag} (step {repeated[0]})")
        distinct_runs = [step for step, _ in itertools.groupby(steps)]
        if len(set(distinct_runs)) < len(distinct_runs):
            duplicated.append(tag)
        if any(later < earlier for earlier, later in itertools.pairwise(steps)):
            backwards.append(tag)
    if no_step:
        report.flag("no-step", "written at one step only: " + _names(no_step))
    if twice:
        report.flag("tag-written-twice", "written twice at one step: " + _names(twice))
    if duplicated:
        report.flag("duplicate-steps", "steps written more than once: " + _names(duplicated))
    if backwards:
        report.flag("steps-go-back", "steps go backwards: " + _names(backwards))


def _check_train_and_eval_mixed(scalar_tags: list[str], report: RunReport) -> None:
    def words(tag: str) -> set[str]:
        return set(re.split(r"[/_.\-]", tag.lower()))

    train = sorted(tag for tag in scalar_tags if words(tag) & _TRAIN_WORDS)
    evaluation = sorted(tag for tag in scalar_tags if words(tag) & _EVAL_WORDS)
    if train and evaluation:
        report.flag(
            "mixed-train-eval",
            f"train tags ({_names(train)}) and eval tags ({_names(evaluation)}) in one run",
        )


def _report_projector(directory: str, report: RunReport) -> None:
    """The embeddings the Projector lists for the run in `directory`, read as its plugin does.

    The plugin lists every embedding the config names and, beside them, every other 2-D tensor of
    the config's checkpoint (optimizer slots aside), those with the metadata of a first embedding
    that names no tensor. With no model_checkpoint_path it looks for a checkpoint in the run's
    folder and its parent, and lists the run without one only when the config names a tensor
    file. Asset paths (tensor files included) are read relative to the config's folder and must
    stay below it; the checkpoint path is read as it is written.
    """
    config_path = os.path.join(directory, PROJECTOR_CONFIG)
    if not os.path.isfile(config_path):
        return
    config = projector_config_pb2.ProjectorConfig()
    try:
        with open(config_path) as config_file:
            text_format.Parse(config_file.read(), config)
    except (text_format.ParseError, UnicodeDecodeError) as error:
        report.flag("projector-missing-checkpoint", f"{PROJECTOR_CONFIG} does not parse: {error}")
        return
    listed: list[_Listed] = []
    for embedding in config.embeddings:
        if embedding.tensor_path:
            shape = _tensor_file_shape(directory, embedding, report)
            if shape is not None:
                name = embedding.tensor_name or os.path.basename(embedding.tensor_path)
                listed.append((name, shape, embedding))
    has_tensor_files = any(embedding.tensor_path for embedding in config.embeddings)
    tensorflow = _import_tensorflow()
    if tensorflow is None:
        # TensorBoard's stand-in for TensorFlow reads tensor files, but no checkpoint: the
        # plugin then neither looks for one nor opens the one the config names.
        if config.model_checkpoint_path or not has_tensor_files:
            report.lines.append(
                f"projector: {PROJECTOR_CONFIG} names a checkpoint or no tensor file, unread: "
                "TensorBoard reads checkpoints only through TensorFlow, which is not installed"
            )
    else:
        checkpoint = config.model_checkpoint_path or _latest_checkpoint(tensorflow, directory)
        if not checkpoint:
            if not has_tensor_files:
                report.flag(
                    "projector-missing-checkpoint",
                    f"{PROJECTOR_CONFIG} names no tensor_path nor model_checkpoint_path, and no "
                    "checkpoint is in the run's folder or its parent: the Projector shows nothing",
                )
                return
        elif not tensorflow.io.gfile.glob(checkpoint + "*"):
            # The plugin drops the whole config then, tensor files included.
            beside = os.path.join(directory, checkpoint)
            where = (
                " (it is there relative to the run's folder, but TensorBoard reads a relative "
                "path from its own working directory)"
                if not os.path.isabs(checkpoint) and tensorflow.io.gfile.glob(beside + "*")
                else ""
            )
            report.flag(
                "projector-missing-checkpoint",
                f"checkpoint {checkpoint} not found{where}: the Projector shows nothing of this "
                "run",
            )
            return
        else:
            try:
                shapes = tensorflow.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
            except (tensorflow.errors.OpError, ValueError) as error:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                report.flag(
                    "projector-missing-checkpoint",
                    f"checkpoint {checkpoint} not read: {first_line}",
                )
                return
            listed.extend(_checkpoint_embeddings(config, checkpoint, shapes, report))

    for name, shape, embedding in listed:
        parts = [f"{shape[0]} x {shape[1]} (points x dimensions)"]
        parts.append(_metadata_part(directory, name, shape[0], embedding, report))
        parts.append(_sprite_part(directory, name, embedding, report))
        report.lines.append(f"projector {name}: " + "; ".join(parts))


def _import_tensorflow() -> types.ModuleType | None:
    """TensorFlow, imported only now (a run with a Projector config needs it), or None."""
    if importlib.util.find_spec("tensorflow") is None:
        return None
    # Imported here, not above: only a run with a Projector config pays for TensorFlow's start.
    import tensorflow

    return tensorflow


def _latest_checkpoint(tensorflow: types.ModuleType, directory: str) -> str | None:
    """Where the plugin looks when the config names no checkpoint: the run's folder, then its
    parent."""
    for folder in (directory, os.path.join(directory, os.pardir)):
        try:
            found = tensorflow.train.latest_checkpoint(folder)
        except tensorflow.errors.NotFoundError:
            found = None
        if found:
            return found
    return None


def _checkpoint_embeddings(
    config: projector_config_pb2.ProjectorConfig,
    checkpoint: str,
    shapes: dict[str, list[int]],
    report: RunReport,
) -> list[_Listed]:
    """The embeddings the plugin takes from the checkpoint, each with its config entry (None for
    a tensor the config does not name, when no nameless entry lends it metadata)."""
    embeddings = [embedding for embedding in config.embeddings if not embedding.tensor_path]
    first = config.embeddings[0] if config.embeddings else None
    nameless = first if first and not (first.tensor_name or first.tensor_path) else None
    listed, named = [], set()
    for embedding in embeddings:
        if not embedding.tensor_name:
            continue
        # The plugin drops a trailing ":0" (a TF1 tensor's name) before looking it up.
        name = embedding.tensor_name.removesuffix(":0")
        named.add(name)
        if name not in shapes:
            two_dimensional = sorted(tensor for tensor, shape in shapes.items() if len(shape) == 2)
            report.flag(
                "projector-missing-checkpoint",
                f"tensor {name} is not in checkpoint {checkpoint} (its 2-D tensors: "
                f"{_names(two_dimensional) or 'none'})",
            )
        elif len(shapes[name]) != 2:
            report.flag(
                "projector-missing-checkpoint",
                f"tensor {name} is {len(shapes[name])}-D ({shapes[name]}): the Projector needs "
                "points x dimensions",
            )
        else:
            listed.append((name, shapes[name], embedding))
    for name, shape in sorted(shapes.items()):
        if len(shape) == 2 and ".OPTIMIZER_SLOT" not in name and name not in named:
            # The plugin lends such a tensor the nameless entry's metadata, not its sprite.
            lent = (
                projector_config_pb2.EmbeddingInfo(
                    tensor_name=name, metadata_path=nameless.metadata_path
                )
                if nameless is not None
                else None
            )
            listed.append((name, shape, lent))
    return listed


def _asset_path(directory: str, path: str) -> str | None:
    """An asset path of the config as the plugin resolves it (relative to the config's folder),
    or None when it resolves outside that folder, where the plugin refuses to read."""
    folder = os.path.realpath(directory)
    candidate = os.path.realpath(os.path.join(folder, os.path.expanduser(path)))
    return candidate if os.path.commonpath([folder, candidate]) == folder else None


def _existing_asset(
    report: RunReport, kind: str, directory: str, relative: str, name: str, code: str = ""
) -> str | None:
    """The path of a Projector asset (`kind`: metadata, sprite, tensor file) named in the config,
    or None after flagging `code` (default `projector-missing-<kind>`) when it is not there or
    resolves outside the config's folder."""
    path = _asset_path(directory, relative)
    if path is None or not os.path.isfile(path):
        report.flag(
            code or f"projector-missing-{kind}",
            f"{kind} {relative} of {name} "
            + ("not found" if path else "resolves outside the run's folder"),
        )
        return None
    return path


def _tensor_file_shape(
    directory: str, embedding: projector_config_pb2.EmbeddingInfo, report: RunReport
) -> list[int] | None:
    """The [points, dimensions] of an embedding stored as a tensor file, read as the plugin reads
    it: TSV text, or, when the file is not UTF-8, float32 bytes of the config's tensor_shape. None
    (flagged) when the file is not there or does not read as that."""
    name = embedding.tensor_name or os.path.basename(embedding.tensor_path)
    where = f"tensor file {embedding.tensor_path} of {name}"
    path = _existing_asset(
        report,
        "tensor file",
        directory,
        embedding.tensor_path,
        name,
        "projector-missing-checkpoint",
    )
    if path is None:
        return None
    declared = list(embedding.tensor_shape)
    try:
        # Lines end at "\n" only, as TensorFlow's GFile splits them for the plugin.
        with open(path, encoding="utf-8", newline="\n") as tensor_file:
            rows = [line.rstrip("\n") for line in tensor_file if line.rstrip("\n")]
    except UnicodeDecodeError:
        size = os.path.getsize(path)
        if len(declared) != 2 or size != 4 * declared[0] * declared[1]:
            report.flag(
                "projector-missing-checkpoint",
                f"{where} is not UTF-8, so the plugin reads it as float32 bytes of its "
                f"tensor_shape ({declared or 'none'}): its {size} bytes do not fit",
            )
            return None
        return declared
    values = [row.split("\t") for row in rows]
    widths = sorted({len(row) for row in values})
    if len(widths) != 1:
        report.flag(
            "projector-missing-checkpoint",
            f"{where} is TSV of "
            + (f"rows of {', '.join(map(str, widths))} values" if rows else "no rows")
            + ": the plugin reads one row per point, all of one width",
        )
        return None
    try:
        for row in values:
            for value in row:
                float(value)  # As the plugin parses them.
    except ValueError as error:
        report.flag("projector-missing-checkpoint", f"{where} is TSV but not numbers: {error}")
        return None
    shape = [len(rows), widths[0]]
    if declared and declared != shape:
        # The frontend cuts the served tensor into rows of the declared shape.
        report.flag(
            "projector-missing-checkpoint",
            f"{where} is TSV of {shape[0]} rows x {shape[1]} values, but its tensor_shape is "
            f"{declared}",
        )
        return None
    return shape


def _metadata_part(
    directory: str,
    name: str,
    points: int,
    embedding: projector_config_pb2.EmbeddingInfo | None,
    report: RunReport,
) -> str:
    """The metadata of one embedding, for its line, with its mistakes flagged.

    Rows are counted as the Projector's frontend parses the TSV: blank lines skipped, and the first
    row a header of column names only when it holds a tab (so a single column has no header).
    """
    if embedding is None or not embedding.metadata_path:
        return "no metadata"
    path = _existing_asset(report, "metadata", directory, embedding.metadata_path, name)
    if path is None:
        return f"metadata {embedding.metadata_path} missing"
    with open(path, encoding="utf-8", errors="replace") as metadata_file:
        lines = [line.rstrip("\r\n") for line in metadata_file if line.strip()]
    header = bool(lines) and "\t" in lines[0]
    # A single column has no header: the Projector names it "label".
    columns = lines[0].split("\t") if header else ["label (one column, no header)"]
    rows = len(lines) - header
    if rows != points:
        if not header and rows == points + 1:
            why = " (a header row on a single column is read as a point)"
        elif header and rows == points - 1:
            why = " (with no header row, its first row is read as the column names)"
        else:
            why = ""
        report.flag(
            "projector-metadata-mismatch",
            f"metadata {embedding.metadata_path} has {rows} rows for the {points} points of "
            f"{name}{why}",
        )
    return f"metadata {', '.join(columns)}: {rows} rows"


def _sprite_part(
    directory: str,
    name: str,
    embedding: projector_config_pb2.EmbeddingInfo | None,
    report: RunReport,
) -> str:
    """The sprite of one embedding, for its line, flagged when the image is not there."""
    if embedding is None or not embedding.sprite.image_path:
        return "no sprite"
    image_path = embedding.sprite.image_path
    path = _existing_asset(report, "sprite", directory, image_path, name)
    if path is None:
        return f"sprite {image_path} missing"
    width, height = [*embedding.sprite.single_image_dim, 0, 0][:2]
    return f"sprite {image_path} ({width}x{height} thumbnails)"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
