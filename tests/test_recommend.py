"""Top-K recommendation from scorers, and evaluation on held-out users."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys import metrics
from recsys.errors import DataError
from recsys.recommend import (
    Evaluation,
    Scorer,
    _exact_top_columns,
    evaluate,
    fresh_scores,
    score_batches,
    top_columns,
    top_k,
)
from recsys.splits import Holdout


def random_fold_in(seed: int, n_users: int, n_items: int, density: float) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


class TableScorer:
    """Scores users from a fixed users x items table, in the order top_k asks for them."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.next_row = 0

    def __call__(self, batch: sp.csr_matrix) -> np.ndarray:
        rows = self.table[self.next_row:self.next_row + batch.shape[0]]
        self.next_row += batch.shape[0]
        return rows


def constant_scorer(value: float = 0.0) -> Scorer:
    def scorer(batch: sp.csr_matrix) -> np.ndarray:
        return np.full(batch.shape, value, dtype=np.float32)

    return scorer


def test_top_k_never_recommends_a_seen_item() -> None:
    fold_in = random_fold_in(0, 40, 30, 0.3)

    # Seen items get the highest raw scores, so only exclusion keeps them out.
    def scorer(batch: sp.csr_matrix) -> np.ndarray:
        return batch.toarray() * 100.0 + np.random.default_rng(1).random(batch.shape)

    recommended = top_k(scorer, fold_in, 5)
    for user in range(fold_in.shape[0]):
        assert not set(recommended[user]) & set(fold_in[user].indices)


def test_top_k_without_exclusion_returns_seen_items_first_when_they_score_highest() -> None:
    fold_in = sp.csr_matrix(np.array([[0, 1, 0, 1]], dtype=np.float32))
    recommended = top_k(lambda batch: batch.toarray(), fold_in, 2, exclude_seen=False)
    np.testing.assert_array_equal(recommended, [[1, 3]])


def test_top_k_orders_by_score_descending() -> None:
    scores = np.array([[0.1, 0.9, -3.0, 0.5, np.inf, -np.inf]], dtype=np.float32)
    fold_in = sp.csr_matrix((1, 6), dtype=np.float32)
    recommended = top_k(lambda batch: scores, fold_in, 6)
    np.testing.assert_array_equal(recommended, [[4, 1, 3, 0, 2, 5]])


@pytest.mark.parametrize("batch_size", [1, 3, 7, 40, 1000])
def test_top_k_does_not_depend_on_the_batch_size(batch_size: int) -> None:
    fold_in = random_fold_in(2, 40, 25, 0.2)
    # Scores rounded to one decimal, so there are many ties to break.
    table = np.round(np.random.default_rng(3).random((40, 25)), 1).astype(np.float32)
    one_batch = top_k(TableScorer(table), fold_in, 10, batch_size=40)
    batched = top_k(TableScorer(table), fold_in, 10, batch_size=batch_size)
    np.testing.assert_array_equal(batched, one_batch)


def test_ties_rank_the_lower_column_first() -> None:
    fold_in = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0]], dtype=np.float32))
    recommended = top_k(constant_scorer(), fold_in, 4)
    # Every unseen item ties at 0; column 2 is seen.
    np.testing.assert_array_equal(recommended, [[0, 1, 3, 4]])


def test_ties_with_signed_zeros_and_negative_scores_rank_the_lower_column_first() -> None:
    scores = np.array([[-0.0, 0.0, -1.5, -1.5, 0.0, -0.0, 2.0]], dtype=np.float32)
    fold_in = sp.csr_matrix((1, 7), dtype=np.float32)
    recommended = top_k(lambda batch: scores, fold_in, 7)
    np.testing.assert_array_equal(recommended, [[6, 0, 1, 4, 5, 2, 3]])


