"""Argument checking at the public boundary: errors name the argument, expected and actual."""
import numpy as np


_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_FLOATS = (_FLOAT64, _FLOAT32)
_NDARRAY = np.ndarray  # a global, not an attribute lookup, in the per-call fast paths


def float_dtype(*arrays):
    """The compute dtype of a call: NumPy promotion of the inputs, restricted to float32/float64.

    float32 (or narrower floats) throughout -> float32; anything reaching float64 -> float64.
    """
    first = arrays[0].dtype
    if first == _FLOAT64 or first == _FLOAT32:  # the common case, without np.result_type
        if all(array.dtype == first for array in arrays):
            return first
    dtype = np.result_type(*arrays)
    if dtype.kind not in "fiub":
        raise TypeError(f"expected real numeric arrays, got dtype {dtype}")
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return _FLOAT32
    return _FLOAT64


def usable_as_is(arrays):
    """True when every array can go to a kernel unchanged: ndarrays of one float dtype,
    C-contiguous and writeable.  The common case, checked in a fraction of the full coercion's
    time: tiny problems are all wrapper overhead.  (Dtypes are compared by identity first:
    NumPy's are singletons, but arrays that Numba returns carry equal copies.  Figures:
    docs/performance.md, M5.)"""
    first = arrays[0]
    if type(first) is not _NDARRAY:
        return False
    dtype = first.dtype
    if dtype not in _FLOATS:  # (`in` tries identity first)
        return False
    for a in arrays:
        if type(a) is not _NDARRAY or (a.dtype is not dtype and a.dtype != dtype):
            return False
        flags = a.flags
        if not (flags.c_contiguous and flags.writeable):
            return False
    return True


def _shape_text(shape, names):
    dims = [name if size is None else f"{name}={size}" for size, name in zip(shape, names)]
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


def check_shape(name, array, shape, names):
    """``array`` as an ndarray with ``shape`` (ints, or None for a free size).

    ``names`` labels the axes for the message, e.g. ``("N", "T", "D")``.
    """
    if type(array) is not _NDARRAY:
        array = np.asarray(array)
    got = array.shape
    if got == shape:  # a fully given shape that matches: one comparison (tiny calls are overhead)
        return array
    ok = len(got) == len(shape)
    if ok:
        for want, size in zip(shape, got):
            if want is not None and want != size:
                ok = False
                break
    if not ok:
        raise ValueError(f"{name} must have shape {_shape_text(shape, names)}, got {got}")
    return array


def row_vector(name, array, size, max_ndim=2, label="M"):
    """A bias as a (size,) array (a read-only broadcast view when it had another shape).

    Accepts the shapes that NumPy broadcasts along the last axis of a (..., size) result
    without changing its shape: (size,), (1, size) (up to ``max_ndim`` axes, the leading ones
    of size 1) and size-1 arrays.  A bias with a longer leading axis (per sample) is refused:
    the classic backward would return the gradient of a shared (size,) bias for it.
    """
    array = numeric_array(name, array)
    shape = array.shape
    if shape == (size,):
        return array
    if len(shape) <= max_ndim and shape[-1:] in ((size,), (1,), ()) and \
            all(s == 1 for s in shape[:-1]):
        return np.broadcast_to(array.reshape(shape[-1:]), (size,))
    raise ValueError(f"{name} must have shape ({label}={size},) or (1, {label}={size}), "
                     f"got {shape}")


def as_float(array, dtype):
    """A C-contiguous, writeable array of ``dtype``: the caller's own array when it is one.

    Read-only arrays are copied: Numba types them apart from writeable ones, so passing one
    through would compile every kernel a second time (seconds) for no benefit.
    """
    array = np.asarray(array, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d 1-d)
    return array if array.flags.writeable else array.copy()


def numeric_array(name, array):
    """``array`` as an ndarray of a real numeric dtype (bool, integer or float), else a
    TypeError naming the argument (complex, object and string arrays are refused)."""
    if type(array) is not _NDARRAY:
        try:
            array = np.asarray(array)
        except (TypeError, ValueError) as error:  # ragged lists and the like
            raise TypeError(f"{name} must be a numeric array: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def position(flat_index, shape):
    """The multi-index of ``flat_index`` in ``shape`` as plain ints, for messages."""
    return tuple(int(i) for i in np.unravel_index(flat_index, shape))


def index_array(name, array, upper):
    """Word or class indices as a C-contiguous ndarray of a native signed integer dtype.

    Any shape.  Signed integer arrays pass unchanged when native and C-contiguous (a kernel
    range-checks them); unsigned, byte-swapped or strided ones are converted to intp; float
    arrays (``np.ones((N, 1)) * start``) must hold finite whole numbers in [0, upper) and are
    converted.  bool (a mask, not indices), complex and other dtypes raise TypeError naming
    the argument; a fractional, NaN or out-of-range value a ValueError.
    """
    if type(array) is not _NDARRAY:
        array = np.asarray(array)
    dtype = array.dtype
    kind = dtype.kind
    if kind == "i" and dtype.isnative:
        return array if array.flags.c_contiguous else np.array(array, order="C")
    if kind not in "iuf":
        raise TypeError(f"{name} must hold integer indices, got dtype {dtype}")
    if array.size:
        if kind == "f":
            whole = np.isfinite(array) & (array == np.floor(array))
            if not whole.all():
                bad = int(np.argmin(whole.reshape(-1)))
                raise ValueError(f"{name} must hold whole-number indices, got {array.flat[bad]} "
                                 f"at position {position(bad, array.shape)}")
        lo, hi = array.min(), array.max()
        if lo < 0 or hi >= upper:
            raise ValueError(
                f"{name} must hold indices in [0, {upper}), got values from {lo} to {hi}")
    return np.array(array, dtype=np.intp, order="C")


def check_indices(name, array, upper, shape=None, names=None):
    """Indices with every entry in [0, upper), as a private C-contiguous intp copy.

    A copy: the kernels index memory with these values and have no bounds checks, so a later
    change to the caller's array must not reach a backward pass.
    """
    if shape is not None:
        array = check_shape(name, array, shape, names)
    array = index_array(name, array, upper)
    if array.size:
        lo, hi = array.min(), array.max()
        if lo < 0 or hi >= upper:
            raise ValueError(
                f"{name} must hold indices in [0, {upper}), got values from {lo} to {hi}")
    return np.array(array, dtype=np.intp, order="C", copy=True)


def check_cache(cache, expected, function):
    """TypeError unless ``cache`` came from the forward that matches ``function``."""
    if not isinstance(cache, expected):
        raise TypeError(
            f"{function} needs the cache returned by the matching forward function "
            f"({expected.__name__}), got {type(cache).__name__}")
