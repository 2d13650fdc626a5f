"""What a run writes for TensorBoard, one job a module, and (below the re-exports) its logdir's
event files.

- `writers`: `SummaryWriters` (a run's train and eval writers and the eval summaries' thread),
  `create_writers`, `ScalarWriter` and `write_scalars` (a boundary's scalars), `write_summary`
  (many values in one event).
- `hparams`: `write_hparams`, a run's settings for the HParams dashboard, and its `trial_id`.
- `text`: Markdown for the Text dashboard (`markdown_code_block`, `markdown_table`).
- `layout`: the Custom Scalars layout (`scalars_layout`, `write_scalars_layout`).
- `histograms`: `histogram_buckets`, `write_histograms`, `write_variable_histograms` and
  `variable_tags`.
- `pr_curves`: the PR Curves dashboard's tensors, from counts (`pr_curves_summary`,
  `write_pr_curves`).
- `images`: the Images dashboard's PNGs (`encode_png`, `images_summary`, `write_image`).
- `graphs`, `projector`, `metrics`: the graphs, the Projector's files, and the counts an eval step
  takes for the curves and pictures (imported by name: `from common.summaries import metrics`).

The public names of the modules above are re-exported here, so callers write `summaries.<name>`.
Below them: the logdir's preparation and event-file management (the trim of a resumed run, the
restart markers), on their way to `common/logdir/`.

Train and eval write to sibling directories with the same tag names (`loss`, `accuracy`), so
TensorBoard treats them as two runs and overlays their curves on one chart per tag. Paths go
through `tf.io.gfile`, so a logdir may also be a cloud bucket (`gs://...`) on a cluster.
"""

import dataclasses
import sys
import time
import uuid
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorflow.python.lib.io import _pywrap_record_io  # TF's reader, with offsets and CRCs.
from tensorflow.python.ops import summary_ops_v2  # import_event: tf.summary has no session log.

from common import errors
from common.errors import UserError
from common.logdir import paths, run_record

# The writing half's public names, as callers have always used them (`summaries.write_scalars`);
# `__all__` lists them (the logdir functions below are on their way out of this package).
from common.summaries.histograms import (
    HISTOGRAM_BUCKETS,
    histogram_buckets,
    variable_tags,
    write_histograms,
    write_variable_histograms,
)
from common.summaries.hparams import trial_id, write_hparams
from common.summaries.images import encode_png, images_summary, write_image
from common.summaries.layout import layout_pb2, scalars_layout, write_scalars_layout
from common.summaries.pr_curves import (
    PR_CURVE_THRESHOLDS,
    pr_curve_counts,
    pr_curve_data,
    pr_curve_from_counts,
    pr_curves_summary,
    write_pr_curves,
)
from common.summaries.text import markdown_code_block, markdown_table
from common.summaries.writers import (
    ScalarWriter,
    SummaryWriters,
    create_writers,
    write_scalars,
    write_summary,
)

__all__ = [
    "HISTOGRAM_BUCKETS",
    "PR_CURVE_THRESHOLDS",
    "ScalarWriter",
    "SummaryWriters",
    "create_writers",
    "encode_png",
    "histogram_buckets",
    "images_summary",
    "layout_pb2",
    "markdown_code_block",
    "markdown_table",
    "pr_curve_counts",
    "pr_curve_data",
    "pr_curve_from_counts",
    "pr_curves_summary",
    "scalars_layout",
    "trial_id",
    "variable_tags",
    "write_histograms",
    "write_hparams",
    "write_image",
    "write_pr_curves",
    "write_scalars",
    "write_scalars_layout",
    "write_summary",
    "write_variable_histograms",
]


class LogdirError(UserError):
    """The logdir cannot be used: it is a file, or cannot be created or written."""


# The trim writes its temporary file under a name that is neither matched by `events.out.tfevents.*`
# nor read by TensorBoard (whose loader takes any file with `tfevents` in its name): the hidden
# `.trim.<the event file's name after the prefix>.tmp`, beside the file it replaces.
EVENT_FILE_PREFIX = "events.out.tfevents."
TRIM_TEMPORARY_PREFIX = ".trim."
TRIM_TEMPORARY_SUFFIX = ".tmp"
# What earlier versions of the trim named their temporary file: `<event file>.trimmed`. TensorBoard
# read a leftover one as a second copy of the run's points.
OLD_TRIM_SUFFIX = ".trimmed"


