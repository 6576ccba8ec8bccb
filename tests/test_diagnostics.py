"""Each convergence check fails on a posterior built to fail it, and warns with its advice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from bayesgmm import EMGaussianMixture, SamplingWarning, diagnostics
from bayesgmm._idata import RUN_STAT, bfmi
from bayesgmm.diagnostics import check_sampling, log_likelihood_drift

from ._fake import idata_around, partition_tree, simulated_data


@pytest.fixture(scope="module")
def fit():
    X = simulated_data(2)
    return EMGaussianMixture(3, random_state=0, n_init=2).fit(X), X


def _posterior(fit, *, n_draws=2000, divergent=0, energy=None, chain_shift=0.0):
    """A posterior that passes every check unless told otherwise (``n_draws`` per chain)."""
    em, X = fit
    idata = idata_around(em, X[:30], n_chains=2, n_draws=n_draws, seed=1)
    stats = idata.sample_stats
    stats["diverging"].values[:] = False
    stats["diverging"].values[1, :divergent] = True
    if energy is not None:
        stats["energy"] = xr.DataArray(energy, dims=("chain", "draw"))
    if chain_shift:
        idata.posterior["means"].values[1] += chain_shift
    return idata


def _failed(idata) -> tuple[set[str], str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        table = check_sampling(idata)
    messages = [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]
    assert len(messages) <= 1
    return set(table.loc[~table["passed"], "check"]), messages[0] if messages else ""


def test_a_healthy_posterior_passes_silently(fit, rng):
    energy = rng.standard_normal((2, 2000))  # independent energies: E-BFMI about 2
    failed, message = _failed(_posterior(fit, energy=energy))
    assert failed == set() and message == ""


def test_divergences_warn_with_target_accept_advice(fit):
    failed, message = _failed(_posterior(fit, divergent=3))
    assert failed == {"divergences"}
    assert "divergences = 3" in message and "target_accept" in message


def test_divergences_after_a_run_at_a_high_target_are_not_told_to_raise_it(fit):
    """The follow-up already reran the chains at 0.95: the advice says so and points at the
    model; a row without a worst parameter shows no empty "worst:"."""
    idata = _posterior(fit, divergent=3)
    idata.posterior.attrs.update(target_accept=0.8, follow_up_target_accept=0.95)
    failed, message = _failed(idata)
    assert failed == {"divergences"}
    assert "already ran at target_accept 0.95" in message and "(e.g. 0.95)" not in message
    assert "worst: )" not in message and "divergences = 3 (gate 0)" in message
    _, plain = _failed(_posterior(fit, divergent=3))  # no follow-up: raise it
    assert "raise target_accept (e.g. 0.95)" in plain
    assert "target_accept 0.99 is a last, slow try" in message
    idata.posterior.attrs.update(follow_up_target_accept=0.99)  # the follow-ups' last target
    _, last = _failed(idata)
    assert "already ran at target_accept 0.99" in last and "last, slow try" not in last
    # an extension drawn again at 0.99 after its own divergences (the draws before at 0.8)
    idata.posterior.attrs.update(follow_up_target_accept=None, extension_target_accept=0.99)
    _, redone = _failed(idata)
    assert "already ran at target_accept 0.99" in redone and "last, slow try" not in redone


def test_chains_in_different_places_fail_r_hat(fit):
    """Far above the gate, R-hat is not told that longer runs fix it (UCI's vowel at K=4 went
    from 1.29 to 1.57 with 1000 tuning steps and 2000 draws, as the advice said to try); just
    above it, that is the advice."""
    failed, message = _failed(_posterior(fit, chain_shift=0.5))
    assert "r_hat" in failed
    assert "worst: means[" in message and "fewer components" in message
    assert "one chain" not in message  # (two chains here)
    r_hat = diagnostics(_posterior(fit, chain_shift=0.5)).set_index("check").loc["r_hat"]
    assert r_hat["value"] > 1.05 and "more than longer runs fix" in r_hat["advice"]
    assert "tune and draw longer" not in r_hat["advice"]
    mild = diagnostics(_posterior(fit, chain_shift=0.02)).set_index("check").loc["r_hat"]
    assert 1.01 < mild["value"] <= 1.05 and "tune and draw longer" in mild["advice"]


def test_a_chain_that_moves_to_a_worse_region_while_drawing_fails_drift(fit):
    """Chain 1's log-likelihood falls by 2 nats per row (60 in all) half way, while its
    smallest weight falls: the drift row names the chain, both levels and the weights."""
    idata = _posterior(fit)
    obs = idata.log_likelihood["obs"]
    obs.values[1, 1000:] -= 2.0
    weights = idata.posterior["weights"]
    weights.values[1, 1000:, 0] = 0.01
    failed, message = _failed(idata)
    assert "drift" in failed
    assert "chain 1 (of 1 drifting)" in message and "fewer components" in message
    table = log_likelihood_drift(idata)
    assert table["drifted"].tolist() == [False, True]
    assert table.loc[1, "last"] - table.loc[1, "first"] == pytest.approx(-60.0, abs=2.0)
    assert table.loc[1, "min_weight_last"] == pytest.approx(0.01)
    short = _posterior(fit, n_draws=99)  # too few draws to judge: no drift row
    short.log_likelihood["obs"].values[1, 50:] -= 2.0
    assert "drift" not in set(diagnostics(short)["check"])


def test_a_chain_that_changes_partition_at_the_same_likelihood_fails_drift(rng):
    """R's airquality at K = 3: a chain held another partition, at about the same
    log-likelihood, for its first 60% of draws, then joined the others. Its log-likelihood
    cannot show it; the partitions of its first and last quarter can. Chains settled in two
    partitions (two modes) have not drifted, nor has a chain that crosses between them all
    the time (the share of each is the same in every quarter)."""
    where = np.zeros((4, 400), dtype=np.int64)
    where[3, :240] = 1
    table = log_likelihood_drift(partition_tree(where, rng))
    assert table["drifted"].tolist() == [False, False, False, True]
    assert (np.abs(table["last"] - table["first"]) < table["sd"]).all()  # not by likelihood
    gap, level = table["partition_gap"], table["partition_level"]
    assert gap[3] > 2 * level[3] and (gap[:3] < level[:3]).all()
    tree = partition_tree(where, rng)
    tree["sample_stats"] = xr.DataTree(
        xr.Dataset({"diverging": (("chain", "draw"), np.zeros(where.shape, dtype=bool))})
    )
    row = diagnostics(tree).set_index("check").loc["drift"]
    assert not row["passed"] and "chain 3 (of 1 drifting)" in row["worst"]
    assert "partition moved" in row["worst"] and row["value"] > row["threshold"]
    settled = np.zeros((4, 400), dtype=np.int64)
    settled[2:] = 1
    assert not log_likelihood_drift(partition_tree(settled, rng))["drifted"].any()
    crossing = (np.arange(400)[None] // 5 + np.arange(4)[:, None]) % 2  # 5 draws each side
    assert not log_likelihood_drift(partition_tree(crossing, rng))["drifted"].any()
    # stable but slowly mixing: stays of 20 draws on average (geometric), 1000 draws; with the
    # smaller quarter's noise as the level (two chains' rule) some such chains were flagged
    stays = rng.geometric(1 / 20, size=(4, 1000)).cumsum(axis=1)
    slow = np.array([np.searchsorted(s, np.arange(1000), side="right") % 2 for s in stays])
    assert not log_likelihood_drift(partition_tree(slow, rng))["drifted"].any()
    blind = partition_tree(where, rng)
    del blind["observed_data"]  # without the rows: judged by the likelihood alone
    table = log_likelihood_drift(blind)
    assert table["partition_gap"].isna().all() and not table["drifted"].any()


def test_sticky_energy_fails_bfmi(fit, rng):
    walk = np.cumsum(0.05 * rng.standard_normal((2, 2000)), axis=1)  # E-BFMI about 0.0025
    failed, message = _failed(_posterior(fit, energy=walk))
    assert failed == {"bfmi"}
    assert "bfmi" in message and "tune longer" in message


def _ar1(rng, shape, rho):
    """Autoregressive energies: E-BFMI about ``2 (1 - rho)``."""
    out = np.empty(shape)
    out[..., 0] = rng.standard_normal(shape[:-1])
    for t in range(1, shape[-1]):
        out[..., t] = rho * out[..., t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(shape[:-1])
    return out


def test_bfmi_is_judged_within_each_run_of_a_joined_chain(fit, rng):
    """A chain joined from two runs whose energy levels differ by a constant (nutpie's energy
    moves with the metric between a run and its re-tuned extension) fails E-BFMI when read
    as one run, and is judged on its transitions when the runs are numbered: the value is
    that of the same chain without the step, and a single numbered run equals ArviZ's."""
    energy = _ar1(rng, (2, 2000), 0.5)  # E-BFMI about 1 per chain
    stepped = energy + np.where(np.arange(2000) < 800, 0.0, 12.0)
    runs = np.broadcast_to(np.arange(2000) >= 800, (2, 2000)).astype(int)
    plain = bfmi(_posterior(fit, energy=energy))
    assert np.all(plain > 0.8)
    assert np.all(bfmi(_posterior(fit, energy=stepped)) < 0.05)  # the step read as energy
    numbered = _posterior(fit, energy=stepped)
    numbered.sample_stats[RUN_STAT] = xr.DataArray(runs, dims=("chain", "draw"))
    np.testing.assert_allclose(bfmi(numbered), plain, rtol=0.01)
    assert diagnostics(numbered).set_index("check").loc["bfmi", "passed"]
    one_run = _posterior(fit, energy=stepped)
    one_run.sample_stats[RUN_STAT] = xr.DataArray(np.zeros((2, 2000), int), dims=("chain", "draw"))
    np.testing.assert_allclose(bfmi(one_run), bfmi(_posterior(fit, energy=stepped)), rtol=1e-12)
    # a chain joined from results without numbered runs (NaN) is read as one run
    numbered.sample_stats[RUN_STAT] = numbered.sample_stats[RUN_STAT].where(
        numbered.sample_stats["chain"] == 0
    )
    mixed = bfmi(numbered)
    np.testing.assert_allclose(mixed, [plain[0], bfmi(one_run)[1]], rtol=0.01)
    # chain 1 joined from unnumbered results, then extended: its NaN stretch is one run
    numbered.sample_stats[RUN_STAT].values[1] = np.where(np.arange(2000) < 800, np.nan, 1)
    numbered.sample_stats["energy"] += 100.0  # a level of its own (the constant is arbitrary)
    np.testing.assert_allclose(bfmi(numbered), plain, rtol=0.01)


