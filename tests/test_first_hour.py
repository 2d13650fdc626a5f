"""What a new user meets in the first hour (issue 15): a quiet console, one-line errors, no
retracing warnings, trial names that tell the sweep's runs apart, a view command that works."""

import logging
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import keras
import pytest
import tensorboard
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hparams_metadata

from common import startup, summaries, tracing
from common.loop import progress
from common.summaries import metrics
from tests import tensorboard_events as events
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


# Lines TensorFlow writes mid-run that are known to be harmless (common/startup.py), as measured
# here: hidden, and nothing else is.
ONEDNN_BOOL_LINE = (
    b"E0000 00:00:1796167253.307424   24351 util.cc:131] oneDNN supports DT_BOOL only on "
    b"platforms with AVX-512. Falling back to the default Eigen-based implementation if present."
)
GENERATOR_DATASET_LINE = (
    b"W0000 00:00:1796167259.237191   24560 dataset.cc:997] Input of GeneratorDatasetOp::Dataset "
    b"will not be optimized because the dataset does not implement the AsGraphDefInternal() "
    b"method needed to apply optimizations."
)
# A user's app (a copy's shape: flags from a Config, cli.run_app) whose LSTM reads a masked
# sequence, as Masking or Embedding(mask_zero=True) make one; after training, it writes two lines
# no list knows: a real C++ warning of tf.data, and a line like the oneDNN one for another dtype.
TINY_LSTM_APP = """
import os

from apps.regression_tape import config
from common import cli

FLAGS = cli.define_flags(config.Config, "logs/tiny_lstm_app")


def train_and_evaluate(config, logdir):
    import keras
    import tensorflow as tf

    from apps.regression_tape import model as model_lib
    from apps.regression_tape import train

    def create_model():
        features = keras.Input((10,), name="features")
        sequence = keras.layers.Masking()(keras.layers.Reshape((5, 2))(features))
        prediction = keras.layers.Dense(1)(keras.layers.LSTM(4)(sequence))
        return keras.Model(features, prediction, name="tiny_lstm")

    model_lib.create_model = create_model
    metrics = train.train_and_evaluate(config, logdir)
    tf.data.Dataset.range(3).cache().take(1).get_single_element()
    os.write(2, ONEDNN_HALF_LINE + b"\\n")
    return metrics


if __name__ == "__main__":
    cli.run_app(config.Config, __name__)
"""


