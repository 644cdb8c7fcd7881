"""Baselines to compare Multi-VAE with: most-popular and EASE.

Both are scorers (see :mod:`recsys.recommend`): call them with a batch x items CSR matrix of
fold-in rows to get batch x items float32 scores.

EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019) learns an
items x items weight matrix ``B`` with a zero diagonal that reconstructs each item's column
from the others under an L2 penalty ``lam``. Its closed form is ``P = (X^T X + lam I)^-1`` and
``B[i, j] = -P[i, j] / P[j, j]`` off the diagonal; a user's scores are ``x_user @ B``.
"""

from __future__ import annotations

import logging
import math
import mmap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from recsys.errors import DataError
from recsys.recommend import evaluate
from recsys.splits import Holdout

log = logging.getLogger(__name__)

DEFAULT_LAMBDAS: tuple[float, ...] = (20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)


@dataclass(frozen=True)
class Popularity:
    """Scores every item by its number of training users, the same for every user.

    Attributes
    ----------
    item_counts
        float32 array of shape (items,): training users with a positive entry per item.
    """

    item_counts: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.item_counts)

    def __call__(self, fold_in: sp.csr_matrix) -> np.ndarray:
        """batch x items scores: ``item_counts`` repeated for every row of ``fold_in``."""
        _check_columns(fold_in, self.n_items)
        # A read-only broadcast view; top_k copies scores before changing them.
        return np.broadcast_to(self.item_counts, (fold_in.shape[0], self.n_items))


@dataclass(frozen=True)
class Ease:
    """A fitted EASE model.

    Attributes
    ----------
    weights
        items x items float32 matrix ``B`` with a zero diagonal.
    lam
        The L2 penalty it was fitted with.
    """

    weights: np.ndarray = field(repr=False)
    lam: float

    @property
    def n_items(self) -> int:
        return self.weights.shape[0]

    def __call__(self, fold_in: sp.csr_matrix) -> np.ndarray:
        """batch x items float32 scores ``fold_in @ weights``."""
        _check_columns(fold_in, self.n_items)
        rows = sp.csr_matrix(fold_in, dtype=np.float32)
        return np.asarray(rows @ self.weights, dtype=np.float32)


@dataclass(frozen=True)
class EaseSelection:
    """The outcome of choosing EASE's penalty on validation users.

    Attributes
    ----------
    lam
        The penalty with the highest validation NDCG@k (the first one on ties).
    ndcg
        Mean validation NDCG@k for every penalty tried, in grid order.
    k
        The NDCG cut-off.
    model
        EASE fitted on the training matrix with ``lam``.
    """

    lam: float
    ndcg: dict[float, float]
    k: int
    model: Ease


def fit_popularity(train: sp.csr_matrix) -> Popularity:
    """Count each item's training users.

    Parameters
    ----------
    train
        users x items sparse matrix of training interactions; positive entries count.
    """
    matrix = _check_train(train)
    counts = np.bincount(matrix.indices[matrix.data > 0], minlength=matrix.shape[1])
    return Popularity(counts.astype(np.float32))


def fit_ease(train: sp.csr_matrix, lam: float = 500.0) -> Ease:
    """Fit EASE in closed form.

    Parameters
    ----------
    train
        users x items sparse matrix of training interactions.
    lam
        L2 penalty on the weights, > 0 (default 500, Steck's choice for MovieLens-20M).

    Returns
    -------
    Ease
        The fitted scorer. Memory grows as items squared: one float64 items x items matrix
        (8 bytes per item pair), which becomes the float32 weights in place.
    """
    lam = _check_lambda(lam)
    return Ease(_ease_weights(_gram(_check_train(train)), lam, overwrite=True), lam)


def select_ease_lambda(
    train: sp.csr_matrix,
    validation: Holdout | None,
    grid: Sequence[float] = DEFAULT_LAMBDAS,
    k: int = 100,
    batch_size: int = 500,
) -> EaseSelection:
    """Choose EASE's penalty by mean NDCG@k on validation users.

    Parameters
    ----------
    train
        users x items sparse matrix of training interactions.
    validation
        Held-out users whose fold-in and target columns match ``train``'s.
    grid
        Penalties to try, each > 0 (default :data:`DEFAULT_LAMBDAS`).
    k
        NDCG cut-off (default 100, as in the paper).
    batch_size
        Users scored at a time (default 500).

    Returns
    -------
    EaseSelection
        The chosen penalty, every penalty's validation NDCG@k, and the chosen model.
    """
    matrix = _check_train(train)
    if validation is None:
        raise DataError("expected validation users to choose lambda on, got none; use a split "
                        "with a validation set", field="validation")
    _check_columns(validation.fold_in, matrix.shape[1])
    if len(grid) == 0:
        raise DataError("expected at least one lambda to try, got an empty grid", field="grid")
    lambdas = [_check_lambda(lam) for lam in grid]

    # One lambda needs no spare Gram matrix: factorise the only one in place.
    if len(lambdas) == 1:
        model = fit_ease(matrix, lambdas[0])
        score = evaluate(model, validation, ks=(k,), batch_size=batch_size).mean("ndcg", k)
        log.info("EASE lambda %g: validation NDCG@%d %.4f", model.lam, k, score)
        return EaseSelection(model.lam, {model.lam: score}, k, model)

    # The Gram matrix does not depend on lambda, so it is built once; its entries are counts,
    # exact in float32 up to 2^24 users.
    gram = _gram(matrix).astype(np.float32, order="F")
    scores: dict[float, float] = {}

    def fit_and_score(lam: float) -> Ease:
        model = Ease(_ease_weights(gram, lam), lam)
        scores[lam] = evaluate(model, validation, ks=(k,), batch_size=batch_size).mean("ndcg", k)
        log.info("EASE lambda %g: validation NDCG@%d %.4f", lam, k, scores[lam])
        return model

    # max holds one model at a time and keeps the first of tied lambdas.
    best = max(map(fit_and_score, lambdas), key=lambda model: scores[model.lam])
    return EaseSelection(best.lam, scores, k, best)


