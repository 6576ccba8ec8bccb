"""Quickstart: EM on Old Faithful, NUTS from the EM estimate, the two compared.

Run ``python examples/quickstart.py`` (1000 draws x 4 chains, about a minute); for a quick run
set ``BAYESGMM_DRAWS=100 BAYESGMM_TUNE=100 BAYESGMM_CHAINS=2``.
"""

import os

from bayesgmm import BayesianGMM, load_faithful

draws = int(os.environ.get("BAYESGMM_DRAWS", 1000))
tune = int(os.environ.get("BAYESGMM_TUNE", 1000))
chains = int(os.environ.get("BAYESGMM_CHAINS", 4))
bgmm = BayesianGMM(2, draws=draws, tune=tune, chains=chains, random_seed=1, progressbar=False)
bgmm.fit(load_faithful())
print(bgmm.diagnostics()[["check", "value", "threshold", "passed"]].to_string(index=False))
print(bgmm.compare().round(3).to_string(index=False))
