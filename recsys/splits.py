"""Train / held-out splits of a :class:`~recsys.preprocess.Dataset`.

Every strategy first gives each interaction a *role* (train, fold-in, validation target, test
target or dropped) and then assembles matrices from the roles, so that the guarantees are
easy to state and to test: an interaction has exactly one role, so nothing is both trained on
and held out.

Two families exist:

* weak generalisation (``random``, ``leave_one_out``, ``temporal_user``, ``temporal_global``):
  every user's training interactions train the model and the same user's held-out items are
  the targets;
* strong generalisation (``heldout_users``, the paper's protocol): validation and test users
  are never trained on; the model folds in 80% of their items and is scored on the rest.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import DataError
from recsys.preprocess import Dataset, interactions_to_csr

log = logging.getLogger(__name__)

TRAIN, FOLD_IN, VALIDATION, TEST, DROPPED = 0, 1, 2, 3, 4
ROLE_NAMES = ("train", "fold-in", "validation target", "test target", "dropped")
Strategy = Literal["random", "leave_one_out", "temporal_user", "temporal_global", "heldout_users"]
STRATEGIES: tuple[str, ...] = (
    "random", "leave_one_out", "temporal_user", "temporal_global", "heldout_users",
)


@dataclass
class Holdout:
    """Users to evaluate: what the model is shown (fold-in) and what it should find (targets).

    ``fold_in`` and ``targets`` are users x split-items CSR matrices whose rows follow
    ``user_nums`` (dataset user nums). Every row has at least one target.
    """

    user_nums: np.ndarray
    fold_in: sp.csr_matrix
    targets: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return len(self.user_nums)


@dataclass
class Split:
    """The result of a split strategy.

    Attributes
    ----------
    strategy, settings
        The strategy's name and the arguments that produced it (seed included).
    roles
        One role code per row of ``dataset.interactions`` (``TRAIN`` ... ``DROPPED``).
    item_nums
        Dataset item nums of the split's columns; every matrix here uses this column order.
    train_user_nums, train
        The users whose ``train`` rows (users x split-items CSR) fit the model.
    validation, test
        Users to evaluate on; ``validation`` is ``None`` until one is carved out.
    stats
        Counts that describe the split (see :func:`split_stats`).
    """

    strategy: str
    settings: dict[str, Any]
    roles: np.ndarray
    item_nums: np.ndarray
    train_user_nums: np.ndarray
    train: sp.csr_matrix
    validation: Holdout | None
    test: Holdout
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_nums)


def make_split(dataset: Dataset, strategy: str, **settings: Any) -> Split:
    """Run the named strategy (one of :data:`STRATEGIES`) with its keyword settings."""
    functions = {
        "random": random_split,
        "leave_one_out": leave_one_out_split,
        "temporal_user": temporal_user_split,
        "temporal_global": temporal_global_split,
        "heldout_users": heldout_users_split,
    }
    if strategy not in functions:
        raise DataError(f"unknown split {strategy!r}; expected one of {', '.join(STRATEGIES)}",
                        field="split.strategy")
    return functions[strategy](dataset, **settings)


def random_split(dataset: Dataset, fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out a random ``fraction`` of each user's items (at least one, if they have two)."""
    _check_fraction(fraction, "split.fraction")
    ranks = _ranks_within_user(dataset, np.random.default_rng(seed).random(_n(dataset)))
    roles = np.where(ranks < _holdout_counts(dataset, fraction), TEST, TRAIN).astype(np.int8)
    return assemble(dataset, roles, "random", {"fraction": fraction, "seed": seed})


def leave_one_out_split(dataset: Dataset, seed: int = 0) -> Split:
    """Hold out each user's latest item.

    Without timestamps there is no "latest": a random item per user (drawn with ``seed``) is
    held out instead. Users with a single item keep it for training and get no target.
    """
    if dataset.has_timestamps:
        # Interactions are sorted by user, then time: the last row of a user is the latest.
        keys = np.arange(_n(dataset), dtype=np.float64)
        ranks = _ranks_within_user(dataset, -keys)
    else:
        ranks = _ranks_within_user(dataset, np.random.default_rng(seed).random(_n(dataset)))
    counts = _user_counts(dataset)
    roles = np.where((ranks == 0) & (counts >= 2), TEST, TRAIN).astype(np.int8)
    return assemble(dataset, roles, "leave_one_out", {"seed": seed})