def test_sticky_runs_still_fail_bfmi_when_numbered(fit, rng):
    """Numbering the runs does not hide poor energy transitions within them."""
    sticky = np.cumsum(0.05 * rng.standard_normal((2, 2000)), axis=1)
    energy = sticky + np.where(np.arange(2000) < 1000, 0.0, 30.0)
    idata = _posterior(fit, energy=energy)
    idata.sample_stats[RUN_STAT] = xr.DataArray(
        np.repeat([[0, 1]], 1000, axis=1).repeat(2, axis=0), dims=("chain", "draw")
    )
    assert np.all(bfmi(idata) < 0.3)


def test_table_values(fit):
    table = diagnostics(_posterior(fit, divergent=5)).set_index("check")
    assert table.loc["divergences", "value"] == 5 and not table.loc["divergences", "passed"]
    assert table.loc["bfmi", "worst"] == "energy not recorded"
    assert table.loc["ess_bulk", "value"] > 400 and table.loc["r_hat", "value"] < 1.01


def test_one_chain_fails_r_hat_but_keeps_the_ess_checks(fit):
    """R-hat needs two chains: with one the check fails with that reason, and the ESS checks
    are still computed (they were lost, and the table raised, before)."""
    one = _posterior(fit).isel(chain=[0])
    table = diagnostics(one).set_index("check")
    assert not table.loc["r_hat", "passed"] and np.isnan(table.loc["r_hat", "value"])
    assert "2 or more chains" in table.loc["r_hat", "worst"]
    assert table.loc["ess_bulk", "value"] > 400 and table.loc["ess_bulk", "passed"]
    failed, message = _failed(one)
    assert failed == {"r_hat"} and "run 2 or more chains" in message


