"""The splits chapter: what each split strategy trains on and holds out, on the real data.

Every strategy is run with the checkpoint's ``[split]`` settings (only the strategy changes),
so the comparison shows what the checkpoint would have been evaluated on had it used another
protocol. Chart data stay small at any data size: the timeline draws a few users with at most
:data:`TIMELINE_MAX_ITEMS` interactions each, and held-out sizes are binned.
"""

from __future__ import annotations

from typing import Any, Final

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from recsys.pipeline import configured_split
from recsys.preprocess import Dataset
from recsys.report.context import ReportContext
from recsys.report.tables import count, markdown_table, percent, sentence
from recsys.splits import FOLD_IN, ROLE_NAMES, STRATEGIES, TEST, VALIDATION, Split

TIMELINE_USERS: Final = 4
TIMELINE_MIN_ITEMS: Final = 20
TIMELINE_MAX_ITEMS: Final = 150
MAX_EXACT_SIZES: Final = 30
WIDTH: Final = 560
ROLE_COLORS: Final = ("#4c78a8", "#9ecae9", "#f58518", "#e45756", "#d0d0d0")
TEMPORAL: Final = ("temporal_user", "temporal_global")


def all_strategies(context: ReportContext) -> dict[str, Split]:
    """Every split strategy on the checkpoint's data, with the checkpoint's split settings.

    The checkpoint's own strategy is its split as trained; temporal strategies are left out
    when the data has no timestamps. Weak-generalisation splits get validation users, as in
    training.
    """
    dataset, current = context.dataset, context.split
    splits: dict[str, Split] = {}
    for strategy in STRATEGIES:
        if strategy == current.strategy:
            splits[strategy] = current
        elif strategy not in TEMPORAL or dataset.has_timestamps:
            config = {"split": {**context.split_config, "strategy": strategy}}
            splits[strategy] = configured_split(dataset, config)
    return splits


def comparison_frame(dataset: Dataset, splits: dict[str, Split]) -> pd.DataFrame:
    """Counts per strategy: interactions by role, users with targets, cold starts."""
    users = dataset.interactions["user_num"].to_numpy()
    rows = []
    for strategy, split in splits.items():
        held = (split.roles == VALIDATION) | (split.roles == TEST)
        rows.append({
            "strategy": strategy,
            "settings": describe_settings(split.settings),
            "train": split.stats["train_interactions"],
            "fold-in": split.stats["fold_in_interactions"],
            "held out": int(held.sum()),
            "dropped": split.stats["dropped_interactions"],
            "users with targets": len(np.unique(users[held])),
            "cold-start items": split.stats["cold_start_items"],
            "cold-start users": split.stats["cold_start_users"],
        })
    return pd.DataFrame(rows)


def comparison_table(dataset: Dataset, splits: dict[str, Split], current: str) -> Markdown:
    """:func:`comparison_frame` as a table; the checkpoint's strategy is marked."""
    frame = comparison_frame(dataset, splits)
    frame["strategy"] = [f"{name} (this checkpoint)" if name == current else name
                         for name in frame["strategy"]]
    numbers = frame.columns.drop(["strategy", "settings"])
    frame[numbers] = frame[numbers].map(count)
    frame.columns = [str(name).capitalize() for name in frame.columns]
    return markdown_table(frame)


def checkpoint_sentence(split: Split) -> Markdown:
    """Who trains and who is scored in the checkpoint's split, in numbers."""
    stats = split.stats
    text = (
        f"This checkpoint was trained with the `{split.strategy}` split. "
        f"{count(stats['train_interactions'])} interactions of "
        f"{count(stats['train_users'])} users train the model; "
        f"{count(stats['test_users'])} test users hold {count(stats['test_targets'])} targets, "
        f"and {count(stats['validation_users'])} validation users hold "
        f"{count(stats['validation_targets'])}, on which the best epoch is chosen."
    )
    if stats["fold_in_interactions"]:
        text += (f" Held-out users are never trained on: the model reads "
                 f"{count(stats['fold_in_interactions'])} of their interactions as input and "
                 "is scored on the rest.")
    if stats["dropped_interactions"]:
        text += (f" {count(stats['dropped_interactions'])} interactions are used for neither "
                 "(dropped).")
    return sentence(text)


