"""The output-distribution chapter: what the decoder's multinomial over items looks like.

For every user, the decoder gives a probability to every item. The per-user entropy and the
per-item mean probability come from :class:`~recsys.report.precompute.Artifacts`; only the few
example users of :func:`example_top_items` are decoded again here, over all items with the
seen ones included. Chart data stay small at any size: items and users are binned into grids
(:func:`~recsys.report.binning.grid_cells`) and entropies into a histogram.
"""

from __future__ import annotations

from typing import Final

import altair as alt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown

from recsys.model import MultVAE, to_sparse_tensor
from recsys.preprocess import Dataset
from recsys.recommend import top_columns
from recsys.report.binning import GRID_BINS, bin_index, edges, grid_cells, significant
from recsys.report.context import ReportContext
from recsys.report.precompute import GROUP_NAMES, Artifacts, visible_items
from recsys.report.statistics import pearson, spearman, strength
from recsys.report.tables import count, decimal, percent, sentence
from recsys.splits import TEST, Split

TOP_N: Final = 50
EXAMPLE_USERS: Final = 3
SCATTER_MAX_USERS: Final = 3000
ENTROPY_BINS: Final = 40
TREND_BINS: Final = 12
HEAD_SHARE: Final = 0.1
WIDTH: Final = 560
STATUSES: Final = ("seen (model input)", "held-out target", "not seen")
STATUS_COLORS: Final = ("#c5c5c5", "#e45756", "#2f6fab")
GROUP_COLORS: Final = ("#4c78a8", "#f58518", "#e45756")


# --- a few users' top items -------------------------------------------------------------------


def example_users(artifacts: Artifacts, n: int = EXAMPLE_USERS, seed: int = 0) -> np.ndarray:
    """Dataset user nums of ``n`` test users drawn with ``seed``, fewest interactions first.

    Any user is eligible when the split has no test user among the artifacts' rows.
    """
    rows = np.flatnonzero(artifacts.group == TEST)
    if len(rows) == 0:
        rows = np.arange(artifacts.n_users)
    chosen = np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False)
    chosen = chosen[np.argsort(artifacts.n_visible[chosen], kind="stable")]
    return artifacts.user_nums[chosen]


@torch.no_grad()
def top_items_frame(
    model: MultVAE, dataset: Dataset, split: Split, user_nums: np.ndarray, n: int = TOP_N
) -> pd.DataFrame:
    """The ``n`` most probable items of each user over all items, the seen ones included.

    Parameters
    ----------
    model
        The decoder's model; it is run in evaluation mode, with ``z = mu``.
    dataset, split
        The data and split the artifacts come from; ``split`` gives the items' columns and
        the test targets.
    user_nums
        Dataset user nums, each with at least one visible interaction.
    n
        Items per user (default :data:`TOP_N`; fewer when the split has fewer items).

    Returns
    -------
    pandas.DataFrame
        One row per user and rank: ``user`` (a label), ``rank`` (1 = most probable),
        ``probability``, ``title`` and ``status`` (one of :data:`STATUSES`: seen by the model,
        a held-out test target, or neither).
    """
    model.eval()
    visible_users, _, visible = visible_items(dataset, split)
    rows = np.searchsorted(visible_users, user_nums)
    if np.any(rows >= len(visible_users)) or np.any(visible_users[rows] != user_nums):
        raise ValueError("user_nums: expected users with visible interactions, got "
                         f"{np.setdiff1d(user_nums, visible_users).tolist()}")
    batch = visible[rows]  # (users, items) CSR
    mu, _ = model.encode(to_sparse_tensor(batch))
    probs = F.softmax(model.decode(mu), dim=1)  # (users, items)
    k = min(n, split.n_items)
    columns = top_columns(probs.clone(), k)  # (users, k)

    test_rows = {int(u): i for i, u in enumerate(split.test.user_nums)}
    frames = []
    for i, user in enumerate(user_nums):
        seen = set(batch[i].indices.tolist())
        targets = set()
        if int(user) in test_rows:
            targets = set(split.test.targets[test_rows[int(user)]].indices.tolist())
        status = [STATUSES[0] if c in seen else STATUSES[1] if c in targets else STATUSES[2]
                  for c in columns[i].tolist()]
        frames.append(pd.DataFrame({
            "user": f"user {dataset.user_ids[user]}: {count(len(seen))} seen, "
                    f"{count(len(targets))} held out",
            "rank": np.arange(1, k + 1),
            "probability": significant(probs[i, columns[i]].numpy()),
            "title": _titles(dataset, split.item_nums[columns[i]]),
            "status": status,
        }))
    return pd.concat(frames, ignore_index=True)


def example_top_items(context: ReportContext, seed: int = 0) -> pd.DataFrame:
    """:func:`top_items_frame` for :func:`example_users` of the checkpoint's primary model."""
    users = example_users(context.artifacts, seed=seed)
    return top_items_frame(context.checkpoint.primary, context.dataset, context.split, users)


