"""The package's public names: all reachable, loaded lazily, the EM half without PyMC."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import bayesgmm


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing of bayesgmm imported yet); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip()


def test_every_public_name_resolves_to_what_its_module_defines():
    import importlib

    for name in bayesgmm.__all__:
        value = getattr(bayesgmm, name)
        home = importlib.import_module(f"bayesgmm.{bayesgmm._HOMES[name]}")
        assert value is getattr(home, name), name
    assert set(bayesgmm.__all__) <= set(dir(bayesgmm))


def test_functions_named_like_their_modules_stay_functions():
    # importing the submodule binds it on the package; the public name must stay the function
    import bayesgmm.compare
    import bayesgmm.diagnostics
    import bayesgmm.report

    for name in ("compare", "diagnostics", "report"):
        assert isinstance(getattr(bayesgmm, name), types.FunctionType), name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'BayesGMM'"):
        bayesgmm.BayesGMM  # noqa: B018


def test_the_em_half_loads_without_the_bayesian_stack():
    loaded = _run(
        "import sys; from bayesgmm import EMGaussianMixture, em_sweep, SamplingWarning; "
        "print(sorted(m for m in ('arviz', 'matplotlib', 'nutpie', 'pymc', 'pytensor') "
        "if m in sys.modules))"
    )
    assert loaded == "[]"


def test_a_submodule_imported_first_leaves_the_function_in_a_fresh_process():
    # the order a user's script may take: another module pulls bayesgmm.report in first
    out = _run(
        "import bayesgmm.bayesian, bayesgmm; "
        "print(type(bayesgmm.report).__name__, type(bayesgmm.diagnostics).__name__)"
    )
    assert out == "function function"
