"""Vanilla RNN and LSTM kernels: whole sequences, forward and backward.

Layout (the structure oneDNN / cuDNN use, see docs/performance.md):

* The input projection x @ Wx for all T steps is ONE product with M = N*T, before the loop.
* Per step only h_{t-1} @ Wh, accumulated into that time-major projection (the packed product of
  :mod:`.packed`, Wh packed once per call; BLAS with beta = 1 for tiny sizes), then
  the gate math as short simple loops over one row of a sample (each loop is vectorised by
  LLVM; one fused loop that reads seven arrays and writes four is not).
* States are stored time-major, ``hs[t]`` (T+1, N, H) with ``hs[0] = h0``, so ``hs[t]`` is the
  contiguous left operand of the step product and ``hs[:T]`` the contiguous (T*N, H) operand of
  dWh after the loop.  The batch-major output h (N, T, H) is a separate array: the caller may
  modify it without changing what backward computes.
* Backward: per step only the gate gradients dA_t and dA_t @ Whᵀ; after the loop
  dX = dA @ Wxᵀ and [dWx; dWh] = [X | H_prev]ᵀ @ dA as two products with M = N*T.
* Compiled ``parallel=True`` (prange only): the packed helpers are inlined, so their ``prange``
  loops run on Numba's thread pool as part of these kernels (see :mod:`.packed` for why no
  parallel function is called as a separate one).
* Kept for backward (per sample and step): LSTM 4H activated gates + c + h = 6H numbers,
  RNN H; tanh(c) is recomputed (cheaper than storing it).

* Layers below :data:`SMALL_MAX` multiply-adds per step (N=2, H=6, say) run the ``*_small``
  kernels instead: plain per-sample loops, serial, no scratch (see the section at the end).

A step function is the T = 1 case of these kernels (c0 and dc_T are arguments for that).
All arrays are C-contiguous and share one float dtype; no validation happens here.  ``scratch``
is a 1-D buffer of that dtype, reused from call to call by the caller, for the packed weight
panels (:mod:`.packed`) and, in backward, the gate gradients dA in front of them: see
:func:`scratch_size`.  Any size works (a short one means fresh allocations, which cost their page
faults: docs/performance.md, M6).
"""
import numpy as np
from numba import prange

from .._jit import jit
from .activations import gate, tanh
from .linalg import as_dtype_of, column_sum, swap_leading_axes
from .packed import dot, pack_for_product, product
from .packed import scratch_size as scratch_panels_size

# Per-step gate math over at least this many gate values runs its rows on Numba's threads
# (starting a parallel loop costs as much as many gate values: docs/performance.md, fact 12
# and M15).
PARALLEL_GATES_MIN = 8192


def scratch_size(N, T, D, H, G):
    """Elements of the scratch buffer that spares every large temporary of these kernels for
    a layer with input (N, T, D), hidden size H and G = gates * H."""
    return T * N * G + scratch_panels_size((max(D, H, N * T), G), (G, max(D, H)))


@jit
def _gradient_buffer(scratch, T, N, G):
    """(dA (T, N, G), the rest of scratch for panels): dA from scratch when it fits."""
    size = T * N * G
    if scratch.size >= size:
        return scratch[:size].reshape((T, N, G)), scratch[size:]
    return np.empty((T, N, G), dtype=scratch.dtype), scratch


@jit(parallel=True)
def rnn_forward(x, h0, Wx, Wh, b, scratch):
    """x (N, T, D), h0 (N, H) -> h (N, T, H) and hs (T+1, N, H) for backward."""
    N, T, D = x.shape
    H = h0.shape[1]
    # pre[t] = x_t @ Wx for every step at once, time-major; each step adds h_{t-1} @ Wh to it.
    pre = dot(swap_leading_axes(x).reshape(T * N, D), Wx, scratch).reshape(T, N, H)
    hs = np.empty((T + 1, N, H), dtype=x.dtype)
    hs[0] = h0
    h = np.empty((N, T, H), dtype=x.dtype)
    Wh_panels = pack_for_product(N, Wh, scratch)
    rows_parallel = N * H >= PARALLEL_GATES_MIN
    for t in range(T):
        product(hs[t], Wh, Wh_panels, pre[t], True)
        if rows_parallel:
            for n in prange(N):
                _rnn_forward_row(pre, b, hs, h, t, n)
        else:
            for n in range(N):
                _rnn_forward_row(pre, b, hs, h, t, n)
    return h, hs


