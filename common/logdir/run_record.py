"""The record a logdir keeps of what this code wrote in it: the proof a run needs to rewrite a file.

A restart trims its predecessor's points after the restored checkpoint, which rewrites event files.
A run may rewrite (or remove) only files it can prove its own, and the proof is this record,
`<logdir>/.training_runs.json`, which the chief writes *before* it writes anything else:

    {"format": 1,
     "runs": [{"host": "vm", "pid": 3815, "started": 1795633762}, ...],
     "event_files": ["train/events.out.tfevents.1795633764.vm.3815.0.v2", ...],
     "saving": 4000, "last_saved": 3000,
     "app": "apps.mnist_mlp", "model": {"fingerprint": "9f2c...", "variables": 4, ...},
     "event_file_proofs": {"train/events...": {"bytes": 256, "sha256": "..."}, ...},
     "written_files": ["eval/projector_config.pbtxt", ...]}

- `runs`: every run that wrote here, by host, process id and start time (whole seconds), and
  `"ended": true` once it ended (any way but a kill) with every event file it created listed.
  TensorFlow stamps host and pid into every event file name it creates
  (`events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2`), and the file's first record (its
  version header) holds the same second. A name is no proof (process ids are reused, in
  containers all the time), so a file the list does not name is adopted as a run's only while
  that run can still have created it unlisted: a run that did not end (killed, so it could not
  list its last files), on its host and pid, created at or after its start and before the next
  run's, with a version header of that second. That covers the files a run creates between two
  updates of the record (the HParams file at the logdir's root, until the first boundary) and a
  kill right after; a file named like an ended run's is another program's. What this cannot
  tell apart: a program given a killed run's pid on its host that writes an event file here
  before the next run starts (the window a name alone left open for ever is now that one).
- `event_files`: the files known to be this logdir's, by name relative to the logdir: the writers'
  files are added the moment they are created, and every file adopted as above at each update.
- `event_file_proofs`: for each listed file, the length and SHA-256 of its first bytes (up to
  `PROOF_BYTES`: the version header and the first events, whose wall times are microseconds) as
  this code wrote them. A listed file is this logdir's only while its first bytes are still those
  (event files only grow; the trim re-proves what it rewrote): a file put in place of one, under
  its name, is not. A name listed with no proof (an older version's record) counts as listed.
- `app`, `model`: which app (its config's module, `apps.mnist_mlp`) and which model (a
  fingerprint of every model's variables: their checkpoint paths, shapes and dtypes) wrote here.
  A run of another app or model is refused before it touches anything: the trim would empty the
  first run's files (a run killed before its first checkpoint leaves no checkpoint to disagree).
  An older version's record has neither: with a checkpoint that restores, the run adopts it and
  records its own; without one, its event files holding points cannot be proven this app's, and
  the run is refused rather than erase them.
- `written_files`: the other files runs wrote here (the Projector's, relative to the logdir),
  claimed with `claim_files` before the first write: a run writes no file that exists unless
  this list names it, so a user's file of the same name is never overwritten.
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
import hashlib
import json
import math
import os
import posixpath
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import keras
import tensorflow as tf
from tensorboard.compat.proto import event_pb2

from common import errors
from common.errors import UserError

RECORD_FILE_NAME = ".training_runs.json"
FORMAT = 1
# events.out.tfevents.<seconds>.<host>.<pid>.<counter>.v2; a host name may hold dots.
_EVENT_FILE_NAME = re.compile(r"events\.out\.tfevents\.(\d+)\.(.+)\.(\d+)\.(\d+)\.v2")


# How much of an event file's start its proof covers: the version header (78 bytes, whole
# seconds) and the first events after it (wall times in microseconds), which never change.
PROOF_BYTES = 256
# One lock for every change and write of any record, and the records of the runs live in this
# process, for `claim_files`: the Projector's files are claimed on the eval summaries' thread,
# beside the loop's own updates of the same record.
_lock = threading.RLock()
_live_records: dict[str, "RunRecord"] = {}


class RecordError(UserError):
    """The logdir's record cannot be read: it is not this code's JSON."""


class UnprovenFileError(UserError):
    """A run was about to overwrite a file that exists and that no run here recorded writing."""


@dataclasses.dataclass
class RunRecord:
    """What the logdir's runs wrote: see the module docstring."""

    runs: list[dict[str, object]] = dataclasses.field(default_factory=list)
    event_files: list[str] = dataclasses.field(default_factory=list)
    saving: int | None = None
    last_saved: int | None = None
    # Optional: an older version's record has none of these (see the module docstring).
    app: str | None = None
    model: dict[str, object] | None = None
    event_file_proofs: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)
    written_files: list[str] = dataclasses.field(default_factory=list)

    def add_this_run(self) -> None:
        """Records the current process as a run of this logdir, started now."""
        self.runs.append(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": int(time.time())}
        )

    def is_ours(self, relative_path: str, path: str) -> bool:
        """True if the event file `relative_path` (e.g. `train/events...`), at `path`, is provably
        this logdir's: listed with its first bytes unchanged, or adoptable (module docstring)."""
        if relative_path in self.event_file_proofs:
            return proof_holds(path, self.event_file_proofs[relative_path])
        if relative_path in self.event_files:
            return True  # Listed by an older version, which kept no proof.
        match = _EVENT_FILE_NAME.fullmatch(relative_path.rsplit("/", 1)[-1])
        if match is None:
            return False
        created, host, pid = int(match[1]), match[2], int(match[3])
        starts = [int(run["started"]) for run in self.runs]
        could_have_created = any(
            run["host"] == host
            and run["pid"] == pid
            and not run.get("ended")
            and created >= starts[index]
            and all(created <= later for later in starts[index + 1 :])
            for index, run in enumerate(self.runs)
        )
        return could_have_created and header_second(path) == created

    def add_event_files(self, relative_paths: list[str]) -> None:
        """Adds event files (relative to the logdir) to the list, once each."""
        with _lock:  # `write` may be serializing this record on another thread (claim_files).
            for path in relative_paths:
                if path not in self.event_files:
                    self.event_files.append(path)

    def prove(self, files: Mapping[str, str]) -> None:
        """Lists `{relative path: path}` event files, just proven this logdir's (created by this
        run's writers, adopted, or rewritten by its trim), with the proof of their first bytes."""
        proofs = {relative_path: file_proof(path) for relative_path, path in files.items()}
        with _lock:
            self.add_event_files(list(files))
            self.event_file_proofs.update(proofs)

    def extend_proofs(self, files: Mapping[str, str]) -> None:
        """Lengthens the proofs that cover less than `PROOF_BYTES` of files that have grown
        since, while they still hold (a header-only file's proof is its first second only)."""
        for relative_path, path in files.items():
            proof = self.event_file_proofs.get(relative_path)
            short = proof is not None and int(proof["bytes"]) < PROOF_BYTES
            if short and proof_holds(path, proof):
                longer = file_proof(path)
                with _lock:
                    self.event_file_proofs[relative_path] = longer

    def mark_ended(self) -> None:
        """Records that this process's run ended: every event file it created is listed."""
        for run in reversed(self.runs):
            if run["host"] == socket.gethostname() and run["pid"] == os.getpid():
                run["ended"] = True
                return


