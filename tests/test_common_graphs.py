"""common.summaries.graphs: the op graph of a real train step, the Keras graph, and the model
summary."""

import keras
import pytest
import tensorflow as tf
from tensorboard.plugins.graph import keras_util

from common.summaries import graphs
from tests import tensorboard_events as events
from tools import inspect_logdir

# Ops that prove the graph is the whole step, not only the forward pass.
FORWARD_OPS = {"MatMul", "BiasAdd", "Relu", "SparseSoftmaxCrossEntropyWithLogits"}
GRADIENT_OPS = {"ReluGrad", "BiasAddGrad"}
OPTIMIZER_OPS = {"AssignSubVariableOp", "Sqrt"}  # Adam's update: v -= lr * m / (sqrt(v) + eps).


def make_model_and_step():
    """A tiny Functional MLP and its tf.function train step, optimizer built up front."""
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(3, name="logits")(hidden)
    model = keras.Model(inputs, logits, name="tiny")
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)

    @tf.function
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels, model(features, training=True)
                )
            )
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    batch = (tf.random.stateless_normal((5, 4), seed=(1, 2)), tf.constant([0, 1, 2, 0, 1]))
    return model, train_step, batch


def test_first_execution_writes_the_whole_step_as_one_graph(tmp_path):
    model, train_step, batch = make_model_and_step()
    kernel_before = model.get_layer("hidden").kernel.numpy().copy()
    writer = tf.summary.create_file_writer(str(tmp_path))

    loss = graphs.trace_step_graph(train_step, batch, writer, name="train_step")
    writer.close()

    assert loss.shape == () and tf.math.is_finite(loss)
    # The traced call was a real training step.
    assert (model.get_layer("hidden").kernel.numpy() != kernel_before).any()
    run = events.load_run(tmp_path)
    assert events.tags_by_plugin(run)[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert events.function_graph_count(run, "graph/train_step") == 1
    ops = events.op_types(events.op_graph(run, "graph/train_step"))
    assert ops >= FORWARD_OPS | GRADIENT_OPS | OPTIMIZER_OPS
    assert train_step.experimental_get_tracing_count() == 1


def test_a_step_that_already_ran_falls_back_to_its_concrete_graph(tmp_path, caplog):
    _, train_step, batch = make_model_and_step()
    train_step(*batch)  # The timing trap: tracing now would record nothing of this function.
    writer = tf.summary.create_file_writer(str(tmp_path))

    graphs.trace_step_graph(train_step, batch, writer)
    writer.close()

    assert "had already run" in caplog.text
    run = events.load_run(tmp_path)
    assert events.OP_GRAPH_PLUGIN not in events.tags_by_plugin(run)  # No near-empty trace written.
    ops = events.op_types(run.Graph())  # The run-level graph the dashboard shows instead.
    assert ops >= FORWARD_OPS | GRADIENT_OPS | OPTIMIZER_OPS
    assert train_step.experimental_get_tracing_count() == 1  # No retrace for the fallback.


def test_an_xla_compiled_step_still_gets_its_graph(tmp_path):
    """trace_export records 0 graphs of a jit_compile=True function; the fallback must kick in."""
    model, _, batch = make_model_and_step()
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def compiled_step(features, labels):
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    writer = tf.summary.create_file_writer(str(tmp_path))
    loss = graphs.trace_step_graph(compiled_step, batch, writer)
    writer.close()
    assert tf.math.is_finite(loss)
    ops = events.op_types(events.load_run(tmp_path).Graph())
    assert ops >= FORWARD_OPS | GRADIENT_OPS | OPTIMIZER_OPS
    assert compiled_step.experimental_get_tracing_count() == 1


def test_eager_function_is_refused():
    def eager_step(x):
        return x + 1

    with pytest.raises(TypeError, match=r"needs a tf\.function"):
        graphs.trace_step_graph(eager_step, (tf.constant(1.0),), writer=None)


def test_failing_step_turns_tracing_off_and_propagates(tmp_path):
    @tf.function
    def failing_step(x):
        tf.debugging.assert_positive(x)
        return x

    writer = tf.summary.create_file_writer(str(tmp_path))
    with pytest.raises(tf.errors.InvalidArgumentError):
        graphs.trace_step_graph(failing_step, (tf.constant(-1.0),), writer)
    # Tracing was turned off: a fresh trace works and records only the new function.
    _, train_step, batch = make_model_and_step()
    graphs.trace_step_graph(train_step, batch, writer, name="after_failure")
    writer.close()
    run = events.load_run(tmp_path)
    assert events.function_graph_count(run, "graph/after_failure") == 1


def test_nothing_is_collected_between_traces(tmp_path):
    """TF's trace_off leaves graph collection on; graphs from between traces must not leak in."""
    writer = tf.summary.create_file_writer(str(tmp_path))
    _, first_step, batch = make_model_and_step()
    graphs.trace_step_graph(first_step, batch, writer, name="first")

    @tf.function
    def unrelated(x):
        return x * 3

    unrelated(tf.constant(1.0))
    _, second_step, batch = make_model_and_step()  # Eager variable creation: more graphs.
    graphs.trace_step_graph(second_step, batch, writer, name="second")
    writer.close()
    run = events.load_run(tmp_path)
    assert events.function_graph_count(run, "graph/first") == 1
    assert events.function_graph_count(run, "graph/second") == 1


def test_keras_graph_is_the_conceptual_graph_tensorboard_draws(tmp_path):
    model, _, _ = make_model_and_step()
    writer = tf.summary.create_file_writer(str(tmp_path))
    graphs.write_keras_graph(model, writer)
    writer.close()

    run = events.load_run(tmp_path)
    assert events.tags_by_plugin(run)[events.KERAS_GRAPH_PLUGIN] == ["keras/tiny"]
    nodes = {node.name: node for node in events.conceptual_graph(run, "keras/tiny").node}
    assert {"tiny/features", "tiny/hidden", "tiny/logits"} <= set(nodes)
    assert list(nodes["tiny/logits"].input) == ["tiny/hidden"]


def test_model_summary_is_complete_markdown_text(tmp_path):
    model, _, _ = make_model_and_step()
    summary = graphs.model_summary_text(model)
    assert graphs.model_summary_text(model) == summary  # Deterministic, nothing printed twice.
    for expected in ("hidden (Dense)", "logits (Dense)", "Param #", "Total params: 67"):
        assert expected in summary

    writer = tf.summary.create_file_writer(str(tmp_path))
    graphs.write_model_summary(model, writer)
    writer.close()
    written = events.text(events.load_run(tmp_path), "model_summary/tiny")
    assert written.startswith("```\n") and written.endswith("\n```")
    assert "Param #" in written


def test_trace_and_write_graphs_writes_all_three_views(tmp_path):
    model, train_step, batch = make_model_and_step()
    writer = tf.summary.create_file_writer(str(tmp_path))
    graphs.trace_and_write_graphs(train_step, batch, [model], writer)
    writer.close()
    plugins = events.tags_by_plugin(events.load_run(tmp_path))
    assert plugins[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert plugins[events.KERAS_GRAPH_PLUGIN] == ["keras/tiny"]
    assert plugins["text"] == ["model_summary/tiny"]


def make_step_with_an_unbuilt_optimizer():
    """The popular code: Adam made, never built, so its first apply_gradients creates its slots
    inside the tf.function's first call."""
    model, _, batch = make_model_and_step()
    optimizer = keras.optimizers.Adam(0.01)

    @tf.function
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return model, train_step, batch


def test_a_step_that_creates_its_optimizers_variables_gets_its_graph_and_one_warning(
    tmp_path, caplog
):
    """Traced twice, its trace was 15 to 21 function graphs, most of them one-op initializers,
    written as graph/train_step with no word. Now: the concrete function's graph, one line."""
    model, train_step, batch = make_step_with_an_unbuilt_optimizer()
    writer = tf.summary.create_file_writer(str(tmp_path))
    graphs.trace_and_write_graphs(train_step, batch, [model], writer)
    writer.close()

    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("train_step created variables on its first call")
    assert "optimizer.build(model.trainable_variables)" in warnings[0]
    run = events.load_run(tmp_path)
    assert events.OP_GRAPH_PLUGIN not in events.tags_by_plugin(run)  # No fragments written.
    assert events.op_types(run.Graph()) >= FORWARD_OPS | GRADIENT_OPS | OPTIMIZER_OPS
    assert train_step.experimental_get_tracing_count() == 2  # No third trace for the graph.
    assert inspect_logdir.inspect_logdir(str(tmp_path))[1] == []


def step_that_fails():
    @tf.function
    def failing_step(x):
        tf.debugging.assert_positive(x)
        return x

    return failing_step, (tf.constant(-1.0),)


@pytest.mark.parametrize("case", ["already ran", "unbuilt optimizer", "fails"])
def test_nothing_is_written_into_the_callers_default_writer(tmp_path, case):
    """A trace that is dropped was exported into tf.summary.create_noop_writer(), whose
    as_default() leaves the caller's default writer in place: an empty `discarded` op graph
    landed in the caller's run. Only the writer passed is written to."""
    if case == "fails":
        step, batch = step_that_fails()
    elif case == "unbuilt optimizer":
        _, step, batch = make_step_with_an_unbuilt_optimizer()
    else:
        _, step, batch = make_model_and_step()
        step(*batch)
    callers = tf.summary.create_file_writer(str(tmp_path / "callers"))
    passed = tf.summary.create_file_writer(str(tmp_path / "passed"))
    with callers.as_default(step=0):
        try:
            graphs.trace_step_graph(step, batch, passed)
        except tf.errors.InvalidArgumentError:
            assert case == "fails"
        tf.summary.scalar("callers_own", 1.0)  # The caller's writer still works, and is its own.
    callers.close()
    passed.close()
    callers_run = events.load_run(tmp_path / "callers")
    assert events.tags_by_plugin(callers_run) == {"scalars": ["callers_own"]}
    assert not callers_run.Tags()["graph"]
    if case != "fails":
        assert events.op_types(events.load_run(tmp_path / "passed").Graph()) >= FORWARD_OPS


def test_a_functional_models_conceptual_graph_is_its_json_byte_for_byte(tmp_path):
    """Normalizing for the dashboard changes nothing that it already draws."""
    model, _, _ = make_model_and_step()
    writer = tf.summary.create_file_writer(str(tmp_path))
    assert graphs.write_keras_graph(model, writer) is None
    writer.close()
    (point,) = events.load_run(tmp_path).Tensors("keras/tiny")
    assert point.tensor_proto.string_val[0] == model.to_json().encode()


def test_a_conceptual_graph_the_dashboard_cannot_build_is_skipped_in_one_line(
    tmp_path, capsys, monkeypatch
):
    """Whatever keras_util fails on (a config shape this code does not know yet) is not written
    for the dashboard to answer with HTTP 500: one line instead, and the op graph's tag."""
    model, _, _ = make_model_and_step()

    def fails(config):
        raise KeyError(0)

    monkeypatch.setattr(graphs.keras_util, "keras_model_to_graph_def", fails)
    writer = tf.summary.create_file_writer(str(tmp_path))
    line = graphs.write_keras_graph(model, writer, op_graph_name="my_step")
    writer.close()
    assert line == (
        "graphs: keras/tiny not written: TensorBoard's Graphs plugin cannot draw tiny's config "
        "(KeyError: 0); the op graph graph/my_step is the view of it"
    )
    assert capsys.readouterr().out == line + "\n"
    assert events.KERAS_GRAPH_PLUGIN not in events.tags_by_plugin(events.load_run(tmp_path))


def test_a_sub_models_inputs_are_linked_to_the_layers_that_feed_them():
    """A sub-model of two inputs: keras_util named them from Keras's `[name, 0, 0]` lists, so
    `outer/x` and `outer/y` fed nothing and the sub-model's inputs hung loose."""
    first, second = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate(name="join")([first, second])
    inner = keras.Model([first, second], keras.layers.Dense(1, name="dense")(joined), name="inner")
    x, y = keras.Input((3,), name="x"), keras.Input((2,), name="y")
    outer = keras.Model([x, y], keras.layers.Dense(1, name="head")(inner([x, y])), name="outer")

    graph = keras_util.keras_model_to_graph_def(graphs.keras_graph_config(outer))
    inputs = {node.name: list(node.input) for node in graph.node}
    assert inputs["outer/inner/a"] == ["outer/x"] and inputs["outer/inner/b"] == ["outer/y"]
    assert inputs["outer/head"] == ["outer/inner/dense"]
