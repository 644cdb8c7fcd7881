"""The predictions chapter: what the models recommend to test users, and how well they do.

Every chart is drawn from a :class:`~recsys.report.evaluation.Comparison` aggregated here, so
its data do not grow with the number of test users: the curves hold one point per model and
cut-off, the distributions one bar per model and recall bin, the activity buckets one bar per
model and bucket, and the example lists a fixed few users.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Final

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from recsys.preprocess import Dataset
from recsys.report.evaluation import (
    LEVEL,
    N_RESAMPLES,
    Comparison,
    activity_buckets,
    compare_with,
)
from recsys.report.tables import count, markdown_table, sentence
from recsys.splits import Holdout, Split
from recsys.summary import DISPLAY_NAMES

WIDTH: Final = 560
EXAMPLE_USERS: Final = 3
SEEN_SHOWN: Final = 10
DISTRIBUTION_KS: Final = (20, 50)
# The headline metrics of the paper, with their cut-offs.
INTERVAL_METRICS: Final = (("ndcg", 100), ("recall", 20))
N_BUCKETS: Final = 4
SEED: Final = 0
MODEL_COLORS: Final = {"multvae": "#1f5fa8", "multdae": "#e08a2c", "popularity": "#9a9a9a",
                       "ease": "#3a9a5b"}
_SPARE_COLORS: Final = ("#b5487a", "#6b4fa0", "#2a9d9d", "#8a6d3b")
# Inner edges of the recall bins; 0 and 1 exactly get bars of their own.
RECALL_EDGES: Final = (0.2, 0.4, 0.6, 0.8)
# Axis labels of differences: a plus sign above zero, none on zero itself.
SIGNED_LABEL: Final = "(datum.value > 0 ? '+' : '') + format(datum.value, '.2~f')"
STATUS_LABELS: Final = {"seen": "seen by the user (fold-in)",
                        "hit": "recommended and held out: a hit",
                        "miss": "recommended, not held out"}
STATUS_COLORS: Final = {"seen": "#555555", "hit": "#1a8a3a", "miss": "#7a93b5"}
# Spelled out, so that a hit reads as one without colour and in any font.
HIT_MARK: Final = " (hit)"
# Characters of a title that fit one column of the example lists beside the hit mark.
TITLE_CHARS: Final = 36


def model_label(name: str) -> str:
    """The name a reader sees: ``"Multi-VAE"`` for ``"multvae"``, and so on."""
    return DISPLAY_NAMES.get(name, name)


def metric_label(metric: str, k: int) -> str:
    """``"NDCG@100"`` for ``("ndcg", 100)``, ``"Recall@20"`` for ``("recall", 20)``."""
    return {"ndcg": "NDCG", "recall": "Recall"}.get(metric, metric) + f"@{k}"


def model_colors(models: list[str]) -> alt.Scale:
    """A colour scale over the models' display names, the same colour per model everywhere."""
    spare = iter(_SPARE_COLORS * (1 + len(models)))
    colors = [MODEL_COLORS.get(name) or next(spare) for name in models]
    return alt.Scale(domain=[model_label(name) for name in models], range=colors)


def models_sentence(comparison: Comparison, manifest: dict[str, Any]) -> Markdown:
    """Which models the chapter compares, where each comes from, and on how many users."""
    trained = [model_label(name) for name in comparison.models
               if name in manifest.get("models", {})]
    baselines = []
    for name in comparison.models:
        if name == "popularity":
            baselines.append(f"{model_label(name)} (every item ranked by its number of "
                             "training users)")
        elif name == "ease":
            lam = manifest.get("baselines", {}).get("ease", {}).get("lambda")
            chosen = f" with the penalty \u03bb = {lam:g} that training chose" if lam else ""
            baselines.append(f"{model_label(name)} (refitted{chosen})")
    fitted = (f"{'a baseline' if len(baselines) == 1 else 'baselines'} fitted on the same "
              f"training rows: {_join(baselines)}")
    return sentence(
        f"This chapter compares the checkpoint's {_join(trained)} with {fitted}. Each ranks "
        f"items for the same {count(comparison.n_users)} test users from the same fold-in "
        "items and is scored on the same held-out items."
    )


