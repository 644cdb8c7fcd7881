"""Correlations the chapters state in prose: Pearson's r and Spearman's rank correlation.

Both return NaN, with a warning, when either variable is constant, since no correlation is
defined then; the chapters' sentences say so instead of printing a number.
"""

from __future__ import annotations

import warnings

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks.

    Parameters
    ----------
    values
        Shape (n,).

    Returns
    -------
    numpy.ndarray
        float64 ranks, shape (n,): ``[10, 20, 20, 5]`` gives ``[2, 3.5, 3.5, 1]``.
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]

    # Each run of equal values gets the mean of the ranks it spans.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation of paired samples ``x`` and ``y`` (shape (n,), n >= 2).

    NaN, with a warning, when either is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"x, y: expected two 1-d arrays of the same length >= 2, got shapes "
                         f"{x.shape} and {y.shape}")
    dx, dy = x - x.mean(), y - y.mean()
    scale = np.sqrt((dx @ dx) * (dy @ dy))
    if scale == 0:
        warnings.warn("a constant variable has no correlation; returning NaN", RuntimeWarning,
                      stacklevel=2)
        return float("nan")
    return float(np.clip((dx @ dy) / scale, -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks of ``x`` and ``y``."""
    return pearson(average_ranks(x), average_ranks(y))


def strength(rho: float) -> str:
    """A word for the size of a correlation: none, weak, moderate or strong."""
    size = abs(rho)
    if not np.isfinite(size) or size < 0.1:
        return "no"
    if size < 0.3:
        return "a weak"
    if size < 0.6:
        return "a moderate"
    return "a strong"
