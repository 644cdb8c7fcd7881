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
