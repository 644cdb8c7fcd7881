"""From the tidy table to a Dataset: threshold, count filters, k-core, numbering, fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataError
from recsys.preprocess import Dataset, Preprocessing, build_dataset, load_dataset

ML_SMALL = Path(__file__).resolve().parents[1] / "data" / "ml-latest-small"
KEEP_ALL = Preprocessing(threshold=None, min_user_items=0, min_item_users=0)


def tidy(rows: list[tuple], *, ratings: bool = True, timestamps: bool = True) -> pd.DataFrame:
    """A tidy table from (user, item, rating, timestamp) tuples, as the readers return it."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    frame["rating"] = frame["rating"].astype(float) if ratings else np.nan
    if not timestamps:
        return frame.drop(columns="timestamp")
    return frame.astype({"timestamp": np.int64})


def build(frame: pd.DataFrame, preprocessing: Preprocessing = KEEP_ALL) -> Dataset:
    return build_dataset(frame, preprocessing, source="test-data")


def pairs(dataset: Dataset) -> set[tuple[str, str]]:
    """The dataset's interactions as (user id, item id) pairs."""
    users = dataset.user_ids[dataset.interactions["user_num"]]
    items = dataset.item_ids[dataset.interactions["item_num"]]
    return set(zip(users, items, strict=True))