def _first_line(error: BaseException) -> str:
    return errors.first_line(error)


def display_path(path: str) -> str:
    """`path` as it can be printed: bytes that are not UTF-8 (kept by Python as surrogates) are
    shown as `\\xff` escapes instead of breaking the message."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def prepare_logdir(logdir: str) -> str:
    """Checks that `logdir` is (or can be made) a writable directory, and creates it.

    Also refuses a `train` or `eval` inside it that is not a directory: the writers need them.

    Args:
        logdir: a local path or a `tf.io.gfile` URL.

    Returns:
        `logdir`, created.

    Raises:
        LogdirError: with a one-line message that names the path.
    """
    try:
        logdir.encode("utf-8")
    except UnicodeEncodeError:
        # TensorFlow's file functions take UTF-8 paths only (they fail deep inside otherwise).
        raise LogdirError(
            f"logdir {display_path(logdir)} is not valid UTF-8; TensorFlow needs UTF-8 paths: pass "
            "a --logdir whose name is UTF-8 text"
        ) from None
    try:
        link = paths.broken_link(logdir)
        if link is not None:  # TensorFlow sees no directory there, and fails to make one.
            raise LogdirError(f"logdir {logdir} {link}; pass a new --logdir")
        if tf.io.gfile.exists(logdir) and not tf.io.gfile.isdir(logdir):
            raise LogdirError(f"logdir {logdir} is a file, not a directory")
        for run in ("train", "eval"):
            path = f"{logdir}/{run}"
            link = paths.broken_link(path)
            if link is not None:
                raise LogdirError(
                    f"logdir {logdir}: {run} {link}, not the directory of the {run} run's event "
                    f"files; move {path} away, or pass a new --logdir"
                )
            if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
                raise LogdirError(
                    f"logdir {logdir}: {run} is a file, not the directory of the {run} run's event "
                    f"files; move {path} away, or pass a new --logdir"
                )
    except (tf.errors.OpError, OSError) as error:
        # An unreachable bucket, a path TensorFlow has no filesystem for (`s3://` here), ...
        raise LogdirError(f"logdir {logdir} cannot be reached: {_first_line(error)}") from error
    try:
        tf.io.gfile.makedirs(logdir)
        # Writing is the only reliable test: permission bits say nothing on read-only mounts or
        # buckets, and nothing at all to root.
        probe = f"{logdir}/.write_test_{uuid.uuid4().hex}"
        with tf.io.gfile.GFile(probe, "w") as probe_file:
            probe_file.write("ok")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as error:
        raise LogdirError(
            f"logdir {logdir} cannot be created or written: {_first_line(error)}"
        ) from error
    return logdir


def run_directories(logdir: str) -> list[str]:
    """Where a run's event files are: its root (hparams), `train/` and `eval/`."""
    return [logdir, f"{logdir}/train", f"{logdir}/eval"]


def event_files(logdir: str) -> list[str]:
    """The event files of a run: its `train/` and `eval/` writers', and its root (hparams).

    An old trim's leftover (`<event file>.trimmed`) is not one: see `remove_trim_leftovers`.

    Raises:
        LogdirError: if one is not a regular file: see `event_files_by_name`.
    """
    return sorted(event_files_by_name(logdir).values())


def event_files_by_name(logdir: str) -> dict[str, str]:
    """`event_files(logdir)` keyed by their names relative to `logdir` (`train/events...`), which
    stay the same however `logdir` is spelled (a trailing `/`, a `gs://` URL).

    Raises:
        LogdirError: if a path named like an event file is not a regular file (a directory, a
            FIFO, a symbolic link that loops): reading it would fail, or hang (a FIFO), and no
            run of this code made it. Looked at without opening it.
    """
    files = {}
    for run, directory in zip(("", "train/", "eval/"), run_directories(logdir), strict=True):
        for path in tf.io.gfile.glob(f"{directory}/{EVENT_FILE_PREFIX}*"):
            if not path.endswith(OLD_TRIM_SUFFIX):
                name = run + path.rsplit("/", 1)[-1]
                reason = paths.not_a_regular_file(path)
                if reason is not None:
                    raise LogdirError(
                        f"logdir {logdir}: {name} {reason}, not an event file: reading it would "
                        f"fail or hang, TensorBoard's too; move {path} away, or pass a new --logdir"
                    )
                files[name] = path
    return files


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


