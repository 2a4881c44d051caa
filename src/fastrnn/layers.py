"""Fully connected layer, as ``cs231n.layers`` has it (older course versions import it here)."""
from typing import NamedTuple

import numpy as np

from ._validate import as_float, check_cache, check_shape, float_dtype

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
    out = x.reshape(x.shape[0], D) @ w + b
    return out, AffineCache(x, w)


def affine_backward(dout, cache):
    """dout (N, M) -> dx (N, d1, ..., dk), dw (D, M), db (M,)."""
    check_cache(cache, AffineCache, "affine_backward")
    x, w = cache
    N = x.shape[0]
    dout = check_shape("dout", dout, (N, w.shape[1]), ("N", "M"))
    dtype = float_dtype(dout, x)
    dout, x, w = (as_float(a, dtype) for a in (dout, x, w))
    x2 = x.reshape(N, w.shape[0])
    return (dout @ w.T).reshape(x.shape), x2.T @ dout, dout.sum(axis=0)
