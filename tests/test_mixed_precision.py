"""--mixed_precision on CPU, for correctness (speed on GPUs is for later): read back as TensorBoard
shows the runs.

regression_tape (the fastest app) runs both 16-bit policies end to end, resumes, skips the steps
whose gradients overflow float16 and stops once every step does; the other apps run one policy
each, end to end, through their own eval paths and summaries.
"""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps.conditional_dropout import train as dropout_train
from apps.mnist_mlp import train as mnist_train
from apps.regression_tape import data as regression_data
from apps.regression_tape import train as regression_train
from apps.vae_timeseries import train as vae_train
from common import distribution, errors, settings
from common.checkpoints import checkpoints
from common.loop import mixed_precision, non_finite, train_state, training_loop
from tests import tensorboard_events as events
from tests.app_cli import files_and_contents
from tests.conftest import NUM_TEST_CPU_DEVICES
from tests.test_conditional_dropout import TINY as DROPOUT_TINY
from tests.test_mnist_mlp import small_datasets as mnist_datasets
from tests.test_vae_timeseries import TINY as VAE_TINY

TINY = regression_train.Config(num_steps=6, batch_size=16, steps_per_loop=2, eval_every_steps=4)
# The op graph's Cast ops name their types by these DataType numbers (types.proto).
FLOAT32, FLOAT16, BFLOAT16 = tf.float32.as_datatype_enum, tf.float16.as_datatype_enum, 14
SIXTEEN_BITS = {"mixed_float16": FLOAT16, "mixed_bfloat16": BFLOAT16}
INITIAL_LOSS_SCALE = 2.0**15  # keras.optimizers.LossScaleOptimizer's default.


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
    """A test that leaves a 16-bit global policy behind would build every later test's models in
    it: the runs reset it themselves, a model built outside one does not."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def regression_datasets(target_factor: float = 1.0) -> regression_data.Datasets:
    """The small regression sets, targets times `target_factor` (large ones overflow float16)."""
    datasets = regression_data.make_datasets(seed=0, num_train=256, num_test=64)
    if target_factor == 1.0:
        return datasets

    def scale(features: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return features, targets * target_factor

    return dataclasses.replace(
        datasets, train=datasets.train.map(scale), eval=datasets.eval.map(scale)
    )


def casts(graph) -> set[tuple[int, int]]:
    """(source type, destination type) of every Cast op in an op graph."""
    return {
        (node.attr["SrcT"].type, node.attr["DstT"].type) for node in graph.node if node.op == "Cast"
    }


def checkpoint_value(logdir, name: str) -> np.ndarray:
    """A variable of the latest checkpoint, by its object-graph path."""
    checkpoint = tf.train.latest_checkpoint(str(logdir / "checkpoints"))
    return tf.train.load_variable(checkpoint, f"{name}/.ATTRIBUTES/VARIABLE_VALUE")


def test_every_choice_of_the_setting_has_a_keras_policy():
    assert tuple(mixed_precision.POLICIES) == settings.MIXED_PRECISION_NAMES
    assert settings.TrainingSettings().mixed_precision == "none"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "none"])
def test_the_model_computes_in_16_bits_with_float32_variables_and_outputs(policy):
    config = dataclasses.replace(TINY, mixed_precision=policy)
    keras.mixed_precision.set_global_policy("mixed_float16")  # A previous run's: reset below.
    strategy = training_loop.create_strategy(config)
    with strategy.scope():
        state = regression_train.create_state(config)
    compute = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16", "none": "float32"}[policy]
    assert state.model.get_layer("hidden_1").compute_dtype == compute
    assert state.model.get_layer("prediction").compute_dtype == "float32"  # A safe loss.
    assert state.model(tf.zeros([2, regression_data.NUM_FEATURES])).dtype == tf.float32
    assert {variable.dtype for variable in state.model.variables} == {"float32"}
    scaled = isinstance(state.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    loss = tf.constant(2.0)
    gradients = [tf.constant([4.0]), None]
    if scaled:
        assert float(state.scale_loss(loss)) == 2.0 * INITIAL_LOSS_SCALE
        unscaled = state.unscale([gradients[0] * INITIAL_LOSS_SCALE, None])
        assert float(unscaled[0][0]) == 4.0 and unscaled[1] is None
        sparse = tf.IndexedSlices(tf.constant([[8.0]]), tf.constant([0]), tf.constant([3, 1]))
        assert isinstance(state.unscale([sparse])[0], tf.IndexedSlices)  # An embedding's.
    else:  # The identity: not even an op is added to the step.
        assert state.scale_loss(loss) is loss
        assert state.unscale(gradients) == gradients


def test_non_finite_gradients_stop_a_loss_scaled_run_only_once_the_scale_is_below_one():
    loss, nan_gradients = tf.constant(1.5), [tf.constant([np.nan, 1.0])]
    assert math.isnan(non_finite.loss_or_nan(loss, nan_gradients))  # Unscaled: a NaN stops.
    # Dynamic loss scaling skips such a step and halves the scale: no reason to stop...
    assert non_finite.loss_or_nan(loss, nan_gradients, tf.Variable(2.0)) == 1.5
    # ...until every step is skipped (NaN data, or values float16 cannot hold even unscaled).
    assert math.isnan(non_finite.loss_or_nan(loss, nan_gradients, tf.Variable(0.5)))
    assert math.isnan(non_finite.loss_or_nan(tf.constant(np.nan), [], tf.Variable(1024.0)))


def test_with_mirrored_replicas_every_replica_skips_the_step_one_replica_overflowed():
    """Keras's LossScaleOptimizer decides from the first replica's gradients alone: a second
    replica's overflow was applied, and the weights went non-finite. Here all replicas agree."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribution.create_strategy("mirrored", NUM_TEST_CPU_DEVICES)
    config = dataclasses.replace(TINY, batch_size=4, mixed_precision="mixed_float16")
    with strategy.scope():
        features = keras.Input(shape=(4,))
        hidden = keras.layers.Dense(4, name="hidden")(features)
        model = keras.Model(features, keras.layers.Dense(1, dtype="float32")(hidden))
        state = train_state.TrainState.create(config, [model], {}, {})
    weights = [variable.numpy() for variable in model.variables]
    # The first replica gets the two small targets, the second two that overflow float16's
    # gradients at any scale above 1.
    examples = (tf.ones([4, 4]), tf.constant([[0.0], [0.0], [1e6], [1e6]]))
    batch = next(
        iter(
            strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensor_slices(examples).batch(4)
            )
        )
    )

    def replica_step(features: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            losses = tf.reduce_sum(tf.square(model(features) - targets), axis=-1)
            scaled_loss = state.scale_loss(state.average_loss(losses))
        scaled_gradients = tape.gradient(scaled_loss, state.trainable_variables)
        state.optimizer.apply_gradients(
            zip(scaled_gradients, state.trainable_variables, strict=True)
        )
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(grad)) for grad in scaled_gradients])

    finite = strategy.experimental_local_results(
        tf.function(lambda batch: strategy.run(replica_step, args=batch))(batch)
    )
    assert [bool(value) for value in finite] == [True, False]  # Only the second overflowed.
    for variable, before in zip(model.variables, weights, strict=True):
        np.testing.assert_array_equal(variable.numpy(), before)  # Skipped on both replicas.
    assert float(state.optimizer.dynamic_scale.numpy()) == INITIAL_LOSS_SCALE / 2
    assert int(state.optimizer.iterations.numpy()) == 0


