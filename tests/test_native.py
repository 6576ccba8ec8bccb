"""nutpie calling the kernel's log density through compiled callbacks (bayesgmm._native).

Oracles: the density's own value and gradient (the Python path, itself checked against PyMC's
compiled logp and dlogp in test_logdensity), the Laplace map ``theta = mode + L z``, and the
draws nutpie makes through the Python callback from the same start and seed.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from bayesgmm import EMGaussianMixture, _native, build_model, load_faithful
from bayesgmm._drift import pooled_metric
from bayesgmm._logdensity import log_density_for
from bayesgmm._models import BAYES_MODELS
from bayesgmm._precondition import whitened_density
from bayesgmm.sampling import _kernel_compiled

_LOGP = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, *(ctypes.c_void_p,) * 4)
_EXPAND = ctypes.CFUNCTYPE(
    ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, *(ctypes.c_void_p,) * 3
)


def _faithful() -> np.ndarray:
    return np.ascontiguousarray(load_faithful().to_numpy(), dtype=np.float64)


def _call_logp(model, x: np.ndarray, n_dim: int | None = None) -> tuple[int, float, np.ndarray]:
    """The logp callback at ``x`` as nutpie calls it: (code, value, gradient)."""
    logp, _ = _native._compiled()
    x = np.ascontiguousarray(x, dtype=np.float64)
    value, grad = np.zeros(1), np.zeros(x.shape[0])
    size = x.shape[0] if n_dim is None else n_dim
    args = (x.ctypes.data, grad.ctypes.data, value.ctypes.data, model.header.ctypes.data)
    code = _LOGP(logp.address)(size, *args)
    return code, value[0], grad


def _call_expand(model, z: np.ndarray) -> np.ndarray:
    _, expand = _native._compiled()
    out = np.zeros_like(z)
    code = _EXPAND(expand.address)(
        z.shape[0], z.shape[0], z.ctypes.data, out.ctypes.data, model.header.ctypes.data
    )
    assert code == 0
    return out


def _setup(cov_type: str, k: int = 2):
    X = _faithful()
    model = build_model(X, k, covariance_type=cov_type)
    density = log_density_for(model)
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(300, density.n_dim)) * 0.05 + rng.normal(size=density.n_dim) * 0.3
    return X, model, density, pooled_metric(draws)


@pytest.mark.parametrize("cov_type", BAYES_MODELS)
def test_the_callback_is_the_density(cov_type):
    X, _, density, approx = _setup(cov_type, k=3)
    plain = _native.native_model(density, X, np.zeros(density.n_dim), None, "theta")
    whitened = _native.native_model(density, X, np.zeros(density.n_dim), approx, "theta")
    python_whitened = whitened_density(density, approx)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.normal(size=density.n_dim) * 0.5
        code, value, grad = _call_logp(plain, x)
        expected_value, expected_grad = density(x, X)
        assert code == 0
        np.testing.assert_allclose(value, expected_value, rtol=1e-13)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-11, atol=1e-11)
        code, value, grad = _call_logp(whitened, x)
        expected_value, expected_grad = python_whitened(x, X)
        assert code == 0
        np.testing.assert_allclose(value, expected_value, rtol=1e-13)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-11, atol=1e-11)


def test_the_draw_callback_maps_z_to_theta():
    X, _, density, approx = _setup("full")
    z = np.random.default_rng(1).normal(size=density.n_dim)
    whitened = _native.native_model(density, X, np.zeros(density.n_dim), approx, "theta")
    np.testing.assert_allclose(_call_expand(whitened, z), approx.to_theta(z), rtol=1e-14)
    plain = _native.native_model(density, X, np.zeros(density.n_dim), None, "theta")
    np.testing.assert_array_equal(_call_expand(plain, z), z)


@pytest.mark.parametrize("value", [1e300, -1e300, np.inf, np.nan])
def test_a_point_far_out_is_a_divergence_code_not_a_failure(value):
    """nutpie records codes 3 and 4 (a non-finite gradient or density) as a divergence of
    that trajectory; any other failure would stop the run."""
    X, _, density, _ = _setup("full")
    plain = _native.native_model(density, X, np.zeros(density.n_dim), None, "theta")
    x = np.zeros(density.n_dim)
    x[-1] = value
    code, logp, grad = _call_logp(plain, x)
    finite = np.isfinite(logp) and np.all(np.isfinite(grad))
    assert code == 0 if finite else code in (3, 4)
    if np.isnan(value):
        assert code in (3, 4)


def test_a_point_of_the_wrong_size_is_refused():
    X, _, density, _ = _setup("diag")
    plain = _native.native_model(density, X, np.zeros(density.n_dim), None, "theta")
    code, _, _ = _call_logp(plain, np.zeros(density.n_dim), n_dim=density.n_dim - 1)
    assert code == -1


@pytest.mark.parametrize("whiten", [False, True], ids=["theta", "whitened"])
def test_nutpie_draws_the_python_callbacks_chains(whiten):
    """Same model, start and seed: the compiled callbacks give the draws the Python callback
    gives (to rounding: the callback module optimises the linked kernels again, so the last
    bits of a whitened evaluation can differ; 4e-15 on MASS crabs over 400 iterations)."""
    X = _faithful()
    _assert_same_chains(X, "full", whiten, seed=4)


def _assert_same_chains(X: np.ndarray, cov_type: str, whiten: bool, seed: int) -> None:
    """nutpie's chains through the compiled callbacks and through the Python callback, from
    EM's estimate (whitened around it, so that they start in the typical set), agree to 1e-9
    and take the same steps."""
    import nutpie

    em = EMGaussianMixture(2, covariance_type=cov_type, random_state=0).fit(X)
    model = build_model(X, 2, covariance_type=cov_type)
    density = log_density_for(model)
    approx = None
    if whiten:
        start = _kernel_compiled(model, em, density)._make_initial_points(0)
        noise = np.random.default_rng(seed).normal(size=(400, len(start)))
        approx = pooled_metric(start + 0.02 * noise)
    native = _kernel_compiled(model, em, density, approx)
    python = _kernel_compiled(model, em, density, approx, native=False)
    assert isinstance(native, _native.KernelModel)
    assert not isinstance(python, _native.KernelModel)
    run = dict(draws=60, tune=60, chains=2, seed=seed, progress_bar=False)
    ours, theirs = (nutpie.sample(c, **run) for c in (native, python))
    np.testing.assert_allclose(
        ours.posterior["unconstrained_point"].values,
        theirs.posterior["unconstrained_point"].values,
        rtol=0,
        atol=1e-9,
    )
    np.testing.assert_array_equal(ours.sample_stats["n_steps"], theirs.sample_stats["n_steps"])


@pytest.mark.parametrize("rows", ["missing", "weighted", "both"])
def test_rows_with_missing_cells_or_weights_take_their_kernels(rows):
    """Rows with missing cells (sorted by pattern) or frequency weights: the callback is the
    density on them, plain and whitened, and a model of rows with missing cells samples
    through it."""
    X, _, density, approx = _setup("full", k=3)
    holes = X.copy()
    if rows != "weighted":
        holes[3, 1] = holes[10, 0] = holes[11, 0] = np.nan
    weights = None if rows == "missing" else np.arange(len(X)) % 3 + 1.0
    prepared = density.rows(holes, weights)
    assert not isinstance(prepared, np.ndarray)
    python_whitened = whitened_density(density, approx)
    rng = np.random.default_rng(4)
    for whiten in (None, approx):
        native = _native.native_model(density, prepared, np.zeros(density.n_dim), whiten, "t")
        for _ in range(3):
            x = rng.normal(size=density.n_dim) * 0.5
            code, value, grad = _call_logp(native, x)
            expected = (python_whitened if whiten else density)(x, prepared)
            assert code == 0
            np.testing.assert_allclose(value, expected[0], rtol=1e-12)
            np.testing.assert_allclose(grad, expected[1], rtol=1e-9, atol=1e-9)
    em = EMGaussianMixture(3, random_state=0).fit(X)
    missing = build_model(holes, 3, covariance_type="full")
    assert isinstance(_kernel_compiled(missing, em, log_density_for(missing)), _native.KernelModel)


def test_a_nutpie_without_the_entry_points_keeps_the_python_callback(monkeypatch):
    X = _faithful()
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    monkeypatch.setattr(_native, "available", lambda: False)
    compiled = _kernel_compiled(model, em, log_density_for(model))
    assert not isinstance(compiled, _native.KernelModel)
    assert compiled.n_dim == log_density_for(model).n_dim


def test_arrays_of_other_shapes_than_the_header_says_are_refused():
    """The callbacks read arrays by address and size: one of another shape would be read
    past its end, so building the model refuses it."""
    X, _, density, approx = _setup("full")
    args = list(density._args)
    args[8] = np.zeros(1)  # one prior mean where the header says one per feature
    object.__setattr__(density, "_args", tuple(args))
    with pytest.raises(ValueError, match="shapes"):
        _native.native_model(density, X, np.zeros(density.n_dim), approx, "theta")


def test_nutpie_draws_the_python_callbacks_chains_on_rows_with_missing_cells():
    X = _faithful().copy()
    X[[3, 40, 41], [1, 0, 0]] = np.nan
    _assert_same_chains(X, "full", True, seed=6)


def test_an_error_in_the_kernel_is_nutpies_error_code_not_a_result():
    """A compiled callback that raises would print the error and return 0 (success), leaving
    stale outputs for nutpie to take: it returns nutpie's failure code instead."""
    X, _, density, _ = _setup("full")
    model = _native.native_model(density, X, np.zeros(density.n_dim), None, "theta")
    model.header[_native._BLOCK] = 0  # the kernel's block loop raises on a zero step
    code, _, _ = _call_logp(model, np.zeros(density.n_dim))
    assert code == _native._DENSITY_FAILED


def test_rows_that_do_not_fit_their_patterns_are_refused():
    X, _, density, _ = _setup("full")
    holes = X.copy()
    holes[3, 1] = np.nan
    prepared = density.rows(holes)
    prepared.bounds[-1] += 1  # a pattern said to run past the last row
    with pytest.raises(ValueError, match="do not fit"):
        _native.native_model(density, prepared, np.zeros(density.n_dim), None, "theta")
