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

Under a multi-worker strategy every worker runs this same code: the chief owns the logdir (lock,
summaries, checkpoints); every other worker restores from the chief's checkpoints but writes to a
temporary directory of its own, `output_dir`, removed at the end. Decisions that end the loop
(a signal) are agreed by all workers, so none is left waiting in a collective.
"""

import math
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence

import tensorflow as tf

from common import distribution, summaries
from common.errors import Interrupted, NonFiniteLossError, UserError
from common.run_lock import LogdirLock
from common.signals import StopSignals

CHECKPOINT_DIRECTORY = "checkpoints"


def loss_or_nan(loss: tf.Tensor, gradients: Sequence[tf.Tensor | None]) -> tf.Tensor:
    """`loss`, or NaN if it is finite but a gradient holds a NaN or an infinity: what a train step
    should return for the loop's non-finite check.

    The loss alone can hide a broken step. On CPUs where oneDNN fuses MatMul, BiasAdd and Relu
    (TensorFlow 2.21 in a tf.function), the fused op turns a NaN input into 0: a NaN in the data
    gives a finite loss but NaN gradients, and from then on NaN weights behind a loss that still
    looks fine. Call it inside the step, after `tape.gradient`; `None` gradients are skipped.
    """
    checks = [
        tf.reduce_all(tf.math.is_finite(getattr(gradient, "values", gradient)))  # IndexedSlices.
        for gradient in gradients
        if gradient is not None
    ]
    all_finite = tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)
    # A loss that is already Inf stays Inf (its gradients are NaN then), so the error says so.
    keep_loss = tf.logical_or(all_finite, tf.logical_not(tf.math.is_finite(loss)))
    return tf.where(keep_loss, loss, tf.constant(math.nan, loss.dtype))


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
        strategy: tf.distribute.Strategy | None = None,
        **trackables: object,
    ) -> None:
        """Prepares, but touches nothing until the `with` block starts.

        Args:
            logdir: the run's directory (checked and created on entry).
            global_step: the step counter; saved with everything else.
            checkpoint_every_steps: save at the first loop boundary at or after each multiple.
            max_to_keep: how many checkpoints to keep on disk.
            strategy: the run's tf.distribute strategy (default: the current one).
            **trackables: what to save, e.g. `model=model, optimizer=optimizer`.
        """
        self.logdir = logdir
        self.global_step = global_step
        self.checkpoint_every_steps = checkpoint_every_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = distribution.is_chief(self.strategy)
        # Where this worker writes: the logdir on the chief; set on entry for the others.
        self.output_dir = logdir
        self._checkpoint = tf.train.Checkpoint(global_step=global_step, **trackables)
        self._max_to_keep = max_to_keep
        self._lock = LogdirLock(logdir)
        self._stop_signals = StopSignals()
        self._manager: tf.train.CheckpointManager | None = None
        self.writers: summaries.SummaryWriters | None = None
        self.last_saved_step: int | None = None

    def __enter__(self) -> "TrainingRun":
        if self.is_chief:
            summaries.prepare_logdir(self.logdir)
            self._lock.acquire()
        else:
            name = distribution.worker_name(self.strategy).replace(" ", "-") or "worker"
            self.output_dir = tempfile.mkdtemp(prefix=f"{name}-")
        self._stop_signals.__enter__()
        self._manager = tf.train.CheckpointManager(
            self._checkpoint,
            os.path.join(self.output_dir, CHECKPOINT_DIRECTORY),
            max_to_keep=self._max_to_keep,
            checkpoint_name="ckpt",
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.writers is not None:
            self.writers.close()
        self._stop_signals.__exit__()
        if self.is_chief:
            self._lock.release()
        else:
            shutil.rmtree(self.output_dir, ignore_errors=True)

    @property
    def latest_checkpoint(self) -> str | None:
        """Path prefix of the newest checkpoint, or None (always the chief's, on any worker)."""
        if self.is_chief:
            return self._manager.latest_checkpoint
        return tf.train.latest_checkpoint(os.path.join(self.logdir, CHECKPOINT_DIRECTORY))

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
        if self.is_chief:
            summaries.trim_events_after(
                self.logdir, self.last_saved_step if self.last_saved_step is not None else -1
            )
        self.writers = summaries.create_writers(self.output_dir)
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
                f"the loss or its gradients became {loss} at step {step}; stopped without "
                f"saving. The last good checkpoint, {self.describe_last_checkpoint()}, is kept. "
                "Try a lower --learning_rate."
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
