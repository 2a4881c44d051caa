"""The memory fastrnn reuses between calls: glibc's heap kept, scratch buffers per thread."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from fastrnn import _workspace

# A child process frees ~100 MiB of arrays (under glibc's 32 MiB mmap cap, over its adaptive
# 64 MiB trim limit) and allocates them again, as a large layer's outputs do from call to call.
_CHILD = """
import ctypes, json, resource
from fastrnn import _workspace
tuned = _workspace.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def touch():  # malloc directly: NumPy asks for huge pages on large arrays, Numba does not
    blocks = [libc.malloc(25 << 20) for _ in range(4)]
    for block in blocks:
        ctypes.memset(block, 1, 25 << 20)
    for block in blocks:
        libc.free(block)
for _ in range(3):
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(json.dumps({"tuned": tuned,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _glibc():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def _child(malloc):
    env = dict(os.environ, FASTRNN_MALLOC=malloc)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not _glibc(), reason="malloc thresholds are a glibc feature")
def test_freed_memory_is_reused_without_page_faults():
    system, tuned = _child("system"), _child("")
    assert system["tuned"] is False and tuned["tuned"] is True
    pages = 100 * (1 << 20) // 4096
    assert system["faults"] > pages // 2  # glibc's own thresholds give the memory back ...
    assert tuned["faults"] < pages // 20  # ... fastrnn's keep it for the next call


def test_keep_freed_memory_acts_once(monkeypatch):
    monkeypatch.setattr(_workspace, "_malloc_checked", False)
    monkeypatch.setenv("FASTRNN_MALLOC", "system")
    assert _workspace.keep_freed_memory() is False
    monkeypatch.delenv("FASTRNN_MALLOC")
    assert _workspace.keep_freed_memory() is False  # already decided for this process


def test_scratch_buffers_grow_and_belong_to_one_thread():
    small = _workspace.scratch_buffer(np.float32, 10)
    assert small.dtype == np.float32 and small.size >= 10
    assert _workspace.scratch_buffer(np.float32, 5) is small
    large = _workspace.scratch_buffer(np.float32, small.size + 1)
    assert large.size > small.size and _workspace.scratch_buffer(np.float32, 1) is large
    assert _workspace.scratch_buffer(np.float64, 1).dtype == np.float64
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_workspace.scratch_buffer(np.float32, 1)))
    thread.start()
    thread.join()
    assert seen[0] is not large


# A child process runs one layer large enough for the threaded kernels and reports what its
# environment, threading layer and Numba thread count are afterwards.
_THREADS_CHILD = """
import json, os
import numpy as np
import numba
before = dict(os.environ)
threads_before = numba.get_num_threads()
from fastrnn.rnn_layers import lstm_forward
x, h0 = np.ones((25, 2, 64), np.float32), np.ones((25, 128), np.float32)
lstm_forward(x, h0, np.ones((64, 512), np.float32), np.ones((128, 512), np.float32),
             np.ones(512, np.float32))
print(json.dumps({"layer": numba.threading_layer(), "default_layer": numba.config.THREADING_LAYER,
                  "threads": [threads_before, numba.get_num_threads()],
                  "env_changed": sorted(k for k in set(before) | set(os.environ)
                                        if before.get(k) != os.environ.get(k))}))
"""


def test_a_call_changes_no_thread_setting_of_the_process():
    """What the README promises: the environment, Numba's threading layer (its default choice)
    and the caller's Numba thread count are as they were after a threaded kernel ran."""
    environ = {k: v for k, v in os.environ.items() if k != "FASTRNN_THREADS"}
    result = subprocess.run([sys.executable, "-c", _THREADS_CHILD], capture_output=True,
                            text=True, timeout=600, env=environ)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["env_changed"] == []
    assert report["default_layer"] == "default"  # nothing forced a layer
    assert report["threads"][0] == report["threads"][1]


def test_call_threaded_uses_the_free_cores_and_restores_the_count(monkeypatch):
    numba = pytest.importorskip("numba")
    seen = []

    def kernel(value, scale=1):
        seen.append(numba.get_num_threads())
        return value * scale

    requested = numba.get_num_threads()
    monkeypatch.setattr(_workspace, "_ADAPT", True)
    monkeypatch.setattr(_workspace, "free_cores", lambda: 1)
    assert _workspace.call_threaded(kernel, 3, scale=2) == 6
    assert seen[-1] == 1 and numba.get_num_threads() == requested
    monkeypatch.setattr(_workspace, "free_cores", lambda: 64)
    _workspace.call_threaded(kernel, 1)
    assert seen[-1] == requested  # never more than Numba's own setting
    monkeypatch.setattr(_workspace, "free_cores", lambda: 1)
    monkeypatch.setattr(_workspace, "_ADAPT", False)  # FASTRNN_THREADS=all
    _workspace.call_threaded(kernel, 1)
    assert seen[-1] == requested
    monkeypatch.setattr(_workspace, "_ADAPT", True)

    def failing():
        raise RuntimeError("kernel failed")
    with pytest.raises(RuntimeError):
        _workspace.call_threaded(failing)
    assert numba.get_num_threads() == requested


def test_free_cores_counts_other_runnable_tasks(monkeypatch):
    """Other runnable tasks take cores; this process's own runnable threads do not."""
    monkeypatch.setattr(_workspace, "_CPUS", 2)
    for machine, own, free in [(1, 1, 2), (2, 1, 1), (3, 2, 1), (4, 1, 1), (2, 2, 2)]:
        monkeypatch.setattr(_workspace, "_runnable_tasks", lambda: (machine, own))
        _workspace._free_cores_cache[:] = [0.0, None]
        assert _workspace.free_cores() == free, (machine, own)
    # Looked at most every 0.1 s: a second call within that time reuses the answer.
    monkeypatch.setattr(_workspace, "_runnable_tasks", lambda: (9, 1))
    assert _workspace.free_cores() == 2
    _workspace._free_cores_cache[:] = [0.0, None]
    assert _workspace.free_cores() == 1
    monkeypatch.setattr(_workspace, "_runnable_tasks", lambda: None)  # no /proc
    _workspace._free_cores_cache[:] = [0.0, None]
    assert _workspace.free_cores() is None


def test_runnable_tasks_reads_this_machine():
    counts = _workspace._runnable_tasks()
    if counts is None:
        pytest.skip("no /proc here")
    machine, own = counts
    assert own >= 1 and machine >= own  # this thread is running while it reads
