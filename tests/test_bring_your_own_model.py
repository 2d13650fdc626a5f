"""Models nobody here wrote, through the real loop: two optimizers, a subclassed model, a config the
step reads, settings changed on resume. Each case is a small model of that kind, made here."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import settings
from common.checkpoints import checkpoints, resumed_settings
from common.loop import actions, non_finite, train_state, training_loop, training_run
from tests import tensorboard_events as events


@dataclasses.dataclass(frozen=True)
class GanConfig(settings.TrainingSettings):
    num_steps: int = 6
    batch_size: int = 4
    steps_per_loop: int = 3
    eval_every_steps: int = 3
    checkpoint_every_steps: int = 3
    discriminator_learning_rate: float = settings.setting(4e-3, "The discriminator's Adam rate.")
    real_weight: float = settings.setting(1.0, "Weight of the real examples' loss.")


@dataclasses.dataclass(frozen=True)
class Datasets:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    description: str = "points on a line"


def dense_model(name: str, inputs: int, outputs: int, activation=None) -> keras.Model:
    features = keras.Input(shape=(inputs,))
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(features)
    return keras.Model(
        features, keras.layers.Dense(outputs, activation, name="out")(hidden), name=name
    )


def gan_state(config: GanConfig) -> train_state.TrainState:
    generator = dense_model("generator", 2, 2)
    discriminator = dense_model("discriminator", 2, 1)
    return train_state.TrainState.create(
        config,
        [generator, discriminator],
        {"generator_loss": keras.metrics.Mean(), "discriminator_loss": keras.metrics.Mean()},
        {"discriminator_accuracy": keras.metrics.BinaryAccuracy()},
        optimizers={
            "generator": (keras.optimizers.Adam(config.learning_rate), [generator]),
            "discriminator": (
                keras.optimizers.Adam(config.discriminator_learning_rate),
                [discriminator],
            ),
        },
    )


def gan_train_step(state: train_state.TrainState, real: tf.Tensor):
    """Two tapes and two optimizers; the loss weight comes from the config, through the state.
    Each loss is scaled by its own optimizer (the identity unless --mixed_precision=mixed_float16
    gives each a loss scale)."""
    generator, discriminator = state.models
    generator_optimizer = state.optimizers["generator"]
    discriminator_optimizer = state.optimizers["discriminator"]
    noise = tf.random.normal(tf.shape(real))
    bce = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)
    with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
        fake = generator(noise, training=True)
        real_logits = discriminator(real, training=True)
        fake_logits = discriminator(fake, training=True)
        generator_loss = state.average_loss(bce(tf.ones_like(fake_logits), fake_logits))
        discriminator_loss = state.average_loss(
            state.config.real_weight * bce(tf.ones_like(real_logits), real_logits)
            + bce(tf.zeros_like(fake_logits), fake_logits)
        )
        scaled_generator_loss = state.scale_loss(generator_loss, generator_optimizer)
        scaled_discriminator_loss = state.scale_loss(discriminator_loss, discriminator_optimizer)
    scaled_generator_gradients = generator_tape.gradient(
        scaled_generator_loss, generator.trainable_variables
    )
    scaled_discriminator_gradients = discriminator_tape.gradient(
        scaled_discriminator_loss, discriminator.trainable_variables
    )
    gradients = state.unscale(scaled_generator_gradients, generator_optimizer) + state.unscale(
        scaled_discriminator_gradients, discriminator_optimizer
    )  # In state.trainable_variables' order: the generator's, then the discriminator's.
    generator_optimizer.apply_gradients(
        zip(scaled_generator_gradients, generator.trainable_variables, strict=True)
    )
    discriminator_optimizer.apply_gradients(
        zip(scaled_discriminator_gradients, discriminator.trainable_variables, strict=True)
    )
    state.train_metrics["generator_loss"].update_state(generator_loss)
    state.train_metrics["discriminator_loss"].update_state(discriminator_loss)
    return state.loss_or_nan(generator_loss + discriminator_loss, gradients), gradients


def gan_eval_step(state: train_state.TrainState, real: tf.Tensor) -> None:
    logits = state.models[1](real, training=False)
    state.eval_metrics["discriminator_accuracy"].update_state(tf.ones_like(logits), logits)


def train_gan(logdir, config: GanConfig, **hooks) -> tuple[train_state.TrainState, dict]:
    examples = tf.data.Dataset.from_tensor_slices(
        np.stack([np.linspace(0, 1, 32), np.linspace(1, 2, 32)], 1).astype(np.float32)
    )
    state = gan_state(config)
    results = training_loop.run(
        config,
        str(logdir),
        state,
        gan_train_step,
        gan_eval_step,
        lambda: Datasets(examples, examples.take(8)),
        **hooks,
    )
    return state, results


def test_two_optimizers_each_hold_their_own_models_and_both_resume(tmp_path):
    state, results = train_gan(tmp_path, GanConfig(num_steps=3))
    generator, discriminator = state.models
    # Each Adam has its iteration counter, its learning rate and two moments per variable of its
    # own model: none for the other's.
    for name, model in (("generator", generator), ("discriminator", discriminator)):
        optimizer = state.optimizers[name]
        assert len(optimizer.variables) == 2 + 2 * len(model.trainable_variables)
        assert int(optimizer.iterations.numpy()) == 3
    with pytest.raises(AttributeError, match=r"state\.optimizers"):
        _ = state.optimizer
    # Resumed with 3 more steps: both optimizers restored (their moments too), not one reset.
    state, results = train_gan(tmp_path, GanConfig(num_steps=6))
    assert results["resumed_from_step"] == 3 and results["steps"] == 6
    assert {name: int(o.iterations.numpy()) for name, o in state.optimizers.items()} == {
        "generator": 6,
        "discriminator": 6,
    }
    train = events.load_run(tmp_path / "train")
    assert events.scalars(train, "learning_rate/generator") == [
        (3, pytest.approx(1e-3)),
        (6, pytest.approx(1e-3)),
    ]
    assert [value for _, value in events.scalars(train, "learning_rate/discriminator")] == [
        pytest.approx(4e-3)
    ] * 2
    assert all(np.isfinite(value) for _, value in events.scalars(train, "generator_loss"))


def test_a_checkpoint_keeps_each_optimizer_under_its_name(tmp_path):
    state = gan_state(GanConfig())
    assert set(train_state.checkpoint_objects(state)) == {
        "generator",
        "discriminator",
        "generator_optimizer",
        "discriminator_optimizer",
    }
    with pytest.raises(ValueError, match="not in models"):
        train_state.TrainState.create(
            GanConfig(),
            [state.models[0]],
            {},
            {},
            optimizers={"d": (keras.optimizers.Adam(), [state.models[1]])},
        )


class Subclassed(keras.Model):
    """The usual subclassed model: its layers make their weights at its first call."""

    def __init__(self) -> None:
        super().__init__(name="subclassed")
        self.hidden = keras.layers.Dense(3, activation="relu")
        self.out = keras.layers.Dense(1)

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))


def test_an_unbuilt_subclassed_model_is_refused_in_one_line_that_says_how():
    built_by_shape = Subclassed()
    with pytest.warns(UserWarning, match="does not have a `build"):
        built_by_shape.build((None, 2))  # Keras marks it built, and makes no weights.
    for model in (Subclassed(), built_by_shape):
        with pytest.raises(train_state.ModelNotBuiltError) as refused:
            train_state.TrainState.create(GanConfig(), [model], {}, {})
        message = str(refused.value)
        assert "\n" not in message and "'subclassed' has no weights yet" in message
        assert "call it once on example inputs" in message


def test_a_subclassed_model_built_by_a_call_trains_and_resumes(tmp_path):
    def make_state():
        model = Subclassed()
        model(tf.zeros([1, 2]))  # What the refusal says to do.
        return train_state.TrainState.create(
            GanConfig(), [model], {"loss": keras.metrics.Mean()}, {"loss": keras.metrics.Mean()}
        )

    def train_step(state, real):
        with tf.GradientTape() as tape:
            loss = state.average_loss(tf.reduce_sum(tf.square(state.model(real) - 1.0), -1))
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        state.train_metrics["loss"].update_state(loss)
        return non_finite.loss_or_nan(loss, gradients), gradients

    def eval_step(state, real):
        state.eval_metrics["loss"].update_state(tf.square(state.model(real) - 1.0))

    examples = tf.data.Dataset.from_tensor_slices(np.ones([16, 2], np.float32))
    for num_steps in (3, 6):
        results = training_loop.run(
            GanConfig(num_steps=num_steps),
            str(tmp_path),
            make_state(),
            train_step,
            eval_step,
            lambda: Datasets(examples, examples),
        )
    assert results["steps"] == 6 and results["resumed_from_step"] == 3
    graph = events.op_graph(events.load_run(tmp_path / "train"), "graph/train_step")
    assert any(node.op == "MatMul" for node in graph.node)


def test_a_layer_that_makes_its_weights_inside_the_step_is_explained_in_one_line(tmp_path):
    """A model with some weights, and one layer first called inside the step: the optimizer,
    built before, does not know that layer's variables (Keras: 63 lines of traceback)."""

    class HalfBuilt(keras.Model):
        def __init__(self):
            super().__init__(name="half_built")
            self.first = keras.layers.Dense(2)
            self.late = keras.layers.Dense(1)

        def call(self, inputs, training=False):
            hidden = self.first(inputs)
            return self.late(hidden) if training else hidden

    model = HalfBuilt()
    with pytest.warns(UserWarning, match="unbuilt state"):
        model(tf.zeros([1, 2]))  # Builds `first` only: `late` runs in training alone.
    state = train_state.TrainState.create(GanConfig(), [model], {}, {})

    def train_step(state, real):
        with tf.GradientTape() as tape:
            loss = state.average_loss(tf.reduce_sum(state.model(real, training=True), -1))
        gradients = tape.gradient(loss, state.model.trainable_variables)
        state.optimizer.apply_gradients(
            zip(gradients, state.model.trainable_variables, strict=True)
        )
        return loss, gradients

    examples = tf.data.Dataset.from_tensor_slices(np.ones([16, 2], np.float32))
    with pytest.raises(train_state.ModelNotBuiltError) as refused:
        training_loop.run(
            GanConfig(),
            str(tmp_path),
            state,
            train_step,
            lambda state, real: None,
            lambda: Datasets(examples, examples),
        )
    assert "made its weights inside the step" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_settings_changed_on_resume_are_applied_and_said_one_line_each(tmp_path, capsys):
    train_gan(tmp_path, GanConfig(num_steps=3, learning_rate=3e-3))
    capsys.readouterr()
    changed = GanConfig(num_steps=6, learning_rate=1e-4, real_weight=2.0)
    state, _ = train_gan(tmp_path, changed)
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if "changed setting" in line or "learning rate is set" in line]
    assert said == [
        "resumed with a changed setting: --num_steps=3 -> 6",
        "resumed with a changed setting: --learning_rate=0.003 -> 0.0001",
        "resumed with a changed setting: --real_weight=1.0 -> 2.0",
        "the restored generator's learning rate is set to 0.0001, as built now (its checkpoint "
        "held 0.003)",
    ]
    # Applied: the generator's rate is the new one; the discriminator's, unchanged, is kept.
    train = events.load_run(tmp_path / "train")
    rates = dict(events.scalars(train, "learning_rate/generator"))
    assert rates[3] == pytest.approx(3e-3) and rates[6] == pytest.approx(1e-4)
    assert float(state.optimizers["discriminator"].learning_rate.numpy()) == pytest.approx(4e-3)
    # The Text tab's config: step 0's, then the resume's with the new values.
    configs = train.Tensors("config")
    assert [event.step for event in configs] == [0, 4]  # The resumed run's first step.
    assert "| learning_rate | 0.0001 |" in configs[1].tensor_proto.string_val[0].decode()


