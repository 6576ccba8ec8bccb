"""Chains that NUTS moved little: their trajectories mostly rejected after tuning.

NUTS tunes its step size during warm-up so that the mean acceptance statistic of a
trajectory matches ``target_accept``. A chain that ends the warm-up in, or moves into, a much
narrower region than the one it was tuned in (the funnel of a near-empty component, the
narrow end of a curved ridge) keeps a step size too large for it: almost every trajectory
diverges from the energy it started with, the multinomial choice along it falls back on the
starting point, and the chain repeats its draws. Its draws are valid but move little, so its
R-hat and ESS say less than they seem to; a chain in the model-selection notebook's K=4 fit
accepted 0.09 against a target of 0.8 and repeated 80% of its draws, and none of the other
checks named it. :func:`stuck_chains` measures each chain against the target it ran with.

The results record one target for all chains: where only some chains ran at a raised one (a
mode's rerun at a raised target without ``follow_up_target_accept``), or only some draws (an
extension drawn again at a raised target, ``extension_target_accept``), those are measured against
the lower target, so the rule may miss one of them but never names a healthy chain.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._idata import Tree, get_attr, get_group

__all__ = ["STUCK_ACCEPT_SHARE", "stuck_chains"]

#: A chain whose mean acceptance over its draws is below this share of the target is stuck.
#: Tuned chains sit within about 0.1 of the target (0.8: 0.75-0.9 on the data sets measured),
#: a stuck one far below it (0.09 against 0.8).
STUCK_ACCEPT_SHARE = 0.5

# the acceptance statistic's name: nutpie's, PyMC's
_ACCEPT_NAMES = ("mean_tree_accept", "acceptance_rate")


def stuck_chains(idata: Tree) -> pd.DataFrame | None:
    """Each chain's mean acceptance against the target it ran with.

    Parameters
    ----------
    idata : xarray.DataTree
        NUTS results: ``sample_stats`` with nutpie's ``mean_tree_accept`` (or PyMC's
        ``acceptance_rate``) and, if recorded, ``index_in_trajectory``; the target in
        ``posterior.attrs`` (``follow_up_target_accept`` when new chains ran at a raised one,
        else ``target_accept``).

    Returns
    -------
    pandas.DataFrame or None
        One row per chain: ``accept`` (mean over draws), ``target``, ``threshold``
        (:data:`STUCK_ACCEPT_SHARE` times the target), ``repeated`` (share of draws that are
        the trajectory's starting point, i.e. the draw before; NaN when not recorded) and
        ``stuck``. None when the statistic or the target is not recorded.

    Examples
    --------
    >>> import xarray as xr
    >>> from bayesgmm._idata import new_tree
    >>> accept = np.array([[0.8, 0.9, 0.85], [0.1, 0.05, 0.2]])
    >>> stats = xr.Dataset({"mean_tree_accept": (("chain", "draw"), accept)})
    >>> posterior = xr.Dataset(attrs={"target_accept": 0.8})
    >>> stuck_chains(new_tree({"posterior": posterior, "sample_stats": stats}))["stuck"].tolist()
    [False, True]
    """
    stats = get_group(idata, "sample_stats")
    name = next((n for n in _ACCEPT_NAMES if n in stats), None)
    target = get_attr(idata, "follow_up_target_accept", default=None)
    if target is None:
        target = get_attr(idata, "target_accept", default=None)
    if name is None or target is None:
        return None
    accept = stats[name].transpose("chain", "draw").values.astype(float)
    if "index_in_trajectory" in stats:
        start = stats["index_in_trajectory"].transpose("chain", "draw").values == 0
        repeated = start.mean(axis=1)
    else:
        repeated = np.full(len(accept), np.nan)
    threshold = STUCK_ACCEPT_SHARE * float(target)
    with warnings.catch_warnings():  # a chain with no draws (padding) has no mean
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(accept, axis=1)
    return pd.DataFrame(
        {
            "accept": mean,
            "target": float(target),
            "threshold": threshold,
            "repeated": repeated,
            "stuck": mean < threshold,
        },
        index=pd.RangeIndex(len(mean), name="chain"),
    )
