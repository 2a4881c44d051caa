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
from ._workspace import call_threaded, scratch_buffer
from ._validate import (as_float, check_cache, check_indices, check_shape, float_dtype,
                        index_array, numeric_array, position, row_vector, usable_as_is)
from .layers import affine_backward, affine_forward, matmul_bias, matmul_bias_backward

__all__ = [
    "affine_forward", "affine_backward",
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "word_embedding_forward", "word_embedding_backward", "sigmoid",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss",
]


# The backward functions read these caches by field name.  The forwards build them by position
# (locals named like the fields): a keyword call is slower, and a tiny step is all wrapper
# overhead (docs/performance.md, M23).
class RNNCache(NamedTuple):
    """Cache of :func:`rnn_forward`."""
    x: np.ndarray   # (N, T, D) input
    hs: np.ndarray  # (T+1, N, H) hidden states, hs[0] = h0
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)


class RNNStepCache(NamedTuple):
    """Cache of :func:`rnn_step_forward` (a sequence of length 1)."""
    x: np.ndarray   # (N, 1, D) input, broadcast to the batch
    hs: np.ndarray  # (2, N, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    batch: tuple    # next_h.shape[:-1]: (N,), (1,) or () (all inputs 1-D)


class LSTMCache(NamedTuple):
    """Cache of :func:`lstm_forward`."""
    x: np.ndarray      # (N, T, D) input
    hs: np.ndarray     # (T+1, N, H) hidden states, hs[0] = h0
    cs: np.ndarray     # (T+1, N, H) cell states, cs[0] = c0
    gates: np.ndarray  # (T, N, 4H) activated gates i, f, o, g
    Wx: np.ndarray     # (D, 4H)
    Wh: np.ndarray     # (H, 4H)


class LSTMStepCache(NamedTuple):
    """Cache of :func:`lstm_step_forward` (a sequence of length 1)."""
    x: np.ndarray      # (N, 1, D) input, broadcast to the batch
    hs: np.ndarray     # (2, N, H)
    cs: np.ndarray     # (2, N, H)
    gates: np.ndarray  # (1, N, 4H)
    Wx: np.ndarray     # (D, 4H)
    Wh: np.ndarray     # (H, 4H)
    batch: tuple       # next_h.shape[:-1]: (N,), (1,) or () (all inputs 1-D)


class WordEmbeddingCache(NamedTuple):
    x: np.ndarray      # x.shape, private intp copy of the indices (range-checked again in use)
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


def _run(kernel, small_kernel, x, Wh, *arrays):
    """``kernel(*arrays, scratch)``, or ``small_kernel(*arrays)`` for a tiny layer; x (N, T, D)
    and Wh (H, G) are the layer's input and recurrent weights, in the compute dtype."""
    size = _scratch_size(x.shape, Wh.shape)
    if size is None:
        return small_kernel(*arrays)
    return call_threaded(kernel, *arrays, scratch_buffer(x.dtype, size))


@functools.lru_cache(maxsize=1024)
def _zeros(shape, dtype):
    """Zeros for the kernels' c0 / dc_T arguments, which they only read: one private array per
    shape and dtype instead of a new one per call (np.zeros_like is a measurable share of a tiny
    LSTM call: docs/performance.md, M22)."""
    return np.zeros(shape, dtype=dtype)


# ---------------------------------------------------------------------------- arguments
#
# The classic layers are NumPy expressions (x.dot(Wx) + prev_h.dot(Wh) + b), so they accept
# whatever broadcasts: students' own sample() loops pass a (D,) word vector or a (1, H) bias.
# fastrnn accepts the same inputs and returns the same shapes.  The common case (every array
# already of the kernels' shape, dtype and layout) is recognised in a few tuple comparisons;
# everything else takes the general path, which broadcasts and coerces.

def _gate_label(gates):
    return "H" if gates == 1 else f"{gates}H"


def _row_bias(b, G, gates):
    """The bias as (G,), and the batch axes its shape adds to the output: () for (G,), (1,) for
    (1, G)."""
    b = numeric_array("b", b)
    return row_vector("b", b, G, label=_gate_label(gates)), b.shape[:-1]


def _weights(Wx, Wh, D, H, gates):
    """Wx (D, gH) and Wh (H, gH) as arrays, shapes checked."""
    G = gates * H
    gH = _gate_label(gates)
    Wx = check_shape("Wx", numeric_array("Wx", Wx), (D, G), ("D", gH))
    Wh = check_shape("Wh", numeric_array("Wh", Wh), (H, G), ("H", gH))
    return Wx, Wh


