"""A run never damages what it cannot prove it wrote, and odd states fail in one line (issue 14).

Each test builds one state an adversarial run found (a logdir whose files do not add up, a trim's
leftover, a corrupt checkpoint, NaN weights, a full disk, a huge batch, ...) and checks the promise:
the exit code or error, exactly one line, and earlier files byte for byte as they were. Most run
in-process on a tiny regression run; subprocesses only where the exit code and stderr of a real
process are the point.
"""

import errno
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from apps.vae_timeseries import data as vae_data
from common import cli, errors, summaries
from common.checkpoints import checkpoints
from common.logdir import prepare, run_record, trim
from common.loop import input_pipeline, step_counter, training_run
from tests import tensorboard_events as events
from tests.app_cli import REPO_ROOT, assert_one_line_error, files_and_contents, run_app
from tests.regression_run import train
from tests.sigint import children_start_with_sigint

NO_SPACE = "/x/train/events.out.tfevents.1.h.1.0.v2; No space left on device"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> pathlib.Path:
    """A finished 4-step run: points at 2 and 4, checkpoints ckpt-2 and ckpt-4."""
    logdir = tmp_path_factory.mktemp("finished") / "run"
    train(logdir, num_steps=4)
    return logdir


@pytest.fixture
def logdir(finished_run, tmp_path) -> pathlib.Path:
    """A copy of the finished run, for a test to damage."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def points(logdir: pathlib.Path, run: str = "train", tag: str = "loss") -> list[tuple[int, float]]:
    return events.scalars(events.load_run(logdir / run), tag)


def steps(logdir: pathlib.Path, run: str = "train") -> list[int]:
    return [step for step, _ in points(logdir, run)]


def without_record(files: dict[pathlib.Path, bytes]) -> dict[pathlib.Path, bytes]:
    """Event files and checkpoints, leaving out the record a run updates before its first write."""
    return {path: data for path, data in files.items() if path.name != run_record.RECORD_FILE_NAME}


def foreign_copy(path: pathlib.Path) -> pathlib.Path:
    """A copy of an event file under a name another program (host `elsewhere`) would give it."""
    copy = path.parent / "events.out.tfevents.1700000000.elsewhere.4242.0.v2"
    shutil.copy(path, copy)
    return copy


def event_file(logdir: pathlib.Path, run: str) -> pathlib.Path:
    (path,) = (logdir / run).glob("events.out.tfevents.*")
    return path


def corrupt_newest_data(logdir: pathlib.Path) -> None:
    (data,) = (logdir / "checkpoints").glob("ckpt-4.data-*")
    os.truncate(data, data.stat().st_size // 2)


# 1. Data loss: the trim rewrites only what the logdir's record proves this app's runs wrote.


def test_a_missing_list_of_checkpoints_resumes_from_the_newest_and_keeps_every_point(
    logdir, capsys
):
    before = points(logdir)
    (logdir / "checkpoints" / "checkpoint").unlink()  # The reproduction.
    result = train(logdir)
    assert result["resumed_from_step"] == 4
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert (
        len(warning) == 1
        and "checkpoints/checkpoint, the list of checkpoints, is missing" in (warning[0])
    )
    assert points(logdir)[:2] == before and steps(logdir) == [2, 4, 6, 8]


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        # Another program's logdir, or an older version's with its checkpoints removed.
        (
            lambda logdir: (
                (logdir / run_record.RECORD_FILE_NAME).unlink(),
                shutil.rmtree(logdir / "checkpoints"),
            ),
            "already holds event files that no run of this app recorded writing",
        ),
        (
            lambda logdir: shutil.rmtree(logdir / "checkpoints"),
            "its runs saved checkpoints (the last at step 4), but",
        ),
        (
            lambda logdir: (
                shutil.rmtree(logdir / "checkpoints"),
                (logdir / "checkpoints").write_text("notes"),
            ),
            "checkpoints is a file, not the directory of checkpoints; move",
        ),
        (
            lambda logdir: (
                (logdir / "checkpoints" / "checkpoint").unlink(),
                (logdir / run_record.RECORD_FILE_NAME).unlink(),
            ),
            "holds checkpoint files (ckpt-2.data-00000-of-00001, ckpt-2.index and 2 more), but",
        ),
        (
            lambda logdir: (logdir / run_record.RECORD_FILE_NAME).write_bytes(b"\xff{"),
            f"{run_record.RECORD_FILE_NAME}, the record of which files this app's runs wrote "
            "there, cannot be read",
        ),
    ],
    ids=[
        "foreign-files",
        "checkpoints-gone",
        "checkpoints-is-a-file",
        "unlisted-unrecorded",
        "record-unreadable",
    ],
)
def test_a_logdir_that_does_not_add_up_is_refused_in_one_line_touching_nothing(
    logdir, damage, complaint
):
    damage(logdir)
    before = files_and_contents(logdir)
    with pytest.raises(errors.UserError) as raised:
        train(logdir)
    assert complaint in str(raised.value) and "\n" not in str(raised.value)
    assert "pass a new --logdir" in str(raised.value)
    assert files_and_contents(logdir) == before


def test_an_event_file_no_run_recorded_is_never_rewritten(logdir, tmp_path):
    foreign = foreign_copy(event_file(logdir, "train"))  # Points at 2 and 4, like the run's own.
    foreign_bytes = foreign.read_bytes()
    train(logdir)  # Resumes from 4: the foreign file has nothing after it, and is left alone.
    assert foreign.read_bytes() == foreign_bytes

    # One with a point after the checkpoint cannot be trimmed: refused, nothing touched.
    writer = tf.summary.create_file_writer(str(tmp_path / "elsewhere"))
    summaries.write_scalars(writer, {"loss": 1.0}, step=100)
    writer.close()
    (written,) = (tmp_path / "elsewhere").glob("events.*")
    shutil.move(written, logdir / "eval" / "events.out.tfevents.1700000001.elsewhere.4242.1.v2")
    before = files_and_contents(logdir)
    assert train(logdir, num_steps=8) == {"steps": 8}  # Finished: nothing to do, nothing refused.
    with pytest.raises(prepare.LogdirStateError) as raised:
        train(logdir, num_steps=12)
    assert str(raised.value) == (
        f"logdir {logdir}: eval/events.out.tfevents.1700000001.elsewhere.4242.1.v2 holds points "
        "after step 8, the checkpoint to resume from, but no run of this app recorded writing it "
        "(an older version, or another program), so it cannot be trimmed; move it away, or pass "
        "a new --logdir"
    )
    assert files_and_contents(logdir) == before


def test_a_run_killed_before_its_first_checkpoint_starts_over_as_before(tmp_path):
    """The trim to nothing still happens for the files the killed run wrote, its HParams file at
    the root included (proven by the run's host and pid in its name, not by the list)."""
    run, _, _ = open_run(tmp_path)
    with run:
        run.restore()
        writers = run.open_writers()
        summaries.write_hparams(str(tmp_path), {"units": 3})  # After the record's last update.
        summaries.write_scalars(writers.train, {"loss": 1.0}, step=1)
    assert steps(tmp_path) == [1]
    again, _, _ = open_run(tmp_path)
    with again:
        assert again.restore() == 0
        again.open_writers()
    assert events.load_run(tmp_path / "train").Tags()["tensors"] == []
    assert events.load_run(tmp_path).Tags()["tensors"] == []  # The root's hparams, trimmed too.


def test_a_logdir_of_an_older_version_resumes_when_nothing_needs_trimming(logdir):
    (logdir / run_record.RECORD_FILE_NAME).unlink()  # As an older version left it.
    before = files_and_contents(logdir / "train")
    assert train(logdir)["resumed_from_step"] == 4
    assert steps(logdir) == [2, 4, 6, 8]
    for path, data in before.items():
        assert path.read_bytes() == data  # Not rewritten: the new points went to a new file.


# 3. A trim's leftovers: hidden names, removed on the next start.


def test_trim_leftovers_are_removed_and_tensorboard_shows_each_point_once(logdir):
    eval_file = event_file(logdir, "eval")
    shutil.copy(eval_file, f"{eval_file}.trimmed")  # What a kill mid-trim left, before.
    (logdir / "train" / ".trim.123.vm.1.0.v2.tmp").write_bytes(b"half a copy")
    assert sorted(steps(logdir, "eval")) == [2, 2, 4, 4]  # What TensorBoard showed: twice each.
    train(logdir)
    assert steps(logdir, "eval") == [2, 4, 6, 8]
    assert not list(logdir.rglob("*.trimmed")) and not list(logdir.rglob(".trim.*"))


def test_the_trim_writes_a_temporary_file_no_loader_takes_for_events(tmp_path):
    path = f"{tmp_path}/train/events.out.tfevents.1795633764.vm.3815.0.v2"
    temporary = trim.trim_temporary_path(path)
    assert temporary == f"{tmp_path}/train/.trim.1795633764.vm.3815.0.v2.tmp"
    assert "tfevents" not in pathlib.Path(temporary).name  # TensorBoard's loader's test.


def test_a_full_disk_during_the_trim_leaves_the_files_whole_and_no_temporary(logdir, monkeypatch):
    # ckpt-4 unlisted: as if killed between its files and the list, so the points at 4 must go.
    (logdir / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n'
    )
    before = without_record(files_and_contents(logdir))

    class FullDiskWriter(tf.io.TFRecordWriter):
        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None, NO_SPACE)

    monkeypatch.setattr(trim.tf.io, "TFRecordWriter", FullDiskWriter)
    with pytest.raises(errors.DiskFullError) as raised:
        train(logdir)
    assert "disk full while dropping points after the checkpoint" in str(raised.value)
    assert "step 2" in str(raised.value)  # The kept checkpoint.
    assert without_record(files_and_contents(logdir)) == before
    assert not list(logdir.rglob(".trim.*"))


