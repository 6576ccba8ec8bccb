"""Every public function and class has a numpydoc docstring with an Examples section.

Public means named in a module's ``__all__``. Functions must document their parameters (a
``Parameters`` section, unless they take none); classes, dataclasses and warnings may document
theirs as attributes or not at all. The examples run as doctests with the suite
(``--doctest-modules``), except the lines marked ``+SKIP`` because they sample with NUTS;
what those lines show is exercised by the tests of each module.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import bayesgmm

PUBLIC_MODULES = (
    "bayesgmm",
    "bayesgmm.plotting",
    "bayesgmm.alignment",
    "bayesgmm.selection",
    "bayesgmm.membership",
    "bayesgmm.imputation",
    "bayesgmm.compare",
    "bayesgmm.diagnostics",
    "bayesgmm.sampling",
    "bayesgmm.model",
    "bayesgmm.modes",
    "bayesgmm.priors",
    "bayesgmm.datasets",
    "bayesgmm.transforms",
    "bayesgmm.start",
    "bayesgmm.em",
    "bayesgmm.report",
    "bayesgmm.bayesian",
    "bayesgmm.validation",
)


def _has_section(doc: str, title: str) -> bool:
    """Whether ``doc`` (dedented) has a numpydoc section ``title`` underlined with dashes."""
    return re.search(rf"^{title}\n-{{{len(title)},}}[ \t]*$", doc, re.MULTILINE) is not None


def _missing(obj: object) -> list[str]:
    """What the docstring of ``obj`` lacks: "docstring", "Parameters" and/or "Examples"."""
    doc = inspect.cleandoc(obj.__doc__ or "")  # the object's own: not inherited from a base
    if not doc:
        return ["docstring"]
    missing = []
    takes_parameters = not inspect.isclass(obj) and bool(inspect.signature(obj).parameters)
    if takes_parameters and not _has_section(doc, "Parameters"):
        missing.append("Parameters")
    if not _has_section(doc, "Examples"):
        missing.append("Examples")
    return missing


def test_public_names_have_parameters_and_examples():
    offenders = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants document themselves with a comment or attribute docstring
            missing = _missing(obj)
            if missing:
                offenders.append(f"{module_name}.{name}: no {', '.join(missing)}")
    assert not offenders, (
        f"{len(offenders)} public names lack numpydoc sections:\n  " + "\n  ".join(offenders)
    )


def test_every_module_with_all_is_checked():
    found = {
        info.name
        for info in pkgutil.iter_modules(bayesgmm.__path__, "bayesgmm.")
        if not info.name.rpartition(".")[2].startswith("_")
        and hasattr(importlib.import_module(info.name), "__all__")
    }
    assert found <= set(PUBLIC_MODULES), sorted(found - set(PUBLIC_MODULES))


def test_checker_flags_what_is_missing():
    def undocumented(x):
        return x

    def summary_only(x):
        """One line; the word Parameters and Examples in prose do not count."""
        return x

    class Documented:
        """A class.

        Examples
        --------
        >>> Documented()  # doctest: +SKIP
        """

    class Inherits(Documented):
        pass

    assert _missing(undocumented) == ["docstring"]
    assert _missing(summary_only) == ["Parameters", "Examples"]
    assert _missing(Documented) == []
    assert _missing(Inherits) == ["docstring"]
    assert _missing(lambda: None) == ["docstring"]
