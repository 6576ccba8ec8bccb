"""``bayesgmm cache --warm``: after warming an empty cache, fits on other data compile nothing."""

from __future__ import annotations

import textwrap

import pytest

from bayesgmm import cli
from bayesgmm._warmup import warm

from .conftest import run_fresh

# In a fresh process (nothing compiled in memory) with an empty cache: warm both parts, two
# processes side by side as the command does, then fit other data. A kernel the warm-up did
# not reach compiles there and is printed; loading from the cache fires no compile event.
_COVERAGE_SCRIPT = textwrap.dedent(
    """
    import warnings
    import numpy as np
    from numba.core import event
    from bayesgmm import EMGaussianMixture, build_model, em_sweep
    from bayesgmm._logdensity import log_density_for
    from bayesgmm._warmup import warm

    warm(jobs=2)
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(size=(40, 4)), rng.normal(size=(30, 4)) * [1, 2, 3, 4] + 5])
    holes = X.copy()
    holes[::6, 1] = np.nan
    weights = np.arange(70) % 3 + 1.0
    warnings.simplefilter("ignore")
    with event.install_recorder("numba:compile") as recorder:
        em_sweep(X, range(1, 4), "all", progress=False, random_state=1)
        EMGaussianMixture(3, random_state=1).fit(holes).predict(holes)
        EMGaussianMixture(2, random_state=1).fit(X, sample_weight=weights)
        for covariance_type in ("full", "diag", "EEE"):
            model = build_model(X, 3, covariance_type=covariance_type)
            density = log_density_for(model)
            x = np.full(sum(int(np.size(v)) for v in model.initial_point().values()), 0.2)
            density(x, X)
            density(x, density.rows(X, weights, collapse=False))
            density(x, density.rows(holes, None, collapse=False))
    print(sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in recorder.buffer}))
    """
)


@pytest.mark.slow  # compiles every kernel in an empty cache: ~2.5 min on two cores
def test_after_warming_an_empty_cache_other_fits_compile_nothing(tmp_path):
    run = run_fresh(_COVERAGE_SCRIPT, tmp_path / "numba", timeout=1200)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "[]"
    assert any((tmp_path / "numba").rglob("*.nbc"))  # the warm-up wrote to the empty cache


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