# 4. A corrupt newest checkpoint: the newest one that restores, said in one line.


@pytest.mark.parametrize(
    ("corrupt", "resumed_from", "said"),
    [
        (corrupt_newest_data, 2, "ckpt-4 cannot be read (Read less bytes than requested)"),
        (
            lambda logdir: (logdir / "checkpoints" / "checkpoint").write_bytes(b""),
            4,
            "checkpoints/checkpoint, the list of checkpoints, is empty",
        ),
        (
            lambda logdir: (logdir / "checkpoints" / "checkpoint").write_text("{garbage: ["),
            4,
            "checkpoints/checkpoint, the list of checkpoints, cannot be parsed",
        ),
        (
            lambda logdir: (logdir / "checkpoints" / "checkpoint").write_bytes(b"\xff\xfe\x00"),
            4,
            "checkpoints/checkpoint, the list of checkpoints, is not UTF-8 text",
        ),
    ],
    ids=["truncated-data", "empty-list", "garbage-list", "non-utf8-list"],
)
def test_a_corrupt_checkpoint_falls_back_to_the_newest_that_restores(
    logdir, capsys, corrupt, resumed_from, said
):
    before = points(logdir)
    corrupt(logdir)
    result = train(logdir)
    assert result["resumed_from_step"] == resumed_from
    stderr = capsys.readouterr().err
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and said in warnings[0], stderr
    assert f"resuming from {logdir}/checkpoints/ckpt-{resumed_from}" in warnings[0]
    assert "does not fit" not in stderr
    # What came after the restored checkpoint is dropped; everything before it is as it was.
    assert steps(logdir) == [2, 4, 6, 8]
    assert [point for point in points(logdir) if point[0] <= resumed_from] == [
        point for point in before if point[0] <= resumed_from
    ]
    # The repaired list goes on as before: the newest three listed, the older ones swept away.
    assert checkpoints._read_state(str(logdir / "checkpoints"))[0] == [8, 6, 4]
    assert sorted(path.name for path in (logdir / "checkpoints").glob("*.index")) == [
        "ckpt-4.index",
        "ckpt-6.index",
        "ckpt-8.index",
    ]


