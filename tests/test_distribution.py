"""tf.distribute: every app on 2 mirrored replicas matches 1 replica; 2 workers share one logdir.

The mirrored tests run in this process on the two logical CPUs that conftest.py sets up. The
multi-worker tests start two real worker processes per app, talking gRPC over loopback ports picked
free, as a user runs them on two machines; each is bounded in time.
"""

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.util import tensor_util

from apps.conditional_dropout import data as dropout_data
from apps.conditional_dropout import train as dropout_train
from apps.mnist_mlp import data as mnist_data
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import data as regression_data
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import train as vae_train
from common import distribution
from common.errors import UserError
from tests import multi_worker
from tests import tensorboard_events as events
from tests.app_cli import assert_one_line_error, run_app
from tests.conftest import NUM_TEST_CPU_DEVICES

# Results of 2 replicas against 1: the same arithmetic summed in another order (float32), so they
# agree to about 1e-6; 1e-4 leaves room for a few steps of Adam amplifying the difference.
RELATIVE_TOLERANCE = 1e-4
NORM = "gradients/global_norm"  # The last step's gradients, summed over replicas, at each eval.


def mnist_datasets():
    # 25 test digits: the last eval batch (9) splits unevenly over the 2 replicas.
    sample = mnist_data.load_sample()
    return mnist_data.Datasets(sample.train.take(96), sample.eval.take(25), "tiny", "tiny")


def regression_datasets():
    return regression_data.make_datasets(seed=0, num_train=256, num_test=65)


def dropout_datasets():
    datasets = dropout_data.make_datasets(seed=0)
    return dataclasses.replace(datasets, eval=datasets.eval.take(517))


# app -> (train module, tiny config, datasets factory). Dropout at rate 0: masks are random, and
# replicas draw theirs from their own share of the batch, so with dropout the runs legitimately
# differ (the switch's op is still in the graph and still runs).
EXACT_APPS = {
    "mnist_mlp": (
        mnist_train,
        mnist_train.Config(num_steps=6, batch_size=16, steps_per_loop=2, eval_every_steps=4),
        mnist_datasets,
    ),
    "regression_tape": (
        regression_train,
        regression_train.Config(num_steps=6, batch_size=16, steps_per_loop=2, eval_every_steps=4),
        regression_datasets,
    ),
    "conditional_dropout": (
        dropout_train,
        dropout_train.Config(
            num_steps=6, batch_size=16, steps_per_loop=2, eval_every_steps=4, dropout_rate=0.0
        ),
        dropout_datasets,
    ),
}


def compared_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in metrics.items() if name.startswith(("train/", "eval/"))}


