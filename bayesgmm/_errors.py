"""Failures of the stack below bayesgmm, said in one line with what to try.

nutpie reports a failing density as "All initialization points failed" followed by a Rust
backtrace, and stops on a Rust panic with ``pyo3_runtime.PanicException`` (which is not even
an ``Exception``); NumPy and PyTensor name a singular matrix, not the columns or the option
that would help; Numba reports a damaged cache as an unpickling error. :func:`from_below`
turns each of these into a :class:`SamplerError` (a ``RuntimeError``) whose message is one
line: what failed, in bayesgmm's terms, and the remedy. Anything it does not recognise passes
through unchanged; ``KeyboardInterrupt`` always does. :func:`warn` issues bayesgmm's warnings
at the user's own line, however deep in the package they arise.
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
import warnings
from collections.abc import Iterator

import numpy as np

__all__ = [
    "SamplerError",
    "SamplingInterrupted",
    "SamplingWarning",
    "describe",
    "from_below",
    "ignored_stacklevel",
    "warn",
]


class SamplingWarning(UserWarning):
    """A convergence check failed; the message says which and what to try.

    Examples
    --------
    >>> import warnings
    >>> from bayesgmm import BayesianGMM, SamplingWarning, load_faithful
    >>> with warnings.catch_warnings():  # doctest: +SKIP
    ...     warnings.simplefilter("error", SamplingWarning)  # make failed checks errors
    ...     BayesianGMM(2, draws=100).fit(load_faithful())
    """


class SamplerError(RuntimeError):
    """The sampler (or the numerical stack under it) failed; the message says what to try.

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, SamplerError
    >>> try:  # doctest: +SKIP
    ...     BayesianGMM(3).fit(X)
    ... except SamplerError as err:
    ...     print(err)  # one line: what failed and what to try
    """


class SamplingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run before it had anything to return; the message says where.

    A ``KeyboardInterrupt``: code that stops on Ctrl-C stops on it too.

    Examples
    --------
    >>> from bayesgmm import SamplingInterrupted, select_n_components
    >>> try:  # doctest: +SKIP
    ...     select_n_components(X)
    ... except SamplingInterrupted as stop:
    ...     print(stop)  # e.g. "interrupted while sampling K=3"
    """


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn at the first frame outside bayesgmm: the user's line, whether the warning arises
    in a direct call, in a fit or deep in a sweep (``skip_file_prefixes`` of
    :func:`warnings.warn`; a counted ``stacklevel`` pointed into the package, or into
    :mod:`contextlib`, when a path added a frame)."""
    warnings.warn(message, category, skip_file_prefixes=(_PACKAGE,))


def ignored_stacklevel(stacklevel: int | None) -> None:
    """Say that a public function's ``stacklevel`` (from before :func:`warn`) is ignored."""
    if stacklevel is not None:
        warn(
            "stacklevel is deprecated and ignored: bayesgmm's warnings point at the first line "
            "outside the package. It will be removed in the next release.",
            FutureWarning,
        )


_SINGULAR = (
    "a covariance matrix became singular or not positive definite ({detail}): features that "
    "are (nearly) linear functions of each other, or a component holding very few rows, cause "
    "this. Drop redundant columns (columns=..., or --columns), remove outliers, or use fewer "
    "components"
)
_START = (
    "the sampler could not start from the EM estimate: the posterior density there is "
    "unusable ({detail}). Remove or correct outlying rows, or use fewer components"
)
_PANIC = (
    "nutpie stopped with an internal error ({detail}). Try again with sampler='pymc' "
    "(--sampler pymc)"
)
_CACHE = (
    "bayesgmm's cached compiled code could not be read ({detail}). Remove it with "
    "`bayesgmm cache --clear` and run again"
)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _python_cause(message: str) -> str | None:
    """The Python error nutpie reports as the cause ("PyError(PyErr { type: <class 'X'>,
    value: X('...')")."""
    match = re.search(r"type: <class '([\w.]+)'>, value: \w+\((['\"])(.*?)\2\)", message)
    return f"{match.group(1).split('.')[-1]}: {match.group(3)}" if match else None


def _from_numba_cache(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return any(f"numba{sep}core{sep}caching" in f.filename for f in frames for sep in "/\\")


def describe(err: BaseException) -> str | None:
    """The one-line explanation of an error from below bayesgmm, or None if unknown."""
    message = str(err)
    name = type(err).__name__
    if name == "PanicException":
        return _PANIC.format(detail=_first_line(message) or "a panic")
    if "bad initial gradient" in message:
        return _START.format(
            detail="its slope is zero in some direction, as when a component sits on a single row"
        )
    if "All initialization points failed" in message:
        cause = _python_cause(message)
        if cause and "LinAlgError" in cause:
            return _SINGULAR.format(detail=cause)
        return _START.format(detail=cause or "-inf or NaN")
    if name == "SamplingError" and "starting point" in message.lower():
        return _START.format(detail=_first_line(message))
    if isinstance(err, np.linalg.LinAlgError) or name == "SingularCovarianceError":
        return _SINGULAR.format(detail=_first_line(message) or name)
    if _from_numba_cache(err):
        return _CACHE.format(detail=f"{name}: {_first_line(message)}")
    return None


@contextlib.contextmanager
def from_below(stage: str) -> Iterator[None]:
    """Re-raise known failures of the stack below as one-line :class:`SamplerError`\\ s.

    ``stage`` (e.g. "sampling") prefixes the message.
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit, SamplerError):
        raise
    except BaseException as err:
        explanation = describe(err)
        if explanation is None:
            raise
        raise SamplerError(f"{stage} failed: {explanation}") from err
