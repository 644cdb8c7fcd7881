"""From a tidy interaction table to a :class:`Dataset` of implicit feedback.

Vocabulary: ``ids`` are external identifiers (strings from the file), ``nums`` are 0-based
matrix indices. ``user_items`` is always a users x items matrix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import read_interactions, read_titles
from recsys.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preprocessing:
    """How ratings become implicit feedback and which users and items are kept.

    Attributes
    ----------
    threshold
        Ratings strictly above it count as positive (the paper keeps ratings > 3.5). ``None``
        keeps every row; data without ratings always keeps every row.
    min_user_items
        Users with fewer positive items are dropped (the paper uses 5).
    min_item_users
        Items with fewer positive users are dropped.
    k_core
        Repeat both filters until neither removes anything.
    """

    threshold: float | None = 3.5
    min_user_items: int = 5
    min_item_users: int = 1
    k_core: bool = False

    def __post_init__(self) -> None:
        threshold = self.threshold
        if threshold is not None and (isinstance(threshold, bool)
                                      or not isinstance(threshold, numbers.Real)):
            raise DataError(f"expected a number or None, got {threshold!r}", field="threshold")
        for name in ("min_user_items", "min_item_users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"expected a non-negative integer, got {value!r}", field=name)


@dataclass
class Dataset:
    """Implicit-feedback interactions with their id mappings.

    Attributes
    ----------
    interactions
        One row per positive interaction with columns ``user_num``, ``item_num`` and, when the
        source had them, ``timestamp`` (epoch seconds); sorted by user, then time.
    user_ids, item_ids
        External ids of user and item nums (``user_ids[num]``).
    titles
        Titles per item num ("" where unknown); empty strings when the data has none.
    ratings
        The raw ratings before binarisation (NaN when the data has none), for describing it.
    source
        Where the data came from, as given to :func:`load_dataset`.
    preprocessing
        The settings that produced this dataset.
    titles_source
        The file that gave titles, or ``None``.
    """

    interactions: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    titles: np.ndarray
    ratings: np.ndarray
    source: str
    preprocessing: Preprocessing
    titles_source: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    def user_items(self) -> sp.csr_matrix:
        """The users x items binary CSR matrix of positive interactions (float32)."""
        return interactions_to_csr(
            self.interactions["user_num"].to_numpy(),
            self.interactions["item_num"].to_numpy(),
            (self.n_users, self.n_items),
        )

    @property
    def fingerprint(self) -> str:
        """sha256 over the interactions, their ids and the settings that produced them."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self)
        return self._fingerprint


