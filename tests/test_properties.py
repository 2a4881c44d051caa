"""Bounded property tests: random small shapes, dtypes and data against the reference."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn.reference as reference
from _helpers import (AFFINE, EMBEDDING, LSTM, LSTM_STEP, RNN, RNN_STEP, SOFTMAX,
                      TEMPORAL_AFFINE, assert_outputs_close, cast_floats, load_fast, module_for,
                      noncontiguous, sigmoid_exact, sigmoid_ulp_bound,
                      ulp_errors)

# Bounded so the suite stays on by default: 25 examples each, no per-example deadline (the first
# example of a new dtype pays Numba's compile time).
BOUNDED = settings(max_examples=25, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])

FAST = load_fast("fastrnn.rnn_layers")
FAST_LAYERS = load_fast("fastrnn.layers")

dims = st.integers(min_value=1, max_value=6)
dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(min_value=0, max_value=2 ** 32 - 1)
layouts = st.sampled_from([None, "slice", "fortran", "reversed"])


def check(case, shape, dtype, seed, layout=None):
    arrays = cast_floats(case.build(np.random.default_rng(seed), **shape), dtype)
    if layout is not None:
        arrays = {k: noncontiguous(v, layout) for k, v in arrays.items()}
    module = module_for(case, FAST, FAST_LAYERS)
    actual = case.run(module, arrays)
    expected = case.run(reference, arrays)
    truth = case.run(reference, cast_floats(arrays, np.float64)) if dtype == np.float32 else None
    assert_outputs_close(actual, expected, case.names, dtype, truth)


@BOUNDED
@given(N=dims, T=st.integers(1, 12), D=dims, H=dims, dtype=dtypes, seed=seeds, layout=layouts)
def test_rnn_sequence(N, T, D, H, dtype, seed, layout):
    check(RNN, dict(N=N, T=T, D=D, H=H), dtype, seed, layout)


@BOUNDED
@given(N=dims, T=st.integers(1, 12), D=dims, H=dims, dtype=dtypes, seed=seeds, layout=layouts)
def test_lstm_sequence(N, T, D, H, dtype, seed, layout):
    check(LSTM, dict(N=N, T=T, D=D, H=H), dtype, seed, layout)


@BOUNDED
@given(N=dims, D=dims, H=dims, dtype=dtypes, seed=seeds,
       cell=st.sampled_from([RNN_STEP, LSTM_STEP]))
def test_step_functions(N, D, H, dtype, seed, cell):
    check(cell, dict(N=N, D=D, H=H), dtype, seed)


@BOUNDED
@given(N=dims, T=dims, V=st.integers(1, 8), D=dims, dtype=dtypes, seed=seeds)
def test_word_embedding(N, T, V, D, dtype, seed):
    check(EMBEDDING, dict(N=N, T=T, V=V, D=D), dtype, seed)


@BOUNDED
@given(N=dims, T=dims, D=dims, M=dims, dtype=dtypes, seed=seeds, layout=layouts)
def test_temporal_affine(N, T, D, M, dtype, seed, layout):
    check(TEMPORAL_AFFINE, dict(N=N, T=T, D=D, M=M), dtype, seed, layout)


@BOUNDED
@given(x_shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), M=dims,
       dtype=dtypes, seed=seeds)
def test_affine(x_shape, M, dtype, seed):
    check(AFFINE, dict(x_shape=x_shape, M=M), dtype, seed)


@BOUNDED
@given(N=dims, T=dims, V=st.integers(1, 12), dtype=dtypes, seed=seeds,
       mask=st.sampled_from(["random", "all_false", "all_true"]))
def test_temporal_softmax_loss(N, T, V, dtype, seed, mask):
    check(SOFTMAX, dict(N=N, T=T, V=V, mask=mask), dtype, seed)


@BOUNDED
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=True, width=32),
                       min_size=1, max_size=40),
       dtype=dtypes)
def test_sigmoid_any_float(values, dtype):
    """Any finite or infinite input: in [0, 1], rounded about once (subnormals included)."""
    x = np.array(values, dtype=dtype)
    out = FAST.sigmoid(x)
    assert out.dtype == dtype
    assert np.all((out >= 0) & (out <= 1))
    errors = ulp_errors(out, sigmoid_exact(x), dtype)
    assert np.all(errors <= sigmoid_ulp_bound(dtype)), (x, out, errors)
