"""Measurement: timing primitives, the bytes a cache keeps, competing load, and the workers that
measure in subprocesses of their own (``python -m fastrnn.bench --worker ...``)."""
import contextlib
import gc
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from .cases import (CASES_BY_NAME, CLASSIC_MODULE, FLOAT32_ACCURACY, FLOAT64_TOLERANCE,
                    MEMORY_CASE, STARTUP_CASE, cast_inputs, make_inputs, numpy_workload,
                    torch_workload)


def _timed(func, number):
    start = time.perf_counter()
    for _ in range(number):
        func()
    return time.perf_counter() - start


def best_of(func, repeats, min_time):
    """Best-of-``repeats`` seconds per call of ``func``, after two warm-up calls.

    Each sample times ``number`` back-to-back calls, ``number`` chosen so that a sample lasts at
    least ``min_time`` seconds (as ``timeit.autorange`` does).  Garbage collection is off while
    timing.  Returns ``(best, samples, number)``.
    """
    func()   # compiles (numba) / packs weights (oneDNN): never timed
    func()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        number = 1
        elapsed = _timed(func, number)
        while elapsed < min_time:
            per_call = max(elapsed / number, 1e-9)
            number = max(number * 2, min(int(1.2 * min_time / per_call) + 1, number * 100))
            elapsed = _timed(func, number)
        samples = [elapsed / number]
        for _ in range(repeats - 1):
            samples.append(_timed(func, number) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return min(samples), samples, number


def _byte_bounds(array):
    try:
        from numpy.lib.array_utils import byte_bounds   # NumPy >= 2.0
    except ImportError:                                 # pragma: no cover - NumPy 1.x
        byte_bounds = np.byte_bounds
    return byte_bounds(array)


def _owner(array):
    """The outermost ndarray of a view chain: its bounds are the whole buffer a view keeps alive."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _arrays_reachable(obj, seen=None, depth=0):
    """Every ndarray reachable from ``obj`` through containers and object attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 50:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
        return
    if isinstance(obj, (str, bytes, int, float, complex, bool, type(None), np.generic, type)):
        return
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (tuple, list, set, frozenset)):
        children = list(obj)
    else:
        children = []
        if hasattr(obj, "__dict__") and not callable(obj):
            children.extend(vars(obj).values())
        for klass in type(obj).__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if hasattr(obj, slot):
                    children.append(getattr(obj, slot))
    for child in children:
        yield from _arrays_reachable(child, seen, depth + 1)


def _merge(intervals):
    merged = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return merged


def _subtract(intervals, removed):
    result = []
    for low, high in intervals:
        pieces = [(low, high)]
        for r_low, r_high in removed:
            pieces = [piece for p_low, p_high in pieces
                      for piece in ((p_low, min(p_high, r_low)), (max(p_low, r_high), p_high))
                      if piece[1] > piece[0]]
        result.extend(pieces)
    return result


def cache_bytes(cache, exclude=()):
    """Bytes of memory kept alive by ``cache``, each buffer counted once.

    Walks every ndarray reachable from ``cache``; a view counts its whole underlying buffer (what
    it keeps alive).  Memory shared with any array in ``exclude`` (the caller's inputs and
    weights) is not counted.  Returns ``(bytes, number_of_arrays)``.
    """
    arrays = list(_arrays_reachable(cache))
    kept = _merge(_byte_bounds(_owner(array)) for array in arrays if array.nbytes)
    owned = _merge(_byte_bounds(_owner(array)) for array in exclude if array.nbytes)
    return sum(high - low for low, high in _subtract(kept, owned)), len(arrays)