def random_tidy(seed: int, n_rows: int = 400, n_users: int = 40, n_items: int = 30) -> pd.DataFrame:
    """A random tidy table without duplicated (user, item) pairs."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": rng.integers(0, n_users, n_rows).astype(str),
        "item_id": np.char.add("m", rng.integers(0, n_items, n_rows).astype(str)),
        "rating": rng.integers(1, 11, n_rows) / 2,
        "timestamp": rng.integers(0, 50, n_rows).astype(np.int64),
    })
    return frame.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)


# --- threshold ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "kept"),
    [
        (3.5, {"b", "c", "d"}),  # strictly above: 3.5 itself is not positive
        (4.0, {"c", "d"}),
        (0.0, {"a", "b", "c", "d", "e"}),
        (None, {"a", "b", "c", "d", "e", "f"}),
    ],
)
def test_threshold_keeps_ratings_strictly_above_it(threshold, kept):
    frame = tidy([("u", "a", 3.5, 1), ("u", "b", 3.6, 2), ("u", "c", 4.5, 3), ("u", "d", 5.0, 4),
                  ("u", "e", 1.0, 5), ("u", "f", 0.0, 6)])

    dataset = build(frame, Preprocessing(threshold=threshold, min_user_items=1))

    assert {item for _, item in pairs(dataset)} == kept
    assert dataset.ratings.tolist() == [3.5, 3.6, 4.5, 5.0, 1.0, 0.0]  # the raw ratings stay


def test_data_without_ratings_keeps_every_row_whatever_the_threshold():
    frame = tidy([("u", "a", 0, 1), ("u", "b", 0, 2), ("v", "a", 0, 3)], ratings=False)

    dataset = build(frame, Preprocessing(threshold=3.5, min_user_items=1))

    assert pairs(dataset) == {("u", "a"), ("u", "b"), ("v", "a")}
    assert np.isnan(dataset.ratings).all()


# --- count filters and k-core ------------------------------------------------------------------

# u4 has one item; once u4 goes, item c has one user; once c goes, u3 has one item.
CHAIN = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "b"), ("u3", "c"),
         ("u4", "c")]


def chain_frame() -> pd.DataFrame:
    return tidy([(user, item, 5.0, n) for n, (user, item) in enumerate(CHAIN)])


def test_one_pass_filters_items_then_users():
    settings = Preprocessing(threshold=None, min_user_items=2, min_item_users=2)

    dataset = build(chain_frame(), settings)

    # Items all have two users at first; only u4 falls, which leaves c with one user.
    assert pairs(dataset) == set(CHAIN) - {("u4", "c")}


def test_k_core_repeats_until_a_fixed_point():
    settings = Preprocessing(threshold=None, min_user_items=2, min_item_users=2, k_core=True)

    dataset = build(chain_frame(), settings)

    # By hand: u4 goes, then c, then u3; u1 and u2 with a and b satisfy both bounds.
    assert pairs(dataset) == {("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")}
    assert dataset.user_ids.tolist() == ["u1", "u2"]
    assert dataset.item_ids.tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("min_user_items", "min_item_users", "dropped_users", "dropped_items"),
    [
        (0, 0, set(), set()),
        (1, 1, set(), set()),
        (2, 1, {"u4"}, set()),
        (3, 1, {"u1", "u2", "u3", "u4"}, None),  # nobody has three items
        (1, 3, {"u4"}, {"a", "c"}),  # only b has three users; u4 loses its only item
    ],
)
def test_min_counts_in_one_pass(min_user_items, min_item_users, dropped_users, dropped_items):
    settings = Preprocessing(threshold=None, min_user_items=min_user_items,
                             min_item_users=min_item_users)
    if dropped_items is None:
        with pytest.raises(DataError, match="no interactions left after filtering"):
            build(chain_frame(), settings)
        return

    dataset = build(chain_frame(), settings)

    assert set(dataset.user_ids) == {"u1", "u2", "u3", "u4"} - dropped_users
    assert set(dataset.item_ids) == {"a", "b", "c"} - dropped_items


def reference_k_core(frame: pd.DataFrame, min_user_items: int, min_item_users: int) -> set:
    """Slow k-core: drop rare users and items one at a time until nothing changes."""
    kept = set(zip(frame["user_id"], frame["item_id"], strict=True))
    changed = True
    while changed:
        changed = False
        for position, bound in ((1, min_item_users), (0, min_user_items)):
            counts: dict[str, int] = {}
            for pair in kept:
                counts[pair[position]] = counts.get(pair[position], 0) + 1
            rare = {pair for pair in kept if counts[pair[position]] < bound}
            if rare:
                kept -= rare
                changed = True
    return kept


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("min_user_items", "min_item_users"), [(5, 1), (3, 3), (8, 6)])
def test_k_core_agrees_with_a_slow_reference(seed, min_user_items, min_item_users):
    frame = random_tidy(seed)
    settings = Preprocessing(threshold=None, min_user_items=min_user_items,
                             min_item_users=min_item_users, k_core=True)
    expected = reference_k_core(frame, min_user_items, min_item_users)

    if not expected:
        with pytest.raises(DataError):
            build(frame, settings)
        return
    dataset = build(frame, settings)

    assert pairs(dataset) == expected
    # The fixed point: both bounds hold in the result.
    matrix = dataset.user_items()
    assert matrix.sum(axis=1).min() >= min_user_items
    assert matrix.sum(axis=0).min() >= min_item_users


# --- numbering ---------------------------------------------------------------------------------


def test_ids_are_numbered_numerically_then_textually():
    frame = tidy([("10", "b", 5, 1), ("2", "10", 5, 2), ("007", "a", 5, 3), ("7", "2", 5, 4),
                  ("bob", "B", 5, 5)])

    dataset = build(frame)

    assert dataset.user_ids.tolist() == ["2", "007", "7", "10", "bob"]
    assert dataset.item_ids.tolist() == ["2", "10", "B", "a", "b"]


def test_nums_and_interactions_do_not_depend_on_row_order():
    frame = random_tidy(0)
    frame.loc[frame.index[:3], "user_id"] = ["07", "7", "x7"]
    base = build(frame)

    for seed in range(3):
        shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        other = build(shuffled)
        assert other.user_ids.tolist() == base.user_ids.tolist()
        assert other.item_ids.tolist() == base.item_ids.tolist()
        pd.testing.assert_frame_equal(other.interactions, base.interactions)


def test_interactions_sorted_by_user_then_time_and_matrix_matches():
    frame = tidy([("u", "a", 5, 30), ("v", "a", 5, 5), ("u", "b", 5, 10), ("u", "c", 5, 20)])

    dataset = build(frame)

    assert dataset.interactions.values.tolist() == [[0, 1, 10], [0, 2, 20], [0, 0, 30],
                                                    [1, 0, 5]]
    matrix = dataset.user_items()
    assert matrix.shape == (2, 3)
    assert matrix.dtype == np.float32
    assert matrix.toarray().tolist() == [[1, 1, 1], [1, 0, 0]]
    assert dataset.has_timestamps


def test_dataset_without_timestamps():
    dataset = build(tidy([("u", "b", 5, 0), ("u", "a", 5, 0)], timestamps=False))

    assert not dataset.has_timestamps
    assert list(dataset.interactions.columns) == ["user_num", "item_num"]
    assert dataset.interactions.values.tolist() == [[0, 0], [0, 1]]


# --- fingerprint -------------------------------------------------------------------------------


def base_frame() -> pd.DataFrame:
    return tidy([("u1", "a", 4.0, 10), ("u1", "b", 5.0, 11), ("u2", "a", 4.5, 12),
                 ("u2", "c", 1.0, 13), ("u3", "b", 4.0, 14), ("u3", "c", 5.0, 15)])


BASE_SETTINGS = Preprocessing(threshold=3.5, min_user_items=1, min_item_users=1)


def _edit(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


CHANGES = {
    "a row removed": (lambda f: f.drop(index=5), BASE_SETTINGS),
    "a row added": (lambda f: pd.concat([f, tidy([("u3", "a", 5.0, 16)])], ignore_index=True),
                    BASE_SETTINGS),
    "a user renamed": (lambda f: _edit(f, 0, "user_id", "u9"), BASE_SETTINGS),
    "an item renamed": (lambda f: _edit(f, 5, "item_id", "z"), BASE_SETTINGS),
    "a timestamp moved": (lambda f: _edit(f, 2, "timestamp", 99), BASE_SETTINGS),
    "a rating crosses the threshold": (lambda f: _edit(f, 3, "rating", 4.0), BASE_SETTINGS),
    "no timestamps": (lambda f: f.drop(columns="timestamp"), BASE_SETTINGS),
    "another threshold": (lambda f: f, Preprocessing(threshold=3.0, min_user_items=1)),
    "no threshold": (lambda f: f, Preprocessing(threshold=None, min_user_items=1)),
    "another min_user_items": (lambda f: f, Preprocessing(threshold=3.5, min_user_items=0)),
    "another min_item_users": (lambda f: f, Preprocessing(threshold=3.5, min_user_items=1,
                                                          min_item_users=0)),
    "k_core on": (lambda f: f, Preprocessing(threshold=3.5, min_user_items=1, k_core=True)),
}


def test_fingerprint_is_stable_across_row_order_and_builds():
    fingerprint = build(base_frame(), BASE_SETTINGS).fingerprint

    assert len(fingerprint) == 64
    assert build(base_frame(), BASE_SETTINGS).fingerprint == fingerprint
    for seed in range(3):
        shuffled = base_frame().sample(frac=1.0, random_state=seed).reset_index(drop=True)
        assert build(shuffled, BASE_SETTINGS).fingerprint == fingerprint


@pytest.mark.parametrize("change", list(CHANGES))
def test_fingerprint_changes_with_data_or_settings(change):
    edit, settings = CHANGES[change]
    base = build(base_frame(), BASE_SETTINGS).fingerprint

    assert build(edit(base_frame()), settings).fingerprint != base


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"min_user_items": -1}, "min_user_items"),
        ({"min_user_items": 2.5}, "min_user_items"),
        ({"min_item_users": "3"}, "min_item_users"),
        ({"min_item_users": True}, "min_item_users"),
        ({"threshold": "3.5"}, "threshold"),
    ],
)
def test_bad_settings_name_the_field(options, field):
    with pytest.raises(DataError, match=rf"^{field}: expected"):
        Preprocessing(**options)


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.skipif(not ML_SMALL.is_dir(), reason="data/ml-latest-small is not present")
def test_ml_latest_small_matches_a_plain_pandas_computation():
    dataset = load_dataset(ML_SMALL)

    raw = pd.read_csv(ML_SMALL / "ratings.csv")
    positive = raw[raw["rating"] > 3.5]
    positive = positive[positive.groupby("userId")["movieId"].transform("size") >= 5]
    assert dataset.n_users == positive["userId"].nunique()
    assert dataset.n_items == positive["movieId"].nunique()
    assert len(dataset.interactions) == len(positive)
    assert dataset.titles_source == "movies.csv"
    assert (dataset.titles != "").all()
    assert len(dataset.ratings) == len(raw)
