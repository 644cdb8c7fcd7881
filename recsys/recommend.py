"""Top-K recommendation from any scorer, and evaluation of a scorer on held-out users.

A *scorer* maps a batch of fold-in rows (a batch x items CSR matrix) to dense scores
(batch x items, float32, as a NumPy array or a torch tensor on any device); higher is better.
Models and baselines are scorers, so one :func:`top_k` and one :func:`evaluate` serve them all.

Ties are broken deterministically: among items with equal scores the lower item column ranks
first, on every device and for every batch size.

Scores are copied before seen items are masked, so a scorer may return a view of its own
state. A scorer that returns a new float32 tensor on every call can say so with an attribute
``fresh_scores = True`` (see :func:`fresh_scores`); its scores are then masked in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recsys.errors import DataError
from recsys.metrics import METRICS, check_ks, coverage, mean_over_users, ranking_metrics
from recsys.splits import Holdout

log = logging.getLogger(__name__)

Scorer = Callable[[sp.csr_matrix], np.ndarray | torch.Tensor]
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100)

# Rank keys pack a 32-bit score key above a 32-bit column key in one int64.
_COLUMN_BITS = 32

# Extra float candidates per row before the exact (score, column) ordering; a row falls back
# to ranking all its items only when its k-th score ties the smallest candidate.
_CANDIDATE_MARGIN = 16


def fresh_scores(scorer: Scorer) -> Scorer:
    """Mark ``scorer`` as returning new scores on every call, which may be changed in place."""
    scorer.fresh_scores = True  # type: ignore[attr-defined]
    return scorer


def score_batches(
    scorer: Scorer,
    fold_in: sp.csr_matrix,
    batch_size: int = 500,
    exclude_seen: bool = True,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Score users batch by batch, with their fold-in items set to -inf.

    Parameters
    ----------
    scorer
        Maps a batch x items CSR matrix of fold-in rows to batch x items scores.
    fold_in
        users x items CSR matrix of what each user has already interacted with.
    batch_size
        Users per call to ``scorer`` (default 500).
    exclude_seen
        Set the scores of each user's fold-in items to -inf (default True).

    Yields
    ------
    rows, scores
        The slice of ``fold_in`` rows in the batch and their float32 scores (batch x items),
        a tensor on the scorer's device that the caller owns and may modify.
    """
    fold_in = _check_fold_in(fold_in)
    _check_positive(batch_size, "batch_size")
    owned = getattr(scorer, "fresh_scores", False) is True
    for start in range(0, fold_in.shape[0], batch_size):
        rows = slice(start, min(start + batch_size, fold_in.shape[0]))
        batch = fold_in[rows]
        scores = _score_tensor(scorer(batch), batch.shape, owned)
        if exclude_seen:
            _mask_seen(scores, batch)
        yield rows, scores


def top_k(
    scorer: Scorer,
    fold_in: sp.csr_matrix,
    k: int,
    batch_size: int = 500,
    exclude_seen: bool = True,
) -> np.ndarray:
    """The ``k`` best-scored item columns of every user, best first.

    Parameters
    ----------
    scorer
        Maps a batch x items CSR matrix of fold-in rows to batch x items scores.
    fold_in
        users x items CSR matrix of what each user has already interacted with.
    k
        Items per user, between 1 and the number of items.
    batch_size
        Users scored at a time (default 500); the result does not depend on it.
    exclude_seen
        Never rank a fold-in item above an unseen one (default True). A user with fewer than
        ``k`` unseen items gets them first and then fold-in items, lowest column first.

    Returns
    -------
    np.ndarray
        users x k int64 item columns. Equal scores rank the lower column first.
    """
    fold_in = _check_fold_in(fold_in)
    n_users, n_items = fold_in.shape
    _check_positive(k, "k", upper=n_items)
    if exclude_seen:
        _warn_if_short(fold_in, k)

    started = time.perf_counter()
    recommended = np.empty((n_users, k), dtype=np.int64)
    for rows, scores in score_batches(scorer, fold_in, batch_size, exclude_seen):
        recommended[rows] = top_columns(scores, k)
    log.debug("top-%d for %d users in %.2f s", k, n_users, time.perf_counter() - started)
    return recommended


