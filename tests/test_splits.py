"""Split strategies: no leakage, time order, seeds, cold starts, held-out users, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import DataError
from recsys.preprocess import Dataset, Preprocessing, build_dataset, load_dataset
from recsys.splits import (
    STRATEGIES,
    TEST,
    TRAIN,
    VALIDATION,
    Holdout,
    Split,
    add_validation,
    heldout_users_split,
    interaction_roles_frame,
    leave_one_out_split,
    make_split,
    temporal_global_split,
)

ML_SMALL = Path(__file__).resolve().parents[1] / "data" / "ml-latest-small"
KEEP_ALL = Preprocessing(threshold=None, min_user_items=1, min_item_users=1)
Pairs = set[tuple[int, int]]


def synthetic(seed: int = 0, *, timestamps: bool = True, n_users: int = 60,
              n_items: int = 40) -> Dataset:
    """Users with 1 to 24 items each, timestamps drawn from a small range so that some tie."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        count = 1 + user % 24
        for item in rng.choice(n_items, size=count, replace=False):
            rows.append((f"u{user}", f"i{item}", 5.0, int(rng.integers(0, 200))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    if not timestamps:
        frame = frame.drop(columns="timestamp")
    return build_dataset(frame, KEEP_ALL, source="synthetic.csv")


def hand_built(rows: list[tuple[str, str, int]]) -> Dataset:
    """A dataset from (user, item, timestamp) rows."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["rating"] = np.nan
    return build_dataset(frame, KEEP_ALL, source="hand.csv")


def matrix_pairs(matrix: sp.csr_matrix, user_nums: np.ndarray, item_nums: np.ndarray) -> Pairs:
    """(dataset user num, dataset item num) of a split matrix's nonzero cells."""
    coo = matrix.tocoo()
    assert np.all(coo.data == 1.0)
    return set(zip(user_nums[coo.row].tolist(), item_nums[coo.col].tolist(), strict=True))


def train_pairs(split: Split) -> Pairs:
    return matrix_pairs(split.train, split.train_user_nums, split.item_nums)


def target_pairs(split: Split, holdout: Holdout | None) -> Pairs:
    if holdout is None:
        return set()
    return matrix_pairs(holdout.targets, holdout.user_nums, split.item_nums)


def fold_in_pairs(split: Split, holdout: Holdout) -> Pairs:
    return matrix_pairs(holdout.fold_in, holdout.user_nums, split.item_nums)


def role_pairs(dataset: Dataset, split: Split, role: int) -> Pairs:
    rows = dataset.interactions[split.roles == role]
    return set(zip(rows["user_num"].tolist(), rows["item_num"].tolist(), strict=True))


def all_pairs(dataset: Dataset) -> Pairs:
    rows = dataset.interactions
    return set(zip(rows["user_num"].tolist(), rows["item_num"].tolist(), strict=True))


def times(dataset: Dataset) -> dict[tuple[int, int], int]:
    rows = dataset.interactions
    keys = zip(rows["user_num"].tolist(), rows["item_num"].tolist(), strict=True)
    return dict(zip(keys, rows["timestamp"].tolist(), strict=True))


def assert_no_leak(dataset: Dataset, split: Split) -> None:
    """Nothing trained on is held out, and the matrices hold exactly what the roles say."""
    train = train_pairs(split)
    test = target_pairs(split, split.test)
    validation = target_pairs(split, split.validation)

    assert train.isdisjoint(test)
    assert train.isdisjoint(validation)
    assert test.isdisjoint(validation)
    assert train | test | validation <= all_pairs(dataset)
    assert fold_in_pairs(split, split.test).isdisjoint(test)
    if split.validation is not None:
        assert fold_in_pairs(split, split.validation).isdisjoint(validation)

    assert train == role_pairs(dataset, split, TRAIN)
    assert test == role_pairs(dataset, split, TEST)
    assert validation == role_pairs(dataset, split, VALIDATION)
    for holdout in (split.test, split.validation):
        if holdout is not None:
            assert np.all(np.diff(holdout.targets.indptr) >= 1)  # every row has a target


WEAK = [
    ("random", {"fraction": 0.3, "seed": 1}),
    ("leave_one_out", {"seed": 1}),
    ("temporal_user", {"fraction": 0.3}),
    ("temporal_global", {"fraction": 0.3}),
]
EVERY = [*WEAK, ("heldout_users", {"n_heldout": 8, "seed": 1})]


def test_every_strategy_is_covered():
    assert {name for name, _ in EVERY} == set(STRATEGIES)


# --- leakage and time order --------------------------------------------------------------------


@pytest.mark.parametrize(("strategy", "settings"), EVERY)
def test_nothing_is_both_trained_on_and_held_out(strategy, settings):
    dataset = synthetic()

    split = make_split(dataset, strategy, **settings)

    assert_no_leak(dataset, split)
    assert split.strategy == strategy
    assert split.stats["test_targets"] == split.test.targets.nnz


@pytest.mark.parametrize(("strategy", "settings"), WEAK)
def test_validation_carved_from_a_weak_split_does_not_leak(strategy, settings):
    dataset = synthetic()

    split = add_validation(dataset, make_split(dataset, strategy, **settings), seed=3)

    assert split.validation is not None
    assert_no_leak(dataset, split)


@pytest.mark.parametrize(("strategy", "settings"), WEAK)
def test_test_users_are_shown_their_validation_items(strategy, settings):
    dataset = synthetic()
    split = add_validation(dataset, make_split(dataset, strategy, **settings), seed=3)

    # The test fold-in is everything of a test user that is not a test target.
    shown = fold_in_pairs(split, split.test)
    users = set(split.test.user_nums.tolist())
    visible = role_pairs(dataset, split, TRAIN) | role_pairs(dataset, split, VALIDATION)
    assert shown == {(u, i) for u, i in visible if u in users}
    assert role_pairs(dataset, split, VALIDATION) & shown


def test_temporal_user_never_trains_on_a_users_later_items():
    dataset = synthetic()
    when = times(dataset)

    split = make_split(dataset, "temporal_user", fraction=0.3)

    last_train: dict[int, int] = {}
    for user, item in train_pairs(split):
        last_train[user] = max(last_train.get(user, -1), when[user, item])
    held = target_pairs(split, split.test)
    assert held
    for user, item in held:
        assert when[user, item] >= last_train[user]


@pytest.mark.parametrize("settings", [{"fraction": 0.1}, {"fraction": 0.5}, {"cut": 120}])
def test_temporal_global_never_trains_on_anything_after_what_it_holds_out(settings):
    dataset = synthetic()
    when = times(dataset)

    split = temporal_global_split(dataset, **settings)

    last_train = max(when[pair] for pair in train_pairs(split))
    first_held = min(when[pair] for pair in target_pairs(split, split.test))
    assert last_train <= split.settings["cut"] < first_held


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_random_and_temporal_user_hold_out_round_fraction_per_user(fraction):
    dataset = synthetic()
    counts = np.bincount(dataset.interactions["user_num"], minlength=dataset.n_users)
    expected = [0 if n < 2 else min(max(1, round(fraction * n)), n - 1) for n in counts]

    for strategy in ("random", "temporal_user"):
        split = make_split(dataset, strategy, fraction=fraction)
        held = np.bincount(dataset.interactions["user_num"][split.roles == TEST],
                           minlength=dataset.n_users)
        assert held.tolist() == expected


def test_leave_one_out_with_timestamps_holds_out_the_latest_item():
    dataset = synthetic()
    when = times(dataset)
    latest: dict[int, int] = {}
    for (user, _), moment in when.items():
        latest[user] = max(latest.get(user, -1), moment)

    split = leave_one_out_split(dataset)

    held = target_pairs(split, split.test)
    counts = np.bincount(dataset.interactions["user_num"])
    assert sorted(user for user, _ in held) == np.flatnonzero(counts >= 2).tolist()
    assert all(when[user, item] == latest[user] for user, item in held)


# --- seeds -------------------------------------------------------------------------------------


SEEDED = [
    ("random", {"fraction": 0.3}),
    ("leave_one_out", {}),  # without timestamps: random, but seeded
    ("heldout_users", {"n_heldout": 8}),
]


@pytest.mark.parametrize(("strategy", "settings"), SEEDED)
def test_a_seed_gives_the_same_split_and_another_seed_a_different_one(strategy, settings):
    dataset = synthetic(timestamps=False)

    first = make_split(dataset, strategy, seed=5, **settings)
    again = make_split(dataset, strategy, seed=5, **settings)
    other = make_split(dataset, strategy, seed=6, **settings)

    assert np.array_equal(first.roles, again.roles)
    assert (first.train != again.train).nnz == 0
    assert not np.array_equal(first.roles, other.roles)
    assert first.settings["seed"] == 5


def test_leave_one_out_without_timestamps_holds_out_one_random_item_per_user():
    dataset = synthetic(timestamps=False)
    counts = np.bincount(dataset.interactions["user_num"])

    split = leave_one_out_split(dataset, seed=2)

    held = np.bincount(dataset.interactions["user_num"][split.roles == TEST],
                       minlength=dataset.n_users)
    assert held.tolist() == (counts >= 2).astype(int).tolist()
    assert_no_leak(dataset, split)


def test_add_validation_is_seeded():
    dataset = synthetic()
    base = make_split(dataset, "random", seed=0)

    first = add_validation(dataset, base, seed=1)

    assert np.array_equal(first.roles, add_validation(dataset, base, seed=1).roles)
    assert not np.array_equal(first.roles, add_validation(dataset, base, seed=2).roles)


@pytest.mark.parametrize("strategy", ["temporal_user", "temporal_global"])
def test_temporal_splits_have_no_randomness(strategy):
    dataset = synthetic()

    assert np.array_equal(make_split(dataset, strategy).roles,
                          make_split(dataset, strategy).roles)


# --- bad settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "settings", "field"),
    [
        ("random", {"fraction": 0}, "split.fraction"),
        ("random", {"fraction": 1}, "split.fraction"),
        ("random", {"fraction": 1.5}, "split.fraction"),
        ("random", {"fraction": -0.2}, "split.fraction"),
        ("random", {"fraction": float("nan")}, "split.fraction"),
        ("random", {"fraction": "0.2"}, "split.fraction"),
        ("random", {"fraction": True}, "split.fraction"),
        ("temporal_user", {"fraction": 0.0}, "split.fraction"),
        ("temporal_user", {"fraction": 1.0}, "split.fraction"),
        ("temporal_global", {"fraction": 1.0}, "split.fraction"),
        ("temporal_global", {"cut": "next tuesday"}, "split.cut"),
        ("heldout_users", {"target_fraction": 0.0}, "split.target_fraction"),
        ("heldout_users", {"target_fraction": 1.0}, "split.target_fraction"),
        ("heldout_users", {"n_heldout": 1.0}, "split.n_heldout"),
        ("heldout_users", {"n_heldout": 0}, "split.n_heldout"),
        ("heldout_users", {"n_heldout": 30}, "split.n_heldout"),  # 2 x 30 leaves no trainer
        ("bogus", {}, "split.strategy"),
    ],
)
def test_bad_settings_name_the_field(strategy, settings, field):
    with pytest.raises(DataError) as caught:
        make_split(synthetic(), strategy, **settings)

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: expected") or "expected one of" in str(
        caught.value)


