"""Prior settings of the Bayesian mixture, as one frozen, documented value."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ._validation import check_choice, value_step

__all__ = [
    "DEFAULT_SD_PRIOR",
    "SD_PRIORS",
    "GMMPriors",
    "feature_ties",
    "joint_resolution_floor",
    "resolution_floor",
]

SD_PRIORS = ("halfnormal", "inverse_gamma", "resolution")
"""The priors a component standard deviation can have (:attr:`GMMPriors.sd_prior`)."""

DEFAULT_SD_PRIOR = "resolution"
"""The standard deviations' prior of priors set from data (:meth:`GMMPriors.from_data`, and so
of ``BayesianGMM``, ``build_model``, the CLI and the report): the HalfNormal, with a barrier at
the rounding noise of features with tied values (the HalfNormal exactly where no value ties)."""


def resolution_floor(X: Any, sample_weight: Any = None) -> np.ndarray:
    """The ``"resolution"`` prior's barrier scale of each feature with tied values.

    A feature rounded to a grid of step ``h`` carries rounding noise of standard deviation
    ``h / sqrt(12)`` (Sheppard), so no component is truly narrower than that along it. A
    component on the ``m`` rows that share one value gains ``m log(1 / s)`` as its standard
    deviation ``s`` there shrinks; with the barrier ``exp(-f^2 / s^2)`` that gain peaks at
    ``s = f sqrt(2 / m)``. The barrier scale ``f = sqrt(m / 2) h / sqrt(12)``, with ``m`` the
    feature's largest number of rows sharing one value, puts that peak at the rounding noise
    for every group of tied rows. ``h`` is estimated as the smallest gap between the feature's
    distinct observed values. A feature without tied values (no value observed twice) gets 0:
    nothing to bound.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN cells are ignored.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights: a row of weight ``w`` counts as ``w`` rows sharing its values (the
        same floor as the repeated rows); rows of weight 0 are not observed.

    Returns
    -------
    ndarray of shape (n_features,)
        In the data's units.

    Examples
    --------
    >>> resolution_floor([[1.0, 0.5], [1.5, 0.7], [1.0, 0.2]]) * np.sqrt(12)
    array([0.5, 0. ])
    """
    X, weight = _rows(X, sample_weight)
    floor = np.zeros(X.shape[1])
    for j, (_, counts, step) in enumerate(_ties(X, weight)):
        floor[j] = _barrier_scale(step, counts.max(initial=0.0))
    return floor


def joint_resolution_floor(X: Any, sample_weight: Any = None) -> np.ndarray:
    """The ``"resolution"`` prior's barrier scale of each feature's variance given the others.

    With correlations (VVV, EEE) a component on ``m`` rows that share their values on two
    features gains ``-(m / 2) log(1 - rho^2)`` as their correlation ``rho`` runs to +-1, the
    variance of each feature given the other shrinking, however each variance is bounded. The
    barrier ``exp(-g^2 / v)`` on each conditional variance ``v`` puts the peak of that gain at
    the rounding noise for ``g = sqrt(m / 2) h / sqrt(12)`` (as :func:`resolution_floor` does
    for one feature), with ``m`` the largest number of rows that share their values on the
    feature and any other one, and ``h`` the feature's resolution. A feature whose rows share
    values jointly with no other feature (``m < 2``) gets 0: no such spike to bound, and no
    prior on its correlations beyond the LKJ. Scaled by the joint ties, not by the feature's
    own (iris: petal width has 29 rows on 0.2 cm but at most 8 share it with another value),
    the barrier leaves real correlations alone.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN cells are ignored (a row ties on two features where both are observed).
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights, as in :func:`resolution_floor`.

    Returns
    -------
    ndarray of shape (n_features,)
        In the data's units.

    Examples
    --------
    >>> X = [[1.0, 0.0, 5.0], [1.0, 0.0, 6.0], [2.0, 1.0, 6.0], [3.0, 1.0, 7.0]]
    >>> joint_resolution_floor(X) * np.sqrt(12)
    array([1., 1., 0.])
    """
    X, weight = _rows(X, sample_weight)
    ties = _ties(X, weight)
    tied = [j for j, (_, counts, _) in enumerate(ties) if counts.max(initial=0.0) > 1]
    most = np.zeros(X.shape[1])
    for a, j in enumerate(tied):
        for k in tied[a + 1 :]:
            (codes_j, counts_j, _), (codes_k, counts_k, _) = ties[j], ties[k]
            if min(counts_j.max(), counts_k.max()) <= min(most[j], most[k]):
                continue  # (no pair of their values can raise either)
            both = (codes_j >= 0) & (codes_k >= 0)
            pairs = codes_j[both] * counts_k.size + codes_k[both]
            if counts_j.size * counts_k.size > 4 * pairs.size + 1024:  # sparse: by sorting
                pairs = np.unique(pairs, return_inverse=True)[1]
            count = np.bincount(pairs, weights=weight[both]).max(initial=0.0)
            most[j], most[k] = max(most[j], count), max(most[k], count)
    return np.array([_barrier_scale(step, m) for (_, _, step), m in zip(ties, most, strict=True)])


def _barrier_scale(step: float, count: float) -> float:
    """``sqrt(m / 2) h / sqrt(12)`` for ``m`` tied rows (0 unless ``m > 1``) and step ``h``:
    the peak of ``m`` tied rows' likelihood under the barrier then sits at the rounding noise."""
    return step / np.sqrt(12.0) * np.sqrt(count / 2.0) if count > 1 else 0.0


