"""Vanilla RNN and LSTM kernels: whole sequences, forward and backward.

Layout (the structure oneDNN / cuDNN use, see shared PERFORMANCE.md):

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
  dX = dA @ Wxᵀ, dWx = Xᵀ @ dA, dWh = H_prevᵀ @ dA as three products with M = N*T (dWx and dWh
  share one packing of dA; Xᵀ and H_prevᵀ are read in place).
* Compiled ``parallel=True`` (prange only): the packed helpers are inlined, so their ``prange``
  loops run on Numba's thread pool as part of these kernels (see :mod:`.packed` for why no
  parallel function is called as a separate one).
* Kept for backward (per sample and step): LSTM 4H activated gates + c + h = 6H numbers,
  RNN H; tanh(c) is recomputed (cheaper than storing it).

A step function is the T = 1 case of these kernels (c0 and dc_T are arguments for that).
All arrays are C-contiguous and share one float dtype; no validation happens here.  ``scratch``
is a 1-D buffer of that dtype, reused from call to call by the caller, for the packed weight
panels (:mod:`.packed`) and, in backward, the gate gradients dA in front of them: see
:func:`scratch_size`.  Any size works (a short one means fresh allocations, which cost their page
faults: measured 5 ms of a 36 ms float64 LSTM backward at N=25, H=512).
"""
import numpy as np

from .._jit import jit
from .activations import sigmoid, tanh
from .linalg import column_sum, swap_leading_axes
from .packed import dot, dot_packed, pack_for_product, product
from .packed import scratch_size as scratch_panels_size


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
    for t in range(T):
        a_t = pre[t]
        product(hs[t], Wh, Wh_panels, a_t, True)
        for n in range(N):
            for j in range(H):
                hs[t + 1, n, j] = tanh(a_t[n, j] + b[j])
            h[n, t, :] = hs[t + 1, n, :]
    return h, hs


@jit(parallel=True)
def rnn_backward(dh, x, hs, Wx, Wh, scratch):
    """dh (N, T, H) upstream grads of every h_t -> dx, dh0, dWx, dWh, db."""
    N, T, H = dh.shape
    D = x.shape[2]
    da, scratch = _gradient_buffer(scratch, T, N, H)
    dh_next = np.zeros((N, H), dtype=dh.dtype)
    WhT_panels = pack_for_product(N, Wh.T, scratch)
    for t in range(T - 1, -1, -1):
        for n in range(N):
            for j in range(H):
                h_t = hs[t + 1, n, j]
                da[t, n, j] = (dh[n, t, j] + dh_next[n, j]) * (1 - h_t * h_t)
        product(da[t], Wh.T, WhT_panels, dh_next, False)
    da2 = da.reshape(T * N, H)
    dx = swap_leading_axes(dot(da2, Wx.T, scratch).reshape(T, N, D))
    # x is re-laid time-major here rather than kept from forward: the cache stays small.
    # dWx and dWh share one packing of dA.
    da_panels = pack_for_product(D + H, da2, scratch)
    dWx = dot_packed(swap_leading_axes(x).reshape(T * N, D).T, da2, da_panels)
    dWh = dot_packed(hs[:T].reshape(T * N, H).T, da2, da_panels)
    return dx, dh_next, dWx, dWh, column_sum(da2)


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
    hs = np.empty((T + 1, N, H), dtype=x.dtype)
    cs = np.empty((T + 1, N, H), dtype=x.dtype)
    hs[0] = h0
    cs[0] = c0
    h = np.empty((N, T, H), dtype=x.dtype)
    # All four gates in one vectorised pass of one function: i, f, o = sigmoid(a) and
    # g = tanh(a) = 2 sigmoid(2a) - 1, i.e. sigmoid(a * scale) * scale + shift (measured 1.4-1.9x
    # faster than a sigmoid pass and a tanh pass; the error stays at a few ulp of 1).
    scale = np.ones(4 * H, dtype=x.dtype)
    shift = np.zeros(4 * H, dtype=x.dtype)
    scale[3 * H:] = 2
    shift[3 * H:] = -1
    Wh_panels = pack_for_product(N, Wh, scratch)
    for t in range(T):
        a_t = gates[t]
        product(hs[t], Wh, Wh_panels, a_t, True)
        for n in range(N):
            a = a_t[n]
            for j in range(4 * H):
                a[j] = sigmoid((a[j] + b[j]) * scale[j]) * scale[j] + shift[j]
            c_prev, c_next, h_next = cs[t, n], cs[t + 1, n], hs[t + 1, n]
            for j in range(H):
                c_next[j] = a[H + j] * c_prev[j] + a[j] * a[3 * H + j]
            for j in range(H):
                h_next[j] = a[2 * H + j] * tanh(c_next[j])
            h[n, t, :] = h_next
    return h, hs, cs, gates


@jit(parallel=True)
def lstm_backward(dh, dc_last, x, hs, cs, gates, Wx, Wh, scratch):
    """dh (N, T, H), dc_last (N, H) upstream grad of c_T -> dx, dh0, dc0, dWx, dWh, db."""
    N, T, H = dh.shape
    D = x.shape[2]
    da, scratch = _gradient_buffer(scratch, T, N, 4 * H)
    dh_next = np.zeros((N, H), dtype=dh.dtype)
    dc = dc_last.copy()
    dh_t = np.empty(H, dtype=dh.dtype)
    WhT_panels = pack_for_product(N, Wh.T, scratch)
    for t in range(T - 1, -1, -1):
        for n in range(N):
            g_ = gates[t, n]
            d_ = da[t, n]
            for j in range(H):
                dh_t[j] = dh[n, t, j] + dh_next[n, j]
            for j in range(H):
                tanh_c = tanh(cs[t + 1, n, j])
                o = g_[2 * H + j]
                dc[n, j] += dh_t[j] * o * (1 - tanh_c * tanh_c)
                d_[2 * H + j] = dh_t[j] * tanh_c * o * (1 - o)
            for j in range(H):
                i = g_[j]
                f = g_[H + j]
                g = g_[3 * H + j]
                d_[j] = dc[n, j] * g * i * (1 - i)
                d_[H + j] = dc[n, j] * cs[t, n, j] * f * (1 - f)
                d_[3 * H + j] = dc[n, j] * i * (1 - g * g)
                dc[n, j] *= f
        product(da[t], Wh.T, WhT_panels, dh_next, False)
    da2 = da.reshape(T * N, 4 * H)
    dx = swap_leading_axes(dot(da2, Wx.T, scratch).reshape(T, N, D))
    # x is re-laid time-major here rather than kept from forward: the cache stays small.
    # dWx and dWh share one packing of dA.
    da_panels = pack_for_product(D + H, da2, scratch)
    dWx = dot_packed(swap_leading_axes(x).reshape(T * N, D).T, da2, da_panels)
    dWh = dot_packed(hs[:T].reshape(T * N, H).T, da2, da_panels)
    return dx, dh_next, dc, dWx, dWh, column_sum(da2)
