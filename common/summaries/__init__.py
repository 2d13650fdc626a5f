"""What a run writes for TensorBoard, one job a module.

- `writers`: `SummaryWriters` (a run's train and eval writers and the eval summaries' thread),
  `create_writers`, `ScalarWriter` and `write_scalars` (a boundary's scalars), `write_summary`
  (many values in one event).
- `hparams`: `write_hparams`, a run's settings for the HParams dashboard, and its `trial_id`.
- `text`: Markdown for the Text dashboard (`markdown_code_block`, `markdown_table`).
- `layout`: the Custom Scalars layout (`scalars_layout`, `write_scalars_layout`).
- `histograms`: `histogram_buckets`, `write_histograms`, `write_variable_histograms` and
  `variable_tags`.
- `pr_curves`: the PR Curves dashboard's tensors, from counts (`pr_curves_summary`,
  `write_pr_curves`).
- `images`: the Images dashboard's PNGs (`encode_png`, `images_summary`, `write_image`).
- `graphs`, `projector`, `metrics`: the graphs, the Projector's files, and the counts an eval step
  takes for the curves and pictures (imported by name: `from common.summaries import metrics`).

The public names of the modules above are re-exported here, so callers write `summaries.<name>`.
A logdir's preparation and its event files (the trim of a resumed run, the restart markers) are
`common/logdir/`'s.

Train and eval write to sibling directories with the same tag names (`loss`, `accuracy`), so
TensorBoard treats them as two runs and overlays their curves on one chart per tag. Paths go
through `tf.io.gfile`, so a logdir may also be a cloud bucket (`gs://...`) on a cluster.
"""

# The writing half's public names, as callers have always used them (`summaries.write_scalars`);
# `__all__` lists them.
from common.summaries.histograms import (
    HISTOGRAM_BUCKETS,
    histogram_buckets,
    variable_tags,
    write_histograms,
    write_variable_histograms,
)
from common.summaries.hparams import trial_id, write_hparams
from common.summaries.images import encode_png, images_summary, write_image
from common.summaries.layout import layout_pb2, scalars_layout, write_scalars_layout
from common.summaries.pr_curves import (
    PR_CURVE_THRESHOLDS,
    pr_curve_counts,
    pr_curve_data,
    pr_curve_from_counts,
    pr_curves_summary,
    write_pr_curves,
)
from common.summaries.text import markdown_code_block, markdown_table
from common.summaries.writers import (
    ScalarWriter,
    SummaryWriters,
    create_writers,
    write_scalars,
    write_summary,
)

__all__ = [
    "HISTOGRAM_BUCKETS",
    "PR_CURVE_THRESHOLDS",
    "ScalarWriter",
    "SummaryWriters",
    "create_writers",
    "encode_png",
    "histogram_buckets",
    "images_summary",
    "layout_pb2",
    "markdown_code_block",
    "markdown_table",
    "pr_curve_counts",
    "pr_curve_data",
    "pr_curve_from_counts",
    "pr_curves_summary",
    "scalars_layout",
    "trial_id",
    "variable_tags",
    "write_histograms",
    "write_hparams",
    "write_image",
    "write_pr_curves",
    "write_scalars",
    "write_scalars_layout",
    "write_summary",
    "write_variable_histograms",
]