# --- example lists ---------------------------------------------------------------------------


def example_rows(comparison: Comparison, n: int = EXAMPLE_USERS, seed: int = SEED) -> np.ndarray:
    """Rows of ``comparison`` to show, drawn at random with ``seed``, by fold-in size."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(comparison.n_users, size=min(n, comparison.n_users), replace=False)
    return rows[np.argsort(comparison.n_fold_in[rows], kind="stable")]


def recent_fold_in(
    dataset: Dataset, split: Split, holdout: Holdout, row: int, n: int = SEEN_SHOWN
) -> np.ndarray:
    """Split columns of the ``n`` latest fold-in items of ``holdout``'s user ``row``, newest first.

    Interactions are sorted by user, then time, so a user's history is one run of rows; items
    of equal time (or data without timestamps) keep that order.
    """
    users = dataset.interactions["user_num"].to_numpy()
    user = holdout.user_nums[row]
    start, stop = np.searchsorted(users, [user, user + 1])
    column = np.full(dataset.n_items, -1, dtype=np.int64)
    column[split.item_nums] = np.arange(split.n_items)
    history = column[dataset.interactions["item_num"].to_numpy()[start:stop]]
    shown = history[np.isin(history, holdout.fold_in[row].indices)]
    return shown[::-1][:n]


def example_frame(
    comparison: Comparison, dataset: Dataset, split: Split, rows: np.ndarray
) -> pd.DataFrame:
    """Seen items and the primary model's list, one text line per row, for ``rows``.

    Columns ``user`` (a facet label), ``column`` (0 for seen items, 1 for recommendations),
    ``position`` (0 for the column's heading, then 1, 2, ...), ``text`` and ``status``
    (``"heading"``, ``"seen"``, ``"hit"`` or ``"miss"``).
    """
    model = model_label(comparison.models[0])
    parts = []
    for row in rows:
        seen = recent_fold_in(dataset, split, split.test, int(row))
        recommended = comparison.top_items[0, row]
        targets = split.test.targets[row].indices
        hit = np.isin(recommended, targets)
        user_id = dataset.user_ids[comparison.user_nums[row]]
        n_seen, n_held = comparison.n_fold_in[row], comparison.n_targets[row]
        label = (f"User {user_id}: {count(n_seen)} items seen, {count(n_held)} held out, "
                 f"{int(hit.sum())} of them in {model}'s top {len(recommended)}")
        parts.append(pd.DataFrame({
            "user": label,
            "column": [0] * (len(seen) + 1) + [1] * (len(recommended) + 1),
            "position": [*range(len(seen) + 1), *range(len(recommended) + 1)],
            "text": [f"Seen most recently ({len(seen)} of {count(n_seen)})",
                     *map(_shorten, _titles(dataset, split, seen)),
                     f"{model}'s top {len(recommended)}",
                     *_ranked(_titles(dataset, split, recommended), hit)],
            "status": ["heading", *["seen"] * len(seen), "heading",
                       *np.where(hit, "hit", "miss")],
        }))
    return pd.concat(parts, ignore_index=True)


def example_chart(
    comparison: Comparison, dataset: Dataset, split: Split, seed: int = SEED
) -> alt.FacetChart:
    """For a few test users: what they saw lately beside the primary model's top 10, hits marked."""
    frame = example_frame(comparison, dataset, split, example_rows(comparison, seed=seed))
    frame["legend"] = frame["status"].map(STATUS_LABELS).fillna("")
    limit = WIDTH // 2 - 10
    color = (alt.Color("legend:N").title(None)
             .scale(domain=list(STATUS_LABELS.values()), range=list(STATUS_COLORS.values()))
             .legend(orient="bottom", direction="horizontal"))

    def lines(statuses: list[str], bold: bool) -> alt.Chart:
        """The text lines of the given statuses, in columns, one line per position."""
        chart = (
            alt.Chart()
            .transform_filter(alt.FieldOneOfPredicate(field="status", oneOf=statuses))
            .mark_text(align="left", baseline="middle", limit=limit,
                       fontWeight="bold" if bold else "normal")
            .encode(alt.X("column:Q").scale(domain=[0, 2], nice=False).axis(None),
                    alt.Y("position:O").axis(None), alt.Text("text:N"))
        )
        if statuses == ["heading"]:
            return chart
        return chart.encode(color, tooltip=[alt.Tooltip("text:N", title="item"),
                                            alt.Tooltip("legend:N", title="")])

    # Hits are bold as well as green, so they stand out without relying on colour.
    layers = [lines(["heading"], True), lines(["seen", "miss"], False), lines(["hit"], True)]
    return (
        alt.layer(*layers, data=frame)
        .properties(width=WIDTH, height=17 * (SEEN_SHOWN + 1))
        .facet(row=alt.Row("user:N").title(None).sort(list(dict.fromkeys(frame["user"])))
               .header(labelAngle=0, labelAlign="left", labelAnchor="start", labelOrient="top",
                       labelFontSize=12, labelFontWeight="bold"))
        .configure_view(stroke=None)
    )


def _ranked(titles: list[str], hit: np.ndarray) -> list[str]:
    """``"3. title"`` lines, with :data:`HIT_MARK` after the titles that are hits."""
    return [f"{rank}. {_shorten(title)}{HIT_MARK if is_hit else ''}"
            for rank, (title, is_hit) in enumerate(zip(titles, hit, strict=True), start=1)]


def _shorten(title: str, limit: int = TITLE_CHARS) -> str:
    """``title`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "\u2026"


def _titles(dataset: Dataset, split: Split, columns: np.ndarray) -> list[str]:
    """Titles of split columns, or ``item <id>`` where the data has no title."""
    items = split.item_nums[np.asarray(columns, dtype=np.int64)]
    return [str(dataset.titles[i]) or f"item {dataset.item_ids[i]}" for i in items]


# --- metrics against K -----------------------------------------------------------------------


def curve_frame(comparison: Comparison) -> pd.DataFrame:
    """Mean Recall@K and NDCG@K over test users for every model and every K.

    Columns ``model``, ``metric`` (``"Recall@K"`` or ``"NDCG@K"``), ``k`` and ``value``:
    models x 2 x K rows, whatever the number of users.
    """
    ks = np.arange(1, comparison.max_k + 1)
    parts = []
    for metric, title in (("recall", "Recall@K"), ("ndcg", "NDCG@K")):
        means = comparison.means(metric)
        parts += [pd.DataFrame({"model": model_label(name), "metric": title, "k": ks,
                                "value": np.round(means[index], 5)})
                  for index, name in enumerate(comparison.models)]
    return pd.concat(parts, ignore_index=True)


def curve_chart(comparison: Comparison) -> alt.FacetChart:
    """Mean Recall@K and NDCG@K against K, one line per model, one panel per metric."""
    return (
        alt.Chart(curve_frame(comparison))
        .mark_line(strokeWidth=2)
        .encode(
            alt.X("k:Q").title("K, the length of the recommended list")
            .scale(domain=[1, comparison.max_k], nice=False),
            alt.Y("value:Q").title("Mean over test users").scale(zero=True),
            alt.Color("model:N").title(None).scale(model_colors(comparison.models))
            .legend(orient="bottom", direction="horizontal"),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("metric:N"), alt.Tooltip("k:Q"),
                     alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(width=WIDTH // 2 - 20, height=260)
        .facet(column=alt.Column("metric:N").title(None).sort(["Recall@K", "NDCG@K"])
               .header(labelFontSize=13))
    )


def curve_sentence(comparison: Comparison) -> Markdown:
    """Which model leads at short and at long lists, by mean Recall@K."""
    recall = comparison.means("recall")
    k_short, k_long = min(10, comparison.max_k), comparison.max_k
    short, long = int(np.argmax(recall[:, k_short - 1])), int(np.argmax(recall[:, k_long - 1]))
    primary = comparison.models[0]
    return sentence(
        f"At K = {k_short} the highest mean recall is {model_label(comparison.models[short])}'s "
        f"({recall[short, k_short - 1]:.3f}); at K = {k_long} it is "
        f"{model_label(comparison.models[long])}'s ({recall[long, k_long - 1]:.3f}). "
        f"{model_label(primary)} finds {recall[0, k_long - 1]:.0%} of a test user's held-out "
        f"items, on average, in its top {k_long}."
    )


# --- per-user recall ---------------------------------------------------------------------------


def recall_bins(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bin per-user recall: exactly 0, the ranges between :data:`RECALL_EDGES`, exactly 1.

    Each range includes its upper end (0.2 falls in the range from 0 to 0.2). Returns the bin
    of each value (NaN values get -1) and the bins' labels, in order.
    """
    edges = [0.0, *RECALL_EDGES, 1.0]
    ranges = [f"{lo:g}\u2013{hi:g}" for lo, hi in pairwise(edges)]
    labels = ["none (0)", f"up to {edges[1]:g}", *ranges[1:], "all (1)"]
    values = np.asarray(values, dtype=np.float64)
    inner = 1 + np.searchsorted(np.asarray(RECALL_EDGES), values, side="left")
    bins = np.where(values <= 0, 0, np.where(values >= 1, len(labels) - 1, inner))
    return np.where(np.isnan(values), -1, bins), labels


def distribution_frame(
    comparison: Comparison, ks: tuple[int, ...] = DISTRIBUTION_KS
) -> pd.DataFrame:
    """Users per recall bin for every model at every K in ``ks``.

    Columns ``metric`` (``"Recall@20"``), ``bin`` (a label), ``order``, ``model``, ``users``
    and ``share`` (of the users with targets).
    """
    parts = []
    for k in (k for k in ks if k <= comparison.max_k):
        values = comparison.values("recall", k)
        for index, name in enumerate(comparison.models):
            bins, labels = recall_bins(values[index])
            users = np.bincount(bins[bins >= 0], minlength=len(labels))
            parts.append(pd.DataFrame({
                "metric": metric_label("recall", k), "bin": labels,
                "order": np.arange(len(labels)), "model": model_label(name), "users": users,
                "share": np.round(users / max(users.sum(), 1), 4)}))
    return pd.concat(parts, ignore_index=True)


def distribution_chart(comparison: Comparison) -> alt.FacetChart:
    """Bars of the share of test users per recall bin, models side by side, one row per K."""
    frame = distribution_frame(comparison)
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            alt.X("bin:O").title("Recall of one test user: the share of its held-out items found")
            .sort(list(dict.fromkeys(frame["bin"]))).axis(labelAngle=0),
            alt.XOffset("model:N").sort([model_label(m) for m in comparison.models]),
            alt.Y("share:Q").title("Share of test users").axis(format="%"),
            alt.Color("model:N").title(None).scale(model_colors(comparison.models))
            .legend(orient="bottom", direction="horizontal"),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("metric:N"),
                     alt.Tooltip("bin:O", title="recall"), alt.Tooltip("users:Q", format=","),
                     alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=WIDTH, height=170)
        .facet(row=alt.Row("metric:N").title(None)
               .sort(list(dict.fromkeys(frame["metric"])))
               .header(labelAngle=0, labelAlign="left", labelAnchor="start", labelOrient="top",
                       labelFontSize=13))
    )


