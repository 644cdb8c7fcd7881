"""The book's front page: which checkpoint it describes, where that came from, how it scored.

Every number here is read from the checkpoint's manifest as training recorded it; the
predictions chapter recomputes the test scores and adds their uncertainty.
"""

from __future__ import annotations

from typing import Any, Final

import pandas as pd
from IPython.display import Markdown

from recsys.report.context import ReportContext
from recsys.report.tables import count, markdown_table, percent, sentence
from recsys.summary import DISPLAY_NAMES, recorded_test_metrics

# The paper's headline metrics, in the order the front page shows them.
HEADLINE_METRICS: Final = ("ndcg@100", "recall@20", "recall@50")


def checkpoint_table(context: ReportContext) -> Markdown:
    """The checkpoint's name, age, data, split and models, as recorded in its manifest."""
    manifest = context.manifest
    data: dict[str, Any] = manifest.get("data", {})
    split: dict[str, Any] = manifest.get("split", {})
    rows = [
        ("Checkpoint", f"`{context.name}`"),
        ("Created", str(manifest.get("created_at", "unknown"))),
        ("Data", f"`{data.get('source', 'unknown')}`"),
        ("Data fingerprint", f"`{str(data.get('fingerprint', ''))[:12]}`"),
        ("Users, items, interactions", _sizes(data)),
        ("Split strategy", f"`{split.get('strategy', 'unknown')}`"),
        ("Split sizes", _split_sizes(split.get("stats", {}))),
        ("Models", ", ".join(f"`{name}`" for name in manifest.get("models", {}))),
        ("Training", _training(manifest.get("training", {}))),
        ("recsys version", str(manifest.get("library_versions", {}).get("recsys", "unknown"))),
    ]
    return markdown_table(pd.DataFrame(rows, columns=["", "Value"]))


def _sizes(data: dict[str, Any]) -> str:
    keys = ("n_users", "n_items", "n_interactions")
    if not all(key in data for key in keys):
        return "unknown"
    return ", ".join(count(data[key]) for key in keys)


def model_table(context: ReportContext) -> Markdown:
    """Each model's layers, dropout and training outcome, as the manifest records them."""
    rows = []
    for name, entry in context.manifest.get("models", {}).items():
        config = entry.get("config", {})
        rows.append({
            "Model": DISPLAY_NAMES.get(name, name),
            "Layers (input to output)": _layers(config),
            "Dropout on the input": f"{config.get('dropout', float('nan')):g}",
            "Epochs run": count(len(entry.get("history", []))),
            "Best epoch (kept)": count(entry.get("best_epoch", 0)),
        })
    return markdown_table(pd.DataFrame(rows, columns=[
        "Model", "Layers (input to output)", "Dropout on the input", "Epochs run",
        "Best epoch (kept)"]))


def headline_table(context: ReportContext) -> Markdown:
    """Recorded test NDCG@100, Recall@20 and Recall@50 of every model and baseline."""
    manifest = context.manifest
    rows = []
    for name, values in recorded_test_metrics(manifest).items():
        row = {"Model": _display(name, manifest)}
        row |= {_metric_name(metric): f"{values[metric]:.4f}" if metric in values else "n/a"
                for metric in HEADLINE_METRICS}
        rows.append(row)
    columns = ["Model", *map(_metric_name, HEADLINE_METRICS)]
    return markdown_table(pd.DataFrame(rows, columns=columns))


def headline_sentence(context: ReportContext) -> Markdown:
    """How the primary model's recorded NDCG@100 compares with every other one's."""
    manifest = context.manifest
    recorded = recorded_test_metrics(manifest)
    primary = manifest.get("primary")
    metric = HEADLINE_METRICS[0]
    if primary not in recorded or metric not in recorded[primary]:
        return sentence("The checkpoint records no test metrics for its primary model.")
    mine = recorded[primary][metric]
    others = {name: values[metric] for name, values in recorded.items()
              if name != primary and metric in values}
    label = DISPLAY_NAMES.get(primary, primary)
    text = f"On the test users, {label} reaches an {_metric_name(metric)} of {mine:.4f}"
    above = [name for name, value in others.items() if value < mine]
    below = [name for name, value in others.items() if value > mine]
    parts = []
    if above:
        parts.append("above " + _join([f"{DISPLAY_NAMES.get(n, n)} ({others[n]:.4f}, "
                                       f"{_relative(mine, others[n])})" for n in above]))
    if below:
        parts.append("below " + _join([f"{DISPLAY_NAMES.get(n, n)} ({others[n]:.4f}, "
                                       f"{_relative(mine, others[n])})" for n in below]))
    text += (": " + " and ".join(parts) + "." if parts else ", and there is nothing recorded "
             "to compare it with.")
    return sentence(text)


def _split_sizes(stats: dict[str, Any]) -> str:
    keys = ("train_users", "validation_users", "test_users")
    if not all(key in stats for key in keys):
        return "unknown"
    users = (f"{count(stats['train_users'])} training, {count(stats['validation_users'])} "
             f"validation and {count(stats['test_users'])} test users")
    return users + (f"; {count(stats['items'])} items" if "items" in stats else "")


def _training(training: dict[str, Any]) -> str:
    keys = ("epochs", "batch_size", "lr", "beta_cap", "patience")
    if not all(key in training for key in keys):
        return "unknown"
    epochs = training["epochs"]
    return (f"up to {count(epochs)} epoch{'' if epochs == 1 else 's'} of "
            f"{count(training['batch_size'])} users per batch, learning rate {training['lr']:g}, "
            f"\u03b2 annealed to {training['beta_cap']:g}, patience "
            f"{count(training['patience'])} epochs")


def _layers(config: dict[str, Any]) -> str:
    """``5,198 → 600 → 200 → 600 → 5,198`` for a Multi-VAE with one hidden layer."""
    if "n_items" not in config or "latent_dim" not in config:
        return "unknown"
    hidden = list(config.get("hidden_dims", []))
    widths = [config["n_items"], *hidden, config["latent_dim"], *reversed(hidden),
              config["n_items"]]
    return " \u2192 ".join(count(width) for width in widths)


def _display(name: str, manifest: dict[str, Any]) -> str:
    """A model's display name; EASE with the penalty it was fitted with."""
    label = DISPLAY_NAMES.get(name, name)
    ease = manifest.get("baselines", {}).get("ease")
    if name == "ease" and ease and "lambda" in ease:
        label += f" (\u03bb = {ease['lambda']:g})"
    return label


def _metric_name(metric: str) -> str:
    """``"NDCG@100"`` for ``"ndcg@100"``."""
    name, k = metric.split("@")
    return {"ndcg": "NDCG", "recall": "Recall"}.get(name, name) + f"@{k}"


def _relative(mine: float, other: float) -> str:
    """How far ``mine`` is from ``other``, as a share of ``other``: ``"by 48%"``."""
    return f"by {percent(abs(mine - other) / other)}" if other else "from zero"


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
