"""Multi-VAE and Multi-DAE (Liang et al., WWW 2018) in plain PyTorch.

Both models read a batch of users as a sparse CSR tensor (users x items) and never make it
dense: the first layer is a sparse-dense product, and the multinomial log-likelihood is
gathered at the batch's non-zero entries only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import RecsysError

# Sparse CSR tensors are stable for the few operations used here (mm, values, indices).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

ModelKind = Literal["multvae", "multdae"]
MODEL_KINDS: tuple[str, ...] = ("multvae", "multdae")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Multi-VAE (I-600-200-600-I) or Multi-DAE (I-200-I).

    Attributes
    ----------
    kind
        ``"multvae"`` or ``"multdae"``.
    n_items
        Width of the input and output layers.
    hidden_dims
        Widths of the encoder's hidden layers; the decoder mirrors them. The paper's Multi-VAE
        has ``(600,)``; its Multi-DAE has none.
    latent_dim
        Width of the bottleneck (200 in the paper for both models).
    dropout
        Dropout probability on the normalised input.
    """

    kind: ModelKind
    n_items: int
    hidden_dims: tuple[int, ...] = (600,)
    latent_dim: int = 200
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise RecsysError(f"expected one of {', '.join(MODEL_KINDS)}, got {self.kind!r}",
                              field="model.kind")
        if self.latent_dim < 1 or self.n_items < 1:
            raise RecsysError(f"expected positive sizes, got latent_dim={self.latent_dim} "
                              f"and n_items={self.n_items}", field="model")
        if not 0.0 <= self.dropout < 1.0:
            raise RecsysError(f"expected a probability in [0, 1), got {self.dropout}",
                              field="model.dropout")
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden_dims": list(self.hidden_dims)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        return cls(**{**values, "hidden_dims": tuple(values.get("hidden_dims", ()))})


class SparseLinear(nn.Module):
    """A linear layer whose input is a sparse CSR batch: ``x @ weight + bias``.

    ``weight`` is stored as (in_features x out_features) so that the sparse-dense product
    needs no transpose.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        _xavier_normal(self.weight, in_features, out_features)
        nn.init.normal_(self.bias, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in) sparse CSR -> (batch, out) dense
        return _SparseDenseProduct.apply(x, self.weight) + self.bias


class _SparseDenseProduct(torch.autograd.Function):
    """``x @ weight`` for a sparse CSR ``x`` (batch x in) that needs no gradient.

    Autograd's own backward for a sparse-dense product transposes ``x`` in torch; on the CPU
    the weight gradient ``x^T @ grad`` (in x out) comes from SciPy instead, whose CSR
    transpose is one cheap counting pass. Other devices keep autograd's backward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.sparse.mm(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None
        if grad.device.type != "cpu":
            return None, _autograd_weight_grad(x, weight, grad)

        # grad: (batch, out); x^T is (in, batch), so the product is (in, out).
        transposed = _scipy_csr(x).T.tocsr()
        product = torch.from_numpy(transposed @ grad.detach().numpy())
        return None, product.to(weight.dtype)


def _autograd_weight_grad(x: torch.Tensor, weight: torch.Tensor,
                          grad: torch.Tensor) -> torch.Tensor:
    """Autograd's own gradient of ``x @ weight`` with respect to ``weight`` (in x out)."""
    with torch.enable_grad():
        leaf = weight.detach().requires_grad_(True)
        (weight_grad,) = torch.autograd.grad(torch.sparse.mm(x, leaf), leaf, grad)
    return weight_grad


def _scipy_csr(x: torch.Tensor) -> sp.csr_matrix:
    """A SciPy view of a CPU sparse CSR tensor, sharing its index and value arrays."""
    return sp.csr_matrix(
        (x.values().numpy(), x.col_indices().numpy(), x.crow_indices().numpy()),
        shape=tuple(x.shape),
    )


