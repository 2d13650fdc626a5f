"""common.progress: console lines a person reads."""

from common import progress


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
