"""A logdir shared with other programs and other apps: nothing of theirs is lost (issue 27).

Items 1, 2, 3 and 5 of the issue, each a state built here and the promise checked as a user sees
it: the exit code or the error, one line, every earlier file byte for byte, and what TensorBoard's
loader shows. 1: a run of another app or model is refused, even with no checkpoint to disagree.
2: a file a user put where the run writes (the Projector's) is never overwritten. 3: an event file
is the run's own by proof, not by the host and pid in its name. 5: a damaged record in the middle
of an event file costs nothing after it.
"""

import json
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time

import keras
import pytest
import tensorflow as tf

from apps.mnist_mlp import train as mnist_train
from common import summaries
from common.checkpoints import checkpoints
from common.logdir import event_files, prepare, run_record, trim
from common.loop import step_counter, training_run
from tests import tensorboard_events as events
from tests.app_cli import REPO_ROOT, assert_one_line_error, files_and_contents, run_app
from tests.regression_run import train


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> pathlib.Path:
    """A finished 8-step regression run: points at 2, 4, 6 and 8, its last checkpoint ckpt-8."""
    logdir = tmp_path_factory.mktemp("finished") / "run"
    train(logdir, num_steps=8)
    return logdir


@pytest.fixture
def logdir(finished_run, tmp_path) -> pathlib.Path:
    """A copy of the finished run, for a test to change."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def steps(logdir: pathlib.Path, run: str = "train", tag: str = "loss") -> list[int]:
    return [step for step, _ in events.scalars(events.load_run(logdir / run), tag)]


def event_file(logdir: pathlib.Path, run: str) -> pathlib.Path:
    (path,) = (logdir / run).glob("events.out.tfevents.*")
    return path


def read_record_json(logdir: pathlib.Path) -> dict:
    return json.loads((logdir / run_record.RECORD_FILE_NAME).read_text())


def write_record_json(logdir: pathlib.Path, content: dict) -> None:
    (logdir / run_record.RECORD_FILE_NAME).write_text(json.dumps(content))


def write_foreign_file(directory: pathlib.Path, name: str, steps: range) -> pathlib.Path:
    """An event file of another program, with a `loss` point at each step, under `name`."""
    elsewhere = directory / "elsewhere"
    writer = tf.summary.create_file_writer(str(elsewhere))
    for step in steps:
        summaries.write_scalars(writer, {"loss": float(step)}, step=step)
    writer.close()
    (written,) = elsewhere.glob("events.*")
    target = directory / name
    shutil.move(written, target)
    elsewhere.rmdir()
    return target


def tiny_run(logdir: pathlib.Path, units: int = 3, app: str | None = None):
    """A TrainingRun of a one-layer model (`units` wide), as an app's loop opens it."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(units, name="dense")])
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build(model.trainable_variables)
    global_step = step_counter.create_global_step()
    run = training_run.TrainingRun(
        str(logdir), global_step, 10, app=app, model=model, optimizer=optimizer
    )
    return run, global_step


# 1. Another app's or another model's run: refused, even with no checkpoint to disagree.


