"""JIT hygiene: nothing compiles at import, the on-disk cache works (also from a read-only
package directory), and concurrent calls from Python threads give the serial results.

Subprocesses are few and small (seven), because each pays Numba's import and compile time.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastrnn
from _helpers import CASES, SIGMOID, assert_bitwise_equal, cast_floats, module_for

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")

# Lists every Numba dispatcher of the kernel modules loaded so far.
DISPATCHERS = textwrap.dedent("""
    def dispatchers():
        from numba.core.dispatcher import Dispatcher
        found = {}
        for name, mod in list(sys.modules.items()):
            if name.startswith("fastrnn.") and mod is not None:
                for attr, value in vars(mod).items():
                    if isinstance(value, Dispatcher):
                        found[value.py_func.__module__ + "." + value.py_func.__qualname__] = value
        return found
""")


def run_python(code, env=None, timeout=300):
    """Run ``code`` in a fresh interpreter; return its last stdout line parsed as JSON."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("FASTRNN_NO_CACHE", "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_compiles_nothing():
    """`import fastrnn` loads no numba; importing the layers compiles nothing; a float32 call
    compiles float32 kernels only (a kernel compiles on first use, for the dtype it meets)."""
    code = "import json, sys\n" + DISPATCHERS + textwrap.dedent("""
        import fastrnn, fastrnn.reference, fastrnn.gradient_check
        result = {"numba_after_import": "numba" in sys.modules,
                  "kernels_after_import": sorted(m for m in sys.modules
                                                 if m.startswith("fastrnn._kernels"))}
        import numpy as np
        import fastrnn.rnn_layers as L, fastrnn.layers
        result["compiled_after_layers_import"] = sorted(
            name for name, d in dispatchers().items() if d.signatures)
        rng = np.random.default_rng(0)
        f = np.float32
        h, cache = L.rnn_forward(rng.standard_normal((2, 3, 4)).astype(f),
                                 rng.standard_normal((2, 5)).astype(f),
                                 rng.standard_normal((4, 5)).astype(f),
                                 rng.standard_normal((5, 5)).astype(f), np.zeros(5, f))
        L.rnn_backward(np.ones_like(h), cache)
        result["float32_signatures"] = {name: [str(s) for s in d.signatures]
                                        for name, d in dispatchers().items() if d.signatures}
        print(json.dumps(result))
    """)
    # default cache location: warm when the in-process tests have already compiled float32 rnn
    result = run_python(code)
    assert result["numba_after_import"] is False
    assert result["kernels_after_import"] == []
    if JIT_DISABLED:
        return
    assert result["compiled_after_layers_import"] == []
    signatures = result["float32_signatures"]
    assert signatures, "rnn_forward/backward ran no Numba kernel"
    float64_arrays = {n: s for n, sigs in signatures.items() for s in sigs
                      if "array(float64" in s.lower()}
    assert not float64_arrays, f"float32 call compiled float64 array kernels: {float64_arrays}"


CACHE_SCRIPT = "import json, os, sys\n" + DISPATCHERS + textwrap.dedent("""
    PKG_ROOT = os.path.realpath(os.environ["TEST_PKG_ROOT"])
    if os.geteuid() == 0:
        # root ignores file permissions: make Numba's writability probe see what an ordinary
        # user sees in a read-only install (the probe writes a temporary file in the directory)
        import tempfile
        _temporary_file = tempfile.TemporaryFile

        def _read_only_probe(*args, **kwargs):
            where = kwargs.get("dir")
            if where and os.path.realpath(where).startswith(PKG_ROOT):
                raise PermissionError(13, "Permission denied (read-only package)", where)
            return _temporary_file(*args, **kwargs)
        tempfile.TemporaryFile = _read_only_probe

    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    import fastrnn
    assert os.path.realpath(fastrnn.__file__).startswith(PKG_ROOT), fastrnn.__file__
    import fastrnn.rnn_layers as L

    def job(seed):
        # the cheap-to-compile kernels: sigmoid, embedding scatter, softmax loss (the recurrent
        # ones take 10-20 s to compile cold; the cache mechanism is the same for every kernel)
        rng = np.random.default_rng(seed)
        N, T, V, D = 3 + seed, 6, 7, 5
        x, W = rng.integers(0, V, (N, T)), rng.standard_normal((V, D))
        out, cache = L.word_embedding_forward(x, W)
        dW = L.word_embedding_backward(np.ones_like(out), cache)
        loss, dscores = L.temporal_softmax_loss(out[:, :, :4], x % 4, x > 1)
        return [out, dW, L.sigmoid(out), np.asarray(loss), dscores]

    # the very first calls (compile or cache load) come from four threads at once
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(job, range(4)))
    serial = [job(seed) for seed in range(4)]
    same = all(np.array_equal(a, b) for t, s in zip(threaded, serial) for a, b in zip(t, s))
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers().values())
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers().values())
    print(json.dumps({"threads_equal_serial": same, "hits": hits, "misses": misses,
                      "checksum": [float(a.sum()) for a in serial[0]]}))
""")