def _relative_error(value, truth):
    value = np.asarray(value, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if value.shape != truth.shape:
        return float("nan")
    if value.size == 0:
        return 0.0
    scale = np.max(np.abs(truth))
    error = np.max(np.abs(value - truth))
    return float(error / scale) if scale > 0 else float(error)


def _limit_threads(threads):
    """Context manager limiting BLAS/OpenMP pools to ``threads`` (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def _environment_info(threads):
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "loaded": sorted(name for name in ("numba", "scipy", "torch")
                             if name in sys.modules)}
    for name in ("numba", "scipy", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "?")
    if "numba" in sys.modules:
        import numba
        info["numba_threads"] = numba.get_num_threads()
        try:
            info["numba_threading_layer"] = numba.threading_layer()
        except ValueError:    # no parallel kernel ran yet
            info["numba_threading_layer"] = None
    if "torch" in sys.modules:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        info["torch_parallel_info"] = torch.__config__.parallel_info().splitlines()[:12]
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [
            {key: pool.get(key) for key in ("user_api", "internal_api", "version", "num_threads",
                                            "threading_layer", "architecture")}
            | {"library": os.path.basename(pool.get("filepath", ""))}
            for pool in threadpool_info()]
    except ImportError:
        info["threadpools"] = None
    workspace = sys.modules.get("fastrnn._workspace")
    if workspace is not None:
        info["fastrnn_threads"] = ("free cores of the moment (FASTRNN_THREADS=all turns it off)"
                                   if workspace._ADAPT else "all (FASTRNN_THREADS=all)")
    info["requested_threads"] = threads
    return info


def _worker_time(spec):
    """Times every case of ``spec`` with one implementation; returns a JSON-able dict."""
    impl, threads = spec["impl"], spec["threads"]
    result = {"impl": impl, "cases": {}}
    if impl == "torch":
        try:
            import torch
        except ImportError as error:
            result["unavailable"] = f"torch not importable ({error})"
            return result
        torch.set_num_threads(threads)
    else:
        module_name = CLASSIC_MODULE if impl == "classic" else spec["fast_module"]
        try:
            layers = importlib.import_module(module_name)
        except Exception as error:   # the layer module itself is broken or missing
            result["unavailable"] = f"cannot import {module_name} ({type(error).__name__}: {error})"
            return result
        result["module"] = module_name
        if "numba" in sys.modules:
            import numba
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    for name in spec["cases"]:
        case = CASES_BY_NAME[name]
        entry = {}
        try:
            inputs = make_inputs(case)
            func = torch_workload(case, inputs) if impl == "torch" else numpy_workload(
                case, layers, inputs)
            if func is None:
                entry["note"] = "no torch counterpart"
            else:
                func()   # load the BLAS library before limiting its pool
                with _limit_threads(threads):
                    best, samples, number = best_of(func, spec["repeats"], spec["min_time"])
                entry.update(seconds=best, samples=samples, number=number)
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"
        result["cases"][name] = entry
    result["environment"] = _environment_info(threads)
    return result


def _worker_accuracy(spec):
    """Accuracy per output: float32 against float64, float64 fastrnn against classic."""
    classic = importlib.import_module(CLASSIC_MODULE)
    try:
        fast = importlib.import_module(spec["fast_module"])
    except Exception as error:
        return {"unavailable": f"cannot import {spec['fast_module']} ({error})", "cases": {}}
    result = {"cases": {}}
    for name in spec["cases"]:
        case = CASES_BY_NAME[name]
        entry = {}
        try:
            inputs = make_inputs(case)
            fast_out = numpy_workload(case, fast, inputs)()
            classic_out = numpy_workload(case, classic, inputs)()
            entry["dtype_kept"] = all(
                np.asarray(value).dtype == np.dtype(case.dtype) for key, value in fast_out.items()
                if key != "loss")
            if case.dtype == "float32":
                truth = numpy_workload(case, classic, cast_inputs(inputs, np.float64))()
                entry["fastrnn"] = {k: _relative_error(v, truth[k]) for k, v in fast_out.items()}
                entry["classic"] = {k: _relative_error(v, truth[k])
                                    for k, v in classic_out.items()}
                entry["criterion"] = FLOAT32_ACCURACY
                entry["passed"] = bool(entry["dtype_kept"] and max(entry["fastrnn"].values())
                                       <= max(entry["classic"].values()))
            else:
                entry["fastrnn_vs_classic"] = {k: _relative_error(v, classic_out[k])
                                               for k, v in fast_out.items()}
                entry["criterion"] = f"fastrnn vs classic <= {FLOAT64_TOLERANCE:g}"
                entry["passed"] = bool(entry["dtype_kept"] and max(
                    entry["fastrnn_vs_classic"].values()) <= FLOAT64_TOLERANCE)
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"
        result["cases"][name] = entry
    return result


def _worker_memory(spec):
    """Bytes ``lstm_forward`` keeps in its cache, classic vs fastrnn, for MEMORY_CASE."""
    case = CASES_BY_NAME[MEMORY_CASE]
    inputs = make_inputs(case)
    owned = [inputs[key] for key in ("x", "h0", "Wx", "Wh", "b")]
    result = {"case": case.name, "label": case.label}
    for impl, module_name in (("classic", CLASSIC_MODULE), ("fastrnn", spec["fast_module"])):
        try:
            layers = importlib.import_module(module_name)
            h, cache = layers.lstm_forward(*owned)
            kept, count = cache_bytes(cache, exclude=owned)
            kept_beyond_h, _ = cache_bytes(cache, exclude=owned + [h])
            result[impl] = {"bytes": kept, "bytes_excluding_output": kept_beyond_h,
                            "arrays": count}
        except Exception as error:
            result[impl] = {"error": f"{type(error).__name__}: {error}"}
    return result


_STARTUP_IMPORT = """\
import time
start = time.perf_counter()
import fastrnn
print(time.perf_counter() - start)
"""

_STARTUP_FIRST_CALL = """\
import json, time
start = time.perf_counter()
import importlib
import numpy as np
layers = importlib.import_module({module!r})
imported = time.perf_counter()
from fastrnn.bench import CASES_BY_NAME, make_inputs
p = make_inputs(CASES_BY_NAME[{case!r}])
begin = time.perf_counter()
h, cache = layers.lstm_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
layers.lstm_backward(p["dh"], cache)
end = time.perf_counter()
print(json.dumps({{"import_s": imported - start, "first_call_s": end - begin}}))
"""


def _run_python(code, env=None, timeout=900):
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr.strip().splitlines()[-1] if completed.stderr
                           else f"exit status {completed.returncode}")
    return completed.stdout.strip().splitlines()[-1]


def measure_startup(fast_module, repeats):
    """Start-up figures, each in a fresh interpreter.

    ``import fastrnn`` (best of ``repeats``); then, for ``lstm_forward`` + ``lstm_backward`` of
    STARTUP_CASE, the import of the layer module and the first call, with an empty temporary
    ``NUMBA_CACHE_DIR`` (cold: compiles) and again with that directory filled (warm: loads).
    """
    result = {"module": fast_module, "case": STARTUP_CASE}
    try:
        result["import_fastrnn_s"] = min(float(_run_python(_STARTUP_IMPORT))
                                         for _ in range(repeats))
    except Exception as error:
        result["import_fastrnn_error"] = str(error)
    code = _STARTUP_FIRST_CALL.format(module=fast_module, case=STARTUP_CASE)
    cache_dir = tempfile.mkdtemp(prefix="fastrnn-bench-numba-cache-")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        env.pop("FASTRNN_NO_CACHE", None)
        result["cold"] = json.loads(_run_python(code, env))
        warm = [json.loads(_run_python(code, env)) for _ in range(repeats)]
        result["warm"] = min(warm, key=lambda run: run["first_call_s"])
    except Exception as error:
        result["error"] = str(error)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return result


WORKERS = {"time": _worker_time, "accuracy": _worker_accuracy, "memory": _worker_memory}


def _spawn_worker(kind, spec, timeout=3600):
    """Runs ``--worker kind`` in a fresh interpreter and returns its JSON result."""
    with tempfile.TemporaryDirectory(prefix="fastrnn-bench-") as tmp:
        out_path = os.path.join(tmp, "result.json")
        command = [sys.executable, "-m", "fastrnn.bench", "--worker", kind,
                   "--worker-spec", json.dumps(spec), "--worker-out", out_path]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0 or not os.path.exists(out_path):
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            return {"worker_error": f"exit status {completed.returncode}: " + " | ".join(tail),
                    "cases": {}}
        with open(out_path) as handle:
            return json.load(handle)


_BUSY_LOOP = """\
import time
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    pass
"""


@contextlib.contextmanager
def competing_load(count, seconds=3600):
    """``count`` busy processes for the duration of the block: plain Python loops, each of
    which also ends by itself after ``seconds``.  They are ended when the block exits, however it
    exits (Ctrl-C included), and run in sessions of their own, so that a terminal's Ctrl-C
    reaches the bench, which ends them, and not them."""
    processes = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen(
                [sys.executable, "-c", _BUSY_LOOP.format(seconds=seconds)],
                stdin=subprocess.DEVNULL, start_new_session=True))
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
