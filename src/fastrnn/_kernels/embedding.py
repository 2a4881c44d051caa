"""Word-embedding backward: a scatter-add (np.add.at is far slower than this loop:
docs/performance.md, fact 13)."""
from .._jit import jit


@jit
def embedding_backward(indices, dout, dW):
    """dW[indices[r]] += dout[r] for every row r; indices (R,), dout (R, D), dW (V, D) zeroed.

    Returns -1, or the position of the first index outside [0, V) (dW is then partly written
    and must be dropped): the indices come from a cache, which its owner can change, and one
    comparison per row costs nothing next to the row's D additions.
    """
    V = dW.shape[0]
    for r in range(indices.shape[0]):
        row = indices[r]
        if row < 0 or row >= V:
            return r
        for j in range(dout.shape[1]):
            dW[row, j] += dout[r, j]
    return -1


@jit
def embedding_forward(indices, W, out, private):
    """out[r] = W[indices[r]] and private[r] = indices[r], checking 0 <= indices[r] < V.

    One pass instead of NumPy's min, max, copy and gather.  Returns -1, or the position of
    the first index out of range (the outputs are then partly written and must be dropped).
    """
    V = W.shape[0]
    for r in range(indices.shape[0]):
        k = indices[r]
        if k < 0 or k >= V:
            return r
        private[r] = k
        for j in range(W.shape[1]):
            out[r, j] = W[k, j]
    return -1