@pytest.mark.parametrize(("settings", "field"), [
    ({"fraction": 0.0}, "split.validation.fraction"),
    ({"fraction": 1.0}, "split.validation.fraction"),
    ({"users": 0.0}, "split.validation.users"),
    ({"users": 1.2}, "split.validation.users"),
])
def test_bad_validation_settings_name_the_field(settings, field):
    dataset = synthetic()

    with pytest.raises(DataError, match=rf"^{field}: expected a fraction"):
        add_validation(dataset, make_split(dataset, "random"), **settings)


@pytest.mark.parametrize("strategy", ["temporal_user", "temporal_global"])
def test_temporal_split_without_timestamps_names_file_and_field(strategy):
    dataset = synthetic(timestamps=False)

    with pytest.raises(DataError) as caught:
        make_split(dataset, strategy)

    message = str(caught.value)
    assert message.startswith("synthetic.csv: timestamp: ")
    assert "expected a timestamp column" in message
    assert strategy in message


def test_a_split_that_holds_out_nothing_is_refused():
    dataset = hand_built([("a", "x", 1), ("b", "y", 2)])  # one item per user

    with pytest.raises(DataError, match="holds out nothing"):
        make_split(dataset, "random")


# --- temporal_global cold starts ---------------------------------------------------------------