def _left(idata, depth=(-5.2, -0.3)):
    """The attrs a run leaves when its chains left the EM mode and ran again."""
    idata.posterior.attrs["left_mode_depth"] = list(depth)
    return idata


def test_chains_that_left_the_mode_but_converged_are_a_finding_not_a_failure(fit, rng):
    """The second run converged: the left_mode row passes (no warning) and says what the
    model found (the weights now) with a note on fewer components."""
    energy = rng.standard_normal((2, 2000))
    idata = _left(_posterior(fit, energy=energy))
    failed, message = _failed(idata)
    assert failed == set() and message == ""
    row = diagnostics(idata).set_index("check").loc["left_mode"]
    assert row["passed"] and row["value"] == 1
    assert "chain(s) [0] settled 5.2 sds below" in row["worst"] and "weights now" in row["worst"]
    assert "not a sampling failure" in row["advice"] and "fewer components" in row["advice"]


def test_chains_that_left_the_mode_and_did_not_converge_fail_with_the_usual_rows(fit, rng):
    energy = rng.standard_normal((2, 2000))
    failed, message = _failed(_left(_posterior(fit, energy=energy, divergent=2)))
    assert failed == {"divergences", "left_mode"}
    assert "left_mode = 1" in message and "every chain ran again" in message


def test_a_crossing_chain_that_came_back_is_said_so_and_does_not_fail(fit, rng):
    """robustbase's hbk, K=3: the first run stopped when a chain crossed, but at the stop no
    chain was below the rule (depths -2.0 to -2.5): the row read "chain(s) [] settled 2.5
    sds below" and failed at value 0, gate 0, with the divergences. Now it passes and says
    what happened; a failed run fails on its own checks."""
    idata = _left(_posterior(fit, energy=rng.standard_normal((2, 2000))), depth=(-2.01, -2.5))
    row = diagnostics(idata).set_index("check").loc["left_mode"]
    assert row["passed"] and row["value"] == 0
    assert "crossed below the EM mode's typical set and came back" in row["worst"]
    assert "2.5 sds" in row["worst"] and "chain(s) []" not in row["worst"]
    assert "every chain ran again from its own draws" in row["worst"]


