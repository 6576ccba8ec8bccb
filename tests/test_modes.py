"""Several optima: distinct EM optima, chains started from them, modes found and reported.

The two-optima data are mirror-symmetric (every row has its mirror image ``-x``): three
clusters on a line, fitted with K=2, have two optima of exactly equal likelihood (the left pair
merged, or the right pair merged) that NUTS cannot move between.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import xarray as xr

from bayesgmm import BayesianGMM, EMGaussianMixture, SamplingWarning, load_faithful
from bayesgmm._idata import new_tree
from bayesgmm.datasets import simulate_mixture
from bayesgmm.modes import (
    distinct_optima,
    find_modes,
    mode_posterior,
    mode_table,
    one_after_another,
    same_optimum,
    sample_groups,
    start_assignment,
)

from ._fake import partition_tree

RUN = dict(draws=150, tune=200, chains=4, progressbar=False)


@pytest.fixture(scope="module")
def mirrored():
    rng = np.random.default_rng(3)
    side = rng.normal(size=(60, 2)) + np.array([6.0, 0.0])
    middle = rng.normal(size=(30, 2))
    return np.concatenate([side, -side, middle, -middle])


@pytest.fixture(scope="module")
def two_modes(mirrored):
    """The modes as the first run found them: follow-up runs off (max_draws=draws), which
    would give a mode short of the gates new chains (tests/test_followup.py)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        fit = BayesianGMM(2, random_seed=2, max_draws=RUN["draws"], **RUN).fit(mirrored)
    return fit, caught


def test_distinct_optima_are_judged_whatever_the_labels(mirrored):
    optima = distinct_optima(mirrored, 2, n_restarts=8, random_state=0, tol=1e-8)
    assert len(optima) == 2
    lls = [em.lower_bound_ * len(mirrored) for em in optima]
    assert abs(lls[0] - lls[1]) < 1e-4  # mirror images: the same likelihood
    a = optima[0]
    swapped = EMGaussianMixture(
        2,
        weights_init=a.weights_[::-1],
        means_init=a.means_[::-1],
        precisions_init=np.linalg.inv(a.covariances_[::-1]),
        tol=1e-8,
    ).fit(mirrored)
    assert not np.allclose(swapped.means_, a.means_)  # other labels ...
    assert same_optimum(a, swapped)  # ... same optimum
    assert not same_optimum(a, optima[1])
    assert len(distinct_optima(mirrored, 2, n_restarts=8, random_state=0, max_optima=1)) == 1


def test_round_robin():
    np.testing.assert_array_equal(start_assignment(2, 4), [0, 1, 0, 1])
    np.testing.assert_array_equal(start_assignment(3, 2), [0, 1])
    np.testing.assert_array_equal(start_assignment(1, 3), [0, 0, 0])


def _group_tree(run: dict) -> xr.DataTree:
    """A group's results: ``run["chains"]`` chains whose draws are the group's seed."""
    draws = np.full((run["chains"], 3), float(run["seed"]))
    return new_tree(
        {
            "posterior": xr.Dataset({"x": (("chain", "draw"), draws)}),
            "sample_stats": xr.Dataset({"lp": (("chain", "draw"), -draws)}),
        }
    )