@pytest.fixture(scope="module")
def float16_run(tmp_path_factory):
    """A mixed_float16 run of 6 steps, then resumed to 10: (logdir, metrics, resumed metrics)."""
    logdir = tmp_path_factory.mktemp("mixed_float16") / "run"
    config = dataclasses.replace(TINY, mixed_precision="mixed_float16")
    metrics = regression_train.train_and_evaluate(config, str(logdir), regression_datasets())
    resumed = regression_train.train_and_evaluate(
        dataclasses.replace(config, num_steps=10), str(logdir), regression_datasets()
    )
    return logdir, metrics, resumed


def test_mixed_float16_logs_finite_losses_and_the_loss_scale(float16_run):
    logdir, metrics, _ = float16_run
    train_run, eval_run = events.load_run(logdir / "train"), events.load_run(logdir / "eval")
    for run, tag, steps in [
        (train_run, "loss", [2, 4, 6, 8, 10]),
        (train_run, "gradient_norm/global", [2, 4, 6, 8, 10]),
        (eval_run, "rmse", [4, 6, 8, 10]),
    ]:
        points = events.scalars(run, tag)
        assert [step for step, _ in points] == steps, tag
        assert all(math.isfinite(value) for _, value in points), tag
    scales = events.scalars(train_run, "loss_scale")
    assert [step for step, _ in scales] == [2, 4, 6, 8, 10]
    assert all(0 < value <= INITIAL_LOSS_SCALE for _, value in scales)
    assert metrics["train/loss_scale"] == scales[2][1]
    # Gradient histograms of the true (unscaled) gradients: their norm is the loss's, not 2**15
    # times it.
    assert events.scalars(train_run, "gradients/global_norm")[0][1] < 100
    assert "| mixed_precision | mixed_float16 |" in events.text(train_run, "config")


