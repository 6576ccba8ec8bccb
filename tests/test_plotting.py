"""The figures: EM marks at the right places, the right number of artists, PNGs with content.

Results (DataTrees) are simulated around an EM fit (no sampling), in one, two and three
features, so every test runs in well under a second.
"""

from __future__ import annotations

import io
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesgmm import EMGaussianMixture
from bayesgmm._idata import get_group, new_tree
from bayesgmm.membership import posterior_membership
from bayesgmm.plotting import (
    plot_ellipses,
    plot_forest,
    plot_label_switching,
    plot_membership,
    plot_pair_em,
    plot_posterior_em,
    plot_trace,
)

from ._fake import make_idata, simulated_data

K = 3


@pytest.fixture(scope="module", params=[1, 2, 3], ids=["D1", "D2", "D3"])
def case(request):
    idata, em = make_idata(request.param)
    return request.param, idata, em


@pytest.fixture(scope="module")
def case2():
    return make_idata(2)


@pytest.fixture(autouse=True)
def _no_show_and_close(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("plotting functions must not call plt.show()")

    monkeypatch.setattr(plt, "show", fail)
    yield
    plt.close("all")


def _em_value(em: EMGaussianMixture, label: str) -> float:
    """The EM value of an ArviZ-style row label, computed from the estimator itself."""
    match = re.fullmatch(r"(\w+)\[(\d+)(?:, x(\d+))?(?:, x(\d+))?\]", label)
    name, k = match[1], int(match[2])
    j = int(match[3]) if match[3] else None
    cov = em.covariances_[k]
    return {
        "weights": lambda: em.weights_[k],
        "means": lambda: em.means_[k, j],
        "stds": lambda: np.sqrt(cov[j, j]),
        "covariances": lambda: cov[j, int(match[4])],
    }[name]()


def _png_pixels(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    buffer.seek(0)
    return mpimg.imread(buffer)[..., :3]


def _assert_png_has_content(fig) -> None:
    pixels = _png_pixels(fig)
    assert pixels.std() > 0.05
    assert np.mean(pixels.min(axis=-1) < 0.9) > 0.01  # >1% of pixels are not near-white


# ----------------------------------------------------------------------------- forest


def _hdi_segments(ax) -> dict[float, tuple[float, float]]:
    """The widest horizontal segment per row (the HDI bar, drawn with hlines), keyed by y."""
    widest: dict[float, tuple[float, float]] = {}
    for collection in ax.collections:
        for (x0, y0), (x1, _) in (seg[[0, -1]] for seg in collection.get_segments()):
            if x1 - x0 > np.ptp(widest.get(float(y0), (0.0, 0.0))):
                widest[float(y0)] = (float(x0), float(x1))
    return widest


def test_forest_marks_em_at_every_row(case):
    d, idata, em = case
    ax = plot_forest(idata, hdi_prob=0.94)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == K + 2 * K * d
    (marks,) = [line for line in ax.get_lines() if line.get_marker() == "|"]
    np.testing.assert_allclose(marks.get_ydata(), ax.get_yticks())
    np.testing.assert_allclose(marks.get_xdata(), [_em_value(em, lab) for lab in labels])
    hdi = _hdi_segments(ax)
    for x, y in zip(marks.get_xdata(), marks.get_ydata(), strict=True):
        low, high = hdi[float(y)]
        assert low <= x <= high  # the posterior was simulated around EM
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["posterior: median, quartiles, 94% HDI", "EM estimate"]
    _assert_png_has_content(ax.figure)


def test_forest_covariances_keep_lower_triangle_and_accept_given_ax(case2):
    idata, em = case2
    fig, given = plt.subplots()
    ax = plot_forest(idata, var_names=["covariances", "correlations"], features=["x1"], ax=given)
    assert ax is given and plt.get_fignums() == [fig.number]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels) == [f"covariances[{k}, x1, x1]" for k in range(K)]  # no correlations
    (marks,) = [line for line in ax.get_lines() if line.get_marker() == "|"]
    np.testing.assert_allclose(marks.get_xdata(), [_em_value(em, lab) for lab in labels])


def test_forest_with_em_estimator_instead_of_group():
    idata, em = make_idata(2, with_em=False)
    ax = plot_forest(idata, var_names=["weights"], em=em)
    (marks,) = [line for line in ax.get_lines() if line.get_marker() == "|"]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    np.testing.assert_allclose(marks.get_xdata(), [_em_value(em, lab) for lab in labels])


# ----------------------------------------------------------------------------- densities, pair


def test_posterior_densities_have_em_reference_lines(case):
    d, idata, em = case
    axes = plot_posterior_em(idata, var_names=["weights", "means"], hdi_prob=0.9)
    shown = [ax for ax in axes.ravel() if ax.get_title()]
    assert len(shown) == K + K * d
    for ax in shown:
        expected = _em_value(em, ax.get_title())
        vertical = [
            line.get_xdata()[0]
            for line in ax.get_lines()
            if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
        ]
        assert np.isclose(vertical, expected).any(), ax.get_title()
        assert any("90% HDI" in t.get_text() for t in ax.texts)
    _assert_png_has_content(shown[0].figure)


def _reference_marks(ax) -> list[tuple[float, float]]:
    return [
        (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
        for line in ax.get_lines()
        if line.get_marker() == "D"
    ]


@pytest.mark.parametrize(("d", "features"), [(1, None), (2, None), (3, ["x0", 2])])
def test_pair_plot_marks_em_in_every_panel(d, features):
    idata, em = make_idata(d, n_draws=40)
    axes = plot_pair_em(idata, features=features)
    chosen = [0] if d == 1 else [0, 1] if features is None else [0, 2]
    em_flat = em.means_[:, chosen].ravel()
    n = len(em_flat)
    assert axes.shape == (n - 1, n - 1)
    for row in range(n - 1):
        for col in range(row + 1):
            assert _reference_marks(axes[row, col]) == [
                pytest.approx((em_flat[col], em_flat[row + 1]))
            ]
    assert axes[-1, 0].get_xlabel() == f"means[0, x{chosen[0]}]"
    _assert_png_has_content(axes[0, 0].figure)


# ----------------------------------------------------------------------------- trace


def _dashed_lines(ax, vertical: bool) -> list[tuple[float, str]]:
    """(position, colour) of the dashed reference lines of an axes."""
    out = []
    for line in ax.get_lines():
        if line.get_linestyle() != "--":
            continue
        data = line.get_xdata() if vertical else line.get_ydata()
        if np.ptp(data) == 0:
            out.append((float(data[0]), matplotlib.colors.to_hex(line.get_color())))
    return out


def test_trace_has_em_lines_in_component_colours(case):
    d, idata, em = case
    features = None if d < 3 else [2]
    axes = plot_trace(idata, var_names=["weights", "means"], features=features)
    chosen = em.means_ if features is None else em.means_[:, [2]]
    # one row for the weights, then one per feature of the means
    assert axes.shape == (1 + chosen.shape[1], 2)
    colors = [matplotlib.colors.to_hex(f"C{k}") for k in range(K)]
    expected = [sorted(zip(em.weights_, colors, strict=True))] + [
        sorted((chosen[k, j], colors[k]) for k in range(K)) for j in range(chosen.shape[1])
    ]
    for row, want in zip(axes, expected, strict=True):
        for got in (_dashed_lines(row[0], vertical=True), _dashed_lines(row[1], vertical=False)):
            got = sorted(got)
            assert [c for _, c in got] == [c for _, c in want]
            np.testing.assert_allclose([v for v, _ in got], [v for v, _ in want])
        assert len(row[1].get_lines()) > len(want)  # the chains themselves
    _assert_png_has_content(axes[0, 0].figure)


# ----------------------------------------------------------------------------- ellipses


def _mahalanobis_of_outline(patch, mean, cov) -> np.ndarray:
    """Squared Mahalanobis distance of points on the patch's outline (its unit circle mapped)."""
    t = np.linspace(0, 2 * np.pi, 50)
    outline = patch.get_patch_transform().transform(np.c_[np.cos(t), np.sin(t)])
    diff = outline - mean
    return np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)


@pytest.mark.parametrize(("d", "features"), [(2, (0, 1)), (3, ("x2", 0))])
def test_ellipses_count_and_geometry(d, features):
    idata, em = make_idata(d)
    ax = plot_ellipses(idata, features=features, n_draws=20, level=0.8, random_seed=1)
    patches = [p for p in ax.patches if isinstance(p, matplotlib.patches.Ellipse)]
    assert len(patches) == K + K * 20
    index = [2, 0] if d == 3 else [0, 1]
    radius2 = stats.chi2.ppf(0.8, df=2)
    for k, patch in enumerate(patches[:K]):
        cov = em.covariances_[k][np.ix_(index, index)]
        np.testing.assert_allclose(
            _mahalanobis_of_outline(patch, em.means_[k, index], cov), radius2, rtol=1e-6
        )
        assert patch.get_edgecolor()[:3] == matplotlib.colors.to_rgb(f"C{k}")
    assert all(p.get_alpha() < 0.2 for p in patches[K:])
    assert ax.get_xlabel() == f"x{index[0]}" and ax.get_ylabel() == f"x{index[1]}"
    np.testing.assert_allclose(ax.collections[0].get_offsets(), simulated_data(d)[:, index])
    _assert_png_has_content(ax.figure)


def test_ellipses_use_every_draw_when_fewer_than_asked(case2):
    idata, _ = case2
    ax = plot_ellipses(idata, n_draws=10_000)
    assert len(ax.patches) == K + K * 200


def test_one_feature_shows_component_densities():
    idata, em = make_idata(1)
    ax = plot_ellipses(idata, n_draws=15)
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 400]
    assert len(curves) == K * 15 + K + 1
    solid = [line for line in curves if line.get_alpha() is None and line.get_linestyle() == "-"]
    assert len(solid) == K
    sigma = np.sqrt(em.covariances_[:, 0, 0])
    peaks = em.weights_ / (np.sqrt(2 * np.pi) * sigma)
    np.testing.assert_allclose([line.get_ydata().max() for line in solid], peaks, rtol=0.02)
    assert len(ax.patches) > 3  # histogram bars
    _assert_png_has_content(ax.figure)


