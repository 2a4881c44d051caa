"""Adam's update in one pass over the weights (NumPy's takes about ten, each a temporary), which
also counts the non-finite entries the solver must refuse, so that no other pass is needed.

Compiled without fast-math (``exact=True``): with fastrnn's fast-math subset, LLVM optimised
away the finiteness test of the computed next_w, and without it every operation rounds as
NumPy's does (no FMA contraction), so the update is NumPy's bit for bit.
"""
import numpy as np
from numba import prange

from .._jit import jit

CHUNK = 1 << 16  # elements per parallel work item: a parameter of at most this many is one item


@jit(inline="always", exact=True)
def _adam_slice(w, dw, m, v, scale, beta1, one_minus_beta1, beta2, one_minus_beta2, alpha,
                epsilon, next_w, next_m, next_v):
    """The update of one slice (flat arrays); returns the number of non-finite entries of
    g = scale dw and of next_w.  The loop's index starts at 0: LLVM then knows it is never
    negative, drops the wraparound check and vectorises (docs/performance.md, M27)."""
    bad_g = 0
    bad_w = 0
    for i in range(w.size):
        g = dw[i] * scale
        m_i = beta1 * m[i] + one_minus_beta1 * g
        v_i = beta2 * v[i] + one_minus_beta2 * (g * g)
        w_i = w[i] - alpha * (m_i / (np.sqrt(v_i) + epsilon))
        next_m[i] = m_i
        next_v[i] = v_i
        next_w[i] = w_i
        bad_g += not np.isfinite(g)
        bad_w += not np.isfinite(w_i)
    return bad_g, bad_w


@jit(exact=True, nogil=False)
def adam_update_small(w, dw, m, v, scale, beta1, one_minus_beta1, beta2, one_minus_beta2, alpha,
                      epsilon, next_w, next_m, next_v):
    """:func:`adam_update` of a parameter of at most CHUNK elements, on the calling thread
    (starting the thread team would cost more than the update); returns the two counts."""
    return _adam_slice(w, dw, m, v, scale, beta1, one_minus_beta1, beta2, one_minus_beta2, alpha,
                       epsilon, next_w, next_m, next_v)


@jit(parallel=True, exact=True)
def adam_update(w, dw, m, v, scale, beta1, one_minus_beta1, beta2, one_minus_beta2, alpha,
                epsilon, next_w, next_m, next_v, bad):
    """g = scale dw; next_m = beta1 m + (1 - beta1) g; next_v = beta2 v + (1 - beta2) g^2;
    next_w = w - alpha next_m / (sqrt(next_v) + epsilon).

    Flat arrays of one dtype; the scalars are of that dtype too, so float32 weights are updated
    in float32 as NumPy does (``scale`` is 1 unless the gradient is clipped: g = dw exactly).
    ``bad``: (chunks, 2) int64, one row per work item of CHUNK elements: the number of
    non-finite entries of g and of next_w in it.
    """
    n = w.size
    for c in prange(bad.shape[0]):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        bad_g, bad_w = _adam_slice(w[lo:hi], dw[lo:hi], m[lo:hi], v[lo:hi], scale, beta1,
                                   one_minus_beta1, beta2, one_minus_beta2, alpha, epsilon,
                                   next_w[lo:hi], next_m[lo:hi], next_v[lo:hi])
        bad[c, 0] = bad_g
        bad[c, 1] = bad_w