def test_each_start_gets_its_chains_and_its_own_seed():
    """Three starts, five chains: groups of 2, 2 and 1 chains, seeds derived per start, the
    chains joined in the order of the starts and labelled with them."""
    seen = []

    def sample_all(groups):
        seen.extend(groups)
        return [_group_tree(run) for _, run in groups], False

    out, interrupted = sample_groups(sample_all, ["a", "b", "c"], {"chains": 5, "seed": 10})
    assert not interrupted
    assert [(start, run["chains"], run["seed"]) for start, run in seen] == [
        ("a", 2, 10), ("b", 2, 10 + 7919), ("c", 1, 10 + 2 * 7919)
    ]  # fmt: skip
    np.testing.assert_array_equal(out.sample_stats["start"].values, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(out.posterior["x"].values[:, 0], [10, 10, 7929, 7929, 15848])
    np.testing.assert_array_equal(out.posterior["chain"].values, np.arange(5))


def test_groups_sampled_in_turn_stop_at_an_interrupted_one():
    """One after another, Ctrl-C in the second group's run keeps the first two groups; the
    third is not started, and the chains kept are labelled with their starts."""
    calls = []

    def sample_one(start, run):
        calls.append(start)
        return _group_tree(run), start == "b"

    sample_all = one_after_another(sample_one)
    out, interrupted = sample_groups(sample_all, ["a", "b", "c"], {"chains": 3, "seed": 0})
    assert interrupted and calls == ["a", "b"]
    np.testing.assert_array_equal(out.sample_stats["start"].values, [0, 1])


def _tree(values: np.ndarray) -> xr.DataTree:
    da = xr.DataArray(values, dims=("chain", "draw", "obs_id"))
    return new_tree({"log_likelihood": xr.Dataset({"obs": da})})


def test_find_modes_on_known_chains(rng):
    """Chains 0 and 2 draw pointwise log-likelihoods around one profile, 1 and 3 around
    another with the same total: only the mixture-level divergence tells them apart."""
    profile = rng.normal(size=50)
    other = profile[::-1].copy()
    noise = 0.05 * rng.normal(size=(4, 200, 50))
    values = np.stack([profile, other, profile, other])[:, None, :] + noise
    np.testing.assert_array_equal(find_modes(_tree(values)), [0, 1, 0, 1])
    same = profile[None, None, :] + noise
    np.testing.assert_array_equal(find_modes(_tree(same)), [0, 0, 0, 0])
    shifted = same.copy()
    shifted[3] -= 0.2  # 10 nats lower in total: another mode by its likelihood alone
    assert find_modes(_tree(shifted))[3] == 1 and len(set(find_modes(_tree(shifted)))) == 2


def _parameter_tree(modes_of_draws: np.ndarray, swapped: np.ndarray, rng) -> xr.DataTree:
    """Chains whose draws sit around one of two mixtures ``(chain, draw)`` -> 0 or 1, with
    the labels of the draws in ``swapped`` reversed, and pointwise log-likelihoods that are
    the same profile for both: only the parameters tell the mixtures apart."""
    n_chains, n_draws = modes_of_draws.shape
    centres = np.array([[[-2.0, 0.0], [2.0, 0.0]], [[-2.0, 0.0], [0.5, 1.0]]])
    weights = np.array([[0.5, 0.5], [0.7, 0.3]])
    means = centres[modes_of_draws] + 0.05 * rng.normal(size=(n_chains, n_draws, 2, 2))
    w = weights[modes_of_draws] + 0.01 * rng.normal(size=(n_chains, n_draws, 2))
    sds = np.exp(0.05 * rng.normal(size=(n_chains, n_draws, 2, 2)))
    means[swapped], w[swapped], sds[swapped] = (
        means[swapped, ::-1],
        w[swapped, ::-1],
        sds[swapped, ::-1],
    )
    cov = sds[..., :, None] * np.eye(2) * sds[..., None, :]
    dims = ("chain", "draw", "component")
    posterior = xr.Dataset(
        {
            "weights": (dims, w),
            "means": ((*dims, "feature"), means),
            "covariances": ((*dims, "feature", "feature_bis"), cov),
        }
    )
    loglik = rng.normal(size=30) + 0.05 * rng.normal(size=(n_chains, n_draws, 30))
    return new_tree(
        {
            "posterior": posterior,
            "log_likelihood": xr.Dataset({"obs": (("chain", "draw", "obs_id"), loglik)}),
        }
    )


def test_modes_with_the_same_likelihood_are_told_apart_by_their_parameters(rng):
    """Geyser-like: two mixtures that fit the data equally well (same log-likelihood profile)
    but split it differently are two modes, whatever the labels; a chain that visits the other
    mode for a quarter of its draws stays with the mode it spent most draws in."""
    where = np.zeros((4, 200), dtype=np.int64)
    where[2] = 1
    where[1, 150:] = 1  # chain 1 crosses late
    swapped = np.zeros((4, 200), dtype=bool)
    swapped[3], swapped[2, ::2] = True, True  # label switches across and within chains
    tree = _parameter_tree(where, swapped, rng)
    modes = find_modes(tree)
    assert modes[0] == modes[1] == modes[3] != modes[2]
    for group in ("posterior", "log_likelihood"):  # chain 3 interrupted: NaN-padded draws
        data = tree[group].to_dataset()
        kept = (xr.DataArray(np.arange(4), dims="chain") != 3) | (
            xr.DataArray(np.arange(200), dims="draw") < 150
        )
        tree[group] = xr.DataTree(data.where(kept))
    modes = find_modes(tree)  # the parameters of the draws made are compared; no error
    assert modes[0] == modes[1] != modes[2]
    one = np.zeros((4, 200), dtype=np.int64)
    np.testing.assert_array_equal(find_modes(_parameter_tree(one, swapped, rng)), [0, 0, 0, 0])


def test_an_emptied_component_wandering_apart_is_not_another_mode(rng):
    """A component with almost no weight (0.01 of 30 rows) has its prior's mean and spread,
    which chains explore slowly: chains whose emptied component sits in different places
    (each with a small spread) are one mode; the same gap in a component that holds rows is
    two."""
    where = np.zeros((2, 200), dtype=np.int64)
    tree = _parameter_tree(where, np.zeros((2, 200), dtype=bool), rng)
    posterior = tree["posterior"].to_dataset()
    posterior["weights"] = posterior["weights"] * xr.DataArray([0.02, 1.98], dims="component")
    away = xr.DataArray([0.0, 3.0], dims="chain") * xr.DataArray([1.0, 0.0], dims="component")
    tree["posterior"] = xr.DataTree(posterior.assign(means=posterior["means"] + away))
    np.testing.assert_array_equal(find_modes(tree), [0, 0])
    posterior["weights"] = posterior["weights"] * xr.DataArray([25.0, 0.75], dims="component")
    tree["posterior"] = xr.DataTree(posterior.assign(means=posterior["means"] + away))
    assert len(set(find_modes(tree).tolist())) == 2


def test_chains_that_split_the_data_differently_are_two_modes(rng):
    """State.x77-like: a posterior as wide as its gaps (about as many parameters as rows)
    hides two partitions from the likelihoods and parameters; the pairs of rows that share a
    component tell them apart. A chain that visits the other split for 15% of its draws
    stays with the one it spent most draws in; a chain that wandered from one to the other
    half-way joins neither settled group (its own mode, whose R-hat shows it)."""
    where = np.zeros((4, 200), dtype=np.int64)
    np.testing.assert_array_equal(find_modes(partition_tree(where, rng)), [0, 0, 0, 0])
    where[2:] = 1
    tree = partition_tree(where, rng)
    blind = tree.copy()
    del blind["observed_data"]  # without the rows, the parameters alone cannot tell
    np.testing.assert_array_equal(find_modes(blind), [0, 0, 0, 0])
    modes = find_modes(tree)
    assert modes[0] == modes[1] != modes[2] == modes[3]
    where[1, 170:] = 1  # a visit to the other split
    where[3, 100:] = 0  # wandered half-way
    modes = find_modes(partition_tree(where, rng))
    assert modes[0] == modes[1] != modes[2]
    assert modes[3] not in (modes[0], modes[2])


def test_chains_in_two_optima_are_reported_per_mode(two_modes):
    fit, caught = two_modes
    assert len(fit.starts_) == 1
    stats = fit.idata_.sample_stats
    np.testing.assert_array_equal(stats["start"].values, [0, 0, 1, 1])
    modes = stats["mode"].values
    assert sorted(set(modes.tolist())) == [0, 1]
    assert modes[0] == modes[1] != modes[2] == modes[3]  # each start stayed in its mode
    messages = [str(w.message) for w in caught if "The chains ended in" in str(w.message)]
    assert len(messages) == 1 and "mode 0" in messages[0] and "mode 1" in messages[0]
    table = fit.modes()
    assert list(table["mode"]) == [0, 1]
    np.testing.assert_allclose(table["stacking_weight"].sum(), 1.0, atol=1e-6)
    assert table["stacking_weight"].between(0.2, 0.8).all()  # symmetric modes
    assert (table["max_r_hat"] < 1.1).all()  # each mode mixes on its own ...
    checks = fit.diagnostics().set_index("check")
    assert not checks.loc["r_hat", "passed"]  # ... the pooled R-hat is not averaged into a pass
    assert "longer runs do not join modes" in checks.loc["r_hat", "advice"]  # nor "draw longer"
    assert not checks.loc["modes", "passed"] and checks.loc["modes", "value"] == 2
    assert re.fullmatch(  # each mode's own gates: 2 chains of 150 draws fall short of ESS 400
        r"mode 0: chains \[(0, 1|2, 3)\] not converged \(.*ESS \d+.*\); "
        r"mode 1: chains \[(0, 1|2, 3)\] not converged \(.*ESS \d+.*\)",
        checks.loc["modes", "worst"],
    )
    assert "Not every mode converged on its own chains" in messages[0]


def test_mode_summaries_and_saved_modes(two_modes, tmp_path):
    fit, _ = two_modes
    with pytest.warns(SamplingWarning, match="2 different modes: the summary averages"):
        fit.summary()
    with pytest.warns(SamplingWarning, match="2 different modes: the comparison averages"):
        fit.compare()
    with pytest.warns(SamplingWarning, match="modes: the mixture comparison .*label agreement"):
        fit.compare_mixture()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplingWarning)
        per_mode = [fit.summary(mode=m) for m in (0, 1)]
    means = [t.loc[[i for i in t.index if i.startswith("means[")], "mean"] for t in per_mode]
    assert not np.allclose(np.sort(means[0].values), np.sort(means[1].values), atol=0.5)
    assert mode_posterior(fit.idata_, 1).posterior.sizes["chain"] == 2
    with pytest.raises(ValueError, match="No mode 5"):
        mode_posterior(fit.idata_, 5)
    fit.save(tmp_path / "fit.nc")
    loaded = BayesianGMM.load(tmp_path / "fit.nc")
    saved = loaded.idata_.sample_stats["mode"].values
    np.testing.assert_array_equal(saved, fit.idata_.sample_stats["mode"].values)
    np.testing.assert_allclose(
        mode_table(loaded.idata_)["stacking_weight"], fit.modes()["stacking_weight"]
    )


