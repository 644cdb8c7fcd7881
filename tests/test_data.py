"""Readers of interaction files: formats, ids, timestamps, titles, duplicates, bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import (
    _HEADERLESS,
    _Layout,
    _read_tidy,
    _ReplacingReader,
    _superseded,
    collapse_duplicates,
    guess_format,
    read_interactions,
    read_titles,
    resolve_interaction_file,
)
from recsys.errors import DataError
from recsys.preprocess import Preprocessing, load_dataset


def write(directory: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``directory / name`` and return the path."""
    path = directory / name
    path.write_text(text, encoding=encoding)
    return path


HEADER = "userId,movieId,rating,timestamp\n"


def rows(frame: pd.DataFrame) -> list[tuple]:
    """The tidy table as plain tuples, for comparing with a hand-written expectation."""
    columns = [c for c in ("user_id", "item_id", "rating", "timestamp") if c in frame.columns]
    return [tuple(row) for row in frame[columns].itertuples(index=False)]


# --- the MovieLens formats ---------------------------------------------------------------------


def test_movielens_csv_gives_string_ids_float_ratings_and_int_timestamps(tmp_path):
    path = write(tmp_path, "ratings.csv",
                 "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n"
                 "7,31,4.5,851866703\n")

    frame = read_interactions(path)

    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert rows(frame) == [("1", "31", 2.5, 1260759144), ("1", "1029", 3.0, 1260759179),
                           ("7", "31", 4.5, 851866703)]
    assert frame["timestamp"].dtype == np.int64
    assert frame["rating"].dtype == np.float64


def test_movielens_dat_with_double_colon_separators(tmp_path):
    path = write(tmp_path, "ratings.dat",
                 "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n")

    frame = read_interactions(path)

    assert guess_format(path) == "movielens-dat"
    assert rows(frame) == [("1", "1193", 5.0, 978300760), ("1", "661", 3.0, 978302109),
                           ("2", "1357", 5.0, 978298709)]


def test_ml100k_u_data_is_tab_separated_without_header(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")

    frame = read_interactions(path)

    assert guess_format(path) == "ml100k"
    assert rows(frame) == [("196", "242", 3.0, 881250949), ("186", "302", 3.0, 891717742)]


def test_utf8_byte_order_mark_does_not_hide_the_movielens_header(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"\xef\xbb\xbfuserId,movieId,rating,timestamp\n1,2,4.0,5\n")

    assert guess_format(path) == "movielens-csv"
    assert rows(read_interactions(path)) == [("1", "2", 4.0, 5)]


# --- generic CSV / TSV -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rating_col", "timestamp_col", "expected"),
    [
        ("score", "when", [("alice", "book-1", 4.0, 100), ("bob", "book-2", 1.5, 50)]),
        ("score", None, [("alice", "book-1", 4.0), ("bob", "book-2", 1.5)]),
        (None, "when", [("alice", "book-1", 100), ("bob", "book-2", 50)]),
        (None, None, [("alice", "book-1"), ("bob", "book-2")]),
    ],
)
@pytest.mark.parametrize(("name", "sep"), [("events.csv", ","), ("events.tsv", "\t")])
def test_generic_file_with_named_columns(tmp_path, name, sep, rating_col, timestamp_col,
                                         expected):
    header = sep.join(["who", "what", "score", "when"])
    lines = [sep.join(["alice", "book-1", "4", "100"]), sep.join(["bob", "book-2", "1.5", "50"])]
    path = write(tmp_path, name, "\n".join([header, *lines]) + "\n")

    frame = read_interactions(path, user_col="who", item_col="what", rating_col=rating_col,
                              timestamp_col=timestamp_col)

    got = [tuple(v for v in row if not (isinstance(v, float) and np.isnan(v)))
           for row in rows(frame)]
    assert got == expected
    assert frame["rating"].isna().all() == (rating_col is None)
    assert ("timestamp" in frame.columns) == (timestamp_col is not None)


