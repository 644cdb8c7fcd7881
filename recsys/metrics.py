"""Ranking metrics for top-K recommendation, defined as in the Multi-VAE paper's code.

Every metric reads two inputs:

``recommended``
    a users x K integer array of item columns, best first in each row, with no repeats;
``targets``
    a users x items sparse matrix whose positive entries are the relevant (held-out) items,
    with rows aligned to ``recommended``.

Relevance is binary. For a user with ``n`` targets and ``h`` hits among the first K items:

* recall@K = h / min(K, n), so that a perfect list scores 1 even when n > K;
* NDCG@K = DCG / IDCG with DCG = sum of 1 / log2(r + 2) over the 0-based ranks r of hits and
  IDCG the same sum over the first min(K, n) ranks;
* precision@K = h / K; hit rate@K = 1 if h > 0 else 0;
* MRR@K = 1 / (r + 1) for the rank r of the first hit, 0 without a hit;
* coverage@K = distinct items recommended to anyone / number of items (one number).

A user without targets has no defined value: per-user arrays hold NaN for them, a
:class:`UndefinedMetricWarning` says how many there are, and :func:`mean_over_users` leaves
them out.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from numbers import Integral

import numpy as np
import scipy.sparse as sp

from recsys.errors import DataError

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit_rate", "mrr")


class UndefinedMetricWarning(UserWarning):
    """Some users have no targets, so their metrics are NaN and means leave them out."""


def hits(recommended: np.ndarray, targets: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Whether each recommended item is a target of its user.

    Parameters
    ----------
    recommended
        Item columns, users x K integers, best first.
    targets
        Relevant items, a users x items sparse matrix; positive entries count.

    Returns
    -------
    np.ndarray
        users x K booleans, True where ``recommended[u, r]`` is a target of user ``u``.
    """
    recommended, relevant = _check_inputs(recommended, targets)
    return _hits(recommended, relevant)