def test_memberships_per_mode_and_co_clustering_over_modes(two_modes, mirrored):
    """Modes label their components each their own way: memberships over all draws warn and
    name ``mode=``; one mode's are those of its draws. Co-clustering does not depend on the
    labels: over the modes it weighs each mode's matrix by its stacking weight. The mirrored
    modes merge the middle cluster with the left or with the right one, so whether a left and
    a middle row share a component depends on the mode."""
    from bayesgmm import posterior_membership
    from bayesgmm.modes import main_mode

    fit, _ = two_modes
    with pytest.warns(SamplingWarning, match="2 different modes: the membership averages"):
        fit.predict()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplingWarning)
        for m in (0, 1):
            own = fit.membership(mode=m, hdi_prob=0.9)
            expected = posterior_membership(mode_posterior(fit.idata_, m), hdi_prob=0.9)
            xr.testing.assert_allclose(own, expected)
            np.testing.assert_array_equal(fit.predict(mode=m), own["most_probable"].values)
        rows = mirrored[[0, 60, 120]]  # right, left, middle
        each = [fit.co_clustering(rows, mode=m).values for m in (0, 1)]
        stacked = fit.co_clustering(rows).values
    weights = fit.modes().set_index("mode")["stacking_weight"]
    assert main_mode(fit.idata_) == weights.idxmax()
    merging_left = 0 if each[0][1, 2] > 0.5 else 1
    assert each[merging_left][1, 2] > 0.8 and each[1 - merging_left][1, 2] < 0.2
    assert each[1 - merging_left][0, 2] > 0.8  # the other mode merges middle and right
    np.testing.assert_allclose(stacked, weights[0] * each[0] + weights[1] * each[1], atol=1e-12)