def test_generic_csv_default_column_names_and_stripped_string_ids(tmp_path):
    path = write(tmp_path, "log.csv", "user,item\n u-01 ,X 1\n007,x 1\n")

    frame = read_interactions(path)

    assert rows(frame)[0][:2] == ("u-01", "X 1")
    assert frame["user_id"].tolist() == ["u-01", "007"]
    assert frame["item_id"].tolist() == ["X 1", "x 1"]


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("1970-01-01", 0),
        ("1970-01-02T00:00:00Z", 86_400),
        ("2000-01-01", 946_684_800),  # 10957 days after the epoch
        ("2000-01-01 00:00:10", 946_684_810),
        ("2000-01-01T01:00:00+01:00", 946_684_800),  # the offset is honoured
        ("2009-02-13T23:31:30", 1_234_567_890),
        ("1969-12-31T23:59:59", -1),
    ],
)
def test_iso_dates_become_epoch_seconds(tmp_path, text, epoch):
    path = write(tmp_path, "log.csv", f"user,item,t\nu,i,2001-01-01\nu,j,{text}\n")

    frame = read_interactions(path, timestamp_col="t")

    assert frame["timestamp"].tolist() == [978_307_200, epoch]
    assert frame["timestamp"].dtype == np.int64


def test_epoch_seconds_stay_as_they_are(tmp_path):
    path = write(tmp_path, "log.csv", "user,item,t\nu,i,0\nu,j,1234567890\nu,k,-5\n")

    assert read_interactions(path, timestamp_col="t")["timestamp"].tolist() == [0, 1234567890, -5]


# --- titles and directories --------------------------------------------------------------------


def test_titles_from_movies_csv_with_quoted_commas(tmp_path):
    write(tmp_path, "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Animation\n'
          '11,"American President, The (1995)",Comedy\n')

    titles, source = read_titles(tmp_path)

    assert source == "movies.csv"
    assert titles == {"1": "Toy Story (1995)", "11": "American President, The (1995)"}


def test_titles_from_movies_dat_in_latin1(tmp_path):
    write(tmp_path, "ratings.dat", "1::1::5::1\n")
    write(tmp_path, "movies.dat", "1::Toy Story (1995)::Animation\n2::Amélie (2001)::Comedy\n",
          encoding="latin-1")

    titles, source = read_titles(tmp_path / "ratings.dat")  # a file looks in its directory

    assert source == "movies.dat"
    assert titles == {"1": "Toy Story (1995)", "2": "Amélie (2001)"}


def test_titles_from_ml100k_u_item(tmp_path):
    flags = "|".join(["0"] * 19)
    write(tmp_path, "u.item",
          f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"
          f"2|GoldenEye (1995)|01-Jan-1995||http://y|{flags}\n", encoding="latin-1")

    titles, source = read_titles(tmp_path)

    assert source == "u.item"
    assert titles == {"1": "Toy Story (1995)", "2": "GoldenEye (1995)"}


def test_no_title_file_gives_no_titles(tmp_path):
    assert read_titles(tmp_path) == ({}, None)


def test_dataset_titles_follow_item_nums(tmp_path):
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,20,5,1\n1,3,5,2\n1,7,5,3\n")
    write(tmp_path, "movies.csv", "movieId,title,genres\n3,Three,x\n20,Twenty,x\n")

    dataset = load_dataset(tmp_path, Preprocessing(min_user_items=1))

    assert dataset.item_ids.tolist() == ["3", "7", "20"]
    assert dataset.titles.tolist() == ["Three", "", "Twenty"]
    assert dataset.titles_source == "movies.csv"


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (["ratings.csv"], "ratings.csv"),
        (["ratings.dat"], "ratings.dat"),
        (["u.data"], "u.data"),
        (["u.data", "ratings.dat", "ratings.csv"], "ratings.csv"),
        (["u.data", "ratings.dat"], "ratings.dat"),
    ],
)
def test_directory_resolves_to_its_ratings_file(tmp_path, present, chosen):
    contents = {"ratings.csv": "userId,movieId,rating,timestamp\n1,2,3,4\n",
                "ratings.dat": "1::2::3::4\n", "u.data": "1\t2\t3\t4\n"}
    for name in present:
        write(tmp_path, name, contents[name])

    assert resolve_interaction_file(tmp_path) == tmp_path / chosen
    assert rows(read_interactions(tmp_path)) == [("1", "2", 3.0, 4)]


