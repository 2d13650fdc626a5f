"""What mnist_mlp writes at each eval besides its scalars.

From the counts the eval step takes over the whole eval set (its `pr_curve` and
`confusion_matrix` metrics), with no model call:
eval/  `pr_curve/<digit>`: one precision-recall curve per class (that digit against the rest);
       `confusion_matrix`: counts of true (rows) against predicted (columns) digits.
From one eager model call on the first `NUM_EMBEDDED` eval digits (the hidden layer and the
logits together), the only eval digits held in memory besides the eval's own:
eval/  `misclassified`: a grid of those digits the model gets wrong (among the first
       `NUM_EMBEDDED`, not the whole eval set), each captioned `true>predicted`;
       `projector/`: the hidden layer's embeddings of those digits, with their labels and a
       sprite, for the Projector (the latest eval's).

All of it runs on the summaries' thread, beside training on the same cores, so what is the same
at every eval is made once: the digits as NumPy arrays; the confusion matrix's labelled frame;
and the Projector's sprite, metadata and config (`projector.EmbeddingWriter`, which then writes
only each eval's tensor). The pictures' captions and counts are drawn by Pillow's
`ImageDraw.text` in its built-in default font. The curves and both pictures go to the event file
as one event.
"""

import functools
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from common import summaries
from common.summaries import metrics, projector