def distribution_sentence(comparison: Comparison, k: int = DISTRIBUTION_KS[0]) -> Markdown:
    """How many test users each model misses entirely, and how many it serves perfectly, at k."""
    k = min(k, comparison.max_k)
    values = comparison.values("recall", k)
    defined = ~np.isnan(values)
    zero = [(values[i][defined[i]] == 0).mean() for i in range(len(comparison.models))]
    one = [(values[i][defined[i]] == 1).mean() for i in range(len(comparison.models))]
    misses = ", ".join(f"{model_label(name)} {share:.0%}"
                       for name, share in zip(comparison.models, zero, strict=True))
    return sentence(
        f"At K = {k}, the share of test users with no hit at all is: {misses}. "
        f"{model_label(comparison.models[0])} finds every held-out item of "
        f"{one[0]:.0%} of the users, and its median user's recall is "
        f"{np.nanmedian(values[0]):.2f}."
    )


# --- user activity -----------------------------------------------------------------------------


def bucket_frame(
    comparison: Comparison,
    metrics: tuple[tuple[str, int], ...] = INTERVAL_METRICS,
    n_buckets: int = N_BUCKETS,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """Mean metrics per activity bucket and model, with bootstrap intervals over the bucket.

    Columns ``metric``, ``bucket`` (a label: the bucket's range of fold-in sizes), ``order``,
    ``users``, ``model``, ``mean``, ``low`` and ``high``: metrics x buckets x models rows.
    """
    bucket, bounds = activity_buckets(comparison.n_fold_in, n_buckets)
    parts = []
    for metric, k in metrics:
        values = comparison.values(metric, min(k, comparison.max_k))
        for b, (lo, hi) in enumerate(bounds):
            members = bucket == b
            stats = compare_with(values[:, members], comparison.models, comparison.models[0],
                                 n_resamples=n_resamples, seed=seed)
            span = f"{lo}" if lo == hi else f"{lo}\u2013{hi}"
            parts.append(pd.DataFrame({
                "metric": metric_label(metric, k), "bucket": f"{span} items seen",
                "order": b, "users": int(members.sum()),
                "model": [model_label(name) for name in comparison.models],
                "mean": stats["mean"].round(4), "low": stats["low"].round(4),
                "high": stats["high"].round(4)}))
    return pd.concat(parts, ignore_index=True)


def bucket_chart(comparison: Comparison) -> alt.FacetChart:
    """Mean metrics per fold-in size bucket, models side by side, with 95% intervals."""
    frame = bucket_frame(comparison)
    # An explicit order: layers cannot share a sort by another field.
    order = list(frame.sort_values("order")["bucket"].drop_duplicates())
    x = (alt.X("bucket:O").title("Test users by number of items seen (fold-in), in quarters")
         .sort(order).axis(labelAngle=0))
    offset = alt.XOffset("model:N").sort([model_label(m) for m in comparison.models])
    tooltip = [alt.Tooltip("model:N"), alt.Tooltip("bucket:O", title="users who saw"),
               alt.Tooltip("users:Q", title="users in bucket"),
               alt.Tooltip("mean:Q", format=".3f"),
               alt.Tooltip("low:Q", title="interval from", format=".3f"),
               alt.Tooltip("high:Q", title="interval to", format=".3f")]
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(x, offset, alt.Y("mean:Q").title("Mean over the bucket's users"),
                alt.Color("model:N").title(None).scale(model_colors(comparison.models))
                .legend(orient="bottom", direction="horizontal"), tooltip=tooltip)
    )
    whiskers = (
        alt.Chart()
        .mark_rule(color="#222222", strokeWidth=1.2)
        .encode(x, offset, alt.Y("low:Q"), alt.Y2("high:Q"), tooltip=tooltip)
    )
    return (
        alt.layer(bars, whiskers, data=frame)
        .properties(width=WIDTH, height=180)
        .facet(row=alt.Row("metric:N").title(None)
               .sort(list(dict.fromkeys(frame["metric"])))
               .header(labelAngle=0, labelAlign="left", labelAnchor="start", labelOrient="top",
                       labelFontSize=13))
        .resolve_scale(y="independent")
    )