def heldout_sentence(split: Split) -> Markdown:
    """The typical number of targets per test user and how many users have very few."""
    per_user = np.diff(split.test.targets.indptr)
    few = int((per_user <= 2).sum())
    return sentence(
        f"A test user has {np.median(per_user):g} targets at the median and "
        f"{count(per_user.max())} at most; {count(few)} of the {count(len(per_user))} test "
        f"users ({percent(few / len(per_user))}) have one or two."
    )


def describe_settings(settings: dict[str, Any]) -> str:
    """``key=value`` pairs of a split's own settings; a time cut is shown as a date.

    Nested settings (the validation users carved out of a weak split) are left out: they are
    the same for every strategy that has them.
    """
    parts = []
    for key, value in settings.items():
        if key == "cut" and isinstance(value, int):
            value = pd.Timestamp(value, unit="s").strftime("%Y-%m-%d")
        if value is not None and not isinstance(value, dict):
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def timeline_users(
    dataset: Dataset, splits: dict[str, Split], n: int = TIMELINE_USERS, seed: int = 0
) -> np.ndarray:
    """User nums to draw on the timeline, chosen at random with ``seed``.

    Users have between :data:`TIMELINE_MIN_ITEMS` and :data:`TIMELINE_MAX_ITEMS`
    interactions (any user with two or more when too few do). When the strategy that holds
    out whole users is among ``splits``, one of them is such a held-out user, so that its
    fold-in and targets show.
    """
    counts = np.bincount(dataset.interactions["user_num"], minlength=dataset.n_users)
    candidates = np.flatnonzero((counts >= TIMELINE_MIN_ITEMS) & (counts <= TIMELINE_MAX_ITEMS))
    if len(candidates) < n:
        candidates = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)

    chosen: list[int] = []
    if "heldout_users" in splits:
        held = _users_with_role(dataset, splits["heldout_users"], FOLD_IN)
        held_candidates = np.intersect1d(candidates, held)
        if len(held_candidates) > 0:
            chosen.append(int(rng.choice(held_candidates)))
    rest = np.setdiff1d(candidates, chosen)
    chosen.extend(rng.choice(rest, size=min(n - len(chosen), len(rest)), replace=False))
    return np.sort(np.array(chosen, dtype=np.int64))


def timeline_frame(
    dataset: Dataset, splits: dict[str, Split], user_nums: np.ndarray
) -> pd.DataFrame:
    """One row per interaction of ``user_nums``, in time order, with its role per strategy.

    Columns ``user`` (a label), ``position`` (1 = the user's first interaction), ``date``
    (empty without timestamps) and one column per strategy holding a role name.
    """
    interactions = dataset.interactions
    rows = np.flatnonzero(np.isin(interactions["user_num"].to_numpy(), user_nums))
    picked = interactions.iloc[rows]
    sizes = picked.groupby("user_num")["user_num"].transform("size")
    frame = pd.DataFrame({
        "user": [f"user {dataset.user_ids[u]} ({n} interactions)"
                 for u, n in zip(picked["user_num"], sizes, strict=True)],
        "position": picked.groupby("user_num").cumcount().to_numpy() + 1,
        "date": (pd.to_datetime(picked["timestamp"], unit="s").dt.strftime("%Y-%m-%d")
                 if dataset.has_timestamps else ""),
    })
    names = np.array(ROLE_NAMES)
    for strategy, split in splits.items():
        frame[strategy] = names[split.roles[rows]]
    return frame.reset_index(drop=True)