@dataclasses.dataclass
class EventFileRecords:
    """What an event file holds, read record by record past any damage (see `read_records`)."""

    # Every intact record in order: its bytes and its event (None if they are not an Event).
    records: list[tuple[bytes, event_pb2.Event | None]]
    # Byte ranges `(start, end)` holding no intact record, with intact records after them: a
    # flipped bit, say. TensorFlow's reader (and TensorBoard's loaders) stop at the first.
    damaged: list[tuple[int, int]]
    # Where a torn last record starts (a kill mid-write: no intact record after it), or None.
    torn_at: int | None


def read_records(path: str) -> EventFileRecords:
    """Reads event file `path` with TFRecord's framing (length, masked CRC-32C of the length,
    data, masked CRC-32C of the data), and past a damaged record: the next intact one is found
    by its framing, whose two checksums random bytes pass once in 2**64.

    TensorFlow's own reader checks each record (`RandomRecordReader`, the one under
    `tf.data.TFRecordDataset`, which reads by offset); where it fails, the next offset whose 12
    framing bytes hold a valid length checksum (NumPy, over the whole rest of the file at once)
    and whose record TensorFlow then reads is where reading resumes.
    """
    reader = _pywrap_record_io.RandomRecordReader(path)
    size = tf.io.gfile.stat(path).length
    records: list[tuple[bytes, event_pb2.Event | None]] = []
    damaged: list[tuple[int, int]] = []
    torn_at = None
    offset = 0
    content: np.ndarray | None = None  # The file's bytes, read only to resynchronise.
    try:
        while offset < size:
            try:
                data, next_offset = reader.read(offset)
            except (tf.errors.DataLossError, IndexError):
                if content is None:
                    with tf.io.gfile.GFile(path, "rb") as file:
                        content = np.frombuffer(file.read(), np.uint8)
                resume = _next_record(reader, content, offset + 1)
                if resume is None:
                    torn_at = offset
                    break
                damaged.append((offset, resume))
                offset = resume
                continue
            try:
                event = event_pb2.Event.FromString(data)
            except Exception:  # Framed and checksummed, but not an event: kept as it is.
                event = None
            records.append((data, event))
            offset = next_offset
    finally:
        reader.close()
    return EventFileRecords(records, damaged, torn_at)


def _crc32c_table() -> np.ndarray:
    """CRC-32C's (Castagnoli's, TFRecord's) byte table, reflected."""
    table = np.zeros(256, np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table[byte] = crc
    return table


_CRC32C_TABLE = _crc32c_table()
_RESYNC_WINDOW = 1 << 20  # Offsets checked per NumPy pass: bounded memory for any file.


def _next_record(reader, content: np.ndarray, start: int) -> int | None:
    """The first offset at or after `start` where an intact record begins, or None."""
    last = len(content) - 16  # A record is at least 16 bytes: framing around empty data.
    for window in range(start, last + 1, _RESYNC_WINDOW):
        offsets = np.arange(window, min(window + _RESYNC_WINDOW, last + 1))
        crc = np.full(len(offsets), 0xFFFFFFFF, np.uint32)
        for index in range(8):  # The masked CRC-32C of the 8 length bytes at every offset.
            crc = _CRC32C_TABLE[(crc ^ content[offsets + index]) & 0xFF] ^ (crc >> 8)
        crc ^= np.uint32(0xFFFFFFFF)
        masked = ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)
        stored = np.zeros(len(offsets), np.uint32)
        for index in range(4):
            stored |= content[offsets + 8 + index].astype(np.uint32) << np.uint32(8 * index)
        for candidate in offsets[masked == stored]:
            try:
                reader.read(int(candidate))
            except (tf.errors.DataLossError, IndexError):
                continue
            return int(candidate)
    return None


def largest_step(path: str) -> int:
    """The largest step of the points in event file `path`, -1 if it has none (only its header).

    Reads what it can: past a damaged record, and up to a torn last record (a kill mid-write).
    """
    steps = [
        event.step
        for _, event in read_records(path).records
        # Points only: not the version header, nor the restart markers (write_restart_markers).
        if event is not None
        and not event.HasField("file_version")
        and not event.HasField("session_log")
    ]
    return max(steps, default=-1)


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
            `common.loop.training_run`); None trims every event file of `logdir`.

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
