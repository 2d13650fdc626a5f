"""Runs survive: resume, kill -9, signals, NaN data, a second run on a live logdir.

The crash tests kill real subprocesses and read the logdir back through TensorBoard's loader: after
a restart, no step appears twice, steps only increase, and every point up to the last checkpoint is
still there.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import data as regression_data
from apps.regression_tape import train as regression_train
from common import errors
from common.logdir import run_lock
from tests import tensorboard_events as events
from tests.app_cli import REPO_ROOT, assert_one_line_error, files_and_contents, run_app
from tests.sigint import children_start_with_sigint

SLOW_MNIST = ("--dataset=synthetic", "--batch_size=16", "--steps_per_loop=10")


def steps_of(logdir, run="train", tag="loss"):
    return [step for step, _ in events.scalars(events.load_run(logdir / run), tag)]


def assert_clean_history(logdir):
    """What TensorBoard shows: for each run, steps strictly increasing, none twice."""
    for run in ("train", "eval"):
        steps = steps_of(logdir, run)
        assert steps == sorted(set(steps)), (run, steps)


def start_app(*flags, sigint=signal.SIG_DFL):
    """mnist_mlp in the background, with SIGINT as a terminal gives it unless `sigint` says
    otherwise (see tests/sigint.py: the suite may run with SIGINT ignored)."""
    with children_start_with_sigint(sigint):
        return subprocess.Popen(
            [sys.executable, "-m", "apps.mnist_mlp", *flags],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def wait_for(predicate, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def checkpoint_step(logdir):
    """The step of the newest checkpoint, from CheckpointManager's state file, or None."""
    state = tf.train.get_checkpoint_state(str(logdir / "checkpoints"))
    return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else None


def test_the_same_call_again_resumes_and_the_curves_stay_clean(tmp_path):
    config = mnist_train.Config(
        num_steps=6,
        batch_size=8,
        steps_per_loop=2,
        eval_every_steps=2,
        dataset="synthetic",
        checkpoint_every_steps=2,
    )
    first = mnist_train.train_and_evaluate(config, str(tmp_path))
    assert first["resumed_from_step"] == 0 and first["steps"] == 6
    longer = mnist_train.train_and_evaluate(
        mnist_train.Config(**{**config.__dict__, "num_steps": 10}), str(tmp_path)
    )
    assert longer["resumed_from_step"] == 6 and longer["steps"] == 10
    assert longer["train_step_traces"] == 1
    assert steps_of(tmp_path) == [2, 4, 6, 8, 10]
    assert steps_of(tmp_path, "eval") == [2, 4, 6, 8, 10]
    train_run = events.load_run(tmp_path / "train")
    assert len(train_run.Tensors("graph/train_step")) == 1  # The graph and texts are written once.
    assert len(train_run.Tensors("config")) == 1


