"""common.loop.progress: console lines a person reads."""

import re

import pytest

from apps.regression_tape import data as regression_data
from apps.regression_tape import train as regression_train
from common.loop import progress


def test_numbers_are_readable():
    assert progress.format_number(0.123456) == "0.1235"
    assert progress.format_number(90731.4) == "90731"
    assert progress.format_number(2000) == "2000"
    assert progress.format_number(1.0) == "1"


def test_progress_line(capsys):
    progress.print_progress(500, 2000, {"train/loss": 0.25, "eval/accuracy": 0.9361})
    assert (
        capsys.readouterr().out == "step  500/2000 ( 25%)  train/loss=0.25  eval/accuracy=0.9361\n"
    )


def test_the_eta_is_written_as_no_tag(capsys):
    progress.print_progress(500, 2000, {"train/loss": 0.25}, seconds_left=83.4)
    line = capsys.readouterr().out
    assert line == "step  500/2000 ( 25%)  train/loss=0.25  ETA 0:01:23\n"
    # What tests/test_tags_and_steps.py reads as tags: the metrics' names, and nothing else.
    assert re.findall(r"(\S+)=", line) == ["train/loss"]
    assert progress.format_duration(90061) == "1 day, 1:01:01"


def test_time_left_leaves_out_the_first_loop_which_traces():
    time_left = progress.TimeLeft(num_steps=100)
    # The first loop's 5 s are mostly tracing: no ETA from it, however long it took.
    assert time_left.after_loop(step=10, loop_steps=10, loop_seconds=5.0) is None
    # Then the steps left at the speed of the loops since: 80 at 0.1 s, then 70 at 4 s / 20.
    assert time_left.after_loop(step=20, loop_steps=10, loop_seconds=1.0) == pytest.approx(8.0)
    assert time_left.after_loop(step=30, loop_steps=10, loop_seconds=3.0) == pytest.approx(14.0)
    assert time_left.after_loop(step=100, loop_steps=70, loop_seconds=7.0) is None  # Done.


def test_a_run_shows_an_eta_from_its_second_boundary_until_its_last(tmp_path, capsys):
    config = regression_train.Config(num_steps=6, steps_per_loop=2, batch_size=8)
    regression_train.train_and_evaluate(
        config, str(tmp_path), regression_data.make_datasets(seed=0, num_train=64, num_test=16)
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert [re.findall(r"  ETA (\d+:\d\d:\d\d)$", line) != [] for line in lines] == [
        False,
        True,
        False,
    ], lines