def test_mixed_float16_casts_to_and_from_float16_in_the_op_graph(float16_run):
    logdir, _, _ = float16_run
    graph = events.op_graph(events.load_run(logdir / "train"), "graph/train_step")
    assert {(FLOAT32, FLOAT16), (FLOAT16, FLOAT32)} <= casts(graph)
    assert "MatMul" in events.op_types(graph)


def test_mixed_float16_resumes_with_its_loss_scale(float16_run):
    logdir, _, resumed = float16_run
    assert resumed["resumed_from_step"] == 6 and resumed["steps"] == 10
    assert math.isfinite(resumed["eval/rmse"]) and resumed["train_step_traces"] == 1
    # The scale is part of the checkpoint, beside the wrapped Adam's state.
    assert checkpoint_value(logdir, "optimizer/dynamic_scale") == resumed["train/loss_scale"]
    assert checkpoint_value(logdir, "optimizer/inner_optimizer/_iterations") > 0


def test_overflowed_steps_are_skipped_and_the_lowered_scale_survives_a_resume(tmp_path):
    """Large targets overflow float16's gradients at the first scales: the optimizer skips those
    steps and halves the scale, and the run goes on. Resumed, it carries on at the lowered scale;
    restarted at 2**15, it would skip the same steps again."""
    config = dataclasses.replace(TINY, mixed_precision="mixed_float16")
    datasets = regression_datasets(target_factor=30.0)
    metrics = regression_train.train_and_evaluate(config, str(tmp_path), datasets)
    assert metrics["steps"] == 6 and math.isfinite(metrics["train/loss"])
    skipped = 6 - checkpoint_value(tmp_path, "optimizer/inner_optimizer/_iterations")
    assert skipped > 0
    train_run = events.load_run(tmp_path / "train")
    scales = events.scalars(train_run, "loss_scale")
    assert scales[-1][1] == INITIAL_LOSS_SCALE / 2**skipped
    # The mean gradient norms are of the steps taken: a skipped step's Inf is not averaged in;
    # and no eval writes a skipped step's (never applied) gradients.
    for tag in ("gradient_norm/global", "gradients/global_norm"):
        assert all(math.isfinite(value) for _, value in events.scalars(train_run, tag)), tag

    resumed = regression_train.train_and_evaluate(
        dataclasses.replace(config, num_steps=12), str(tmp_path), datasets
    )
    assert resumed["resumed_from_step"] == 6 and math.isfinite(resumed["train/loss"])
    assert 12 - checkpoint_value(tmp_path, "optimizer/inner_optimizer/_iterations") == skipped
    scales = events.scalars(events.load_run(tmp_path / "train"), "loss_scale")
    assert [value for step, value in scales if step > 6] == [scales[2][1]] * 3


def test_a_run_whose_every_step_overflows_stops_in_one_line_when_the_scale_falls_below_one(
    tmp_path,
):
    """Targets of 1e7 overflow float16 at any scale: after 16 halvings from 2**15 the run stops
    (silently skipping every step would train nothing), saving nothing, saying why."""
    config = dataclasses.replace(
        TINY, num_steps=40, steps_per_loop=40, eval_every_steps=40, mixed_precision="mixed_float16"
    )
    with pytest.raises(errors.NonFiniteLossError) as raised:
        regression_train.train_and_evaluate(
            config, str(tmp_path), regression_datasets(target_factor=1e7)
        )
    message = str(raised.value)
    assert "at step 16;" in message and "\n" not in message
    assert "mixed_float16" in message and "loss scale fell to 0.5" in message
    assert not list((tmp_path / "checkpoints").glob("ckpt-*"))


