"""tf.distribute for the apps: one strategy object from a flag, and who among the workers writes.

Every app's loop is written once, for any strategy: variables are created in `strategy.scope()`,
batches come from `strategy.experimental_distribute_dataset` (the global `--batch_size` split
across replicas), the step runs under `strategy.run`, each replica's loss is scaled by the global
batch (`tf.nn.compute_average_loss`) so that the summed gradients equal one big batch's, and Keras
metrics, created in the scope, add up over replicas by themselves. With the default strategy all
of this is the plain single-device loop.

    default       one device: the CPU, or the first GPU TensorFlow sees.
    mirrored      every local GPU, or with none, `num_cpu_devices` logical CPUs (for testing the
                  distributed code path on a laptop or CI).
    multi_worker  MultiWorkerMirroredStrategy across the machines that TF_CONFIG lists; every
                  worker runs the same command. The chief (worker 0) owns the logdir; the other
                  workers write their summaries and checkpoints to temporary directories, removed
                  at the end (tf.distribute's own convention: every worker must save, since a save
                  may need collective ops).

TPUs (TPUStrategy) follow the same pattern but are not supported here: nothing in this
repository has been run on one.
"""

import json
import os
import warnings

import tensorflow as tf

from common.errors import UserError
from common.settings import STRATEGY_NAMES

# Iterating a distributed dataset inside a tf.function (the apps' eval loop) makes tf.data warn
# that its options are read in graph mode; the apps set no options, so there is nothing to lose.
warnings.filterwarnings(
    "ignore", message="To make it possible to preserve tf.data options", category=UserWarning
)


def split_cpu(num_cpu_devices: int) -> None:
    """Splits the physical CPU into `num_cpu_devices` logical devices (CPU:0, CPU:1, ...).

    Must run before TensorFlow initializes its devices (before the first op). Nothing happens for
    1, nor if the devices already have exactly this split.

    Raises:
        UserError: if the devices are already initialized with another number of CPUs.
    """
    if num_cpu_devices < 1:
        raise UserError(f"num_cpu_devices must be at least 1, got {num_cpu_devices}")
    if num_cpu_devices == 1:
        return  # Leaves the devices as they are: one CPU, or a split made earlier (tests).
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == num_cpu_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices
        )
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        raise UserError(
            f"cannot split the CPU into {num_cpu_devices} devices: TensorFlow already runs on "
            f"{have} ({error})"
        ) from error


def set_compute_threads() -> int:
    """Gives TensorFlow's ops every core but one, which the input pipeline's own thread takes
    (`common.loop.input_pipeline.INPUT_THREADS`); returns the intra-op thread count now in force (0:
    TensorFlow's default, every core).

    By default both share every core: on 2 cores, the step's ops on 2 threads and the pipeline's
    gathers on others, each preempting the other. One core each was 1.10x faster for mnist_mlp's
    loop here, 1.28x for the VAE's (and with the pipeline's single thread, 1.14x, 1.06x and 1.37x
    for the three apps; `make bench`). Must run before TensorFlow's runtime starts: later (a
    test session, a notebook) the threads stay as they are. `TF_NUM_INTRAOP_THREADS` in the
    environment, or a count set earlier in the process, wins.
    """
    threading = tf.config.threading
    if os.environ.get("TF_NUM_INTRAOP_THREADS", "").isdigit():
        return int(os.environ["TF_NUM_INTRAOP_THREADS"])
    if threading.get_intra_op_parallelism_threads():
        return threading.get_intra_op_parallelism_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        return 0
    try:
        threading.set_intra_op_parallelism_threads(cores - 1)
    except RuntimeError:  # The runtime already runs: its threads cannot change.
        return 0
    return cores - 1


def create_strategy(name: str, num_cpu_devices: int = 1) -> tf.distribute.Strategy:
    """Returns the strategy called `name` (one of STRATEGY_NAMES).

    Args:
        name: `default`, `mirrored` or `multi_worker`.
        num_cpu_devices: logical CPU devices to split the CPU into first (see `split_cpu`);
            `mirrored` uses them when the machine has no GPU.

    Raises:
        UserError: for an unknown name, a CPU that cannot be split, or `multi_worker` without a
            usable TF_CONFIG.
    """
    if name not in STRATEGY_NAMES:
        raise UserError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGY_NAMES)}")
    split_cpu(num_cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _strategies:
        if name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = gpus or tf.config.list_logical_devices("CPU")
            _strategies[name] = tf.distribute.MirroredStrategy([device.name for device in devices])
        else:
            _check_tf_config()
            _strategies[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _strategies[name]


# One strategy of each kind per process. A second MirroredStrategy reuses the first one's
# collective instance keys, and its all-reduce then fails ("Shape mismatch in the collective
# instance"); a second MultiWorkerMirroredStrategy is refused outright. Tests and notebooks that
# train several models in one process share the strategy instead.
_strategies: dict[str, tf.distribute.Strategy] = {}


def _check_tf_config() -> None:
    """Checks TF_CONFIG enough for a one-line error instead of a traceback."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError(
            "--strategy=multi_worker needs TF_CONFIG, e.g. "
            '\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}\''
        )
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        index = config["task"]["index"]
        if config["task"]["type"] not in ("worker", "chief") or not 0 <= index < len(workers):
            raise ValueError("task must be a worker (or the chief) listed in the cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"TF_CONFIG is not a usable cluster spec: {error!r}") from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the worker that owns the logdir: always, but on non-chief multi-worker tasks."""
    return bool(strategy.extended.should_checkpoint)


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """`worker 1` for messages, from the cluster resolver ('' when there is a single worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return ""
    return f"{resolver.task_type} {resolver.task_id}"


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes run the training together (1 unless multi-worker)."""
    return int(getattr(strategy.extended, "_num_workers", 1))


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """True if `flag` is true on any worker. A collective: every worker must call it together.

    Used for decisions one worker cannot take alone, such as stopping after a signal: a worker
    that left the loop would leave the others waiting for it in the next all-reduce.
    """
    if num_workers(strategy) == 1:
        return flag
    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(1.0 if flag else 0.0)
    )
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)) > 0


def describe(strategy: tf.distribute.Strategy, name: str, batch_size: int) -> str:
    """`strategy: mirrored: each batch of 128 examples is split over 2 replicas`; '' for one."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return ""
    workers = num_workers(strategy)
    where = f" on {workers} workers" if workers > 1 else ""
    return (
        f"strategy: {name}: each batch of {batch_size} examples is split over {replicas} "
        f"replicas{where}"
    )