# The row helpers index whole arrays with (t, n) rather than take row views: a view costs a
# reference-count increment and decrement, a measurable share of a tiny forward
# (docs/performance.md, M16).

@jit(inline="always")
def _rnn_forward_row(pre, b, hs, h, t, n):
    """Sample n of step t: hs[t+1, n] = h[n, t] = tanh(pre[t, n] + b)."""
    for j in range(b.size):
        h_j = tanh(pre[t, n, j] + b[j])
        hs[t + 1, n, j] = h_j
        h[n, t, j] = h_j


@jit(parallel=True)
def rnn_backward(dh, x, hs, Wx, Wh, scratch):
    """dh (N, T, H) upstream grads of every h_t -> dx, dh0, dWx, dWh, db."""
    N, T, H = dh.shape
    da, scratch = _gradient_buffer(scratch, T, N, H)
    dh_next = np.zeros((N, H), dtype=dh.dtype)
    WhT_panels = pack_for_product(N, Wh.T, scratch)
    rows_parallel = N * H >= PARALLEL_GATES_MIN
    for t in range(T - 1, -1, -1):
        if rows_parallel:
            for n in prange(N):
                _rnn_backward_row(dh, dh_next, hs, da, t, n)
        else:
            for n in range(N):
                _rnn_backward_row(dh, dh_next, hs, da, t, n)
        product(da[t], Wh.T, WhT_panels, dh_next, False)
    return _input_gradients(da, dh_next, x, hs, Wx, scratch)


@jit(inline="always")
def _input_gradients(da, dh_next, x, hs, Wx, scratch):
    """dx, dh0 = dh_next, dWx, dWh, db from the gate gradients da (T, N, G) of every step."""
    T, N, G = da.shape
    D = x.shape[2]
    da2 = da.reshape(T * N, G)
    dx = swap_leading_axes(dot(da2, Wx.T, scratch).reshape(T, N, D))
    # dWx and dWh as one product, [x_t | h_{t-1}]ᵀ @ dA, whose first D rows are dWx: one
    # packing of dA and one thread launch (docs/performance.md, M17).
    dW = dot(_step_inputs(x, hs).T, da2, scratch)
    return dx, dh_next, dW[:D], dW[D:], column_sum(da2)


@jit(inline="always")
def _step_inputs(x, hs):
    """The rows [x[n, t] | hs[t, n]] (T*N, D+H), time-major.  (x is re-laid here rather than
    kept from forward: the cache stays small.)"""
    N, T, D = x.shape
    H = hs.shape[2]
    xh = np.empty((T * N, D + H), dtype=x.dtype)
    for t in range(T):
        for n in range(N):
            row = t * N + n
            for k in range(D):
                xh[row, k] = x[n, t, k]
            for k in range(H):
                xh[row, D + k] = hs[t, n, k]
    return xh


@jit(inline="always")
def _rnn_backward_row(dh, dh_next, hs, da, t, n):
    """Sample n of step t: da[t, n] from the upstream dh[n, t] + dh_next[n]."""
    for j in range(dh_next.shape[1]):
        h_j = hs[t + 1, n, j]
        da[t, n, j] = (dh[n, t, j] + dh_next[n, j]) * (1 - h_j * h_j)


@jit(parallel=True)
def lstm_forward(x, h0, c0, Wx, Wh, b, scratch):
    """x (N, T, D), h0, c0 (N, H) -> h (N, T, H), hs, cs (T+1, N, H), gates (T, N, 4H).

    ``gates[t, n]`` holds the activated i, f, o, g (in that order along 4H).
    """
    N, T, D = x.shape
    H = h0.shape[1]
    # gates[t] = x_t @ Wx for every step at once, time-major; each step adds h_{t-1} @ Wh and
    # the bias and then activates in place.
    gates = dot(swap_leading_axes(x).reshape(T * N, D), Wx, scratch).reshape(T, N, 4 * H)
    h, hs, cs, tanh_gate = _lstm_forward_arrays(h0, c0, T)
    Wh_panels = pack_for_product(N, Wh, scratch)
    rows_parallel = N * 4 * H >= PARALLEL_GATES_MIN
    for t in range(T):
        product(hs[t], Wh, Wh_panels, gates[t], True)
        if rows_parallel:
            for n in prange(N):
                _lstm_forward_row(gates, b, tanh_gate, cs, hs, h, t, n)
        else:
            for n in range(N):
                _lstm_forward_row(gates, b, tanh_gate, cs, hs, h, t, n)
    return h, hs, cs, gates


