"""The training chapter: how each model's loss, KL term, beta and validation score moved.

Everything here reads the checkpoint's manifest only; no model is loaded. The history of a
model is one row per epoch, so a very long run is thinned to :data:`MAX_ROWS` rows in all
(every model keeps its best epoch), which keeps every chart under Altair's row limit.
"""

from __future__ import annotations

from typing import Any, Final

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from recsys.report.prediction_charts import model_colors, model_label
from recsys.report.tables import count, decimal, markdown_table, sentence

WIDTH: Final = 560
MAX_ROWS: Final = 1000
# Slowest over fastest epoch from which the times say more about the machine than the model.
NOISY_SPREAD: Final = 5.0
# Runs of at most this many epochs draw a point at every epoch.
POINTS_UP_TO: Final = 30
HISTORY_FIELDS: Final = ("loss", "nll", "kl", "beta", "val_ndcg", "seconds")
# Panels of the curves chart: field, title, and whether only variational models have it.
PANELS: Final = (
    ("loss", "Training loss", False),
    ("kl", "KL divergence", True),
    ("beta", "\u03b2 (KL weight)", True),
    ("val_ndcg", "Validation NDCG@100", False),
)


def model_names(manifest: dict[str, Any]) -> list[str]:
    """The manifest's models, primary first."""
    primary = manifest.get("primary")
    names = list(manifest.get("models", {}))
    return sorted(names, key=lambda name: name != primary)


def is_variational(entry: dict[str, Any]) -> bool:
    """Whether a model entry of the manifest is a Multi-VAE, which has a KL term."""
    return entry.get("config", {}).get("kind", "multvae") == "multvae"


