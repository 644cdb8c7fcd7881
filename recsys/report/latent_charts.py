"""The latent-space chapter: where the encoder puts users, and how far from the prior.

The encoder maps each user to a Gaussian with mean ``mu`` and standard deviation ``sigma``
per latent dimension; the prior is N(0, 1) in every dimension. Everything here starts from
the per-user ``mu`` and ``logvar`` of :class:`~recsys.report.precompute.Artifacts` and is
reduced before it reaches a chart: per-dimension statistics have one row per dimension, the
projection is binned into a grid beyond :data:`SCATTER_MAX_USERS` users, and densities are
evaluated on a fixed grid of :data:`DENSITY_POINTS` values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import altair as alt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

from recsys.checkpoint import Checkpoint
from recsys.errors import RecsysError
from recsys.model import kl_per_dimension
from recsys.report.binning import GRID_BINS, grid_cells, histogram_frame, significant
from recsys.report.precompute import GROUP_NAMES, Artifacts
from recsys.report.statistics import spearman, strength
from recsys.report.tables import count, decimal, percent, sentence

MIN_LATENT_DIM: Final = 2
ACTIVE_KL: Final = 0.01  # nats; a dimension below it says next to nothing about the user
SCATTER_MAX_USERS: Final = 3000
LEADING_DIMS: Final = 2
DENSITY_POINTS: Final = 161
DENSITY_BINS: Final = 48
DENSITY_BATCH: Final = 20_000
KL_BATCH: Final = 50_000
KL_FLOOR: Final = 1e-6  # the log scale's floor; a KL of zero is drawn there
# The prior's 5%, 25%, 50%, 75% and 95% quantiles.
PRIOR_Z: Final = {0.05: -1.6449, 0.25: -0.6745, 0.5: 0.0, 0.75: 0.6745, 0.95: 1.6449}
# The symbols of the encoder's mean and standard deviation, in labels and sentences.
SIGMA: Final = "\N{GREEK SMALL LETTER SIGMA}"
WIDTH: Final = 560
PANEL: Final = 250
BAND_COLORS: Final = ("#c6dbef", "#6baed6", "#08519c", "#555555")
CURVE_COLORS: Final = ("#d9d9d9", "#2f6fab", "#555555")


# --- checks and per-dimension numbers ---------------------------------------------------------


def check_latent_size(checkpoint: Checkpoint) -> int:
    """The primary model's latent width; a :class:`RecsysError` when it is below 2.

    The chapter projects users onto a plane and compares two leading dimensions, which a
    one-dimensional latent space does not have. The message is one line naming the
    checkpoint and ``model.latent_dim``.
    """
    latent_dim = checkpoint.primary.config.latent_dim
    if latent_dim < MIN_LATENT_DIM:
        raise RecsysError(f"expected >= {MIN_LATENT_DIM} for the latent-space chapter, got "
                          f"{latent_dim}", path=checkpoint.path, field="model.latent_dim")
    return latent_dim


def _require_plane(mu: np.ndarray) -> None:
    """Refuse encoder means with fewer than two latent dimensions, naming the field."""
    if mu.ndim != 2 or mu.shape[1] < MIN_LATENT_DIM:
        raise RecsysError(f"expected users x latent means with latent_dim >= {MIN_LATENT_DIM}, "
                          f"got shape {mu.shape}", field="model.latent_dim")


def kl_by_dimension(
    mu: np.ndarray, logvar: np.ndarray, batch_size: int = KL_BATCH
) -> np.ndarray:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension, averaged over users.

    Parameters
    ----------
    mu, logvar
        The encoder's Gaussians, users x latent.
    batch_size
        Users summed at a time, which bounds the memory used.

    Returns
    -------
    numpy.ndarray
        Mean KL in nats, shape (latent,) float64.
    """
    total = np.zeros(mu.shape[1], dtype=np.float64)
    for start in range(0, len(mu), batch_size):
        rows = slice(start, start + batch_size)
        kl = kl_per_dimension(torch.from_numpy(mu[rows]), torch.from_numpy(logvar[rows]))
        total += kl.double().sum(dim=0).numpy()  # (latent,)
    return total / max(len(mu), 1)