@jit(inline="always")
def _lstm_forward_arrays(h0, c0, T):
    """The outputs h (N, T, H), hs and cs (T+1, N, H) with hs[0] = h0 and cs[0] = c0, and
    ``tanh_gate`` (4H): which gate values are g's (a tanh), the others sigmoids."""
    N, H = h0.shape
    hs = np.empty((T + 1, N, H), dtype=h0.dtype)
    cs = np.empty((T + 1, N, H), dtype=h0.dtype)
    hs[0] = h0
    cs[0] = c0
    h = np.empty((N, T, H), dtype=h0.dtype)
    # All four gates in one vectorised pass of one function, a tanh or a sigmoid by a flag
    # (faster than a sigmoid pass and a tanh pass, which do not both vectorise as well:
    # docs/performance.md, M18; g is the accurate tanh, not 2 sigmoid(2a) - 1, which loses
    # relative accuracy near 0).
    tanh_gate = np.zeros(4 * H, dtype=np.bool_)
    tanh_gate[3 * H:] = True
    return h, hs, cs, tanh_gate


@jit(inline="always")
def _lstm_forward_row(gates, b, tanh_gate, cs, hs, h, t, n):
    """Sample n of step t: activate gates[t, n] (4H) in place; cs[t+1, n], hs[t+1, n] and
    h[n, t] from them."""
    H = cs.shape[2]
    for j in range(4 * H):
        gates[t, n, j] = gate(gates[t, n, j] + b[j], tanh_gate[j])
    for j in range(H):
        cs[t + 1, n, j] = (gates[t, n, H + j] * cs[t, n, j]
                           + gates[t, n, j] * gates[t, n, 3 * H + j])
    for j in range(H):
        h_j = gates[t, n, 2 * H + j] * tanh(cs[t + 1, n, j])
        hs[t + 1, n, j] = h_j
        h[n, t, j] = h_j


@jit(parallel=True)
def lstm_backward(dh, dc_last, x, hs, cs, gates, Wx, Wh, scratch):
    """dh (N, T, H), dc_last (N, H) upstream grad of c_T -> dx, dh0, dc0, dWx, dWh, db."""
    N, T, H = dh.shape
    da, scratch = _gradient_buffer(scratch, T, N, 4 * H)
    dh_next = np.zeros((N, H), dtype=dh.dtype)
    dc = dc_last.copy()
    WhT_panels = pack_for_product(N, Wh.T, scratch)
    rows_parallel = N * 4 * H >= PARALLEL_GATES_MIN
    for t in range(T - 1, -1, -1):
        if rows_parallel:
            for n in prange(N):
                _lstm_backward_row(dh, dh_next, gates, cs, dc, da, t, n)
        else:
            for n in range(N):
                _lstm_backward_row(dh, dh_next, gates, cs, dc, da, t, n)
        product(da[t], Wh.T, WhT_panels, dh_next, False)
    dx, dh0, dWx, dWh, db = _input_gradients(da, dh_next, x, hs, Wx, scratch)
    return dx, dh0, dc, dWx, dWh, db


@jit(inline="always")
def _lstm_backward_row(dh, dh_next, gates, cs, dc, da, t, n):
    """Sample n of step t: gate gradients da[t, n] (4H) from the upstream dh[n, t] + dh_next[n]
    and the running dc[n] (updated in place to the gradient of c_t)."""
    H = dc.shape[1]
    for j in range(H):
        dh_j = dh[n, t, j] + dh_next[n, j]
        tanh_c = tanh(cs[t + 1, n, j])
        o = gates[t, n, 2 * H + j]
        dc[n, j] += dh_j * o * (1 - tanh_c * tanh_c)
        da[t, n, 2 * H + j] = dh_j * tanh_c * o * (1 - o)
    for j in range(H):
        i = gates[t, n, j]
        f = gates[t, n, H + j]
        g = gates[t, n, 3 * H + j]
        dc_j = dc[n, j]
        da[t, n, j] = dc_j * g * i * (1 - i)
        da[t, n, H + j] = dc_j * cs[t, n, j] * f * (1 - f)
        da[t, n, 3 * H + j] = dc_j * i * (1 - g * g)
        dc[n, j] = dc_j * f


