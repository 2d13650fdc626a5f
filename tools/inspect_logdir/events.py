"""Reading a run's events as TensorBoard's own loader reads them (`EventAccumulator`).

Every point is kept: by default the loader keeps only 10 tensors per tag, and the step checks need
them all.
"""

import collections
import os

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from common.logdir import paths

# Plugin names, as the summaries' metadata spell them (see tensorboard/plugins/*/metadata.py).
OP_GRAPH_PLUGIN = "graph_run_metadata_graph"
KERAS_GRAPH_PLUGIN = "graph_keras_model"
RUN_METADATA_PLUGIN = "graph_run_metadata"
SCALARS_PLUGIN = "scalars"
TEXT_PLUGIN = "text"
IMAGES_PLUGIN = "images"
HISTOGRAMS_PLUGIN = "histograms"
HPARAMS_PLUGIN = "hparams"
# The plugins the doctor reads; any other is listed by its tags alone.
KNOWN_PLUGINS = frozenset(
    {
        OP_GRAPH_PLUGIN,
        KERAS_GRAPH_PLUGIN,
        RUN_METADATA_PLUGIN,
        SCALARS_PLUGIN,
        TEXT_PLUGIN,
        IMAGES_PLUGIN,
        HISTOGRAMS_PLUGIN,
        HPARAMS_PLUGIN,
    }
)


def odd_event_files(directory: str) -> dict[str, str]:
    """The entries of `directory` named like event files that are not regular files, each with
    why (a directory, a FIFO, a broken link), found without opening them."""
    return {
        entry: reason
        for entry in sorted(os.listdir(directory))
        if "tfevents" in entry
        and (reason := paths.not_a_regular_file(os.path.join(directory, entry))) is not None
    }


def load_run(directory: str) -> event_accumulator.EventAccumulator:
    """The events of the run in `directory`, loaded, every point kept."""
    # TENSORS: 0 keeps every point (TF2 summaries all arrive as tensors); the TF1 kinds likewise.
    # Orphaned events are purged as TensorBoard's server does (only a TF1 SessionLog.START makes
    # any), so the steps checked are the steps the dashboards draw.
    accumulator = event_accumulator.EventAccumulator(
        directory,
        size_guidance={
            event_accumulator.TENSORS: 0,
            event_accumulator.SCALARS: 0,
            event_accumulator.HISTOGRAMS: 0,
            event_accumulator.IMAGES: 0,
            event_accumulator.GRAPH: 1,
        },
    )
    accumulator.Reload()
    return accumulator


def tags_by_plugin(accumulator: event_accumulator.EventAccumulator) -> dict[str, list[str]]:
    """The tensor tags of a loaded run, by the plugin their metadata name (empty for any other)."""
    by_plugin: dict[str, list[str]] = collections.defaultdict(list)
    for tag in accumulator.Tags()["tensors"]:
        by_plugin[accumulator.SummaryMetadata(tag).plugin_data.plugin_name].append(tag)
    return by_plugin


def scalar_points(
    accumulator: event_accumulator.EventAccumulator, scalar_tags: list[str]
) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every point of every scalar: the TF2 tensors of `scalar_tags` and the
    TF1 scalars."""
    points = {tag: tensor_points(accumulator, tag) for tag in scalar_tags}
    # TF1's tf.summary.scalar arrives as a Summary.Value.simple_value, under Tags()['scalars'].
    for tag in accumulator.Tags()["scalars"]:
        points[tag] = [(event.step, event.value) for event in accumulator.Scalars(tag)]
    return points


def tensor_points(accumulator, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every point of a scalar written as a tensor."""
    return [
        (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
        for event in accumulator.Tensors(tag)
    ]


def tensor_steps(accumulator, tag: str) -> list[int]:
    """The steps of every point of a tag written as a tensor."""
    return [event.step for event in accumulator.Tensors(tag)]


def legacy_steps(accumulator, kind: str, tag: str) -> list[int]:
    """The steps of every point of a TF1 histogram or image (`kind`: histograms, images)."""
    read = accumulator.Histograms if kind == "histograms" else accumulator.Images
    return [event.step for event in read(tag)]
