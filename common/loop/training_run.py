"""What lets a run survive: an exclusive logdir, checkpoints, resume, and graceful stops.

    with TrainingRun(logdir, global_step, checkpoint_every_steps, model=..., optimizer=...) as run:
        start_step = run.restore()      # 0 for a new run; else the step of the latest checkpoint
        if run.already_finished(num_steps): return  # Says so; nothing is touched.
        writers = run.open_writers()    # Drops points a crash left after the checkpoint.
        ... at each loop boundary, after its summaries:
        run.end_of_loop(step)           # Saves when due; on SIGINT/SIGTERM saves and raises.
        run.save(step)                  # At the end.

TrainingRun runs its parts in order, each with one job: the logdir's lock
(common/logdir/run_lock.py), its checkpoints (common/checkpoints/checkpoints.py), what a run may
repair in its logdir and what it refuses (common/checkpoints/repair.py, by the record that
common/logdir/record_keeping.py keeps), the trim (common/logdir/trim.py), the stop signals
(common/loop/signals.py) and the NaN stop (common/loop/non_finite.py). Writers are flushed
before every save, so every point up to a checkpoint is on disk when the checkpoint is; points
after it are dropped on resume: TensorBoard never shows one step twice. Nothing is saved when the
block ends with an exception, so a NaN never overwrites a good checkpoint, and `save` refuses
weights that hold a NaN or an infinity.

Under a multi-worker strategy every worker runs this same code: the chief owns the logdir (lock,
record, summaries, checkpoints); every other worker restores from the chief's checkpoints (choosing
the same one, by the same rule) but writes to a temporary directory of its own, `output_dir`,
removed at the end. Decisions that end the loop (a signal) are agreed by all workers, so none is
left waiting in a collective.
"""

import math
import shutil
import sys
import tempfile

import keras
import tensorflow as tf