def recall(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """Recall@K per user: hits over ``min(K, number of targets)``.

    Parameters
    ----------
    recommended
        Item columns, users x K' integers, best first.
    targets
        Relevant items, a users x items sparse matrix; positive entries count.
    k
        How many leading columns of ``recommended`` to score; ``None`` (default) takes all K'.

    Returns
    -------
    np.ndarray
        float64 of shape (users,); NaN for users without targets.
    """
    return _per_user(_recall, recommended, targets, k)


def ndcg(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """NDCG@K per user with binary relevance and log2(rank + 2) discounts (ranks from 0).

    Parameters and return value as in :func:`recall`.
    """
    return _per_user(_ndcg, recommended, targets, k)


def precision(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """Precision@K per user: hits over K.

    Parameters and return value as in :func:`recall`.
    """
    return _per_user(_precision, recommended, targets, k)


def hit_rate(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """Hit rate@K per user: 1 when any of the first K items is a target, else 0.

    Parameters and return value as in :func:`recall`.
    """
    return _per_user(_hit_rate, recommended, targets, k)


def mrr(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """Reciprocal rank of the first hit among the first K items per user (0 without a hit).

    Its mean over users is MRR@K. Parameters and return value as in :func:`recall`.
    """
    return _per_user(_mrr, recommended, targets, k)


def coverage(recommended: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Catalogue coverage@K: the share of all items recommended to at least one user.

    Parameters
    ----------
    recommended
        Item columns, users x K' integers, best first.
    n_items
        Size of the catalogue (columns of the score matrix).
    k
        How many leading columns to count; ``None`` (default) takes all K'.

    Returns
    -------
    float
        Distinct recommended items over ``n_items``, in [0, 1].
    """
    if not isinstance(n_items, Integral) or n_items < 1:
        raise DataError(f"expected a positive number of items, got {n_items!r}", field="n_items")
    recommended = _check_recommended(recommended, int(n_items))
    k = _check_k(k, recommended.shape[1])
    return _coverage(recommended[:, :k], int(n_items))


def ranking_metrics(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray, ks: Iterable[int]
) -> dict[str, dict[int, np.ndarray]]:
    """Every metric of :data:`METRICS` per user at every K, from one hit lookup.

    The first K columns of a top-K' list are the top-K list, so the hits are looked up once for
    the largest K and sliced for the others.

    Parameters
    ----------
    recommended
        Item columns, users x K' integers, best first.
    targets
        Relevant items, a users x items sparse matrix; positive entries count.
    ks
        The cut-offs, each between 1 and K'.

    Returns
    -------
    dict
        ``result[metric][k]`` is a float64 array of shape (users,), NaN for users without
        targets.
    """
    recommended, relevant = _check_inputs(recommended, targets)
    ks = check_ks(ks, recommended.shape[1])
    n_targets = _target_counts(relevant, stacklevel=3)

    # Look hits up once for the largest K; every smaller K is a prefix.
    hit = _hits(recommended[:, : ks[-1]], relevant)
    return {
        name: {k: _undefined_for_empty(function(hit[:, :k], n_targets), n_targets) for k in ks}
        for name, function in _METRIC_FUNCTIONS.items()
    }


def mean_over_users(values: np.ndarray) -> float:
    """Mean of a per-user metric, leaving out users whose value is NaN (no targets).

    Returns NaN when no user has a value.
    """
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def check_ks(ks: Iterable[int], limit: int, name: str = "ks") -> tuple[int, ...]:
    """Validate cut-offs: integers between 1 and ``limit`` (a collection, or one integer).

    Returns them sorted, without repeats.
    """
    values = list(ks) if not isinstance(ks, Integral) else [ks]
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, Integral)
           or not 1 <= k <= limit]
    if not values or bad:
        raise DataError(f"expected one or more integers K with 1 <= K <= {limit}, "
                        f"got {values!r}", field=name)
    return tuple(sorted({int(k) for k in values}))


def _per_user(
    metric: Callable[[np.ndarray, np.ndarray], np.ndarray],
    recommended: np.ndarray,
    targets: sp.spmatrix | sp.sparray,
    k: int | None,
) -> np.ndarray:
    """Validate the inputs, look the hits up and apply one metric."""
    recommended, relevant = _check_inputs(recommended, targets)
    k = _check_k(k, recommended.shape[1])
    n_targets = _target_counts(relevant, stacklevel=4)
    hit = _hits(recommended[:, :k], relevant)
    return _undefined_for_empty(metric(hit, n_targets), n_targets)


# Per-user metrics from a users x K boolean hit matrix and the users' target counts. Users
# without targets may come out as anything here; _undefined_for_empty turns them into NaN.

def _recall(hit: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    return hit.sum(axis=1) / np.maximum(np.minimum(hit.shape[1], n_targets), 1)


def _ndcg(hit: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, hit.shape[1] + 2))
    dcg = hit @ discounts

    # ideal[n] is the DCG of a list whose first n items are hits.
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal[np.minimum(hit.shape[1], n_targets)]
    return dcg / np.where(idcg > 0, idcg, 1.0)


def _precision(hit: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    return hit.sum(axis=1) / hit.shape[1]


def _hit_rate(hit: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    return hit.any(axis=1).astype(np.float64)


def _mrr(hit: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    # argmax finds the first True; rows without a hit give 0 whatever argmax says.
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)


_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "recall": _recall, "ndcg": _ndcg, "precision": _precision, "hit_rate": _hit_rate,
    "mrr": _mrr,
}


def _coverage(recommended: np.ndarray, n_items: int) -> float:
    seen = np.zeros(n_items, dtype=bool)
    seen[recommended.ravel()] = True
    return float(seen.sum() / n_items)


def _hits(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """users x K booleans from a canonical binary CSR matrix, without densifying it.

    Each (user, item) pair gets the key ``user * n_items + item``; the keys of a canonical CSR
    matrix are then sorted, so membership is a binary search.
    """
    n_users, n_items = relevant.shape
    if relevant.nnz == 0:
        return np.zeros(recommended.shape, dtype=bool)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(relevant.indptr))
    keys = rows * n_items + relevant.indices.astype(np.int64)

    # users x K keys of the recommended pairs; a hit is a key found at its search position.
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + recommended
    position = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[position] == query


def _target_counts(relevant: sp.csr_matrix, stacklevel: int) -> np.ndarray:
    """Targets per user; warns once, at the public caller's line, when some users have none."""
    n_targets = np.diff(relevant.indptr).astype(np.int64)
    empty = int((n_targets == 0).sum())
    if empty:
        warnings.warn(
            f"{empty} of {len(n_targets)} users have no targets; their metrics are NaN and "
            "means over users leave them out",
            UndefinedMetricWarning,
            stacklevel=stacklevel,
        )
    return n_targets


def _undefined_for_empty(values: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    return np.where(n_targets > 0, values, np.nan).astype(np.float64)


def _check_recommended(recommended: np.ndarray, n_items: int) -> np.ndarray:
    """A users x K int64 array of distinct item columns in ``[0, n_items)``."""
    array = np.asarray(recommended)
    if array.ndim != 2:
        raise DataError(f"expected a users x K array of item columns, got an array of shape "
                        f"{array.shape}", field="recommended")
    if array.dtype.kind not in "iu":
        raise DataError(f"expected integer item columns, got dtype {array.dtype}",
                        field="recommended")
    if not 1 <= array.shape[1] <= n_items:
        raise DataError(f"expected between 1 and {n_items} (the number of items) recommended "
                        f"items per user, got K = {array.shape[1]}", field="recommended")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= n_items):
        raise DataError(f"expected item columns in [0, {n_items}), got values from "
                        f"{array.min()} to {array.max()}", field="recommended")

    # A repeated item would count twice in DCG, so lists must not repeat items.
    ordered = np.sort(array, axis=1)
    repeats = np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1))
    if repeats.size:
        raise DataError(f"expected distinct items in each row, got repeats in {repeats.size} "
                        f"rows (first: row {repeats[0]})", field="recommended")
    return array


def _check_inputs(
    recommended: np.ndarray, targets: sp.spmatrix | sp.sparray
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Validate both inputs and check that their rows are the same users."""
    relevant = _check_targets(targets)
    array = _check_recommended(recommended, relevant.shape[1])
    if array.shape[0] != relevant.shape[0]:
        raise DataError(f"expected one row per user of recommended ({array.shape[0]} rows), "
                        f"got {relevant.shape[0]}", field="targets")
    return array, relevant


def _check_targets(targets: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """A canonical CSR copy of the targets' positive entries."""
    if not sp.issparse(targets) or targets.ndim != 2:
        raise DataError(f"expected a users x items scipy sparse matrix, got "
                        f"{type(targets).__name__}", field="targets")

    # Summing duplicates also sorts each row's columns, which _hits relies on.
    relevant = sp.csr_matrix(targets, dtype=np.float64, copy=True)
    relevant.sum_duplicates()

    # Keep positive entries only, as a binary pattern.
    relevant.data = (relevant.data > 0).astype(np.float64)
    relevant.eliminate_zeros()
    return relevant


def _check_k(k: int | None, available: int) -> int:
    if k is None:
        return available
    if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= available:
        raise DataError(f"expected an integer K with 1 <= K <= {available} (the recommended "
                        f"columns), got {k!r}", field="k")
    return int(k)