def interactions_to_csr(
    user_nums: np.ndarray, item_nums: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Build a binary float32 CSR matrix from parallel arrays of row and column nums."""
    values = np.ones(len(user_nums), dtype=np.float32)
    matrix = sp.csr_matrix((values, (user_nums, item_nums)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def load_dataset(
    path: str | Path,
    preprocessing: Preprocessing | None = None,
    **read_options: object,
) -> Dataset:
    """Read, binarise and filter interactions; titles come from ``movies.csv`` when present."""
    preprocessing = preprocessing or Preprocessing()
    frame = read_interactions(path, **read_options)  # type: ignore[arg-type]
    titles, titles_source = read_titles(path)
    return build_dataset(frame, preprocessing, source=str(path), titles=titles,
                         titles_source=titles_source)


def build_dataset(
    frame: pd.DataFrame,
    preprocessing: Preprocessing,
    *,
    source: str,
    titles: dict[str, str] | None = None,
    titles_source: str | None = None,
) -> Dataset:
    """Turn a tidy interaction table (see :mod:`recsys.data`) into a :class:`Dataset`."""
    # Binarise: ratings above the threshold are positive; data without ratings is all positive.
    has_ratings = frame["rating"].notna().all()
    positive = frame
    if has_ratings and preprocessing.threshold is not None:
        positive = frame[frame["rating"] > preprocessing.threshold]
    if positive.empty:
        raise DataError(f"no rating is above the threshold {preprocessing.threshold}; "
                        "expected at least one positive interaction", path=source, field="rating")

    codes = _IdCodes.of(positive)
    keep = _kept_rows(codes, preprocessing)
    positive = positive[keep]
    if positive.empty:
        raise DataError(
            "no interactions left after filtering; expected users with at least "
            f"min_user_items={preprocessing.min_user_items} items and items with at least "
            f"min_item_users={preprocessing.min_item_users} users",
            path=source, field="preprocessing",
        )

    # Number users and items in sorted id order, so nums do not depend on row order.
    user_ids, user_nums = _sorted_nums(codes.users[keep], codes.user_uniques)
    item_ids, item_nums = _sorted_nums(codes.items[keep], codes.item_uniques)

    interactions = pd.DataFrame({"user_num": user_nums.astype(np.int64),
                                 "item_num": item_nums.astype(np.int64)})
    order = ["user_num", "item_num"]
    if "timestamp" in positive.columns:
        interactions["timestamp"] = positive["timestamp"].to_numpy(dtype=np.int64)
        order = ["user_num", "timestamp", "item_num"]
    interactions = interactions.sort_values(order, kind="stable").reset_index(drop=True)

    titles = titles or {}
    log.info("dataset %s: %d users, %d items, %d interactions", source, len(user_ids),
             len(item_ids), len(interactions))
    return Dataset(
        interactions=interactions,
        user_ids=user_ids,
        item_ids=item_ids,
        titles=np.array([titles.get(i, "") for i in item_ids], dtype=object),
        ratings=frame["rating"].to_numpy(dtype=np.float64),
        source=source,
        preprocessing=preprocessing,
        titles_source=titles_source,
    )


def filter_counts(frame: pd.DataFrame, preprocessing: Preprocessing) -> pd.DataFrame:
    """Drop rare users and items, once or (k-core) until nothing changes.

    One pass drops items with fewer than ``min_item_users`` users, then users with fewer than
    ``min_user_items`` of the remaining items.
    """
    return frame[_kept_rows(_IdCodes.of(frame), preprocessing)]


@dataclass(frozen=True)
class _IdCodes:
    """Integer codes of a tidy table's user and item ids, in order of first appearance."""

    users: np.ndarray
    user_uniques: np.ndarray
    items: np.ndarray
    item_uniques: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _IdCodes:
        # Ids are hashed once here; every later step works on the integer codes.
        users, user_uniques = pd.factorize(frame["user_id"], use_na_sentinel=False)
        items, item_uniques = pd.factorize(frame["item_id"], use_na_sentinel=False)
        return cls(users, np.asarray(user_uniques, dtype=object), items,
                   np.asarray(item_uniques, dtype=object))


def _kept_rows(codes: _IdCodes, preprocessing: Preprocessing) -> np.ndarray:
    """Boolean mask of the rows that :func:`filter_counts` keeps."""
    users, items = codes.users, codes.items
    keep = np.ones(len(users), dtype=bool)
    while True:
        before = int(keep.sum())
        item_counts = np.bincount(items[keep], minlength=len(codes.item_uniques))
        keep &= item_counts[items] >= preprocessing.min_item_users
        user_counts = np.bincount(users[keep], minlength=len(codes.user_uniques))
        keep &= user_counts[users] >= preprocessing.min_user_items
        if not preprocessing.k_core or int(keep.sum()) == before:
            return keep


def _sorted_nums(codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids that occur in ``codes``, in :func:`_id_sort_key` order, and each row's num."""
    present = np.flatnonzero(np.bincount(codes, minlength=len(uniques)))
    order = sorted(range(len(present)), key=lambda i: _id_sort_key(uniques[present[i]]))
    ids = uniques[present[order]]

    # num_of_code[c] is the position of code c's id in the sorted ids.
    num_of_code = np.full(len(uniques), -1, dtype=np.int64)
    num_of_code[present[order]] = np.arange(len(order))
    return np.asarray(ids, dtype=object), num_of_code[codes]


def _id_sort_key(value: str) -> tuple[int, int, str]:
    """Sort numeric ids numerically and put them before textual ids.

    The id itself breaks ties, so that ids such as ``"7"`` and ``"007"`` get the same order
    whatever the order of the rows.
    """
    if value.isascii() and value.isdigit():
        return (0, int(value), value)
    return (1, 0, value)


def fingerprint(dataset: Dataset) -> str:
    """sha256 over ids, interactions, timestamps and preprocessing settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(dataset.preprocessing), sort_keys=True).encode())

    # Ids are joined with a separator that cannot occur inside a stripped csv field.
    for ids in (dataset.user_ids, dataset.item_ids):
        digest.update("\x1f".join(ids).encode())
        digest.update(b"\x1e")
    for column in ("user_num", "item_num", "timestamp"):
        if column in dataset.interactions.columns:
            digest.update(np.ascontiguousarray(dataset.interactions[column], np.int64).tobytes())
    return digest.hexdigest()
