"""What a run does once, before its first inner loop: what a resume changed, the debugger's dump,
what it runs on (the console's first lines), the run's description at step 0 (HParams, the config
and dataset text), and step one inside the graph trace.
"""

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import tensorflow as tf

from common import distribution, settings, summaries
from common.checkpoints import resumed_settings
from common.loop import progress, steps, train_state, training_run
from common.summaries import graphs

# --debugger: the dump's folder in the run's directory, and how many of the latest op executions
# it keeps (per kind: eager and in-graph). The loop stops inside the step that first went
# non-finite, so the op that started it is among the last ones; a bounded buffer keeps a long run
# from writing every op of every step to disk.
DEBUGGER_DIRECTORY = "debugger"
DEBUGGER_BUFFER_SIZE = 100_000

# (name, tf.function, args): another function whose op graph to log as `graph/<name>`.
Graph = tuple[str, Callable[..., Any], tuple]


def apply_resumed_settings(
    run: training_run.TrainingRun,
    config: settings.TrainingSettings,
    state: train_state.TrainState,
    run_settings: str,
    start_step: int,
) -> bool:
    """What this command changed against the checkpoint's settings: said (on the chief), and
    applied or refused (`resumed_settings.apply`). Returns whether anything but `--num_steps`
    changed: the Text tab then gets the config as of the resume."""
    text = run.restored_settings()
    previous = None if text is None else json.loads(text)
    lines = resumed_settings.apply(previous, config, state.optimizers, run_settings, start_step)
    for line in lines if run.is_chief else []:
        print(line, flush=True)
    # A longer --num_steps is how a run trains further, said but no new config text.
    return bool(previous and set(resumed_settings.changes(previous, config)) - {"num_steps"})


def start_debugger(training: training_run.TrainingRun, stack: contextlib.ExitStack) -> None:
    """`--debugger`: `dump_debug_info` into the run's directory until `stack` closes (before the
    run's lock is released), said on the chief. Before any step is traced: only functions
    traced after it are seen."""
    training.debugger_dir = stack.enter_context(dump_debug_info(training.output_dir))
    if training.is_chief:
        print(f"debugger: recording op health into {training.debugger_dir}", flush=True)


@contextlib.contextmanager
def dump_debug_info(output_dir: str) -> Iterator[str]:
    """Records every op's output health into `<output_dir>/debugger/<time>` while it runs.

    `tf.debugging.experimental.enable_dump_debug_info` in FULL_HEALTH mode (NaN, -Inf and +Inf
    counts of each op's output, in eager code and inside every tf.function traced from now on):
    what TensorBoard's Debugger V2 tab reads. Must be entered before the steps are traced.
    A folder per process (named by its UTC start time): Debugger V2 and tf.debugging's reader
    refuse a folder holding two dumps, which a resumed run would otherwise add to the first.

    Yields:
        The dump's directory.
    """
    started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dump_root = f"{output_dir}/{DEBUGGER_DIRECTORY}/{started}"
    tf.debugging.experimental.enable_dump_debug_info(
        dump_root, tensor_debug_mode="FULL_HEALTH", circular_buffer_size=DEBUGGER_BUFFER_SIZE
    )
    try:
        yield dump_root
    finally:
        # Writes the buffers out (also when a NaN stops the run) and stops instrumenting, so
        # whatever runs next in this process is not slowed down.
        tf.debugging.experimental.disable_dump_debug_info()


def print_where_it_runs(
    training: training_run.TrainingRun,
    config: settings.TrainingSettings,
    strategy: tf.distribute.Strategy,
    dataset_description: str,
    logdir: str,
) -> None:
    """The data, the logdir and how to view it (the chief's), and the devices (every worker's)."""
    if training.is_chief:
        print(f"dataset: {dataset_description}", flush=True)
        print(f"logdir:  {logdir}   (view with: {progress.view_command(logdir)})", flush=True)
    if strategy.num_replicas_in_sync > 1:
        print(distribution.describe(strategy, config.strategy, config.batch_size), flush=True)


def write_run_description(
    config: settings.TrainingSettings,
    output_dir: str,
    writers: summaries.SummaryWriters,
    dataset_description: str,
) -> None:
    """The HParams tab's entry, and the config and dataset in the Text tab, at step 0."""
    summaries.write_hparams(output_dir, dataclasses.asdict(config))
    write_config_text(config, writers, 0)
    with writers.train.as_default(step=0):
        tf.summary.text("dataset", dataset_description)


def write_config_text(
    config: settings.TrainingSettings, writers: summaries.SummaryWriters, step: int
) -> None:
    """The settings as a table in the Text tab's `config`, at `step` (0, or a resume's)."""
    with writers.train.as_default(step=step):
        tf.summary.text("config", summaries.markdown_table(dataclasses.asdict(config)))


def first_step(
    run: training_run.TrainingRun,
    state: train_state.TrainState,
    train_function: Callable[..., tuple[tf.Tensor, Any]],
    iterator: Any,
    writers: summaries.SummaryWriters,
    more_graphs: Sequence[Graph] = (),
) -> Any:
    """A new run's step one, inside the graph trace: trace_on records a tf.function's graph only
    while it is first traced, so this is the one moment to capture the step. Then the other
    functions' graphs (`more_graphs`), each traced on its first call. Returns the step's
    gradients, as each replica took them.

    Raises:
        common.errors.UserError: for a non-finite loss at step one.
        train_state.ModelNotBuiltError: for a layer that made its weights inside the step.
    """
    with _explaining_unknown_variables(state):
        loss, gradients = graphs.trace_and_write_graphs(
            train_function,
            steps.as_tuple(next(iterator)),
            state.models,
            writers.train,
            quiet=not run.is_chief,
        )
        run.check_loss(float(loss), step=1)
        for name, function, args in more_graphs:
            graphs.trace_step_graph(function, args, writers.train, name=name)
    return gradients


@contextlib.contextmanager
def _explaining_unknown_variables(state: train_state.TrainState) -> Iterator[None]:
    """Turns Keras's "Unknown variable ... This optimizer can only be called for the variables it
    was originally built with" (63 lines of traceback from inside the first step) into one line:
    a layer made its weights inside the step, after `TrainState.create` built the optimizers."""
    try:
        yield
    except ValueError as error:
        if "originally built with" not in str(error):
            raise
        raise train_state.ModelNotBuiltError(
            "the train step updates variables that its optimizer was not built over: a layer of "
            f"{', '.join(repr(model.name) for model in state.models)} made its weights inside the "
            "step (a subclassed model's at its first call), or the step passes one optimizer "
            "another's variables; call each model once on example inputs before "
            "TrainState.create, and give each optimizer its own models (optimizers=)"
        ) from None
