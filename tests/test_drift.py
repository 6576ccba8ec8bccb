"""Chains that leave the mode they were whitened at, and their second run (bayesgmm._drift).

Oracles: the Laplace approximation's own distribution of ``log p`` (``log p(mode) - chi2_n /
2`` for draws from it), draws from a known Gaussian (their mean and covariance), and the layout
of the results when chains are replaced.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import xarray as xr

import bayesgmm.sampling as sampling_module
from bayesgmm import BayesianGMM, SamplingWarning
from bayesgmm._drift import (
    LEFT_APART_SDS,
    LEFT_MASS_MARGIN,
    LEFT_MODE_SDS,
    RERUN_TUNE,
    WATCH_DRAWS,
    _arrays,
    below_others,
    chain_modes,
    complete,
    depth,
    first_crossings,
    first_draws,
    latest_depth,
    leaver_restarts,
    left_mode,
    region_log_mass,
    replace_chains,
    restart_points,
    run_again_if_left,
    run_checked,
    stop_when_one_left,
)
from bayesgmm._idata import get_attr, new_tree, replace_group
from bayesgmm._precondition import Laplace
from bayesgmm.datasets import simulate_mixture
from bayesgmm.diagnostics import GATES


def _chi2_logp(rng, mode: float, n_dim: int, shape: tuple[int, int]) -> np.ndarray:
    """``log p`` of draws from the Laplace approximation itself."""
    return mode - 0.5 * rng.chisquare(n_dim, size=shape)


@pytest.mark.parametrize("n_dim", [11, 83])
def test_draws_of_the_approximation_stay_and_a_lower_region_is_left(rng, n_dim):
    logp = _chi2_logp(rng, -100.0, n_dim, (4, 400))
    assert not left_mode(logp, [-100.0] * 4, n_dim).any()
    sd = np.sqrt(0.5 * n_dim)
    lower = logp.copy()
    lower[2] -= (LEFT_MODE_SDS + 0.5) * sd  # this chain sits lower than any draw of the mode
    assert left_mode(lower, [-100.0] * 4, n_dim).tolist() == [False, False, True, False]
    slightly = logp - (LEFT_MODE_SDS - 0.5) * sd  # a shift within the margin is not judged
    assert not left_mode(slightly, [-100.0] * 4, n_dim).any()


def test_only_the_second_half_is_judged(rng):
    """A chain that came back to the mode during its draws has not left it."""
    logp = _chi2_logp(rng, 0.0, 20, (1, 200))
    logp[0, :100] -= 100.0
    assert not left_mode(logp, [0.0], 20).any()
    assert left_mode(logp[:, ::-1], [0.0], 20).all()


def test_a_chain_stopped_early_is_judged_on_its_finished_draws(rng):
    """nutpie pads a chain stopped early with NaN: its second half is that of its own draws."""
    logp = _chi2_logp(rng, -100.0, 20, (2, 400))
    logp[1, :200] -= 10.0 * np.sqrt(10.0)  # 10 sds below, in the draws it finished
    logp[1, 200:] = np.nan
    np.testing.assert_allclose(depth(logp, [-100.0] * 2, 20), [0.0, -10.0], atol=0.5)
    assert left_mode(logp, [-100.0] * 2, 20).tolist() == [False, True]
    assert not complete(_stats_tree(logp), 400) and complete(_stats_tree(logp[:1]), 400)


def _stats_tree(logp: np.ndarray, flat: np.ndarray | None = None) -> xr.DataTree:
    """nutpie's raw kernel results: ``logp`` and (optionally) the unconstrained draws."""
    chain, draw = np.arange(logp.shape[0]), np.arange(logp.shape[1])
    coords = {"chain": chain, "draw": draw}
    stats = xr.Dataset({"logp": (("chain", "draw"), logp)}, coords=coords)
    if flat is None:
        flat = logp[..., None]
    posterior = xr.Dataset({"unconstrained_point": (("chain", "draw", "dim"), flat)}, coords=coords)
    return new_tree({"posterior": posterior, "sample_stats": stats})


def _done(value: float, draws: int, n_dim: int):
    """A finished one-chain background sampler whose ``logp`` is ``value`` throughout."""
    done = _stats_tree(np.full((1, draws), value), np.zeros((1, draws, n_dim)))
    return type(
        "Done", (), {"wait": lambda self, timeout=None: done, "cancel": lambda self: None}
    )()


def _stopped_first_run(rng, spread: float, tuning: bool = False) -> tuple[xr.DataTree, np.ndarray]:
    """A first run stopped early (200 of 1000 draws, NaN after, as nutpie pads them; with
    ``tuning``, after 200 tuning iterations and no draw): chain 1 sits 6 sds below the mode's
    typical set (7.3 nats in 3 dimensions), its draws ``spread`` times wider than the others'
    (unit Gaussians, each chain about its own centre)."""
    n_dim, draws = 3, 1000
    logp = np.full((4, draws), np.nan)
    logp[:, :200] = _chi2_logp(rng, -100.0, n_dim, (4, 200))
    logp[1, :200] -= 6.0 * np.sqrt(0.5 * n_dim)
    flat = np.full((4, draws, n_dim), np.nan)
    flat[:, :200] = rng.standard_normal((4, 200, n_dim)) + np.arange(4)[:, None, None]
    flat[1, :200] *= spread
    if tuning:
        return _tuned_tree(logp[:, :200], flat[:, :200], 200), flat
    return _stats_tree(logp, flat), flat


def _tuned_tree(logp: np.ndarray, flat: np.ndarray, tune: int) -> xr.DataTree:
    """A watched run's raw results (nutpie's layout with ``save_warmup``): the first ``tune``
    iterations in ``warmup_`` groups, the others as draws."""
    warm, drawn = (
        _stats_tree(logp[:, :tune], flat[:, :tune]),
        _stats_tree(logp[:, tune:], flat[:, tune:]),
    )
    groups = {f"warmup_{k}": v.to_dataset() for k, v in warm.children.items()}
    return new_tree({**groups, **{k: v.to_dataset() for k, v in drawn.children.items()}})


