"""What lets a run survive: an exclusive logdir, checkpoints, resume, and graceful stops.

    with TrainingRun(logdir, global_step, checkpoint_every_steps, model=..., optimizer=...) as run:
        start_step = run.restore()      # 0 for a new run; else the step of the latest checkpoint
        if run.already_finished(num_steps): return  # Says so; nothing is touched.
        writers = run.open_writers()    # Drops points a crash left after the checkpoint.
        ... at each loop boundary, after its summaries:
        run.end_of_loop(step)           # Saves when due; on SIGINT/SIGTERM saves and raises.
        run.save(step)                  # At the end.

Checkpoints live in `<logdir>/checkpoints` (a `tf.train.CheckpointManager`). Writers are flushed
before every save, so every point up to a checkpoint is on disk when the checkpoint is; points after
it are dropped on resume (`trim.trim_events_after`): TensorBoard never shows one step twice.
Nothing is saved when the block ends with an exception, so a NaN never overwrites a good checkpoint,
and `save` refuses weights that hold a NaN or an infinity.

A run rewrites only what it can prove its own: `common.logdir.run_record` keeps, in the logdir,
which app
and model wrote there, which event files (with a proof of each: a name is no proof) and
checkpoints this code's runs wrote, and is updated before anything is written. The trim touches
only those files; a logdir whose state does not add up (another app's or model's run, event files
of another program and no checkpoint, checkpoints its runs saved that are now gone, ...) is
refused in one line before anything is written. A checkpoint that cannot be read (a truncated
file, a broken list of checkpoints) is skipped, with a warning, for the newest one that restores;
only one that reads fine but holds other variables "does not fit this model".

Under a multi-worker strategy every worker runs this same code: the chief owns the logdir (lock,
record, summaries, checkpoints); every other worker restores from the chief's checkpoints (choosing
the same one, by the same rule) but writes to a temporary directory of its own, `output_dir`,
removed at the end. Decisions that end the loop (a signal) are agreed by all workers, so none is
left waiting in a collective.
"""

import dataclasses
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from common import distribution, errors, summaries
from common.checkpoints import resumed_settings
from common.errors import Interrupted, NonFiniteLossError, NonFiniteWeightsError, UserError
from common.logdir import event_files, prepare, run_record, trim
from common.logdir.run_lock import LogdirLock
from common.loop.signals import StopSignals

CHECKPOINT_DIRECTORY = "checkpoints"
# Where a checkpoint keeps its run's settings (`run_settings`), beside the model and optimizer.
RUN_SETTINGS_KEY = "run_settings"
CHECKPOINT_NAME = "ckpt"
# CheckpointManager's list of checkpoints, in `checkpoints/`.
STATE_FILE_NAME = "checkpoint"
# The files of checkpoint `ckpt-N`: its index, its data shards, and the directory a save writes
# its shards to before merging them (left behind when a save is killed or fails).
_CHECKPOINT_FILE = re.compile(rf"{CHECKPOINT_NAME}-(\d+)(\.index|\.data-\d+-of-\d+|_temp)")
# What the NaN messages suggest: a huge learning rate is one cause, huge or missing values in the
# data another (float32 overflows past 3.4e38).
NON_FINITE_ADVICE = (
    "Try a lower --learning_rate, or check the data for very large or missing values."
)
# Below it, a dynamic loss scale (mixed_float16, from 2**15) has been halved at 16 skipped steps
# more than it grew: the gradients overflow float16 even unscaled, or are NaN. See loss_or_nan.
MIN_LOSS_SCALE = 1.0


