"""Every public layer function against ``fastrnn.reference`` (float32 and float64)."""
import inspect

import numpy as np
import pytest

from _helpers import (AFFINE, CASES, EMBEDDING, F32_FLOOR, LSTM, NONCONTIGUOUS_KINDS, RNN,
                      SOFTMAX, assert_outputs_close, cast_floats, lstm_via_steps,
                      max_rel_error, module_for, noncontiguous, rnn_via_steps, sigmoid_exact,
                      sigmoid_ulp_bound, ulp_errors)

DTYPES = [np.float32, np.float64]


def compare(case, module, ref, arrays, dtype, run=None, ref_run=None):
    """Run ``case`` on ``module`` and on the reference with ``arrays`` cast to ``dtype``."""
    run = run or case.run
    ref_run = ref_run or case.run
    cast = cast_floats(arrays, dtype)
    actual = run(module, cast)
    expected = ref_run(ref, cast)
    truth = None
    if dtype == np.float32:
        truth = ref_run(ref, cast_floats(cast, np.float64))  # exact float32 values, in float64
    assert_outputs_close(actual, expected, case.names, dtype, truth)
    return actual


def _shape_id(shape):
    return "-".join(f"{k}{v}" for k, v in shape.items())


CONTRACT_NAMES = ["affine_forward", "affine_backward", "rnn_step_forward", "rnn_step_backward",
                  "rnn_forward", "rnn_backward", "word_embedding_forward",
                  "word_embedding_backward", "sigmoid", "lstm_step_forward", "lstm_step_backward",
                  "lstm_forward", "lstm_backward", "temporal_affine_forward",
                  "temporal_affine_backward", "temporal_softmax_loss"]


def test_star_imports_and_signatures(fast, fast_layers, ref):
    """`from fastrnn.rnn_layers import *` gives every contract name, with the classic argument
    names and defaults (notebooks call some by keyword, e.g. verbose=)."""
    namespace, layers_namespace = {}, {}
    exec(f"from {fast.__name__} import *", namespace)
    exec(f"from {fast_layers.__name__} import *", layers_namespace)
    assert set(CONTRACT_NAMES) <= set(namespace)
    assert {"affine_forward", "affine_backward"} <= set(layers_namespace)
    for name in CONTRACT_NAMES:
        got = inspect.signature(getattr(fast, name)).parameters
        want = inspect.signature(getattr(ref, name)).parameters
        assert [(p.name, p.default) for p in got.values()] == \
            [(p.name, p.default) for p in want.values()], name


SHAPE_PARAMS = [pytest.param(case, shape, id=f"{case.name}-{_shape_id(shape)}")
                for case in CASES for shape in case.shapes]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case,shape", SHAPE_PARAMS)