def timeline_chart(dataset: Dataset, splits: dict[str, Split], seed: int = 0) -> alt.FacetChart:
    """For a few users, each interaction in time order, coloured by its role per strategy."""
    frame = timeline_frame(dataset, splits, timeline_users(dataset, splits, seed=seed))
    strategies = list(splits)
    return (
        alt.Chart(frame)
        .transform_fold(strategies, as_=["strategy", "role"])
        .transform_calculate(end="datum.position + 1")
        .mark_rect()
        .encode(
            alt.X("position:Q").title("Interactions in time order (1 = first)")
            .scale(nice=False, zero=False).axis(tickMinStep=1, grid=False),
            alt.X2("end:Q"),
            alt.Y("strategy:N").title(None).sort(strategies),
            alt.Color("role:N").title("Role").scale(domain=list(ROLE_NAMES),
                                                    range=list(ROLE_COLORS)),
            tooltip=[alt.Tooltip("strategy:N"), alt.Tooltip("position:Q"),
                     alt.Tooltip("date:N"), alt.Tooltip("role:N")],
        )
        .properties(width=WIDTH - 120, height=18 * len(strategies))
        .facet(row=alt.Row("user:N").title(None).header(labelAngle=0, labelAlign="left",
                                                        labelOrient="top", labelFontSize=12))
        .resolve_scale(x="independent")
    )


def heldout_sizes_frame(split: Split) -> pd.DataFrame:
    """Users per number of held-out targets, for the test and (if any) validation users.

    Sizes up to :data:`MAX_EXACT_SIZES` have a bar each; larger data are binned by powers of
    two (1, 2, 3 to 4, 5 to 8, ...). Columns ``set``, ``size`` (a label such as ``"5"`` or
    ``"5"`` to ``"8"`` joined by an en dash), ``order`` and ``users``.
    """
    holdouts = {"test": split.test, "validation": split.validation}
    sizes = {name: np.diff(holdout.targets.indptr) for name, holdout in holdouts.items()
             if holdout is not None}
    largest = max(int(s.max()) for s in sizes.values())
    edges = _size_edges(largest)
    parts = []
    for name, per_user in sizes.items():
        users = np.histogram(per_user, bins=np.append(edges, largest + 1))[0]
        parts.append(pd.DataFrame({"set": name, "size": _edge_labels(edges, largest),
                                   "order": np.arange(len(edges)), "users": users}))
    return pd.concat(parts, ignore_index=True)


def heldout_sizes_chart(split: Split) -> alt.Chart:
    """Bars of users per number of held-out targets, test and validation side by side."""
    frame = heldout_sizes_frame(split)
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            alt.X("size:O").title("Held-out targets per user")
            .sort(alt.EncodingSortField("order")).axis(labelAngle=0),
            alt.XOffset("set:N").sort(["test", "validation"]),
            alt.Y("users:Q").title("Users").axis(format=",d"),
            alt.Color("set:N").title(None).scale(domain=["test", "validation"],
                                                 range=[ROLE_COLORS[3], ROLE_COLORS[2]])
            .legend(orient="top-right"),
            tooltip=[alt.Tooltip("set:N"), alt.Tooltip("size:O", title="targets"),
                     alt.Tooltip("users:Q", format=",")],
        )
        .properties(width=WIDTH, height=240)
    )


def _users_with_role(dataset: Dataset, split: Split, role: int) -> np.ndarray:
    """User nums with at least one interaction of ``role`` in ``split``."""
    users = dataset.interactions["user_num"].to_numpy()
    return np.unique(users[split.roles == role])


def _size_edges(largest: int) -> np.ndarray:
    """Lower edges of the size bins: every size up to the limit, else powers of two plus one."""
    if largest <= MAX_EXACT_SIZES:
        return np.arange(1, largest + 1)
    powers = 2 ** np.arange(int(np.ceil(np.log2(largest))) + 1)
    return np.unique(np.concatenate([[1, 2], powers[powers < largest] + 1]))


def _edge_labels(edges: np.ndarray, largest: int) -> list[str]:
    """``"7"`` for a one-size bin, and the first and last sizes joined by an en dash else."""
    upper = np.append(edges[1:] - 1, largest)
    return [str(lo) if lo == hi else f"{lo}\u2013{hi}" for lo, hi in zip(edges, upper, strict=True)]