def test_when_no_checkpoint_restores_the_run_is_refused_in_one_line(logdir):
    for data in (logdir / "checkpoints").glob("ckpt-*.data-*"):
        os.truncate(data, 10)
    before = files_and_contents(logdir)
    with pytest.raises(prepare.LogdirStateError) as raised:
        train(logdir)
    message = str(raised.value)
    assert "no checkpoint in" in message and "ckpt-4 cannot be read" in message
    assert "ckpt-2 cannot be read" in message and "does not fit" not in message
    assert files_and_contents(logdir) == before


# 5. No checkpoint of non-finite weights is ever saved.


def make_state(units: int = 3):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(units, name="dense")])
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build(model.trainable_variables)
    return model, optimizer, step_counter.create_global_step()


def open_run(logdir, every=10):
    model, optimizer, global_step = make_state()
    run = training_run.TrainingRun(
        str(logdir), global_step, every, model=model, optimizer=optimizer
    )
    return run, model, global_step


def test_save_refuses_weights_that_are_not_finite_and_keeps_the_last_good_checkpoint(tmp_path):
    run, model, global_step = open_run(tmp_path)
    with run:
        run.restore()
        global_step.assign(5)
        good = run.save(5)
        checkpoints = files_and_contents(tmp_path / "checkpoints")
        model.layers[0].kernel.assign(tf.fill((2, 3), float("inf")))
        with pytest.raises(errors.NonFiniteWeightsError) as raised:
            run.save(7)
    message = str(raised.value)
    assert message.startswith("the weights became non-finite at step 7 (sequential")
    assert "/dense/kernel hold NaN or Inf); stopped without saving." in message
    assert f"step 5 ({good}), is kept" in message
    assert "check the data for very large or missing values" in message
    assert files_and_contents(tmp_path / "checkpoints") == checkpoints


