"""Per-checkpoint work that several chapters share, done once and kept on disk.

Running the encoder over every user, ranking every item for every user and taking the
entropy of every user's multinomial scale with the number of users, so they are computed in
batches by :func:`compute_artifacts` and stored by :func:`load_artifacts` in one ``.npz`` file
whose name is keyed by the checkpoint's identity, the data's fingerprint and the package
version. Any change to one of them gives another file; nothing is ever reused across them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm import tqdm

import recsys
from recsys.checkpoint import Checkpoint
from recsys.model import MultVAE, to_sparse_tensor
from recsys.preprocess import Dataset, interactions_to_csr
from recsys.recommend import top_columns
from recsys.splits import FOLD_IN, TEST, TRAIN, VALIDATION, Split

log = logging.getLogger(__name__)

TOP_K = 100
CACHE_DIR = Path(".cache") / "recsys"
GROUP_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}


@dataclass
class Artifacts:
    """What the primary model says about every user, in dataset user order.

    Attributes
    ----------
    user_nums
        Dataset user nums of the rows (users with at least one visible item), shape (users,).
    group
        Each row's role in the split: ``TRAIN``, ``VALIDATION`` or ``TEST`` (int8).
    n_visible
        Items the model was shown for each user (training items, or the fold-in of held-out
        users), shape (users,).
    mu, logvar
        The encoder's Gaussian per user, users x latent float32; ``logvar`` is all zeros for a
        Multi-DAE, whose code is deterministic.
    top_items, top_probs
        The ``TOP_K`` most probable unseen items per user (split columns, best first) and their
        probabilities under the multinomial, users x K.
    entropy
        Entropy (nats) of each user's multinomial over all items, shape (users,).
    mean_probs
        Mean probability of each item over users, shape (items,) float64.
    """

    user_nums: np.ndarray
    group: np.ndarray
    n_visible: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray
    top_items: np.ndarray
    top_probs: np.ndarray
    entropy: np.ndarray
    mean_probs: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_nums)

    @property
    def sigma(self) -> np.ndarray:
        """Standard deviations of the encoder's Gaussian, users x latent."""
        return np.exp(0.5 * self.logvar)


def visible_items(dataset: Dataset, split: Split) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """What the model sees of every user: training rows and held-out users' fold-in.

    Returns the dataset user nums of users with anything visible, their group in the split,
    and their users x split-items CSR matrix.
    """
    users = dataset.interactions["user_num"].to_numpy()
    items = dataset.interactions["item_num"].to_numpy()

    # Map dataset items to split columns; items outside the split are not visible.
    column = np.full(dataset.n_items, -1, dtype=np.int64)
    column[split.item_nums] = np.arange(split.n_items)
    seen = ((split.roles == TRAIN) | (split.roles == FOLD_IN)) & (column[items] >= 0)
    user_nums = np.unique(users[seen])
    row = np.full(dataset.n_users, -1, dtype=np.int64)
    row[user_nums] = np.arange(len(user_nums))
    matrix = interactions_to_csr(row[users[seen]], column[items[seen]],
                                 (len(user_nums), split.n_items))

    group = np.full(dataset.n_users, TRAIN, dtype=np.int8)
    for holdout, code in ((split.validation, VALIDATION), (split.test, TEST)):
        if holdout is not None:
            group[holdout.user_nums] = code
    if split.strategy == "heldout_users":
        # Held-out users without targets are neither trained on nor evaluated.
        trained = np.zeros(dataset.n_users, dtype=bool)
        trained[split.train_user_nums] = True
        group[~trained & (group == TRAIN)] = VALIDATION
    return user_nums, group[user_nums], matrix


@torch.no_grad()
def compute_artifacts(
    model: MultVAE, dataset: Dataset, split: Split, batch_size: int = 1000,
    progress: bool = False,
) -> Artifacts:
    """Run ``model`` over every user's visible items in batches; see :class:`Artifacts`."""
    model.eval()
    user_nums, group, matrix = visible_items(dataset, split)
    n_users, n_items = matrix.shape
    k = min(TOP_K, n_items)
    latent = model.config.latent_dim
    out = Artifacts(
        user_nums=user_nums, group=group, n_visible=np.diff(matrix.indptr).astype(np.int64),
        mu=np.empty((n_users, latent), np.float32), logvar=np.zeros((n_users, latent), np.float32),
        top_items=np.empty((n_users, k), np.int32), top_probs=np.empty((n_users, k), np.float32),
        entropy=np.empty(n_users, np.float32), mean_probs=np.zeros(n_items, np.float64),
    )

    started = time.perf_counter()
    batches = range(0, n_users, batch_size)
    for start in tqdm(batches, desc="precompute", disable=not progress, unit="batch"):
        rows = slice(start, min(start + batch_size, n_users))
        batch = matrix[rows]
        mu, logvar = model.encode(to_sparse_tensor(batch))
        logits = model.decode(mu)  # (batch, items)
        log_probs = F.log_softmax(logits, dim=1)

        # Entropy and the mean probability use the full distribution, seen items included.
        probs = log_probs.exp()
        out.mu[rows] = mu.numpy()
        if logvar is not None:
            out.logvar[rows] = logvar.numpy()
        out.entropy[rows] = -(probs * log_probs).sum(dim=1).numpy()
        out.mean_probs += probs.sum(dim=0).double().numpy()

        # Top-K is over unseen items only and breaks ties as recommendations do.
        seen_rows = torch.from_numpy(np.repeat(np.arange(batch.shape[0]), np.diff(batch.indptr)))
        logits[seen_rows, torch.from_numpy(batch.indices.astype(np.int64))] = -torch.inf
        columns = top_columns(logits, k)
        out.top_items[rows] = columns
        out.top_probs[rows] = torch.gather(probs, 1, torch.from_numpy(columns)).numpy()
    out.mean_probs /= max(n_users, 1)
    log.info("precomputed %d users x %d items in %.1f s", n_users, n_items,
             time.perf_counter() - started)
    return out


def cache_file(root: str | Path, kind: str, key: str) -> Path:
    """The ``.npz`` file under ``root``'s cache that holds ``kind`` for ``key`` (a sha256)."""
    return Path(root) / CACHE_DIR / f"{kind}-{key[:32]}.npz"


def save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to ``path`` beside it first and rename, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.partial.npz")
    np.savez(staging, **arrays)
    os.replace(staging, path)


def cache_key(checkpoint: Checkpoint, dataset: Dataset) -> str:
    """sha256 of the checkpoint's identity, the data fingerprint and the package version."""
    parts = (checkpoint.identity(), dataset.fingerprint, recsys.__version__, str(TOP_K))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_artifacts(
    checkpoint: Checkpoint, dataset: Dataset, split: Split, root: str | Path = ".",
    progress: bool = False,
) -> Artifacts:
    """The checkpoint's :class:`Artifacts`, from the on-disk cache or computed and stored."""
    path = cache_file(root, "artifacts", cache_key(checkpoint, dataset))
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            log.info("artifacts from cache %s", path)
            return Artifacts(**{f.name: stored[f.name] for f in fields(Artifacts)})

    artifacts = compute_artifacts(checkpoint.primary, dataset, split, progress=progress)
    save_atomic(path, {f.name: getattr(artifacts, f.name) for f in fields(Artifacts)})
    return artifacts