def _sequence_inputs(x, h0, Wx, Wh, b, gates):
    """(x (N, T, D), h0 (N, H), Wx (D, gH), Wh (H, gH), b (gH,)) in one C-contiguous float
    dtype.  h0 may also be (H,) or (1, H) (one initial state for every sample), b (1, gH)."""
    arrays = (x, h0, Wx, Wh, b)
    if usable_as_is(arrays):
        x_shape, h0_shape = x.shape, h0.shape
        if len(x_shape) == 3 and len(h0_shape) == 2 and h0_shape[0] == x_shape[0]:
            G = gates * h0_shape[1]
            if Wx.shape == (x_shape[2], G) and Wh.shape == (h0_shape[1], G) and b.shape == (G,):
                return arrays
    x = check_shape("x", numeric_array("x", x), (None, None, None), ("N", "T", "D"))
    N, _, D = x.shape
    h0 = numeric_array("h0", h0)
    if h0.ndim not in (1, 2) or h0.shape[:-1] not in ((), (1,), (N,)):
        raise ValueError(f"h0 must have shape (N={N}, H), (1, H) or (H,), got {h0.shape}")
    H = h0.shape[-1]
    Wx, Wh = _weights(Wx, Wh, D, H, gates)
    b, _ = _row_bias(b, gates * H, gates)
    dtype = float_dtype(x, h0, Wx, Wh, b)
    return [as_float(a, dtype) for a in (x, np.broadcast_to(h0, (N, H)), Wx, Wh, b)]


