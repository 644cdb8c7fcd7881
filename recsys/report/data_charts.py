"""The input-data chapter: how big, how sparse and how skewed the interactions are.

Every chart here is drawn from data aggregated in this module, so its size does not grow with
the number of users or items: the user-item matrix becomes a grid of at most
``MATRIX_ROWS x MATRIX_COLUMNS`` cells, and the long tails are sampled at log-spaced ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from recsys.preprocess import Dataset
from recsys.report.tables import count, decimal, markdown_table, number, percent, sentence

MATRIX_ROWS: Final = 50
MATRIX_COLUMNS: Final = 80
TAIL_POINTS: Final = 200
MAX_RATING_BARS: Final = 30
WIDTH: Final = 560


@dataclass(frozen=True)
class DataSummary:
    """Sizes and per-user / per-item counts of a dataset's positive interactions.

    ``source_rows`` counts the rows of the source file (before the threshold and filters);
    ``user_counts`` and ``item_counts`` are interactions per user num and per item num.
    """

    source_rows: int
    user_counts: np.ndarray
    item_counts: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_counts)

    @property
    def n_items(self) -> int:
        return len(self.item_counts)

    @property
    def n_interactions(self) -> int:
        return int(self.user_counts.sum())

    @property
    def density(self) -> float:
        """The share of user-item pairs that are positive interactions."""
        return self.n_interactions / (self.n_users * self.n_items)

    @property
    def kept_share(self) -> float:
        """The share of the source file's rows that became positive interactions."""
        return self.n_interactions / self.source_rows


def summarize(dataset: Dataset) -> DataSummary:
    """Count interactions per user and per item."""
    users = dataset.interactions["user_num"].to_numpy()
    items = dataset.interactions["item_num"].to_numpy()
    return DataSummary(
        source_rows=len(dataset.ratings),
        user_counts=np.bincount(users, minlength=dataset.n_users),
        item_counts=np.bincount(items, minlength=dataset.n_items),
    )


def statistics_table(dataset: Dataset) -> Markdown:
    """Sizes, density, and mean and median interactions per user and per item."""
    summary = summarize(dataset)
    rows = [
        ("Rows in the source file", count(summary.source_rows)),
        ("Positive interactions kept", count(summary.n_interactions)),
        ("Users", count(summary.n_users)),
        ("Items", count(summary.n_items)),
        ("Density (share of user-item pairs)", percent(summary.density)),
        ("Interactions per user, mean", decimal(summary.user_counts.mean())),
        ("Interactions per user, median", number(np.median(summary.user_counts))),
        ("Interactions per item, mean", decimal(summary.item_counts.mean())),
        ("Interactions per item, median", number(np.median(summary.item_counts))),
    ]
    return markdown_table(pd.DataFrame(rows, columns=["Statistic", "Value"]))


def size_sentence(dataset: Dataset) -> Markdown:
    """How many users, items and interactions there are, and how few pairs are positive."""
    summary = summarize(dataset)
    return sentence(
        f"In this checkpoint's data, {count(summary.n_users)} users and "
        f"{count(summary.n_items)} items share {count(summary.n_interactions)} positive "
        f"interactions, so {percent(summary.density)} of the user-item pairs are positive. "
        f"They come from {count(summary.source_rows)} rows of the source file "
        f"({percent(summary.kept_share)} of them are kept)."
    )


def tail_sentence(dataset: Dataset) -> Markdown:
    """The extremes and medians of the long tails, and how much the head items take."""
    summary = summarize(dataset)
    users, items = summary.user_counts, summary.item_counts
    singles = int((items == 1).sum())
    head = max(1, round(0.1 * summary.n_items))
    head_share = np.sort(items)[::-1][:head].sum() / summary.n_interactions
    return sentence(
        f"The most active user has {count(users.max())} items and the median user "
        f"{number(np.median(users))}; the most popular item has {count(items.max())} users "
        f"and the median item {number(np.median(items))}. {count(singles)} items "
        f"({percent(singles / summary.n_items)}) have a single user, and the "
        f"{count(head)} most popular items (10%) take {percent(head_share)} of all "
        "interactions."
    )


def rating_sentence(dataset: Dataset) -> Markdown:
    """What binarisation does to this data's ratings."""
    ratings = dataset.ratings[~np.isnan(dataset.ratings)]
    threshold = dataset.preprocessing.threshold
    if len(ratings) == 0:
        return sentence("This data has no ratings, so every interaction counts as positive.")
    if threshold is None:
        return sentence("No threshold is set, so every rated interaction counts as positive.")
    above = float((ratings > threshold).mean())
    return sentence(
        f"Ratings above {threshold:g} count as positive: {percent(above)} of the rated rows. "
        f"The median rating is {np.median(ratings):g}."
    )


