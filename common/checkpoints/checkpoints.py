"""A run's checkpoints in `<logdir>/checkpoints`: what each one holds, restoring the newest that
reads, and saving only finite weights.

A checkpoint that cannot be read (a truncated file, a broken list of checkpoints) is skipped for
the newest one that restores; only one that reads fine but holds other variables "does not fit
this model" (CheckpointMismatchError). Which checkpoints may be tried when their list is broken,
and what is repaired before the first write, the logdir's record decides
(common/checkpoints/repair.py). Nothing is saved that holds a NaN or an infinity, and a failed
save leaves no half-written checkpoint behind.
"""

import dataclasses
import os
import re
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from common import errors
from common.checkpoints import resumed_settings
from common.errors import NonFiniteWeightsError, UserError
from common.logdir import run_record

CHECKPOINT_DIRECTORY = "checkpoints"
# Where a checkpoint keeps its run's settings (`run_settings`), beside the model and optimizer.
RUN_SETTINGS_KEY = "run_settings"
CHECKPOINT_NAME = "ckpt"
# CheckpointManager's list of checkpoints, in `checkpoints/`.
STATE_FILE_NAME = "checkpoint"
# The files of checkpoint `ckpt-N`: its index, its data shards, and the directory a save writes
# its shards to before merging them (left behind when a save is killed or fails).
_CHECKPOINT_FILE = re.compile(rf"{CHECKPOINT_NAME}-(\d+)(\.index|\.data-\d+-of-\d+|_temp)")


class CheckpointMismatchError(UserError):
    """The logdir's checkpoint does not fit this model (another app or another configuration)."""


@dataclasses.dataclass
class _CheckpointsFound:
    """What `checkpoints/` holds, read without touching anything."""

    directory: str
    # The steps of the list of checkpoints (the state file), newest first; empty without one.
    listed: list[int]
    # Why the list cannot be used (`is empty`, ...), or None if it is fine or absent with reason.
    state_problem: str | None
    state_exists: bool
    # Every checkpoint file by step: its index, data shards and a save's temporary directory.
    files: dict[int, list[str]]

    @property
    def complete_steps(self) -> list[int]:
        """Steps with an index file, newest first: the checkpoints that may restore."""
        return sorted(
            (
                step
                for step, paths in self.files.items()
                if any(p.endswith(".index") for p in paths)
            ),
            reverse=True,
        )


def _read_state(directory: str) -> tuple[list[int], str | None, bool]:
    """The steps CheckpointManager's state file lists (newest first), why it cannot be used (or
    None), and whether it exists. Only `ckpt-N` in `directory` itself is accepted: a list naming
    other paths is not this code's, and the manager would delete files by it."""
    path = f"{directory}/{STATE_FILE_NAME}"
    if not tf.io.gfile.exists(path):
        return [], "is missing", False
    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            content = file.read()
    except tf.errors.OpError as error:
        return [], f"cannot be read ({errors.first_line(error, 120)})", True
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], "is not UTF-8 text", True
    if not text.strip():
        return [], "is empty", True
    state = CheckpointState()
    try:
        text_format.Merge(text, state)
    except text_format.ParseError as error:
        return [], f"cannot be parsed ({errors.first_line(error, 120)})", True
    if not state.model_checkpoint_path:
        return [], "names no checkpoint", True
    steps = []
    for listed in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]:
        parent, _, name = listed.rpartition("/")
        match = re.fullmatch(rf"{CHECKPOINT_NAME}-(\d+)", name)
        if match is None or parent not in ("", directory, directory.rstrip("/")):
            return [], f"lists {listed!r}, which is not a checkpoint in {directory}", True
        steps.append(int(match[1]))
    latest = steps[0]
    # Entries newer than the latest are not the manager's (it lists in order of saving).
    return sorted({step for step in steps if step <= latest}, reverse=True), None, True