def _step_inputs(x, prev_h, Wx, Wh, b, gates, prev_c=None):
    """The step functions' arguments as a length-1 sequence for the kernels: x (N, 1, D),
    prev_h (N, H), Wx, Wh, b (gH,) and, for the LSTM, prev_c (N, H); and the batch axes of the
    outputs, ``next_h.shape[:-1]``.

    As in the classic code, x may be (D,) and prev_h / prev_c (H,), b (1, gH): the batch axes
    are those of NumPy's broadcast (x.dot(Wx) + prev_h.dot(Wh) + b), (N,), (1,) or ()."""
    arrays = (x, prev_h, Wx, Wh, b) if prev_c is None else (x, prev_h, Wx, Wh, b, prev_c)
    if usable_as_is(arrays):
        x_shape, h_shape = x.shape, prev_h.shape
        if len(x_shape) == 2 and len(h_shape) == 2 and h_shape[0] == x_shape[0]:
            G = gates * h_shape[1]
            if Wx.shape == (x_shape[1], G) and Wh.shape == (h_shape[1], G) and \
                    b.shape == (G,) and (prev_c is None or prev_c.shape == h_shape):
                if prev_c is None:
                    return (x[:, None, :], prev_h, Wx, Wh, b), h_shape[:1]
                return (x[:, None, :], prev_h, Wx, Wh, b, prev_c), h_shape[:1]
    x = numeric_array("x", x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (N, D) or (D,), got {x.shape}")
    prev_h = numeric_array("prev_h", prev_h)
    H = prev_h.shape[-1] if prev_h.ndim else None
    states = [("prev_h", prev_h)] + ([] if prev_c is None else [("prev_c", prev_c)])
    batch = x.shape[:-1]
    for i, (name, state) in enumerate(states):
        states[i] = numeric_array(name, state)
        batch = _broadcast_batch(name, states[i], batch, H)
    Wx, Wh = _weights(Wx, Wh, x.shape[-1], H, gates)
    b, b_batch = _row_bias(b, gates * H, gates)
    batch = np.broadcast_shapes(batch, b_batch)
    N = batch[0] if batch else 1
    dtype = float_dtype(x, Wx, Wh, b, *states)
    x = as_float(np.broadcast_to(x, batch + x.shape[-1:]).reshape(N, 1, -1), dtype)
    states = [as_float(np.broadcast_to(s, batch + (H,)).reshape(N, H), dtype) for s in states]
    Wx, Wh, b = (as_float(a, dtype) for a in (Wx, Wh, b))
    return (x, states[0], Wx, Wh, b, *states[1:]), batch


def _broadcast_batch(name, state, batch, H):
    """The batch axes of ``batch`` and a (N, H) or (H,) state broadcast together; ValueError
    naming the state when they do not broadcast."""
    if state.ndim in (1, 2) and state.shape[-1] == H:
        try:
            return np.broadcast_shapes(batch, state.shape[:-1])
        except ValueError:
            pass
    want = f"(N={batch[0]}, H)" if batch else "(N, H)"
    raise ValueError(f"{name} must have shape {want} or (H,), got {state.shape}")


def _upstream(name, grad, state):
    """An upstream gradient (N, T, H) of a sequence, its shape read off the cached states."""
    T1, N, H = state.hs.shape
    return check_shape(name, grad, (N, T1 - 1, H), ("N", "T", "H"))


def _step_upstream(name, grad, cache):
    """dnext_h / dnext_c of a step cache: shape batch + (H,), as the kernels' (N, H)."""
    T1, N, H = cache.hs.shape
    batch = cache.batch
    grad = check_shape(name, grad, batch + (H,), ("N", "H")[-len(batch) - 1:])
    return grad.reshape(N, H)


def _coerced(grads, cache, fields):
    """The upstream ``grads`` (a list) and the cache's ``fields`` (a dict: by name), all in one
    C-contiguous float dtype."""
    cached = {name: numeric_array(f"cache.{name}", getattr(cache, name)) for name in fields}
    dtype = float_dtype(*grads, *cached.values())
    return ([as_float(grad, dtype) for grad in grads],
            {name: as_float(array, dtype) for name, array in cached.items()})


def _misfit(function, cache, shapes):
    """The ValueError for cached arrays that no longer fit together: the first whose shape
    differs from what hs (S, N, H), x (N, T, D) and Wh (H, G) ask for.  ``shapes`` maps each
    cached field to its axes, e.g. ``{"hs": "SNH", "x": "NTD"}``."""
    actual = {name: np.shape(getattr(cache, name)) for name in shapes}
    sizes = {}
    for name, pattern in shapes.items():
        if len(actual[name]) == len(pattern):
            for letter, size in zip(pattern, actual[name]):
                sizes.setdefault(letter, size)
    if "S" in sizes:
        sizes["T"] = sizes["S"] - 1
    for name, pattern in shapes.items():
        want = tuple(sizes.get(letter) for letter in pattern)
        if actual[name] != want:
            return ValueError(
                f"{function}: the cache's {name} has shape {actual[name]}, but the other cached "
                f"arrays need {want} (was an array of the cache reshaped or replaced after the "
                f"forward?)")
    return ValueError(f"{function}: the cached arrays do not fit together")


# The caches keep the caller's own arrays and are plain NamedTuples, so a weight reshaped in
# place after the forward, or a cache rebuilt with ``_replace``, must raise before a kernel
# that trusts the shapes runs: one tuple comparison (tiny calls are all overhead).  The arrays
# are read from the cache by name; the kernels' argument order is their own.
_RNN_SHAPES = {"hs": "SNH", "x": "NTD", "Wx": "DH", "Wh": "HH"}
_LSTM_SHAPES = {"hs": "SNH", "x": "NTD", "cs": "SNH", "gates": "TNG", "Wx": "DG", "Wh": "HG"}


def _rnn_backward(function, dh, cache):
    """dx, dh0, dWx, dWh, db from the RNN backward kernel for upstream dh (N, T, H)."""
    hs, x, Wx, Wh = cache.hs, cache.x, cache.Wx, cache.Wh
    if not usable_as_is((dh, hs, x, Wx, Wh)):
        (dh,), coerced = _coerced((dh,), cache, _RNN_SHAPES)
        hs, x, Wx, Wh = coerced["hs"], coerced["x"], coerced["Wx"], coerced["Wh"]
    shape = hs.shape
    if len(shape) != 3 or len(x.shape) != 3 or \
            (x.shape, Wx.shape, Wh.shape) != ((shape[1], shape[0] - 1, x.shape[2]),
                                              (x.shape[2], shape[2]), (shape[2], shape[2])):
        raise _misfit(function, cache, _RNN_SHAPES)
    return _run(recurrent.rnn_backward, recurrent.rnn_backward_small, x, Wh, dh, x, hs, Wx, Wh)


def _lstm_backward(function, dh, dc_last, cache):
    """dx, dh0, dc0, dWx, dWh, db from the LSTM backward kernel."""
    hs, x, cs, gates, Wx, Wh = cache.hs, cache.x, cache.cs, cache.gates, cache.Wx, cache.Wh
    if not usable_as_is((dh, dc_last, hs, x, cs, gates, Wx, Wh)):
        (dh, dc_last), coerced = _coerced((dh, dc_last), cache, _LSTM_SHAPES)
        hs, x, cs, gates, Wx, Wh = (coerced["hs"], coerced["x"], coerced["cs"],
                                    coerced["gates"], coerced["Wx"], coerced["Wh"])
    shape = hs.shape
    if len(shape) != 3 or len(x.shape) != 3 or \
            (x.shape, cs.shape, gates.shape, Wx.shape, Wh.shape) != (
                (shape[1], shape[0] - 1, x.shape[2]), shape, (shape[0] - 1, shape[1], 4 * shape[2]),
                (x.shape[2], 4 * shape[2]), (shape[2], 4 * shape[2])):
        raise _misfit(function, cache, _LSTM_SHAPES)
    return _run(recurrent.lstm_backward, recurrent.lstm_backward_small, x, Wh,
                dh, dc_last, x, hs, cs, gates, Wx, Wh)


# ---------------------------------------------------------------------------- vanilla RNN

def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla RNN step: next_h = tanh(x @ Wx + prev_h @ Wh + b).

    Parameters
    ----------
    x : (N, D) input, or (D,) (broadcast against prev_h, as in NumPy)
    prev_h : (N, H) previous hidden state, or (H,)
    Wx : (D, H), Wh : (H, H), b : (H,) or (1, H)

    Returns
    -------
    next_h : (N, H); the broadcast shape of the inputs' batch axes + (H,)
    cache : RNNStepCache, for :func:`rnn_step_backward`
    """
    (x, h0, Wx, Wh, b), batch = _step_inputs(x, prev_h, Wx, Wh, b, 1)
    h, hs = _run(recurrent.rnn_forward, recurrent.rnn_forward_small, x, Wh, x, h0, Wx, Wh, b)
    return h.reshape(batch + (-1,)), RNNStepCache(x, hs, Wx, Wh, batch)


def rnn_step_backward(dnext_h, cache):
    """dnext_h (N, H) -> dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,).

    With 1-D inputs, dx and dprev_h have the shapes of the broadcast x and prev_h."""
    check_cache(cache, RNNStepCache, "rnn_step_backward")
    dh = _step_upstream("dnext_h", dnext_h, cache)[:, None, :]
    dx, dprev_h, dWx, dWh, db = _rnn_backward("rnn_step_backward", dh, cache)
    batch = cache.batch
    return dx.reshape(batch + (-1,)), dprev_h.reshape(batch + (-1,)), dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """Vanilla RNN over a whole sequence.

    Parameters
    ----------
    x : (N, T, D) inputs
    h0 : (N, H) initial hidden state; (H,) or (1, H) for one state shared by every sample
    Wx : (D, H), Wh : (H, H), b : (H,) or (1, H)

    Returns
    -------
    h : (N, T, H) hidden states
    cache : RNNCache, for :func:`rnn_backward`
    """
    x, h0, Wx, Wh, b = _sequence_inputs(x, h0, Wx, Wh, b, 1)
    h, hs = _run(recurrent.rnn_forward, recurrent.rnn_forward_small, x, Wh, x, h0, Wx, Wh, b)
    return h, RNNCache(x, hs, Wx, Wh)


def rnn_backward(dh, cache):
    """dh (N, T, H) upstream grads of each h_t -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    check_cache(cache, RNNCache, "rnn_backward")
    return _rnn_backward("rnn_backward", _upstream("dh", dh, cache), cache)


