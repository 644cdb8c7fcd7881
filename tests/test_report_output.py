"""The output-distribution chapter: top items over all items against a dense per-user reference,
correlations against SciPy, entropy against log n, its charts as specs and SVG, and their size
at 150k users."""

from __future__ import annotations

import json
import math
from pathlib import Path

import altair as alt
import numpy as np
import pytest
import scipy.stats
import torch
import vl_convert as vlc

from recsys.model import ModelConfig, MultVAE, to_sparse_tensor
from recsys.preprocess import Dataset, load_dataset
from recsys.report import charts, output_charts, statistics
from recsys.report.precompute import Artifacts, compute_artifacts, visible_items
from recsys.splits import TEST, Split, make_split

MAX_PAGE_BYTES = 1_500_000


@pytest.fixture
def setting(movielens_dir: Path) -> tuple[Dataset, Split, MultVAE]:
    """The tiny MovieLens-style data, its held-out-users split and an untrained Multi-VAE."""
    dataset = load_dataset(movielens_dir)
    split = make_split(dataset, "heldout_users", n_heldout=10, seed=2)
    torch.manual_seed(0)
    model = MultVAE(ModelConfig("multvae", split.n_items, (16,), latent_dim=4)).eval()
    return dataset, split, model


def output_artifacts(
    entropy: np.ndarray, n_visible: np.ndarray, mean_probs: np.ndarray, seed: int = 0
) -> Artifacts:
    """Artifacts with the given per-user entropy and activity and per-item mean probability."""
    n_users = len(entropy)
    rng = np.random.default_rng(seed)
    return Artifacts(
        user_nums=np.arange(n_users),
        group=rng.choice([0, 2, 3], size=n_users, p=[0.8, 0.1, 0.1]).astype(np.int8),
        n_visible=n_visible.astype(np.int64),
        mu=np.zeros((n_users, 2), np.float32),
        logvar=np.zeros((n_users, 2), np.float32),
        top_items=np.zeros((n_users, 1), np.int32),
        top_probs=np.zeros((n_users, 1), np.float32),
        entropy=entropy.astype(np.float32),
        mean_probs=mean_probs,
    )


def random_artifacts(n_users: int, n_items: int, seed: int = 0) -> tuple[Artifacts, np.ndarray]:
    """Long-tailed activity and popularity; entropy grows with activity. Also training counts."""
    rng = np.random.default_rng(seed)
    n_visible = np.clip(rng.lognormal(3.0, 1.0, n_users), 1, 5000)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    counts = rng.poisson(popularity / popularity.sum() * 40 * n_users)
    mean_probs = (counts + rng.uniform(0.1, 1.0, n_items)) / (counts.sum() + n_items)
    entropy = np.minimum(5.0 + 0.3 * np.log(n_visible) + rng.normal(0, 0.3, n_users),
                         np.log(n_items))
    artifacts = output_artifacts(entropy, n_visible, mean_probs / mean_probs.sum(), seed)
    return artifacts, counts


def compile_svg(chart: alt.TopLevelMixin) -> str:
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=charts.vegalite_version())


def spec_bytes(chart: alt.TopLevelMixin) -> int:
    return len(json.dumps(chart.to_dict()))


# --- correlations -----------------------------------------------------------------------------


def test_average_ranks_share_ties_like_scipy() -> None:
    values = np.array([10, 20, 20, 5, 20, 7, 7])

    assert list(statistics.average_ranks(values)) == list(scipy.stats.rankdata(values))
    assert list(statistics.average_ranks(np.array([10, 20, 20, 5]))) == [2, 3.5, 3.5, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 8, 40).astype(float)  # many ties
    y = x * 0.3 + rng.normal(0, 1, 40)

    assert statistics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic)
    assert statistics.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)


def test_a_monotone_relation_has_a_rank_correlation_of_one() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])

    assert statistics.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert statistics.spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert statistics.pearson(x, np.exp(x)) < 1.0


def test_a_constant_variable_has_no_correlation() -> None:
    with pytest.warns(RuntimeWarning, match="constant"):
        assert math.isnan(statistics.pearson(np.ones(5), np.arange(5.0)))


@pytest.mark.parametrize("shapes", [((3,), (4,)), ((1,), (1,)), ((2, 2), (2, 2))])
def test_correlation_refuses_mismatched_or_short_input(shapes) -> None:
    with pytest.raises(ValueError, match=r"x, y: expected two 1-d arrays"):
        statistics.pearson(np.zeros(shapes[0]), np.zeros(shapes[1]))