def test_the_nan_loss_message_does_not_blame_the_learning_rate_alone(tmp_path):
    run, _, _ = open_run(tmp_path)
    with run, pytest.raises(errors.NonFiniteLossError) as raised:
        run.restore()
        run.check_loss(float("nan"), step=3)
    assert (
        "Try a lower --learning_rate, or check the data for very large or missing values."
        in raised.value.args[0]
    )


def test_a_learning_rate_infinite_in_float32_ends_in_one_line_and_no_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    result = run_app(
        "regression_tape", "--learning_rate=1e39", "--num_steps=1", f"--logdir={logdir}"
    )
    assert_one_line_error(
        result, 1, "weights became non-finite at step 1", "No checkpoint had been saved yet."
    )
    assert not list(logdir.rglob("ckpt-*"))


# 6. One line, not a traceback, for the machine's limits and odd paths; earlier files intact.


def test_a_full_disk_during_a_checkpoint_save_leaves_no_partial_checkpoint(logdir, monkeypatch):
    before = without_record(files_and_contents(logdir / "checkpoints"))

    def save_until_the_disk_is_full(manager, checkpoint_number=None, **kwargs):
        prefix = f"{manager.directory}/ckpt-{checkpoint_number}"
        os.makedirs(f"{prefix}_temp")
        pathlib.Path(f"{prefix}_temp/part-00000-of-00001.index").write_bytes(b"half")
        pathlib.Path(f"{prefix}.index").write_bytes(b"half")
        raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}_temp/part; " + NO_SPACE)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_until_the_disk_is_full)
    with pytest.raises(errors.DiskFullError) as raised:
        train(logdir)
    message = str(raised.value)
    assert "disk full while saving checkpoint" in message and "/checkpoints/ckpt-6" in message
    assert f"The last good checkpoint, step 4 ({logdir}/checkpoints/ckpt-4), is kept" in message
    assert without_record(files_and_contents(logdir / "checkpoints")) == before
    assert not (logdir / "checkpoints" / "ckpt-6_temp").exists()