# ---------------------------------------------------------------------------- LSTM

def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step; gates along 4H in the order i, f, o, g.

    Parameters
    ----------
    x : (N, D) input, or (D,) (broadcast against prev_h, as in NumPy)
    prev_h, prev_c : (N, H) previous hidden and cell state, or (H,)
    Wx : (D, 4H), Wh : (H, 4H), b : (4H,) or (1, 4H)

    Returns
    -------
    next_h, next_c : (N, H); the broadcast shape of the inputs' batch axes + (H,)
    cache : LSTMStepCache, for :func:`lstm_step_backward`
    """
    (x, h0, Wx, Wh, b, c0), batch = _step_inputs(x, prev_h, Wx, Wh, b, 4, prev_c)
    h, hs, cs, gates = _run(recurrent.lstm_forward, recurrent.lstm_forward_small, x, Wh,
                            x, h0, c0, Wx, Wh, b)
    # The returned next_c is a copy: the cache's cs must not change if the caller edits it.
    shape = batch + (-1,)
    return (h.reshape(shape), cs[1].reshape(shape).copy(),
            LSTMStepCache(x, hs, cs, gates, Wx, Wh, batch))


def lstm_step_backward(dnext_h, dnext_c, cache):
    """-> dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).

    ``dnext_c`` is read, never modified.  With 1-D inputs, dx, dprev_h and dprev_c have the
    shapes of the broadcast x, prev_h and prev_c."""
    check_cache(cache, LSTMStepCache, "lstm_step_backward")
    dh = _step_upstream("dnext_h", dnext_h, cache)[:, None, :]
    dc = _step_upstream("dnext_c", dnext_c, cache)
    dx, dprev_h, dprev_c, dWx, dWh, db = _lstm_backward("lstm_step_backward", dh, dc, cache)
    shape = cache.batch + (-1,)
    return dx.reshape(shape), dprev_h.reshape(shape), dprev_c.reshape(shape), dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """LSTM over a whole sequence; the initial cell state is zero.

    Parameters
    ----------
    x : (N, T, D) inputs
    h0 : (N, H) initial hidden state; (H,) or (1, H) for one state shared by every sample
    Wx : (D, 4H), Wh : (H, 4H), b : (4H,) or (1, 4H)

    Returns
    -------
    h : (N, T, H) hidden states
    cache : LSTMCache, for :func:`lstm_backward`
    """
    x, h0, Wx, Wh, b = _sequence_inputs(x, h0, Wx, Wh, b, 4)
    h, hs, cs, gates = _run(recurrent.lstm_forward, recurrent.lstm_forward_small, x, Wh,
                            x, h0, _zeros(h0.shape, h0.dtype), Wx, Wh, b)
    return h, LSTMCache(x, hs, cs, gates, Wx, Wh)


def lstm_backward(dh, cache):
    """dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    check_cache(cache, LSTMCache, "lstm_backward")
    dh = _upstream("dh", dh, cache)
    # No upstream gradient reaches the last cell state of a sequence.
    dc_last = _zeros((dh.shape[0], dh.shape[2]), dh.dtype)  # (dh's dtype: NumPy's own object,
    # hashed faster than the copies Numba's arrays carry)
    dx, dh0, _, dWx, dWh, db = _lstm_backward("lstm_backward", dh, dc_last, cache)
    return dx, dh0, dWx, dWh, db


