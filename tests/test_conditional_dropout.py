"""apps.conditional_dropout: two graphs, a real conditional op, and a switch that never retraces."""

import dataclasses
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.util import tensor_util

from apps.conditional_dropout import data, train
from apps.conditional_dropout import model as model_lib
from common import summaries
from tests import tensorboard_events as events

RANDOM_OPS = {"StatelessRandomUniformV2", "RandomUniform", "StatelessRandomGetKeyCounter"}
TINY = train.Config(
    num_steps=8, batch_size=16, steps_per_loop=2, eval_every_steps=4, dropout_off_at_step=5
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run, dropout switched off at step 5: (metrics, train run, eval run)."""
    logdir = tmp_path_factory.mktemp("dropout") / "run"
    metrics = train.train_and_evaluate(TINY, str(logdir))
    return metrics, events.load_run(logdir / "train"), events.load_run(logdir / "eval")


def test_custom_scalars_layout_is_written_once_and_charts_the_run(tiny_run):
    _, train_run, eval_run = tiny_run
    layout = events.scalars_layout(train_run)
    assert layout["conditional_dropout"]["accuracy, train against eval"] == ["^accuracy$"]
    assert events.chart_tags_without_data(layout, [train_run, eval_run]) == set()


def test_pr_curve_of_the_eval_set_at_every_eval(tiny_run):
    _, _, eval_run = tiny_run
    assert events.tags_by_plugin(eval_run)["pr_curves"] == ["pr_curve"]
    curves = eval_run.Tensors("pr_curve")
    assert [curve.step for curve in curves] == [4, 8]
    # Rows: true and false positives, true and false negatives, precision, recall; by threshold.
    counts = tensor_util.make_ndarray(curves[-1].tensor_proto)
    assert counts.shape == (6, 201)
    assert len(set(counts[:4].sum(axis=0))) == 1  # Every threshold counts every example.
    assert counts[5, 0] == 1.0  # At threshold 0 everything is positive: recall 1.
    # The curve counted in the eval step is the plugin's curve of the model's probabilities on
    # the whole eval set, taken here from the last checkpoint (step 8, the last eval's weights),
    # in the eval's batches.
    model = model_lib.create_model(data.NUM_FEATURES, TINY.dropout_rate, TINY.hidden_units)
    logdir = pathlib.Path(eval_run.path).parent
    tf.train.Checkpoint(model=model).restore(
        tf.train.latest_checkpoint(str(logdir / "checkpoints"))
    ).expect_partial()
    eval_set = data.make_datasets(TINY.seed).eval
    features, labels = eval_set.batch(data.NUM_TEST_EXAMPLES).get_single_element()
    logits = tf.concat(
        [
            model(features[start : start + data.EVAL_BATCH_SIZE], training=False)
            for start in range(0, data.NUM_TEST_EXAMPLES, data.EVAL_BATCH_SIZE)
        ],
        axis=0,
    )
    np.testing.assert_array_equal(
        counts, summaries.pr_curve_data(labels.numpy(), tf.sigmoid(logits).numpy())
    )


def test_train_and_inference_graphs_are_two_tags(tiny_run):
    _, train_run, _ = tiny_run
    assert events.tags_by_plugin(train_run)[events.OP_GRAPH_PLUGIN] == [
        "graph/train_step",
        "graph/inference_step",
    ]


def test_train_graph_holds_a_real_conditional_around_dropout(tiny_run):
    _, train_run, _ = tiny_run
    graph = events.op_graph(train_run, "graph/train_step")
    top_level_ops = {node.op for node in graph.node}
    assert top_level_ops & {"If", "StatelessIf"}  # The switch is an op, decided at run time.
    assert events.op_types(graph) & RANDOM_OPS  # Dropout's random ops, inside the branch.
    assert events.op_types(graph) >= {"MatMul", "ReluGrad", "AssignSubVariableOp"}


def test_inference_graph_has_no_dropout_random_or_conditional_ops(tiny_run):
    _, train_run, _ = tiny_run
    ops = events.op_types(events.op_graph(train_run, "graph/inference_step"))
    assert "MatMul" in ops and "Relu" in ops
    assert not ops & RANDOM_OPS
    assert not ops & {"If", "StatelessIf", "SelectV2", "GreaterEqual"}
    assert not any("Grad" in op for op in ops)  # No training in the inference graph.


def test_the_switch_flips_at_its_step_without_retracing(tiny_run):
    metrics, train_run, eval_run = tiny_run
    # The loop is cut at step 5, so the switch flips exactly there.
    assert events.scalars(train_run, "dropout_enabled") == [
        (2, 1.0),
        (4, 1.0),
        (5, 1.0),
        (6, 0.0),
        (8, 0.0),
    ]
    assert metrics["train_step_traces"] == 1
    assert metrics["inference_step_traces"] == 1
    assert [step for step, _ in events.scalars(eval_run, "loss")] == [4, 8]


def test_conceptual_graph_shows_the_custom_layers(tiny_run):
    _, train_run, _ = tiny_run
    nodes = {
        node.name: node
        for node in events.conceptual_graph(train_run, "keras/conditional_dropout").node
    }
    assert "conditional_dropout/dropout_1" in nodes and "conditional_dropout/dropout_2" in nodes
    assert list(nodes["conditional_dropout/hidden_2"].input) == ["conditional_dropout/dropout_1"]


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    return model_lib.create_model(num_features=16, dropout_rate=0.5, hidden_units=32)


def test_inference_is_deterministic_and_training_is_stochastic(model):
    features = tf.random.stateless_normal((8, 16), seed=(0, 1))
    np.testing.assert_array_equal(model(features, training=False), model(features, training=False))
    assert not np.array_equal(model(features, training=True), model(features, training=True))


def test_switching_off_makes_training_mode_deterministic_without_retrace(model):
    features = tf.random.stateless_normal((8, 16), seed=(0, 1))

    @tf.function
    def forward_in_training_mode(x):
        return model(x, training=True)

    first = forward_in_training_mode(features)
    model_lib.set_dropout_enabled(model, False)
    off = forward_in_training_mode(features)
    np.testing.assert_allclose(off, model(features, training=False), rtol=1e-6)
    model_lib.set_dropout_enabled(model, True)
    back_on = forward_in_training_mode(features)
    assert not np.array_equal(first, back_on)  # Random again (a new draw).
    assert forward_in_training_mode.experimental_get_tracing_count() == 1


def test_the_switch_is_saved_with_the_model(model, tmp_path):
    model_lib.set_dropout_enabled(model, False)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = model_lib.create_model(num_features=16, dropout_rate=0.5, hidden_units=32)
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    assert not any(bool(layer.enabled.numpy()) for layer in model_lib.dropout_layers(restored))


def test_the_popular_advice_fails_on_keras_3():
    """Why conditions live in a layer's call: the popular patterns raise or silently bake in."""
    inputs = keras.Input(shape=(4,))
    # 1. tf.cond on a symbolic condition raises while the Functional model is built.
    symbolic_condition = keras.ops.greater(keras.ops.sum(inputs), 0.0)
    with pytest.raises(ValueError, match="KerasTensor cannot be used as input to a TensorFlow"):
        tf.cond(symbolic_condition, lambda: keras.layers.Dropout(0.5)(inputs), lambda: inputs)
    # 2. tf.cond on a variable is decided once, at build time: assigning it later changes nothing.
    switch = tf.Variable(True)
    baked = keras.Model(
        inputs,
        tf.cond(switch, lambda: keras.layers.Dropout(0.5)(inputs, training=True), lambda: inputs),
    )
    switch.assign(False)
    ones = tf.ones((64, 4))
    assert not np.array_equal(baked(ones), baked(ones))  # Still dropping: the switch is ignored.
    # 3. And a tf.constant switch cannot be assigned at all.
    with pytest.raises(AttributeError):
        tf.constant(True).assign(False)


def test_dropout_makes_the_overfitting_smaller(tmp_path):
    """Measured (1,000 steps): final eval loss 1.117 without dropout, 0.590 with rate 0.5."""
    results = {}
    for rate in (0.0, 0.5):
        config = train.Config(num_steps=1000, dropout_rate=rate, eval_every_steps=500)
        results[rate] = train.train_and_evaluate(config, str(tmp_path / f"rate_{rate}"))
    assert results[0.5]["eval/loss"] < 0.8 * results[0.0]["eval/loss"]
    assert results[0.0]["train/loss"] < results[0.5]["train/loss"]  # Memorizes without dropout.
    for result in results.values():
        assert result["eval/accuracy"] > 0.7  # Well above chance (0.5) either way.


def test_the_gradient_summaries_do_not_change_the_training(tmp_path):
    """Evals and their summaries at every loop, or only at the end: the same training, to the
    last bit. The summaries' thread reads a weights snapshot while training goes on, and the
    gradients it writes are the train step's own (the last step's before each eval, a call of
    the step apart from the loop's others: `steps.run_steps`), so neither may draw from
    the dropout layers' random generators or change a variable the run trains with."""
    every_loop = dataclasses.replace(
        TINY, num_steps=44, eval_every_steps=2, checkpoint_every_steps=100, dropout_off_at_step=100
    )
    at_the_end = dataclasses.replace(every_loop, eval_every_steps=100)
    often = train.train_and_evaluate(every_loop, str(tmp_path / "often"))
    once = train.train_and_evaluate(at_the_end, str(tmp_path / "once"))
    assert often["train/loss"] == once["train/loss"]
    assert often["eval/loss"] == once["eval/loss"]
    often_run = events.load_run(tmp_path / "often" / "train")
    norms = events.scalars(often_run, "gradients/global_norm")
    assert [step for step, _ in norms] == list(range(2, 45, 2))