def history_frame(manifest: dict[str, Any], max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """One row per model and epoch: ``model`` (display name), ``epoch``, the recorded fields
    and ``best`` (the epoch whose weights the checkpoint kept).

    ``kl`` and ``beta`` are NaN for a Multi-DAE, which has neither. Each model keeps at most
    ``max_rows // models`` evenly spaced epochs, its first, last and best among them.
    """
    names = model_names(manifest)
    per_model = max(3, max_rows // max(len(names), 1))
    parts = []
    for name in names:
        entry = manifest["models"][name]
        history = pd.DataFrame(entry.get("history", []),
                               columns=["epoch", *HISTORY_FIELDS]).astype(float)
        best = history["epoch"] == entry.get("best_epoch")
        keep = np.zeros(len(history), dtype=bool)
        keep[np.unique(np.linspace(0, len(history) - 1, per_model).round().astype(int))] = True
        history = history[keep | best.to_numpy()].copy()
        history["best"] = history["epoch"] == entry.get("best_epoch")
        if not is_variational(entry):
            history[["kl", "beta"]] = np.nan
        history.insert(0, "model", model_label(name))
        parts.append(history)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["model", "epoch", *HISTORY_FIELDS, "best"])
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.round({"loss": 3, "nll": 3, "kl": 4, "beta": 5, "val_ndcg": 5, "seconds": 4})


def summary_frame(manifest: dict[str, Any]) -> pd.DataFrame:
    """Per model: epochs run, best epoch and its validation NDCG@100, early stop, time.

    Columns ``name``, ``model``, ``epochs``, ``best_epoch``, ``best_ndcg``, ``stopped_early``,
    ``seconds`` (total), ``median_seconds`` (per epoch) and ``spread``, the slowest epoch's
    time over the fastest's (1 with fewer than two epochs).
    """
    rows = []
    for name in model_names(manifest):
        entry = manifest["models"][name]
        history = pd.DataFrame(entry.get("history", []), columns=["epoch", *HISTORY_FIELDS])
        best = history.loc[history["epoch"] == entry.get("best_epoch"), "val_ndcg"]
        rows.append({
            "name": name, "model": model_label(name), "epochs": len(history),
            "best_epoch": int(entry.get("best_epoch", 0)),
            "best_ndcg": float(best.iloc[0]) if len(best) else float("nan"),
            "stopped_early": bool(entry.get("stopped_early", False)),
            "seconds": float(history["seconds"].sum()),
            "median_seconds": float(history["seconds"].median()) if len(history) else 0.0,
            "spread": _spread(history["seconds"].to_numpy(dtype=float)),
        })
    return pd.DataFrame(rows)


def summary_table(manifest: dict[str, Any]) -> Markdown:
    """How long each model trained, which epoch it kept, and whether it stopped early."""
    frame = summary_frame(manifest)
    table = pd.DataFrame({
        "Model": frame["model"],
        "Epochs run": [count(n) for n in frame["epochs"]],
        "Best epoch": [count(n) for n in frame["best_epoch"]],
        "Validation NDCG@100 there": [f"{v:.4f}" for v in frame["best_ndcg"]],
        "Stopped early": ["yes" if stopped else "no" for stopped in frame["stopped_early"]],
        "Seconds per epoch (median)": [_seconds(s) for s in frame["median_seconds"]],
        "Seconds in all": [decimal(s) for s in frame["seconds"]],
    })
    return markdown_table(table)


def stopping_sentence(manifest: dict[str, Any]) -> Markdown:
    """Whether each model stopped early, and what that says about its best epoch."""
    training = manifest.get("training", {})
    patience, epochs = training.get("patience"), training.get("epochs")
    texts = []
    for row in summary_frame(manifest).itertuples():
        if row.stopped_early:
            texts.append(
                f"{row.model} stopped early after epoch {count(row.epochs)}: its validation "
                f"NDCG@100 had not beaten epoch {count(row.best_epoch)}'s {row.best_ndcg:.4f} "
                f"for {count(row.epochs - row.best_epoch)} epochs"
                + (f" (the patience is {count(patience)})." if patience else "."))
        elif row.epochs == 1:
            texts.append(f"{row.model} trained for a single epoch, whose weights the checkpoint "
                         f"keeps (validation NDCG@100 {row.best_ndcg:.4f}).")
        elif row.best_epoch >= row.epochs - max(1, row.epochs // 20):
            texts.append(
                f"{row.model} ran all {_epochs(row.epochs)} and its best validation "
                f"NDCG@100 ({row.best_ndcg:.4f}) came at epoch {count(row.best_epoch)}, near "
                "the end: it was still improving, and more epochs might help it.")
        else:
            texts.append(
                f"{row.model} ran all {_epochs(row.epochs)} without stopping early; its "
                f"best validation NDCG@100 ({row.best_ndcg:.4f}) came at epoch "
                f"{count(row.best_epoch)}.")
    if not texts:
        return sentence("The checkpoint records no trained model.")
    if epochs:
        texts.insert(0, f"Training allowed up to {_epochs(epochs)} per model.")
    return sentence(" ".join(texts))


def annealing_sentence(manifest: dict[str, Any]) -> Markdown:
    """When beta reached its cap, for each variational model."""
    cap = manifest.get("training", {}).get("beta_cap")
    frame = history_frame(manifest)
    texts = []
    for name in model_names(manifest):
        if not is_variational(manifest["models"][name]):
            continue
        history = frame[frame["model"] == model_label(name)]
        if cap is None or history.empty:
            continue
        reached = history.loc[history["beta"] >= cap - 1e-9, "epoch"]
        when = (f"reaches its cap of {cap:g} at epoch {count(reached.iloc[0])}"
                if len(reached) else f"ends at {history['beta'].iloc[-1]:.3g}, below its cap "
                f"of {cap:g}")
        texts.append(f"For {model_label(name)}, \u03b2 starts at 0 and {when}.")
    if not texts:
        return sentence("No model in this checkpoint has a KL term, so there is no \u03b2 to "
                        "anneal.")
    return sentence(" ".join(texts))


def curves_chart(manifest: dict[str, Any]) -> alt.VConcatChart:
    """Loss, KL, beta and validation NDCG@100 per epoch, one panel each, best epochs marked.

    A dashed rule in each model's colour marks the epoch the checkpoint kept, in every panel;
    a labelled point on the validation panel marks the score that chose it. Short runs get a
    point per epoch, since a line through one or two epochs is hard to see.
    """
    frame = history_frame(manifest)[["model", "epoch", *(f for f, _, _ in PANELS), "best"]]
    last = max(2, int(frame["epoch"].max())) if len(frame) else 2
    # Labels of best epochs in the right half of the axis go to their left, and vice versa.
    frame["label_left"] = frame["epoch"] > (1 + last) / 2
    names = model_names(manifest)
    color = (alt.Color("model:N").title(None).scale(model_colors(names))
             .legend(orient="bottom", direction="horizontal"))
    shown = [(field, title) for field, title, variational_only in PANELS
             if not (variational_only and frame[field].isna().all())]
    panels = []
    for index, (field, title) in enumerate(shown):
        # One epoch axis for all panels; only the bottom one is titled.
        x = (alt.X("epoch:Q").title("Epoch" if index == len(shown) - 1 else None)
             .scale(domain=[1, last], nice=False)
             .axis(format="d", values=list(range(1, last + 1)) if last <= 10 else alt.Undefined))
        tooltip = [alt.Tooltip("model:N"), alt.Tooltip("epoch:Q"),
                   alt.Tooltip(f"{field}:Q", title=title, format=".4~f")]
        line = (alt.Chart(frame)
                .mark_line(strokeWidth=1.8, point=frame["epoch"].nunique() <= POINTS_UP_TO)
                .encode(x, alt.Y(f"{field}:Q").title(title).scale(zero=False), color,
                        tooltip=tooltip))
        rule = (alt.Chart(frame).transform_filter(alt.datum.best)
                .mark_rule(strokeDash=[5, 3], strokeWidth=1.2).encode(x, color))
        layers = [line, rule]
        if field == "val_ndcg":
            layers += _best_marks(frame, x, color)
        panels.append(alt.layer(*layers).properties(width=WIDTH, height=110))
    return alt.vconcat(*panels, spacing=12).resolve_scale(x="shared")


def _best_marks(frame: pd.DataFrame, x: alt.X, color: alt.Color) -> list[alt.Chart]:
    """A point at each model's best validation score, and a label beside it."""
    best = alt.Chart(frame).transform_filter(alt.datum.best).encode(
        x, alt.Y("val_ndcg:Q"), color,
        tooltip=[alt.Tooltip("model:N"), alt.Tooltip("epoch:Q", title="best epoch"),
                 alt.Tooltip("val_ndcg:Q", format=".4f")])
    labelled = best.transform_calculate(label="'best: epoch ' + datum.epoch")
    return [
        best.mark_point(filled=True, size=70, opacity=1),
        labelled.transform_filter(alt.datum.label_left)
        .mark_text(align="right", dx=-7, dy=-9, fontSize=11).encode(alt.Text("label:N")),
        labelled.transform_filter(~alt.datum.label_left)
        .mark_text(align="left", dx=7, dy=-9, fontSize=11).encode(alt.Text("label:N")),
    ]


def time_chart(manifest: dict[str, Any]) -> alt.Chart:
    """Seconds per epoch (training and validation) for every model, on a log scale."""
    frame = history_frame(manifest)
    names = model_names(manifest)
    positive = frame.loc[frame["seconds"] > 0, ["model", "epoch", "seconds"]]
    return (
        alt.Chart(positive)
        .mark_line(strokeWidth=1.5)
        .encode(
            alt.X("epoch:Q").title("Epoch"),
            alt.Y("seconds:Q").title("Seconds per epoch (log scale)").scale(type="log"),
            alt.Color("model:N").title(None).scale(model_colors(names))
            .legend(orient="bottom", direction="horizontal"),
            tooltip=[alt.Tooltip("model:N"), alt.Tooltip("epoch:Q"),
                     alt.Tooltip("seconds:Q", format=".3f")],
        )
        .properties(width=WIDTH, height=200)
    )


def time_sentence(manifest: dict[str, Any]) -> Markdown:
    """Total and typical time per model, and on what device it was measured."""
    frame = summary_frame(manifest)
    if frame.empty:
        return sentence("The checkpoint records no training time.")
    device = manifest.get("training", {}).get("device", "an unrecorded device")
    parts = [f"{row.model} took {_seconds(row.seconds)} seconds in all, a median of "
             f"{_seconds(row.median_seconds)} seconds per epoch" for row in frame.itertuples()]
    text = (f"Measured on `{device}`: {'; '.join(parts)}. An epoch's time includes scoring the "
            "validation users, which chooses the best epoch.")
    noisy = [(row.model, row.spread) for row in frame.itertuples() if row.spread >= NOISY_SPREAD]
    if noisy:
        spreads = _join([f"{model}'s by a factor of {spread:.0f}" for model, spread in noisy])
        text += (f" Every epoch of a model does the same work, yet the slowest and fastest "
                 f"epochs differ, {spreads}: the times measure the machine's other load as much "
                 "as the model.")
    return sentence(text)


def _spread(seconds: np.ndarray) -> float:
    """The slowest time over the fastest positive one; 1 when there is nothing to compare."""
    positive = seconds[seconds > 0]
    return float(positive.max() / positive.min()) if len(positive) >= 2 else 1.0


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _epochs(n: int) -> str:
    """``"1 epoch"``, ``"200 epochs"``."""
    return f"{count(n)} epoch{'' if n == 1 else 's'}"


def _seconds(value: float) -> str:
    """Seconds with two significant digits below 10, one decimal above."""
    return f"{value:.2g}" if value < 10 else decimal(value)
