"""Where a logdir's runs are: the folders TensorBoard lists, and Debugger V2's dumps."""

import os


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


def run_name(logdir: str, directory: str) -> str:
    """The name TensorBoard gives the run in `directory`: its path relative to `logdir`."""
    return os.path.relpath(directory, logdir)