def matrix_grid(
    dataset: Dataset, rows: int = MATRIX_ROWS, columns: int = MATRIX_COLUMNS
) -> pd.DataFrame:
    """The user-item matrix binned into a grid, users and items ordered by activity.

    Users are ranked by their number of interactions and items by their number of users (rank
    1 is the most active) and cut into ``rows`` and ``columns`` bins of nearly equal size. Each
    non-empty cell has its bin numbers (``row``, ``col``), the rank ranges it covers (1-based,
    inclusive), its interactions and its density: interactions over the user-item pairs it
    covers. Empty cells are left out.
    """
    summary = summarize(dataset)
    n_rows, n_cols = min(rows, summary.n_users), min(columns, summary.n_items)

    # Rank 0 is the most active; stable sorts keep ties in num order.
    user_rank = _ranks(summary.user_counts)
    item_rank = _ranks(summary.item_counts)
    user_bin = user_rank * n_rows // summary.n_users
    item_bin = item_rank * n_cols // summary.n_items

    # Interactions per cell, then the number of users and items each bin covers.
    users = dataset.interactions["user_num"].to_numpy()
    items = dataset.interactions["item_num"].to_numpy()
    cells = np.bincount(user_bin[users] * n_cols + item_bin[items], minlength=n_rows * n_cols)
    users_per_bin = np.bincount(user_bin, minlength=n_rows)
    items_per_bin = np.bincount(item_bin, minlength=n_cols)

    row, col = np.divmod(np.flatnonzero(cells), n_cols)
    interactions = cells[row * n_cols + col]
    user_start = np.concatenate([[0], np.cumsum(users_per_bin)])
    item_start = np.concatenate([[0], np.cumsum(items_per_bin)])
    return pd.DataFrame({
        "row": row,
        "col": col,
        "user_first": user_start[row] + 1,
        "user_last": user_start[row + 1],
        "item_first": item_start[col] + 1,
        "item_last": item_start[col + 1],
        "interactions": interactions,
        "density": _round_significant(
            interactions / (users_per_bin[row] * items_per_bin[col]), 3),
    })


def matrix_chart(dataset: Dataset) -> alt.Chart:
    """Heatmap of :func:`matrix_grid`: where in the matrix the interactions are.

    Only each cell's bin numbers, interactions and density travel with the chart; the rank
    ranges are computed in the page by :func:`first_rank_expression`, which keeps the spec
    about half as large.
    """
    grid = matrix_grid(dataset)
    n_users, n_items = dataset.n_users, dataset.n_items
    n_rows, n_cols = grid["row"].max() + 1, grid["col"].max() + 1
    return (
        alt.Chart(grid[["row", "col", "interactions", "density"]])
        .transform_calculate(
            user_first=first_rank_expression("datum.row", n_users, n_rows),
            user_end=first_rank_expression("(datum.row + 1)", n_users, n_rows),
            item_first=first_rank_expression("datum.col", n_items, n_cols),
            item_end=first_rank_expression("(datum.col + 1)", n_items, n_cols),
        )
        .transform_calculate(user_last="datum.user_end - 1", item_last="datum.item_end - 1",
                             outline="datum.density")
        .mark_rect(strokeWidth=0.6)
        .encode(
            alt.X("item_first:Q")
            .title("Items, ranked by number of users (most popular on the left)")
            .scale(domain=[1, n_items + 1], nice=False)
            .axis(grid=False, format="~s"),
            alt.X2("item_end:Q"),
            alt.Y("user_first:Q")
            .title("Users, ranked by number of items (most active on top)")
            .scale(domain=[1, n_users + 1], nice=False, reverse=True)
            .axis(grid=False, format="~s"),
            alt.Y2("user_end:Q"),
            alt.Color("density:Q")
            .title("Density")
            .scale(type="log", scheme="blues")
            .legend(format="~%"),
            # A thin outline in the fill colour hides the seams between neighbouring cells.
            alt.Stroke("outline:Q").scale(type="log", scheme="blues").legend(None),
            tooltip=[
                alt.Tooltip("user_first:Q", title="users from rank", format=","),
                alt.Tooltip("user_last:Q", title="users to rank", format=","),
                alt.Tooltip("item_first:Q", title="items from rank", format=","),
                alt.Tooltip("item_last:Q", title="items to rank", format=","),
                alt.Tooltip("interactions:Q", title="interactions", format=","),
                alt.Tooltip("density:Q", title="density", format=".3~%"),
            ],
        )
        .properties(width=WIDTH, height=360)
        .configure_view(stroke="#888888")
    )


def first_rank(bin_number: np.ndarray | int, n: int, bins: int) -> np.ndarray | int:
    """The 1-based first rank of a bin when ``n`` ranks are cut into ``bins`` equal bins.

    Rank ``r`` (0-based) falls in bin ``r * bins // n``, so bin ``b`` starts at
    ``ceil(b * n / bins)``; ``b = bins`` gives one past the last rank.
    """
    return (bin_number * n + bins - 1) // bins + 1


