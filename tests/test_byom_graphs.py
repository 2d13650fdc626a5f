"""Bring your own model, through the real loop: the graphs and histograms of models the four apps
are not (issue 26, items 2, 3, 4 and 7's histograms).

Each test builds a small model of the kind a user brings (two models with layers of the same name,
a sub-model, batch norm and dropout, named inputs and outputs, a subclassed model), runs it with
`common.loop.training_loop.run`, and reads what TensorBoard shows back through its own loader
(`tests.tensorboard_events`), its server where the failure was the server's, and `make inspect`.
"""

import dataclasses
import urllib.error
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.util import tensor_util

from common import settings
from common.loop import actions, non_finite, train_state, training_loop
from common.summaries import graphs
from scripts import screenshots
from tests import tensorboard_events as events
from tools import inspect_logdir


@dataclasses.dataclass(frozen=True)
class TinyConfig(settings.TrainingSettings):
    num_steps: int = 10
    batch_size: int = 4
    steps_per_loop: int = 3
    eval_every_steps: int = 4
    checkpoint_every_steps: int = 100


EVAL_STEPS = [6, 9, 10]  # Loops end at 3, 6, 9, 10; an eval at the first boundary past 4 and 8.


@dataclasses.dataclass(frozen=True)
class TinyDatasets:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    description: str = "tiny"


def mlp(name: str, outputs: int = 2) -> keras.Model:
    """Two Dense layers named `hidden` and `dense`: what every model of a user's is made of."""
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(outputs, name="dense")(hidden), name=name)


def run_loop(logdir, models, forward, examples=None, config=TinyConfig(), **hooks):
    """Trains `models` on `examples` with the real loop (and its `hooks`); the loss is the mean
    of `forward(batch, training)` (a tensor, or the sum of a dict's means)."""
    state = train_state.TrainState.create(
        config, models, {"loss": keras.metrics.Mean()}, {"loss": keras.metrics.Mean()}
    )

    def mean_loss(batch, training):
        outputs = forward(batch, training)
        parts = outputs.values() if isinstance(outputs, dict) else [outputs]
        return tf.add_n([tf.reduce_mean(part) for part in parts])

    def train_step(state, batch):
        with tf.GradientTape() as tape:
            loss = mean_loss(batch, training=True)
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        state.train_metrics["loss"].update_state(loss)
        return non_finite.loss_or_nan(loss, gradients), gradients

    def eval_step(state, batch):
        state.eval_metrics["loss"].update_state(mean_loss(batch, training=False))

    if examples is None:
        examples = tf.data.Dataset.from_tensor_slices(
            tf.random.stateless_normal([8, 2], seed=(3, 4))
        )
    results = training_loop.run(
        config,
        str(logdir),
        state,
        train_step,
        eval_step,
        lambda: TinyDatasets(examples, examples),
        **hooks,
    )
    return state, results


def histogram_tags(logdir) -> list[str]:
    return sorted(events.tags_by_plugin(events.load_run(logdir / "train"))["histograms"])


def buckets(logdir, tag: str, step: int) -> np.ndarray:
    """The histogram of `tag` at `step`: [bucket, (left edge, right edge, count)]."""
    (event,) = [
        event for event in events.load_run(logdir / "train").Tensors(tag) if event.step == step
    ]
    return tensor_util.make_ndarray(event.tensor_proto)


def assert_histogram_of(logdir, tag: str, step: int, values: np.ndarray) -> None:
    """The histogram is of these values: as many, from their minimum to their maximum."""
    histogram = buckets(logdir, tag, step)
    assert histogram[:, 2].sum() == values.size, tag
    assert histogram[0, 0] == pytest.approx(values.min()) and histogram[-1, 1] == pytest.approx(
        values.max()
    ), tag


def findings(logdir) -> list[inspect_logdir.Finding]:
    return inspect_logdir.inspect_logdir(str(logdir))[1]


def test_two_models_with_layers_of_the_same_name_get_a_histogram_per_variable(tmp_path):
    """A GAN's generator and discriminator, both `hidden` then `dense`: 8 variables, 4 paths.
    Before, 4 weight histograms (one model's) were written for the 8 variables."""
    generator, discriminator = mlp("generator", outputs=2), mlp("discriminator", outputs=1)
    run_loop(
        tmp_path,
        [generator, discriminator],
        lambda batch, training: discriminator(
            generator(batch, training=training), training=training
        ),
    )

    names = [
        f"{model}/{layer}/{variable}"
        for model in ("generator", "discriminator")
        for layer in ("hidden", "dense")
        for variable in ("kernel", "bias")
    ]
    assert histogram_tags(tmp_path) == sorted(
        f"{kind}/{name}" for kind in ("weights", "gradients") for name in names
    )
    train = events.load_run(tmp_path / "train")
    assert all(
        [event.step for event in train.Tensors(tag)] == EVAL_STEPS
        for tag in histogram_tags(tmp_path)
    )
    # Each histogram is its own variable's, at the run's last step (the weights as they end).
    for model in (generator, discriminator):
        for variable in model.trainable_variables:
            assert_histogram_of(
                tmp_path, f"weights/{model.name}/{variable.path}", 10, variable.numpy()
            )
    assert findings(tmp_path) == []


