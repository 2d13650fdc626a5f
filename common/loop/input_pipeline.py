"""Endless shuffled training batches from a dataset that fits in memory, at a low cost per batch.

The textbook pipeline, `cache().shuffle(buffer).repeat().batch(size)`, pays tf.data's overhead once
per *example*: every example goes through the shuffle buffer and the batcher one at a time. On a
small model that overhead is as large as the train step itself (measured with `make bench`: about
4 µs an MNIST example on 2 CPU cores), and on a machine with few cores the input threads take their
time from the step. Here the examples are held as tensors, each epoch is one random permutation of
their indices, and a batch is one `tf.gather` per tensor: tf.data then works once per *batch*.

Each epoch visits every example exactly once in a fresh order (a full shuffle, better than a 10,000
example buffer), deterministic for a given seed. The last partial batch of an epoch is dropped, so
every batch has the same static shape and the train step is traced once.
"""

import math
from typing import Any

import tensorflow as tf

from common.errors import UserError

# A batch is gathered into new tensors (and prefetched, so two may exist at once): past this size a
# --batch_size is a typo, not a setting, and the allocation would fail or swap for minutes first.
MAX_BATCH_BYTES = 2 * 1024**3
# A batch that needs more passes over the training set than this repeats every example that many
# times in itself: no longer a batch of the data. (Up to it, batches larger than the set work.)
MAX_PASSES_PER_BATCH = 100
# Threads of the training pipeline's own pool: a batch is one gather per tensor, which one core
# does well ahead of any step here (measured with `make bench`).
INPUT_THREADS = 1


def check_batch_size(batch_size: int, num_examples: int, bytes_per_example: int) -> None:
    """Refuses a batch that cannot be meant: over `MAX_BATCH_BYTES`, or more than
    `MAX_PASSES_PER_BATCH` times the training set.

    Args:
        batch_size: examples per batch (the global batch, over every replica).
        num_examples: examples in the training set.
        bytes_per_example: bytes of one example, every tensor of it.

    Raises:
        common.errors.UserError: one line naming --batch_size and the training set's size.
    """
    batch_bytes = batch_size * bytes_per_example
    if batch_bytes > MAX_BATCH_BYTES:
        raise UserError(
            f"--batch_size={batch_size} is too large: one batch would take "
            f"{batch_bytes / 1024**3:.1f} GiB ({bytes_per_example} bytes an example; at most "
            f"{MAX_BATCH_BYTES // 1024**3} GiB), for a training set of {num_examples} examples; "
            "pass a smaller --batch_size"
        )
    if batch_size > MAX_PASSES_PER_BATCH * num_examples:
        raise UserError(
            f"--batch_size={batch_size} is more than {MAX_PASSES_PER_BATCH} times the training "
            f"set's {num_examples} examples: each batch would repeat every example "
            f"{batch_size // num_examples} times; pass a smaller --batch_size"
        )


def materialize(dataset: tf.data.Dataset, name: str = "the training set") -> Any:
    """All of a finite dataset's elements, stacked on a new first axis (the same nest of tensors).

    Args:
        dataset: finite, of unbatched elements. A per-element `map` in it runs once per element
            here (tens of µs each): preprocess whole arrays before `from_tensor_slices` instead.
        name: what the dataset is, for the error messages.

    Raises:
        common.errors.UserError: if the dataset is empty or endless.
    """
    num_examples = int(dataset.cardinality())
    if num_examples == tf.data.INFINITE_CARDINALITY:
        raise UserError(f"{name} is endless; in-memory batches need a finite dataset")
    if num_examples == tf.data.UNKNOWN_CARDINALITY:  # After a filter(), say: count them once.
        num_examples = int(dataset.reduce(0, lambda count, _: count + 1))
    if num_examples == 0:
        raise UserError(f"{name} has no examples")
    # One batch of everything, the same memory that `cache()` would hold. The batch size must be
    # the exact count: tf.data allocates a batch's full size up front.
    return dataset.batch(num_examples).get_single_element()


def shuffled_batches(dataset: tf.data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless batches of `batch_size` examples of `dataset`, reshuffled every epoch, prefetched.

    Args:
        dataset: a finite dataset of unbatched examples (any nest of tensors), already
            preprocessed; its elements are loaded into memory once.
        batch_size: examples per batch; a batch larger than the dataset spans several passes.
        seed: the shuffle's seed: the same seed gives the same batches.

    Returns:
        A dataset of batches of `batch_size` examples, whose shapes are static.

    Raises:
        common.errors.UserError: if the dataset is empty or endless, or the batch too large (see
            `check_batch_size`).
    """
    tensors = materialize(dataset)
    num_examples = int(tf.shape(tf.nest.flatten(tensors)[0])[0])
    # Checked before anything of the size of a batch is made: the permutations of a round alone
    # hold `batch_size` indices.
    bytes_per_example = sum(
        tensor.dtype.size * math.prod(tensor.shape[1:]) for tensor in tf.nest.flatten(tensors)
    )
    check_batch_size(batch_size, num_examples, bytes_per_example)
    # Passes per round: one, unless a batch needs more examples than the dataset has.
    passes = math.ceil(batch_size / num_examples)
    batches_per_round = passes * num_examples // batch_size

    def round_of_indices(round_number: tf.Tensor) -> tf.data.Dataset:
        orders = [
            tf.random.experimental.stateless_shuffle(
                tf.range(num_examples, dtype=tf.int64),
                seed=tf.stack([tf.constant(seed, tf.int64), round_number * passes + pass_number]),
            )
            for pass_number in range(passes)
        ]
        indices = tf.concat(orders, axis=0)[: batches_per_round * batch_size]
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(indices, [batches_per_round, batch_size])
        )

    def gather(indices: tf.Tensor) -> Any:
        return tf.nest.map_structure(lambda tensor: tf.gather(tensor, indices), tensors)

    # Its own thread: one gather per batch keeps it ahead of the step, and the step's ops keep the
    # other cores (see common.distribution.set_compute_threads).
    options = tf.data.Options()
    options.threading.private_threadpool_size = INPUT_THREADS
    return (
        tf.data.Dataset.counter()
        .flat_map(round_of_indices)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )


def eval_batches(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """One pass over every example of `dataset`, in order, in batches of `batch_size` (the last
    one smaller), cached after the first pass: what each eval runs over."""
    return dataset.cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
