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

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple

import numpy as np
import pandas as pd

from recsys.errors import DataError

log = logging.getLogger(__name__)

Format = Literal["auto", "movielens-csv", "movielens-dat", "ml100k", "csv", "tsv"]
COLUMNS = ("user_id", "item_id", "rating", "timestamp")

# Names for the columns of the header-less MovieLens files, as error messages show them.
_HEADERLESS = ("user", "item", "rating", "timestamp")
# A byte that stands in for a multi-character separator so that pandas' C parser can read it.
_STAND_IN = b"\x1f"


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

    # Each format has its own layout: separator, header row, column names.
    if fmt == "movielens-csv":
        layout = _Layout(",", 0, None, ("userId", "movieId", "rating", "timestamp"))
    elif fmt == "movielens-dat":
        layout = _Layout("::", None, _HEADERLESS, _HEADERLESS)
    elif fmt == "ml100k":
        layout = _Layout("\t", None, _HEADERLESS, _HEADERLESS)
    elif fmt in ("csv", "tsv"):
        layout = _Layout("," if fmt == "csv" else "\t", 0, None,
                         (user_col, item_col, rating_col, timestamp_col))
    else:
        raise DataError(
            f"unknown format {fmt!r}; expected one of auto, movielens-csv, movielens-dat, "
            "ml100k, csv, tsv",
            path=path,
            field="format",
        )

    frame = _read_tidy(path, layout)
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
    """Guess a file's format from its name and, for ``.csv``, its header line."""
    name = path.name.lower()
    if name == "u.data":
        return "ml100k"
    if name.endswith(".dat"):
        return "movielens-dat"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    if name.endswith(".csv"):
        with path.open(encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline()
        return "movielens-csv" if header.startswith("userId,movieId") else "csv"
    raise DataError(
        "cannot tell the format from the file name; expected .csv, .tsv, .dat or u.data, "
        "or pass the format explicitly",
        path=path,
        field="format",
    )


class _Layout(NamedTuple):
    """Where a format keeps its columns: ``columns`` are user, item, rating, timestamp."""

    sep: str
    header: int | None
    names: Sequence[str] | None
    columns: tuple[str, str, str | None, str | None]


def _read_tidy(path: Path, layout: _Layout, *, fast: bool = True) -> pd.DataFrame:
    """Read a file into the tidy table, letting the C parser convert numbers when it can.

    Reading every column as text and converting afterwards is several times slower on large
    files, so the first attempt asks the parser for float ratings and integer timestamps.
    Any value it cannot convert, or a rating that is not finite, sends the file to the text
    path (``fast=False``), which gives the same table or the error that quotes the value.
    """
    user_col, item_col, rating_col, timestamp_col = layout.columns
    numeric = {col: kind for col, kind in ((rating_col, "float64"), (timestamp_col, "int64"))
               if col is not None}
    if fast and numeric:
        dtype = {user_col: str, item_col: str, **numeric}
        try:
            raw = _read_table(path, sep=layout.sep, header=layout.header, names=layout.names,
                              dtype=dtype)
            return _tidy(raw, path, *layout.columns)
        except (ValueError, OverflowError):  # DataError included: the text path says why
            log.debug("%s: numbers need the text path", path)
    raw = _read_table(path, sep=layout.sep, header=layout.header, names=layout.names)
    return _tidy(raw, path, *layout.columns)


def _read_table(
    path: Path,
    *,
    sep: str,
    header: int | None,
    names: Sequence[str] | None = None,
    dtype: type | dict[str, object] = str,
) -> pd.DataFrame:
    """Read a delimited file; columns are text unless ``dtype`` says otherwise."""
    if path.stat().st_size == 0:  # with ``names`` pandas would read it as zero rows
        raise DataError("the file is empty; expected interaction rows", path=path)
    try:
        if len(sep) > 1:
            raw = _read_multichar(path, sep, header, names, dtype)
        else:
            raw = pd.read_csv(path, sep=sep, header=header, names=names, dtype=dtype,
                              encoding="utf-8", keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty; expected interaction rows", path=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DataError(f"cannot parse as {sep!r}-separated text ({first_line})",
                        path=path) from None

    # pandas turns surplus leading fields into an index; that would shift every column.
    if not isinstance(raw.index, pd.RangeIndex):
        raise DataError(f"a line has more fields than the {len(raw.columns)} expected "
                        f"({', '.join(map(str, raw.columns))})", path=path)
    return raw


def _read_multichar(
    path: Path,
    sep: str,
    header: int | None,
    names: Sequence[str] | None,
    dtype: type | dict[str, object],
) -> pd.DataFrame:
    """Read a file whose separator is several characters long (the ``::`` of ml-1m, ml-10m).

    ``sep`` is taken literally. pandas only has a slow pure-Python parser for such
    separators. When a one-byte stand-in does not occur in the file, each separator is
    rewritten to it while streaming and the C parser reads the result, with quoting off as
    in the Python parser; the fields come out the same.
    """
    options = {"header": header, "names": names, "dtype": dtype, "encoding": "latin-1",
               "keep_default_na": False}
    if _file_contains(path, _STAND_IN):
        return pd.read_csv(path, sep=sep, engine="python", **options)
    with path.open("rb") as handle:
        stream = _ReplacingReader(handle, sep.encode("latin-1"), _STAND_IN)
        return pd.read_csv(stream, sep=_STAND_IN.decode("latin-1"), engine="c",
                           quoting=csv.QUOTE_NONE, **options)


def _file_contains(path: Path, needle: bytes, block_size: int = 1 << 24) -> bool:
    """Whether a one-byte ``needle`` occurs in the file, reading it in blocks."""
    with path.open("rb") as handle:
        return any(needle in block for block in iter(lambda: handle.read(block_size), b""))


class _ReplacingReader(io.RawIOBase):
    """A binary stream over ``handle`` in which every ``old`` separator reads as ``new``.

    Whole lines are read at a time, so a separator never straddles two reads.
    """

    def __init__(self, handle: BinaryIO, old: bytes, new: bytes, hint: int = 1 << 22):
        self._handle, self._old, self._new, self._hint = handle, old, new, hint
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            lines = self._handle.readlines(self._hint)
            self._pending = memoryview(b"".join(lines).replace(self._old, self._new))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


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
    """Strip identifiers and refuse empty ones (a line too short to have one included).

    Ids repeat a lot, so the work is done once per distinct id.
    """
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    raw = pd.Index(uniques).to_numpy(dtype=object)
    stripped = pd.Index(uniques).fillna("").astype(str).str.strip().to_numpy(dtype=object)
    empty = stripped == ""
    if empty.any():
        row = int(np.flatnonzero(empty[codes])[0])
        raise DataError(f"empty identifier in data row {row + 1}; expected a user or item id",
                        path=path, field=name)
    if not (stripped == raw).all():
        column = pd.Series(stripped.take(codes), index=column.index, dtype=object)
    return column.astype(str)


def _numbers(column: pd.Series, path: Path, name: str) -> pd.Series:
    """Parse a numeric column, naming the first value that is not a finite number."""
    if pd.api.types.is_float_dtype(column) or pd.api.types.is_integer_dtype(column):
        values = column.astype("float64")
    else:
        column = column.fillna("").astype(str)
        values = pd.to_numeric(column.str.strip(), errors="coerce").astype("float64")
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"expected a finite number, got {column.iloc[row]!r} in data row {row + 1}",
            path=path, field=name,
        )
    return values


