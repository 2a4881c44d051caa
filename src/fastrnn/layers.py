"""Fully connected layer, as ``cs231n.layers`` has it (older course versions import it here).

The products run on the packed kernel (:mod:`fastrnn._kernels.affine`), on the same thread pool as
the recurrent layers: NumPy's ``@`` would use OpenBLAS's threads, which keep spinning after a call
and then compete with that pool for the cores (an LSTM forward right after a NumPy affine layer
ran several times slower than alone: docs/performance.md, M9).
"""
from typing import NamedTuple

import numpy as np

from ._kernels import affine
from ._validate import as_float, check_cache, check_shape, float_dtype, numeric_array, row_vector
from ._workspace import call_threaded, scratch_buffer

__all__ = ["affine_forward", "affine_backward"]


class AffineCache(NamedTuple):
    x: np.ndarray  # (N, d1, ..., dk), compute dtype
    w: np.ndarray  # (D, M)


def affine_forward(x, w, b):
    """out (N, M) = x.reshape(N, D) @ w + b.

    Parameters
    ----------
    x : (N, d1, ..., dk) array, flattened to (N, D) with D = d1 * ... * dk (a 1-D x is N
        samples of one feature, as the classic ``x.reshape(N, -1)`` reads it)
    w : (D, M) array
    b : (M,) array, or (1, M) (NumPy broadcasts it)

    Returns
    -------
    out : (N, M) array
    cache : AffineCache, for :func:`affine_backward`
    """
    x = numeric_array("x", x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (N, d1, ..., dk), got {x.shape}")
    D = int(np.prod(x.shape[1:]))
    w = check_shape("w", numeric_array("w", w), (D, None), ("D", "M"))
    b = row_vector("b", b, w.shape[1])
    dtype = float_dtype(x, w, b)
    x, w, b = (as_float(a, dtype) for a in (x, w, b))
    return matmul_bias(x.reshape(x.shape[0], D), w, b), AffineCache(x, w)


def affine_backward(dout, cache):
    """dout (N, M) -> dx (N, d1, ..., dk), dw (D, M), db (M,)."""
    check_cache(cache, AffineCache, "affine_backward")
    x, w = numeric_array("cache.x", cache.x), numeric_array("cache.w", cache.w)
    if x.ndim < 1 or w.ndim != 2 or int(np.prod(x.shape[1:])) != w.shape[0]:
        raise ValueError(f"affine_backward: the cache's x {x.shape} and w {w.shape} do not fit "
                         f"(N, d1, ..., dk) and (D, M) (changed after the forward?)")
    N = x.shape[0]
    dout = check_shape("dout", numeric_array("dout", dout), (N, w.shape[1]), ("N", "M"))
    dtype = float_dtype(dout, x)
    dout, x, w = (as_float(a, dtype) for a in (dout, x, w))
    dx, dw, db = matmul_bias_backward(dout, x.reshape(N, w.shape[0]), w)
    return dx.reshape(x.shape), dw, db


def _kernel_scratch(x, w):
    """Scratch for the packed kernel on x (M, D) @ w (D, P), or None when the product is too small
    to gain from it: NumPy's ``@`` then costs less than the kernel's call (docs/performance.md,
    M10)."""
    (M, D), P = x.shape, w.shape[1]
    if not affine.worth_a_kernel(M, D, P):
        return None
    return scratch_buffer(x.dtype, affine.scratch_size(M, D, P))


def matmul_bias(x, w, b):
    """x (M, D) @ w (D, P) + b (P,) for C-contiguous arrays of one float dtype: the packed
    kernel when the product is large enough to gain, NumPy's ``@`` otherwise."""
    scratch = _kernel_scratch(x, w)
    if scratch is None:
        return x @ w + b
    return call_threaded(affine.affine_forward, x, w, b, scratch)


def matmul_bias_backward(dout, x, w):
    """The gradients (dx, dw, db) of :func:`matmul_bias` for an upstream ``dout`` (M, P)."""
    scratch = _kernel_scratch(x, w)
    if scratch is None:
        return dout @ w.T, x.T @ dout, dout.sum(axis=0)
    return call_threaded(affine.affine_backward, dout, x, w, scratch)