# ----------------------------------------------------------------------------- membership


@pytest.mark.parametrize("uncertainty", ["entropy", "hdi_width"])
def test_membership_points_coloured_and_sized_by_uncertainty(case, uncertainty):
    d, idata, _ = case
    membership = posterior_membership(idata, hdi_prob=0.9)
    features = (1, 2) if d == 3 else (0, 1)
    ax = plot_membership(
        idata, features=features, uncertainty=uncertainty, highlight=5, membership=membership
    )
    points, rings = ax.collections[0], ax.collections[1]
    u = membership[uncertainty].values
    data = simulated_data(d)
    order = np.argsort(u / u.max(), kind="stable")
    expected_xy = np.c_[data[:, 0], u] if d == 1 else data[:, list(features)][order]
    np.testing.assert_allclose(points.get_offsets(), expected_xy)
    labels = membership["most_probable"].values if d == 1 else membership["most_probable"][order]
    expected_colors = [matplotlib.colors.to_rgb(f"C{k}") for k in np.asarray(labels)]
    np.testing.assert_allclose(points.get_facecolors()[:, :3], expected_colors)
    if d > 1:
        assert np.corrcoef(points.get_sizes(), u[order])[0, 1] > 0.999  # larger = less sure
    top = np.argsort(u)[::-1][:5]
    expected_rings = np.c_[data[top, 0], u[top]] if d == 1 else data[top][:, list(features)]
    np.testing.assert_allclose(rings.get_offsets(), expected_rings)
    assert "5 most uncertain" in [t.get_text() for t in ax.get_legend().get_texts()]
    _assert_png_has_content(ax.figure)


