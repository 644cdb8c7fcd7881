"""Every model and baseline of a checkpoint scored on the same test users, and its statistics.

The predictions chapter compares Multi-VAE with Multi-DAE, a popularity ranking and EASE user
by user, at every cut-off K from 1 to :data:`MAX_K`. :func:`compute_comparison` ranks the
test users once per scorer and keeps per-user Recall@K and NDCG@K for every K;
:func:`load_comparison` stores the result in one ``.npz`` file keyed, as
:mod:`recsys.report.precompute` keys its artifacts, by the checkpoint's identity, the data's
fingerprint and the package version, so a chapter never refits EASE or reruns a model for a
checkpoint it has seen.

The statistics work on per-user values: :func:`bootstrap_means` resamples users with
replacement (the same resamples for every model, so differences are paired),
:func:`compare_with` turns the resamples into percentile intervals for each model and for its
difference from a reference model, and :func:`activity_buckets` cuts users into quantile
buckets of their fold-in size.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

import recsys
from recsys.checkpoint import Checkpoint
from recsys.errors import DataError
from recsys.pipeline import checkpoint_scorers
from recsys.preprocess import Dataset
from recsys.recommend import Scorer, evaluate
from recsys.report.precompute import cache_file, save_atomic
from recsys.splits import Holdout, Split

log = logging.getLogger(__name__)

MAX_K: Final = 100
LIST_LENGTH: Final = 10
N_RESAMPLES: Final = 1000
LEVEL: Final = 0.95
# Resamples drawn at a time: bounds memory at about this many users x resamples per model.
_RESAMPLE_CELLS: Final = 2_000_000
# Bumped when the stored arrays change meaning, so an old file is never read as a new one.
_FORMAT: Final = "comparison-1"


@dataclass
class Comparison:
    """Per-user scores of every model and baseline on one set of test users.

    Attributes
    ----------
    models
        Scorer names in display order: the checkpoint's models (primary first), then
        ``"popularity"`` and, when the checkpoint chose a penalty for it, ``"ease"``.
    user_nums
        Dataset user nums of the test users, shape (users,).
    n_fold_in, n_targets
        Fold-in items and held-out targets per user, int64 of shape (users,).
    recall, ndcg
        models x users x K float32: ``recall[m, u, k - 1]`` is Recall@k of model ``m`` for
        user ``u``; NaN for a user without targets.
    top_items
        models x users x :data:`LIST_LENGTH` int32 split columns of each model's first items,
        best first.
    """

    models: list[str]
    user_nums: np.ndarray
    n_fold_in: np.ndarray
    n_targets: np.ndarray
    recall: np.ndarray
    ndcg: np.ndarray
    top_items: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_nums)

    @property
    def max_k(self) -> int:
        return self.recall.shape[2]

    def values(self, metric: str, k: int) -> np.ndarray:
        """models x users float64 values of ``metric`` (``"recall"`` or ``"ndcg"``) at ``k``."""
        if metric not in ("recall", "ndcg"):
            raise KeyError(f"expected metric 'recall' or 'ndcg', got {metric!r}")
        if not 1 <= k <= self.max_k:
            raise KeyError(f"expected 1 <= k <= {self.max_k}, got {k!r}")
        return getattr(self, metric)[:, :, k - 1].astype(np.float64)

    def means(self, metric: str) -> np.ndarray:
        """models x K means over users of ``metric`` at every K (users without targets left out)."""
        return np.nanmean(getattr(self, metric).astype(np.float64), axis=1)


def compute_comparison(
    scorers: dict[str, Scorer], holdout: Holdout, max_k: int = MAX_K, batch_size: int = 1000
) -> Comparison:
    """Rank ``holdout``'s users with every scorer and keep Recall@K and NDCG@K for K = 1..max_k.

    ``max_k`` is lowered to the number of items when there are fewer.
    """
    if not scorers:
        raise DataError("expected at least one scorer, got none", field="scorers")
    k = min(max_k, holdout.targets.shape[1])
    shape = (len(scorers), holdout.n_users, k)
    out = Comparison(
        models=list(scorers), user_nums=np.asarray(holdout.user_nums, dtype=np.int64),
        n_fold_in=np.diff(holdout.fold_in.indptr).astype(np.int64),
        n_targets=np.diff(holdout.targets.indptr).astype(np.int64),
        recall=np.empty(shape, np.float32), ndcg=np.empty(shape, np.float32),
        top_items=np.empty((len(scorers), holdout.n_users, min(LIST_LENGTH, k)), np.int32),
    )

    # One top-k list per scorer; every smaller K is a prefix of it.
    for index, (name, scorer) in enumerate(scorers.items()):
        result = evaluate(scorer, holdout, ks=range(1, k + 1), batch_size=batch_size)
        out.recall[index] = np.column_stack([result.per_user["recall"][j] for j in result.ks])
        out.ndcg[index] = np.column_stack([result.per_user["ndcg"][j] for j in result.ks])
        out.top_items[index] = result.recommended[:, : out.top_items.shape[2]]
        log.info("%s on %d test users: NDCG@%d %.4f", name, holdout.n_users, k,
                 np.nanmean(out.ndcg[index, :, -1]))
    return out


def cache_key(checkpoint: Checkpoint, dataset: Dataset) -> str:
    """sha256 of the checkpoint's identity, the data fingerprint, the package version and K."""
    parts = (checkpoint.identity(), dataset.fingerprint, recsys.__version__, str(MAX_K), _FORMAT)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_path(checkpoint: Checkpoint, dataset: Dataset, root: str | Path = ".") -> Path:
    """Where :func:`load_comparison` keeps the comparison of ``checkpoint`` on ``dataset``."""
    return cache_file(root, "comparison", cache_key(checkpoint, dataset))


