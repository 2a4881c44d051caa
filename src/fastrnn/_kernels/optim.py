"""Adam's update in one pass over the weights (NumPy's takes about ten, each a temporary), which
also counts the non-finite entries the solver must refuse, so that no other pass is needed."""
import numpy as np
from numba import prange

from .._jit import jit

CHUNK = 1 << 16  # elements per parallel work item: a small parameter is one item


@jit(parallel=True, exact=True)
def adam_update(w, dw, m, v, scale, beta1, one_minus_beta1, beta2, one_minus_beta2, alpha,
                epsilon, next_w, next_m, next_v, bad):
    """g = scale dw; next_m = beta1 m + (1 - beta1) g; next_v = beta2 v + (1 - beta2) g^2;
    next_w = w - alpha next_m / (sqrt(next_v) + epsilon).

    Flat arrays of one dtype; the scalars are of that dtype too, so float32 weights are updated
    in float32 as NumPy does (``scale`` is 1 unless the gradient is clipped: g = dw exactly).
    ``bad``: (chunks, 2) int64, one row per work item of CHUNK elements: the number of
    non-finite entries of g and of next_w in it.  Compiled without fast-math: with it, the
    finiteness test of the computed next_w was optimised away, and without it every operation
    rounds as NumPy's does (no FMA contraction).
    """
    n = w.size
    for c in prange(bad.shape[0]):
        # Slices, so that the inner loop's index starts at 0: LLVM then knows it is never
        # negative, drops the wraparound check and vectorises (twice as fast as indexing from
        # c * CHUNK, measured).
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        w_c, dw_c, m_c, v_c = w[lo:hi], dw[lo:hi], m[lo:hi], v[lo:hi]
        next_w_c, next_m_c, next_v_c = next_w[lo:hi], next_m[lo:hi], next_v[lo:hi]
        bad_g = 0
        bad_w = 0
        for i in range(w_c.size):
            g = dw_c[i] * scale
            m_i = beta1 * m_c[i] + one_minus_beta1 * g
            v_i = beta2 * v_c[i] + one_minus_beta2 * (g * g)
            w_i = w_c[i] - alpha * (m_i / (np.sqrt(v_i) + epsilon))
            next_m_c[i] = m_i
            next_v_c[i] = v_i
            next_w_c[i] = w_i
            bad_g += not np.isfinite(g)
            bad_w += not np.isfinite(w_i)
        bad[c, 0] = bad_g
        bad[c, 1] = bad_w
