"""Command line of the dropout app: flags -> a frozen `Config` -> `train.train_and_evaluate`.

python -m apps.conditional_dropout --dropout_rate=0.5 --dropout_off_at_step=1000
"""

from common import cli

from . import config

# One flag per Config field, with its default, bounds and help (config.py), checked at parsing:
# a bad flag is reported in milliseconds, before TensorFlow is imported.
FLAGS = cli.define_flags(config.Config, logdir="logs/conditional_dropout")


def run() -> None:
    """Parses the flags, then trains: `train.train_and_evaluate(Config(flags), --logdir)`."""
    cli.run_app(config.Config, train_module=f"{__package__}.train")


if __name__ == "__main__":
    run()
