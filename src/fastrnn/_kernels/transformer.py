"""Kernels of the one-layer Transformer encoder: fused attention, layer norm with its residual
add, affine (+ ReLU) on the packed product, and the embedding with positions.

Every array here is C-contiguous in the layout described (the affine weights may also be a
transposed view); the public module :mod:`fastrnn.transformer_layers` validates, coerces and
allocates.  Heads are laid out as the course concatenates them: head ``h`` of an (N, T, C)
array owns columns ``[offset + h * d, offset + (h + 1) * d)``; ``offset`` lets one array carry
q, k and v side by side, so that one product computes them all.

Threads: the attention kernels run one task per (sample, head); a task writes only its own
columns of its own sample, so no two threads write the same element.  The layer-norm backward
sums dgamma / dbeta per fixed chunk of rows and adds the chunks in order: no result depends on
the thread count.
"""
import numpy as np
from numba import prange

from .._jit import jit
from .activations import exp_nonpos
from .linalg import column_sum
from .packed import dot

LAYERNORM_CHUNKS = 16  # fixed row chunks of the layer-norm backward's parameter sums


# ---------------------------------------------------------------------------- attention

@jit(parallel=True)
def attention_forward(q, q_off, k, k_off, v, v_off, key_valid, num_heads, dk, dv, scale,
                      out, probs):
    """Per (n, head): P = softmax_j(scale * q_i . k_j) over valid keys j, out_i = P_i @ v.

    q (N, Tq, .), k (N, Tk, .), v (N, Tk, .) with head columns at their offsets;
    key_valid (N, Tk) bool; out (N, Tq, heads * dv); probs (N, heads, Tq, Tk).  A query whose
    keys are all invalid gets zero probabilities and a zero output (PyTorch would give NaN).
    One pass per query row while its Tk scores are in cache: scores, max, exp, normalise,
    weighted sum.
    """
    N, Tq, _ = q.shape
    Tk = k.shape[1]
    for task in prange(N * num_heads):
        n = task // num_heads
        h = task - n * num_heads
        qc = q_off + h * dk
        kc = k_off + h * dk
        vc = v_off + h * dv
        oc = h * dv
        for i in range(Tq):
            row = probs[n, h, i]
            q_row = q[n, i, qc:qc + dk]
            for j in range(Tk):
                if key_valid[n, j]:
                    k_row = k[n, j, kc:kc + dk]
                    s = q_row[0] * k_row[0]
                    for d in range(1, dk):
                        s += q_row[d] * k_row[d]
                    row[j] = s * scale
                else:
                    row[j] = -np.inf
            top = row[0]
            for j in range(1, Tk):
                top = max(top, row[j])
            o_row = out[n, i, oc:oc + dv]
            o_row[:] = 0
            if top == -np.inf:  # no valid key
                row[:] = 0
                continue
            total = 0.0  # float64
            for j in range(Tk):
                e = exp_nonpos(row[j] - top)
                row[j] = e
                total += e
            inv_total = 1.0 / total
            for j in range(Tk):
                p = row[j] * inv_total
                row[j] = p
                if p != 0:  # masked keys cost nothing
                    v_row = v[n, j, vc:vc + dv]
                    for d in range(dv):
                        o_row[d] += p * v_row[d]


@jit(parallel=True)
def attention_backward(dout, q, q_off, k, k_off, v, v_off, probs, num_heads, dk, dv, scale,
                       dq, dq_off, dkv, dk_off, dv_off):
    """Gradients of :func:`attention_forward` for the upstream dout (N, Tq, heads * dv).

    dP_ij = dout_i . v_j, dv_j = sum_i P_ij dout_i, dS = P * (dP - rowsum(dP * P)) * scale,
    dq_i = dS_i @ k, dk_j = sum_i dS_ij q_i.  dq (N, Tq, .) and dkv (N, Tk, .) receive their
    head columns at the given offsets (they may be one array); every column a task owns is
    written (zeroed first), the others are left alone.
    """
    N, Tq, _ = q.shape
    Tk = k.shape[1]
    for task in prange(N * num_heads):
        n = task // num_heads
        h = task - n * num_heads
        qc, kc, vc, oc = q_off + h * dk, k_off + h * dk, v_off + h * dv, h * dv
        gq, gk, gv = dq_off + h * dk, dk_off + h * dk, dv_off + h * dv
        for j in range(Tk):
            dkv[n, j, gk:gk + dk] = 0
            dkv[n, j, gv:gv + dv] = 0
        dp = np.empty(Tk, dtype=q.dtype)
        for i in range(Tq):
            row = probs[n, h, i]
            do_row = dout[n, i, oc:oc + dv]
            weighted = 0.0  # rowsum(dP * P), float64
            for j in range(Tk):
                p = row[j]
                if p == 0:
                    dp[j] = 0
                    continue
                v_row = v[n, j, vc:vc + dv]
                s = do_row[0] * v_row[0]
                for d in range(1, dv):
                    s += do_row[d] * v_row[d]
                dp[j] = s
                weighted += p * s
                gv_row = dkv[n, j, gv:gv + dv]
                for d in range(dv):
                    gv_row[d] += p * do_row[d]
            dq_row = dq[n, i, gq:gq + dk]
            dq_row[:] = 0
            q_row = q[n, i, qc:qc + dk]
            for j in range(Tk):
                p = row[j]
                if p == 0:
                    continue
                ds = p * (dp[j] - weighted) * scale
                k_row = k[n, j, kc:kc + dk]
                gk_row = dkv[n, j, gk:gk + dk]
                for d in range(dk):
                    dq_row[d] += ds * k_row[d]
                    gk_row[d] += ds * q_row[d]


