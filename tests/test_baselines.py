"""Most-popular and EASE baselines: known answers on toy matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.baselines import Ease, Popularity, fit_ease, fit_popularity, select_ease_lambda
from recsys.errors import DataError
from recsys.recommend import evaluate, top_k
from recsys.splits import Holdout

# 5 users x 4 items; item counts by hand: item 0 has users 0, 1, 3 -> 3; item 1 has user 1
# -> 1; item 2 has users 0, 2, 3, 4 -> 4; item 3 has nobody -> 0.
TOY = sp.csr_matrix(np.array([
    [1, 0, 1, 0],
    [1, 1, 0, 0],
    [0, 0, 1, 0],
    [1, 0, 1, 0],
    [0, 0, 1, 0],
], dtype=np.float32))


def block_matrix(n_users_per_block: int = 20, items_per_block: int = 6) -> sp.csr_matrix:
    """Two user groups with disjoint tastes: group 0 likes items 0-5, group 1 items 6-11.

    Each user has all of their block except one item (a different one per user), so that
    co-occurrence within a block is strong and across blocks is zero.
    """
    rows = []
    for block in range(2):
        for user in range(n_users_per_block):
            row = np.zeros(2 * items_per_block, dtype=np.float32)
            row[block * items_per_block:(block + 1) * items_per_block] = 1.0
            row[block * items_per_block + user % items_per_block] = 0.0
            rows.append(row)
    return sp.csr_matrix(np.array(rows))


def test_popularity_counts_training_users_per_item() -> None:
    model = fit_popularity(TOY)
    np.testing.assert_array_equal(model.item_counts, [3, 1, 4, 0])
    assert model.item_counts.dtype == np.float32


def test_popularity_ignores_explicit_zeros_and_counts_duplicates_once() -> None:
    # Row 0 stores item 1 twice and item 2 as an explicit zero.
    train = sp.csr_matrix((np.array([1.0, 1.0, 0.0]), np.array([1, 1, 2]), np.array([0, 3])),
                          shape=(1, 3))
    np.testing.assert_array_equal(fit_popularity(train).item_counts, [0, 1, 0])


def test_popularity_scores_every_user_alike_and_recommends_popular_unseen_items() -> None:
    model = fit_popularity(TOY)
    fold_in = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(model(fold_in), [[3, 1, 4, 0], [3, 1, 4, 0]])
    # User 0 has seen item 2 (the most popular), so item 0 comes first, then 1.
    np.testing.assert_array_equal(top_k(model, fold_in, 2), [[0, 1], [2, 0]])


def dense_ease(X: np.ndarray, lam: float) -> np.ndarray:
    """EASE as a direct dense solve: B = I - P diag(1 / diag(P)), P = (X^T X + lam I)^-1."""
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    return np.eye(X.shape[1]) - P / np.diag(P)


@pytest.mark.parametrize("lam", [0.5, 10.0, 500.0])
def test_ease_matches_a_dense_solve(lam: float) -> None:
    X = (np.random.default_rng(0).random((30, 12)) < 0.3).astype(np.float64)
    model = fit_ease(sp.csr_matrix(X), lam)
    assert model.weights.dtype == np.float32
    np.testing.assert_allclose(model.weights, dense_ease(X, lam), rtol=1e-5, atol=1e-6)


def test_ease_diagonal_is_exactly_zero() -> None:
    X = (np.random.default_rng(1).random((40, 15)) < 0.4).astype(np.float32)
    np.testing.assert_array_equal(np.diag(fit_ease(sp.csr_matrix(X), 2.0).weights), 0.0)


def test_ease_columns_are_ridge_regressions_on_the_other_items() -> None:
    # The zero-diagonal closed form equals, column by column, ridge regression of item j on
    # every other item: B[-j, j] = (X_-j^T X_-j + lam I)^-1 X_-j^T x_j.
    X = (np.random.default_rng(2).random((25, 8)) < 0.4).astype(np.float64)
    lam = 3.0
    weights = fit_ease(sp.csr_matrix(X), lam).weights
    for j in range(X.shape[1]):
        others = np.delete(np.arange(X.shape[1]), j)
        A = X[:, others]
        ridge = np.linalg.solve(A.T @ A + lam * np.eye(len(others)), A.T @ X[:, j])
        np.testing.assert_allclose(weights[others, j], ridge, rtol=1e-5, atol=1e-6)


def test_ease_scores_are_fold_in_times_weights() -> None:
    X = (np.random.default_rng(3).random((20, 10)) < 0.3).astype(np.float32)
    model = fit_ease(sp.csr_matrix(X), 1.0)
    fold_in = sp.csr_matrix(X[:4])
    scores = model(fold_in)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, X[:4] @ model.weights, rtol=1e-6)


@pytest.mark.parametrize("block", [0, 1])
def test_ease_recommends_the_rest_of_the_users_block(block: int) -> None:
    model = fit_ease(block_matrix(), 1.0)
    fold_in = np.zeros((1, 12), dtype=np.float32)
    fold_in[0, [6 * block, 6 * block + 1]] = 1.0

    # A user with two items of a block should be offered the block's other four items first.
    recommended = top_k(model, sp.csr_matrix(fold_in), 4)
    assert set(recommended[0]) == set(range(6 * block + 2, 6 * block + 6))


def test_ease_gives_no_weight_across_blocks() -> None:
    weights = fit_ease(block_matrix(), 1.0).weights
    np.testing.assert_allclose(weights[:6, 6:], 0.0, atol=1e-7)
    np.testing.assert_allclose(weights[6:, :6], 0.0, atol=1e-7)


def block_holdout() -> Holdout:
    """Four users, two per block, each folding in two items and holding out two."""
    fold_in = np.zeros((4, 12), dtype=np.float32)
    targets = np.zeros((4, 12), dtype=np.float32)
    for user in range(4):
        base = 6 * (user // 2)
        fold_in[user, [base + user % 2, base + 2]] = 1.0
        targets[user, [base + 3, base + 4]] = 1.0
    return Holdout(np.arange(4), sp.csr_matrix(fold_in), sp.csr_matrix(targets))


def random_train_and_holdout(seed: int) -> tuple[sp.csr_matrix, Holdout]:
    rng = np.random.default_rng(seed)
    # Two overlapping taste groups make lambda matter; roles: 0 none, 1 fold-in, 2 target.
    taste = np.where(np.arange(30) < 15, 0.5, 0.1)
    train = (rng.random((60, 30)) < np.where(np.arange(60)[:, None] % 2, taste, taste[::-1]))
    roles = rng.choice(3, size=(20, 30), p=[0.6, 0.25, 0.15])
    roles[:, 0] = 2
    holdout = Holdout(np.arange(20), sp.csr_matrix((roles == 1).astype(np.float32)),
                      sp.csr_matrix((roles == 2).astype(np.float32)))
    return sp.csr_matrix(train.astype(np.float32)), holdout


def test_select_ease_lambda_scores_every_lambda_and_keeps_the_best() -> None:
    train, holdout = random_train_and_holdout(4)
    grid = (0.01, 1.0, 30.0, 1e4)
    selection = select_ease_lambda(train, holdout, grid=grid, k=10)

    # Each reported score is the validation NDCG@10 of EASE fitted with that lambda.
    assert list(selection.ndcg) == list(grid)
    for lam in grid:
        expected = evaluate(fit_ease(train, lam), holdout, ks=(10,)).mean("ndcg", 10)
        assert selection.ndcg[lam] == pytest.approx(expected)
    assert len(set(selection.ndcg.values())) > 1
    assert selection.ndcg[selection.lam] == max(selection.ndcg.values())
    assert selection.model.lam == selection.lam
    np.testing.assert_array_equal(selection.model.weights, fit_ease(train, selection.lam).weights)
    assert selection.k == 10


def test_select_ease_lambda_keeps_the_first_of_tied_lambdas() -> None:
    # On the block toy every small lambda ranks the block's items first: a tie at NDCG 1.
    selection = select_ease_lambda(block_matrix(), block_holdout(), grid=(1.0, 2.0), k=4)
    assert selection.ndcg[1.0] == selection.ndcg[2.0]
    assert selection.lam == 1.0


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf"), True])
def test_fit_ease_rejects_a_bad_lambda(lam: float) -> None:
    with pytest.raises(DataError, match="lambda > 0"):
        fit_ease(TOY, lam)


def test_select_ease_lambda_needs_validation_users_and_a_grid() -> None:
    with pytest.raises(DataError, match="validation users"):
        select_ease_lambda(block_matrix(), None)
    with pytest.raises(DataError, match="empty grid"):
        select_ease_lambda(block_matrix(), block_holdout(), grid=())


@pytest.mark.parametrize("model", [Popularity(np.ones(4, np.float32)),
                                   Ease(np.zeros((4, 4), np.float32), 1.0)])
def test_scorers_reject_fold_in_with_other_items(model: Popularity | Ease) -> None:
    with pytest.raises(DataError, match="4 item columns"):
        model(sp.csr_matrix((2, 5), dtype=np.float32))


def test_baselines_reject_dense_training_data() -> None:
    with pytest.raises(DataError, match="scipy sparse"):
        fit_popularity(TOY.toarray())
