"""The MCAR study's machinery (bayesgmm.validation.missing and missing_study), small and fast."""

from __future__ import annotations

import numpy as np
import pytest

from bayesgmm._idata import tree_from_arrays
from bayesgmm.validation.missing import (
    MISSING_TRUTH,
    coverage_summary,
    error_summary,
    matched_to_truth,
    mcar_mask,
    mean_imputed,
    parameter_names,
    parameter_vector,
    posterior_estimate,
)
from bayesgmm.validation.missing_study import format_missing_summary, run_missing_study

TRUTH = {k: np.asarray(v, dtype=float) for k, v in MISSING_TRUTH.items()}
TARGET = parameter_vector(TRUTH["weights"], TRUTH["means"], TRUTH["covariances"])


def test_mcar_mask_removes_the_rate_exactly_and_uniformly():
    rng = np.random.default_rng(0)
    masks = np.array([mcar_mask((50, 4), 0.25, rng) for _ in range(400)])
    assert np.all(masks.sum(axis=(1, 2)) == 50)
    # each cell is missing with probability 0.25: 400 masks, 200 cells, 5-sigma binomial bound
    freq = masks.mean(axis=0)
    assert np.all(np.abs(freq - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 400))
    assert not mcar_mask((10, 3), 0.0, rng).any()
    with pytest.raises(ValueError, match="rate must be"):
        mcar_mask((10, 3), 1.0, rng)


def test_parameter_vector_and_names_agree():
    names = parameter_names(2, 3)
    assert len(names) == TARGET.size == 2 + 6 + 12
    assert TARGET[names.index("covariances[1,2,1]")] == TRUTH["covariances"][1, 2, 1]
    assert TARGET[names.index("means[1,0]")] == TRUTH["means"][1, 0]


def test_matching_undoes_label_switching():
    w, m, c = TRUTH["weights"], TRUTH["means"], TRUTH["covariances"]
    swapped = (w[None, ::-1], m[None, ::-1] + 0.1, c[None, ::-1])
    both = [np.concatenate([a[None], b]) for a, b in zip((w, m, c), swapped, strict=True)]
    out = matched_to_truth(*both, TRUTH)
    np.testing.assert_array_equal(out[0], TARGET)
    np.testing.assert_allclose(out[1], parameter_vector(w, m + 0.1, c))


def test_error_summary_arithmetic_and_bias_check():
    rng = np.random.default_rng(1)
    target = np.array([1.0, -2.0])
    noise = rng.standard_normal((400, 2)) * [0.1, 0.3]
    noise[:, 0] -= noise[:, 0].mean() - 0.01  # bias 0.01 in 0.005 standard errors: z = 2
    fair = error_summary(target + noise, target, ["weights[0]", "means[0,0]"], 0.05)
    np.testing.assert_allclose(fair["bias"], noise.mean(axis=0))
    np.testing.assert_allclose(fair["se"], noise.std(axis=0, ddof=1) / 20)
    np.testing.assert_allclose(fair["rmse"], np.sqrt((noise**2).mean(axis=0)))
    assert fair["unbiased"] and fair["rmse_by_group"]["weights"] == pytest.approx(fair["rmse"][0])
    shifted = error_summary(target + noise + [0.0, 0.1], target, ["weights[0]", "means[0,0]"], 0.05)
    assert not shifted["unbiased"]  # 0.1 is 6.7 standard errors of 0.015


def test_coverage_summary_counts_and_band():
    hits = np.zeros((100, 3), dtype=bool)
    hits[:90, 0] = hits[:90, 1] = hits[:50, 2] = True
    out = coverage_summary(hits, ["a", "b", "c"], 0.9, 0.05)
    assert out["pooled_rate"] == pytest.approx(230 / 300)
    assert out["tests"]["a"]["rate"] == 0.9 and out["tests"]["a"]["passed"]
    assert not out["tests"]["c"]["passed"] and not out["passed"]
    np.testing.assert_allclose(
        out["pooled_band"], 0.9 + np.array([-1, 1]) * 1.96 * 0.3 / np.sqrt(300)
    )