def load_comparison(
    checkpoint: Checkpoint, dataset: Dataset, split: Split, root: str | Path = "."
) -> Comparison:
    """The checkpoint's :class:`Comparison` on its test users, from the cache or computed."""
    path = cache_path(checkpoint, dataset, root)
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            log.info("comparison from cache %s", path)
            arrays = {name: stored[name] for name in stored.files}
        return Comparison(models=[str(name) for name in arrays.pop("models")], **arrays)

    comparison = compute_comparison(checkpoint_scorers(checkpoint, split), split.test)
    save_atomic(path, {"models": np.array(comparison.models, dtype=str),
                       "user_nums": comparison.user_nums, "n_fold_in": comparison.n_fold_in,
                       "n_targets": comparison.n_targets, "recall": comparison.recall,
                       "ndcg": comparison.ndcg, "top_items": comparison.top_items})
    return comparison


def bootstrap_means(
    values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """Means over users of bootstrap resamples, the same resampled users for every row.

    Parameters
    ----------
    values
        models x users per-user values; a user with NaN in any row is left out of all rows,
        so every model is judged on the same users.
    n_resamples
        Resamples of the users, each as many users as there are, drawn with replacement.
    seed
        Seed of the generator; resample ``r`` draws its users right after resample ``r - 1``.

    Returns
    -------
    np.ndarray
        n_resamples x models float64 means.
    """
    values = _complete_users(values)
    n_users = values.shape[1]
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, values.shape[0]), dtype=np.float64)

    # Resamples are drawn in blocks: models x block x users gathered values at most.
    block = max(1, _RESAMPLE_CELLS // n_users)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        users = rng.integers(0, n_users, size=(stop - start, n_users))
        means[start:stop] = values[:, users].mean(axis=2).T
    return means


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds of ``samples`` (resamples x anything) at ``level``."""
    if not 0 < level < 1:
        raise ValueError(f"level: expected a share between 0 and 1, got {level!r}")
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
    return low, high


def compare_with(
    values: np.ndarray, models: list[str], reference: str, *, n_resamples: int = N_RESAMPLES,
    seed: int = 0, level: float = LEVEL,
) -> pd.DataFrame:
    """Each model's mean with its bootstrap interval, and its paired difference from ``reference``.

    Parameters
    ----------
    values
        models x users per-user values, rows in the order of ``models``.
    models
        Row names; ``reference`` must be one of them.
    n_resamples, seed, level
        Bootstrap resamples (default 1000), their seed, and the interval's level (0.95).

    Returns
    -------
    pd.DataFrame
        One row per model: ``model``, ``mean``, ``low``, ``high``, and the difference
        ``reference - model`` as ``diff``, ``diff_low``, ``diff_high`` (all zero for the
        reference itself), and ``users``, the users the means are over.
    """
    if reference not in models:
        raise KeyError(f"expected reference among {models}, got {reference!r}")
    complete = _complete_users(values)
    samples = bootstrap_means(complete, n_resamples, seed)
    ref = models.index(reference)
    differences = samples[:, [ref]] - samples
    low, high = percentile_interval(samples, level)
    diff_low, diff_high = percentile_interval(differences, level)
    means = complete.mean(axis=1)
    return pd.DataFrame({
        "model": models, "mean": means, "low": low, "high": high,
        "diff": means[ref] - means, "diff_low": diff_low, "diff_high": diff_high,
        "users": complete.shape[1],
    })


def activity_buckets(n_fold_in: np.ndarray, n_buckets: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Cut users into quantile buckets of their fold-in size.

    Bucket ``b`` starts at the size of the user at rank ``b * users // n_buckets`` in
    ascending order and holds every user from that size up to the next bucket's start, so
    users of equal size share a bucket; ties that leave a bucket empty merge it away.

    Returns
    -------
    bucket, bounds
        Each user's bucket number (0 = least active), shape (users,), and buckets x 2 int64
        smallest and largest fold-in size in each bucket.
    """
    sizes = np.asarray(n_fold_in, dtype=np.int64)
    if sizes.ndim != 1 or len(sizes) == 0:
        raise ValueError(f"n_fold_in: expected a non-empty 1-d array, got shape {sizes.shape}")
    if n_buckets < 1:
        raise ValueError(f"n_buckets: expected at least 1, got {n_buckets!r}")
    ordered = np.sort(sizes)
    starts = np.unique(ordered[np.arange(n_buckets) * len(sizes) // n_buckets])
    bucket = np.searchsorted(starts, sizes, side="right") - 1
    bounds = np.array([[sizes[bucket == b].min(), sizes[bucket == b].max()]
                       for b in range(len(starts))], dtype=np.int64)
    return bucket, bounds


def _complete_users(values: np.ndarray) -> np.ndarray:
    """models x users float64 values without the users that are NaN for some model."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"values: expected a models x users array with users, got shape "
                         f"{values.shape}")
    complete = values[:, ~np.isnan(values).any(axis=0)]
    if complete.shape[1] == 0:
        raise ValueError("values: expected some user with a value for every model, got none")
    return complete
