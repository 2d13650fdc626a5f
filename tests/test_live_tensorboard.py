"""A TensorBoard left open while a run is killed and resumed shows each step once.

Both of TensorBoard's loaders are live here, as a user has them: the default fast one (the Rust data
server, `--load_fast=true`) and the Python one (`--load_fast=false`). Each has read the killed run's
points after its checkpoint before the resume drops them from the files; neither rereads a file it
has read, so what it shows afterwards depends on how it forgets points: the fast loader by each
series' own step going back, the Python one only at a `SessionLog.START` event (see
`common.logdir.trim.write_restart_markers`).
"""

import contextlib
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.compat.proto import event_pb2

from common import summaries
from common.logdir import event_files, trim
from scripts import screenshots
from tests import tensorboard_events as events
from tests.app_cli import REPO_ROOT, run_app
from tests.test_tensorboard_server import Server

LOADERS = ("false", "true")  # --load_fast: the Python loader, the Rust data server.
# Ten steps a loop, a checkpoint every 200: the kill comes 30 steps after one, 17 loops (over a
# second here) before the next.
MNIST = (
    "--dataset=synthetic",
    "--batch_size=16",
    "--steps_per_loop=10",
    "--eval_every_steps=20",
    "--checkpoint_every_steps=200",
)


def wait_for(predicate, what: str, seconds: float = 180.0) -> None:
    """Polls `predicate` until it holds; fails naming `what` after `seconds` (a loaded machine)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def checkpoint_step(logdir) -> int | None:
    state = tf.train.get_checkpoint_state(str(logdir / "checkpoints"))
    return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else None


def last_written_step(logdir) -> int:
    return max(
        (event_files.largest_step(str(p)) for p in (logdir / "train").glob("events*")), default=-1
    )


def steps_past_checkpoint(logdir) -> int:
    """How far the train files reach past the newest checkpoint; -1 before the first one. (The
    files are read first: a checkpoint saved in between makes this small, never large.)"""
    last = last_written_step(logdir)
    saved = checkpoint_step(logdir)
    return -1 if saved is None else last - saved


def written_steps(logdir, run: str) -> list[int]:
    """The steps of `run`'s loss in its files, as a freshly started TensorBoard would read them."""
    return [step for step, _ in events.scalars(events.load_run(logdir / run), "loss")]


def served_steps(server: Server, run: str) -> list[int]:
    """The steps of `run`'s loss the live server answers with, in its order ([] before any)."""
    try:
        points = server.get("/data/plugin/scalars/scalars", run=run, tag="loss")
    except (OSError, ValueError):  # The run or tag is not loaded yet (an HTTP error), a reset.
        return []
    return [step for _, step, _ in points]


def served_tags(server: Server) -> set[tuple[str, str, str]]:
    """(kind, run, tag) of every scalar, histogram and image series the Time Series tab lists."""
    listed = server.get("/data/plugin/timeseries/tags")
    tags = {
        (kind, run, tag)
        for kind in ("scalars", "histograms")
        for run, run_tags in listed[kind]["runTagInfo"].items()
        for tag in run_tags
    }
    for tag, runs in listed["images"]["tagRunSampledInfo"].items():
        tags |= {("images", run, tag) for run in runs}
    return tags


