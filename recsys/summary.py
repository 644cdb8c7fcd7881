"""Markdown tables of a checkpoint's metrics, and of one checkpoint against another."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DISPLAY_NAMES = {"multvae": "Multi-VAE", "multdae": "Multi-DAE", "popularity": "Most popular",
                 "ease": "EASE"}


def metrics_table(
    manifest: dict[str, Any], results: dict[str, dict[str, float]], ks: Iterable[int]
) -> str:
    """A markdown table: one row per model, NDCG@K and Recall@K columns for each K."""
    ks = list(ks)
    header = ["model", *(f"NDCG@{k}" for k in ks), *(f"Recall@{k}" for k in ks)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in results.items():
        label = DISPLAY_NAMES.get(name, name)
        if name == "ease":
            label += f" (lambda {manifest['baselines']['ease']['lambda']:g})"
        cells = [f"{values[f'ndcg@{k}']:.4f}" for k in ks]
        cells += [f"{values[f'recall@{k}']:.4f}" for k in ks]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def comparison_markdown(
    base: dict[str, Any] | None, head: dict[str, Any], ks: Iterable[int] = (20, 50, 100)
) -> str:
    """Markdown that compares a head checkpoint's recorded test metrics with a base one's.

    ``base`` and ``head`` are manifests; ``base`` may be ``None`` when there is nothing to
    compare with (the first checkpoint). Each row is one model and one metric, with the base
    value, the head value and the change.
    """
    lines = [f"## Checkpoint `{head['name']}`", "", _describe(head)]
    if base is None:
        lines += ["", "No base checkpoint to compare with.", ""]
    else:
        lines += ["", f"Compared with `{base['name']}`: {_describe(base)}", ""]
        if base["data"].get("fingerprint") != head["data"].get("fingerprint"):
            lines += ["**The data differ** (another fingerprint): changes mix model and data.", ""]

    header = "| model | metric | base | head | change |"
    lines += [header, "|---|---|---:|---:|---:|"]
    head_metrics = recorded_test_metrics(head)
    base_metrics = recorded_test_metrics(base) if base is not None else {}
    for model, values in head_metrics.items():
        for metric in (f"{name}@{k}" for name in ("ndcg", "recall") for k in ks):
            if metric not in values:
                continue
            new = values[metric]
            old = base_metrics.get(model, {}).get(metric)
            lines.append(f"| {DISPLAY_NAMES.get(model, model)} | {_metric_label(metric)} | "
                         f"{_fmt(old)} | {new:.4f} | {_change(old, new)} |")
    return "\n".join(lines) + "\n"


def recorded_test_metrics(manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Test metrics as a manifest recorded them, models and baselines alike."""
    entries = {**manifest["models"], **manifest.get("baselines", {})}
    return {name: entry.get("test", {}) for name, entry in entries.items()}


def _describe(manifest: dict[str, Any]) -> str:
    split = manifest["split"]
    return (f"created {manifest['created_at']}, data fingerprint "
            f"`{manifest['data']['fingerprint'][:12]}`, split {split['strategy']} "
            f"({split['stats']['test_users']} test users)")


def _metric_label(metric: str) -> str:
    name, k = metric.split("@")
    return {"ndcg": "NDCG", "recall": "Recall"}.get(name, name) + f"@{k}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _change(old: float | None, new: float) -> str:
    if old is None:
        return "new"
    relative = f" ({(new - old) / old:+.1%})" if old else ""
    return f"{new - old:+.4f}{relative}"