def kl_order(kl: np.ndarray) -> np.ndarray:
    """Dimension indices by decreasing KL; ties keep index order."""
    return np.argsort(-kl, kind="stable")


@dataclass(frozen=True)
class Projection:
    """The encoder means projected onto their leading principal components.

    Attributes
    ----------
    coordinates
        users x components, the centred means in the components' basis.
    explained
        Share of the means' total variance along every principal direction, largest first,
        shape (latent,); sums to 1.
    """

    coordinates: np.ndarray
    explained: np.ndarray


def principal_components(mu: np.ndarray, n_components: int = 2) -> Projection:
    """PCA of the encoder means through the latent x latent covariance.

    The covariance is as small as the latent space whatever the number of users. Each
    component's sign is fixed so that its largest loading is positive, so the picture does
    not flip between runs.
    """
    _require_plane(mu)
    centred = mu.astype(np.float64) - mu.mean(axis=0)
    covariance = centred.T @ centred / max(len(mu) - 1, 1)  # (latent, latent)
    variances, directions = np.linalg.eigh(covariance)
    order = np.argsort(variances)[::-1]
    variances, directions = np.clip(variances[order], 0.0, None), directions[:, order]

    # Fix each direction's sign by its largest loading.
    largest = directions[np.argmax(np.abs(directions), axis=0), np.arange(directions.shape[1])]
    directions = directions * np.where(largest < 0, -1.0, 1.0)
    total = variances.sum()
    explained = variances / total if total > 0 else np.zeros_like(variances)
    return Projection(centred @ directions[:, :n_components], explained)


# --- the projection ---------------------------------------------------------------------------


def projection_frame(
    artifacts: Artifacts, max_points: int = SCATTER_MAX_USERS, bins: int = GRID_BINS
) -> pd.DataFrame:
    """Users on the first two principal components, with their activity and mean sigma.

    Up to ``max_points`` users give one row each (``pc1``, ``pc2``, ``interactions``,
    ``sigma``, ``group``); more are binned by :func:`~recsys.report.binning.grid_cells` into
    at most ``bins x bins`` cells holding the median activity and mean sigma of their users.
    """
    projection = principal_components(artifacts.mu)
    pc1, pc2 = projection.coordinates.T
    sigma = artifacts.sigma.mean(axis=1)
    if artifacts.n_users <= max_points:
        return pd.DataFrame({
            "pc1": significant(pc1), "pc2": significant(pc2),
            "interactions": artifacts.n_visible, "sigma": significant(sigma),
            "group": [GROUP_NAMES[int(code)] for code in artifacts.group],
        })
    return grid_cells(pc1, pc2, bins, medians={"interactions": artifacts.n_visible,
                                               "sigma": sigma})


def projection_chart(
    artifacts: Artifacts, max_points: int = SCATTER_MAX_USERS
) -> alt.HConcatChart:
    """Two maps of users on the first two principal components of mu.

    The left panel colours users by their number of visible interactions (log scale), the
    right by their mean sigma over dimensions. Beyond ``max_points`` users the maps show grid
    cells coloured by the median of their users.
    """
    frame = projection_frame(artifacts, max_points)
    explained = principal_components(artifacts.mu).explained
    binned = "count" in frame.columns
    x_title = f"First principal component ({percent(explained[0])} of the variance)"
    y_title = f"Second principal component ({percent(explained[1])})"
    subtitle = (f"{count(artifacts.n_users)} users binned into a grid; colour is the median of "
                "each cell" if binned else f"Each dot is one of {count(artifacts.n_users)} users")

    panels = []
    for field, title, scale in (
        ("interactions", "Interactions", alt.Scale(type="log", scheme="viridis")),
        ("sigma", f"Mean {SIGMA}", alt.Scale(scheme="plasma", reverse=True)),
    ):
        prefix = "median " if binned else ""
        tooltip = [alt.Tooltip("interactions:Q", format=",", title=f"{prefix}interactions"),
                   alt.Tooltip("sigma:Q", format=".3f", title=f"{prefix}mean {SIGMA}")]
        if binned:
            base = alt.Chart(frame).mark_rect().encode(
                alt.X("x_start:Q").title(x_title).scale(zero=False, nice=False),
                alt.X2("x_end:Q"),
                alt.Y("y_start:Q").title(y_title).scale(zero=False, nice=False),
                alt.Y2("y_end:Q"),
                tooltip=[alt.Tooltip("count:Q", format=",", title="users"), *tooltip],
            )
        else:
            base = alt.Chart(frame).mark_circle(size=22, opacity=0.8).encode(
                alt.X("pc1:Q").title(x_title).scale(zero=False),
                alt.Y("pc2:Q").title(y_title).scale(zero=False),
                tooltip=[alt.Tooltip("group:N"), *tooltip],
            )
        legend = alt.Legend(orient="bottom", direction="horizontal", gradientLength=160)
        panels.append(base.encode(alt.Color(f"{field}:Q").title(title).scale(scale)
                                  .legend(legend))
                      .properties(width=PANEL, height=PANEL))
    return (
        alt.hconcat(*panels, spacing=30)
        .resolve_scale(color="independent")
        .properties(title=alt.Title("Users on the two leading principal components of μ",
                                    subtitle=subtitle, anchor="start"))
    )


