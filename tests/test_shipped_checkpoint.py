"""The committed checkpoint: README's numbers are its numbers, and they can be recomputed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recsys.checkpoint import load_checkpoint, read_manifest
from recsys.pipeline import evaluate_checkpoint
from recsys.summary import metrics_table
from recsys.summary import recorded_test_metrics as recorded_metrics

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "ml-latest-small"


def readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- metrics:start -->\n(.*?)\n<!-- metrics:end -->", text, re.S)
    assert match, "README has no metrics table between its markers"
    return match.group(1)


def test_readme_shows_the_checkpoints_recorded_metrics() -> None:
    manifest = read_manifest(SHIPPED)
    assert readme_table() == metrics_table(manifest, recorded_metrics(manifest), [20, 50, 100])


def test_readme_states_the_split_as_recorded() -> None:
    manifest = read_manifest(SHIPPED)
    text = " ".join((ROOT / "README.md").read_text().split())
    stats, settings = manifest["split"]["stats"], manifest["split"]["settings"]
    assert f"seed {settings['seed']}" in text
    assert f"{stats['test_users']} validation and {stats['test_users']} test users" in text
    assert f"{stats['train_users']} training users" in text
    assert f"{stats['items']:,} that training users" in text


def test_multvae_beats_popularity_by_a_quarter() -> None:
    recorded = recorded_metrics(read_manifest(SHIPPED))
    assert recorded["multvae"]["ndcg@100"] >= 1.25 * recorded["popularity"]["ndcg@100"]


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_metrics() -> None:
    checkpoint = load_checkpoint(SHIPPED)
    results = evaluate_checkpoint(checkpoint)
    recorded = recorded_metrics(checkpoint.manifest)
    for model, values in results.items():
        for metric, value in values.items():
            assert value == pytest.approx(recorded[model][metric], abs=1e-6), (model, metric)