def _rows(X: Any, sample_weight: Any) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as floats and the rows' weights, rows of weight 0 as not observed (NaN)."""
    X = np.array(X, dtype=float)
    weight = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    X[weight <= 0] = np.nan
    return X, weight


def feature_ties(X: Any, sample_weight: Any = None) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per feature, the values that rows share, counted as the resolution prior counts them:
    each row's code of its value (-1 where missing or of weight 0), the weighted count of each
    distinct value, and the smallest gap between distinct values (0 with one value).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN cells are ignored.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights (a row of weight ``w`` counts ``w`` times; weight 0: not observed).

    Returns
    -------
    list of (ndarray, ndarray, float)
        One ``(codes, counts, step)`` per feature.

    Examples
    --------
    >>> codes, counts, step = feature_ties([[1.0], [1.5], [1.0]], [1, 2, 1])[0]
    >>> codes.tolist(), counts.tolist(), step
    ([0, 1, 0], [2.0, 2.0], 0.5)
    """
    return _ties(*_rows(X, sample_weight))


def _ties(X: np.ndarray, weight: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per feature: each row's code of its value (-1 where missing), the weighted count of
    each distinct value and the smallest gap between distinct values (0 with one value)."""
    out = []
    for j in range(X.shape[1]):
        kept = ~np.isnan(X[:, j])
        values, which = np.unique(X[kept, j], return_inverse=True)
        codes = np.full(X.shape[0], -1, dtype=np.int64)
        codes[kept] = which
        counts = np.bincount(which, weights=weight[kept], minlength=values.size)
        step = value_step(values)
        out.append((codes, counts, step))
    return out


_PER_FEATURE = ("means_loc", "means_scale", "sd_scale", "sd_floor", "sd_floor_given_others")
_FLOORS = ("sd_floor", "sd_floor_given_others")


def _vector(value: Any, name: str) -> tuple[float, ...]:
    array = np.atleast_1d(np.asarray(value, dtype=float))
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite number or a 1-D sequence, got {value!r}.")
    return tuple(float(v) for v in array)