# ---------------------------------------------------------------------------- the rest

def word_embedding_forward(x, W):
    """out[...] = W[x[...]]: the word vector of every index.

    Parameters
    ----------
    x : (N, T) integer array, every entry in [0, V); any shape (a scalar, (N,), (N, T, K)), and
        float indices holding whole numbers, are accepted as the classic ``W[x, :]`` would
    W : (V, D) word vectors

    Returns
    -------
    out : x.shape + (D,), in W's float dtype
    cache : WordEmbeddingCache, for :func:`word_embedding_backward`
    """
    W = check_shape("W", numeric_array("W", W), (None, None), ("V", "D"))
    V, D = W.shape
    x = index_array("x", x, V)
    W = as_float(W, float_dtype(W))
    out = np.empty(x.shape + (D,), dtype=W.dtype)
    private = np.empty(x.shape, dtype=np.intp)  # the cache's own copy of the indices
    R = x.size
    bad = embedding.embedding_forward(x.reshape(R), W, out.reshape(R, D), private.reshape(R))
    if bad >= 0:
        raise ValueError(f"x must hold indices in [0, {V}), got {x.flat[bad]} at position "
                         f"{position(bad, x.shape)}")
    return out, WordEmbeddingCache(private, V, D, W.dtype)


def word_embedding_backward(dout, cache):
    """dout (N, T, D) -> dW (V, D); rows of repeated indices accumulate.

    dout has the forward's output shape, x.shape + (D,)."""
    check_cache(cache, WordEmbeddingCache, "word_embedding_backward")
    V, D = int(cache.vocab_size), int(cache.wordvec_dim)
    # The cache is the caller's to touch: its indices are range-checked again by the kernel.
    x = index_array("cache.x", cache.x, V)
    dout = check_shape("dout", numeric_array("dout", dout), x.shape + (D,),
                       ("N", "T", "K")[:x.ndim] + ("D",))
    dtype = float_dtype(dout, np.empty(0, cache.dtype))
    dW = np.zeros((V, D), dtype=dtype)
    R = x.size
    bad = embedding.embedding_backward(x.reshape(R), as_float(dout, dtype).reshape(R, D), dW)
    if bad >= 0:
        raise ValueError(f"word_embedding_backward: the cache's x holds {x.flat[bad]}, outside "
                         f"[0, {V}) (was the cache changed after the forward?)")
    return dW