def temporal_user_split(dataset: Dataset, fraction: float = 0.2) -> Split:
    """Train on the first ``1 - fraction`` of each user's history in time; hold out the rest."""
    _require_timestamps(dataset, "temporal_user")
    _check_fraction(fraction, "split.fraction")

    # Rank from the newest interaction: the newest `holdout` ones are held out.
    keys = -np.arange(_n(dataset), dtype=np.float64)
    ranks = _ranks_within_user(dataset, keys)
    roles = np.where(ranks < _holdout_counts(dataset, fraction), TEST, TRAIN).astype(np.int8)
    return assemble(dataset, roles, "temporal_user", {"fraction": fraction})


def temporal_global_split(
    dataset: Dataset, fraction: float = 0.2, cut: int | str | None = None
) -> Split:
    """Hold out every interaction after one global time cut.

    ``cut`` is epoch seconds or an ISO date; by default it is the time before which
    ``1 - fraction`` of all interactions happened. Users with no interaction before the cut
    cannot be folded in: their interactions are dropped and counted in ``stats`` as
    ``cold_start_users``. Items first seen after the cut stay in the targets and are counted
    as ``cold_start_items``.
    """
    _require_timestamps(dataset, "temporal_global")
    times = dataset.interactions["timestamp"].to_numpy()
    if cut is None:
        _check_fraction(fraction, "split.fraction")
        cut_time = int(np.quantile(times, 1.0 - fraction, method="lower"))
    else:
        cut_time = _parse_cut(cut)

    roles = np.where(times > cut_time, TEST, TRAIN).astype(np.int8)

    # A user with nothing before the cut has no history to fold in.
    users = dataset.interactions["user_num"].to_numpy()
    has_train = np.bincount(users[roles == TRAIN], minlength=dataset.n_users) > 0
    roles[~has_train[users]] = DROPPED
    settings = {"fraction": fraction if cut is None else None, "cut": cut_time}
    return assemble(dataset, roles, "temporal_global", settings)


def heldout_users_split(
    dataset: Dataset,
    n_heldout: int | float = 0.1,
    seed: int = 0,
    target_fraction: float = 0.2,
    min_items: int = 5,
) -> Split:
    """The paper's strong generalisation: disjoint train, validation and test users.

    ``n_heldout`` users (a count, or a fraction of all users) go to validation and as many to
    test, drawn after shuffling users with ``seed``. Items are restricted to those the
    training users interacted with. Each held-out user with at least ``min_items`` items
    has a random ``target_fraction`` of them held out as targets and the rest folded in;
    held-out users with fewer items give no targets and are left out of the metrics (they are
    counted in ``stats``).
    """
    _check_fraction(target_fraction, "split.target_fraction")
    count = _heldout_count(n_heldout, dataset.n_users)
    rng = np.random.default_rng(seed)

    # Shuffle users, then deal out test, validation and training users.
    order = rng.permutation(dataset.n_users)
    group = np.zeros(dataset.n_users, dtype=np.int8)
    group[order[:count]] = TEST
    group[order[count:2 * count]] = VALIDATION

    users = dataset.interactions["user_num"].to_numpy()
    items = dataset.interactions["item_num"].to_numpy()
    roles = np.where(group[users] == TRAIN, TRAIN, FOLD_IN).astype(np.int8)

    # Items nobody trained on cannot be predicted: drop them from held-out users.
    train_items = np.bincount(items[roles == TRAIN], minlength=dataset.n_items) > 0
    roles[~train_items[items]] = DROPPED

    # Within each held-out user, a random target_fraction of the kept items become targets.
    kept = roles == FOLD_IN
    kept_counts = np.bincount(users[kept], minlength=dataset.n_users)
    keys = np.where(kept, rng.random(len(roles)), np.inf)
    ranks = _ranks_within_user(dataset, keys)
    n_targets = np.floor(target_fraction * kept_counts).astype(np.int64)
    n_targets[kept_counts < min_items] = 0
    is_target = kept & (ranks < n_targets[users])
    roles[is_target] = group[users][is_target]

    settings = {"n_heldout": count, "seed": seed, "target_fraction": target_fraction,
                "min_items": min_items}
    return assemble(dataset, roles, "heldout_users", settings, user_groups=group)


