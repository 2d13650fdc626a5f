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
at every eval is made once: the digits as NumPy arrays; the glyphs of the pictures' text
(`glyph_table`), from which NumPy composes the captions and counts, pixel for pixel what
`ImageDraw.text` draws; the confusion matrix's labelled frame; and the Projector's sprite,
metadata and config (`projector.EmbeddingWriter`, which then writes only each eval's tensor).
The curves and both pictures go to the event file as one event.
"""

import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

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
# Every character the pictures' captions and counts are made of (see `glyph_table`).
CHARACTERS = "0123456789>"
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
            see `training_loop.run`'s on_eval).
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
    if not len(wrong):
        grid = Image.new("L", (GRID_COLUMNS * side, CAPTION_HEIGHT + side), 0)
        ImageDraw.Draw(grid).text((4, 4), "no misclassified digits", fill=255)
        return np.asarray(grid)[..., None]
    rows = -(-len(wrong) // GRID_COLUMNS)
    cells = np.zeros((rows * GRID_COLUMNS, CAPTION_HEIGHT + side, side), np.uint8)
    # The pipeline's pixels are in [0, 1] (see data.preprocess): back to 0-255.
    pixels = (images[wrong].reshape(-1, DIGIT_SIDE, DIGIT_SIDE) * 255).clip(0, 255)
    scaled = pixels.astype(np.uint8).repeat(DIGIT_SCALE, axis=1).repeat(DIGIT_SCALE, axis=2)
    cells[: len(wrong), CAPTION_HEIGHT:] = scaled
    captions = [f"{labels[index]}>{predicted[index]}" for index in wrong]
    left, top = CAPTION_POSITION
    _draw_texts(cells[: len(wrong)], left, top, captions, ink=255)
    grid = cells.reshape(rows, GRID_COLUMNS, CAPTION_HEIGHT + side, side).transpose(0, 2, 1, 3)
    return grid.reshape(rows * (CAPTION_HEIGHT + side), GRID_COLUMNS * side, 1)


def confusion_matrix_image(counts: np.ndarray) -> np.ndarray:
    """The confusion matrix, `counts` [true digit, predicted digit] (a `ConfusionMatrix`
    metric's result), as a [height, width, 3] uint8 image: true digits down the left, predicted
    across the top, each cell's count written in it and shaded by its share of its row (the
    diagonal dark when the model is right). A count too long for its cell (five digits) is cut
    at the cell's edge."""
    counts = np.asarray(counts).round().astype(np.int64)  # Whole counts, held as float64.
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    shades = (255 * (1 - shares)).astype(np.uint8)  # Truncated, not rounded: 3/4 is 63.
    colors = np.stack([shades, shades, np.full_like(shades, 255)], axis=-1)  # Shades of blue.
    cells = np.empty((NUM_CLASSES, NUM_CLASSES, CELL, CELL, 3), np.uint8)
    cells[...] = colors[:, :, None, None]
    # White on dark cells, black on light ones: readable on both. One per cell, as the texts.
    inks = np.where(shades < 128, 255, 0).astype(np.uint8).reshape(-1, 1, 1, 1)
    left, top = COUNT_POSITION
    texts = [str(count) for count in counts.ravel()]
    _draw_texts(cells.reshape(-1, CELL, CELL, 3), left, top, texts, inks)
    image = _confusion_matrix_frame().copy()
    side = NUM_CLASSES * CELL
    image[MARGIN:, MARGIN:] = cells.transpose(0, 2, 1, 3, 4).reshape(side, side, 3)
    return image


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


@functools.cache
def glyph_table() -> np.ndarray:
    """Each of `CHARACTERS` as ImageDraw.text draws it alone at (0, 0) with PIL's default font,
    as an alpha mask, and then a blank for padding: [len(CHARACTERS) + 1, line height, advance]
    uint8.

    Drawn once, because Pillow's text drawing (layout, FreeType, a mask, a paste) cost ~40 µs a
    call and an eval drew about 150 texts. Each of these glyphs lies inside its advance, the
    same whole number of pixels for all, so side by side they are what ImageDraw.text draws for
    the whole text, pixel for pixel (tests/test_mnist_mlp.py compares them with Pillow's).

    Raises:
        ValueError: if a character's glyph would not fit its advance in this Pillow's font.
    """
    font = ImageFont.load_default()  # What ImageDraw.text draws with when given no font.
    ascent, descent = font.getmetrics()
    advance = font.getlength(CHARACTERS[0])
    masks = []
    for character in CHARACTERS:
        left, _, right, bottom = font.getbbox(character)
        fits = left >= 0 and right <= advance and bottom <= ascent + descent
        if font.getlength(character) != advance or not advance.is_integer() or not fits:
            raise ValueError(f"{character!r} does not fit a {advance}-pixel box in {font}")
        canvas = Image.new("L", (int(advance), ascent + descent), 0)
        ImageDraw.Draw(canvas).text((0, 0), character, fill=255, font=font)
        masks.append(np.asarray(canvas))
    masks.append(np.zeros_like(masks[0]))
    return np.stack(masks)


def text_masks(texts: Sequence[str], length: int) -> np.ndarray:
    """Each text's alpha mask as ImageDraw.text draws it with PIL's default font, its first
    `length` characters (`CHARACTERS` only) padded with blanks: [len(texts), line height,
    length * advance] uint8, from `glyph_table`.

    Raises:
        ValueError: if a text has a character not in `CHARACTERS`.
    """
    unknown = set().union(*texts) - set(CHARACTERS)
    if unknown:
        raise ValueError(
            f"the pictures draw only {CHARACTERS!r}, not {''.join(sorted(unknown))!r}: add them "
            "to visuals.CHARACTERS if each fits a digit's width in PIL's default font, or draw "
            "that text with ImageDraw.text"
        )
    table = glyph_table()
    blank = len(CHARACTERS)
    codes = [
        [CHARACTERS.index(character) for character in text[:length]]
        + [blank] * (length - len(text))
        for text in texts
    ]
    masks = table[np.array(codes, np.intp).reshape(len(texts), length)]
    count, _, height, width = masks.shape
    return masks.transpose(0, 2, 1, 3).reshape(count, height, length * width)


def _draw_texts(
    cells: np.ndarray, left: int, top: int, texts: Sequence[str], ink: int | np.ndarray
) -> None:
    """Draws `texts[i]` in `cells[i]` ([cells, height, width] or [..., 3] uint8) at (`left`,
    `top`), as ImageDraw.text would on each cell alone: cut at the cell's edges, `ink` (one
    value, or one per cell broadcast against the cells) blended through the glyphs' alpha."""
    height, width = cells.shape[1:3]
    longest = max(len(text) for text in texts)
    masks = text_masks(texts, longest)[:, : height - top, : width - left]
    region = cells[:, top : top + masks.shape[1], left : left + masks.shape[2]]
    region[...] = blend(region, ink, masks[..., None] if cells.ndim == 4 else masks)


def blend(background: np.ndarray, ink: int | np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`ink` over uint8 `background` through uint8 `alpha`, rounded as Pillow rounds a fill
    through a mask (ImageDraw.text's last step): uint8, of the arrays' broadcast shape."""
    alpha = alpha.astype(np.uint16)  # The sums below stay under 2**16: half uint32's memory.
    mixed = background * (255 - alpha) + np.asarray(ink, np.uint16) * alpha + 128
    return (((mixed >> 8) + mixed) >> 8).astype(np.uint8)
