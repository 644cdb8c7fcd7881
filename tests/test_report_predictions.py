"""The predictions chapter and the front page's scores: the per-checkpoint comparison of every
model on the test users, its cache, the bootstrap and activity buckets, and the charts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert as vlc

import recsys
from recsys import baselines, metrics
from recsys.baselines import fit_popularity
from recsys.checkpoint import load_checkpoint
from recsys.pipeline import (
    checkpoint_scorers,
    checkpoint_split,
    load_checkpoint_dataset,
    model_scorer,
)
from recsys.preprocess import Dataset, Preprocessing, build_dataset
from recsys.report import charts, evaluation, overview, prediction_charts
from recsys.report.context import ReportContext, load_context
from recsys.report.evaluation import Comparison
from recsys.splits import Split, make_split

MAX_PAGE_BYTES = 1_500_000


def compile_svg(chart: alt.TopLevelMixin) -> str:
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=charts.vegalite_version())


def spec_bytes(chart: alt.TopLevelMixin) -> int:
    return len(json.dumps(chart.to_dict()))


def toy_dataset(pairs: list[tuple[int, int]]) -> Dataset:
    """(user, item) pairs in time order, every one positive, with a title per item."""
    frame = pd.DataFrame({
        "user_id": [str(u) for u, _ in pairs], "item_id": [str(i) for _, i in pairs],
        "rating": 5.0, "timestamp": np.arange(len(pairs), dtype=np.int64) * 60,
    })
    titles = {str(i): f"Film {i}" for _, i in pairs}
    return build_dataset(frame, Preprocessing(threshold=None, min_user_items=1), source="toy",
                         titles=titles)


def synthetic_dataset(n_users: int, n_items: int, mean_items: float, seed: int = 0) -> Dataset:
    """Long-tailed random interactions: log-normal history lengths, Zipf-like item choice."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_items), 0.8, n_users), 5, n_items // 2)
    users = np.repeat(np.arange(n_users), lengths.astype(np.int64))
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    items = rng.choice(n_items, size=len(users), p=popularity / popularity.sum())
    users, items = np.divmod(np.unique(users * n_items + items), n_items)
    frame = pd.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str),
                          "rating": 5.0,
                          "timestamp": rng.integers(1_000_000_000, 1_500_000_000, len(users))})
    return build_dataset(frame, Preprocessing(threshold=None, min_user_items=5),
                         source="synthetic",
                         titles={str(i): f"A rather long synthetic title number {i}"
                                 for i in range(n_items)})


def synthetic_comparison(split: Split, models: list[str], seed: int = 0) -> Comparison:
    """Random but well-formed scores for the split's test users: rising curves, distinct lists."""
    rng = np.random.default_rng(seed)
    n_users, k = split.test.n_users, min(evaluation.MAX_K, split.n_items)
    shape = (len(models), n_users, k)
    recall = np.sort(rng.random(shape), axis=2).astype(np.float32)
    recall[rng.random(shape[:2]) < 0.15] = 0.0
    offsets = rng.integers(0, split.n_items, size=(len(models), n_users, 1))
    top = (offsets + np.arange(evaluation.LIST_LENGTH)) % split.n_items
    return Comparison(
        models=models, user_nums=split.test.user_nums,
        n_fold_in=np.diff(split.test.fold_in.indptr), n_targets=np.diff(split.test.targets.indptr),
        recall=recall, ndcg=(recall * 0.8).astype(np.float32), top_items=top.astype(np.int32))


def hand_comparison(recall_at_1: list[list[float]], n_fold_in: list[int]) -> Comparison:
    """A comparison with K = 1 whose per-user values are given, models x users."""
    values = np.asarray(recall_at_1, dtype=np.float32)[:, :, None]
    models = ["multvae", "multdae", "popularity", "ease"][: values.shape[0]]
    n_users = values.shape[1]
    return Comparison(models=models, user_nums=np.arange(n_users),
                      n_fold_in=np.asarray(n_fold_in), n_targets=np.ones(n_users, np.int64),
                      recall=values, ndcg=values.copy(),
                      top_items=np.zeros((len(models), n_users, 1), np.int32))


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportContext:
    """The session's small checkpoint, opened as a chapter opens it, caching in a temporary
    book folder."""
    return load_context(tmp_path_factory.mktemp("book"), tiny_checkpoint)


