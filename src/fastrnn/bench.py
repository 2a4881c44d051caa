"""Speed, accuracy, memory and start-up report: ``python -m fastrnn.bench`` (or ``fastrnn bench``).

Measures the cases of the speed issue (RNN/LSTM sequence forward+backward, the captioning training
step, ``word_embedding_backward``, ``temporal_softmax_loss``) for three implementations:

* ``classic``: :mod:`fastrnn.reference`, the per-timestep NumPy style of the course code;
* ``fastrnn``: :mod:`fastrnn.rnn_layers` (``--fast-module`` names another module with the same API);
* ``torch``: ``nn.RNN(nonlinearity='tanh')`` / ``nn.LSTM`` and friends, ``torch.set_num_threads``,
  same dtype, forward+backward (skipped with a note when torch is not importable).

Each implementation runs in its OWN subprocess: OpenBLAS threads and torch's OpenMP threads keep
spinning after a call, and timing one library right after another in the same process made torch
look 3x slower (``PERFORMANCE.md``, fact 9).  Every (case, implementation) gets a fresh process,
and a case's implementations are timed one right after the other, over ``--rounds`` rounds
through all cases: this machine's speed drifts by 20-30% over minutes, and side-by-side timing
keeps the drift out of the ratios.  Compilation and warm-up happen before the timed region; each
figure is the best over the rounds of ``k`` samples each, a sample being the mean over enough
calls to last ``--min-time`` seconds.  Accuracy (max|err| / max|value| per output against a
float64 computation), the bytes ``lstm_forward`` keeps for backward, and start-up times are
measured in further subprocesses of their own.

Benchmark with OpenBLAS on its native kernels::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastrnn.bench
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastrnn.bench --json bench.json
    python -m fastrnn.bench --load bench.json --markdown     # the README speed table

The README speed table is the ``--markdown`` output, pasted, never typed by hand.  Timings are a
report: nothing here asserts a number, and the exit status is 0 whether targets pass or miss.

This module imports only NumPy at import time; the layer modules, numba, torch and threadpoolctl
are imported inside the worker subprocess that needs them.
"""
import argparse
import contextlib
import fnmatch
import gc
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Case", "CASES", "main", "make_inputs", "numpy_workload", "torch_workload",
           "cache_bytes", "run_benchmarks", "render_text", "render_markdown"]

SCHEMA_VERSION = 1
IMPLEMENTATIONS = ("classic", "fastrnn", "torch")
DEFAULT_FAST_MODULE = "fastrnn.rnn_layers"
CLASSIC_MODULE = "fastrnn.reference"
SLOW_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Environment variables that change what a figure means; reported with every run.
REPORTED_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "FASTRNN_", "GOTO", "BLIS_")

CAPTION_FEATURE_DIM = 512   # CaptioningRNN input_dim default (VGG16 fc7 PCA features)
VOCAB_SIZE = 1004           # the real COCO vocabulary
FLOAT32_ACCURACY = "fastrnn <= classic"   # both against float64, worst output
FLOAT64_TOLERANCE = 1e-12                 # fastrnn vs classic, relative, worst output


@dataclass(frozen=True)
class Case:
    """One row of the speed table.

    ``kind`` is one of ``rnn``, ``lstm`` (sequence forward+backward, shape (N, T, D, H)),
    ``captioning`` (the model's loss and gradients, shape (N, T, W, H)), ``train_step`` (one
    ``CaptioningSolver`` Adam step: minibatch, loss, gradients, update), ``embedding_backward``
    (shape (N, T, V, D),
    only ``word_embedding_backward`` is timed) and ``softmax_loss`` (shape (N, T, V)).
    ``target_classic`` / ``target_torch`` are the speed-ups the issue asks for (None: no target).
    """

    name: str
    kind: str
    shape: tuple
    dtype: str
    target_classic: float = None
    target_torch: float = None

    @property
    def label(self):
        titles = {"rnn": "RNN", "lstm": "LSTM", "captioning": "captioning step",
                  "train_step": "training step (solver, Adam)",
                  "embedding_backward": "word_embedding_backward",
                  "softmax_loss": "temporal_softmax_loss"}
        return f"{titles[self.kind]} {', '.join(map(str, self.shape))}, {self.dtype}"


def _case(kind, shape, dtype, target_classic=None, target_torch=None):
    name = f"{kind}_{'x'.join(map(str, shape))}_{'f32' if dtype == 'float32' else 'f64'}"
    return Case(name, kind, tuple(shape), dtype, target_classic, target_torch)