# --- per-dimension distributions and KL -------------------------------------------------------


def dimension_frame(artifacts: Artifacts) -> pd.DataFrame:
    """One row per latent dimension, in order of decreasing mean KL.

    Columns: ``rank`` (1 = largest KL), ``dimension`` (its index), ``kl`` (nats, mean over
    users), ``active`` (KL above :data:`ACTIVE_KL`), the mean and standard deviation of mu
    over users, its 5%, 25%, 50%, 75% and 95% quantiles (``q05`` ... ``q95``) and the mean
    sigma.
    """
    _require_plane(artifacts.mu)
    kl = kl_by_dimension(artifacts.mu, artifacts.logvar)
    order = kl_order(kl)
    mu = artifacts.mu[:, order]
    quantiles = np.quantile(mu, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)  # (5, latent)
    return pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "dimension": order,
        "kl": significant(kl[order]),
        "active": kl[order] > ACTIVE_KL,
        "mean": significant(mu.mean(axis=0)),
        "sd": significant(mu.std(axis=0)),
        **{name: significant(row) for name, row in
           zip(("q05", "q25", "q50", "q75", "q95"), quantiles, strict=True)},
        "sigma": significant(artifacts.sigma[:, order].mean(axis=0)),
    })


def dimension_chart(artifacts: Artifacts) -> alt.LayerChart:
    """Quantile bands of mu per dimension (ordered by KL) against the prior's quantiles."""
    frame = dimension_frame(artifacts)
    labels = ["μ, middle 90% of users", "μ, middle 50%", "μ, median",
              "prior N(0, 1): median, middle 50% and 90%"]
    color = alt.Color("band:N").title(None).scale(domain=labels, range=list(BAND_COLORS))
    x = (alt.X("rank:Q").title("Latent dimensions by mean KL (1 = largest)")
         .scale(domain=[0.5, len(frame) + 0.5], nice=False).axis(tickMinStep=1))
    tooltip = [alt.Tooltip("dimension:Q", title="dimension"),
               alt.Tooltip("kl:Q", format=".3g", title="mean KL (nats)"),
               alt.Tooltip("mean:Q", format=".3f", title="mean of μ"),
               alt.Tooltip("sd:Q", format=".3f", title="sd of μ"),
               alt.Tooltip("q05:Q", format=".3f", title="μ, 5%"),
               alt.Tooltip("q95:Q", format=".3f", title="μ, 95%"),
               alt.Tooltip("sigma:Q", format=".3f", title=f"mean {SIGMA}")]

    def band(chart: alt.Chart, label: str) -> alt.Chart:
        return chart.transform_calculate(band=json.dumps(label)).encode(color)

    # Dimensions are categories ordered by KL, so each gets its own marks and no line joins them.
    thick = float(np.clip(0.8 * WIDTH / len(frame), 1.0, 12.0))
    base = alt.Chart(frame).encode(x, tooltip=tooltip)
    layers = [
        band(base.mark_rule(strokeWidth=max(1.0, thick / 2)), labels[0])
        .encode(alt.Y("q05:Q").title("μ across users"), alt.Y2("q95:Q")),
        band(base.mark_bar(size=thick), labels[1]).encode(alt.Y("q25:Q"), alt.Y2("q75:Q")),
        band(base.mark_tick(size=thick + 1, thickness=1.5), labels[2]).encode(alt.Y("q50:Q")),
    ]

    # The prior's 5%, 25%, median, 75% and 95% as dashed lines across every dimension.
    prior = alt.Chart(pd.DataFrame({"z": list(PRIOR_Z.values())}))
    layers.append(band(prior.mark_rule(strokeDash=[4, 3], strokeWidth=1), labels[3])
                  .encode(alt.Y("z:Q")))
    return (
        alt.layer(*layers)
        .properties(width=WIDTH, height=260)
        .configure_legend(orient="top", direction="horizontal", columns=2, labelLimit=320)
    )