@dataclass(frozen=True)
class Evaluation:
    """Ranking metrics of one scorer on one set of held-out users.

    Attributes
    ----------
    ks
        The cut-offs, ascending.
    user_nums
        Dataset user nums of the evaluated users, in row order.
    n_targets
        Targets per user, shape (users,).
    per_user
        ``per_user[metric][k]``: float64 array of shape (users,) for every metric of
        :data:`recsys.metrics.METRICS`; NaN for users without targets.
    coverage
        ``coverage[k]``: share of items recommended to at least one user.
    recommended
        users x max(ks) int64 item columns, best first.
    seconds
        Wall-clock time of scoring and ranking.
    """

    ks: tuple[int, ...]
    user_nums: np.ndarray
    n_targets: np.ndarray
    per_user: dict[str, dict[int, np.ndarray]]
    coverage: dict[int, float]
    recommended: np.ndarray
    seconds: float

    def mean(self, metric: str, k: int) -> float:
        """Mean of ``metric`` at ``k`` over users with targets."""
        if metric not in self.per_user or k not in self.ks:
            raise KeyError(f"expected a metric in {METRICS} and k in {self.ks}, "
                           f"got {metric!r} and {k!r}")
        return mean_over_users(self.per_user[metric][k])

    def summary(self) -> pd.DataFrame:
        """Means over users: one row per K, one column per metric, plus ``coverage``."""
        rows = {k: {m: self.mean(m, k) for m in METRICS} | {"coverage": self.coverage[k]}
                for k in self.ks}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("k")

    def per_user_frame(self) -> pd.DataFrame:
        """One row per user (indexed by user num): ``n_targets`` and ``{metric}@{k}`` columns."""
        columns = {"n_targets": self.n_targets}
        columns |= {f"{m}@{k}": self.per_user[m][k] for m in METRICS for k in self.ks}
        return pd.DataFrame(columns, index=pd.Index(self.user_nums, name="user_num"))


def evaluate(
    scorer: Scorer,
    holdout: Holdout,
    ks: Iterable[int] = DEFAULT_KS,
    batch_size: int = 500,
) -> Evaluation:
    """Recommend to held-out users from their fold-in items and score against their targets.

    Parameters
    ----------
    scorer
        Maps a batch x items CSR matrix of fold-in rows to batch x items scores.
    holdout
        Users with aligned ``fold_in`` and ``targets`` (users x items CSR matrices).
    ks
        Cut-offs (default 1, 5, 10, 20, 50, 100), each at most the number of items. The top
        max(ks) list is computed once; every smaller K is its prefix.
    batch_size
        Users scored at a time (default 500).

    Returns
    -------
    Evaluation
        Per-user metrics at every K, coverage, and the recommended lists.
    """
    if holdout.fold_in.shape != holdout.targets.shape:
        raise DataError(f"expected fold_in and targets of the same shape, got "
                        f"{holdout.fold_in.shape} and {holdout.targets.shape}", field="holdout")
    n_items = holdout.fold_in.shape[1]
    ks = check_ks(ks, n_items)

    # Seen items are excluded: a held-out target is never among the user's fold-in items.
    started = time.perf_counter()
    recommended = top_k(scorer, holdout.fold_in, ks[-1], batch_size=batch_size)
    seconds = time.perf_counter() - started

    per_user = ranking_metrics(recommended, holdout.targets, ks)
    log.debug("evaluated %d users in %.2f s: NDCG@%d %.4f", holdout.n_users, seconds, ks[-1],
              mean_over_users(per_user["ndcg"][ks[-1]]))
    return Evaluation(
        ks=ks,
        user_nums=np.asarray(holdout.user_nums),
        n_targets=(sp.csr_matrix(holdout.targets) > 0).getnnz(axis=1).astype(np.int64),
        per_user=per_user,
        coverage={k: coverage(recommended, n_items, k) for k in ks},
        recommended=recommended,
        seconds=seconds,
    )


