"""bayesgmm's compiled Numba kernels on disk: checked on every load, rebuilt when damaged.

The kernels (:mod:`bayesgmm._kernels`, :mod:`bayesgmm._logdensity`,
:mod:`bayesgmm._unconstrained`) compile with
``cache=True``: their machine code is kept on disk (beside the modules in ``__pycache__``, or in
``$NUMBA_CACHE_DIR``) so later processes skip the 10-60 s compile. Numba trusts those files: a
truncated file stops every later run with an unpickling error, and a damaged one that still
unpickles is loaded as machine code and crashes the process. Several processes compiling at
once can also give two signatures the same file name.

:func:`install` gives each of bayesgmm's kernels a cache (every kernel module calls
:func:`install_module` as its last line, so a kernel is checked from its first compile and the
EM half never imports the Bayesian half's kernel modules) that

- stores a SHA-256 of each entry with it, and the entry's own key, in files of its own naming
  (``<function>.checked.<key hash>.nbc``, so Numba's unchecked files are never read);
- on loading, checks both before Numba sees the bytes; any failure to load (a bad checksum, a
  truncated or unreadable index, an entry of another signature) removes that kernel's entries,
  warns with :class:`CacheWarning` and compiles again, which writes fresh entries;
- on saving, writes each file to a temporary name and renames it (Numba's own method), and a
  cache folder that cannot be written only costs the saved compile (a warning, once);
- is fresh only while *every* kernel module's source is unchanged. Numba stamps an entry with its
  own module file's time and size only, but a kernel compiles in the kernels it calls from other
  modules (``_logdensity`` calls ``_kernels``' block pass): after an upgrade or an edit of the
  callee's module, Numba would load the caller's stale machine code. The stamp here adds a
  SHA-256 of the sources of all :data:`KERNEL_MODULES`, so any change recompiles them all (once).

A kernel's results also must not depend on whether it was compiled in this process or loaded
from the cache. Numba links the kernels a kernel calls into its library as weak
(``linkonce_odr``) copies, which the caller's module passes optimise again; the dynamic linker
binds a weak symbol to the first definition loaded in the process: in a process that compiled,
the callee's own library, in one that loaded the caller from the cache, the caller's copy. With
``reassoc`` the two copies round differently (sums of a vectorised loop combined in another
order), so the first run after an install gave other last bits, and so other draws, than the
runs after it with the same seed. :func:`install` makes the linked copies in bayesgmm's
libraries internal (:func:`_own_copies`): each library calls its own copy, in every process.
The wrappers Numba builds for ``prange`` loops are ``weak_odr`` and stay so (the pointwise
log-likelihood measured the same compiled and cached). On a Numba without the private method
this hooks, the kernels work as before, without that guarantee.

Only bayesgmm's own entries are ever removed. :func:`clear` removes them all (``bayesgmm cache
--clear``), with JAX's compiled executables under :func:`bayesgmm.sampling.cache_dir`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import pickle
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import llvmlite.binding as llvm
from numba.core import codegen
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

__all__ = [
    "KERNEL_MODULES",
    "CacheWarning",
    "cache_folders",
    "clear",
    "install",
    "install_module",
    "is_cold",
    "kernel_modules",
]

#: bayesgmm's modules holding Numba kernels compiled with ``cache=True``, or C callbacks compiled
#: by :func:`compile_callback` (their ``CALLBACKS``); a test keeps the list whole.
KERNEL_MODULES = (
    "_emloop",
    "_fastem",
    "_fisher",
    "_gaussian",
    "_hc_kernel",
    "_kernels",
    "_logdensity",
    "_logdensity_missing",
    "_logprior",
    "_missing_kernel",
    "_mstep",
    "_native",
    "_population",
    "_precondition",
    "_unconstrained",
    "_vexp",
)

_HEADER = b"bayesgmm-checked-1\n"
_SUFFIX = ".checked"
# part of every entry's stamp: entries compiled with weak linked copies are stale
_LINKING = "own-copies-1"
# Numba's mangled names of bayesgmm's functions start so ("bayesgmm" as a name of 8 characters)
_OWN_NAMES = "_ZN8bayesgmm"


class CacheWarning(UserWarning):
    """A cached compiled kernel could not be used; it is rebuilt (the message says where).

    Examples
    --------
    >>> import warnings
    >>> from bayesgmm import CacheWarning
    >>> warnings.simplefilter("error", CacheWarning)  # doctest: +SKIP
    """


class _DamagedEntry(Exception):
    """A cache file whose checksum or header does not match its contents."""


def _verified(raw: bytes, path: str) -> bytes:
    start = len(_HEADER) + 32
    if not raw.startswith(_HEADER) or len(raw) < start:
        raise _DamagedEntry(f"{path} is truncated or not a bayesgmm cache file")
    if hashlib.sha256(raw[start:]).digest() != raw[len(_HEADER) : start]:
        raise _DamagedEntry(f"{path} does not match its checksum")
    return raw[start:]


class _CheckedCacheFile(IndexDataCacheFile):
    """Numba's index and data files, with every data file checksummed and holding its key."""

    def __init__(self, cache_path: str, filename_base: str, source_stamp: Any) -> None:
        super().__init__(cache_path, filename_base + _SUFFIX, source_stamp)
        self._base = filename_base + _SUFFIX

    def save(self, key: Any, data: Any) -> None:
        name = f"{self._base}.{hashlib.sha256(self._dump(key)).hexdigest()[:16]}.nbc"
        self._save_data(name, (key, data))
        try:
            overloads = self._load_index()
        except Exception:  # a damaged index is replaced by a fresh one
            overloads = {}
        overloads[key] = name
        self._save_index(overloads)

    def load(self, key: Any) -> Any:
        name = self._load_index().get(key)
        if name is None:
            return None
        path = self._data_path(name)
        try:
            raw = Path(path).read_bytes()
        except OSError:  # removed since the index was written
            return None
        stored_key, data = pickle.loads(_verified(raw, path))
        return data if stored_key == key else None

    def _save_data(self, name: str, data: Any) -> None:
        payload = self._dump(data)
        with self._open_for_write(self._data_path(name)) as handle:
            handle.write(_HEADER + hashlib.sha256(payload).digest() + payload)