def test_a_mode_without_psis_loo_gets_nan_weights_not_an_error(two_modes):
    # a degenerate mode (every draw gives each row the same log-likelihood) has no PSIS-LOO:
    # the table is still made, its weights NaN, with a warning that says why
    fit, _ = two_modes
    tree = fit.idata_.copy()
    del tree.posterior.attrs["modes"]
    log_lik = tree.log_likelihood["obs"]
    frozen = np.flatnonzero(tree.sample_stats["mode"].values == 1)
    values = log_lik.values.copy()
    values[frozen] = values[frozen, :1]
    tree["log_likelihood"] = tree.log_likelihood.to_dataset().assign(obs=log_lik.copy(data=values))
    with pytest.warns(SamplingWarning, match="stacking weights could not be computed"):
        table = mode_table(tree)
    assert list(table["mode"]) == [0, 1] and table["stacking_weight"].isna().all()
    assert (table.loc[table["mode"] == 0, "max_r_hat"] < 1.1).all()


def test_one_optimum_one_mode_no_warning():
    sim = simulate_mixture(
        200,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [6.0, 6.0]],
        covariances=[np.eye(2), np.eye(2)],
        random_state=4,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        fit = BayesianGMM(2, random_seed=1, **RUN).fit(sim.X)
    assert fit.starts_ == []
    assert not [w for w in caught if "modes" in str(w.message)]
    assert set(fit.idata_.sample_stats["mode"].values.tolist()) == {0}
    table = fit.modes()
    assert len(table) == 1 and table.loc[0, "stacking_weight"] == 1.0


