"""common.loop's pieces: where loops end, when eval runs, the state the steps use, a tiny run."""

import dataclasses
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import settings, summaries
from common.loop import actions, non_finite, steps, train_state, training_loop
from common.summaries import metrics
from tests import tensorboard_events as events


@dataclasses.dataclass(frozen=True)
class TinyConfig(settings.TrainingSettings):
    num_steps: int = 10
    batch_size: int = 4
    steps_per_loop: int = 3
    eval_every_steps: int = 4


def tiny_model(name: str = "tiny") -> keras.Model:
    inputs = keras.Input(shape=(2,))
    return keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs), name=name)


def test_loops_end_on_multiples_of_steps_per_loop_at_the_end_and_at_an_actions_steps():
    at_five = [actions.Action(actions.Schedule(at_steps=(5,)))]
    ends, step = [], 0
    while step < 10:
        step += actions.steps_to_next_boundary(step, 10, 3, at_five)
        ends.append(step)
    assert ends == [3, 5, 6, 9, 10]
    assert actions.steps_to_next_boundary(10, 10, 3) == 0  # Done: a boundary with no loop.
    outside = [actions.Action(actions.Schedule(at_steps=(0, 3, 12)))]
    assert actions.steps_to_next_boundary(0, 10, 3, outside) == 3  # Not inside.


def test_eval_runs_at_the_first_boundary_past_each_multiple_and_at_the_end():
    config = TinyConfig()
    schedule = actions.Schedule(every_steps=config.eval_every_steps, at_end=True)
    boundaries = [3, 5, 6, 9, 10]
    evals, last = [], 0
    for step in boundaries:
        if schedule.is_due(step, last, config.num_steps):
            evals.append(step)
            last = step
    assert evals == [5, 9, 10]


def test_batches_become_step_arguments():
    pair = (tf.zeros([2]), tf.ones([2]))
    assert steps.as_tuple(pair) is pair
    lone = tf.zeros([2])
    assert steps.as_tuple(lone) == (lone,)


def test_the_state_builds_the_optimizer_and_averages_over_the_global_batch():
    state = train_state.TrainState.create(
        TinyConfig(learning_rate=0.5), [tiny_model()], {"loss": keras.metrics.Mean()}, {}
    )
    assert state.optimizer.built and float(state.optimizer.learning_rate.numpy()) == 0.5
    assert [v.path for v in state.trainable_variables] == ["dense/kernel", "dense/bias"]
    assert int(state.global_step.numpy()) == 0
    # Two of four examples on this replica: their sum over the global batch of 4, not their mean.
    assert float(state.average_loss(tf.constant([1.0, 3.0]))) == pytest.approx(1.0)


def test_a_checkpoint_names_one_model_model_and_several_by_name():
    one = train_state.TrainState.create(TinyConfig(), [tiny_model()], {}, {})
    assert set(train_state.checkpoint_objects(one)) == {"model", "optimizer"}
    two = train_state.TrainState.create(
        TinyConfig(), [tiny_model("encoder"), tiny_model("decoder")], {}, {}
    )
    assert set(train_state.checkpoint_objects(two)) == {"encoder", "decoder", "optimizer"}


