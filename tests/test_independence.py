"""Independence Metropolis-Hastings after NUTS (bayesgmm._independence): the proposal's density
against SciPy, exact chains on targets with known moments, when the step runs, and what its
result records."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import bayesgmm._independence as ind
from bayesgmm import BayesianGMM, build_model, diagnostics, load_faithful, sampling
from bayesgmm._idata import get_attr, get_group, new_tree, set_attrs
from bayesgmm.em import EMGaussianMixture
from bayesgmm.sampling import _kernel_laplace, _results

_WEIGHTS = np.array([0.2, 0.5, 0.3])
_MEANS = np.array([[0.0, 0.0], [3.0, -1.0], [-2.0, 4.0]])
_COVS = np.array([[[1.0, 0.6], [0.6, 2.0]], [[0.3, -0.1], [-0.1, 0.5]], [[2.0, 0.0], [0.0, 0.2]]])


def _scipy_log_density(x: np.ndarray) -> np.ndarray:
    parts = [
        np.log(w) + np.atleast_1d(multivariate_normal(m, c).logpdf(x))
        for w, m, c in zip(_WEIGHTS, _MEANS, _COVS, strict=True)
    ]
    return logsumexp(np.stack(parts), axis=0)


def test_proposal_log_density_matches_scipy():
    x = np.random.default_rng(0).normal(scale=3.0, size=(50, 2))
    proposal = ind.Proposal(_WEIGHTS, _MEANS, _COVS)
    np.testing.assert_allclose(proposal.log_density(x), _scipy_log_density(x), rtol=1e-12)


def test_proposal_draws_have_the_mixture_moments():
    draws = ind.Proposal(_WEIGHTS, _MEANS, _COVS).sample(np.random.default_rng(1), 200_000)
    mean = _WEIGHTS @ _MEANS
    second = sum(w * (c + np.outer(m, m)) for w, m, c in zip(_WEIGHTS, _MEANS, _COVS, strict=True))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), second - np.outer(mean, mean), atol=0.05)


def test_a_proposal_equal_to_the_target_accepts_every_step():
    proposal = ind.Proposal(_WEIGHTS, _MEANS, _COVS)
    log_p = lambda x: float(_scipy_log_density(x[None])[0]) + 7.0  # noqa: E731 - any constant
    chain = ind.independence_chain(log_p, proposal, np.zeros(2), 500, np.random.default_rng(2))
    assert chain.acceptance == 1.0 and chain.accepted.all()
    np.testing.assert_allclose(chain.logp, [log_p(x) for x in chain.draws])


def test_independence_chain_is_exact_for_a_known_target():
    # a correlated 2-D Gaussian target, a proposal of the wrong shape (shifted and too wide)
    mean, cov = np.array([1.0, -2.0]), np.array([[1.0, 0.7], [0.7, 2.0]])
    log_p = multivariate_normal(mean, cov).logpdf
    proposal = ind.Proposal([1.0], [[1.5, -1.0]], [3.0 * np.eye(2)])
    chain = ind.independence_chain(log_p, proposal, mean, 40_000, np.random.default_rng(3))
    assert 0.2 < chain.acceptance < 0.9
    # Monte Carlo error of the mean: sd / sqrt(ESS), ESS a few thousand here
    np.testing.assert_allclose(chain.draws.mean(axis=0), mean, atol=0.08)
    np.testing.assert_allclose(np.cov(chain.draws.T), cov, atol=0.12)
    # the draws are the kept candidates: each accepted step moves, each rejected one stays
    moved = np.any(np.diff(chain.draws, axis=0) != 0, axis=1)
    np.testing.assert_array_equal(moved, chain.accepted[1:])


def test_independence_chains_recover_a_bimodal_target():
    # two correlated 3-D modes, 70% / 30%; the proposal fitted to draws that saw them 50/50
    means = np.array([[0.0, 0.0, 0.0], [4.0, -3.0, 1.0]])
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    mass = np.array([0.7, 0.3])

    precision, log_norm = np.linalg.inv(cov), np.log(mass) - 0.5 * np.log(np.linalg.det(cov))

    def log_p(x):  # up to a constant
        d = x - means
        return float(np.logaddexp(*(log_norm - 0.5 * np.einsum("ki,ij,kj->k", d, precision, d))))

    rng = np.random.default_rng(3)
    seen = np.concatenate([rng.multivariate_normal(mu, 0.6 * cov, size=400) for mu in means])
    proposal = ind.fit_proposal(seen, 0, components=2)
    chain = ind.independence_chain(log_p, proposal, seen[0], 20_000, rng)
    assert 0.2 < chain.acceptance < 1.0
    in_second = chain.draws[:, 0] > 2.0
    assert abs(in_second.mean() - mass[1]) < 0.04  # a standard error below 0.01
    np.testing.assert_allclose(chain.draws.mean(axis=0), mass @ means, atol=0.2)
    np.testing.assert_allclose(chain.draws[~in_second].std(axis=0), np.sqrt(np.diag(cov)), rtol=0.1)


def test_fit_proposal_chooses_components_by_bic_within_the_cap():
    rng = np.random.default_rng(4)
    draws = ind.Proposal(_WEIGHTS, _MEANS, _COVS).sample(rng, 3000)
    proposal = ind.fit_proposal(draws, 0)
    assert proposal.n_components == 3 + 1  # the three, and the wide one
    assert proposal.weights[-1] == ind.WIDE_WEIGHT
    np.testing.assert_allclose(proposal.means[-1], draws.mean(axis=0))
    wide = proposal.chols[-1] @ proposal.chols[-1].T
    np.testing.assert_allclose(wide, ind.WIDE_SCALE * np.cov(draws.T))
    # 40 draws of 2 dims: at most 40 // (10 * 2) = 2 components
    assert ind.fit_proposal(draws[:40], 0).n_components <= 2 + 1
    assert np.isclose(proposal.weights.sum(), 1.0)


# ------------------------------------------------------------------------- when it runs
def _raw(chains: int, draws: int, n_dim: int):
    rng = np.random.default_rng(0)
    return ind.raw_tree(
        [
            ind.Chain(rng.normal(size=(draws, n_dim)), np.ones(draws, bool), np.zeros(draws))
            for _ in range(chains)
        ]
    )


def _plan(monkeypatch, *, gates=None, modes=None, chains=4, draws=1000, n_dim=5, max_draws=3000):
    failing = {"r_hat": 1.06, "ess": 50.0, "divergences": 0, "drifted": False, "n_modes": 1}
    monkeypatch.setattr(ind, "_gates", lambda idata: {**failing, **(gates or {})})
    idata = new_tree({"posterior": xr.Dataset()})
    if modes:
        set_attrs(idata, {"modes": modes, "n_modes": len(modes)})
    return ind.skip_reason(idata, _raw(chains, draws, n_dim), {"draws": draws}, max_draws)


def _mode(chains, r_hat=1.003, divergences=0):
    return {
        "mode": 0,
        "chains": chains,
        "max_r_hat": r_hat,
        "min_ess_bulk": 900.0,
        "min_ess_tail": 800.0,
        "divergences": divergences,
    }


def test_the_step_runs_when_r_hat_or_ess_still_fail(monkeypatch):
    assert _plan(monkeypatch) == ("R-hat 1.060, ESS 50", "")
    assert _plan(monkeypatch, gates={"r_hat": 1.0}) == ("ESS 50", "")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({"gates": {"r_hat": 1.0, "ess": 900.0, "divergences": 12}}, ("", "")),  # divergences only
        ({"max_draws": 1000}, ("", "")),  # max_draws == draws: follow-ups off
        ({"modes": [_mode([0, 1]), {**_mode([2, 3]), "mode": 1}]}, ("", "")),  # each converged
        ({"modes": [_mode([0, 1], divergences=3), {**_mode([2, 3]), "mode": 1}]}, ("", "")),
    ],
)
def test_the_step_does_not_run_without_failing_gates(monkeypatch, case, expected):
    assert _plan(monkeypatch, **case) == expected


def test_a_mode_that_fails_lets_the_step_run(monkeypatch):
    modes = [_mode([0, 1], r_hat=1.2), {**_mode([2, 3]), "mode": 1}]
    assert _plan(monkeypatch, modes=modes) == ("R-hat 1.060, ESS 50", "")


@pytest.mark.parametrize(
    ("case", "blocked"),
    [
        ({"n_dim": 41, "draws": 1000}, "41 dimensions (above 40)"),
        ({"chains": 1}, "one chain"),
        ({"draws": 45}, "180 NUTS draws for 5 dimensions (fewer than 40 per dimension)"),
    ],
)
def test_the_step_is_blocked_by_dimension_chains_and_draws(monkeypatch, case, blocked):
    assert _plan(monkeypatch, **case) == ("R-hat 1.060, ESS 50", blocked)


def test_a_blocked_step_is_recorded_and_keeps_the_nuts_result(monkeypatch):
    monkeypatch.setattr(ind, "skip_reason", lambda *a: ("ESS 50", "one chain"))
    finished = (object(), object())
    out = ind.refine(None, finished, None, None, {"draws": 10}, 30)
    assert out[:2] == finished
    assert out[2] == {
        "independence_mh": {"kept": False, "reason": "ESS 50 after NUTS; not run: one chain"}
    }


def test_ctrl_c_during_the_step_keeps_the_nuts_result(monkeypatch):
    monkeypatch.setattr(ind, "skip_reason", lambda *a: ("ESS 50", ""))

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ind, "independence_chain", interrupted)
    finished = (object(), object())
    raw = _raw(4, 100, 3)
    model = build_model(load_faithful(), 1)
    out = ind.refine(raw, finished, None, model, {"draws": 100, "seed": 1}, 300)
    assert out[:2] == finished
    record = out[2]["independence_mh"]
    assert not record["kept"] and "interrupted (Ctrl-C): kept the NUTS result" in record["reason"]
    assert "draws_sampler" not in out[2]


# ------------------------------------------------------------- on a real posterior, cheaply
@pytest.fixture(scope="module")
def sticky_faithful():
    """Old Faithful K=2 with stand-in "NUTS" chains that mix slowly: AR(1) draws of the
    Laplace approximation (autocorrelation 0.95: ESS about 1/40 of the draws), so the gates
    fail on ESS (and R-hat) alone."""
    X = load_faithful()
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    approx = _kernel_laplace(model, em, "laplace")
    rng, rho = np.random.default_rng(5), 0.95
    z = np.empty((4, 500, approx.mode.size))
    z[:, 0] = rng.standard_normal(z[:, 0].shape)
    for t in range(1, z.shape[1]):
        z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(z[:, t].shape)
    theta = approx.to_theta(z)
    n = theta.shape[1]
    raw = ind.raw_tree([ind.Chain(t, np.ones(n, bool), np.zeros(n)) for t in theta])
    results = functools.partial(_results, model=model, em=em, kernel=True)
    return model, raw, results


@pytest.fixture(scope="module")
def refined(sticky_faithful):
    model, raw, results = sticky_faithful
    finished = results(raw)
    run = {"draws": 500, "seed": 3, "progressbar": False}
    return finished, ind.refine(raw, finished, results, model, run, 1000)


def test_a_kept_result_replaces_the_draws_and_says_so(refined):
    finished, (idata, _, attrs) = refined
    record = attrs["independence_mh"]
    assert record["kept"], record
    assert attrs["draws_sampler"] == "independence_mh"
    assert record["steps_per_chain"][0] == ind.ROUND_STEPS
    assert record["thin"] * 500 == record["steps_per_chain"][1] <= 10 * 1000
    assert len(record["acceptance"]) == 4 and min(record["acceptance"]) > ind.MIN_ACCEPTANCE
    assert record["seconds"] > 0 and len(record["components"]) == 2
    assert get_group(idata, "posterior").sizes == get_group(finished[0], "posterior").sizes
    stats = get_group(idata, "sample_stats")
    assert stats["accepted"].dtype == bool and "logp" in stats
    # code written for NUTS results reads the kept draws alike: no independence step diverges
    assert stats["diverging"].shape == stats["accepted"].shape == (4, 500)
    assert stats["diverging"].dtype == bool and not stats["diverging"].any()
    set_attrs(idata, attrs)
    table = diagnostics(idata).set_index("check")
    for check in ("divergences", "bfmi"):
        assert table.loc[check, "passed"] and "not applicable" in table.loc[check, "worst"]
    assert table.loc["r_hat", "value"] <= 1.01 and table.loc["ess_bulk", "value"] >= 400


def test_a_passing_kept_run_ends_the_step(refined):
    _, (_, _, attrs) = refined
    assert len(attrs["independence_mh"]["steps_per_chain"]) == 2  # round 1, one kept run


def test_a_failing_kept_run_is_followed_by_one_sized_from_its_own_ess(monkeypatch, sticky_faithful):
    """Every kept run judged failing: after round 1, MAX_KEPT_RUNS kept runs (the cap is not
    reached), then the NUTS result stays."""
    model, raw, results = sticky_faithful
    real = ind._verdict  # the real gates size each run; only the judgement is replaced
    monkeypatch.setattr(
        ind, "_verdict", lambda idata: (False, "R-hat 1.040 (stand-in)", real(idata)[2])
    )
    finished = results(raw)
    run = {"draws": 500, "seed": 3, "progressbar": False}
    out = ind.refine(raw, finished, results, model, run, 1000)
    record = out[2]["independence_mh"]
    assert len(record["steps_per_chain"]) == 1 + ind.MAX_KEPT_RUNS
    assert max(record["steps_per_chain"][1:]) < ind.MAX_STEPS_FACTOR * 1000
    assert not record["kept"] and out[0] is finished[0]


def test_a_failing_kept_run_at_the_cap_is_followed_by_another(monkeypatch, sticky_faithful):
    """A kept run that reaches the cap and fails is not the end: one more at the cap, with q
    refitted to its draws, up to MAX_KEPT_RUNS (the slow Faithful K=3 test failed on the first
    run of a fresh clone when the first kept run hit the cap with ESS 283)."""
    model, raw, results = sticky_faithful
    real = ind._verdict
    monkeypatch.setattr(
        ind, "_verdict", lambda idata: (False, "ESS 283 (stand-in)", real(idata)[2])
    )
    monkeypatch.setattr(ind, "MAX_STEPS_FACTOR", 2)  # the cap: 2000 steps per chain
    run = {"draws": 500, "seed": 3, "progressbar": False}
    out = ind.refine(raw, results(raw), results, model, run, 1000)
    steps = out[2]["independence_mh"]["steps_per_chain"]
    assert steps[1:] == [2000] * ind.MAX_KEPT_RUNS


def test_the_step_is_repeatable_from_the_seed(sticky_faithful, refined):
    model, raw, results = sticky_faithful
    run = {"draws": 500, "seed": 3, "progressbar": False}
    again = ind.refine(raw, results(raw), results, model, run, 1000)[0]
    first = get_group(refined[1][0], "posterior")
    xr.testing.assert_identical(first["means"], get_group(again, "posterior")["means"])


def test_the_report_lists_what_the_step_did(refined):
    from types import SimpleNamespace

    from bayesgmm.report import _reproducibility_section

    idata, _, attrs = refined[1]
    tree = idata.copy()
    set_attrs(tree, {**attrs, "priors": {"alpha": 1.0}, "versions": {"bayesgmm": "x"}})
    section = _reproducibility_section(SimpleNamespace(idata_=tree), {})
    tables = [value for kind, value in section.blocks if kind == "table"]
    sampler = next(frame for frame, caption in tables if caption == "Sampler")
    rows = dict(zip(sampler["setting"], sampler["value"], strict=True))
    assert rows["draws_sampler"] == "independence_mh"
    assert "'kept': True" in rows["independence_mh"]


# ------------------------------------------------------------------------------ end to end
def test_an_easy_fit_is_left_to_nuts(monkeypatch):
    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return BayesianGMM(2, random_seed=1, progressbar=False).fit(load_faithful()).idata_

    idata = fit()
    assert get_attr(idata, "independence_mh") is None
    assert get_attr(idata, "draws_sampler") is None
    assert "diverging" in get_group(idata, "sample_stats")
    monkeypatch.setattr(ind, "refine", lambda raw, finished, *args: (*finished, {}))
    xr.testing.assert_identical(get_group(fit(), "posterior"), get_group(idata, "posterior"))


def _converged(table) -> bool:
    """Every convergence check passed (``labels`` judges what the draws describe, not
    whether the sampler converged: :data:`bayesgmm.diagnostics.NOT_CONVERGENCE`)."""
    from bayesgmm.diagnostics import NOT_CONVERGENCE

    return bool(table.loc[~table.index.isin(NOT_CONVERGENCE), "passed"].all())


@pytest.mark.slow
def test_faithful_k3_ends_converged_at_most_seeds_with_or_without_the_step():
    """Old Faithful K=3 with the defaults, seeds 1-6: NUTS and its follow-ups end short of the
    gates at most seeds (R-hat 1.011-1.154, ESS 20-363), and the independence step's draws,
    kept only when they meet the gates, make the result converge. The claim is the user's, at
    most seeds rather than one: each seed's trajectory depends on the kernels' rounding, which
    depends on the CPU they were compiled for (seed 2, the one this test checked alone until
    2026-12-06, converged on the machine of stop 50 and not on this one after a restart: 2
    divergences and ESS 350 after NUTS, the step not kept at R-hat 1.050; measured then: seeds
    1 and 3-6 converged). The ``labels`` check is not asked for: Old Faithful's K=3 components
    swap roles (too many components), which does not bear on convergence. A kept step is
    always a converged result, on every machine (the gate is in the code)."""
    outcomes = []
    for seed in range(1, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = BayesianGMM(3, random_seed=seed, progressbar=False).fit(load_faithful())
        table = fit.diagnostics().set_index("check")
        record = get_attr(fit.idata_, "independence_mh")
        assert get_attr(fit.idata_, "sampler") == "nutpie"
        if record is not None and record["kept"]:
            assert get_attr(fit.idata_, "draws_sampler") == "independence_mh"
            assert _converged(table), (seed, table)
        outcomes.append(_converged(table))
    assert sum(outcomes) >= 4, outcomes


@pytest.mark.slow
def test_on_old_faithful_where_nuts_falls_far_short_the_step_runs_and_is_kept(monkeypatch):
    """End to end on real data, with a margin no rounding moves: 400 draws per chain
    (follow-ups up to 1600) leave NUTS on Old Faithful K=3 far short of the gates (measured,
    seeds 1-3: R-hat 1.08-1.14, bulk ESS 22-42); the independence step then runs, and its
    draws (seed 2: R-hat 1.004, ESS 918) replace NUTS's and pass every gate. The darting step
    before it (which meets the gates here too: R-hat 1.006, ESS 423) is left out, so that this
    one runs."""
    monkeypatch.setattr(sampling.darting, "refine", lambda raw, finished, *args: (*finished, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BayesianGMM(3, draws=400, max_draws=1600, random_seed=2, progressbar=False)
        fit.fit(load_faithful())
    record = get_attr(fit.idata_, "independence_mh")
    assert record is not None and record["kept"], record
    assert get_attr(fit.idata_, "draws_sampler") == "independence_mh"
    table = fit.diagnostics().set_index("check")
    assert table["passed"].all(), table


def test_a_kept_result_joins_the_loo_comparison(refined):
    """The selection's LOO table takes a kept result: no divergences to count (a blank
    cell, not an error: the demo's report once stopped on int(NaN))."""
    from bayesgmm.selection import _loo_row

    _, (idata, _, attrs) = refined
    set_attrs(idata, attrs)  # as sample_posterior records them
    row = _loo_row("K=2", idata, diagnostics(idata))
    assert np.isnan(row["divergences"]) and row["max_r_hat"] <= 1.01


def test_a_kept_result_counts_in_the_validation_study(refined):
    """The SBC study takes a kept result: no divergences (None), not a failed fit (make
    validate once lost the 8 of 100 simulations the step fired on to int(NaN))."""
    from bayesgmm.validation import SBCResult, sampler_diagnostics, summarize_sbc

    _, (idata, _, attrs) = refined
    set_attrs(idata, attrs)
    checks = sampler_diagnostics(idata)
    assert checks["divergences"] is None and np.isnan(checks["min_bfmi"]) and checks["passed"]
    nuts = {**checks, "divergences": 2, "passed": False}
    records = [
        {"status": "ok", "index": i, "em": {"warnings": []}, "n_rank_draws": 99,
         "diagnostics": d, "fractional_ranks": [0.5]}
        for i, d in enumerate([checks, nuts])
    ]  # fmt: skip
    counts = summarize_sbc(SBCResult(records, ("q",), {}))["counts"]
    assert counts["fitted"] == 2 and counts["with_divergences"] == 1
    assert counts["diagnostics_passed"] == 1
