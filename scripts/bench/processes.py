"""Whole processes run from the repository's root, and the `name=value` lines they print."""

import pathlib
import re
import subprocess
import time

# scripts/bench/processes.py: three folders up.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_process(command: list[str]) -> tuple[float, str]:
    """Runs a whole process from the repository's root; returns its wall time and stdout."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return seconds, result.stdout


def final_values(stdout: str, prefix: str) -> dict[str, float]:
    """The `name=value` pairs of the line starting with `prefix` (`final:` or `fit:`)."""
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return {name: float(value) for name, value in re.findall(r"(\S+)=(\S+)", line)}
