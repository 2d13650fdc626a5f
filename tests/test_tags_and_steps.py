"""What a user sees must not change by accident: the runs, tags and steps of one short run per app.

`tests/golden/tags_and_steps.json` was recorded from the apps as they were before the training loop
moved into `common/` (issue "One training loop in common/"), by running this file as a script:

    .venv/bin/python -m tests.test_tags_and_steps --record

Each app runs a tiny config that crosses every kind of boundary (a loop, an eval, a checkpoint, the
final step, and for conditional_dropout the dropout switch between loop boundaries); the test
compares, run by run and tag by tag, the steps at which TensorBoard's loader finds summaries.
"""

import json
import pathlib
import re
import sys

import pytest

from apps.conditional_dropout import train as dropout_train
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import train as vae_train
from tests import tensorboard_events as events

GOLDEN_PATH = pathlib.Path(__file__).parent / "golden" / "tags_and_steps.json"

SHORT = {"num_steps": 7, "steps_per_loop": 2, "eval_every_steps": 4, "checkpoint_every_steps": 4}
RUNS = {
    "mnist_mlp": lambda logdir: mnist_train.train_and_evaluate(
        mnist_train.Config(**SHORT, batch_size=16, dataset="synthetic"), logdir
    ),
    "regression_tape": lambda logdir: regression_train.train_and_evaluate(
        regression_train.Config(**SHORT, batch_size=16), logdir
    ),
    "conditional_dropout": lambda logdir: dropout_train.train_and_evaluate(
        dropout_train.Config(**SHORT, batch_size=16, dropout_off_at_step=3), logdir
    ),
    "vae_timeseries": lambda logdir: vae_train.train_and_evaluate(
        vae_train.Config(
            **SHORT, batch_size=8, window_length=16, num_channels=4, kl_warmup_steps=4
        ),
        logdir,
    ),
}


def tags_and_steps(logdir: pathlib.Path) -> dict[str, dict[str, list[int]]]:
    """{run: {"<plugin>:<tag>": [steps]}} for the logdir's root, train/ and eval/ runs."""
    result = {}
    for run_name in (".", "train", "eval"):
        run = events.load_run(logdir / run_name)
        tags = {}
        for plugin, plugin_tags in events.tags_by_plugin(run).items():
            for tag in plugin_tags:
                tags[f"{plugin}:{tag}"] = [event.step for event in run.Tensors(tag)]
        tags["run_level_graph"] = [int(run.Tags()["graph"])]
        result[run_name] = dict(sorted(tags.items()))
    return result


def record(directory: pathlib.Path) -> dict:
    return {name: tags_and_steps_of_run(name, directory) for name in RUNS}


def tags_and_steps_of_run(name: str, directory: pathlib.Path) -> dict:
    logdir = directory / name
    RUNS[name](str(logdir))
    return tags_and_steps(logdir)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_tags_and_steps_are_those_recorded_before_the_loop_moved(name, tmp_path, capsys):
    expected = json.loads(GOLDEN_PATH.read_text())[name]
    assert tags_and_steps_of_run(name, tmp_path) == expected
    # The console names each value as TensorBoard does: <run>/<tag>, a scalar of that run.
    scalar_tags = {
        f"{run}/{tag.removeprefix('scalars:')}"
        for run in ("train", "eval")
        for tag in expected[run]
        if tag.startswith("scalars:")
    }
    progress_lines = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")
    ]
    console_keys = {key for line in progress_lines for key in re.findall(r"(\S+)=", line)}
    assert console_keys and console_keys <= scalar_tags, console_keys - scalar_tags


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_tags_and_steps --record")
    import tempfile

    with tempfile.TemporaryDirectory() as temporary:
        recorded = record(pathlib.Path(temporary))
    GOLDEN_PATH.write_text(json.dumps(recorded, indent=1) + "\n")
    print(f"wrote {GOLDEN_PATH}")