def _gram(matrix: sp.csr_matrix, block: int = 1024) -> np.ndarray:
    """items x items float64 co-occurrence counts ``X^T X`` (exact: they are integers).

    The result is Fortran-ordered, as LAPACK wants it, and is built a block of columns at a
    time so that no sparse product larger than items x ``block`` exists.
    """
    started = time.perf_counter()
    n_items = matrix.shape[1]
    item_users, user_items = matrix.T.tocsr(), matrix.tocsc()
    gram = _square_buffer(n_items)
    for start in range(0, n_items, block):
        columns = slice(start, min(start + block, n_items))
        gram[:, columns] = (item_users @ user_items[:, columns]).toarray()
    log.debug("Gram matrix of %d items in %.2f s", n_items, time.perf_counter() - started)
    return gram


def _ease_weights(gram: np.ndarray, lam: float, overwrite: bool = False) -> np.ndarray:
    """items x items float32 EASE weights from the Gram matrix and a penalty.

    The inverse is taken in float64: with a small penalty the regularised Gram matrix can be
    ill-conditioned, and float32 would lose the weights of rare items. With ``overwrite`` a
    Gram matrix from :func:`_gram` is factorised in place; otherwise it is copied once.
    """
    started = time.perf_counter()
    regularised = gram if overwrite and _mapping(gram) is not None else _square_buffer(len(gram))
    if regularised is not gram:
        regularised[...] = gram
    regularised[np.diag_indices_from(regularised)] += lam
    precision = _positive_definite_inverse(regularised)

    # Column j is divided by -P[j, j]; the diagonal is then zero by the constraint.
    weights = _divided_columns_in_place(precision, -np.diag(precision))
    np.fill_diagonal(weights, 0.0)
    log.debug("EASE weights (lambda %g) in %.2f s", lam, time.perf_counter() - started)
    return weights


def _square_buffer(size: int) -> np.ndarray:
    """An uninitialised size x size float64 Fortran-ordered array on its own memory map.

    Owning the mapping lets :func:`_divided_columns_in_place` hand half of it back.
    """
    mapping = mmap.mmap(-1, max(8 * size * size, 1))
    return np.frombuffer(mapping, np.float64, count=size * size).reshape((size, size), order="F")


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The memory map under ``array``, if it is a view of one."""
    base = array.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) or getattr(base, "obj", None)
    return base


def _divided_columns_in_place(
    precision: np.ndarray, divisor: np.ndarray, block: int = 1024
) -> np.ndarray:
    """float32 C-ordered ``precision / divisor`` (per column), in ``precision``'s memory.

    ``precision`` is symmetric, float64 and Fortran-ordered on a map from
    :func:`_square_buffer`. Rows ``i`` of the result are its columns ``i`` (transposed),
    divided, and written as float32 into the first half of the same memory; a block of rows
    never lands beyond the columns it is read from, so nothing is overwritten before it is
    read. The second half is then given back to the operating system.
    """
    size = len(precision)
    mapping = _mapping(precision)
    weights = np.frombuffer(mapping, np.float32, count=size * size).reshape(size, size)
    for start in range(0, size, block):
        rows = slice(start, min(start + block, size))
        weights[rows] = (precision[:, rows].T / divisor).astype(np.float32)

    # Whole pages past the float32 weights are no longer used.
    first_free = -(-4 * size * size // mmap.PAGESIZE) * mmap.PAGESIZE
    if hasattr(mapping, "madvise") and first_free < len(mapping):
        mapping.madvise(mmap.MADV_DONTNEED, first_free, len(mapping) - first_free)
    return weights


def _positive_definite_inverse(matrix: np.ndarray, block: int = 1024) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix through its Cholesky factor.

    LAPACK's potrf/potri do about half the work of a general inverse. ``matrix`` (float64,
    Fortran-ordered) is overwritten by the inverse, which is returned.
    """
    factor, info = lapack.dpotrf(matrix, lower=True, overwrite_a=True)
    if info == 0:
        inverse, info = lapack.dpotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise DataError(f"expected a positive definite regularised Gram matrix, got LAPACK "
                        f"error {info}; try a larger lambda", field="lam")

    # potri fills the lower triangle only; mirror it into the upper one, a block at a time.
    for start in range(0, inverse.shape[0], block):
        stop = min(start + block, inverse.shape[0])
        inverse[:start, start:stop] = inverse[start:stop, :start].T
        square = inverse[start:stop, start:stop]
        square[:] = np.tril(square) + np.tril(square, -1).T
    return inverse


def _check_train(train: sp.csr_matrix) -> sp.csr_matrix:
    if not sp.issparse(train) or train.ndim != 2:
        raise DataError(f"expected a users x items scipy sparse matrix, got "
                        f"{type(train).__name__}", field="train")
    if train.shape[1] == 0:
        raise DataError("expected at least one item column, got none", field="train")
    matrix = sp.csr_matrix(train, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    return matrix


def _check_columns(fold_in: sp.csr_matrix, n_items: int) -> None:
    if not sp.issparse(fold_in) or fold_in.ndim != 2 or fold_in.shape[1] != n_items:
        shape = getattr(fold_in, "shape", None)
        raise DataError(f"expected a sparse matrix with {n_items} item columns (as in "
                        f"training), got shape {shape}", field="fold_in")


def _check_lambda(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not (
        math.isfinite(lam) and lam > 0
    ):
        raise DataError(f"expected a finite lambda > 0, got {lam!r}", field="lam")
    return float(lam)
