"""Adam's update in one pass over the weights (NumPy's takes about ten, each a temporary)."""
import numpy as np

from .._jit import jit


@jit
def adam_update(w, dw, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, alpha, epsilon,
                next_w, next_m, next_v):
    """next_m = beta1 m + (1 - beta1) dw; next_v = beta2 v + (1 - beta2) dw^2;
    next_w = w - alpha next_m / (sqrt(next_v) + epsilon).  Flat arrays of one dtype; the
    scalars are of that dtype too, so float32 weights are updated in float32 as NumPy does."""
    for i in range(w.size):
        g = dw[i]
        m_i = beta1 * m[i] + one_minus_beta1 * g
        v_i = beta2 * v[i] + one_minus_beta2 * (g * g)
        next_m[i] = m_i
        next_v[i] = v_i
        next_w[i] = w[i] - alpha * (m_i / (np.sqrt(v_i) + epsilon))