def run_tiny_lstm_app(tmp_path: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    """`python -m tiny_lstm_app` under --strategy=mirrored on two logical CPUs, 2 steps."""
    tmp_path.mkdir()
    app = tmp_path / "tiny_lstm_app.py"
    half_line = ONEDNN_BOOL_LINE.replace(b"DT_BOOL", b"DT_HALF")
    app.write_text(f"ONEDNN_HALF_LINE = {half_line!r}\n" + TINY_LSTM_APP)
    return subprocess.run(
        [
            *(sys.executable, "-m", "tiny_lstm_app", "--num_steps=2", "--steps_per_loop=2"),
            *("--strategy=mirrored", "--num_cpu_devices=2", f"--logdir={tmp_path / 'run'}"),
            *flags,
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"},
        capture_output=True,
        timeout=300,
    )


def test_an_lstm_app_under_mirrored_hides_the_known_harmless_lines_and_no_other(tmp_path):
    shown = run_tiny_lstm_app(tmp_path / "shown", "--verbosity=0")
    assert shown.returncode == 0, shown.stderr.decode()
    shown_lines = shown.stderr.splitlines()
    # The model and the strategy do make TensorFlow write them: --verbosity=0 shows everything.
    assert ONEDNN_BOOL_LINE[ONEDNN_BOOL_LINE.index(b"util.cc") :] in shown.stderr
    assert GENERATOR_DATASET_LINE[GENERATOR_DATASET_LINE.index(b"dataset.cc") :] in shown.stderr

    result = run_tiny_lstm_app(tmp_path / "hidden")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    # What no list knows still reaches stderr, whole, in order: tf.data's C++ warning, then the
    # look-alike for another dtype.
    assert len(lines) == 2, lines
    assert "cache_dataset_ops.cc" in lines[0] and "did not fully read the dataset" in lines[0]
    assert lines[1].encode() == ONEDNN_BOOL_LINE.replace(b"DT_BOOL", b"DT_HALF")
    assert len(shown_lines) > len(lines)


def test_the_debugger_says_nothing_about_pythons_frozen_modules(tmp_path):
    result = run_app(
        "mnist_mlp",
        "--dataset=synthetic",
        "--num_steps=2",
        "--steps_per_loop=2",
        "--batch_size=8",
        "--debugger",
        f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "debugger: recording op health into" in result.stdout


def test_only_a_frozen_modules_unreadable_source_is_hidden():
    # The message as TensorFlow's debugger logs it (dumping_callback.py), for a frozen module and
    # for a real file it cannot read.
    from tensorflow.python.debug.lib import dumping_callback

    template = "Failed to read source code from path: %s. Reason: %s"
    assert template in pathlib.Path(dumping_callback.__file__).read_text()

    def record(path: str) -> logging.LogRecord:
        return logging.LogRecord("tensorflow", logging.WARNING, "", 0, template, (path, "x"), None)

    harmless = startup._not_a_frozen_module_source_warning
    assert not harmless(record("/work/repo/<frozen runpy>"))
    assert harmless(record("/work/repo/apps/my_app/model.py"))
    assert harmless(record("/work/repo/<frozen runpy>.py"))


@pytest.mark.parametrize(
    "line",
    [
        ONEDNN_BOOL_LINE.replace(b"DT_BOOL", b"DT_HALF"),  # Another dtype: maybe a slow kernel.
        ONEDNN_BOOL_LINE + b" And something else.",
        ONEDNN_BOOL_LINE.replace(b"util.cc", b"mkl_util.cc"),
        b"error: " + ONEDNN_BOOL_LINE,
        GENERATOR_DATASET_LINE.replace(b"GeneratorDatasetOp", b"MapDatasetOp"),
        b"F0000 00:00:1796167253.307424   24351 util.cc:131] Check failed: DT_BOOL",
        b"F" + ONEDNN_BOOL_LINE[1:],  # The same words at another level: not what was measured.
    ],
    ids=["other-dtype", "more-text", "other-file", "prefixed", "other-dataset", "fatal", "level"],
)
def test_a_line_like_a_harmless_one_is_not_hidden(line):
    assert startup.is_known_harmless(ONEDNN_BOOL_LINE)
    assert startup.is_known_harmless(GENERATOR_DATASET_LINE)
    assert not startup.is_known_harmless(line)


RELAYED_SCRIPT = """
import os, sys
from common import startup
startup.hide_known_harmless_lines()
os.write(2, ONEDNN_BOOL_LINE + b"\\n")
sys.stderr.write("a prompt with no newline: ")
sys.stderr.flush()
sys.stdin.readline()  # Until the test has seen the partial line on stderr.
os.write(2, b"the line before a crash\\n")
os.abort() if sys.argv[1] == "crash" else sys.exit(3)
"""


@pytest.mark.parametrize("ending", ["crash", "exit"])
def test_the_relay_loses_nothing_before_an_exit_or_a_crash(tmp_path, ending):
    stderr_file = tmp_path / "stderr"
    script = f"ONEDNN_BOOL_LINE = {ONEDNN_BOOL_LINE!r}\n" + RELAYED_SCRIPT
    with stderr_file.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", script, ending],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stderr=stderr,
        )
        # A partial line reaches stderr while the run waits (for its stdin here).
        wait_for_file_bytes(stderr_file, b"a prompt with no newline: ")
        process.communicate(b"go on\n", timeout=60)
    assert process.returncode == (-signal.SIGABRT if ending == "crash" else 3)
    if ending == "exit":  # An exit waits for the relay: everything is there when it returns.
        assert stderr_file.read_bytes() == b"a prompt with no newline: the line before a crash\n"
    else:  # A crash cannot wait; the relay still copies what the run wrote, once it is gone.
        wait_for_file_bytes(stderr_file, b"a prompt with no newline: the line before a crash\n")


def wait_for_file_bytes(path: pathlib.Path, expected: bytes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while path.read_bytes() != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.read_bytes() == expected


# Retracing: every run in one process (make results, make bench) gets functions traced once.


@pytest.fixture
def tensorflow_warnings():
    """The messages TensorFlow's Python logger emits during the test."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def retracing_warnings(records: list[logging.LogRecord]) -> list[str]:
    return [record.getMessage() for record in records if "retracing" in record.getMessage()]


NUM_RUNS = 8  # TensorFlow warns at 5 traces within about 10 calls of one Python function.


def fresh_run(
    logdir: pathlib.Path,
) -> tuple[dict[str, keras.metrics.Metric], tf.summary.SummaryWriter]:
    """What each run makes anew: its metrics (with a value in them) and a train/ writer."""
    loss = keras.metrics.Mean(name="loss")
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    loss.update_state([1.0, 3.0])
    accuracy.update_state([0], [[0.9, 0.1]])
    return {"loss": loss, "accuracy": accuracy}, tf.summary.create_file_writer(str(logdir))


def test_per_run_reader_and_writer_never_warn(tmp_path, tensorflow_warnings):
    for run in range(NUM_RUNS):
        run_metrics, writer = fresh_run(tmp_path / f"run_{run}")
        read_metrics = metrics.MetricReader(run_metrics)
        write_scalars = summaries.ScalarWriter(writer)
        for step in (1, 2):  # Two loop boundaries.
            values = read_metrics()
            write_scalars({**values, "learning_rate": 0.001}, step)
        writer.close()
        assert values == {"loss": 0.0, "accuracy": 0.0}  # Reset after the first read.
        # Two boundaries: eager still (tracing.EagerThenTraced), so no trace, and no warning.
        assert read_metrics.tracing_count == 0
        assert write_scalars.tracing_count == 0
    assert retracing_warnings(tensorflow_warnings) == []
    train = events.load_run(tmp_path / "run_0")
    assert events.scalars(train, "loss") == [(1, 2.0), (2, 0.0)]


def test_read_and_reset_and_write_scalars_never_warn_across_runs(tmp_path, tensorflow_warnings):
    for run in range(NUM_RUNS):
        run_metrics, writer = fresh_run(tmp_path / f"run_{run}")
        # One boundary per run: the worst case for TensorFlow's retracing detector.
        summaries.write_scalars(writer, metrics.read_and_reset(run_metrics), step=1)
        writer.close()
    assert retracing_warnings(tensorflow_warnings) == []
    assert events.scalars(events.load_run(tmp_path / "run_7"), "accuracy") == [(1, 1.0)]


def make_train_step(variable: tf.Variable):
    """What every run defines anew: a step over its own variable (a new model each run)."""

    def train_step(value: tf.Tensor) -> tf.Tensor:
        variable.assign_add(value)
        return variable * 2.0

    return train_step


def test_plain_tf_function_per_run_trips_the_detector(tensorflow_warnings):
    # The cause in the apps' loops: each run's train step is traced once and called once in
    # Python (for its graph), but TensorFlow counts all of them as one function retracing.
    for _ in range(NUM_RUNS):
        tf.function(make_train_step(tf.Variable(0.0)))(tf.constant(1.0))
    assert retracing_warnings(tensorflow_warnings) != []


def test_per_run_function_is_counted_alone_and_keeps_its_name(tensorflow_warnings):
    for _ in range(NUM_RUNS):
        train_step = tracing.per_run_function(make_train_step(tf.Variable(0.0)))
        assert float(train_step(tf.constant(1.0))) == 2.0
        assert train_step.experimental_get_tracing_count() == 1
    assert retracing_warnings(tensorflow_warnings) == []
    # The graph keeps the Python function's name, as in the Graphs tab's function list.
    assert b"train_step" in train_step.get_concrete_function(tf.constant(1.0)).name


# The sweep's trials in the HParams tab.


def test_trial_id_starts_with_the_run_folder_and_keeps_the_parent(tmp_path):
    assert summaries.trial_id("logs/sweep_mnist/lr_3e-4_h32") == "lr_3e-4_h32 (logs/sweep_mnist)"
    assert summaries.trial_id("logs/mnist_mlp/") == "mnist_mlp (logs)"
    assert summaries.trial_id("run") == "run"
    logdir = tmp_path / "sweep" / "lr_1e-3_h128"
    summaries.write_hparams(str(logdir), {"learning_rate": 0.001})
    content = (
        events.load_run(logdir)
        .SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG)
        .plugin_data.content
    )
    start_info = hparams_metadata.parse_session_start_info_plugin_data(content)
    assert start_info.group_name == f"lr_1e-3_h128 ({tmp_path / 'sweep'})"  # The Trial ID.


def test_sweep_trials_differ_in_the_characters_the_table_shows():
    makefile = (REPO_ROOT / "Makefile").read_text()
    learning_rates = re.search(r"for learning_rate in ([^;]+);", makefile).group(1).split()
    hidden_units = re.search(r"for hidden_units in ([^;]+);", makefile).group(1).split()
    template = re.search(r"--logdir=\$\(LOGS\)/sweep_mnist/(\S+)", makefile).group(1)
    folders = [
        template.replace("$${learning_rate}", rate).replace("$${hidden_units}", units)
        for rate in learning_rates
        for units in hidden_units
    ]
    assert len(folders) == 6 and "$" not in "".join(folders)
    trial_ids = [summaries.trial_id(f"logs/sweep_mnist/{folder}") for folder in folders]
    assert len({trial[:12] for trial in trial_ids}) == 6, trial_ids
    for rate in learning_rates:
        float(rate)  # What --learning_rate will parse.


# How to view a run.


def test_view_command_at_the_repo_root_is_make_tensorboard(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "prefix", str(REPO_ROOT / ".venv"))
    command = progress.view_command("logs/mnist_mlp")
    assert command == "make tensorboard LOGS=logs/mnist_mlp"
    # What make would run, without running it (-n): the venv's tensorboard on that logdir.
    dry_run = subprocess.run(
        [*shlex.split(command)[:1], "-n", *shlex.split(command)[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert ".venv/bin/tensorboard --logdir logs/mnist_mlp " in dry_run.stdout


def test_view_command_elsewhere_runs_the_venvs_tensorboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = progress.view_command("runs/my run")
    arguments = shlex.split(command)
    assert arguments[-2:] == ["--logdir", "runs/my run"]
    assert pathlib.Path(arguments[0]).is_absolute()
    version = subprocess.run(
        [*arguments[:-2], "--version_tb"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == tensorboard.__version__


def test_view_command_never_hands_make_a_path_it_would_split(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "prefix", str(REPO_ROOT / ".venv"))
    assert not progress.view_command("logs/my run").startswith("make ")


def test_a_finished_run_exits_at_once_with_its_output_and_exit_handlers(tmp_path):
    """`cli.exit_now` skips the interpreter's teardown (0.5 s after every run, with TensorFlow
    loaded), not what a normal exit does first: buffered output and `atexit` handlers."""
    marker = tmp_path / "atexit_ran"
    script = (
        "import atexit, pathlib, sys\n"
        "from common import cli\n"
        f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('ran'))\n"
        "print('final: steps=1', end='')\n"  # Buffered: no newline, no flush.
        "sys.stderr.write('last words')\n"
        "cli.exit_now(0)\n"
        "print('never')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "final: steps=1", "last words")
    assert marker.read_text() == "ran"
