"""Process-wide resources of the kernels: per-thread scratch buffers, glibc's heap, and how
the threads of the parallel kernels wait.

A fresh multi-MB temporary on every call costs its page faults when the allocator hands the
memory back to the system in between (measured ~6 ms of a 21 ms float64 LSTM forward at N=25,
H=512, and 5 ms of the 36 ms backward).  Two measures:

* :func:`scratch_buffer`: each thread keeps one buffer per dtype for the kernels' temporaries
  (packed weights, gate gradients), grown to the largest layer it has run (14.5 MiB for an
  N=25, T=16, H=512 float64 LSTM) and never shrunk; threads never share one, so concurrent calls
  stay independent.
* :func:`keep_freed_memory`: the outputs and caches are new arrays on every call (the caller
  keeps them), so they cannot come from a scratch buffer.  glibc returns the top of its heap to
  the system once more than ``M_TRIM_THRESHOLD`` bytes are free there (64 MiB at most, as glibc
  adapts it), and a layer that frees more than that per call (an N=100, H=1024 LSTM frees about
  75 MiB) pays for every page again on the next call: measured 16,600 page faults and 57 ms of a
  372 ms forward + backward.  On the first kernel call fastrnn sets glibc's thresholds to
  ``M_MMAP_THRESHOLD`` = 32 MiB (the largest glibc accepts, and where its own adaptive threshold
  ends up) and ``M_TRIM_THRESHOLD`` = 256 MiB: freed memory up to 256 MiB stays in the process
  for the next call.  ``FASTRNN_MALLOC=system`` leaves malloc as it is; nothing happens on a C
  library other than glibc.
* :func:`start_thread_pool`: Numba's OpenMP threads (the ``omp`` layer, GNU libgomp) spin for a
  while at the end of each parallel region before they sleep (``GOMP_SPINCOUNT``, 300,000 spins
  by default).  A recurrent layer runs a few parallel regions per time step; when another process
  holds a core, the thread that spins waits for one that is descheduled and burns the core that
  thread needs.  Before Numba starts its threads, fastrnn sets ``GOMP_SPINCOUNT`` to
  :data:`SPIN_COUNT` for the moment libgomp reads its environment, then restores the
  environment: nothing else in the process sees the variable.  Set ``OMP_WAIT_POLICY`` or
  ``GOMP_SPINCOUNT`` yourself, or ``FASTRNN_THREADS=system``, and fastrnn leaves libgomp as it
  is.  A libgomp already loaded by another library has read its environment: it is left as it is.
"""
import ctypes
import os
import threading

import numpy as np

_BUFFERS = threading.local()

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

_malloc_checked = False

SPIN_COUNT = "10000"
_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
thread_pool = None  # what start_thread_pool found and did, once it ran: a dict
_thread_pool_lock = threading.Lock()  # first calls from several Python threads at once


def keep_freed_memory():
    """Set glibc's malloc thresholds as described above (once per process); returns True when
    they were set by this call."""
    global _malloc_checked
    if _malloc_checked:
        return False
    _malloc_checked = True
    if os.environ.get("FASTRNN_MALLOC", "").lower() == "system":
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def scratch_buffer(dtype, size):
    """This thread's scratch buffer of ``dtype``, with at least ``size`` elements."""
    buffers = _BUFFERS.__dict__
    buffer = buffers.get(dtype)
    if buffer is None or buffer.size < size:
        keep_freed_memory()
        start_thread_pool()
        buffer = buffers[dtype] = np.empty(size, dtype=dtype)
    return buffer


def _libgomp_loaded():
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def start_thread_pool():
    """Start Numba's thread pool, with libgomp's spin count set as described above (once per
    process); returns :data:`thread_pool`: the threading layer, the spin count fastrnn set (or
    None) and why."""
    global thread_pool
    if thread_pool is not None:
        return thread_pool
    with _thread_pool_lock:
        if thread_pool is None:
            thread_pool = _start_thread_pool()
    return thread_pool


def _start_thread_pool():
    import numba
    user_set = [name for name in _WAIT_SETTINGS if name in os.environ]
    if os.environ.get("FASTRNN_THREADS", "").lower() == "system":
        reason = "FASTRNN_THREADS=system"
    elif user_set:
        reason = f"{'/'.join(user_set)} set by the user"
    elif numba.config.THREADING_LAYER not in ("default", "omp"):
        reason = f"NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER}"
    elif _libgomp_loaded():
        reason = "libgomp was loaded before fastrnn started its threads"
    else:
        reason = None
    if reason is None:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        try:
            numba.get_num_threads()  # starts the pool: libgomp reads its environment as it loads
        finally:
            del os.environ["GOMP_SPINCOUNT"]
    else:
        numba.get_num_threads()
    layer = numba.threading_layer()
    applied = reason is None and layer == "omp"
    return dict(threading_layer=layer, gomp_spincount=SPIN_COUNT if applied else None,
                reason=reason or ("" if applied else f"threading layer {layer}"))
