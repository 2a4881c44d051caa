"""The layers of the problem set's one-layer Transformer encoder, in the cs231n layer style.

Every forward returns ``(out, cache)``, every backward the gradients, as in
:mod:`fastrnn.rnn_layers`; :mod:`fastrnn.reference` holds a plain NumPy version of each (the
yardstick of the tests).  Weights use the classic (in, out) layout (``x @ w + b``); a weight may
also be the transposed view of a PyTorch-layout (out, in) array, which is used as it is (no copy),
and its gradient then comes back in the same layout (the transposed view of an (out, in) array).

Layers (N samples, T tokens, D features):

* :func:`positional_embedding_forward`: token + learned position embedding;
* :func:`multi_head_attention_forward`: per-head q, k, v affine maps and scaled-dot-product
  attention, heads concatenated (the projection and the residual layer norm are separate layers);
  ``num_queries`` keeps only the first positions' queries (exact pruning: a loss that reads
  token 0 needs one query, and for a few queries the keys and values are never formed);
* :func:`layernorm_forward`: layer norm of ``x + residual`` (the residual add fused in);
* :func:`affine_relu_forward` / :func:`linear_forward`: ``x @ w + b`` over the last axis,
  with / without ReLU;
* :func:`sigmoid_bce_loss`: the mean binary cross-entropy of sigmoid(x), computed from the
  logit (no log(0) at a saturated sigmoid).

float32 stays float32, float64 stays float64; inputs are never modified; index and shape errors
name the argument.  Caches are NamedTuples; a backward given a foreign cache raises TypeError.
"""
from typing import NamedTuple, Optional

import numpy as np

from ._kernels import affine as affine_kernels
from ._kernels import embedding
from ._kernels import transformer as kernels
from ._validate import as_float, check_cache, check_shape, float_dtype, index_array
from ._workspace import call_threaded, scratch_buffer

__all__ = [
    "positional_embedding_forward", "positional_embedding_backward",
    "multi_head_attention_forward", "multi_head_attention_backward",
    "layernorm_forward", "layernorm_backward",
    "affine_relu_forward", "affine_relu_backward", "linear_forward", "linear_backward",
    "sigmoid_bce_loss",
]


# ---------------------------------------------------------------------------- helpers

def _as_matrix(name, w, shape, names, dtype):
    """``w`` checked against ``shape``, as ``dtype``: unchanged when it is C-contiguous or the
    transposed view of a C-contiguous array (the kernels read both), else a C-contiguous copy."""
    w = check_shape(name, w, shape, names)
    if w.dtype == dtype and (w.flags.c_contiguous or w.flags.f_contiguous) and w.flags.writeable:
        return w
    return as_float(w, dtype)


def _is_transposed(w):
    """True for the transposed view of a C-contiguous 2-D array (of more than one row/column)."""
    return not w.flags.c_contiguous


def _affine(x2, w, b, relu):
    """x2 (M, D) @ w (D, P) + b, ReLU'd when ``relu``: the packed kernel for large products,
    NumPy below :func:`fastrnn._kernels.affine.worth_a_kernel` (as
    :func:`fastrnn.layers.matmul_bias` dispatches)."""
    (M, D), P = x2.shape, w.shape[1]
    if affine_kernels.worth_a_kernel(M, D, P):
        scratch = scratch_buffer(x2.dtype, affine_kernels.scratch_size(M, D, P))
        return call_threaded(kernels.affine_forward, x=x2, w=w, b=b, relu=relu, scratch=scratch)
    out = x2 @ w
    out += b
    if relu:
        np.maximum(out, 0, out=out)
    return out


def _matmul(a, b):
    """a (M, K) @ b (K, P) as a new C-contiguous array: the packed kernel for large products,
    NumPy below (either operand may be a transposed view)."""
    (M, K), P = a.shape, b.shape[1]
    if affine_kernels.worth_a_kernel(M, K, P):
        scratch = scratch_buffer(a.dtype, affine_kernels.scratch_size(M, K, P))
        return call_threaded(kernels.matmul, a, b, scratch)
    return np.ascontiguousarray(a @ b)


