"""The on-disk copy of a checkpoint's data: equal to a fresh load, reused, and checked."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.checkpoint import Checkpoint, read_manifest
from recsys.pipeline import load_checkpoint_dataset
from recsys.preprocess import Dataset
from recsys.report import datacache
from recsys.report.precompute import CACHE_DIR


@pytest.fixture
def checkpoint(tiny_checkpoint: Path) -> Checkpoint:
    return Checkpoint(tiny_checkpoint, read_manifest(tiny_checkpoint), models={})


def assert_same_dataset(found: Dataset, expected: Dataset) -> None:
    pd.testing.assert_frame_equal(found.interactions, expected.interactions)
    for name in ("user_ids", "item_ids", "titles"):
        assert getattr(found, name).dtype == object
        assert getattr(found, name).tolist() == getattr(expected, name).tolist()
        assert all(type(value) is str for value in getattr(found, name)[:5])
    np.testing.assert_array_equal(found.ratings, expected.ratings)
    assert (found.source, found.titles_source) == (expected.source, expected.titles_source)
    assert found.preprocessing == expected.preprocessing
    assert found.fingerprint == expected.fingerprint


def test_the_stored_copy_equals_a_fresh_load_and_is_reused(
    checkpoint: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = load_checkpoint_dataset(checkpoint)

    first = datacache.load_cached_dataset(checkpoint, root=tmp_path)
    files = list((tmp_path / CACHE_DIR).glob("dataset-*.npz"))
    monkeypatch.setattr(datacache, "load_checkpoint_dataset", pytest.fail)
    again = datacache.load_cached_dataset(checkpoint, root=tmp_path)

    assert len(files) == 1
    assert_same_dataset(first, fresh)
    assert_same_dataset(again, fresh)


def test_a_copy_that_fails_the_fingerprint_is_replaced(
    checkpoint: Checkpoint, tmp_path: Path
) -> None:
    expected = datacache.load_cached_dataset(checkpoint, root=tmp_path)
    path = next((tmp_path / CACHE_DIR).glob("dataset-*.npz"))
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["column_item_num"] = arrays["column_item_num"][::-1].copy()
    np.savez(path, **arrays)

    found = datacache.load_cached_dataset(checkpoint, root=tmp_path)

    assert_same_dataset(found, expected)


def test_the_key_follows_the_data_settings(checkpoint: Checkpoint) -> None:
    manifest = copy.deepcopy(checkpoint.manifest)
    manifest["data"]["preprocessing"]["min_user_items"] += 1
    other = Checkpoint(checkpoint.path, manifest, models={})

    assert datacache.cache_key(checkpoint) == datacache.cache_key(checkpoint)
    assert datacache.cache_key(other) != datacache.cache_key(checkpoint)