# Plain Python around its ops: AutoGraph's conversion at every trace of a step would only cost.
@tf.autograph.experimental.do_not_convert
def loss_or_nan(
    loss: tf.Tensor,
    gradients: Sequence[tf.Tensor | None],
    loss_scale: tf.Variable | None = None,
) -> tf.Tensor:
    """`loss`, or NaN if it is finite but a gradient holds a NaN or an infinity: what a train step
    should return for the loop's non-finite check.

    The loss alone can hide a broken step. On CPUs where oneDNN fuses MatMul, BiasAdd and Relu
    (TensorFlow 2.21 in a tf.function), the fused op turns a NaN input into 0: a NaN in the data
    gives a finite loss but NaN gradients, and from then on NaN weights behind a loss that still
    looks fine. Call it inside the step, after `tape.gradient`; `None` gradients are skipped.

    Args:
        loss: the step's loss.
        gradients: its gradients (unscaled).
        loss_scale: under dynamic loss scaling (mixed_float16), the optimizer's scale, read after
            its update. Non-finite gradients are then expected now and again: the optimizer
            skips that step and halves the scale, and the weights never see them. They count
            only once the scale is below MIN_LOSS_SCALE: after that many halvings every step is
            being skipped (NaN data, or values float16 cannot hold even unscaled), and the run
            would otherwise go on without learning, saying nothing.
    """
    checks = [
        tf.reduce_all(tf.math.is_finite(getattr(gradient, "values", gradient)))  # IndexedSlices.
        for gradient in gradients
        if gradient is not None
    ]
    all_finite = tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)
    if loss_scale is not None:
        all_finite = tf.logical_or(all_finite, loss_scale >= MIN_LOSS_SCALE)
    # A loss that is already Inf stays Inf (its gradients are NaN then), so the error says so.
    keep_loss = tf.logical_or(all_finite, tf.logical_not(tf.math.is_finite(loss)))
    # The NaN is sqrt(-1), computed only in a broken step (sqrt(-0) is 0): a NaN constant would
    # be computed at every step, and --debugger's Debugger V2 would report it as every run's first
    # NaN. (A tf.cond would add a conditional to every app's step graph.)
    broken = tf.cast(tf.logical_not(keep_loss), loss.dtype)
    return tf.where(keep_loss, loss, tf.math.sqrt(-broken))


class CheckpointMismatchError(UserError):
    """The logdir's checkpoint does not fit this model (another app or another configuration)."""


class LogdirStateError(UserError):
    """The logdir's contents do not add up: the run would have to rewrite what it cannot prove
    its own, or start over on top of an earlier run's work. Nothing was written."""


class OtherAppError(LogdirStateError):
    """The logdir holds a run of another app (its record says which). Nothing was written."""


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


