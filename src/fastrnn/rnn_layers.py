"""Drop-in replacement for ``cs231n.rnn_layers``: same names, signatures and return tuples.

Each function validates its arguments (errors name the argument and give the expected and the
actual shape), chooses the compute dtype (float32 stays float32, float64 stays float64, mixed
inputs follow NumPy promotion), makes C-contiguous copies only where needed, calls a Numba
kernel from :mod:`fastrnn._kernels` and returns ``(out, cache)`` or the gradients.  No input is
ever modified.  Kernels compile on first use for the dtype they meet and are cached on disk.

Caches are opaque NamedTuples: a backward function given any other cache raises TypeError.
"""
import functools
from typing import NamedTuple

import numpy as np

from ._kernels import activations, embedding, recurrent, softmax
from ._workspace import scratch_buffer
from ._validate import (as_float, check_cache, check_index_dtype, check_indices, check_shape,
                        float_dtype, usable_as_is)
from .layers import affine_backward, affine_forward, matmul_bias, matmul_bias_backward

__all__ = [
    "affine_forward", "affine_backward",
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "word_embedding_forward", "word_embedding_backward", "sigmoid",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss",
]


class _RNNState(NamedTuple):
    x: np.ndarray   # (N, T, D) input
    hs: np.ndarray  # (T+1, N, H) hidden states, hs[0] = h0
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)


class _LSTMState(NamedTuple):
    x: np.ndarray      # (N, T, D) input
    hs: np.ndarray     # (T+1, N, H) hidden states, hs[0] = h0
    cs: np.ndarray     # (T+1, N, H) cell states, cs[0] = c0
    gates: np.ndarray  # (T, N, 4H) activated gates i, f, o, g
    Wx: np.ndarray     # (D, 4H)
    Wh: np.ndarray     # (H, 4H)


# One class per forward function, so that a backward can tell a foreign cache (TypeError).
class RNNStepCache(_RNNState):
    """Cache of :func:`rnn_step_forward` (a sequence of length 1)."""


class RNNCache(_RNNState):
    """Cache of :func:`rnn_forward`."""


class LSTMStepCache(_LSTMState):
    """Cache of :func:`lstm_step_forward` (a sequence of length 1)."""


class LSTMCache(_LSTMState):
    """Cache of :func:`lstm_forward`."""


class WordEmbeddingCache(NamedTuple):
    x: np.ndarray      # (N, T) private intp copy of the indices
    vocab_size: int    # V
    wordvec_dim: int   # D
    dtype: np.dtype    # W's float dtype: dW promotes it with dout's, like every other grad


class TemporalAffineCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    w: np.ndarray  # (D, M)


@functools.lru_cache(maxsize=1024)
def _scratch_size(x_shape, Wh_shape):
    """Scratch elements for a recurrent layer with input x (N, T, D) and Wh (H, G), or None
    when it runs the tiny kernels (which take none): memoised, tiny calls are all overhead."""
    N, T, D = x_shape
    H, G = Wh_shape
    if recurrent.is_small(N, D, H, G):
        return None
    return recurrent.scratch_size(N, T, D, H, G)


def _run(kernel, small_kernel, arrays, x, Wh):
    """``kernel(*arrays, scratch)``, or ``small_kernel(*arrays)`` for a tiny layer; x (N, T, D)
    and Wh (H, G) are the layer's input and recurrent weights, in the compute dtype."""
    size = _scratch_size(x.shape, Wh.shape)
    if size is None:
        return small_kernel(*arrays)
    return kernel(*arrays, scratch_buffer(x.dtype, size))


def _rnn_forward(arrays):
    """The RNN forward kernel on (x, h0, Wx, Wh, b)."""
    return _run(recurrent.rnn_forward, recurrent.rnn_forward_small, arrays, arrays[0], arrays[3])


def _rnn_backward(arrays):
    """The RNN backward kernel on (dh, x, hs, Wx, Wh)."""
    return _run(recurrent.rnn_backward, recurrent.rnn_backward_small, arrays, arrays[1], arrays[4])


def _lstm_forward(arrays):
    """The LSTM forward kernel on (x, h0, c0, Wx, Wh, b)."""
    return _run(recurrent.lstm_forward, recurrent.lstm_forward_small, arrays, arrays[0],
                arrays[4])