def _affine_backward(dout2, x2, w, out2, relu):
    """(dx (M, D), dw in w's layout, db (P,)) of :func:`_affine`; ``out2`` is its output."""
    (M, D), P = x2.shape, w.shape[1]
    transposed = _is_transposed(w)
    if out2 is None:  # no ReLU: the kernel never reads it, but needs a 2-D array typed
        out2 = dout2
    if affine_kernels.worth_a_kernel(M, D, P):
        scratch = scratch_buffer(x2.dtype, affine_kernels.scratch_size(M, D, P))
        dx, dw, db = call_threaded(kernels.affine_backward, dout=dout2, x=x2, w=w, out=out2,
                                   relu=relu, w_transposed=transposed, scratch=scratch)
        return dx, (dw.T if transposed else dw), db
    masked = np.where(out2 > 0, dout2, 0).astype(dout2.dtype, copy=False) if relu else dout2
    dw = (masked.T @ x2).T if transposed else x2.T @ masked
    return masked @ w.T, dw, masked.sum(axis=0)


# ---------------------------------------------------------------------------- embedding

class PositionalEmbeddingCache(NamedTuple):
    x: np.ndarray       # (N, T) private intp copy of the indices
    vocab_size: int     # V
    max_length: int     # L, rows of the position table
    dtype: np.dtype


def positional_embedding_forward(x, W_tok, W_pos):
    """out[n, t] = W_tok[x[n, t]] + W_pos[t].

    Parameters
    ----------
    x : (N, T) integer array (or whole-number floats), entries in [0, V); T <= L
    W_tok : (V, D) token embeddings
    W_pos : (L, D) position embeddings (positions 0..T-1 are used)

    Returns
    -------
    out : (N, T, D)
    cache : PositionalEmbeddingCache, for :func:`positional_embedding_backward`
    """
    W_tok = check_shape("W_tok", W_tok, (None, None), ("V", "D"))
    V, D = W_tok.shape
    W_pos = check_shape("W_pos", W_pos, (None, D), ("L", "D"))
    x = index_array("x", check_shape("x", x, (None, None), ("N", "T")), V)
    N, T = x.shape
    L = W_pos.shape[0]
    if T > L:
        raise ValueError(f"x has T={T} tokens, more than the {L} positions of W_pos "
                         f"(max_length)")
    dtype = float_dtype(W_tok, W_pos)
    W_tok, W_pos = as_float(W_tok, dtype), as_float(W_pos, dtype)
    out = np.empty((N, T, D), dtype=dtype)
    private = np.empty((N, T), dtype=np.intp)
    indices = np.ascontiguousarray(x, dtype=np.intp)
    bad = kernels.position_embedding_forward(indices, W_tok, W_pos, out, private)
    if bad >= 0:
        raise ValueError(f"x must hold indices in [0, {V}), got {x.flat[bad]} at position "
                         f"{np.unravel_index(bad, x.shape)}")
    return out, PositionalEmbeddingCache(private, V, L, dtype)


def positional_embedding_backward(dout, cache):
    """dout (N, T, D) -> dW_tok (V, D) (repeated words accumulate), dW_pos (L, D) (rows from T
    on are zero)."""
    check_cache(cache, PositionalEmbeddingCache, "positional_embedding_backward")
    N, T = cache.x.shape
    dout = check_shape("dout", dout, (N, T, None), ("N", "T", "D"))
    D = dout.shape[2]
    dtype = float_dtype(dout, np.empty(0, cache.dtype))
    dout = as_float(dout, dtype)
    dW_tok = np.zeros((cache.vocab_size, D), dtype=dtype)
    embedding.embedding_backward(cache.x.reshape(N * T), dout.reshape(N * T, D), dW_tok)
    dW_pos = np.zeros((cache.max_length, D), dtype=dtype)
    dW_pos[:T] = dout.sum(axis=0)
    return dW_tok, dW_pos


# ---------------------------------------------------------------------------- attention

