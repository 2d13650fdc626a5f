"""A run's event files: where they are, and what they hold, read record by record past any damage.

Paths go through `tf.io.gfile`, so a logdir may also be a cloud bucket (`gs://...`) on a cluster.
"""

import dataclasses

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorflow.python.lib.io import _pywrap_record_io  # TF's reader, with offsets and CRCs.

from common.logdir import paths
from common.logdir.prepare import LogdirError

EVENT_FILE_PREFIX = "events.out.tfevents."
# What earlier versions of the trim named their temporary file: `<event file>.trimmed`. TensorBoard
# read a leftover one as a second copy of the run's points.
OLD_TRIM_SUFFIX = ".trimmed"


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