def test_the_left_mode_row_says_whether_the_chains_were_moved_and_why(fit, rng):
    """The row names the chains whose draws started the next run and the log-mass margin that
    decided: all moved when above LEFT_MASS_MARGIN, else each region kept its chains."""
    idata = _left(_posterior(fit, energy=rng.standard_normal((2, 2000))))
    idata.posterior.attrs["left_mode_restarted_from"] = [0]
    idata.posterior.attrs["left_mode_moved"] = ["all"]
    idata.posterior.attrs["left_mode_mass_margin"] = [57.5]
    row = diagnostics(idata).set_index("check").loc["left_mode"]
    assert "every chain ran again from the draws of chain(s) [0]" in row["worst"]
    assert "+57.5 nats" in row["worst"]
    idata.posterior.attrs["left_mode_moved"] = ["apart"]
    idata.posterior.attrs["left_mode_mass_margin"] = [1.3]
    row = diagnostics(idata).set_index("check").loc["left_mode"]
    assert "chain(s) [0] ran again from their own draws" in row["worst"]
    assert "+1.3 nats" in row["worst"] and "each kept its chains" in row["worst"]
    # a chain stopped with too few draws to weigh its region (HSAUR3 heptathlon, K=3): said
    # so, not "log mass +nan nats"
    idata.posterior.attrs["left_mode_mass_margin"] = [np.nan]
    row = diagnostics(idata).set_index("check").loc["left_mode"]
    assert "too few draws to weigh" in row["worst"] and "nan" not in row["worst"].lower()


def _deep(idata, share: tuple[float, float], name: str = "maxdepth_reached"):
    """``idata`` whose chains' trajectories stopped at the maximum tree depth in ``share`` of
    their draws (at 1023 leapfrog steps; the other draws at 31)."""
    n_draws = idata.sample_stats.sizes["draw"]
    reached = np.arange(n_draws)[None, :] < np.round(np.array(share)[:, None] * n_draws)
    idata.sample_stats[name] = xr.DataArray(reached, dims=("chain", "draw"))
    steps = np.where(reached, 1023, 31)
    idata.sample_stats["n_steps"] = xr.DataArray(steps, dims=("chain", "draw"))
    return idata


