"""`python -m apps.regression_tape` as a user runs it."""

import pytest

from tests import tensorboard_events as events
from tests.app_cli import assert_one_line_error, files_and_contents, run_app

APP = "regression_tape"


def test_a_short_run_from_the_command_line(tmp_path):
    logdir = tmp_path / "run"
    result = run_app(APP, "--num_steps=20", "--steps_per_loop=10", f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("dataset: synthetic regression")
    assert result.stdout.splitlines()[-1].startswith("final: train/loss=")
    assert [step for step, _ in events.scalars(events.load_run(logdir / "eval"), "rmse")] == [20]


@pytest.mark.parametrize(
    "flag",
    ["--num_steps=0", "--learning_rate=0", "--noise_std=-1", "--noise_std=inf", "--seed=-1"],
)
def test_bad_flags_fail_in_one_line(flag, tmp_path):
    result = run_app(APP, flag, f"--logdir={tmp_path / 'never_created'}")
    assert_one_line_error(result, 2, flag.split("=")[0])
    assert not (tmp_path / "never_created").exists()


def test_rerunning_a_finished_run_says_so_and_touches_nothing(tmp_path):
    logdir = tmp_path / "run"
    assert run_app(APP, "--num_steps=2", "--steps_per_loop=2", f"--logdir={logdir}").returncode == 0
    before = files_and_contents(logdir)
    again = run_app(APP, "--num_steps=2", f"--logdir={logdir}")
    assert again.returncode == 0 and "already finished at step 2" in again.stdout
    assert files_and_contents(logdir) == before


def test_an_absurd_learning_rate_stops_at_the_first_non_finite_step(tmp_path):
    logdir = tmp_path / "run"
    result = run_app(APP, "--learning_rate=1e10", "--steps_per_loop=1", f"--logdir={logdir}")
    assert_one_line_error(
        result,
        1,
        "loss or its gradients became inf at step 2",
        "No checkpoint had been saved yet",
        "or check the data",  # A NaN may come from the data: the learning rate is not all.
    )
    assert not (logdir / "checkpoints").exists()  # Nothing of the diverged weights was saved.
