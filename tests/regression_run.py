"""A tiny regression_tape run, shared by the tests that damage, share or resume a logdir: its
config, its data (made once per process) and one call that trains it in a logdir."""

import functools
import pathlib

from apps.regression_tape import data as regression_data
from apps.regression_tape import train as regression_train

CONFIG = regression_train.Config(
    num_steps=4, batch_size=8, steps_per_loop=2, eval_every_steps=2, checkpoint_every_steps=2
)


@functools.cache
def tiny_data() -> regression_data.Datasets:
    return regression_data.make_datasets(seed=0, num_train=64, num_test=16)


def train(logdir: pathlib.Path | str, num_steps: int = 8, **settings: object) -> dict[str, float]:
    """Trains CONFIG, with `num_steps` and any other `settings` changed, in `logdir` (resuming
    it, as the app does); returns the run's metrics."""
    config = regression_train.Config(**{**CONFIG.__dict__, "num_steps": num_steps, **settings})
    return regression_train.train_and_evaluate(config, str(logdir), datasets=tiny_data())