from common import distribution, errors, summaries
from common.checkpoints import checkpoints, repair
from common.errors import Interrupted, NonFiniteLossError, UserError
from common.logdir import event_files, prepare, run_record, trim
from common.logdir.record_keeping import RecordKeeper
from common.logdir.run_lock import LogdirLock
from common.loop import non_finite, signals
from common.loop.signals import StopSignals


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
        self._checkpoints = checkpoints.Checkpoints(
            logdir, global_step, trackables, max_to_keep, self.is_chief, run_settings
        )
        self._model = run_record.model_identity(
            {name: value for name, value in trackables.items() if isinstance(value, keras.Layer)}
        )
        self._records = RecordKeeper(logdir, app, self._model)
        self._trackables = trackables  # A NaN message reads a loss scale's value from them.
        self._lock = LogdirLock(logdir)
        self._stop_signals = StopSignals()
        self.writers: summaries.SummaryWriters | None = None
        # Where tf.debugging's dump goes when --debugger is on (set by the loop): the NaN
        # messages point at it, and suggest --debugger when it is None.
        self.debugger_dir: str | None = None
        # Set by restore(): what to repair before the first write, and a refusal put off to it.
        self._repairs = repair.RepairPlan()
        self._recorded_after_first_loop = False
        self._writing = False

    @property
    def last_saved_step(self) -> int | None:
        """The step of the checkpoint restored, then of each one saved; None before any."""
        return self._checkpoints.last_saved_step

    @property
    def latest_checkpoint(self) -> str | None:
        """Path prefix of the newest good checkpoint, or None (always the chief's, on any worker).

        After `restore()`, the one restored (an unreadable newer one is not "good"), then each one
        saved.
        """
        return self._checkpoints.latest_checkpoint

    def restored_settings(self) -> str | None:
        """The `run_settings` text saved with the restored checkpoint, or None (a new run, or a
        checkpoint of an older version, which saved none)."""
        return self._checkpoints.restored_settings()

    def describe_last_checkpoint(self) -> str:
        """`step 400 (logs/x/checkpoints/ckpt-400)`, or `none yet`, for messages."""
        return self._checkpoints.describe_last()

    def _what_is_kept(self) -> str:
        """The sentence an error ends with: which checkpoint survives it."""
        return self._checkpoints.what_is_kept()

    def __enter__(self) -> "TrainingRun":
        if self.is_chief:
            prepare.prepare_logdir(self.logdir)
            self._lock.acquire()
            try:
                repair.check_checkpoint_directory(self.logdir)
            except BaseException:
                self._lock.release()
                raise
        else:
            name = distribution.worker_name(self.strategy).replace(" ", "-") or "worker"
            self.output_dir = tempfile.mkdtemp(prefix=f"{name}-")
            self._checkpoints.open_manager(self.output_dir)
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
                if self._writing:
                    self._records.end()
                self._lock.release()
            else:
                shutil.rmtree(self.output_dir, ignore_errors=True)
        kept = self._what_is_kept()
        if isinstance(exc, run_record.UnprovenFileError) and exc_type is not None:
            # Refused mid-run (the Projector's first write, at the first eval): what it leaves.
            raise run_record.UnprovenFileError(f"{exc}. {kept}") from exc
        if isinstance(exc, KeyboardInterrupt):
            # A second Ctrl-C, or a signals.StopNow (SIGTERM during a SIGINT's stop).
            raise signals.stopped_at_once(exc, kept) from None
        if isinstance(exc, Exception) and not isinstance(exc, UserError | Interrupted):
            reported = errors.as_user_error(exc, f"in logdir {self.logdir}", kept)
            if reported is not None:
                raise reported from exc
            if exc_type is None:
                raise exc  # A failed close at the end of a clean block, not recognized.

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
        self._checkpoints.restored = True
        record = self._records.read() if self.is_chief else None
        found = checkpoints._find_checkpoints(self._checkpoints.directory)
        candidates = repair.checkpoint_candidates(self.logdir, found, record, self.is_chief)
        restored_step, skipped = self._checkpoints.restore_newest(candidates)
        problems = repair.restore_problems(self.logdir, found, candidates, skipped, restored_step)
        if self.is_chief:
            self._repairs = repair.plan_after_restore(
                self.logdir, found, record, self._model, candidates, restored_step, bool(problems)
            )
        if restored_step is not None and problems:
            print(
                f"warning: {'; '.join(problems)}: resuming from {self._checkpoints.latest}, the "
                "newest checkpoint that restores; what came after it is dropped",
                file=sys.stderr,
                flush=True,
            )
        return self.last_saved_step or 0

    def check_resume(self) -> None:
        """Raises the refusal `restore` put off to the first write (a resume that would rewrite
        what no record proves this app's), if there is one: call it once the run is known not
        to be finished, before anything of the run is written (the debugger's dump included)."""
        if self._repairs.refusal is not None:
            raise self._repairs.refusal

    def _begin_writing(self) -> None:
        """Before the chief's first write: removes its own leftovers, repairs the list of
        checkpoints as `restore` planned, and records this run in the logdir's record."""
        if self._writing or not self.is_chief:
            return
        if not self._checkpoints.restored:
            self.restore()
        if self._repairs.refusal is not None:
            raise self._repairs.refusal
        try:
            repair.repair_before_writing(self.logdir, self._repairs)
            self._records.begin(self.last_saved_step)
        except Exception as error:
            self._raise_as_user_error(error, "while preparing to write")
        self._checkpoints.open_manager(self.logdir)
        self._writing = True

    def _raise_as_user_error(self, error: Exception, context: str) -> None:
        kept = self._what_is_kept()
        reported = errors.as_user_error(error, f"{context} in logdir {self.logdir}", kept)
        if reported is None:
            raise error
        raise reported from error

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
        the step after the checkpoint (`common.logdir.trim.write_restart_markers`), so a
        TensorBoard that already showed the dropped points forgets them too.
        """
        if self.is_chief:
            self._begin_writing()
            last = self.last_saved_step if self.last_saved_step is not None else -1
            try:
                own = list(self._repairs.own_event_files.values())
                trim.trim_events_after(self.logdir, last, paths=own)
            except Exception as error:
                self._raise_as_user_error(error, "while dropping points after the checkpoint")
            existing = set(event_files.event_files_by_name(self.logdir))
        first_step = 0 if self.last_saved_step is None else self.last_saved_step + 1
        self.writers = summaries.create_writers(self.output_dir, first_step=first_step)
        if self.is_chief:
            try:
                self._records.record_new_writers(existing, self._repairs.own_event_files)
            except Exception as error:
                self._raise_as_user_error(error, "while recording the new event files")
        return self.writers

    def save(self, step: int) -> str:
        """Flushes the writers, then saves a checkpoint numbered `step`; returns its path.

        Every scalar up to `step` is on disk before the checkpoint. The eval summaries of `step`
        (histograms, pictures, curves) may still be on their own thread
        (common/summaries/background.py): the save does not wait for them, so training goes on; a
        crash before they are written costs that one eval's pictures, never a scalar. The run
        waits for them before it ends.

        Raises:
            NonFiniteWeightsError: if a variable holds NaN or Inf; nothing is saved.
            common.errors.DiskFullError, ...: if the save fails; the last good checkpoint is
                kept, and no half-written checkpoint is left behind.
        """
        self._checkpoints.check_weights_are_finite(
            step, lambda: f"{self._what_is_kept()} {non_finite.advice(self.debugger_dir)}"
        )
        if self.writers is not None:
            try:
                self.writers.flush()  # The loop's own points up to `step`: on disk first.
            except Exception as error:
                self._raise_as_user_error(error, f"while writing the summaries of step {step}")
        if self.is_chief:
            self._begin_writing()
            try:
                self._records.saving(step)
            except Exception as error:
                self._raise_as_user_error(error, f"while recording checkpoint {step}")
        try:
            path = self._checkpoints.save(step)
        except Exception as error:
            prefix = self._checkpoints.save_prefix(step)
            self._raise_as_user_error(error, f"while saving checkpoint {prefix}")
        if self.is_chief:
            try:
                self._records.saved(step)
            except Exception as error:
                self._raise_as_user_error(error, f"after saving checkpoint {path}")
        return path

    def check_loss(self, loss: float, step: int) -> None:
        """Raises NonFiniteLossError, naming the step and the kept checkpoint, unless finite.

        Call it with the last loss of each loop before that loop's summaries and checkpoint: the
        loop stops at the first non-finite step, and nothing of it is written or saved.
        """
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss or its gradients became {loss} at step {step}; stopped without "
                f"saving.{non_finite.loss_scale_note(self._trackables.values())} "
                f"{self._what_is_kept()} {non_finite.advice(self.debugger_dir)}"
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
            raise signals.interrupted(received, step, self.latest_checkpoint)
        last = self.last_saved_step or 0
        if step // self.checkpoint_every_steps > last // self.checkpoint_every_steps:
            self.save(step)
        elif self.is_chief and not self._recorded_after_first_loop and self._writing:
            # The files made since the writers (the HParams file at the root) are listed at the
            # first boundary, not only at the first save: until then only their name vouches.
            try:
                self._records.update()
            except Exception as error:
                self._raise_as_user_error(error, "while recording the new event files")
        self._recorded_after_first_loop = True