def test_train_loop_runs_the_steps_and_stops_at_the_first_non_finite_loss():
    state = train_state.TrainState.create(TinyConfig(), [tiny_model()], {}, {})

    def train_step(state, features):
        del features
        # Finite for global steps 0 to 2, then NaN: the loop must stop right after step 4.
        gradients = [tf.ones_like(variable) for variable in state.trainable_variables]
        return tf.where(state.global_step < 3, 1.0, np.nan), gradients

    step = steps.make_train_step(state, train_step)
    loop = steps.make_train_loop(step)
    iterator = iter(tf.data.Dataset.from_tensors(tf.zeros([4, 2])).repeat())
    assert float(loop(iterator, tf.constant(2))) == 1.0
    assert int(state.global_step.numpy()) == 2
    assert np.isnan(float(loop(iterator, tf.constant(100))))
    assert int(state.global_step.numpy()) == 4  # Broke out at the NaN, not after 100 steps.
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("profiled", [False, True])
def test_run_steps_returns_the_last_steps_gradients_only_when_asked(profiled):
    """With gradients: all steps but the last in the loop, the last through the step itself,
    whose gradients come out; none after a NaN, and none when not asked (the loop alone)."""
    state = train_state.TrainState.create(TinyConfig(), [tiny_model()], {}, {})

    def train_step(state, features):
        del features
        # The global step before the update, in every gradient; NaN from global step 5.
        before = tf.cast(state.global_step, tf.float32)
        gradients = [before + tf.zeros_like(variable) for variable in state.trainable_variables]
        return tf.where(state.global_step < 5, 1.0, np.nan), gradients

    step = steps.make_train_step(state, train_step)
    loop = steps.make_train_loop(step)
    iterator = iter(tf.data.Dataset.from_tensors(tf.zeros([4, 2])).repeat())

    def run_steps(num_steps, with_gradients):
        profile_from = int(state.global_step.numpy()) if profiled else None
        return steps.run_steps(loop, step, iterator, num_steps, with_gradients, profile_from)

    loss, gradients = run_steps(3, with_gradients=True)
    assert float(loss) == 1.0 and int(state.global_step.numpy()) == 3
    assert [gradient.shape for gradient in gradients] == [(2, 1), (1,)]
    assert all(np.all(gradient.numpy() == 2.0) for gradient in gradients)  # Step 3's, not 1's.
    loss, gradients = run_steps(1, with_gradients=True)  # The last step alone.
    assert int(state.global_step.numpy()) == 4 and np.all(gradients[1].numpy() == 3.0)
    assert run_steps(1, with_gradients=False)[1] is None
    loss, gradients = run_steps(0, with_gradients=True)  # No step: nothing to show.
    assert float(loss) == 0.0 and gradients is None
    loss, gradients = run_steps(3, with_gradients=True)  # NaN at the second: no third step.
    assert np.isnan(float(loss)) and gradients is None
    assert int(state.global_step.numpy()) == 6
    assert step.experimental_get_tracing_count() == 1
    assert loop.experimental_get_tracing_count() == 1


@dataclasses.dataclass(frozen=True)
class TinyDatasets:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    description: str = "ones"


TINY_RUN = TinyConfig(checkpoint_every_steps=100)  # Loops end at 3, 6, 9, 10; evals at 6, 9, 10.


def tiny_state() -> train_state.TrainState:
    metrics = [{"loss": keras.metrics.Mean()} for _ in ("train", "eval")]
    return train_state.TrainState.create(TINY_RUN, [tiny_model()], *metrics)


def run_tiny(
    tmp_path, state, eval_step=None, train_step=None, config=TINY_RUN, **options
) -> dict[str, float]:
    """A tiny run of `config`, every step of which moves the weights, with `run`'s `options`."""

    def mean_output_step(state, features):
        with tf.GradientTape() as tape:
            loss = state.average_loss(tf.squeeze(state.model(features, training=True), -1))
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        state.train_metrics["loss"].update_state(loss)
        return non_finite.loss_or_nan(loss, gradients), gradients

    def mean_output(state, features):
        state.eval_metrics["loss"].update_state(state.model(features, training=False))

    examples = tf.data.Dataset.from_tensors(tf.ones([2])).repeat(8)
    return training_loop.run(
        config,
        str(tmp_path),
        state,
        train_step or mean_output_step,
        eval_step or mean_output,
        lambda: TinyDatasets(examples, examples),
        **options,
    )


