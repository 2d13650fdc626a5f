"""The VAE app's settings: one home, from which main.py makes its flags (no TensorFlow)."""

import dataclasses

from common import settings


@dataclasses.dataclass(frozen=True)
class Config(settings.TrainingSettings):
    """A run's settings: the shared ones (common/settings.py; defaults set here) and its own."""

    batch_size: int = 32
    data_path: str | None = settings.setting(
        None,
        "CSV of a multivariate series: one column per channel, optional header and time column. "
        "Default: the built-in synthetic series.",
    )
    latent_dim: int = settings.setting(
        8, "Size of the latent code.", lower_bound=1, upper_bound=2**16
    )
    window_length: int = settings.setting(
        64,
        "Time steps per window (a multiple of 4, at least 8).",
        lower_bound=8,
        upper_bound=2**16,
        check=settings.Check(lambda value: value % 4 == 0, "must be a multiple of 4"),
    )
    num_channels: int = settings.setting(
        32,
        "Channels of the synthetic series (ignored with --data_path).",
        lower_bound=1,
        upper_bound=2**16,
    )
    kl_warmup_steps: int = settings.setting(
        1000, "Steps over which the KL weight rises from 0 to 1 (0: none).", lower_bound=0
    )
