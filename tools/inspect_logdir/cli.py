"""The command line: `python -m tools.inspect_logdir LOGDIR` (or `make inspect LOGDIR=...`).

Exit codes: 0 when nothing was flagged, 1 when a mistake was flagged, 2 when the path does not
exist or is not a folder (one `error:` line).
"""

import importlib.util
import os
import sys

from tools.inspect_logdir.findings import format_report
from tools.inspect_logdir.inspection import inspect_logdir

EXIT_CLEAN = 0
EXIT_FLAGGED = 1
EXIT_USAGE = 2


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