# --- duplicates --------------------------------------------------------------------------------


def test_duplicates_collapse_to_the_latest_by_timestamp(tmp_path):
    path = write(tmp_path, "ratings.csv",
                 "userId,movieId,rating,timestamp\n1,10,5,300\n1,10,1,100\n2,10,2,50\n"
                 "1,10,3,200\n1,11,4,10\n")

    frame = read_interactions(path)

    # The latest (t=300) wins although it comes first in the file; file order is kept.
    assert rows(frame) == [("1", "10", 5.0, 300), ("2", "10", 2.0, 50), ("1", "11", 4.0, 10)]


def test_duplicates_without_timestamps_keep_the_last_in_the_file(tmp_path):
    path = write(tmp_path, "log.csv", "user,item,r\na,x,1\nb,x,2\na,x,3\n")

    frame = read_interactions(path, rating_col="r")

    assert rows(frame) == [("b", "x", 2.0), ("a", "x", 3.0)]


def test_duplicates_with_equal_timestamps_keep_the_last_in_the_file(tmp_path):
    path = write(tmp_path, "u.data", "1\t2\t1\t7\n1\t2\t5\t7\n")

    assert rows(read_interactions(path)) == [("1", "2", 5.0, 7)]


def reference_collapse(frame: pd.DataFrame) -> pd.DataFrame:
    """Collapse duplicates the plain way: sort by time, drop all but the last, restore order."""
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable")
    frame = frame.drop_duplicates(["user_id", "item_id"], keep="last")
    return frame.sort_index(kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("timestamps", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_collapse_duplicates_agrees_with_a_plain_reference(seed, timestamps):
    rng = np.random.default_rng(seed)
    n_rows = 300
    frame = pd.DataFrame({
        "user_id": rng.choice(["1", "2", "10", "a", "b"], n_rows),
        "item_id": rng.choice(["1", "2", "3", "x", "y", "z"], n_rows),
        "rating": rng.integers(0, 10, n_rows).astype(float),
        "timestamp": rng.integers(0, 20, n_rows),  # many ties
    })
    if not timestamps:
        frame = frame.drop(columns="timestamp")

    collapsed = collapse_duplicates(frame)

    pd.testing.assert_frame_equal(collapsed, reference_collapse(frame))
    assert len(collapsed) < n_rows


# --- numbers parsed by the C parser agree with the text path -----------------------------------

ODD_VALUES = [
    # rating, timestamp
    ("4.5", "978300760"),
    (" 4.5 ", " 12 "),
    ("+4", "+7"),
    ("4", "4.0"),  # a whole number written as a float
    ("3.25", "1e3"),
    ("1e-1", "4.9"),  # fractions of a second are dropped
    ("-0", "-5"),
    (".5", "0"),
    ("inf", "1"),
    ("nan", "1"),
    ("", "1"),
    ("4", ""),
    ("4", "2001-01-01T00:00:00Z"),
    ("4", "99999999999999999999"),
    ("4", "0x10"),
    ("1_0", "1"),
]


@pytest.mark.parametrize(("rating", "timestamp"), ODD_VALUES)
@pytest.mark.parametrize("fmt", ["movielens-csv", "movielens-dat"])
def test_parsed_numbers_agree_with_the_text_path(tmp_path, fmt, rating, timestamp):
    if fmt == "movielens-csv":
        path = write(tmp_path, "ratings.csv", f"{HEADER}1,2,3,4\n5,6,{rating},{timestamp}\n")
        layout = _Layout(",", 0, None, ("userId", "movieId", "rating", "timestamp"))
    else:
        path = write(tmp_path, "ratings.dat", f"1::2::3::4\n5::6::{rating}::{timestamp}\n")
        layout = _Layout("::", None, _HEADERLESS, _HEADERLESS)

    try:
        expected = _read_tidy(path, layout, fast=False)
    except (DataError, OverflowError) as error:
        with pytest.raises(type(error)) as caught:
            _read_tidy(path, layout)
        assert str(caught.value) == str(error)
        return
    pd.testing.assert_frame_equal(_read_tidy(path, layout), expected)


# --- the fast "::" reader agrees with pandas' Python parser ---------------------------------


DAT_CASES = [
    "1::2::3::4\n5::6::7::8\n",
    "1::2::3::4\r\n\r\n5::6::7::8\r\n",
    " 1 :: 2 ::3.5:: 4 \n",
    "1:::2::3::4\n",  # a third colon belongs to the next field, as with a regex split
    '"1"::"a b"::3::4\n',  # quotes are not special
    "9::8::7::6",  # no final newline
    "".join(f"{u}::{u % 7}::{u % 5}::{1000 + u}\n" for u in range(500)),
]


@pytest.mark.parametrize("text", DAT_CASES)
def test_double_colon_reader_matches_the_python_parser(tmp_path, text):
    path = write(tmp_path, "ratings.dat", text, encoding="latin-1")

    pd.testing.assert_frame_equal(read_interactions(path), _reference_dat(path))


def test_double_colon_reader_with_the_stand_in_byte_in_a_field(tmp_path):
    path = write(tmp_path, "ratings.dat", "u\x1f1::2::3::4\nv::2::5::6\n", encoding="latin-1")

    assert rows(read_interactions(path)) == [("u\x1f1", "2", 3.0, 4), ("v", "2", 5.0, 6)]


def _reference_dat(path: Path) -> pd.DataFrame:
    """The tidy table built the slow way: pandas' Python parser and plain conversions."""
    raw = pd.read_csv(path, sep="::", engine="python", header=None, dtype=str,
                      names=["u", "i", "r", "t"], encoding="latin-1", keep_default_na=False)
    frame = pd.DataFrame({
        "user_id": raw["u"].str.strip().astype(object),
        "item_id": raw["i"].str.strip().astype(object),
        "rating": raw["r"].str.strip().astype(float),
        "timestamp": raw["t"].str.strip().astype(np.int64),
    })
    frame = frame.sort_values("timestamp", kind="stable")
    frame = frame.drop_duplicates(["user_id", "item_id"], keep="last")
    return frame.sort_index().reset_index(drop=True).astype({"user_id": str, "item_id": str})


# --- bad input ---------------------------------------------------------------------------------

BAD_FILES = [
    # name, content, read options, field named, words of what was expected
    ("ratings.csv", HEADER.replace("timestamp", "timestmp") + "1,2,3,4\n", {}, "timestamp",
     "missing column"),
    ("ratings.csv", HEADER.replace("movieId", "movieID") + "1,2,3,4\n", {}, "user",
     "found: userId, movieID, rating, timestamp"),
    ("ratings.csv", "userId,movieId,rating\n1,2,3\n", {}, "timestamp", "missing column"),
    ("log.csv", "usr,item\na,b\n", {}, "user", "missing column"),
    ("log.csv", "user,item\na,b\n", {"rating_col": "stars"}, "stars", "missing column"),
    ("ratings.csv", HEADER + "1,2,4,5\n1,3,four,6\n", {}, "rating",
     "expected a finite number, got 'four' in data row 2"),
    ("ratings.csv", HEADER + "1,2,,5\n", {}, "rating", "expected a finite number"),
    ("ratings.csv", HEADER + "1,2,inf,5\n", {}, "rating", "expected a finite number"),
    ("ratings.csv", HEADER + "1,2,4,5\n1,3,4,yesterday\n", {}, "timestamp",
     "expected epoch seconds or ISO dates (one kind for the whole column), got 'yesterday' "
     "in data row 2"),
    ("ratings.csv", HEADER + "1,2,4,2001-01-01\n1,3,4,978307200\n", {}, "timestamp",
     "one kind for the whole column"),
    ("ratings.csv", HEADER + "1,2,4,2001-02-30\n", {}, "timestamp", "ISO dates"),
    ("ratings.csv", HEADER + "1,2,4,99999999999999999999\n", {}, "timestamp",
     "got '99999999999999999999'"),
    ("ratings.dat", "1::2::3::4\n1::5::3\n", {}, "timestamp", "epoch seconds"),
    ("ratings.dat", "1::2::x::4\n", {}, "rating", "expected a finite number"),
    ("u.data", "1\t\t3\t4\n", {}, "item", "expected a user or item id"),
    ("u.data", "1\t5\t3\t4\n2\t5\t3\t4\n3\t \t3\t4\n", {}, "item",
     "empty identifier in data row 3"),
]


@pytest.mark.parametrize(("name", "text", "options", "field", "expected"), BAD_FILES)
def test_bad_values_name_file_field_and_expectation(tmp_path, name, text, options, field,
                                                    expected):
    path = write(tmp_path, name, text)

    with pytest.raises(DataError) as caught:
        read_interactions(path, **options)

    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert f"{field}:" in message or repr(field) in message
    assert caught.value.field == field
    assert expected in message


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("ratings.csv", "", "the file is empty"),
        ("ratings.dat", "", "the file is empty"),
        ("ratings.csv", HEADER, "expected at least one data row"),
        ("log.tsv", "user\titem\n", "expected at least one data row"),
        ("ratings.csv", HEADER + "1,2,3,4\n1,2,3,4,5\n", "Expected 4 fields"),
        ("ratings.csv", HEADER + "1,2,3,4,5\n", "more fields than the 4 expected"),
        ("ratings.dat", "1::2::3::4::5\n", "more fields than the 4 expected"),
        ("ratings.json", "{}", "expected .csv, .tsv, .dat or u.data"),
    ],
)
def test_files_without_usable_rows_are_refused(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)

    with pytest.raises(DataError) as caught:
        read_interactions(path)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope" / "ratings.csv"

    with pytest.raises(DataError, match="file not found; expected an interaction file") as caught:
        read_interactions(path)

    assert str(caught.value).startswith(f"{path}: ")


