"""Ranking metrics against hand-worked examples and a slow, loop-based reference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import metrics
from recsys.errors import DataError
from recsys.metrics import METRICS, UndefinedMetricWarning


def reference(recommended: np.ndarray, targets: sp.csr_matrix, k: int) -> dict[str, list[float]]:
    """Every metric per user, written as plainly as possible: loops over users and ranks."""
    result: dict[str, list[float]] = {name: [] for name in METRICS}
    for user in range(recommended.shape[0]):
        relevant = set(targets[user].indices[targets[user].data > 0].tolist())
        if not relevant:
            for name in METRICS:
                result[name].append(math.nan)
            continue
        n_hits, dcg, first_hit = 0, 0.0, None
        for rank in range(k):
            if int(recommended[user, rank]) in relevant:
                n_hits += 1
                dcg += 1.0 / math.log2(rank + 2)
                if first_hit is None:
                    first_hit = rank
        idcg = 0.0
        for rank in range(min(k, len(relevant))):
            idcg += 1.0 / math.log2(rank + 2)
        result["recall"].append(n_hits / min(k, len(relevant)))
        result["ndcg"].append(dcg / idcg)
        result["precision"].append(n_hits / k)
        result["hit_rate"].append(1.0 if n_hits > 0 else 0.0)
        result["mrr"].append(0.0 if first_hit is None else 1.0 / (first_hit + 1))
    return result


def reference_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    items = set()
    for row in recommended:
        for item in row[:k]:
            items.add(int(item))
    return len(items) / n_items


def random_case(
    seed: int, n_users: int, n_items: int, n_recommended: int, max_targets: int
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Random distinct recommendations and targets; target counts run from 0 to max_targets.

    Targets are drawn partly from the recommended items so that hits are common.
    """
    rng = np.random.default_rng(seed)
    recommended = np.stack([rng.permutation(n_items)[:n_recommended] for _ in range(n_users)])
    rows, cols = [], []
    for user in range(n_users):
        count = int(rng.integers(0, max_targets + 1))
        pool = np.union1d(recommended[user, : rng.integers(1, n_recommended + 1)],
                          rng.choice(n_items, size=count, replace=False))
        chosen = rng.choice(pool, size=min(count, len(pool)), replace=False)
        rows += [user] * len(chosen)
        cols += chosen.tolist()
    targets = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                            shape=(n_users, n_items))
    return recommended, targets


FUNCTIONS = {"recall": metrics.recall, "ndcg": metrics.ndcg, "precision": metrics.precision,
             "hit_rate": metrics.hit_rate, "mrr": metrics.mrr}

