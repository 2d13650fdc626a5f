"""The mistakes the doctor flags, what it reports per run, and the printed report.

Every mistake has a stable code and its fix in one line (`FIXES`):

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
"""

import dataclasses

from tools.inspect_logdir.layout import find_debugger_dumps, run_name

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
# How many tag names a line lists before it says how many more there are.
_NAMES_SHOWN = 6


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


def format_report(logdir: str, reports: list[RunReport], findings: list[Finding]) -> str:
    """The printed report: a few lines per run, the debugger data, then the mistakes and fixes."""
    lines = [f"logdir {logdir}: {len(reports)} run(s)"]
    for report in reports:
        lines.append(f"run {report.name}")
        lines.extend(f"  {line}" for line in report.lines or ["(no summaries)"])
    for directory in find_debugger_dumps(logdir):
        name = run_name(logdir, directory)
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


def names(tags: list[str]) -> str:
    """`tags` for one line: the first few, then how many more there are."""
    shown = ", ".join(tags[:_NAMES_SHOWN])
    more = len(tags) - _NAMES_SHOWN
    return f"{shown}, and {more} more" if more > 0 else shown