# The table of the speed issue; shapes are (N, T, D, H) unless the kind says otherwise.
CASES = (
    _case("rnn", (2, 10, 3, 6), "float64", 10, 10),
    _case("rnn", (25, 16, 256, 512), "float32", 3, 1.5),
    _case("rnn", (100, 16, 256, 512), "float32", 3, 1.5),
    _case("lstm", (2, 10, 3, 6), "float64", 15, 15),
    _case("lstm", (10, 16, 30, 40), "float64", 5, 5),
    _case("lstm", (25, 16, 256, 512), "float64", 3, 2),
    _case("lstm", (25, 16, 256, 512), "float32", 4, 0.8),
    _case("lstm", (100, 16, 256, 512), "float32", 3.5, 0.9),
    _case("lstm", (100, 16, 512, 1024), "float32", 3.5, 0.9),
    _case("captioning", (25, 16, 256, 512), "float32", 3.5, None),
    _case("train_step", (25, 16, 256, 512), "float32"),
    _case("train_step", (100, 16, 256, 512), "float32"),
    _case("embedding_backward", (25, 16, VOCAB_SIZE, 256), "float32", 20, None),
    _case("softmax_loss", (50, 16, VOCAB_SIZE), "float32", 2, None),
)
CASES_BY_NAME = {case.name: case for case in CASES}
MEMORY_CASE = "lstm_25x16x256x512_f32"
STARTUP_CASE = "lstm_25x16x256x512_f32"


def select_cases(patterns):
    """Cases whose name matches one of the comma-separated patterns (glob, or else substring)."""
    if not patterns:
        return list(CASES)
    tokens = [token.strip() for token in patterns.split(",") if token.strip()]
    chosen = []
    for case in CASES:
        for token in tokens:
            glob = any(ch in token for ch in "*?[")
            if (fnmatch.fnmatchcase(case.name, token) if glob else token in case.name):
                chosen.append(case)
                break
    return chosen


# ---------------------------------------------------------------------------------------------
# Inputs and workloads (shared with asv_bench/benchmarks)
# ---------------------------------------------------------------------------------------------

def make_inputs(case, seed=0):
    """Inputs of ``case`` as a dict of NumPy arrays, deterministic in ``seed``.

    Weights are scaled by 1/sqrt(fan-in), as the course code initialises them, so the gates stay
    out of saturation and the accuracy figures mean something.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)

    def randn(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    if case.kind in ("rnn", "lstm"):
        N, T, D, H = case.shape
        gates = 4 * H if case.kind == "lstm" else H
        return dict(x=randn(N, T, D), h0=randn(N, H, scale=0.5),
                    Wx=randn(D, gates, scale=1 / math.sqrt(D)),
                    Wh=randn(H, gates, scale=1 / math.sqrt(H)),
                    b=randn(gates, scale=0.1), dh=randn(N, T, H))
    if case.kind in ("captioning", "train_step"):
        N, T, W, H = case.shape
        F, V = CAPTION_FEATURE_DIM, VOCAB_SIZE
        # A training step samples its minibatch from a pool: 4N captions of 2N images.
        rows, images = (4 * N, 2 * N) if case.kind == "train_step" else (N, N)
        captions = rng.integers(1, V, size=(rows, T + 1)).astype(np.int32)
        for row, length in enumerate(rng.integers(T // 2, T + 2, size=rows)):
            captions[row, length:] = 0     # <NULL> padding, so the mask has False entries
        return dict(features=randn(images, F), captions=captions,
                    image_idxs=rng.integers(0, images, size=rows).astype(np.int32),
                    W_embed=randn(V, W, scale=1 / 100),
                    W_proj=randn(F, H, scale=1 / math.sqrt(F)), b_proj=np.zeros(H, dtype),
                    Wx=randn(W, 4 * H, scale=1 / math.sqrt(W)),
                    Wh=randn(H, 4 * H, scale=1 / math.sqrt(H)), b=np.zeros(4 * H, dtype),
                    W_vocab=randn(H, V, scale=1 / math.sqrt(H)), b_vocab=np.zeros(V, dtype))
    if case.kind == "embedding_backward":
        N, T, V, D = case.shape
        return dict(x=rng.integers(0, V, size=(N, T)).astype(np.int32), W=randn(V, D, scale=0.1),
                    dout=randn(N, T, D))
    if case.kind == "softmax_loss":
        N, T, V = case.shape
        return dict(x=randn(N, T, V, scale=2.0), y=rng.integers(0, V, size=(N, T)),
                    mask=rng.random((N, T)) > 0.2)
    raise ValueError(f"unknown case kind {case.kind!r}")


def cast_inputs(inputs, dtype):
    """The same inputs with every floating array cast to ``dtype`` (integer/bool arrays kept)."""
    return {key: value.astype(dtype) if value.dtype.kind == "f" else value
            for key, value in inputs.items()}


CAPTION_PARAMS = ("W_embed", "W_proj", "b_proj", "Wx", "Wh", "b", "W_vocab", "b_vocab")


def _caption_loss(layers, p, features, captions):
    """``CaptioningRNN.loss`` with cell_type='lstm', written out with the functions of the
    layer module ``layers`` and the parameters ``p``: (loss, grads)."""
    captions_in, captions_out = captions[:, :-1], captions[:, 1:]
    mask = captions_out != 0
    h0, proj_cache = layers.affine_forward(features, p["W_proj"], p["b_proj"])
    words, embed_cache = layers.word_embedding_forward(captions_in, p["W_embed"])
    hidden, lstm_cache = layers.lstm_forward(words, h0, p["Wx"], p["Wh"], p["b"])
    scores, vocab_cache = layers.temporal_affine_forward(hidden, p["W_vocab"], p["b_vocab"])
    loss, dscores = layers.temporal_softmax_loss(scores, captions_out, mask)
    dhidden, dW_vocab, db_vocab = layers.temporal_affine_backward(dscores, vocab_cache)
    dwords, dh0, dWx, dWh, db = layers.lstm_backward(dhidden, lstm_cache)
    dW_embed = layers.word_embedding_backward(dwords, embed_cache)
    _, dW_proj, db_proj = layers.affine_backward(dh0, proj_cache)
    return loss, dict(W_embed=dW_embed, W_proj=dW_proj, b_proj=db_proj, Wx=dWx, Wh=dWh, b=db,
                      W_vocab=dW_vocab, b_vocab=db_vocab)


class _CaptioningModel:
    """The solver's model contract (``params``, ``loss``) on a given layer module: the same
    solver step times the classic layers and fastrnn's."""

    def __init__(self, layers, params):
        self.layers, self.params = layers, params

    def loss(self, features, captions):
        return _caption_loss(self.layers, self.params, features, captions)


