"""Numeric gradient checking, as the classic course code does it.

The functions perturb ``x`` **in place**, one element at a time, and restore it, so a function
``f`` that ignores its argument and closes over the same array sees the perturbation (notebooks
rely on this).  Use float64 arrays: centred differences with ``h=1e-5`` in float32 are noise.
"""
import numpy as np

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]


def rel_error(x, y):
    """max |x - y| / max(1e-8, |x| + |y|), elementwise then the maximum."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _centred_differences(f, x, h, combine):
    """Yield (index, grad) after each element of ``x`` is done; ``combine(f(x+h), f(x-h))``."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        plus = np.array(f(x), copy=True)  # copy: f may return a buffer it reuses
        x[ix] = old - h
        minus = np.array(f(x), copy=True)
        x[ix] = old
        grad[ix] = combine(plus, minus) / (2 * h)
        yield ix, grad
        it.iternext()


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Numeric gradient of a scalar function ``f`` at ``x`` (perturbed in place, restored)."""
    grad = np.zeros_like(x)
    for ix, grad in _centred_differences(f, x, h, lambda plus, minus: plus - minus):
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numeric gradient of sum(f(x) * df) at ``x`` for an array-valued ``f``."""
    grad = np.zeros_like(x)
    for _, grad in _centred_differences(f, x, h, lambda plus, minus: np.sum((plus - minus) * df)):
        pass
    return grad