@pytest.mark.parametrize("app", sorted(EXACT_APPS))
def test_two_mirrored_replicas_match_one_device(app, tmp_path):
    train, config, make_datasets = EXACT_APPS[app]
    single = train.train_and_evaluate(config, str(tmp_path / "single"), datasets=make_datasets())
    mirrored_config = dataclasses.replace(
        config, strategy="mirrored", num_cpu_devices=NUM_TEST_CPU_DEVICES
    )
    mirrored = train.train_and_evaluate(
        mirrored_config, str(tmp_path / "mirrored"), datasets=make_datasets()
    )

    assert mirrored["steps"] == single["steps"] == config.num_steps
    assert mirrored["train_step_traces"] == mirrored["eval_step_traces"] == 1
    assert single["eval_step_traces"] == 1  # In-memory slices; the mirrored one, a dataset.
    expected = compared_metrics(single)
    assert expected and compared_metrics(mirrored).keys() == expected.keys()
    for name, value in expected.items():
        assert math.isfinite(value)
        assert mirrored[name] == pytest.approx(value, rel=RELATIVE_TOLERANCE), name

    # What TensorBoard shows: the same tags, the same steps, and the step graph of 2 replicas.
    for run in ("train", "eval"):
        single_run = events.load_run(tmp_path / "single" / run)
        mirrored_run = events.load_run(tmp_path / "mirrored" / run)
        assert events.tags_by_plugin(mirrored_run) == events.tags_by_plugin(single_run)
        assert events.scalars(mirrored_run, "loss")[-1][0] == config.num_steps
    # The PR curves' counts, taken in the eval step on each replica and summed when read (Keras
    # makes metric variables ON_READ, SUM): each eval example counted once, as on one device.
    single_eval = events.load_run(tmp_path / "single" / "eval")
    mirrored_eval = events.load_run(tmp_path / "mirrored" / "eval")
    for tag in events.tags_by_plugin(single_eval).get("pr_curves", []):
        (*_, single_curve), (*_, mirrored_curve) = (
            [tensor_util.make_ndarray(event.tensor_proto) for event in run.Tensors(tag)]
            for run in (single_eval, mirrored_eval)
        )
        replicas, one_device = mirrored_curve[:4], single_curve[:4]  # TP, FP, TN, FN.
        np.testing.assert_array_equal(replicas.sum(axis=0), one_device.sum(axis=0), err_msg=tag)
        positives = [curve[0, 0] + curve[3, 0] for curve in (replicas, one_device)]  # TP + FN.
        assert positives[0] == positives[1], tag
        # The same counts, but for an example whose probability, a float32 rounding away (the
        # runs' weights agree to about 1e-6), falls in the next bucket: none did here.
        assert np.abs(replicas - one_device).max() <= 1, tag
    single_norms = events.scalars(events.load_run(tmp_path / "single" / "train"), NORM)
    mirrored_norms = events.scalars(events.load_run(tmp_path / "mirrored" / "train"), NORM)
    assert [step for step, _ in mirrored_norms] == [step for step, _ in single_norms] == [4, 6]
    for (_, mirrored_norm), (_, single_norm) in zip(mirrored_norms, single_norms, strict=True):
        assert mirrored_norm == pytest.approx(single_norm, rel=RELATIVE_TOLERANCE)
    graph = events.op_graph(events.load_run(tmp_path / "mirrored" / "train"), "graph/train_step")
    replica_nodes = [node.name for node in graph.node if "replica_1" in node.name]
    assert replica_nodes, "the second replica's ops are missing from the step graph"
    assert {"MatMul", "BiasAdd"} <= events.op_types(graph)
    single_graph = events.op_graph(
        events.load_run(tmp_path / "single" / "train"), "graph/train_step"
    )
    assert not [node.name for node in single_graph.node if "replica_1" in node.name]


def test_vae_on_two_mirrored_replicas_learns_as_on_one(tmp_path):
    # The sampling noise is drawn per replica, so the runs differ step by step; after 300 steps
    # both must have learned as much (observed: eval ELBOs within 1%; the bound allows 10%).
    config = vae_train.Config(
        num_steps=300,
        batch_size=16,
        latent_dim=4,
        window_length=16,
        num_channels=6,
        kl_warmup_steps=100,
        steps_per_loop=50,
        eval_every_steps=100,
    )
    single = vae_train.train_and_evaluate(config, str(tmp_path / "single"))
    mirrored = vae_train.train_and_evaluate(
        dataclasses.replace(config, strategy="mirrored", num_cpu_devices=NUM_TEST_CPU_DEVICES),
        str(tmp_path / "mirrored"),
    )
    assert mirrored["eval/elbo"] > mirrored["eval/first_elbo"]
    assert mirrored["eval/elbo"] == pytest.approx(single["eval/elbo"], rel=0.10)
    assert mirrored["train/beta"] == single["train/beta"] == 1.0  # The in-graph schedule.
    train_run = events.load_run(tmp_path / "mirrored" / "train")
    assert {"latent/mean", "latent/log_variance"} <= set(
        events.tags_by_plugin(train_run)["histograms"]
    )
    assert [step for step, _ in events.scalars(train_run, NORM)] == [100, 200, 300]


