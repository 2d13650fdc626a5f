"""Windows of a multivariate time series: a synthetic one with known structure, or a CSV.

Synthetic: four latent factors (two oscillations, a slow drift and a regime that switches between
levels) drive `num_channels` channels through a fixed random mixing, plus noise, all fixed by the
seed. A VAE with a small latent space can recover that structure, which is what the reconstructions
in TensorBoard show.

CSV: one column per channel, an optional header row, and an optional time column (named `time`,
`timestamp`, `date` or `datetime`) that is dropped. Anything else wrong (a missing file, ragged
rows, a cell that is not a finite number or too large for float32, too few rows) is a `UserError`
naming the file, row and column.

Either way the series is split in time (the first 80% trains, the rest evaluates: no window spans
both), standardized per channel with the training part's mean and standard deviation only, and cut
into windows of `window_length` steps.
"""

import csv
import dataclasses
import itertools
import math
import pathlib
from typing import Any

import numpy as np
import tensorflow as tf

from common.errors import UserError

TRAIN_FRACTION = 0.8
SYNTHETIC_LENGTH = 20000
TIME_COLUMN_NAMES = {"time", "timestamp", "date", "datetime"}
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataFileError(UserError):
    """A data file that is missing or malformed; the message names the file and the place."""


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Unbatched windows, float32 [window_length, num_channels], standardized."""

    train: tf.data.Dataset
    eval: tf.data.Dataset
    num_channels: int
    description: str


def synthetic_series(num_channels: int, length: int, seed: int) -> np.ndarray:
    """[length, num_channels] float32: 4 latent factors, mixed, plus noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(length, dtype=np.float64)
    regime_levels = rng.normal(0.0, 1.0, size=6)
    switch_points = np.sort(rng.choice(np.arange(200, length - 200), size=5, replace=False))
    regime = regime_levels[np.searchsorted(switch_points, time)]
    factors = np.stack(
        [
            np.sin(2 * np.pi * time / 50.0 + rng.uniform(0, 2 * np.pi)),
            np.sin(2 * np.pi * time / 13.0 + rng.uniform(0, 2 * np.pi)),
            # A slow drift: locally a trend, but turning every few thousand steps, so the eval
            # part (the last 20% in time) stays in the range the training part covers.
            np.sin(2 * np.pi * time / 7000.0),
            regime,
        ],
        axis=1,
    )
    mixing = rng.normal(0.0, 1.0, size=(factors.shape[1], num_channels))
    noise = rng.normal(0.0, 0.1, size=(length, num_channels))
    return (factors @ mixing + noise).astype(np.float32)


def read_csv(path: str) -> np.ndarray:
    """Reads a CSV of a multivariate series into [rows, channels] float32, strictly.

    Row by row: each row's width is checked before anything of its size is allocated (a header of
    ten million columns above rows of three fails at the first row, not after a 30 GiB array),
    and each cell must be a number that float32 can hold (1e300 would become Inf in training).

    Raises:
        DataFileError: naming the file and the row (1-based, as an editor shows it) and column.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise DataFileError(f"data file {path} does not exist (or is not a file)")
    try:
        with file.open(newline="") as handle:
            return _read_rows(path, csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataFileError(f"data file {path} cannot be read as CSV: {error}") from error


def _read_rows(path: str, reader: Any) -> np.ndarray:
    """The values of a CSV reader's rows: see `read_csv`."""
    rows = ((reader.line_num, row) for row in reader if any(cell.strip() for cell in row))
    first_line, first_row = next(rows, (0, []))
    if not first_row:
        raise DataFileError(f"data file {path} is empty")
    width = len(first_row)
    has_header = not all(_is_number(cell) for cell in first_row)
    pending = [] if has_header else [(first_line, first_row)]
    names: list[str] = []
    kept_columns: list[int] = []
    values: list[np.ndarray] = []
    for line, row in itertools.chain(pending, rows):
        if len(row) != width:
            raise DataFileError(
                f"data file {path} row {line} has {len(row)} columns, expected {width}"
                + (" (as many as the header)" if has_header else "")
            )
        if not names:  # Only once a data row of the same width shows the header is meant.
            names = (
                [cell.strip() for cell in first_row]
                if has_header
                else [f"column {index + 1}" for index in range(width)]
            )
            kept_columns = [
                index for index, name in enumerate(names) if name.lower() not in TIME_COLUMN_NAMES
            ]
        values.append(np.array([_cell_value(path, line, row, names, c) for c in kept_columns]))
    if has_header and not names:  # A header and no data: the length check below says so.
        names = [cell.strip() for cell in first_row]
        kept_columns = [i for i, name in enumerate(names) if name.lower() not in TIME_COLUMN_NAMES]
    if not kept_columns:
        raise DataFileError(f"data file {path} has no data columns (only a time column)")
    if not values:
        return np.zeros((0, len(kept_columns)), np.float32)
    return np.stack(values).astype(np.float32)


