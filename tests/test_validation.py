"""Bad input: clear errors at the boundary; NaN/inf propagate; huge logits stay finite."""
import re

import numpy as np
import pytest

import fastrnn.reference as reference
from _helpers import (AFFINE, CASES_WITH_BACKWARD, EMBEDDING, LSTM, LSTM_STEP, RNN, RNN_STEP,
                      SOFTMAX, TEMPORAL_AFFINE, module_for)

N, T, D, H, V, M = 3, 4, 5, 6, 7, 2


def good_arrays(case, rng):
    shape = {
        "affine": dict(x_shape=(N, 2, 3), M=M), "rnn_step": dict(N=N, D=D, H=H),
        "rnn": dict(N=N, T=T, D=D, H=H), "lstm_step": dict(N=N, D=D, H=H),
        "lstm": dict(N=N, T=T, D=D, H=H), "word_embedding": dict(N=N, T=T, V=V, D=D),
        "temporal_affine": dict(N=N, T=T, D=D, M=M), "temporal_softmax_loss": dict(N=N, T=T, V=V),
    }[case.name]
    return case.build(rng, **shape)


# (case, argument, bad shape): each changes one argument so that it alone is wrong.  N comes
# from x, H from h0 / prev_h (the first arguments), so a wrong H there would be blamed on the
# weights; those ambiguous pairs are left out.  What NumPy broadcasts meaningfully is not here
# (a (D,) x or (H,) prev_h in a step, a (1, H) bias, indices of any shape: test_broadcasting.py);
# a per-sample bias (N, H) is, because the classic backward returns a shared bias's db for it.
BAD_SHAPES = [
    (RNN_STEP, "x", (N, 1, D)), (RNN_STEP, "prev_h", (N + 1, H)), (RNN_STEP, "prev_h", (N, 1, H)),
    (RNN_STEP, "Wx", (D + 1, H)), (RNN_STEP, "Wx", (D, H + 1)), (RNN_STEP, "Wh", (H, H + 1)),
    (RNN_STEP, "Wh", (H + 1, H)), (RNN_STEP, "Wh", (H * H,)), (RNN_STEP, "b", (H + 1,)),
    (RNN_STEP, "b", (N, H)), (RNN_STEP, "dnext_h", (N, H + 1)), (RNN_STEP, "dnext_h", (N * H,)),
    (RNN, "x", (N, D)), (RNN, "h0", (N + 1, H)), (RNN, "h0", (N, 1, H)), (RNN, "h0", (N - 1, H)),
    (RNN, "Wx", (D + 1, H)), (RNN, "Wh", (H, 2 * H)),
    (RNN, "b", (2 * H,)), (RNN, "b", (N, H)), (RNN, "dh", (N, T + 1, H)),
    (RNN, "dh", (N, H)), (RNN, "dh", (N, T, H + 1)),
    (LSTM_STEP, "x", (1, N, D)), (LSTM_STEP, "prev_h", (N + 1, H)),
    (LSTM_STEP, "prev_c", (N, H + 1)), (LSTM_STEP, "prev_c", (H + 1,)),
    (LSTM_STEP, "prev_c", (N + 1, H)), (LSTM_STEP, "Wx", (D, H)), (LSTM_STEP, "Wh", (H, H)),
    (LSTM_STEP, "Wh", (4 * H, H)), (LSTM_STEP, "b", (H,)), (LSTM_STEP, "dnext_h", (N, 4 * H)),
    (LSTM_STEP, "dnext_c", (N, H + 1)), (LSTM_STEP, "dnext_c", (N + 1, H)),
    (LSTM, "x", (N, T, D, 1)), (LSTM, "h0", (N + 2, H)), (LSTM, "Wx", (D, 4 * H + 1)),
    (LSTM, "Wh", (H, 3 * H)), (LSTM, "b", (4 * H, 1)), (LSTM, "dh", (N, T - 1, H)),
    (EMBEDDING, "W", (V * D,)), (EMBEDDING, "dout", (N, T, D + 1)),
    (EMBEDDING, "dout", (N, T + 1, D)), (EMBEDDING, "dout", (N * T, D)),
    (TEMPORAL_AFFINE, "x", (N, D)), (TEMPORAL_AFFINE, "w", (D + 1, M)),
    (TEMPORAL_AFFINE, "w", (D,)), (TEMPORAL_AFFINE, "b", (M + 1,)), (TEMPORAL_AFFINE, "b", (T, M)),
    (TEMPORAL_AFFINE, "dout", (N, T, M + 1)), (TEMPORAL_AFFINE, "dout", (N, T + 1, M)),
    (AFFINE, "w", (7, M)), (AFFINE, "b", (M + 1,)), (AFFINE, "b", (N, M)),
    (AFFINE, "b", (1, 1, M)), (AFFINE, "dout", (N, M + 1)), (AFFINE, "dout", (N + 1, M)),
    (SOFTMAX, "x", (N, V)), (SOFTMAX, "y", (N, T + 1)), (SOFTMAX, "y", (N * T,)),
    (SOFTMAX, "mask", (N, T + 1)), (SOFTMAX, "mask", (N * T,)), (SOFTMAX, "mask", (N, T, 1)),
]