def test_another_app_on_a_run_killed_before_its_first_checkpoint_is_refused_touching_nothing(
    tmp_path,
):
    """The issue's reproduction: mnist_mlp killed -9 before any checkpoint, then
    regression_tape on its logdir. Before, that exited 0 and emptied 11 of mnist's tags."""
    logdir = tmp_path / "run"
    flags = (
        "--dataset=synthetic",
        "--batch_size=16",
        "--steps_per_loop=10",
        "--num_steps=100000",
        "--checkpoint_every_steps=100000",
        f"--logdir={logdir}",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.mnist_mlp", *flags],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = list((logdir / "train").glob("events.out.tfevents.*"))
            if files and event_files.largest_step(str(files[0])) >= 30:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not (logdir / "checkpoints").exists() or not list((logdir / "checkpoints").iterdir())
    mnist_steps = steps(logdir)
    assert mnist_steps and mnist_steps[-1] >= 30
    before = files_and_contents(logdir)

    result = run_app("regression_tape", f"--logdir={logdir}", "--num_steps=40")
    assert_one_line_error(result, 1, str(logdir), "apps.mnist_mlp", "apps.regression_tape")
    assert "holds a run of apps.mnist_mlp, not of apps.regression_tape" in result.stderr
    assert files_and_contents(logdir) == before
    assert steps(logdir) == mnist_steps  # What TensorBoard shows: every point of mnist's run.


def test_another_model_of_the_same_app_without_a_checkpoint_is_refused_touching_nothing(tmp_path):
    run, _ = tiny_run(tmp_path, units=3, app="apps.tiny")
    with run:
        run.restore()
        writers = run.open_writers()
        summaries.write_scalars(writers.train, {"loss": 1.0}, step=1)  # Then it stops: no save.
    assert read_record_json(tmp_path)["app"] == "apps.tiny"
    before = files_and_contents(tmp_path)
    other, _ = tiny_run(tmp_path, units=7, app="apps.tiny")
    with other, pytest.raises(checkpoints.CheckpointMismatchError) as raised:
        other.restore()
    assert str(raised.value) == (
        f"logdir {tmp_path} holds a run of another model (2 variables, 9 parameters), which does "
        "not fit this model (2 variables, 21 parameters): its points would be erased; pass a new "
        "--logdir"
    )
    assert files_and_contents(tmp_path) == before
    assert steps(tmp_path) == [1]

    again, _ = tiny_run(tmp_path, units=3, app="apps.tiny")  # The same model starts over.
    with again:
        assert again.restore() == 0
        again.open_writers()
    assert events.load_run(tmp_path / "train").Tags()["tensors"] == []


def test_an_older_record_without_app_or_model_resumes_from_a_checkpoint_and_records_them(logdir):
    content = read_record_json(logdir)
    for field in ("app", "model", "event_file_proofs", "written_files"):
        del content[field]
    for run in content["runs"]:
        run.pop("ended", None)
    write_record_json(logdir, content)  # As an older version left it.
    assert train(logdir, num_steps=12)["resumed_from_step"] == 8  # The checkpoint proves it.
    assert steps(logdir) == [2, 4, 6, 8, 10, 12]
    content = read_record_json(logdir)
    assert content["app"] == "apps.regression_tape"
    assert content["model"]["variables"] == 6
    assert set(content["event_file_proofs"]) == set(content["event_files"])


def test_an_older_record_without_a_checkpoint_is_refused_rather_than_emptied(tmp_path):
    run, _ = tiny_run(tmp_path)
    with run:
        run.restore()
        writers = run.open_writers()
        summaries.write_scalars(writers.train, {"loss": 1.0}, step=1)
    content = read_record_json(tmp_path)
    content["app"] = content["model"] = None
    content["event_file_proofs"] = {}
    write_record_json(tmp_path, content)
    before = files_and_contents(tmp_path)
    again, _ = tiny_run(tmp_path)
    with again, pytest.raises(prepare.LogdirStateError) as raised:
        again.restore()
    message = str(raised.value)
    assert message.startswith(f"logdir {tmp_path}: its record, from an older version, does not")
    assert "which holds points, and no checkpoint proves them this model's" in message
    assert "\n" not in message and files_and_contents(tmp_path) == before


# 2. A file a user put where the run writes is never overwritten.


def test_the_users_projector_files_in_a_fresh_logdir_are_never_overwritten(tmp_path):
    logdir = tmp_path / "run"
    (logdir / "eval" / "projector").mkdir(parents=True)
    (logdir / "eval" / "projector_config.pbtxt").write_text("# my own projector config\n")
    (logdir / "eval" / "projector" / "metadata.tsv").write_text("my labels\n")
    users = files_and_contents(logdir)
    result = run_app(
        "mnist_mlp",
        "--dataset=synthetic",
        "--num_steps=4",
        "--batch_size=8",
        "--steps_per_loop=2",
        "--eval_every_steps=2",
        f"--logdir={logdir}",
    )
    assert_one_line_error(result, 1, str(logdir), "eval/projector/metadata.tsv")
    assert "is already there, and no run of this app recorded writing it" in result.stderr
    assert "move it away, or pass a new --logdir. No checkpoint had been saved yet." in (
        result.stderr
    )
    for path, data in users.items():
        assert path.read_bytes() == data
    # Nothing of the Projector's was written beside them either: all its names are claimed first.
    assert sorted(p.name for p in (logdir / "eval" / "projector").iterdir()) == ["metadata.tsv"]


def test_a_resumed_run_rewrites_the_projector_files_it_recorded(tmp_path):
    config = mnist_train.Config(
        num_steps=2, batch_size=8, steps_per_loop=2, eval_every_steps=2, dataset="synthetic"
    )
    mnist_train.train_and_evaluate(config, str(tmp_path))
    written = read_record_json(tmp_path)["written_files"]
    assert "eval/projector_config.pbtxt" in written and "eval/projector/metadata.tsv" in written
    _, first, labels = events.projector_embedding(tmp_path / "eval")
    longer = mnist_train.Config(**{**config.__dict__, "num_steps": 4})
    assert mnist_train.train_and_evaluate(longer, str(tmp_path))["resumed_from_step"] == 2
    _, tensor, labels_again = events.projector_embedding(tmp_path / "eval")  # As the tab reads.
    assert tensor.shape == first.shape and (tensor != first).any()  # Step 4's embeddings.
    assert labels_again == labels


def test_a_claim_refuses_only_inside_a_live_runs_logdir(tmp_path):
    """A direct use of the Projector's writer (no run, no record) replaces its files as before;
    inside a live run's logdir a claim of an unlisted file that is there records nothing, one of
    absent files records them all, and a recorded file may be written again."""
    path = tmp_path / "eval" / "projector_config.pbtxt"
    other = tmp_path / "eval" / "metadata.tsv"
    path.parent.mkdir()
    path.write_text("old\n")
    run_record.claim_files([str(path)])  # No run here: nothing to prove to, nothing checked.
    record = run_record.RunRecord()
    run_record.set_live(str(tmp_path), record)
    try:
        with pytest.raises(run_record.UnprovenFileError, match=r"eval/projector_config\.pbtxt is"):
            run_record.claim_files([str(other), str(path)])
        assert record.written_files == []  # The absent one was not claimed either.
        path.unlink()
        run_record.claim_files([str(other), str(path)])  # Absent: recorded, then written.
        assert record.written_files == ["eval/metadata.tsv", "eval/projector_config.pbtxt"]
        assert read_record_json(tmp_path)["written_files"] == record.written_files
        path.write_text("the run's\n")
        run_record.claim_files([str(path)])  # Recorded: the run may rewrite it.
    finally:
        run_record.set_live(str(tmp_path), None)


# 3. An event file is the run's own by proof, not by the host and pid in its name.


def test_a_foreign_file_named_with_a_recorded_host_and_pid_is_never_trimmed(logdir):
    """The issue's reproduction: a file named like the finished run's, steps 10..1000."""
    recorded = read_record_json(logdir)["runs"][0]
    name = f"events.out.tfevents.{int(time.time())}.{recorded['host']}.{recorded['pid']}.9.v2"
    foreign = write_foreign_file(logdir / "train", name, range(10, 1001, 10))
    before = files_and_contents(logdir)
    with pytest.raises(prepare.LogdirStateError) as raised:
        train(logdir, num_steps=12)
    assert str(raised.value) == (
        f"logdir {logdir}: train/{name} holds points after step 8, the checkpoint to resume "
        "from, but no run of this app recorded writing it (an older version, or another "
        "program), so it cannot be trimmed; move it away, or pass a new --logdir"
    )
    assert files_and_contents(logdir) == before
    assert len(events.scalars(events.load_run(logdir / "train"), "loss")) == 4 + 100
    assert foreign.read_bytes() == before[foreign]


def test_a_recorded_file_replaced_under_its_name_is_not_the_runs_any_more(logdir, tmp_path):
    own = event_file(logdir, "eval")
    replacement = write_foreign_file(tmp_path, "replacement", range(1, 101))
    shutil.move(replacement, own)  # Another file, under the recorded name.
    before = files_and_contents(logdir)
    with pytest.raises(prepare.LogdirStateError, match="no run of this app recorded"):
        train(logdir, num_steps=12)
    assert files_and_contents(logdir) == before


def make_killed_run_with_an_unlisted_hparams_file(logdir: pathlib.Path) -> str:
    """A run that wrote its HParams file and a point, then was killed before listing the HParams
    file (nor marking its end): the record as such a kill leaves it. Returns that file's name."""
    run, _ = tiny_run(logdir)
    with run:
        run.restore()
        writers = run.open_writers()
        summaries.write_scalars(writers.train, {"loss": 1.0}, step=1)
        summaries.write_hparams(str(logdir), {"units": 3})
    (hparams,) = logdir.glob("events.out.tfevents.*")
    content = read_record_json(logdir)
    content["event_files"].remove(hparams.name)
    del content["event_file_proofs"][hparams.name]
    del content["runs"][-1]["ended"]
    write_record_json(logdir, content)
    return hparams.name


def test_the_hparams_file_is_listed_with_its_proof_at_the_first_boundary(tmp_path):
    """Files made after the writers are listed at the first boundary, not at the first save:
    the window in which only a name vouches for them closes after one loop."""
    run, _ = tiny_run(tmp_path)
    with run:
        run.restore()
        run.open_writers()
        summaries.write_hparams(str(tmp_path), {"units": 3})
        (hparams,) = tmp_path.glob("events.out.tfevents.*")
        assert hparams.name not in read_record_json(tmp_path)["event_files"]
        run.end_of_loop(2)  # No checkpoint due (every 10 steps).
        content = read_record_json(tmp_path)
        assert hparams.name in content["event_files"]
        assert content["event_file_proofs"][hparams.name] == run_record.file_proof(str(hparams))
        assert "ended" not in content["runs"][-1]
    assert read_record_json(tmp_path)["runs"][-1]["ended"] is True


def test_an_unlisted_file_of_a_killed_run_is_adopted_while_it_can_be_proven(tmp_path):
    make_killed_run_with_an_unlisted_hparams_file(tmp_path)
    again, _ = tiny_run(tmp_path)
    with again:
        assert again.restore() == 0  # Starts over: its own files are emptied, HParams too.
        again.open_writers()
    assert events.load_run(tmp_path / "train").Tags()["tensors"] == []
    assert events.load_run(tmp_path).Tags()["tensors"] == []


@pytest.mark.parametrize("why", ["the run ended", "its header is of another second"])
def test_an_unlisted_file_named_like_a_runs_is_not_adopted_without_proof(tmp_path, why):
    name = make_killed_run_with_an_unlisted_hparams_file(tmp_path)
    if why == "the run ended":
        content = read_record_json(tmp_path)
        content["runs"][-1]["ended"] = True
        write_record_json(tmp_path, content)
    else:  # The same name on a file whose version header says it was created at another time.
        created = int(name.split(".")[3])
        hparams = tmp_path / name
        data = hparams.read_bytes()
        (length,) = struct.unpack("<Q", data[:8])
        header = data[12 : 12 + length]
        assert struct.pack("<d", float(created)) in header
        forged = header.replace(struct.pack("<d", float(created)), struct.pack("<d", created - 9))
        shutil.copy(hparams, tmp_path / "original")
        with tf.io.TFRecordWriter(str(hparams)) as writer:
            writer.write(forged)
            for record in event_files.read_records(str(tmp_path / "original")).records[1:]:
                writer.write(record[0])
        (tmp_path / "original").unlink()
    before = files_and_contents(tmp_path)
    again, _ = tiny_run(tmp_path)
    with again, pytest.raises(prepare.LogdirStateError) as raised:
        again.restore()
    assert f"already holds event files that no run of this app recorded writing ({name}" in str(
        raised.value
    )
    assert files_and_contents(tmp_path) == before


# 5. A damaged record in the middle of an event file costs nothing after it.


def record_offsets(path: pathlib.Path) -> list[tuple[int, int]]:
    """(start, data length) of every record of an intact TFRecord file."""
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offsets.append((offset, length))
        offset += 12 + length + 4
    return offsets


def loss_record(path: pathlib.Path, step: int) -> tuple[int, int]:
    """(start, data length) of the record holding `loss` at `step`."""
    for (offset, length), (_, event) in zip(
        record_offsets(path), event_files.read_records(str(path)).records, strict=True
    ):
        if event.step == step and any(value.tag == "loss" for value in event.summary.value):
            return offset, length
    raise AssertionError(f"no loss at step {step}")


def flip_bit(path: pathlib.Path, byte: int) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_mid_file_on_resume_keeps_every_record_and_says_so(logdir, capsys):
    """The issue's reproduction: a bit flipped in the step-4 train/loss record of a finished
    run, then a resume. Before, the file was rewritten without everything after that record."""
    train_file = event_file(logdir, "train")
    intact = event_files.read_records(str(train_file)).records
    offset, length = loss_record(train_file, 4)
    damaged_record = train_file.read_bytes()[offset + 12 : offset + 12 + length]
    flip_bit(train_file, offset + 12 + length - 2)  # In the data: its checksum fails.
    assert steps(logdir) == [2]  # TensorBoard's loader stops at the damage.
    capsys.readouterr()
    assert train(logdir, num_steps=12)["resumed_from_step"] == 8
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        f"warning: {train_file}: bytes {offset}-{offset + 12 + length + 3} hold no intact record "
        "(damaged), where TensorFlow's reader, and TensorBoard's, stop: rewritten without them, "
        f"keeping its {len(intact) - 1} intact records up to step 8"
    ]
    # Every record but the damaged one, byte for byte, in order; and TensorBoard shows them.
    kept = [record for record, _ in event_files.read_records(str(train_file)).records]
    assert kept == [record for record, _ in intact if record != damaged_record]
    assert steps(logdir) == [2, 6, 8, 10, 12]