NUM_CLASSES = 10
DIGIT_SIDE = 28
DIGIT_SCALE = 2  # 56-pixel digits: small enough for a grid, large enough to read.
CAPTION_HEIGHT = 12  # One line of PIL's default font.
GRID_COLUMNS = 8
MAX_MISCLASSIFIED = 32  # Four rows: enough to see what the model confuses.
CELL = 26  # Confusion-matrix cell side, in pixels: room for a four-digit count.
MARGIN = 18  # For the row and column labels.
NUM_EMBEDDED = 1000  # Clusters by class show at a few hundred points; the sprite stays small.
# (left, top) of a caption in its cell of the misclassified grid, and of a count in its cell of
# the confusion matrix.
CAPTION_POSITION = (2, 0)
COUNT_POSITION = (2, CELL // 2 - 6)


class EvalSummaries:
    """Writes mnist_mlp's eval summaries (see the module's docstring) at each eval, from one
    model call on `digits`, the first `NUM_EMBEDDED` eval digits: the same at every eval, so
    converted to NumPy, and their sprite and labels written for the Projector, once."""

    def __init__(
        self,
        embed_and_classify: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
        digits: tuple[tf.Tensor, tf.Tensor],
    ) -> None:
        """Args:
        embed_and_classify: `(images) -> (hidden activations, logits)`, the model's layers with
            two outputs, called eagerly at each eval (so it reads the weights as of that eval:
            see `training_loop.AppSummaries.on_eval`).
        digits: `(images [points, 784] in [0, 1], labels [points])`.
        """
        self._embed_and_classify = embed_and_classify
        self._images = digits[0]  # The model's input, as the model takes it.
        self.images, self.labels = (tensor.numpy() for tensor in digits)
        self._embedding_writer: projector.EmbeddingWriter | None = None  # At the first eval.

    def write(self, results: metrics.Results, writers: summaries.SummaryWriters, step: int) -> None:
        """Writes an eval's summaries at `step`, in the eval run: the PR curves and the confusion
        matrix from its `results` (the eval step's counts: `pr_curve` [NUM_CLASSES, 2,
        thresholds], `confusion_matrix` [NUM_CLASSES, NUM_CLASSES]), and from one model call on
        the digits the misclassified grid and the Projector's embeddings."""
        curves = results["pr_curve"]
        # Eager: traced, the call took 0.9 ms less (1.5 ms against 2.3, alone on 2 cores) but
        # 45 ms to trace, which a default run's 4 evals never pay back.
        embeddings, logits = (tensor.numpy() for tensor in self._embed_and_classify(self._images))
        if self._embedding_writer is None:
            pixels = (self.images.reshape(-1, DIGIT_SIDE, DIGIT_SIDE) * 255).round()
            self._embedding_writer = projector.EmbeddingWriter(
                f"{writers.logdir}/eval", {"label": self.labels}, pixels.astype(np.uint8)
            )
        # At every eval, not only the last (the "and at each eval if cheap"): the
        # embeddings come from the grid's own model call, and after the first eval only the tensor
        # file is written: 0.4 ms of this thread's CPU (0.8 ms of its time) an eval in a
        # 20,000-step synthetic run (2026-11-26, 2 cores), of 8.5 ms for all of this method.
        self._embedding_writer.write(embeddings)
        predicted = logits.argmax(axis=1)
        # The curves and both pictures in one event: one write op and one flush (a writer scope
        # flushes as it ends) an eval, where there were three ops and two flushes.
        summary = summaries.pr_curves_summary(
            {f"pr_curve/{digit}": curves[digit] for digit in range(NUM_CLASSES)}
        )
        pictures = {
            "misclassified": misclassified_grid(self.images, self.labels, predicted),
            "confusion_matrix": confusion_matrix_image(results["confusion_matrix"]),
        }
        summary.MergeFrom(summaries.images_summary(pictures))
        summaries.write_summary(writers.eval, summary, step)


def misclassified_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The first `MAX_MISCLASSIFIED` wrong digits as one [height, width, 1] uint8 image: each
    digit under its caption `true>predicted` (e.g. `7>1`), white on black as MNIST draws them."""
    wrong = np.flatnonzero(labels != predicted)[:MAX_MISCLASSIFIED]
    side = DIGIT_SIDE * DIGIT_SCALE
    cell_height = CAPTION_HEIGHT + side
    if not len(wrong):
        grid = Image.new("L", (GRID_COLUMNS * side, cell_height), 0)
        ImageDraw.Draw(grid).text((4, 4), "no misclassified digits", fill=255)
        return np.asarray(grid)[..., None]
    rows = -(-len(wrong) // GRID_COLUMNS)
    cells = np.zeros((rows * GRID_COLUMNS, cell_height, side), np.uint8)
    # The pipeline's pixels are in [0, 1] (see data.preprocess): back to 0-255.
    pixels = (images[wrong].reshape(-1, DIGIT_SIDE, DIGIT_SIDE) * 255).clip(0, 255)
    scaled = pixels.astype(np.uint8).repeat(DIGIT_SCALE, axis=1).repeat(DIGIT_SCALE, axis=2)
    cells[: len(wrong), CAPTION_HEIGHT:] = scaled
    tiled = cells.reshape(rows, GRID_COLUMNS, cell_height, side).transpose(0, 2, 1, 3)
    grid = Image.fromarray(tiled.reshape(rows * cell_height, GRID_COLUMNS * side))
    draw = ImageDraw.Draw(grid)
    left, top = CAPTION_POSITION
    for position, index in enumerate(wrong):
        row, column = divmod(position, GRID_COLUMNS)
        caption = f"{labels[index]}>{predicted[index]}"
        draw.text((column * side + left, row * cell_height + top), caption, fill=255)
    return np.asarray(grid)[..., None]


def confusion_matrix_image(counts: np.ndarray) -> np.ndarray:
    """The confusion matrix, `counts` [true digit, predicted digit] (a `ConfusionMatrix`
    metric's result), as a [height, width, 3] uint8 image: true digits down the left, predicted
    across the top, each cell's count written in it and shaded by its share of its row (the
    diagonal dark when the model is right). A count too long for its cell (five digits) is cut
    at the cell's edge: the next cell, filled after it, covers the rest."""
    counts = np.asarray(counts).round().astype(np.int64)  # Whole counts, held as float64.
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    shades = (255 * (1 - shares)).astype(np.uint8)  # Truncated, not rounded: 3/4 is 63.
    image = Image.fromarray(_confusion_matrix_frame())
    draw = ImageDraw.Draw(image)
    left, top = COUNT_POSITION
    for true in range(NUM_CLASSES):
        for guess in range(NUM_CLASSES):
            shade = int(shades[true, guess])
            x, y = MARGIN + guess * CELL, MARGIN + true * CELL
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=(shade, shade, 255))
            # White on dark cells, black on light ones (shades of blue): readable on both.
            ink = "white" if shade < 128 else "black"
            draw.text((x + left, y + top), str(counts[true, guess]), fill=ink)
    return np.asarray(image)


@functools.cache
def _confusion_matrix_frame() -> np.ndarray:
    """The confusion matrix's white image with its row and column labels, the cells left for
    `confusion_matrix_image`: the same at every eval, drawn once."""
    side = MARGIN + NUM_CLASSES * CELL
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for digit in range(NUM_CLASSES):
        draw.text((MARGIN + digit * CELL + CELL // 2 - 3, 3), str(digit), fill="black")
        draw.text((5, MARGIN + digit * CELL + CELL // 2 - 6), str(digit), fill="black")
    frame = np.asarray(image)
    frame.flags.writeable = False  # Shared by every eval's image: each copies it.
    return frame
