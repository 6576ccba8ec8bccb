"""Relabelling: permuted draws are restored exactly; per-component families move together."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesgmm.alignment import apply_permutations, label_switching_summary, match_to_reference


def _fake_posterior(rng, n_chain=2, n_draw=50, k=3, d=2):
    ref_means = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])[:k]
    ref_cov = np.stack([np.eye(d) * (1 + j) for j in range(k)])
    means = ref_means + 0.2 * rng.normal(size=(n_chain, n_draw, k, d))
    cov = ref_cov * np.exp(0.1 * rng.normal(size=(n_chain, n_draw, k, 1, 1)))
    weights = rng.dirichlet([5.0, 3.0, 2.0][:k], size=(n_chain, n_draw))
    packed = [cov[:, :, j, [0, 1, 1], [0, 0, 1]] for j in range(k)]
    dims = ("chain", "draw")
    ds = xr.Dataset(
        {
            "weights": ((*dims, "component"), weights),
            "means": ((*dims, "component", "feature"), means),
            "covariances": ((*dims, "component", "feature", "feature_bis"), cov),
            **{f"chol_cov_{j}": ((*dims, f"chol_cov_{j}_dim_0"), packed[j]) for j in range(k)},
            "lp": (dims, rng.normal(size=(n_chain, n_draw))),
        }
    )
    return ds, ref_means, ref_cov


def _permute(ds, perm):
    return apply_permutations(ds, perm)


def test_identity_when_draws_already_match(rng):
    ds, ref_means, ref_cov = _fake_posterior(rng)
    perm = match_to_reference(ds["means"].values, ds["covariances"].values, ref_means, ref_cov)
    np.testing.assert_array_equal(perm, np.broadcast_to(np.arange(3), perm.shape))


def test_permuted_draws_are_restored_exactly(rng):
    ds, ref_means, ref_cov = _fake_posterior(rng)
    scramble = np.stack([np.stack([rng.permutation(3) for _ in range(50)]) for _ in range(2)])
    scrambled = _permute(ds, scramble)
    assert not np.allclose(scrambled["means"].values, ds["means"].values)
    perm = match_to_reference(
        scrambled["means"].values, scrambled["covariances"].values, ref_means, ref_cov
    )
    restored = apply_permutations(scrambled, perm)
    xr.testing.assert_identical(restored, ds)
    summary = label_switching_summary(perm)
    expected = np.any(scramble != np.arange(3), axis=2).sum(axis=1)
    np.testing.assert_array_equal(summary["relabelled_draws"], expected)


def test_per_component_family_moves_with_components(rng):
    ds, _, _ = _fake_posterior(rng, n_chain=1, n_draw=1)
    perm = np.array([[[2, 0, 1]]])
    out = apply_permutations(ds, perm)
    np.testing.assert_array_equal(out["chol_cov_0"].values, ds["chol_cov_2"].values)
    np.testing.assert_array_equal(out["chol_cov_1"].values, ds["chol_cov_0"].values)
    np.testing.assert_array_equal(
        out["weights"].values[0, 0], ds["weights"].values[0, 0, [2, 0, 1]]
    )
    np.testing.assert_array_equal(out["lp"].values, ds["lp"].values)


@pytest.mark.parametrize("k", [1, 2])
def test_small_k(rng, k):
    ds, ref_means, ref_cov = _fake_posterior(rng, k=k)
    perm = match_to_reference(ds["means"].values, ds["covariances"].values, ref_means, ref_cov)
    assert perm.shape == (2, 50, k)