class AttentionCache(NamedTuple):
    """Cache of the all-positions path: q, k and v side by side in one array."""
    x: np.ndarray       # (N, T, D) input
    qkv: np.ndarray     # (N, T, 2 * heads * dk + heads * dv): q, k, v
    probs: np.ndarray   # (N, heads, T, T) attention probabilities
    w_qkv: np.ndarray   # (D, 2 * heads * dk + heads * dv) = [Wq | Wk | Wv]
    num_heads: int
    dk: int
    dv: int
    scale: float


class QueryAttentionCache(NamedTuple):
    """Cache of the few-query path (``num_queries`` < T): no keys or values are formed."""
    x: np.ndarray       # (N, T, D) input
    x_q: np.ndarray     # (N * Tq, D) the query positions' inputs
    q: np.ndarray       # (N * Tq, heads * dk) queries
    qt: np.ndarray      # (heads, N, Tq, D) scale * Wk_h q: scores are x_j . qt
    ebar: np.ndarray    # (heads, N, Tq, D) sum_j p_j x_j
    probs: np.ndarray   # (N, heads, Tq, T)
    has_key: np.ndarray  # (N,) bool: some key is valid
    Wq: np.ndarray
    Wk: np.ndarray
    Wv: np.ndarray
    num_heads: int
    dk: int
    dv: int
    scale: float


def _query_attention_forward(x, Wq, bq, Wk, Wv, bv, num_heads, valid, Tq):
    """The first Tq positions' attention outputs without keys or values (see
    :func:`fastrnn._kernels.transformer.query_attention_forward`)."""
    N, T, D = x.shape
    hdk, hdv = Wq.shape[1], Wv.shape[1]
    dk, dv = hdk // num_heads, hdv // num_heads
    scale = float(1.0 / np.sqrt(dk))
    x_q = np.ascontiguousarray(x[:, :Tq]).reshape(N * Tq, D)
    q = _affine(x_q, Wq, bq, False)
    qt = np.empty((num_heads, N, Tq, D), dtype=x.dtype)
    for h in range(num_heads):
        cols = slice(h * dk, (h + 1) * dk)
        qt[h] = _matmul(np.ascontiguousarray(q[:, cols]),
                        np.ascontiguousarray(Wk[:, cols].T)).reshape(N, Tq, D)
    qt *= scale
    probs = np.empty((N, num_heads, Tq, T), dtype=x.dtype)
    ebar = np.empty((num_heads, N, Tq, D), dtype=x.dtype)
    call_threaded(kernels.query_attention_forward, x=x, qt=qt, key_valid=valid, probs=probs,
                  ebar=ebar)
    out = np.empty((N, Tq, hdv), dtype=x.dtype)
    for h in range(num_heads):
        cols = slice(h * dv, (h + 1) * dv)
        out[:, :, cols] = _affine(ebar[h].reshape(N * Tq, D), np.ascontiguousarray(Wv[:, cols]),
                                  bv[cols], False).reshape(N, Tq, dv)
    has_key = valid.any(axis=1)
    out[~has_key] = 0   # as the full path: no valid key, no output (not the bias bv)
    return out, QueryAttentionCache(x=x, x_q=x_q, q=q, qt=qt, ebar=ebar, probs=probs,
                                    has_key=has_key, Wq=Wq, Wk=Wk, Wv=Wv, num_heads=num_heads,
                                    dk=dk, dv=dv, scale=scale)