# ---------------------------------------------------------------------------- layer norm

@jit(parallel=True)
def layernorm_forward(x, residual, add, gamma, beta, eps, out, xhat, rstd):
    """Per row r of x (R, D): s = x + residual (when ``add``), xhat = (s - mean) / sqrt(var + eps),
    out = gamma * xhat + beta; keeps xhat (R, D) and rstd (R,) for backward.  Mean and variance
    are summed in float64 (two passes: no cancellation)."""
    R, D = x.shape
    for r in prange(R):
        s = xhat[r]
        if add:
            for j in range(D):
                s[j] = x[r, j] + residual[r, j]
        else:
            s[:] = x[r]
        total = 0.0
        for j in range(D):
            total += s[j]
        mean = total / D
        sq = 0.0
        for j in range(D):
            c = s[j] - mean
            sq += c * c
        inv = 1.0 / np.sqrt(sq / D + eps)
        rstd[r] = inv
        for j in range(D):
            s[j] = (s[j] - mean) * inv
        for j in range(D):
            out[r, j] = s[j] * gamma[j] + beta[j]


@jit(parallel=True)
def layernorm_backward(dout, xhat, rstd, gamma, dx, dgamma, dbeta):
    """dx (R, D) = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * gamma, per row;
    dgamma = sum_r dout * xhat, dbeta = sum_r dout (float64 sums, in fixed chunks of rows)."""
    R, D = dout.shape
    chunks = LAYERNORM_CHUNKS
    partial_gamma = np.zeros((chunks, D), dtype=np.float64)
    partial_beta = np.zeros((chunks, D), dtype=np.float64)
    for c in prange(chunks):
        g = np.empty(D, dtype=dout.dtype)
        for r in range(c * R // chunks, (c + 1) * R // chunks):
            g_mean = 0.0
            gx_mean = 0.0
            for j in range(D):
                d = dout[r, j]
                xh = xhat[r, j]
                g[j] = d * gamma[j]
                g_mean += g[j]
                gx_mean += g[j] * xh
                partial_gamma[c, j] += d * xh
                partial_beta[c, j] += d
            g_mean /= D
            gx_mean /= D
            inv = rstd[r]
            for j in range(D):
                dx[r, j] = inv * (g[j] - g_mean - xhat[r, j] * gx_mean)
    for c in range(chunks):
        for j in range(D):
            dgamma[j] += partial_gamma[c, j]
            dbeta[j] += partial_beta[c, j]


# ---------------------------------------------------------------------------- affine (+ ReLU)

@jit(parallel=True)
def affine_forward(x, w, b, relu, scratch):
    """x (M, D) @ w (D, P) + b (P,), then max(., 0) when ``relu``, in one pass over the output;
    w is C-contiguous or a transposed (out, in) matrix (packed either way)."""
    out = dot(x, w, scratch)
    M, P = out.shape
    for i in prange(M):
        row = out[i]
        if relu:
            for j in range(P):
                value = row[j] + b[j]
                row[j] = value if value > 0 else 0
        else:
            for j in range(P):
                row[j] += b[j]
    return out


@jit(parallel=True)
def affine_backward(dout, x, w, out, relu, w_transposed, scratch):
    """Gradients of :func:`affine_forward`: dx (M, D), dw, db (P,).  With ``relu`` the upstream
    gradient is first masked where ``out`` is 0.  dw is computed as dout^T x, an (P, D) C array,
    when ``w_transposed`` (w is the view of such an array), else as x^T dout, (D, P): either way
    it comes out in w's own memory layout and the caller transposes the view."""
    if relu:
        masked = np.empty_like(dout)
        M, P = dout.shape
        for i in prange(M):
            for j in range(P):
                masked[i, j] = dout[i, j] if out[i, j] > 0 else 0
    else:
        masked = dout
    dx = dot(masked, w.T, scratch)
    if w_transposed:
        dw = dot(masked.T, x, scratch)
    else:
        dw = dot(x.T, masked, scratch)
    return dx, dw, column_sum(masked)


# ---------------------------------------------------------------------------- embedding

@jit
def position_embedding_forward(indices, tokens, positions, out, private):
    """out[n, t] = tokens[indices[n, t]] + positions[t]; private[n, t] = indices[n, t].

    Returns -1, or the flat position of the first index outside [0, V) (the outputs are then
    partly written and must be dropped): the caller has no other range check."""
    N, T = indices.shape
    V, D = tokens.shape
    for n in range(N):
        for t in range(T):
            word = indices[n, t]
            if word < 0 or word >= V:
                return n * T + t
            private[n, t] = word
            for j in range(D):
                out[n, t, j] = tokens[word, j] + positions[t, j]
    return -1


# ---------------------------------------------------------------------------- few-query attention
# For a few queries (the pruned model has one: token 0), keys and values need not be formed:
# with qt = scale * Wk_h q (a D-vector per query and head), the scores are x_j . qt (the key
# bias adds the same q . bk to every score of a query, which the softmax cancels), and since the
# probabilities sum to 1, sum_j p_j (x_j Wv_h + bv_h) = (sum_j p_j x_j) Wv_h + bv_h.  Per query
# and head that is 2 T D multiply-adds here instead of T D (dk + dv) for the key/value products.

@jit(parallel=True)
def query_attention_forward(x, qt, key_valid, probs, ebar):
    """probs[n, h, i] = softmax_j(x[n, j] . qt[h, n, i]) over valid j;
    ebar[h, n, i] = sum_j probs[n, h, i, j] x[n, j].

    x (N, T, D); qt (heads, N, Tq, D), the scale folded in; key_valid (N, T) bool;
    probs (N, heads, Tq, T); ebar (heads, N, Tq, D).  No valid key: zero probabilities and
    a zero ebar."""
    heads, N, Tq, D = qt.shape
    T = x.shape[1]
    for task in prange(N * heads):
        n = task // heads
        h = task - n * heads
        for i in range(Tq):
            row = probs[n, h, i]
            q_row = qt[h, n, i]
            for j in range(T):
                if key_valid[n, j]:
                    x_row = x[n, j]
                    s = x_row[0] * q_row[0]
                    for d in range(1, D):
                        s += x_row[d] * q_row[d]
                    row[j] = s
                else:
                    row[j] = -np.inf
            top = row[0]
            for j in range(1, T):
                top = max(top, row[j])
            e_row = ebar[h, n, i]
            e_row[:] = 0
            if top == -np.inf:
                row[:] = 0
                continue
            total = 0.0
            for j in range(T):
                e = exp_nonpos(row[j] - top)
                row[j] = e
                total += e
            inv_total = 1.0 / total
            for j in range(T):
                p = row[j] * inv_total
                row[j] = p
                if p != 0:
                    x_row = x[n, j]
                    for d in range(D):
                        e_row[d] += p * x_row[d]


@jit(parallel=True)
def query_attention_backward(x, qt, probs, debar, dx, dqt):
    """Gradients of :func:`query_attention_forward` for the upstream debar (heads, N, Tq, D):
    dx (N, T, D) (written whole) and dqt (heads, N, Tq, D).  One task per sample: every head
    and query of a sample adds into the same dx rows."""
    heads, N, Tq, D = qt.shape
    T = x.shape[1]
    for n in prange(N):
        dx[n] = 0
        dp = np.empty(T, dtype=x.dtype)
        for h in range(heads):
            for i in range(Tq):
                row = probs[n, h, i]
                g = debar[h, n, i]
                q_row = qt[h, n, i]
                dq_row = dqt[h, n, i]
                dq_row[:] = 0
                weighted = 0.0
                for j in range(T):
                    p = row[j]
                    if p == 0:
                        dp[j] = 0
                        continue
                    x_row = x[n, j]
                    s = x_row[0] * g[0]
                    for d in range(1, D):
                        s += x_row[d] * g[d]
                    dp[j] = s
                    weighted += p * s
                for j in range(T):
                    p = row[j]
                    if p == 0:
                        continue
                    ds = p * (dp[j] - weighted)
                    x_row = x[n, j]
                    dx_row = dx[n, j]
                    for d in range(D):
                        dx_row[d] += p * g[d] + ds * q_row[d]
                        dq_row[d] += ds * x_row[d]


@jit(parallel=True)
def matmul(a, b, scratch):
    """a (M, K) @ b (K, P) on the packed product (either operand may be a transposed view)."""
    return dot(a, b, scratch)