def file_proof(path: str) -> dict[str, object]:
    """The proof of event file `path` as it is now: the length and SHA-256 of its first bytes."""
    with tf.io.gfile.GFile(path, "rb") as file:
        start = file.read(PROOF_BYTES)
    return {"bytes": len(start), "sha256": hashlib.sha256(start).hexdigest()}


def proof_holds(path: str, proof: Mapping[str, object]) -> bool:
    """True if event file `path` still starts with the bytes `proof` (from `file_proof`) covers."""
    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            start = file.read(int(proof["bytes"]))
    except (tf.errors.OpError, OSError):
        return False
    return (
        len(start) == int(proof["bytes"]) and hashlib.sha256(start).hexdigest() == proof["sha256"]
    )


def header_second(path: str) -> int | None:
    """The wall time (a whole second) of event file `path`'s version header, its first record,
    or None if it does not start with one: TensorFlow's writer stamps it with the second its name
    holds. Only the framing's length is trusted here; the event must parse as a version header."""
    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            start = file.read(PROOF_BYTES)
        (length,) = struct.unpack("<Q", start[:8])
        event = event_pb2.Event.FromString(start[12 : 12 + length])
    except Exception:  # Too short, not an event, unreadable: no header to speak of.
        return None
    if not event.HasField("file_version"):
        return None
    return int(event.wall_time)


def app_name(config: object) -> str:
    """The app a run's config belongs to, as the record keeps it: its class's module without a
    last `.config` (`apps.mnist_mlp.config.Config` -> `apps.mnist_mlp`)."""
    return type(config).__module__.removesuffix(".config")


