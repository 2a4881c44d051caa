"""Process-wide resources of the kernels: per-thread scratch buffers, glibc's heap, and how
the threads of the parallel kernels wait.

A fresh multi-MB temporary on every call costs its page faults when the allocator hands the
memory back to the system in between (a large share of a float64 LSTM forward at N=25, H=512:
docs/performance.md, M6).  Two measures:

* :func:`scratch_buffer`: each thread keeps one buffer per dtype for the kernels' temporaries
  (packed weights, gate gradients), grown to the largest layer it has run (14.5 MiB for an
  N=25, T=16, H=512 float64 LSTM) and never shrunk; threads never share one, so concurrent calls
  stay independent.
* :func:`keep_freed_memory`: the outputs and caches are new arrays on every call (the caller keeps
  them), so they cannot come from a scratch buffer.  glibc returns the top of its heap to the
  system once more than ``M_TRIM_THRESHOLD`` bytes are free there (64 MiB at most, as glibc adapts
  it), and a layer that frees more than that per call (an N=100, H=1024 LSTM frees about 75 MiB)
  pays for every page again on the next call (docs/performance.md, M7).  On the first kernel call
  fastrnn sets glibc's thresholds to ``M_MMAP_THRESHOLD`` = 32 MiB (the largest glibc accepts, and
  where its own adaptive threshold ends up) and ``M_TRIM_THRESHOLD`` = 256 MiB: freed memory up to
  256 MiB stays in the process for the next call.  ``FASTRNN_MALLOC=system`` leaves malloc as it
  is; nothing happens on a C library other than glibc.
* :func:`call_threaded`: Numba's OpenMP threads (the ``omp`` layer) spin at the barriers that
  end each parallel region, and a recurrent layer runs a few regions per time step.  When
  another process holds a core, the thread that spins waits for one that is descheduled: a
  second fastrnn process makes an LSTM forward + backward many times slower, and next to one or
  two busy loops all threads are slower than one (docs/performance.md, fact 14 and M8).
  So each threaded kernel runs on as many threads as there are cores that no other runnable
  task holds (at least one, at most ``numba.get_num_threads()``), counted from
  ``/proc/loadavg`` less this process's own runnable threads, at most every 0.1 s.  The thread
  count is Numba's per-thread setting (``numba.set_num_threads``), set for the kernel's call
  and restored after it; the threading layer, libgomp and the environment are left as they
  are.  ``FASTRNN_THREADS=all`` turns the count off (every kernel on
  ``numba.get_num_threads()`` threads, as before).
"""
import ctypes
import os
import threading
import time

import numpy as np

_BUFFERS = threading.local()

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

_malloc_checked = False

_ADAPT = os.environ.get("FASTRNN_THREADS", "").lower() != "all"
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_CHECK_INTERVAL = 0.1  # seconds between two looks at the machine's load
_free_cores_cache = [0.0, None]  # [time of the next look, cores found free]


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


def _runnable_tasks():
    """(runnable tasks on the machine, runnable threads of this process), or None where /proc
    cannot tell (not Linux)."""
    try:
        with open("/proc/loadavg", "rb") as handle:
            machine = int(handle.read().split()[3].split(b"/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:  # the thread ended meanwhile
                continue
            own += stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] == b"R"
        return machine, own
    except (OSError, ValueError, IndexError):
        return None


def free_cores():
    """Cores of this process's CPU set that no other process's runnable task holds (at least
    1), looked up at most every 0.1 s; None when that cannot be known."""
    now = time.monotonic()
    if now < _free_cores_cache[0]:
        return _free_cores_cache[1]
    counts = _runnable_tasks()
    free = None
    if counts is not None:
        machine, own = counts
        free = max(1, _CPUS - max(0, machine - own))
    _free_cores_cache[:] = [now + _CHECK_INTERVAL, free]
    return free


def call_threaded(kernel, *args, **kwargs):
    """``kernel(*args, **kwargs)`` for a kernel that runs on Numba's threads, on as many threads as there
    are free cores (see the module's docstring); Numba's thread count is restored after."""
    import numba
    requested = numba.get_num_threads()
    free = free_cores() if _ADAPT else None
    if free is None or free >= requested:
        return kernel(*args, **kwargs)
    numba.set_num_threads(free)
    try:
        return kernel(*args, **kwargs)
    finally:
        numba.set_num_threads(requested)
