"""A logdir shared with other programs and odd files: issue 27, items 6, 7 and 8 (and 2's `.lock`).

Each test builds the state the adversarial run found and checks the promise: the lock holds on the
directory however it is spelled and whatever is deleted; odd entries (a directory, a FIFO, a
symbolic link that loops, named like an event file or in place of `train/`), a damaged bundled
sample and two signals at once end in one line, with no traceback or hang, nothing left behind
and earlier files byte for byte; a CSV of huge values is standardized, not zeroed. Most run in
process on a tiny regression run; subprocesses where the exit code, stderr or a hang of a real
process is the point (each with a timeout, so a hang fails instead of blocking the suite).
"""

import errno
import fcntl
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import tensorflow as tf

from apps.mnist_mlp import data as mnist_data
from apps.mnist_mlp import train as mnist_train
from apps.vae_timeseries import data as vae_data
from common import summaries
from common.logdir import prepare, run_lock, run_record
from tests.app_cli import REPO_ROOT, assert_one_line_error, run_app
from tests.regression_run import train

# The same run's flags, for the real command (its checkpoint fits: the model's settings are equal).
FLAGS = (
    "--num_steps=4",
    "--batch_size=8",
    "--steps_per_loop=2",
    "--eval_every_steps=2",
    "--checkpoint_every_steps=2",
)
EVENT_NAME = "events.out.tfevents.1700000000.elsewhere.4242.0.v2"


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
    shutil.copytree(finished_run, copy, symlinks=True)
    return copy


def listing(directory: pathlib.Path) -> dict[str, bytes | str]:
    """Every entry under `directory`, links and FIFOs included (never opened): a regular file by
    its bytes, anything else by its kind. Equal before and after: nothing touched, nothing new."""
    entries: dict[str, bytes | str] = {}
    for root, folders, files in os.walk(directory):
        for name in folders + files:
            path = pathlib.Path(root, name)
            mode = path.lstat().st_mode
            key = str(path.relative_to(directory))
            if stat.S_ISLNK(mode):
                entries[key] = f"link to {os.readlink(path)}"
            elif stat.S_ISREG(mode):
                entries[key] = path.read_bytes()
            else:
                entries[key] = "directory" if stat.S_ISDIR(mode) else "fifo"
    return entries


def own_event_file(logdir: pathlib.Path, run: str = "train") -> pathlib.Path:
    (path,) = (logdir / run).glob("events.out.tfevents.*")
    return path


# Item 6 (and item 2's `.lock`): the lock holds on the directory itself, and writes no file.


def test_the_lock_holds_on_the_directory_however_it_is_spelled(tmp_path, monkeypatch):
    logdir = tmp_path / "run"
    logdir.mkdir()
    link = tmp_path / "link"
    link.symlink_to(logdir)
    monkeypatch.chdir(tmp_path)
    with run_lock.LogdirLock(f"file://{logdir}"):
        assert list(logdir.iterdir()) == []  # Nothing written: there is no file to delete.
        for spelling in (str(logdir), f"{logdir}/", "run", "./run/", str(link), f"file://{link}"):
            with pytest.raises(run_lock.LogdirInUseError) as raised:
                run_lock.LogdirLock(spelling).acquire()
            assert f"in use by another run (pid {os.getpid()})" in str(raised.value), spelling
        with pytest.raises(run_lock.LogdirInUseError, match=rf"logdir {link} \({logdir}\) is in"):
            run_lock.LogdirLock(str(link)).acquire()  # A link's message names the directory.
    with run_lock.LogdirLock(str(link)):  # Released: any spelling gets in.
        pass


@pytest.mark.parametrize(
    "make",
    [
        lambda path: path.write_text("my notes: try lr 1e-3 next\n"),
        lambda path: path.mkdir(),
        lambda path: path.symlink_to(path.parent / "elsewhere"),
    ],
    ids=["notes-file", "directory", "dangling-link"],
)
def test_a_users_lock_file_is_left_alone_and_deleting_it_unlocks_nothing(tmp_path, make):
    logdir = tmp_path / "run"
    logdir.mkdir()
    make(logdir / ".lock")
    before = listing(logdir)
    assert train(logdir, num_steps=4)["steps"] == 4  # Trains: the lock is not that file.
    after = listing(logdir)
    assert {name: after[name] for name in before} == before  # `.lock` byte for byte.

    # A live run's lock survives its logdir's files being deleted: the second run is refused.
    with run_lock.LogdirLock(str(logdir)):  # Stands in for a live run.
        for name in (".lock", run_record.RECORD_FILE_NAME):
            path = logdir / name
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.exists() or path.is_symlink():
                path.unlink()
        with pytest.raises(run_lock.LogdirInUseError, match="in use by another run"):
            train(logdir, num_steps=6)


