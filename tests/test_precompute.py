"""Per-checkpoint artifacts against per-user reference computations, and their cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.checkpoint import load_checkpoint, save_checkpoint
from recsys.model import ModelConfig, MultVAE, to_sparse_tensor
from recsys.pipeline import model_scorer
from recsys.preprocess import load_dataset
from recsys.recommend import top_k
from recsys.report import precompute
from recsys.splits import TEST, TRAIN, VALIDATION, make_split


@pytest.fixture
def setting(movielens_dir: Path, tmp_path: Path):
    dataset = load_dataset(movielens_dir)
    split = make_split(dataset, "heldout_users", n_heldout=10, seed=2)
    torch.manual_seed(0)
    model = MultVAE(ModelConfig("multvae", split.n_items, (16,), latent_dim=4))
    manifest = {"created_at": "2026-01-01T00:00:00+00:00", "data": {"fingerprint": "0"},
                "split": {}, "item_ids": [], "primary": "multvae",
                "models": {"multvae": {"config": model.config.to_dict()}}}
    path = save_checkpoint(tmp_path / "c", "x", {"multvae": model}, manifest)
    return dataset, split, load_checkpoint(path)


def test_artifacts_match_per_user_references(setting) -> None:
    dataset, split, checkpoint = setting
    model = checkpoint.primary
    artifacts = precompute.compute_artifacts(model, dataset, split, batch_size=7)
    user_nums, _, visible = precompute.visible_items(dataset, split)

    # Every training user and every held-out user with a fold-in is covered once.
    assert np.array_equal(artifacts.user_nums, user_nums)
    assert (artifacts.group == TRAIN).sum() == len(split.train_user_nums)
    assert set(split.test.user_nums) <= set(user_nums[artifacts.group == TEST])
    assert set(split.validation.user_nums) <= set(user_nums[artifacts.group == VALIDATION])

    # The slow way: one user at a time, dense.
    for row in range(0, artifacts.n_users, 5):
        x = to_sparse_tensor(visible[row])
        with torch.no_grad():
            mu, logvar = model.encode(x)
            probs = torch.softmax(model.decode(mu), dim=1).numpy()[0].astype(np.float64)
        assert np.allclose(artifacts.mu[row], mu.numpy()[0], atol=1e-5)
        assert np.allclose(artifacts.logvar[row], logvar.numpy()[0], atol=1e-5)
        entropy = -sum(p * np.log(p) for p in probs)
        assert artifacts.entropy[row] == pytest.approx(entropy, rel=1e-4)
        unseen = [i for i in np.argsort(-probs, kind="stable") if visible[row, i] == 0]
        assert list(artifacts.top_items[row, :10]) == unseen[:10]

    assert artifacts.mean_probs.sum() == pytest.approx(1.0)
    expected = top_k(model_scorer(model), visible, artifacts.top_items.shape[1])
    assert np.array_equal(artifacts.top_items, expected)


def test_artifacts_are_cached_by_checkpoint_and_data(setting, tmp_path: Path) -> None:
    dataset, split, checkpoint = setting
    first = precompute.load_artifacts(checkpoint, dataset, split, root=tmp_path)
    files = list((tmp_path / precompute.CACHE_DIR).glob("*.npz"))
    assert len(files) == 1
    again = precompute.load_artifacts(checkpoint, dataset, split, root=tmp_path)
    assert np.array_equal(first.entropy, again.entropy)
    assert list((tmp_path / precompute.CACHE_DIR).glob("*.npz")) == files

    # Another checkpoint identity gives another file.
    (checkpoint.path / "manifest.json").write_text(
        (checkpoint.path / "manifest.json").read_text().replace("2026-01-01", "2026-02-01"))
    precompute.load_artifacts(checkpoint, dataset, split, root=tmp_path)
    assert len(list((tmp_path / precompute.CACHE_DIR).glob("*.npz"))) == 2
