"""Matrix products for the kernels: BLAS, except for tiny ones where a call costs more than it does."""
import numpy as np

from .._jit import jit

# Below this many multiply-adds a plain loop beats a BLAS call (dispatch and packing overhead).
SMALL_GEMM = 4096


@jit
def matmul_into(a, b, out):
    """out (M, P) = a (M, K) @ b (K, P); a and b C- or F-contiguous, out C-contiguous."""
    M, K = a.shape
    P = b.shape[1]
    if M * K * P <= SMALL_GEMM or K == 0:
        for i in range(M):
            for j in range(P):
                out[i, j] = 0
            for k in range(K):
                a_ik = a[i, k]
                for j in range(P):
                    out[i, j] += a_ik * b[k, j]
    else:
        np.dot(a, b, out)


@jit
def matmul(a, b):
    """a (M, K) @ b (K, P) as a new C-contiguous array."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    matmul_into(a, b, out)
    return out


@jit
def column_sum(a):
    """Sum over the rows of a (M, P) array, accumulated in float64 (float32 stays accurate)."""
    acc = np.zeros(a.shape[1], dtype=np.float64)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            acc[j] += a[i, j]
    return acc.astype(a.dtype)


@jit
def to_time_major(x):
    """(N, T, D) -> a C-contiguous (T, N, D) copy."""
    N, T, D = x.shape
    out = np.empty((T, N, D), dtype=x.dtype)
    for n in range(N):
        for t in range(T):
            out[t, n, :] = x[n, t, :]
    return out


@jit
def to_batch_major(x):
    """(T, N, D) -> a C-contiguous (N, T, D) copy."""
    T, N, D = x.shape
    out = np.empty((N, T, D), dtype=x.dtype)
    for n in range(N):
        for t in range(T):
            out[n, t, :] = x[t, n, :]
    return out