def sigmoid(x):
    """Numerically stable logistic 1 / (1 + exp(-x)), elementwise, in x's float dtype.

    Never overflows (no warnings for x = -1e4); NaN stays NaN.
    """
    x = numeric_array("x", x)
    xf = as_float(x, float_dtype(x))
    out = np.empty_like(xf)
    activations.sigmoid_kernel(xf.reshape(-1), out.reshape(-1))
    return out if out.ndim else out[()]


def temporal_affine_forward(x, w, b):
    """out (N, T, M) = x @ w + b at every time step.

    Parameters
    ----------
    x : (N, T, D), w : (D, M), b : (M,) (or (1, M), (1, 1, M), as NumPy broadcasts it)

    Returns
    -------
    out : (N, T, M)
    cache : TemporalAffineCache, for :func:`temporal_affine_backward`
    """
    x = check_shape("x", numeric_array("x", x), (None, None, None), ("N", "T", "D"))
    N, T, D = x.shape
    w = check_shape("w", numeric_array("w", w), (D, None), ("D", "M"))
    b = row_vector("b", b, w.shape[1], max_ndim=3)
    dtype = float_dtype(x, w, b)
    x, w, b = (as_float(a, dtype) for a in (x, w, b))
    out = matmul_bias(x.reshape(N * T, D), w, b)
    return out.reshape(N, T, w.shape[1]), TemporalAffineCache(x, w)


def temporal_affine_backward(dout, cache):
    """dout (N, T, M) -> dx (N, T, D), dw (D, M), db (M,)."""
    check_cache(cache, TemporalAffineCache, "temporal_affine_backward")
    x, w = numeric_array("cache.x", cache.x), numeric_array("cache.w", cache.w)
    if x.ndim != 3 or w.ndim != 2 or w.shape[0] != x.shape[2]:
        raise ValueError(f"temporal_affine_backward: the cache's x {x.shape} and w {w.shape} "
                         f"do not fit (N, T, D) and (D, M) (changed after the forward?)")
    N, T, D = x.shape
    M = w.shape[1]
    dout = check_shape("dout", numeric_array("dout", dout), (N, T, M), ("N", "T", "M"))
    dtype = float_dtype(dout, x, w)
    dout2, x2, w = (as_float(dout, dtype).reshape(N * T, M), as_float(x, dtype).reshape(N * T, D),
                    as_float(w, dtype))
    dx2, dw, db = matmul_bias_backward(dout2, x2, w)
    return dx2.reshape(N, T, D), dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy summed over unmasked time steps, divided by N (not by the count).

    Parameters
    ----------
    x : (N, T, V) scores
    y : (N, T) integer targets in [0, V) (float arrays of whole numbers are accepted)
    mask : (N, T) boolean; False entries contribute neither loss nor gradient.  As in the
        classic code, which multiplies by it, a numeric mask weights each step's loss and
        gradient (0.5 halves them)
    verbose : print the shape of the flattened gradient, as the classic code does

    Returns
    -------
    loss : scalar of x's float dtype
    dx : (N, T, V) gradient of the loss with respect to x
    """
    x = check_shape("x", numeric_array("x", x), (None, None, None), ("N", "T", "V"))
    N, T, V = x.shape
    y = check_indices("y", y, V, (N, T), ("N", "T"))
    mask = check_shape("mask", numeric_array("mask", mask), (N, T), ("N", "T"))
    weights = np.array(mask, dtype=np.float64, order="C")  # private, and one kernel signature
    dtype = float_dtype(x)
    x2 = as_float(x, dtype).reshape(N * T, V)
    dx = np.empty_like(x2)
    loss = softmax.softmax_loss(x2, y.reshape(N * T), weights.reshape(N * T), N, dx)
    if verbose:
        print("dx_flat: ", dx.shape)
    return dtype.type(loss), dx.reshape(N, T, V)