def top_items_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Bars of each example user's top probabilities, coloured by seen, held out or neither."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            alt.X("rank:O").title("Rank among all items (1 = most probable)")
            .axis(labelAngle=0, values=[1, *range(5, int(frame["rank"].max()) + 1, 5)]),
            alt.Y("probability:Q").title("Probability").axis(format=".1%", tickCount=4),
            alt.Color("status:N").title(None)
            .scale(domain=list(STATUSES), range=list(STATUS_COLORS)).legend(orient="top"),
            tooltip=[alt.Tooltip("rank:O"), alt.Tooltip("title:N"),
                     alt.Tooltip("probability:Q", format=".3%"), alt.Tooltip("status:N")],
        )
        .properties(width=WIDTH, height=110)
        .facet(row=alt.Row("user:N").title(None).sort(list(frame["user"].unique()))
               .header(labelAngle=0, labelAlign="left", labelAnchor="start", labelOrient="top",
                       labelFontSize=12))
        .resolve_scale(y="independent")
    )


def top_items_sentence(frame: pd.DataFrame) -> Markdown:
    """How many of the example users' top items are seen items and held-out targets."""
    users = frame["user"].nunique()
    per_user = int(frame.groupby("user").size().max())
    seen = int((frame["status"] == STATUSES[0]).sum())
    targets = int((frame["status"] == STATUSES[1]).sum())
    return sentence(
        f"Of the {count(len(frame))} places in these {count(users)} lists of {per_user}, "
        f"{count(seen)} ({percent(seen / len(frame))}) go to items the user has already "
        f"seen and {count(targets)} to held-out targets, the items the model is scored on."
    )


# --- mean probability against popularity ------------------------------------------------------


def training_counts(split: Split) -> np.ndarray:
    """Training interactions of each split column, shape (items,) int64."""
    return np.bincount(split.train.indices, minlength=split.n_items).astype(np.int64)


def popularity_frame(
    artifacts: Artifacts, counts: np.ndarray, bins: int = GRID_BINS
) -> pd.DataFrame:
    """Items binned by training count and mean probability, both on log scales.

    ``counts`` are the training interactions per split column (:func:`training_counts`).
    Items without training interactions, or with a mean probability of 0, have no place on
    log axes and are left out. Columns as :func:`~recsys.report.binning.grid_cells`, with
    ``count`` the items per cell.
    """
    kept = (counts > 0) & (artifacts.mean_probs > 0)
    return grid_cells(counts[kept].astype(np.float64), artifacts.mean_probs[kept], bins,
                      log_x=True, log_y=True)


def popularity_chart(artifacts: Artifacts, counts: np.ndarray) -> alt.LayerChart:
    """Heatmap of items by training count and mean probability, with popularity's line.

    ``counts`` are the training interactions per split column (:func:`training_counts`). The
    line is the probability a model gives when it follows popularity exactly: an item's share
    of all training interactions.
    """
    cells = popularity_frame(artifacts, counts)
    low, high = float(cells["x_start"].min()), float(cells["x_end"].max())
    line = pd.DataFrame({"x": [low, high], "y": significant(np.array([low, high])
                                                            / counts.sum())})
    heat = alt.Chart(cells).mark_rect().encode(
        alt.X("x_start:Q").title("Training interactions of the item (log scale)")
        .scale(type="log", domain=[low, high], nice=False),
        alt.X2("x_end:Q"),
        alt.Y("y_start:Q").title("Mean probability over users (log scale)")
        .scale(type="log", nice=False).axis(format=".0e"),
        alt.Y2("y_end:Q"),
        alt.Color("count:Q").title("Items").scale(type="log", scheme="blues"),
        tooltip=[alt.Tooltip("x_start:Q", title="interactions from", format=",.3~g"),
                 alt.Tooltip("x_end:Q", title="to", format=",.3~g"),
                 alt.Tooltip("y_start:Q", title="mean probability from", format=".2e"),
                 alt.Tooltip("y_end:Q", title="to", format=".2e"),
                 alt.Tooltip("count:Q", title="items", format=",")],
    )
    reference = alt.Chart(line).mark_line(strokeDash=[5, 3], color="#e45756").encode(
        alt.X("x:Q"), alt.Y("y:Q"))
    label = alt.Chart(line.tail(1)).mark_text(
        align="right", dx=-4, dy=-8, color="#e45756",
        text="share of training interactions").encode(alt.X("x:Q"), alt.Y("y:Q"))
    return alt.layer(heat, reference, label).properties(width=WIDTH, height=320)