def _find_checkpoints(directory: str) -> _CheckpointsFound:
    """Reads `directory` (a run's `checkpoints/`), touching nothing."""
    if not tf.io.gfile.exists(directory):
        return _CheckpointsFound(directory, [], None, False, {})
    files: dict[int, list[str]] = {}
    for name in tf.io.gfile.listdir(directory):
        match = _CHECKPOINT_FILE.fullmatch(name.rstrip("/"))
        if match is not None:
            files.setdefault(int(match[1]), []).append(f"{directory}/{name.rstrip('/')}")
    listed, problem, exists = _read_state(directory)
    if not exists and not files:
        problem = None  # A checkpoints/ with no checkpoint in it: nothing to resume, nothing odd.
    return _CheckpointsFound(directory, listed, problem, exists, files)


def write_state(directory: str, steps: Sequence[int]) -> None:
    """Writes CheckpointManager's list of checkpoints in `directory`: `ckpt-<step>` for each of
    `steps` (oldest first), the last one the latest."""
    names = [f"{CHECKPOINT_NAME}-{step}" for step in steps]
    # With timestamps after the last preserved one, or the manager would leave these out of its
    # list, and never sweep them.
    now = time.time()
    state = CheckpointState(
        model_checkpoint_path=names[-1],
        all_model_checkpoint_paths=names,
        all_model_checkpoint_timestamps=[now] * len(names),
        last_preserved_timestamp=now - 1,
    )
    run_record.atomic_write(f"{directory}/{STATE_FILE_NAME}", text_format.MessageToString(state))


def _unreadable_reason(path: str) -> str | None:
    """Why checkpoint `path` cannot be read (a truncated or missing file), or None if every
    tensor in it reads: then a failed restore means that it is another model's."""
    try:
        reader = tf.train.load_checkpoint(path)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except Exception as error:  # IndexError for a truncated data file, OpError, ...
        return errors.first_line(error, 150)
    return None


def _float_variables(trackables: dict[str, object]) -> list[tf.Variable]:
    """The floating-point variables among what a checkpoint saves: a model's and an optimizer's
    `variables`, and variables given directly (each once)."""
    found: dict[int, tf.Variable] = {}
    for value in trackables.values():
        variables = [value] if isinstance(value, tf.Variable) else getattr(value, "variables", [])
        for variable in variables or []:
            if tf.as_dtype(variable.dtype).is_floating:
                found.setdefault(id(variable), variable)
    return list(found.values())


def settings_in(checkpoint_path: str) -> str | None:
    """The `run_settings` text saved in checkpoint `checkpoint_path`, or None if it has none."""
    key = f"{RUN_SETTINGS_KEY}/.ATTRIBUTES/VARIABLE_VALUE"
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
        if not reader.has_tensor(key):
            return None
        value = reader.get_tensor(key)
    except (tf.errors.OpError, ValueError):
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _loss_scaling_mismatch(path: str, trackables: dict[str, object]) -> str | None:
    """Why checkpoint `path` cannot restore into `trackables` if it is loss scaling's doing: an
    optimizer saved with a loss scale (--mixed_precision=mixed_float16) and restored without one,
    or the other way round, which TensorFlow reports as a dtype mismatch deep inside the
    optimizer. None otherwise."""
    try:
        names = [name for name, _ in tf.train.list_variables(path)]
    except (tf.errors.OpError, ValueError):  # Then TensorFlow's own error says more.
        return None
    saved = {name.split("/")[0] for name in names if "/dynamic_scale/" in name}
    for name, trackable in trackables.items():
        if not isinstance(trackable, keras.optimizers.Optimizer):
            continue
        scaled = isinstance(trackable, keras.optimizers.LossScaleOptimizer)
        if scaled != (name in saved):
            was, now = ("with", "without") if name in saved else ("without", "with")
            return (
                f"its {name} was saved {was} mixed_float16's loss scaling and this run is "
                f"{now} it (was --mixed_precision changed?): resume with the --mixed_precision "
                "it was trained with, or pass a new --logdir"
            )
    return None