def _lstm_backward(arrays):
    """The LSTM backward kernel on (dh, dc_T, x, hs, cs, gates, Wx, Wh)."""
    return _run(recurrent.lstm_backward, recurrent.lstm_backward_small, arrays, arrays[2],
                arrays[7])


@functools.lru_cache(maxsize=1024)
def _zeros(shape, dtype):
    """Zeros for the kernels' c0 / dc_T arguments, which they only read: one private array per
    shape and dtype instead of a new one per call (np.zeros_like costs ~1 us, a tiny LSTM call
    ~12 us)."""
    return np.zeros(shape, dtype=dtype)


def _recurrent_inputs(x, h0, Wx, Wh, b, gates, h0_name, extra=()):
    """Validate (x (N, T, D), h0 (N, H), Wx (D, gH), Wh (H, gH), b (gH,)) and coerce them to
    one C-contiguous float dtype.  ``extra`` holds more (name, array) pairs of shape (N, H)."""
    arrays = (x, h0, Wx, Wh, b) + tuple(a for _, a in extra) if extra else (x, h0, Wx, Wh, b)
    if usable_as_is(arrays):
        # The common case in a few tuple comparisons (tiny problems are all wrapper overhead).
        x_shape, h0_shape = x.shape, h0.shape
        if len(x_shape) == 3 and len(h0_shape) == 2 and h0_shape[0] == x_shape[0]:
            G = gates * h0_shape[1]
            if Wx.shape == (x_shape[2], G) and Wh.shape == (h0_shape[1], G) and \
                    b.shape == (G,) and all(a.shape == h0_shape for _, a in extra):
                return arrays
    x = check_shape("x", x, (None, None, None), ("N", "T", "D"))
    N, _, D = x.shape
    h0 = check_shape(h0_name, h0, (N, None), ("N", "H"))
    H = h0.shape[1]
    G = gates * H
    rest = [np.asarray(a) for a in (Wx, Wh, b, *(a for _, a in extra))]
    if tuple(a.shape for a in rest) != ((D, G), (H, G), (G,)) + ((N, H),) * len(extra):
        gH = "H" if gates == 1 else f"{gates}H"
        check_shape("Wx", Wx, (D, G), ("D", gH))
        check_shape("Wh", Wh, (H, G), ("H", gH))
        check_shape("b", b, (G,), (gH,))
        for name, a in extra:
            check_shape(name, a, (N, H), ("N", "H"))
    dtype = float_dtype(x, h0, *rest)
    return [as_float(a, dtype) for a in (x, h0, *rest)]


def _step_input(x):
    """The (N, D) input of a step function as a length-1 sequence (N, 1, D)."""
    return check_shape("x", x, (None, None), ("N", "D"))[:, None, :]


def _upstream(name, grad, state, dims=("N", "T", "H")):
    """Validate an upstream gradient's shape against the cached states."""
    T1, N, H = state.hs.shape
    return check_shape(name, grad, (N, T1 - 1, H) if len(dims) == 3 else (N, H), dims)


def _backward_arrays(grads, state):
    """Upstream grads and cached arrays in one compute dtype (NumPy promotion of them all)."""
    if usable_as_is((state.hs, *grads)):  # the cached arrays are the kernels' own
        return (*grads, *state)
    dtype = float_dtype(*grads, state.hs)
    return tuple(as_float(a, dtype) for a in (*grads, *state))


# ---------------------------------------------------------------------------- vanilla RNN