@pytest.mark.skipif(JIT_DISABLED, reason="no compiled code to cache with NUMBA_DISABLE_JIT")
def test_disk_cache_from_read_only_package(tmp_path):
    """A copy of the package made read-only: the first process compiles and writes its cache
    to the user cache directory (XDG_CACHE_HOME), the second loads it and compiles nothing."""
    package = os.path.dirname(os.path.realpath(fastrnn.__file__))
    root = tmp_path / "site"
    shutil.copytree(package, root / "fastrnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"))
    user_cache = tmp_path / "user-cache"
    env = {"PYTHONPATH": str(root), "XDG_CACHE_HOME": str(user_cache),
           "PYTHONDONTWRITEBYTECODE": "1", "TEST_PKG_ROOT": str(root)}
    read_only = []
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR)
        read_only.append(dirpath)
    try:
        cold = run_python(CACHE_SCRIPT, env)
        written = sorted(p.name for p in user_cache.rglob("*.nbi"))
        warm = run_python(CACHE_SCRIPT, env)
        in_package = [str(p) for p in root.rglob("*.nb[ic]")]
    finally:
        for dirpath in read_only:
            os.chmod(dirpath, stat.S_IRWXU)
    assert cold["threads_equal_serial"] and warm["threads_equal_serial"]
    assert cold["misses"] > 0 and cold["hits"] == 0, cold
    assert written, "no cache index written to the user cache directory"
    assert not in_package, f"cache files written into the read-only package: {in_package}"
    assert warm["hits"] > 0 and warm["misses"] == 0, warm
    assert warm["checksum"] == cold["checksum"]


RELOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastrnn.rnn_layers as L
    rng = np.random.default_rng(0)
    cell = sys.argv[1]
    # both sizes, so that the small path (BLAS) and the packed one (Numba's thread pool) compile
    out = []
    for N, T, D, H in [(2, 3, 4, 5), (25, 4, 64, 128)]:
        G = 4 * H if cell == "lstm" else H
        h, cache = getattr(L, cell + "_forward")(
            rng.standard_normal((N, T, D)), rng.standard_normal((N, H)),
            rng.standard_normal((D, G)), rng.standard_normal((H, G)), rng.standard_normal(G))
        grads = getattr(L, cell + "_backward")(rng.standard_normal((N, T, H)), cache)
        out += [float(h.sum())] + [float(g.sum()) for g in grads]
    print(json.dumps(out))
""")


@pytest.mark.skipif(JIT_DISABLED, reason="no compiled code to cache with NUMBA_DISABLE_JIT")
def test_cached_recurrent_kernels_reload_in_new_processes(tmp_path):
    """The recurrent kernels run the packed product on Numba's thread pool.  A cached kernel
    that called a separately compiled parallel function crashed (segfault) in the third of
    these processes: rnn compiles, lstm compiles while loading rnn's cached helpers, lstm
    loads everything from the cache."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    rnn_cold = run_python(RELOAD_SCRIPT.replace("sys.argv[1]", "'rnn'"), env)
    lstm_cold = run_python(RELOAD_SCRIPT.replace("sys.argv[1]", "'lstm'"), env)
    lstm_warm = run_python(RELOAD_SCRIPT.replace("sys.argv[1]", "'lstm'"), env)
    rnn_warm = run_python(RELOAD_SCRIPT.replace("sys.argv[1]", "'rnn'"), env)
    assert list((tmp_path / "numba-cache").rglob("*.nbi")), "nothing was cached"
    assert lstm_warm == lstm_cold and rnn_warm == rnn_cold