def test_mixed_bfloat16_casts_to_bfloat16_and_scales_no_loss(tmp_path):
    config = dataclasses.replace(TINY, mixed_precision="mixed_bfloat16")
    metrics = regression_train.train_and_evaluate(config, str(tmp_path), regression_datasets())
    train_run = events.load_run(tmp_path / "train")
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["eval/rmse"])
    assert {(FLOAT32, BFLOAT16), (BFLOAT16, FLOAT32)} <= casts(
        events.op_graph(train_run, "graph/train_step")
    )
    assert "loss_scale" not in events.tags_by_plugin(train_run)["scalars"]
    assert "train/loss_scale" not in metrics


@pytest.mark.parametrize(
    ("name", "policy"),
    [
        ("mnist_mlp", "mixed_bfloat16"),
        ("vae_timeseries", "mixed_float16"),
        ("conditional_dropout", "mixed_float16"),
    ],
)
def test_every_app_trains_and_evaluates_under_a_16_bit_policy(name, policy, tmp_path):
    """The app's own step, eval step, metrics and eval summaries (images, PR curves, projector)
    take the 16-bit model: finite train and eval scalars, the casts in the op graph."""
    module, config, datasets = {
        "mnist_mlp": (
            mnist_train,
            mnist_train.Config(num_steps=4, batch_size=8, steps_per_loop=2, eval_every_steps=4),
            mnist_datasets(),
        ),
        "vae_timeseries": (vae_train, VAE_TINY, None),
        "conditional_dropout": (dropout_train, DROPOUT_TINY, None),
    }[name]
    config = dataclasses.replace(config, mixed_precision=policy)
    metrics = module.train_and_evaluate(config, str(tmp_path), datasets=datasets)
    assert metrics["steps"] == config.num_steps
    train_run, eval_run = events.load_run(tmp_path / "train"), events.load_run(tmp_path / "eval")
    for run in (train_run, eval_run):
        for tag in events.tags_by_plugin(run)["scalars"]:
            if tag != "gradients/global_norm":  # Absent where that step was skipped.
                points = events.scalars(run, tag)
                assert points and all(math.isfinite(value) for _, value in points), tag
    sixteen_bits = SIXTEEN_BITS[policy]
    graph = events.op_graph(train_run, "graph/train_step")
    assert {(FLOAT32, sixteen_bits), (sixteen_bits, FLOAT32)} <= casts(graph)
    has_scale = "loss_scale" in events.tags_by_plugin(train_run)["scalars"]
    assert has_scale == (policy == "mixed_float16")
    if name != "conditional_dropout":  # The Projector's points: a 16-bit layer's, on_eval's.
        _, embeddings, _ = events.projector_embedding(eval_run.path)
        assert embeddings.size and np.isfinite(embeddings).all()


def test_a_resume_that_adds_or_drops_loss_scaling_is_refused_in_one_line(tmp_path):
    """The optimizer's checkpoint differs with and without loss scaling: TensorFlow's own error
    is a dtype mismatch deep inside it, so the refusal names the setting instead."""
    config = dataclasses.replace(TINY, num_steps=2, eval_every_steps=2)
    regression_train.train_and_evaluate(config, str(tmp_path), regression_datasets())
    before = files_and_contents(tmp_path)
    with pytest.raises(checkpoints.CheckpointMismatchError) as raised:
        regression_train.train_and_evaluate(
            dataclasses.replace(config, num_steps=4, mixed_precision="mixed_float16"),
            str(tmp_path),
            regression_datasets(),
        )
    message = str(raised.value)
    assert "\n" not in message
    assert "saved without mixed_float16's loss scaling" in message
    assert "resume with the --mixed_precision it was trained with" in message
    assert files_and_contents(tmp_path) == before  # Nothing written: the earlier run is intact.
