"""common.loop.input_pipeline: full reshuffles every epoch, fixed shapes, deterministic, clear
errors."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from common.loop import input_pipeline


def example_ids(dataset: tf.data.Dataset, num_batches: int) -> list[list[int]]:
    """The `id` field of the first `num_batches` batches."""
    return [batch["id"].numpy().tolist() for batch in dataset.take(num_batches)]


def flatten(batches: list[list[int]]) -> list[int]:
    return [example for batch in batches for example in batch]


def numbered(num_examples: int) -> tf.data.Dataset:
    """Examples that carry their own index, next to a feature derived from it."""
    ids = np.arange(num_examples)
    return tf.data.Dataset.from_tensor_slices(
        {"id": ids, "feature": np.stack([ids, -ids], axis=1).astype(np.float32)}
    )


def test_every_epoch_visits_each_example_once_in_a_new_order():
    batches = example_ids(input_pipeline.shuffled_batches(numbered(12), 4, seed=0), 6)
    first_epoch = flatten(batches[:3])
    second_epoch = flatten(batches[3:])
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(12))
    assert first_epoch != second_epoch
    assert first_epoch != list(range(12))  # Shuffled, not in file order.


def test_the_features_stay_with_their_example_and_shapes_are_static():
    dataset = input_pipeline.shuffled_batches(numbered(10), 4, seed=1)
    assert dataset.element_spec["feature"].shape == (4, 2)
    for batch in dataset.take(5):
        np.testing.assert_array_equal(batch["feature"][:, 0], batch["id"])
        np.testing.assert_array_equal(batch["feature"][:, 1], -batch["id"])


def test_an_epoch_drops_its_partial_batch_and_never_repeats_an_example():
    batches = example_ids(input_pipeline.shuffled_batches(numbered(10), 4, seed=2), 4)
    for epoch in (batches[:2], batches[2:]):  # 10 // 4 = 2 full batches an epoch.
        ids = flatten(epoch)
        assert len(set(ids)) == 8


def test_a_batch_larger_than_the_dataset_spans_several_passes():
    batches = example_ids(input_pipeline.shuffled_batches(numbered(3), 7, seed=0), 3)
    counts = collections.Counter(flatten(batches))
    assert all(len(batch) == 7 for batch in batches)
    assert set(counts) == {0, 1, 2} and max(counts.values()) - min(counts.values()) <= 1


def test_the_seed_decides_the_order():
    def first_batches(seed):
        return example_ids(input_pipeline.shuffled_batches(numbered(64), 8, seed), 4)

    assert first_batches(3) == first_batches(3)
    assert first_batches(3) != first_batches(4)


def test_an_empty_or_endless_dataset_is_a_user_error():
    with pytest.raises(UserError, match="no examples"):
        input_pipeline.shuffled_batches(numbered(0), 4, seed=0)
    with pytest.raises(UserError, match="endless"):
        input_pipeline.shuffled_batches(numbered(4).repeat(), 4, seed=0)


def test_a_dataset_of_unknown_size_is_counted():
    unknown_size = numbered(10).filter(lambda example: example["id"] % 2 == 0)
    batches = example_ids(input_pipeline.shuffled_batches(unknown_size, 5, seed=0), 2)
    assert sorted(batches[0]) == sorted(batches[1]) == [0, 2, 4, 6, 8]
