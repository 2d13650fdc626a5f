"""Measures the figures in the README results tables: `make results` (or `python scripts/...`).

Runs each configuration with several seeds, in this process, into temporary logdirs, and prints a
Markdown table: final eval accuracy (mean, min-max), train throughput and wall time, with the
machine named. Full MNIST is measured only when it is prepared or downloadable (see data.py).
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

from apps.mnist_mlp import data, train


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num_steps", type=int, default=2000)
    args = parser.parse_args()

    datasets = ["mnist_sample"]
    if data.mnist_is_prepared(None) or data.download_host_answers():
        datasets.insert(0, "mnist")
    print(f"machine: {machine_name()}\n")
    print(
        "| dataset | steps | batch | seeds | eval accuracy (mean, min-max) | train examples/s | "
        "wall time per run |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset in datasets:
        results = []
        for seed in range(args.seeds):
            config = train.Config(num_steps=args.num_steps, dataset=dataset, seed=seed)
            with tempfile.TemporaryDirectory() as logdir:
                results.append(train.train_and_evaluate(config, logdir))
        accuracies = [result["eval/accuracy"] for result in results]
        print(
            f"| {dataset} | {args.num_steps} | {config.batch_size} | {args.seeds} | "
            f"{statistics.mean(accuracies):.1%} ({min(accuracies):.1%}-{max(accuracies):.1%}) | "
            f"{statistics.median(r['examples_per_second'] for r in results):,.0f} | "
            f"{statistics.median(r['wall_time_seconds'] for r in results):.1f} s |"
        )


if __name__ == "__main__":
    main()