# Cut at t=5. A trains on x, y and is tested on z; B has nothing before the cut (a cold user);
# C trains on y and is tested on w, which nobody had before the cut (a cold item); D trains
# on x and z. B's v is never trained on either, but B is dropped so v is no target.
COLD_ROWS = [("A", "x", 1), ("A", "y", 2), ("A", "z", 8), ("B", "x", 6), ("B", "v", 7),
             ("C", "y", 3), ("C", "w", 9), ("D", "z", 4), ("D", "x", 2)]


@pytest.mark.parametrize("cut", [5, "5", "1970-01-01T00:00:05Z", "1970-01-01T01:00:05+01:00"])
def test_temporal_global_counts_cold_start_users_and_items(cut):
    dataset = hand_built(COLD_ROWS)
    num = {user: n for n, user in enumerate(dataset.user_ids)}
    item = {name: n for n, name in enumerate(dataset.item_ids)}

    split = temporal_global_split(dataset, cut=cut)

    assert split.settings["cut"] == 5
    assert target_pairs(split, split.test) == {(num["A"], item["z"]), (num["C"], item["w"])}
    assert train_pairs(split) == {(num["A"], item["x"]), (num["A"], item["y"]),
                                  (num["C"], item["y"]), (num["D"], item["z"]),
                                  (num["D"], item["x"])}
    assert split.stats["cold_start_users"] == 1
    assert split.stats["cold_start_items"] == 1
    assert split.stats["dropped_interactions"] == 2
    assert split.stats["test_users"] == 2
    assert num["B"] not in split.train_user_nums