def test_matches_reference(case, shape, dtype, fast, fast_layers, ref, rng):
    module = module_for(case, fast, fast_layers)
    compare(case, module, ref, case.build(rng, **shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", NONCONTIGUOUS_KINDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_noncontiguous_inputs(case, kind, dtype, fast, fast_layers, ref, rng):
    """Same numbers for slices, Fortran order, negative strides and read-only inputs."""
    module = module_for(case, fast, fast_layers)
    arrays = cast_floats(case.build(rng, **case.default_shape), dtype)
    contiguous = case.run(module, arrays)
    variant = {k: noncontiguous(v, kind) for k, v in arrays.items()}
    assert any(not v.flags.c_contiguous or not v.flags.writeable for v in variant.values())
    compare(case, module, ref, variant, dtype)
    # and (nearly) the same numbers as the contiguous call: allow only for BLAS taking another
    # blocking path on a copied/transposed operand.
    for name, a, b in zip(case.names, case.run(module, variant), contiguous):
        bound = 1e-13 if dtype == np.float64 else F32_FLOOR
        assert max_rel_error(a, b) <= bound, name


def test_affine_from_both_modules(fast, fast_layers, ref, rng):
    """``fastrnn.layers`` and ``fastrnn.rnn_layers`` both export the affine pair."""
    arrays = AFFINE.build(rng, x_shape=(4, 2, 3), M=6)
    for module in (fast, fast_layers):
        compare(AFFINE, module, ref, arrays, np.float64)
        out = AFFINE.run(module, arrays)
        assert out[1].shape == (4, 2, 3)  # dx comes back in x's shape


# ---- step functions in a loop == sequence functions ------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("T", [1, 7, 40])
@pytest.mark.parametrize("case,via_steps", [(RNN, rnn_via_steps), (LSTM, lstm_via_steps)],
                         ids=["rnn", "lstm"])
def test_step_loop_matches_sequence(case, via_steps, T, dtype, fast, ref, rng):
    arrays = case.build(rng, N=3, T=T, D=5, H=4)
    # the fast steps in a loop against the reference sequence function
    steps = compare(case, fast, ref, arrays, dtype, run=via_steps)
    # and against the fast sequence function directly
    sequence = case.run(fast, cast_floats(arrays, dtype))
    truth = case.run(ref, cast_floats(cast_floats(arrays, dtype), np.float64))
    assert_outputs_close(steps, sequence, case.names, dtype, truth)


# ---- special inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_embedding_repeated_indices_accumulate(dtype, fast, rng):
    W = rng.standard_normal((3, 4)).astype(dtype)
    x = np.array([[0, 2, 0, 0], [2, 2, 1, 0]], dtype=np.int64)
    dout = rng.standard_normal((2, 4, 4)).astype(dtype)
    out, cache = fast.word_embedding_forward(x, W)
    np.testing.assert_array_equal(out, W[x])
    dW = fast.word_embedding_backward(dout, cache)
    expected = np.zeros((3, 4))
    for n in range(2):
        for t in range(4):
            expected[x[n, t]] += dout[n, t]
    tol = 1e-15 if dtype == np.float64 else 4 * np.finfo(np.float32).eps
    np.testing.assert_allclose(dW, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64, np.uint8, np.intp])
def test_embedding_accepts_integer_index_dtypes(index_dtype, fast, ref, rng):
    arrays = EMBEDDING.build(rng, N=3, T=4, V=6, D=2)
    arrays["x"] = arrays["x"].astype(index_dtype)
    compare(EMBEDDING, fast, ref, arrays, np.float64)


def test_embedding_unused_rows_get_zero_gradient(fast, rng):
    W = rng.standard_normal((10, 3))
    x = np.array([[1, 1, 4]])
    _, cache = fast.word_embedding_forward(x, W)
    dW = fast.word_embedding_backward(np.ones((1, 3, 3)), cache)
    assert dW.shape == (10, 3)
    np.testing.assert_array_equal(dW[[0, 2, 3, 5, 6, 7, 8, 9]], 0.0)
    np.testing.assert_array_equal(dW[1], 2.0)
    np.testing.assert_array_equal(dW[4], 1.0)


EXTREMES = [-1e4, -1000.0, -745.0, -720.0, -200.0, -100.0, -88.0, -50.0, -20.0, -1.0, -1e-3,
            -1e-30, -0.0, 0.0, 1e-30, 1e-3, 1.0, 20.0, 50.0, 88.0, 100.0, 200.0, 745.0, 1000.0,
            1e4]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sigmoid_extreme_values(dtype, fast):
    x = np.array(EXTREMES, dtype=dtype)
    out = fast.sigmoid(x)
    assert out.dtype == dtype and out.shape == x.shape
    # rounded about once everywhere, subnormal results included (gradual underflow: sigmoid
    # at -745 in float64 and at -100 in float32 is a subnormal number, not 0)
    errors = ulp_errors(out, sigmoid_exact(x), dtype)
    assert np.all(errors <= sigmoid_ulp_bound(dtype)), x[errors > sigmoid_ulp_bound(dtype)]
    assert out[x == 0].tolist() == [0.5, 0.5]
    assert out[-1] == 1.0 and out[0] == 0.0
    assert np.all((out >= 0) & (out <= 1))
    tiny = -745.0 if dtype == np.float64 else -100.0
    assert 0 < out[x == tiny][0] < np.finfo(dtype).smallest_normal


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sigmoid_dense_grid(dtype, fast):
    """Accurate on a dense grid crossing every branch and range-reduction boundary."""
    x = np.linspace(-120, 120, 48_001).astype(dtype)
    errors = ulp_errors(fast.sigmoid(x), sigmoid_exact(x), dtype)
    assert float(errors.max()) <= sigmoid_ulp_bound(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", NONCONTIGUOUS_KINDS)
def test_sigmoid_keeps_shape_and_layout_values(kind, dtype, fast, rng):
    x = noncontiguous((30 * rng.standard_normal((4, 5, 3))).astype(dtype), kind)
    out = fast.sigmoid(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert float(ulp_errors(out, sigmoid_exact(x), dtype).max()) <= sigmoid_ulp_bound(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_lstm_forget_gate_underflow_keeps_an_infinite_cell(dtype, fast, ref):
    """A forget gate deep in the negatives is a subnormal number, not 0: times a cell state of
    inf it is inf, as in the classic code (a flushed 0 made it 0 * inf = NaN)."""
    H = 2
    deep = -100.0 if dtype == np.float32 else -720.0  # sigmoid(deep) is subnormal
    b = np.array([0.0] * H + [deep] * H + [0.0] * H + [0.0] * H, dtype=dtype)
    x = np.zeros((1, 1), dtype)
    prev_h = np.zeros((1, H), dtype)
    prev_c = np.array([[np.inf, -np.inf]], dtype)
    Wx, Wh = np.zeros((1, 4 * H), dtype), np.zeros((H, 4 * H), dtype)
    next_h, next_c, _ = fast.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    ref_h, ref_c, _ = ref.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    np.testing.assert_array_equal(next_c, [[np.inf, -np.inf]])
    np.testing.assert_array_equal(next_h, [[0.5, -0.5]])
    np.testing.assert_array_equal(next_c, ref_c)
    np.testing.assert_array_equal(next_h, ref_h)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_softmax_loss_definition(dtype, fast, rng):
    """Loss divided by N only (summed over time); dx = (softmax - onehot) * mask / N."""
    N, T, V = 3, 5, 4
    x = rng.standard_normal((N, T, V)).astype(dtype)
    y = rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) < 0.6
    loss, dx = fast.temporal_softmax_loss(x, y, mask)
    x64 = x.astype(np.float64)
    p = np.exp(x64) / np.exp(x64).sum(axis=2, keepdims=True)
    onehot = np.eye(V)[y]
    expected_loss = -np.sum(mask * np.log(p[np.arange(N)[:, None], np.arange(T), y])) / N
    expected_dx = (p - onehot) * mask[:, :, None] / N
    tol = 1e-13 if dtype == np.float64 else 1e-6
    assert abs(float(loss) - expected_loss) <= tol * abs(expected_loss)
    assert max_rel_error(dx, expected_dx) <= tol


def test_softmax_loss_all_false_mask(fast, rng):
    arrays = SOFTMAX.build(rng, N=4, T=3, V=6, mask="all_false")
    loss, dx = fast.temporal_softmax_loss(arrays["x"], arrays["y"], arrays["mask"])
    assert float(loss) == 0.0
    np.testing.assert_array_equal(dx, 0.0)


@pytest.mark.parametrize("verbose", [False, True])
def test_softmax_loss_verbose_keyword(verbose, fast, ref, rng, capsys):
    arrays = SOFTMAX.build(rng)
    loss, dx = fast.temporal_softmax_loss(arrays["x"], arrays["y"], arrays["mask"],
                                          verbose=verbose)
    ref_loss, ref_dx = SOFTMAX.run(ref, arrays)
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    assert max_rel_error(dx, ref_dx) <= 1e-12
    capsys.readouterr()


def test_lstm_gate_order_is_i_f_o_g(fast):
    """Only the g block (the last H columns) is a tanh: with b pushing g to +1/-1 and i, f, o
    saturated open, next_c = prev_c + g; any other gate order gives something else."""
    H = 2
    big = 40.0
    b = np.array([big] * H + [big] * H + [big] * H + [big, -big])  # i, f, o open; g = +1, -1
    x = np.zeros((1, 1))
    prev_h = np.zeros((1, H))
    prev_c = np.array([[0.25, 0.5]])
    next_h, next_c, _ = fast.lstm_step_forward(x, prev_h, prev_c, np.zeros((1, 4 * H)),
                                               np.zeros((H, 4 * H)), b)
    np.testing.assert_allclose(next_c, [[1.25, -0.5]], rtol=1e-12)
    np.testing.assert_allclose(next_h, np.tanh([[1.25, -0.5]]), rtol=1e-12)


def test_lstm_forward_starts_from_zero_cell(fast, rng):
    """lstm_forward == lstm_step_forward from prev_c = 0 for T=1 (no c0 argument)."""
    N, D, H = 2, 3, 4
    x = rng.standard_normal((N, 1, D))
    h0 = rng.standard_normal((N, H))
    Wx, Wh, b = (rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H)),
                 rng.standard_normal(4 * H))
    h, _ = fast.lstm_forward(x, h0, Wx, Wh, b)
    next_h, _, _ = fast.lstm_step_forward(x[:, 0], h0, np.zeros((N, H)), Wx, Wh, b)
    assert max_rel_error(h[:, 0], next_h) <= 1e-14


def test_rnn_backward_dh_is_per_step_upstream(fast, rng):
    """dh is per-step upstream only: zero dh gives exactly zero gradients; dh at the last step
    alone still reaches dh0 through the recurrence."""
    arrays = RNN.build(rng, N=2, T=5, D=3, H=4)
    h, cache = fast.rnn_forward(arrays["x"], arrays["h0"], arrays["Wx"], arrays["Wh"],
                                arrays["b"])
    for g in fast.rnn_backward(np.zeros_like(h), cache):
        np.testing.assert_array_equal(g, 0.0)
    dh = np.zeros_like(h)
    dh[:, -1] = 1.0
    dx, dh0, *_ = fast.rnn_backward(dh, cache)
    assert np.all(np.abs(dh0).sum(axis=1) > 0) and np.all(np.abs(dx[:, 0]).sum(axis=1) > 0)


def test_large_T_rnn_and_lstm_float64(fast, ref, rng):
    """A long sequence (T=300) with a bigger batch, both cells, float64."""
    for case in (RNN, LSTM):
        compare(case, fast, ref, case.build(rng, N=8, T=300, D=6, H=10), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_row_parallel_gate_math_matches_reference_on_any_thread_count(dtype, fast, ref, rng):
    """Batches whose step has enough gate values to run its rows on Numba's threads (the
    packed product too), against the reference; one thread and two give the same bits."""
    import numba
    from fastrnn._kernels.recurrent import PARALLEL_GATES_MIN
    for case, (N, H, G) in ((RNN, (32, 256, 256)), (LSTM, (16, 128, 512))):
        assert N * G >= PARALLEL_GATES_MIN
        arrays = case.build(rng, N=N, T=3, D=20, H=H)
        two = compare(case, fast, ref, arrays, dtype)
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            one = case.run(fast, cast_floats(arrays, dtype))
        finally:
            numba.set_num_threads(threads)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_softmax_loss_single_class_is_exactly_zero(dtype, fast, rng):
    """V = 1: softmax is exactly 1, so the loss and every gradient entry are exactly 0
    (the float32 reference gets this; (p - 1)/N must not become round(p/N) - 1/N)."""
    x = rng.standard_normal((3, 2, 1)).astype(dtype)
    loss, dx = fast.temporal_softmax_loss(x, np.zeros((3, 2), int), np.ones((3, 2), bool))
    assert float(loss) == 0.0
    np.testing.assert_array_equal(dx, 0.0)


@pytest.mark.parametrize("value", [np.float32(3.0), np.array(-2.0), 0.5, np.array(7, dtype=np.int64)])
def test_sigmoid_of_a_scalar_is_a_scalar(value, fast):
    """0-d in, 0-d out (np.ascontiguousarray would silently make it shape (1,))."""
    out = fast.sigmoid(value)
    assert np.shape(out) == () and np.ndim(out) == 0
    assert out.dtype == (np.float32 if np.asarray(value).dtype == np.float32 else np.float64)
    assert float(ulp_errors(out, sigmoid_exact(value), out.dtype)) <= sigmoid_ulp_bound(out.dtype)
