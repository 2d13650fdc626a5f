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
it are dropped on resume (`summaries.trim_events_after`): TensorBoard never shows one step twice.
Nothing is saved when the block ends with an exception, so a NaN never overwrites a good checkpoint.
"""

import math
import os

import tensorflow as tf

from common import summaries
from common.errors import Interrupted, NonFiniteLossError, UserError
from common.run_lock import LogdirLock
from common.signals import StopSignals

CHECKPOINT_DIRECTORY = "checkpoints"


class CheckpointMismatchError(UserError):
    """The logdir's checkpoint does not fit this model (another app or another configuration)."""


class TrainingRun:
    """One run's stay in its logdir: see the module docstring for the calls, in order."""

    def __init__(
        self,
        logdir: str,
        global_step: tf.Variable,
        checkpoint_every_steps: int,
        max_to_keep: int = 3,
        **trackables: object,
    ) -> None:
        """Prepares, but touches nothing until the `with` block starts.

        Args:
            logdir: the run's directory (checked and created on entry).
            global_step: the step counter; saved with everything else.
            checkpoint_every_steps: save at the first loop boundary at or after each multiple.
            max_to_keep: how many checkpoints to keep on disk.
            **trackables: what to save, e.g. `model=model, optimizer=optimizer`.
        """
        self.logdir = logdir
        self.global_step = global_step
        self.checkpoint_every_steps = checkpoint_every_steps
        self._checkpoint = tf.train.Checkpoint(global_step=global_step, **trackables)
        self._max_to_keep = max_to_keep
        self._lock = LogdirLock(logdir)
        self._stop_signals = StopSignals()
        self._manager: tf.train.CheckpointManager | None = None
        self.writers: summaries.SummaryWriters | None = None
        self.last_saved_step: int | None = None

    def __enter__(self) -> "TrainingRun":
        summaries.prepare_logdir(self.logdir)
        self._lock.acquire()
        self._stop_signals.__enter__()
        self._manager = tf.train.CheckpointManager(
            self._checkpoint,
            os.path.join(self.logdir, CHECKPOINT_DIRECTORY),
            max_to_keep=self._max_to_keep,
            checkpoint_name="ckpt",
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.writers is not None:
            self.writers.close()
        self._stop_signals.__exit__()
        self._lock.release()

    @property
    def latest_checkpoint(self) -> str | None:
        """Path prefix of the newest checkpoint, or None."""
        return self._manager.latest_checkpoint

    def describe_last_checkpoint(self) -> str:
        """`step 400 (logs/x/checkpoints/ckpt-400)`, or `none yet`, for messages."""
        if self.latest_checkpoint is None:
            return "none yet"
        step = self.last_saved_step if self.last_saved_step is not None else "?"
        return f"step {step} ({self.latest_checkpoint})"

    def restore(self) -> int:
        """Restores the latest checkpoint, if any, and returns the global step (0 for a new run).

        Raises:
            CheckpointMismatchError: if the checkpoint is not of this model and optimizer.
        """
        path = self.latest_checkpoint
        if path is None:
            return 0
        reason = None
        try:
            self._checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if reason is not None:
            raise CheckpointMismatchError(
                f"logdir {self.logdir} holds a checkpoint ({path}) that does not fit this model: "
                f"{reason}; pass a new --logdir"
            )
        self.last_saved_step = int(self.global_step.numpy())
        return self.last_saved_step

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
        """Drops points written after the restored checkpoint, then opens the train/eval writers."""
        summaries.trim_events_after(
            self.logdir, self.last_saved_step if self.last_saved_step is not None else -1
        )
        self.writers = summaries.create_writers(self.logdir)
        return self.writers

    def save(self, step: int) -> str:
        """Flushes the writers, then saves a checkpoint numbered `step`; returns its path."""
        if self.writers is not None:
            self.writers.flush()  # Every point up to `step` is on disk before the checkpoint is.
        path = self._manager.save(checkpoint_number=step)
        self.last_saved_step = step
        return path

    def check_loss(self, loss: float, step: int) -> None:
        """Raises NonFiniteLossError, naming the step and the kept checkpoint, unless finite.

        Call it with the last loss of each loop before that loop's summaries and checkpoint: the
        loop stops at the first non-finite step, and nothing of it is written or saved.
        """
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss} at step {step}; stopped without saving. The last good "
                f"checkpoint, {self.describe_last_checkpoint()}, is kept. Try a lower "
                "--learning_rate."
            )

    def end_of_loop(self, step: int) -> None:
        """Call at each loop boundary, after its summaries: saves when due.

        Raises:
            Interrupted: after saving, if SIGINT or SIGTERM arrived during the loop.
        """
        if self._stop_signals.received is not None:
            path = self.save(step)
            raise Interrupted(
                self._stop_signals.received,
                f"{self._stop_signals.name} at step {step}; checkpoint saved to {path}. "
                "Run the same command again to resume.",
            )
        last = self.last_saved_step or 0
        if step // self.checkpoint_every_steps > last // self.checkpoint_every_steps:
            self.save(step)