def add_validation(
    dataset: Dataset, split: Split, fraction: float = 0.2, users: float = 0.1, seed: int = 0
) -> Split:
    """Carve a validation set out of a weak-generalisation split's training interactions.

    A random ``users`` fraction of the training users with at least two training items have a
    random ``fraction`` of those items (at least one, and never all) turned into validation
    targets. The test targets are untouched. A split that already has validation users is
    returned as it is.
    """
    if split.validation is not None:
        return split
    _check_fraction(fraction, "split.validation.fraction")
    _check_fraction(users, "split.validation.users")
    rng = np.random.default_rng(seed)
    roles = split.roles.copy()
    user_col = dataset.interactions["user_num"].to_numpy()

    # Pick validation users among those with something left to train on.
    train_counts = np.bincount(user_col[roles == TRAIN], minlength=dataset.n_users)
    eligible = np.flatnonzero(train_counts >= 2)
    if len(eligible) == 0:
        raise DataError("no user has two training items; expected at least one to validate on",
                        path=dataset.source, field="split.validation")
    chosen = np.zeros(dataset.n_users, dtype=bool)
    chosen[rng.choice(eligible, size=max(1, round(users * len(eligible))), replace=False)] = True

    keys = np.where(roles == TRAIN, rng.random(len(roles)), np.inf)
    ranks = _ranks_within_user(dataset, keys)
    # At least one validation target, and at least one item left to train on.
    n_val = np.maximum(1, np.round(fraction * train_counts)).astype(np.int64)
    n_val = np.minimum(n_val, train_counts - 1)
    roles[(roles == TRAIN) & chosen[user_col] & (ranks < n_val[user_col])] = VALIDATION
    settings = {**split.settings, "validation": {"fraction": fraction, "users": users,
                                                 "seed": seed}}
    return assemble(dataset, roles, split.strategy, settings, item_nums=split.item_nums)


def assemble(
    dataset: Dataset,
    roles: np.ndarray,
    strategy: str,
    settings: dict[str, Any],
    *,
    user_groups: np.ndarray | None = None,
    item_nums: np.ndarray | None = None,
) -> Split:
    """Build a :class:`Split`'s matrices from one role per interaction.

    ``user_groups`` (strong generalisation) says which users are held out: their items are
    never in ``train``. Columns are the items with a training interaction when users are held
    out, and every item otherwise (unless ``item_nums`` is given).
    """
    users = dataset.interactions["user_num"].to_numpy()
    items = dataset.interactions["item_num"].to_numpy()
    if item_nums is None:
        item_nums = (np.unique(items[roles == TRAIN]) if user_groups is not None
                     else np.arange(dataset.n_items))

    # Map dataset item nums to split columns (-1 for items outside the split).
    column = np.full(dataset.n_items, -1, dtype=np.int64)
    column[item_nums] = np.arange(len(item_nums))
    n_cols = len(item_nums)

    def rows(mask: np.ndarray, row_users: np.ndarray) -> sp.csr_matrix:
        row_of = np.full(dataset.n_users, -1, dtype=np.int64)
        row_of[row_users] = np.arange(len(row_users))
        return interactions_to_csr(row_of[users[mask]], column[items[mask]],
                                   (len(row_users), n_cols))

    train_users = np.unique(users[roles == TRAIN])
    if user_groups is not None:
        train_users = np.flatnonzero(user_groups == TRAIN)
    train = rows(roles == TRAIN, train_users)
    seen = (roles == TRAIN) | (roles == FOLD_IN)

    def holdout(role: int) -> Holdout | None:
        target_users = np.unique(users[roles == role])
        if len(target_users) == 0:
            return None
        # Test users are shown everything not held out for the test, validation items too.
        shown = seen | (roles == VALIDATION) if role == TEST else seen
        fold_users = np.isin(users, target_users)
        return Holdout(target_users, rows(shown & fold_users, target_users),
                       rows(roles == role, target_users))

    test = holdout(TEST)
    if test is None:
        raise DataError(f"the {strategy} split holds out nothing; expected at least one user "
                        "with a held-out item", field="split")
    split = Split(strategy, settings, roles, item_nums, train_users, train,
                  holdout(VALIDATION), test)
    split.stats = split_stats(dataset, split, user_groups)
    return split