def test_on_eval_runs_late_on_its_own_thread_but_sees_the_weights_of_its_step(tmp_path):
    """The eval summaries run while the next loops train: a model call in on_eval must still
    read the weights the eval read, not the ones training has moved on to."""
    state = tiny_state()
    ones = tf.ones([1, 2])
    in_on_eval, at_boundary, threads = {}, {}, set()

    def on_eval(step, results, writers):
        time.sleep(0.3)  # Meanwhile the loop trains on: every step moves the weights.
        threads.add(threading.get_ident())
        in_on_eval[step] = state.model(ones).numpy()

    def on_boundary(step):  # On the loop's thread, before the next loop: the eval's weights.
        at_boundary[step] = state.model(ones).numpy()

    results = run_tiny(
        tmp_path,
        state,
        app_summaries=training_loop.AppSummaries(on_eval=on_eval),
        actions=[actions.Callback(on_boundary)],  # At every boundary.
    )
    assert results["steps"] == 10 and sorted(in_on_eval) == [6, 9, 10]
    assert threading.get_ident() not in threads
    for step in (6, 9):  # The weights moved after these: a live read would see step 10's.
        assert not np.array_equal(at_boundary[step], at_boundary[10])
        np.testing.assert_array_equal(in_on_eval[step], at_boundary[step])


def test_an_error_in_the_eval_summaries_fails_the_run_with_that_error(tmp_path):
    def on_eval(step, results, writers):
        raise ValueError(f"on_eval broke at step {step}")

    with pytest.raises(ValueError, match="on_eval broke at step 6"):
        run_tiny(tmp_path, tiny_state(), app_summaries=training_loop.AppSummaries(on_eval=on_eval))


def test_a_failed_eval_fails_the_run_with_its_error_and_the_summaries_do_not_wait_for_it(tmp_path):
    """The eval summaries start before the eval and wait for its results: an eval that fails
    must end that wait with its error, or the run would hang at its end."""

    def on_eval(step, results, writers):
        raise AssertionError("on_eval must not run without results")

    def failing_eval_step(state, features):
        raise ValueError("the eval step broke")

    with pytest.raises(ValueError, match="the eval step broke"):
        run_tiny(
            tmp_path,
            tiny_state(),
            app_summaries=training_loop.AppSummaries(on_eval=on_eval),
            eval_step=failing_eval_step,
        )


def test_an_eval_metric_with_an_array_result_reaches_on_eval_alone(tmp_path, capsys):
    """Counts taken in the eval's own pass (a PR curve's) go to on_eval as an array; the eval
    scalars, the console and the returned metrics keep the scalars."""
    state = train_state.TrainState.create(
        TINY_RUN,
        [tiny_model()],
        {"loss": keras.metrics.Mean()},
        {"loss": keras.metrics.Mean(), "pr_curve": metrics.PRCurveCounts(num_thresholds=3)},
    )
    seen = {}

    def eval_step(state, features):
        outputs = tf.squeeze(state.model(features, training=False), -1)
        state.eval_metrics["loss"].update_state(outputs)
        state.eval_metrics["pr_curve"].update_state(tf.ones_like(outputs), tf.sigmoid(outputs))

    def on_eval(step, results, writers):
        seen[step] = results

    results = run_tiny(
        tmp_path,
        state,
        eval_step=eval_step,
        app_summaries=training_loop.AppSummaries(on_eval=on_eval),
    )
    assert sorted(seen) == [6, 9, 10]
    for step_results in seen.values():
        assert isinstance(step_results["loss"], float)
        counts = step_results["pr_curve"]
        assert isinstance(counts, np.ndarray) and counts.shape == (2, 3)
        assert counts[0].sum() == 8 and counts[1].sum() == 0  # The 8 eval examples, all true.
    assert results["eval/loss"] == seen[10]["loss"] and "eval/pr_curve" not in results
    eval_run = events.load_run(tmp_path / "eval")
    assert events.tags_by_plugin(eval_run)["scalars"] == ["loss"]
    output = capsys.readouterr().out
    assert "eval/loss=" in output and "pr_curve" not in output