# --- the bootstrap -----------------------------------------------------------------------------


def slow_bootstrap(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """One resample at a time, one model at a time, one user at a time."""
    rng = np.random.default_rng(seed)
    n_users = values.shape[1]
    out = np.empty((n_resamples, values.shape[0]))
    for r in range(n_resamples):
        users = rng.integers(0, n_users, size=n_users)
        for m in range(values.shape[0]):
            total = 0.0
            for u in users:
                total += values[m, u]
            out[r, m] = total / n_users
    return out


@pytest.mark.parametrize("cells", [1, 7, 50, 10_000])
def test_bootstrap_means_match_a_slow_loop_for_any_block_size(
    cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = np.random.default_rng(3).random((3, 13))
    monkeypatch.setattr(evaluation, "_RESAMPLE_CELLS", cells)

    fast = evaluation.bootstrap_means(values, n_resamples=40, seed=11)

    assert np.allclose(fast, slow_bootstrap(values, 40, 11))


def test_bootstrap_resamples_the_same_users_for_every_model() -> None:
    # The second model is the first plus 0.1 for every user: every paired difference is 0.1,
    # although each model's own mean varies from resample to resample.
    first = np.array([0.0, 0.2, 0.9, 0.4, 1.0, 0.3])
    frame = evaluation.compare_with(np.vstack([first, first + 0.1]), ["a", "b"], "b",
                                    n_resamples=200, seed=0)

    b = frame.set_index("model").loc["a"]
    assert b["diff"] == pytest.approx(0.1)
    assert b["diff_low"] == pytest.approx(0.1)
    assert b["diff_high"] == pytest.approx(0.1)
    assert b["high"] - b["low"] > 0.2
    reference = frame.set_index("model").loc["b"]
    assert reference[["diff", "diff_low", "diff_high"]].tolist() == [0, 0, 0]


def test_percentile_interval_of_a_known_sample() -> None:
    samples = np.arange(101, dtype=float)[:, None]

    low, high = evaluation.percentile_interval(samples, level=0.9)

    assert (low[0], high[0]) == (pytest.approx(5.0), pytest.approx(95.0))
    with pytest.raises(ValueError, match="level: expected a share between 0 and 1"):
        evaluation.percentile_interval(samples, level=95)


def test_compare_with_leaves_out_users_without_a_value_for_every_model() -> None:
    values = np.array([[1.0, np.nan, 0.0, 1.0], [0.0, 1.0, np.nan, 1.0]])

    frame = evaluation.compare_with(values, ["a", "b"], "a", n_resamples=10)

    assert frame["users"].tolist() == [2, 2]
    assert frame["mean"].tolist() == [1.0, 0.5]
    with pytest.raises(KeyError, match="expected reference among"):
        evaluation.compare_with(values, ["a", "b"], "c")
    with pytest.raises(ValueError, match="some user with a value for every model"):
        evaluation.compare_with(np.array([[np.nan], [1.0]]), ["a", "b"], "a")


# --- activity buckets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "n_buckets", "buckets", "bounds"),
    [
        # Eight users, four buckets: two users each.
        ([8, 1, 2, 7, 3, 6, 4, 5], 4, [3, 0, 0, 3, 1, 2, 1, 2], [[1, 2], [3, 4], [5, 6], [7, 8]]),
        # Ties stay together: six users of size 1 fill the first two quarters' places.
        ([1, 1, 1, 1, 1, 1, 2, 3], 4, [0, 0, 0, 0, 0, 0, 1, 1], [[1, 1], [2, 3]]),
        # Seven users in three buckets: ranks 0, 2 and 4 (b * 7 // 3) start them.
        ([10, 20, 30, 40, 50, 60, 70], 3, [0, 0, 1, 1, 2, 2, 2], [[10, 20], [30, 40], [50, 70]]),
        ([5, 5, 5], 4, [0, 0, 0], [[5, 5]]),
        ([3, 9], 4, [0, 1], [[3, 3], [9, 9]]),
    ],
)
def test_activity_buckets_on_hand_built_cases(
    sizes: list[int], n_buckets: int, buckets: list[int], bounds: list[list[int]]
) -> None:
    bucket, found = evaluation.activity_buckets(np.array(sizes), n_buckets)

    assert bucket.tolist() == buckets
    assert found.tolist() == bounds


def test_activity_buckets_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="n_fold_in: expected a non-empty 1-d array"):
        evaluation.activity_buckets(np.array([]))
    with pytest.raises(ValueError, match="n_buckets: expected at least 1"):
        evaluation.activity_buckets(np.array([1, 2]), 0)