def _query_attention_backward(dout, c):
    x = c.x
    N, T, D = x.shape
    Tq = c.probs.shape[2]
    hdk, hdv = c.q.shape[1], c.Wv.shape[1]
    dout = as_float(dout, x.dtype).copy()
    dout[~c.has_key] = 0
    dout2 = dout.reshape(N * Tq, hdv)
    dWv = np.empty((D, hdv), dtype=x.dtype)
    debar = np.empty((c.num_heads, N, Tq, D), dtype=x.dtype)
    for h in range(c.num_heads):
        cols = slice(h * c.dv, (h + 1) * c.dv)
        dhead = np.ascontiguousarray(dout2[:, cols])
        dWv[:, cols] = _matmul(c.ebar[h].reshape(N * Tq, D).T, dhead)
        debar[h] = _matmul(dhead, np.ascontiguousarray(c.Wv[:, cols].T)).reshape(N, Tq, D)
    dbv = dout2.sum(axis=0)
    dx = np.empty_like(x)
    dqt = np.empty_like(c.qt)
    call_threaded(kernels.query_attention_backward, x=x, qt=c.qt, probs=c.probs, debar=debar,
                  dx=dx, dqt=dqt)
    dq = np.empty((N * Tq, hdk), dtype=x.dtype)
    dWk = np.empty((D, hdk), dtype=x.dtype)
    for h in range(c.num_heads):
        cols = slice(h * c.dk, (h + 1) * c.dk)
        dqt_h = dqt[h].reshape(N * Tq, D)
        dq[:, cols] = _matmul(dqt_h, np.ascontiguousarray(c.Wk[:, cols])) * c.scale
        dWk[:, cols] = _matmul(dqt_h.T, np.ascontiguousarray(c.q[:, cols])) * c.scale
    dbk = np.zeros(hdk, dtype=x.dtype)
    dxq, dWq, dbq = _affine_backward(dq, c.x_q, c.Wq, None, False)
    dx[:, :Tq] += dxq.reshape(N, Tq, D)
    return dx, dWq, dbq, dWk, dbk, dWv, dbv


def multi_head_attention_forward(x, Wq, bq, Wk, bk, Wv, bv, num_heads, key_mask=None,
                                 num_queries=None):
    """Multi-head scaled dot-product self-attention, heads concatenated in order.

    For head h (columns h*dk:(h+1)*dk of Wq / Wk, h*dv:(h+1)*dv of Wv):
    q = x Wq_h + bq_h, k = x Wk_h + bk_h, v = x Wv_h + bv_h,
    head_h = softmax(q k^T / sqrt(dk)) v (softmax over the keys).

    Parameters
    ----------
    x : (N, T, D)
    Wq, Wk : (D, heads * dk), bq, bk : (heads * dk,)
    Wv : (D, heads * dv), bv : (heads * dv,)
    num_heads : int
    key_mask : (N, T) bool, optional
        False keys are left out of every softmax (padding).  Default: every key is used.
    num_queries : int, optional
        Only the first ``num_queries`` positions get a query and an output (default: all T).
        With fewer queries than positions no keys or values are formed: the scores are
        x_j . (Wk_h q / sqrt(dk)) and the output (sum_j p_j x_j) Wv_h + bv_h, the same function
        (the key bias only shifts a query's scores, which the softmax ignores) at 2 T D
        multiply-adds per query and head instead of T D (dk + dv) per position.

    Returns
    -------
    out : (N, Tq, heads * dv), Tq = num_queries or T
    cache : AttentionCache, for :func:`multi_head_attention_backward`
    """
    x = check_shape("x", x, (None, None, None), ("N", "T", "D"))
    N, T, D = x.shape
    if int(num_heads) != num_heads or num_heads < 1:
        raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
    num_heads = int(num_heads)
    Wq = check_shape("Wq", Wq, (D, None), ("D", "heads*dk"))
    if Wq.shape[1] % num_heads:
        raise ValueError(f"Wq's {Wq.shape[1]} columns do not split into {num_heads} heads")
    hdk = Wq.shape[1]
    Wv = check_shape("Wv", Wv, (D, None), ("D", "heads*dv"))
    if Wv.shape[1] % num_heads:
        raise ValueError(f"Wv's {Wv.shape[1]} columns do not split into {num_heads} heads")
    hdv = Wv.shape[1]
    if hdk < num_heads or hdv < num_heads:
        raise ValueError(f"each of the {num_heads} heads needs at least one query/key and one "
                         f"value column, got Wq {Wq.shape} and Wv {Wv.shape}")
    Tq = T if num_queries is None else int(num_queries)
    if num_queries is not None and (Tq != num_queries or not 1 <= Tq <= T):
        raise ValueError(f"num_queries must be an integer in [1, T={T}], got {num_queries!r}")
    dtype = float_dtype(x, Wq, Wk, Wv, bq, bk, bv)
    Wq = _as_matrix("Wq", Wq, (D, hdk), ("D", "heads*dk"), dtype)
    Wk = _as_matrix("Wk", Wk, (D, hdk), ("D", "heads*dk"), dtype)
    Wv = _as_matrix("Wv", Wv, (D, hdv), ("D", "heads*dv"), dtype)
    bq = as_float(check_shape("bq", bq, (hdk,), ("heads*dk",)), dtype)
    bk = as_float(check_shape("bk", bk, (hdk,), ("heads*dk",)), dtype)
    bv = as_float(check_shape("bv", bv, (hdv,), ("heads*dv",)), dtype)
    x = as_float(x, dtype)
    if key_mask is None:
        valid = np.ones((N, T), dtype=np.bool_)
    else:
        valid = np.array(check_shape("key_mask", key_mask, (N, T), ("N", "T")), dtype=np.bool_,
                         order="C")
    if Tq < T:
        return _query_attention_forward(x, Wq, bq, Wk, Wv, bv, num_heads, valid, Tq)
    x2 = x.reshape(N * T, D)
    # every position has a query: one product for q, k and v
    w_qkv = np.concatenate([Wq, Wk, Wv], axis=1)
    qkv = _affine(x2, w_qkv, np.concatenate([bq, bk, bv]), False).reshape(N, T, -1)
    dk, dv = hdk // num_heads, hdv // num_heads
    scale = float(1.0 / np.sqrt(dk))
    out = np.empty((N, T, hdv), dtype=dtype)
    probs = np.empty((N, num_heads, T, T), dtype=dtype)
    call_threaded(kernels.attention_forward, q=qkv, q_off=0, k=qkv, k_off=hdk, v=qkv,
                  v_off=2 * hdk, key_valid=valid, num_heads=num_heads, dk=dk, dv=dv, scale=scale,
                  out=out, probs=probs)
    return out, AttentionCache(x=x, qkv=qkv, probs=probs, w_qkv=w_qkv, num_heads=num_heads,
                               dk=dk, dv=dv, scale=scale)


