"""Command line of the MNIST app: flags -> a frozen `Config` -> `train.train_and_evaluate`.

python -m apps.mnist_mlp --num_steps=2000 --dataset=mnist_sample --logdir=logs/mnist_mlp
"""

from common import cli

from . import config

# One flag per Config field, with its default, bounds and help (config.py), checked at parsing:
# a bad flag is reported in milliseconds, before TensorFlow is imported.
FLAGS = cli.define_flags(config.Config, logdir="logs/mnist_mlp")


def run() -> None:
    """Parses the flags, then trains: `train.train_and_evaluate(Config(flags), --logdir)`."""
    cli.run_app(config.Config, train_module=f"{__package__}.train")


if __name__ == "__main__":
    run()
