"""From a configuration to a checkpoint, and from a checkpoint back to its numbers.

:func:`train_from_config` is what ``recsys train`` runs: load and preprocess the data, split
it, train every configured model, fit the baselines on the same split, score everything on
the test users, and write one checkpoint. :func:`evaluate_checkpoint` recomputes the test
numbers from a checkpoint and the data it names.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsys import baselines
from recsys.checkpoint import (
    Checkpoint,
    check_name,
    library_versions,
    now_iso,
    save_checkpoint,
)
from recsys.config import read_options, split_settings
from recsys.errors import CheckpointError
from recsys.metrics import mean_over_users
from recsys.model import ModelConfig, MultVAE, to_sparse_tensor
from recsys.preprocess import Dataset, Preprocessing, load_dataset
from recsys.recommend import evaluate, fresh_scores
from recsys.splits import Holdout, Split, add_validation, make_split
from recsys.train import TrainSettings, build_model, train_model

log = logging.getLogger(__name__)

Scorer = Callable[[sp.csr_matrix], np.ndarray | torch.Tensor]
KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100)


def load_configured_dataset(config: dict[str, Any]) -> Dataset:
    """Load and preprocess the data a configuration names."""
    preprocessing = Preprocessing(**config["preprocessing"])
    return load_dataset(config["data"]["path"], preprocessing, **read_options(config))


def configured_split(dataset: Dataset, config: dict[str, Any]) -> Split:
    """The configured split, with validation users carved out of a weak split's training."""
    split = make_split(dataset, config["split"]["strategy"], **split_settings(config))
    return add_validation(dataset, split, seed=config["split"]["seed"])


def model_scorer(model: MultVAE, device: str = "cpu") -> Scorer:
    """A scorer that maps fold-in rows (CSR) to the model's item logits, in evaluation mode."""

    @torch.no_grad()
    def score(batch: sp.csr_matrix) -> torch.Tensor:
        model.eval()
        return model(to_sparse_tensor(batch, device)).logits

    # Each call's logits are a new tensor, so ranking may mask them in place.
    return fresh_scores(score)


def score_holdout(
    scorer: Scorer, holdout: Holdout, ks: tuple[int, ...] = KS, batch_size: int = 1000
) -> dict[str, float]:
    """Mean metrics over a holdout's users, keyed ``"ndcg@100"``, plus ``"coverage@K"``."""
    # Data with fewer items than a cut-off has no such cut-off.
    ks = tuple(k for k in ks if k <= holdout.targets.shape[1]) or (holdout.targets.shape[1],)
    result = evaluate(scorer, holdout, ks, batch_size)
    means = {f"{name}@{k}": mean_over_users(by_k[k])
             for name, by_k in result.per_user.items() for k in result.ks}
    means.update({f"coverage@{k}": float(result.coverage[k]) for k in result.ks})
    return means