# ---------------------------------------------------------------------------- tiny layers
#
# Below SMALL_MAX multiply-adds per step a layer is all overhead: every product is a few dozen
# multiply-adds, and the hoisted products, layout copies and packing of the kernels above cost
# more than they save.  These kernels run each sample's step as plain loops (same row helpers,
# same gate math), serial, without scratch and with the GIL held; dWx, dWh and db are
# accumulated in float64.

SMALL_MAX = 768  # N * (D + H) * G; where the kernels below stop winning (docs/performance.md,
#                  M19)


def is_small(N, D, H, G):
    """True when a layer with batch N, input D, hidden H and G = gates * H runs the tiny
    kernels."""
    return N * (D + H) * G <= SMALL_MAX


@jit(nogil=False)
def rnn_forward_small(x, h0, Wx, Wh, b):
    """:func:`rnn_forward` for tiny layers."""
    N, T, _ = x.shape
    H = h0.shape[1]
    pre = np.empty((T, N, H), dtype=x.dtype)
    hs = np.empty((T + 1, N, H), dtype=x.dtype)
    hs[0] = h0
    h = np.empty((N, T, H), dtype=x.dtype)
    # tanh over a step's N*H values at once, not row by row: a row of H < 8 values runs the
    # vectorised loop's scalar remainder only (docs/performance.md, M20)
    pre_flat, hs_flat = pre.reshape(T * N * H), hs.reshape((T + 1) * N * H)
    for t in range(T):
        for n in range(N):
            _step_product_short(x, hs, Wx, Wh, b, pre, t, n)
        start = t * N * H
        for i in range(N * H):
            hs_flat[start + N * H + i] = tanh(pre_flat[start + i])
        for n in range(N):
            for j in range(H):
                h[n, t, j] = hs[t + 1, n, j]
    return h, hs


@jit(nogil=False)
def rnn_backward_small(dh, x, hs, Wx, Wh):
    """:func:`rnn_backward` for tiny layers."""
    N, T, H = dh.shape
    da = np.empty((T, N, H), dtype=dh.dtype)
    dx, dh_next, dWx, dWh, db = _small_gradients(x, hs, Wx, Wh)
    for t in range(T - 1, -1, -1):
        for n in range(N):
            _rnn_backward_row(dh, dh_next, hs, da, t, n)
            _step_gradients(da, x, hs, Wx, Wh, dx, dh_next, dWx, dWh, db, t, n)
    return dx, dh_next, as_dtype_of(dWx, dh), as_dtype_of(dWh, dh), as_dtype_of(db, dh)


@jit(nogil=False)
def lstm_forward_small(x, h0, c0, Wx, Wh, b):
    """:func:`lstm_forward` for tiny layers."""
    N, T, _ = x.shape
    H = h0.shape[1]
    gates = np.empty((T, N, b.size), dtype=x.dtype)
    h, hs, cs, tanh_gate = _lstm_forward_arrays(h0, c0, T)
    # tanh(c) over a step's N*H cells at once, as in rnn_forward_small (docs/performance.md,
    # M20)
    hs_flat, cs_flat = hs.reshape((T + 1) * N * H), cs.reshape((T + 1) * N * H)
    for t in range(T):
        for n in range(N):
            _step_product(x, hs, Wx, Wh, gates, t, n)
            for j in range(4 * H):
                gates[t, n, j] = gate(gates[t, n, j] + b[j], tanh_gate[j])
            for j in range(H):
                cs[t + 1, n, j] = (gates[t, n, H + j] * cs[t, n, j]
                                   + gates[t, n, j] * gates[t, n, 3 * H + j])
        start = (t + 1) * N * H
        for i in range(N * H):
            hs_flat[start + i] = tanh(cs_flat[start + i])
        for n in range(N):
            for j in range(H):
                h_j = gates[t, n, 2 * H + j] * hs[t + 1, n, j]
                hs[t + 1, n, j] = h_j
                h[n, t, j] = h_j
    return h, hs, cs, gates