def popularity_sentence(artifacts: Artifacts, counts: np.ndarray) -> Markdown:
    """How closely mean probability follows popularity, and how much the head items get.

    ``counts`` are the training interactions per split column (:func:`training_counts`).
    """
    probs = artifacts.mean_probs
    rho = spearman(counts, probs)
    head = max(1, round(HEAD_SHARE * len(counts)))
    order = np.argsort(-counts, kind="stable")[:head]
    unseen = int((counts == 0).sum())
    interaction_share = counts[order].sum() / counts.sum()
    text = (
        f"Across the {count(len(counts))} items, Spearman's rank correlation between an item's "
        f"training interactions and its mean probability is {decimal(rho, 2)}. The "
        f"{count(head)} most popular items ({HEAD_SHARE:.0%}) hold {percent(interaction_share)} "
        f"of the training interactions and receive {percent(probs[order].sum())} of the "
        "probability, averaged over users."
    )
    if unseen:
        text += (f" {count(unseen)} items have no training interaction and are left out of "
                 "the chart.")
    return sentence(text)


# --- entropy ----------------------------------------------------------------------------------


def entropy_frame(artifacts: Artifacts, bins: int = ENTROPY_BINS) -> pd.DataFrame:
    """Users per bin of entropy: columns ``start``, ``end`` (nats) and ``users``."""
    counts, bin_edges = np.histogram(artifacts.entropy.astype(np.float64), bins=bins)
    return pd.DataFrame({"start": significant(bin_edges[:-1]), "end": significant(bin_edges[1:]),
                         "users": counts})


def entropy_chart(artifacts: Artifacts) -> alt.LayerChart:
    """Histogram of users' entropies with a rule at log(items), the uniform distribution's."""
    frame = entropy_frame(artifacts)
    n_items = len(artifacts.mean_probs)
    ceiling = float(np.log(n_items))
    low = float(np.floor(min(frame["start"].min(), ceiling - 1)))
    bars = alt.Chart(frame).mark_rect(color="#2f6fab").encode(
        alt.X("start:Q").title("Entropy of the user's distribution over items (nats)")
        .scale(domain=[low, ceiling + 0.25], nice=False),
        alt.X2("end:Q"),
        alt.Y("users:Q").title("Users").axis(format=",d"),
        alt.Y2(datum=0),
        tooltip=[alt.Tooltip("start:Q", title="from", format=".2f"),
                 alt.Tooltip("end:Q", title="to", format=".2f"),
                 alt.Tooltip("users:Q", format=",")],
    )
    rule_frame = pd.DataFrame({"x": [round(ceiling, 3)],
                               "text": [f"uniform over {count(n_items)} items: "
                                        f"log n = {decimal(ceiling, 2)}"]})
    rule = alt.Chart(rule_frame).mark_rule(color="#e45756", strokeDash=[5, 3], strokeWidth=1.5) \
        .encode(alt.X("x:Q"))
    label = alt.Chart(rule_frame).mark_text(align="right", baseline="top", dx=-4, dy=4,
                                            color="#e45756") \
        .encode(alt.X("x:Q"), alt.Y(value=0), alt.Text("text:N"))
    return alt.layer(bars, rule, label).properties(width=WIDTH, height=240)


def entropy_sentence(artifacts: Artifacts) -> Markdown:
    """The range of entropies against log(items), and what the median means in items."""
    entropy = artifacts.entropy.astype(np.float64)
    n_items = len(artifacts.mean_probs)
    median = float(np.median(entropy))
    effective = float(np.exp(median))
    return sentence(
        f"Entropies run from {decimal(entropy.min(), 2)} to {decimal(entropy.max(), 2)} nats, "
        f"with a median of {decimal(median, 2)}, against {decimal(np.log(n_items), 2)} nats "
        f"for a uniform distribution over all {count(n_items)} items. A distribution with the "
        f"median entropy is as spread out as a uniform one over about {count(effective)} "
        f"items ({percent(effective / n_items)} of them)."
    )


# --- entropy against activity -----------------------------------------------------------------


def entropy_activity_frame(
    artifacts: Artifacts, max_points: int = SCATTER_MAX_USERS, bins: int = GRID_BINS
) -> pd.DataFrame:
    """Users by visible interactions and entropy: one row each, or grid cells beyond a size.

    Up to ``max_points`` users give ``interactions``, ``entropy`` and ``group``; more are
    binned by :func:`~recsys.report.binning.grid_cells` (interactions on a log scale).
    """
    interactions = artifacts.n_visible.astype(np.float64)
    entropy = artifacts.entropy.astype(np.float64)
    if artifacts.n_users <= max_points:
        return pd.DataFrame({"interactions": artifacts.n_visible, "entropy": significant(entropy),
                             "group": [GROUP_NAMES[int(code)] for code in artifacts.group]})
    return grid_cells(interactions, entropy, bins, log_x=True)


