"""The kernels' results do not depend on where their arrays lie in memory.

A reassociated sum in a loop that also stores to an array is vectorised by LLVM behind a
run-time check of the arrays' addresses; for some loops that check is conservative, and when
an array the loop reads starts a little after the one it writes (no overlap) the scalar loop
runs and rounds the sum differently. Inside the log density those arrays come from malloc, so
the same point gave another log density now and then in NUTS's threads (and seeded runs
other draws). Each case places two of a kernel's arrays at every relative position near each
other in one buffer (never overlapping) and asks for bit-identical results.
"""

import numpy as np
import pytest

from bayesgmm import _kernels, _logprior, _unconstrained

K, D, M = 3, 8, 50


def _cases():
    rng = np.random.default_rng(1)
    chol = np.tril(rng.normal(size=(K, D, D)) * 0.3)
    for c in range(K):
        chol[c][np.diag_indices(D)] = np.exp(rng.normal(size=D) * 0.3)
    log_diag = np.log(np.stack([np.diag(c) for c in chol]))
    sd_terms = np.abs(rng.normal(size=(4, D)))
    sd_terms[3] = 0.0
    lp = rng.normal(size=(K, M)) * 3 - 5
    means = rng.normal(size=(K, D))
    return {
        "diag_scales": (
            _logprior._diag_scales_term,
            [chol, log_diag, rng.normal(size=(K, D, D)), sd_terms, np.zeros(K * D)],
        ),
        "means": (
            _logprior._means_term,
            [
                means,
                rng.normal(size=(K, D)),
                rng.normal(size=D),
                1 + rng.random(D),
                np.zeros(K * D),
            ],
        ),
        "responsibilities_weighted": (
            _kernels._responsibilities,
            [lp, M, np.zeros(M), np.zeros(M), 3 * rng.random(M), 0],
        ),
        "responsibilities": (
            _kernels._responsibilities,
            [lp, M, np.zeros(M), np.zeros(M), _kernels.NO_WEIGHTS, 0],
        ),
        "reduce_spherical": (_unconstrained._reduce, [rng.normal(size=(K, D, D)), K, 1]),
    }


def _run(kernel, args):
    out = kernel(*args)
    arrays = [a.tobytes() for a in args if isinstance(a, np.ndarray)]
    return (out.tobytes() if isinstance(out, np.ndarray) else out), arrays


@pytest.mark.parametrize("name", list(_cases()))
def test_results_do_not_depend_on_array_placement(name):
    kernel, base = _cases()[name]
    fresh = [a.copy() if isinstance(a, np.ndarray) else a for a in base]
    expected = _run(kernel, fresh)
    arrays = [i for i, a in enumerate(base) if isinstance(a, np.ndarray) and a.size]
    differing = []
    for i in arrays:
        for j in arrays:
            if i == j:
                continue
            first, second = base[i], base[j]
            # second starts `gap` elements after first's start, just before or after it
            before = range(-second.size - 64, -second.size + 1)
            gaps = [*before, *range(first.size, first.size + 65)]
            for gap in gaps:
                buffer = np.zeros(first.size + second.size + 256)
                a0 = 128 + max(0, -gap)
                args = [a.copy() if isinstance(a, np.ndarray) else a for a in base]
                args[i] = buffer[a0 : a0 + first.size].reshape(first.shape)
                args[i][...] = first
                args[j] = buffer[a0 + gap : a0 + gap + second.size].reshape(second.shape)
                args[j][...] = second
                if _run(kernel, args) != expected:
                    differing.append((i, j, gap))
    assert not differing, f"{len(differing)} placements change the result, e.g. {differing[:3]}"
