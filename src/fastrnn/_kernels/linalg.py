"""Small matrix products for the kernels (the large ones are :mod:`.packed`), and the layout
copies around them.

``gemm`` calls NumPy's own OpenBLAS through its CBLAS interface when :data:`NUMPY_CBLAS` (see
:mod:`fastrnn._jit`), else ``np.dot`` (SciPy's OpenBLAS).  Tiny products run as a plain loop:
below ~4k multiply-adds a BLAS call costs more than it computes.
"""
import numpy as np
from numba import types
from numba.extending import overload

from .._jit import EXACT_OPTIONS, NUMPY_CBLAS, jit

SMALL_GEMM = 4096
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def gemm(a, b, out, accumulate):
    """out (M, P) = a (M, K) @ b (K, P), or out += a @ b when ``accumulate``.

    a and b are C- or F-contiguous (``W.T`` is free), out is C-contiguous.
    """
    raise NotImplementedError("only callable from Numba-compiled code")


@jit
def _gemm_loop(a, b, out, accumulate):
    M, K = a.shape
    P = b.shape[1]
    for i in range(M):
        if not accumulate:
            for j in range(P):
                out[i, j] = 0
        for k in range(K):
            a_ik = a[i, k]
            for j in range(P):
                out[i, j] += a_ik * b[k, j]


@jit
def _cblas_operand(x):
    """(transpose flag, leading dimension) of a C- or F-contiguous 2-D operand."""
    rows, cols = x.shape
    if x.strides[1] == x.itemsize or cols == 1:
        return _NO_TRANS, max(x.strides[0] // x.itemsize, cols, 1)
    return _TRANS, max(x.strides[1] // x.itemsize, rows, 1)


@overload(gemm, jit_options=EXACT_OPTIONS)
def _gemm(a, b, out, accumulate):
    dtype = a.dtype
    if not NUMPY_CBLAS:
        def impl_dot(a, b, out, accumulate):
            M, K = a.shape
            if M * K * b.shape[1] <= SMALL_GEMM or K == 0:
                _gemm_loop(a, b, out, accumulate)
            elif accumulate:
                out += np.dot(a, b)
            else:
                np.dot(a, b, out)
        return impl_dot

    ptr, i64, i32 = types.CPointer(dtype), types.int64, types.int32
    name = "scipy_cblas_sgemm64_" if dtype == types.float32 else "scipy_cblas_dgemm64_"
    cblas_gemm = types.ExternalFunction(
        name, types.void(i32, i32, i32, i64, i64, i64, dtype, ptr, i64, ptr, i64, dtype, ptr, i64))
    ftype = np.float32 if dtype == types.float32 else np.float64
    one, zero = ftype(1), ftype(0)

    def impl_cblas(a, b, out, accumulate):
        M, K = a.shape
        P = b.shape[1]
        if M * K * P <= SMALL_GEMM or K == 0:
            _gemm_loop(a, b, out, accumulate)
            return
        trans_a, lda = _cblas_operand(a)
        trans_b, ldb = _cblas_operand(b)
        ldc = max(out.strides[0] // out.itemsize, P, 1)
        cblas_gemm(_ROW_MAJOR, trans_a, trans_b, M, P, K, one, a.ctypes, lda, b.ctypes, ldb,
                   one if accumulate else zero, out.ctypes, ldc)
    return impl_cblas


@jit
def column_sum(a):
    """Sum over the rows of a (M, P) array, accumulated in float64 (float32 stays accurate)."""
    acc = np.zeros(a.shape[1], dtype=np.float64)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            acc[j] += a[i, j]
    return as_dtype_of(acc, a)


def as_dtype_of(a, like):
    """a in like's dtype: a itself when it already is (``astype`` always copies)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(as_dtype_of, inline="always")
def _as_dtype_of(a, like):
    if a.dtype == like.dtype:
        return lambda a, like: a
    return lambda a, like: a.astype(like.dtype)


@jit
def swap_leading_axes(x):
    """(A, B, D) -> a C-contiguous (B, A, D) copy: batch-major <-> time-major."""
    A, B, D = x.shape
    out = np.empty((B, A, D), dtype=x.dtype)
    for a in range(A):
        for b in range(B):
            out[b, a, :] = x[a, b, :]
    return out
