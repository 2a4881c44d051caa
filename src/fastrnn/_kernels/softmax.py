"""Temporal softmax cross-entropy: one stable log-softmax pass per row, loss and dx together."""
import numpy as np

from .._jit import jit
from .activations import exp_nonpos


@jit
def softmax_loss(x, y, mask, n_samples, dx):
    """x (R, V) scores, y (R,) targets, mask (R,) float64 weights -> summed weighted loss /
    n_samples; fills dx (each row's gradient times its weight, as the classic code multiplies
    by its mask).

    loss_r = log(sum_j exp(x_rj - m_r)) + m_r - x_r,y_r with m_r the row maximum: never
    log(0), so no NaN/inf when a probability underflows.  Masked-out rows (weight 0) contribute
    nothing: their dx row is zero, whatever their scores.  exp runs in the data's precision;
    sums, the loss and the gradient's scaling are accumulated / formed in float64.
    """
    R, V = x.shape
    loss = 0.0
    for r in range(R):
        row = x[r]
        drow = dx[r]
        weight = mask[r]
        if weight == 0:
            drow[:] = 0
            continue
        scale = weight / n_samples
        m = row[0]
        for j in range(1, V):
            m = max(m, row[j])
        total = 0.0  # float64
        for j in range(V):
            e = exp_nonpos(row[j] - m)  # in the data's precision (8 float32 lanes per AVX2)
            drow[j] = e
            total += e
        inv_total = 1.0 / total
        for j in range(V):
            drow[j] = (drow[j] * inv_total) * scale
        target = y[r]
        # (p - 1) / N formed in float64 before the one rounding: exactly 0 when p == 1.
        drow[target] = (exp_nonpos(row[target] - m) * inv_total - 1.0) * scale
        loss += (np.log(total) + m - row[target]) * weight
    return loss / n_samples