def _rank_keys(scores: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Distinct int64 keys that order scores for ranking.

    Sorting keys in descending order puts higher scores first and, among equal scores, lower
    item columns first. The key packs an order-preserving integer image of the float32 score
    into the high 32 bits and the reversed column into the low 32 bits, so one ``topk`` over
    the keys is exact and deterministic.

    Parameters
    ----------
    scores
        batch x n scores.
    columns
        batch x n item columns of ``scores``; default: the columns 0..n-1 of every row.
    """
    # Adding zero turns -0.0 into +0.0, so the two zeros tie as they compare equal.
    bits = (scores.to(torch.float32) + 0.0).view(torch.int32)

    # Negative floats order backwards as integers; flipping their 31 magnitude bits fixes that
    # (an arithmetic shift by 31 gives all ones for negatives and zero otherwise).
    bits ^= (bits >> 31) & 0x7FFFFFFF

    # batch x n: score key in the high half, reversed column in the low half.
    keys = bits.to(torch.int64)
    keys <<= _COLUMN_BITS
    if columns is None:
        columns = torch.arange(scores.shape[-1], device=scores.device, dtype=torch.int64)
    return keys.add_((1 << _COLUMN_BITS) - 1 - columns)


def top_columns(scores: torch.Tensor, k: int) -> np.ndarray:
    """batch x k best columns of a batch x items score tensor, best first.

    Equal scores rank the lower column first. A float ``topk`` picks ``k`` plus a margin of
    candidates per row; the exact (score, column) order is taken among them, and a row whose
    k-th score ties its smallest candidate is ranked over all its items instead.
    """
    n_candidates = k + _CANDIDATE_MARGIN
    if n_candidates >= scores.shape[1]:
        _check_no_nan(scores)
        return _exact_top_columns(scores, k).cpu().numpy()

    # topk ranks NaN above every number, so a row with a NaN has one among its candidates.
    values, candidates = torch.topk(scores, n_candidates, dim=1, sorted=False)
    _check_no_nan(values)

    # batch x k: the exact order among the candidates.
    order = torch.topk(_rank_keys(values, candidates), k, dim=1, sorted=True).indices
    best = torch.gather(candidates, 1, order)

    # Items left out score at most the smallest candidate; a k-th score above it is safe.
    kth = torch.gather(values, 1, order[:, -1:]).squeeze(1)
    unsure = torch.nonzero(kth <= values.min(dim=1).values).squeeze(1)
    if len(unsure):
        best[unsure] = _exact_top_columns(scores[unsure], k)
    return best.cpu().numpy().astype(np.int64, copy=False)


def _exact_top_columns(scores: torch.Tensor, k: int) -> torch.Tensor:
    """batch x k int64 best columns from keys over every item (no candidate shortcut)."""
    return torch.topk(_rank_keys(scores), k, dim=1, sorted=True).indices


def _check_no_nan(scores: torch.Tensor) -> None:
    if torch.isnan(scores).any():
        raise DataError("expected scores without NaN, got NaN from the scorer", field="scores")


def _score_tensor(
    scores: np.ndarray | torch.Tensor, shape: tuple[int, int], owned: bool = False
) -> torch.Tensor:
    """A float32 tensor of a scorer's output, checked to be batch x items.

    The output is copied unless ``owned`` says the scorer made it for this call alone and it
    is already a contiguous float32 tensor.
    """
    if isinstance(scores, torch.Tensor):
        tensor = scores.detach()
        reusable = owned and tensor.dtype == torch.float32 and tensor.is_contiguous()
        if not reusable:
            tensor = tensor.to(dtype=torch.float32, copy=True)
    else:
        tensor = torch.tensor(np.asarray(scores, dtype=np.float32))
    if tuple(tensor.shape) != tuple(shape):
        raise DataError(f"expected scores of shape {tuple(shape)} (batch x items), got "
                        f"{tuple(tensor.shape)}", field="scores")
    return tensor


def _mask_seen(scores: torch.Tensor, batch: sp.csr_matrix) -> None:
    """Set the scores of the batch's nonzero entries to -inf, in place.

    ``scores`` is contiguous, so entry (u, i) sits at flat position ``u * items + i``.
    """
    rows = np.repeat(np.arange(batch.shape[0], dtype=np.int64), np.diff(batch.indptr))
    flat = torch.from_numpy(rows * batch.shape[1] + batch.indices).to(scores.device)
    scores.view(-1).index_fill_(0, flat, float("-inf"))


def _warn_if_short(fold_in: sp.csr_matrix, k: int) -> None:
    """Log users whose unseen items cannot fill a top-k list."""
    unseen = fold_in.shape[1] - fold_in.getnnz(axis=1)
    short = int((unseen < k).sum())
    if short:
        log.warning("%d users have fewer than %d unseen items; their lists end with seen items",
                    short, k)


def _check_fold_in(fold_in: sp.csr_matrix) -> sp.csr_matrix:
    if not sp.issparse(fold_in) or fold_in.ndim != 2:
        raise DataError(f"expected a users x items scipy sparse matrix, got "
                        f"{type(fold_in).__name__}", field="fold_in")
    return sp.csr_matrix(fold_in)


def _check_positive(value: int, name: str, upper: int | None = None) -> None:
    limit = "" if upper is None else f" and at most {upper}"
    valid = isinstance(value, Integral) and not isinstance(value, bool) and value >= 1
    if not valid or (upper is not None and value > upper):
        raise DataError(f"expected an integer of at least 1{limit}, got {value!r}", field=name)
