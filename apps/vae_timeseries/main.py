"""Command line of the VAE app: flags -> a frozen `train.Config` -> `train.train_and_evaluate`.

python -m apps.vae_timeseries --num_steps=2000 --latent_dim=8 --kl_warmup_steps=1000
python -m apps.vae_timeseries --data_path=my_series.csv --window_length=32
"""

import math

from absl import app, flags

from common import cli, startup

flags.DEFINE_string(
    "logdir", "logs/vae_timeseries", "Run directory: summaries and checkpoints; reruns resume."
)
flags.DEFINE_integer("num_steps", 2000, "Number of training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Windows per training step.", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (> 0).")
flags.DEFINE_integer(
    "seed", 0, "Seed for the synthetic series, weights and sampling.", lower_bound=0
)
flags.DEFINE_string(
    "data_path",
    None,
    "CSV of a multivariate series: one column per channel, optional header and time column. "
    "Default: the built-in synthetic series.",
)
flags.DEFINE_integer("latent_dim", 8, "Size of the latent code.", lower_bound=1)
flags.DEFINE_integer(
    "window_length", 64, "Time steps per window (a multiple of 4, at least 8).", lower_bound=8
)
flags.DEFINE_integer(
    "num_channels",
    32,
    "Channels of the synthetic series (ignored with --data_path).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "kl_warmup_steps",
    1000,
    "Steps over which the KL weight rises from 0 to 1 (0: none).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "steps_per_loop",
    100,
    "Train steps per tf.function call; summaries between calls.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_every_steps", 500, "Evaluate (histograms and images too) this often.", lower_bound=1
)
flags.DEFINE_integer(
    "checkpoint_every_steps", 1000, "Save a checkpoint this often (and at the end).", lower_bound=1
)

flags.register_validator(
    "learning_rate",
    lambda value: math.isfinite(value) and value > 0,
    message="must be a positive finite number",
)
flags.register_validator(
    "window_length", lambda value: value % 4 == 0, message="must be a multiple of 4"
)

cli.define_strategy_flags()  # --strategy, --num_cpu_devices.

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv  # parse_flags has rejected stray arguments.
    startup.import_tensorflow(show_startup_logs=cli.startup_logs_requested())
    # Imported here, not at the top, so a bad flag is reported before TensorFlow loads.
    from . import train

    config = train.Config(
        num_steps=FLAGS.num_steps,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        seed=FLAGS.seed,
        data_path=FLAGS.data_path,
        latent_dim=FLAGS.latent_dim,
        window_length=FLAGS.window_length,
        num_channels=FLAGS.num_channels,
        kl_warmup_steps=FLAGS.kl_warmup_steps,
        steps_per_loop=FLAGS.steps_per_loop,
        eval_every_steps=FLAGS.eval_every_steps,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
        strategy=FLAGS.strategy,
        num_cpu_devices=FLAGS.num_cpu_devices,
    )
    with cli.exit_on_user_error():
        train.train_and_evaluate(config, FLAGS.logdir)


def run() -> None:
    """Parses flags (one-line errors) and runs `main`."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