def test_report_shows_the_modes(two_modes, mirrored):
    """The diagnostics show the modes; the memberships are one mode's, named (modes label
    their components each their own way)."""
    import pandas as pd

    from bayesgmm._render import render_markdown
    from bayesgmm.modes import main_mode
    from bayesgmm.report import _clustering_section, _diagnostics_section

    fit, _ = two_modes
    section = _diagnostics_section(fit)
    tables = [block for kind, block in section.blocks if kind == "table"]
    captions = [caption for _, caption in tables]
    assert "Modes (draws relabelled within each mode)" in captions
    markdown, _ = render_markdown("t", [section], "figures")
    assert "2 different modes" in markdown and "stacking_weight" in markdown
    main = main_mode(fit.idata_)
    clustering = _clustering_section(fit, pd.DataFrame(mirrored), 0.94)
    texts = [block for kind, block in clustering.blocks if kind == "text"]
    assert any(f"memberships are those of mode {main}" in text for text in texts)
    captions = [block[1] for kind, block in clustering.blocks if kind == "table"]
    caption = f"The ten most uncertain observations (mode {main}) (mean membership [HDI])"
    assert captions == [caption]


def test_a_given_em_stays_the_reference(mirrored):
    em = EMGaussianMixture(2, random_state=0, tol=1e-8).fit(mirrored)
    estimator = BayesianGMM(2, random_seed=0)
    estimator.em_ = em
    others = estimator._other_optima(mirrored, keep_em=True)
    assert estimator.em_ is em
    assert len(others) == 1 and not same_optimum(em, others[0])
    estimator.max_starts = 1
    assert estimator._other_optima(mirrored, keep_em=True) == []


def test_a_given_em_is_not_started_twice():
    """Old Faithful has one optimum at K=2: a restart reaching it again (a hair higher after a
    tighter tol, with the labels swapped) is the kept EM fit, not a second start."""
    X = load_faithful()
    em = EMGaussianMixture(2, random_state=0, tol=1e-5).fit(X)
    estimator = BayesianGMM(2, random_seed=0)
    estimator.em_ = em
    assert estimator._other_optima(X, keep_em=True) == []


def test_too_few_draws_or_one_chain_are_not_judged(rng):
    """An early interrupt leaves a handful of draws: too few to tell modes apart, so one mode
    is recorded (unjudged) rather than a spurious warning."""
    from bayesgmm.modes import record_modes

    values = rng.normal(size=(2, 10, 30))
    values[1] -= 5.0  # would be another mode with enough draws
    for kept in (values, values[:1]):
        n_chains, n_draws = kept.shape[:2]
        sizes = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
        tree = new_tree(
            {
                "posterior": xr.Dataset(
                    {"weights": (("chain", "draw"), np.ones((n_chains, n_draws)))}, coords=sizes
                ),
                "sample_stats": xr.Dataset(
                    {"diverging": (("chain", "draw"), np.zeros((n_chains, n_draws), bool))},
                    coords=sizes,
                ),
                "log_likelihood": xr.Dataset({"obs": (("chain", "draw", "obs_id"), kept)}),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", SamplingWarning)
            assert record_modes(tree) is None
        assert tree.posterior.attrs["n_modes"] == 1
        assert set(tree.sample_stats["mode"].values.tolist()) == {0}
    np.testing.assert_array_equal(find_modes(_tree(np.repeat(values, 3, axis=1))), [0, 1])


def test_starts_where_sampling_could_not_start_leave_starts_(monkeypatch, mirrored):
    """``starts_`` lists the optima chains started from: those sample_posterior dropped (its
    ``starts_dropped`` attr, by position) are left out."""
    from bayesgmm import bayesian

    seen = {}

    def sample(*args, starts, **kwargs):
        seen["starts"] = list(starts)
        tree = xr.DataTree.from_dict({"posterior": xr.Dataset()})
        tree.posterior.attrs["starts_dropped"] = '[[0, "the posterior density there is flat"]]'
        return tree

    monkeypatch.setattr(bayesian, "sample_posterior", sample)
    fit = BayesianGMM(2, random_seed=2, **RUN).fit(mirrored)
    assert len(seen["starts"]) == 1  # (the mirrored data's second optimum)
    assert fit.starts_ == []


def test_em_optima_of_a_dataframe_keep_its_feature_names(monkeypatch):
    """Fitted on a DataFrame, ``em_`` (which the best restart may replace) and every other
    start are fitted on the DataFrame too: they know its columns, and predicting on it does
    not warn about feature names."""
    import pandas as pd
    from sklearn.datasets import load_wine

    from bayesgmm import bayesian

    empty = xr.DataTree.from_dict({"posterior": xr.Dataset()})  # sampling is not the point
    monkeypatch.setattr(bayesian, "sample_posterior", lambda *args, **kwargs: empty)
    wine = load_wine()
    X = pd.DataFrame(wine.data[:, :4], columns=wine.feature_names[:4])
    fit = BayesianGMM(3, chains=4, random_seed=0, em_n_init=5).fit(X)
    for em in [fit.em_, *fit.starts_]:
        assert list(em.feature_names_in_) == list(X.columns)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            em.predict(X)
