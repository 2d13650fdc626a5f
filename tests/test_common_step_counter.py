"""common.loop.step_counter: the int64 global step that stamps summaries and lives in
checkpoints."""

import tensorflow as tf

from common.loop import step_counter
from tests import tensorboard_events as events


def test_global_step_is_int64_zero_and_not_trainable():
    global_step = step_counter.create_global_step()
    assert global_step.dtype == tf.int64
    assert int(global_step.numpy()) == 0
    assert not global_step.trainable


def test_summaries_without_a_step_use_the_global_step(tmp_path):
    global_step = step_counter.create_global_step()
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for _ in range(3):
            global_step.assign_add(5)
            tf.summary.scalar("value", float(global_step.numpy()))
    writer.close()
    assert [step for step, _ in events.scalars(events.load_run(tmp_path), "value")] == [5, 10, 15]


def test_global_step_round_trips_through_a_checkpoint(tmp_path):
    global_step = step_counter.create_global_step()
    global_step.assign(1234)
    path = tf.train.Checkpoint(step=global_step).save(str(tmp_path / "ckpt"))

    restored_step = step_counter.create_global_step()
    tf.train.Checkpoint(step=restored_step).restore(path).assert_consumed()
    assert int(restored_step.numpy()) == 1234


def test_increment_inside_tf_function_is_seen_by_summaries(tmp_path):
    global_step = step_counter.create_global_step()

    @tf.function
    def loop(num_steps):
        for _ in tf.range(num_steps):
            global_step.assign_add(1)

    loop(tf.constant(7))
    assert tf.summary.experimental.get_step() is global_step
    assert int(global_step.numpy()) == 7