def test_temporal_global_default_cut_holds_out_about_the_fraction():
    dataset = synthetic()

    split = temporal_global_split(dataset, fraction=0.2)

    # Ties at the cut stay in training, so at most the fraction (rounded up) is held out.
    after_cut = int((dataset.interactions["timestamp"] > split.settings["cut"]).sum())
    assert 0.15 * len(dataset.interactions) < after_cut <= np.ceil(0.2 * len(dataset.interactions))
    assert split.stats["test_targets"] <= after_cut


# --- held-out users (strong generalisation) ----------------------------------------------------


def test_heldout_users_are_disjoint_and_restricted_to_training_items():
    dataset = synthetic()

    split = heldout_users_split(dataset, n_heldout=8, seed=4)

    train_users = set(split.train_user_nums.tolist())
    test_users = set(split.test.user_nums.tolist())
    assert split.validation is not None
    validation_users = set(split.validation.user_nums.tolist())
    assert train_users.isdisjoint(test_users)
    assert train_users.isdisjoint(validation_users)
    assert test_users.isdisjoint(validation_users)
    assert len(train_users) == dataset.n_users - 16

    interactions = dataset.interactions
    trained = interactions[interactions["user_num"].isin(split.train_user_nums)]
    assert split.item_nums.tolist() == sorted(set(trained["item_num"]))
    assert train_pairs(split) == set(zip(trained["user_num"], trained["item_num"], strict=True))


def test_heldout_users_fold_in_about_80_percent_and_target_the_rest():
    dataset = synthetic()
    split = heldout_users_split(dataset, n_heldout=10, seed=7)
    known = set(split.item_nums.tolist())
    heldout = sorted(set(range(dataset.n_users)) - set(split.train_user_nums.tolist()))
    assert split.validation is not None

    kept_counts = {}
    for user in heldout:
        items = dataset.interactions.loc[dataset.interactions["user_num"] == user, "item_num"]
        kept_counts[user] = len(set(items) & known)

    for holdout in (split.test, split.validation):
        for row, user in enumerate(holdout.user_nums):
            kept = kept_counts[user]
            n_targets = holdout.targets[row].nnz
            assert n_targets == int(np.floor(0.2 * kept))
            assert holdout.fold_in[row].nnz == kept - n_targets
            assert kept >= 5

    # Users with fewer than five usable items give no targets; they are counted.
    small = [user for user in heldout if kept_counts[user] < 5]
    scored = set(split.test.user_nums.tolist()) | set(split.validation.user_nums.tolist())
    assert small
    assert scored.isdisjoint(small)
    assert scored | set(small) == set(heldout)
    assert split.stats["heldout_users_without_targets"] == len(small)