def test_a_sub_model_whose_layer_shares_a_name_with_its_parents_is_tagged_by_its_path(tmp_path):
    """`outer` holds `dense` and the sub-model `encoder`, which has its own `dense`: the two
    `dense/kernel`s are tagged by their models' path; `hidden/kernel`, unique, keeps its tag."""
    encoder = mlp("encoder")
    inputs = keras.Input((2,))
    outer = keras.Model(inputs, keras.layers.Dense(1, name="dense")(encoder(inputs)), name="outer")
    run_loop(tmp_path, [outer], lambda batch, training: outer(batch, training=training))

    names = [
        "hidden/bias",
        "hidden/kernel",
        "outer/dense/bias",
        "outer/dense/kernel",
        "outer/encoder/dense/bias",
        "outer/encoder/dense/kernel",
    ]
    assert histogram_tags(tmp_path) == sorted(
        f"{kind}/{name}" for kind in ("weights", "gradients") for name in names
    )
    assert_histogram_of(
        tmp_path, "weights/outer/dense/kernel", 10, outer.get_layer("dense").kernel.numpy()
    )
    assert_histogram_of(
        tmp_path,
        "weights/outer/encoder/dense/kernel",
        10,
        encoder.get_layer("dense").kernel.numpy(),
    )
    assert findings(tmp_path) == []


def test_batch_norm_statistics_are_histogrammed_beside_the_weights_and_seeds_are_not(tmp_path):
    """BatchNorm's moving mean and variance (non-trainable floats) at every eval, from the weights
    snapshot of that eval; no gradients of them; a dropout's integer seed state left out."""
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    normalized = keras.layers.BatchNormalization(name="norm")(hidden)
    dropped = keras.layers.Dropout(0.5, seed=1, name="dropout")(normalized)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(dropped), name="bn_model")
    assert any("seed" in variable.path for variable in model.variables)  # What must stay out.
    moving_mean = model.get_layer("norm").moving_mean
    seen = {}  # The statistics at each boundary, on the loop's thread: the eval's, at an eval.
    run_loop(
        tmp_path,
        [model],
        lambda batch, training: model(batch, training=training),
        actions=[actions.Callback(lambda step: seen.setdefault(step, moving_mean.numpy().copy()))],
    )

    tags = histogram_tags(tmp_path)
    assert "weights/norm/moving_mean" in tags and "weights/norm/moving_variance" in tags
    assert "gradients/norm/gamma" in tags  # Trainable: weights and gradients.
    assert not any("moving" in tag for tag in tags if tag.startswith("gradients/"))
    assert not any("seed" in tag for tag in tags)
    train = events.load_run(tmp_path / "train")
    assert [event.step for event in train.Tensors("weights/norm/moving_mean")] == EVAL_STEPS
    # The statistics move (training=True updates them), and each eval's histogram holds that
    # eval's, though the summaries are written while the next loop trains.
    assert not np.allclose(seen[6], seen[10])
    for step in EVAL_STEPS:
        assert_histogram_of(tmp_path, "weights/norm/moving_mean", step, seen[step])
    assert findings(tmp_path) == []


def two_heads_model() -> keras.Model:
    """Named inputs and outputs, and a sub-model that has them too: a multi-task model."""
    numbers, flags = keras.Input((3,), name="numbers"), keras.Input((2,), name="flags")
    joined = keras.layers.Concatenate(name="join")([numbers, flags])
    shared = keras.layers.Dense(4, name="shared")(joined)
    trunk = keras.Model(
        {"numbers": numbers, "flags": flags},
        # Not in sorted order: Keras numbers a dict's outputs by sorted key (alpha 0, zeta 1).
        {
            "zeta": keras.layers.Dense(1, name="zeta")(shared),
            "alpha": keras.layers.Dense(2, name="alpha")(shared),
        },
        name="trunk",
    )
    outer_numbers, outer_flags = (
        keras.Input((3,), name="x_numbers"),
        keras.Input((2,), name="x_flags"),
    )
    features = trunk({"numbers": outer_numbers, "flags": outer_flags})
    return keras.Model(
        {"x_numbers": outer_numbers, "x_flags": outer_flags},
        {
            "score": keras.layers.Dense(1, name="score")(features["zeta"]),
            "label": keras.layers.Dense(3, name="label")(features["alpha"]),
        },
        name="two_heads",
    )