def model_identity(models: Mapping[str, tf.Module]) -> dict[str, object] | None:
    """Which model a run trains, as the record keeps it: a fingerprint of the variables the
    checkpoint would save for `{name: model}` (their paths in the checkpoint's object graph,
    shapes and dtypes), with their count and size for messages; None without any model.

    Keras's own variable paths (`dense_3/kernel`) are not used: they number unnamed layers by how
    many were built before in the process. The checkpoint's paths (`model/_operations/1/_kernel`)
    depend on the model's structure alone, and are what a restore matches by. Milliseconds.
    """
    if not models:
        return None
    root = tf.train.Checkpoint(**models)
    view = tf.train.TrackableView(root)
    listing = []
    parameters = 0
    seen = set()
    queue = [("", root)]
    while queue:  # Breadth first, children by name: the same order for the same structure.
        prefix, trackable = queue.pop(0)
        for name, child in sorted(view.children(trackable).items()):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}{name}"
            if isinstance(child, tf.Variable | keras.Variable):
                shape = [int(size) for size in child.shape]
                listing.append(f"{path} {shape} {tf.as_dtype(child.dtype).name}")
                parameters += math.prod(shape)
            else:
                queue.append((f"{path}/", child))
    return {
        "fingerprint": hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16],
        "variables": len(listing),
        "parameters": parameters,
    }


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
                | ({"ended": True} if run.get("ended") is True else {})
                for run in content["runs"]
            ],
            event_files=[str(name) for name in content["event_files"]],
            saving=None if content.get("saving") is None else int(content["saving"]),
            last_saved=None if content.get("last_saved") is None else int(content["last_saved"]),
            app=None if content.get("app") is None else str(content["app"]),
            model=None if content.get("model") is None else _model(content["model"]),
            event_file_proofs={
                str(name): {"bytes": int(proof["bytes"]), "sha256": str(proof["sha256"])}
                for name, proof in content.get("event_file_proofs", {}).items()
            },
            written_files=[str(name) for name in content.get("written_files", [])],
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, tf.errors.OpError) as error:
        raise RecordError(
            f"logdir {logdir}: {RECORD_FILE_NAME}, the record of which files this app's runs "
            f"wrote there, cannot be read ({errors.first_line(error, 120)}); without it no file "
            "there can be proven this app's: pass a new --logdir"
        ) from error
    return record


def _model(content: Mapping[str, object]) -> dict[str, object]:
    return {
        "fingerprint": str(content["fingerprint"]),
        "variables": int(content["variables"]),
        "parameters": int(content["parameters"]),
    }


def describe_model(model: Mapping[str, object]) -> str:
    """`4 variables, 50,890 parameters`: a model's identity as messages show it."""
    return f"{model['variables']} variables, {model['parameters']:,} parameters"


def write(logdir: str, record: RunRecord) -> None:
    """Replaces the record of `logdir` with `record`, atomically."""
    with _lock:
        content = {"format": FORMAT, **dataclasses.asdict(record)}
        atomic_write(record_path(logdir), json.dumps(content, indent=1) + "\n")


def set_live(logdir: str, record: RunRecord | None) -> None:
    """Makes `record` the one `claim_files` updates for files under `logdir` (None: no more)."""
    with _lock:
        if record is None:
            _live_records.pop(logdir, None)
        else:
            _live_records[logdir] = record


def claim_files(paths: Sequence[str]) -> None:
    """Call before writing `paths` (not event files): if a run of this process owns the logdir
    they are in, the writes are allowed only if each file either does not exist yet (it is then
    recorded as written here, before the write, so a later run may rewrite it) or is named by
    the record already. All are checked before any is recorded.

    Outside any run's logdir (a worker's temporary directory, a direct use of the writer), there
    is no record to prove anything to, and nothing is checked.

    Raises:
        UnprovenFileError: a file exists and no run here recorded writing it; nothing is recorded
            (and the caller writes nothing).
    """
    with _lock:
        claimed: dict[str, list[str]] = {}
        for path in paths:
            owners = [name for name in _live_records if path.startswith(name.rstrip("/") + "/")]
            if not owners:
                continue
            logdir = owners[0]
            relative = posixpath.normpath(path[len(logdir.rstrip("/")) :].lstrip("/"))
            if relative in _live_records[logdir].written_files:
                continue
            if tf.io.gfile.exists(path):
                raise UnprovenFileError(
                    f"logdir {logdir}: {relative} is already there, and no run of this app "
                    "recorded writing it (a file of yours?), so it is not overwritten; move it "
                    "away, or pass a new --logdir"
                )
            claimed.setdefault(logdir, []).append(relative)
        for logdir, relatives in claimed.items():
            record = _live_records[logdir]
            record.written_files.extend(relatives)
            write(logdir, record)


def leftovers(logdir: str) -> list[str]:
    """The temporary file of an interrupted `write`, if one was left behind."""
    temporary = temporary_path(record_path(logdir))
    return [temporary] if tf.io.gfile.exists(temporary) else []
