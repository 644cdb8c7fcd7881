"""Markdown summaries of checkpoints, checked against hand-worked changes."""

from __future__ import annotations

from recsys.summary import comparison_markdown, metrics_table


def manifest(name: str, ndcg: float, fingerprint: str = "a" * 64) -> dict:
    test = {"ndcg@100": ndcg, "recall@100": 0.5}
    return {
        "name": name,
        "created_at": "2026-01-01T00:00:00+00:00",
        "data": {"fingerprint": fingerprint},
        "split": {"strategy": "heldout_users", "stats": {"test_users": 100}},
        "models": {"multvae": {"test": test}},
        "baselines": {"popularity": {"test": {"ndcg@100": 0.1, "recall@100": 0.2}},
                      "ease": {"lambda": 200.0, "test": test}},
    }


def test_comparison_gives_absolute_and_relative_change() -> None:
    text = comparison_markdown(manifest("main", 0.2), manifest("pr", 0.25), ks=(100,))
    # 0.25 - 0.20 = +0.05, and 0.05 / 0.20 = +25%.
    assert "| Multi-VAE | NDCG@100 | 0.2000 | 0.2500 | +0.0500 (+25.0%) |" in text
    assert "| Most popular | Recall@100 | 0.2000 | 0.2000 | +0.0000 (+0.0%) |" in text
    assert "data differ" not in text


def test_comparison_flags_other_data_and_a_missing_base() -> None:
    text = comparison_markdown(manifest("main", 0.2, "b" * 64), manifest("pr", 0.25), ks=(100,))
    assert "The data differ" in text
    first = comparison_markdown(None, manifest("pr", 0.25), ks=(100,))
    assert "No base checkpoint" in first
    assert "| Multi-VAE | NDCG@100 | - | 0.2500 | new |" in first


def test_metrics_table_has_a_row_per_model() -> None:
    results = {"multvae": {"ndcg@100": 0.3, "recall@100": 0.4},
               "ease": {"ndcg@100": 0.35, "recall@100": 0.45}}
    table = metrics_table(manifest("x", 0.3), results, [100]).splitlines()
    assert table[0] == "| model | NDCG@100 | Recall@100 |"
    assert table[2] == "| Multi-VAE | 0.3000 | 0.4000 |"
    assert table[3] == "| EASE (lambda 200) | 0.3500 | 0.4500 |"
