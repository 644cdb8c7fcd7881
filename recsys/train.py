"""The training loop: Adam over shuffled user batches, KL annealing, early stopping."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from recsys.model import ModelConfig, MultVAE, kl_divergence, multinomial_nll, to_sparse_tensor

log = logging.getLogger(__name__)

Validator = Callable[[MultVAE], float]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; defaults follow the paper.

    Attributes
    ----------
    epochs
        Upper bound on passes over the training users.
    batch_size
        Users per gradient step (500).
    lr, weight_decay
        Adam's learning rate (1e-3) and L2 weight decay (0).
    beta_cap
        The KL weight grows linearly per step up to this cap (0.2).
    anneal_steps
        Steps for the KL weight to go from 0 to 1 (so it reaches the cap after
        ``beta_cap * anneal_steps``); 0 means the number of steps in ``epochs`` epochs.
    patience
        Stop after this many epochs without a better validation NDCG@100.
    seed
        Seeds initialisation, shuffling, dropout and the reparameterisation noise.
    device
        ``"cpu"`` or ``"cuda"``.
    """

    epochs: int = 200
    batch_size: int = 500
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta_cap: float = 0.2
    anneal_steps: int = 0
    patience: int = 30
    seed: int = 0
    device: str = "cpu"


@dataclass
class EpochRecord:
    """One line of the training history."""

    epoch: int
    loss: float
    nll: float
    kl: float
    beta: float
    val_ndcg: float
    seconds: float


@dataclass
class TrainResult:
    """A trained model (at its best epoch) and how training went."""

    model: MultVAE
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def history_dicts(self) -> list[dict[str, float]]:
        return [asdict(record) for record in self.history]


def build_model(config: ModelConfig, seed: int, device: str = "cpu") -> MultVAE:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return MultVAE(config).to(device)


def train_model(
    model: MultVAE,
    user_items: sp.csr_matrix,
    validate: Validator,
    settings: TrainSettings,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on the rows of ``user_items`` (users x items CSR).

    ``validate`` scores the model in evaluation mode (validation NDCG@100) after every
    epoch; the weights of the best epoch are restored before returning.
    """
    generator = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    # The fused step updates each weight matrix in one pass instead of a dozen.
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr,
                                 weight_decay=settings.weight_decay, fused=True)
    n_batches = -(-user_items.shape[0] // settings.batch_size)
    anneal_steps = settings.anneal_steps or settings.epochs * n_batches

    result = TrainResult(model)
    best_score, best_state, step = -np.inf, copy.deepcopy(model.state_dict()), 0
    epochs = tqdm(range(1, settings.epochs + 1), desc=f"train {model.config.kind}",
                  disable=not progress, unit="epoch")
    for epoch in epochs:
        started = time.perf_counter()
        totals, step = _run_epoch(model, user_items, optimiser, generator, settings,
                                  step, anneal_steps)
        score = validate(model)
        record = EpochRecord(epoch, *totals, val_ndcg=score,
                             seconds=time.perf_counter() - started)
        result.history.append(record)
        log.info("%s epoch %d: loss %.3f, nll %.3f, kl %.3f, beta %.3f, val NDCG@100 %.4f, "
                 "%.1fs", model.config.kind, epoch, record.loss, record.nll, record.kl,
                 record.beta, score, record.seconds)
        epochs.set_postfix(loss=f"{record.loss:.1f}", ndcg=f"{score:.4f}")

        # Keep the best epoch's weights; stop when validation has not improved for a while.
        if score > best_score:
            best_score, best_state, result.best_epoch = score, copy.deepcopy(
                model.state_dict()), epoch
        elif epoch - result.best_epoch >= settings.patience:
            result.stopped_early = True
            log.info("stopping: no better validation NDCG@100 for %d epochs", settings.patience)
            break

    model.load_state_dict(best_state)
    model.eval()
    return result


def _run_epoch(
    model: MultVAE,
    user_items: sp.csr_matrix,
    optimiser: torch.optim.Optimizer,
    generator: np.random.Generator,
    settings: TrainSettings,
    step: int,
    anneal_steps: int,
) -> tuple[tuple[float, float, float, float], int]:
    """One pass over shuffled users; returns mean (loss, nll, kl, last beta) and the step."""
    model.train()
    order = generator.permutation(user_items.shape[0])
    sums = np.zeros(3)
    beta = 0.0
    for start in range(0, len(order), settings.batch_size):
        rows = np.sort(order[start:start + settings.batch_size])
        batch = to_sparse_tensor(user_items[rows], settings.device)

        # The KL weight grows linearly with the step count, up to its cap.
        beta = min(settings.beta_cap, step / anneal_steps) if model.variational else 0.0
        output = model(batch)
        nll = multinomial_nll(output.logits, batch)
        kl = (kl_divergence(output.mu, output.logvar) if output.logvar is not None
              else torch.zeros((), device=nll.device))
        loss = nll + beta * kl

        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        sums += np.array([loss.item(), nll.item(), kl.item()]) * len(rows)
    means = sums / len(order)
    return (float(means[0]), float(means[1]), float(means[2]), float(beta)), step
