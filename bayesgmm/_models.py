"""The 14 covariance models of Celeux & Govaert (1995), in mclust's vocabulary.

Each component covariance is ``Sigma_k = lambda_k D_k A_k D_k^T``: a volume ``lambda_k``
(``|Sigma_k|^(1/d)``), a diagonal shape ``A_k`` with ``|A_k| = 1`` and an orientation ``D_k``
(orthogonal). A model's three letters say, in that order, whether the volume, the shape and the
orientation are Equal across components, Variable, or the Identity (the shape of ``EII`` and
``VII``; the orientation of the diagonal models ``**I``).

scikit-learn's four names are aliases: ``spherical = VII``, ``diag = VVI``, ``tied = EEE`` and
``full = VVV``. Tables and figures use the mclust names (:func:`model_name`).

Every model stores its covariances in one of four **layouts** (the shapes of scikit-learn's four
families), which is all the E-step, the scaling and the conversions need to know:

==========================================  ===========  ===============
models                                      layout       ``covariances_``
==========================================  ===========  ===============
EII, VII                                    spherical    ``(K,)``
EEI, VEI, EVI, VVI                          diag         ``(K, D)``
EEE                                         tied         ``(D, D)``
VEE, EVE, VVE, EEV, VEV, EVV, VVV           full         ``(K, D, D)``
==========================================  ===========  ===============

**Units.** A model is invariant to rescaling each feature separately (``x -> S x`` with ``S``
diagonal) when ``S Sigma_k S`` stays in the model. That holds for the diagonal models, for
``EEE``, ``VEE``, ``EVV`` and ``VVV``. It fails for ``EII`` and ``VII`` (spheres become
ellipsoids), for ``EVE`` and ``VVE`` (``S D A_k D^T S`` share no orientation) and for ``EEV`` and
``VEV`` (``S D_k A D_k^T S`` share no shape). Those six are invariant only to one common scale
(and to rotations): their fit depends on the units in which the features are measured, and EM
fits them after one common rescaling (:func:`per_feature_scaling` is False), so that the
result in the user's units is the maximum-likelihood fit of those units, as mclust's.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALIASES",
    "BAYES_COVARIANCE_TYPES",
    "BAYES_MODELS",
    "COVARIANCE_NAMES",
    "LAYOUTS",
    "MODEL_NAMES",
    "ONE_FEATURE_MODELS",
    "check_model",
    "closest_bayes_model",
    "contains",
    "inestimable",
    "layout",
    "min_effective_size",
    "model_name",
    "n_covariance_parameters",
    "n_parameters",
    "per_feature_scaling",
    "sampled_model_statement",
    "too_few_rows",
]

MODEL_NAMES = (
    "EII",
    "VII",
    "EEI",
    "VEI",
    "EVI",
    "VVI",
    "EEE",
    "VEE",
    "EVE",
    "VVE",
    "EEV",
    "VEV",
    "EVV",
    "VVV",
)
# with one feature every model is one of two, a variance equal across components (the names
# starting with E) or one of each's own (V): mclust's E and V; these stand for them
ONE_FEATURE_MODELS = ("EII", "VII")
ALIASES = {"full": "VVV", "tied": "EEE", "diag": "VVI", "spherical": "VII"}
COVARIANCE_NAMES = (*ALIASES, *MODEL_NAMES)
LAYOUTS = ("full", "tied", "diag", "spherical")
# The models the Bayesian mixture samples (their priors: bayesgmm._families), and their names
BAYES_MODELS = ("VVV", "EEE", "VVI", "EEI", "VII", "EII")
BAYES_COVARIANCE_TYPES = (*ALIASES, *BAYES_MODELS)


@dataclass(frozen=True)
class _Model:
    layout: str
    per_feature_scaling: bool  # invariant to rescaling each feature separately


_MODELS = {
    "EII": _Model("spherical", False),
    "VII": _Model("spherical", False),
    "EEI": _Model("diag", True),
    "VEI": _Model("diag", True),
    "EVI": _Model("diag", True),
    "VVI": _Model("diag", True),
    "EEE": _Model("tied", True),
    "VEE": _Model("full", True),
    "EVE": _Model("full", False),
    "VVE": _Model("full", False),
    "EEV": _Model("full", False),
    "VEV": _Model("full", False),
    "EVV": _Model("full", True),
    "VVV": _Model("full", True),
}
# Every name, canonical or alias, to its layout: the E-step and the conversions need no more.
_LAYOUT = {**{name: m.layout for name, m in _MODELS.items()}, **{a: a for a in ALIASES}}


def check_model(covariance_type: str) -> str:
    """The canonical mclust name of ``covariance_type``, or a ValueError listing the valid ones.

    Parameters
    ----------
    covariance_type : str
        One of the 14 mclust names or scikit-learn's four aliases.

    Returns
    -------
    str
    """
    name = model_name(covariance_type) if covariance_type in _LAYOUT else None
    if name is None:
        valid = ", ".join(repr(o) for o in COVARIANCE_NAMES)
        raise ValueError(f"Unknown covariance_type {covariance_type!r}: choose one of {valid}.")
    return name


def model_name(covariance_type: str) -> str:
    """mclust's name of a model given by its mclust name or a scikit-learn alias."""
    return ALIASES.get(covariance_type, covariance_type)


