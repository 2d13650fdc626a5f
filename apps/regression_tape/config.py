"""The regression settings: one home, from which main.py makes its flags (no TensorFlow)."""

import dataclasses

from common import settings


@dataclasses.dataclass(frozen=True)
class Config(settings.TrainingSettings):
    """A run's settings: the shared ones (common/settings.py; defaults set here) and its own."""

    num_steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 3e-3
    # The model is tiny: 500 steps last about 50 ms here, long enough for the boundary's few
    # tf.function calls to cost about 2%.
    steps_per_loop: int = 500
    noise_std: float = settings.setting(
        0.1,
        "Std of the Gaussian noise on targets: the best possible RMSE.",
        lower_bound=0,
        check=settings.FINITE,
    )