@pytest.mark.parametrize(("rho", "word"), [(0.05, "no"), (-0.2, "a weak"), (0.45, "a moderate"),
                                           (-0.9, "a strong"), (float("nan"), "no")])
def test_strength_names_the_size_of_a_correlation(rho: float, word: str) -> None:
    assert statistics.strength(rho) == word


def test_the_activity_sentence_states_scipys_correlations() -> None:
    artifacts, _ = random_artifacts(500, 300, seed=4)

    text = output_charts.entropy_activity_sentence(artifacts).data

    rho = scipy.stats.spearmanr(artifacts.n_visible, artifacts.entropy).statistic
    r = scipy.stats.pearsonr(np.log(artifacts.n_visible), artifacts.entropy).statistic
    assert f"entropy of the output is {rho:.2f}" in text
    assert f"logarithm of the interactions is {r:.2f}" in text
    assert "longer histories get flatter distributions" in text


# --- entropy ----------------------------------------------------------------------------------


def test_a_uniform_decoder_has_the_entropy_log_n(setting) -> None:
    dataset, split, model = setting
    # Zero the last layer: every user gets the same logits, hence the uniform distribution.
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
        model.decoder[-1].bias.zero_()

    artifacts = compute_artifacts(model, dataset, split)
    text = output_charts.entropy_sentence(artifacts).data

    n = split.n_items
    assert artifacts.entropy == pytest.approx(np.full(artifacts.n_users, math.log(n)), rel=1e-5)
    assert artifacts.mean_probs == pytest.approx(np.full(n, 1 / n))
    assert f"median of {math.log(n):.2f}, against {math.log(n):.2f} nats" in text
    assert f"uniform one over about {n} items (100% of them)" in text


def test_entropy_frame_counts_every_user_once() -> None:
    artifacts, _ = random_artifacts(1000, 5000)

    frame = output_charts.entropy_frame(artifacts, bins=25)

    assert len(frame) == 25
    assert frame["users"].sum() == 1000
    assert frame["start"].iloc[0] == pytest.approx(artifacts.entropy.min(), rel=1e-3)


def test_entropy_trend_holds_the_median_of_each_activity_bin() -> None:
    # Users with 1, 1, 1 interactions have entropies 1, 2, 3; users with 100 have 5 and 7.
    artifacts = output_artifacts(np.array([1.0, 2.0, 3.0, 5.0, 7.0]),
                                 np.array([1, 1, 1, 100, 100]), np.ones(4) / 4)

    trend = output_charts.entropy_trend(artifacts, bins=2)

    assert trend.to_dict("records") == [{"interactions": 1.0, "entropy": 2.0},
                                        {"interactions": 100.0, "entropy": 6.0}]


def test_entropy_activity_frame_has_a_row_per_user_or_a_grid() -> None:
    artifacts, _ = random_artifacts(800, 50)

    points = output_charts.entropy_activity_frame(artifacts, max_points=800)
    cells = output_charts.entropy_activity_frame(artifacts, max_points=100, bins=12)

    assert len(points) == 800
    assert set(points["group"]) <= {"train", "validation", "test"}
    assert cells["count"].sum() == 800
    assert len(cells) <= 144


# --- popularity -------------------------------------------------------------------------------


def test_training_counts_are_the_column_sums_of_the_training_rows(setting) -> None:
    _, split, _ = setting

    counts = output_charts.training_counts(split)

    assert list(counts) == list(np.asarray(split.train.sum(axis=0)).ravel().astype(int))


def test_popularity_frame_leaves_out_items_without_training_interactions() -> None:
    artifacts, counts = random_artifacts(100, 400)
    counts = counts + 1
    counts[:7] = 0

    cells = output_charts.popularity_frame(artifacts, counts, bins=10)
    text = output_charts.popularity_sentence(artifacts, counts).data

    assert cells["count"].sum() == 400 - 7
    assert len(cells) <= 100
    assert "7 items have no training interaction" in text


def test_popularity_sentence_states_the_heads_shares() -> None:
    # Ten items: the most popular one takes half the interactions and 80% of the probability.
    counts = np.array([9, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.8] + [0.2 / 9] * 9)
    artifacts = output_artifacts(np.ones(3), np.ones(3), probs)

    text = output_charts.popularity_sentence(artifacts, counts).data

    assert "The 1 most popular items (10%) hold 50% of the training interactions" in text
    assert "receive 80% of the probability" in text


