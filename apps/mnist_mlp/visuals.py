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
"""

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from common import metrics, projector, summaries

NUM_CLASSES = 10
DIGIT_SIDE = 28
DIGIT_SCALE = 2  # 56-pixel digits: small enough for a grid, large enough to read.
CAPTION_HEIGHT = 12  # One line of PIL's default font.
GRID_COLUMNS = 8
MAX_MISCLASSIFIED = 32  # Four rows: enough to see what the model confuses.
CELL = 26  # Confusion-matrix cell side, in pixels: room for a four-digit count.
MARGIN = 18  # For the row and column labels.
NUM_EMBEDDED = 1000  # Clusters by class show at a few hundred points; the sprite stays small.


def write_eval_summaries(
    results: metrics.Results,
    embed_and_classify: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
    digits: tuple[tf.Tensor, tf.Tensor],
    writers: summaries.SummaryWriters,
    step: int,
    sprite: list[projector.Sprite],
) -> None:
    """Writes an eval's PR curves and confusion matrix at `step` from its `results` (the eval
    step's counts: `pr_curve` [NUM_CLASSES, 2, thresholds], `confusion_matrix` [NUM_CLASSES,
    NUM_CLASSES]); then `embed_and_classify(images) -> (hidden activations, logits)`, one call
    on `digits` (the first `NUM_EMBEDDED` eval digits, `(images, labels)`), for the misclassified
    grid and the Projector's embeddings in the eval run's directory. The digits' sprite is
    written at the first call and kept in `sprite` (the same digits at every eval)."""
    writer = writers.eval
    curves = results["pr_curve"]
    summaries.write_pr_curves(
        writer, {f"pr_curve/{digit}": curves[digit] for digit in range(NUM_CLASSES)}, step
    )
    embeddings, logits = (tensor.numpy() for tensor in embed_and_classify(digits[0]))
    images, labels = (tensor.numpy() for tensor in digits)
    if not sprite:
        pixels = (images.reshape(-1, DIGIT_SIDE, DIGIT_SIDE) * 255).round().astype(np.uint8)
        sprite.append(projector.write_sprite(f"{writers.logdir}/eval", pixels))
    projector.write_embeddings(f"{writers.logdir}/eval", embeddings, {"label": labels}, sprite[0])
    predicted = logits.argmax(axis=1)
    with writer.as_default(step=step):
        summaries.write_image("misclassified", misclassified_grid(images, labels, predicted))
        image = confusion_matrix_image(results["confusion_matrix"])
        summaries.write_image("confusion_matrix", image)


def misclassified_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The first `MAX_MISCLASSIFIED` wrong digits as one [height, width, 1] uint8 image: each
    digit under its caption `true>predicted` (e.g. `7>1`), white on black as MNIST draws them."""
    wrong = np.flatnonzero(labels != predicted)[:MAX_MISCLASSIFIED]
    side = DIGIT_SIDE * DIGIT_SCALE
    rows = max(1, -(-len(wrong) // GRID_COLUMNS))
    grid = Image.new("L", (GRID_COLUMNS * side, rows * (CAPTION_HEIGHT + side)), 0)
    draw = ImageDraw.Draw(grid)
    if not len(wrong):
        draw.text((4, 4), "no misclassified digits", fill=255)
    for position, index in enumerate(wrong):
        left = (position % GRID_COLUMNS) * side
        top = (position // GRID_COLUMNS) * (CAPTION_HEIGHT + side)
        # The pipeline's pixels are in [0, 1] (see data.preprocess): back to 0-255.
        pixels = (images[index].reshape(DIGIT_SIDE, DIGIT_SIDE) * 255).clip(0, 255)
        digit = Image.fromarray(pixels.astype(np.uint8)).resize((side, side), Image.NEAREST)
        grid.paste(digit, (left, top + CAPTION_HEIGHT))
        draw.text((left + 2, top), f"{labels[index]}>{predicted[index]}", fill=255)
    return np.asarray(grid)[..., None]  # White on black: one grey channel.


def confusion_matrix_image(counts: np.ndarray) -> np.ndarray:
    """The confusion matrix, `counts` [true digit, predicted digit] (a `ConfusionMatrix`
    metric's result), as a [height, width, 3] uint8 image: true digits down the left, predicted
    across the top, each cell's count written in it and shaded by its share of its row (the
    diagonal dark when the model is right)."""
    counts = np.asarray(counts).round().astype(np.int64)  # Whole counts, held as float64.
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = MARGIN + NUM_CLASSES * CELL
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for digit in range(NUM_CLASSES):
        draw.text((MARGIN + digit * CELL + CELL // 2 - 3, 3), str(digit), fill="black")
        draw.text((5, MARGIN + digit * CELL + CELL // 2 - 6), str(digit), fill="black")
    for true in range(NUM_CLASSES):
        for guess in range(NUM_CLASSES):
            shade = int(255 * (1 - shares[true, guess]))
            box = (MARGIN + guess * CELL, MARGIN + true * CELL)
            draw.rectangle((*box, box[0] + CELL - 1, box[1] + CELL - 1), fill=(shade, shade, 255))
            ink = "white" if shade < 128 else "black"  # Readable on dark and light cells alike.
            draw.text((box[0] + 2, box[1] + CELL // 2 - 6), str(counts[true, guess]), fill=ink)
    return np.asarray(image)