def assert_message_names(excinfo, name, shape):
    message = str(excinfo.value)
    assert re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message), message
    assert str(tuple(shape)) in message, f"actual shape {tuple(shape)} missing: {message}"


@pytest.mark.parametrize("case,arg,bad_shape", [
    pytest.param(c, a, s, id=f"{c.name}-{a}-{'x'.join(map(str, s))}") for c, a, s in BAD_SHAPES])
def test_bad_shape_names_the_argument(case, arg, bad_shape, fast, fast_layers, rng):
    module = module_for(case, fast, fast_layers)
    arrays = good_arrays(case, rng)
    case.run(module, arrays)  # the good arrays work
    old = arrays[arg]
    arrays[arg] = (rng.integers(0, 2, bad_shape).astype(old.dtype) if old.dtype.kind in "iub"
                   else rng.standard_normal(bad_shape))
    with pytest.raises(ValueError) as excinfo:
        case.run(module, arrays)
    assert_message_names(excinfo, arg, bad_shape)


@pytest.mark.parametrize("bad", ["fraction", "nan", "inf", "bool", "complex", "negative",
                                 "too_large", "huge", "float_too_large", "float_huge"])
@pytest.mark.parametrize("case,arg", [(EMBEDDING, "x"), (SOFTMAX, "y")],
                         ids=["embedding-x", "softmax-y"])
def test_bad_indices(case, arg, bad, fast, rng):
    arrays = good_arrays(case, rng)
    idx = arrays[arg].astype(np.int64)
    if bad in ("fraction", "nan", "inf", "float_too_large", "float_huge"):
        # Float indices holding whole numbers in range are accepted (test_broadcasting.py).
        arrays[arg] = idx.astype(np.float64)
        arrays[arg][1, 2] = {"fraction": 0.5, "nan": np.nan, "inf": np.inf,
                             "float_too_large": V, "float_huge": 1e300}[bad]
        error = ValueError
    elif bad == "bool":
        arrays[arg] = idx % 2 == 0
        error = TypeError
    elif bad == "complex":
        arrays[arg] = idx.astype(complex)
        error = TypeError
    else:
        idx[1, 2] = {"negative": -1, "too_large": V, "huge": 2 ** 40}[bad]
        arrays[arg] = idx
        error = ValueError
    with pytest.raises(error, match=rf"(?<![\w]){arg}(?![\w])"):
        case.run(fast, arrays)


