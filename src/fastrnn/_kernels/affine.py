"""The (temporal) affine layer's products, on the packed kernel of :mod:`.packed`.

NumPy's ``x @ w`` would run them on OpenBLAS's own threads; next to the recurrent kernels, whose
products run on Numba's thread pool, two pools of spinning threads then share two cores (a
captioning training step slower than the sum of its layers: docs/performance.md, M9).  Here every
large product of a training step runs on the one pool.
"""
from .._jit import jit
from .linalg import column_sum
from .packed import PACKED_MIN, dot
from .packed import scratch_size as panels_size


def worth_a_kernel(M, D, P):
    """False for products too small for the packed kernel: NumPy's ``@`` (single-threaded
    OpenBLAS at that size) then costs less than the kernel's call (docs/performance.md, M10)."""
    return M * D * P >= PACKED_MIN


def scratch_size(M, D, P):
    """Elements of scratch for the products of x (M, D) and w (D, P), forward and backward."""
    return panels_size((max(D, M), P), (P, D))


@jit(parallel=True)
def affine_forward(x, w, b, scratch):
    """x (M, D) @ w (D, P) + b (P,)."""
    out = dot(x, w, scratch)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += b[j]
    return out


@jit(parallel=True)
def affine_backward(dout, x, w, scratch):
    """dout (M, P) -> dx (M, D), dw (D, P), db (P,)."""
    return dot(dout, w.T, scratch), dot(x.T, dout, scratch), column_sum(dout)