def _rerun_stopped(first, monkeypatch) -> tuple[list, xr.DataTree, dict]:
    """``run_again_if_left`` on ``first`` with nutpie replaced: each one-chain run finishes at
    once, ``log p`` its call number."""
    n_dim, draws, calls = 3, 1000, []

    def sample(compiled, **options):
        calls.append((compiled, options))
        return _done(float(len(calls) - 1), draws, n_dim)

    monkeypatch.setattr("nutpie.sample", sample)
    approx = Laplace(np.zeros(n_dim), np.eye(n_dim), "laplace", -100.0, 1.0, 0)
    run = dict(draws=draws, tune=300, target_accept=0.8, seed=5, progressbar=False)
    out, attrs = run_again_if_left(first, [approx], lambda point: point, run)
    assert len(calls) == 4
    assert {o["tune"] for _, o in calls} == {min(300, RERUN_TUNE)}
    assert {(o["draws"], o["chains"]) for _, o in calls} == {(draws, 1)}
    assert out["sample_stats"]["logp"].values[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert complete(out, draws) and "warmup_posterior" not in out.children
    assert attrs["left_mode_restarted_from"] == [1] and attrs["left_mode_stages"] == 1
    assert attrs["left_mode_depth"][1] < -LEFT_MODE_SDS
    return [point for point, _ in calls], out, attrs


@pytest.mark.parametrize("tuning", [False, True], ids=["stopped-drawing", "stopped-tuning"])
def test_a_chain_that_left_for_a_heavier_region_takes_every_chain_with_it(rng, monkeypatch, tuning):
    """Chain 1's region is 1000 times wider in each of 3 dimensions (+20.7 nats of entropy)
    and 7.3 nats lower: about 13 nats more mass, above the margin. Every chain, the three that
    stayed too, starts again at a distinct draw of chain 1's latest WATCH_DRAWS draws, all
    whitened by those draws' covariance, with the same short tuning and the full draws; the
    attrs give the masses and the decision. The same when the first run was stopped while
    tuning: its tuning draws are judged, and the results hold no tuning group."""
    first, flat = _stopped_first_run(rng, spread=1000.0, tuning=tuning)
    points, _, attrs = _rerun_stopped(first, monkeypatch)
    pool = flat[1, 200 - WATCH_DRAWS : 200]
    for point in points:  # each a draw of chain 1's latest ones, no two alike
        assert np.any(np.all(pool == point.mode, axis=1))
    assert len({tuple(p.mode) for p in points}) == 4
    for point in points:
        np.testing.assert_array_equal(point.factor, points[0].factor)
    assert attrs["left_mode_moved"] == ["all"]
    (margin,) = attrs["left_mode_mass_margin"]
    assert margin == pytest.approx(3 * np.log(1000.0) - 6.0 * np.sqrt(1.5), abs=2.0)
    assert margin > LEFT_MASS_MARGIN and len(attrs["left_mode_log_mass"][0]) == 4


def test_chains_that_stayed_in_a_region_as_heavy_keep_it(rng, monkeypatch):
    """Chain 1's region is as wide as the mode's and 7.3 nats lower: less mass, so the chains
    that stayed are not moved. Each starts again at its own latest draw with the mode's
    whitening (a second mode there keeps its chains); chain 1 from its own draws."""
    first, flat = _stopped_first_run(rng, spread=1.0)
    points, _, attrs = _rerun_stopped(first, monkeypatch)
    for c in (0, 2, 3):
        np.testing.assert_array_equal(points[c].mode, flat[c, 199])
        assert points[c].kind == "laplace" and points[c].log_density == -100.0
        np.testing.assert_array_equal(points[c].factor, np.eye(3))
    assert points[1].kind == "draws"
    assert np.any(np.all(flat[1, 200 - WATCH_DRAWS : 200] == points[1].mode, axis=1))
    assert attrs["left_mode_moved"] == ["apart"]
    (margin,) = attrs["left_mode_mass_margin"]
    assert margin == pytest.approx(-6.0 * np.sqrt(1.5), abs=2.0)


def test_a_chain_still_tuning_at_the_stop_is_weighed_by_its_approximation(rng, monkeypatch):
    """Chain 3 had finished no draw when the run stopped (still tuning): its region is weighed
    by the mode's Laplace log mass, and it starts again where it started (the mode)."""
    first, _ = _stopped_first_run(rng, spread=1.0)
    first["posterior"]["unconstrained_point"][3] = np.nan
    first["sample_stats"]["logp"][3] = np.nan
    calls = []

    def sample(compiled, **options):
        calls.append(compiled)
        return _done(float(len(calls)), 1000, 3)

    monkeypatch.setattr("nutpie.sample", sample)
    approx = Laplace(np.zeros(3), np.eye(3), "laplace", -100.0, 1.0, 0)
    run = dict(draws=1000, tune=300, target_accept=0.8, seed=5, progressbar=False)
    _, attrs = run_again_if_left(first, [approx], lambda point: point, run)
    assert attrs["left_mode_restarted_from"] == [1] and attrs["left_mode_moved"] == ["apart"]
    laplace_mass = -100.0 + 1.5 * np.log(2 * np.pi)
    assert attrs["left_mode_log_mass"][0][3] == pytest.approx(laplace_mass, abs=0.1)
    assert calls[3] is approx  # from the mode, as it started


class _Running:
    """A one-chain background sampler that never finishes by itself: ``inspect()`` shows
    ``trace`` (its tuning draws kept, as for a watched run); after ``looks`` looks, if given,
    Ctrl-C (KeyboardInterrupt) ends a wait that nothing stopped."""

    def __init__(self, trace, looks: int | None = None):
        self.trace, self.looks, self.cancelled = trace, looks, False

    def wait(self, timeout=None):
        raise TimeoutError

    def inspect(self):
        if self.looks is not None:
            if self.looks == 0:
                raise KeyboardInterrupt
            self.looks -= 1
        return self.trace

    def cancel(self):
        self.cancelled = True


def _warmup_trace(logp: np.ndarray, flat: np.ndarray) -> xr.DataTree:
    """A watched one-chain trace still tuning: only its ``warmup_`` groups."""
    tree = _stats_tree(logp[None], flat[None])
    return new_tree(
        {
            "warmup_posterior": tree["posterior"].to_dataset(),
            "warmup_sample_stats": tree["sample_stats"].to_dataset(),
        }
    )


def test_a_chain_that_goes_lower_in_the_second_run_restarts_it_again(rng, monkeypatch):
    """The second run is watched against the level of the draws it started from: a chain whose
    latest (tuning) draws lie lower stops it, and every chain starts again from that chain's
    draws up to its first crossing (its first WATCH_DRAWS: the run is cut there, whatever the
    chains drew after); the third run, watched too, finishes, and its tuning groups are
    dropped (the attrs count the stages)."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim, draws = 3, 1000
    logp = np.full((4, draws), np.nan)
    logp[:, :200] = _chi2_logp(rng, -100.0, n_dim, (4, 200))
    logp[1, :200] -= 6.0 * np.sqrt(0.5 * n_dim)
    flat = np.full((4, draws, n_dim), np.nan)
    flat[:, :200] = rng.standard_normal((4, 200, n_dim))
    level = logp[1, 200 - WATCH_DRAWS : 200].mean()
    lower_flat = rng.standard_normal((150, n_dim)) + 10.0
    calls = []

    def sample(compiled, **options):
        calls.append((compiled, options))
        if len(calls) <= 4:  # the second run: chain 2 goes 5 sds below the level
            value = level - (5.0 if len(calls) == 3 else 0.0) * np.sqrt(0.5 * n_dim)
            return _Running(_warmup_trace(np.full(150, value), lower_flat))
        return _done(float(len(calls)), draws, n_dim)

    monkeypatch.setattr("nutpie.sample", sample)
    approx = Laplace(np.zeros(n_dim), np.eye(n_dim), "laplace", -100.0, 1.0, 0)
    run = dict(draws=draws, tune=300, target_accept=0.8, seed=5, progressbar=False)
    out, attrs = run_again_if_left(_stats_tree(logp, flat), [approx], lambda point: point, run)
    assert len(calls) == 8
    assert [o["save_warmup"] for _, o in calls] == [True] * 8  # watched: MAX_STAGES = 3
    for point, _ in calls[4:]:  # from chain 2's draws up to its first crossing
        assert np.any(np.all(lower_flat[:WATCH_DRAWS] == point.mode, axis=1))
    assert attrs["left_mode_stages"] == 2 and attrs["left_mode_restarted_from"] == [1]
    assert len(attrs["left_mode_moved"]) == len(attrs["left_mode_log_mass"]) == 2
    assert complete(out, draws) and "warmup_posterior" not in out.children


def test_the_first_run_stops_when_any_chain_left_and_not_before(rng, monkeypatch):
    """The watcher cancels the run once one chain's latest WATCH_DRAWS draws lie
    LEFT_MODE_SDS below the mode's typical set, and returns every chain's draws up to the
    first such draw (the latest_depth of the draws up to any earlier one is within the
    margin); chains short of WATCH_DRAWS draws, or within the margin, do not stop it. (The
    rule alone: no draws after the crossing, ``settle=0``.)"""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    logp = np.full((2, 300), np.nan)
    logp[:, :150] = _chi2_logp(rng, -100.0, n_dim, (2, 150))
    staying = _Running(_stats_tree(logp.copy()), looks=3)
    logp_short = logp.copy()
    logp_short[1, : WATCH_DRAWS - 1] -= 10.0 * np.sqrt(0.5 * n_dim)
    logp_short[1, WATCH_DRAWS - 1 :] = np.nan
    short = _Running(_stats_tree(logp_short), looks=3)
    for sampler in (staying, short):
        with pytest.raises(KeyboardInterrupt):
            stop_when_one_left(sampler, -100.0, n_dim, settle=0)
        assert not sampler.cancelled
    logp[0, 50:150] -= (LEFT_MODE_SDS + 1.0) * np.sqrt(0.5 * n_dim)
    left = _Running(_stats_tree(logp))
    kept = stop_when_one_left(left, -100.0, n_dim, settle=0)
    assert left.cancelled
    n = kept["sample_stats"].sizes["draw"]
    np.testing.assert_array_equal(kept["sample_stats"]["logp"].values, logp[:, :n])
    modes = [-100.0, -100.0]
    assert latest_depth(logp[:, :n], modes, n_dim, WATCH_DRAWS)[0] < -LEFT_MODE_SDS
    for m in range(WATCH_DRAWS, n):
        assert np.all(latest_depth(logp[:, :m], modes, n_dim, WATCH_DRAWS) >= -LEFT_MODE_SDS)


class _Progressing:
    """A background sampler over the finished draws ``trace``: each look (``wait`` or
    ``inspect``) shows ``speeds[c]`` more draws of chain ``c`` (NaN after), and ``wait``
    returns the whole trace once every chain has drawn all."""

    def __init__(self, trace, speeds):
        self.trace, self.speeds, self.cancelled = trace, np.asarray(speeds), False
        self.drawn = np.zeros(len(speeds), int)

    def wait(self, timeout=None):
        self.drawn += self.speeds
        if np.all(self.drawn >= self.trace["sample_stats"].sizes["draw"]):
            return self.trace
        raise TimeoutError

    def inspect(self):
        out = self.trace.copy()
        for group in ("posterior", "sample_stats"):
            data = out[group].to_dataset()
            shown = data["draw"] < xr.DataArray(self.drawn, dims="chain")
            replace_group(out, group, data.where(shown))
        return out

    def cancel(self):
        self.cancelled = True


def test_where_the_first_run_stops_does_not_depend_on_when_it_was_looked_at(rng, monkeypatch):
    """Each chain's draws depend only on the seed; when the watcher looks at them does not
    (the machine's load, the polling). A chain leaves at draw 300 of 1000: the watcher keeps
    the same draws of every chain whether chain 1 or chain 0 runs ahead, whether it looks
    often or not, and when the run finished before it looked at all. The draws kept run
    WATCH_DRAWS past the crossing (``settle``)."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim, draws = 20, 1000
    logp = _chi2_logp(rng, -100.0, n_dim, (2, draws))
    logp[1, 300:] -= 6.0 * np.sqrt(0.5 * n_dim)
    flat = rng.standard_normal((2, draws, 3))
    kept = []
    for speeds in ([1, 1], [97, 3], [3, 97], [400, 400], [draws, draws]):
        sampler = _Progressing(_stats_tree(logp, flat), speeds)
        kept.append(stop_when_one_left(sampler, -100.0, n_dim))
    n = kept[0]["sample_stats"].sizes["draw"]
    assert 300 + WATCH_DRAWS < n < 300 + 2 * WATCH_DRAWS
    for tree in kept:
        np.testing.assert_array_equal(tree["sample_stats"]["logp"].values, logp[:, :n])
        np.testing.assert_array_equal(
            tree["posterior"]["unconstrained_point"].transpose("chain", "draw", ...).values,
            flat[:, :n],
        )


@pytest.mark.parametrize("leaves_at", [60, 280])
def test_a_chain_that_leaves_while_tuning_stops_the_first_run_then(rng, monkeypatch, leaves_at):
    """The first run keeps its tuning draws for the watcher (300 tuning iterations here):
    chain 1 leaving at iteration 60 crosses within WATCH_DRAWS iterations and the run stops
    WATCH_DRAWS iterations later (so that the latest draws, which the restarts start from, lie
    where the chain went, not on its way), with no draw kept; leaving at 280, the crossing's
    window spans tuning and draws. Every chain's iterations up to there are kept, tuning
    first, each as drawn."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim, tune, draws = 20, 300, 1000
    logp = _chi2_logp(rng, -100.0, n_dim, (2, tune + draws))
    logp[1, leaves_at:] -= 6.0 * np.sqrt(0.5 * n_dim)
    flat = rng.standard_normal((2, tune + draws, 3))
    sampler = _Running(_tuned_tree(logp, flat, tune))
    kept = stop_when_one_left(sampler, -100.0, n_dim)
    assert sampler.cancelled
    warm, drawn = kept["warmup_sample_stats"].sizes["draw"], kept["sample_stats"].sizes["draw"]
    n = warm + drawn
    crossings = first_crossings(
        logp, [-100.0] * 2, n_dim, [LEFT_MODE_SDS] * 2, WATCH_DRAWS, apart=LEFT_APART_SDS
    )
    assert crossings[0] == -1 and leaves_at < crossings[1] <= leaves_at + WATCH_DRAWS
    assert n == crossings[1] + 1 + WATCH_DRAWS
    assert warm == min(n, tune) and drawn == max(n - tune, 0)
    np.testing.assert_array_equal(
        np.concatenate(
            [kept["warmup_sample_stats"]["logp"].values, kept["sample_stats"]["logp"].values],
            axis=1,
        ),
        logp[:, :n],
    )
    got = [kept[g]["unconstrained_point"].values for g in ("warmup_posterior", "posterior")]
    np.testing.assert_array_equal(np.concatenate(got, axis=1), flat[:, :n])


def test_a_run_that_ends_before_its_stop_is_returned_as_unwatched(rng, monkeypatch):
    """A chain that crosses fewer than ``settle`` iterations before the run's end: the run is
    whole, and comes back as an unwatched run's (draws only), to be judged as a finished run."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    logp, flat = _chi2_logp(rng, -100.0, n_dim, (2, 700)), rng.standard_normal((2, 700, 3))
    logp[1, 560:] -= 6.0 * np.sqrt(0.5 * n_dim)
    trace = _tuned_tree(logp, flat, 300)
    sampler = type("Done", (), {"wait": lambda self, timeout=None: trace})()
    out = stop_when_one_left(sampler, -100.0, n_dim)
    assert set(out.children) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(out["sample_stats"]["logp"].values, logp[:, 300:])


def test_a_finished_run_is_judged_on_its_draws_not_its_tuning(rng, monkeypatch):
    """A watched run that ended whole (tuning groups still there, 1000 tuning iterations far
    below the mode's typical set, then 300 draws at it): no chain left, no run again."""
    logp = _chi2_logp(rng, -100.0, 3, (4, 1300))
    logp[:, :1000] -= 50.0
    first = _tuned_tree(logp, rng.standard_normal((4, 1300, 3)), 1000)

    def sample(compiled, **options):
        raise AssertionError("no chain left: nothing to run again")

    monkeypatch.setattr("nutpie.sample", sample)
    approx = Laplace(np.zeros(3), np.eye(3), "laplace", -100.0, 1.0, 0)
    run = dict(draws=300, tune=1000, target_accept=0.8, seed=5, progressbar=False)
    out, attrs = run_again_if_left(first, [approx], lambda point: point, run)
    assert attrs == {} and set(out.children) == {"posterior", "sample_stats"}


def test_a_watched_run_in_which_no_chain_left_drops_its_tuning_draws(rng, monkeypatch):
    """No crossing in tuning or draws: the results are the draws alone, as unwatched."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    logp, flat = _chi2_logp(rng, -100.0, n_dim, (2, 700)), rng.standard_normal((2, 700, 3))
    sampler = _Progressing(_tuned_tree(logp, flat, 300), [7, 50])
    out = stop_when_one_left(sampler, -100.0, n_dim)
    assert set(out.children) == {"posterior", "sample_stats"} and not sampler.cancelled
    np.testing.assert_array_equal(out["sample_stats"]["logp"].values, logp[:, 300:])


def test_chains_below_the_line_together_have_not_left(rng):
    """Four chains whose windows all sit LEFT_MODE_SDS + 0.5 sds below the Laplace line (a
    line the posterior does not hold to: MASS Pima.tr, K=3, 107 dimensions, whose chains sit
    2.4-3.3 sds below it throughout) cross the line alone but not apart from each other; a chain
    that falls LEFT_MODE_SDS + 1 sds further at draw 300 does, within WATCH_DRAWS draws."""
    n_dim, sd = 107, np.sqrt(0.5 * 107)
    logp = _chi2_logp(rng, -100.0, n_dim, (4, 600)) - (LEFT_MODE_SDS + 0.5) * sd
    rule = ([-100.0] * 4, n_dim, [LEFT_MODE_SDS] * 4, WATCH_DRAWS)
    assert np.all(first_crossings(logp, *rule) >= 0)  # the line alone: all "left"
    assert np.all(first_crossings(logp, *rule, apart=LEFT_APART_SDS) == -1)
    logp[2, 300:] -= (LEFT_MODE_SDS + 1.0) * sd
    crossings = first_crossings(logp, *rule, apart=LEFT_APART_SDS)
    assert np.all(crossings[[0, 1, 3]] == -1) and 300 < crossings[2] < 300 + WATCH_DRAWS


def test_chains_that_leave_together_each_count_as_apart(rng):
    """Two of four chains fall LEFT_MODE_SDS + 3 sds below the line together at draw 300: each
    lies within a sd of the other, yet both are apart from the chains that stayed, and both
    cross within WATCH_DRAWS draws."""
    n_dim = 30
    logp = _chi2_logp(rng, -100.0, n_dim, (4, 600))
    logp[[1, 2], 300:] -= (LEFT_MODE_SDS + 3.0) * np.sqrt(0.5 * n_dim)
    rule = ([-100.0] * 4, n_dim, [LEFT_MODE_SDS] * 4, WATCH_DRAWS)
    crossings = first_crossings(logp, *rule, apart=LEFT_APART_SDS)
    assert np.all(crossings[[0, 3]] == -1)
    assert np.all((300 < crossings[[1, 2]]) & (crossings[[1, 2]] < 300 + WATCH_DRAWS))


def test_apart_is_judged_only_where_every_chain_has_drawn(rng):
    """Chain 1 leaves at draw 100 and crosses by about draw 175; while chain 0 has drawn only
    120 draws, chain 1 is not yet apart from it there (no crossing), however far chain 1 went;
    once chain 0 has drawn as far, the crossing is where it is with every chain whole."""
    n_dim = 20
    logp = _chi2_logp(rng, -100.0, n_dim, (2, 400))
    logp[1, 100:] -= 6.0 * np.sqrt(0.5 * n_dim)
    rule = ([-100.0] * 2, n_dim, [LEFT_MODE_SDS] * 2, WATCH_DRAWS)
    whole = first_crossings(logp, *rule, apart=LEFT_APART_SDS)
    assert whole[0] == -1 and 120 < whole[1] < 200
    lagging = logp.copy()
    lagging[0, 120:] = np.nan
    assert first_crossings(lagging, *rule)[1] == whole[1]  # the line alone: each chain's own
    assert np.all(first_crossings(lagging, *rule, apart=LEFT_APART_SDS) == -1)
    lagging[0, 120 : whole[1] + 1] = logp[0, 120 : whole[1] + 1]
    assert first_crossings(lagging, *rule, apart=LEFT_APART_SDS).tolist() == whole.tolist()


def test_a_watched_run_whose_chains_sit_below_the_line_together_is_not_stopped(rng, monkeypatch):
    """Both chains sit LEFT_MODE_SDS + 0.5 sds below the typical set through tuning and draws,
    close to each other: the run is not stopped, and comes back as an unwatched run's."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    logp = _chi2_logp(rng, -100.0, n_dim, (2, 700)) - (LEFT_MODE_SDS + 0.5) * np.sqrt(0.5 * n_dim)
    sampler = _Progressing(_tuned_tree(logp, rng.standard_normal((2, 700, 3)), 300), [7, 50])
    out = stop_when_one_left(sampler, -100.0, n_dim)
    assert not sampler.cancelled and set(out.children) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(out["sample_stats"]["logp"].values, logp[:, 300:])


def test_a_dip_apart_while_every_chain_sits_below_the_line_does_not_stop_the_first_run(
    rng, monkeypatch
):
    """gclus body girths' case: every chain 5 sds below the Laplace line, chain 0's window
    dips 6 sds further for 60 draws and is back with the others, still below the line, 100
    draws later: that is no crossing (the line alone would confirm it). One chain alone is
    judged by the line (no other chain to lie apart from)."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    sd = np.sqrt(0.5 * n_dim)
    logp = _chi2_logp(rng, -100.0, n_dim, (4, 700)) - 5.0 * sd
    logp[0, 400:460] -= 6.0 * sd
    assert first_crossings(logp, [-100.0] * 4, n_dim, [3.0] * 4, WATCH_DRAWS, 2.0).max() > 0
    sampler = _Progressing(_tuned_tree(logp, rng.standard_normal((4, 700, 3)), 300), [7] * 4)
    stop_when_one_left(sampler, -100.0, n_dim)
    assert not sampler.cancelled
    alone = first_crossings(logp[:1], [-100.0], n_dim, [3.0], WATCH_DRAWS, 2.0, WATCH_DRAWS)
    assert alone.tolist() == [WATCH_DRAWS - 1]


@pytest.mark.parametrize("case", ["dips-and-comes-back", "stays", "followed"])
def test_a_chain_whose_log_p_dips_and_comes_back_does_not_stop_the_first_run(
    rng, monkeypatch, case
):
    """Chain 0's latest WATCH_DRAWS draws lie below the line and apart from chain 1 for fewer
    than ``settle`` draws, then it is back (a chain slow to mix in log p): the run goes on to
    its end. When it stays down, the run stops ``settle`` draws after the crossing (and the
    rule that judges the stopped run finds chain 0 apart there), also when chain 1 follows it
    down 10 draws later (then neither is apart at the stop)."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    logp = _chi2_logp(rng, -100.0, n_dim, (2, 700))
    logp[0, 400 : 420 if case == "dips-and-comes-back" else 700] -= 30.0 * np.sqrt(0.5 * n_dim)
    if case == "followed":
        logp[1, 410:] -= 30.0 * np.sqrt(0.5 * n_dim)
    sampler = _Progressing(_tuned_tree(logp, rng.standard_normal((2, 700, 3)), 300), [7, 50])
    out = stop_when_one_left(sampler, -100.0, n_dim)
    if case == "dips-and-comes-back":
        assert not sampler.cancelled
        np.testing.assert_array_equal(out["sample_stats"]["logp"].values, logp[:, 300:])
        return
    assert sampler.cancelled
    kept = _arrays([out])[1]
    assert 400 + WATCH_DRAWS < kept.shape[1] <= 400 + 2 * WATCH_DRAWS
    depths = latest_depth(kept, [-100.0, -100.0], n_dim, WATCH_DRAWS)
    apart = below_others(depths, LEFT_APART_SDS).tolist()
    assert depths[0] < -LEFT_MODE_SDS and apart == [case == "stays", False]


def test_a_stopped_run_whose_chain_came_back_runs_every_chain_again(rng, monkeypatch):
    """A run stopped after a crossing whose chain is no longer apart from the others by the
    stop (the others followed it down: all four 5 sds below the line, together): no chain
    counts as having left, and every
    chain runs again from its own draws (their second half's mean, as a finished run's), so
    that the results are whole, not the stopped run's 200 draws."""
    n_dim, draws = 3, 1000
    logp, flat = np.full((4, draws), np.nan), np.full((4, draws, n_dim), np.nan)
    below = (LEFT_MODE_SDS + 2.0) * np.sqrt(0.5 * n_dim)
    logp[:, :200] = _chi2_logp(rng, -100.0, n_dim, (4, 200)) - below
    flat[:, :200] = rng.standard_normal((4, 200, n_dim)) + np.arange(4)[:, None, None]
    calls = []

    def sample(compiled, **options):
        calls.append(compiled)
        return _done(float(len(calls) - 1), draws, n_dim)

    monkeypatch.setattr("nutpie.sample", sample)
    approx = Laplace(np.zeros(n_dim), np.eye(n_dim), "laplace", -100.0, 1.0, 0)
    run = dict(draws=draws, tune=300, target_accept=0.8, seed=5, progressbar=False)
    out, attrs = run_again_if_left(_stats_tree(logp, flat), [approx], lambda p: p, run)
    assert complete(out, draws) and len(calls) == 4
    for c, point in enumerate(calls):
        np.testing.assert_allclose(point.mode, flat[c, 100:200].mean(axis=0))
    assert "left_mode_restarted_from" not in attrs and len(attrs["left_mode_depth"]) == 4
    assert np.all(np.asarray(attrs["left_mode_depth"]) < -LEFT_MODE_SDS)


def test_a_run_in_which_no_chain_left_is_returned_whole(rng, monkeypatch):
    """No crossing: the watcher waits for the whole run and returns it unchanged."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    n_dim = 20
    trace = _stats_tree(_chi2_logp(rng, -100.0, n_dim, (2, 400)))
    sampler = _Progressing(trace, [7, 50])
    assert stop_when_one_left(sampler, -100.0, n_dim) is trace and not sampler.cancelled


def test_leaver_restarts_pool_the_latest_draws(rng):
    """Starts evenly through the pooled latest draws; one factor, from their covariance (the
    oracle: ``L L'`` equals it, shrunk towards its diagonal by n_dim / n); the level is the
    pool's mean log p plus n_dim / 2."""
    n_dim, window = 2, 400
    flat = np.full((3, 600, n_dim), np.nan)
    logp = np.full((3, 600), np.nan)
    flat[0, :500] = rng.multivariate_normal([5.0, -5.0], [[2.0, 0.9], [0.9, 1.0]], size=500)
    logp[0, :500] = -10.0 + rng.standard_normal(500)
    points = leaver_restarts(flat, logp, [0], window, 3)
    pool = flat[0, 100:500]
    covariance = np.cov(pool.T)
    shrink = n_dim / window
    expected = (1 - shrink) * covariance + shrink * np.diag(np.diag(covariance))
    np.testing.assert_allclose(points[0].factor @ points[0].factor.T, expected, atol=1e-8)
    np.testing.assert_array_equal(points[0].mode, pool[0])
    np.testing.assert_array_equal(points[-1].mode, pool[-1])
    assert points[1].log_density == pytest.approx(logp[0, 100:500].mean() + 0.5 * n_dim)
    assert {p.kind for p in points} == {"draws"}


def test_region_log_mass_of_few_gaussian_draws_is_their_normaliser(rng):
    """Oracle: 100 draws of a correlated 50-dimensional Gaussian whose unnormalised log
    density is ``log N + c``: the estimate is ``c`` within Monte Carlo error (sd about 1 nat),
    where the sample covariance's own log det would be about 8 nats low (its Wishart bias)."""
    n_dim, c = 50, 123.0
    root = rng.standard_normal((n_dim, n_dim)) / np.sqrt(n_dim) + np.eye(n_dim)
    covariance = root @ root.T
    draws = rng.multivariate_normal(np.ones(n_dim), covariance, size=100)
    centred = np.linalg.solve(np.linalg.cholesky(covariance), (draws - 1.0).T)
    _, log_det = np.linalg.slogdet(2 * np.pi * covariance)
    logp = c - 0.5 * (centred**2).sum(axis=0) - 0.5 * log_det
    assert region_log_mass(draws, logp) == pytest.approx(c, abs=2.5)
    _, naive = np.linalg.slogdet(np.cov(draws.T))
    plain = logp.mean() + 0.5 * naive + 0.5 * n_dim * np.log(2 * np.pi * np.e)
    assert plain < c - 5.0
    assert np.isnan(region_log_mass(draws[:50], logp[:50]))  # too few for a full rank


def test_latest_depth_judges_only_the_latest_draws(rng):
    """A chain that came back is judged where it is now; one with too few draws is not."""
    logp = _chi2_logp(rng, 0.0, 20, (2, 300))
    logp[0, :200] -= 100.0
    logp[1, 99:] = np.nan  # 99 finished draws
    got = latest_depth(logp, [0.0, 0.0], 20, 100)
    assert abs(got[0]) < LEFT_MODE_SDS and np.isnan(got[1])
    assert latest_depth(logp[:, ::-1][:1], [0.0], 20, 100)[0] < -LEFT_MODE_SDS


def test_restart_points_are_the_draws_mean_and_covariance(rng):
    n_dim = 3
    covariance = np.array([[2.0, 0.9, 0.0], [0.9, 1.0, -0.3], [0.0, -0.3, 0.5]])
    mean = np.array([1.0, -2.0, 0.5])
    draws = rng.multivariate_normal(mean, covariance, size=(2, 4000))
    draws[1] += 10.0  # the second chain is elsewhere: its own point
    first, second = restart_points(draws)
    assert first.kind == "draws"
    np.testing.assert_allclose(first.mode, mean, atol=0.1)
    np.testing.assert_allclose(second.mode, mean + 10.0, atol=0.1)
    np.testing.assert_allclose(first.factor @ first.factor.T, covariance, atol=0.1)
    assert np.allclose(first.factor, np.tril(first.factor))
    assert restart_points(draws[:, :4])[0].factor.shape == (n_dim, n_dim)  # few draws: usable


def _tree(n_chains: int, fill: float, start: bool) -> xr.DataTree:
    chain, draw = np.arange(n_chains), np.arange(5)
    posterior = xr.Dataset(
        {"x": (("chain", "draw"), np.full((n_chains, 5), fill))},
        coords={"chain": chain, "draw": draw},
    )
    stats = xr.Dataset(
        {"logp": (("chain", "draw"), np.full((n_chains, 5), fill))},
        coords={"chain": chain, "draw": draw},
    )
    if start:
        stats["start"] = ("chain", np.arange(n_chains) % 2)
    return new_tree({"posterior": posterior, "sample_stats": stats})


def test_replaced_chains_keep_their_place_and_start():
    out = replace_chains(_tree(4, 0.0, True), {1: _tree(1, 1.0, False), 3: _tree(1, 3.0, False)})
    x = out["posterior"]["x"].values
    assert x.shape == (4, 5)
    assert x[:, 0].tolist() == [0.0, 1.0, 0.0, 3.0]
    assert out["sample_stats"]["start"].values.tolist() == [0, 1, 0, 1]
    assert out["posterior"]["chain"].values.tolist() == [0, 1, 2, 3]


def test_chain_modes_follow_each_chains_start():
    approx = [
        Laplace(np.zeros(1), np.eye(1), "laplace", -5.0, 1.0, 0),
        None,
    ]
    assert chain_modes(_tree(4, 0.0, False), approx) == [-5.0] * 4
    modes = chain_modes(_tree(4, 0.0, True), approx)
    assert modes[0] == modes[2] == -5.0 and np.isnan(modes[1]) and np.isnan(modes[3])


def _overfitted():
    """Two correlated clusters in three features, fitted with three components: the extra
    component's posterior prefers to empty, away from EM's split (Rousseau & Mengersen)."""
    means = np.zeros((2, 3))
    means[1, 0] = 6.0
    cov = np.eye(3) * 0.1 + 0.9
    return simulate_mixture(
        200, weights=[0.5, 0.5], means=means, covariances=[cov, cov], random_state=3
    ).X


@pytest.mark.slow
@pytest.mark.xfail(
    reason="seed-bound and no longer reproduced: on numpy 2.5.5 / nutpie 0.16.11 (2026-12-07) "
    "seeds 1-8 left no chain below the line (seed 1: the chain ended in a mode of its own and "
    "is reported as such); the forced test below checks this path deterministically",
    strict=False,
)
def test_a_chain_that_leaves_the_mode_runs_again_and_is_reported():
    """Measured (c8e95ea): with seed 1, chain 0 settles 3.3 sds below the mode's typical set
    (the extra component emptying) late in the first run; every chain then runs again from its
    own draws, and the diagnostics say so with the weights (failing, as the 200 draws leave
    R-hat and ESS failing too). Slow and seed-bound: the depth sits near the threshold and
    runs are not bit-reproducible across processes (seed 2 left in an earlier version, not
    now), so the suite checks the same path deterministically in the forced test below."""
    with pytest.warns(SamplingWarning, match="left_mode"):
        fit = BayesianGMM(3, random_seed=1, draws=200, progressbar=False, max_draws=200)
        fit.fit(_overfitted())  # no follow-ups: this is the first run's left_mode rerun
    depth = get_attr(fit.idata_, "left_mode_depth")
    assert len(depth) == 4 and min(depth) < -LEFT_MODE_SDS
    table = fit.diagnostics().set_index("check")
    assert not table.loc["left_mode", "passed"]
    assert "weights now" in table.loc["left_mode", "worst"]
    assert fit.idata_.posterior.sizes == {"chain": 4, "draw": 200, **_dims(fit)}
    assert fit.idata_.sample_stats["diverging"].shape == (4, 200)


def _dims(fit) -> dict:
    sizes = dict(fit.idata_.posterior.sizes)
    return {k: v for k, v in sizes.items() if k not in ("chain", "draw")}


def _separated() -> np.ndarray:
    """Two well separated round clusters, 150 rows."""
    return simulate_mixture(
        150,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [6.0, 6.0]],
        covariances=[np.eye(2), np.eye(2)],
        random_state=1,
    ).X


def test_chains_that_stay_are_not_run_again(monkeypatch):
    """Well separated clusters: the chains stay at the mode, nothing runs twice."""
    calls = []
    monkeypatch.setattr(sampling_module.drift, "run_parallel", lambda runs: calls.append(runs))
    X = _separated()
    with warnings.catch_warnings():  # 200 draws: R-hat may miss its gate, not the point here
        warnings.simplefilter("ignore", SamplingWarning)
        # max_draws=draws: no follow-up runs (tests/test_followup.py's subject, not this one's)
        fit = BayesianGMM(2, random_seed=1, draws=200, progressbar=False, max_draws=200).fit(X)
    assert calls == []
    assert get_attr(fit.idata_, "left_mode_depth") is None
    assert "left_mode" not in set(fit.diagnostics()["check"])


def _fit_recording_whitenings(monkeypatch, mode_shift: float = 0.0) -> tuple[BayesianGMM, list]:
    """A short default fit of well separated data, recording the whitening of every compiled
    run; ``mode_shift`` raises the log density at the mode that each chain is judged
    against."""
    original, compiled = sampling_module._kernel_laplace, sampling_module._kernel_compiled
    points = []

    def raised(*args):
        approx = original(*args)
        return dataclasses.replace(approx, log_density=approx.log_density + mode_shift)

    def recording(model, em, density, approx=None):
        points.append(approx)
        return compiled(model, em, density, approx)

    monkeypatch.setattr(sampling_module, "_kernel_laplace", raised)
    monkeypatch.setattr(sampling_module, "_kernel_compiled", recording)
    fit = BayesianGMM(2, random_seed=1, draws=100, progressbar=False, max_starts=1, max_draws=100)
    with warnings.catch_warnings():  # 100 draws: the ESS may miss its gate, not the point here
        warnings.simplefilter("ignore", SamplingWarning)
        fit.fit(_separated())
    return fit, points


def test_every_chain_runs_again_from_its_own_draws(monkeypatch):
    """Forced: chain 0 of a finished run lies far below the Laplace line and the others
    (its depth set); each chain's second run starts at the mean of its own draws, whitened by
    their covariance, and every chain ends with the 100 draws asked for."""
    forced = np.array([-8.0, -1.0, -1.0, -1.0])
    monkeypatch.setattr("bayesgmm._drift.depth", lambda *args: forced)
    fit, points = _fit_recording_whitenings(monkeypatch)
    assert [p.kind for p in points[1:]] == ["draws"] * 4  # the first run's, then one a chain
    assert fit.idata_.posterior.sizes["chain"] == 4 and fit.idata_.posterior.sizes["draw"] == 100
    assert np.isfinite(fit.idata_.posterior["means"].values).all()
    assert get_attr(fit.idata_, "left_mode_depth") == forced.tolist()
    assert get_attr(fit.idata_, "left_mode_rerun_tune") == min(
        fit.idata_.posterior.attrs["tune"], RERUN_TUNE
    )
    assert get_attr(fit.idata_, "interrupted") is None
    table = fit.diagnostics().set_index("check")
    others = table.loc[table.index.isin(GATES) | (table.index == "modes"), "passed"]
    assert table.loc["left_mode", "passed"] == others.all()  # a finding unless the run failed
    assert "weights now" in table.loc["left_mode", "worst"]


def test_chains_together_below_the_laplace_line_have_not_left(monkeypatch):
    """Every chain far below the Laplace line (the mode's density raised) but together: the
    line's prediction is off, not the chains (gclus body girths, K = 3: all four 5-6 sds below
    it), so the watcher lets the run finish and no chain runs again."""
    fit, points = _fit_recording_whitenings(monkeypatch, mode_shift=1e3)
    assert [p.kind for p in points] == ["laplace"]  # the first run's only
    assert get_attr(fit.idata_, "left_mode_depth") is None
    assert fit.idata_.posterior.sizes["draw"] == 100


@pytest.mark.slow
def test_chains_at_a_mode_with_the_mass_are_not_taken_away(monkeypatch):
    """Known truth: two well separated clusters fitted with two components, so EM's mode
    holds the posterior's mass. The first run is cut after 150 draws (as the watcher would
    stop it, without its timing) and chain 1 made to count as having left (its depth shifted
    while every chain is judged against one level: the first run's judgement); its region
    then weighs the same as the others' (margin near 0, below LEFT_MASS_MARGIN), so the
    chains that stayed run again where they were, chain 1 from its own draws, and every
    chain's means are the simulated ones."""
    real = sampling_module.drift.latest_depth

    def shifted(logp, modes, n_dim, window):
        out = real(logp, modes, n_dim, window)
        if len(set(np.asarray(modes, dtype=float).tolist())) == 1 and len(out) > 1:
            out[1] -= 10.0
        return out

    def cut(sampler, **_):
        trace = sampler.wait()
        for group, name in (("posterior", "unconstrained_point"), ("sample_stats", "logp")):
            data = trace[group].to_dataset()
            data[name] = data[name].where(data["draw"] < 150)
            replace_group(trace, group, data)
        return trace

    monkeypatch.setattr(sampling_module.drift, "latest_depth", shifted)
    monkeypatch.setattr(sampling_module.drift, "stop_when_one_left", cut)
    fit = BayesianGMM(2, random_seed=1, draws=200, progressbar=False, max_draws=200)
    with warnings.catch_warnings():  # 200 draws: the ESS may miss its gate, not the point here
        warnings.simplefilter("ignore", SamplingWarning)
        fit.fit(_separated())
    assert get_attr(fit.idata_, "left_mode_stages") == 1
    assert get_attr(fit.idata_, "left_mode_restarted_from") == [1]
    assert get_attr(fit.idata_, "left_mode_moved") == ["apart"]
    (margin,) = get_attr(fit.idata_, "left_mode_mass_margin")
    assert abs(margin) < LEFT_MASS_MARGIN
    chain_means = fit.idata_.posterior["means"].mean("draw").values  # (chain, component, dim)
    for means in chain_means:
        np.testing.assert_allclose(np.sort(means[:, 0]), [0.0, 6.0], atol=0.5)
    table = fit.diagnostics().set_index("check")
    assert "each kept its chains" in table.loc["left_mode", "worst"]


def test_a_watched_first_run_runs_every_chain_at_once(monkeypatch):
    """nutpie queues the chains beyond the machine's cores until others finish; a watched run
    stops only once every chain has drawn to the first crossing, so it runs all at once."""
    from bayesgmm._backends import _run_nutpie

    options = []

    def sample(compiled, **kw):
        options.append(kw)
        return _done(0.0, 10, 3)

    monkeypatch.setattr("nutpie.sample", sample)
    run = dict(draws=10, tune=10, chains=6, seed=1, target_accept=0.8, progressbar=False)
    _run_nutpie(None, **run)
    _run_nutpie(None, **run, wait=lambda sampler: sampler.wait())
    assert [kw["cores"] for kw in options] == [None, 6]
    assert [kw["save_warmup"] for kw in options] == [False, True]  # for the watcher


def test_ctrl_c_in_a_watched_first_run_keeps_its_draws_not_its_tuning(rng, monkeypatch):
    """Ctrl-C while watching: nutpie's aborted results (tuning groups kept for the watcher)
    come back as an unwatched run's, marked interrupted."""
    from bayesgmm._backends import _run_nutpie

    logp, flat = _chi2_logp(rng, -100.0, 3, (2, 350)), rng.standard_normal((2, 350, 3))
    aborted = _tuned_tree(logp, flat, 300)

    def interrupt(sampler):
        raise KeyboardInterrupt

    sampler = type("Aborted", (), {"abort": lambda self: aborted, "cancel": lambda self: None})()
    monkeypatch.setattr("nutpie.sample", lambda compiled, **kw: sampler)
    run = dict(draws=10, tune=300, chains=2, seed=1, target_accept=0.8, progressbar=False)
    out, interrupted = _run_nutpie(None, **run, wait=interrupt)
    assert interrupted and set(out.children) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(out["sample_stats"]["logp"].values, logp[:, 300:])


def test_ctrl_c_after_a_first_run_stopped_while_tuning_returns_no_tuning_draws(rng, monkeypatch):
    """Ctrl-C in the second run: the first run's draws are kept (none: it stopped tuning),
    never its tuning draws."""
    first, _ = _stopped_first_run(rng, spread=1.0, tuning=True)

    def sample(compiled, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr("nutpie.sample", sample)
    approx = Laplace(np.zeros(3), np.eye(3), "laplace", -100.0, 1.0, 0)
    run = dict(draws=1000, tune=300, target_accept=0.8, seed=5, progressbar=False)
    out, attrs = run_again_if_left(first, [approx], lambda point: point, run)
    assert attrs == {} and set(out.children) == {"posterior", "sample_stats"}
    assert out["sample_stats"].sizes["draw"] == 0


def _standard_normal_sampler(
    n_dim: int, draws: int, chains: int = 4, seed: int = 3, save_warmup: bool = True
):
    """nutpie sampling a standard normal in the background (by default 4 chains, tuning
    kept, as a watched run does)."""
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc

    def make_logp_fn():
        return lambda x, **shared: (-0.5 * float(x @ x), -x)

    def make_expand_fn(*seeds_and_chain):
        return lambda x, **shared: {"unconstrained_point": np.array(x, dtype=np.float64)}

    compiled = from_pyfunc(
        n_dim,
        make_logp_fn,
        make_expand_fn,
        [np.dtype("float64")],
        [(n_dim,)],
        ["unconstrained_point"],
        make_initial_point_fn=lambda seed: np.ones(n_dim),
    )
    return nutpie.sample(
        compiled,
        draws=draws,
        tune=100,
        chains=chains,
        cores=chains,
        seed=seed,
        progress_bar=False,
        save_warmup=save_warmup,
        blocking=False,
    )


def test_the_running_logp_read_equals_the_full_conversion(rng):
    """The watcher's cheap look at a running sampler (nutpie's Arrow column) gives every
    chain's log densities exactly as nutpie's full conversion to ArviZ does, tuning first
    (read while the sampler is paused, so both see the same draws); a stand-in without
    nutpie's internals, or one whose results were taken, is read through ``inspect()``."""
    import time

    from bayesgmm._drift import _arrays, running_logp

    sampler = _standard_normal_sampler(3, 20_000)
    try:
        deadline = time.monotonic() + 60  # a loaded machine may be slow to start the chains
        while max(map(len, running_logp(sampler))) <= WATCH_DRAWS and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler.pause()  # chains finish the draw they are on: read until nothing moved
        for _ in range(200):
            before = running_logp(sampler)
            full = _arrays([sampler.inspect()])[1]
            cheap = running_logp(sampler)
            if list(map(len, before)) == list(map(len, cheap)):
                break
            time.sleep(0.05)
    finally:
        sampler.cancel()
    assert len(cheap) == 4 and max(map(len, cheap)) > WATCH_DRAWS
    for c, lp in enumerate(cheap):
        np.testing.assert_array_equal(lp, full[c, : len(lp)])
        assert np.isnan(full[c, len(lp) :]).all()
    logp = _chi2_logp(rng, -100.0, 3, (2, 50))
    stand_in = _Running(_stats_tree(logp))
    for c, lp in enumerate(running_logp(stand_in)):
        np.testing.assert_array_equal(lp, logp[c])
    stand_in._sampler = type("Finished", (), {"inspect": lambda self: None})()  # results taken
    for c, lp in enumerate(running_logp(stand_in)):
        np.testing.assert_array_equal(lp, logp[c])


class _Growing:
    """A one-chain background sampler whose draws of ``trace`` appear ``step`` at a time, one
    step per wait, until it finishes; it records being paused, resumed and cancelled."""

    def __init__(self, trace, step: int):
        self.trace, self.step, self.shown, self.calls = trace, step, 0, []

    def wait(self, timeout=None):
        self.shown = min(self.shown + self.step, self.trace["posterior"].sizes["draw"])
        if self.shown == self.trace["posterior"].sizes["draw"]:
            return self.trace
        raise TimeoutError

    def inspect(self):
        return first_draws(self.trace, self.shown)

    def pause(self):
        self.calls.append("pause")

    def resume(self):
        self.calls.append("resume")

    def cancel(self):
        self.calls.append("cancel")


def _growing_runs(rng, steps: tuple[int, int]) -> list:
    traces = [_stats_tree(rng.normal(size=(1, 1000)), rng.normal(size=(1, 1000, 2))) for _ in "ab"]
    samplers = [_Growing(trace, step) for trace, step in zip(traces, steps, strict=True)]
    return traces, samplers, [lambda s=s: s for s in samplers]


_PAUSED = ["pause", "resume", "pause", "resume", "pause", "cancel"]


@pytest.mark.parametrize(
    ("steps", "calls"),
    [
        ((7, 7), [_PAUSED, _PAUSED]),
        ((7, 250), [_PAUSED, []]),  # the second finished before the first reached 100
        ((10**6, 10**6), [[], []]),  # both finished at the first look
    ],
)
def test_a_checked_run_is_judged_at_each_check_in_order_wherever_the_samplers_were(
    rng, monkeypatch, steps, calls
):
    """Draws appearing 7 or 250 at a time, or all before the first look: the judge sees every
    chain cut to 100, 200, then 300 draws (once the slowest chain has drawn them) and accepts
    the third, so every chain is cut there, whatever it drew beyond; samplers still running
    were paused while judged, resumed after a judgement that let them go on, and cancelled at
    the stop."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    traces, samplers, runs = _growing_runs(rng, steps)
    seen = []

    def judge(cut):
        seen.append([tree["posterior"].sizes["draw"] for tree in cut])
        return len(seen) == 3

    cut, stopped = run_checked(runs, judge, [100, 200, 300, 400])
    assert stopped and seen == [[100, 100], [200, 200], [300, 300]]
    for tree, trace in zip(cut, traces, strict=True):
        for group in ("posterior", "sample_stats"):
            xr.testing.assert_identical(
                tree[group].to_dataset(), first_draws(trace, 300)[group].to_dataset()
            )
    assert [s.calls for s in samplers] == calls


def test_a_checked_run_the_judge_never_accepts_returns_the_finished_traces(rng, monkeypatch):
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.0)
    traces, samplers, runs = _growing_runs(rng, (300, 300))
    seen = []

    def judge(cut):
        seen.append(cut)
        return False

    out, stopped = run_checked(runs, judge, [100, 400, 900])
    assert not stopped and all(a is b for a, b in zip(out, traces, strict=True))
    assert len(seen) == 3 and "cancel" not in samplers[0].calls


def test_a_checked_nutpie_run_keeps_the_draws_a_full_run_draws(monkeypatch):
    """Two nutpie chains (one sampler each, tuning not kept) judged at 300, 600 and 900 of
    3000 draws: the judge accepts the second look, and each chain keeps exactly the first 600
    draws that the same seed draws in a run to the end (no tuning step counted as a draw)."""
    monkeypatch.setattr("bayesgmm._drift._POLL_SECONDS", 0.05)
    seen = []

    def judge(cut):
        seen.append([tree["posterior"].sizes["draw"] for tree in cut])
        return len(seen) == 2

    def sampler(seed):
        return _standard_normal_sampler(3, 3000, chains=1, seed=seed, save_warmup=False)

    cut, stopped = run_checked([lambda s=s: sampler(s) for s in (3, 4)], judge, [300, 600, 900])
    assert stopped and seen == [[300, 300], [600, 600]]
    for tree, seed in zip(cut, (3, 4), strict=True):
        full = sampler(seed).wait()["posterior"]["unconstrained_point"].values
        np.testing.assert_array_equal(
            tree["posterior"]["unconstrained_point"].values, full[:, :600]
        )