def test_bucket_frame_averages_each_bucket() -> None:
    comparison = hand_comparison([[0, 1, 1, 1], [1, 1, 0, 0]], n_fold_in=[4, 1, 3, 2])

    frame = prediction_charts.bucket_frame(comparison, metrics=(("recall", 1),), n_buckets=2,
                                           n_resamples=20)

    # Users of sizes 1 and 2 (the second and fourth) form the first bucket.
    vae = frame[frame["model"] == "Multi-VAE"].sort_values("order")
    assert vae["bucket"].tolist() == ["1\u20132 items seen", "3\u20134 items seen"]
    assert vae["mean"].tolist() == [1.0, 0.5]
    assert frame[frame["model"] == "Multi-DAE"].sort_values("order")["mean"].tolist() == [0.5,
                                                                                         0.5]
    assert (frame["users"] == 2).all()


# --- verdicts ------------------------------------------------------------------------------


def test_interval_verdicts_and_the_sentence_that_states_them() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(200)
    # Multi-DAE: always 0.2 lower; popularity: noise around the same mean; EASE: 0.2 higher.
    noise = rng.normal(0, 0.3, 200)
    comparison = hand_comparison([base, base - 0.2, base + noise - noise.mean(), base + 0.2],
                                 n_fold_in=list(range(200)))

    frame = prediction_charts.interval_frame(comparison, metrics=(("recall", 1),))

    verdicts = dict(zip(frame["model"], frame["verdict"], strict=True))
    assert verdicts == {"multvae": "reference", "multdae": "higher", "popularity": "unclear",
                        "ease": "lower"}
    text = prediction_charts.interval_sentence(comparison).data
    assert "above Multi-DAE (by 0.200" in text
    assert "below EASE (by 0.200" in text
    assert "its difference from Most popular" in text
    assert "cannot tell them apart" in text


def test_a_comparison_of_one_model_says_there_is_nothing_to_compare() -> None:
    comparison = hand_comparison([[0.0, 1.0, 0.5]], n_fold_in=[1, 2, 3])

    assert "no other model" in prediction_charts.interval_sentence(comparison).data
    assert compile_svg(prediction_charts.difference_chart(comparison)).startswith("<svg")


# --- recall bins and example lists -----------------------------------------------------------


def test_recall_bins_give_zero_and_one_bars_of_their_own() -> None:
    bins, labels = prediction_charts.recall_bins(np.array([0, 0.1, 0.2, 0.21, 0.8, 0.99, 1,
                                                           np.nan]))

    assert labels == ["none (0)", "up to 0.2", "0.2\u20130.4", "0.4\u20130.6", "0.6\u20130.8",
                      "0.8\u20131", "all (1)"]
    assert bins.tolist() == [0, 1, 1, 2, 4, 5, 6, -1]