def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla RNN step: next_h = tanh(x @ Wx + prev_h @ Wh + b).

    Parameters
    ----------
    x : (N, D) input
    prev_h : (N, H) previous hidden state
    Wx : (D, H), Wh : (H, H), b : (H,)

    Returns
    -------
    next_h : (N, H)
    cache : RNNStepCache, for :func:`rnn_step_backward`
    """
    x, h0, Wx, Wh, b = _recurrent_inputs(_step_input(x), prev_h, Wx, Wh, b, 1, "prev_h")
    h, hs = _rnn_forward((x, h0, Wx, Wh, b))
    return h[:, 0, :], RNNStepCache(x, hs, Wx, Wh)


def rnn_step_backward(dnext_h, cache):
    """dnext_h (N, H) -> dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)."""
    check_cache(cache, RNNStepCache, "rnn_step_backward")
    dh = _upstream("dnext_h", dnext_h, cache, ("N", "H"))[:, None, :]
    dx, dprev_h, dWx, dWh, db = _rnn_backward(_backward_arrays((dh,), cache))
    return dx[:, 0, :], dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """Vanilla RNN over a whole sequence.

    Parameters
    ----------
    x : (N, T, D) inputs
    h0 : (N, H) initial hidden state
    Wx : (D, H), Wh : (H, H), b : (H,)

    Returns
    -------
    h : (N, T, H) hidden states
    cache : RNNCache, for :func:`rnn_backward`
    """
    x, h0, Wx, Wh, b = _recurrent_inputs(x, h0, Wx, Wh, b, 1, "h0")
    h, hs = _rnn_forward((x, h0, Wx, Wh, b))
    return h, RNNCache(x, hs, Wx, Wh)


def rnn_backward(dh, cache):
    """dh (N, T, H) upstream grads of each h_t -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    check_cache(cache, RNNCache, "rnn_backward")
    return _rnn_backward(_backward_arrays((_upstream("dh", dh, cache),), cache))


# ---------------------------------------------------------------------------- LSTM

def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step; gates along 4H in the order i, f, o, g.

    Parameters
    ----------
    x : (N, D) input
    prev_h, prev_c : (N, H) previous hidden and cell state
    Wx : (D, 4H), Wh : (H, 4H), b : (4H,)

    Returns
    -------
    next_h, next_c : (N, H)
    cache : LSTMStepCache, for :func:`lstm_step_backward`
    """
    x, h0, Wx, Wh, b, c0 = _recurrent_inputs(
        _step_input(x), prev_h, Wx, Wh, b, 4, "prev_h", extra=[("prev_c", prev_c)])
    h, hs, cs, gates = _lstm_forward((x, h0, c0, Wx, Wh, b))
    # The returned next_c is a copy: the cache's cs must not change if the caller edits it.
    return h[:, 0, :], cs[1].copy(), LSTMStepCache(x, hs, cs, gates, Wx, Wh)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """-> dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).

    ``dnext_c`` is read, never modified.
    """
    check_cache(cache, LSTMStepCache, "lstm_step_backward")
    dh = _upstream("dnext_h", dnext_h, cache, ("N", "H"))[:, None, :]
    dc = _upstream("dnext_c", dnext_c, cache, ("N", "H"))
    dx, dprev_h, dprev_c, dWx, dWh, db = _lstm_backward(_backward_arrays((dh, dc), cache))
    return dx[:, 0, :], dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """LSTM over a whole sequence; the initial cell state is zero.

    Parameters
    ----------
    x : (N, T, D) inputs
    h0 : (N, H) initial hidden state
    Wx : (D, 4H), Wh : (H, 4H), b : (4H,)

    Returns
    -------
    h : (N, T, H) hidden states
    cache : LSTMCache, for :func:`lstm_backward`
    """
    x, h0, Wx, Wh, b = _recurrent_inputs(x, h0, Wx, Wh, b, 4, "h0")
    h, hs, cs, gates = _lstm_forward((x, h0, _zeros(h0.shape, h0.dtype), Wx, Wh, b))
    return h, LSTMCache(x, hs, cs, gates, Wx, Wh)


def lstm_backward(dh, cache):
    """dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    check_cache(cache, LSTMCache, "lstm_backward")
    dh, *state = _backward_arrays((_upstream("dh", dh, cache),), cache)
    # No upstream gradient reaches the last cell state of a sequence.
    dx, dh0, _, dWx, dWh, db = _lstm_backward(
        (dh, _zeros((dh.shape[0], dh.shape[2]), dh.dtype), *state))
    return dx, dh0, dWx, dWh, db


# ---------------------------------------------------------------------------- the rest

def word_embedding_forward(x, W):
    """out[n, t] = W[x[n, t]].

    Parameters
    ----------
    x : (N, T) integer array, every entry in [0, V)
    W : (V, D) word vectors

    Returns
    -------
    out : (N, T, D), in W's float dtype
    cache : WordEmbeddingCache, for :func:`word_embedding_backward`
    """
    W = check_shape("W", W, (None, None), ("V", "D"))
    V, D = W.shape
    x = check_shape("x", x, (None, None), ("N", "T"))
    check_index_dtype("x", x)
    W = as_float(W, float_dtype(W))
    N, T = x.shape
    out = np.empty((N, T, D), dtype=W.dtype)
    private = np.empty((N, T), dtype=np.intp)  # the cache's own copy of the indices
    bad = embedding.embedding_forward(
        np.ascontiguousarray(x).reshape(N * T), W, out.reshape(N * T, D), private.reshape(N * T))
    if bad >= 0:
        raise ValueError(f"x must hold indices in [0, {V}), got {x.flat[bad]} at position "
                         f"{np.unravel_index(bad, x.shape)}")
    return out, WordEmbeddingCache(private, V, D, W.dtype)


