"""The record a logdir keeps of what this code wrote in it: the proof a run needs to rewrite a file.

A restart trims its predecessor's points after the restored checkpoint, which rewrites event files.
A run may rewrite (or remove) only files it can prove its own, and the proof is this record,
`<logdir>/.training_runs.json`, which the chief writes *before* it writes anything else:

    {"format": 1,
     "runs": [{"host": "vm", "pid": 3815, "started": 1795633762}, ...],
     "event_files": ["train/events.out.tfevents.1795633764.vm.3815.0.v2", ...],
     "saving": 4000, "last_saved": 3000}

- `runs`: every run that wrote here, by host, process id and start time (whole seconds).
  TensorFlow stamps exactly these into every event file name it creates
  (`events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2`), so a file named with a recorded host and
  pid, at or after that run's start, is that run's: this covers the files a run creates between two
  updates of the record (the HParams file at the logdir's root, say) and a kill right after.
- `event_files`: the files known to be this logdir's, by name relative to the logdir: the writers'
  files are added the moment they are created, and every file matched by `runs` at each update.
- `saving`: the step of a checkpoint save under way (set before the save, cleared after), so a
  save killed midway leaves files (`ckpt-N_temp/`, a half `ckpt-N.*`) that are provably leftovers.
- `last_saved`: the step of the last checkpoint a run here saved, or null: a logdir whose runs
  saved checkpoints but whose checkpoints are gone does not add up, and is not started over.

Anything else in the logdir (another program's event files, an older version's, files copied in)
is never rewritten or removed. The record is replaced atomically (a temporary file, renamed), and
it goes through `tf.io.gfile`, so a `gs://` logdir keeps one too. On a multi-worker cluster only
the chief, which owns the logdir, reads and writes it.
"""

import dataclasses
import json
import os
import re
import socket
import time
from collections.abc import Callable

import tensorflow as tf

from common import errors
from common.errors import UserError

RECORD_FILE_NAME = ".training_runs.json"
FORMAT = 1
# events.out.tfevents.<seconds>.<host>.<pid>.<counter>.v2; a host name may hold dots.
_EVENT_FILE_NAME = re.compile(r"events\.out\.tfevents\.(\d+)\.(.+)\.(\d+)\.(\d+)\.v2")


class RecordError(UserError):
    """The logdir's record cannot be read: it is not this code's JSON."""


@dataclasses.dataclass
class RunRecord:
    """What the logdir's runs wrote: see the module docstring."""

    runs: list[dict[str, object]] = dataclasses.field(default_factory=list)
    event_files: list[str] = dataclasses.field(default_factory=list)
    saving: int | None = None
    last_saved: int | None = None

    def add_this_run(self) -> None:
        """Records the current process as a run of this logdir, started now."""
        self.runs.append(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": int(time.time())}
        )

    def is_ours(self, relative_path: str) -> bool:
        """True if the event file at `relative_path` (e.g. `train/events...`) was written here."""
        if relative_path in self.event_files:
            return True
        match = _EVENT_FILE_NAME.fullmatch(relative_path.rsplit("/", 1)[-1])
        if match is None:
            return False
        created, host, pid = int(match[1]), match[2], int(match[3])
        return any(
            run["host"] == host and run["pid"] == pid and created >= int(run["started"])
            for run in self.runs
        )

    def add_event_files(self, relative_paths: list[str]) -> None:
        """Adds event files (relative to the logdir) to the list, once each."""
        for path in relative_paths:
            if path not in self.event_files:
                self.event_files.append(path)


def record_path(logdir: str) -> str:
    """Where the record of `logdir` is kept."""
    return f"{logdir}/{RECORD_FILE_NAME}"


def temporary_path(path: str) -> str:
    """The hidden temporary file an atomic write of `path` goes through."""
    directory, name = path.rsplit("/", 1)
    return f"{directory}/.{name.lstrip('.')}.tmp"


def atomic_write(path: str, text: str) -> None:
    """Replaces `path` with `text` at once: written to a temporary file first, then renamed.

    Raises:
        tf.errors.OpError: if the write fails; the temporary file is removed, `path` is intact.
    """

    def write_text(temporary: str) -> None:
        with tf.io.gfile.GFile(temporary, "w") as file:
            file.write(text)

    replace_through(path, temporary_path(path), write_text)


def replace_through(path: str, temporary: str, write_to: Callable[[str], None]) -> None:
    """`write_to(temporary)`, then `temporary` renamed over `path`: a crash or a full disk at any
    point leaves `path` as it was, and no half-written temporary behind (it is removed)."""
    try:
        write_to(temporary)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
        raise


def read(logdir: str) -> RunRecord | None:
    """The record of `logdir`, or None if it has none (a new logdir, or an older version's).

    Raises:
        RecordError: if the file is there but is not a record this code wrote.
    """
    path = record_path(logdir)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            content = json.loads(file.read().decode("utf-8"))
        if not isinstance(content, dict) or content.get("format") != FORMAT:
            raise ValueError(f"not format {FORMAT}")
        record = RunRecord(
            runs=[
                {"host": str(run["host"]), "pid": int(run["pid"]), "started": int(run["started"])}
                for run in content["runs"]
            ],
            event_files=[str(name) for name in content["event_files"]],
            saving=None if content.get("saving") is None else int(content["saving"]),
            last_saved=None if content.get("last_saved") is None else int(content["last_saved"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, tf.errors.OpError) as error:
        raise RecordError(
            f"logdir {logdir}: {RECORD_FILE_NAME}, the record of which files this app's runs "
            f"wrote there, cannot be read ({errors.first_line(error, 120)}); without it no file "
            "there can be proven this app's: pass a new --logdir"
        ) from error
    return record


def write(logdir: str, record: RunRecord) -> None:
    """Replaces the record of `logdir` with `record`, atomically."""
    content = {"format": FORMAT, **dataclasses.asdict(record)}
    atomic_write(record_path(logdir), json.dumps(content, indent=1) + "\n")


def leftovers(logdir: str) -> list[str]:
    """The temporary file of an interrupted `write`, if one was left behind."""
    temporary = temporary_path(record_path(logdir))
    return [temporary] if tf.io.gfile.exists(temporary) else []