class _CheckedCache(FunctionCache):
    """Numba's per-function cache whose failures to load or save are not fatal."""

    def __init__(self, py_func: Any, sources: str) -> None:
        super().__init__(py_func)
        stamp = (self._impl.locator.get_source_stamp(), sources)
        self._cache_file = _CheckedCacheFile(self._cache_path, self._impl.filename_base, stamp)
        self._save_failed = False

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        try:
            return super().load_overload(sig, target_context)
        except Exception as err:
            removed = _remove_entries(Path(self._cache_path), self._impl.filename_base)
            warnings.warn(
                f"bayesgmm's cached compiled code for {self._py_func.__qualname__} could not "
                f"be used ({type(err).__name__}: {_first_line(err)}); removed {removed} "
                f"file(s) of it from {self._cache_path} and compiling it again (once).",
                CacheWarning,
                stacklevel=2,
            )
            return None

    def save_overload(self, sig: Any, data: Any) -> None:
        try:
            super().save_overload(sig, data)
        except OSError as err:
            if not self._save_failed:
                self._save_failed = True
                warnings.warn(
                    f"bayesgmm could not save compiled code in {self._cache_path} "
                    f"({err.strerror}); it works, but is compiled again in every new process. "
                    "Set NUMBA_CACHE_DIR to a writable folder.",
                    CacheWarning,
                    stacklevel=2,
                )


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _remove_entries(folder: Path, filename_base: str) -> int:
    """Remove one kernel's index and data files (Numba's own and the checked ones)."""
    removed = 0
    for path in folder.glob(f"{filename_base}.*"):
        if path.suffix in (".nbi", ".nbc") or ".tmp." in path.name:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _dispatchers(modules: tuple[ModuleType, ...]) -> list[Dispatcher]:
    return [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, Dispatcher) and isinstance(value._cache, FunctionCache)
    ]


def _caches(modules: tuple[ModuleType, ...]) -> list[FunctionCache]:
    """The caches of the kernels of ``modules`` and of their C callbacks (a module's
    ``CALLBACKS``: ``(function, signature)`` pairs, see :func:`compile_callback`)."""
    callbacks = [fn for module in modules for fn, _ in getattr(module, "CALLBACKS", ())]
    sources = sources_digest() + _LINKING
    return [d._cache for d in _dispatchers(modules)] + [
        _CheckedCache(fn, sources) for fn in callbacks
    ]


def kernel_modules() -> tuple[ModuleType, ...]:
    """The modules of :data:`KERNEL_MODULES`, imported."""
    return tuple(importlib.import_module(f"bayesgmm.{name}") for name in KERNEL_MODULES)


