"""The logdir doctor: what TensorBoard will show for a logdir, and the classic logging mistakes in
it, each with a fix.

Usage: `python -m tools.inspect_logdir LOGDIR` (or `make inspect LOGDIR=...`). It reads any logdir,
not only this repo's, through TensorBoard's own code, and prints, per run, what each dashboard will
show, then the mistakes flagged, each by a stable code with its one-line fix. Its modules:

- `findings`: the mistakes' codes and fixes, a run's report, and the printed report.
- `layout`: where the runs are (folders of event files) and Debugger V2's dumps.
- `events`: a run's events, read by TensorBoard's `EventAccumulator`, every point kept.
- `graphs`, `steps`, `hparams`, `projector`: what each dashboard shows, and its checks.
- `inspection`: a logdir's runs, each read and checked in the report's order.
- `cli`: the command line and its exit codes (0 clean, 1 flagged, 2 no such folder).

Importable without TensorFlow: TensorBoard reads local files with its own stand-in, and only a
Projector checkpoint needs TensorFlow, imported then.
"""

from tools.inspect_logdir.cli import EXIT_CLEAN, EXIT_FLAGGED, EXIT_USAGE, main
from tools.inspect_logdir.events import KERAS_GRAPH_PLUGIN, OP_GRAPH_PLUGIN
from tools.inspect_logdir.findings import FIXES, Finding, RunReport, format_report
from tools.inspect_logdir.inspection import inspect_logdir, inspect_run
from tools.inspect_logdir.layout import find_debugger_dumps, find_runs
from tools.inspect_logdir.projector import PROJECTOR_CONFIG

__all__ = [
    "EXIT_CLEAN",
    "EXIT_FLAGGED",
    "EXIT_USAGE",
    "FIXES",
    "KERAS_GRAPH_PLUGIN",
    "OP_GRAPH_PLUGIN",
    "PROJECTOR_CONFIG",
    "Finding",
    "RunReport",
    "find_debugger_dumps",
    "find_runs",
    "format_report",
    "inspect_logdir",
    "inspect_run",
    "main",
]
