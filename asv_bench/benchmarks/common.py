"""Shared set-up for the asv benchmarks: implementations, sizes, inputs, thread limits.

Sizes come from :data:`fastrnn.bench.CASES` (the speed issue's table), so ``python -m
fastrnn.bench`` and asv measure the same problems.  Nothing heavy is imported at module level:
asv imports every benchmark module to discover benchmarks, and a torch or numba import there
would load their thread pools into processes that time the other library.

Environment switches (read here only):

* ``FASTRNN_BENCH_THREADS`` (default 2): torch.set_num_threads, and BLAS / numba pools limited
  through threadpoolctl after the first (compiling) call has loaded them;
* ``FASTRNN_BENCH_FAST_MODULE`` (default ``fastrnn.rnn_layers``): the module timed as "fastrnn";
  ``fastrnn.reference`` exercises the suite without the kernels.
"""
import importlib
import os
import sys

import numpy as np

from fastrnn import bench

IMPLS = ["reference", "fastrnn", "torch"]
DTYPES = ["float32", "float64"]
THREADS = int(os.environ.get("FASTRNN_BENCH_THREADS", "2"))
FAST_MODULE = os.environ.get("FASTRNN_BENCH_FAST_MODULE", bench.DEFAULT_FAST_MODULE)

_kept_limits = []   # threadpool_limits objects must stay alive for their limits to last


def size_name(shape):
    return "x".join(str(dim) for dim in shape)


def parse_size(name):
    return tuple(int(dim) for dim in name.split("x"))


def sizes(kind, extra=()):
    """Shape names of the bench cases of ``kind``, plus ``extra`` shapes, smallest first."""
    shapes = {case.shape for case in bench.CASES if case.kind == kind} | set(extra)
    return [size_name(shape) for shape in sorted(shapes, key=lambda s: (np.prod(s), s))]


def step_sizes(kind):
    """(N, D, H) of every (N, T, D, H) sequence case of ``kind``: the single-step problems."""
    shapes = {(n, d, h) for n, _, d, h in (c.shape for c in bench.CASES if c.kind == kind)}
    return [size_name(shape) for shape in sorted(shapes, key=lambda s: (np.prod(s), s))]


def layers(impl):
    """The layer module of ``impl``; NotImplementedError (asv: skipped) when it does not exist."""
    name = bench.CLASSIC_MODULE if impl == "reference" else FAST_MODULE
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            raise NotImplementedError(f"{name} is not available") from error
        raise


def torch():
    """torch with THREADS threads, or NotImplementedError (asv: skipped) when not importable."""
    try:
        import torch as torch_module
    except ImportError as error:
        raise NotImplementedError("torch is not importable") from error
    torch_module.set_num_threads(THREADS)
    return torch_module


def limit_threads():
    """Limit BLAS/OpenMP pools and numba to THREADS; call after the first call loaded them."""
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _kept_limits.append(threadpool_limits(limits=THREADS))


class ForwardBackward:
    """Benchmarks whose ``setup`` defines ``self.forward`` and ``self.backward`` (one call each).

    ``warm_up`` runs both once (Numba compiles or loads its cache outside the timed region) and
    then limits the thread pools.
    """

    def warm_up(self):
        self.forward()
        self.backward()
        limit_threads()

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()


class Inputs:
    """Seeded random arrays of one dtype; weights scaled by 1/sqrt(fan-in) like the course code."""

    def __init__(self, dtype, seed=0):
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)

    def randn(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(self.dtype)

    def weight(self, fan_in, fan_out):
        return self.randn(fan_in, fan_out, scale=1 / np.sqrt(fan_in))

    def integers(self, high, *shape):
        return self.rng.integers(0, high, size=shape).astype(np.int32)


def torch_tensor(torch_module, array, requires_grad=False):
    return torch_module.from_numpy(np.ascontiguousarray(array)).requires_grad_(requires_grad)


def torch_saved_bytes(torch_module, forward, owned):
    """Bytes autograd saves for backward during ``forward()``, each storage once, ``owned``
    tensors (inputs and parameters) excluded; the counterpart of :func:`fastrnn.bench.cache_bytes`.
    Returns ``(bytes, result of forward)``."""
    saved = {}

    def pack(tensor):
        try:
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):   # opaque (e.g. mkldnn) tensors
            saved[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch_module.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = forward()
    owned_ptrs = {tensor.untyped_storage().data_ptr() for tensor in owned}
    return sum(size for ptr, size in saved.items() if ptr not in owned_ptrs), result
