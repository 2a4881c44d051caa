"""Fully connected layer, as ``cs231n.layers`` has it (older course versions import it here).

The products run on the packed kernel (:mod:`fastrnn._kernels.affine`), on the same thread pool as
the recurrent layers: NumPy's ``@`` would use OpenBLAS's threads, which keep spinning after a call
and then compete with that pool for the cores (measured: an LSTM forward right after a NumPy
affine layer ran 3-5x slower than alone).
"""
from typing import NamedTuple

import numpy as np

from ._kernels import affine
from ._validate import as_float, check_cache, check_shape, float_dtype
from ._workspace import scratch_buffer

__all__ = ["affine_forward", "affine_backward"]


class AffineCache(NamedTuple):
    x: np.ndarray  # (N, d1, ..., dk), compute dtype
    w: np.ndarray  # (D, M)


def affine_forward(x, w, b):
    """out (N, M) = x.reshape(N, D) @ w + b.

    Parameters
    ----------
    x : (N, d1, ..., dk) array, flattened to (N, D) with D = d1 * ... * dk
    w : (D, M) array
    b : (M,) array

    Returns
    -------
    out : (N, M) array
    cache : AffineCache, for :func:`affine_backward`
    """
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (N, d1, ..., dk), got {x.shape}")
    D = int(np.prod(x.shape[1:]))
    w = check_shape("w", w, (D, None), ("D", "M"))
    b = check_shape("b", b, (w.shape[1],), ("M",))
    dtype = float_dtype(x, w, b)
    x, w, b = (as_float(a, dtype) for a in (x, w, b))
    N, M = x.shape[0], w.shape[1]
    x2 = x.reshape(N, D)
    if affine.worth_a_kernel(N, D, M):
        out = affine.affine_forward(x2, w, b, scratch_buffer(dtype, affine.scratch_size(N, D, M)))
    else:
        out = x2 @ w + b
    return out, AffineCache(x, w)


def affine_backward(dout, cache):
    """dout (N, M) -> dx (N, d1, ..., dk), dw (D, M), db (M,)."""
    check_cache(cache, AffineCache, "affine_backward")
    x, w = cache
    N = x.shape[0]
    dout = check_shape("dout", dout, (N, w.shape[1]), ("N", "M"))
    dtype = float_dtype(dout, x)
    dout, x, w = (as_float(a, dtype) for a in (dout, x, w))
    D, M = w.shape
    x2 = x.reshape(N, D)
    if affine.worth_a_kernel(N, D, M):
        dx, dw, db = affine.affine_backward(dout, x2, w,
                                            scratch_buffer(dtype, affine.scratch_size(N, D, M)))
    else:
        dx, dw, db = dout @ w.T, x2.T @ dout, dout.sum(axis=0)
    return dx.reshape(x.shape), dw, db
