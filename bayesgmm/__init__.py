"""bayesgmm: Gaussian mixtures fitted two ways, EM and NUTS from the EM start, compared honestly."""

from .em import CollapsedComponentWarning, EMGaussianMixture

__all__ = ["CollapsedComponentWarning", "EMGaussianMixture"]
__version__ = "0.1.0"
