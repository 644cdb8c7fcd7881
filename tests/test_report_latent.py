"""The latent-space chapter's numbers against hand-worked cases and slow references, its charts
as specs and SVG, their size at 150k users, and the refusal of a one-dimensional latent space."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import altair as alt
import numpy as np
import pytest
import scipy.stats
import torch
import vl_convert as vlc

from recsys.checkpoint import load_checkpoint, save_checkpoint
from recsys.errors import RecsysError
from recsys.model import ModelConfig, MultVAE
from recsys.report import binning, charts, latent_charts, prepare
from recsys.report.precompute import Artifacts

REPO = Path(__file__).resolve().parents[1]
MAX_PAGE_BYTES = 1_500_000


def latent_artifacts(
    mu: np.ndarray, logvar: np.ndarray | None = None, n_visible: np.ndarray | None = None
) -> Artifacts:
    """Artifacts holding the given Gaussians; what the latent chapter does not read is empty."""
    n_users = len(mu)
    return Artifacts(
        user_nums=np.arange(n_users),
        group=np.zeros(n_users, dtype=np.int8),
        n_visible=np.arange(1, n_users + 1) if n_visible is None else n_visible,
        mu=mu.astype(np.float32),
        logvar=np.zeros_like(mu, np.float32) if logvar is None else logvar.astype(np.float32),
        top_items=np.zeros((n_users, 1), np.int32),
        top_probs=np.zeros((n_users, 1), np.float32),
        entropy=np.zeros(n_users, np.float32),
        mean_probs=np.ones(4) / 4,
    )


def random_artifacts(n_users: int, latent: int, seed: int = 0) -> Artifacts:
    """Users whose dimensions have falling spreads and whose sigma shrinks with activity."""
    rng = np.random.default_rng(seed)
    n_visible = np.clip(rng.lognormal(3.0, 1.0, n_users), 1, 5000).astype(np.int64)
    scales = np.linspace(1.5, 0.01, latent, dtype=np.float32)
    mu = rng.standard_normal((n_users, latent), dtype=np.float32) * scales
    logvar = (rng.normal(-1.0, 0.3, (n_users, latent))
              - 0.2 * np.log(n_visible)[:, None]).astype(np.float32)
    return latent_artifacts(mu, logvar, n_visible)


def compile_svg(chart: alt.TopLevelMixin) -> str:
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=charts.vegalite_version())


def spec_bytes(chart: alt.TopLevelMixin) -> int:
    return len(json.dumps(chart.to_dict()))


def dataset_rows(chart: alt.TopLevelMixin) -> list[int]:
    return [len(rows) for rows in chart.to_dict().get("datasets", {}).values()]


# --- KL per dimension -------------------------------------------------------------------------


def test_kl_by_dimension_matches_a_hand_worked_case() -> None:
    # KL = (-logvar + exp(logvar) + mu^2 - 1) / 2 per user and dimension:
    # user 1: mu = (0, 1), sigma = (1, 1) -> (0, 1/2)
    # user 2: mu = (2, 0), sigma = (1, 2) -> (2, (3 - ln 4) / 2)
    mu = np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    logvar = np.array([[0.0, 0.0], [0.0, math.log(4.0)]], dtype=np.float32)

    kl = latent_charts.kl_by_dimension(mu, logvar)

    assert kl == pytest.approx([1.0, (0.5 + (3 - math.log(4.0)) / 2) / 2], rel=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 1000])
def test_kl_by_dimension_matches_a_slow_reference_in_any_batch_size(batch_size: int) -> None:
    artifacts = random_artifacts(23, 5)

    kl = latent_charts.kl_by_dimension(artifacts.mu, artifacts.logvar, batch_size=batch_size)

    # One user and one dimension at a time, in float64.
    slow = [
        sum(0.5 * (-float(lv) + math.exp(float(lv)) + float(m) ** 2 - 1.0)
            for m, lv in zip(artifacts.mu[:, d], artifacts.logvar[:, d], strict=True)) / 23
        for d in range(5)
    ]
    assert kl == pytest.approx(slow, rel=1e-5)


def test_kl_order_puts_the_largest_first_and_keeps_ties_in_index_order() -> None:
    assert list(latent_charts.kl_order(np.array([0.1, 0.5, 0.1, 0.9]))) == [3, 1, 0, 2]


def test_a_prior_matching_encoder_has_no_active_dimension() -> None:
    artifacts = latent_artifacts(np.zeros((10, 3)))

    frame = latent_charts.dimension_frame(artifacts)
    text = latent_charts.active_sentence(artifacts).data

    assert (frame["kl"] == 0).all()
    assert not frame["active"].any()
    assert text.startswith("None of the 3 dimensions is active")


def test_active_dimensions_are_counted_against_the_threshold() -> None:
    # Dimension 1 carries KL = mu^2 / 2 = 0.5 on average; dimension 0 carries 0.005.
    mu = np.array([[0.1, 1.0], [-0.1, -1.0]])

    frame = latent_charts.dimension_frame(latent_artifacts(mu))
    text = latent_charts.active_sentence(latent_artifacts(mu), threshold=0.01).data

    assert list(frame["dimension"]) == [1, 0]
    assert list(frame["kl"]) == pytest.approx([0.5, 0.005])
    assert list(frame["active"]) == [True, False]
    assert text.startswith("1 of the 2 dimensions are active, with a mean KL above 0.01 nats")
    assert "adds up to 0.5 nats per user" in text


def test_dimension_frame_quantiles_follow_the_kl_order() -> None:
    artifacts = random_artifacts(400, 6, seed=3)

    frame = latent_charts.dimension_frame(artifacts)

    assert list(frame["rank"]) == [1, 2, 3, 4, 5, 6]
    assert frame["kl"].is_monotonic_decreasing
    for row in frame.itertuples():
        column = artifacts.mu[:, row.dimension]
        assert row.q05 == pytest.approx(np.quantile(column, 0.05), rel=1e-3, abs=1e-6)
        assert row.q50 == pytest.approx(np.median(column), rel=1e-3, abs=1e-6)
        assert row.sd == pytest.approx(column.std(), rel=1e-3)
        assert row.q05 <= row.q25 <= row.q50 <= row.q75 <= row.q95


# --- principal components ---------------------------------------------------------------------


def test_the_prior_lines_are_the_standard_normal_quantiles() -> None:
    for level, z in latent_charts.PRIOR_Z.items():
        assert z == pytest.approx(scipy.stats.norm.ppf(level), abs=1e-4)


def test_principal_components_order_directions_by_explained_variance() -> None:
    # Standard deviations 3, 2 and 1 along the axes of a random rotation.
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    points = rng.standard_normal((20_000, 3)) * [1.0, 3.0, 2.0]
    mu = points @ rotation.T

    projection = latent_charts.principal_components(mu)

    assert projection.explained == pytest.approx([9 / 14, 4 / 14, 1 / 14], abs=0.01)
    assert projection.explained.sum() == pytest.approx(1.0)
    assert projection.coordinates.shape == (20_000, 2)
    assert projection.coordinates.var(axis=0, ddof=1) == pytest.approx([9.0, 4.0], rel=0.05)


def test_principal_components_match_a_singular_value_decomposition() -> None:
    mu = random_artifacts(300, 8, seed=5).mu.astype(np.float64)

    projection = latent_charts.principal_components(mu)

    centred = mu - mu.mean(axis=0)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    assert projection.explained == pytest.approx(singular**2 / (singular**2).sum(), abs=1e-9)
    # Components are defined up to sign.
    for k in range(2):
        expected = left[:, k] * singular[k]
        sign = np.sign(expected @ projection.coordinates[:, k])
        assert projection.coordinates[:, k] == pytest.approx(sign * expected, abs=1e-6)


def test_principal_components_have_a_fixed_sign() -> None:
    mu = random_artifacts(200, 4, seed=1).mu

    first = latent_charts.principal_components(mu).coordinates
    flipped = latent_charts.principal_components(-mu).coordinates

    # The signs come from the covariance alone, which negating every mean leaves unchanged.
    assert flipped == pytest.approx(-first, abs=1e-5)
    assert latent_charts.principal_components(mu.copy()).coordinates == pytest.approx(first)


# --- densities --------------------------------------------------------------------------------


def test_the_aggregate_of_standard_normals_is_the_prior() -> None:
    z = np.linspace(-4, 4, 81)

    density = latent_charts.aggregate_density(z, np.zeros(50), np.ones(50), batch_size=7)

    assert density == pytest.approx(latent_charts.normal_density(z))
    assert latent_charts.normal_density(np.array([0.0]))[0] == pytest.approx(
        1 / math.sqrt(2 * math.pi))


def test_aggregate_density_matches_a_slow_mixture_and_integrates_to_one() -> None:
    rng = np.random.default_rng(2)
    mu, sigma = rng.normal(0, 1, 30), rng.uniform(0.3, 1.2, 30)
    z = np.linspace(-8, 8, 1601)

    density = latent_charts.aggregate_density(z, mu, sigma, batch_size=4)

    slow = [sum(math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
                for m, s in zip(mu, sigma, strict=True)) / 30 for x in z[::100]]
    assert density[::100] == pytest.approx(slow, rel=1e-9)
    assert np.trapezoid(density, z) == pytest.approx(1.0, abs=1e-6)


def test_density_frames_cover_the_two_leading_dimensions() -> None:
    artifacts = random_artifacts(500, 5, seed=4)
    leading = latent_charts.kl_order(
        latent_charts.kl_by_dimension(artifacts.mu, artifacts.logvar))[:2]

    curves, bars = latent_charts.density_frames(artifacts)

    panels = list(curves["panel"].unique())
    assert [panel.split()[1] for panel in panels] == [str(d) for d in leading]
    assert set(curves["curve"]) == {"aggregate posterior", "prior N(0, 1)"}
    assert len(curves) == 2 * 2 * latent_charts.DENSITY_POINTS
    # The histogram of mu is a density: its bars have unit area.
    for _, histogram in bars.groupby("panel"):
        area = ((histogram["end"] - histogram["start"]) * histogram["density"]).sum()
        assert area == pytest.approx(1.0, abs=0.01)


# --- the projection and the charts ------------------------------------------------------------


def test_projection_frame_has_a_row_per_user_or_a_grid_of_cells() -> None:
    artifacts = random_artifacts(1000, 6)

    points = latent_charts.projection_frame(artifacts, max_points=1000)
    cells = latent_charts.projection_frame(artifacts, max_points=999, bins=10)

    assert len(points) == 1000
    assert set(points.columns) == {"pc1", "pc2", "interactions", "sigma", "group"}
    assert len(cells) <= 100
    assert cells["count"].sum() == 1000
    assert (cells["x_start"] < cells["x_end"]).all()


def test_projection_cells_hold_the_median_activity_of_their_users() -> None:
    # Two points far apart on a line: three users of activity 1-3 at one, two of 100 at the
    # other. The second component has no variance, so the grid has a single row.
    mu = np.array([[-5.0, 1.0], [-5.0, 1.0], [-5.0, 1.0], [5.0, 1.0], [5.0, 1.0]])
    artifacts = latent_artifacts(mu, n_visible=np.array([1, 2, 3, 100, 100]))

    cells = latent_charts.projection_frame(artifacts, max_points=0, bins=2)

    assert sorted(cells["interactions"]) == [2, 100]
    assert sorted(cells["count"]) == [2, 3]


@pytest.mark.parametrize("max_points", [10_000, 50])
@pytest.mark.parametrize("builder", ["projection_chart", "dimension_chart", "kl_chart",
                                     "density_chart"])
def test_latent_charts_compile_to_svg(builder: str, max_points: int) -> None:
    artifacts = random_artifacts(300, 7)
    if builder == "projection_chart":
        chart = latent_charts.projection_chart(artifacts, max_points=max_points)
    else:
        chart = getattr(latent_charts, builder)(artifacts)

    assert chart.to_dict()["$schema"].endswith(".json")
    assert compile_svg(chart).startswith("<svg")


def test_sentences_state_the_computed_numbers() -> None:
    artifacts = random_artifacts(400, 6, seed=9)
    explained = latent_charts.principal_components(artifacts.mu).explained

    pca = latent_charts.pca_sentence(artifacts).data
    activity = latent_charts.activity_sentence(artifacts).data
    density = latent_charts.density_sentence(artifacts).data

    assert f"hold {explained[0] * 100:.0f}%" in pca
    assert "of the 6 components" in pca
    # Sigma shrinks with activity by construction.
    assert "read is -" in activity
    assert density.count("aggregate posterior has a variance of") == 2


# --- a latent space too small -----------------------------------------------------------------


def one_dimensional_checkpoint(root: Path) -> Path:
    """A checkpoint (untrained weights) whose Multi-VAE has a single latent dimension."""
    model = MultVAE(ModelConfig("multvae", n_items=12, hidden_dims=(4,), latent_dim=1))
    manifest = {"created_at": "2026-01-01T00:00:00+00:00", "data": {"fingerprint": "0"},
                "split": {}, "item_ids": [], "primary": "multvae",
                "models": {"multvae": {"config": model.config.to_dict()}}}
    return save_checkpoint(root / "checkpoints", "flat", {"multvae": model}, manifest)


def test_a_one_dimensional_latent_space_fails_with_one_line(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(one_dimensional_checkpoint(tmp_path))

    with pytest.raises(RecsysError) as raised:
        latent_charts.check_latent_size(checkpoint)

    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{checkpoint.path}: model.latent_dim: expected >= 2")
    assert message.endswith("got 1")


def test_chart_builders_refuse_a_one_dimensional_latent_space() -> None:
    artifacts = latent_artifacts(np.zeros((5, 1)))

    for builder in (latent_charts.projection_chart, latent_charts.dimension_chart,
                    latent_charts.density_chart):
        with pytest.raises(RecsysError, match=r"model\.latent_dim: expected users x latent"):
            builder(artifacts)


@pytest.mark.slow
def test_the_build_stops_at_a_one_dimensional_latent_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RECSYS_CHECKPOINT", raising=False)
    monkeypatch.delenv("QUARTO_PROJECT_ROOT", raising=False)
    root = tmp_path / "book"
    (root / "report").mkdir(parents=True)
    shutil.copy(REPO / "_quarto.yml", root / "_quarto.yml")
    shutil.copy(REPO / "report" / "latent.qmd", root / "report" / "latent.qmd")
    checkpoint = one_dimensional_checkpoint(root)

    # The pre-render step refuses it in one line, before any chapter runs.
    assert prepare.main(["--root", str(root)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [f"{checkpoint.resolve()}: model.latent_dim: latent_dim is 1 "
                                  "for multvae; the latent-space chapter expects at least 2"]

    # The chapter itself checks too, for a checkpoint that bypassed the pre-render step.
    with pytest.raises(RecsysError, match=r"model\.latent_dim: expected >= 2"):
        latent_charts.check_latent_size(load_checkpoint(checkpoint))


# --- size at scale ----------------------------------------------------------------------------


@pytest.mark.slow
def test_latent_charts_stay_small_at_150k_users() -> None:
    artifacts = random_artifacts(150_000, 64)

    page = [latent_charts.projection_chart(artifacts), latent_charts.dimension_chart(artifacts),
            latent_charts.kl_chart(artifacts), latent_charts.density_chart(artifacts)]

    # to_dict() enforces Altair's 5000-row limit; the grid keeps at most 40 x 40 cells.
    assert all(rows <= 5000 for chart in page for rows in dataset_rows(chart))
    assert max(dataset_rows(page[0])) <= binning.GRID_BINS**2
    assert sum(map(spec_bytes, page)) < MAX_PAGE_BYTES / 2
    assert compile_svg(page[0]).startswith("<svg")


# --- binning ----------------------------------------------------------------------------------


def test_grid_cells_count_every_pair_once_and_keep_medians() -> None:
    x = np.array([1.0, 1.0, 2.0, 10.0, 100.0])
    y = np.array([0.0, 0.1, 0.0, 1.0, 1.0])

    cells = binning.grid_cells(x, y, bins=2, log_x=True, medians={"v": np.arange(5.0)})

    # log10(x) spans [0, 2]: 1, 1 and 2 fall left of 10, and 10 and 100 on the right.
    assert cells["count"].sum() == 5
    assert cells.to_dict("records") == [
        {"x_start": 1.0, "x_end": 10.0, "y_start": 0.0, "y_end": 0.5, "count": 3, "v": 1.0},
        {"x_start": 10.0, "x_end": 100.0, "y_start": 0.5, "y_end": 1.0, "count": 2, "v": 3.5},
    ]


def test_a_constant_variable_still_gets_a_bin_of_some_width() -> None:
    cells = binning.grid_cells(np.ones(4), np.arange(4.0), bins=3)

    assert cells["count"].sum() == 4
    assert (cells["x_end"] > cells["x_start"]).all()


@pytest.mark.parametrize(
    ("value", "rounded"),
    [(123456.0, 123500.0), (0.000123456, 0.0001235), (-2.71828, -2.718), (0.0, 0.0)],
)
def test_significant_keeps_four_digits(value: float, rounded: float) -> None:
    assert float(binning.significant(value)) == pytest.approx(rounded, rel=1e-12)


def test_the_model_sentence_names_the_latent_width(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MultVAE(ModelConfig("multvae", n_items=12, hidden_dims=(4,), latent_dim=3))
    manifest = {"created_at": "2026-01-01T00:00:00+00:00", "data": {"fingerprint": "0"},
                "split": {}, "item_ids": [], "primary": "multvae",
                "models": {"multvae": {"config": model.config.to_dict()}}}
    checkpoint = load_checkpoint(save_checkpoint(tmp_path, "c", {"multvae": model}, manifest))

    text = latent_charts.model_sentence(checkpoint, random_artifacts(7, 3)).data

    assert latent_charts.check_latent_size(checkpoint) == 3
    assert "each of the 7 users" in text
    assert "3-dimensional latent space" in text