def entropy_trend(artifacts: Artifacts, bins: int = TREND_BINS) -> pd.DataFrame:
    """Median entropy per bin of visible interactions (log-spaced): ``interactions``, ``entropy``.

    ``interactions`` is the median count of the bin's users; empty bins are left out.
    """
    interactions = artifacts.n_visible.astype(np.float64)
    index = bin_index(interactions, edges(interactions, bins, log=True), log=True)
    frame = pd.DataFrame({"bin": index, "interactions": interactions,
                          "entropy": artifacts.entropy.astype(np.float64)})
    medians = frame.groupby("bin")[["interactions", "entropy"]].median()
    return medians.apply(significant).reset_index(drop=True)


def entropy_activity_chart(
    artifacts: Artifacts, max_points: int = SCATTER_MAX_USERS
) -> alt.LayerChart:
    """Entropy against visible interactions (log scale), with the median entropy per bin."""
    frame = entropy_activity_frame(artifacts, max_points)
    x_title = "Interactions the model reads (log scale)"
    y_title = "Entropy (nats)"
    if "count" in frame.columns:
        users = alt.Chart(frame).mark_rect().encode(
            alt.X("x_start:Q").title(x_title).scale(type="log", nice=False),
            alt.X2("x_end:Q"),
            alt.Y("y_start:Q").title(y_title).scale(zero=False, nice=False),
            alt.Y2("y_end:Q"),
            alt.Color("count:Q").title("Users").scale(type="log", scheme="blues"),
            tooltip=[alt.Tooltip("count:Q", title="users", format=",")],
        )
    else:
        groups = [GROUP_NAMES[code] for code in sorted(GROUP_NAMES)]
        users = alt.Chart(frame).mark_circle(size=20, opacity=0.6).encode(
            alt.X("interactions:Q").title(x_title).scale(type="log"),
            alt.Y("entropy:Q").title(y_title).scale(zero=False),
            alt.Color("group:N").title("Users").scale(domain=groups, range=list(GROUP_COLORS)),
            tooltip=[alt.Tooltip("group:N"), alt.Tooltip("interactions:Q", format=","),
                     alt.Tooltip("entropy:Q", format=".2f")],
        )
    # The median line carries no legend (the chapter's caption names it); a white halo keeps
    # it visible over dark cells.
    trend = alt.Chart(entropy_trend(artifacts)).encode(
        alt.X("interactions:Q"), alt.Y("entropy:Q"),
        tooltip=[alt.Tooltip("interactions:Q", format=",.0f", title="median interactions"),
                 alt.Tooltip("entropy:Q", format=".2f", title="median entropy")],
    )
    halo = trend.mark_line(color="white", strokeWidth=5)
    median = trend.mark_line(color="#222222", strokeWidth=2,
                             point=alt.OverlayMarkDef(color="#222222", size=30))
    return (alt.layer(users, halo, median).properties(width=WIDTH, height=300)
            .configure_legend(orient="top", direction="horizontal"))


def entropy_activity_sentence(artifacts: Artifacts) -> Markdown:
    """The correlation of entropy with the number of visible interactions, and its trend."""
    interactions = artifacts.n_visible.astype(np.float64)
    entropy = artifacts.entropy.astype(np.float64)
    if artifacts.n_users < 3 or np.ptp(interactions) == 0 or np.ptp(entropy) == 0:
        return sentence("Too few users, or too little variation, to correlate entropy with "
                        "the number of interactions.")
    rho = spearman(interactions, entropy)
    r = pearson(np.log(interactions), entropy)
    text = (f"Spearman's rank correlation between the interactions a user's input holds and "
            f"the entropy of the output is {decimal(rho, 2)}, and Pearson's correlation of "
            f"entropy with the logarithm of the interactions is {decimal(r, 2)}: "
            f"{strength(rho)} relation")
    if strength(rho) == "no":
        text += "."
    else:
        text += f", in which longer histories get {'flatter' if rho > 0 else 'more peaked'} " \
            "distributions."

    # The binned medians say whether the trend is monotone.
    medians = entropy_trend(artifacts)["entropy"].to_numpy()
    middle = entropy_trend(artifacts)["interactions"].to_numpy()
    text += (f" The median entropy goes from {decimal(medians[0], 2)} nats for the least active "
             f"users to {decimal(medians[-1], 2)} for the most active")
    for extreme, word in ((medians.argmin(), "lowest"), (medians.argmax(), "highest")):
        if 0 < extreme < len(medians) - 1:
            text += (f"; it is {word}, {decimal(medians[extreme], 2)}, around "
                     f"{count(middle[extreme])} interactions")
    text += "."
    return sentence(text)


def _titles(dataset: Dataset, item_nums: np.ndarray) -> list[str]:
    """Each item's title, or its id where the data has no title."""
    return [str(dataset.titles[i]) or f"item {dataset.item_ids[i]}" for i in item_nums]