def bucket_sentence(comparison: Comparison) -> Markdown:
    """The primary model's headline metric from the least to the most active bucket."""
    metric, k = INTERVAL_METRICS[0]
    frame = bucket_frame(comparison, metrics=((metric, k),))
    primary = model_label(comparison.models[0])
    mine = frame[frame["model"] == primary].sort_values("order")
    best = frame.loc[frame.groupby("order")["mean"].idxmax()].sort_values("order")
    first, last = mine.iloc[0], mine.iloc[-1]
    if len(mine) == 1:
        return sentence(f"Too many test users have the same number of items seen to cut them "
                        f"into buckets: {primary}'s {metric_label(metric, k)} over all of them "
                        f"is {first['mean']:.3f}.")
    leaders = list(best["model"])
    if len(set(leaders)) == 1:
        lead = f"{leaders[0]} has the highest {metric_label(metric, k)} in every bucket."
    else:
        lead = (f"The model with the highest {metric_label(metric, k)} in each bucket, from "
                f"the least to the most active, is: {', '.join(leaders)}.")
    return sentence(
        f"{primary}'s {metric_label(metric, k)} is {first['mean']:.3f} for the least active "
        f"test users ({first['bucket']}) and {last['mean']:.3f} for the most active "
        f"({last['bucket']}). {lead}"
    )