def test_membership_rows_missing_a_plotted_cell_are_left_out_quietly(case2):
    """Such rows have no place in the plot: before, matplotlib masked them and warned once per
    point when the figure was drawn (R's airquality report: 168 warnings)."""
    idata, _ = case2
    data = simulated_data(2).copy()
    data[[1, 4, 7], 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = plot_membership(idata, data, highlight=3)
        _assert_png_has_content(ax.figure)
    points, rings = ax.collections[0], ax.collections[1]
    assert len(points.get_offsets()) == len(data) - 3
    assert np.isfinite(points.get_offsets()).all()
    assert len(rings.get_offsets()) == 3 and np.isfinite(rings.get_offsets()).all()
    assert "3 rows missing a plotted cell not shown" in ax.get_title()


# ----------------------------------------------------------------------------- label switching


def test_label_switching_bars(case2):
    idata, _ = case2
    ax = plot_label_switching(idata)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.25, 0.0])
    _assert_png_has_content(ax.figure)


# ----------------------------------------------------------------------------- conventions


def test_no_rcparams_changes_and_ax_is_used(case2):
    idata, _ = case2
    before = dict(matplotlib.rcParams)
    for draw in (plot_ellipses, plot_membership, plot_label_switching, plot_forest):
        fig, ax = plt.subplots()
        assert draw(idata, ax=ax) is ax
        assert plt.get_fignums()[-1] == fig.number
    fig, axes = plt.subplots(1, 2, squeeze=False)
    assert plot_trace(idata, var_names=["weights"], axes=axes)[0, 0] is axes[0, 0]
    assert dict(matplotlib.rcParams) == before


# ----------------------------------------------------------------------------- bad arguments


def test_missing_em_group_says_what_to_pass():
    idata, _ = make_idata(2, with_em=False)
    for draw in (plot_forest, plot_posterior_em, plot_pair_em, plot_trace, plot_ellipses):
        with pytest.raises(ValueError, match="no 'em' group and no em was given"):
            draw(idata)


@pytest.mark.parametrize(
    ("n_components", "n_features", "message"),
    [(2, 2, "EM estimate has 2 components and 2 features"), (3, 3, "3 components and 3 features")],
)
def test_mismatched_em_is_refused(case2, n_components, n_features, message):
    idata, _ = case2
    em = EMGaussianMixture(n_components, random_state=0).fit(simulated_data(n_features))
    with pytest.raises(ValueError, match=message):
        plot_forest(idata, em=em)