# (seed, users, items, recommended per user, most targets per user)
CASES = [
    (0, 1, 5, 5, 5),
    (1, 30, 40, 10, 3),
    (2, 50, 200, 100, 150),
    (3, 80, 60, 20, 60),
    (4, 25, 1000, 50, 8),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", METRICS)
def test_metric_matches_reference_on_random_cases(case: tuple[int, ...], name: str) -> None:
    recommended, targets = random_case(*case)
    for k in sorted({1, 3, recommended.shape[1] // 2 or 1, recommended.shape[1]}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            got = FUNCTIONS[name](recommended, targets, k)
        expected = reference(recommended, targets, k)[name]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=f"k={k}")


@pytest.mark.parametrize("case", CASES)
def test_ranking_metrics_matches_reference_at_every_k(case: tuple[int, ...]) -> None:
    recommended, targets = random_case(*case)
    ks = sorted({1, 2, recommended.shape[1]} & set(range(1, recommended.shape[1] + 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        got = metrics.ranking_metrics(recommended, targets, ks)
    for k in ks:
        expected = reference(recommended, targets, k)
        for name in METRICS:
            np.testing.assert_allclose(got[name][k], expected[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_coverage_matches_reference(case: tuple[int, ...]) -> None:
    recommended, targets = random_case(*case)
    n_items = targets.shape[1]
    for k in (1, recommended.shape[1]):
        got = metrics.coverage(recommended, n_items, k)
        assert got == pytest.approx(reference_coverage(recommended, n_items, k), abs=1e-15)


def test_random_cases_include_the_edge_cases_they_are_meant_to_cover() -> None:
    # Guards the generator: each situation below occurs in at least one random case.
    found = set()
    for case in CASES:
        recommended, targets = random_case(*case)
        n_recommended = recommended.shape[1]
        counts = targets.getnnz(axis=1)
        hit_any = metrics.hits(recommended, targets).any(axis=1)
        found |= {name for name, present in [
            ("no targets", (counts == 0).any()),
            ("fewer targets than K", ((counts > 0) & (counts < n_recommended)).any()),
            ("more targets than K", (counts > n_recommended).any()),
            ("targets but no hit", ((counts > 0) & ~hit_any).any()),
            ("many hits", (metrics.hits(recommended, targets).sum(axis=1) >= 5).any()),
        ] if present}
    assert found == {"no targets", "fewer targets than K", "more targets than K",
                     "targets but no hit", "many hits"}


def targets_of(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    data = [(user, item) for user, items in enumerate(rows) for item in items]
    users, items = zip(*data, strict=True) if data else ((), ())
    return sp.csr_matrix((np.ones(len(data), np.float32), (users, items)),
                         shape=(len(rows), n_items))


def test_hand_worked_two_targets_hit_at_ranks_one_and_three() -> None:
    # Targets {4, 7}; the list [4, 0, 7] hits at 0-based ranks 0 and 2.
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    # IDCG (min(3, 2) = 2 ideal hits) = 1/log2(2) + 1/log2(3) = 1 + 0.6309298 = 1.6309298
    # NDCG = 1.5 / 1.6309298 = 0.9197208; recall = 2 / min(3, 2) = 1; precision = 2 / 3;
    # hit rate = 1; MRR = 1 / 1.
    recommended = np.array([[4, 0, 7]])
    targets = targets_of([[4, 7]], 10)
    assert metrics.ndcg(recommended, targets)[0] == pytest.approx(0.9197208, abs=1e-7)
    assert metrics.recall(recommended, targets)[0] == 1.0
    assert metrics.precision(recommended, targets)[0] == pytest.approx(2 / 3)
    assert metrics.hit_rate(recommended, targets)[0] == 1.0
    assert metrics.mrr(recommended, targets)[0] == 1.0


def test_hand_worked_five_targets_one_hit_at_rank_two() -> None:
    # Targets {1, 2, 3, 4, 5}; the list [9, 3, 8, 7] hits only at 0-based rank 1.
    # DCG = 1/log2(3) = 0.6309298
    # IDCG (min(4, 5) = 4 ideal hits) = 1 + 0.6309298 + 0.5 + 1/log2(5) = 2.5616063
    # NDCG = 0.6309298 / 2.5616063 = 0.2463023; recall = 1 / min(4, 5) = 0.25;
    # precision = 1 / 4; hit rate = 1; MRR = 1 / 2.
    recommended = np.array([[9, 3, 8, 7]])
    targets = targets_of([[1, 2, 3, 4, 5]], 10)
    assert metrics.ndcg(recommended, targets)[0] == pytest.approx(0.2463023, abs=1e-7)
    assert metrics.recall(recommended, targets)[0] == 0.25
    assert metrics.precision(recommended, targets)[0] == 0.25
    assert metrics.hit_rate(recommended, targets)[0] == 1.0
    assert metrics.mrr(recommended, targets)[0] == 0.5

    # At K = 1 the list is [9]: no hit, so every metric is 0.
    for function in FUNCTIONS.values():
        assert function(recommended, targets, 1)[0] == 0.0


def test_hand_worked_coverage() -> None:
    # Users get {0, 1} and {1, 2}: 3 distinct items of 5; at K = 1, {0, 1}: 2 of 5.
    recommended = np.array([[0, 1], [1, 2]])
    assert metrics.coverage(recommended, 5) == pytest.approx(3 / 5)
    assert metrics.coverage(recommended, 5, k=1) == pytest.approx(2 / 5)


def test_user_without_targets_is_nan_and_left_out_of_the_mean() -> None:
    # User 0 hits at rank 0 with one target (recall 1); user 1 has no targets.
    recommended = np.array([[2, 0], [1, 0]])
    targets = targets_of([[2], []], 3)
    with pytest.warns(UndefinedMetricWarning, match="1 of 2 users have no targets"):
        values = metrics.recall(recommended, targets)
    assert values[0] == 1.0
    assert np.isnan(values[1])
    assert metrics.mean_over_users(values) == 1.0


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_is_nan_not_zero_without_targets(name: str) -> None:
    with pytest.warns(UndefinedMetricWarning):
        values = FUNCTIONS[name](np.array([[0, 1]]), targets_of([[]], 3))
    assert np.isnan(values[0])


def test_mean_over_users_of_only_undefined_values_is_nan() -> None:
    assert np.isnan(metrics.mean_over_users(np.array([np.nan, np.nan])))


def test_targets_with_explicit_zeros_and_duplicates_count_once_and_only_when_positive() -> None:
    # Item 1 is stored twice (counts once); item 2 is an explicit zero (not relevant).
    targets = sp.csr_matrix((np.array([1.0, 1.0, 0.0]), np.array([1, 1, 2]), np.array([0, 3])),
                            shape=(1, 4))
    assert targets.nnz == 3
    recommended = np.array([[2, 1]])
    # One target (item 1) hit at rank 1: recall 1 / min(2, 1) = 1, precision 1 / 2.
    assert metrics.recall(recommended, targets)[0] == 1.0
    assert metrics.precision(recommended, targets)[0] == 0.5


def test_hits_does_not_depend_on_target_column_order() -> None:
    # Unsorted CSR indices in the targets must still be found.
    targets = sp.csr_matrix((np.ones(3), np.array([3, 0, 2]), np.array([0, 3])), shape=(1, 4))
    assert not targets.has_sorted_indices
    got = metrics.hits(np.array([[0, 1, 2, 3]]), targets)
    np.testing.assert_array_equal(got, [[True, False, True, True]])


BAD_INPUTS = [
    # (recommended, targets, k, message fragment)
    (np.array([0, 1]), targets_of([[0]], 3), None, "users x K array"),
    (np.array([[0.0, 1.0]]), targets_of([[0]], 3), None, "integer item columns"),
    (np.zeros((1, 0), dtype=int), targets_of([[0]], 3), None, "got K = 0"),
    (np.array([[0, 1, 2, 3]]), targets_of([[0]], 3), None, "between 1 and 3"),
    (np.array([[0, 3]]), targets_of([[0]], 3), None, r"in \[0, 3\)"),
    (np.array([[0, -1]]), targets_of([[0]], 3), None, r"in \[0, 3\)"),
    (np.array([[1, 1]]), targets_of([[0]], 3), None, "distinct items"),
    (np.array([[0, 1]]), targets_of([[0], [1]], 3), None, "one row per user"),
    (np.array([[0, 1]]), np.array([[1, 0, 0]]), None, "scipy sparse"),
    (np.array([[0, 1]]), targets_of([[0]], 3), 0, "1 <= K <= 2"),
    (np.array([[0, 1]]), targets_of([[0]], 3), 3, "1 <= K <= 2"),
    (np.array([[0, 1]]), targets_of([[0]], 3), 1.5, "1 <= K <= 2"),
]


@pytest.mark.parametrize(("recommended", "targets", "k", "message"), BAD_INPUTS)
def test_bad_inputs_raise_with_what_was_expected(
    recommended: np.ndarray, targets: sp.csr_matrix, k: int | None, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        metrics.ndcg(recommended, targets, k)


@pytest.mark.parametrize("ks", [[], [0], [1, 3], [2.0], [True]])
def test_ranking_metrics_rejects_bad_cutoffs(ks: list[object]) -> None:
    with pytest.raises(DataError, match="ks: expected one or more integers"):
        metrics.ranking_metrics(np.array([[0, 1]]), targets_of([[0]], 3), ks)


def test_coverage_rejects_a_bad_catalogue_size() -> None:
    with pytest.raises(DataError, match="n_items"):
        metrics.coverage(np.array([[0, 1]]), 0)


def test_large_case_agrees_with_reference_on_sampled_users() -> None:
    # 20 000 users x 50 000 items would be 4 GB as a dense float32 matrix.
    rng = np.random.default_rng(7)
    n_users, n_items, k = 20_000, 50_000, 100
    offsets = rng.integers(0, n_items - 200, size=(n_users, 1))
    recommended = np.argsort(rng.random((n_users, 200)), axis=1)[:, :k] + offsets
    users = rng.integers(0, n_users, size=200_000)
    items = rng.integers(0, n_items, size=200_000)

    # Give sampled users hits by making some of their recommended items targets.
    sample = rng.choice(n_users, size=40, replace=False)
    picked = recommended[sample[:, None], rng.integers(0, k, size=(len(sample), 3))]
    users = np.concatenate([users, np.repeat(sample, 3)])
    items = np.concatenate([items, picked.ravel()])
    targets = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)),
                            shape=(n_users, n_items))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        got = metrics.ranking_metrics(recommended, targets, [10, k])
        expected = reference(recommended[sample], targets[sample], k)
    for name in METRICS:
        np.testing.assert_allclose(got[name][k][sample], expected[name], rtol=1e-12)