def multi_head_attention_backward(dout, cache):
    """dout (N, Tq, heads * dv) -> dx (N, T, D), dWq, dbq, dWk, dbk, dWv, dbv.

    dbk is zero up to rounding: a key bias adds the same q . bk to every score of a query,
    which the softmax cancels.
    """
    if isinstance(cache, QueryAttentionCache):
        N, Tq = cache.probs.shape[0], cache.probs.shape[2]
        dout = check_shape("dout", dout, (N, Tq, cache.Wv.shape[1]), ("N", "Tq", "heads*dv"))
        return _query_attention_backward(dout, cache)
    check_cache(cache, AttentionCache, "multi_head_attention_backward")
    c = cache
    x = c.x
    N, T, D = x.shape
    hdk, hdv = c.num_heads * c.dk, c.num_heads * c.dv
    dout = as_float(check_shape("dout", dout, (N, T, hdv), ("N", "T", "heads*dv")), x.dtype)
    dqkv = np.empty_like(c.qkv)
    call_threaded(kernels.attention_backward, dout=dout, q=c.qkv, q_off=0, k=c.qkv, k_off=hdk,
                  v=c.qkv, v_off=2 * hdk, probs=c.probs, num_heads=c.num_heads, dk=c.dk,
                  dv=c.dv, scale=c.scale, dq=dqkv, dq_off=0, dkv=dqkv, dk_off=hdk,
                  dv_off=2 * hdk)
    dx2, dw, db = _affine_backward(dqkv.reshape(N * T, -1), x.reshape(N * T, D), c.w_qkv,
                                   None, False)
    dWq, dWk, dWv = (np.ascontiguousarray(dw[:, a:b])
                     for a, b in ((0, hdk), (hdk, 2 * hdk), (2 * hdk, 2 * hdk + hdv)))
    dbq, dbk, dbv = db[:hdk], db[hdk:2 * hdk], db[2 * hdk:]
    return dx2.reshape(N, T, D), dWq, dbq, dWk, dbk, dWv, dbv


