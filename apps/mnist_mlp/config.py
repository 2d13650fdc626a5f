"""The MNIST app's settings: one home, from which main.py makes its flags (no TensorFlow)."""

import dataclasses

from common import settings

DATASET_NAMES = ("auto", "mnist", "mnist_sample", "synthetic")
# Where tensorflow-datasets downloads MNIST from (see tensorflow_datasets' mnist.py), and how long
# `--dataset=auto` gives it to answer.
MNIST_DOWNLOAD_HOST = "storage.googleapis.com"
HOST_PROBE_SECONDS = 3.0


@dataclasses.dataclass(frozen=True)
class Config(settings.TrainingSettings):
    """A run's settings: the shared ones (common/settings.py; defaults set here) and its own."""

    # 250 steps last about 100 ms here: the boundary's few tf.function calls cost about 1%.
    steps_per_loop: int = 250
    dataset: str = settings.setting(
        "auto",
        "mnist: full MNIST via tensorflow-datasets; mnist_sample: 5,000 bundled real digits "
        "(offline); synthetic: generated; auto: mnist if prepared or downloadable within "
        "seconds, else mnist_sample.",
        choices=DATASET_NAMES,
    )
    data_dir: str | None = settings.setting(
        None, "tensorflow-datasets data_dir for full MNIST (default ~/tensorflow_datasets)."
    )
    hidden_units: int = settings.setting(
        64, "Width of the hidden layer.", lower_bound=1, upper_bound=2**20
    )