def test_recent_fold_in_lists_the_latest_items_first() -> None:
    # User 1 saw items 1..6 in that order; users 2 and 3 make every item trainable.
    pairs = [(1, i) for i in range(1, 7)] + [(2, i) for i in range(1, 7)]
    pairs += [(3, i) for i in range(1, 7)]
    dataset = toy_dataset(pairs)
    split = make_split(dataset, "heldout_users", n_heldout=1, seed=0, target_fraction=0.34,
                       min_items=2)
    row = 0
    user = split.test.user_nums[row]

    latest = prediction_charts.recent_fold_in(dataset, split, split.test, row, n=3)

    history = dataset.interactions.loc[dataset.interactions["user_num"] == user, "item_num"]
    seen = set(split.item_nums[split.test.fold_in[row].indices])
    expected = [item for item in history.to_numpy()[::-1] if item in seen][:3]
    assert list(split.item_nums[latest]) == expected
    assert len(seen) == 4


def test_example_frame_marks_the_hits_of_the_primary_models_list(tiny: ReportContext) -> None:
    comparison = tiny.comparison
    rows = prediction_charts.example_rows(comparison, n=2, seed=5)

    frame = prediction_charts.example_frame(comparison, tiny.dataset, tiny.split, rows)

    for row, (_, lines) in zip(rows, frame.groupby("user", sort=False), strict=True):
        listed = lines[(lines["column"] == 1) & (lines["status"] != "heading")]
        targets = tiny.split.test.targets[row].indices
        hits = np.isin(comparison.top_items[0, row], targets)
        assert (listed["status"] == "hit").tolist() == hits.tolist()
        assert listed["text"].str.endswith(prediction_charts.HIT_MARK).tolist() == hits.tolist()
        assert f"{hits.sum()} of them in Multi-VAE's top 10" in lines["user"].iloc[0]
    assert list(rows) == list(prediction_charts.example_rows(comparison, n=2, seed=5))


# --- the comparison and its cache ------------------------------------------------------------


def test_the_comparison_agrees_with_the_ranking_metrics(tiny: ReportContext) -> None:
    split = tiny.split
    scorers = {"multvae": model_scorer(tiny.checkpoint.primary),
               "popularity": fit_popularity(split.train)}

    comparison = evaluation.compute_comparison(scorers, split.test, max_k=30)

    assert comparison.models == ["multvae", "popularity"]
    assert comparison.recall.shape == (2, split.test.n_users, 30)
    pop_top = np.argsort(-scorers["popularity"].item_counts, kind="stable")
    for k in (1, 7, 30):
        recommended = np.zeros((split.test.n_users, k), dtype=np.int64)
        for row in range(split.test.n_users):
            seen = set(split.test.fold_in[row].indices)
            recommended[row] = [i for i in pop_top if i not in seen][:k]
        assert np.allclose(comparison.values("recall", k)[1],
                           metrics.recall(recommended, split.test.targets))
        assert np.allclose(comparison.values("ndcg", k)[1],
                           metrics.ndcg(recommended, split.test.targets))
    assert np.array_equal(comparison.top_items[1], recommended[:, :evaluation.LIST_LENGTH])


