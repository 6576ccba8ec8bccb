"""The covariance models the Bayesian mixture samples, in mclust's vocabulary, and their priors.

Six of the 14 models of :mod:`bayesgmm._models` have a Bayesian form (scikit-learn's four names
are aliases, as for EM). In the data's units, with the priors of :class:`~bayesgmm.GMMPriors`
(``sd_scale`` one value per feature; ``pooled = sqrt(mean(sd_scale**2))``, its root mean square;
``P(c)`` is the prior ``sd_prior`` with scale ``c`` on a standard deviation: ``HalfNormal(c)``,
``InvGamma(var_shape, c^2)`` on its square, or ``HalfNormal(c)`` times the barrier
``exp(-f^2 / s^2)`` with ``f = sd_floor[j]``, pooled like ``c`` in the spherical models):

=====  =========  =============================  ========================================
model  alias      covariance of component ``k``  priors
=====  =========  =============================  ========================================
VVV    full       ``diag(s_k) O_k diag(s_k)``    ``s_k[j] ~ P(sd_scale[j])``,
                                                 ``O_k ~ LKJ(eta)``, independent over k
EEE    tied       ``diag(s) O diag(s)``          ``s[j] ~ P(sd_scale[j])``,
                                                 ``O ~ LKJ(eta)``, one for every k
VVI    diag       ``diag(s_k)^2``                ``s_k[j] ~ P(sd_scale[j])``
EEI               ``diag(s)^2``                  ``s[j] ~ P(sd_scale[j])``
VII    spherical  ``sigma_k^2 I``                ``sigma_k ~ P(pooled)``
EII               ``sigma^2 I``                  ``sigma ~ P(pooled)``
=====  =========  =============================  ========================================

With ``"resolution"``, VVV and EEE also have a barrier on each variance given the other
features: the prior above times ``exp(-sum_j g_j^2 ((Sigma^-1)_jj - 1 / Sigma_jj))`` per free
covariance, ``g = sd_floor_given_others`` (:func:`conditional_floor`; a potential named
:data:`CONDITIONAL_FLOOR` in the model).

Every variance thus has the same prior whatever the model (for the inverse-gamma, the
marginal of each variance under mclust's inverse-Wishart prior of VVV, see
:class:`~bayesgmm.GMMPriors`), and the spherical scale's is that of the mean variance, except
that the barrier on each variance given the others (where ``g > 0``) also shifts the
marginals of VVV's and EEE's standard deviations a little (away from the floor).

Weights and means have the same priors in every model. A shared covariance is one set of free
variables (one ``pm.LKJCholeskyCov`` named ``chol_cov``, or ``stds_z`` of dims ``(feature,)``
or ``()``), broadcast to every component in the deterministics, so ``covariances`` keeps its
dims ``(component, feature, feature_bis)`` and everything downstream works unchanged.

**Units.** The model samples on standardised features ``(x - loc) / scale``. VVV, EEE, VVI and
EEI are invariant to rescaling each feature separately, so each feature gets its own ``scale``.
``sigma^2 I`` is preserved only by one common scale (a per-feature one turns spheres into
ellipsoids, another model), so VII and EII are standardised isotropically: centred, with one
scale for every feature (:func:`bayesgmm._models.per_feature_scaling`), as EM fits them.

With one feature VVV and EEE are built as VVI and EEI (the same models; PyMC 6.4's
``LKJCholeskyCov`` fails for ``n=1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from ._models import BAYES_COVARIANCE_TYPES, BAYES_MODELS, model_name, per_feature_scaling
from ._validation import check_choice
from .priors import GMMPriors

__all__ = [
    "BAYES_COVARIANCE_TYPES",
    "BAYES_MODELS",
    "CONDITIONAL_FLOOR",
    "SHARED_CHOL_COV",
    "Family",
    "bayes_family",
    "chol_cov_name",
    "conditional_floor",
    "conditional_floor_logp",
    "family_cholesky",
    "sd_distribution",
    "sd_log_density_terms",
    "sd_prior_floor",
    "sd_prior_scale",
    "start_values",
]

SHARED_CHOL_COV = "chol_cov"
CONDITIONAL_FLOOR = "conditional_floor"
_ONE_FEATURE = {"VVV": "VVI", "EEE": "EEI"}


def chol_cov_name(component: int) -> str:
    """Name of the ``LKJCholeskyCov`` variable of one component (VVV).

    Parameters
    ----------
    component : int

    Returns
    -------
    str

    Examples
    --------
    >>> chol_cov_name(2)
    'chol_cov_2'
    """
    return f"chol_cov_{component}"


@dataclass(frozen=True)
class Family:
    """How one Bayesian covariance model is parameterised (see the module docstring).

    Attributes
    ----------
    name : str
        mclust's name.
    shared : bool
        One covariance for every component (EEE, EEI, EII).
    diagonal : bool
        Diagonal covariances (VVI, EEI, VII, EII).
    spherical : bool
        One scale for every feature (VII, EII).
    """

    name: str
    shared: bool
    diagonal: bool
    spherical: bool

    @property
    def isotropic(self) -> bool:
        """Standardised with one common scale (see the module docstring)."""
        return not per_feature_scaling(self.name)

    def n_groups(self, n_components: int) -> int:
        """How many covariances are free: 1 if shared, else one per component."""
        return 1 if self.shared else n_components

    def n_scales(self, n_features: int) -> int:
        """How many standard deviations each free covariance has: 1 if spherical, else D."""
        return 1 if self.spherical else n_features

    def free_names(self, n_components: int) -> list[str]:
        """The covariance's free variables, in the order PyMC's ``free_RVs`` lists them."""
        if self.diagonal:
            return ["stds_z"]
        if self.shared:
            return [SHARED_CHOL_COV]
        return [chol_cov_name(k) for k in range(n_components)]


def bayes_family(covariance_type: str, n_features: int | None = None) -> Family:
    """The :class:`Family` of a Bayesian covariance model (a name or an alias), checked.

    Parameters
    ----------
    covariance_type : str
        One of :data:`BAYES_COVARIANCE_TYPES`.
    n_features : int, optional
        With one feature, VVV and EEE are built as VVI and EEI.

    Returns
    -------
    Family

    Examples
    --------
    >>> bayes_family("tied")
    Family(name='EEE', shared=True, diagonal=False, spherical=False)
    >>> bayes_family("full", n_features=1).name
    'VVI'
    """
    check_choice("covariance_type", covariance_type, BAYES_COVARIANCE_TYPES)
    name = model_name(covariance_type)
    if n_features == 1:
        name = _ONE_FEATURE.get(name, name)
    volume, shape, orientation = name
    return Family(name, shared=volume == "E", diagonal=orientation == "I", spherical=shape == "I")


def pooled_sd_scale(sd_scale: tuple[float, ...]) -> float:
    """The one prior scale of a spherical model's standard deviation: the root mean square of
    the per-feature ``sd_scale`` (the common scale of isotropic standardisation, times
    ``sd_spread``, for :meth:`GMMPriors.from_data`)."""
    return float(np.sqrt(np.mean(np.square(sd_scale))))


def sd_prior_scale(unit: GMMPriors, family: Family) -> np.ndarray:
    """The scales ``c`` of the free standard deviations' prior: ``sd_scale``, or the pooled
    one of a spherical model (shape ``(n_scales,)``)."""
    return np.atleast_1d(
        pooled_sd_scale(unit.sd_scale) if family.spherical else np.asarray(unit.sd_scale)
    )


def sd_prior_floor(unit: GMMPriors, family: Family) -> np.ndarray:
    """The barrier scales ``f`` of the ``"resolution"`` prior, pooled like
    :func:`sd_prior_scale` (zeros for the other priors)."""
    if unit.sd_prior != "resolution":
        return np.zeros(family.n_scales(len(unit.sd_scale)))
    return np.atleast_1d(
        pooled_sd_scale(unit.sd_floor) if family.spherical else np.asarray(unit.sd_floor)
    )


def conditional_floor(unit: GMMPriors, family: Family) -> np.ndarray:
    """``g^2`` of the ``"resolution"`` prior's barrier on each feature's variance given the
    other features (``g = sd_floor_given_others``), for the families with correlations (VVV,
    EEE; zeros otherwise).

    A feature recorded to a resolution ``h`` carries rounding noise of variance ``h^2 / 12``
    that no other feature predicts, so within a component even its variance *given the other
    features*, ``1 / (Sigma^-1)_jj``, stays above it. The barrier ``exp(-f^2 / s^2)`` on each
    standard deviation bounds only the marginal variances: on rows tied on several features
    (MASS's ``Boston``: 132 rows share two values) the likelihood still gains without bound as a
    correlation runs to +-1 at fixed standard deviations. So with correlations the prior on the
    standard deviations and the LKJ is multiplied by ``exp(-sum_j g_j^2 ((Sigma^-1)_jj - 1 /
    Sigma_jj))`` (a factor <= 1, as ``(Sigma^-1)_jj >= 1 / Sigma_jj``, and 1 for a diagonal
    ``Sigma``), unnormalised: the barrier on each variance given the others, less the one on
    each variance the standard deviations' prior has already (of scale ``g``, not ``f``).
    """
    n_scales = family.n_scales(len(unit.sd_scale))
    if family.diagonal or unit.sd_prior != "resolution":
        return np.zeros(n_scales)
    return np.square(np.asarray(unit.sd_floor_given_others, dtype=np.float64))


def conditional_floor_logp(factors: list, floor_sq: np.ndarray) -> pt.TensorVariable:
    """The log of :func:`conditional_floor`'s factor, summed over lower Cholesky factors
    ``(D, D)`` of covariances (PyTensor)."""
    total = 0.0
    for lower in factors:
        inverse = pt.linalg.solve_triangular(lower, pt.eye(lower.shape[0]), lower=True)
        precision_diagonal = pt.sum(pt.square(inverse), axis=0)  # sum_m (L^-1)_mj^2
        variances = pt.sum(pt.square(lower), axis=1)
        total = total - pt.sum(floor_sq * (precision_diagonal - 1.0 / variances))
    return total


def _resolution_logp(value, scale, floor):
    """Log density of the ``"resolution"`` prior (:class:`~bayesgmm.GMMPriors`): the
    HalfNormal's times ``exp(-f^2 / s^2)``, normalised by ``exp(sqrt(2) f / c)``
    (``int_0^inf exp(-b1 s^2 - b2 / s^2) ds = sqrt(pi / b1) exp(-2 sqrt(b1 b2)) / 2``)."""
    square = pt.square(value)
    logp = (
        0.5 * np.log(2.0 / np.pi)
        - pt.log(scale)
        + np.sqrt(2.0) * floor / scale
        - square / (2.0 * pt.square(scale))
        - pt.square(floor) / square
    )
    return pt.switch(pt.gt(value, 0.0), logp, -np.inf)


def _resolution_random(scale, floor, rng=None, size=None):
    """Draws of the ``"resolution"`` prior: ``s^2 ~ GIG(1/2, 1 / c^2, 2 f^2)``, the HalfNormal
    where ``f = 0``. The standardised ``GIG(1/2, b)`` is the reciprocal of an inverse Gaussian
    of mean 1 and shape ``b`` (NumPy's ``wald``: vectorised, where SciPy's ``geninvgauss``
    loops in Python over the elements of an array ``b``)."""
    scale, floor = np.broadcast_arrays(np.asarray(scale, float), np.asarray(floor, float))
    size = scale.shape if size is None else size
    scale, floor = np.broadcast_to(scale, size), np.broadcast_to(floor, size)
    halfnormal = np.abs(rng.standard_normal(size)) * scale
    shape = np.sqrt(2.0) * floor / scale  # b = 2 sqrt(b1 b2)
    positive = np.where(floor > 0, floor, 1.0)
    gig = 1.0 / rng.wald(1.0, np.where(floor > 0, shape, 1.0), size=size)
    square = gig * np.sqrt(2.0) * positive * scale  # scale sqrt(b2 / b1)
    return np.where(floor > 0, np.sqrt(square), halfnormal)


def _sqrt_inverse_gamma(shape, scale_sq, size):
    """A standard deviation whose square is ``InvGamma(shape, scale_sq)`` (PyMC derives the
    density of the square root, with its Jacobian, from the inverse-gamma's)."""
    return pt.sqrt(pm.InverseGamma.dist(alpha=shape, beta=scale_sq, size=size))


def sd_distribution(
    unit: GMMPriors,
    scale: np.ndarray,
    name: str | None = None,
    *,
    floor: np.ndarray | None = None,
    **kwargs,
) -> pt.TensorVariable:
    """The prior ``unit.sd_prior`` of standard deviations with scales ``scale`` (and, for
    ``"resolution"``, barrier scales ``floor``, from :func:`sd_prior_floor`).

    Without ``name`` an unregistered distribution (``LKJCholeskyCov``'s ``sd_dist``); with it
    the model's free variable, sampled on the log scale. ``kwargs`` (``shape``, ``dims``) go to
    PyMC.
    """
    if unit.sd_prior == "halfnormal":
        if name is None:
            return pm.HalfNormal.dist(sigma=scale, **kwargs)
        return pm.HalfNormal(name, sigma=scale, **kwargs)
    log = pm.distributions.transforms.log
    if unit.sd_prior == "resolution":
        params = (np.asarray(scale, dtype=np.float64), np.asarray(floor, dtype=np.float64))
        custom = {"logp": _resolution_logp, "random": _resolution_random, "signature": "(),()->()"}
        if name is None:
            return pm.CustomDist.dist(*params, **custom, **kwargs)
        return pm.CustomDist(name, *params, **custom, transform=log, **kwargs)
    # float64 arrays: PyTensor makes a Python float a float32 constant when it is exact in
    # float32 (1.5 is), and its gammaln(a) is then off by ~1e-8
    params = (np.asarray(unit.var_shape, dtype=np.float64), np.square(scale, dtype=np.float64))
    if name is None:
        return pm.CustomDist.dist(*params, dist=_sqrt_inverse_gamma, **kwargs)
    return pm.CustomDist(name, *params, dist=_sqrt_inverse_gamma, transform=log, **kwargs)


def sd_log_density_terms(
    unit: GMMPriors, scale: np.ndarray, floor: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """The prior of :func:`sd_distribution` as the kernel evaluates it.

    Every prior is ``log p(s) = b0 log s - b1 s^2 - b2 / s^2 + const``: the HalfNormal has
    ``(0, 1 / (2 c^2), 0)`` and constant ``log(2 / pi) / 2 - log c``; the inverse-gamma on
    ``s^2`` has ``(-(2 a + 1), 0, c^2)`` and constant ``log 2 + 2 a log c - log Gamma(a)``;
    the ``"resolution"`` prior has ``(0, 1 / (2 c^2), f^2)`` and the HalfNormal's constant
    plus ``sqrt(2) f / c``.

    Parameters
    ----------
    unit : GMMPriors
        On the standardised scale.
    scale : ndarray of shape (n_scales,)
        From :func:`sd_prior_scale`.
    floor : ndarray of shape (n_scales,), optional
        From :func:`sd_prior_floor` (needed by ``"resolution"``).

    Returns
    -------
    coefficients : ndarray of shape (3, n_scales)
        ``b0, b1, b2`` of each scale.
    constant : float
        The constants summed over the scales (one free covariance's).
    """
    scale = np.asarray(scale, dtype=np.float64)
    zero = np.zeros_like(scale)
    if unit.sd_prior != "inverse_gamma":
        floor = zero if unit.sd_prior == "halfnormal" else np.asarray(floor, dtype=np.float64)
        coefficients = np.stack([zero, 0.5 / np.square(scale), np.square(floor)])
        constant = np.sum(0.5 * np.log(2.0 / np.pi) - np.log(scale) + np.sqrt(2.0) * floor / scale)
    else:
        a = unit.var_shape
        coefficients = np.stack([zero - (2.0 * a + 1.0), zero, np.square(scale)])
        constant = np.sum(np.log(2.0) + 2.0 * a * np.log(scale) - gammaln(a))
    return np.ascontiguousarray(coefficients), float(constant)


def family_cholesky(
    family: Family, n_components: int, n_features: int, unit: GMMPriors
) -> pt.TensorVariable:
    """The free covariance variables of ``family`` (inside a model context) and the lower
    Cholesky factors ``(K, D, D)`` of the standardised covariances they make.

    ``unit`` holds the priors on the standardised scale, one value per feature.
    """
    k, d = n_components, n_features
    scale, floor = sd_prior_scale(unit, family), sd_prior_floor(unit, family)
    if not family.diagonal:
        names = family.free_names(k)
        factors = []
        for name in names:
            packed = pm.LKJCholeskyCov(
                name,
                n=d,
                eta=unit.lkj_eta,
                sd_dist=sd_distribution(unit, scale, floor=floor, shape=d),
                compute_corr=False,
            )
            factors.append(pm.math.expand_packed_triangular(d, packed, lower=True))
        floor_sq = conditional_floor(unit, family)
        if np.any(floor_sq > 0):
            pm.Potential(CONDITIONAL_FLOOR, conditional_floor_logp(factors, floor_sq))
        return pt.broadcast_to(pt.stack(factors), (k, d, d))
    dims = (() if family.shared else ("component",)) + (() if family.spherical else ("feature",))
    shape = (family.n_groups(k), family.n_scales(d))
    size = ((k,) if not family.shared else ()) + ((d,) if not family.spherical else ())
    each, bar = (scale[0], floor[0]) if family.spherical else (scale, floor)
    stds = sd_distribution(
        unit, np.broadcast_to(each, size), "stds_z", floor=np.broadcast_to(bar, size), dims=dims
    )
    full = pt.broadcast_to(pt.reshape(stds, shape), (k, d))
    return full[:, :, None] * pt.eye(d)[None, :, :]


def start_values(
    family: Family, weights: np.ndarray, covariances: np.ndarray
) -> dict[str, np.ndarray]:
    """Initial values of the covariance's free variables from component covariances.

    Shared models take the weighted mean of the components' covariances, spherical ones the
    mean variance over features: an EM fit of the same model comes back exactly, and any other
    fit is projected onto the model.

    Parameters
    ----------
    family : Family
    weights : ndarray of shape (K,)
    covariances : ndarray of shape (K, D, D)
        Standardised covariances.

    Returns
    -------
    dict
        Keyed by the free variables' names (natural space).
    """
    from ._gaussian import packed_cholesky

    k = covariances.shape[0]
    if family.shared:
        w = np.asarray(weights, dtype=float) / np.sum(weights)
        covariances = np.einsum("k,kij->ij", w, covariances)[None]
    if not family.diagonal:
        packed = [packed_cholesky(c) for c in covariances]
        return dict(zip(family.free_names(k), packed, strict=True))
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    if family.spherical:
        variances = variances.mean(axis=1, keepdims=True)
    stds = np.sqrt(variances)
    keep = (slice(None) if not family.shared else 0, slice(None) if not family.spherical else 0)
    return {"stds_z": stds[keep]}