def test_ranking_matches_a_stable_sort_on_random_scores_with_ties() -> None:
    rng = np.random.default_rng(4)
    # Mixed signs, infinities and heavy ties: a stable descending sort is the reference.
    table = rng.choice(np.array([-np.inf, -2.5, -1e-30, -0.0, 0.0, 1e-30, 3.25, 7.0, np.inf],
                                dtype=np.float32), size=(30, 50))
    fold_in = sp.csr_matrix((30, 50), dtype=np.float32)
    recommended = top_k(TableScorer(table), fold_in, 50, exclude_seen=False)
    expected = np.argsort(-table, axis=1, kind="stable")
    np.testing.assert_array_equal(recommended, expected)


def test_ties_are_the_same_for_torch_and_numpy_scores() -> None:
    table = np.round(np.random.default_rng(5).random((20, 15)), 1).astype(np.float32)
    fold_in = random_fold_in(6, 20, 15, 0.2)
    from_numpy = top_k(TableScorer(table), fold_in, 8, batch_size=6)
    scorer = TableScorer(table)
    from_torch = top_k(lambda batch: torch.from_numpy(scorer(batch)), fold_in, 8, batch_size=6)
    np.testing.assert_array_equal(from_torch, from_numpy)


def test_user_with_fewer_unseen_items_than_k_gets_seen_items_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fold_in = sp.csr_matrix(np.array([[1, 0, 1, 0]], dtype=np.float32))
    recommended = top_k(constant_scorer(), fold_in, 3)
    np.testing.assert_array_equal(recommended, [[1, 3, 0]])
    assert "fewer than 3 unseen items" in caplog.text


def test_top_k_does_not_modify_the_scorer_output() -> None:
    table = np.ones((2, 3), dtype=np.float32)
    fold_in = sp.csr_matrix(np.eye(2, 3, dtype=np.float32))
    top_k(lambda batch: table, fold_in, 1)
    np.testing.assert_array_equal(table, np.ones((2, 3)))


def test_score_batches_masks_seen_items_and_covers_every_row() -> None:
    fold_in = random_fold_in(7, 11, 6, 0.4)
    rows_seen = []
    for rows, scores in score_batches(constant_scorer(1.0), fold_in, batch_size=4):
        rows_seen += list(range(rows.start, rows.stop))
        expected = np.where(fold_in[rows].toarray() > 0, -np.inf, 1.0)
        np.testing.assert_array_equal(scores.numpy(), expected)
    assert rows_seen == list(range(11))


@pytest.mark.parametrize(
    ("scorer", "message"),
    [
        (lambda batch: np.zeros((batch.shape[0], 3)), r"shape \(2, 4\)"),
        (lambda batch: np.full(batch.shape, np.nan), "NaN"),
    ],
)
def test_bad_scorer_output_raises(scorer: Scorer, message: str) -> None:
    with pytest.raises(DataError, match=message):
        top_k(scorer, sp.csr_matrix((2, 4), dtype=np.float32), 2)


@pytest.mark.parametrize(("k", "batch_size"), [(0, 10), (5, 10), (2, 0), (2.0, 10)])
def test_top_k_rejects_bad_arguments(k: int, batch_size: int) -> None:
    with pytest.raises(DataError, match="expected an integer of at least 1"):
        top_k(constant_scorer(), sp.csr_matrix((2, 4), dtype=np.float32), k,
              batch_size=batch_size)


def make_holdout(seed: int, n_users: int = 30, n_items: int = 40) -> Holdout:
    """Disjoint random fold-in and targets; every user has at least one target."""
    rng = np.random.default_rng(seed)
    roles = rng.choice(3, size=(n_users, n_items), p=[0.7, 0.2, 0.1])
    roles[np.arange(n_users), rng.integers(0, n_items, n_users)] = 2
    fold_in = sp.csr_matrix((roles == 1).astype(np.float32))
    targets = sp.csr_matrix((roles == 2).astype(np.float32))
    return Holdout(np.arange(100, 100 + n_users), fold_in, targets)