def test_the_comparison_refits_ease_with_the_recorded_lambda(
    tiny: ReportContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted: list[float] = []

    def fake_ease(train, lam):
        fitted.append(lam)
        return fit_popularity(train)

    monkeypatch.setattr(baselines, "fit_ease", fake_ease)
    checkpoint = tiny.checkpoint
    manifest = {**checkpoint.manifest, "baselines": {"ease": {"lambda": 123.0}}}
    checkpoint = type(checkpoint)(checkpoint.path, manifest, checkpoint.models)

    scorers = checkpoint_scorers(checkpoint, tiny.split)

    assert list(scorers) == ["multvae", "popularity", "ease"]
    assert fitted == [123.0]


def test_the_comparison_is_cached_and_keyed_by_checkpoint_data_and_version(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints" / "tiny")
    checkpoint = load_checkpoint(copy)
    dataset = load_checkpoint_dataset(checkpoint)
    split = checkpoint_split(checkpoint, dataset)
    calls: list[int] = []
    compute = evaluation.compute_comparison

    def counting(*args, **kwargs):
        calls.append(1)
        return compute(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_comparison", counting)
    first = evaluation.load_comparison(checkpoint, dataset, split, root=tmp_path)
    again = evaluation.load_comparison(checkpoint, dataset, split, root=tmp_path)

    # The second load reads the file, and reads back what was stored.
    assert len(calls) == 1
    assert again.models == first.models
    for name in ("user_nums", "n_fold_in", "n_targets", "recall", "ndcg", "top_items"):
        assert np.array_equal(getattr(again, name), getattr(first, name), equal_nan=True)
    files = sorted((tmp_path / ".cache" / "recsys").glob("comparison-*.npz"))
    assert files == [evaluation.cache_path(checkpoint, dataset, tmp_path)]

    # Another package version, another data fingerprint or another checkpoint: another key.
    keys = {evaluation.cache_key(checkpoint, dataset)}
    monkeypatch.setattr(recsys, "__version__", "9.9.9")
    keys.add(evaluation.cache_key(checkpoint, dataset))
    monkeypatch.undo()
    monkeypatch.setattr(type(dataset), "fingerprint", property(lambda self: "other"))
    keys.add(evaluation.cache_key(checkpoint, dataset))
    monkeypatch.undo()
    (copy / "manifest.json").write_text((copy / "manifest.json").read_text() + "\n")
    keys.add(evaluation.cache_key(checkpoint, dataset))
    assert len(keys) == 4


def test_the_chapter_context_reuses_the_stored_comparison(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_context(tmp_path, tiny_checkpoint).comparison

    def refuse(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(evaluation, "compute_comparison", refuse)
    context = load_context(tmp_path, tiny_checkpoint)
    assert context.comparison is context.comparison
    assert np.array_equal(context.comparison.ndcg, first.ndcg, equal_nan=True)


def test_the_stored_means_reproduce_the_recorded_test_metrics(tiny: ReportContext) -> None:
    comparison = tiny.comparison
    recorded = tiny.manifest["models"]["multvae"]["test"]

    assert comparison.models == ["multvae", "popularity"]
    for k in (1, 20, 100):
        assert comparison.means("ndcg")[0, k - 1] == pytest.approx(recorded[f"ndcg@{k}"],
                                                                   abs=1e-6)
        assert comparison.means("recall")[0, k - 1] == pytest.approx(recorded[f"recall@{k}"],
                                                                     abs=1e-6)


# --- charts ------------------------------------------------------------------------------------


def chart_builders(comparison: Comparison, dataset: Dataset, split: Split) -> dict:
    return {
        "examples": prediction_charts.example_chart(comparison, dataset, split),
        "curves": prediction_charts.curve_chart(comparison),
        "recall": prediction_charts.distribution_chart(comparison),
        "activity": prediction_charts.bucket_chart(comparison),
        "differences": prediction_charts.difference_chart(comparison),
    }


def test_prediction_charts_compile_to_svg_on_the_tiny_checkpoint(tiny: ReportContext) -> None:
    for name, chart in chart_builders(tiny.comparison, tiny.dataset, tiny.split).items():
        assert chart.to_dict()["$schema"].endswith(".json"), name
        assert compile_svg(chart).startswith("<svg"), name


def test_prediction_charts_compile_with_four_models() -> None:
    dataset = synthetic_dataset(n_users=300, n_items=400, mean_items=15)
    split = make_split(dataset, "heldout_users", n_heldout=60, seed=0)
    comparison = synthetic_comparison(split, ["multvae", "multdae", "popularity", "ease"])

    for name, chart in chart_builders(comparison, dataset, split).items():
        assert compile_svg(chart).startswith("<svg"), name
    spec = json.dumps(prediction_charts.curve_chart(comparison).to_dict())
    assert all(label in spec for label in ("Multi-VAE", "Multi-DAE", "Most popular", "EASE"))


def test_tables_and_sentences_carry_the_comparison_numbers(tiny: ReportContext) -> None:
    comparison = tiny.comparison
    vae = comparison.values("ndcg", 100)[0]

    table = prediction_charts.interval_table(comparison).data
    assert f"| Multi-VAE | {vae.mean():.3f} |" in table
    assert "| Most popular |" in table
    models = prediction_charts.models_sentence(comparison, tiny.manifest).data
    assert f"same {comparison.n_users} test users" in models
    assert "a baseline fitted" in models
    text = prediction_charts.distribution_sentence(comparison).data
    zero = (comparison.values("recall", 20)[0] == 0).mean()
    assert f"Multi-VAE {zero:.0%}" in text


@pytest.mark.slow
def test_prediction_charts_stay_small_with_twelve_thousand_test_users() -> None:
    dataset = synthetic_dataset(n_users=40_000, n_items=8_000, mean_items=12)
    split = make_split(dataset, "heldout_users", n_heldout=0.3, seed=0)
    comparison = synthetic_comparison(split, ["multvae", "multdae", "popularity", "ease"])

    page = chart_builders(comparison, dataset, split)

    # to_dict() enforces Altair's 5000-row limit on every chart's data.
    assert comparison.n_users > 10_000
    assert sum(map(spec_bytes, page.values())) < MAX_PAGE_BYTES / 4
    assert len(prediction_charts.interval_table(comparison).data) < 2_000


# --- the front page's scores ---------------------------------------------------------------


def test_headline_table_and_sentence_show_the_recorded_scores(tiny: ReportContext) -> None:
    manifest = tiny.manifest
    vae = manifest["models"]["multvae"]["test"]
    pop = manifest["baselines"]["popularity"]["test"]

    table = overview.headline_table(tiny).data
    text = overview.headline_sentence(tiny).data

    assert f"| Multi-VAE | {vae['ndcg@100']:.4f} | {vae['recall@20']:.4f} |" in table
    assert f"| Most popular | {pop['ndcg@100']:.4f} |" in table
    relation = "above" if vae["ndcg@100"] > pop["ndcg@100"] else "below"
    assert f"{relation} Most popular ({pop['ndcg@100']:.4f}" in text


def test_headline_table_names_eases_penalty_and_the_sentence_orders_models() -> None:
    manifest = {"primary": "multvae",
                "models": {"multvae": {"test": {"ndcg@100": 0.3, "recall@20": 0.2,
                                                "recall@50": 0.4}}},
                "baselines": {"popularity": {"test": {"ndcg@100": 0.2}},
                              "ease": {"lambda": 200.0, "test": {"ndcg@100": 0.4}}}}
    context = ReportContext(Path("."), Path("."), manifest)

    table = overview.headline_table(context).data
    text = overview.headline_sentence(context).data

    assert "| EASE (\u03bb = 200) | 0.4000 | n/a | n/a |" in table
    assert text == ("On the test users, Multi-VAE reaches an NDCG@100 of 0.3000: above Most "
                    "popular (0.2000, by 50%) and below EASE (0.4000, by 25%).")


def test_checkpoint_and_model_tables_name_split_sizes_and_layers(tiny: ReportContext) -> None:
    stats = tiny.manifest["split"]["stats"]

    checkpoint = overview.checkpoint_table(tiny).data
    models = overview.model_table(tiny).data

    assert f"{stats['test_users']} test users" in checkpoint
    assert "| Training | up to 1 epoch of" in checkpoint
    n_items = f"{stats['items']:,}"
    assert f"| Multi-VAE | {n_items} \u2192 32 \u2192 8 \u2192 32 \u2192 {n_items} |" in models
