"""Settings changed on resume: each change said in one line and applied, never silently ignored.

Every checkpoint holds the settings of the run that saved it (`describe`, a JSON string that
`common.loop.training_run.TrainingRun` saves beside the model), so a resumed run can tell what its
command changed. Most settings apply by themselves, as the app builds everything from its config
(the data, the loss, the loop's cadence). One does not: the optimizer's learning rate is one of
its variables, and the checkpoint's value would win over the new `--learning_rate` unannounced.
So each optimizer's learning rate *as built* is recorded too; where the one built now differs,
it is set on the restored optimizer. Where the built values agree, the restored learning rate is
kept, whatever the run did to it since (a decay by assignment, say). A checkpoint of an older
version records none: there the rate built now is set wherever it differs from the restored one.

A change the checkpoint cannot take (a layer's width) fails the restore itself, in one line
(`common.checkpoints.checkpoints.CheckpointMismatchError`); `mismatch_hint` adds which settings
changed.
"""

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import keras

from common import settings
from common.errors import UserError

FORMAT = 1


class SettingChangeRefusedError(UserError):
    """A resume changed a setting that the checkpoint fixes (`setting(fixed_on_resume=...)`)."""


def describe(config: Any, optimizers: Mapping[str, keras.optimizers.Optimizer]) -> str:
    """The record a checkpoint keeps: the settings and each optimizer's learning rate as built
    (None for a schedule, which the restored step count drives and the config rebuilds).

    Call it before the restore, while the optimizers hold what the code built.
    """
    return json.dumps(
        {
            "format": FORMAT,
            "settings": _plain(dataclasses.asdict(config)),
            "learning_rates": {
                name: _built_learning_rate(optimizer) for name, optimizer in optimizers.items()
            },
        },
        sort_keys=True,
    )


def changes(previous: Mapping[str, Any], config: Any) -> dict[str, tuple[Any, Any]]:
    """`{setting: (before, now)}` for each setting whose value differs from the recorded one;
    a setting new since (an added flag) counts as changed from None."""
    before = previous.get("settings", {})
    now = _plain(dataclasses.asdict(config))
    return {
        name: (before.get(name), value) for name, value in now.items() if before.get(name) != value
    }


def apply(
    previous: Mapping[str, Any] | None,
    config: Any,
    optimizers: Mapping[str, keras.optimizers.Optimizer],
    current: str,
    step: int,
) -> list[str]:
    """Applies what the restore would have overridden (see the module docstring) and returns one
    line per changed setting, for the console; refuses a change to a setting the checkpoint
    fixes.

    Every other change applies by itself: the app builds its data, loss and loop from `config`.

    Args:
        previous: the record of the checkpoint resumed from (`json.loads` of `describe`), or
            None where it holds none (saved by an older version).
        config: this run's settings.
        optimizers: the restored optimizers, by name.
        current: `describe(config, optimizers)`, taken before the restore.
        step: the step resumed from, for the lines.

    Raises:
        SettingChangeRefusedError: for a changed setting declared `fixed_on_resume`.
    """
    built_now = json.loads(current)["learning_rates"]
    if previous is None:
        lines = [
            f"resumed from step {step}: its checkpoint does not record the settings it was "
            "trained with (an older version), so none can be compared; this command's apply"
        ]
        # Nothing tells a new --learning_rate from the old one: the command's wins, and says so.
        for name, optimizer in optimizers.items():
            rate, restored = built_now.get(name), float(optimizer.learning_rate.numpy())
            if rate is not None and not math.isclose(rate, restored, rel_tol=1e-6):
                optimizer.learning_rate.assign(rate)
                lines.append(
                    f"the restored {name}'s learning rate is set to {rate:g}, as built now (its "
                    f"checkpoint held {restored:g})"
                )
        return lines
    changed = changes(previous, config)
    for name, (before, now) in changed.items():
        reason = _fixed_on_resume(type(config), name)
        if reason and before is not None:
            raise SettingChangeRefusedError(
                f"--{name}={_show(now)} cannot apply to a resumed run ({reason}); the run "
                f"that saved step {step} used --{name}={_show(before)}: pass that, or a new "
                "--logdir"
            )
    built_before = previous.get("learning_rates", {})
    lines = [
        f"resumed with a changed setting: --{name}={_show(before)} -> {_show(now)}"
        for name, (before, now) in changed.items()
    ]
    for name, optimizer in optimizers.items():
        rate, rate_before = built_now.get(name), built_before.get(name)
        if rate is not None and rate_before is not None and rate != rate_before:
            restored = float(optimizer.learning_rate.numpy())
            optimizer.learning_rate.assign(rate)
            lines.append(
                f"the restored {name}'s learning rate is set to {rate:g}, as built now (its "
                f"checkpoint held {restored:g})"
            )
    return lines


def mismatch_hint(previous: str | None, current: str | None) -> str:
    """`; settings changed since that checkpoint: --hidden_units=128 -> 64`, or '' where none did
    (or either record is missing): what a refused restore adds to its line. Takes the records as
    `describe` wrote them."""
    if previous is None or current is None:
        return ""
    before = json.loads(previous).get("settings", {})
    now = json.loads(current).get("settings", {})
    shown = ", ".join(
        f"--{name}={_show(before.get(name))} -> {_show(value)}"
        for name, value in now.items()
        if before.get(name) != value
    )
    return f"; settings changed since that checkpoint: {shown}" if shown else ""


def _built_learning_rate(optimizer: keras.optimizers.Optimizer) -> float | None:
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # A LossScaleOptimizer's.
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) or callable(schedule):
        return None
    return float(optimizer.learning_rate.numpy())


def _fixed_on_resume(config_class: type, name: str) -> str | None:
    try:
        return settings.field_metadata(config_class, name).get("fixed_on_resume")
    except TypeError:  # A field declared without setting(): nothing said about it.
        return None


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON's own types: a tuple becomes a list, so a setting compares equal after a round trip."""
    return json.loads(json.dumps(values, default=str))


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)