def test_a_full_disk_during_an_event_write_names_the_kept_checkpoint(tmp_path):
    run, _, global_step = open_run(tmp_path)
    with pytest.raises(errors.DiskFullError) as raised, run:
        run.restore()
        run.open_writers()
        global_step.assign(10)
        path = run.save(10)
        raise tf.errors.ResourceExhaustedError(None, None, NO_SPACE)  # From a summary write.
    message = str(raised.value)
    assert message.startswith(f"disk full in logdir {tmp_path}: ") and "\n" not in message
    assert f"step 10 ({path}), is kept" in message


def test_memory_running_out_mid_run_names_the_batch_size_and_the_kept_checkpoint(tmp_path):
    run, _, _ = open_run(tmp_path)
    with pytest.raises(errors.OutOfMemoryError) as raised, run:
        run.restore()
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    assert "out of memory in logdir" in str(raised.value)
    assert "try a smaller --batch_size" in str(raised.value)


def test_a_second_ctrl_c_mid_run_says_what_is_kept(tmp_path):
    run, _, global_step = open_run(tmp_path)
    with pytest.raises(errors.Interrupted) as raised, run:
        run.restore()
        global_step.assign(3)
        run.save(3)
        raise KeyboardInterrupt
    assert raised.value.exit_code == 130
    assert "second SIGINT stopped the run at once, without saving" in str(raised.value)
    assert "step 3" in str(raised.value)


def test_a_read_only_checkpoints_directory_is_refused_before_training(logdir, monkeypatch):
    real_gfile = tf.io.gfile.GFile

    def read_only_checkpoints(path, mode="r"):
        if "/checkpoints/" in str(path) and "w" in mode:
            raise tf.errors.PermissionDeniedError(None, None, f"{path}; Read-only file system")
        return real_gfile(path, mode)

    monkeypatch.setattr(tf.io.gfile, "GFile", read_only_checkpoints)
    before = files_and_contents(logdir)
    with pytest.raises(errors.UnwritablePathError) as raised:
        train(logdir)
    assert f"{logdir}/checkpoints cannot be written" in str(raised.value)
    assert files_and_contents(logdir) == before


@pytest.mark.parametrize(
    ("make", "error", "complaint"),
    [
        (
            lambda logdir: (logdir / "train").write_text("notes"),
            prepare.LogdirError,
            "train is a file, not the directory of the train run's event files",
        ),
    ],
    # A `.lock` directory is no longer refused: the lock is held on the logdir itself, and a
    # `.lock` is the user's (tests/test_shared_logdir.py).
    ids=["train-is-a-file"],
)
def test_odd_files_in_the_logdir_are_refused_in_one_line(tmp_path, make, error, complaint):
    make(tmp_path)
    before = files_and_contents(tmp_path)
    with pytest.raises(error, match=complaint):
        train(tmp_path)
    assert files_and_contents(tmp_path) == before


def test_a_logdir_that_is_not_utf8_or_not_reachable_is_refused_in_one_line(tmp_path):
    not_utf8 = os.fsdecode(bytes(tmp_path) + b"/run-\xff")
    with pytest.raises(prepare.LogdirError, match=r"run-\\xff is not valid UTF-8"):
        train(not_utf8)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(prepare.LogdirError, match=r"logdir gs://\S+ cannot be reached: "):
        train("gs://no-such-bucket-for-issue-14/run")


