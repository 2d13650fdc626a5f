"""Command line of the MNIST app: flags -> a frozen `Config` -> `train.train_and_evaluate`.

python -m apps.mnist_mlp --num_steps=2000 --dataset=mnist_sample --logdir=logs/mnist_mlp
"""

from common import cli

from . import config, host_probe

# One flag per Config field, with its default, bounds and help (config.py), checked at parsing:
# a bad flag is reported in milliseconds, before TensorFlow is imported.
FLAGS = cli.define_flags(config.Config, logdir="logs/mnist_mlp")


def probe_download_host(settings: config.Config) -> None:
    """`--dataset=auto` may ask whether MNIST's host answers: ask now, while TensorFlow imports."""
    if settings.dataset == "auto":
        host_probe.start(config.MNIST_DOWNLOAD_HOST, 443, config.HOST_PROBE_SECONDS)


def run() -> None:
    """Parses the flags, then trains: `train.train_and_evaluate(Config(flags), --logdir)`."""
    cli.run_app(
        config.Config, train_module=f"{__package__}.train", before_tensorflow=probe_download_host
    )


if __name__ == "__main__":
    run()