def dict_examples() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {
            "x_numbers": tf.random.stateless_normal([8, 3], seed=(1, 1)),
            "x_flags": tf.random.stateless_normal([8, 2], seed=(2, 2)),
        }
    )


def write_as_before(logdir, model: keras.Model) -> None:
    """The conceptual graph as it was written before: `model.to_json()` unchanged."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = graphs.KERAS_MODEL_PLUGIN_NAME
    metadata.plugin_data.content = b"1"
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.write(
            f"keras/{model.name}", tf.constant(model.to_json()), step=0, metadata=metadata
        )
    writer.close()


def test_a_model_with_named_inputs_and_outputs_gets_a_conceptual_graph_tensorboard_serves(
    tmp_path,
):
    """Before: the server answered this graph with HTTP 500 (`KeyError: 0` in keras_util), and
    `make inspect` died on it. Now every layer is drawn, each head wired to its own output of the
    sub-model, the sub-model's inputs to the outer ones; the old form is flagged, not a crash."""
    model = two_heads_model()
    run_loop(
        tmp_path / "new",
        [model],
        lambda batch, training: model(batch, training=training),
        examples=dict_examples(),
    )
    write_as_before(tmp_path / "before" / "train", model)

    graph = events.conceptual_graph(events.load_run(tmp_path / "new" / "train"), "keras/two_heads")
    inputs = {node.name: list(node.input) for node in graph.node}
    assert inputs["two_heads/score"] == ["two_heads/trunk/zeta"]
    assert inputs["two_heads/label"] == ["two_heads/trunk/alpha"]
    assert inputs["two_heads/trunk/numbers"] == ["two_heads/x_numbers"]
    assert inputs["two_heads/trunk/join"] == ["two_heads/trunk/numbers", "two_heads/trunk/flags"]
    assert findings(tmp_path / "new") == []
    (before,) = findings(tmp_path / "before")
    assert before.code == "unreadable-graph"
    assert before.detail == (
        "conceptual graph keras/two_heads: TensorBoard cannot read it (KeyError: 0)"
    )

    with screenshots.tensorboard_server(str(tmp_path), graph_runs=2) as url:

        def conceptual(run: str) -> str:
            query = urllib.parse.urlencode(
                {"run": run, "tag": "keras/two_heads", "conceptual": "true"}
            )
            with urllib.request.urlopen(
                f"{url}/data/plugin/graphs/graph?{query}", timeout=60
            ) as reply:
                return reply.read().decode()

        served = conceptual("new/train")
        with pytest.raises(urllib.error.HTTPError) as refused:
            conceptual("before/train")
    assert 'name: "two_heads/trunk/zeta"' in served and 'input: "two_heads/trunk/zeta"' in served
    assert refused.value.code == 500  # What the old form got, and still gets.


class Subclassed(keras.Model):
    """A model written as a class: its layers live in `call`, which Keras's config cannot list."""

    def __init__(self) -> None:
        super().__init__(name="subclassed")
        self.hidden = keras.layers.Dense(3, activation="relu", name="hidden")
        self.out = keras.layers.Dense(1, name="out")

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))


def test_a_subclassed_model_gets_one_line_instead_of_an_empty_conceptual_graph(tmp_path, capsys):
    """Before: a conceptual graph of one node and no layers, written without a word, and inspect
    called it clean. Now none is written, one line says the op graph is the view, and the op
    graph, the model summary and the histograms are all there."""
    model = Subclassed()
    model(tf.zeros([1, 2]))  # Built by a call (building an unbuilt one is TrainState's part).
    run_loop(tmp_path, [model], lambda batch, training: model(batch, training=training))

    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("graphs:")]
    assert lines == [
        "graphs: keras/subclassed not written: subclassed is a subclassed keras.Model (class "
        "Subclassed), whose layers Keras's config does not list, so its conceptual graph would "
        "be one node; the op graph graph/train_step is the view of it"
    ]
    train = events.load_run(tmp_path / "train")
    plugins = events.tags_by_plugin(train)
    assert events.KERAS_GRAPH_PLUGIN not in plugins
    assert plugins[events.OP_GRAPH_PLUGIN] == ["graph/train_step"]
    assert {"MatMul", "ReluGrad", "BiasAddGrad"} <= events.op_types(
        events.op_graph(train, "graph/train_step")
    )
    assert "hidden (Dense)" in events.text(train, "model_summary/subclassed")
    assert "weights/subclassed/hidden/kernel" in plugins["histograms"]
    assert findings(tmp_path) == []
