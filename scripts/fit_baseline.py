"""The same work as an app's default run, done the Keras way: `model.fit`, for `make bench`'s
end-to-end section.

    python scripts/fit_baseline.py --app mnist_mlp --logdir /tmp/fit_mnist [--num_steps 2000]

Same model, data, batch size, optimizer, pipeline (`common.loop.input_pipeline`), number of steps,
eval set and cadence (`eval_every_steps`: fit's epochs are that long, with `validation_data`),
checkpoint cadence (`BackupAndRestore(save_freq=checkpoint_every_steps)`) and TensorBoard logging
(the TensorBoard callback, weight histograms at every eval, scalars every `steps_per_loop`
batches), with `steps_per_execution=32`, as the app's own defaults set them (fit rounds each epoch
up to a multiple of 32 steps: 512 for 500; compare time per step), on TensorFlow's default
threads (`--app_threads`: those the apps set, see common.distribution.set_compute_threads).
Prints one line, `fit: steps=N wall_time_seconds=S`, the time inside this process from building
the model on.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import startup

startup.import_tensorflow(show_startup_logs=False)

import keras

from apps.mnist_mlp import config as mnist_config
from apps.mnist_mlp import data as mnist_data
from apps.mnist_mlp import model as mnist_model
from apps.regression_tape import config as regression_config
from apps.regression_tape import data as regression_data
from apps.regression_tape import model as regression_model
from apps.vae_timeseries import config as vae_config
from apps.vae_timeseries import data as vae_data
from common import distribution
from common.loop import input_pipeline

APPS = ("mnist_mlp", "regression_tape", "vae_timeseries")
# The app's command that this baseline matches (the bench, python -m scripts.bench, runs both).
APP_FLAGS = {"mnist_mlp": ("--dataset=synthetic",), "regression_tape": (), "vae_timeseries": ()}


def build(app: str):
    """(config, model, loss, metrics, train examples, eval examples) of an app, as its defaults."""
    if app == "mnist_mlp":
        config = mnist_config.Config(dataset="synthetic")
        datasets = mnist_data.load_datasets("synthetic", seed=config.seed)
        model = mnist_model.create_model(config.hidden_units)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return config, model, loss, ["accuracy"], datasets.train, datasets.eval
    if app == "regression_tape":
        config = regression_config.Config()
        datasets = regression_data.make_datasets(config.seed, config.noise_std)
        metrics = [keras.metrics.MeanAbsoluteError(), keras.metrics.RootMeanSquaredError()]
        model = regression_model.create_model()
        return (
            config,
            model,
            keras.losses.MeanSquaredError(),
            metrics,
            datasets.train,
            datasets.eval,
        )
    config = vae_config.Config()
    datasets = vae_data.load_datasets(None, config.window_length, config.num_channels, config.seed)
    # The VAE with its KL term as add_loss; imported here, so that the other apps' baselines do
    # not import the VAE's train module in their measured start-up.
    from scripts.bench.fit_models import vae_fit_model

    model, loss = vae_fit_model(config.window_length, datasets.num_channels, config.latent_dim)
    pairs = (datasets.train.map(lambda w: (w, w)), datasets.eval.map(lambda w: (w, w)))
    return config, model, loss, [], *pairs


def main() -> None:
    """Fits the app given by --app as its defaults set it and prints the `fit:` line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=APPS, required=True)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--num_steps", type=int, default=None, help="default: the app's")
    parser.add_argument(
        "--app_threads",
        action="store_true",
        help="TensorFlow's threads as the apps set them (default: TensorFlow's, as fit users run)",
    )
    args = parser.parse_args()
    if args.app_threads:
        distribution.set_compute_threads()  # Before any TensorFlow op, as the apps do.
    start = time.perf_counter()
    config, model, loss, metrics, train, held_out = build(args.app)
    keras.utils.set_random_seed(config.seed)
    num_steps = args.num_steps or config.num_steps
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=loss,
        metrics=metrics,
        steps_per_execution=32,
    )
    epoch_steps = min(config.eval_every_steps, num_steps)
    model.fit(
        input_pipeline.shuffled_batches(train, config.batch_size, config.seed),
        epochs=max(1, num_steps // epoch_steps),
        steps_per_epoch=epoch_steps,
        validation_data=input_pipeline.eval_batches(held_out, config.batch_size),
        callbacks=[
            keras.callbacks.TensorBoard(
                args.logdir, histogram_freq=1, update_freq=config.steps_per_loop
            ),
            keras.callbacks.BackupAndRestore(
                os.path.join(args.logdir, "backup"), save_freq=config.checkpoint_every_steps
            ),
        ],
        shuffle=False,  # The pipeline reshuffles every epoch itself.
        verbose=0,
    )
    seconds = time.perf_counter() - start
    print(f"fit: steps={int(model.optimizer.iterations.numpy())} wall_time_seconds={seconds:.3f}")


if __name__ == "__main__":
    main()
