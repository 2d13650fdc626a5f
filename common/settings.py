"""The settings every app shares, with their defaults, bounds and help text, in one home.

An app's `config.py` subclasses `TrainingSettings`, overrides the defaults that differ for it and
adds its own fields with `setting(...)`:

    @dataclasses.dataclass(frozen=True)
    class Config(settings.TrainingSettings):
        num_steps: int = 3000                     # Same flag, another default.
        hidden_units: int = settings.setting(64, "Width of the hidden layer.", lower_bound=1)

`main.py` defines one absl flag per field from it (`common.cli.define_flags`), so a default, a
bound or a help text is written once, and tests build the same `Config` directly. This module
imports nothing heavy: flags are parsed and checked before TensorFlow is imported, so a bad one is
reported at once.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

# tf.distribute strategies by name (common.distribution maps them to strategy objects; a test
# keeps the two lists equal).
STRATEGY_NAMES = ("default", "mirrored", "multi_worker")
# --mixed_precision's choices: "none" is float32 throughout; the others are Keras's
# mixed-precision policies of those names (common.loop.training_loop sets the policy and, for
# mixed_float16, wraps the optimizer for dynamic loss scaling).
MIXED_PRECISION_NAMES = ("none", "mixed_float16", "mixed_bfloat16")
# numpy's and Python's seeds must fit in 32 bits (keras.utils.set_random_seed seeds both).
MAX_SEED = 2**32 - 1
# Far beyond any real run, and far below the int64 step counter's limit.
MAX_STEPS = 10**12


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on a setting's value, with the message a flag error shows when it fails."""

    condition: Callable[[Any], bool]
    message: str


def setting(
    default: Any,
    help_text: str,
    *,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    choices: tuple[str, ...] | None = None,
    check: Check | None = None,
    fixed_on_resume: str | None = None,
) -> Any:
    """A dataclass field whose metadata `common.cli.define_flags` turns into a flag.

    Args:
        default: the default value, of the field's type (int, float, bool, str or None).
        help_text: the flag's help.
        lower_bound: for numbers, the smallest value allowed.
        upper_bound: for numbers, the largest value allowed.
        choices: for strings, the values allowed (an enum flag).
        check: any other condition on the value.
        fixed_on_resume: why a resumed run cannot take a new value (what the checkpoint holds
            instead), if it cannot: a resume that changes it is then refused in one line (see
            `common.checkpoints.resumed_settings`). None: a new value applies on resume.
    """
    metadata = {
        "help": help_text,
        "lower_bound": lower_bound,
        "upper_bound": upper_bound,
        "choices": choices,
        "check": check,
        "fixed_on_resume": fixed_on_resume,
    }
    return dataclasses.field(default=default, metadata=metadata)


def positive_finite(value: float) -> bool:
    """True for a number that is finite and above zero (a learning rate)."""
    return math.isfinite(value) and value > 0


FINITE = Check(math.isfinite, "must be a finite number")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """The settings of the outer loop (`common.loop.training_loop`), which every app takes."""

    num_steps: int = setting(
        2000, "Number of training steps.", lower_bound=1, upper_bound=MAX_STEPS
    )
    batch_size: int = setting(
        128, "Examples per training step (the global batch, split over replicas).", lower_bound=1
    )
    learning_rate: float = setting(
        1e-3,
        "Adam learning rate (> 0).",
        check=Check(positive_finite, "must be a positive finite number"),
    )
    seed: int = setting(
        0,
        "Seed for weights, shuffling, sampling and synthetic data.",
        lower_bound=0,
        upper_bound=MAX_SEED,
    )
    steps_per_loop: int = setting(
        100,
        "Train steps per tf.function call; summaries are written between calls.",
        lower_bound=1,
    )
    eval_every_steps: int = setting(
        500, "Evaluate (and write histograms) this often, and at the end.", lower_bound=1
    )
    checkpoint_every_steps: int = setting(
        1000, "Save a checkpoint this often (and at the end).", lower_bound=1
    )
    profile: bool = setting(
        False,
        "Capture a profiler trace of the second loop (steps_per_loop steps, one call and one "
        "step marker each) into <logdir>/train/plugins/profile, for TensorBoard's Profile tab.",
    )
    debugger: bool = setting(
        False,
        "Record every op's output health (NaN/Inf counts) into <logdir>/debugger/<time> for "
        "TensorBoard's Debugger V2 tab, whose alerts name the first op that produced a NaN or an "
        "Inf. Slows the run several-fold: for finding a NaN, not for training.",
    )
    jit_compile: bool = setting(
        False, "XLA-compile the train step (--strategy=default only; see make bench)."
    )
    mixed_precision: str = setting(
        "none",
        "Compute in 16 bits, keep the variables in float32: mixed_float16 (GPUs; with dynamic "
        "loss scaling, which skips a step whose gradients overflow and lowers the scale, logged "
        "as train/loss_scale), mixed_bfloat16 (TPUs and recent CPUs/GPUs; no scaling), or none.",
        choices=MIXED_PRECISION_NAMES,
    )
    strategy: str = setting(
        "default",
        "tf.distribute strategy: default (one device), mirrored (all local GPUs, else "
        "--num_cpu_devices logical CPUs), multi_worker (the cluster in TF_CONFIG; run the same "
        "command on every worker).",
        choices=STRATEGY_NAMES,
    )
    num_cpu_devices: int = setting(
        1,
        "Split the CPU into this many logical devices (for --strategy=mirrored without GPUs).",
        lower_bound=1,
    )


def field_metadata(config_class: type, name: str) -> dict[str, Any]:
    """The `setting(...)` metadata of a field, from the nearest class that declared it with one.

    A subclass that only changes a default (`num_steps: int = 3000`) keeps its parent's help text
    and bounds.
    """
    for cls in config_class.__mro__:
        field = getattr(cls, "__dataclass_fields__", {}).get(name)
        if field is not None and field.metadata:
            return dict(field.metadata)
    raise TypeError(f"{config_class.__name__}.{name} has no help text: declare it with setting()")
