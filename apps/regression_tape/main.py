"""Command line of the regression app: flags -> a frozen `Config` -> `train.train_and_evaluate`.

python -m apps.regression_tape --num_steps=3000 --noise_std=0.1 --logdir=logs/regression_tape
"""

from absl import app

from common import cli, startup

from . import config

# One flag per Config field, with its default, bounds and help (config.py), checked at parsing:
# a bad flag is reported in milliseconds, before TensorFlow is imported.
FLAGS = cli.define_flags(config.Config, logdir="logs/regression_tape")


def main(argv: list[str]) -> None:
    """Trains with the settings from the command line."""
    del argv  # parse_flags has rejected stray arguments.
    with cli.exit_on_user_error():
        # Here, once the flags are known to be good; its C++ start-up lines are hidden unless
        # --verbosity=0 asks for them.
        startup.import_tensorflow(show_startup_logs=cli.startup_logs_requested())
        from . import train

        train.train_and_evaluate(cli.config_from_flags(config.Config), FLAGS.logdir)


def run() -> None:
    """Parses flags (one-line errors) and runs `main`."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
