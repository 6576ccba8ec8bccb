"""``exp`` of a non-positive argument that LLVM can vectorise, for the E-step kernel.

The responsibilities take one ``exp`` per row and component, in the E-step of every EM
iteration and in every gradient NUTS evaluates. Numba calls libm's scalar ``exp`` there (about
4-8 ns; the Intel SVML library that would vectorise it is not in the wheels llvmlite ships),
which was a third to half of an E-step at the sizes people sweep. :func:`exp_nonpositive` is
the textbook reduction instead, in arithmetic LLVM vectorises (about 1 ns):
``x = n ln 2 + r`` with ``n`` the nearest integer to ``x / ln 2`` and ``|r| <= ln 2 / 2``
(Cody & Waite: ``ln 2`` split in two parts, the first with trailing zero bits, so ``n`` times
it is exact), ``exp(r)`` by its Taylor polynomial of degree 13 (truncation below 5e-18
relative), and ``2^n`` built from its bits. Within 1 ulp of libm's ``exp`` on ``[-708, 0]``
(``tests/test_vexp.py``).

The reduction needs the two subtractions in the order written: reassociation lets LLVM merge
them (errors up to ~200 ulp near ``x = -700``). A Numba function whose ``fastmath`` is not set
inherits its first caller's flags, for every later caller and into the on-disk cache, so
:func:`exp_nonpositive` sets its own, :data:`FASTMATH_EXACT_ORDER`; its callers may use any
(``tests/test_vexp.py`` compiles a reassociating caller first, in a fresh process).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from . import _numba_cache

__all__ = ["FASTMATH_EXACT_ORDER", "MIN_ARGUMENT", "exp_nonpositive"]

# Contraction (fused multiply-add) and sign-of-zero freedom keep the reduction exact; no
# reassociation.
FASTMATH_EXACT_ORDER = {"contract", "nsz"}
MIN_ARGUMENT = -708.0  # 2^n stays a normal number (n >= -1022) down to here

_LOG2_E = 1.4426950408889634
_LN2_HIGH = 6.93147180369123816490e-01  # 32 significant bits: n * _LN2_HIGH is exact
_LN2_LOW = 1.90821492927058770002e-10  # ln 2 - _LN2_HIGH
_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(14))  # 1/0! ... 1/13!


@intrinsic
def _float_from_bits(typingctx, bits):  # pragma: no cover - compiled
    """The float64 whose IEEE-754 bits are the int64 ``bits`` (an LLVM bitcast)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH_EXACT_ORDER)
def exp_nonpositive(x):  # pragma: no cover - compiled
    """``exp(x)`` for ``MIN_ARGUMENT <= x <= 0`` (other ``x``: undefined; callers test the
    range first), within 1 ulp of ``np.exp``."""
    n = np.floor(x * _LOG2_E + 0.5)
    r = (x - n * _LN2_HIGH) - n * _LN2_LOW
    c = _TAYLOR
    p = c[13]
    for i in range(12, -1, -1):
        p = p * r + c[i]
    return p * _float_from_bits((np.int64(n) + 1023) << 52)


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
