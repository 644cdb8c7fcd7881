"""Readers that turn interaction files of several formats into one tidy table.

Every reader returns a :class:`pandas.DataFrame` with the columns

``user_id``
    the external user identifier, as a string;
``item_id``
    the external item identifier, as a string;
``rating``
    a float, or NaN for every row when the data has no ratings;
``timestamp``
    seconds since the Unix epoch as ``int64``, or the column is absent when the data has no
    timestamps.

Identifiers are kept as strings so that numeric and textual ids are handled the same way;
duplicated (user, item) pairs collapse to the latest interaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recsys.errors import DataError

log = logging.getLogger(__name__)

Format = Literal["auto", "movielens-csv", "movielens-dat", "ml100k", "csv", "tsv"]
COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def read_interactions(
    path: str | Path,
    fmt: Format = "auto",
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = None,
    timestamp_col: str | None = None,
) -> pd.DataFrame:
    """Read one interaction file into the tidy table described in the module docstring.

    Parameters
    ----------
    path
        The file: a MovieLens ``ratings.csv`` (ml-latest, ml-20m, ml-25m), a ``ratings.dat``
        with ``::`` separators (ml-1m, ml-10m), ml-100k's tab-separated ``u.data``, or a
        generic CSV/TSV with a header row. A directory is resolved to the first of
        ``ratings.csv``, ``ratings.dat`` and ``u.data`` inside it.
    fmt
        The format; ``"auto"`` guesses it from the file name.
    user_col, item_col, rating_col, timestamp_col
        Column names for the generic ``csv``/``tsv`` formats. ``rating_col`` and
        ``timestamp_col`` are optional; timestamps may be epoch seconds or ISO dates.
    """
    path = resolve_interaction_file(path)
    fmt = guess_format(path) if fmt == "auto" else fmt

    # Each format has its own reader; all end in the same tidy table.
    if fmt == "movielens-csv":
        raw = _read_table(path, sep=",", header=0)
        frame = _tidy(raw, path, "userId", "movieId", "rating", "timestamp")
    elif fmt == "movielens-dat":
        raw = _read_table(path, sep="::", header=None, names=["u", "i", "r", "t"])
        frame = _tidy(raw, path, "u", "i", "r", "t")
    elif fmt == "ml100k":
        raw = _read_table(path, sep="\t", header=None, names=["u", "i", "r", "t"])
        frame = _tidy(raw, path, "u", "i", "r", "t")
    elif fmt in ("csv", "tsv"):
        raw = _read_table(path, sep="," if fmt == "csv" else "\t", header=0)
        frame = _tidy(raw, path, user_col, item_col, rating_col, timestamp_col)
    else:
        raise DataError(
            f"unknown format {fmt!r}; expected one of auto, movielens-csv, movielens-dat, "
            "ml100k, csv, tsv",
            path=path,
            field="format",
        )

    if frame.empty:
        raise DataError("no interactions; expected at least one data row", path=path)
    return collapse_duplicates(frame)


def resolve_interaction_file(path: str | Path) -> Path:
    """Return the interaction file for ``path``, looking inside a directory if given one."""
    path = Path(path)
    if path.is_dir():
        for name in ("ratings.csv", "ratings.dat", "u.data"):
            if (path / name).is_file():
                return path / name
        raise DataError(
            "no interaction file; expected ratings.csv, ratings.dat or u.data in this directory",
            path=path,
        )
    if not path.is_file():
        raise DataError("file not found; expected an interaction file or a directory", path=path)
    return path


def guess_format(path: Path) -> Format:
    """Guess a file's format from its name and, for ``.dat``, its first line."""
    name = path.name.lower()
    if name == "u.data":
        return "ml100k"
    if name.endswith(".dat"):
        return "movielens-dat"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    if name.endswith(".csv"):
        with path.open(encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
        return "movielens-csv" if header.startswith("userId,movieId") else "csv"
    raise DataError(
        "cannot tell the format from the file name; expected .csv, .tsv, .dat or u.data, "
        "or pass the format explicitly",
        path=path,
        field="format",
    )


def _read_table(path: Path, *, sep: str, header: int | None, names: Sequence[str] | None = None):
    """Read a delimited file with every column as text; parsing happens in :func:`_tidy`."""
    engine = "python" if len(sep) > 1 else "c"
    try:
        return pd.read_csv(
            path,
            sep=sep,
            header=header,
            names=names,
            dtype=str,
            engine=engine,
            encoding="latin-1" if engine == "python" else "utf-8",
            keep_default_na=False,
        )
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty; expected interaction rows", path=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0]
        raise DataError(f"cannot parse as {sep!r}-separated text ({first_line})", path=path) from None


def _tidy(
    raw: pd.DataFrame,
    path: Path,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    timestamp_col: str | None,
) -> pd.DataFrame:
    """Select, check and convert the four columns of the tidy table."""
    wanted = [c for c in (user_col, item_col, rating_col, timestamp_col) if c is not None]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns))
        raise DataError(f"missing column; expected {missing[0]!r}, found: {found}",
                        path=path, field=str(missing[0]))

    frame = pd.DataFrame({
        "user_id": _ids(raw[user_col], path, user_col),
        "item_id": _ids(raw[item_col], path, item_col),
    })
    if rating_col is None:
        frame["rating"] = np.nan
    else:
        frame["rating"] = _numbers(raw[rating_col], path, rating_col)
    if timestamp_col is not None:
        frame["timestamp"] = parse_timestamps(raw[timestamp_col], path, timestamp_col)
    return frame