def test_a_resume_with_the_same_settings_keeps_a_learning_rate_the_run_changed(tmp_path, capsys):
    def decay(step):  # What a run may do to its own rate, before the checkpoint at step 3.
        state.optimizers["generator"].learning_rate.assign(5e-4)

    state = gan_state(GanConfig(num_steps=3))
    config = GanConfig(num_steps=3)
    training_loop.run(
        config,
        str(tmp_path),
        state,
        gan_train_step,
        gan_eval_step,
        lambda: Datasets(*[tf.data.Dataset.from_tensor_slices(np.ones([8, 2], np.float32))] * 2),
        actions=[actions.Callback(decay)],  # At every boundary.
    )
    text = checkpoints.settings_in(f"{tmp_path}/checkpoints/ckpt-3")
    assert json.loads(text)["settings"]["num_steps"] == 3
    assert json.loads(text)["learning_rates"] == {
        "discriminator": pytest.approx(4e-3),
        "generator": pytest.approx(1e-3),
    }
    capsys.readouterr()
    state, _ = train_gan(tmp_path, GanConfig(num_steps=6))  # Only further: the same rates.
    said = [line for line in capsys.readouterr().out.splitlines() if "resumed with" in line]
    assert said == ["resumed with a changed setting: --num_steps=3 -> 6"]
    assert float(state.optimizers["generator"].learning_rate.numpy()) == pytest.approx(5e-4)


