"""The Custom Scalars dashboard's layout: which scalar tags are drawn together on one chart."""

import re
from collections.abc import Mapping, Sequence

import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata


def scalars_layout(charts: Mapping[str, Mapping[str, Sequence[str]]]) -> layout_pb2.Layout:
    """A Custom Scalars layout: `{category: {chart title: [scalar tags drawn together]}}`.

    Each tag is matched whole (`loss` is not `reconstruction_loss`), in every run that has it, so
    a chart of `loss` draws the train and eval curves together. TensorBoard merges the layouts of
    all runs by category title: name a category after its app, so two apps in one logdir keep
    their charts apart.
    """
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title=category,
                chart=[
                    layout_pb2.Chart(
                        title=title,
                        multiline=layout_pb2.MultilineChartContent(
                            tag=[f"^{re.escape(tag)}$" for tag in tags]
                        ),
                    )
                    for title, tags in category_charts.items()
                ],
            )
            for category, category_charts in charts.items()
        ]
    )


def write_scalars_layout(writer: tf.summary.SummaryWriter, layout: layout_pb2.Layout) -> None:
    """Writes `layout` for the Custom Scalars dashboard, at step 0: once, at a run's start.

    The plugin has no TF2 summary op; this writes what its `summary.pb` would, as a TF2 summary.
    """
    with writer.as_default(step=0):
        tf.summary.write(
            custom_scalar_metadata.CONFIG_SUMMARY_TAG,
            tf.constant(layout.SerializeToString()),
            metadata=custom_scalar_metadata.create_summary_metadata(),
        )