@functools.cache
def sources_digest() -> str:
    """SHA-256 of the source files of all :data:`KERNEL_MODULES`, in that order (read, not
    imported: a module installs its cache while the later ones may not be loaded yet)."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for name in KERNEL_MODULES:
        digest.update((package / f"{name}.py").read_bytes())
    return digest.hexdigest()


def _own_copies(library: codegen.CPUCodeLibrary) -> None:
    """Make the weak copies of linked functions internal in a library of bayesgmm's.

    Libraries defining none of bayesgmm's functions (other packages' kernels) are left as
    Numba makes them.
    """
    functions = [fn for fn in library._final_module.functions if not fn.is_declaration]
    if any(
        fn.linkage == llvm.Linkage.external and fn.name.startswith(_OWN_NAMES) for fn in functions
    ):
        for fn in functions:
            if fn.linkage == llvm.Linkage.linkonce_odr:
                fn.linkage = llvm.Linkage.internal


def _optimising_own_copies(optimise: Any) -> Any:
    def optimise_final_module(library: codegen.CPUCodeLibrary) -> None:
        _own_copies(library)
        optimise(library)

    optimise_final_module.bayesgmm_own_copies = True
    return optimise_final_module


def _link_own_copies() -> None:
    """Run :func:`_own_copies` before Numba optimises each library's final module (once)."""
    optimise = getattr(codegen.CPUCodeLibrary, "_optimize_final_module", None)
    if optimise is not None and not getattr(optimise, "bayesgmm_own_copies", False):
        codegen.CPUCodeLibrary._optimize_final_module = _optimising_own_copies(optimise)


def install(*modules: ModuleType) -> None:
    """Give every cached Numba kernel of ``modules`` a checked cache (before any compile).

    An entry is fresh while the sources of all :data:`KERNEL_MODULES` are unchanged. Default
    ``modules``: all of them (:func:`kernel_modules`). bayesgmm's libraries link their own
    copies of the functions they call (module docstring).
    """
    modules = modules or kernel_modules()
    sources = sources_digest() + _LINKING
    _link_own_copies()
    for dispatcher in _dispatchers(modules):
        if not isinstance(dispatcher._cache, _CheckedCache):
            dispatcher._cache = _CheckedCache(dispatcher.py_func, sources)


def compile_callback(py_func: Any, signature: Any) -> Any:
    """``py_func`` compiled as a C callback of ``signature`` (``numba.cfunc``), its machine
    code kept in a checked cache like the kernels' (fresh while every kernel module's source
    is unchanged: a callback compiles in the kernels it calls). Numba's ``cfunc`` decorator
    would compile at import and keep an unchecked cache."""
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    _link_own_copies()
    signature = sigutils.normalize_signature(signature)
    callback = CFunc(py_func, signature, locals={}, options={"error_model": "numpy"})
    callback._cache = _CheckedCache(py_func, sources_digest() + _LINKING)
    callback.compile()
    return callback


def install_module(name: str) -> None:
    """:func:`install` for the module being imported: the last line of every kernel module.

    Each module installs its own kernels' cache as it loads, before any of them can compile,
    so that importing the EM half does not import the Bayesian half's kernel modules (and
    PyMC with them) just to install theirs.
    """
    install(sys.modules[name])


def cache_folders(*modules: ModuleType) -> list[Path]:
    """The folders holding the kernels' cached code."""
    return sorted({Path(cache.cache_path) for cache in _caches(modules)})


def is_cold(*modules: ModuleType) -> bool:
    """Whether no kernel of ``modules`` has compiled code on disk yet (a first run: each
    kernel compiles as it is first needed, seconds to a minute each)."""
    return not any(
        next(folder.glob(f"*{_SUFFIX}.*.nbc"), None) for folder in cache_folders(*modules)
    )


def clear(*modules: ModuleType, extra: tuple[Path, ...] = ()) -> list[Path]:
    """Remove every cached file of the kernels of ``modules``, and the folders ``extra``.

    Returns
    -------
    list of Path
        What was removed.
    """
    removed = []
    for cache in _caches(modules):
        folder = Path(cache.cache_path)
        base = cache._impl.filename_base
        removed += sorted(folder.glob(f"{base}.*"))
        _remove_entries(folder, base)
    for folder in extra:
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
