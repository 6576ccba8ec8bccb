"""The E-step's vectorisable exp (:mod:`bayesgmm._vexp`) against NumPy's."""

import textwrap

import numba
import numpy as np
import pytest
from scipy.special import logsumexp

from bayesgmm._vexp import FASTMATH_EXACT_ORDER, MIN_ARGUMENT, exp_nonpositive

from .conftest import run_fresh


@numba.njit(fastmath=FASTMATH_EXACT_ORDER)
def _exp_all(x):
    """exp_nonpositive over an array inside a loop LLVM can vectorise (as the kernel uses it)."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = exp_nonpositive(x[i])
    return out


def _ulps(x: np.ndarray) -> np.ndarray:
    reference = np.exp(x)
    return np.abs(_exp_all(x) - reference) / np.spacing(reference)


def test_within_one_ulp_of_numpy_over_the_whole_range():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(MIN_ARGUMENT, 0.0, 400_000),
            -rng.uniform(0.0, 1.0, 200_000),  # the reduced range and just beyond
            -rng.exponential(1e-9, 10_000),  # next to exp(0) = 1
            np.log(2.0) * -np.arange(0, 1022),  # exact multiples of ln 2 (n changes there)
            -np.log(2.0) * (np.arange(0, 1021) + 0.5),  # the rounding boundaries of n
        ]
    )
    x = x[x >= MIN_ARGUMENT]
    ulps = _ulps(x)
    assert ulps.max() <= 1.0, x[np.argmax(ulps)]
    assert np.mean(ulps == 0.0) > 0.8  # mostly the correctly rounded value


@pytest.mark.parametrize("x", [0.0, -0.0, -1e-300, MIN_ARGUMENT, -600.0])
def test_edge_arguments(x):
    assert _ulps(np.array([x]))[0] <= 1.0


def test_the_kernels_responsibilities_keep_that_accuracy():
    """Through the E-step kernel itself (compiled with its own fastmath flags, which must
    leave the reduction's order alone): gaps across the whole range to the row's largest."""
    from bayesgmm._kernels import NO_WEIGHTS, _responsibilities

    rng = np.random.default_rng(2)
    m = 4096
    lp = np.vstack([np.zeros(m), rng.uniform(-599.0, 0.0, m), rng.uniform(-40.0, 0.0, m)])
    expected = np.exp(lp) / np.exp(lp).sum(axis=0)
    expected_log_lik = logsumexp(lp, axis=0).sum()
    log_lik = _responsibilities(lp, m, np.empty(m), np.empty(m), NO_WEIGHTS, 0)
    nonzero = expected > 0
    relative = np.abs(lp[nonzero] - expected[nonzero]) / expected[nonzero]
    assert relative.max() < 4 * np.finfo(float).eps
    assert log_lik == pytest.approx(expected_log_lik, rel=1e-14)


def test_the_kernels_cut_off_lies_inside_the_range():
    from bayesgmm._kernels import _LOG_NEGLIGIBLE

    assert _LOG_NEGLIGIBLE >= MIN_ARGUMENT


_REASSOCIATING_CALLER_FIRST = textwrap.dedent(
    """
    import numba, numpy as np
    from bayesgmm._vexp import exp_nonpositive

    @numba.njit(fastmath={"reassoc", "contract", "nsz"})
    def loose(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = exp_nonpositive(x[i])
        return out

    x = np.random.default_rng(1).uniform(-708.0, -500.0, 20_000)
    reference = np.exp(x)
    print(float(np.max(np.abs(loose(x) - reference) / np.spacing(reference))))
    """
)


def test_a_reassociating_caller_compiled_first_keeps_the_accuracy(tmp_path):
    """Numba gives a function without its own fastmath flags those of its first caller (and
    caches that machine code): compiled first from a reassociating loop, the reduction was
    merged and erred by ~200 ulp. exp_nonpositive sets its own flags; a fresh process and an
    empty cache make this caller the first."""
    run = run_fresh(_REASSOCIATING_CALLER_FIRST, tmp_path)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.strip().splitlines()[-1]) <= 1.0, run.stdout