def train_from_config(
    config: dict[str, Any],
    root: str | Path = "checkpoints",
    name: str | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Train every configured model and the baselines on one split; write one checkpoint."""
    train = config["train"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = name or config["name"] or f"{Path(config['data']['path']).name}-{stamp}"
    check_destination(Path(root), name)
    if train["threads"]:
        torch.set_num_threads(train["threads"])

    dataset = load_configured_dataset(config)
    split = configured_split(dataset, config)
    log.info("split %s: %s", split.strategy, split.stats)
    settings = TrainSettings(**{key: train[key] for key in TrainSettings.__dataclass_fields__})

    # Each model is trained from the same seed on the same users.
    models: dict[str, MultVAE] = {}
    entries: dict[str, dict[str, Any]] = {}
    for kind in train["models"]:
        model_config = ModelConfig(kind=kind, n_items=split.n_items, **config["model"][kind])
        model = build_model(model_config, settings.seed, settings.device)
        validate = _validator(split.validation, settings.device, train["eval_batch_size"])
        result = train_model(model, split.train, validate, settings, progress=progress)
        models[kind] = model
        entries[kind] = {
            "config": model_config.to_dict(),
            "history": result.history_dicts(),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "validation": score_holdout(model_scorer(model, settings.device), split.validation),
            "test": score_holdout(model_scorer(model, settings.device), split.test),
        }
        test = entries[kind]["test"]
        top = max(k for k in KS if f"ndcg@{k}" in test)
        log.info("%s: best epoch %d, test NDCG@%d %.4f", kind, result.best_epoch, top,
                 test[f"ndcg@{top}"])

    manifest = {
        "created_at": now_iso(),
        "data": _data_entry(dataset, config, Path(root) / name),
        "split": {"strategy": split.strategy, "settings": split.settings,
                  "config": config["split"], "stats": split.stats},
        "item_ids": [str(i) for i in dataset.item_ids[split.item_nums]],
        "primary": train["models"][0],
        "training": {**train, "model": config["model"]},
        "metrics_ks": list(KS),
        "models": entries,
        "baselines": fit_baselines(split, config),
        "library_versions": library_versions(),
    }
    return save_checkpoint(root, name, models, manifest)


def check_destination(root: Path, name: str) -> None:
    """Refuse a checkpoint destination before any work is done rather than after it."""
    check_name(name)
    if root.exists() and not root.is_dir():
        raise CheckpointError("expected a directory for checkpoints, found a file", path=root)
    if (root / name).exists():
        raise CheckpointError("checkpoint directory already exists; expected a new name "
                              "(pass --name)", path=root / name)


def fit_baselines(split: Split, config: dict[str, Any]) -> dict[str, Any]:
    """Popularity and EASE (lambda chosen on validation NDCG@100), scored on the test users."""
    popularity = baselines.fit_popularity(split.train)
    entries: dict[str, Any] = {"popularity": {"test": score_holdout(popularity, split.test)}}

    lambdas = config["baselines"]["ease_lambdas"]
    if lambdas:
        k = min(100, split.n_items)
        selection = baselines.select_ease_lambda(split.train, split.validation, lambdas, k=k)
        entries["ease"] = {"lambda": selection.lam,
                           "validation_grid": {f"{lam:g}": v for lam, v in selection.ndcg.items()},
                           "test": score_holdout(selection.model, split.test)}
    return entries


def evaluate_checkpoint(checkpoint: Checkpoint, dataset: Dataset | None = None) -> dict[str, Any]:
    """Recompute every model's and baseline's test metrics from the checkpoint and its data."""
    dataset = dataset or load_checkpoint_dataset(checkpoint)
    split = checkpoint_split(checkpoint, dataset)
    return {name: score_holdout(scorer, split.test)
            for name, scorer in checkpoint_scorers(checkpoint, split).items()}


def checkpoint_scorers(checkpoint: Checkpoint, split: Split) -> dict[str, Scorer]:
    """A checkpoint's models (primary first), popularity and EASE as scorers, by name.

    The baselines are refitted on the split's training rows; EASE with the penalty the
    manifest records, and not at all for a checkpoint trained without it.
    """
    primary = checkpoint.manifest["primary"]
    names = [primary, *(name for name in checkpoint.models if name != primary)]
    scorers: dict[str, Scorer] = {name: model_scorer(checkpoint.models[name]) for name in names}
    scorers["popularity"] = baselines.fit_popularity(split.train)
    ease = checkpoint.manifest.get("baselines", {}).get("ease")
    if ease:
        started = time.perf_counter()
        scorers["ease"] = baselines.fit_ease(split.train, float(ease["lambda"]))
        log.info("EASE refitted (lambda %g) in %.1f s", ease["lambda"],
                 time.perf_counter() - started)
    return scorers


def checkpoint_config(checkpoint: Checkpoint) -> dict[str, Any]:
    """The configuration a checkpoint was trained with, rebuilt from its manifest."""
    manifest = checkpoint.manifest
    training = dict(manifest["training"])
    model = training.pop("model")
    ease = manifest["baselines"].get("ease")
    return {
        "name": manifest["name"],
        "data": manifest["data"]["config"],
        "preprocessing": manifest["data"]["preprocessing"],
        "split": manifest["split"]["config"],
        "model": model,
        "train": training,
        "baselines": {"ease_lambdas": [ease["lambda"]] if ease else []},
    }


def configured_data_path(checkpoint: Checkpoint) -> Path:
    """Where a checkpoint's data is, wherever the command runs.

    An absolute path is taken as it is. A relative one is found from the checkpoint itself
    (``data.from_checkpoint``, recorded at training time), so a project can be moved or
    cloned; checkpoints without that entry fall back to the folder above ``checkpoints/``.
    """
    data = checkpoint.manifest["data"]
    path = Path(data["config"]["path"])
    if path.is_absolute():
        return path
    if "from_checkpoint" in data:
        return Path(os.path.normpath(checkpoint.path.resolve() / data["from_checkpoint"]))
    return path if path.exists() else checkpoint.path.resolve().parent.parent / path


def load_checkpoint_dataset(checkpoint: Checkpoint) -> Dataset:
    """Load the data a checkpoint names and refuse it if its fingerprint differs."""
    config = checkpoint_config(checkpoint)
    config["data"] = {**config["data"], "path": str(configured_data_path(checkpoint))}
    dataset = load_configured_dataset(config)
    if dataset.fingerprint != checkpoint.fingerprint:
        raise CheckpointError(
            f"data fingerprint {dataset.fingerprint[:12]} does not match the checkpoint's "
            f"{checkpoint.fingerprint[:12]}; expected the data it was trained on",
            path=dataset.source, field="fingerprint")
    return dataset


def checkpoint_split(checkpoint: Checkpoint, dataset: Dataset) -> Split:
    """Recompute a checkpoint's split and check that its items match the checkpoint's."""
    manifest = checkpoint.manifest
    split = configured_split(dataset, checkpoint_config(checkpoint))
    item_ids = [str(i) for i in dataset.item_ids[split.item_nums]]
    if item_ids != manifest["item_ids"]:
        raise CheckpointError(
            f"the split has {len(item_ids)} items but the checkpoint has "
            f"{len(manifest['item_ids'])} (or another order); expected the same items",
            path=dataset.source, field="item_ids")
    return split


def _validator(holdout: Holdout | None, device: str, batch_size: int) -> Callable[[MultVAE], float]:
    """Validation NDCG@100 of a model, the number early stopping follows."""
    if holdout is None:
        raise CheckpointError("the split has no validation users; expected some to select "
                              "the best epoch", field="split")

    k = min(100, holdout.targets.shape[1])

    def validate(model: MultVAE) -> float:
        scores = score_holdout(model_scorer(model, device), holdout, (k,), batch_size)
        return scores[f"ndcg@{k}"]

    return validate


def _data_entry(dataset: Dataset, config: dict[str, Any], target: Path) -> dict[str, Any]:
    """The manifest's data entry; ``target`` is the checkpoint directory about to be written."""
    source = Path(config["data"]["path"]).resolve()
    return {
        "config": config["data"],
        "from_checkpoint": os.path.relpath(source, target.resolve()),
        "source": dataset.source,
        "preprocessing": config["preprocessing"],
        "fingerprint": dataset.fingerprint,
        "titles_source": dataset.titles_source,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_interactions": len(dataset.interactions),
        "has_timestamps": dataset.has_timestamps,
    }