def short_list(names: Sequence[str], shown: int = 2) -> str:
    """`a, b and 3 more`: a list short enough for a one-line message."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


class Checkpoints:
    """What one run saves, and its checkpoints: the newest one that restores, each one saved."""

    def __init__(
        self,
        logdir: str,
        global_step: tf.Variable,
        trackables: dict[str, object],
        max_to_keep: int,
        is_chief: bool,
        run_settings: str | None,
    ) -> None:
        """Builds what is saved; touches no file.

        Args:
            logdir: the run's directory, whose `checkpoints/` every worker restores from.
            global_step: the step counter; saved with everything else.
            trackables: what to save, e.g. `{"model": model, "optimizer": optimizer}`.
            max_to_keep: how many checkpoints to keep on disk.
            is_chief: whether this worker owns the logdir (see `latest_checkpoint`).
            run_settings: a text saved in every checkpoint beside the trackables, or None.
        """
        self.logdir = logdir
        # The chief's `checkpoints/`, which every worker restores from.
        self.directory = f"{logdir}/{CHECKPOINT_DIRECTORY}"
        self.global_step = global_step
        self.is_chief = is_chief
        self.manager: tf.train.CheckpointManager | None = None
        self.last_saved_step: int | None = None
        # Set by restore_newest(): the checkpoint restored (then each one saved).
        self.restored = False
        self.latest: str | None = None
        self._restored_text: str | None = None  # The restored checkpoint's settings, if any.
        self._checkpoint = tf.train.Checkpoint(global_step=global_step, **trackables)
        # What restores a checkpoint of an older version, which holds no settings' text: the
        # saved objects without it, so that every object still matches.
        self._restoring = self._checkpoint
        self._restoring_with_settings = self._checkpoint
        self._run_settings = run_settings
        if run_settings is not None:
            with tf.init_scope():  # Host variables, not mirrored: only ever saved and read.
                text = tf.Variable(run_settings, dtype=tf.string, trainable=False)
                restored_text = tf.Variable("", dtype=tf.string, trainable=False)
            self._checkpoint = tf.train.Checkpoint(
                global_step=global_step, **{RUN_SETTINGS_KEY: text}, **trackables
            )
            # A checkpoint with settings restores them into a variable of their own, so every
            # value is matched (an unmatched one is warned about at exit) and the settings
            # saved next are this run's.
            self._restoring_with_settings = tf.train.Checkpoint(
                global_step=global_step, **{RUN_SETTINGS_KEY: restored_text}, **trackables
            )
        self._float_variables = _float_variables(trackables)
        self._trackables = trackables
        self._max_to_keep = max_to_keep

    def open_manager(self, output_dir: str) -> None:
        """Opens the manager that saves into `<output_dir>/checkpoints` (the logdir's on the
        chief, a temporary directory's on any other worker)."""
        self.manager = tf.train.CheckpointManager(
            self._checkpoint,
            f"{output_dir}/{CHECKPOINT_DIRECTORY}",
            max_to_keep=self._max_to_keep,
            checkpoint_name=CHECKPOINT_NAME,
        )

    @property
    def latest_checkpoint(self) -> str | None:
        """Path prefix of the newest good checkpoint, or None (always the chief's, on any worker).

        After `restore_newest`, the one restored (an unreadable newer one is not "good"), then
        each one saved.
        """
        if self.is_chief and (self.restored or self.latest is not None):
            return self.latest
        listed, _, _ = _read_state(self.directory)
        if listed:
            return f"{self.directory}/{CHECKPOINT_NAME}-{listed[0]}"
        return self.latest

    def restored_settings(self) -> str | None:
        """The `run_settings` text saved with the restored checkpoint, or None (a new run, or a
        checkpoint of an older version, which saved none)."""
        return self._restored_text if self.restored else None

    def describe_last(self) -> str:
        """`step 400 (logs/x/checkpoints/ckpt-400)`, or `none yet`, for messages."""
        if self.latest_checkpoint is None:
            return "none yet"
        step = self.last_saved_step if self.last_saved_step is not None else "?"
        return f"step {step} ({self.latest_checkpoint})"

    def what_is_kept(self) -> str:
        """The sentence an error ends with: which checkpoint survives it."""
        if self.latest_checkpoint is None:
            return "No checkpoint had been saved yet."
        return f"The last good checkpoint, {self.describe_last()}, is kept."

    def restore_newest(self, candidates: list[int]) -> tuple[int | None, list[tuple[int, str]]]:
        """Restores the first of `candidates` (steps, newest first) that can be read; returns its
        step (None if none can) and the skipped ones with the reason each cannot be read.

        Raises:
            CheckpointMismatchError: if one reads fine but is not of this model and optimizer.
        """
        skipped = []
        for step in candidates:
            path = f"{self.directory}/{CHECKPOINT_NAME}-{step}"
            try:
                text = settings_in(path)  # Read once: it picks the objects, names a mismatch.
                checkpoint = self._restoring if text is None else self._restoring_with_settings
                checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as error:  # Corrupt files raise IndexError as well as OpError.
                unreadable = _unreadable_reason(path)
                if unreadable is not None:
                    skipped.append((step, unreadable))
                    continue
                reason = _loss_scaling_mismatch(path, self._trackables)
                if reason is None:
                    changed = resumed_settings.mismatch_hint(text, self._run_settings)
                    reason = f"{errors.first_line(error, 200)}{changed}; pass a new --logdir"
                raise CheckpointMismatchError(
                    f"logdir {self.logdir} holds a checkpoint ({path}) that does not fit this "
                    f"model: {reason}"
                ) from error
            self.last_saved_step = int(self.global_step.numpy())
            self.latest = path
            self._restored_text = text
            return step, skipped
        return None, skipped

    def check_weights_are_finite(self, step: int, consequences: Callable[[], str]) -> None:
        """Raises NonFiniteWeightsError unless every saved floating-point variable is finite; its
        message ends with `consequences()` (what is kept, what to try).

        In NumPy, each variable's values as the save is about to copy them to the host anyway:
        a `tf.function` checking all of them in one call costs about 0.1 ms less per save, and
        50 to 100 ms to trace, once per run, more than a default run's few saves ever gain.
        """
        culprits = [
            str(getattr(variable, "path", None) or variable.name)
            for variable in self._float_variables
            if not np.isfinite(variable.numpy()).all()
        ]
        if culprits:
            raise NonFiniteWeightsError(
                f"the weights became non-finite at step {step} ({short_list(culprits)} hold NaN or "
                f"Inf); stopped without saving. {consequences()}"
            )

    def save_prefix(self, step: int) -> str:
        """The path prefix `save(step)` writes: `<output_dir>/checkpoints/ckpt-<step>`."""
        return f"{self.manager.directory}/{CHECKPOINT_NAME}-{step}"

    def save(self, step: int) -> str:
        """Saves a checkpoint numbered `step` with the manager; returns its path.

        Raises:
            Whatever the save raises (a full disk, say), once what it wrote is removed: the last
            good checkpoint is kept, and no half-written checkpoint is left behind.
        """
        listed_before = set(self.manager.checkpoints)
        prefix = self.save_prefix(step)
        try:
            path = self.manager.save(checkpoint_number=step)
        except BaseException:
            self._remove_failed_save(prefix, listed_before)
            raise
        self.last_saved_step = step
        self.latest = path
        return path

    def _remove_failed_save(self, prefix: str, listed_before: set[str]) -> None:
        """Removes what a failed save of `prefix` wrote (its temporary directory, a partial index
        or data file), unless the list of checkpoints names it. Best effort: the disk may still
        be full, and the error to report is the save's."""
        if any(os.path.basename(listed) == os.path.basename(prefix) for listed in listed_before):
            return
        try:
            if tf.io.gfile.isdir(f"{prefix}_temp"):
                tf.io.gfile.rmtree(f"{prefix}_temp")
            for path in tf.io.gfile.glob(f"{prefix}.index") + tf.io.gfile.glob(f"{prefix}.data-*"):
                tf.io.gfile.remove(path)
        except (tf.errors.OpError, OSError):
            pass