def test_evaluate_equals_metrics_on_top_k_at_every_k() -> None:
    holdout = make_holdout(8)
    table = np.random.default_rng(9).random((30, 40)).astype(np.float32)
    result = evaluate(TableScorer(table), holdout, ks=(1, 5, 20), batch_size=7)

    # Each K is checked against its own top-K list, not the prefix evaluate relies on.
    for k in (1, 5, 20):
        recommended = top_k(TableScorer(table), holdout.fold_in, k)
        np.testing.assert_array_equal(result.recommended[:, :k], recommended)
        assert result.per_user["ndcg"][k] == pytest.approx(
            metrics.ndcg(recommended, holdout.targets))
        assert result.per_user["recall"][k] == pytest.approx(
            metrics.recall(recommended, holdout.targets))
        assert result.mean("mrr", k) == pytest.approx(
            np.mean(metrics.mrr(recommended, holdout.targets)))
        assert result.coverage[k] == pytest.approx(metrics.coverage(recommended, 40))


def test_evaluate_with_an_oracle_scores_one() -> None:
    holdout = make_holdout(10)
    targets = holdout.targets.toarray()
    rows = iter(range(0, 30, 8))

    def oracle(batch: sp.csr_matrix) -> np.ndarray:
        start = next(rows)
        return targets[start:start + batch.shape[0]]

    result = evaluate(oracle, holdout, ks=(40,), batch_size=8)
    assert result.mean("ndcg", 40) == pytest.approx(1.0)
    assert result.mean("recall", 40) == pytest.approx(1.0)


def test_evaluation_tables_have_one_row_per_k_and_per_user() -> None:
    holdout = make_holdout(11)
    result = evaluate(constant_scorer(), holdout, ks=(10, 1, 10, 5))
    assert isinstance(result, Evaluation)
    assert result.ks == (1, 5, 10)
    summary = result.summary()
    assert list(summary.index) == [1, 5, 10]
    assert set(summary.columns) == {*metrics.METRICS, "coverage"}
    assert summary.loc[5, "ndcg"] == result.mean("ndcg", 5)

    frame = result.per_user_frame()
    assert list(frame.index) == list(holdout.user_nums)
    np.testing.assert_array_equal(frame["n_targets"], holdout.targets.getnnz(axis=1))
    np.testing.assert_array_equal(frame["recall@5"], result.per_user["recall"][5])


def test_evaluate_rejects_k_beyond_the_catalogue() -> None:
    with pytest.raises(DataError, match=r"1 <= K <= 40"):
        evaluate(constant_scorer(), make_holdout(12), ks=(10, 41))


def test_evaluate_rejects_misaligned_holdout() -> None:
    holdout = make_holdout(13)
    holdout = Holdout(holdout.user_nums, holdout.fold_in, holdout.targets[:, :30])
    with pytest.raises(DataError, match="same shape"):
        evaluate(constant_scorer(), holdout, ks=(5,))


@pytest.mark.parametrize(("k", "levels"), [(1, 3), (5, 4), (20, 7), (40, 50), (58, 2)])
def test_top_columns_candidate_path_equals_ranking_every_item(k: int, levels: int) -> None:
    rng = np.random.default_rng(k)
    # Few distinct scores, so ties cross the candidate boundary in many rows.
    scores = torch.from_numpy(rng.integers(0, levels, (60, 80)).astype(np.float32))
    scores[rng.random((60, 80)) < 0.2] = float("-inf")
    scores[:3] = 0.0
    scores[3, ::2] = -0.0
    expected = _exact_top_columns(scores, k).numpy()
    np.testing.assert_array_equal(top_columns(scores, k), expected)


def test_top_columns_refuses_nan_anywhere_in_a_row() -> None:
    scores = torch.arange(200, dtype=torch.float32).repeat(3, 1)
    scores[1, 7] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        top_columns(scores, 5)


def test_fresh_scores_are_masked_in_place_and_others_are_copied() -> None:
    fold_in = sp.csr_matrix(np.eye(3, 4, dtype=np.float32))
    kept = torch.ones(3, 4)
    list(score_batches(lambda batch: kept, fold_in))
    assert torch.equal(kept, torch.ones(3, 4))

    made: list[torch.Tensor] = []
    scorer = fresh_scores(lambda batch: made.append(torch.ones(3, 4)) or made[-1])
    (_, scores), = score_batches(scorer, fold_in)
    assert scores.data_ptr() == made[0].data_ptr()
    assert torch.isinf(made[0]).sum() == 3