def _ids(column: pd.Series, path: Path, name: str) -> pd.Series:
    """Strip identifiers and refuse empty ones."""
    ids = column.astype(str).str.strip()
    empty = ids == ""
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"empty identifier in data row {row + 1}; expected a user or item id",
                        path=path, field=name)
    return ids


def _numbers(column: pd.Series, path: Path, name: str) -> pd.Series:
    """Parse a numeric column, naming the first value that is not a number."""
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"expected a number, got {column.iloc[row]!r} in data row {row + 1}",
            path=path, field=name,
        )
    return values.astype("float64")


def parse_timestamps(column: pd.Series, path: Path, name: str) -> pd.Series:
    """Parse epoch seconds or ISO-8601 dates into int64 epoch seconds."""
    text = column.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if not numeric.isna().any():
        return numeric.astype("int64")

    # Not all numbers: the whole column must then be ISO dates.
    dates = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    bad = dates.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"expected epoch seconds or an ISO date, got {text.iloc[row]!r} "
            f"in data row {row + 1}",
            path=path, field=name,
        )
    return pd.Series(dates.astype("int64").to_numpy() // 10**9, index=column.index)


def collapse_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (user, item): the latest by timestamp, else the last in the file."""
    before = len(frame)
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable")
    frame = frame.drop_duplicates(["user_id", "item_id"], keep="last")
    if len(frame) < before:
        log.info("collapsed %d duplicated (user, item) rows", before - len(frame))
    return frame.sort_index(kind="stable").reset_index(drop=True)


def read_titles(directory: str | Path) -> tuple[dict[str, str], str | None]:
    """Read item titles from a MovieLens directory, if it has them.

    Returns a mapping from item id to title and the name of the file that gave it, or an
    empty mapping and ``None`` when no title file exists. Looks for ``movies.csv``
    (ml-latest, ml-20m, ml-25m), ``movies.dat`` (ml-1m, ml-10m) and ``u.item`` (ml-100k).
    """
    directory = Path(directory)
    if directory.is_file():
        directory = directory.parent

    # Each MovieLens release keeps titles in its own file and format.
    readers = {
        "movies.csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
        "movies.dat": lambda p: pd.read_csv(p, sep="::", header=None, engine="python",
                                            names=["movieId", "title", "genres"], dtype=str,
                                            encoding="latin-1", keep_default_na=False),
        "u.item": lambda p: pd.read_csv(p, sep="|", header=None, usecols=[0, 1],
                                        names=["movieId", "title"], dtype=str,
                                        encoding="latin-1", keep_default_na=False),
    }
    for name, reader in readers.items():
        path = directory / name
        if path.is_file():
            table = reader(path)
            if not {"movieId", "title"} <= set(table.columns):
                raise DataError("expected columns 'movieId' and 'title'", path=path, field="title")
            return dict(zip(table["movieId"].str.strip(), table["title"], strict=True)), name
    return {}, None