# ---------------------------------------------------------------------------- layer norm

class LayerNormCache(NamedTuple):
    xhat: np.ndarray    # (R, D) normalised input
    rstd: np.ndarray    # (R,) float64 1 / sqrt(var + eps)
    gamma: np.ndarray   # (D,)
    shape: tuple        # the input's shape (..., D)


def layernorm_forward(x, gamma, beta, ln_param=None, residual=None):
    """Layer norm over the last axis of s = ``x + residual``:
    gamma * (s - mean) / sqrt(var + eps) + beta.

    Parameters
    ----------
    x : (..., D)
    gamma, beta : (D,)
    ln_param : dict, optional; ``eps`` (default 1e-5, as torch.nn.LayerNorm)
    residual : array of x's shape, optional; added to x before the normalisation

    Returns
    -------
    out : x's shape
    cache : LayerNormCache, for :func:`layernorm_backward`
    """
    eps = float((ln_param or {}).get("eps", 1e-5))
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., D), got {x.shape}")
    D = x.shape[-1]
    gamma = check_shape("gamma", gamma, (D,), ("D",))
    beta = check_shape("beta", beta, (D,), ("D",))
    arrays = (x, gamma, beta) if residual is None else \
        (x, gamma, beta, check_shape("residual", residual, x.shape, ("...",) * x.ndim))
    dtype = float_dtype(*arrays)
    x2 = as_float(x, dtype).reshape(-1, D)
    gamma, beta = as_float(gamma, dtype), as_float(beta, dtype)
    res2 = x2 if residual is None else as_float(residual, dtype).reshape(-1, D)
    R = x2.shape[0]
    out = np.empty((R, D), dtype=dtype)
    xhat = np.empty((R, D), dtype=dtype)
    rstd = np.empty(R, dtype=np.float64)
    call_threaded(kernels.layernorm_forward, x=x2, residual=res2, add=residual is not None,
                  gamma=gamma, beta=beta, eps=eps, out=out, xhat=xhat, rstd=rstd)
    return out.reshape(x.shape), LayerNormCache(xhat=xhat, rstd=rstd, gamma=gamma, shape=x.shape)


def layernorm_backward(dout, cache):
    """dout (..., D) -> dx (the gradient of both x and residual), dgamma (D,), dbeta (D,)."""
    check_cache(cache, LayerNormCache, "layernorm_backward")
    dout = check_shape("dout", dout, cache.shape, ("...",) * len(cache.shape))
    R, D = cache.xhat.shape
    dtype = float_dtype(dout, cache.xhat)
    dout2 = as_float(dout, dtype).reshape(R, D)
    xhat, gamma = as_float(cache.xhat, dtype), as_float(cache.gamma, dtype)
    dx = np.empty((R, D), dtype=dtype)
    dgamma = np.zeros(D, dtype=np.float64)
    dbeta = np.zeros(D, dtype=np.float64)
    call_threaded(kernels.layernorm_backward, dout=dout2, xhat=xhat, rstd=cache.rstd,
                  gamma=gamma, dx=dx, dgamma=dgamma, dbeta=dbeta)
    return dx.reshape(cache.shape), dgamma.astype(dtype), dbeta.astype(dtype)


# ---------------------------------------------------------------------------- affine (+ ReLU)

class AffineCache(NamedTuple):
    x: np.ndarray     # (M, D) input, flattened over the leading axes
    w: np.ndarray     # (D, P), C-contiguous or a transposed view
    out: Optional[np.ndarray]  # (M, P) output (ReLU only), else None
    shape: tuple      # x's shape (..., D)


class AffineReluCache(AffineCache):
    """Cache of :func:`affine_relu_forward`."""


class LinearCache(AffineCache):
    """Cache of :func:`linear_forward`."""