def word_embedding_backward(dout, cache):
    """dout (N, T, D) -> dW (V, D); rows of repeated indices accumulate."""
    check_cache(cache, WordEmbeddingCache, "word_embedding_backward")
    N, T = cache.x.shape
    dout = check_shape("dout", dout, (N, T, cache.wordvec_dim), ("N", "T", "D"))
    dtype = float_dtype(dout, np.empty(0, cache.dtype))
    dW = np.zeros((cache.vocab_size, cache.wordvec_dim), dtype=dtype)
    embedding.embedding_backward(
        cache.x.reshape(N * T), as_float(dout, dtype).reshape(N * T, cache.wordvec_dim), dW)
    return dW


def sigmoid(x):
    """Numerically stable logistic 1 / (1 + exp(-x)), elementwise, in x's float dtype.

    Never overflows (no warnings for x = -1e4); NaN stays NaN.
    """
    x = np.asarray(x)
    xf = as_float(x, float_dtype(x))
    out = np.empty_like(xf)
    activations.sigmoid_kernel(xf.reshape(-1), out.reshape(-1))
    return out if out.ndim else out[()]


def temporal_affine_forward(x, w, b):
    """out (N, T, M) = x @ w + b at every time step.

    Parameters
    ----------
    x : (N, T, D), w : (D, M), b : (M,)

    Returns
    -------
    out : (N, T, M)
    cache : TemporalAffineCache, for :func:`temporal_affine_backward`
    """
    x = check_shape("x", x, (None, None, None), ("N", "T", "D"))
    N, T, D = x.shape
    w = check_shape("w", w, (D, None), ("D", "M"))
    b = check_shape("b", b, (w.shape[1],), ("M",))
    dtype = float_dtype(x, w, b)
    x, w, b = (as_float(a, dtype) for a in (x, w, b))
    out = matmul_bias(x.reshape(N * T, D), w, b)
    return out.reshape(N, T, w.shape[1]), TemporalAffineCache(x, w)


def temporal_affine_backward(dout, cache):
    """dout (N, T, M) -> dx (N, T, D), dw (D, M), db (M,)."""
    check_cache(cache, TemporalAffineCache, "temporal_affine_backward")
    x, w = cache
    N, T, D = x.shape
    M = w.shape[1]
    dout = check_shape("dout", dout, (N, T, M), ("N", "T", "M"))
    dtype = float_dtype(dout, x)
    dout2, x2, w = as_float(dout, dtype).reshape(N * T, M), as_float(x, dtype).reshape(N * T, D), \
        as_float(w, dtype)
    dx2, dw, db = matmul_bias_backward(dout2, x2, w)
    return dx2.reshape(N, T, D), dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy summed over unmasked time steps, divided by N (not by the count).

    Parameters
    ----------
    x : (N, T, V) scores
    y : (N, T) integer targets in [0, V)
    mask : (N, T) boolean; False entries contribute neither loss nor gradient
    verbose : print the shape of the flattened gradient, as the classic code does

    Returns
    -------
    loss : scalar of x's float dtype
    dx : (N, T, V) gradient of the loss with respect to x
    """
    x = check_shape("x", x, (None, None, None), ("N", "T", "V"))
    N, T, V = x.shape
    y = check_indices("y", y, V, (N, T), ("N", "T"))
    mask = check_shape("mask", mask, (N, T), ("N", "T"))
    mask = np.array(mask, dtype=bool, order="C")  # a private copy: never a read-only type
    dtype = float_dtype(x)
    x2 = as_float(x, dtype).reshape(N * T, V)
    dx = np.empty_like(x2)
    loss = softmax.softmax_loss(x2, y.reshape(N * T), mask.reshape(N * T), N, dx)
    if verbose:
        print("dx_flat: ", dx.shape)
    return dtype.type(loss), dx.reshape(N, T, V)
