"""``bayesgmm cache --warm``: after warming, fits on other data compile nothing."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core import event

from bayesgmm import EMGaussianMixture, build_model, cli, em_sweep
from bayesgmm._logdensity import log_density_for
from bayesgmm._warmup import warm


def _compiles(work) -> list[str]:
    """The Numba functions ``work()`` compiled (none when all were loaded or in memory)."""
    with event.install_recorder("numba:compile") as recorder:
        work()
    return [ev.data["dispatcher"].py_func.__qualname__ for _, ev in recorder.buffer if ev.is_start]


def _other_data() -> tuple[np.ndarray, np.ndarray]:
    """Rows of another size and width than the warm-up's, and a copy with missing cells."""
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(size=(40, 4)), rng.normal(size=(30, 4)) @ np.diag([1, 2, 3, 4]) + 5])
    holes = X.copy()
    holes[::6, 1] = np.nan
    return X, holes


def test_after_warming_em_a_sweep_and_fits_compile_nothing():
    warm(["em"], jobs=1)
    X, holes = _other_data()

    def work():
        em_sweep(X, range(1, 4), "all", progress=False, random_state=1)
        EMGaussianMixture(3, random_state=1).fit(holes).predict(holes)
        EMGaussianMixture(2, random_state=1).fit(X, sample_weight=np.arange(70) % 3 + 1.0)

    assert _compiles(work) == []


def test_after_warming_the_bayesian_half_the_log_density_compiles_nothing():
    warm(["bayes"], jobs=1)
    X, holes = _other_data()

    def work():
        for covariance_type in ("full", "diag", "EEE"):
            model = build_model(X, 3, covariance_type=covariance_type)
            density = log_density_for(model)
            x = np.full(sum(int(np.size(v)) for v in model.initial_point().values()), 0.2)
            density(x, X)
            density(x, density.rows(X, np.arange(70) % 3 + 1.0, collapse=False))
            density(x, density.rows(holes, None, collapse=False))

    assert _compiles(work) == []


def test_an_unknown_part_is_named():
    with pytest.raises(ValueError, match=r"\['gpu'\].*choose from \['bayes', 'em'\]"):
        warm(["em", "gpu"])


def test_the_cache_command_warms_and_says_how_long(monkeypatch, capsys):
    monkeypatch.setattr("bayesgmm._warmup.warm", lambda: {"em": 61.2, "bayes": 80.7})
    assert cli.main(["cache", "--warm"]) == 0
    out = capsys.readouterr().out
    assert "  em: 61 s\n  bayes: 81 s\n" in out
    assert "Numba kernels:" in out


def test_clear_and_warm_together_are_a_usage_error(capsys):
    assert cli.main(["cache", "--clear", "--warm"]) == cli.EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err