def kl_chart(artifacts: Artifacts, threshold: float = ACTIVE_KL) -> alt.LayerChart:
    """Mean KL per dimension, largest first, on a log scale, with the activity threshold."""
    frame = dimension_frame(artifacts)[["rank", "dimension", "kl", "active"]]
    states = [f"active (above {threshold:g} nats)", f"inactive ({threshold:g} nats or below)",
              "threshold"]
    frame["shown"] = np.maximum(frame["kl"], KL_FLOOR)
    frame["state"] = np.where(frame.pop("active"), states[0], states[1])
    low = min(float(frame["shown"].min()), threshold) / 2
    high = max(float(frame["shown"].max()), threshold) * 2
    color = (alt.Color("state:N").title(None)
             .scale(domain=states, range=["#2f6fab", "#c5c5c5", "#e45756"])
             .legend(orient="top", direction="horizontal"))
    # Sorted by KL, the dimensions form a falling curve; a bar's length means nothing on a
    # log scale, so each dimension is a point on it.
    base = alt.Chart(frame).encode(
        alt.X("rank:Q").title("Latent dimensions by mean KL (1 = largest)")
        .scale(domain=[0.5, len(frame) + 0.5], nice=False).axis(tickMinStep=1),
        alt.Y("shown:Q").title("Mean KL from the prior (nats, log scale)")
        .scale(type="log", domain=[low, high], nice=False),
    )
    curve = base.mark_line(color="#9e9e9e", strokeWidth=1)
    points = base.mark_circle(size=float(np.clip(3000 / len(frame), 12, 60)), opacity=1) \
        .encode(color, tooltip=[alt.Tooltip("rank:Q", title="rank"), alt.Tooltip("dimension:Q"),
                                alt.Tooltip("kl:Q", format=".3g", title="mean KL (nats)")])
    rule = alt.Chart(pd.DataFrame({"y": [threshold], "state": [states[2]]})) \
        .mark_rule(strokeDash=[4, 3], strokeWidth=1.5) \
        .encode(alt.Y("y:Q"), color, tooltip=[alt.Tooltip("y:Q", title="threshold (nats)")])
    return alt.layer(curve, points, rule).properties(width=WIDTH, height=240)


# --- the leading dimensions' densities --------------------------------------------------------