def _cell_value(path: str, line: int, row: list[str], names: list[str], column: int) -> float:
    """The number in `row[column]`, or a DataFileError naming the file, row and column."""
    cell = row[column]
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    place = f"data file {path} row {line} column {column + 1} ({names[column]!r})"
    if not math.isfinite(value):
        raise DataFileError(f"{place}: {cell.strip()!r} is not a finite number") from None
    if abs(value) > FLOAT32_MAX:
        raise DataFileError(
            f"{place}: {cell.strip()!r} is too large for float32 (at most {FLOAT32_MAX:.1e} in "
            "magnitude), the precision the model trains in"
        )
    return value


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def make_windows(series: np.ndarray, window_length: int, stride: int) -> np.ndarray:
    """[length, channels] -> [num_windows, window_length, channels], windows `stride` apart."""
    starts = range(0, len(series) - window_length + 1, stride)
    return np.stack([series[start : start + window_length] for start in starts])


def split_and_window(
    series: np.ndarray, window_length: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Splits in time, standardizes with the training part's statistics, cuts windows.

    Raises:
        DataFileError: if either part is shorter than one window.
    """
    split = int(len(series) * TRAIN_FRACTION)
    train_part, eval_part = series[:split], series[split:]
    if len(eval_part) < window_length or len(train_part) < window_length:
        needed = math.ceil(window_length / (1 - TRAIN_FRACTION))
        raise DataFileError(
            f"{source} has {len(series)} rows: too short for windows of {window_length} steps in "
            f"both the training ({TRAIN_FRACTION:.0%}) and the eval part; it needs at least "
            f"{needed} rows (or a smaller --window_length)"
        )
    # In float64: float32 squares overflow past 1.8e19, so a column of values around 6e23 (which
    # float32 holds) had an infinite std, and standardized to all zeros.
    train_part, eval_part = train_part.astype(np.float64), eval_part.astype(np.float64)
    mean = train_part.mean(axis=0)
    std = train_part.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # A constant channel stays constant, not NaN.
    standardized_train, standardized_eval = (train_part - mean) / std, (eval_part - mean) / std
    # A channel nearly constant in training can put the eval part beyond float32's range.
    too_far = np.abs(standardized_eval).max(axis=0) > FLOAT32_MAX
    if too_far.any():
        column = int(np.argmax(too_far))
        raise DataFileError(
            f"{source} column {column + 1}: its eval part lies more than {FLOAT32_MAX:.1e} "
            "training standard deviations from the training mean, beyond float32, the "
            "precision the model trains in"
        )
    train_windows = make_windows(standardized_train, window_length, window_length // 4)
    eval_windows = make_windows(standardized_eval, window_length, window_length)
    return train_windows.astype(np.float32), eval_windows.astype(np.float32)


def load_datasets(
    data_path: str | None, window_length: int, num_channels: int, seed: int
) -> Datasets:
    """The synthetic series (data_path None) or the CSV's, as train and eval windows."""
    if data_path:
        series = read_csv(data_path)
        source = f"data file {data_path}"
        description = f"CSV {data_path}: {series.shape[0]} rows, {series.shape[1]} channels"
    else:
        series = synthetic_series(num_channels, SYNTHETIC_LENGTH, seed)
        source = "the synthetic series"
        description = (
            f"synthetic: {series.shape[1]} channels driven by 4 latent factors (2 oscillations, "
            f"a slow drift, regime switches), {series.shape[0]} steps"
        )
    train_windows, eval_windows = split_and_window(series, window_length, source)
    return Datasets(
        train=tf.data.Dataset.from_tensor_slices(train_windows),
        eval=tf.data.Dataset.from_tensor_slices(eval_windows),
        num_channels=series.shape[1],
        description=(
            f"{description}; {len(train_windows)} train and {len(eval_windows)} eval windows of "
            f"{window_length} steps, standardized with training statistics"
        ),
    )