@dataclasses.dataclass(frozen=True)
class FixedConfig(GanConfig):
    real_weight: float = settings.setting(
        1.0, "Weight of the real examples' loss.", fixed_on_resume="it is baked into the data"
    )


def test_a_change_to_a_setting_the_checkpoint_fixes_is_refused_in_one_line(tmp_path):
    train_gan(tmp_path, FixedConfig(num_steps=3))
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(resumed_settings.SettingChangeRefusedError) as refused:
        train_gan(tmp_path, FixedConfig(num_steps=6, real_weight=2.0))
    assert str(refused.value) == (
        "--real_weight=2.0 cannot apply to a resumed run (it is baked into the data); the run "
        "that saved step 3 used --real_weight=1.0: pass that, or a new --logdir"
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_a_checkpoint_that_does_not_fit_names_the_settings_changed_since(tmp_path):
    train_gan(tmp_path, GanConfig(num_steps=3))
    config = GanConfig(num_steps=6, seed=3)
    state = train_state.TrainState.create(
        config,
        [dense_model("generator", 2, 3)],
        {},
        {},  # Another width: cannot restore.
    )
    run = training_run.TrainingRun(
        str(tmp_path),
        state.global_step,
        3,
        run_settings=resumed_settings.describe(config, state.optimizers),
        **train_state.checkpoint_objects(state),
    )
    with run, pytest.raises(checkpoints.CheckpointMismatchError) as refused:
        run.restore()
    assert "settings changed since that checkpoint: --num_steps=3 -> 6, --seed=0 -> 3" in str(
        refused.value
    )


def test_a_checkpoint_of_an_older_version_without_settings_still_restores(tmp_path, capsys):
    """Saved by a TrainingRun given no settings (as before this record existed)."""
    config = GanConfig(num_steps=3)
    state = train_state.TrainState.create(config, [dense_model("m", 2, 1)], {}, {})
    with training_run.TrainingRun(
        str(tmp_path), state.global_step, 3, **train_state.checkpoint_objects(state)
    ) as run:
        run.restore()
        run.open_writers()
        state.global_step.assign(3)
        run.save(3)
    assert checkpoints.settings_in(f"{tmp_path}/checkpoints/ckpt-3") is None
    built = resumed_settings.describe(config, state.optimizers)  # learning_rate 1e-3.
    state.optimizer.learning_rate.assign(0.5)  # What that older checkpoint restored.
    lines = resumed_settings.apply(None, config, state.optimizers, built, 3)
    assert lines == [
        "resumed from step 3: its checkpoint does not record the settings it was trained with "
        "(an older version), so none can be compared; this command's apply",
        "the restored optimizer's learning rate is set to 0.001, as built now (its checkpoint "
        "held 0.5)",
    ]
    assert float(state.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    restored = train_state.TrainState.create(config, [dense_model("m", 2, 1)], {}, {})
    with training_run.TrainingRun(
        str(tmp_path),
        restored.global_step,
        3,
        run_settings=resumed_settings.describe(config, restored.optimizers),
        **train_state.checkpoint_objects(restored),
    ) as run:
        assert run.restore() == 3 and run.restored_settings() is None


def test_an_app_resumed_with_a_new_learning_rate_logs_and_uses_it(tmp_path, capsys):
    """The issue's case: regression_tape resumed with --learning_rate=1e-4 kept 0.003."""
    from apps.regression_tape import train as regression

    short = {"steps_per_loop": 2, "eval_every_steps": 4, "checkpoint_every_steps": 4}
    regression.train_and_evaluate(regression.Config(num_steps=4, **short), str(tmp_path))
    capsys.readouterr()
    regression.train_and_evaluate(
        regression.Config(num_steps=8, learning_rate=1e-4, **short), str(tmp_path)
    )
    out = capsys.readouterr().out
    assert "resumed with a changed setting: --learning_rate=0.003 -> 0.0001" in out
    rates = dict(events.scalars(events.load_run(tmp_path / "train"), "learning_rate"))
    assert rates[4] == pytest.approx(3e-3) and rates[8] == pytest.approx(1e-4)


def test_conditional_dropout_refuses_a_new_switch_step_on_resume(tmp_path):
    from apps.conditional_dropout import train as dropout

    short = {"steps_per_loop": 2, "eval_every_steps": 4, "checkpoint_every_steps": 4}
    config = dropout.Config(num_steps=4, batch_size=8, hidden_units=8, **short)
    dropout.train_and_evaluate(dataclasses.replace(config, dropout_off_at_step=2), str(tmp_path))
    with pytest.raises(resumed_settings.SettingChangeRefusedError, match="--dropout_off_at_step=6"):
        dropout.train_and_evaluate(
            dataclasses.replace(config, num_steps=8, dropout_off_at_step=6), str(tmp_path)
        )


def test_dict_batches_and_two_heads_train_with_a_metric_per_head(tmp_path):
    """Named inputs and outputs: the batch reaches the step as (features, labels), two dicts."""
    inputs = {name: keras.Input(shape=(2,), name=name) for name in ("user", "item")}
    joined = keras.layers.Concatenate(name="joined")(list(inputs.values()))
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(joined)
    outputs = {
        "score": keras.layers.Dense(1, name="score")(hidden),
        "rating": keras.layers.Dense(1, name="rating")(hidden),
    }
    model = keras.Model(inputs, outputs, name="two_heads")
    heads = list(outputs)
    state = train_state.TrainState.create(
        GanConfig(num_steps=3),
        [model],
        {f"loss/{head}": keras.metrics.Mean() for head in heads},
        {f"loss/{head}": keras.metrics.MeanSquaredError() for head in heads},
    )

    def train_step(state, features, labels):
        with tf.GradientTape() as tape:
            predictions = state.model(features, training=True)
            losses = {head: tf.square(predictions[head][:, 0] - labels[head]) for head in heads}
            loss = state.average_loss(tf.add_n(list(losses.values())))
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        for head in heads:
            state.train_metrics[f"loss/{head}"].update_state(losses[head])
        return non_finite.loss_or_nan(loss, gradients), gradients

    def eval_step(state, features, labels):
        predictions = state.model(features, training=False)
        for head in heads:
            state.eval_metrics[f"loss/{head}"].update_state(labels[head], predictions[head][:, 0])

    features = {name: np.ones([16, 2], np.float32) for name in ("user", "item")}
    labels = {head: np.ones([16], np.float32) for head in heads}
    examples = tf.data.Dataset.from_tensor_slices((features, labels))
    results = training_loop.run(
        GanConfig(num_steps=3),
        str(tmp_path),
        state,
        train_step,
        eval_step,
        lambda: Datasets(examples, examples),
    )
    assert results["steps"] == 3
    for run in ("train", "eval"):
        loaded = events.load_run(tmp_path / run)
        for head in heads:
            assert [step for step, value in events.scalars(loaded, f"loss/{head}")] == [3]
            assert np.isfinite(events.scalars(loaded, f"loss/{head}")[0][1])


def test_two_optimizers_under_mixed_float16_each_scale_their_own_loss(tmp_path):
    config = GanConfig(num_steps=3, mixed_precision="mixed_float16")
    training_loop.create_strategy(config)  # Sets the policy before the models are built.
    try:
        state, results = train_gan(tmp_path, config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert results["steps"] == 3
    assert all(
        isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        for optimizer in state.optimizers.values()
    )
    train = events.load_run(tmp_path / "train")
    for name in ("generator", "discriminator"):
        assert [step for step, _ in events.scalars(train, f"loss_scale/{name}")] == [3]
    assert np.isfinite(events.scalars(train, "generator_loss")[0][1])


class DiscriminatorWatch(actions.Action):
    """A user's own action, as the loop's docs teach: when (a schedule that makes a loop end at
    step 5, and the end) and what (remember the boundary), plus a train scalar at every
    boundary."""

    def __init__(self, discriminator: keras.Model) -> None:
        super().__init__(actions.Schedule(at_steps=(5,), at_end=True))
        self.discriminator = discriminator
        self.seen: list[tuple[int, int]] = []

    def scalars(self, boundary: actions.Boundary) -> dict[str, float]:
        kernel = self.discriminator.get_layer("out").kernel
        return {"discriminator_out_norm": float(tf.norm(kernel).numpy())}

    def run(self, boundary: actions.Boundary) -> None:
        self.seen.append((boundary.step, boundary.loop_steps))


def test_a_users_own_action_ends_a_loop_where_it_must_and_writes_its_scalar(tmp_path):
    config = GanConfig(num_steps=6, steps_per_loop=3)
    examples = tf.data.Dataset.from_tensor_slices(np.ones([32, 2], np.float32))
    state = gan_state(config)
    watch = DiscriminatorWatch(state.models[1])
    results = training_loop.run(
        config,
        str(tmp_path),
        state,
        gan_train_step,
        gan_eval_step,
        lambda: Datasets(examples, examples.take(8)),
        actions=[watch],
    )
    # Loops of 3 steps, but one ends at 5 for the action: boundaries 3, 5, 6; it runs at 5
    # (after a 2-step loop) and at the end (a 1-step loop), not at 3.
    assert watch.seen == [(5, 2), (6, 1)]
    assert results["train/discriminator_out_norm"] > 0
    train = events.load_run(tmp_path / "train")
    assert [step for step, _ in events.scalars(train, "discriminator_out_norm")] == [3, 5, 6]
    assert [step for step, _ in events.scalars(train, "generator_loss")] == [3, 5, 6]
