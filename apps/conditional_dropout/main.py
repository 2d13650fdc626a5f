"""Command line of the dropout app: flags -> a frozen `train.Config` -> `train_and_evaluate`.

python -m apps.conditional_dropout --dropout_rate=0.5 --dropout_off_at_step=1000
"""

import math

from absl import app, flags

from common import cli, startup

flags.DEFINE_string(
    "logdir", "logs/conditional_dropout", "Run directory: summaries and checkpoints; reruns resume."
)
flags.DEFINE_integer("num_steps", 1500, "Number of training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Examples per training step.", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (> 0).")
flags.DEFINE_integer("seed", 0, "Seed for the data, weights, dropout and shuffling.", lower_bound=0)
flags.DEFINE_float(
    "dropout_rate", 0.5, "Fraction of units dropped in training; 0 disables dropout.", lower_bound=0
)
flags.DEFINE_integer(
    "dropout_off_at_step",
    0,
    "Turn dropout off from this step on, at run time, without retracing (0: never).",
    lower_bound=0,
)
flags.DEFINE_integer("hidden_units", 256, "Width of both hidden layers.", lower_bound=1)
flags.DEFINE_integer(
    "steps_per_loop",
    100,
    "Train steps per tf.function call; summaries between calls.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_every_steps", 100, "Evaluate (and write histograms) this often.", lower_bound=1
)

flags.register_validator(
    "learning_rate",
    lambda value: math.isfinite(value) and value > 0,
    message="must be a positive finite number",
)
flags.register_validator("dropout_rate", lambda value: 0 <= value < 1, message="must be in [0, 1)")

flags.DEFINE_integer(
    "checkpoint_every_steps", 500, "Save a checkpoint this often (and at the end).", lower_bound=1
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
        dropout_rate=FLAGS.dropout_rate,
        dropout_off_at_step=FLAGS.dropout_off_at_step,
        hidden_units=FLAGS.hidden_units,
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
