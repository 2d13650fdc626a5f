"""Measures the figures in the results tables (docs/results.md, each app's README): `make results`.

Runs each app's configurations with several seeds, in this process, into temporary logdirs, and
prints one Markdown table per app (mean and min-max over seeds), with the machine and date. Full
MNIST is measured only when it is prepared or downloadable (see apps/mnist_mlp/data.py).
"""

import argparse
import contextlib
import datetime
import io
import os
import platform
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import startup

# TensorFlow's C++ start-up lines would stand above the tables; an import failure still shows.
startup.import_tensorflow(show_startup_logs=False)

from dataclasses import replace

import tensorflow as tf

from apps.conditional_dropout import train as dropout_train
from apps.mnist_mlp import data as mnist_data
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import train as vae_train


def machine_name() -> str:
    """CPU model and core count, e.g. `AMD EPYC 7B13, 2 cores`."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, TensorFlow {tf.__version__} CPU"


def quiet(function, *args):
    """Runs a training function with its per-loop console output swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def spread(values: list[float], form: str) -> str:
    """`mean (min-max)` in the given format."""
    separator = " to " if min(values) < 0 else "-"  # "-157 to -38", not "-157--38".
    return f"{statistics.mean(values):{form}} ({min(values):{form}}{separator}{max(values):{form}})"


def measure_mnist(seeds: int, num_steps: int) -> None:
    datasets = ["mnist_sample"]
    if mnist_data.mnist_is_prepared(None) or mnist_data.download_host_answers():
        datasets.insert(0, "mnist")
    print("\n### mnist_mlp\n")
    print(
        "| dataset | steps | batch | seeds | eval accuracy (mean, min-max) | train examples/s | "
        "wall time per run |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset in datasets:
        results = []
        for seed in range(seeds):
            config = mnist_train.Config(num_steps=num_steps, dataset=dataset, seed=seed)
            with tempfile.TemporaryDirectory() as logdir:
                results.append(quiet(mnist_train.train_and_evaluate, config, logdir))
        print(
            f"| {dataset} | {num_steps} | {config.batch_size} | {seeds} | "
            f"{spread([r['eval/accuracy'] for r in results], '.1%')} | "
            f"{statistics.median(r['examples_per_second'] for r in results):,.0f} | "
            f"{statistics.median(r['wall_time_seconds'] for r in results):.1f} s |"
        )


def measure_regression(seeds: int) -> None:
    print("\n### regression_tape\n")
    print(
        "| config | seeds | eval RMSE (mean, min-max) | noise std (best RMSE) | "
        "predict-the-mean RMSE | wall time per run |"
    )
    print("|---|---|---|---|---|---|")
    config = regression_train.Config()
    results = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as logdir:
            results.append(
                quiet(regression_train.train_and_evaluate, replace(config, seed=seed), logdir)
            )
    print(
        f"| defaults ({config.num_steps} steps, batch {config.batch_size}, Adam "
        f"{config.learning_rate:g}) | {seeds} | {spread([r['eval/rmse'] for r in results], '.3f')} "
        f"| {config.noise_std:g} | {statistics.mean(r['trivial_rmse'] for r in results):.3f} | "
        f"{statistics.median(r['wall_time_seconds'] for r in results):.1f} s |"
    )


def measure_dropout(seeds: int) -> None:
    print("\n### conditional_dropout\n")
    print(
        "| dropout | steps | seeds | final eval loss | lowest eval loss | final eval accuracy "
        "| final train loss |"
    )
    print("|---|---|---|---|---|---|---|")
    base = dropout_train.Config()
    variants = {
        "none (`--dropout_rate=0`)": replace(base, dropout_rate=0.0),
        "0.5 (default)": base,
        "0.5, off at step 1000 (`--dropout_off_at_step=1000`)": replace(
            base, dropout_off_at_step=1000
        ),
    }
    for label, config in variants.items():
        results = []
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as logdir:
                results.append(
                    quiet(dropout_train.train_and_evaluate, replace(config, seed=seed), logdir)
                )
        print(
            f"| {label} | {config.num_steps} | {seeds} | "
            f"{spread([r['eval/loss'] for r in results], '.3f')} | "
            f"{spread([r['eval/min_loss'] for r in results], '.3f')} | "
            f"{spread([r['eval/accuracy'] for r in results], '.1%')} | "
            f"{spread([r['train/loss'] for r in results], '.3f')} |"
        )


def measure_vae(seeds: int) -> None:
    print("\n### vae_timeseries\n")
    print(
        "| config | seeds | eval ELBO | eval reconstruction | eval KL | first eval ELBO "
        "| wall time per run |"
    )
    print("|---|---|---|---|---|---|---|")
    config = vae_train.Config()
    results = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as logdir:
            results.append(quiet(vae_train.train_and_evaluate, replace(config, seed=seed), logdir))
    print(
        f"| defaults ({config.num_steps} steps, batch {config.batch_size}, latent "
        f"{config.latent_dim}, KL warm-up {config.kl_warmup_steps}) | {seeds} | "
        f"{spread([r['eval/elbo'] for r in results], '.1f')} | "
        f"{spread([r['eval/reconstruction_loss'] for r in results], '.1f')} | "
        f"{spread([r['eval/kl'] for r in results], '.1f')} | "
        f"{spread([r['eval/first_elbo'] for r in results], '.1f')} | "
        f"{statistics.median(r['wall_time_seconds'] for r in results):.1f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mnist_steps", type=int, default=2000)
    parser.add_argument(
        "--apps", default="mnist_mlp,regression_tape,conditional_dropout,vae_timeseries"
    )
    args = parser.parse_args()
    apps = args.apps.split(",")

    print(f"machine: {machine_name()}; {datetime.date.today()}")
    if "mnist_mlp" in apps:
        measure_mnist(args.seeds, args.mnist_steps)
    if "regression_tape" in apps:
        measure_regression(args.seeds)
    if "conditional_dropout" in apps:
        measure_dropout(args.seeds)
    if "vae_timeseries" in apps:
        measure_vae(args.seeds)


if __name__ == "__main__":
    main()
