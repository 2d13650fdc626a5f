"""common.loop.training_run: checkpoints, resume, the logdir lock, NaN stops and graceful
signals."""

import os
import signal

import keras
import pytest
import tensorflow as tf

from common import errors, summaries
from common.checkpoints import checkpoints
from common.logdir import run_lock
from common.loop import non_finite, step_counter, training_run
from tests import tensorboard_events as events


def make_state(units: int = 3):
    """A tiny model, its optimizer (built) and a fresh global step."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(units)])
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build(model.trainable_variables)
    return model, optimizer, step_counter.create_global_step()


def open_run(logdir, units=3, every=10):
    model, optimizer, global_step = make_state(units)
    run = training_run.TrainingRun(
        str(logdir), global_step, every, model=model, optimizer=optimizer
    )
    return run, model, global_step


def test_a_new_run_starts_at_zero_and_resumes_where_it_saved(tmp_path):
    run, model, global_step = open_run(tmp_path)
    with run:
        assert run.restore() == 0
        run.open_writers()
        model.layers[0].kernel.assign(tf.ones((2, 3)))
        global_step.assign(25)
        run.save(25)

    resumed, resumed_model, resumed_step = open_run(tmp_path)
    with resumed:
        assert resumed.restore() == 25
        assert int(resumed_step.numpy()) == 25
        assert float(tf.reduce_sum(resumed_model.layers[0].kernel)) == 6.0


def test_checkpoints_are_saved_when_due_and_points_before_them_are_flushed(tmp_path):
    run, _, _ = open_run(tmp_path, every=10)
    with run:
        run.restore()
        writers = run.open_writers()
        saved = []
        for step in (4, 8, 12, 16, 20, 24):
            summaries.write_scalars(writers.train, {"loss": float(step)}, step)
            run.end_of_loop(step)
            saved.append(run.last_saved_step)
            if step == 12:  # Flushed by the save at 12, before any close.
                assert [
                    s for s, _ in events.scalars(events.load_run(tmp_path / "train"), "loss")
                ] == [
                    4,
                    8,
                    12,
                ]
    assert saved == [None, None, 12, 12, 20, 20]


def test_a_checkpoint_of_another_model_is_refused_and_left_alone(tmp_path):
    run, _, global_step = open_run(tmp_path, units=3)
    with run:
        run.restore()
        global_step.assign(5)
        run.save(5)
    before = {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    other, _, _ = open_run(tmp_path, units=7)
    with (
        other,
        pytest.raises(checkpoints.CheckpointMismatchError, match="does not fit this model"),
    ):
        other.restore()
    assert {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == before


def test_a_second_run_on_a_live_logdir_is_refused(tmp_path):
    first, _, _ = open_run(tmp_path)
    with first:
        second, _, _ = open_run(tmp_path)
        with pytest.raises(
            run_lock.LogdirInUseError, match=f"in use by another run \\(pid {os.getpid()}\\)"
        ):
            second.__enter__()
    again, _, _ = open_run(tmp_path)  # Released on exit: the next run gets in.
    with again:
        assert again.restore() == 0


def test_a_leftover_lock_file_does_not_block(tmp_path):
    (tmp_path / run_lock.LOCK_FILE_NAME).write_text("99999999\n")  # A killed run's file.
    run, _, _ = open_run(tmp_path)
    with run:
        assert run.restore() == 0


def test_non_finite_loss_names_the_step_and_the_kept_checkpoint(tmp_path):
    run, _, global_step = open_run(tmp_path)
    with run:
        run.restore()
        global_step.assign(40)
        path = run.save(40)
        run.check_loss(1.5, step=41)  # Finite: nothing happens.
        with pytest.raises(errors.NonFiniteLossError) as raised:
            run.check_loss(float("nan"), step=57)
    message = str(raised.value)
    assert (
        "loss or its gradients became nan at step 57" in message and f"step 40 ({path})" in message
    )
    assert "rerun with --debugger" in message  # It was off: how to find the op.
    assert "\n" not in message


def test_loss_or_nan_flags_a_step_whose_gradients_are_not_finite():
    loss = tf.constant(0.25)
    finite = [tf.ones((2, 2)), None, tf.IndexedSlices(tf.ones((1, 2)), tf.constant([0]))]
    assert float(non_finite.loss_or_nan(loss, finite)) == 0.25
    for bad in (float("nan"), float("inf")):
        broken = tf.IndexedSlices(tf.constant([[1.0, bad]]), tf.constant([0]))
        assert tf.math.is_nan(non_finite.loss_or_nan(loss, [tf.ones((2, 2)), broken]))
        assert tf.math.is_nan(non_finite.loss_or_nan(loss, [tf.constant([bad])]))
    # An infinite loss is reported as it is, not as the NaN its gradients hold.
    infinite = non_finite.loss_or_nan(tf.constant(float("inf")), [tf.constant([float("nan")])])
    assert float(infinite) == float("inf")


def test_a_nan_input_makes_the_step_report_nan_even_when_the_loss_hides_it():
    # The app's pattern: a relu Dense layer in a tf.function. Where oneDNN fuses MatMul, BiasAdd
    # and Relu (this test's machine included), NaN inputs come out as 0 and the loss is finite;
    # elsewhere it is NaN. Either way the step must report NaN.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu")])

    @tf.function
    def step(features):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(features, training=True)))
        gradients = tape.gradient(loss, model.trainable_variables)
        return loss, non_finite.loss_or_nan(loss, gradients)

    loss, reported = step(tf.fill((2, 3), float("nan")))
    assert tf.math.is_nan(reported), f"the raw loss was {float(loss)}"


def test_a_signal_saves_and_stops_at_the_next_boundary(tmp_path):
    run, _, global_step = open_run(tmp_path, every=1000)
    with run:
        run.restore()
        run.open_writers()
        os.kill(os.getpid(), signal.SIGTERM)  # Handled: only sets a flag.
        global_step.assign(33)
        with pytest.raises(errors.Interrupted) as raised:
            run.end_of_loop(33)
    assert raised.value.exit_code == 128 + signal.SIGTERM
    assert "SIGTERM at step 33" in str(raised.value)
    assert run.last_saved_step == 33
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # Restored on exit.
