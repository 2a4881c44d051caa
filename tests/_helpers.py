"""Shared test utilities: the one place for case builders, error metrics and input variants.

Every layer of the contract is described once here as a :class:`Case` (how to build float64
inputs, how to run forward and backward on a module), so that the comparison, dtype, mutation
and property tests all exercise the same calls.  Fixtures live in ``conftest.py``.

The module under test is ``fastrnn.rnn_layers`` (``fastrnn.layers`` for the affine pair).
``FASTRNN_TEST_IMPL=fastrnn.reference`` swaps in the reference, which lets the suite check
itself (the numeric tests must pass against the yardstick too).
"""
import importlib
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)

# float64: both implementations do the same arithmetic up to reassociation (BLAS blocking,
# hoisted projections, FMA), which moves results by a few ulps per step; 1e-12 relative to the
# largest entry leaves room for that over T=200 steps and catches any real algorithmic slip.
F64_BOUND = 1e-12
# float32: the yardstick is the float64 computation on the same (float32-rounded) inputs.  The
# implementation may be at most F32_FACTOR times as far from it as the reference's own float32
# result is (its tanh/exp round about once, like NumPy's, but products and sums run in other
# orders), and never needs to beat F32_FLOOR (16 ulp at 1.0), because where the reference happens to
# be exact (a gather, a single product) or lucky, a different but correct summation order is not a
# bug.  16, not 8: a sum with cancellation (db with H=1 is one sum of N*T terms) is measured at 10
# ulp of its own size from float64 when AVX-512 code rounds the terms (reference: 0.25 ulp by luck);
# a real slip is off by 1e-3 or more.
F32_FACTOR = 10.0
F32_FLOOR = 16 * float(np.finfo(np.float32).eps)


def fast_module_name(default="fastrnn.rnn_layers"):
    """Name of the module under test (overridable to run the suite against the reference)."""
    return os.environ.get("FASTRNN_TEST_IMPL") or default


def load_fast(default="fastrnn.rnn_layers"):
    return importlib.import_module(fast_module_name(default))


