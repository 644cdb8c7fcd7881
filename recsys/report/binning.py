"""Aggregation that keeps chart data small whatever the number of users or items.

A scatter of one point per user stops being readable, and stops fitting in a page, long
before a data set stops growing. :func:`grid_cells` bins two variables into a grid of at most
``bins x bins`` cells and keeps, per non-empty cell, its edges, how many rows fall in it and
the median of any other variable; :func:`histogram_frame` does the same in one dimension.
Numbers sent to a chart are rounded by :func:`significant`, which keeps specs short.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

GRID_BINS: Final = 40
SIGNIFICANT_DIGITS: Final = 4


def significant(values: np.ndarray | float, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant digits; zeros and non-finite values are kept.

    Parameters
    ----------
    values
        Any array of numbers (or one number).
    digits
        Significant digits to keep (default 4).

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0)
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.where(np.isfinite(values), np.round(values * scale) / scale, values)


def edges(values: np.ndarray, bins: int, *, log: bool = False) -> np.ndarray:
    """``bins + 1`` equal-width edges spanning ``values`` (equal in log10 when ``log``).

    A constant variable gets a unit-wide range around its value, so every bin has a width.
    """
    scaled = np.log10(values) if log else np.asarray(values, dtype=np.float64)
    low, high = float(scaled.min()), float(scaled.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    grid = np.linspace(low, high, bins + 1)
    return 10.0**grid if log else grid


def bin_index(values: np.ndarray, bin_edges: np.ndarray, *, log: bool = False) -> np.ndarray:
    """0-based bin of each value; the last bin includes its upper edge."""
    scaled = np.log10(values) if log else values
    scaled_edges = np.log10(bin_edges) if log else bin_edges
    index = np.searchsorted(scaled_edges, scaled, side="right") - 1
    return np.clip(index, 0, len(bin_edges) - 2)


def grid_cells(
    x: np.ndarray,
    y: np.ndarray,
    bins: int = GRID_BINS,
    *,
    log_x: bool = False,
    log_y: bool = False,
    medians: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Bin the pairs ``(x, y)`` into a ``bins x bins`` grid and describe each non-empty cell.

    Parameters
    ----------
    x, y
        Paired values, shape (n,); strictly positive where the axis is logarithmic.
    bins
        Cells per axis (default :data:`GRID_BINS`).
    log_x, log_y
        Space the edges of that axis equally in log10.
    medians
        Further variables of shape (n,), whose median per cell is kept under their key.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty cell: ``x_start``, ``x_end``, ``y_start``, ``y_end`` (data
        units), ``count`` (rows in the cell) and one column per key of ``medians``; at most
        ``bins**2`` rows.
    """
    x_edges, y_edges = edges(x, bins, log=log_x), edges(y, bins, log=log_y)
    cell = bin_index(x, x_edges, log=log_x) * bins + bin_index(y, y_edges, log=log_y)
    frame = pd.DataFrame({"cell": cell, **(medians or {})})
    grouped = frame.groupby("cell", sort=True)
    cells = grouped.size().rename("count").to_frame()
    for name in medians or {}:
        cells[name] = significant(grouped[name].median().to_numpy())
    column, row = np.divmod(cells.index.to_numpy(), bins)
    cells.insert(0, "x_start", significant(x_edges[column]))
    cells.insert(1, "x_end", significant(x_edges[column + 1]))
    cells.insert(2, "y_start", significant(y_edges[row]))
    cells.insert(3, "y_end", significant(y_edges[row + 1]))
    return cells.reset_index(drop=True)


def histogram_frame(
    values: np.ndarray, bins: int = GRID_BINS, value_range: tuple[float, float] | None = None
) -> pd.DataFrame:
    """Counts of ``values`` in equal-width bins: columns ``start``, ``end`` and ``count``."""
    counts, bin_edges = np.histogram(values, bins=bins, range=value_range)
    return pd.DataFrame({"start": significant(bin_edges[:-1]), "end": significant(bin_edges[1:]),
                         "count": counts})