def test_index_check_uses_the_vocabulary_size(fast, rng):
    """V - 1 is fine, V is not (for the embedding V is W's first axis, for the loss x's last)."""
    W = rng.standard_normal((V, D))
    out, _ = fast.word_embedding_forward(np.array([[0, V - 1]]), W)
    np.testing.assert_array_equal(out[0, 1], W[V - 1])
    with pytest.raises(ValueError, match=str(V)):
        fast.word_embedding_forward(np.array([[0, V]]), W)
    x = rng.standard_normal((1, 2, V))
    fast.temporal_softmax_loss(x, np.array([[0, V - 1]]), np.ones((1, 2), bool))
    with pytest.raises(ValueError, match=str(V)):
        fast.temporal_softmax_loss(x, np.array([[V, 0]]), np.ones((1, 2), bool))


# ---- caches -------------------------------------------------------------------------------------
def _caches(fast, rng):
    """One cache from every forward of the module under test, keyed by case name."""
    caches = {}
    for case in CASES_WITH_BACKWARD:
        if case.name == "affine":
            continue
        _, caches[case.name] = case.forward(fast, good_arrays(case, rng))
    return caches


@pytest.mark.parametrize("case", [c for c in CASES_WITH_BACKWARD if c.name != "affine"],
                         ids=[c.name for c in CASES_WITH_BACKWARD if c.name != "affine"])
def test_foreign_cache_is_a_type_error(case, fast, rng):
    arrays = good_arrays(case, rng)
    caches = _caches(fast, rng)
    own = caches.pop(case.name)
    case.backward(fast, own, arrays)  # the own cache works
    _, ref_cache = case.forward(reference, arrays)
    foreign = list(caches.values()) + [tuple(own), list(own), ref_cache, None]
    for cache in foreign:
        with pytest.raises(TypeError):
            case.backward(fast, cache, arrays)


def test_affine_foreign_cache_is_a_type_error(fast, fast_layers, rng):
    arrays = good_arrays(AFFINE, rng)
    _, own = AFFINE.forward(fast_layers, arrays)
    _, other = TEMPORAL_AFFINE.forward(fast, good_arrays(TEMPORAL_AFFINE, rng))
    for cache in (other, tuple(own), (arrays["x"], arrays["w"], arrays["b"])):
        with pytest.raises(TypeError):
            fast_layers.affine_backward(arrays["dout"], cache)


