"""nutpie's runs: several at once, each run's draws its own, Ctrl-C keeping what was drawn."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesgmm import EMGaussianMixture, build_model
from bayesgmm._backends import _run_nutpie, _waited, run_nutpie_together
from bayesgmm.datasets import simulate_mixture
from bayesgmm.sampling import _nutpie_model

RUN = dict(draws=40, tune=40, target_accept=0.8, progressbar=False)


@pytest.fixture(scope="module")
def two_starts():
    """A model and two EM fits of it (different optima, so different whitening points)."""
    X = simulate_mixture(
        90,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [3.0, 1.0]],
        covariances=[np.eye(2), np.eye(2)],
        random_state=4,
    ).X
    model = build_model(X, 2)
    ems = [EMGaussianMixture(2, random_state=s, n_init=1).fit(X) for s in (0, 5)]
    return model, ems


def _values(tree) -> np.ndarray:
    return tree["posterior"]["unconstrained_point"].values


def test_runs_together_draw_what_each_draws_alone(two_starts):
    """Each run's draws depend only on its compiled model and seed: the runs started
    together (the chains of several starts sharing the cores) give the draws of each run
    made alone, to the bit."""
    model, ems = two_starts
    runs = [dict(RUN, chains=2, seed=11), dict(RUN, chains=1, seed=12)]
    compiled = [_nutpie_model(model, "kernel", None, em) for em in ems]
    together, interrupted = run_nutpie_together(list(zip(compiled, runs, strict=True)))
    assert not interrupted
    for tree, c, run in zip(together, compiled, runs, strict=True):
        alone, _ = _run_nutpie(c, **run)
        assert tree["posterior"].sizes["chain"] == run["chains"]
        np.testing.assert_array_equal(_values(tree), _values(alone))
    assert not np.array_equal(_values(together[0])[:1], _values(together[1]))


class _Sampler:
    """A background sampler stand-in that logs what is done to it (``log``, shared)."""

    def __init__(self, name: str, log: list, fail: type[BaseException] | None = None):
        self.name, self.log, self.fail = name, log, fail

    def wait(self, timeout=None):
        self.log.append(("wait", self.name))
        if self.fail is not None:
            raise self.fail
        return self.name

    def abort(self):
        self.log.append(("abort", self.name))
        return xr.DataTree.from_dict({"posterior": xr.Dataset({"x": ("draw", [0.0])})})

    def cancel(self):
        self.log.append(("cancel", self.name))


def test_every_run_starts_before_any_is_waited_for(monkeypatch):
    log: list = []

    def sample(compiled, **options):
        log.append(("start", compiled))
        assert options["blocking"] is False and options["cores"] is None
        return _Sampler(compiled, log)

    monkeypatch.setattr("nutpie.sample", sample)
    jobs = [(name, dict(RUN, chains=1, seed=s)) for s, name in enumerate("abc")]
    assert run_nutpie_together(jobs) == (["a", "b", "c"], False)
    assert log == [("start", "a"), ("start", "b"), ("start", "c")] + [("wait", n) for n in "abc"]


def test_a_failure_to_start_one_run_cancels_those_started(monkeypatch):
    log: list = []

    def sample(compiled, **options):
        if compiled == "c":
            raise RuntimeError("no sampler")
        return _Sampler(compiled, log)

    monkeypatch.setattr("nutpie.sample", sample)
    jobs = [(name, dict(RUN, chains=1, seed=0)) for name in "abc"]
    with pytest.raises(RuntimeError, match="no sampler"):
        run_nutpie_together(jobs)
    assert log == [("cancel", "a"), ("cancel", "b")]


def test_ctrl_c_keeps_the_finished_runs_and_what_the_others_drew():
    log: list = []
    samplers = [_Sampler("a", log), _Sampler("b", log, KeyboardInterrupt), _Sampler("c", log)]
    trees, interrupted = _waited(samplers)
    assert interrupted and trees[0] == "a" and len(trees) == 3
    assert all(set(t.children) == {"posterior"} for t in trees[1:])
    assert log == [("wait", "a"), ("wait", "b"), ("abort", "b"), ("abort", "c")]


def test_another_failure_while_waiting_cancels_every_run(monkeypatch):
    log: list = []
    failing = {"b": ValueError}
    monkeypatch.setattr(
        "nutpie.sample", lambda compiled, **options: _Sampler(compiled, log, failing.get(compiled))
    )
    jobs = [(name, dict(RUN, chains=1, seed=0)) for name in "abc"]
    with pytest.raises(ValueError):
        run_nutpie_together(jobs)
    assert log == [("wait", "a"), ("wait", "b")] + [("cancel", n) for n in "abc"]
    log.clear()
    with pytest.raises(ValueError):
        _run_nutpie("b", **dict(RUN, chains=1, seed=0))
    assert log == [("wait", "b"), ("cancel", "b")]
