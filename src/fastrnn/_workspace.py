"""Memory the kernels reuse from call to call: per-thread scratch buffers, and glibc's heap.

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
        buffer = buffers[dtype] = np.empty(size, dtype=dtype)
    return buffer