@pytest.mark.parametrize(
    ("raised", "exit_code", "line"),
    [
        (
            tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"),
            1,
            "error: out of memory: OOM when allocating tensor; try a smaller --batch_size",
        ),
        (MemoryError(), 1, "error: out of memory: MemoryError; try a smaller --batch_size"),
        (
            OSError(errno.ENOSPC, "No space left on device"),
            1,
            "error: disk full: No space left on device.",
        ),
        (
            KeyboardInterrupt(),
            130,
            "interrupted: SIGINT during start-up, before training began; nothing was saved",
        ),
    ],
    ids=["resource-exhausted", "memory-error", "disk-full", "keyboard-interrupt"],
)
def test_exit_on_user_error_reports_the_machines_limits_in_one_line(
    capsys, raised, exit_code, line
):
    with pytest.raises(SystemExit) as exited, cli.exit_on_user_error():
        raise raised
    assert exited.value.code == exit_code
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith(line), stderr


def test_the_logdir_flag_helper_names_an_empty_or_non_utf8_value():
    assert cli.logdir_flag_problem("logs/run") is None
    assert cli.logdir_flag_problem("").startswith("must not be empty")
    assert cli.logdir_flag_problem(os.fsdecode(b"logs/\xff")).startswith("is not valid UTF-8")


def test_a_full_disk_inside_a_graph_function_is_reported_by_its_cause():
    # What a summary write in a tf.function raised on a 200 KiB tmpfs, trimmed.
    message = (
        "Graph execution error:\n\nDetected at node write_summary defined at (most recent call "
        'last):\n  File "train.py", line 1\n/l/train/events.out.tfevents.1.vm.2.0.v2; No space '
        "left on device\n\tFailed to flush 11 events\n\t [[{{node write_summary}}]]"
    )
    error = tf.errors.ResourceExhaustedError(None, None, message)
    assert str(errors.as_user_error(error, "in logdir /l")) == (
        "disk full in logdir /l: /l/train/events.out.tfevents.1.vm.2.0.v2; No space left on "
        "device. Free some space, then run the same command again."
    )


def test_exit_on_user_error_leaves_a_bug_its_traceback():
    with pytest.raises(ValueError, match="a bug"), cli.exit_on_user_error():
        raise ValueError("a bug")


def test_sigint_during_start_up_exits_130_in_one_line():
    # A real SIGINT while nothing has installed a handler yet, as while TensorFlow imports.
    script = (
        "import os, signal\n"
        "from common import cli\n"
        "with cli.exit_on_user_error():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    signal.pause()\n"
    )
    # With SIGINT as a terminal gives it: when the suite runs as a script's background job
    # (`make test &`), its children start with SIGINT ignored (tests/sigint.py), and this one
    # would wait in pause() for ever.
    with children_start_with_sigint(signal.SIG_DFL):
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == (
        "interrupted: SIGINT during start-up, before training began; nothing was saved\n"
    )


def test_a_batch_that_cannot_be_meant_is_refused_at_once(tmp_path):
    with pytest.raises(errors.UserError, match=r"--batch_size=1000 is more than 100 times"):
        input_pipeline.check_batch_size(1000, num_examples=9, bytes_per_example=4)
    input_pipeline.check_batch_size(900, num_examples=9, bytes_per_example=4)  # 100 passes: fine.
    result = run_app(
        "regression_tape", "--batch_size=100000000", "--num_steps=2", f"--logdir={tmp_path}"
    )
    assert_one_line_error(result, 1, "--batch_size=100000000 is too large", "8192 examples")


def test_a_csv_header_wider_than_its_rows_fails_before_any_allocation(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["c"] * 10_000_000) + "\n1,2,3\n4,5,6\n")
    with pytest.raises(vae_data.DataFileError) as raised:
        vae_data.read_csv(str(wide))
    assert str(raised.value) == (
        f"data file {wide} row 2 has 3 columns, expected 10000000 (as many as the header)"
    )


def test_a_csv_cell_float32_cannot_hold_is_named(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("a,b\n1,2\n3,1e300\n")
    with pytest.raises(vae_data.DataFileError) as raised:
        vae_data.read_csv(str(path))
    assert str(raised.value) == (
        f"data file {path} row 3 column 2 ('b'): '1e300' is too large for float32 (at most "
        "3.4e+38 in magnitude), the precision the model trains in"
    )