def first_rank_expression(bin_field: str, n: int, bins: int) -> str:
    """:func:`first_rank` as a Vega expression over ``bin_field`` (exact for these sizes)."""
    return f"floor(({bin_field} * {n} + {bins - 1}) / {bins}) + 1"


def long_tail_frame(dataset: Dataset, points: int = TAIL_POINTS) -> pd.DataFrame:
    """Interactions per user and per item against their rank, at log-spaced ranks.

    Columns ``who`` (``"per user"`` or ``"per item"``), ``rank`` (1 = most interactions) and
    ``interactions``; at most ``points`` rows for each, whatever the data's size.
    """
    summary = summarize(dataset)
    parts = []
    for who, counts in (("per user", summary.user_counts), ("per item", summary.item_counts)):
        ordered = np.sort(counts)[::-1]
        ranks = np.unique(np.geomspace(1, len(ordered), points).round().astype(np.int64))
        parts.append(pd.DataFrame({"who": who, "rank": ranks,
                                   "interactions": ordered[ranks - 1]}))
    return pd.concat(parts, ignore_index=True)


def long_tail_chart(dataset: Dataset) -> alt.FacetChart:
    """Rank against interactions, per user and per item, both axes on log scales."""
    return (
        alt.Chart(long_tail_frame(dataset))
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            alt.X("rank:Q").title("Rank (1 = most interactions)").scale(type="log"),
            alt.Y("interactions:Q").title("Interactions").scale(type="log"),
            tooltip=[alt.Tooltip("rank:Q", format=","),
                     alt.Tooltip("interactions:Q", format=",")],
        )
        .properties(width=WIDTH // 2 - 20, height=240)
        .facet(column=alt.Column("who:N").title(None).sort(["per user", "per item"])
               .header(labelFontSize=13))
        .resolve_scale(x="independent")
    )


def rating_frame(dataset: Dataset) -> pd.DataFrame:
    """Rows of the source file per rating value, and whether the threshold keeps them.

    Columns ``rating`` (the value, or the bin's lower edge when there are more than
    :data:`MAX_RATING_BARS` distinct values), ``rows`` and ``kept`` (a legend label saying
    whether the threshold keeps the value as positive). Empty when the data has no ratings.
    """
    ratings = dataset.ratings[~np.isnan(dataset.ratings)]
    if len(ratings) == 0:
        return pd.DataFrame({"rating": [], "rows": [], "kept": []})
    values, rows = np.unique(ratings, return_counts=True)
    if len(values) > MAX_RATING_BARS:
        rows, edges = np.histogram(ratings, bins=MAX_RATING_BARS)
        values = edges[:-1]
    threshold = dataset.preprocessing.threshold
    kept = np.ones(len(values), dtype=bool) if threshold is None else values > threshold
    positive, dropped = _rating_labels(threshold)
    return pd.DataFrame({"rating": _round_significant(values, 4), "rows": rows,
                         "kept": np.where(kept, positive, dropped)})


def rating_chart(dataset: Dataset) -> alt.Chart:
    """Bars of rows per rating value, coloured by whether they count as positive."""
    frame = rating_frame(dataset)
    if frame.empty:
        return _message_chart("The data has no ratings: every interaction counts as positive.")
    labels = list(_rating_labels(dataset.preprocessing.threshold))
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            alt.X("rating:O").title("Rating").axis(labelAngle=0),
            alt.Y("rows:Q").title("Rows in the source file").axis(format=",d"),
            alt.Color("kept:N")
            .title(None)
            .scale(domain=labels, range=["#2f6fab", "#c5c5c5"])
            .legend(orient="top-left"),
            tooltip=[alt.Tooltip("rating:O"), alt.Tooltip("rows:Q", format=","),
                     alt.Tooltip("kept:N")],
        )
        .properties(width=WIDTH, height=240)
    )


def _rating_labels(threshold: float | None) -> tuple[str, str]:
    """Legend labels for ratings that are kept as positive and ratings that are dropped."""
    if threshold is None:
        return "positive (no threshold)", "dropped"
    return f"positive (above {threshold:g})", f"dropped ({threshold:g} or below)"


def _message_chart(text: str) -> alt.Chart:
    """A chart that only says ``text``, for data that has nothing to draw."""
    return (
        alt.Chart(pd.DataFrame({"text": [text]}))
        .mark_text(fontSize=14, align="left", x=10)
        .encode(alt.Text("text:N"))
        .properties(width=WIDTH, height=40)
    )


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0-based rank of each entry by descending count (ties in index order)."""
    order = np.argsort(-counts, kind="stable")
    ranks = np.empty(len(counts), dtype=np.int64)
    ranks[order] = np.arange(len(counts))
    return ranks


def _round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits, which keeps the chart specs small."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0)
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.round(values * scale) / scale
