"""The ``bayesgmm`` command: ``bayesgmm report`` and ``bayesgmm fit``.

Data problems (a missing file, no numeric columns, unknown columns, missing values) end the
command with one clear line on stderr and exit status 1, before any fitting starts.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._models import COVARIANCE_NAMES

EXIT_DATA_ERROR = 1


class DataError(Exception):
    """Bad input data; the message is one line for stderr."""


def parse_components(text: str) -> list[int]:
    """``"1-6"``, ``"3"`` or ``"1,2,4"`` to a sorted list of positive integers."""
    values: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid component list {text!r}: use e.g. 1-6, 3 or 1,2,4"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"components must be positive integers, got {text!r}")
    return sorted(values)


def _note(message: str) -> None:
    print(f"bayesgmm: {message}", file=sys.stderr)


def load_data(path: str | None, columns: list[str] | None, dropna: bool) -> pd.DataFrame:
    """Read the CSV (or Old Faithful when ``path`` is None) and select numeric columns."""
    if path is None:
        from .datasets import load_faithful

        frame = load_faithful()
    else:
        if not Path(path).is_file():
            raise DataError(f"no such file: {path}")
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read {path} as CSV: {str(err).splitlines()[0]}") from None
    if columns:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise DataError(f"unknown column(s) {unknown}; the file has {list(frame.columns)}")
        frame = frame[columns]
    numeric = frame.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise DataError(
            f"no numeric columns in {path or 'the data'} (columns: {list(frame.columns)})"
        )
    if numeric.shape[1] < frame.shape[1]:
        dropped = [c for c in frame.columns if c not in numeric.columns]
        if columns:
            raise DataError(f"column(s) {dropped} are not numeric")
        _note(f"ignoring non-numeric column(s) {dropped}")
    missing = numeric.isna().any(axis=1)
    if missing.any():
        bad = [c for c in numeric.columns if numeric[c].isna().any()]
        if not dropna:
            raise DataError(
                f"{int(missing.sum())} row(s) have missing values in column(s) {bad}; "
                "pass --dropna to drop them"
            )
        _note(f"dropped {int(missing.sum())} row(s) with missing values in column(s) {bad}")
        numeric = numeric[~missing]
    return numeric.reset_index(drop=True)


def _report(args: argparse.Namespace) -> int:
    from .report import report

    frame = load_data(args.data, args.columns, args.dropna)
    result = report(
        frame,
        out=args.out,
        n_components=args.components,
        covariance_types=tuple(args.covariance_types),
        n_candidates=args.candidates,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        sampler=args.sampler,
        random_seed=args.seed,
        progress=not args.quiet,
    )
    print(f"Report written to {result.html_path.resolve()}")
    print(f"Markdown twin:    {result.markdown_path.resolve()}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from .bayesian import BayesianGMM

    frame = load_data(args.data, args.columns, args.dropna)
    if len(args.components) != 1:
        raise DataError("fit takes one number of components, e.g. --components 2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignore_blas_warning(args)
        fit = BayesianGMM(
            args.components[0],
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            sampler=args.sampler,
            random_seed=args.seed,
            progressbar=not args.quiet,
        ).fit(frame)
    with pd.option_context("display.width", 140, "display.max_rows", 200, "display.precision", 4):
        print("EM estimate")
        print(f"  weights: {np.array2string(fit.em_.weights_, precision=4)}")
        print(
            f"  mean log-likelihood: {fit.em_.lower_bound_:.6g}  (converged: {fit.em_.converged_})"
        )
        print("\nEM against the posterior")
        print(fit.compare().to_string(index=False))
        print("\nDiagnostics")
        print(fit.diagnostics().to_string(index=False))
    for warning in caught:
        _note(f"{warning.category.__name__}: {warning.message}")
    return 0


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (default 1000)")
    parser.add_argument(
        "--tune", type=int, default=1000, help="tuning steps per chain (default 1000)"
    )
    parser.add_argument("--chains", type=int, default=4, help="number of chains (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--sampler",
        choices=("nutpie", "pymc"),
        default="nutpie",
        help="NUTS implementation (default nutpie)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_data_arguments(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    parser.add_argument(
        "data",
        nargs="?" if optional else None,
        metavar="DATA.csv",
        help="CSV with a header row" + (" (default: Old Faithful)" if optional else ""),
    )
    parser.add_argument(
        "--columns", nargs="+", metavar="NAME", help="columns to model (default: all numeric)"
    )
    parser.add_argument(
        "--dropna", action="store_true", help="drop rows with missing values (with a notice)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesgmm",
        description="Gaussian mixtures fitted by EM and by NUTS from the EM start, compared.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report",
        help="model selection and EM-vs-posterior report (HTML + Markdown)",
        description="Choose K by BIC/ICL (EM) and LOO (posterior); write one HTML page.",
    )
    _add_data_arguments(rep, optional=True)
    rep.add_argument(
        "--components",
        type=parse_components,
        default=list(range(1, 7)),
        help="K values to sweep, e.g. 1-6 (default) or 1,2,4",
    )
    rep.add_argument(
        "--covariance-types",
        nargs="+",
        default=["full"],
        choices=(*COVARIANCE_NAMES, "all"),
        metavar="MODEL",
        help="EM covariance models: mclust names (EII ... VVV), full/tied/diag/spherical, "
        "or all for the 14 models (default full)",
    )
    rep.add_argument(
        "--candidates",
        type=int,
        default=2,
        help="how many of the best K by BIC to sample and compare by LOO (default 2)",
    )
    rep.add_argument("--out", default="report.html", help="HTML output path (default report.html)")
    _add_sampling_arguments(rep)
    rep.set_defaults(func=_report)
    fit = sub.add_parser(
        "fit",
        help="fit one K and print EM and posterior summaries",
        description="Fit EM and the Bayesian mixture for one K; print the comparison.",
    )
    _add_data_arguments(fit, optional=False)
    fit.add_argument(
        "--components", type=parse_components, required=True, help="number of components K"
    )
    _add_sampling_arguments(fit)
    fit.set_defaults(func=_fit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        _ignore_blas_warning(args)
        return _run(args)


def _ignore_blas_warning(args: argparse.Namespace) -> None:
    """pip-installed PyTensor warns that its C backend has no BLAS; nutpie samples with the
    E-step kernel (or JAX), so with the default sampler the warning is about code the command
    does not run."""
    if getattr(args, "sampler", "nutpie") == "nutpie":
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except DataError as err:
        _note(f"error: {err}")
        return EXIT_DATA_ERROR
    except ValueError as err:
        _note(f"error: {str(err).splitlines()[0]}")
        return EXIT_DATA_ERROR


if __name__ == "__main__":
    sys.exit(main())