def parse_timestamps(column: pd.Series, path: Path, name: str) -> pd.Series:
    """Parse epoch seconds or ISO-8601 dates into int64 epoch seconds.

    The whole column must be one or the other. Dates without a UTC offset are taken as UTC;
    fractions of a second are dropped.
    """
    if pd.api.types.is_integer_dtype(column):
        return column.astype("int64")
    text = column.fillna("").astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    as_float = numeric.to_numpy(dtype=np.float64)
    is_number = np.isfinite(as_float) & (np.abs(as_float) < 2.0**63)  # fits in int64
    if is_number.all():
        return numeric.astype("int64")

    # Not all numbers: the whole column must then be ISO dates.
    dates = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    is_date = dates.notna().to_numpy()
    if is_date.all():
        # Whole seconds whatever the resolution pandas parsed to (ns in pandas 2, us in 3);
        # converting the unit, not subtracting an epoch, cannot overflow for far dates.
        seconds = dates.dt.floor("s").dt.as_unit("s").astype("int64")
        return pd.Series(seconds.to_numpy(), index=column.index, dtype="int64")

    # Point at a value that is neither; failing that, at a number among dates.
    neither = ~is_number & ~is_date
    row = int(np.flatnonzero(neither if neither.any() else is_number)[0])
    raise DataError(
        f"expected epoch seconds or ISO dates (one kind for the whole column), got "
        f"{text.iloc[row]!r} in data row {row + 1}",
        path=path, field=name,
    )


def collapse_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (user, item): the latest by timestamp, else the last in the file."""
    before = len(frame)

    # One integer per (user, item) pair; hashing two string columns at once is much slower.
    users = pd.factorize(frame["user_id"], use_na_sentinel=False)[0].astype(np.int64)
    items, item_uniques = pd.factorize(frame["item_id"], use_na_sentinel=False)
    pairs = users * max(len(item_uniques), 1) + items

    # Visit rows oldest first (file order among equal times); the last visit of a pair wins.
    if "timestamp" in frame.columns:
        order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    else:
        order = np.arange(before)
    superseded = _superseded(pairs[order])
    if superseded.any():
        log.info("collapsed %d duplicated (user, item) rows", int(superseded.sum()))
        frame = frame.iloc[np.sort(order[~superseded])]
    return frame.sort_index(kind="stable").reset_index(drop=True)


def _superseded(keys: np.ndarray) -> np.ndarray:
    """True where the same key occurs again later in ``keys`` (all but each key's last).

    A stable sort groups equal keys in their original order, so each group ends with the
    key's last occurrence; this is much faster than hashing at tens of millions of rows.
    """
    order = np.argsort(keys, kind="stable")
    grouped = keys[order]
    superseded = np.empty(len(keys), dtype=bool)
    superseded[order[:-1]] = grouped[:-1] == grouped[1:]
    if len(keys):
        superseded[order[-1]] = False
    return superseded


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
            try:
                table = reader(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
                raise DataError("cannot parse the title file; expected the MovieLens layout",
                                path=path, field="title") from None
            if not {"movieId", "title"} <= set(table.columns):
                raise DataError("expected columns 'movieId' and 'title'", path=path, field="title")
            return dict(zip(table["movieId"].str.strip(), table["title"], strict=True)), name
    return {}, None
