"""Command line of the regression app: flags -> a frozen `train.Config` -> `train_and_evaluate`.

python -m apps.regression_tape --num_steps=3000 --logdir=logs/regression_tape
"""

import math

from absl import app, flags

from common import cli, startup

flags.DEFINE_string(
    "logdir", "logs/regression_tape", "Run directory: summaries and checkpoints; reruns resume."
)
flags.DEFINE_integer("num_steps", 3000, "Number of training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Examples per training step.", lower_bound=1)
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate (> 0).")
flags.DEFINE_integer("seed", 0, "Seed for the data, weights and shuffling.", lower_bound=0)
flags.DEFINE_float(
    "noise_std", 0.1, "Std of the Gaussian noise on targets: the best possible RMSE.", lower_bound=0
)
flags.DEFINE_integer(
    "steps_per_loop",
    500,
    "Train steps per tf.function call; summaries between calls.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_every_steps", 500, "Evaluate (and write histograms) this often.", lower_bound=1
)

flags.DEFINE_bool(
    "jit_compile", False, "XLA-compile the train step (faster for some models; see make bench)."
)

flags.register_validator(
    "learning_rate",
    lambda value: math.isfinite(value) and value > 0,
    message="must be a positive finite number",
)
flags.register_validator("noise_std", math.isfinite, message="must be a finite number")

flags.DEFINE_integer(
    "checkpoint_every_steps", 1000, "Save a checkpoint this often (and at the end).", lower_bound=1
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
        noise_std=FLAGS.noise_std,
        steps_per_loop=FLAGS.steps_per_loop,
        eval_every_steps=FLAGS.eval_every_steps,
        jit_compile=FLAGS.jit_compile,
        strategy=FLAGS.strategy,
        num_cpu_devices=FLAGS.num_cpu_devices,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
    )
    with cli.exit_on_user_error():
        train.train_and_evaluate(config, FLAGS.logdir)


def run() -> None:
    """Parses flags (one-line errors) and runs `main`."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