def layout(covariance_type: str) -> str:
    """How the model's covariances are stored: "full", "tied", "diag" or "spherical"."""
    return _LAYOUT[covariance_type]


def per_feature_scaling(covariance_type: str) -> bool:
    """Whether the model is invariant to rescaling each feature separately (see above)."""
    return _MODELS[model_name(covariance_type)].per_feature_scaling


def n_covariance_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters of the covariances: volume, shape and orientation, as mclust counts them.

    Volume: 1 (E) or ``K`` (V). Shape: 0 (I), ``D - 1`` (E) or ``K (D - 1)`` (V). Orientation:
    0 (I), ``D (D - 1) / 2`` (E) or ``K D (D - 1) / 2`` (V).
    """
    volume, shape, orientation = model_name(covariance_type)
    k, d = n_components, n_features
    count = {"E": 1, "V": k}[volume]
    count += {"I": 0, "E": d - 1, "V": k * (d - 1)}[shape]
    count += {"I": 0, "E": 1, "V": k}[orientation] * (d * (d - 1) // 2)
    return count


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters of the mixture: weights, means and covariances (mclust's nMclustParams)."""
    k, d = n_components, n_features
    return n_covariance_parameters(covariance_type, k, d) + k * d + k - 1


def min_effective_size(covariance_type: str, n_features: int) -> int:
    """Effective size below which a component counts as collapsed.

    ``D + 1`` where a component's own scatter must have full rank (``VVV``, ``EVV``), 1 where
    every covariance parameter is shared (``EII``, ``EEI``, ``EEE``), 2 otherwise (a volume, a
    shape or an orientation of its own needs at least two distinct points).
    """
    name = model_name(covariance_type)
    if name in ("VVV", "EVV"):
        return n_features + 1
    return 1 if name in ("EII", "EEI", "EEE") else 2


