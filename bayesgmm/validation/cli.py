"""The command line: ``python -m bayesgmm.validation`` (``make validate``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..priors import DEFAULT_SD_PRIOR
from .fitting import SamplerSettings
from .output import format_summary
from .simulation import STUDY_PRIORS
from .study import run_validation


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bayesgmm.validation",
        description="Simulation-based calibration and coverage of bayesgmm's posterior "
        "(D=2, K=2). Exits 0 when every test passes.",
    )
    parser.add_argument("--simulations", type=int, default=100, help="SBC simulations")
    parser.add_argument(
        "--coverage-datasets", type=int, default=50, help="data sets simulated at the fixed truth"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("validation"),
        help="directory for results.json and rank_ecdfs.png",
    )
    parser.add_argument("--n-samples", type=int, default=100, help="rows per data set")
    parser.add_argument("--draws", type=int, default=SamplerSettings.draws)
    parser.add_argument(
        "--tune",
        type=int,
        default=SamplerSettings.tune,
        help="warm-up steps per chain (default: the package's rule, as BayesianGMM runs it)",
    )
    parser.add_argument(
        "--target-accept",
        type=float,
        default=SamplerSettings.target_accept,
        help="NUTS target acceptance (default: the package's rule, as BayesianGMM runs it)",
    )
    parser.add_argument("--chains", type=int, default=SamplerSettings.chains)
    parser.add_argument(
        "--sd-prior",
        choices=sorted(STUDY_PRIORS),
        default=DEFAULT_SD_PRIOR,
        help="prior of the component standard deviations, of simulator and model alike",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="overall level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the validation, write its outputs, print a summary; 0 if it passed, 1 if not.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (``sys.argv[1:]`` by default); ``--help`` lists them.

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    From a shell (``make validate`` runs the full study)::

        python -m bayesgmm.validation --simulations 20 --coverage-datasets 10 --out validation

    or from Python:

    >>> from bayesgmm.validation import main
    >>> main(["--simulations", "20", "--coverage-datasets", "10"])  # doctest: +SKIP
    """
    args = _parser().parse_args(argv)
    results = run_validation(
        args.simulations,
        n_datasets=args.coverage_datasets,
        out_dir=args.out,
        n_samples=args.n_samples,
        settings=SamplerSettings(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            target_accept=args.target_accept,
        ),
        priors=STUDY_PRIORS[args.sd_prior],
        alpha=args.alpha,
        random_seed=args.seed,
        progressbar=not args.no_progress,
    )
    print(format_summary(results))
    print(f"Results: {args.out / 'results.json'}, {args.out / 'rank_ecdfs.png'}")
    return 0 if results["passed"] else 1