def test_unfitted_em_is_refused(case2):
    idata, _ = case2
    with pytest.raises(ValueError, match="fitted EMGaussianMixture"):
        plot_ellipses(idata, em=EMGaussianMixture(3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"var_names": ["means", "foo"]}, r"Unknown var_names \['foo'\]: choose from"),
        ({"var_names": ["chol_cov_0"]}, "Unknown var_names"),
        ({"features": [0, 5]}, r"Feature 5 is out of range: give an index in 0..1"),
        ({"features": ["x0", "height"]}, "Unknown feature 'height'"),
        ({"features": [1, "x1"]}, "distinct"),
        ({"hdi_prob": 94}, "hdi_prob must lie in"),
    ],
)
def test_bad_parameter_arguments(case2, kwargs, message):
    idata, _ = case2
    with pytest.raises(ValueError, match=message):
        plot_forest(idata, **kwargs)


def test_bad_data_arguments(case2):
    idata, _ = case2
    with pytest.raises(ValueError, match="exactly two features"):
        plot_ellipses(idata, features=[0])
    with pytest.raises(ValueError, match="X has 3 features but the posterior has 2"):
        plot_ellipses(idata, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="n_draws must be a non-negative integer"):
        plot_ellipses(idata, n_draws=-1)
    with pytest.raises(ValueError, match="level must lie in"):
        plot_ellipses(idata, level=1.0)
    with pytest.raises(ValueError, match="Unknown uncertainty 'variance'"):
        plot_membership(idata, uncertainty="variance")
    with pytest.raises(ValueError, match="Nothing to plot"):
        plot_forest(make_idata(1)[0], var_names=["correlations"])
    with pytest.raises(ValueError, match="at least two parameters"):
        plot_pair_em(make_idata(1, n_components=1)[0], var_names=["means"])


def test_missing_groups_and_variables(case2):
    idata, _ = case2
    posterior_only = new_tree({"posterior": get_group(idata, "posterior")})
    with pytest.raises(ValueError, match="no 'sample_stats' group"):
        plot_label_switching(posterior_only)
    no_cov = new_tree({"posterior": get_group(idata, "posterior")[["weights", "means"]]})
    with pytest.raises(ValueError, match=r"lacks \['covariances'\]"):
        plot_forest(no_cov)


def test_plot_criteria_marks_the_best():
    from bayesgmm.plotting import plot_criteria
    from bayesgmm.selection import em_sweep

    sweep = em_sweep(simulated_data(2), range(1, 5), ("full", "diag"), progress=False)
    ax = plot_criteria(sweep.table, criteria=("bic",))
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == 2
    for star, family in zip(stars, ("full", "diag"), strict=True):
        rows = sweep.table[sweep.table["covariance_type"] == family]
        best = rows.loc[rows["bic"].idxmin()]
        assert star.get_xdata()[0] == best["n_components"]
        assert star.get_ydata()[0] == pytest.approx(best["bic"])
    with pytest.raises(ValueError, match="criterion"):
        plot_criteria(sweep.table, criteria=("waic",))
    plt.close("all")


def test_plot_criteria_gives_every_one_of_14_models_its_own_colour():
    """The default cycle's ten colours repeated in the report's 14-model BIC figure."""
    import matplotlib.colors as mcolors

    from bayesgmm.plotting import plot_criteria

    names = ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV"]
    names += ["VEV", "EVV", "VVV"]
    table = pd.DataFrame(
        {
            "n_components": np.tile([1, 2], 14),
            "covariance_type": np.repeat(names, 2),
            "status": "ok",
            "bic": np.arange(28.0),
        }
    )
    ax = plot_criteria(table, criteria=("bic",))
    lines = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(lines) == 14
    assert len({mcolors.to_hex(line.get_color()) for line in lines}) == 14
    plt.close("all")


def test_plot_criteria_stars_the_healthy_best_as_the_selection_does():
    """A collapsed fit with the lowest criterion is drawn hollow and not starred (the
    selection never chooses it; the model_selection notebook's AIC star sat on one)."""
    from bayesgmm.plotting import plot_criteria

    table = pd.DataFrame(
        {
            "n_components": [1, 2, 3, 4],
            "covariance_type": ["full"] * 4,
            "model_name": ["VVV"] * 4,
            "status": ["ok", "ok", "collapsed", "collapsed"],
            "bic": [10.0, 8.0, 9.0, 5.0],
        }
    )
    ax = plot_criteria(table, criteria=("bic",))
    (star,) = [line for line in ax.lines if line.get_marker() == "*"]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (2, 8.0)
    all_hollow = table.assign(status="collapsed")
    ax = plot_criteria(all_hollow, criteria=("bic",))
    (star,) = [line for line in ax.lines if line.get_marker() == "*"]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (4, 5.0)
    plt.close("all")
