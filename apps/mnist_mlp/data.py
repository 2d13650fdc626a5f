"""Input pipelines for the MNIST app: full MNIST, the bundled sample, or synthetic digits.

`--dataset=auto` (the default) picks full MNIST when it is already prepared on disk or its download
host answers within seconds, and otherwise the bundled 5,000-digit sample: it never sits through
`tfds.load`'s offline retries (about 205 s).
"""

import dataclasses
import pathlib
import zipfile
import zlib

import numpy as np
import tensorflow as tf
from absl import logging

from common.errors import UserError
from common.loop import input_pipeline

from . import host_probe
from .config import DATASET_NAMES, HOST_PROBE_SECONDS, MNIST_DOWNLOAD_HOST

SAMPLE_PATH = pathlib.Path(__file__).resolve().parent / "assets" / "mnist_sample.npz"
SYNTHETIC_TRAIN_EXAMPLES = 8192
SYNTHETIC_TEST_EXAMPLES = 1024


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Unbatched (pixels, label): 784 float32 pixels in [0, 1] and an int32 label (`preprocess`)."""

    train: tf.data.Dataset
    eval: tf.data.Dataset  # Held out: the test split where the source has one.
    name: str
    description: str


def load_datasets(name: str, data_dir: str | None = None, seed: int = 0) -> Datasets:
    """Loads the dataset called `name` (one of `DATASET_NAMES`).

    Raises:
        UserError: if full MNIST was asked for and can be neither read nor downloaded.
    """
    if name == "auto":
        name, reason = choose_dataset(data_dir)
        datasets = load_datasets(name, data_dir, seed)
        return dataclasses.replace(datasets, description=f"{datasets.description} ({reason})")
    if name == "mnist":
        if not (mnist_is_prepared(data_dir) or download_host_answers()):
            raise UserError(
                f"full MNIST is not prepared in {data_dir or 'the default tfds data_dir'} and its "
                f"download host {MNIST_DOWNLOAD_HOST} does not answer; use --dataset=mnist_sample "
                "to train offline on the bundled sample"
            )
        return load_mnist(data_dir)
    if name == "mnist_sample":
        return load_sample()
    if name == "synthetic":
        return make_synthetic(seed)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def choose_dataset(data_dir: str | None) -> tuple[str, str]:
    """Returns (dataset name, reason) for `--dataset=auto`."""
    if mnist_is_prepared(data_dir):
        return "mnist", "auto: full MNIST is prepared on disk"
    if download_host_answers():
        return "mnist", f"auto: {MNIST_DOWNLOAD_HOST} answers, downloading full MNIST"
    return "mnist_sample", f"auto: offline ({MNIST_DOWNLOAD_HOST} does not answer)"


def mnist_is_prepared(data_dir: str | None) -> bool:
    """True when tfds has MNIST on disk already, so loading it needs no network."""
    import tensorflow_datasets as tfds  # Imported here: it is slow, and most runs never need it.

    # tfds warns "Variant folder ... has no dataset_info.json" for the very case this checks.
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        return tfds.builder("mnist", data_dir=data_dir).is_prepared()
    finally:
        logging.set_verbosity(verbosity)


def download_host_answers(
    host: str = MNIST_DOWNLOAD_HOST, port: int = 443, seconds: float = HOST_PROBE_SECONDS
) -> bool:
    """True when a TCP connection to `host:port` opens within `seconds`, DNS lookup included (of
    the probe `main.py` started before TensorFlow's import, if it did: see host_probe.py)."""
    return host_probe.answers(host, port, seconds)


def load_mnist(data_dir: str | None = None) -> Datasets:
    """Full MNIST (60,000 train, 10,000 test) through tensorflow-datasets, downloading if needed."""
    import tensorflow_datasets as tfds

    train, test = tfds.load(
        "mnist", split=["train", "test"], as_supervised=True, data_dir=data_dir, shuffle_files=False
    )
    # Each split as whole tensors (47 MB of uint8 for train; the loop holds it in memory all the
    # same), so preprocessing is one vectorized op per split, not a map call per digit.
    return preprocessed(
        input_pipeline.materialize(train, "MNIST's train split"),
        input_pipeline.materialize(test, "MNIST's test split"),
        "mnist",
        "full MNIST through tensorflow-datasets",
    )


def load_sample(path: pathlib.Path = SAMPLE_PATH) -> Datasets:
    """The bundled 5,000 real MNIST digits (4,000 train, 1,000 test); see assets/README.md."""
    try:
        with np.load(path) as arrays:
            train = (arrays["train_images"], arrays["train_labels"])
            test = (arrays["test_images"], arrays["test_labels"])
    # A truncated or damaged .npz is a damaged zip: BadZipFile (its directory gone), zlib.error or
    # EOFError (a member cut short).
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UserError(
            f"cannot read the bundled MNIST sample {path}: {error or type(error).__name__}; "
            "restore it (git checkout -- apps/mnist_mlp/assets/mnist_sample.npz), or pass "
            "--dataset=synthetic"
        ) from error
    return preprocessed(
        train,
        test,
        "mnist_sample",
        f"bundled MNIST sample ({len(train[1])} train, {len(test[1])} test digits)",
    )


def make_synthetic(seed: int) -> Datasets:
    """Random 28x28 "digits" whose labels a fixed random linear map decides, so they are learnable.

    For speed tests and plumbing: its accuracy says nothing about handwriting.
    """
    rng = np.random.default_rng(seed)
    num_examples = SYNTHETIC_TRAIN_EXAMPLES + SYNTHETIC_TEST_EXAMPLES
    images = rng.integers(0, 256, size=(num_examples, 28, 28), dtype=np.uint8)
    teacher = rng.normal(size=(28 * 28, 10)).astype(np.float32)
    pixels, _ = preprocess(images, np.zeros(num_examples))
    # In TensorFlow, on the preprocessed pixels: NumPy's float64 version took 0.3 s of setup.
    labels = tf.argmax(tf.matmul(pixels - 0.5, teacher), axis=1, output_type=tf.int32)
    split = SYNTHETIC_TRAIN_EXAMPLES
    return Datasets(
        tf.data.Dataset.from_tensor_slices((pixels[:split], labels[:split])),
        tf.data.Dataset.from_tensor_slices((pixels[split:], labels[split:])),
        "synthetic",
        f"synthetic digits ({split} train, {num_examples - split} test)",
    )


def preprocess(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A split's uint8 digits, [n, 28, 28] or [n, 28, 28, 1] -> float32 [n, 784] in [0, 1];
    labels -> int32.

    Whole splits at once: a per-digit `dataset.map` costs about 35 µs a digit on 2 CPU cores
    (0.3 s for 9,000 digits, a tenth of a default run), the same ops on the whole split 10 ms.
    """
    images = tf.convert_to_tensor(images)
    pixels = tf.reshape(tf.cast(images, tf.float32) / 255.0, [tf.shape(images)[0], 28 * 28])
    return tf.ensure_shape(pixels, [None, 28 * 28]), tf.cast(labels, tf.int32)


def preprocessed(
    train: tuple[object, object], held_out: tuple[object, object], name: str, description: str
) -> Datasets:
    """Datasets of `preprocess`ed examples from `(images, labels)` arrays or tensors of each
    split, ready for the training loop's pipelines."""
    return Datasets(
        tf.data.Dataset.from_tensor_slices(preprocess(*train)),
        tf.data.Dataset.from_tensor_slices(preprocess(*held_out)),
        name,
        description,
    )