def _posterior_tree(draws: int = 1000, sd: float = 0.05, seed: int = 0, swap: bool = True):
    """Draws around the truth; half of them with the components' labels swapped."""
    rng = np.random.default_rng(seed)
    w, m, c = TRUTH["weights"], TRUTH["means"], TRUTH["covariances"]
    means = m + sd * rng.standard_normal((2, draws // 2, *m.shape))
    weights = np.broadcast_to(w, (2, draws // 2, 2)).copy()
    covs = np.broadcast_to(c, (2, draws // 2, *c.shape)).copy()
    if swap:
        for a in (weights, means, covs):
            a[:, ::2] = a[:, ::2, ::-1]
    return tree_from_arrays(
        {
            "posterior": {"weights": weights, "means": means, "covariances": covs},
            "sample_stats": {"diverging": np.zeros((2, draws // 2), dtype=bool)},
        },
        dims={
            "weights": ["component"],
            "means": ["component", "feature"],
            "covariances": ["component", "feature", "feature_bis"],
        },
    )


def test_posterior_estimate_matches_draws_and_checks_coverage():
    mean, hits = posterior_estimate(_posterior_tree(), TRUTH, 0.9)
    names = parameter_names(2, 3)
    means = [i for i, n in enumerate(names) if n.startswith("means")]
    np.testing.assert_allclose(mean[means], TARGET[means], atol=0.01)  # 1000 draws, sd 0.05
    assert hits[means].all()
    # degenerate intervals (weights and covariances do not vary) cover the truth exactly
    assert hits.all()
    shifted = {**TRUTH, "means": TRUTH["means"] + 0.5}
    assert not posterior_estimate(_posterior_tree(), shifted, 0.9)[1][means].any()


def test_study_runs_end_to_end_with_a_stub_posterior():
    calls = []

    def stub(X, seed):
        calls.append(X.shape)
        if len(calls) == 2:
            raise RuntimeError("sampler broke")
        return _posterior_tree(draws=200, seed=seed % 1000)

    out = run_missing_study(3, rates=(0.2,), n_samples=150, posterior=stub, n_posterior=2)
    rate = out["rates"]["0.2"]
    assert len(calls) == 2 and rate["posterior_failures"] == ["RuntimeError: sampler broke"]
    assert rate["posterior_fitted"] == 1 and rate["methods"]["posterior"]["n"] == 1
    assert rate["methods"]["em"]["n"] == 3
    assert abs(rate["missing_fraction"] - 0.2) < 0.02
    assert "posterior_coverage@0.2" in out["gates"]
    text = format_missing_summary(out)
    assert "Rate 0.2" in text and "mean_imputation" in text and "posterior 90% intervals" in text


def test_mean_imputation_fills_with_observed_means():
    X = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]])
    np.testing.assert_array_equal(mean_imputed(X), [[1.0, 6.0], [3.0, 4.0], [2.0, 8.0]])


def test_command_line_writes_summary_and_results(tmp_path):
    import json

    from bayesgmm.validation.missing_study import main

    args = ["--replicates", "3", "--rates", "0.2", "--n-samples", "120", "--no-posterior"]
    status = main([*args, "--out", str(tmp_path)])
    results = json.loads((tmp_path / "missing_results.json").read_text())
    assert status == (0 if results["passed"] else 1)
    assert results["command"].endswith("--no-posterior --out " + str(tmp_path))
    assert "estimates" not in results["replicates"]["0.2"][0]  # summaries only by default
    assert set(results["rates"]["0.2"]["methods"]) == {
        "complete",
        "em",
        "drop_rows",
        "mean_imputation",
    }
    assert (tmp_path / "missing_summary.txt").read_text().startswith("MCAR study: 3 replicates")
