"""`python -m apps.mnist_mlp` as a user runs it: a good run, and bad input that fails cleanly."""

import pytest

from common.loop import phase_times
from tests import tensorboard_events as events
from tests.app_cli import assert_one_line_error, files_and_contents, run_app

APP = "mnist_mlp"


def test_a_short_run_from_the_command_line(tmp_path):
    logdir = tmp_path / "run"
    result = run_app(
        APP,
        "--dataset=synthetic",
        "--num_steps=20",
        "--steps_per_loop=10",
        "--batch_size=16",
        f"--logdir={logdir}",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dataset: synthetic digits")
    assert any(line.startswith("step 10/20") for line in lines)
    assert lines[-1].startswith("final: train/loss=")
    # Where the run's time went, just above: every phase the run met, adding up to the total.
    assert lines[-2].startswith("time: ")
    total, seconds, _ = phase_times.parse_line(lines[-2])
    for phase in ("setup", "first step", "loops", "evals", "checkpoints"):
        assert seconds[phase] > 0, (phase, lines[-2])
    # Met, but on the loop's thread only the weights' copy and a short wait: it may print 0.00.
    assert "eval summaries" in seconds, lines[-2]
    # The eval summaries' own thread ran beside the phases: its seconds are not in the total.
    background = seconds.pop("background")
    assert background > 0
    assert sum(seconds.values()) == pytest.approx(total, abs=0.02)
    assert [step for step, _ in events.scalars(events.load_run(logdir / "eval"), "loss")] == [20]


@pytest.mark.parametrize(
    ("flag", "culprit"),
    [
        ("--num_steps=0", "--num_steps=0"),
        ("--batch_size=-4", "--batch_size=-4"),
        ("--learning_rate=-0.1", "--learning_rate=-0.1"),
        ("--learning_rate=nan", "--learning_rate=nan"),
        ("--dataset=cifar10", "--dataset=cifar10"),
        ("--num_steps=ten", "--num_steps=ten"),
        ("--no_such_flag=1", "no_such_flag"),
        ("stray_argument", "stray_argument"),
    ],
)
def test_bad_flags_fail_in_one_line_before_tensorflow_loads(flag, culprit, tmp_path):
    result = run_app(APP, flag, f"--logdir={tmp_path / 'never_created'}")
    assert_one_line_error(result, 2, culprit)
    assert "cuda" not in result.stderr.lower()  # TensorFlow was never imported.
    assert not (tmp_path / "never_created").exists()


def test_logdir_that_is_a_file(tmp_path):
    not_a_directory = tmp_path / "results.csv"
    not_a_directory.write_text("precious")
    result = run_app(APP, "--dataset=synthetic", "--num_steps=2", f"--logdir={not_a_directory}")
    assert_one_line_error(result, 1, str(not_a_directory), "is a file")
    assert not_a_directory.read_text() == "precious"


def test_rerunning_a_finished_run_says_so_and_touches_nothing(tmp_path):
    logdir = tmp_path / "run"
    flags = ("--dataset=synthetic", "--num_steps=4", "--steps_per_loop=2", f"--logdir={logdir}")
    assert run_app(APP, *flags).returncode == 0
    before = files_and_contents(logdir)

    again = run_app(APP, *flags)
    assert again.returncode == 0, again.stderr
    assert "already finished at step 4: nothing to do" in again.stdout
    assert files_and_contents(logdir) == before


def test_another_model_in_a_finished_logdir_is_refused_and_touches_nothing(tmp_path):
    logdir = tmp_path / "run"
    assert (
        run_app(APP, "--dataset=synthetic", "--num_steps=2", f"--logdir={logdir}").returncode == 0
    )
    before = files_and_contents(logdir)
    result = run_app(
        APP, "--dataset=synthetic", "--num_steps=4", "--hidden_units=8", f"--logdir={logdir}"
    )
    assert_one_line_error(result, 1, str(logdir), "does not fit this model")
    assert files_and_contents(logdir) == before
