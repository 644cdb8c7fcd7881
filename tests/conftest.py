"""Shared fixtures: small MovieLens-style data sets the tests write themselves, and one small
checkpoint trained on the shipped data once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_movielens(
    directory: Path, n_users: int = 80, n_items: int = 160, seed: int = 0
) -> Path:
    """Write ratings.csv and movies.csv with two taste groups, so models can learn something.

    Users in group 0 rate the first half of the items highly, users in group 1 the second
    half; every user also rates a few random items low. Timestamps increase per user.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    half = n_items // 2
    for user in range(1, n_users + 1):
        liked = np.arange(half) if user % 2 else np.arange(half, n_items)
        chosen = rng.choice(liked, size=rng.integers(10, 30), replace=False)
        disliked = rng.choice(n_items, size=3, replace=False)
        start = 1_000_000_000 + int(rng.integers(0, 10_000_000))
        for step, item in enumerate(chosen):
            rows.append((user, item + 1, float(rng.choice([4.0, 4.5, 5.0])), start + 60 * step))
        for step, item in enumerate(disliked):
            if item not in chosen:
                rows.append((user, item + 1, 1.0, start + 60 * (step + 20)))
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{i},{r:.1f},{t}" for u, i, r, t in rows]
    (directory / "ratings.csv").write_text("\n".join(lines) + "\n")
    titles = ["movieId,title,genres"]
    titles += [f'{i},"Movie {i}, The ({1990 + i % 20})",Drama' for i in range(1, n_items + 1)]
    (directory / "movies.csv").write_text("\n".join(titles) + "\n")
    return directory


@pytest.fixture
def movielens_dir(tmp_path: Path) -> Path:
    """A small MovieLens-style directory (ratings.csv, movies.csv) in a temporary folder."""
    return write_movielens(tmp_path / "ml-tiny")


@pytest.fixture
def tiny_config(tmp_path: Path, movielens_dir: Path) -> Path:
    """A training configuration for the tiny data that trains in a few seconds."""
    config = tmp_path / "tiny.toml"
    config.write_text(
        f"""
name = "tiny"
[data]
path = "{movielens_dir}"
[split]
strategy = "heldout_users"
n_heldout = 10
seed = 1
[model.multvae]
hidden_dims = [32]
latent_dim = 8
[model.multdae]
latent_dim = 8
[train]
epochs = 4
batch_size = 32
patience = 10
[baselines]
ease_lambdas = [1.0, 10.0]
"""
    )
    return config


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained for one epoch on the shipped data: a small Multi-VAE, no EASE.

    Trained once per test session; tests that change it must copy it first.
    """
    from recsys.config import load_config
    from recsys.pipeline import train_from_config

    repo = Path(__file__).resolve().parents[1]
    config = load_config(repo / "configs" / "ml-latest-small.toml", [
        f'data.path="{repo / "data" / "ml-latest-small"}"', 'train.models=["multvae"]',
        "train.epochs=1", "model.multvae.hidden_dims=[32]", "model.multvae.latent_dim=8",
        "baselines.ease_lambdas=[]",
    ])
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RECSYS_CHECKPOINT", raising=False)
        return train_from_config(config, tmp_path_factory.mktemp("trained"), "tiny",
                                 progress=False)