# ---- NaN / inf ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", [RNN, LSTM], ids=["rnn", "lstm"])
def test_nan_input_propagates(case, dtype, fast, rng):
    arrays = {k: v.astype(dtype) for k, v in good_arrays(case, rng).items()}
    arrays["x"][0, 1, 2] = np.nan
    (h,), cache = case.forward(fast, arrays)
    assert np.isnan(h[0, 1:]).all(), "NaN at (n=0, t=1) must reach every later h of sample 0"
    assert np.isfinite(h[0, :1]).all() and np.isfinite(h[1:]).all(), "other samples unaffected"
    dx, dh0, dWx, dWh, db = case.backward(fast, cache, arrays)
    assert np.isnan(dWx).any() and np.isnan(dWh).any() and np.isnan(db).any()
    assert np.isfinite(dx[1:]).all() and np.isfinite(dh0[1:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_inf_input_saturates_rnn(dtype, fast, rng):
    """x = +inf: every pre-activation of that row is +-inf, tanh gives exactly +-1 (not NaN)."""
    arrays = {k: v.astype(dtype) for k, v in good_arrays(RNN, rng).items()}
    arrays["x"][0, 0, 0] = np.inf
    (h,), cache = RNN.forward(fast, arrays)
    np.testing.assert_array_equal(h[0, 0], np.sign(arrays["Wx"][0]))
    assert np.isfinite(h).all()
    dx, dh0, dWx, dWh, db = RNN.backward(fast, cache, arrays)
    assert not np.isfinite(dWx).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_inf_input_saturates_lstm_gates(dtype, fast, rng):
    """Gates at +-inf pre-activation are exactly 0/1 (sigmoid) and +-1 (tanh), not NaN."""
    arrays = {k: v.astype(dtype) for k, v in good_arrays(LSTM_STEP, rng).items()}
    arrays["x"][0, 0] = np.inf
    next_h, next_c, _ = fast.lstm_step_forward(*(arrays[k] for k in LSTM_STEP.forward_args))
    assert np.isfinite(next_h).all() and np.isfinite(next_c).all()
    s = np.sign(arrays["Wx"][0]).astype(np.float64)
    i, f, o = ((s[k * H:(k + 1) * H] > 0).astype(np.float64) for k in range(3))
    g = s[3 * H:]
    expected_c = f * arrays["prev_c"][0].astype(np.float64) + i * g
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(next_c[0], expected_c, rtol=eps, atol=eps)
    np.testing.assert_allclose(next_h[0], o * np.tanh(expected_c),
                               rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sigmoid_nan_and_inf(dtype, fast):
    out = fast.sigmoid(np.array([np.nan, np.inf, -np.inf, 0.0], dtype=dtype))
    assert np.isnan(out[0])
    assert out[1:].tolist() == [1.0, 0.0, 0.5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_nan_in_other_layers(dtype, fast, rng):
    W = rng.standard_normal((V, D)).astype(dtype)
    W[2, 1] = np.nan
    x = np.array([[2, 0], [1, 2]])
    out, _ = fast.word_embedding_forward(x, W)
    assert np.isnan(out[0, 0, 1]) and np.isnan(out[1, 1, 1])
    assert np.isfinite(np.delete(out.reshape(4, D), [0, 3], axis=0)).all()

    xs = rng.standard_normal((N, T, D)).astype(dtype)
    xs[1, 2, 3] = np.nan
    out, _ = fast.temporal_affine_forward(xs, rng.standard_normal((D, M)).astype(dtype),
                                          np.zeros(M, dtype))
    assert np.isnan(out[1, 2]).all() and np.isfinite(np.delete(out.reshape(-1, M), 6, 0)).all()

    scores = rng.standard_normal((N, T, V)).astype(dtype)
    scores[0, 0, 3] = np.nan
    loss, dx = fast.temporal_softmax_loss(scores, np.zeros((N, T), int), np.ones((N, T), bool))
    assert np.isnan(loss) and np.isnan(dx[0, 0]).all()
    assert np.isfinite(dx.reshape(-1, V)[1:]).all()


# ---- huge logits --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_huge_logits_give_finite_loss(dtype, fast, rng):
    x = (1e4 * rng.standard_normal((N, T, V))).astype(dtype)
    y = rng.integers(0, V, (N, T))
    mask = np.ones((N, T), bool)
    loss, dx = fast.temporal_softmax_loss(x, y, mask)
    assert np.isfinite(loss) and np.isfinite(dx).all()
    x64 = x.astype(np.float64)
    shifted = x64 - x64.max(axis=2, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    expected = -log_p[np.arange(N)[:, None], np.arange(T), y].sum() / N
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert abs(float(loss) - expected) <= rtol * abs(expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_underflowing_target_probability(dtype, fast):
    """log(softmax) would be log(0) = -inf here; the stable log-softmax gives 2e4 per token."""
    x = np.zeros((2, 3, 4), dtype=dtype)
    x[..., 0] = 1e4
    y = np.ones((2, 3), int)  # target logit 0 against a 1e4 winner: p = exp(-1e4)
    mask = np.ones((2, 3), bool)
    mask[1, 2] = False
    loss, dx = fast.temporal_softmax_loss(x, y, mask)
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert abs(float(loss) - 5 * 1e4 / 2) <= 1e-6 * 5e4
    expected_dx = np.zeros((2, 3, 4))
    expected_dx[..., 0] = 1 / 2
    expected_dx[..., 1] = -1 / 2
    expected_dx[1, 2] = 0
    np.testing.assert_allclose(dx, expected_dx, atol=1e-7)