@pytest.mark.parametrize("where", ["data", "length"])
def test_the_trim_keeps_the_intact_records_past_a_damaged_one(tmp_path, capsys, where):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    for step in range(1, 7):
        summaries.write_scalars(writer, {"loss": float(step)}, step=step)
    writer.close()
    path = event_file(tmp_path, "train")
    offset, length = loss_record(path, 2)
    flip_bit(path, offset + 12 + length - 2 if where == "data" else offset + 1)
    assert event_files.largest_step(str(path)) == 6  # Read past the damage.
    assert trim.trim_events_after(str(tmp_path), last_step=4) == 2
    assert steps(tmp_path) == [1, 3, 4]
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning == (
        f"warning: {path}: bytes {offset}-{offset + 12 + length + 3} hold no intact record "
        "(damaged), where TensorFlow's reader, and TensorBoard's, stop: rewritten without them, "
        "keeping its 4 intact records up to step 4"
    )


def test_a_torn_last_record_is_still_dropped_without_a_word(tmp_path, capsys):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    for step in (1, 2, 3):
        summaries.write_scalars(writer, {"loss": float(step)}, step=step)
    writer.close()
    path = event_file(tmp_path, "train")
    path.write_bytes(path.read_bytes()[:-5])  # A kill -9 in the middle of writing step 3.
    trim.trim_events_after(str(tmp_path), last_step=10)
    assert steps(tmp_path) == [1, 2] and capsys.readouterr().err == ""