# ---- threads, in this process --------------------------------------------------------------
THREAD_SHAPES = {
    # rnn and lstm large enough for the packed product (thread pool, per-thread scratch)
    "rnn": dict(N=16, T=20, D=24, H=128), "lstm": dict(N=16, T=20, D=24, H=64),
    "word_embedding": dict(N=8, T=20, V=50, D=32), "sigmoid": dict(shape=(64, 64)),
    "temporal_affine": dict(N=8, T=20, D=32, M=40),
    "temporal_softmax_loss": dict(N=8, T=20, V=50),
}


def test_threads_give_serial_results(fast, fast_layers, rng):
    """Many calls from 4 threads at once, on different inputs and both dtypes, each equal
    bitwise to the same call made serially (no shared scratch buffers, no lost GIL safety)."""
    cases = [c for c in CASES if c.name in THREAD_SHAPES]
    assert {c.name for c in cases} == set(THREAD_SHAPES)
    tasks = []
    for repeat in range(3):
        for case in cases:
            for dtype in (np.float32, np.float64):
                arrays = cast_floats(case.build(rng, **THREAD_SHAPES[case.name]), dtype)
                tasks.append((case, arrays))

    def run(task):
        case, arrays = task
        return case.run(module_for(case, fast, fast_layers), arrays)

    serial = [run(task) for task in tasks]
    for _ in range(2):
        with ThreadPoolExecutor(max_workers=4) as pool:
            threaded = list(pool.map(run, tasks))
        for (case, _), got, expected in zip(tasks, threaded, serial):
            assert_bitwise_equal(got, expected, case.names)


def test_thread_check_detects_shared_buffer(rng):
    """The comparison above catches a layer that writes results into a shared buffer."""
    shared = {}

    def sigmoid(x):
        out = shared.setdefault(x.shape + (x.dtype.str,), np.empty_like(x))
        np.copyto(out, 1 / (1 + np.exp(-x)))
        return out

    arrays = [SIGMOID.build(rng, shape=(4, 4)) for _ in range(2)]
    first = sigmoid(arrays[0]["x"])
    sigmoid(arrays[1]["x"])
    with pytest.raises(AssertionError):
        assert_bitwise_equal([first], [1 / (1 + np.exp(-arrays[0]["x"]))], ["out"])


PARALLEL_OPTIONS_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from numba import prange
    from fastrnn._jit import jit

    @jit(parallel=True)
    def kernel(x):
        ones = np.ones(x.size, dtype=x.dtype)  # must stay a plain loop: prange only
        total = 0.0
        for i in prange(x.size):
            total += x[i]
        return ones, total

    for dtype in (np.float32, np.float64, np.float32):
        kernel(np.zeros(3, dtype))
    print(json.dumps([len(cres.metadata["parfor_diagnostics"].initial_parfors)
                      for cres in kernel.overloads.values()]))
""")


@pytest.mark.skipif(JIT_DISABLED, reason="nothing is compiled with NUMBA_DISABLE_JIT")
def test_every_signature_of_a_parallel_kernel_runs_prange_loops_only():
    """Each dtype a kernel compiles for gets the prange-only options.  Numba used to consume
    an options dict on the first compilation, so the second dtype of a process got every
    array expression as a parallel loop (a thread launch per np.ones on every call)."""
    counts = run_python(PARALLEL_OPTIONS_SCRIPT, {"FASTRNN_NO_CACHE": "1"})
    assert counts == [1, 1]  # the prange loop, for both float32 and float64