@pytest.mark.parametrize(("target_fraction", "min_items"), [(0.5, 6), (0.3, 10), (0.8, 2)])
def test_heldout_users_below_min_items_give_no_targets(target_fraction, min_items):
    dataset = synthetic()

    split = heldout_users_split(dataset, n_heldout=10, seed=3, target_fraction=target_fraction,
                                min_items=min_items)

    assert split.validation is not None
    for holdout in (split.test, split.validation):
        kept = np.diff(holdout.fold_in.indptr) + np.diff(holdout.targets.indptr)
        assert kept.min() >= min_items
        targets = np.diff(holdout.targets.indptr)
        assert targets.tolist() == np.floor(target_fraction * kept).astype(int).tolist()
    heldout = dataset.n_users - len(split.train_user_nums)
    scored = split.test.n_users + split.validation.n_users
    assert split.stats["heldout_users_without_targets"] == heldout - scored > 0


def test_heldout_users_drop_items_no_training_user_has():
    # Item "only" belongs to one user; if that user is held out it must not appear anywhere.
    rows = [(f"u{n}", f"i{k}", n * 10 + k) for n in range(12) for k in range(6)]
    dataset = hand_built([*rows, ("u0", "only", 999)])
    only = int(np.flatnonzero(dataset.item_ids == "only")[0])

    for seed in range(6):
        split = heldout_users_split(dataset, n_heldout=2, seed=seed)
        if dataset.user_ids.tolist().index("u0") in split.train_user_nums:
            assert only in split.item_nums
        else:
            assert only not in split.item_nums
            assert split.stats["dropped_interactions"] == 1
        assert_no_leak(dataset, split)


def test_heldout_users_fraction_of_users():
    dataset = synthetic()

    split = heldout_users_split(dataset, n_heldout=0.1)

    assert split.settings["n_heldout"] == 6
    assert len(split.train_user_nums) == dataset.n_users - 12


def test_add_validation_keeps_an_existing_validation_set():
    dataset = synthetic()
    split = heldout_users_split(dataset, n_heldout=8)

    assert add_validation(dataset, split) is split


# --- add_validation on weak splits -------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_add_validation_takes_targets_from_train_only(fraction):
    dataset = synthetic()
    base = make_split(dataset, "random", fraction=0.2, seed=0)

    split = add_validation(dataset, base, fraction=fraction, users=0.5, seed=0)

    validation = target_pairs(split, split.validation)
    assert validation
    assert validation <= train_pairs(base)
    assert train_pairs(split) == train_pairs(base) - validation
    assert target_pairs(split, split.test) == target_pairs(base, base.test)
    assert split.stats["validation_targets"] == len(validation)

    # Every validation user keeps something to train on.
    assert split.validation is not None
    assert set(split.validation.user_nums.tolist()) <= set(split.train_user_nums.tolist())
    base_counts = np.bincount([user for user, _ in train_pairs(base)], minlength=dataset.n_users)
    eligible = int((base_counts >= 2).sum())
    assert split.validation.n_users == round(0.5 * eligible)


# --- role table --------------------------------------------------------------------------------


def test_roles_frame_agrees_with_stats():
    dataset = synthetic()
    split = add_validation(dataset, make_split(dataset, "random"))

    counts = interaction_roles_frame(dataset, split)["role"].value_counts()

    assert counts["train"] == split.stats["train_interactions"]
    assert counts["test target"] == split.stats["test_targets"]
    assert counts["validation target"] == split.stats["validation_targets"]


# --- real data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_small() -> Dataset:
    if not ML_SMALL.is_dir():
        pytest.skip("data/ml-latest-small is not present")
    return load_dataset(ML_SMALL)


@pytest.mark.parametrize(("strategy", "settings"), EVERY)
def test_real_data_splits_do_not_leak(ml_small, strategy, settings):
    split = make_split(ml_small, strategy, **settings)

    assert_no_leak(ml_small, split)
    if strategy == "temporal_global":
        when = times(ml_small)
        assert max(when[p] for p in train_pairs(split)) < min(
            when[p] for p in target_pairs(split, split.test))
