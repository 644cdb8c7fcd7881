"""Multi-VAE / Multi-DAE: shapes, the loss terms against dense references, the sparse input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import RecsysError
from recsys.model import (
    ModelConfig,
    MultVAE,
    SparseLinear,
    _drop_and_normalise,
    _SparseDenseProduct,
    kl_divergence,
    multinomial_nll,
    to_sparse_tensor,
)
from recsys.train import TrainSettings, build_model, train_model


def random_batch(n_users: int = 9, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    matrix = sp.random(n_users, n_items, density=0.2, format="csr", random_state=seed,
                       dtype=np.float32)
    matrix.data[:] = 1.0
    # Give every user at least one item, as real fold-in rows have.
    return (matrix + sp.eye(n_users, n_items, format="csr", dtype=np.float32)).sign().tocsr()


@pytest.mark.parametrize(("kind", "hidden", "n_layers"), [
    ("multvae", (600,), (1, 2)),
    ("multvae", (), (0, 1)),
    ("multdae", (), (0, 1)),
    ("multdae", (50,), (1, 2)),
])
def test_architecture_matches_the_config(kind: str, hidden: tuple[int, ...],
                                         n_layers: tuple[int, int]) -> None:
    model = MultVAE(ModelConfig(kind, 40, hidden, latent_dim=20))
    assert (len(model.encoder), len(model.decoder)) == n_layers
    output = model(to_sparse_tensor(random_batch()))
    assert output.logits.shape == (9, 40)
    assert output.mu.shape == (9, 20)
    assert (output.logvar is None) == (kind == "multdae")


def test_paper_architecture_has_the_papers_widths() -> None:
    model = MultVAE(ModelConfig("multvae", 1000))
    widths = [tuple(p.shape) for name, p in model.named_parameters() if "weight" in name]
    # I-600-200-600-I: the encoder's last layer outputs mu and logvar together.
    assert widths == [(1000, 600), (400, 600), (600, 200), (1000, 600)]


def test_sparse_input_layer_equals_a_dense_product() -> None:
    model = MultVAE(ModelConfig("multdae", 40, (), latent_dim=7)).eval()
    batch = random_batch()
    dense = torch.from_numpy(batch.toarray())
    normalised = dense / dense.norm(dim=1, keepdim=True)
    expected = torch.tanh(normalised @ model.input_layer.weight + model.input_layer.bias)
    code, _ = model.encode(to_sparse_tensor(batch))
    torch.testing.assert_close(code, expected)


def test_sparse_input_gradient_equals_the_dense_product_gradient() -> None:
    batch = random_batch(11, 30, seed=5)
    batch.data = np.random.default_rng(1).uniform(0.5, 2.0, batch.nnz).astype(np.float32)
    weight = torch.randn(30, 8, requires_grad=True)
    upstream = torch.randn(11, 8)

    layer = SparseLinear(30, 8)
    layer.weight = torch.nn.Parameter(weight.detach().clone())
    (layer(to_sparse_tensor(batch)) * upstream).sum().backward()

    dense = torch.from_numpy(batch.toarray())
    ((dense @ weight) * upstream).sum().backward()
    torch.testing.assert_close(layer.weight.grad, weight.grad)
    assert layer.bias.grad is not None


def test_sparse_input_gradient_passes_gradcheck() -> None:
    batch = to_sparse_tensor(random_batch(6, 12, seed=2)).to(torch.float64)
    weight = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)

    def product(w: torch.Tensor) -> torch.Tensor:
        return _SparseDenseProduct.apply(batch, w)

    assert torch.autograd.gradcheck(product, (weight,))


def test_normalisation_gives_unit_rows_and_dropout_rescales() -> None:
    batch = to_sparse_tensor(random_batch(50, 200, seed=3))
    plain = _drop_and_normalise(batch, 0.0).to_dense()
    torch.testing.assert_close(plain.norm(dim=1), torch.ones(50))

    torch.manual_seed(0)
    dropped = _drop_and_normalise(batch, 0.5).values()
    kept = dropped[dropped != 0]
    # Kept entries are doubled; about half are dropped.
    torch.testing.assert_close(kept, 2 * plain[plain != 0][dropped != 0])
    assert 0.4 < (dropped == 0).float().mean() < 0.6


def test_multinomial_nll_gradient_equals_the_dense_formulas_gradient() -> None:
    batch = random_batch()
    batch.data = np.random.default_rng(4).uniform(0.5, 2.0, batch.nnz).astype(np.float32)
    logits = torch.randn(9, 40, requires_grad=True)
    multinomial_nll(logits, to_sparse_tensor(batch)).backward()

    reference = logits.detach().clone().requires_grad_(True)
    dense = torch.from_numpy(batch.toarray())
    (-(torch.log_softmax(reference, dim=1) * dense).sum(dim=1).mean()).backward()
    torch.testing.assert_close(logits.grad, reference.grad)


def test_multinomial_nll_passes_gradcheck() -> None:
    batch = to_sparse_tensor(random_batch(5, 12, seed=6)).to(torch.float64)
    logits = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: multinomial_nll(z, batch), (logits,))


def test_multinomial_nll_equals_the_dense_formula() -> None:
    batch = random_batch()
    logits = torch.randn(9, 40)
    dense = torch.from_numpy(batch.toarray())
    expected = -(torch.log_softmax(logits, dim=1) * dense).sum(dim=1).mean()
    torch.testing.assert_close(multinomial_nll(logits, to_sparse_tensor(batch)), expected)


def test_kl_equals_torch_distributions() -> None:
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    posterior = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros(5, 3), torch.ones(5, 3))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)


def test_evaluation_uses_the_mean_and_training_samples() -> None:
    model = MultVAE(ModelConfig("multvae", 40, (16,), latent_dim=4, dropout=0.0))
    batch = to_sparse_tensor(random_batch())
    model.eval()
    torch.testing.assert_close(model(batch).logits, model(batch).logits)
    torch.testing.assert_close(model(batch).logits, model.decode(model.encode(batch)[0]))
    model.train()
    assert not torch.equal(model(batch).logits, model(batch).logits)


@pytest.mark.parametrize("bad", [
    {"kind": "vae"}, {"latent_dim": 0}, {"dropout": 1.0}, {"dropout": -0.1},
])
def test_bad_config_is_refused(bad: dict) -> None:
    values = {"kind": "multvae", "n_items": 10, **bad}
    with pytest.raises(RecsysError, match="model"):
        ModelConfig(**values)


def test_training_is_seeded_and_lowers_the_loss() -> None:
    user_items = random_batch(64, 30, seed=5)
    settings = TrainSettings(epochs=5, batch_size=16, patience=100, seed=3)

    def run() -> tuple[MultVAE, list[float]]:
        model = build_model(ModelConfig("multvae", 30, (16,), latent_dim=4), seed=3)
        epoch = iter(range(100))
        result = train_model(model, user_items, lambda m: float(next(epoch)), settings,
                             progress=False)
        return result.model, [r.nll for r in result.history]

    (first, losses), (second, _) = run(), run()
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert losses[-1] < losses[0]


def test_early_stopping_restores_the_best_epoch() -> None:
    user_items = random_batch(32, 30, seed=6)
    scores = iter([0.1, 0.5, 0.2, 0.3, 0.1, 0.0, 0.9])
    model = build_model(ModelConfig("multdae", 30, (), latent_dim=4), seed=0)
    snapshots = []

    def validate(m: MultVAE) -> float:
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(scores)

    result = train_model(model, user_items, validate,
                         TrainSettings(epochs=7, batch_size=8, patience=3), progress=False)
    assert result.best_epoch == 2
    assert result.stopped_early
    assert len(result.history) == 5
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][name])
