"""Command line of the regression app: flags -> a frozen `Config` -> `train.train_and_evaluate`.

python -m apps.regression_tape --num_steps=3000 --noise_std=0.1 --logdir=logs/regression_tape
"""

from common import cli

from . import config

# One flag per Config field, with its default, bounds and help (config.py), checked at parsing:
# a bad flag is reported in milliseconds, before TensorFlow is imported.
FLAGS = cli.define_flags(config.Config, logdir="logs/regression_tape")


def run() -> None:
    """Parses the flags, then trains: `train.train_and_evaluate(Config(flags), --logdir)`."""
    cli.run_app(config.Config, train_module=f"{__package__}.train")


if __name__ == "__main__":
    run()