def test_strategies_by_name():
    assert distribution.create_strategy("default").num_replicas_in_sync == 1
    mirrored = distribution.create_strategy("mirrored", NUM_TEST_CPU_DEVICES)
    assert mirrored.num_replicas_in_sync == NUM_TEST_CPU_DEVICES
    assert distribution.is_chief(mirrored)
    assert distribution.num_workers(mirrored) == 1
    assert distribution.any_worker(mirrored, True) and not distribution.any_worker(mirrored, False)


def test_bad_strategy_requests_fail_with_one_clear_message(monkeypatch):
    with pytest.raises(UserError, match="unknown strategy 'tpu'"):
        distribution.create_strategy("tpu")
    with pytest.raises(
        UserError, match=r"cannot split the CPU into 3 devices: .* already runs on 2"
    ):
        distribution.split_cpu(3)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        distribution.create_strategy("multi_worker")
    for bad in ("not json", '{"cluster": {}}', multi_worker.tf_config([1, 2], index=5)):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(UserError, match="TF_CONFIG is not a usable cluster spec"):
            distribution.create_strategy("multi_worker")


def test_cli_refuses_xla_with_mirrored_and_multi_worker_without_cluster(tmp_path):
    result = run_app("mnist_mlp", "--jit_compile", "--strategy=mirrored")
    assert_one_line_error(result, 2, "--jit_compile", "--strategy=default")
    environment_had = os.environ.pop("TF_CONFIG", None)
    try:
        logdir = tmp_path / "never"
        result = run_app("regression_tape", "--strategy=multi_worker", f"--logdir={logdir}")
    finally:
        if environment_had is not None:
            os.environ["TF_CONFIG"] = environment_had
    assert_one_line_error(result, 1, "TF_CONFIG")
    assert not logdir.exists()
    assert_one_line_error(run_app("vae_timeseries", "--num_cpu_devices=0"), 2, "num_cpu_devices")


# Per app: flags for a short multi-worker run with two loop boundaries, an eval and a checkpoint.
MULTI_WORKER_FLAGS = {
    "mnist_mlp": ["--dataset=synthetic", "--batch_size=32", "--num_steps=40"],
    "regression_tape": ["--batch_size=32", "--num_steps=40"],
    "conditional_dropout": ["--batch_size=32", "--num_steps=40"],
    "vae_timeseries": ["--batch_size=16", "--num_steps=40", "--window_length=16", "--latent_dim=4"],
}
LOOP_FLAGS = ["--steps_per_loop=20", "--eval_every_steps=20", "--checkpoint_every_steps=20"]


@pytest.mark.parametrize("app", sorted(MULTI_WORKER_FLAGS))
def test_two_workers_train_together_and_only_the_chief_writes(app, tmp_path):
    logdir = tmp_path / "run"
    flags = [f"--logdir={logdir}", *MULTI_WORKER_FLAGS[app], *LOOP_FLAGS]
    results = multi_worker.finish(multi_worker.start_workers(app, flags, tmp_path / "tmp"))

    for exit_code, _, stderr in results:
        assert exit_code == 0, stderr[-3000:]
    (_, chief_out, _), (_, worker_out, _) = results
    # Both end at the same step with the same numbers: they trained one model together.
    assert multi_worker.final_metrics(chief_out) == multi_worker.final_metrics(worker_out)
    assert multi_worker.final_metrics(chief_out)["steps"] == "40"
    assert "split over 2 replicas on 2 workers" in chief_out
    assert "step 40/40" in chief_out and "step 40/40" not in worker_out  # One console reports.

    # One set of summaries, in the chief's logdir, with no step written twice.
    for run in ("train", "eval"):
        assert len(list((logdir / run).glob("events.out.tfevents.*"))) == 1
        tag = "elbo" if (app, run) == ("vae_timeseries", "eval") else "loss"
        steps = [step for step, _ in events.scalars(events.load_run(logdir / run), tag)]
        assert steps == [20, 40], (run, steps)
    train_tags = events.tags_by_plugin(events.load_run(logdir / "train"))
    assert "graph/train_step" in train_tags[events.OP_GRAPH_PLUGIN]
    assert sorted(path.name for path in (logdir / "checkpoints").glob("*.index")) == [
        "ckpt-20.index",
        "ckpt-40.index",
    ]
    # The other worker's temporary directory is gone; nothing else was left behind either.
    assert list((tmp_path / "tmp" / "worker-1").iterdir()) == []