# --- bootstrap intervals -------------------------------------------------------------------


def interval_frame(
    comparison: Comparison,
    metrics: tuple[tuple[str, int], ...] = INTERVAL_METRICS,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """:func:`~recsys.report.evaluation.compare_with` for each metric, against the primary.

    Adds ``metric`` (a label), ``label`` (the model's display name) and ``verdict``: whether
    the primary model is ``"higher"`` or ``"lower"`` beyond the interval of the paired
    difference, or ``"unclear"`` when that interval includes zero (``"reference"`` for the
    primary model itself).
    """
    parts = []
    for metric, k in metrics:
        k = min(k, comparison.max_k)
        stats = compare_with(comparison.values(metric, k), comparison.models,
                             comparison.models[0], n_resamples=n_resamples, seed=seed)
        stats.insert(0, "metric", metric_label(metric, k))
        stats["label"] = [model_label(name) for name in stats["model"]]
        stats["verdict"] = np.select(
            [stats["model"] == comparison.models[0], stats["diff_low"] > 0,
             stats["diff_high"] < 0], ["reference", "higher", "lower"], "unclear")
        parts.append(stats)
    return pd.concat(parts, ignore_index=True)


def interval_table(comparison: Comparison) -> Markdown:
    """Each model's mean of the headline metrics with its 95% bootstrap interval."""
    frame = interval_frame(comparison)
    table = pd.DataFrame({"Model": list(dict.fromkeys(frame["label"]))})
    for metric, part in frame.groupby("metric", sort=False):
        table[str(metric)] = [f"{m:.3f}" for m in part["mean"]]
        table[f"{metric}, {LEVEL:.0%} interval"] = [
            f"{lo:.3f} to {hi:.3f}" for lo, hi in zip(part["low"], part["high"], strict=True)]
    return markdown_table(table)


def difference_chart(comparison: Comparison) -> alt.FacetChart:
    """Paired differences, primary minus each other model, with their 95% intervals."""
    frame = interval_frame(comparison)
    others = frame[frame["verdict"] != "reference"].copy()
    primary = model_label(comparison.models[0])
    others["pair"] = [f"{primary} \u2212 {label}" for label in others["label"]]
    verdicts = {"higher": f"{primary} higher", "lower": f"{primary} lower",
                "unclear": "interval includes 0"}
    others["verdict"] = others["verdict"].map(verdicts)
    others = others[["metric", "pair", "diff", "diff_low", "diff_high", "verdict"]].round(4)
    points = (
        alt.Chart()
        .mark_point(filled=True, size=70)
        .encode(
            alt.X("diff:Q").title(f"Difference in the mean ({LEVEL:.0%} bootstrap interval)")
            .axis(labelExpr=SIGNED_LABEL, tickCount=6),
            alt.Y("pair:N").title(None).sort(list(dict.fromkeys(others["pair"]))),
            alt.Color("verdict:N").title(None)
            .scale(domain=list(verdicts.values()), range=["#1a8a3a", "#c0392b", "#777777"])
            .legend(orient="bottom", direction="horizontal"),
            tooltip=[alt.Tooltip("pair:N", title="difference"), alt.Tooltip("metric:N"),
                     alt.Tooltip("diff:Q", format="+.3f"),
                     alt.Tooltip("diff_low:Q", title="interval from", format="+.3f"),
                     alt.Tooltip("diff_high:Q", title="interval to", format="+.3f")],
        )
    )
    intervals = points.mark_rule(strokeWidth=2).encode(alt.X2("diff_high:Q"),
                                                       x=alt.X("diff_low:Q"))
    zero = alt.Chart().mark_rule(color="#333333", strokeDash=[4, 3]).encode(
        x=alt.datum(0))
    return (
        alt.layer(zero, intervals, points, data=others)
        .properties(width=WIDTH // 2 - 20, height=34 * max(1, others["pair"].nunique()))
        .facet(column=alt.Column("metric:N").title(None)
               .sort(list(dict.fromkeys(others["metric"]))).header(labelFontSize=13))
    )


def interval_sentence(comparison: Comparison) -> Markdown:
    """For each headline metric: which models the primary beats or trails beyond the interval."""
    frame = interval_frame(comparison)
    primary = model_label(comparison.models[0])
    if len(comparison.models) == 1:
        return sentence(f"There is no other model to compare {primary} with.")
    texts = [f"The intervals come from {count(N_RESAMPLES)} bootstrap resamples of the "
             f"{count(frame['users'].iloc[0])} test users, the same resamples for every model, "
             f"so each difference is paired user by user."]
    for metric, part in frame.groupby("metric", sort=False):
        texts.append(_verdict_text(primary, str(metric), part))
    return sentence(" ".join(texts))


def _verdict_text(primary: str, metric: str, part: pd.DataFrame) -> str:
    """One sentence: where the primary stands against each other model on one metric."""

    def listed(verdict: str) -> str:
        rows = part[part["verdict"] == verdict]
        items = [f"{label} (by {abs(d):.3f}, interval {min(abs(lo), abs(hi)):.3f} to "
                 f"{max(abs(lo), abs(hi)):.3f})" if verdict != "unclear" else
                 f"{label} ({d:+.3f}, interval {lo:+.3f} to {hi:+.3f})"
                 for label, d, lo, hi in zip(rows["label"], rows["diff"], rows["diff_low"],
                                             rows["diff_high"], strict=True)]
        return _join(items)

    mean = part.loc[part["verdict"] == "reference", "mean"].iloc[0]
    clear = [f"{'above' if verdict == 'higher' else 'below'} {listed(verdict)}"
             for verdict in ("higher", "lower") if (part["verdict"] == verdict).any()]
    text = f"On {metric}, where {primary} averages {mean:.3f}, it is "
    if clear:
        text += f"{' and '.join(clear)}, beyond the interval of the difference"
        if (part["verdict"] == "unclear").any():
            text += (f"; its difference from {listed('unclear')} lies within the interval, "
                     "which includes zero, so these test users cannot tell them apart")
    else:
        text += (f"not clearly different from any other model: its difference from "
                 f"{listed('unclear')} lies within the interval, which includes zero")
    return text + "."


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