# ----------------------------------------------------------------------------------------------
# error metric and comparison
# ----------------------------------------------------------------------------------------------
def max_rel_error(actual, expected):
    """max |actual - expected| / max |expected| (0 if both are exactly equal, NaN-poisoned)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shape {a.shape} != expected {e.shape}")
    if a.size == 0:
        return 0.0
    diff = float(np.max(np.abs(a - e)))
    if diff == 0.0:
        return 0.0
    scale = float(np.max(np.abs(e)))
    return diff / scale if scale > 0 else float("inf")


def assert_outputs_close(actual, expected, names, dtype, truth=None, f64_bound=F64_BOUND):
    """Compare tuples of outputs; float32 needs ``truth`` (the float64 result) to set the bound.

    float64: every output within ``f64_bound`` of ``expected``.
    float32: every output at most max(F32_FACTOR * err(expected), F32_FLOOR) from ``truth``,
    where err(expected) is the reference's own float32 error.
    """
    assert len(actual) == len(expected) == len(names), (len(actual), len(expected), names)
    problems = []
    for name, a, e, t in zip(names, actual, expected,
                             truth if truth is not None else [None] * len(names)):
        if np.asarray(a).shape != np.asarray(e).shape:
            problems.append(f"{name}: shape {np.asarray(a).shape} != {np.asarray(e).shape}")
            continue
        if np.asarray(a).dtype != np.asarray(e).dtype:
            problems.append(f"{name}: dtype {np.asarray(a).dtype} != {np.asarray(e).dtype}")
        if np.dtype(dtype) == np.float64:
            err = max_rel_error(a, e)
            if not err <= f64_bound:
                problems.append(f"{name}: rel error {err:.3g} > {f64_bound:.1g}")
        else:
            assert t is not None, "float32 comparison needs the float64 truth"
            ref_err = max_rel_error(e, t)
            bound = max(F32_FACTOR * ref_err, F32_FLOOR)
            err = max_rel_error(a, t)
            if not err <= bound:
                problems.append(f"{name}: rel error vs float64 {err:.3g} > bound {bound:.3g} "
                                f"(reference float32 error {ref_err:.3g})")
    if problems:
        raise AssertionError("; ".join(problems))


# ----------------------------------------------------------------------------------------------
# input helpers
# ----------------------------------------------------------------------------------------------
def cast_floats(arrays, dtype):
    """Copy of a dict of arrays with every floating array cast to ``dtype`` (ints/bools kept)."""
    return {k: (v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v.copy())
            for k, v in arrays.items()}


NONCONTIGUOUS_KINDS = ("slice", "fortran", "reversed", "readonly")


def noncontiguous(a, kind):
    """The same values as ``a`` in a different memory layout.

    slice:    every other element (and an offset) of a bigger array, along every axis;
    fortran:  Fortran (column-major) order, i.e. transposed storage;
    reversed: negative strides along the first axis;
    readonly: a C-contiguous copy with the writeable flag off (like memory-mapped data).
    """
    a = np.asarray(a)
    if kind == "slice":
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        assert a.ndim == 0 or not view.flags.c_contiguous or a.size <= 1
        return view
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed":
        if a.ndim == 0:
            return a.copy()
        return np.flip(np.flip(a, axis=0).copy(), axis=0)
    if kind == "readonly":
        out = a.copy()
        out.flags.writeable = False
        return out
    raise ValueError(kind)


def collect_arrays(obj, path="obj", seen=None):
    """(path, array) for every ndarray reachable through tuples, lists, dicts and NamedTuples."""
    if seen is None:
        seen = set()
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [(path, obj)]
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += collect_arrays(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (tuple, list)):
        fields = getattr(obj, "_fields", None)
        for i, v in enumerate(obj):
            label = f"{path}.{fields[i]}" if fields else f"{path}[{i}]"
            found += collect_arrays(v, label, seen)
    return found


def snapshot(obj):
    """Bitwise copies of every array reachable from ``obj``."""
    return [(path, arr, arr.copy()) for path, arr in collect_arrays(obj)]


def assert_unchanged(snap, what):
    changed = [path for path, arr, saved in snap
               if arr.dtype != saved.dtype or arr.shape != saved.shape
               or arr.tobytes() != saved.tobytes()]
    if changed:
        raise AssertionError(f"{what} mutated: {', '.join(changed)}")


def assert_bitwise_equal(actual, expected, names):
    for name, a, e in zip(names, actual, expected):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (name, a.dtype, e.dtype)
        assert a.tobytes() == e.tobytes(), f"{name} differs"


# ----------------------------------------------------------------------------------------------
# the cases: one per public layer (pair)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    build: Callable                  # (rng, **shape) -> dict of float64/int arrays
    forward: Callable                # (module, arrays) -> (outputs tuple, cache or None)
    backward: Optional[Callable]     # (module, cache, arrays) -> grads tuple
    forward_names: tuple
    backward_names: tuple = ()
    forward_args: tuple = ()         # names of the arrays the forward reads
    upstream: tuple = ()             # names of the arrays only the backward reads
    shapes: tuple = ()               # shape dicts for the comparison tests
    default_shape: dict = field(default_factory=dict)

    @property
    def names(self):
        return self.forward_names + self.backward_names

    def run(self, module, arrays):
        """Forward then backward: every output and gradient, caches dropped."""
        outputs, cache = self.forward(module, arrays)
        if self.backward is None:
            return tuple(outputs)
        return tuple(outputs) + tuple(self.backward(module, cache, arrays))


def _randn(rng, *shape):
    return rng.standard_normal(shape)


# affine --------------------------------------------------------------------------------------
def build_affine(rng, x_shape=(3, 4), M=5):
    D = int(np.prod(x_shape[1:]))
    return dict(x=_randn(rng, *x_shape), w=_randn(rng, D, M) / np.sqrt(D), b=_randn(rng, M),
                dout=_randn(rng, x_shape[0], M))


def _affine_forward(m, a):
    out, cache = m.affine_forward(a["x"], a["w"], a["b"])
    return (out,), cache


def _affine_backward(m, cache, a):
    return m.affine_backward(a["dout"], cache)


AFFINE = Case("affine", build_affine, _affine_forward, _affine_backward,
              ("out",), ("dx", "dw", "db"), ("x", "w", "b"), ("dout",),
              shapes=(dict(x_shape=(3, 4), M=5), dict(x_shape=(2, 3, 4), M=5),
                      dict(x_shape=(1, 1), M=1), dict(x_shape=(4, 2, 3, 5), M=7),
                      dict(x_shape=(5, 17), M=1)),
              default_shape=dict(x_shape=(3, 2, 3), M=5))


# rnn step ------------------------------------------------------------------------------------
def build_rnn_step(rng, N=3, D=4, H=5):
    return dict(x=_randn(rng, N, D), prev_h=_randn(rng, N, H),
                Wx=_randn(rng, D, H) / np.sqrt(D), Wh=_randn(rng, H, H) / np.sqrt(H),
                b=0.1 * _randn(rng, H), dnext_h=_randn(rng, N, H))


def _rnn_step_forward(m, a):
    next_h, cache = m.rnn_step_forward(a["x"], a["prev_h"], a["Wx"], a["Wh"], a["b"])
    return (next_h,), cache


def _rnn_step_backward(m, cache, a):
    return m.rnn_step_backward(a["dnext_h"], cache)


RNN_STEP = Case("rnn_step", build_rnn_step, _rnn_step_forward, _rnn_step_backward,
                ("next_h",), ("dx", "dprev_h", "dWx", "dWh", "db"),
                ("x", "prev_h", "Wx", "Wh", "b"), ("dnext_h",),
                shapes=(dict(N=3, D=4, H=5), dict(N=1, D=1, H=1), dict(N=1, D=7, H=3),
                        dict(N=5, D=3, H=1), dict(N=2, D=13, H=17), dict(N=4, D=6, H=6)),
                default_shape=dict(N=3, D=4, H=5))


# rnn sequence --------------------------------------------------------------------------------
def build_rnn(rng, N=3, T=4, D=5, H=6):
    # Wh scaled to gain 0.5 so that 200-step sequences stay well conditioned in float32.
    return dict(x=_randn(rng, N, T, D), h0=_randn(rng, N, H),
                Wx=_randn(rng, D, H) / np.sqrt(D), Wh=0.5 * _randn(rng, H, H) / np.sqrt(H),
                b=0.1 * _randn(rng, H), dh=_randn(rng, N, T, H))


def _rnn_forward(m, a):
    h, cache = m.rnn_forward(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    return (h,), cache


def _rnn_backward(m, cache, a):
    return m.rnn_backward(a["dh"], cache)


SEQUENCE_SHAPES = (dict(N=3, T=4, D=5, H=6), dict(N=1, T=1, D=1, H=1), dict(N=1, T=1, D=3, H=2),
                   dict(N=2, T=5, D=1, H=3), dict(N=3, T=6, D=4, H=1), dict(N=4, T=9, D=8, H=8),
                   dict(N=2, T=3, D=33, H=17), dict(N=3, T=200, D=7, H=9))

RNN = Case("rnn", build_rnn, _rnn_forward, _rnn_backward,
           ("h",), ("dx", "dh0", "dWx", "dWh", "db"), ("x", "h0", "Wx", "Wh", "b"), ("dh",),
           shapes=SEQUENCE_SHAPES, default_shape=dict(N=3, T=4, D=5, H=6))


# lstm step -----------------------------------------------------------------------------------
def build_lstm_step(rng, N=3, D=4, H=5):
    return dict(x=_randn(rng, N, D), prev_h=_randn(rng, N, H), prev_c=_randn(rng, N, H),
                Wx=_randn(rng, D, 4 * H) / np.sqrt(D), Wh=_randn(rng, H, 4 * H) / np.sqrt(H),
                b=0.1 * _randn(rng, 4 * H), dnext_h=_randn(rng, N, H), dnext_c=_randn(rng, N, H))


def _lstm_step_forward(m, a):
    next_h, next_c, cache = m.lstm_step_forward(a["x"], a["prev_h"], a["prev_c"], a["Wx"],
                                                a["Wh"], a["b"])
    return (next_h, next_c), cache


def _lstm_step_backward(m, cache, a):
    return m.lstm_step_backward(a["dnext_h"], a["dnext_c"], cache)


LSTM_STEP = Case("lstm_step", build_lstm_step, _lstm_step_forward, _lstm_step_backward,
                 ("next_h", "next_c"), ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"),
                 ("x", "prev_h", "prev_c", "Wx", "Wh", "b"), ("dnext_h", "dnext_c"),
                 shapes=RNN_STEP.shapes, default_shape=dict(N=3, D=4, H=5))


# lstm sequence -------------------------------------------------------------------------------
def build_lstm(rng, N=3, T=4, D=5, H=6):
    return dict(x=_randn(rng, N, T, D), h0=_randn(rng, N, H),
                Wx=_randn(rng, D, 4 * H) / np.sqrt(D), Wh=_randn(rng, H, 4 * H) / np.sqrt(H),
                b=0.1 * _randn(rng, 4 * H), dh=_randn(rng, N, T, H))


def _lstm_forward(m, a):
    h, cache = m.lstm_forward(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    return (h,), cache


def _lstm_backward(m, cache, a):
    return m.lstm_backward(a["dh"], cache)


LSTM = Case("lstm", build_lstm, _lstm_forward, _lstm_backward,
            ("h",), ("dx", "dh0", "dWx", "dWh", "db"), ("x", "h0", "Wx", "Wh", "b"), ("dh",),
            shapes=SEQUENCE_SHAPES, default_shape=dict(N=3, T=4, D=5, H=6))


# word embedding ------------------------------------------------------------------------------
def build_embedding(rng, N=2, T=5, V=4, D=3):
    # V small against N*T: indices repeat, so the backward must accumulate.
    return dict(x=rng.integers(0, V, size=(N, T)).astype(np.int32), W=_randn(rng, V, D),
                dout=_randn(rng, N, T, D))


def _embedding_forward(m, a):
    out, cache = m.word_embedding_forward(a["x"], a["W"])
    return (out,), cache


def _embedding_backward(m, cache, a):
    return (m.word_embedding_backward(a["dout"], cache),)


EMBEDDING = Case("word_embedding", build_embedding, _embedding_forward, _embedding_backward,
                 ("out",), ("dW",), ("x", "W"), ("dout",),
                 shapes=(dict(N=2, T=5, V=4, D=3), dict(N=1, T=1, V=1, D=1),
                         dict(N=3, T=7, V=1, D=2), dict(N=4, T=6, V=50, D=9),
                         dict(N=5, T=16, V=3, D=17)),
                 default_shape=dict(N=2, T=5, V=4, D=3))


# sigmoid -------------------------------------------------------------------------------------
def build_sigmoid(rng, shape=(3, 4)):
    return dict(x=10.0 * _randn(rng, *shape))


def _sigmoid_forward(m, a):
    return (m.sigmoid(a["x"]),), None


SIGMOID = Case("sigmoid", build_sigmoid, _sigmoid_forward, None, ("out",), (), ("x",), (),
               shapes=(dict(shape=(7,)), dict(shape=(3, 4)), dict(shape=(2, 3, 4)),
                       dict(shape=(1, 1))),
               default_shape=dict(shape=(3, 4)))


# temporal affine -----------------------------------------------------------------------------
def build_temporal_affine(rng, N=2, T=3, D=4, M=5):
    return dict(x=_randn(rng, N, T, D), w=_randn(rng, D, M) / np.sqrt(D), b=_randn(rng, M),
                dout=_randn(rng, N, T, M))


def _temporal_affine_forward(m, a):
    out, cache = m.temporal_affine_forward(a["x"], a["w"], a["b"])
    return (out,), cache


def _temporal_affine_backward(m, cache, a):
    return m.temporal_affine_backward(a["dout"], cache)


TEMPORAL_AFFINE = Case("temporal_affine", build_temporal_affine, _temporal_affine_forward,
                       _temporal_affine_backward, ("out",), ("dx", "dw", "db"),
                       ("x", "w", "b"), ("dout",),
                       shapes=(dict(N=2, T=3, D=4, M=5), dict(N=1, T=1, D=1, M=1),
                               dict(N=3, T=7, D=11, M=2), dict(N=1, T=16, D=6, M=13)),
                       default_shape=dict(N=2, T=3, D=4, M=5))


# temporal softmax loss -----------------------------------------------------------------------
def make_mask(rng, N, T, kind):
    if kind == "random":
        return rng.random((N, T)) < 0.5
    if kind == "all_false":
        return np.zeros((N, T), dtype=bool)
    if kind == "all_true":
        return np.ones((N, T), dtype=bool)
    raise ValueError(kind)


def build_softmax(rng, N=3, T=4, V=5, mask="random"):
    return dict(x=2.0 * _randn(rng, N, T, V), y=rng.integers(0, V, size=(N, T)).astype(np.int32),
                mask=make_mask(rng, N, T, mask))


def _softmax_forward(m, a):
    loss, dx = m.temporal_softmax_loss(a["x"], a["y"], a["mask"])
    return (loss, dx), None


SOFTMAX = Case("temporal_softmax_loss", build_softmax, _softmax_forward, None, ("loss", "dx"),
               (), ("x", "y", "mask"), (),
               shapes=(dict(N=3, T=4, V=5), dict(N=3, T=4, V=5, mask="all_false"),
                       dict(N=3, T=4, V=5, mask="all_true"), dict(N=1, T=1, V=1),
                       dict(N=1, T=1, V=7, mask="all_true"), dict(N=2, T=6, V=13),
                       dict(N=4, T=3, V=1004)),
               default_shape=dict(N=3, T=4, V=5))


CASES = (AFFINE, RNN_STEP, RNN, LSTM_STEP, LSTM, EMBEDDING, SIGMOID, TEMPORAL_AFFINE, SOFTMAX)
CASES_WITH_BACKWARD = tuple(c for c in CASES if c.backward is not None)


def module_for(case, rnn_layers_module, layers_module):
    """The affine pair is tested through ``fastrnn.layers``, everything else ``rnn_layers``."""
    return layers_module if case is AFFINE else rnn_layers_module


# ----------------------------------------------------------------------------------------------
# the step functions driven in a Python loop, as a sequence (for step == sequence tests)
# ----------------------------------------------------------------------------------------------
def rnn_via_steps(m, a):
    """h and the rnn_backward gradients computed with rnn_step_forward/backward in a loop."""
    x, dh = a["x"], a["dh"]
    N, T, _ = x.shape
    prev_h, caches, hs = a["h0"], [], []
    for t in range(T):
        prev_h, cache = m.rnn_step_forward(x[:, t, :], prev_h, a["Wx"], a["Wh"], a["b"])
        hs.append(prev_h)
        caches.append(cache)
    dprev_h = np.zeros_like(hs[0])
    dxs, dWx, dWh, db = [None] * T, 0, 0, 0
    for t in reversed(range(T)):
        dxs[t], dprev_h, dWx_t, dWh_t, db_t = m.rnn_step_backward(dh[:, t, :] + dprev_h,
                                                                  caches[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return np.stack(hs, axis=1), np.stack(dxs, axis=1), dprev_h, dWx, dWh, db


def lstm_via_steps(m, a):
    """h and the lstm_backward gradients computed with lstm_step_forward/backward in a loop."""
    x, dh = a["x"], a["dh"]
    N, T, _ = x.shape
    prev_h = a["h0"]
    prev_c = np.zeros_like(prev_h)
    caches, hs = [], []
    for t in range(T):
        prev_h, prev_c, cache = m.lstm_step_forward(x[:, t, :], prev_h, prev_c, a["Wx"],
                                                    a["Wh"], a["b"])
        hs.append(prev_h)
        caches.append(cache)
    dprev_h = np.zeros_like(hs[0])
    dprev_c = np.zeros_like(hs[0])
    dxs, dWx, dWh, db = [None] * T, 0, 0, 0
    for t in reversed(range(T)):
        dxs[t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = m.lstm_step_backward(
            dh[:, t, :] + dprev_h, dprev_c, caches[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return np.stack(hs, axis=1), np.stack(dxs, axis=1), dprev_h, dWx, dWh, db


# x87 80-bit or IEEE quad long double: 11+ bits beyond float64, a reference for float64 results
LONG_DOUBLE_EXTENDED = np.finfo(np.longdouble).nmant >= 63


def sigmoid_exact(x):
    """The logistic of x in long double (within 2^-10 ulp of float64 where it is extended)."""
    x = np.asarray(x, dtype=np.longdouble)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def ulp_errors(actual, expected, dtype):
    """|actual - expected| in units of the last place of ``dtype`` at ``expected`` (the
    subnormal spacing below the smallest normal number)."""
    finfo = np.finfo(dtype)
    expected = np.asarray(expected, dtype=np.longdouble)
    _, exponent = np.frexp(np.abs(expected))
    spacing = np.maximum(exponent - 1 - finfo.nmant, finfo.minexp - finfo.nmant)
    return (np.abs(np.asarray(actual).astype(np.longdouble) - expected)
            / np.ldexp(np.longdouble(1), spacing.astype(np.int32)))


def sigmoid_ulp_bound(dtype):
    """Largest ulp error accepted from fastrnn's sigmoid: it rounds about once (measured max
    0.78 ulp); 2.5 in float64 where the long-double reference is itself only a float64.  The
    classic code (when the suite checks itself) rounds exp, 1 + e and the quotient: 4."""
    if fast_module_name() == "fastrnn.reference":
        return 4.0
    return 2.5 if np.dtype(dtype) == np.float64 and not LONG_DOUBLE_EXTENDED else 1.0


# ----------------------------------------------------------------------------------------------
# mutation and aliasing checks (their own tests prove they catch offenders)
# ----------------------------------------------------------------------------------------------
def check_no_mutation(case, module, arrays):
    """Forward then backward (twice) on ``arrays``; AssertionError if any input or cache array
    changes, or if the second backward on the same cache differs bitwise from the first."""
    inputs = snapshot(arrays)
    outputs, cache = case.forward(module, arrays)
    assert_unchanged(inputs, f"{case.name} forward: input")
    if case.backward is None:
        return outputs
    cached = snapshot(cache)
    grads = case.backward(module, cache, arrays)
    assert_unchanged(inputs, f"{case.name} backward: input")
    assert_unchanged(cached, f"{case.name} backward: cache")
    again = case.backward(module, cache, arrays)
    assert_bitwise_equal(again, grads, case.backward_names)
    return tuple(outputs) + tuple(grads)


def array_outputs(values, names):
    return [(n, v) for n, v in zip(names, values) if isinstance(v, np.ndarray) and v.ndim]


def check_outputs_independent(case, module, arrays, other_arrays):
    """AssertionError if an output shares memory with another output or an input, if a later
    call (on ``other_arrays``) changes earlier results, or if editing returned arrays in place
    changes what a backward computes."""
    outputs, cache = case.forward(module, arrays)
    grads = case.backward(module, cache, arrays) if case.backward else ()
    everything = array_outputs(tuple(outputs) + tuple(grads), case.names)
    for i, (name, a) in enumerate(everything):
        assert a.flags.writeable, f"{name} is read-only"
        for other, b in everything[i + 1:]:
            assert not np.shares_memory(a, b), f"{name} and {other} share memory"
        for arg, b in arrays.items():
            assert not np.shares_memory(a, b), f"{name} shares memory with input {arg}"

    # a later call with other inputs leaves earlier results alone
    saved = [a.copy() for _, a in everything]
    later_outputs, later_cache = case.forward(module, other_arrays)
    if case.backward is not None:
        case.backward(module, later_cache, other_arrays)
    assert_bitwise_equal([a for _, a in everything], saved, [n for n, _ in everything])
    if case.backward is None:
        return

    expected = case.backward(module, case.forward(module, arrays)[1], arrays)
    # scribble over the forward outputs: the backward must not depend on them
    for _, a in array_outputs(outputs, case.forward_names):
        a[...] = 7.0
    grads_after = case.backward(module, cache, arrays)
    assert_bitwise_equal(grads_after, expected, case.backward_names)
    # scribble over returned gradients: a second backward must not hand back those buffers
    for _, a in array_outputs(grads_after, case.backward_names):
        a[...] = -7.0
    assert_bitwise_equal(case.backward(module, cache, arrays), expected, case.backward_names)
