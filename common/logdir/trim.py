"""Dropping, from a resumed run's event files, the points its crashed predecessor wrote after the
checkpoint, and making a live TensorBoard forget them too (`write_restart_markers`).
"""

import sys
import time
from collections.abc import Sequence

import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorflow.python.ops import summary_ops_v2  # import_event: tf.summary has no session log.

from common.logdir import run_record
from common.logdir.event_files import (
    EVENT_FILE_PREFIX,
    OLD_TRIM_SUFFIX,
    event_files,
    read_records,
    run_directories,
)
from common.logdir.prepare import display_path

# The trim writes its temporary file under a name that is neither matched by `events.out.tfevents.*`
# nor read by TensorBoard (whose loader takes any file with `tfevents` in its name): the hidden
# `.trim.<the event file's name after the prefix>.tmp`, beside the file it replaces.
TRIM_TEMPORARY_PREFIX = ".trim."
TRIM_TEMPORARY_SUFFIX = ".tmp"


def trim_temporary_path(path: str) -> str:
    """Where `trim_events_after` writes the new version of event file `path` before the rename."""
    directory, name = path.rsplit("/", 1)
    return (
        f"{directory}/{TRIM_TEMPORARY_PREFIX}{name.removeprefix(EVENT_FILE_PREFIX)}"
        f"{TRIM_TEMPORARY_SUFFIX}"
    )


def trim_leftovers(logdir: str) -> list[str]:
    """Temporary files a trim killed midway left behind, in the run's directories.

    Both kinds are this code's by their names: the hidden `.trim.*.tmp`, and the `.trimmed` of
    earlier versions, but the latter only beside the event file it was copied from (without it,
    it may be the only copy of the points, and it is left alone).
    """
    leftovers = []
    for directory in run_directories(logdir):
        leftovers += tf.io.gfile.glob(
            f"{directory}/{TRIM_TEMPORARY_PREFIX}*{TRIM_TEMPORARY_SUFFIX}"
        )
        for path in tf.io.gfile.glob(f"{directory}/{EVENT_FILE_PREFIX}*{OLD_TRIM_SUFFIX}"):
            if tf.io.gfile.exists(path.removesuffix(OLD_TRIM_SUFFIX)):
                leftovers.append(path)
    return sorted(leftovers)


def remove_trim_leftovers(logdir: str) -> list[str]:
    """Removes what `trim_leftovers` finds, and returns it.

    A trim renames its finished file over the original, so a leftover is always an unfinished
    copy whose original is intact: removing it loses nothing, and the trim that follows redoes it.
    """
    leftovers = trim_leftovers(logdir)
    for path in leftovers:
        tf.io.gfile.remove(path)
    return leftovers


def trim_events_after(logdir: str, last_step: int, paths: Sequence[str] | None = None) -> int:
    """Drops, from event files of the run, the events stamped after `last_step`.

    When a run resumes from a checkpoint at step S, the points its crashed predecessor wrote after S
    would stand beside the replayed ones in TensorBoard, two values for one step. So each file that
    holds such points (or a torn last record, from a kill mid-write) is rewritten without them, to
    a temporary file first (see `trim_temporary_path`) and then renamed over the original, so a
    crash here loses nothing. `last_step=-1` keeps nothing but the files' version headers (a
    restart with no checkpoint). A file with nothing to drop is not touched.

    A damaged record in the middle of a file (a flipped bit) does not end the reading: every
    intact record after it is read too (`read_records`) and kept. TensorFlow's reader, and so
    TensorBoard, stop at the damage and show nothing after it, so such a file is rewritten without
    the damaged bytes (which no reader can take as a record), and one warning line on stderr names
    them. (The trim used to stop there too, and dropped every record after the damage.)

    Args:
        logdir: the run's directory.
        last_step: the step of the checkpoint the run resumes from, or -1.
        paths: the event files to trim, which the caller has proven its own (see
            `common.checkpoints.repair.own_event_files`); None trims every event file of `logdir`.

    Returns:
        How many events were dropped.

    Raises:
        tf.errors.OpError: if a write fails (a full disk, say); the temporary file is removed
            and the original is left as it was.
    """
    dropped = 0
    for path in event_files(logdir) if paths is None else sorted(paths):
        read = read_records(path)
        kept = [
            record
            for record, event in read.records
            if event is None or event.HasField("file_version") or event.step <= last_step
        ]
        dropped += len(read.records) - len(kept)
        # A torn last record (everything before it is kept), or damage: rewritten without it.
        needs_rewrite = (
            len(kept) < len(read.records) or read.torn_at is not None or bool(read.damaged)
        )
        if read.damaged:
            ranges = ", ".join(f"{start}-{end - 1}" for start, end in read.damaged)
            print(
                f"warning: {display_path(path)}: bytes {ranges} hold no intact record (damaged), "
                f"where TensorFlow's reader, and TensorBoard's, stop: rewritten without them, "
                f"keeping its {len(kept)} intact records up to step {last_step}",
                file=sys.stderr,
                flush=True,
            )
        if needs_rewrite:

            def write_kept(temporary: str, kept: list[bytes] = kept) -> None:
                with tf.io.TFRecordWriter(temporary) as writer:
                    for record in kept:
                        writer.write(record)

            # A full disk, a kill by KeyboardInterrupt: the original is intact; no half copy.
            run_record.replace_through(path, trim_temporary_path(path), write_kept)
    return dropped


def write_restart_markers(writer: tf.summary.SummaryWriter, first_step: int) -> None:
    """Writes the events that make a live TensorBoard forget the points a crashed run left after
    its checkpoint: `session_log { status: START }` at `first_step`, twice.

    A resumed run's trim (`trim_events_after`) removes those points from the files, but a
    TensorBoard that is showing the run has read them already and never rereads a file. The
    fast loader (the Rust data server, TensorBoard's default) forgets a series' points from a
    step on when a point at that step or an earlier one arrives, so the resumed run's own points
    replace them. The Python loader (`--load_fast=false`) does not: it kept both, every step
    from the checkpoint to the kill shown twice until the server restarted (tensorboard#1272).
    What it honours is TensorFlow 1's restart marker: in its `_CheckForRestartAndMaybePurge` (on
    with `--purge_orphaned_data`, the default, for files of version 2, TF2's), a
    `SessionLog.START` event at step N drops every point of the run (all tags) whose step is N or
    more. It takes the first START it sees in a run for the run's beginning and purges nothing
    then; so each new file begins with two, and the second one purges whether or not the earlier
    files hold one (an older version of this code wrote none).

    The marker is no summary: neither loader shows it as a point or a tag (the fast one ignores
    session logs), and at `first_step`, before the run's first point there, it drops nothing
    the resumed run keeps. A reader that purges at every START (the legacy `EventAccumulator`)
    finds nothing to drop in trimmed files. `tf.summary` cannot write a session log
    (`write_raw_pb` takes a `Summary`), so the Event is imported into the writer's own file,
    where it lands after the file's version header and before any of the run's points.

    Args:
        writer: a writer just created, before anything is written to it.
        first_step: the first step its run writes (0, or the resumed checkpoint's step + 1).
    """
    start = event_pb2.Event(
        wall_time=time.time(),
        step=first_step,
        session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
    )
    with writer.as_default():  # import_event writes to the default writer; the scope flushes.
        for _ in range(2):
            summary_ops_v2.import_event(tf.constant(start.SerializeToString()))