def test_sigterm_to_one_worker_stops_both_at_one_checkpoint_and_both_resume(tmp_path):
    logdir = tmp_path / "run"
    flags = [
        f"--logdir={logdir}",
        "--dataset=synthetic",
        "--batch_size=16",
        "--steps_per_loop=10",
        "--eval_every_steps=1000",
        "--checkpoint_every_steps=1000",
    ]
    workers = multi_worker.start_workers("mnist_mlp", [*flags, "--num_steps=100000"], tmp_path)
    try:
        # Training has started once the chief has a train event file with a loop's scalars.
        deadline = time.monotonic() + 180
        while not list((logdir / "train").glob("events.out.tfevents.*")):
            assert time.monotonic() < deadline and workers[0].poll() is None, "never started"
            time.sleep(0.2)
        time.sleep(2.0)
        workers[1].send_signal(signal.SIGTERM)
    finally:
        results = multi_worker.finish(workers, timeout=120)
    (chief_code, _, chief_err), (worker_code, _, worker_err) = results
    assert worker_code == 128 + signal.SIGTERM, worker_err[-2000:]
    assert chief_code == 128 + signal.SIGTERM, chief_err[-2000:]
    assert "another worker was stopped at step" in chief_err
    assert "SIGTERM at step" in worker_err
    stopped_at = int(chief_err.split("another worker was stopped at step ")[1].split(";")[0])
    assert f"SIGTERM at step {stopped_at};" in worker_err  # They agree on the step.
    assert (logdir / "checkpoints" / f"ckpt-{stopped_at}.index").exists()

    # The same command again (a few more steps) resumes both workers from the chief's checkpoint.
    target = stopped_at + 20
    results = multi_worker.finish(
        multi_worker.start_workers("mnist_mlp", [*flags, f"--num_steps={target}"], tmp_path)
    )
    for exit_code, stdout, stderr in results:
        assert exit_code == 0, stderr[-3000:]
        assert f"resumed from step {stopped_at}" in stdout
        assert multi_worker.final_metrics(stdout)["steps"] == str(target)
    steps = [step for step, _ in events.scalars(events.load_run(logdir / "train"), "loss")]
    assert steps == sorted(set(steps)) and steps[-1] == target


def test_compute_threads_leave_a_core_to_the_input_pipeline_and_yield_to_the_environment():
    """Set before TensorFlow's runtime starts (a fresh process); the environment's count wins;
    a runtime already running (this test session) keeps its threads, without an error."""
    probe = (
        "from common import distribution; import tensorflow as tf; "
        "print(distribution.set_compute_threads(), "
        "tf.config.threading.get_intra_op_parallelism_threads())"
    )
    environment = {
        key: value for key, value in os.environ.items() if key != "TF_NUM_INTRAOP_THREADS"
    }

    def run(**extra: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env={**environment, **extra},
            check=True,
        )
        return result.stdout.split()

    cores = len(os.sched_getaffinity(0))
    expected = str(cores - 1) if cores > 1 else "0"
    assert run() == [expected, expected]
    assert run(TF_NUM_INTRAOP_THREADS="3") == ["3", "0"]  # TensorFlow reads the variable itself.
    tf.constant(1.0)  # This session's runtime runs already: its threads stay as they are
    # (TensorFlow's default, or what an earlier test's set_compute_threads set before it ran).
    in_force = tf.config.threading.get_intra_op_parallelism_threads()
    assert distribution.set_compute_threads() == in_force
    assert tf.config.threading.get_intra_op_parallelism_threads() == in_force