def numpy_workload(case, layers, inputs):
    """A zero-argument callable doing the timed work of ``case`` with the layer module ``layers``.

    ``layers`` is :mod:`fastrnn.reference`, :mod:`fastrnn.rnn_layers` or anything with their API.
    The callable returns a dict of named outputs (values and gradients) for the accuracy check.
    Work outside the timed region (the embedding forward whose cache the backward needs) is done
    here, once.
    """
    p = inputs
    if case.kind in ("rnn", "lstm"):
        forward = layers.rnn_forward if case.kind == "rnn" else layers.lstm_forward
        backward = layers.rnn_backward if case.kind == "rnn" else layers.lstm_backward

        def sequence_step():
            h, cache = forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
            dx, dh0, dWx, dWh, db = backward(p["dh"], cache)
            return dict(h=h, dx=dx, dh0=dh0, dWx=dWx, dWh=dWh, db=db)
        return sequence_step

    if case.kind == "captioning":
        def training_step():
            loss, grads = _caption_loss(layers, p, p["features"], p["captions"])
            return dict(loss=np.asarray(loss), **grads)
        return training_step

    if case.kind == "train_step":
        from fastrnn.captioning_solver import CaptioningSolver
        data = dict(train_captions=p["captions"], train_image_idxs=p["image_idxs"],
                    train_features=p["features"],
                    train_urls=np.array([""] * len(p["features"]), dtype=object))
        params = {name: p[name].copy() for name in CAPTION_PARAMS}
        solver = CaptioningSolver(_CaptioningModel(layers, params), data, update_rule="adam",
                                  optim_config={"learning_rate": 1e-3},
                                  batch_size=case.shape[0], verbose=False, rng=0)

        def solver_step():
            solver._step()
            return dict(loss=np.asarray(solver.loss_history[-1]), **solver.model.params)
        return solver_step

    if case.kind == "embedding_backward":
        _, cache = layers.word_embedding_forward(p["x"], p["W"])

        def embedding_backward():
            return dict(dW=layers.word_embedding_backward(p["dout"], cache))
        return embedding_backward

    if case.kind == "softmax_loss":
        def softmax_loss():
            loss, dx = layers.temporal_softmax_loss(p["x"], p["y"], p["mask"])
            return dict(loss=np.asarray(loss), dx=dx)
        return softmax_loss
    raise ValueError(f"unknown case kind {case.kind!r}")