def test_trajectories_at_the_maximum_depth_fail_beside_a_failed_run(fit, rng):
    """Body girths K=4's slow chain ran 400-700 leapfrog steps a draw (treedepth results):
    above 5% of a chain's draws at the maximum depth, a run that failed its gates also fails
    the treedepth row, which names the chain, its share and its mean trajectory length, and
    points at the model, not at a deeper tree."""
    idata = _deep(_posterior(fit, energy=rng.standard_normal((2, 2000)), divergent=2), (0.0, 0.4))
    failed, message = _failed(idata)
    assert failed == {"divergences", "treedepth"}
    assert "treedepth = 0.4 (gate 0.05; worst: chain 1 (of 1 above the gate): 40% of" in message
    assert "428 leapfrog steps a draw" in message  # 0.4 * 1023 + 0.6 * 31
    assert "fewer components" in message and "deeper tree only makes" in message
    idata.posterior["weights"].values[1] = [0.015, 0.485, 0.5]  # chain 1: a near-empty one
    row = diagnostics(idata).set_index("check").loc["treedepth"]
    assert "its smallest mean weight 0.015" in row["worst"]


def test_trajectories_at_the_maximum_depth_in_a_converged_run_are_a_finding(fit, rng):
    """Converged chains: the row passes with a note (no warning); at or below 5% there is no
    row; PyMC's name for the statistic counts too; independence MH draws have none."""
    energy = rng.standard_normal((2, 2000))
    idata = _deep(_posterior(fit, energy=energy), (0.1, 0.0))
    failed, message = _failed(idata)
    assert failed == set() and message == ""
    row = diagnostics(idata).set_index("check").loc["treedepth"]
    assert row["passed"] and row["value"] == pytest.approx(0.1)
    assert "chain 0 (of 1 above the gate)" in row["worst"] and "efficiency" in row["advice"]
    assert "treedepth" not in set(diagnostics(_deep(_posterior(fit), (0.05, 0.0)))["check"])
    pymc = _deep(_posterior(fit, energy=energy), (0.0, 0.2), name="reached_max_treedepth")
    assert diagnostics(pymc).set_index("check").loc["treedepth", "value"] == pytest.approx(0.2)
    imh = _deep(_posterior(fit), (0.5, 0.5))
    imh.posterior.attrs["draws_sampler"] = "independence_mh"
    assert "treedepth" not in set(diagnostics(imh)["check"])


def _accepting(idata, accept: np.ndarray, target: float = 0.8, start: np.ndarray | None = None):
    """``idata`` with NUTS's acceptance statistic (and which draws repeat the one before)."""
    idata.sample_stats["mean_tree_accept"] = xr.DataArray(accept, dims=("chain", "draw"))
    if start is not None:
        index = np.where(start, 0, 3)
        idata.sample_stats["index_in_trajectory"] = xr.DataArray(index, dims=("chain", "draw"))
    idata.posterior.attrs["target_accept"] = target
    return idata


def test_a_chain_whose_trajectories_are_rejected_is_stuck(fit, rng):
    """Chain 1 accepts 0.09 on average against a target of 0.8 and repeats 80% of its draws
    (the model-selection notebook's K=4 chain): a ``stuck`` row names it with both numbers
    and what to try; chains near their target (0.83, and 0.45 just above half of 0.8) pass,
    and a raised target (0.95 in the follow-up) is the one judged."""
    idata = _posterior(fit, energy=rng.standard_normal((2, 2000)))
    accept = np.stack([rng.uniform(0.7, 0.95, 2000), rng.uniform(0.0, 0.18, 2000)])
    start = np.stack([rng.random(2000) < 0.02, rng.random(2000) < 0.8])
    failed, message = _failed(_accepting(idata, accept, start=start))
    assert failed == {"stuck"}
    assert "chain 1 (of 1 stuck): mean acceptance 0.09 against target_accept 0.8" in message
    assert "80% of its draws repeat" in message and "raise target_accept" in message
    row = diagnostics(idata).set_index("check").loc["stuck"]
    assert row["value"] == pytest.approx(0.09, abs=0.01) and row["threshold"] == 0.4
    accept[1] = rng.uniform(0.4, 0.5, 2000)  # low, but above half the target
    assert _failed(_accepting(idata, accept, start=start))[0] == set()
    idata.posterior.attrs["follow_up_target_accept"] = 0.95  # the new chains' target: 0.475
    failed, message = _failed(_accepting(idata, accept, start=start))
    assert failed == {"stuck"}
    # already at 0.95 (an unseen real posterior was told "against target_accept 0.95 ...
    # raise target_accept (e.g. 0.95)"): the advice points at the model instead
    assert "although the chains ran at target_accept 0.95" in message
    assert "raise target_accept" not in message