def test_kill_9_mid_run_then_restart_loses_nothing_and_duplicates_nothing(tmp_path):
    logdir = tmp_path / "run"
    flags = (*SLOW_MNIST, "--num_steps=100000", "--checkpoint_every_steps=30", f"--logdir={logdir}")
    process = start_app(*flags)
    try:
        # Let it save a checkpoint, then write some points after it, then kill it mid-loop.
        wait_for(lambda: (checkpoint_step(logdir) or 0) >= 60)
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    saved_step = checkpoint_step(logdir)
    before = events.scalars(events.load_run(logdir / "train"), "loss")
    assert [step for step, _ in before if step <= saved_step] == list(range(10, saved_step + 1, 10))

    target = saved_step + 40
    restart = run_app("mnist_mlp", *SLOW_MNIST, f"--num_steps={target}", f"--logdir={logdir}")
    assert restart.returncode == 0, restart.stderr
    assert f"resumed from step {saved_step}" in restart.stdout
    after = events.scalars(events.load_run(logdir / "train"), "loss")
    assert [step for step, _ in after] == list(range(10, target + 1, 10))
    # Every point up to the checkpoint is the crashed run's own, unchanged.
    assert [point for point in after if point[0] <= saved_step] == [
        point for point in before if point[0] <= saved_step
    ]
    assert_clean_history(logdir)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_then_exit_with_the_conventional_code(tmp_path, signal_number):
    logdir = tmp_path / "run"
    process = start_app(*SLOW_MNIST, "--num_steps=100000", f"--logdir={logdir}")
    try:
        wait_for(lambda: process.stdout.readline().startswith("step "))
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal_number
    last_line = stderr.rstrip().splitlines()[-1]
    name = signal.Signals(signal_number).name
    assert last_line.startswith(f"interrupted: {name} at step ") and "Traceback" not in stderr
    stopped_at = int(last_line.split(" at step ")[1].split(";")[0])
    assert checkpoint_step(logdir) == stopped_at
    assert steps_of(logdir)[-1] == stopped_at  # Flushed: the last loop's point is on disk.

    resumed = run_app(
        "mnist_mlp", *SLOW_MNIST, f"--num_steps={stopped_at + 20}", f"--logdir={logdir}"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {stopped_at}" in resumed.stdout
    assert_clean_history(logdir)


def test_a_run_started_with_sigint_ignored_keeps_training_says_so_and_stops_on_sigterm(tmp_path):
    # As `make run-mnist &` in a script starts it: the Ctrl-C meant for the script's foreground
    # reaches the run too, which keeps the shell's word (and Python's, make's) and trains on.
    logdir = tmp_path / "run"
    process = start_app(
        *SLOW_MNIST, "--num_steps=100000", f"--logdir={logdir}", sigint=signal.SIG_IGN
    )
    try:
        wait_for(lambda: process.stdout.readline().startswith("step "))
        process.send_signal(signal.SIGINT)
        # Still training: two more progress lines (one may have been on its way).
        wait_for(lambda: process.stdout.readline().startswith("step "))
        wait_for(lambda: process.stdout.readline().startswith("step "))
        assert process.poll() is None, "a SIGINT the run started ignoring stopped it"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    lines = stderr.splitlines()
    assert lines[0] == (
        "SIGINT ignored: this run was started with SIGINT ignored (as a shell starts a background "
        "job without job control: `make run-mnist &` in a script), so it keeps training; stop it "
        f"with `kill {process.pid}` (SIGTERM), which saves first"
    ), stderr
    assert len(lines) == 2 and lines[1].startswith("interrupted: SIGTERM at step "), stderr
    stopped_at = int(lines[1].split(" at step ")[1].split(";")[0])
    assert checkpoint_step(logdir) == stopped_at


def test_nan_in_the_data_stops_at_its_step_and_keeps_the_good_checkpoint(tmp_path):
    config = regression_train.Config(
        num_steps=4, batch_size=8, steps_per_loop=2, checkpoint_every_steps=2
    )
    good = regression_data.make_datasets(seed=0, num_train=64, num_test=16)
    regression_train.train_and_evaluate(config, str(tmp_path), datasets=good)
    checkpoints_before = files_and_contents(tmp_path / "checkpoints")

    features = np.full((64, 10), np.nan, np.float32)
    poisoned = regression_data.Datasets(
        tf.data.Dataset.from_tensor_slices((features, np.zeros((64, 1), np.float32))),
        good.eval,
        "poisoned",
        0.1,
        1.0,
    )
    longer = regression_train.Config(**{**config.__dict__, "num_steps": 10})
    with pytest.raises(errors.NonFiniteLossError) as raised:
        regression_train.train_and_evaluate(longer, str(tmp_path), datasets=poisoned)
    message = str(raised.value)
    assert "loss or its gradients became nan at step 5" in message and "ckpt-4" in message
    assert files_and_contents(tmp_path / "checkpoints") == checkpoints_before
    assert steps_of(tmp_path) == [2, 4]  # No NaN point written.


def test_a_second_run_on_a_live_logdir_is_refused_in_one_line(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    with run_lock.LogdirLock(str(logdir)):  # Stands in for a live run.
        result = run_app("mnist_mlp", "--dataset=synthetic", "--num_steps=2", f"--logdir={logdir}")
        assert_one_line_error(result, 1, str(logdir), f"in use by another run (pid {os.getpid()})")
    assert not (logdir / "train").exists()
    after = run_app("mnist_mlp", "--dataset=synthetic", "--num_steps=2", f"--logdir={logdir}")
    assert after.returncode == 0, after.stderr