@jit(nogil=False)
def lstm_backward_small(dh, dc_last, x, hs, cs, gates, Wx, Wh):
    """:func:`lstm_backward` for tiny layers."""
    N, T, H = dh.shape
    da = np.empty((T, N, 4 * H), dtype=dh.dtype)
    dc = dc_last.copy()
    dx, dh_next, dWx, dWh, db = _small_gradients(x, hs, Wx, Wh)
    for t in range(T - 1, -1, -1):
        for n in range(N):
            _lstm_backward_row(dh, dh_next, gates, cs, dc, da, t, n)
            _step_gradients(da, x, hs, Wx, Wh, dx, dh_next, dWx, dWh, db, t, n)
    return dx, dh_next, dc, as_dtype_of(dWx, dh), as_dtype_of(dWh, dh), as_dtype_of(db, dh)


@jit(inline="always")
def _step_product(x, hs, Wx, Wh, pre, t, n):
    """pre[t, n] = x[n, t] @ Wx + hs[t, n] @ Wh, a row of weights at a time (vectorised along
    G): the LSTM's, G = 4H >= 16 mostly."""
    G = pre.shape[2]
    for j in range(G):
        pre[t, n, j] = 0
    for k in range(x.shape[2]):
        x_k = x[n, t, k]
        for j in range(G):
            pre[t, n, j] += x_k * Wx[k, j]
    for k in range(hs.shape[2]):
        h_k = hs[t, n, k]
        for j in range(G):
            pre[t, n, j] += h_k * Wh[k, j]


@jit(inline="always")
def _step_product_short(x, hs, Wx, Wh, b, pre, t, n):
    """pre[t, n] = x[n, t] @ Wx + hs[t, n] @ Wh + b, like :func:`_step_product`, for short rows
    (the vanilla RNN's, G = H < 30 here): each element summed in a register, in float64.
    A measurable share of a tiny forward at G = 6, where the vectorised loop above runs only its
    scalar remainder; both in one kernel behind a test of G cost as much again
    (docs/performance.md, M21)."""
    for j in range(pre.shape[2]):
        acc = 0.0
        for k in range(x.shape[2]):
            acc += x[n, t, k] * Wx[k, j]
        for k in range(hs.shape[2]):
            acc += hs[t, n, k] * Wh[k, j]
        pre[t, n, j] = acc + b[j]


@jit(inline="always")
def _small_gradients(x, hs, Wx, Wh):
    """dx (N, T, D) to fill, a zeroed dh_next (N, H) and zeroed float64 accumulators dWx,
    dWh and db."""
    N, T, D = x.shape
    H, G = Wh.shape
    dx = np.empty((N, T, D), dtype=x.dtype)
    dh_next = np.zeros((N, H), dtype=x.dtype)
    return dx, dh_next, np.zeros((D, G)), np.zeros((H, G)), np.zeros(G)


@jit(inline="always")
def _step_gradients(da, x, hs, Wx, Wh, dx, dh_next, dWx, dWh, db, t, n):
    """Sample n of step t, given its gate gradients da[t, n]: dx[n, t] and dh_next[n] (the
    gradient of hs[t, n]) are set, dWx, dWh and db accumulate."""
    G = da.shape[2]
    for j in range(G):
        db[j] += da[t, n, j]
    for k in range(x.shape[2]):
        acc = 0.0  # float64, as the weight gradients
        for j in range(G):
            acc += da[t, n, j] * Wx[k, j]
        dx[n, t, k] = acc
        x_k = x[n, t, k]
        for j in range(G):
            dWx[k, j] += x_k * da[t, n, j]
    for k in range(hs.shape[2]):
        acc = 0.0
        for j in range(G):
            acc += da[t, n, j] * Wh[k, j]
        dh_next[n, k] = acc
        h_k = hs[t, n, k]
        for j in range(G):
            dWh[k, j] += h_k * da[t, n, j]