def test_acceptance_is_not_judged_without_trajectories_or_a_target(fit, rng):
    """Independence Metropolis-Hastings draws have no trajectories (their acceptance is
    another statistic), and results without a recorded target cannot be judged."""
    accept = np.full((2, 2000), 0.05)
    imh = _accepting(_posterior(fit), accept)
    imh.posterior.attrs["draws_sampler"] = "independence_mh"
    assert "stuck" not in set(diagnostics(imh)["check"])
    untargeted = _accepting(_posterior(fit), accept)
    del untargeted.posterior.attrs["target_accept"]
    assert "stuck" not in set(diagnostics(untargeted)["check"])


def test_parameter_diagnostics_of_the_same_results_compute_once_within_the_block(fit, monkeypatch):
    """Within reusing_parameter_diagnostics the table of one results object is computed once
    and handed out as copies; new results, a replaced posterior or any of its arrays (a
    relabelling), or a call outside the block compute again."""
    import importlib

    from bayesgmm._idata import get_group, replace_group

    module = importlib.import_module("bayesgmm.diagnostics")
    computed = []
    compute = module._parameter_diagnostics
    monkeypatch.setattr(
        module, "_parameter_diagnostics", lambda idata: computed.append(id(idata)) or compute(idata)
    )
    idata, other = _posterior(fit), _posterior(fit, chain_shift=0.5)
    with module.reusing_parameter_diagnostics():
        first = module.parameter_diagnostics(idata)
        again = module.parameter_diagnostics(idata)
        assert len(computed) == 1 and first.equals(again) and first is not again
        again["r_hat"] = 0.0  # a caller's change stays its own
        assert module.parameter_diagnostics(idata).equals(first)
        assert not module.parameter_diagnostics(other).equals(first) and len(computed) == 2
        replace_group(idata, "posterior", get_group(idata, "posterior").copy(deep=True))
        module.parameter_diagnostics(idata)
        assert len(computed) == 3
        posterior = get_group(idata, "posterior")  # new weights, the same means array
        replace_group(idata, "posterior", posterior.assign(weights=posterior["weights"] * 1.0))
        module.parameter_diagnostics(idata)
        assert len(computed) == 4
    module.parameter_diagnostics(idata)
    assert len(computed) == 5


def _relabelled(idata, flips_every: int | None):
    """``label_permutation`` of 3 components: the identity, with EM's components 0 and 2
    matched the other way round every ``flips_every``-th draw of chain 1 (None: never)."""
    n_chain, n_draw = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    perm = np.tile(np.arange(3), (n_chain, n_draw, 1))
    if flips_every:
        perm[1, ::flips_every] = [2, 1, 0]
    idata.sample_stats["label_permutation"] = xr.DataArray(
        perm, dims=("chain", "draw", "component")
    )
    return idata


def test_components_matched_differently_from_draw_to_draw_fail_labels(fit):
    """Chain 1 swaps EM's components 0 and 2 every 4th draw (half its steps change): the
    labels row names the chain, the share and the pair; a block relabelled once (label
    switching undone) and a rare swap pass, with no row."""
    failed, message = _failed(_relabelled(_posterior(fit), 4))
    assert failed == {"labels"}
    assert "chain 1 (of 1 above the gate)" in message and "50%" in message
    assert "components 0 and 2" in message and "fewer components" in message
    # the chains converged: the warning does not open with "Sampling diagnostics failed"
    # (an unseen-data sweep read that above a labels row alone, every other check passing)
    assert message.startswith("The chains converged, but a check of what their draws mean")
    _, mixed = _failed(_relabelled(_posterior(fit, divergent=3), 4))
    assert mixed.startswith("Sampling diagnostics failed")  # with a failure of convergence
    once = _posterior(fit)
    perm = np.tile(np.arange(3), (2, 2000, 1))
    perm[0, 700:] = [1, 0, 2]  # chain 0 switched once: undone, not a failure
    once.sample_stats["label_permutation"] = xr.DataArray(perm, dims=("chain", "draw", "component"))
    rare = _relabelled(_posterior(fit), 50)  # 4% of chain 1's steps: under the gate
    for idata in (once, rare):
        assert "labels" not in set(diagnostics(idata)["check"])