def normal_density(z: np.ndarray, mean: np.ndarray | float = 0.0,
                   sd: np.ndarray | float = 1.0) -> np.ndarray:
    """The N(mean, sd^2) density at ``z`` (broadcasting)."""
    return np.exp(-0.5 * ((z - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def aggregate_density(
    z: np.ndarray, mu: np.ndarray, sigma: np.ndarray, batch_size: int = DENSITY_BATCH
) -> np.ndarray:
    """The aggregate posterior of one dimension at ``z``: the mean over users of their Gaussians.

    Parameters
    ----------
    z
        Points to evaluate, shape (points,).
    mu, sigma
        Every user's mean and standard deviation in the dimension, shape (users,).

    Returns
    -------
    numpy.ndarray
        Density at each point, shape (points,) float64; it integrates to 1 over the line.
    """
    total = np.zeros(len(z), dtype=np.float64)
    for start in range(0, len(mu), batch_size):
        rows = slice(start, start + batch_size)
        means = mu[rows, None].astype(np.float64)  # (batch, 1)
        sds = sigma[rows, None].astype(np.float64)
        total += normal_density(z[None, :], means, sds).sum(axis=0)  # (points,)
    return total / max(len(mu), 1)


def density_frames(
    artifacts: Artifacts, n_dims: int = LEADING_DIMS, points: int = DENSITY_POINTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Densities of the ``n_dims`` dimensions of largest KL, against the prior's.

    Returns two frames, both with a ``panel`` label per dimension. The curves (``z``,
    ``density``, ``curve``) are the aggregate posterior and the N(0, 1) prior on a grid of
    ``points`` values wide enough for the prior and nearly every mu; the histogram (``start``,
    ``end``, ``density``, ``curve``) is that of mu itself, normalised to unit area.
    """
    _require_plane(artifacts.mu)
    kl = kl_by_dimension(artifacts.mu, artifacts.logvar)
    dims = kl_order(kl)[:n_dims]
    reach = float(np.quantile(np.abs(artifacts.mu[:, dims]), 0.999)) + 1.0
    limit = float(np.clip(np.ceil(reach), 4.0, 30.0))
    z = np.linspace(-limit, limit, points)

    curves, bars = [], []
    for rank, dim in enumerate(dims, start=1):
        panel = f"dimension {dim} (KL rank {rank}, {decimal(kl[dim], 2)} nats)"
        mu, sigma = artifacts.mu[:, dim], artifacts.sigma[:, dim]
        for name, density in (("aggregate posterior", aggregate_density(z, mu, sigma)),
                              ("prior N(0, 1)", normal_density(z))):
            curves.append(pd.DataFrame({"panel": panel, "z": significant(z),
                                        "density": significant(density), "curve": name}))
        histogram = histogram_frame(mu, bins=DENSITY_BINS, value_range=(-limit, limit))
        width = 2 * limit / DENSITY_BINS
        histogram["density"] = significant(histogram.pop("count") / (len(mu) * width))
        bars.append(histogram.assign(panel=panel, curve="μ of each user (histogram)"))
    return pd.concat(curves, ignore_index=True), pd.concat(bars, ignore_index=True)


def density_chart(artifacts: Artifacts) -> alt.HConcatChart:
    """Side by side for the leading dimensions: histogram of mu, aggregate posterior, prior."""
    curves, bars = density_frames(artifacts)
    names = ["μ of each user (histogram)", "aggregate posterior", "prior N(0, 1)"]
    color = alt.Color("curve:N").title(None).scale(domain=names, range=list(CURVE_COLORS))
    top = 1.05 * float(max(curves["density"].max(), bars["density"].max()))
    y = alt.Y("density:Q").title("Density").scale(domain=[0, top], nice=False)
    panels = []
    for panel in curves["panel"].unique():
        # Each panel carries its own rows, without the repeated panel label.
        histogram = alt.Chart(bars[bars["panel"] == panel].drop(columns="panel")).mark_rect() \
            .encode(
                alt.X("start:Q").title("z"), alt.X2("end:Q"), y, alt.Y2(datum=0), color,
                tooltip=[alt.Tooltip("start:Q", title="from"), alt.Tooltip("end:Q", title="to"),
                         alt.Tooltip("density:Q", format=".3f")],
            )
        lines = alt.Chart(curves[curves["panel"] == panel].drop(columns="panel")) \
            .mark_line(strokeWidth=2).encode(
                alt.X("z:Q"), y, color,
                alt.StrokeDash("curve:N").scale(domain=names[1:], range=[[1, 0], [5, 3]])
                .legend(None),
                tooltip=[alt.Tooltip("curve:N"), alt.Tooltip("z:Q", format=".2f"),
                         alt.Tooltip("density:Q", format=".3f")],
            )
        panels.append(alt.layer(histogram, lines).properties(
            width=PANEL, height=200, title=alt.Title(panel, fontSize=12, anchor="start")))
    return (alt.hconcat(*panels, spacing=30)
            .configure_legend(orient="top", direction="horizontal"))


# --- sentences --------------------------------------------------------------------------------


def model_sentence(checkpoint: Checkpoint, artifacts: Artifacts) -> Markdown:
    """Which model the chapter reads, its latent width and how many users it encodes."""
    model = checkpoint.primary
    text = (f"The primary model, `{checkpoint.manifest['primary']}`, encodes each of the "
            f"{count(artifacts.n_users)} users with visible interactions in a "
            f"{model.config.latent_dim}-dimensional latent space.")
    if not model.variational:
        text += (" It is a Multi-DAE, whose code is a point rather than a Gaussian: its "
                 f"{SIGMA} is taken as 1 below, so the KL figures measure only how far the "
                 "codes lie from the prior's centre.")
    return sentence(text)


def pca_sentence(artifacts: Artifacts) -> Markdown:
    """How much variance the first two components hold, and how many reach half of it."""
    explained = principal_components(artifacts.mu).explained
    half = int(np.searchsorted(np.cumsum(explained), 0.5)) + 1
    return sentence(
        f"The first two principal components hold {percent(explained[0])} and "
        f"{percent(explained[1])} of the variance of μ across users; reaching half of it "
        f"takes {count(half)} of the {count(len(explained))} components."
    )


def activity_sentence(artifacts: Artifacts) -> Markdown:
    """How a user's mean sigma and distance from the prior's centre follow the user's activity.

    Both are Spearman correlations with the number of visible interactions; the distance is
    the Euclidean norm of mu.
    """
    sigma = artifacts.sigma.mean(axis=1)
    distance = np.linalg.norm(artifacts.mu.astype(np.float64), axis=1)
    rho_sigma = spearman(artifacts.n_visible, sigma)
    rho_distance = spearman(artifacts.n_visible, distance)
    if not (np.isfinite(rho_sigma) and np.isfinite(rho_distance)):
        return sentence("Every user has the same number of interactions, or the same code, so "
                        "neither can be correlated with activity.")
    return sentence(
        f"A user's mean {SIGMA} ranges from {decimal(sigma.min(), 2)} to "
        f"{decimal(sigma.max(), 2)}. "
        f"Spearman's rank correlation between it and the number of interactions the encoder "
        f"read is {decimal(rho_sigma, 2)} ({strength(rho_sigma)} relation), and between the "
        f"distance of μ from the prior's centre and that number {decimal(rho_distance, 2)} "
        f"({strength(rho_distance)} relation)."
    )


def active_sentence(artifacts: Artifacts, threshold: float = ACTIVE_KL) -> Markdown:
    """How many dimensions are active, and how the KL term is shared among them."""
    kl = kl_by_dimension(artifacts.mu, artifacts.logvar)
    active = int((kl > threshold).sum())
    top = max(1, round(0.1 * len(kl)))
    top_share = np.sort(kl)[::-1][:top].sum() / kl.sum() if kl.sum() > 0 else 0.0
    if active == len(kl):
        opening = f"All {count(active)} dimensions are active"
    elif active == 0:
        opening = f"None of the {count(len(kl))} dimensions is active"
    else:
        opening = f"{count(active)} of the {count(len(kl))} dimensions are active"
    return sentence(
        f"{opening}, with a mean KL above {threshold:g} nats. The mean KL per dimension runs "
        f"from {kl.min():#.3g} to {kl.max():#.3g} nats and adds up to {decimal(kl.sum())} nats "
        f"per user; the {count(top)} largest dimensions (10%) carry {percent(top_share)} of it."
    )


def density_sentence(artifacts: Artifacts, n_dims: int = LEADING_DIMS) -> Markdown:
    """The aggregate posterior's variance in the leading dimensions, against the prior's 1."""
    kl = kl_by_dimension(artifacts.mu, artifacts.logvar)
    parts = []
    for dim in kl_order(kl)[:n_dims]:
        mu, sigma = artifacts.mu[:, dim], artifacts.sigma[:, dim]
        variance = mu.var() + np.mean(sigma**2)
        parts.append(f"in dimension {dim}, μ has a mean of {decimal(mu.mean(), 2)} and a "
                     f"standard deviation of {decimal(mu.std(), 2)} across users and {SIGMA} "
                     f"averages {decimal(sigma.mean(), 2)}, so the aggregate posterior has a "
                     f"variance of {decimal(variance, 2)}")
    return sentence("Against the prior's mean of 0 and variance of 1: " + "; ".join(parts) + ".")