def test_directory_without_ratings_file(tmp_path):
    write(tmp_path, "movies.csv", "movieId,title\n1,x\n")

    with pytest.raises(DataError, match=r"expected ratings\.csv, ratings\.dat or u\.data"):
        read_interactions(tmp_path)


def test_unknown_format_names_the_format_field(tmp_path):
    path = write(tmp_path, "ratings.csv", HEADER + "1,2,3,4\n")

    with pytest.raises(DataError, match=r"format: unknown format 'xml'; expected one of"):
        read_interactions(path, fmt="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "preprocessing", "field", "expected"),
    [
        (HEADER + "1,2,3.5,4\n1,3,1,5\n", Preprocessing(), "rating",
         "no rating is above the threshold 3.5"),
        (HEADER + "1,2,5,4\n1,3,5,5\n", Preprocessing(min_user_items=3), "preprocessing",
         "min_user_items=3"),
        (HEADER + "1,2,5,4\n2,2,5,5\n1,3,5,5\n", Preprocessing(min_user_items=2,
                                                               min_item_users=2, k_core=True),
         "preprocessing", "min_item_users=2"),
    ],
)
def test_nothing_left_after_preprocessing(tmp_path, text, preprocessing, field, expected):
    path = write(tmp_path, "ratings.csv", text)

    with pytest.raises(DataError) as caught:
        load_dataset(path, preprocessing)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}: ")
    assert expected in message


def test_title_file_that_cannot_be_parsed(tmp_path):
    write(tmp_path, "movies.csv", "")

    with pytest.raises(DataError, match="title: cannot parse the title file"):
        read_titles(tmp_path)


def test_stream_rewrite_leaves_no_partial_separator_between_reads():
    # Lines longer than the read size make every read end somewhere inside a line.
    text = "".join(f"{'u' * 50}{n}::{'i' * 70}::{n % 5}::{n}\n" for n in range(200)).encode()
    with io.BytesIO(text) as handle:
        reader = _ReplacingReader(handle, b"::", b"|", hint=64)
        chunks = iter(lambda: reader.read(7), b"")
        assert b"".join(chunks) == text.replace(b"::", b"|")


@pytest.mark.parametrize("n_rows", [0, 1, 2, 500])
def test_superseded_marks_all_but_the_last_of_each_key(n_rows: int) -> None:
    keys = np.random.default_rng(n_rows).integers(0, 40, n_rows)
    expected = pd.Series(keys).duplicated(keep="last").to_numpy()
    np.testing.assert_array_equal(_superseded(keys), expected)