@dataclass
class Output:
    """What a forward pass returns: logits over items, and the encoder's Gaussian if any."""

    logits: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class MultVAE(nn.Module):
    """The Multi-VAE and, with ``kind="multdae"``, the Multi-DAE.

    The encoder maps the L2-normalised, dropped-out input to a Gaussian (mu, log-variance);
    training samples ``z = mu + sigma * eps`` with unit-variance ``eps``; evaluation uses
    ``z = mu``. The Multi-DAE skips the Gaussian: its code is deterministic.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        variational = config.kind == "multvae"

        # Encoder: items -> hidden... -> 2 x latent (mu and logvar), or -> latent for the DAE.
        widths = [config.n_items, *config.hidden_dims, config.latent_dim * (1 + variational)]
        self.input_layer = SparseLinear(widths[0], widths[1])
        self.encoder = nn.ModuleList(
            _linear(a, b) for a, b in pairwise(widths[1:])
        )

        # Decoder mirrors the encoder: latent -> hidden... -> items.
        back = [config.latent_dim, *reversed(config.hidden_dims), config.n_items]
        self.decoder = nn.ModuleList(
            _linear(a, b) for a, b in pairwise(back)
        )

    @property
    def variational(self) -> bool:
        return self.config.kind == "multvae"

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Map a sparse batch to (mu, logvar); the DAE gives (code, None)."""
        # Normalise each user to unit L2 norm, then drop input entries (training only).
        x = _drop_and_normalise(x, self.config.dropout if self.training else 0.0)

        # tanh between layers; the DAE's code is squashed too, the VAE's Gaussian is not.
        h = self.input_layer(x)
        for layer in self.encoder:
            h = layer(torch.tanh(h))
        if not self.variational:
            return torch.tanh(h), None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent codes (batch x latent) to item logits (batch x items)."""
        h = z
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            if i < len(self.decoder) - 1:
                h = torch.tanh(h)
        return h

    def forward(self, x: torch.Tensor) -> Output:
        mu, logvar = self.encode(x)
        z = mu
        if self.training and logvar is not None:
            # Reparameterisation: z = mu + sigma * eps with eps ~ N(0, I).
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return Output(self.decode(z), mu, logvar)


def multinomial_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over users of ``-sum_i x_ui log softmax(logits_u)_i``, gathered at x's non-zeros.

    ``logits`` is (batch x items) dense, ``x`` the same batch as a sparse CSR tensor.
    """
    log_probs = F.log_softmax(logits, dim=1)
    rows, cols, values = _csr_coordinates(x)
    picked = log_probs[rows, cols] * values
    return -picked.sum() / logits.shape[0]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over users of KL(N(mu, sigma^2) || N(0, I)), summed over latent dimensions."""
    return (0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1)).mean()


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for every user and latent dimension (batch x latent)."""
    return 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0)


def to_sparse_tensor(batch: sp.csr_matrix, device: str | torch.device = "cpu") -> torch.Tensor:
    """Turn a scipy CSR batch into a torch sparse CSR float32 tensor on ``device``."""
    batch = batch.tocsr()
    return torch.sparse_csr_tensor(
        torch.from_numpy(batch.indptr.astype(np.int64)),
        torch.from_numpy(batch.indices.astype(np.int64)),
        torch.from_numpy(batch.data.astype(np.float32)),
        size=batch.shape,
        device=device,
        check_invariants=False,
    )


def _drop_and_normalise(x: torch.Tensor, dropout: float) -> torch.Tensor:
    """L2-normalise each row of a sparse CSR batch, then apply dropout to its entries.

    The order follows the paper's code: normalise first, then drop (with rescaling by
    ``1 / (1 - dropout)``), so a dropped input keeps its expected value.
    """
    crow = x.crow_indices()
    col = x.col_indices()
    values = x.values()
    counts = crow[1:] - crow[:-1]
    rows = torch.repeat_interleave(torch.arange(len(counts), device=values.device), counts)

    # Row norms from the non-zeros only; empty rows stay empty.
    squares = torch.zeros(len(counts), device=values.device).index_add_(0, rows, values**2)
    values = values / squares.sqrt().clamp_min(1e-12)[rows]
    if dropout > 0.0:
        values = F.dropout(values, p=dropout, training=True)
    return torch.sparse_csr_tensor(crow, col, values, size=x.shape, check_invariants=False)


def _csr_coordinates(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row index, column index and value of every non-zero of a sparse CSR tensor."""
    crow = x.crow_indices()
    counts = crow[1:] - crow[:-1]
    rows = torch.repeat_interleave(torch.arange(len(counts), device=crow.device), counts)
    return rows, x.col_indices(), x.values()


def _linear(width_in: int, width_out: int) -> nn.Linear:
    """A dense layer initialised like the paper's code (Xavier weights, small normal bias)."""
    layer = nn.Linear(width_in, width_out)
    nn.init.xavier_normal_(layer.weight)
    nn.init.normal_(layer.bias, std=0.001)
    return layer


def _xavier_normal(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    with torch.no_grad():
        weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
