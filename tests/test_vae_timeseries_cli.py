"""`python -m apps.vae_timeseries` as a user runs it."""

import pytest

from tests import tensorboard_events as events
from tests.app_cli import assert_one_line_error, run_app

APP = "vae_timeseries"
TINY = (
    "--num_steps=4",
    "--steps_per_loop=2",
    "--window_length=16",
    "--num_channels=4",
    "--batch_size=8",
)


def test_a_short_run_from_the_command_line(tmp_path):
    logdir = tmp_path / "run"
    result = run_app(APP, *TINY, f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("dataset: synthetic: 4 channels")
    assert result.stdout.splitlines()[-1].startswith("final: ")
    assert events.tags_by_plugin(events.load_run(logdir / "eval"))["images"] == ["reconstructions"]


@pytest.mark.parametrize(
    "flag", ["--window_length=30", "--window_length=4", "--latent_dim=0", "--kl_warmup_steps=-1"]
)
def test_bad_flags_fail_in_one_line(flag, tmp_path):
    result = run_app(APP, flag, f"--logdir={tmp_path / 'never_created'}")
    assert_one_line_error(result, 2, flag.split("=")[0])
    assert not (tmp_path / "never_created").exists()


def test_a_malformed_csv_fails_in_one_line_before_the_logdir_is_touched(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,x\n")
    logdir = tmp_path / "run"
    result = run_app(APP, f"--data_path={bad}", f"--logdir={logdir}")
    assert_one_line_error(result, 1, str(bad), "row 3 column 2")
    assert not logdir.exists()


def test_a_missing_csv_fails_in_one_line(tmp_path):
    missing = tmp_path / "missing.csv"
    assert_one_line_error(run_app(APP, f"--data_path={missing}"), 1, str(missing), "does not exist")
