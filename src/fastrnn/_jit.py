"""The one place where Numba options are chosen.

Every kernel in :mod:`fastrnn._kernels` is decorated with :func:`jit`; no kernel spells its
own flags.  Environment switches are read here, once, when a kernel module is first imported
(importing :mod:`fastrnn` itself imports no kernel and compiles nothing).

* ``error_model='numpy'``: Numba's default ('python') puts a zero-division check in front of
  every float division, which stops LLVM from vectorising the loop (docs/performance.md,
  fact 3).
* ``fastmath`` is a *subset*: reassociation and FMA contraction let reductions and polynomials
  vectorise, but the no-NaN / no-inf flags are left off because the stable sigmoid, the
  log-softmax and NaN propagation rely on IEEE inf/NaN semantics.
* ``cache=True``: compiled code is written next to the module, or, when the package directory
  is read-only, to Numba's user-wide cache directory (``NUMBA_CACHE_DIR`` overrides both).
  ``FASTRNN_NO_CACHE=1`` turns the on-disk cache off.
* ``nogil=True``: kernels share no state (every call allocates its own outputs), so several
  Python threads may run them at once.  The tiny-layer kernels keep the GIL: they run for
  microseconds, and releasing it is a measurable share of that (docs/performance.md, M1).
* Bounds checking follows Numba's own ``NUMBA_BOUNDSCHECK`` switch (CI runs one pass with it).

The large matrix products are fastrnn's own (:mod:`fastrnn._kernels.packed`); kernels that run
them are compiled with ``jit(parallel=True)``, which enables ``prange`` and nothing else (no array
expression becomes a parallel loop).  Products too small for it call NumPy's own OpenBLAS
(``scipy_cblas_?gemm64_`` in the ``numpy.libs`` of a NumPy wheel) when it is there: faster
than the older OpenBLAS that SciPy ships and ``np.dot`` inside ``@njit`` uses
(docs/performance.md, M2).  :data:`NUMPY_CBLAS` says whether it was found; otherwise the kernels use
``np.dot`` (SciPy's BLAS).  ``FASTRNN_BLAS=scipy`` forces the latter.

Numba's cache checks only the source file of the function it caches, not the helpers it
inlines from other files (``activations.py`` into ``recurrent.py``): an edited helper would
leave stale machine code in use.  :func:`_stamp_whole_kernel_package` makes the freshness stamp
of every kernel a hash of all kernel sources instead.
"""
import functools
import glob
import hashlib
import os

import numba

FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp"})
CACHE = os.environ.get("FASTRNN_NO_CACHE", "0").lower() in ("", "0", "false", "no")

# For the exp/tanh/sigmoid building blocks: without reassociation, which would fold the
# Cody-Waite range reduction, the round-to-integer trick and the error-free sums away.  They are
# ``@overload``s (typed constants per dtype) compiled with these options and inlined by LLVM
# into the kernels; ``forceinline`` (LLVM's alwaysinline) because the accurate tanh and
# sigmoid are bigger than LLVM's inlining threshold, and a loop that calls a function does not
# vectorise (docs/performance.md, M3).
EXACT_OPTIONS = dict(fastmath={"contract", "nsz", "arcp"}, error_model="numpy", forceinline=True)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_KERNEL_DIR = os.path.join(_PACKAGE_DIR, "_kernels")


def _load_numpy_cblas():
    """Make NumPy's bundled OpenBLAS symbols visible to Numba's linker; True on success."""
    if os.environ.get("FASTRNN_BLAS", "numpy").lower() == "scipy":
        return False
    try:
        import llvmlite.binding as llvm
        import numpy
        libs = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
            llvm.load_library_permanently(path)
            if llvm.address_of_symbol("scipy_cblas_sgemm64_") and \
                    llvm.address_of_symbol("scipy_cblas_dgemm64_"):
                return True
    except (ImportError, RuntimeError, OSError):
        pass
    return False


NUMPY_CBLAS = _load_numpy_cblas()


def _vector_bytes():
    """Width of the target's vector registers: 64 with AVX-512, else 32 (AVX2 and others)."""
    features = numba.config.CPU_FEATURES
    if features is None:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features.split(",") else 32


# Sizes the register tiles of the packed product (:mod:`fastrnn._kernels.packed`).  Numba keys
# its on-disk cache by CPU name and features, so a cache never crosses to another ISA.
VECTOR_BYTES = _vector_bytes()


@functools.lru_cache(maxsize=1)
def _kernel_sources_hash():
    # The BLAS choice is frozen into compiled code, so it is part of the stamp.
    digest = hashlib.sha256(b"numpy-cblas" if NUMPY_CBLAS else b"np.dot")
    for path in sorted(glob.glob(os.path.join(_KERNEL_DIR, "*.py"))) + [os.path.abspath(__file__)]:
        with open(path, "rb") as source:
            digest.update(source.read())
    return digest.hexdigest()


def _stamp_whole_kernel_package():
    """Put locators in front of Numba's that stamp fastrnn kernels with the package hash."""
    try:
        from numba.core import caching
        impl = caching.CacheImpl
        bases = [cls for cls in impl._locator_classes
                 if issubclass(cls, caching._SourceFileBackedLocatorMixin)]
    except (ImportError, AttributeError):  # Numba internals changed: keep its own stamps
        return
    if getattr(impl, "_fastrnn_stamped", False):
        return

    def package_locator(base):
        class Locator(base):
            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.dirname(os.path.abspath(py_file)) != _KERNEL_DIR:
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return _kernel_sources_hash()
        Locator.__name__ = f"FastrnnPackage{base.__name__}"
        return Locator

    impl._locator_classes = [package_locator(cls) for cls in bases] + list(impl._locator_classes)
    impl._fastrnn_stamped = True


if CACHE:
    _stamp_whole_kernel_package()


def _prange_only():
    """Parallel options: prange loops only, no array expression or slice assignment becomes a
    parallel loop.

    An options *object*, not a dict: Numba pops the keys of a dict as it reads them, so only
    the first signature a kernel compiled in a process got these options, and every later one
    (float64 after float32, say) was compiled with all of them on.  Its ``np.ones`` and slice
    copies then became parallel loops, started on every call: a tiny LSTM forward + backward
    took several times as long, depending on which dtype a process compiled first
    (docs/performance.md, M4)."""
    from numba.core.cpu_options import ParallelOptions
    return ParallelOptions(dict(prange=True, comprehension=False, reduction=False,
                                inplace_binop=False, setitem=False, numpy=False, stencil=False,
                                fusion=False))


def jit(func=None, *, inline="never", parallel=False, nogil=True, exact=False):
    """``numba.njit`` with fastrnn's options; ``inline='always'`` for tiny scalar helpers,
    ``parallel=True`` for the few kernels that split work over threads with ``prange``,
    ``nogil=False`` for kernels that run a few microseconds (releasing and taking back the GIL
    is a measurable share of that: docs/performance.md, M1), ``exact=True`` for kernels
    compiled without any fast-math flag: those that test computed values with ``np.isfinite``
    (with FASTMATH's flags, LLVM answered True for a NaN or inf computed in the same loop:
    tests/test_optim.py checks it) and whose arithmetic must round as NumPy's."""
    options = dict(cache=CACHE, nogil=nogil, error_model="numpy",
                   fastmath=False if exact else set(FASTMATH))
    if inline != "never":
        options["inline"] = inline
    if parallel:
        options["parallel"] = _prange_only()
    decorator = numba.njit(**options)
    return decorator if func is None else decorator(func)
