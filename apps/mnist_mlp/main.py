"""Command line of the MNIST app: flags -> a frozen `train.Config` -> `train.train_and_evaluate`.

python -m apps.mnist_mlp --num_steps=2000 --dataset=mnist_sample --logdir=logs/mnist_mlp
"""

import math

from absl import app, flags

from common import cli, startup

# Kept literal (a test checks it against data.DATASET_NAMES) so that flags parse before TensorFlow
# is imported: a bad flag is reported in milliseconds, with none of TensorFlow's start-up noise.
DATASET_NAMES = ("auto", "mnist", "mnist_sample", "synthetic")

flags.DEFINE_string(
    "logdir", "logs/mnist_mlp", "Run directory: summaries and checkpoints; reruns resume."
)
flags.DEFINE_integer("num_steps", 2000, "Number of training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Examples per training step.", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (> 0).")
flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and synthetic data.", lower_bound=0)
flags.DEFINE_enum(
    "dataset",
    "auto",
    DATASET_NAMES,
    "mnist: full MNIST via tensorflow-datasets; mnist_sample: 5,000 bundled real digits (offline); "
    "synthetic: generated; auto: mnist if prepared or downloadable within seconds, "
    "else mnist_sample.",
)
flags.DEFINE_string(
    "data_dir", None, "tensorflow-datasets data_dir for full MNIST (default ~/tensorflow_datasets)."
)
flags.DEFINE_integer(
    "steps_per_loop",
    250,
    "Train steps per tf.function call; summaries are written between calls.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_every_steps", 500, "Evaluate (and write histograms) this often.", lower_bound=1
)
flags.DEFINE_integer(
    "checkpoint_every_steps", 1000, "Save a checkpoint this often (and at the end).", lower_bound=1
)
flags.DEFINE_integer("hidden_units", 64, "Width of the hidden layer.", lower_bound=1)
flags.DEFINE_bool(
    "profile",
    False,
    "Capture a profiler trace of the second loop (steps_per_loop steps) into "
    "<logdir>/train/plugins/profile, for TensorBoard's Profile tab.",
)

flags.DEFINE_bool(
    "jit_compile", False, "XLA-compile the train step (faster for some models; see make bench)."
)

cli.define_strategy_flags()  # --strategy, --num_cpu_devices.

flags.register_validator(
    "learning_rate",
    lambda value: math.isfinite(value) and value > 0,
    message="must be a positive finite number",
)

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv  # parse_flags has rejected stray arguments.
    startup.import_tensorflow(show_startup_logs=cli.startup_logs_requested())
    from . import train  # Here, not at the top: see DATASET_NAMES.

    config = train.Config(
        num_steps=FLAGS.num_steps,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        seed=FLAGS.seed,
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        steps_per_loop=FLAGS.steps_per_loop,
        eval_every_steps=FLAGS.eval_every_steps,
        jit_compile=FLAGS.jit_compile,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
        hidden_units=FLAGS.hidden_units,
        profile=FLAGS.profile,
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