@pytest.fixture(scope="module")
def resumed_under_live_servers(tmp_path_factory):
    """Both servers live over one logdir from the start; the run is killed (-9) between
    checkpoints once it has written points after one, both servers have loaded those points, and
    the same command with a larger --num_steps resumes it. Yields the servers by --load_fast, the
    train tags each served before the resume, the checkpoint step and the resumed run's end."""
    logdir = tmp_path_factory.mktemp("live") / "run"
    logdir.mkdir()
    with contextlib.ExitStack() as stack:
        servers = {
            load_fast: Server(
                stack.enter_context(
                    screenshots.tensorboard_server(
                        str(logdir), graph_runs=0, flags=(f"--load_fast={load_fast}",)
                    )
                ),
                logdir,
            )
            for load_fast in LOADERS
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apps.mnist_mlp",
                *MNIST,
                "--num_steps=100000",
                f"--logdir={logdir}",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stack.enter_context(open(logdir.parent / "stderr", "w")),
        )

        def past_checkpoint() -> bool:
            if process.poll() is not None:  # Failed: say why now, not at the timeout.
                raise AssertionError((logdir.parent / "stderr").read_text())
            return steps_past_checkpoint(logdir) >= 30

        try:
            wait_for(past_checkpoint, "points 30 steps after a checkpoint")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            process.kill()
        saved = checkpoint_step(logdir)
        written = {run: written_steps(logdir, run) for run in ("train", "eval")}
        assert written["train"][-1] > saved, "the kill came at a checkpoint: nothing to drop"
        for server in servers.values():
            for run, steps in written.items():
                wait_for(
                    lambda server=server, run=run, steps=steps: served_steps(server, run) == steps,
                    f"{run} loaded live",
                )
        tags_before = {load_fast: served_tags(server) for load_fast, server in servers.items()}
        end = (written["train"][-1] // 20 + 2) * 20  # Past every dropped step; an eval's step.
        resumed = run_app("mnist_mlp", *MNIST, f"--num_steps={end}", f"--logdir={logdir}")
        assert resumed.returncode == 0, resumed.stderr
        assert f"resumed from step {saved}" in resumed.stdout
        yield servers, tags_before, saved, end


@pytest.mark.parametrize("load_fast", LOADERS)
def test_a_live_server_shows_each_step_once_after_a_kill_and_a_resume(
    resumed_under_live_servers, load_fast
):
    servers, tags_before, saved, end = resumed_under_live_servers
    server = servers[load_fast]
    for run, every in (("train", 10), ("eval", 20)):
        # Loaders read in order: once the last step is there, all before it are.
        wait_for(
            lambda run=run: served_steps(server, run)[-1:] == [end], f"{run} step {end} served"
        )
        assert served_steps(server, run) == list(range(every, end + 1, every)), (run, saved)
        assert written_steps(server.logdir, run) == list(range(every, end + 1, every))
    # The restart markers are no point and no tag.
    assert served_tags(server) == tags_before[load_fast]


def loss_steps(accumulator: plugin_event_accumulator.EventAccumulator) -> list[int]:
    return [event.step for event in accumulator.Tensors("loss")]


def write_losses(writer: tf.summary.SummaryWriter, steps: range) -> None:
    with writer.as_default():
        for step in steps:
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
    writer.flush()


@pytest.mark.parametrize("earlier", ["this version", "an older version"])
@pytest.mark.parametrize("checkpoint", [5, None])
def test_the_python_loader_forgets_the_dropped_points_at_the_restart_marker(
    tmp_path, earlier, checkpoint
):
    """The loader `--load_fast=false` serves with, kept live across a trim and a resume: the
    restart marker makes it forget what the trim dropped, also after files with no marker of
    their own (an older version's), and also for a run killed before its first checkpoint."""
    if earlier == "this version":
        killed = summaries.create_writers(str(tmp_path)).train
    else:
        killed = tf.summary.create_file_writer(str(tmp_path / "train"))
    write_losses(killed, range(10))  # Killed at step 9.
    killed.close()
    live = plugin_event_accumulator.EventAccumulator(
        str(tmp_path / "train"), size_guidance={plugin_event_accumulator.TENSORS: 0}
    )
    live.Reload()
    assert loss_steps(live) == list(range(10))

    last = -1 if checkpoint is None else checkpoint
    trim.trim_events_after(str(tmp_path), last)
    # A resume is a later process: its file names (creation second, then the process's writer
    # count) sort after the killed run's, the order the loader reads them in. In this process and
    # second, a count passing 99 (98, then 100) would sort the resumed file first.
    [killed_file] = (tmp_path / "train").glob("events*")
    killed_second = int(killed_file.name.split(".")[3])
    wait_for(lambda: int(time.time()) > killed_second, "the next second", seconds=5)
    resumed = summaries.create_writers(str(tmp_path), first_step=last + 1)
    write_losses(resumed.train, range(last + 1, 12))
    resumed.close()
    live.Reload()
    assert loss_steps(live) == list(range(12))
    assert live.Tags()["tensors"] == ["loss"]  # The marker is no tag.
    assert written_steps(tmp_path, "train") == list(range(12))


def test_each_new_event_file_begins_with_two_restart_markers_at_its_first_step(tmp_path):
    summaries.create_writers(str(tmp_path), first_step=101).close()
    summaries.write_hparams(str(tmp_path), {"learning_rate": 0.1})  # A new run's, at step 0.
    for run, first_step in (("train", 101), ("eval", 101), (".", 0)):
        [path] = (tmp_path / run).glob("events*")
        header, *rest = [
            event_pb2.Event.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))
        ]
        assert header.file_version == "brain.Event:2"
        starts = [(event.step, event.session_log.status) for event in rest[:2]]
        assert starts == [(first_step, event_pb2.SessionLog.START)] * 2
        assert not any(event.HasField("session_log") for event in rest[2:])
