"""What a new user meets in the first hour (issue 15): a quiet console, one-line errors, no
retracing warnings, trial names that tell the sweep's runs apart, a view command that works."""

import os
import subprocess
import sys
import textwrap

import tensorflow as tf

from common import startup
from tests.app_cli import REPO_ROOT, run_app

# Words of TensorFlow's start-up block on a CPU-only machine (see common/startup.py).
STARTUP_MARKERS = ("oneDNN", "cuda", "cuInit", "cpu_feature_guard")


def startup_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(word in line for word in STARTUP_MARKERS)]


# Start-up noise.


def test_bad_input_prints_exactly_one_line(tmp_path):
    result = run_app(
        "vae_timeseries",
        "--data_path=/nonexistent.csv",
        "--num_steps=1",
        f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: data file /nonexistent.csv does not exist (or is not a file)"
    ]


def test_a_tiny_run_prints_its_own_lines_only(tmp_path):
    result = run_app(
        "mnist_mlp",
        "--dataset=synthetic",
        "--num_steps=2",
        "--steps_per_loop=2",
        "--batch_size=8",
        f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert startup_lines(result.stdout) == []
    assert result.stdout.splitlines()[-1].startswith("final: ")


def test_verbosity_0_shows_the_startup_lines(tmp_path):
    result = run_app(
        "vae_timeseries",
        "--data_path=/nonexistent.csv",
        "--num_steps=1",
        f"--logdir={tmp_path / 'run'}",
        "--verbosity=0",
    )
    assert result.returncode == 1
    assert startup_lines(result.stderr), result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: data file /nonexistent.csv")


def test_a_broken_tensorflow_install_is_not_hidden(tmp_path):
    # A `tensorflow` package first on the path that logs from "C++" (fd 2) and fails to import.
    fake = tmp_path / "fake_site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        textwrap.dedent(
            """
            import os
            os.write(2, b"fake tensorflow: libtensorflow_cc.so.2: cannot open shared object\\n")
            raise ImportError("fake tensorflow is broken")
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from common import startup; startup.import_tensorflow(show_startup_logs=False)",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO_ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "fake tensorflow: libtensorflow_cc.so.2: cannot open shared object"
    assert lines[1].startswith("Traceback")
    assert lines[-1] == "ImportError: fake tensorflow is broken"


def test_stderr_is_back_after_the_import(capfd):
    assert startup.import_tensorflow(show_startup_logs=False) is tf
    os.write(2, b"after the import\n")
    assert capfd.readouterr().err == "after the import\n"
