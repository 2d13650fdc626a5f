"""Runs an app as a user does (`python -m apps.<name>`) and checks how it fails."""

import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_app(app: str, *flags: str, cwd: pathlib.Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Runs `python -m apps.<app> <flags>` from `cwd` and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", f"apps.{app}", *flags],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, exit_code: int, *names: str) -> None:
    """Exit code as given, no traceback, exactly one `error:` line, last, naming every culprit."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == error_lines[0]
    for name in names:
        assert name in error_lines[0], error_lines[0]


def files_and_contents(directory: pathlib.Path) -> dict[pathlib.Path, bytes]:
    """Every file under `directory` with its bytes: compare before and after to prove no damage.

    A run's lock is held on the logdir itself (common/logdir/run_lock.py) and writes no file, so a
    `.lock` is compared like any other file (it is a user's).
    """
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}
