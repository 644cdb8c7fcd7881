"""Tests of the synthetic ratings generator, on shapes small enough to check by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import read_interactions
from recsys.errors import DataError
from recsys.preprocess import load_dataset
from recsys.synth import (
    alias_table,
    item_popularity,
    synthetic_ratings,
    user_activity,
    write_synthetic,
)

SHAPE = {"n_users": 300, "n_items": 400, "n_interactions": 9_000}


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return synthetic_ratings(**SHAPE, seed=7)


def positives(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["rating"] > 3.5]


def test_same_seed_gives_the_same_table(ratings: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ratings, synthetic_ratings(**SHAPE, seed=7))


def test_another_seed_gives_another_table(ratings: pd.DataFrame) -> None:
    other = synthetic_ratings(**SHAPE, seed=8)
    assert not ratings["movieId"].equals(other["movieId"])


def test_positives_have_the_requested_shape(ratings: pd.DataFrame) -> None:
    pos = positives(ratings)
    assert pos["userId"].nunique() == SHAPE["n_users"]
    assert pos["movieId"].nunique() == SHAPE["n_items"]
    # The one-positive-per-item guarantee may add a handful beyond the request.
    assert SHAPE["n_interactions"] <= len(pos) <= SHAPE["n_interactions"] + SHAPE["n_items"]
    assert ratings["userId"].between(1, SHAPE["n_users"]).all()
    assert ratings["movieId"].between(1, SHAPE["n_items"]).all()


def test_every_user_has_at_least_five_positives(ratings: pd.DataFrame) -> None:
    assert positives(ratings)["userId"].value_counts().min() >= 5


def test_no_pair_repeats_and_rows_are_sorted(ratings: pd.DataFrame) -> None:
    assert not ratings.duplicated(["userId", "movieId"]).any()
    keys = ratings["userId"].to_numpy(np.int64) * 10**6 + ratings["movieId"].to_numpy()
    assert (np.diff(keys) > 0).all()


def test_low_ratings_are_about_as_many_as_positives(ratings: pd.DataFrame) -> None:
    n_low = int((ratings["rating"] <= 3.5).sum())
    assert 0.7 < n_low / len(positives(ratings)) < 1.3


def test_low_ratings_can_be_left_out() -> None:
    frame = synthetic_ratings(**SHAPE, low_ratings=0.0, seed=7)
    assert (frame["rating"] > 3.5).all()


def test_ratings_are_half_stars(ratings: pd.DataFrame) -> None:
    stars = ratings["rating"].to_numpy()
    assert set(np.unique(stars)) <= set(np.arange(1, 11) / 2)


def test_timestamps_span_several_years(ratings: pd.DataFrame) -> None:
    years = pd.to_datetime(ratings["timestamp"], unit="s").dt.year
    assert years.max() - years.min() >= 5


def test_item_popularity_is_long_tailed(ratings: pd.DataFrame) -> None:
    counts = np.sort(positives(ratings)["movieId"].value_counts().to_numpy())[::-1]
    top_tenth = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_tenth > 0.4
    assert counts[0] > 10 * np.median(counts)


def test_user_activity_is_long_tailed_with_a_floor() -> None:
    counts = user_activity(5_000, 2_000, 200_000, np.random.default_rng(0))
    assert counts.sum() == 200_000
    assert counts.min() == 5
    assert counts.max() <= 500
    assert np.mean(counts) > 1.5 * np.median(counts)


def test_item_popularity_is_a_distribution() -> None:
    probabilities = item_popularity(1_000, np.random.default_rng(0))
    assert probabilities.shape == (1_000,)
    assert np.isclose(probabilities.sum(), 1.0)
    assert (probabilities > 0).all()


def test_alias_table_reproduces_the_law() -> None:
    probabilities = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    keep, alias = alias_table(probabilities)

    # The chance of each item is its own kept share plus what other slots alias to it.
    n = len(probabilities)
    chance = keep / n
    np.add.at(chance, alias, (1.0 - keep) / n)
    np.testing.assert_allclose(chance, probabilities)


@pytest.mark.parametrize(
    ("shape", "field"),
    [
        ({"n_users": 0, "n_items": 100, "n_interactions": 1_000}, "n_users"),
        ({"n_users": 10, "n_items": 5, "n_interactions": 50}, "n_items"),
        ({"n_users": 100, "n_items": 100, "n_interactions": 499}, "n_interactions"),
        ({"n_users": 10, "n_items": 100, "n_interactions": 251}, "n_interactions"),
    ],
)
def test_impossible_shapes_are_refused(shape: dict[str, int], field: str) -> None:
    with pytest.raises(DataError, match=field):
        synthetic_ratings(**shape)


def test_written_directory_is_labelled_and_readable(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "synth", **SHAPE, seed=3)
    assert path == tmp_path / "synth" / "ratings.csv"
    assert "SYNTHETIC" in (tmp_path / "synth" / "README.txt").read_text()

    frame = read_interactions(path.parent)
    expected = synthetic_ratings(**SHAPE, seed=3)
    assert len(frame) == len(expected)
    np.testing.assert_array_equal(frame["rating"].to_numpy(), expected["rating"].to_numpy())
    assert frame["timestamp"].dtype == np.int64


def test_written_data_preprocesses_to_the_requested_shape(tmp_path: Path) -> None:
    write_synthetic(tmp_path, **SHAPE, seed=3)
    dataset = load_dataset(tmp_path)
    assert dataset.n_users == SHAPE["n_users"]
    assert dataset.n_items == SHAPE["n_items"]


def test_too_few_users_for_the_items_names_the_users() -> None:
    # 40 items, at most 10 per user: 3 users cannot cover them, whatever the interactions.
    with pytest.raises(DataError, match=r"n_users: expected at least 4 users for 40 items"):
        synthetic_ratings(n_users=3, n_items=40, n_interactions=30)