# --- the example users' top items -------------------------------------------------------------


def test_example_users_are_test_users_fixed_by_the_seed(setting) -> None:
    dataset, split, model = setting
    artifacts = compute_artifacts(model, dataset, split)

    first = output_charts.example_users(artifacts, n=3, seed=5)
    again = output_charts.example_users(artifacts, n=3, seed=5)
    other = output_charts.example_users(artifacts, n=3, seed=6)

    assert list(first) == list(again)
    assert list(first) != list(other)
    assert set(first) <= set(split.test.user_nums)
    rows = np.searchsorted(artifacts.user_nums, first)
    assert list(artifacts.n_visible[rows]) == sorted(artifacts.n_visible[rows])


def test_top_items_match_a_dense_reference_with_seen_items_included(setting) -> None:
    dataset, split, model = setting
    users = split.test.user_nums[:3]
    visible_users, _, visible = visible_items(dataset, split)

    frame = output_charts.top_items_frame(model, dataset, split, users, n=20)

    assert len(frame) == 3 * 20
    for i, user in enumerate(users):
        # The slow way: one user, dense probabilities, a stable sort.
        row = visible[np.searchsorted(visible_users, user)]
        with torch.no_grad():
            mu, _ = model.encode(to_sparse_tensor(row))
            probs = torch.softmax(model.decode(mu), dim=1).numpy()[0]
        best = np.argsort(-probs, kind="stable")[:20]
        targets = set(split.test.targets[i].indices)
        expected = ["seen (model input)" if row[0, c] else
                    "held-out target" if c in targets else "not seen" for c in best]

        got = frame.iloc[20 * i: 20 * (i + 1)]
        assert list(got["rank"]) == list(range(1, 21))
        assert list(got["probability"]) == pytest.approx(probs[best], rel=1e-3)
        assert list(got["status"]) == expected
        assert list(got["title"]) == [dataset.titles[split.item_nums[c]] for c in best]
        assert got["user"].iloc[0].startswith(f"user {dataset.user_ids[user]}: {row.nnz} seen")


def test_top_items_refuse_users_the_model_never_read(setting) -> None:
    dataset, split, model = setting

    with pytest.raises(ValueError, match=r"user_nums: expected users with visible"):
        output_charts.top_items_frame(model, dataset, split, np.array([dataset.n_users + 5]))


def test_top_items_sentence_counts_seen_items_and_targets(setting) -> None:
    dataset, split, model = setting
    frame = output_charts.top_items_frame(model, dataset, split, split.test.user_nums[:2], n=10)

    text = output_charts.top_items_sentence(frame).data

    seen = int((frame["status"] == "seen (model input)").sum())
    assert text.startswith(f"Of the 20 places in these 2 lists of 10, {seen} ")


# --- charts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_points", [10_000, 50])
def test_output_charts_compile_to_svg(setting, max_points: int) -> None:
    dataset, split, model = setting
    artifacts = compute_artifacts(model, dataset, split)
    frame = output_charts.top_items_frame(
        model, dataset, split, output_charts.example_users(artifacts))
    counts = output_charts.training_counts(split)

    page = [output_charts.top_items_chart(frame),
            output_charts.popularity_chart(artifacts, counts),
            output_charts.entropy_chart(artifacts),
            output_charts.entropy_activity_chart(artifacts, max_points=max_points)]

    assert (artifacts.group == TEST).sum() > 0
    for chart in page:
        assert chart.to_dict()["$schema"].endswith(".json")
        assert compile_svg(chart).startswith("<svg")


@pytest.mark.slow
def test_output_charts_stay_small_at_150k_users() -> None:
    artifacts, counts = random_artifacts(150_000, 20_000)

    page = [output_charts.popularity_chart(artifacts, counts),
            output_charts.entropy_chart(artifacts),
            output_charts.entropy_activity_chart(artifacts)]

    # to_dict() enforces Altair's 5000-row limit on every chart's data.
    rows = [len(data) for chart in page for data in chart.to_dict()["datasets"].values()]
    assert max(rows) <= 40 * 40
    assert sum(map(spec_bytes, page)) < MAX_PAGE_BYTES / 2
    assert compile_svg(page[2]).startswith("<svg")