def torch_workload(case, inputs):
    """The torch counterpart of :func:`numpy_workload` (forward + all gradients), or None.

    Gradients are taken with ``torch.autograd.grad`` so nothing accumulates between calls.
    """
    import torch
    import torch.nn.functional as F

    tdtype = getattr(torch, case.dtype)
    torch.manual_seed(0)

    def tensor(name, grad=False):
        return torch.from_numpy(np.ascontiguousarray(inputs[name])).requires_grad_(grad)

    if case.kind in ("rnn", "lstm"):
        N, T, D, H = case.shape
        if case.kind == "rnn":
            module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True, dtype=tdtype)
        else:
            module = torch.nn.LSTM(D, H, batch_first=True, dtype=tdtype)
        x, h0, dh = tensor("x", True), tensor("h0", True).unsqueeze(0), tensor("dh")
        wrt = [x, h0, *module.parameters()]

        def sequence_step():
            state = h0 if case.kind == "rnn" else (h0, torch.zeros_like(h0))
            h, _ = module(x, state)
            return torch.autograd.grad(h, wrt, dh)
        return sequence_step

    if case.kind == "captioning":
        N, T, W, H = case.shape
        F_dim, V = CAPTION_FEATURE_DIM, VOCAB_SIZE
        embed = torch.nn.Embedding(V, W, dtype=tdtype)
        proj = torch.nn.Linear(F_dim, H, dtype=tdtype)
        lstm = torch.nn.LSTM(W, H, batch_first=True, dtype=tdtype)
        vocab = torch.nn.Linear(H, V, dtype=tdtype)
        params = [*embed.parameters(), *proj.parameters(), *lstm.parameters(),
                  *vocab.parameters()]
        features = tensor("features")
        captions = torch.from_numpy(inputs["captions"].astype(np.int64))
        captions_in, captions_out = captions[:, :-1], captions[:, 1:].reshape(-1)
        mask = (captions_out != 0).to(tdtype)

        def training_step():
            h0 = proj(features).unsqueeze(0)
            hidden, _ = lstm(embed(captions_in), (h0, torch.zeros_like(h0)))
            scores = vocab(hidden).reshape(-1, V)
            loss = (F.cross_entropy(scores, captions_out, reduction="none") * mask).sum() / N
            return torch.autograd.grad(loss, params)
        return training_step

    if case.kind == "train_step":
        N, T, W, H = case.shape
        F_dim, V = CAPTION_FEATURE_DIM, VOCAB_SIZE
        embed = torch.nn.Embedding(V, W, dtype=tdtype)
        proj = torch.nn.Linear(F_dim, H, dtype=tdtype)
        lstm = torch.nn.LSTM(W, H, batch_first=True, dtype=tdtype)
        vocab = torch.nn.Linear(H, V, dtype=tdtype)
        params = [*embed.parameters(), *proj.parameters(), *lstm.parameters(),
                  *vocab.parameters()]
        optimizer = torch.optim.Adam(params, lr=1e-3)
        features = tensor("features")
        captions = torch.from_numpy(inputs["captions"].astype(np.int64))
        image_idxs = torch.from_numpy(inputs["image_idxs"].astype(np.int64))
        rng = np.random.default_rng(0)

        def solver_step():
            rows = torch.from_numpy(rng.choice(len(captions), N))  # as sample_coco_minibatch
            batch, batch_features = captions[rows], features[image_idxs[rows]]
            captions_in, captions_out = batch[:, :-1], batch[:, 1:].reshape(-1)
            mask = (captions_out != 0).to(tdtype)
            h0 = proj(batch_features).unsqueeze(0)
            hidden, _ = lstm(embed(captions_in), (h0, torch.zeros_like(h0)))
            scores = vocab(hidden).reshape(-1, V)
            loss = (F.cross_entropy(scores, captions_out, reduction="none") * mask).sum() / N
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach()
        return solver_step

    if case.kind == "embedding_backward":
        N, T, V, D = case.shape
        indices = torch.from_numpy(inputs["x"].astype(np.int64))
        dout = tensor("dout")

        def embedding_backward():
            # The kernel behind nn.Embedding's backward (dense gradient).
            return torch.ops.aten.embedding_dense_backward(dout, indices, V, -1, False)
        return embedding_backward

    if case.kind == "softmax_loss":
        N, T, V = case.shape
        x = tensor("x", True)
        y = torch.from_numpy(inputs["y"].astype(np.int64)).reshape(-1)
        mask = torch.from_numpy(inputs["mask"]).reshape(-1).to(tdtype)

        def softmax_loss():
            loss = (F.cross_entropy(x.reshape(-1, V), y, reduction="none") * mask).sum() / N
            return loss, torch.autograd.grad(loss, x)
        return softmax_loss
    return None


# ---------------------------------------------------------------------------------------------
# Measurement primitives
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Workers: each runs in its own subprocess (python -m fastrnn.bench --worker ...)
# ---------------------------------------------------------------------------------------------