@dataclass(frozen=True)
class GMMPriors:
    """Priors of the Bayesian Gaussian mixture.

    ``weights ~ Dirichlet(weights_concentration * ones(K))``;
    ``means[k, j] ~ Normal(means_loc[j], means_scale[j])``;
    for full covariances, ``Sigma_k = diag(s_k) Omega_k diag(s_k)`` with correlations
    ``Omega_k ~ LKJ(lkj_eta)`` and independent standard deviations ``s_k[j]`` with the prior
    ``sd_prior``; for diagonal covariances only the standard deviations. The models with one
    covariance for every component (EEE, EEI, EII) put the same priors on that one covariance;
    the spherical ones (VII, EII, ``Sigma = sigma^2 I``) put the prior on ``sigma`` with the one
    scale ``pooled = sqrt(mean(sd_scale**2))`` (the table in :mod:`bayesgmm._families`).

    The two priors of a standard deviation ``s`` with scale ``c = sd_scale[j]``:

    - ``"halfnormal"``: ``s ~ HalfNormal(c)``, density ``sqrt(2 / pi) / c * exp(-s^2 / (2
      c^2))``. Finite and nonzero at ``s = 0``: with the labels marginalised the posterior is
      improper when rows tie on a feature (a component on ``m`` tied rows gains likelihood
      ``~ s^-m`` as its ``s -> 0``, and nothing stops it).
    - ``"inverse_gamma"``: the variance ``s^2 ~ InvGamma(var_shape, c^2)``, i.e. density
      ``2 c^(2 a) / Gamma(a) * s^-(2 a + 1) * exp(-c^2 / s^2)`` of ``s`` (``a = var_shape``).
      It vanishes faster than any power of ``s`` at 0 (the conjugate prior of Richardson &
      Green 1997 and of mclust's regularised fits, Fraley & Raftery 2007): the ``-c^2 / s^2``
      beats the ``m log(1 / s)`` of any number of tied rows, so the posterior is proper. With
      ``a = 3/2`` the prior is the marginal of each variance of mclust's inverse-Wishart with
      ``D + 2`` degrees of freedom; its mean is ``2 c^2``, its mode ``c^2 / 2.5``, and its
      right tail is heavy (no finite variance for ``a <= 2``).

    - ``"resolution"``: the HalfNormal with a lower-tail barrier at the data's rounding noise
      ``f = sd_floor[j]``: density ``sqrt(2 / pi) / c * exp(sqrt(2) f / c) * exp(-s^2 / (2
      c^2) - f^2 / s^2)`` (``s^2`` is then generalised inverse Gaussian, ``GIG(1/2, 1 / c^2,
      2 f^2)``). With ``f = 0`` it is the HalfNormal exactly; for ``s`` a few times ``f`` it is
      the HalfNormal to ``f^2 / s^2`` nats; below ``f`` the ``-f^2 / s^2`` beats the ``m
      log(1 / s)`` of any number of tied rows, so the posterior is proper. :meth:`from_data`
      sets ``f`` from each feature's resolution ``h`` and its largest number ``m`` of tied rows,
      ``f = sqrt(m / 2) h / sqrt(12)`` (:func:`resolution_floor`): a component on tied rows then
      peaks at the rounding noise ``h / sqrt(12)`` (Sheppard), not at 0, while a tight
      component well above ``f`` (mclust's ``thyroid``) keeps the HalfNormal's flat prior.
      With correlations (VVV, EEE) a barrier holds each variance *given the other features*
      too: the prior gains the factor ``exp(-sum_j g_j^2 ((Sigma^-1)_jj - 1 / Sigma_jj))``
      (<= 1, and 1 for uncorrelated features; unnormalised) with ``g =
      sd_floor_given_others``, since rounding noise is a part of each feature that no other
      feature predicts. Without it a component on rows tied on several features gains
      likelihood without bound as a correlation runs to +-1, whatever bounds each variance
      (:func:`bayesgmm._families.conditional_floor`); :meth:`from_data` sets ``g`` from the
      rows each feature shares values on with another (:func:`joint_resolution_floor`).

    Per-feature settings are tuples (one value per feature) or one number for every feature.

    Parameters
    ----------
    weights_concentration : float, default=1.0
        Dirichlet concentration; 1 is uniform on the simplex, values below 1 let surplus
        components empty out, values above 1 keep components populated.
    lkj_eta : float, default=2.0
        LKJ shape; 1 is uniform over correlation matrices, 2 mildly favours weak correlations.
    means_loc, means_scale : float or tuple of float
        Location and scale of the Normal prior on every component mean.
    sd_scale : float or tuple of float
        Scale ``c`` of the prior on component standard deviations (in the data's units).
    sd_prior : {"halfnormal", "inverse_gamma", "resolution"}, default="halfnormal"
        The prior of each standard deviation (above). Priors given by hand know no floor, so
        their default is the HalfNormal; :meth:`from_data` defaults to ``"resolution"``
        (:data:`DEFAULT_SD_PRIOR`), which is the HalfNormal wherever no value ties.
    sd_floor : float or tuple of float, default=0.0
        Barrier scale ``f`` of the ``"resolution"`` prior (in the data's units; 0 for none;
        unused by the other priors).
    sd_floor_given_others : float or tuple of float, default=0.0
        Barrier scale ``g`` of the ``"resolution"`` prior on each variance given the other
        features (VVV, EEE; in the data's units; 0 for none; unused by the other priors and
        the diagonal models).
    var_shape : float, default=1.5
        Shape ``a`` of the inverse-gamma prior on each variance (unused by ``"halfnormal"``).

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> priors = GMMPriors.from_data(load_faithful())
    >>> priors.lkj_eta, len(priors.means_loc), priors.sd_prior
    (2.0, 2, 'resolution')
    >>> GMMPriors.from_data(load_faithful(), sd_prior="inverse_gamma", n_components=2).var_shape
    1.5
    """

    weights_concentration: float = 1.0
    lkj_eta: float = 2.0
    means_loc: tuple[float, ...] = field(default=(0.0,))
    means_scale: tuple[float, ...] = field(default=(10.0,))
    sd_scale: tuple[float, ...] = field(default=(5.0,))
    sd_prior: str = "halfnormal"
    var_shape: float = 1.5
    sd_floor: tuple[float, ...] = field(default=(0.0,))
    sd_floor_given_others: tuple[float, ...] = field(default=(0.0,))

    def __post_init__(self) -> None:
        check_choice("sd_prior", self.sd_prior, SD_PRIORS)
        for name in _PER_FEATURE:
            object.__setattr__(self, name, _vector(getattr(self, name), name))
        for name in _FLOORS:
            if min(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("weights_concentration", "lkj_eta", "var_shape"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
            object.__setattr__(self, name, float(value))
        for name in ("means_scale", "sd_scale"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")

    @classmethod
    def from_data(
        cls,
        X: Any,
        *,
        weights_concentration: float = 1.0,
        lkj_eta: float = 2.0,
        means_spread: float = 2.0,
        sd_spread: float = 1.0,
        sd_prior: str = DEFAULT_SD_PRIOR,
        n_components: int | None = None,
    ) -> GMMPriors:
        """Weakly informative priors scaled to the data, feature by feature.

        ``means_loc`` is the feature mean and ``means_scale = means_spread * std`` (so the
        prior on every component mean covers the data's range twice over). The scale of the
        standard deviations' prior depends on ``sd_prior``:

        - ``"halfnormal"``: ``sd_scale = sd_spread * std`` (a component is at most about as
          wide as the data, with the HalfNormal's mass on ``(0, 2 std)``);
        - ``"inverse_gamma"``: mclust's default prior (``defaultPrior``: an inverse-Wishart
          with ``D + 2`` degrees of freedom and scale ``var(X) / K^(2/D)``), whose marginal on
          each variance is ``InvGamma(3/2, var_j / (2 K^(2/D)))``: ``var_shape = 1.5`` and
          ``sd_scale = sd_spread * std / (sqrt(2) K^(1/D))``. The prior mean of each variance
          is then ``var_j / K^(2/D)``: ``K`` components share the data's volume;
        - ``"resolution"``: the HalfNormal's ``sd_scale``, ``sd_floor`` from each
          feature's rounding noise and tie count (:func:`resolution_floor`; 0 for a feature
          without tied values) and ``sd_floor_given_others`` from its rounding noise and the
          rows it shares values on jointly with another feature
          (:func:`joint_resolution_floor`).

        Using the data to set the scale of the priors is an empirical-Bayes convenience; pass
        explicit values for a fully prior-driven model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        weights_concentration, lkj_eta : float
        means_spread, sd_spread : float
            Multiples of each feature's standard deviation.
        sd_prior : {"halfnormal", "inverse_gamma", "resolution"}, default="resolution"
            See :class:`GMMPriors` (:data:`DEFAULT_SD_PRIOR`).
        n_components : int, optional
            ``K``; needed by ``"inverse_gamma"``.
        """
        from ._scaling import AffineScaling

        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 2 or not np.all(np.isfinite(X)):
            raise ValueError("X must be a 2-D array of finite numbers with at least two rows.")
        constant = np.flatnonzero(np.max(X, axis=0) == np.min(X, axis=0))
        if constant.size:
            raise ValueError(
                f"Feature(s) {constant.tolist()} of X are constant: drop them before setting "
                "priors."
            )
        # mean and standard deviation without squaring the data (exact at 1e-200 and 1e200)
        return cls.from_scaling(
            AffineScaling.fit(X),
            weights_concentration=weights_concentration,
            lkj_eta=lkj_eta,
            means_spread=means_spread,
            sd_spread=sd_spread,
            sd_prior=sd_prior,
            n_components=n_components,
            sd_floor=resolution_floor(X) if sd_prior == "resolution" else 0.0,
            sd_floor_given_others=joint_resolution_floor(X) if sd_prior == "resolution" else 0.0,
        )

    @classmethod
    def from_scaling(
        cls,
        scaling: Any,
        *,
        weights_concentration: float = 1.0,
        lkj_eta: float = 2.0,
        means_spread: float = 2.0,
        sd_spread: float = 1.0,
        sd_prior: str = DEFAULT_SD_PRIOR,
        n_components: int | None = None,
        sd_floor: Any = 0.0,
        sd_floor_given_others: Any = 0.0,
    ) -> GMMPriors:
        """:meth:`from_data`'s priors from the features' means and standard deviations
        (``scaling.loc`` and ``scaling.scale``, an :class:`~bayesgmm._scaling.AffineScaling`),
        e.g. those of the observed cells of rows with missing values, counted by weight;
        ``sd_floor`` and ``sd_floor_given_others`` are kept by the ``"resolution"`` prior
        (:func:`resolution_floor`, :func:`joint_resolution_floor`)."""
        check_choice("sd_prior", sd_prior, SD_PRIORS)
        spread = sd_spread
        if sd_prior == "inverse_gamma":
            if not isinstance(n_components, int | np.integer) or n_components < 1:
                raise ValueError(
                    "The inverse-gamma prior's default scale is var / K^(2/D): pass "
                    f"n_components (a positive integer, got {n_components!r})."
                )
            spread = sd_spread / (np.sqrt(2.0) * float(n_components) ** (1.0 / scaling.loc.size))
        with np.errstate(over="ignore"):
            means_scale, sd_scale = means_spread * scaling.scale, spread * scaling.scale
        resolution = sd_prior == "resolution"
        return cls(
            weights_concentration=weights_concentration,
            lkj_eta=lkj_eta,
            means_loc=tuple(scaling.loc),
            means_scale=tuple(means_scale),
            sd_scale=tuple(sd_scale),
            sd_prior=sd_prior,
            **{  # one per feature, as a standardised or saved copy has it
                name: tuple(np.broadcast_to(value if resolution else 0.0, scaling.loc.shape))
                for name, value in zip(_FLOORS, (sd_floor, sd_floor_given_others), strict=True)
            },
        )

    def standardised(self, loc: Any, scale: Any) -> GMMPriors:
        """The same priors for standardised features ``z = (x - loc) / scale``.

        The model samples on that scale (:func:`bayesgmm.build_model`); the prior of each
        parameter in the data's units is unchanged: a mean's Normal moves and shrinks with the
        feature, a standard deviation's prior (HalfNormal or inverse-gamma on its square: ``c``
        is a scale parameter of both) shrinks with it, and the LKJ prior on the correlations
        does not depend on the units.

        Parameters
        ----------
        loc, scale : array-like of shape (n_features,)

        Returns
        -------
        GMMPriors
            With one value per feature.

        Examples
        --------
        >>> priors = GMMPriors(means_loc=10.0, means_scale=4.0, sd_scale=2.0)
        >>> unit = priors.standardised([10.0], [2.0])
        >>> unit.means_loc, unit.means_scale, unit.sd_scale
        ((0.0,), (2.0,), (1.0,))
        """
        loc, scale = np.asarray(loc, dtype=float), np.asarray(scale, dtype=float)
        own = self.for_features(loc.size)
        with np.errstate(over="ignore", under="ignore"):
            values = {
                "means_loc": (np.asarray(own.means_loc) - loc) / scale,
                "means_scale": np.asarray(own.means_scale) / scale,
                "sd_scale": np.asarray(own.sd_scale) / scale,
                "sd_floor": np.asarray(own.sd_floor) / scale,
                "sd_floor_given_others": np.asarray(own.sd_floor_given_others) / scale,
            }
        for name, value in values.items():
            low = np.any(value < 0) if name in _FLOORS else np.any(value <= 0)
            if not np.all(np.isfinite(value)) or (name != "means_loc" and low):
                raise ValueError(
                    f"priors.{name} {getattr(own, name)} is out of all proportion to the "
                    f"data's spread (standard deviations {scale.tolist()}): give values on the "
                    "data's scale, or use GMMPriors.from_data(X)."
                )
        return replace(self, **values)

    def for_features(self, n_features: int) -> GMMPriors:
        """Broadcast the per-feature settings to ``n_features`` (one value repeats)."""
        out = {}
        for name in _PER_FEATURE:
            values = getattr(self, name)
            if len(values) == 1:
                values = values * n_features
            elif len(values) != n_features:
                raise ValueError(
                    f"priors.{name} has {len(values)} values but the data has {n_features} "
                    "features: give one value per feature or a single value."
                )
            out[name] = values
        return replace(self, **out)

    def to_json(self) -> str:
        """A JSON string, as stored in the attrs of the results."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GMMPriors:
        return cls(**json.loads(text))
