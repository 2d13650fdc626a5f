"""apps.regression_tape end to end on tiny configs, read back as TensorBoard shows the run."""

import math

import numpy as np
import pytest
from tensorflow.python.debug.lib import debug_events_monitors, debug_events_reader

from apps.regression_tape import data, train
from common import errors
from tests import tensorboard_events as events

TINY = train.Config(num_steps=6, batch_size=16, steps_per_loop=2, eval_every_steps=4)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run shared by the assertions below: (metrics, train run, eval run)."""
    logdir = tmp_path_factory.mktemp("regression") / "run"
    datasets = data.make_datasets(seed=0, num_train=256, num_test=64)
    metrics = train.train_and_evaluate(TINY, str(logdir), datasets=datasets)
    return metrics, events.load_run(logdir / "train"), events.load_run(logdir / "eval")


def test_custom_scalars_layout_is_written_once_and_charts_the_run(tiny_run):
    _, train_run, eval_run = tiny_run
    layout = events.scalars_layout(train_run)
    assert "^gradient_norm/global$" in layout["regression_tape"]["learning rate and gradient norm"]
    assert events.chart_tags_without_data(layout, [train_run, eval_run]) == set()


def test_op_graph_is_the_whole_train_step(tiny_run):
    _, train_run, _ = tiny_run
    assert events.tags_by_plugin(train_run)[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert events.function_graph_count(train_run, "graph/train_step") == 1
    ops = events.op_types(events.op_graph(train_run, "graph/train_step"))
    assert ops >= {"MatMul", "BiasAdd", "Relu", "Square", "Sum"}  # forward and MSE
    assert ops >= {"ReluGrad", "BiasAddGrad"}  # gradients
    assert ops >= {"AssignSubVariableOp", "Sqrt"}  # Adam's update


def test_conceptual_graph_and_model_summary(tiny_run):
    _, train_run, _ = tiny_run
    nodes = {node.name for node in events.conceptual_graph(train_run, "keras/regression_tape").node}
    assert {
        "regression_tape/features",
        "regression_tape/hidden_1",
        "regression_tape/hidden_2",
        "regression_tape/prediction",
    } <= nodes
    summary = events.text(train_run, "model_summary/regression_tape")
    assert "Total params: 897" in summary  # 10*32+32 + 32*16+16 + 16+1
    assert "predicting the mean gives RMSE" in events.text(train_run, "dataset")


def test_loss_gradient_norms_and_eval_metrics_are_finite(tiny_run):
    metrics, train_run, eval_run = tiny_run
    scalar_tags = set(events.tags_by_plugin(train_run)["scalars"])
    per_variable = {
        tag for tag in scalar_tags if tag.startswith("gradient_norm/") and "/" in tag[14:]
    }
    assert per_variable == {
        f"gradient_norm/{layer}/{kind}"
        for layer in ("hidden_1", "hidden_2", "prediction")
        for kind in ("kernel", "bias")
    }
    for tag in ("loss", "gradient_norm/global", *per_variable):
        points = events.scalars(train_run, tag)
        assert [step for step, _ in points] == [2, 4, 6], tag
        assert all(math.isfinite(value) and value >= 0 for _, value in points), tag
    for tag in ("loss", "mae", "rmse"):
        points = events.scalars(eval_run, tag)
        assert [step for step, _ in points] == [4, 6], tag
        assert all(math.isfinite(value) for _, value in points), tag
    assert metrics["eval/rmse"] == pytest.approx(math.sqrt(metrics["eval/loss"]), rel=1e-5)
    assert metrics["train_step_traces"] == 1
    histograms = set(events.tags_by_plugin(train_run)["histograms"])
    assert "weights/hidden_1/kernel" in histograms and "gradients/hidden_1/kernel" in histograms
    assert len(histograms) == 12  # The weights and the gradients of 6 variables.


def test_it_learns_the_function_down_to_near_the_noise(tmp_path):
    """Measured: 1,500 steps reach RMSE 0.165 for noise 0.1; predicting the mean gives 0.899."""
    config = train.Config(num_steps=1500, eval_every_steps=1500)
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["eval/rmse"] < 0.25 * metrics["trivial_rmse"]
    assert metrics["eval/rmse"] < 2.0 * metrics["noise_std"]
    assert metrics["eval/rmse"] >= 0.9 * metrics["noise_std"]  # Not below the noise: no leak.


def test_data_is_reproducible_and_its_references_are_right():
    first = data.make_datasets(seed=3, noise_std=0.2, num_train=2000, num_test=4000)
    second = data.make_datasets(seed=3, noise_std=0.2, num_train=2000, num_test=4000)
    features, targets = (np.stack(a) for a in zip(*first.eval.as_numpy_iterator(), strict=True))
    again = np.stack([t for _, t in second.eval.as_numpy_iterator()])
    np.testing.assert_array_equal(targets, again)
    assert features.shape == (4000, 10) and targets.shape == (4000, 1)
    assert features.min() >= -1 and features.max() <= 1
    # The noise really has the stated std: residuals of the true function.
    residuals = targets[:, 0] - data.target_function(features.astype(np.float64))
    assert residuals.std() == pytest.approx(0.2, rel=0.05)
    assert first.trivial_rmse == pytest.approx(
        np.sqrt(np.mean((targets - targets.mean()) ** 2)), rel=0.05
    )


def test_debugger_names_the_op_that_first_overflowed_and_the_error_points_at_it(tmp_path):
    # A learning rate of 1e10 blows the weights up at step 1; step 2's squared error overflows.
    diverging = train.Config(**{**TINY.__dict__, "learning_rate": 1e10, "debugger": True})
    datasets = data.make_datasets(seed=0, num_train=256, num_test=64)
    with pytest.raises(errors.NonFiniteLossError) as raised:
        train.train_and_evaluate(diverging, str(tmp_path), datasets=datasets)
    [dump] = (tmp_path / "debugger").iterdir()  # debugger/<time>: one per process.
    message = str(raised.value)
    assert f"open TensorBoard's Debugger V2 tab on {dump}" in message
    assert "name the first op that produced NaN/Inf" in message

    # What Debugger V2's alerts are made of: tf.debugging's reader and its NaN/Inf monitor.
    with debug_events_reader.DebugDataReader(str(dump)) as reader:
        monitor = debug_events_monitors.InfNanMonitor(reader)
        reader.update()
        first = monitor.alerts()[0]
        trace = reader.graph_execution_traces()[first.graph_execution_trace_index]
        graph = reader.graph_by_id(trace.graph_id)
    # FULL_HEALTH: [.., element count, -Inf count, +Inf count, NaN count, ..].
    non_finite = sum(trace.debug_tensor_value[5:8])
    assert non_finite > 0 and first.num_pos_inf + first.num_neg_inf + first.num_nan > 0
    assert (trace.op_type, trace.op_name) == ("Square", "Square")  # The MSE's square, ...
    assert graph.name == "train_step_on_every_replica"  # ... in the train step.
