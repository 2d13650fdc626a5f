"""The MNIST app's settings: defaults, bounds and help text in one place (flags come from here).

TensorFlow-free, so `main.py` defines and checks its flags before TensorFlow is imported.
"""

import dataclasses

from common import settings

DATASET_NAMES = ("auto", "mnist", "mnist_sample", "synthetic")


@dataclasses.dataclass(frozen=True)
class Config(settings.TrainingSettings):
    """Everything a run depends on; `main.py` builds it from flags, tests build it directly."""

    num_steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    steps_per_loop: int = 250
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 1000
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