class TrainingRun:
    """One run's stay in its logdir: see the module docstring for the calls, in order."""

    def __init__(
        self,
        logdir: str,
        global_step: tf.Variable,
        checkpoint_every_steps: int,
        max_to_keep: int = 3,
        strategy: tf.distribute.Strategy | None = None,
        run_settings: str | None = None,
        app: str | None = None,
        **trackables: object,
    ) -> None:
        """Prepares, but touches nothing until the `with` block starts.

        Args:
            logdir: the run's directory (checked and created on entry).
            global_step: the step counter; saved with everything else.
            checkpoint_every_steps: save at the first loop boundary at or after each multiple.
            max_to_keep: how many checkpoints to keep on disk.
            strategy: the run's tf.distribute strategy (default: the current one).
            run_settings: a text saved in every checkpoint beside the trackables (the run's
                settings, `common.checkpoints.resumed_settings.describe`), read back by
                `restored_settings`.
            app: which app this is (`run_record.app_name(config)`), kept in the logdir's record:
                a logdir holding another app's run is refused. None: not checked.
            **trackables: what to save, e.g. `model=model, optimizer=optimizer`. The Keras
                models among them are this run's model, kept in the record as a fingerprint
                (`run_record.model_identity`): a logdir holding another model's run is refused.
        """
        self.logdir = logdir
        self.global_step = global_step
        self.checkpoint_every_steps = checkpoint_every_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = distribution.is_chief(self.strategy)
        # Where this worker writes: the logdir on the chief; set on entry for the others.
        self.output_dir = logdir
        self._checkpoint = tf.train.Checkpoint(global_step=global_step, **trackables)
        self._app = app
        self._model = run_record.model_identity(
            {name: value for name, value in trackables.items() if isinstance(value, keras.Layer)}
        )
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
        self._trackables = trackables  # A NaN message reads a loss scale's value from them.
        self._max_to_keep = max_to_keep
        self._lock = LogdirLock(logdir)
        self._stop_signals = StopSignals()
        self._manager: tf.train.CheckpointManager | None = None
        self.writers: summaries.SummaryWriters | None = None
        self.last_saved_step: int | None = None
        # Where tf.debugging's dump goes when --debugger is on (set by the loop): the NaN
        # messages point at it, and suggest --debugger when it is None.
        self.debugger_dir: str | None = None
        # Set by restore(): the checkpoint restored (then each one saved), and what to repair
        # before the first write (a broken list of checkpoints, a killed save's files).
        self._restored = False
        self._latest: str | None = None
        self._record: run_record.RunRecord | None = None
        self._own_event_files: dict[str, str] = {}  # By name relative to the logdir.
        self._recorded_after_first_loop = False
        self._state_to_write: list[int] | None = None
        self._remove_state = False
        self._files_to_remove: list[str] = []
        self._refusal: LogdirStateError | None = None
        self._writing = False

    @property
    def _checkpoint_directory(self) -> str:
        """The chief's `checkpoints/`, which every worker restores from."""
        return f"{self.logdir}/{CHECKPOINT_DIRECTORY}"

    def __enter__(self) -> "TrainingRun":
        if self.is_chief:
            prepare.prepare_logdir(self.logdir)
            self._lock.acquire()
            try:
                self._check_checkpoint_directory()
            except BaseException:
                self._lock.release()
                raise
        else:
            name = distribution.worker_name(self.strategy).replace(" ", "-") or "worker"
            self.output_dir = tempfile.mkdtemp(prefix=f"{name}-")
            self._manager = self._create_manager(self.output_dir)
        self._stop_signals.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, *rest: object
    ) -> None:
        try:
            if self.writers is not None:
                try:
                    self.writers.close()
                except Exception as error:
                    if exc is None:  # Otherwise the first error is the one to report.
                        exc = error
        finally:
            self._stop_signals.__exit__()
            if self.is_chief:
                self._record_end()
                self._lock.release()
            else:
                shutil.rmtree(self.output_dir, ignore_errors=True)
        kept = self._what_is_kept()
        if isinstance(exc, run_record.UnprovenFileError) and exc_type is not None:
            # Refused mid-run (the Projector's first write, at the first eval): what it leaves.
            raise run_record.UnprovenFileError(f"{exc}. {kept}") from exc
        if isinstance(exc, KeyboardInterrupt):
            # A second Ctrl-C: the first one's handler gave the default back, so the user is
            # never stuck; say what that cost. (A signals.StopNow, SIGTERM during a SIGINT's stop,
            # names its own signal.)
            raise Interrupted(
                getattr(exc, "signal_number", signal.SIGINT),
                f"{getattr(exc, 'description', 'a second SIGINT')} stopped the run at once, "
                f"without saving. {kept} Run the same command again to resume.",
            ) from None
        if isinstance(exc, Exception) and not isinstance(exc, UserError | Interrupted):
            reported = errors.as_user_error(exc, f"in logdir {self.logdir}", kept)
            if reported is not None:
                raise reported from exc
            if exc_type is None:
                raise exc  # A failed close at the end of a clean block, not recognized.

    def _check_checkpoint_directory(self) -> None:
        """Refuses a `checkpoints` that is a file, or that cannot be written: before any training,
        not at the first save."""
        directory = self._checkpoint_directory
        try:
            if not tf.io.gfile.exists(directory):
                return
            if not tf.io.gfile.isdir(directory):
                raise LogdirStateError(
                    f"logdir {self.logdir}: {CHECKPOINT_DIRECTORY} is a file, not the directory of "
                    f"checkpoints; move {directory} away, or pass a new --logdir"
                )
            probe = f"{directory}/.write_test_{uuid.uuid4().hex}"
            with tf.io.gfile.GFile(probe, "w") as probe_file:
                probe_file.write("ok")
            tf.io.gfile.remove(probe)
        except (tf.errors.OpError, OSError) as error:
            raise errors.UnwritablePathError(
                f"logdir {self.logdir}: {directory} cannot be written "
                f"({errors.first_line(error)}), so no checkpoint could be saved; make it "
                "writable, or pass a new --logdir"
            ) from error

    def _create_manager(self, directory: str) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self._checkpoint,
            f"{directory}/{CHECKPOINT_DIRECTORY}",
            max_to_keep=self._max_to_keep,
            checkpoint_name=CHECKPOINT_NAME,
        )

    @property
    def latest_checkpoint(self) -> str | None:
        """Path prefix of the newest good checkpoint, or None (always the chief's, on any worker).

        After `restore()`, the one restored (an unreadable newer one is not "good"), then each one
        saved.
        """
        if self.is_chief and (self._restored or self._latest is not None):
            return self._latest
        listed, _, _ = _read_state(self._checkpoint_directory)
        if listed:
            return f"{self._checkpoint_directory}/{CHECKPOINT_NAME}-{listed[0]}"
        return self._latest

    def restored_settings(self) -> str | None:
        """The `run_settings` text saved with the restored checkpoint, or None (a new run, or a
        checkpoint of an older version, which saved none)."""
        return settings_in(self._latest) if self._restored and self._latest else None

    def describe_last_checkpoint(self) -> str:
        """`step 400 (logs/x/checkpoints/ckpt-400)`, or `none yet`, for messages."""
        if self.latest_checkpoint is None:
            return "none yet"
        step = self.last_saved_step if self.last_saved_step is not None else "?"
        return f"step {step} ({self.latest_checkpoint})"

    def _what_is_kept(self) -> str:
        """The sentence an error ends with: which checkpoint survives it."""
        if self.latest_checkpoint is None:
            return "No checkpoint had been saved yet."
        return f"The last good checkpoint, {self.describe_last_checkpoint()}, is kept."

    def restore(self) -> int:
        """Restores the newest checkpoint that can be read, if any, and returns the global step
        (0 for a new run).

        A newer checkpoint that cannot be read (a truncated file; a list of checkpoints that is
        missing, empty or not text) is skipped with a one-line warning, and treated as never
        written. On the chief, this also decides which event files the run may trim later (those
        the logdir's record proves its own), and refuses what does not add up. Nothing is written.

        Raises:
            CheckpointMismatchError: if the checkpoint reads fine but is not of this model and
                optimizer.
            LogdirStateError: if no checkpoint can be read, or the logdir holds what its record
                cannot account for (see the module docstring).
            common.logdir.run_record.RecordError: if the logdir's record is not readable.
        """
        self._restored = True
        record = run_record.read(self.logdir) if self.is_chief else None
        self._record = record
        if record is not None and record.app and self._app and record.app != self._app:
            raise OtherAppError(
                f"logdir {self.logdir} holds a run of {record.app}, not of {self._app}: its "
                "files would be trimmed or overwritten; pass a new --logdir"
            )
        found = _find_checkpoints(self._checkpoint_directory)
        candidates = self._candidates(found, record)
        restored_step, skipped = self._restore_newest(candidates)
        if restored_step is not None:
            self.last_saved_step = int(self.global_step.numpy())
            self._latest = f"{found.directory}/{CHECKPOINT_NAME}-{restored_step}"
        # A missing list is only worth a word when there were checkpoints to list.
        problems = (
            [
                f"{CHECKPOINT_DIRECTORY}/{STATE_FILE_NAME}, the list of checkpoints, "
                f"{found.state_problem}"
            ]
            if found.state_problem and (found.state_exists or candidates)
            else []
        )
        problems += [f"{CHECKPOINT_NAME}-{step} cannot be read ({why})" for step, why in skipped]
        if candidates and restored_step is None:
            raise LogdirStateError(
                f"logdir {self.logdir}: no checkpoint in {found.directory} can be read: "
                f"{'; '.join(problems)}; pass a new --logdir"
            )
        if self.is_chief:
            self._check_model(record)
            self._plan_repairs(found, record, candidates, restored_step, bool(problems))
            try:
                self._check_event_files(record, restored_step)
            except LogdirStateError as refusal:
                if restored_step is None:
                    raise  # A new run would write at once: refused before anything slow.
                # A resume is refused at its first write, so a finished run stays "nothing to do".
                self._refusal = refusal
        if restored_step is not None and problems:
            print(
                f"warning: {'; '.join(problems)}: resuming from {self._latest}, the newest "
                "checkpoint that restores; what came after it is dropped",
                file=sys.stderr,
                flush=True,
            )
        return self.last_saved_step or 0

    def _candidates(
        self, found: _CheckpointsFound, record: run_record.RunRecord | None
    ) -> list[int]:
        """The steps of the checkpoints to try, newest first, from the list of checkpoints or,
        when it is broken or missing, from the files the logdir's record proves its runs' own."""
        if found.state_problem is None:
            return found.listed
        steps = found.complete_steps
        if not self.is_chief:
            return steps  # The chief has judged the same files by the same rules.
        unfinished_first_save = (
            not found.state_exists  # The list is written once the first save is complete.
            and record is not None
            and record.last_saved is None
            and record.saving is not None
            and set(found.files) == {record.saving}
        )
        if unfinished_first_save:
            return []  # Its files are removed before the first write: see _plan_repairs.
        if found.state_exists and not found.files and record is None:
            # Nothing to resume, but the manager cannot start with that file there, and without a
            # record it cannot be proven this app's to remove.
            raise LogdirStateError(
                f"logdir {self.logdir}: {found.directory}/{STATE_FILE_NAME}, the list of "
                f"checkpoints, {found.state_problem}, and no checkpoint is there; move it away, or "
                "pass a new --logdir"
            )
        if found.files and (record is None or record.last_saved is None):
            names = sorted(
                name.rsplit("/", 1)[-1] for paths in found.files.values() for name in paths
            )
            raise LogdirStateError(
                f"logdir {self.logdir}: {found.directory} holds checkpoint files "
                f"({_some(names)}), but its list of checkpoints ({STATE_FILE_NAME}) "
                f"{found.state_problem} and no record says this app's runs saved them; move "
                f"{found.directory} away, or pass a new --logdir"
            )
        return steps

    def _restore_newest(self, candidates: list[int]) -> tuple[int | None, list[tuple[int, str]]]:
        """Restores the first of `candidates` that can be read; returns its step (None if none
        can) and the skipped ones with the reason each cannot be read."""
        skipped = []
        for step in candidates:
            path = f"{self._checkpoint_directory}/{CHECKPOINT_NAME}-{step}"
            try:
                with_settings = settings_in(path) is not None
                checkpoint = self._restoring_with_settings if with_settings else self._restoring
                checkpoint.restore(path).assert_existing_objects_matched()
                return step, skipped
            except Exception as error:  # Corrupt files raise IndexError as well as OpError.
                unreadable = _unreadable_reason(path)
                if unreadable is not None:
                    skipped.append((step, unreadable))
                    continue
                reason = _loss_scaling_mismatch(path, self._trackables)
                if reason is None:
                    changed = resumed_settings.mismatch_hint(settings_in(path), self._run_settings)
                    reason = f"{errors.first_line(error, 200)}{changed}; pass a new --logdir"
                raise CheckpointMismatchError(
                    f"logdir {self.logdir} holds a checkpoint ({path}) that does not fit this "
                    f"model: {reason}"
                ) from error
        return None, skipped

    def _plan_repairs(
        self,
        found: _CheckpointsFound,
        record: run_record.RunRecord | None,
        candidates: list[int],
        restored_step: int | None,
        newer_skipped: bool,
    ) -> None:
        """Decides (without doing it yet) what the first write repairs in `checkpoints/`, and
        refuses a logdir whose runs saved checkpoints that are gone."""
        if restored_step is None and record is not None and record.last_saved is not None:
            raise LogdirStateError(
                f"logdir {self.logdir}: its runs saved checkpoints (the last at step "
                f"{record.last_saved}), but {found.directory} holds none now; starting over "
                "would overwrite their work: put the checkpoints back, or pass a new --logdir"
            )
        if restored_step is not None and (found.state_problem or newer_skipped):
            # The list is rewritten to end at the restored checkpoint: the unreadable ones after
            # it count as never written (their files stay, unlisted, until a save replaces them).
            self._state_to_write = sorted(step for step in candidates if step <= restored_step)
        elif restored_step is None and found.state_problem and found.state_exists and record:
            self._remove_state = True  # A broken list with nothing to list: the manager needs none.
        # A save killed midway (the record says it had begun): its files are leftovers, unless it
        # got as far as being listed.
        if record is not None and record.saving is not None:
            kept = set(self._state_to_write or found.listed) if restored_step is not None else set()
            if record.saving not in kept:
                self._files_to_remove += found.files.get(record.saving, [])

    def _check_model(self, record: run_record.RunRecord | None) -> None:
        """Refuses a logdir whose record says another model wrote it (checked after the
        checkpoint, whose own mismatch names the variable; this one also holds without one)."""
        if record is None or record.model is None or self._model is None:
            return
        if record.model["fingerprint"] == self._model["fingerprint"]:
            return
        theirs, ours = (run_record.describe_model(m) for m in (record.model, self._model))
        if theirs == ours:
            theirs += f", fingerprint {record.model['fingerprint']}"
            ours += f", fingerprint {self._model['fingerprint']}"
        raise CheckpointMismatchError(
            f"logdir {self.logdir} holds a run of another model ({theirs}), which does not fit "
            f"this model ({ours}): its points would be erased; pass a new --logdir"
        )

    def _check_event_files(self, record: run_record.RunRecord | None, restored_step: int | None):
        """Keeps the event files the record proves this logdir's for the trim, and refuses if
        another one holds points the resumed run would write again."""
        last = -1 if restored_step is None else restored_step
        self._own_event_files = {}
        # An older version's record says nothing of the app or model: only a checkpoint that
        # restores proves its files this model's; without one they are emptied by no one.
        unproven_owner = record is not None and record.app is None and record.model is None
        for name, path in event_files.event_files_by_name(self.logdir).items():
            if record is not None and record.is_ours(name, path):
                if unproven_owner and restored_step is None and event_files.largest_step(path) >= 0:
                    raise LogdirStateError(
                        f"logdir {self.logdir}: its record, from an older version, does not say "
                        f"which app or model wrote {name}, which holds points, and no checkpoint "
                        "proves them this model's; starting over would erase them: move them "
                        "away, or pass a new --logdir"
                    )
                self._own_event_files[name] = path
            elif event_files.largest_step(path) > last:
                if restored_step is None:
                    raise LogdirStateError(
                        f"logdir {self.logdir} already holds event files that no run of this app "
                        f"recorded writing ({name}, ...) and no checkpoint to resume from; "
                        "pass a new --logdir, or move them away"
                    )
                raise LogdirStateError(
                    f"logdir {self.logdir}: {name} holds points after step {restored_step}, the "
                    "checkpoint to resume from, but no run of this app recorded writing it (an "
                    "older version, or another program), so it cannot be trimmed; move it away, "
                    "or pass a new --logdir"
                )

    def check_resume(self) -> None:
        """Raises the refusal `restore` put off to the first write (a resume that would rewrite
        what no record proves this app's), if there is one: call it once the run is known not
        to be finished, before anything of the run is written (the debugger's dump included)."""
        if self._refusal is not None:
            raise self._refusal

    def _begin_writing(self) -> None:
        """Before the chief's first write: removes its own leftovers, repairs the list of
        checkpoints as `restore` planned, and records this run in the logdir's record."""
        if self._writing or not self.is_chief:
            return
        if not self._restored:
            self.restore()
        if self._refusal is not None:
            raise self._refusal
        try:
            trim.remove_trim_leftovers(self.logdir)
            for path in run_record.leftovers(self.logdir):
                tf.io.gfile.remove(path)
            for path in self._files_to_remove:
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                elif tf.io.gfile.exists(path):
                    tf.io.gfile.remove(path)
            state_path = f"{self._checkpoint_directory}/{STATE_FILE_NAME}"
            if self._state_to_write:
                names = [f"{CHECKPOINT_NAME}-{step}" for step in self._state_to_write]
                # With timestamps after the last preserved one, or the manager would leave these
                # out of its list, and never sweep them.
                now = time.time()
                state = CheckpointState(
                    model_checkpoint_path=names[-1],
                    all_model_checkpoint_paths=names,
                    all_model_checkpoint_timestamps=[now] * len(names),
                    last_preserved_timestamp=now - 1,
                )
                run_record.atomic_write(state_path, text_format.MessageToString(state))
            elif self._remove_state and tf.io.gfile.exists(state_path):
                tf.io.gfile.remove(state_path)
            record = self._record or run_record.RunRecord()
            record.add_this_run()
            record.app = record.app or self._app
            record.model = record.model or self._model
            record.saving = None
            if self.last_saved_step is not None:  # Adopts an older version's checkpoints, too.
                record.last_saved = max(record.last_saved or 0, self.last_saved_step)
            run_record.write(self.logdir, record)
        except Exception as error:
            self._raise_as_user_error(error, "while preparing to write")
        self._record = record
        run_record.set_live(self.logdir, record)  # For the Projector's files: claim_files.
        self._manager = self._create_manager(self.logdir)
        self._writing = True

    def _raise_as_user_error(self, error: Exception, context: str) -> None:
        kept = self._what_is_kept()
        reported = errors.as_user_error(error, f"{context} in logdir {self.logdir}", kept)
        if reported is None:
            raise error
        raise reported from error

    def _record_event_files(self) -> None:
        """Adds the event files this run created (its name is in theirs, its second in their
        header) to the record, with their proofs, and lengthens the proofs of growing files."""
        record = self._record
        files = event_files.event_files_by_name(self.logdir)
        record.extend_proofs(files)
        record.prove(
            {
                name: path
                for name, path in files.items()
                if name not in record.event_file_proofs and record.is_ours(name, path)
            }
        )

    def _record_end(self) -> None:
        """At the end of the chief's run, however it ends but a kill: lists the event files it
        created since the last update and marks it ended, so no file named like its own is
        adopted later (see common/logdir/run_record.py). Best effort: without the mark, a later run
        adopts by name as before, with the same checks."""
        if not self._writing or self._record is None:
            return
        run_record.set_live(self.logdir, None)
        try:
            self._record_event_files()
            self._record.mark_ended()
            run_record.write(self.logdir, self._record)
        except Exception:  # Best effort: the block's own error, if any, is the one to report.
            pass

    def already_finished(self, num_steps: int) -> bool:
        """True (and says so on the console) if the restored run has done `num_steps` already;
        otherwise announces a resume, if this is one."""
        step = self.last_saved_step or 0
        if step >= num_steps:
            print(
                f"{self.logdir} already finished at step {step}: nothing to do (pass a larger "
                "--num_steps to train further, or a new --logdir)",
                flush=True,
            )
            return True
        if step:
            print(f"resumed from step {step} ({self.latest_checkpoint})", flush=True)
        return False

    def open_writers(self) -> summaries.SummaryWriters:
        """Drops points written after the restored checkpoint, then opens the train/eval writers.

        Only event files the logdir's record proves this app's runs wrote are trimmed; the
        writers' new files are added to it at once. Each new file begins with a restart marker at
        the step after the checkpoint (`trim.write_restart_markers`), so a TensorBoard that
        already showed the dropped points forgets them too.
        """
        if self.is_chief:
            self._begin_writing()
            last = self.last_saved_step if self.last_saved_step is not None else -1
            try:
                trim.trim_events_after(
                    self.logdir, last, paths=list(self._own_event_files.values())
                )
            except Exception as error:
                self._raise_as_user_error(error, "while dropping points after the checkpoint")
            existing = set(event_files.event_files_by_name(self.logdir))
        first_step = 0 if self.last_saved_step is None else self.last_saved_step + 1
        self.writers = summaries.create_writers(self.output_dir, first_step=first_step)
        if self.is_chief:
            try:
                # The writers' files by name, not only by the pid in it: that needs the clock
                # to have stayed at or after the run's recorded start.
                files = event_files.event_files_by_name(self.logdir)
                # The trim's rewritten files are proven anew (their first bytes may change).
                self._record.prove(
                    {
                        name: files[name]
                        for name in sorted(set(files) - existing | set(self._own_event_files))
                        if name in files
                    }
                )
                self._record_event_files()
                run_record.write(self.logdir, self._record)
            except Exception as error:
                self._raise_as_user_error(error, "while recording the new event files")
        return self.writers

    def _check_weights_are_finite(self, step: int) -> None:
        """Raises NonFiniteWeightsError unless every saved floating-point variable is finite.

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
                f"the weights became non-finite at step {step} ({_some(culprits)} hold NaN or "
                f"Inf); stopped without saving. {self._what_is_kept()} "
                f"{self._non_finite_advice()}"
            )

    def save(self, step: int) -> str:
        """Flushes the writers, then saves a checkpoint numbered `step`; returns its path.

        Every scalar up to `step` is on disk before the checkpoint. The eval summaries of `step`
        (histograms, pictures, curves) may still be on their own thread (common/loop/background.py):
        the save does not wait for them, so training goes on; a crash before they are written
        costs that one eval's pictures, never a scalar. The run waits for them before it ends.

        Raises:
            NonFiniteWeightsError: if a variable holds NaN or Inf; nothing is saved.
            common.errors.DiskFullError, ...: if the save fails; the last good checkpoint is
                kept, and no half-written checkpoint is left behind.
        """
        self._check_weights_are_finite(step)
        if self.writers is not None:
            try:
                self.writers.flush()  # The loop's own points up to `step`: on disk first.
            except Exception as error:
                self._raise_as_user_error(error, f"while writing the summaries of step {step}")
        if self.is_chief:
            self._begin_writing()
            try:
                self._record.saving = step
                self._record_event_files()
                run_record.write(self.logdir, self._record)
            except Exception as error:
                self._raise_as_user_error(error, f"while recording checkpoint {step}")
        listed_before = set(self._manager.checkpoints)
        prefix = f"{self._manager.directory}/{CHECKPOINT_NAME}-{step}"
        try:
            path = self._manager.save(checkpoint_number=step)
        except BaseException as error:
            self._remove_failed_save(prefix, listed_before)
            if isinstance(error, Exception):
                self._raise_as_user_error(error, f"while saving checkpoint {prefix}")
            raise
        self.last_saved_step = step
        self._latest = path
        if self.is_chief:
            try:
                self._record.saving = None
                self._record.last_saved = step
                run_record.write(self.logdir, self._record)
            except Exception as error:
                self._raise_as_user_error(error, f"after saving checkpoint {path}")
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

    def check_loss(self, loss: float, step: int) -> None:
        """Raises NonFiniteLossError, naming the step and the kept checkpoint, unless finite.

        Call it with the last loss of each loop before that loop's summaries and checkpoint: the
        loop stops at the first non-finite step, and nothing of it is written or saved.
        """
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss or its gradients became {loss} at step {step}; stopped without "
                f"saving.{self._loss_scale_note()} {self._what_is_kept()} "
                f"{self._non_finite_advice()}"
            )

    def _loss_scale_note(self) -> str:
        """Under dynamic loss scaling whose scale collapsed (see loss_or_nan): what happened."""
        for trackable in self._trackables.values():
            # keras.optimizers.LossScaleOptimizer's scale, once built (mixed_float16).
            scale = getattr(trackable, "dynamic_scale", None)
            if scale is not None and float(scale.numpy()) < MIN_LOSS_SCALE:
                return (
                    " Under --mixed_precision=mixed_float16 the steps whose gradients were not "
                    "finite were skipped, and the loss scale fell to "
                    f"{float(scale.numpy()):g}: they overflow float16 even unscaled, or are "
                    "NaN (try --mixed_precision=mixed_bfloat16 or none)."
                )
        return ""

    def _non_finite_advice(self) -> str:
        """What a NaN message suggests: the usual causes, then how to find the op."""
        if self.debugger_dir:
            return (
                f"{NON_FINITE_ADVICE} To find the op, open TensorBoard's Debugger V2 tab on "
                f"{self.debugger_dir} (make tensorboard LOGS={self.debugger_dir}): its alerts "
                "name the first op that produced NaN/Inf."
            )
        return (
            f"{NON_FINITE_ADVICE} To find the op that produced the first NaN/Inf, rerun with "
            "--debugger (slower) on a new --logdir."
        )

    def end_of_loop(self, step: int) -> None:
        """Call at each loop boundary, after its summaries: saves when due.

        Raises:
            Interrupted: after saving, if SIGINT or SIGTERM arrived during the loop.
        """
        received = self._stop_signals.received
        # All workers agree, or one would leave the others waiting in the next collective.
        if distribution.any_worker(self.strategy, received is not None):
            self.save(step)
            if received is None:
                raise Interrupted(
                    signal.SIGTERM, f"another worker was stopped at step {step}; stopping too."
                )
            raise Interrupted(
                received,
                f"{self._stop_signals.name} at step {step}; checkpoint saved to "
                f"{self.latest_checkpoint}. "
                "Run the same command again to resume.",
            )
        last = self.last_saved_step or 0
        if step // self.checkpoint_every_steps > last // self.checkpoint_every_steps:
            self.save(step)
        elif self.is_chief and not self._recorded_after_first_loop and self._writing:
            # The files made since the writers (the HParams file at the root) are listed at the
            # first boundary, not only at the first save: until then only their name vouches.
            try:
                self._record_event_files()
                run_record.write(self.logdir, self._record)
            except Exception as error:
                self._raise_as_user_error(error, "while recording the new event files")
        self._recorded_after_first_loop = True


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


def _some(names: Sequence[str], shown: int = 2) -> str:
    """`a, b and 3 more`: a list short enough for a one-line message."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"
