"""A run's settings for TensorBoard's HParams dashboard (`write_hparams`), under its trial id."""

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from common.logdir.trim import write_restart_markers


def write_hparams(logdir: str, settings: dict[str, object]) -> None:
    """Logs a run's settings for TensorBoard's HParams dashboard, at the run's root.

    The root makes the run an HParams "session" whose metrics are the scalars of its `train/` and
    `eval/` runs (groups `train` and `eval`): several runs of an app under one parent logdir then
    compare in one table, with no experiment-wide configuration to write first. Settings that are
    None are logged as ''; other non-scalar values are left out.

    The trial id, which the dashboard's table shows in a narrow Trial ID column cut after about 14
    characters, is the logdir's last folder first and then its parent, `lr_3e-4_h32
    (logs/sweep_mnist)`: runs side by side differ at the start, and two runs in folders of the same
    name under different parents still get different ids (runs of one id would be merged as one
    trial).
    """
    values = {
        name: "" if value is None else value
        for name, value in settings.items()
        if value is None or isinstance(value, bool | int | float | str)
    }
    writer = tf.summary.create_file_writer(logdir)
    # A run killed before its first checkpoint starts over and writes these again, at step 0.
    write_restart_markers(writer, 0)
    with writer.as_default():
        hparams_api.hparams(values, trial_id=trial_id(logdir))
    writer.close()


def trial_id(logdir: str) -> str:
    """`logs/sweep_mnist/lr_3e-4_h32` -> `lr_3e-4_h32 (logs/sweep_mnist)`; `run` -> `run`."""
    parent, _, name = logdir.rstrip("/").rpartition("/")
    return f"{name} ({parent})" if parent else name
