"""Command line of the VAE app: flags -> a frozen `Config` -> `train.train_and_evaluate`.

python -m apps.vae_timeseries --num_steps=2000 --latent_dim=8 --kl_warmup_steps=1000
python -m apps.vae_timeseries --data_path=my_series.csv --window_length=32
"""

from common import cli

from . import config

# One flag per Config field, with its default, bounds and help (config.py), checked at parsing:
# a bad flag is reported in milliseconds, before TensorFlow is imported.
FLAGS = cli.define_flags(config.Config, logdir="logs/vae_timeseries")


def run() -> None:
    """Parses the flags, then trains: `train.train_and_evaluate(Config(flags), --logdir)`."""
    cli.run_app(config.Config, train_module=f"{__package__}.train")


if __name__ == "__main__":
    run()
