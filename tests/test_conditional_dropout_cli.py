"""`python -m apps.conditional_dropout` as a user runs it."""

import pytest

from tests import tensorboard_events as events
from tests.app_cli import assert_one_line_error, run_app

APP = "conditional_dropout"


def test_a_short_run_with_the_runtime_switch(tmp_path):
    logdir = tmp_path / "run"
    result = run_app(
        APP,
        "--num_steps=20",
        "--steps_per_loop=10",
        "--eval_every_steps=10",
        "--dropout_off_at_step=15",
        f"--logdir={logdir}",
    )
    assert result.returncode == 0, result.stderr
    assert "step 15: dropout turned off" in result.stdout
    switch = events.scalars(events.load_run(logdir / "train"), "dropout_enabled")
    assert switch == [(10, 1.0), (15, 1.0), (20, 0.0)]


@pytest.mark.parametrize(
    "flag",
    ["--dropout_rate=1", "--dropout_rate=-0.1", "--dropout_off_at_step=-5", "--batch_size=0"],
)
def test_bad_flags_fail_in_one_line(flag, tmp_path):
    result = run_app(APP, flag, f"--logdir={tmp_path / 'never_created'}")
    assert_one_line_error(result, 2, flag.split("=")[0])
    assert not (tmp_path / "never_created").exists()


def test_unwritable_logdir_names_the_path(tmp_path):
    (tmp_path / "a_file").write_text("")
    logdir = tmp_path / "a_file" / "run"
    assert_one_line_error(run_app(APP, f"--logdir={logdir}"), 1, str(logdir))
