"""The training chapter: history frames, the marked best epoch, the sentences, chart sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pytest
import vl_convert as vlc

from recsys.checkpoint import read_manifest
from recsys.report import charts, training_charts

REPO = Path(__file__).resolve().parents[1]
MAX_PAGE_BYTES = 1_500_000


def compile_svg(chart: alt.TopLevelMixin) -> str:
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=charts.vegalite_version())


def history(n_epochs: int, best: int, seconds: float = 0.5, kind: str = "multvae") -> dict:
    """A manifest entry whose validation NDCG@100 peaks at ``best``."""
    epochs = np.arange(1, n_epochs + 1)
    ndcg = 0.3 - 0.001 * np.abs(epochs - best)
    variational = kind == "multvae"
    return {
        "config": {"kind": kind, "n_items": 50, "hidden_dims": [8] if variational else [],
                   "latent_dim": 4, "dropout": 0.5},
        "history": [{"epoch": int(e), "loss": 600.0 - e, "nll": 590.0 - e,
                     "kl": float(e) if variational else 0.0,
                     "beta": min(0.2, e / 100) if variational else 0.0,
                     "val_ndcg": float(v), "seconds": seconds} for e, v in zip(epochs, ndcg,
                                                                               strict=True)],
        "best_epoch": best,
        "stopped_early": False,
    }


def manifest_with(**models: dict) -> dict[str, Any]:
    return {"primary": next(iter(models)), "models": models,
            "training": {"epochs": 200, "patience": 50, "beta_cap": 0.2, "device": "cpu"}}


def layer_data(spec: dict, panel: dict, layer: dict) -> list[dict]:
    """The rows a layer draws: the nearest data it inherits, through the filters it applies."""
    data = layer.get("data") or panel.get("data") or spec["data"]
    rows = spec["datasets"][data["name"]]
    for step in layer.get("transform", []):
        if step.get("filter") == "datum.best":
            rows = [row for row in rows if row["best"]]
    return rows


def test_the_curves_mark_the_recorded_best_epoch_in_every_panel() -> None:
    manifest = manifest_with(multvae=history(120, best=70), multdae=history(150, 148,
                                                                            kind="multdae"))

    spec = training_charts.curves_chart(manifest).to_dict()

    panels = spec["vconcat"]
    assert len(panels) == 4
    for panel in panels:
        rules = [layer for layer in panel["layer"] if layer["mark"]["type"] == "rule"]
        assert len(rules) == 1
        marked = {row["model"]: row["epoch"] for row in layer_data(spec, panel, rules[0])}
        assert marked == {"Multi-VAE": 70, "Multi-DAE": 148}
    points = [layer for layer in panels[-1]["layer"] if layer["mark"]["type"] == "point"]
    best = layer_data(spec, panels[-1], points[0])
    assert {(row["model"], row["epoch"], row["val_ndcg"]) for row in best} == {
        ("Multi-VAE", 70, 0.3), ("Multi-DAE", 148, 0.3)}


def test_a_multi_dae_has_no_kl_or_beta_and_alone_gets_no_such_panels() -> None:
    frame = training_charts.history_frame(manifest_with(multdae=history(5, 5, kind="multdae")))

    assert frame[["kl", "beta"]].isna().all().all()
    spec = training_charts.curves_chart(manifest_with(multdae=history(5, 5, kind="multdae")))
    titles = [panel["layer"][0]["encoding"]["y"]["title"] for panel in spec.to_dict()["vconcat"]]
    assert titles == ["Training loss", "Validation NDCG@100"]


def test_long_histories_are_thinned_but_keep_each_best_epoch() -> None:
    manifest = manifest_with(multvae=history(9_000, best=4_321),
                             multdae=history(9_000, best=17, kind="multdae"))

    frame = training_charts.history_frame(manifest, max_rows=500)

    assert len(frame) <= 502
    for model, best in (("Multi-VAE", 4_321), ("Multi-DAE", 17)):
        epochs = frame.loc[frame["model"] == model, "epoch"]
        assert {1, best, 9_000} <= set(epochs)
        assert frame.loc[(frame["model"] == model) & frame["best"], "epoch"].tolist() == [best]


def test_training_charts_stay_small_for_very_long_runs() -> None:
    manifest = manifest_with(multvae=history(20_000, best=15_000),
                             multdae=history(20_000, best=19_990, kind="multdae"))

    page = [training_charts.curves_chart(manifest), training_charts.time_chart(manifest)]

    # to_dict() enforces Altair's 5000-row limit on every chart's data.
    assert sum(len(json.dumps(chart.to_dict())) for chart in page) < MAX_PAGE_BYTES / 4


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({**history(80, 30), "stopped_early": True},
         "Multi-VAE stopped early after epoch 80: its validation NDCG@100 had not beaten epoch "
         "30's 0.3000 for 50 epochs (the patience is 50)."),
        (history(200, 199), "Multi-VAE ran all 200 epochs and its best validation NDCG@100 "
         "(0.3000) came at epoch 199, near the end: it was still improving"),
        (history(200, 60), "Multi-VAE ran all 200 epochs without stopping early; its best "
         "validation NDCG@100 (0.3000) came at epoch 60."),
    ],
)
def test_the_stopping_sentence_says_why_training_ended(entry: dict, expected: str) -> None:
    text = training_charts.stopping_sentence(manifest_with(multvae=entry)).data

    assert text.startswith("Training allowed up to 200 epochs per model.")
    assert expected in text


def test_the_summary_table_and_the_annealing_sentence_use_the_history() -> None:
    manifest = manifest_with(multvae=history(60, 45, seconds=2.0),
                             multdae=history(60, 60, seconds=0.25, kind="multdae"))

    table = training_charts.summary_table(manifest).data
    annealing = training_charts.annealing_sentence(manifest).data

    assert "| Multi-VAE | 60 | 45 | 0.3000 | no | 2 | 120.0 |" in table
    assert "| Multi-DAE | 60 | 60 | 0.3000 | no | 0.25 | 15.0 |" in table
    # beta = epoch / 100 reaches 0.2 at epoch 20.
    assert annealing == "For Multi-VAE, \u03b2 starts at 0 and reaches its cap of 0.2 at epoch 20."


def test_the_time_sentence_flags_times_that_vary_with_the_machine() -> None:
    steady = manifest_with(multvae=history(10, 5, seconds=1.0))
    noisy = manifest_with(multvae=history(10, 5, seconds=1.0))
    noisy["models"]["multvae"]["history"][3]["seconds"] = 20.0

    assert "factor" not in training_charts.time_sentence(steady).data
    assert "Multi-VAE's by a factor of 20" in training_charts.time_sentence(noisy).data


def test_training_charts_compile_to_svg_for_the_shipped_and_the_tiny_checkpoint(
    tiny_checkpoint: Path,
) -> None:
    for path in (REPO / "checkpoints" / "ml-latest-small", tiny_checkpoint):
        manifest = read_manifest(path)
        for chart in (training_charts.curves_chart(manifest),
                      training_charts.time_chart(manifest)):
            assert chart.to_dict()["$schema"].endswith(".json")
            assert compile_svg(chart).startswith("<svg")
        assert "Multi-VAE" in training_charts.summary_table(manifest).data


def test_the_shipped_checkpoints_chart_marks_its_recorded_best_epochs() -> None:
    manifest = read_manifest(REPO / "checkpoints" / "ml-latest-small")

    frame = training_charts.history_frame(manifest)

    for name, entry in manifest["models"].items():
        label = training_charts.model_label(name)
        marked = frame.loc[(frame["model"] == label) & frame["best"], "epoch"].tolist()
        assert marked == [entry["best_epoch"]]
