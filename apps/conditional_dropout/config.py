"""The dropout app's settings: one home, from which main.py makes its flags (no TensorFlow)."""

import dataclasses

from common import settings


@dataclasses.dataclass(frozen=True)
class Config(settings.TrainingSettings):
    """A run's settings: the shared ones (common/settings.py; defaults set here) and its own."""

    num_steps: int = 1500
    batch_size: int = 32
    eval_every_steps: int = 100  # Often: the eval curve shows where overfitting starts.
    checkpoint_every_steps: int = 500
    dropout_rate: float = settings.setting(
        0.5,
        "Fraction of units dropped in training; 0 disables dropout.",
        check=settings.Check(lambda value: 0 <= value < 1, "must be in [0, 1)"),
    )
    dropout_off_at_step: int = settings.setting(
        0,
        "Turn dropout off from this step on, at run time, without retracing (0: never).",
        lower_bound=0,
        # A resume past the old step would keep the switch the checkpoint holds, whatever the
        # new step says: refused rather than half applied.
        fixed_on_resume="the dropout switches are model weights, so the checkpoint's say "
        "whether dropout is on",
    )
    hidden_units: int = settings.setting(
        256, "Width of both hidden layers.", lower_bound=1, upper_bound=2**20
    )