def test_the_gradients_written_at_an_eval_are_the_ones_the_optimizer_applied_last(tmp_path):
    """The gradients written at an eval must be those of the step that made the eval's weights:
    the last of its loop's 3 steps (not the first, nor a later one: the summaries are written
    while training goes on). The step keeps a copy of what it applies, for the test to read."""
    state = tiny_state()
    applied = [tf.Variable(tf.zeros_like(variable)) for variable in state.trainable_variables]
    written, expected = {}, {}
    write_variable_histograms = summaries.write_variable_histograms

    def recording_write(writer, variables, step, values, gradients, **options):
        written[step] = [np.asarray(gradient) for gradient in gradients]
        write_variable_histograms(writer, variables, step, values, gradients, **options)

    def squared_output_step(state, features):  # Gradients that change as the weights do.
        with tf.GradientTape() as tape:
            outputs = tf.squeeze(state.model(features, training=True), -1)
            loss = state.average_loss(tf.square(outputs))
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        for copy, gradient in zip(applied, gradients, strict=True):
            copy.assign(gradient)
        state.train_metrics["loss"].update_state(loss)
        return non_finite.loss_or_nan(loss, gradients), gradients

    def on_boundary(step):  # On the loop's thread, before the next loop: the last step's.
        expected[step] = [copy.numpy() for copy in applied]

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(summaries, "write_variable_histograms", recording_write)
        run_tiny(
            tmp_path,
            state,
            train_step=squared_output_step,
            actions=[actions.Callback(on_boundary)],
        )
    assert sorted(written) == [6, 9, 10]
    for step, gradients in written.items():
        for gradient, applied_gradient in zip(gradients, expected[step], strict=True):
            np.testing.assert_array_equal(gradient, applied_gradient)
    assert not np.allclose(written[9][0], written[10][0])  # Steps differ: so do the gradients.
    norms = events.scalars(events.load_run(tmp_path / "train"), "gradients/global_norm")
    assert [step for step, _ in norms] == [6, 9, 10]
    for step, norm in norms:
        global_norm = np.sqrt(sum(np.sum(np.square(gradient)) for gradient in written[step]))
        assert norm == pytest.approx(global_norm, rel=1e-6)


def test_a_one_step_run_and_a_resumed_run_write_the_gradients_of_the_step_before_each_eval(
    tmp_path,
):
    """A one-step run's eval follows its first step, with no loop between; a resumed run's first
    eval follows its first loop. Both histogram real gradients: the tiny run's loss is the mean
    output of all-ones examples, so every step's gradient is ones (norm sqrt(3))."""
    run_tiny(tmp_path / "one", tiny_state(), config=dataclasses.replace(TINY_RUN, num_steps=1))
    norms = events.scalars(events.load_run(tmp_path / "one" / "train"), "gradients/global_norm")
    assert norms == [(1, pytest.approx(np.sqrt(3.0)))]

    run_tiny(tmp_path / "resumed", tiny_state(), config=dataclasses.replace(TINY_RUN, num_steps=6))
    results = run_tiny(tmp_path / "resumed", tiny_state())  # From step 6's checkpoint to 10.
    assert results["resumed_from_step"] == 6
    norms = events.scalars(events.load_run(tmp_path / "resumed" / "train"), "gradients/global_norm")
    assert norms == [(step, pytest.approx(np.sqrt(3.0))) for step in (6, 9, 10)]


def test_a_train_step_that_returns_the_loss_alone_is_told_what_to_return(tmp_path):
    """An app written before the steps returned their gradients fails with the contract."""

    def loss_only_step(state, features):
        with tf.GradientTape() as tape:
            loss = state.average_loss(tf.squeeze(state.model(features, training=True), -1))
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        return non_finite.loss_or_nan(loss, gradients)

    with pytest.raises(TypeError, match=r"loss_only_step must return \(loss, gradients\)"):
        run_tiny(tmp_path, tiny_state(), train_step=loss_only_step)


def test_a_train_step_that_returns_too_few_gradients_is_told_the_contract(tmp_path):
    """One gradient short (a variable left out): the count is named, not zip's bare error."""

    def one_short_step(state, features):
        with tf.GradientTape() as tape:
            loss = state.average_loss(tf.squeeze(state.model(features, training=True), -1))
        gradients = tape.gradient(loss, state.trainable_variables)
        state.optimizer.apply_gradients(zip(gradients, state.trainable_variables, strict=True))
        return non_finite.loss_or_nan(loss, gradients), gradients[:-1]

    with pytest.raises(TypeError, match=r"returned 1 gradients for 2 trainable variables"):
        run_tiny(tmp_path, tiny_state(), train_step=one_short_step)