def split_stats(
    dataset: Dataset, split: Split, user_groups: np.ndarray | None = None
) -> dict[str, int]:
    """Counts that describe a split: sizes per role, users with targets, cold starts."""
    roles = split.roles
    users = dataset.interactions["user_num"].to_numpy()
    items = dataset.interactions["item_num"].to_numpy()
    held = (roles == TEST) | (roles == VALIDATION)

    # Cold start: held-out items never trained on, users whose history is all held out.
    trained_items = np.zeros(dataset.n_items, dtype=bool)
    trained_items[items[roles == TRAIN]] = True
    seen_users = np.zeros(dataset.n_users, dtype=bool)
    seen_users[users[(roles == TRAIN) | (roles == FOLD_IN)]] = True
    cold_items = np.unique(items[held & ~trained_items[items]])
    cold_users = np.unique(users[~seen_users[users]])

    stats = {
        "train_interactions": int((roles == TRAIN).sum()),
        "fold_in_interactions": int((roles == FOLD_IN).sum()),
        "validation_targets": int((roles == VALIDATION).sum()),
        "test_targets": int((roles == TEST).sum()),
        "dropped_interactions": int((roles == DROPPED).sum()),
        "train_users": len(split.train_user_nums),
        "validation_users": 0 if split.validation is None else split.validation.n_users,
        "test_users": split.test.n_users,
        "items": split.n_items,
        "cold_start_items": len(cold_items),
        "cold_start_users": len(cold_users),
    }
    if user_groups is not None:
        heldout = np.flatnonzero(user_groups != TRAIN)
        with_targets = np.unique(users[held])
        stats["heldout_users_without_targets"] = int(len(heldout) - len(with_targets))
    return stats


def interaction_roles_frame(dataset: Dataset, split: Split) -> pd.DataFrame:
    """``dataset.interactions`` with a readable ``role`` column, for tables and timelines."""
    frame = dataset.interactions.copy()
    frame["role"] = pd.Categorical.from_codes(split.roles, categories=list(ROLE_NAMES))
    return frame


def _n(dataset: Dataset) -> int:
    return len(dataset.interactions)


def _user_counts(dataset: Dataset) -> np.ndarray:
    """Each interaction's user's number of interactions."""
    users = dataset.interactions["user_num"].to_numpy()
    return np.bincount(users, minlength=dataset.n_users)[users]


def _holdout_counts(dataset: Dataset, fraction: float) -> np.ndarray:
    """How many items each interaction's user holds out: round(fraction * n), at least one.

    A user with a single item holds out nothing, so that every user keeps a history.
    """
    counts = _user_counts(dataset)
    holdout = np.maximum(1, np.round(fraction * counts)).astype(np.int64)
    return np.where(counts >= 2, np.minimum(holdout, counts - 1), 0)


def _ranks_within_user(dataset: Dataset, keys: np.ndarray) -> np.ndarray:
    """Rank of each interaction among its user's interactions by ascending ``keys``."""
    users = dataset.interactions["user_num"].to_numpy()
    order = np.lexsort((keys, users))
    starts = np.searchsorted(users[order], users[order], side="left")
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[order] = np.arange(len(keys)) - starts
    return ranks


def _check_fraction(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise DataError(f"expected a fraction strictly between 0 and 1, got {value!r}",
                        field=name)


def _require_timestamps(dataset: Dataset, strategy: str) -> None:
    if not dataset.has_timestamps:
        raise DataError(f"the {strategy} split needs timestamps; expected a timestamp column",
                        path=dataset.source, field="timestamp")


def _heldout_count(n_heldout: int | float, n_users: int) -> int:
    """Turn a count or a fraction of users into a count that leaves users to train on."""
    if isinstance(n_heldout, numbers.Real) and not isinstance(n_heldout, numbers.Integral):
        _check_fraction(n_heldout, "split.n_heldout")
        count = round(n_heldout * n_users)
    else:
        count = int(n_heldout)
    if count < 1 or 2 * count >= n_users:
        raise DataError(f"expected between 1 and {(n_users - 1) // 2} held-out users per set "
                        f"for {n_users} users, got {count}", field="split.n_heldout")
    return count


def _parse_cut(cut: int | str) -> int:
    """Epoch seconds from an integer, a string of digits or an ISO date (UTC if no offset)."""
    if isinstance(cut, numbers.Integral) and not isinstance(cut, bool):
        return int(cut)
    moment = None
    if isinstance(cut, str):
        try:
            return int(cut)
        except ValueError:
            pass
        try:
            moment = pd.to_datetime(cut, utc=True, format="ISO8601")
        except (ValueError, OverflowError):
            moment = None
    if moment is None or pd.isna(moment):
        raise DataError(f"expected epoch seconds or an ISO date, got {cut!r}", field="split.cut")
    return int(moment.as_unit("s").asm8.astype("int64"))
