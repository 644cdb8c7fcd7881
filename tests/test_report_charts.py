"""Chart, table and renderer builders of the book, checked as specs and compiled to SVG."""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert as vlc

from recsys.preprocess import Dataset, Preprocessing, build_dataset, load_dataset
from recsys.report import charts, data_charts, split_charts, tables
from recsys.splits import STRATEGIES, Split, add_validation, make_split

REPO = Path(__file__).resolve().parents[1]
MAX_PAGE_BYTES = 1_500_000


def toy_dataset(pairs: list[tuple[int, int]], ratings: list[float] | None = None) -> Dataset:
    """A dataset of (user, item) pairs, in time order, with every rating kept."""
    frame = pd.DataFrame({
        "user_id": [str(u) for u, _ in pairs],
        "item_id": [str(i) for _, i in pairs],
        "rating": ratings if ratings is not None else [5.0] * len(pairs),
        "timestamp": np.arange(len(pairs), dtype=np.int64) * 86_400,
    })
    return build_dataset(frame, Preprocessing(threshold=None, min_user_items=1), source="toy")


def synthetic_dataset(n_users: int, n_items: int, mean_items: float, seed: int = 0) -> Dataset:
    """Long-tailed random interactions: log-normal history lengths, Zipf-like item choice."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_items) - 0.5, 1.0, n_users), 3, n_items // 2)
    users = np.repeat(np.arange(n_users), lengths.astype(np.int64))
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    items = rng.choice(n_items, size=len(users), p=popularity / popularity.sum())
    pairs = np.unique(users * n_items + items)
    users, items = np.divmod(pairs, n_items)
    frame = pd.DataFrame({
        "user_id": users.astype(str), "item_id": items.astype(str),
        "rating": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=len(pairs)),
        "timestamp": rng.integers(1_000_000_000, 1_500_000_000, size=len(pairs)),
    })
    return build_dataset(frame, Preprocessing(threshold=None, min_user_items=3),
                         source="synthetic")


def compile_svg(chart: alt.TopLevelMixin) -> str:
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=charts.vegalite_version())


def spec_bytes(chart: alt.TopLevelMixin) -> int:
    return len(json.dumps(chart.to_dict()))


@pytest.fixture(scope="module")
def movielens() -> Dataset:
    return load_dataset(REPO / "data" / "ml-latest-small")


@pytest.fixture(scope="module")
def movielens_splits(movielens: Dataset) -> dict[str, Split]:
    splits = {name: make_split(movielens, name) for name in STRATEGIES}
    splits["random"] = add_validation(movielens, splits["random"])
    return splits


# --- the renderer and files --------------------------------------------------------------------


def test_chart_html_embeds_the_spec_with_no_url_and_survives_hostile_text() -> None:
    chart = alt.Chart(pd.DataFrame({"t": ["</script><script>alert(1)</script>"]})).mark_text()
    html = charts.chart_html(chart.encode(text="t:N").to_dict())

    assert "http" not in html
    assert html.count("</script>") == 2
    spec = json.loads(html.split('type="application/json"')[1].split(">", 1)[1]
                      .split("</script>")[0])
    assert spec["datasets"][next(iter(spec["datasets"]))][0]["t"].startswith("</script>")
    assert f'class="{charts.CHART_CLASS}"' in html
    assert '"mode": "vega-lite"' in html


def test_two_equal_charts_get_distinct_containers() -> None:
    spec = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q").to_dict()
    first, second = charts.chart_html(spec), charts.chart_html(spec)

    def div_id(html: str) -> str:
        return html.split('id="')[1].split('"')[0]

    assert div_id(first) != div_id(second)


def test_the_offline_renderer_becomes_altairs_active_renderer() -> None:
    previous = alt.renderers.active
    try:
        charts.enable_offline_charts()
        chart = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q")
        bundle = chart._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
    finally:
        alt.renderers.enable(previous)

    assert alt.renderers.active == previous
    assert "vegaEmbed(" in data["text/html"]
    assert "http" not in data["text/html"]


def test_the_bundle_defines_vega_embed_for_altairs_vega_lite() -> None:
    assert charts.vegalite_version() in vlc.get_vegalite_versions()
    assert alt.SCHEMA_VERSION.lstrip("v").startswith(charts.vegalite_version())
    assert "vegaEmbed" in charts.javascript_bundle()


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_save_chart_writes_svg_or_png(tmp_path: Path, suffix: str) -> None:
    chart = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_bar().encode(x="x:O", y="x:Q")

    path = charts.save_chart(chart, tmp_path / f"chart{suffix}")

    head = path.read_bytes()[:8]
    assert head.startswith(b"<svg") if suffix == ".svg" else head == b"\x89PNG\r\n\x1a\n"


def test_save_chart_refuses_other_formats(tmp_path: Path) -> None:
    chart = alt.Chart(pd.DataFrame({"x": [1]})).mark_point()
    with pytest.raises(ValueError, match=r"expected a \.svg or \.png file, got 'c\.pdf'"):
        charts.save_chart(chart, tmp_path / "c.pdf")


# --- tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "text"),
    [(0.5, "50%"), (0.0163, "1.6%"), (0.000234, "0.023%"), (1.0, "100%"), (0.0, "0%")],
)
def test_percent_keeps_two_significant_digits(share: float, text: str) -> None:
    assert tables.percent(share) == text


@pytest.mark.parametrize(("value", "text"), [(41.0, "41"), (40.5, "40.5"), (1234.04, "1,234")])
def test_number_drops_trailing_zeros(value: float, text: str) -> None:
    assert tables.number(value) == text


def test_markdown_table_aligns_numbers_right_and_escapes_pipes() -> None:
    frame = pd.DataFrame({"name": ["a|b", "c"], "count": ["1,234", "5"], "n": [1, 2]})

    lines = tables.markdown_table(frame).data.splitlines()

    assert lines == ["| name | count | n |", "| :--- | ---: | ---: |",
                     "| a\\|b | 1,234 | 1 |", "| c | 5 | 2 |"]


# --- the data chapter --------------------------------------------------------------------------


def test_matrix_grid_gives_each_cell_its_ranks_and_density() -> None:
    # User 1 has items 1-3, user 2 items 1-2, user 3 item 1: item 1 is the most popular.
    dataset = toy_dataset([(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (4, 4)])

    grid = data_charts.matrix_grid(dataset, rows=2, columns=2)

    # Users by activity: 1, 2 | 3, 4; items by popularity: 1, 2 | 3, 4.
    assert grid.drop(columns=["row", "col"]).to_dict("records") == [
        {"user_first": 1, "user_last": 2, "item_first": 1, "item_last": 2,
         "interactions": 4, "density": 1.0},
        {"user_first": 1, "user_last": 2, "item_first": 3, "item_last": 4,
         "interactions": 1, "density": 0.25},
        {"user_first": 3, "user_last": 4, "item_first": 1, "item_last": 2,
         "interactions": 1, "density": 0.25},
        {"user_first": 3, "user_last": 4, "item_first": 3, "item_last": 4,
         "interactions": 1, "density": 0.25},
    ]


@pytest.mark.parametrize(("n", "bins"), [(7, 3), (610, 50), (6298, 80), (120_000, 50), (5, 5)])
def test_first_rank_matches_the_bins_of_matrix_grid(n: int, bins: int) -> None:
    sizes = np.bincount(np.arange(n) * bins // n, minlength=bins)
    starts = np.concatenate([[0], np.cumsum(sizes)]) + 1

    assert list(data_charts.first_rank(np.arange(bins + 1), n, bins)) == list(starts)
    expression = data_charts.first_rank_expression("datum.row", n, bins)
    assert expression == f"floor((datum.row * {n} + {bins - 1}) / {bins}) + 1"


def test_matrix_grid_never_has_more_cells_than_users_or_items() -> None:
    dataset = toy_dataset([(1, 1), (2, 1), (2, 2)])

    grid = data_charts.matrix_grid(dataset)

    assert grid["interactions"].sum() == 3
    assert grid["user_last"].max() == 2
    assert grid["item_last"].max() == 2


def test_long_tail_frame_samples_descending_counts_at_log_spaced_ranks(
    movielens: Dataset,
) -> None:
    frame = data_charts.long_tail_frame(movielens, points=50)

    for who, n in (("per user", movielens.n_users), ("per item", movielens.n_items)):
        part = frame[frame["who"] == who]
        assert len(part) <= 50
        assert part["rank"].iloc[0] == 1
        assert part["rank"].iloc[-1] == n
        assert part["interactions"].is_monotonic_decreasing
    users = np.bincount(movielens.interactions["user_num"])
    assert frame["interactions"].iloc[0] == users.max()


def test_rating_frame_marks_what_the_threshold_keeps(movielens: Dataset) -> None:
    frame = data_charts.rating_frame(movielens)

    assert frame["rows"].sum() == len(movielens.ratings)
    kept = frame.loc[frame["kept"].str.startswith("positive"), "rating"]
    assert kept.min() > movielens.preprocessing.threshold


def test_rating_chart_says_so_when_there_are_no_ratings() -> None:
    dataset = toy_dataset([(1, 1), (1, 2)], ratings=[np.nan, np.nan])

    chart = data_charts.rating_chart(dataset)

    assert data_charts.rating_frame(dataset).empty
    assert "no ratings" in json.dumps(chart.to_dict())
    assert "no ratings" in data_charts.rating_sentence(dataset).data


def test_rating_frame_bins_many_distinct_values() -> None:
    ratings = list(np.linspace(0, 1, 100))
    dataset = toy_dataset([(u, 1) for u in range(100)], ratings=ratings)

    frame = data_charts.rating_frame(dataset)

    assert len(frame) == data_charts.MAX_RATING_BARS
    assert frame["rows"].sum() == 100


def test_statistics_table_and_sentences_agree_with_the_data(movielens: Dataset) -> None:
    table = data_charts.statistics_table(movielens).data
    users = np.bincount(movielens.interactions["user_num"])

    assert f"| Users | {movielens.n_users:,} |" in table
    assert f"| Interactions per user, median | {tables.number(np.median(users))} |" in table
    assert f"{len(movielens.interactions):,} positive" in data_charts.size_sentence(movielens).data
    assert f"most active user has {users.max():,} items" in (
        data_charts.tail_sentence(movielens).data)


@pytest.mark.parametrize("builder", [data_charts.matrix_chart, data_charts.long_tail_chart,
                                     data_charts.rating_chart])
def test_data_charts_compile_to_svg(movielens: Dataset, builder) -> None:
    chart = builder(movielens)

    assert chart.to_dict()["$schema"].endswith(".json")
    assert compile_svg(chart).startswith("<svg")


# --- the splits chapter ------------------------------------------------------------------------


def test_heldout_sizes_are_exact_when_small_and_binned_by_powers_of_two_when_large() -> None:
    assert list(split_charts._size_edges(5)) == [1, 2, 3, 4, 5]
    edges = split_charts._size_edges(100)
    assert list(edges) == [1, 2, 3, 5, 9, 17, 33, 65]
    assert split_charts._edge_labels(edges, 100)[-2:] == ["33\u201364", "65\u2013100"]


def test_heldout_sizes_frame_counts_every_test_user(movielens_splits: dict[str, Split]) -> None:
    split = movielens_splits["random"]

    frame = split_charts.heldout_sizes_frame(split)

    assert frame.loc[frame["set"] == "test", "users"].sum() == split.test.n_users
    assert frame.loc[frame["set"] == "validation", "users"].sum() == split.validation.n_users


def test_comparison_frame_counts_roles_per_strategy(
    movielens: Dataset, movielens_splits: dict[str, Split]
) -> None:
    frame = split_charts.comparison_frame(movielens, movielens_splits).set_index("strategy")

    n = len(movielens.interactions)
    assert (frame[["train", "fold-in", "held out", "dropped"]].sum(axis=1) == n).all()
    assert frame.loc["leave_one_out", "held out"] == frame.loc["leave_one_out",
                                                               "users with targets"]
    assert frame.loc["heldout_users", "cold-start items"] == 0
    assert "cut=" in frame.loc["temporal_global", "settings"]


def test_comparison_table_marks_the_checkpoints_strategy(
    movielens: Dataset, movielens_splits: dict[str, Split]
) -> None:
    table = split_charts.comparison_table(movielens, movielens_splits, "random").data

    assert "| random (this checkpoint) |" in table
    assert "| leave_one_out |" in table


def test_timeline_users_are_fixed_by_the_seed_and_include_a_held_out_user(
    movielens: Dataset, movielens_splits: dict[str, Split]
) -> None:
    first = split_charts.timeline_users(movielens, movielens_splits, seed=3)
    again = split_charts.timeline_users(movielens, movielens_splits, seed=3)
    other = split_charts.timeline_users(movielens, movielens_splits, seed=4)

    held = split_charts._users_with_role(movielens, movielens_splits["heldout_users"], 1)
    counts = np.bincount(movielens.interactions["user_num"])
    assert list(first) == list(again)
    assert list(first) != list(other)
    assert len(first) == split_charts.TIMELINE_USERS
    assert np.isin(first, held).any()
    assert (counts[first] <= split_charts.TIMELINE_MAX_ITEMS).all()


def test_timeline_frame_orders_each_users_history(
    movielens: Dataset, movielens_splits: dict[str, Split]
) -> None:
    users = split_charts.timeline_users(movielens, movielens_splits)

    frame = split_charts.timeline_frame(movielens, movielens_splits, users)

    for _, history in frame.groupby("user"):
        assert list(history["position"]) == list(range(1, len(history) + 1))
        assert history["date"].is_monotonic_increasing
    # leave_one_out holds out each user's latest interaction and nothing else.
    latest = frame.groupby("user")["position"].transform("max") == frame["position"]
    assert (frame.loc[latest, "leave_one_out"] == "test target").all()
    assert (frame.loc[~latest, "leave_one_out"] == "train").all()


def test_split_charts_compile_to_svg(
    movielens: Dataset, movielens_splits: dict[str, Split]
) -> None:
    for chart in (split_charts.timeline_chart(movielens, movielens_splits),
                  split_charts.heldout_sizes_chart(movielens_splits["heldout_users"])):
        assert compile_svg(chart).startswith("<svg")


def test_split_sentences_use_the_split_stats(movielens_splits: dict[str, Split]) -> None:
    split = movielens_splits["heldout_users"]

    text = split_charts.checkpoint_sentence(split).data

    assert f"{split.stats['train_interactions']:,} interactions" in text
    assert "never trained on" in text
    assert "one or two" in split_charts.heldout_sentence(split).data


# --- size at scale -----------------------------------------------------------------------------


@pytest.mark.slow
def test_chart_data_stay_small_at_a_hundred_thousand_users() -> None:
    dataset = synthetic_dataset(n_users=120_000, n_items=20_000, mean_items=12)
    splits = {name: make_split(dataset, name) for name in STRATEGIES}

    data_page = [data_charts.matrix_chart(dataset), data_charts.long_tail_chart(dataset),
                 data_charts.rating_chart(dataset)]
    split_page = [split_charts.timeline_chart(dataset, splits),
                  split_charts.heldout_sizes_chart(splits["heldout_users"])]

    # to_dict() enforces Altair's 5000-row limit on every chart's data.
    assert dataset.n_users > 100_000
    assert sum(map(spec_bytes, data_page)) < MAX_PAGE_BYTES / 2
    assert sum(map(spec_bytes, split_page)) < MAX_PAGE_BYTES / 2