# models whose components have an orientation of their own, or a shape of their own on axes
# that turn: a component whose rows span a proper subspace can turn those axes onto it, where
# the likelihood grows without bound, so each needs D + 1 rows
_TURNING = ("EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
# those whose components each turn their own axes: even with D + 1 rows each, with as many free
# parameters as rows EM's best optima are near such spikes (MASS's hills, 35 x 3: VEV at K = 8,
# four rows a component, had the best BIC), so they are refused there too. Not EVE and VVE:
# their axes are shared, estimated from every row (MASS's Cars93, 93 x 13: VVE at K = 2 has
# 131 parameters, 46 rows a component, and mclust's best BIC)
_OWN_AXES = ("EEV", "VEV", "EVV", "VVV")


def inestimable(covariance_type: str, n_components: int, n_rows: int, n_features: int) -> str:
    """Why the model at ``n_components`` cannot be estimated from ``n_rows`` rows ("" when it
    can).

    It cannot when there are fewer rows than its components' covariances need
    (:func:`too_few_rows`), so that every fit collapses a component. The four models whose
    components each turn axes of their own (``_OWN_AXES``: EEV, VEV, EVV, VVV) are also
    refused with as many free parameters as rows, at K > 1; for the other ten that is no bar
    (MASS's mtcars, 32 x 6: EEE at K = 2 has 34, and mclust and scikit-learn reach the same
    optimum). With one component those four are EEE (one covariance from every row), and are
    estimable where it is (R's USJudgeRatings, 43 x 12: 90 parameters, mclust fits all eight
    full-covariance models at K = 1 to EEE's optimum).
    """
    name, k, n, d = model_name(covariance_type), n_components, n_rows, n_features
    short = too_few_rows(name, k, n, d)
    if short:
        return f"{short}: every fit collapses a component."
    p = n_parameters(name, k, d)
    if name in _OWN_AXES and k > 1 and p >= n:
        return (
            f"The {name} model with K={k} has {p} free parameters for {n} rows: its "
            "components' own axes turn onto the few rows each holds, towards a likelihood "
            "without bound."
        )
    return ""


def too_few_rows(covariance_type: str, n_components: int, n_rows: int, n_features: int) -> str:
    """Whether ``n_rows`` rows are fewer than the model's components' covariances need ("" when
    they are not): :func:`min_effective_size` rows each, ``D + 1`` for the models whose
    components turn their own axes (``_TURNING``), and ``D`` more rows than components for a
    covariance all of them share (EEE, VEE)."""
    name, k, n, d = model_name(covariance_type), n_components, n_rows, n_features
    each = d + 1 if name in _TURNING else min_effective_size(name, d)
    least = max(k * each, k + d if name in ("EEE", "VEE") else k)
    if n >= least:
        return ""
    needs = f"needs {least} rows for its components' covariances"
    return f"The {name} model with K={k} {needs} but has {n}"


_CONSTRAINT = {"I": 0, "E": 1, "V": 2}  # identity, equal, variable: each letter's generality


def contains(general: str, special: str) -> bool:
    """Whether every mixture of model ``special`` is also one of model ``general``.

    Letter by letter (volume, shape, orientation), the identity is a special case of Equal and
    Equal of Variable (Celeux & Govaert 1995): e.g. VVV contains all 14 models, VVI the six
    diagonal ones (EII, VII, EEI, VEI, EVI, VVI), and EEE does not contain VVI.
    """
    general, special = model_name(general), model_name(special)
    return all(_CONSTRAINT[s] <= _CONSTRAINT[g] for g, s in zip(general, special, strict=True))


def closest_bayes_model(model: str) -> str:
    """The most constrained model the Bayesian stage samples that contains ``model``.

    >>> closest_bayes_model("VEI"), closest_bayes_model("EVE")
    ('VVI', 'VVV')
    """
    return [m for m in BAYES_MODELS if contains(m, model)][-1]  # (VVV contains every one)


def sampled_model_statement(best: tuple[int, str], bayes_covariance_type: str) -> str:
    """One plain sentence: the model EM's BIC chose and the model the Bayesian stage samples.

    Parameters
    ----------
    best : tuple of (int, str)
        EM's choice, ``(K, covariance_type)`` (as ``EMSelection.best["bic"]``).
    bayes_covariance_type : str
        The covariance family the Bayesian stage samples (one of ``BAYES_COVARIANCE_TYPES``).

    Returns
    -------
    str
        Whether the sampled model is the chosen one, contains it, or cannot represent it.

    Examples
    --------
    >>> sampled_model_statement((3, "VVE"), "full")  # doctest: +NORMALIZE_WHITESPACE
    "EM's BIC chose VVE with K=3; the Bayesian stage samples VVV (full), which contains VVE
    as a special case but does not impose its constraints."
    >>> sampled_model_statement((4, "EEE"), "diag")  # doctest: +NORMALIZE_WHITESPACE
    "EM's BIC chose EEE with K=4; the Bayesian stage samples VVI (diag), which cannot
    represent EEE: its posterior is that of a different model. EEE itself can be sampled:
    bayes_covariance_type='EEE'."
    >>> sampled_model_statement((2, "VEI"), "spherical").split("contains VEI ")[-1]
    "is VVI (bayes_covariance_type='VVI')."
    """
    k, chosen = best[0], model_name(best[1])
    sampled = model_name(bayes_covariance_type)
    head = f"EM's BIC chose {chosen} with K={k}; the Bayesian stage samples {sampled}"
    head += f" ({bayes_covariance_type})" if bayes_covariance_type != sampled else ""
    if sampled == chosen:
        return f"{head}, the same model."
    if contains(sampled, chosen):
        return (
            f"{head}, which contains {chosen} as a special case but does not impose its "
            "constraints."
        )
    closest = closest_bayes_model(chosen)
    if closest == chosen:
        advice = f"{chosen} itself can be sampled: bayes_covariance_type='{chosen}'."
    else:
        advice = (
            f"The closest model the Bayesian stage samples that contains {chosen} is {closest} "
            f"(bayes_covariance_type='{closest}')."
        )
    different = "its posterior is that of a different model"
    return f"{head}, which cannot represent {chosen}: {different}. {advice}"
