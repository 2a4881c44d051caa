"""The one place where Numba options are chosen.

Every kernel in :mod:`fastrnn._kernels` is decorated with :func:`jit`; no kernel spells its
own flags.  Environment switches are read here, once, when a kernel module is first imported
(importing :mod:`fastrnn` itself imports no kernel and compiles nothing).

* ``error_model='numpy'``: Numba's default ('python') puts a zero-division check in front of
  every float division, which stops LLVM from vectorising the loop (measured 14x slower).
* ``fastmath`` is a *subset*: reassociation and FMA contraction let reductions and polynomials
  vectorise, but the no-NaN / no-inf flags are left off because the stable sigmoid, the
  log-softmax and NaN propagation rely on IEEE inf/NaN semantics.
* ``cache=True``: compiled code is written next to the module, or, when the package directory
  is read-only, to Numba's user-wide cache directory (``NUMBA_CACHE_DIR`` overrides both).
  ``FASTRNN_NO_CACHE=1`` turns the on-disk cache off.
* ``nogil=True``: kernels share no state (every call allocates its own outputs), so several
  Python threads may run them at once.
* Bounds checking follows Numba's own ``NUMBA_BOUNDSCHECK`` switch (CI runs one pass with it).
"""
import os

import numba

FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp"})
CACHE = os.environ.get("FASTRNN_NO_CACHE", "0").lower() in ("", "0", "false", "no")


def jit(func=None, *, inline="never"):
    """``numba.njit`` with fastrnn's options; ``inline='always'`` for tiny scalar helpers."""
    options = dict(cache=CACHE, nogil=True, error_model="numpy", fastmath=set(FASTMATH))
    if inline != "never":
        options["inline"] = inline
    decorator = numba.njit(**options)
    return decorator if func is None else decorator(func)
