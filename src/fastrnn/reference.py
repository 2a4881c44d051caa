"""Plain-NumPy reference implementation of the layer API (the yardstick).

Written in the readable per-timestep style of the classic course code, so that it can be checked
line by line against the equations, but without that code's known bugs: no input is mutated, the
input dtype is kept (float32 in, float32 out), the sigmoid never overflows and the softmax loss is
computed as a stable log-softmax.  Tests and benchmarks compare :mod:`fastrnn.rnn_layers` with
this module.  It never imports numba.

Caches here are plain tuples; they are only ever read by the matching backward in this module.
"""
import numpy as np

__all__ = [
    "affine_forward", "affine_backward",
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "word_embedding_forward", "word_embedding_backward", "sigmoid",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss",
]


def affine_forward(x, w, b):
    """x: (N, d1, ..., dk), w: (D, M), b: (M,) -> out (N, M)."""
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """dout: (N, M) -> dx (N, d1, ..., dk), dw (D, M), db (M,)."""
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = dout.sum(axis=0)
    return dx, dw, db


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """x: (N, D), prev_h: (N, H) -> next_h (N, H) = tanh(x Wx + prev_h Wh + b)."""
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """dnext_h: (N, H) -> dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """x: (N, T, D), h0: (N, H) -> h (N, T, H)."""
    N, T, _ = x.shape
    H = h0.shape[1]
    dtype = np.result_type(x, h0, Wx, Wh, b)
    h = np.zeros((N, T, H), dtype=dtype)
    caches = []
    prev_h = h0
    for t in range(T):
        prev_h, cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(cache)
    return h, caches


def rnn_backward(dh, cache):
    """dh: (N, T, H) upstream gradients of every h_t -> dx, dh0, dWx, dWh, db."""
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx, dWh, db = 0, 0, 0
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])
        dx[:, t, :] = dx_t
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_forward(x, W):
    """x: int (N, T) in [0, V), W: (V, D) -> out (N, T, D)."""
    return W[x], (x, W.shape)


def word_embedding_backward(dout, cache):
    """dout: (N, T, D) -> dW (V, D); repeated indices accumulate."""
    x, w_shape = cache
    dW = np.zeros(w_shape, dtype=dout.dtype)
    np.add.at(dW, x, dout)
    return dW


def sigmoid(x):
    """Numerically stable logistic function, in x's dtype."""
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """x: (N, D), prev_h, prev_c: (N, H), Wx: (D, 4H), Wh: (H, 4H), b: (4H,).

    Gates are split along 4H in the order i, f, o, g.
    """
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """-> dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)  # a new array: dnext_c is never mutated
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)],
                        axis=1)
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """x: (N, T, D), h0: (N, H) -> h (N, T, H); the initial cell state is zero."""
    N, T, _ = x.shape
    H = h0.shape[1]
    dtype = np.result_type(x, h0, Wx, Wh, b)
    h = np.zeros((N, T, H), dtype=dtype)
    prev_h, prev_c = h0, np.zeros((N, H), dtype=dtype)
    caches = []
    for t in range(T):
        prev_h, prev_c, cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(cache)
    return h, caches


def lstm_backward(dh, cache):
    """dh: (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dprev_c = np.zeros((N, H), dtype=dh.dtype)
    dWx, dWh, db = 0, 0, 0
    for t in reversed(range(T)):
        dx_t, dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dx[:, t, :] = dx_t
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def temporal_affine_forward(x, w, b):
    """x: (N, T, D), w: (D, M), b: (M,) -> out (N, T, M)."""
    N, T, D = x.shape
    out = x.reshape(N * T, D).dot(w).reshape(N, T, -1) + b
    return out, (x, w, b, out)


def temporal_affine_backward(dout, cache):
    """dout: (N, T, M) -> dx (N, T, D), dw (D, M), db (M,)."""
    x, w, b, out = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """x: (N, T, V) scores, y: int (N, T), mask: bool (N, T) -> (loss, dx).

    loss = -sum over unmasked (n, t) of log softmax(x[n, t])[y[n, t]], divided by N only.
    """
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)
    shifted = x_flat - np.max(x_flat, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    probs = np.exp(log_probs)
    loss = -np.sum(mask_flat * log_probs[np.arange(N * T), y_flat]) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    if verbose:
        print("dx_flat: ", dx_flat.shape)
    return loss, dx_flat.reshape(N, T, V)


# ==============================================================================================
# The one-layer Transformer encoder of the problem set (fastrnn.transformer_layers)
#
# Plain NumPy, one head at a time, in the shape of the course's PyTorch code.  Weights in the
# classic (in, out) layout.  Caches are plain tuples.
# ==============================================================================================

__all__ += [
    "positional_embedding_forward", "positional_embedding_backward",
    "multi_head_attention_forward", "multi_head_attention_backward",
    "layernorm_forward", "layernorm_backward",
    "affine_relu_forward", "affine_relu_backward", "linear_forward", "linear_backward",
    "sigmoid_bce_loss",
]


def positional_embedding_forward(x, W_tok, W_pos):
    """x: int (N, T), W_tok: (V, D), W_pos: (L, D), T <= L -> out (N, T, D)."""
    T = x.shape[1]
    positions = np.arange(T)  # a new array: the caller's x is never written
    out = W_tok[x] + W_pos[positions][None, :, :]
    return out, (x, W_tok.shape, W_pos.shape)


def positional_embedding_backward(dout, cache):
    """dout: (N, T, D) -> dW_tok (V, D), dW_pos (L, D)."""
    x, tok_shape, pos_shape = cache
    dW_tok = np.zeros(tok_shape, dtype=dout.dtype)
    np.add.at(dW_tok, x, dout)
    dW_pos = np.zeros(pos_shape, dtype=dout.dtype)
    dW_pos[:x.shape[1]] = dout.sum(axis=0)
    return dW_tok, dW_pos


def _softmax_rows(scores):
    shifted = scores - np.max(scores, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def multi_head_attention_forward(x, Wq, bq, Wk, bk, Wv, bv, num_heads, key_mask=None,
                                 num_queries=None):
    """x: (N, T, D) -> heads concatenated (N, Tq, heads * dv), Tq = num_queries or T.

    Per head h: softmax(q_h k_h^T / sqrt(dk)) v_h with q_h = x[:, :Tq] Wq_h + bq_h, etc.
    key_mask (N, T) bool: False keys are left out of the softmax.
    """
    N, T, D = x.shape
    Tq = T if num_queries is None else num_queries
    dk = Wq.shape[1] // num_heads
    dv = Wv.shape[1] // num_heads
    heads, caches = [], []
    for h in range(num_heads):
        cols_k, cols_v = slice(h * dk, (h + 1) * dk), slice(h * dv, (h + 1) * dv)
        q = x[:, :Tq].dot(Wq[:, cols_k]) + bq[cols_k]
        k = x.dot(Wk[:, cols_k]) + bk[cols_k]
        v = x.dot(Wv[:, cols_v]) + bv[cols_v]
        scale = float(np.sqrt(dk))  # a Python float is a weak scalar: float32 stays float32
        scores = np.matmul(q, k.transpose(0, 2, 1)) / scale
        if key_mask is not None:
            scores = np.where(key_mask[:, None, :], scores, -np.inf)
        probs = _softmax_rows(scores)
        heads.append(np.matmul(probs, v))
        caches.append((q, k, v, probs))
    out = np.concatenate(heads, axis=2)
    return out, (x, Wq, Wk, Wv, num_heads, Tq, caches)


def multi_head_attention_backward(dout, cache):
    """dout: (N, Tq, heads * dv) -> dx (N, T, D), dWq, dbq, dWk, dbk, dWv, dbv."""
    x, Wq, Wk, Wv, num_heads, Tq, caches = cache
    dk = Wq.shape[1] // num_heads
    dv = Wv.shape[1] // num_heads
    dx = np.zeros_like(x)
    dWq, dWk, dWv = np.zeros_like(Wq), np.zeros_like(Wk), np.zeros_like(Wv)
    dbq, dbk = np.zeros(Wq.shape[1], dtype=x.dtype), np.zeros(Wk.shape[1], dtype=x.dtype)
    dbv = np.zeros(Wv.shape[1], dtype=x.dtype)
    for h, (q, k, v, probs) in enumerate(caches):
        cols_k, cols_v = slice(h * dk, (h + 1) * dk), slice(h * dv, (h + 1) * dv)
        dhead = dout[:, :, cols_v]
        dprobs = np.matmul(dhead, v.transpose(0, 2, 1))
        dv_h = np.matmul(probs.transpose(0, 2, 1), dhead)
        dscores = probs * (dprobs - np.sum(dprobs * probs, axis=-1, keepdims=True)) \
            / float(np.sqrt(dk))
        dq_h = np.matmul(dscores, k)
        dk_h = np.matmul(dscores.transpose(0, 2, 1), q)
        for grad, W, dW, db, cols, rows in ((dq_h, Wq, dWq, dbq, cols_k, slice(0, Tq)),
                                             (dk_h, Wk, dWk, dbk, cols_k, slice(None)),
                                             (dv_h, Wv, dWv, dbv, cols_v, slice(None))):
            dx[:, rows] += grad.dot(W[:, cols].T)
            dW[:, cols] = np.tensordot(x[:, rows], grad, axes=([0, 1], [0, 1]))
            db[cols] = grad.sum(axis=(0, 1))
    return dx, dWq, dbq, dWk, dbk, dWv, dbv


def layernorm_forward(x, gamma, beta, ln_param=None, residual=None):
    """x: (..., D) -> gamma * normalise(x + residual) + beta over the last axis (eps 1e-5)."""
    eps = (ln_param or {}).get("eps", 1e-5)
    s = x if residual is None else x + residual
    mean = s.mean(axis=-1, keepdims=True)
    var = ((s - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    xhat = (s - mean) * rstd
    return gamma * xhat + beta, (xhat, rstd, gamma)


def layernorm_backward(dout, cache):
    """dout: (..., D) -> dx (also the residual's gradient), dgamma (D,), dbeta (D,)."""
    xhat, rstd, gamma = cache
    axes = tuple(range(dout.ndim - 1))
    dgamma = np.sum(dout * xhat, axis=axes)
    dbeta = np.sum(dout, axis=axes)
    g = dout * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def linear_forward(x, w, b):
    """x: (..., D), w: (D, M), b: (M,) -> x @ w + b over the last axis."""
    return x.dot(w) + b, (x, w)


def linear_backward(dout, cache):
    """dout: (..., M) -> dx (..., D), dw (D, M), db (M,)."""
    x, w = cache
    D, M = w.shape
    dw = x.reshape(-1, D).T.dot(dout.reshape(-1, M))
    return dout.dot(w.T), dw, dout.reshape(-1, M).sum(axis=0)


def affine_relu_forward(x, w, b):
    """x: (..., D) -> max(x @ w + b, 0) over the last axis."""
    out = np.maximum(x.dot(w) + b, 0)
    return out, (x, w, out)


def affine_relu_backward(dout, cache):
    """dout: (..., M) -> dx (..., D), dw (D, M), db (M,)."""
    x, w, out = cache
    return linear_backward(dout * (out > 0), (x, w))


def sigmoid_bce_loss(x, y):
    """x: (N,) or (N, 1) logits, y: (N,) labels in [0, 1] -> (mean BCE, dx).

    Computed from the logit: log(1 + e^x) - x y, never log(0)."""
    z = x.reshape(x.shape[0])
    y = y.reshape(x.shape[0])
    N = z.shape[0]
    loss = np.sum(np.logaddexp(0, z) - z * y) / N
    dx = (sigmoid(z) - y) / N
    return x.dtype.type(loss), dx.astype(x.dtype).reshape(x.shape)