def _affine_inputs(x, w, b):
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., D), got {x.shape}")
    D = x.shape[-1]
    w = check_shape("w", w, (D, None), ("D", "M"))
    b = check_shape("b", b, (w.shape[1],), ("M",))
    dtype = float_dtype(x, w, b)
    return (as_float(x, dtype).reshape(-1, D), _as_matrix("w", w, w.shape, ("D", "M"), dtype),
            as_float(b, dtype))


def affine_relu_forward(x, w, b):
    """out = max(x @ w + b, 0) over the last axis: x (..., D), w (D, M), b (M,) -> (..., M).

    For a 2-D x this is the classic ``affine_relu_forward``; other shapes are mapped
    position-wise (the Transformer's feed-forward layer), not flattened."""
    x2, w, b = _affine_inputs(x, w, b)
    out = _affine(x2, w, b, True)
    shape = np.shape(x)
    return out.reshape(shape[:-1] + (w.shape[1],)), AffineReluCache(x2, w, out, shape)


def linear_forward(x, w, b):
    """out = x @ w + b over the last axis: x (..., D), w (D, M), b (M,) -> (..., M)."""
    x2, w, b = _affine_inputs(x, w, b)
    out = _affine(x2, w, b, False)
    shape = np.shape(x)
    return out.reshape(shape[:-1] + (w.shape[1],)), LinearCache(x2, w, None, shape)


def _affine_backward_checked(dout, cache, relu):
    x2, w, out, shape = cache.x, cache.w, cache.out, cache.shape
    M = w.shape[1]
    dout = check_shape("dout", dout, shape[:-1] + (M,), ("...",) * len(shape))
    dtype = float_dtype(dout, x2)
    dout2 = as_float(dout, dtype).reshape(-1, M)
    x2, w = as_float(x2, dtype), _as_matrix("w", w, w.shape, ("D", "M"), dtype)
    dx, dw, db = _affine_backward(dout2, x2, w, out, relu)
    return dx.reshape(shape), dw, db


def affine_relu_backward(dout, cache):
    """dout (..., M) -> dx (..., D), dw (D, M) (in w's layout), db (M,)."""
    check_cache(cache, AffineReluCache, "affine_relu_backward")
    return _affine_backward_checked(dout, cache, True)


def linear_backward(dout, cache):
    """dout (..., M) -> dx (..., D), dw (D, M) (in w's layout), db (M,)."""
    check_cache(cache, LinearCache, "linear_backward")
    return _affine_backward_checked(dout, cache, False)


# ---------------------------------------------------------------------------- loss

def sigmoid_bce_loss(x, y):
    """Mean binary cross-entropy of sigmoid(x) against labels y, from the logit x.

    loss = mean(softplus(x) - x * y) with softplus(x) = max(x, 0) + log1p(exp(-|x|)): finite for
    every finite x (no log(0) where the sigmoid saturates).  dx = (sigmoid(x) - y) / N.

    Parameters
    ----------
    x : (N,) or (N, 1) logits
    y : (N,) labels in [0, 1] (0/1 ints, bools or probabilities)

    Returns
    -------
    loss : scalar of x's float dtype
    dx : x's shape
    """
    x = np.asarray(x)
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] != 1):
        raise ValueError(f"x must have shape (N,) or (N, 1), got {x.shape}")
    N = x.shape[0]
    y = np.asarray(y)
    if y.shape not in ((N,), x.shape):
        raise ValueError(f"y must have shape (N={N},), got {y.shape}")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y must hold 0/1 labels, got dtype {y.dtype}")
    y = y.reshape(N).astype(np.float64)
    if N and (np.min(y) < 0 or np.max(y) > 1):
        raise ValueError(f"y must hold labels in [0, 1], got values from {y.min()} to {y.max()}")
    dtype = float_dtype(x)
    z = x.reshape(N).astype(np.float64)
    e = np.exp(-np.abs(z))
    loss = np.sum(np.maximum(z, 0) - z * y + np.log1p(e)) / max(N, 1)
    prob = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    dx = ((prob - y) / max(N, 1)).astype(dtype).reshape(x.shape)
    return dtype.type(loss), dx
