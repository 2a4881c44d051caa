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


# A child process runs one layer large enough for the threaded kernels and reports what the
# thread pool became and what its environment holds afterwards.
_THREADS_CHILD = """
import json, os
import numpy as np
import numba
before = dict(os.environ)
from fastrnn import _workspace
from fastrnn.rnn_layers import lstm_forward
x, h0 = np.ones((25, 2, 64), np.float32), np.ones((25, 128), np.float32)
lstm_forward(x, h0, np.ones((64, 512), np.float32), np.ones((128, 512), np.float32),
             np.ones(512, np.float32))
print(json.dumps({"pool": _workspace.thread_pool, "layer": numba.threading_layer(),
                  "env_changed": sorted(k for k in set(before) | set(os.environ)
                                        if before.get(k) != os.environ.get(k))}))
"""


def _thread_pool_in_child(**env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "FASTRNN_THREADS")}
    result = subprocess.run([sys.executable, "-c", _THREADS_CHILD], capture_output=True,
                            text=True, timeout=600, env=dict(environ, **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_thread_pool_spin_count_is_set_without_changing_the_environment():
    """The README's promise: libgomp gets fastrnn's spin count, Numba keeps the threading layer
    it picks by default (omp here), and no environment variable is left changed."""
    report = _thread_pool_in_child()
    assert report["env_changed"] == []
    assert report["layer"] == report["pool"]["threading_layer"]
    if report["layer"] == "omp":
        assert report["pool"]["gomp_spincount"] == _workspace.SPIN_COUNT


@pytest.mark.parametrize("env,reason", [({"GOMP_SPINCOUNT": "0"}, "GOMP_SPINCOUNT"),
                                        ({"OMP_WAIT_POLICY": "ACTIVE"}, "OMP_WAIT_POLICY"),
                                        ({"FASTRNN_THREADS": "system"}, "FASTRNN_THREADS")])
def test_the_users_thread_settings_are_left_alone(env, reason):
    report = _thread_pool_in_child(**env)
    assert report["pool"]["gomp_spincount"] is None
    assert reason in report["pool"]["reason"]
    assert report["env_changed"] == []