def _limit_threads(threads):
    """Context manager limiting BLAS/OpenMP pools to ``threads`` (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
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
    if workspace is not None and workspace.thread_pool is not None:
        info["fastrnn_thread_pool"] = workspace.thread_pool
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


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------

def _reported_env():
    return {key: value for key, value in sorted(os.environ.items())
            if key.startswith(REPORTED_ENV_PREFIXES)}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:      # pragma: no cover - not available on this platform
        return None


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


def _ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _merge_timing(merged, worker, name):
    """Adds one worker's timing of case ``name`` to ``merged`` (one implementation, all rounds):
    the best time over the rounds, every sample kept."""
    for key, value in worker.items():
        if key not in ("cases", "worker_error"):  # a crashed worker is one case's error
            merged.setdefault(key, value)
    entry = worker.get("cases", {}).get(name)
    if entry is None:
        if "worker_error" in worker:
            entry = {"error": worker["worker_error"]}
        else:
            return
    kept = merged["cases"].get(name)
    if kept is None or "seconds" not in kept:
        merged["cases"][name] = dict(entry, rounds=1 if "seconds" in entry else 0)
    elif "seconds" in entry:
        kept["samples"] = kept["samples"] + entry["samples"]
        kept["rounds"] += 1
        if entry["seconds"] < kept["seconds"]:
            kept.update(seconds=entry["seconds"], number=entry["number"])


def run_benchmarks(cases, *, fast_module=DEFAULT_FAST_MODULE, repeats=7, min_time=0.1,
                   threads=2, skip=(), quick=False, rounds=2, busy=0, progress=None):
    """Measures ``cases`` and returns the results dict that :func:`render_text` prints.

    Every (case, implementation) is timed in a fresh process, the implementations of a case
    one after the other and the cases in turn, ``rounds`` times over (the order of the
    implementations reversed every other round): the speed of a shared machine drifts by
    20-30% over minutes, and timing a case's implementations side by side keeps that drift out
    of the ratios.  A case's time is the best over all rounds; with ``busy`` competing processes
    (:func:`competing_load`) running through the timing, it is the median of every sample.
    """
    say = progress or (lambda message: None)
    names = [case.name for case in cases]
    results = {
        "schema": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": sys.argv[1:],
        "settings": {"repeats": repeats, "min_time": min_time, "threads": threads,
                     "rounds": rounds, "quick": quick, "fast_module": fast_module,
                     "skip": sorted(skip), "busy": busy},
        "config": {"python": sys.version.split()[0], "platform": platform.platform(),
                   "load_average_at_start": _load_average(),
                   "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "env": _reported_env(),
                   "slow_blas_env": [key for key in SLOW_BLAS_ENV if key in os.environ]},
        "workers": {}, "cases": [],
    }
    workers = results["workers"]
    for impl in IMPLEMENTATIONS:
        workers[impl] = ({"unavailable": "skipped (--skip)", "cases": {}} if impl in skip
                         else {"cases": {}})
    if busy:
        say(f"starting {busy} competing busy process(es)")
    with competing_load(busy):
        for round_ in range(rounds):
            order = IMPLEMENTATIONS if round_ % 2 == 0 else IMPLEMENTATIONS[::-1]
            for name in names:
                timed = [impl for impl in order if "unavailable" not in workers[impl]]
                say(f"timing round {round_ + 1}/{rounds}: {name} ({', '.join(timed)})")
                for impl in timed:
                    spec = dict(impl=impl, cases=[name], fast_module=fast_module,
                                repeats=repeats, min_time=min_time, threads=threads)
                    _merge_timing(workers[impl], _spawn_worker("time", spec), name)
    accuracy = {}
    if "accuracy" not in skip:
        say("accuracy ...")
        accuracy = _spawn_worker("accuracy", dict(cases=names, fast_module=fast_module))
        results["accuracy_worker"] = {k: v for k, v in accuracy.items() if k != "cases"}
    for case in cases:
        row = asdict(case)
        row["label"] = case.label
        row["times"], row["notes"] = {}, {}
        for impl in IMPLEMENTATIONS:
            worker = workers[impl]
            entry = worker["cases"].get(case.name, {})
            row["times"][impl] = (float(np.median(entry["samples"])) if busy and "samples" in entry
                                  else entry.get("seconds"))
            note = worker.get("unavailable") or entry.get("error") or entry.get("note")
            if note:
                row["notes"][impl] = note
        classic, fast, torch_ = (row["times"][impl] for impl in IMPLEMENTATIONS)
        row["ratios"] = {"classic": _ratio(classic, fast), "torch": _ratio(torch_, fast)}
        row["passed"] = {
            peer: (None if target is None or row["ratios"][peer] is None
                   else bool(row["ratios"][peer] >= target))
            for peer, target in (("classic", case.target_classic),
                                 ("torch", case.target_torch))}
        row["accuracy"] = accuracy.get("cases", {}).get(case.name)
        results["cases"].append(row)
    if "memory" not in skip:
        say("memory ...")
        results["memory"] = _spawn_worker("memory", dict(fast_module=fast_module))
    if "startup" not in skip:
        say("start-up (cold numba cache compiles) ...")
        results["startup"] = measure_startup(fast_module, max(1, min(repeats, 5)))
    results["config"]["load_average_at_end"] = _load_average()
    return results


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _ms(seconds):
    if seconds is None:
        return "-"
    milliseconds = seconds * 1e3
    return f"{milliseconds:.3g}" if milliseconds < 100 else f"{milliseconds:.0f}"


def _speedup(ratio, target, passed):
    if ratio is None:
        return "-", ("" if target is None else f">= {target:g}x")
    verdict = "" if passed is None else (" pass" if passed else " MISS")
    return f"{ratio:.2f}x", ("" if target is None else f">= {target:g}x{verdict}")


def _worst(errors):
    """``"error (output)"`` for the output with the largest error."""
    name = max(errors, key=errors.get)
    return errors[name], f"{errors[name]:.2g} ({name})"


def _accuracy_cells(row):
    accuracy = row.get("accuracy") or {}
    if not accuracy or "error" in accuracy:
        return ("-", "-", accuracy.get("error", "not measured") if accuracy else "not measured")
    verdict = "pass" if accuracy.get("passed") else "MISS"
    if not accuracy.get("dtype_kept", True):
        verdict += " (output dtype differs from input)"
    if "fastrnn" in accuracy:
        fast, fast_cell = _worst(accuracy["fastrnn"])
        classic, classic_cell = _worst(accuracy["classic"])
        ratio = f" (ratio {fast / classic:.2f})" if classic > 0 else ""
        return fast_cell, classic_cell, f"{accuracy['criterion']}{ratio}: {verdict}"
    return (_worst(accuracy["fastrnn_vs_classic"])[1], "(the reference)",
            f"{accuracy['criterion']}: {verdict}")


def _table(header, rows, markdown):
    if markdown:
        def line(cells):
            return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
        return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, ["-" * width for width in widths], *rows])


def _speed_rows(results):
    rows = []
    for row in results["cases"]:
        times = row["times"]
        classic_ratio, classic_target = _speedup(row["ratios"]["classic"], row["target_classic"],
                                                 row["passed"]["classic"])
        torch_ratio, torch_target = _speedup(row["ratios"]["torch"], row["target_torch"],
                                             row["passed"]["torch"])
        rows.append([row["label"], _ms(times["classic"]), _ms(times["fastrnn"]),
                     _ms(times["torch"]), classic_ratio, classic_target, torch_ratio,
                     torch_target])
    return rows


SPEED_HEADER = ["case (N, T, D, H, dtype)", "classic ms", "fastrnn ms", "torch ms",
                "vs classic", "target", "vs torch", "target"]


def _notes(results):
    notes = []
    # A worker that crashed is an error of its one case (see _merge_timing), not of its pool.
    for impl, worker in results["workers"].items():
        if worker.get("unavailable"):
            notes.append(f"{impl}: {worker['unavailable']}")
    for row in results["cases"]:
        for impl, note in row["notes"].items():
            if note != results["workers"].get(impl, {}).get("unavailable"):
                notes.append(f"{row['label']}, {impl}: {note}")
    return notes


def _memory_lines(results, markdown):
    memory = results.get("memory")
    if not memory:
        return []
    if "worker_error" in memory:
        return [f"memory: {memory['worker_error']}"]

    def cell(impl):
        entry = memory.get(impl, {})
        if "bytes" not in entry:
            return entry.get("error", "-"), "-"
        return (f"{entry['bytes'] / 2**20:.2f} MiB ({entry['bytes']:,} B)",
                f"{entry['bytes_excluding_output'] / 2**20:.2f} MiB")

    classic, fast = memory.get("classic", {}), memory.get("fastrnn", {})
    verdict = "-"
    if "bytes" in classic and "bytes" in fast:
        verdict = "pass" if fast["bytes"] <= classic["bytes"] else "MISS"
    header = ["lstm_forward cache kept for backward", "bytes (inputs/weights excluded)",
              "also excluding the returned h"]
    rows = [[f"classic, {memory['label']}", *cell("classic")],
            [f"fastrnn, {memory['label']}", *cell("fastrnn")],
            ["target: fastrnn <= classic", verdict, ""]]
    return [_table(header, rows, markdown)]


def _startup_lines(results, markdown):
    startup = results.get("startup")
    if not startup:
        return []

    def seconds(value):
        return "-" if value is None else f"{value:.3f} s"

    def verdict(value, limit):
        return "-" if value is None else ("pass" if value < limit else "MISS")

    cold, warm = startup.get("cold", {}), startup.get("warm", {})
    imported = startup.get("import_fastrnn_s")
    header = ["start-up (fresh interpreter)", "time", "target"]
    rows = [["import fastrnn", seconds(imported), f"< 0.3 s {verdict(imported, 0.3)}"],
            [f"import {startup['module']}, warm cache", seconds(warm.get("import_s")), ""],
            ["first lstm fwd+bwd, warm on-disk cache", seconds(warm.get("first_call_s")),
             f"< 0.5 s {verdict(warm.get('first_call_s'), 0.5)}"],
            ["first lstm fwd+bwd, cold cache (compiles)", seconds(cold.get("first_call_s")),
             "reported"]]
    lines = [_table(header, rows, markdown)]
    for key in ("import_fastrnn_error", "error"):
        if key in startup:
            lines.append(f"start-up error: {startup[key]}")
    return lines


def _pool_summary(pool):
    return (f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('library')}), "
            f"{pool.get('num_threads')} threads, {pool.get('threading_layer')}, "
            f"arch {pool.get('architecture')}")


def _samples(settings):
    """How a time was formed: "best of 2 rounds x 7 samples", or under load the median."""
    rounds = settings.get("rounds", 1)  # results saved before rounds existed had one
    samples = (f"{rounds} rounds x {settings['repeats']} samples" if rounds > 1
               else f"{settings['repeats']} samples")
    busy = settings.get("busy", 0)
    if busy:
        return f"median of {samples}, under {busy} competing busy process(es)"
    return f"best of {samples}"


def _config_lines(results):
    config = results["config"]
    settings = results["settings"]
    loads = "/".join(f"{load[0]:.2f}" if load else "?" for load in (
        config.get("load_average_at_start"), config.get("load_average_at_end")))
    lines = [f"machine: {config['cpu']}, {config['cpu_count']} CPUs; {config['platform']}; "
             f"1-min load average at start/end {loads}",
             f"settings: {_samples(settings)} of >= {settings['min_time']} s; "
             f"threads {settings['threads']} (torch.set_num_threads, threadpoolctl limits); "
             f"fastrnn module {settings['fast_module']}",
             "env: " + (", ".join(f"{k}={v}" for k, v in config["env"].items()) or "(none of "
                        + "/".join(prefix.rstrip("_") for prefix in REPORTED_ENV_PREFIXES)
                        + "_* set)")]
    for impl, worker in results["workers"].items():
        info = worker.get("environment")
        if not info:
            continue
        versions = ", ".join(f"{name} {info[name]}" for name in ("numpy", "numba", "scipy",
                                                                  "torch") if name in info)
        extra = ""
        if "torch_threads" in info:
            extra = f", torch threads {info['torch_threads']}"
        if "numba_threads" in info:
            extra += f", numba threads {info['numba_threads']}"
        pool = info.get("fastrnn_thread_pool")
        if pool:
            extra += (f", threading layer {pool['threading_layer']}, GOMP_SPINCOUNT "
                      + (f"{pool['gomp_spincount']} (set by fastrnn)" if pool["gomp_spincount"]
                         else f"not set by fastrnn ({pool['reason']})"))
        lines.append(f"{impl} process: python {info['python']}, {versions}{extra}")
        for pool in info.get("threadpools") or []:
            lines.append(f"    {_pool_summary(pool)}")
    return lines


def _slow_blas_warning(keys):
    return (f"WARNING: {' and '.join(keys)} set: OpenBLAS runs slower kernels than this machine "
            f"supports; measure with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
            f"python -m fastrnn.bench`")


def _accuracy_rows(results):
    return [[row["label"], *_accuracy_cells(row)] for row in results["cases"]
            if row.get("accuracy") is not None]


ACCURACY_HEADER = ["accuracy: max|err|/max|value|, worst output", "fastrnn", "classic",
                   "criterion"]
ACCURACY_NOTE = ("accuracy: float32 rows compare fastrnn and classic (both float32) with a float64 "
                 "computation; float64 rows compare fastrnn with classic")


def _stand_in(results):
    module = results["settings"]["fast_module"]
    return "" if module == DEFAULT_FAST_MODULE else f"; 'fastrnn' is {module}, a stand-in"


def _warnings(results):
    """Reasons not to publish these figures."""
    config, warnings = results["config"], []
    if config["slow_blas_env"]:
        warnings.append(_slow_blas_warning(config["slow_blas_env"]))
    if results["settings"].get("quick"):
        warnings.append("WARNING: --quick run: checks the harness; not figures to report")
    # Only the load before the run says whether other processes competed: the load at the
    # end counts the bench's own processes (two threads busy make it ~2).
    loaded = max(1.0, 0.5 * (config.get("cpu_count") or 2))
    start = config.get("load_average_at_start")
    if start and start[0] > loaded:
        warnings.append(f"WARNING: load average {start[0]:.1f} on {config['cpu_count']} CPUs "
                        "when the run began: other processes competed; figures are unreliable")
    return warnings


def render_text(results):
    """The human-readable report: speed table, accuracy, memory, start-up, configuration."""
    out = []
    if _warnings(results):
        out += _warnings(results) + [""]
    out += ["fastrnn bench: forward+backward per call, "
            f"{_samples(results['settings'])} (ratios are speed-ups of fastrnn)"
            + _stand_in(results),
            _table(SPEED_HEADER, _speed_rows(results), markdown=False)]
    accuracy_rows = _accuracy_rows(results)
    if accuracy_rows:
        out += ["", ACCURACY_NOTE, _table(ACCURACY_HEADER, accuracy_rows, markdown=False)]
    for section in (_memory_lines(results, False), _startup_lines(results, False)):
        if section:
            out += [""] + section
    notes = _notes(results)
    if notes:
        out += ["", "notes:"] + [f"  {note}" for note in notes]
    out += ["", "configuration:"] + [f"  {line}" for line in _config_lines(results)]
    return "\n".join(out)


def render_markdown(results):
    """The README speed section: generated from a measurement, pasted, never edited by hand."""
    out = ["<!-- generated by `python -m fastrnn.bench --markdown`; do not edit by hand -->"]
    for warning in _warnings(results):
        out += ["", f"> **{warning}**"]
    out += ["", _table(SPEED_HEADER, _speed_rows(results), markdown=True)]
    accuracy_rows = _accuracy_rows(results)
    if accuracy_rows:
        out += ["", ACCURACY_NOTE + ":", "", _table(ACCURACY_HEADER, accuracy_rows, markdown=True)]
    for section in (_memory_lines(results, True), _startup_lines(results, True)):
        if section:
            out += [""] + section
    notes = _notes(results)
    if notes:
        out += [""] + [f"- {note}" for note in notes]
    settings = results["settings"]
    out += ["", f"Times in ms per forward+backward call, {_samples(settings)}, each "
            "case's implementations timed in turn, each in its own process; ratios are "
            "fastrnn's speed-ups"
            f"{_stand_in(results)}. Measured {results['created']}."]
    out += ["", "<details><summary>configuration</summary>", "", "```"]
    out += _config_lines(results)
    out += ["```", "", "</details>"]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastrnn.bench",
        description="Time fastrnn against the classic NumPy code and PyTorch; report accuracy, "
                    "memory and start-up.  Run under "
                    "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for real figures.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer, shorter samples (3 x 0.02 s): checks the harness, "
                             "not for reporting")
    parser.add_argument("--cases", metavar="PATTERNS",
                        help="comma-separated case names, globs or substrings "
                             "(e.g. 'lstm', 'rnn_2x*', 'softmax'); see --list")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README speed table (Markdown) instead of the text report")
    parser.add_argument("--json", metavar="PATH", help="also save the full results as JSON")
    parser.add_argument("--load", metavar="PATH",
                        help="render results saved with --json instead of measuring")
    parser.add_argument("--repeat", type=int, metavar="K", help="samples per case (default 7)")
    parser.add_argument("--min-time", type=float, metavar="S",
                        help="seconds per sample (default 0.1)")
    parser.add_argument("--rounds", type=int, metavar="R",
                        help="times every case is timed, in turn with the other cases, each "
                             "time in new processes; the best counts (default 2, 1 with "
                             "--quick)")
    parser.add_argument("--busy", type=int, default=0, metavar="K",
                        help="time under load: K competing busy processes (plain Python "
                             "loops), started before the timing and always ended after it; "
                             "the table then reports medians (default 0)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for torch, BLAS and numba (default 2)")
    parser.add_argument("--fast-module", default=DEFAULT_FAST_MODULE, metavar="MODULE",
                        help="module timed as 'fastrnn' (default fastrnn.rnn_layers); "
                             "'fastrnn.reference' exercises the harness alone")
    parser.add_argument("--skip", default="", metavar="PARTS",
                        help="comma-separated parts to leave out: torch, accuracy, memory, "
                             "startup")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-spec", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    """Entry point of ``python -m fastrnn.bench`` and ``fastrnn bench``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)

    if args.worker:
        result = WORKERS[args.worker](json.loads(args.worker_spec))
        with open(args.worker_out, "w") as handle:
            json.dump(result, handle)
        return 0

    if args.list:
        for case in CASES:
            targets = ", ".join(f">= {target:g}x {peer}" for peer, target in
                                (("classic", case.target_classic), ("torch", case.target_torch))
                                if target is not None)
            print(f"{case.name:36s} {case.label:44s} {targets}")
        return 0

    if args.load:
        with open(args.load) as handle:
            results = json.load(handle)
    else:
        skip = {part.strip() for part in args.skip.split(",") if part.strip()}
        unknown = skip - {"torch", "accuracy", "memory", "startup"}
        if unknown:
            parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
        cases = select_cases(args.cases)
        if not cases:
            parser.error(f"--cases {args.cases!r} matches no case; see --list")
        slow = [key for key in SLOW_BLAS_ENV if key in os.environ]
        if slow:
            print(_slow_blas_warning(slow), file=sys.stderr)
        repeats = args.repeat or (3 if args.quick else 7)
        min_time = args.min_time or (0.02 if args.quick else 0.1)
        rounds = args.rounds or (1 if args.quick else 2)
        if repeats < 1 or rounds < 1:
            parser.error("--repeat and --rounds must be at least 1")
        if args.busy < 0:
            parser.error("--busy must be 0 or more")
        results = run_benchmarks(
            cases, fast_module=args.fast_module, repeats=repeats, min_time=min_time,
            threads=args.threads, skip=skip, quick=args.quick, rounds=rounds, busy=args.busy,
            progress=lambda message: print(message, file=sys.stderr, flush=True))

    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print(render_markdown(results) if args.markdown else render_text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