def test_runs_by_a_file_url_or_a_link_are_refused_beside_a_live_run(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    link = tmp_path / "link"
    link.symlink_to(logdir)
    with run_lock.LogdirLock(str(logdir)):  # Stands in for a live run on the plain path.
        spelling = f"file://{link}/"  # A URL and a link at once (each alone: the test above).
        result = run_app("regression_tape", *FLAGS, f"--logdir={spelling}")
        assert_one_line_error(
            result, 1, f"logdir {spelling}", f"in use by another run (pid {os.getpid()})"
        )
    assert list(logdir.iterdir()) == []


def test_a_logdir_that_cannot_be_locked_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    run_lock.LogdirLock("gs://some-bucket/run").acquire().release()
    assert capsys.readouterr().err == (
        "warning: no run lock on logdir gs://some-bucket/run: only a local directory can be "
        "locked, so a second run started on it at the same time is not refused: start one run "
        "per logdir\n"
    )

    def no_directory_locks(descriptor, operation):  # NFS: flock on a directory is EBADF there.
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(fcntl, "flock", no_directory_locks)
    run_lock.LogdirLock(str(tmp_path)).acquire().release()
    assert capsys.readouterr().err == (
        f"warning: no run lock on logdir {tmp_path}: its filesystem cannot lock a directory (Bad "
        "file descriptor), so a second run started on it at the same time is not refused: start "
        "one run per logdir\n"
    )


# Item 7: odd entries are refused in one line, before anything is written; nothing hangs.


@pytest.mark.parametrize(
    ("make", "name", "reason"),
    [
        (lambda path: path.mkdir(), f"train/{EVENT_NAME}", "is a directory, not an event file"),
        (
            lambda path: path.symlink_to(path.name),
            f"train/{EVENT_NAME}",
            "is a symbolic link that loops (too many levels of symbolic links), not an event file",
        ),
        (
            lambda path: path.symlink_to(path.parent / "gone"),
            f"train/{EVENT_NAME}",
            "is a symbolic link that leads nowhere (No such file or directory), not an event file",
        ),
    ],
    ids=["directory", "link-loop", "dangling-link"],
)
def test_an_odd_entry_named_like_an_event_file_is_refused_in_one_line(
    tmp_path, logdir, make, name, reason
):
    fresh = tmp_path / "fresh"
    for target in (fresh, logdir):  # A new run, and a finished run resumed further.
        (target / "train").mkdir(parents=True, exist_ok=True)
        make(target / name)
        before = listing(target)
        for num_steps in (4, 8):  # `nothing to do` reads the logdir too.
            with pytest.raises(prepare.LogdirError) as raised:
                train(target, num_steps=num_steps)
            assert str(raised.value) == (
                f"logdir {target}: {name} {reason}: reading it would fail or hang, TensorBoard's "
                f"too; move {target / name} away, or pass a new --logdir"
            )
            assert listing(target) == before  # No record, no lock file, nothing.


@pytest.mark.parametrize("run", ["train", "eval"])
def test_a_symbolic_link_loop_in_place_of_a_run_directory_is_refused(tmp_path, run):
    (tmp_path / run).symlink_to(run)
    before = listing(tmp_path)
    with pytest.raises(prepare.LogdirError) as raised:
        train(tmp_path, num_steps=4)
    assert str(raised.value) == (
        f"logdir {tmp_path}: {run} is a symbolic link that loops (too many levels of symbolic "
        f"links), not the directory of the {run} run's event files; move {tmp_path / run} away, "
        "or pass a new --logdir"
    )
    assert listing(tmp_path) == before  # No `.training_runs.json` left behind.


def test_a_fifo_named_like_an_event_file_fails_in_one_line_and_hangs_nothing(tmp_path, logdir):
    fresh = tmp_path / "fresh"
    (fresh / "train").mkdir(parents=True)
    os.mkfifo(fresh / "train" / EVENT_NAME)
    own = own_event_file(logdir)  # A finished run whose own event file is now a FIFO.
    own.unlink()
    os.mkfifo(own)
    for target, name in ((fresh, f"train/{EVENT_NAME}"), (logdir, f"train/{own.name}")):
        before = listing(target)
        result = run_app("regression_tape", *FLAGS, f"--logdir={target}")  # Timeout: 300 s.
        assert_one_line_error(
            result, 1, f"logdir {target}: {name} is a FIFO (a named pipe), not an event file"
        )
        assert listing(target) == before
    inspected = subprocess.run(
        [sys.executable, "-m", "tools.inspect_logdir", str(logdir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inspected.returncode == 1, inspected.stderr
    assert (
        f"[not-an-event-file] run train: {own.name} is a FIFO (a named pipe); the run was not "
        "read" in inspected.stdout
    )
    assert "run eval" in inspected.stdout  # The other runs are still read.


def test_a_damaged_bundled_mnist_sample_is_one_line(tmp_path, monkeypatch):
    sample = mnist_data.SAMPLE_PATH.read_bytes()
    damaged = tmp_path / "mnist_sample.npz"
    flipped = bytearray(sample)
    flipped[len(sample) // 2 : len(sample) // 2 + 64] = bytes(64)
    for content, cause in (
        (sample[: len(sample) // 2], "File is not a zip file"),
        (b"", "No data left in file"),
        (bytes(flipped), "Bad CRC-32 for file 'train_images.npy'"),
    ):
        damaged.write_bytes(content)
        with pytest.raises(mnist_data.UserError) as raised:
            mnist_data.load_sample(damaged)
        assert str(raised.value) == (
            f"cannot read the bundled MNIST sample {damaged}: {cause}; restore it (git checkout "
            "-- apps/mnist_mlp/assets/mnist_sample.npz), or pass --dataset=synthetic"
        )
    # Through the app: refused before anything is written.
    monkeypatch.setattr(mnist_data.load_sample, "__defaults__", (damaged,))
    logdir = tmp_path / "run"
    config = mnist_train.Config(num_steps=2, batch_size=8, steps_per_loop=2, dataset="mnist_sample")
    with pytest.raises(mnist_data.UserError, match="cannot read the bundled MNIST sample"):
        mnist_train.train_and_evaluate(config, str(logdir))
    assert listing(logdir) == {}


# Both signals pending at once, as when SIGTERM and then SIGINT arrive within 20 ms: they are
# blocked before TensorFlow starts its threads (which inherit the mask), raised, then unblocked in
# the main thread, so its C handler records both before Python runs either Python handler.
SIGNALS_AT_ONCE = textwrap.dedent(
    """
    import os, signal, sys
    both = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, both)
    import keras
    from common import cli
    from common.loop import step_counter, training_run
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    global_step = step_counter.create_global_step()
    run = training_run.TrainingRun(sys.argv[1], global_step, 100, model=model)
    with cli.exit_on_user_error(), run:
        run.restore()
        global_step.assign(3)
        run.save(3)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
        run.end_of_loop(4)  # What the loop's next boundary does.
        print("not stopped")
    """
)


def test_sigterm_and_sigint_at_once_stop_in_one_line_without_a_race_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SIGNALS_AT_ONCE, str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 143, result.stderr
    assert result.stderr.endswith(
        "\ninterrupted: a second stop signal (SIGTERM while SIGINT was pending) stopped the run "
        f"at once, without saving. The last good checkpoint, step 3 ({tmp_path}/checkpoints/"
        "ckpt-3), is kept. Run the same command again to resume.\n"
    ), result.stderr
    assert "race condition" not in result.stderr and "Traceback" not in result.stderr
    assert "not stopped" not in result.stdout


def test_a_refused_resume_with_the_debugger_writes_no_dump(logdir, tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "elsewhere"))
    summaries.write_scalars(writer, {"loss": 1.0}, step=100)  # After the checkpoint: refused.
    writer.close()
    (written,) = (tmp_path / "elsewhere").glob("events.*")
    shutil.move(written, logdir / "eval" / EVENT_NAME)
    before = listing(logdir)
    with pytest.raises(prepare.LogdirStateError, match=f"eval/{EVENT_NAME} holds points"):
        train(logdir, num_steps=8, debugger=True)
    assert listing(logdir) == before  # No `debugger/` dump.


# Item 8: a column of huge values is standardized, not zeroed.


def test_a_csv_column_of_huge_values_is_standardized_without_overflow(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "huge.csv"
    huge = rng.normal(6e23, 1e22, size=400)  # Well under float32's 3.4e38.
    small = rng.normal(0.0, 1.0, size=400)
    path.write_text(
        "a,b\n" + "".join(f"{float(x)!r},{float(y)!r}\n" for x, y in zip(huge, small, strict=True))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's overflow RuntimeWarning was the only sign.
        datasets = vae_data.load_datasets(str(path), window_length=16, num_channels=2, seed=0)
    windows = np.concatenate([window.numpy() for window in datasets.train])
    assert windows.dtype == np.float32 and np.isfinite(windows).all()
    assert windows[:, 0].std() == pytest.approx(1.0, abs=0.1)  # Not all zeros.
    assert windows[:, 1].std() == pytest.approx(1.0, abs=0.1)


def test_an_eval_part_beyond_float32_after_standardizing_is_refused_by_column():
    series = np.zeros((100, 2), np.float32)
    series[:80:2, 1] = 1e-6  # Training std 5e-7: the eval part's 3e38 is 6e44 of them away.
    series[80:, 1] = 3e38
    with pytest.raises(vae_data.DataFileError) as raised:
        vae_data.split_and_window(series, window_length=8, source="data file x.csv")
    assert str(raised.value) == (
        "data file x.csv column 2: its eval part lies more than 3.4e+38 training standard "
        "deviations from the training mean, beyond float32, the precision the model trains in"
    )
