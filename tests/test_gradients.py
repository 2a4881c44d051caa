"""Numeric gradient checks in float64, the way the course notebooks run them.

The closures ignore their argument and close over the array that
``eval_numerical_gradient_array`` perturbs in place: an implementation that caches weights (or
a transposed copy) between calls returns a numeric gradient of zero and fails here.

Run against both the reference (the yardstick must itself be right) and the module under test.
Tolerances: 1e-8 on step functions, as the classic notebooks reach; where one is looser the
comment says why.  rel_error is elementwise (|a-b| / max(1e-8, |a|+|b|)), so its size is set by
the numeric gradient's own error (~1e-11 absolute with h=1e-5) over the smallest entries.
"""
import numpy as np
import pytest

from _helpers import (AFFINE, EMBEDDING, LSTM, LSTM_STEP, RNN, RNN_STEP, SOFTMAX,
                      TEMPORAL_AFFINE)
from fastrnn.gradient_check import (eval_numerical_gradient, eval_numerical_gradient_array,
                                    rel_error)

STEP_TOL = 1e-8


def numeric_grads(forward_output, arrays, names, upstream):
    """Numeric gradient of sum(forward_output() * upstream) w.r.t. each named array.

    ``forward_output`` takes no argument: every lambda ignores what it is given and reads the
    arrays in ``arrays``, which eval_numerical_gradient_array perturbs in place.
    """
    return {name: eval_numerical_gradient_array(lambda _: forward_output(), arrays[name],
                                                upstream)
            for name in names}


def check(analytic, numeric, tolerances):
    errors = {name: rel_error(numeric[name], analytic[name]) for name in numeric}
    bad = {n: e for n, e in errors.items() if not e <= tolerances[n]}
    assert not bad, f"rel errors above tolerance: {bad} (all: {errors})"
    return errors


def test_rnn_step_backward(any_impl, rng):
    m = any_impl
    a = RNN_STEP.build(rng, N=4, D=5, H=6)
    x, prev_h, Wx, Wh, b = (a[k] for k in ("x", "prev_h", "Wx", "Wh", "b"))
    _, cache = m.rnn_step_forward(x, prev_h, Wx, Wh, b)
    dx, dprev_h, dWx, dWh, db = m.rnn_step_backward(a["dnext_h"], cache)
    numeric = numeric_grads(lambda: m.rnn_step_forward(x, prev_h, Wx, Wh, b)[0], a,
                            ("x", "prev_h", "Wx", "Wh", "b"), a["dnext_h"])
    check(dict(x=dx, prev_h=dprev_h, Wx=dWx, Wh=dWh, b=db), numeric,
          dict.fromkeys(numeric, STEP_TOL))


def test_rnn_backward(any_impl, rng):
    m = any_impl
    a = RNN.build(rng, N=2, T=3, D=4, H=5)
    x, h0, Wx, Wh, b = (a[k] for k in ("x", "h0", "Wx", "Wh", "b"))
    _, cache = m.rnn_forward(x, h0, Wx, Wh, b)
    dx, dh0, dWx, dWh, db = m.rnn_backward(a["dh"], cache)
    numeric = numeric_grads(lambda: m.rnn_forward(x, h0, Wx, Wh, b)[0], a,
                            ("x", "h0", "Wx", "Wh", "b"), a["dh"])
    check(dict(x=dx, h0=dh0, Wx=dWx, Wh=dWh, b=db), numeric, dict.fromkeys(numeric, STEP_TOL))


def test_lstm_step_backward(any_impl, rng):
    m = any_impl
    a = LSTM_STEP.build(rng, N=4, D=5, H=6)
    x, prev_h, prev_c, Wx, Wh, b = (a[k] for k in ("x", "prev_h", "prev_c", "Wx", "Wh", "b"))
    dnext_h, dnext_c = a["dnext_h"], a["dnext_c"]
    _, _, cache = m.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    dx, dprev_h, dprev_c, dWx, dWh, db = m.lstm_step_backward(dnext_h, dnext_c, cache)

    def both():  # d/dθ of sum(next_h * dnext_h) + sum(next_c * dnext_c)
        next_h, next_c, _ = m.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
        return np.stack([next_h, next_c])

    numeric = numeric_grads(both, a, ("x", "prev_h", "prev_c", "Wx", "Wh", "b"),
                            np.stack([dnext_h, dnext_c]))
    tolerances = dict.fromkeys(numeric, STEP_TOL)
    # dWx = x^T da has entries near 1e-3 on this data where the numeric gradient's ~1e-11
    # absolute noise is ~1e-8 relative: the reference (the classic algorithm) reaches 1.7e-8.
    tolerances.update(Wx=5e-8)
    check(dict(x=dx, prev_h=dprev_h, prev_c=dprev_c, Wx=dWx, Wh=dWh, b=db), numeric,
          tolerances)


def test_lstm_backward(any_impl, rng):
    m = any_impl
    a = LSTM.build(rng, N=2, T=3, D=5, H=6)
    x, h0, Wx, Wh, b = (a[k] for k in ("x", "h0", "Wx", "Wh", "b"))
    _, cache = m.lstm_forward(x, h0, Wx, Wh, b)
    dx, dh0, dWx, dWh, db = m.lstm_backward(a["dh"], cache)
    numeric = numeric_grads(lambda: m.lstm_forward(x, h0, Wx, Wh, b)[0], a,
                            ("x", "h0", "Wx", "Wh", "b"), a["dh"])
    tolerances = dict.fromkeys(numeric, STEP_TOL)
    # The classic notebook reports dWh up to ~3e-6 on its data: through the recurrence dWh sums
    # products of small gate derivatives, some entries are tiny and rel_error's elementwise
    # denominator magnifies the numeric gradient's absolute error (the forward's last-ulp noise
    # over h=1e-5, differenced three steps deep).  Measured here, dWh / dWx: reference
    # 3.6e-8 / 7.5e-9, fastrnn 1.3e-7 / 1.2e-8 (2.0e-7 / 1.8e-8 with the earlier few-ulp tanh);
    # their analytic gradients agree to 1e-15: on one draw the noise is luck, and over 100 seeds
    # fastrnn's median is the reference's (test_gradcheck_seeds.py).
    tolerances.update(Wh=1e-6, Wx=1e-7)
    check(dict(x=dx, h0=dh0, Wx=dWx, Wh=dWh, b=db), numeric, tolerances)


def test_word_embedding_backward(any_impl, rng):
    m = any_impl
    a = EMBEDDING.build(rng, N=2, T=3, V=5, D=3)
    x = a["x"] = np.array([[0, 3, 1], [3, 3, 0]])  # repeats, and rows 2 and 4 unused
    W = a["W"]
    _, cache = m.word_embedding_forward(x, W)
    dW = m.word_embedding_backward(a["dout"], cache)
    numeric = numeric_grads(lambda: m.word_embedding_forward(x, W)[0], a, ("W",), a["dout"])
    check(dict(W=dW), numeric, dict(W=STEP_TOL))


def test_temporal_affine_backward(any_impl, rng):
    m = any_impl
    a = TEMPORAL_AFFINE.build(rng, N=2, T=3, D=4, M=5)
    x, w, b = a["x"], a["w"], a["b"]
    _, cache = m.temporal_affine_forward(x, w, b)
    dx, dw, db = m.temporal_affine_backward(a["dout"], cache)
    numeric = numeric_grads(lambda: m.temporal_affine_forward(x, w, b)[0], a, ("x", "w", "b"),
                            a["dout"])
    check(dict(x=dx, w=dw, b=db), numeric, dict.fromkeys(numeric, STEP_TOL))


def test_affine_backward(any_impl, rng):
    m = any_impl
    a = AFFINE.build(rng, x_shape=(3, 2, 4), M=5)
    x, w, b = a["x"], a["w"], a["b"]
    _, cache = m.affine_forward(x, w, b)
    dx, dw, db = m.affine_backward(a["dout"], cache)
    assert dx.shape == x.shape
    numeric = numeric_grads(lambda: m.affine_forward(x, w, b)[0], a, ("x", "w", "b"), a["dout"])
    check(dict(x=dx, w=dw, b=db), numeric, dict.fromkeys(numeric, STEP_TOL))


@pytest.mark.parametrize("mask_kind", ["random", "all_true"])
def test_temporal_softmax_loss_gradient(mask_kind, any_impl, rng):
    m = any_impl
    a = SOFTMAX.build(rng, N=3, T=4, V=5, mask=mask_kind)
    x, y, mask = a["x"], a["y"], a["mask"]
    loss, dx = m.temporal_softmax_loss(x, y, mask)
    h = 1e-5
    dx_num = eval_numerical_gradient(lambda _: m.temporal_softmax_loss(x, y, mask)[0], x,
                                     verbose=False, h=h)
    # The loss (~5) is a sum over every token: each numeric entry carries its rounding noise,
    # a few eps*|loss| over 2h (~1e-10 absolute).  An elementwise rel_error bound therefore
    # depends on the smallest |dx| entry and on how NumPy's SIMD exp/log round on the machine
    # (the reference itself measured 1.8e-7 on AVX2 and 2.3e-6 on AVX-512), so the bound is
    # that noise in absolute terms plus 1e-6 relative; a wrong gradient is off by >= 1e-5.
    noise = 16 * np.finfo(np.float64).eps * abs(float(loss)) / (2 * h)
    np.testing.assert_allclose(dx, dx_num, rtol=1e-6, atol=noise)
    assert rel_error(dx_num, dx) <= 1e-4


def test_softmax_loss_gradient_notebook_sizes(any_impl, rng):
    """The notebook's sanity check: N=100, T=1, V=10, 0.001*randn scores, ~10% mask."""
    m = any_impl
    N, T, V = 100, 1, 10
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) <= 0.1
    loss, dx = m.temporal_softmax_loss(x, y, mask)
    assert abs(float(loss) - np.log(V) * mask.sum() / N) < 1e-2
    dx_num = eval_numerical_gradient(lambda _: m.temporal_softmax_loss(x, y, mask)[0], x,
                                     verbose=False)
    # entries are ~1e-3 with scores ~1e-3 apart: the relative noise of a loss ~0.2 differenced
    # over h=1e-5 is ~1e-11/1e-3, so the notebook itself reports ~1e-8 here.
    assert rel_error(dx_num, dx) <= 1e-7


def test_check_catches_a_slightly_wrong_gradient(rng):
    """The tolerances have teeth: a gradient off by one part in 1e6 fails the step tolerance,
    and a weight-caching layer (stale weights) fails the closure-style check."""
    from fastrnn import reference as m
    a = RNN_STEP.build(rng, N=4, D=5, H=6)
    x, prev_h, Wx, Wh, b = (a[k] for k in ("x", "prev_h", "Wx", "Wh", "b"))
    _, cache = m.rnn_step_forward(x, prev_h, Wx, Wh, b)
    dx, dprev_h, dWx, dWh, db = m.rnn_step_backward(a["dnext_h"], cache)
    numeric = numeric_grads(lambda: m.rnn_step_forward(x, prev_h, Wx, Wh, b)[0], a, ("Wh",),
                            a["dnext_h"])
    with pytest.raises(AssertionError):
        check(dict(Wh=dWh * (1 + 1e-6)), numeric, dict(Wh=STEP_TOL))

    frozen = Wh.copy()  # a layer that cached the weights at first sight

    def caching_forward():
        return m.rnn_step_forward(x, prev_h, Wx, frozen, b)[0]

    stale = numeric_grads(caching_forward, a, ("Wh",), a["dnext_h"])
    with pytest.raises(AssertionError):
        check(dict(Wh=dWh), stale, dict(Wh=STEP_TOL))


def test_gradient_check_perturbs_in_place_and_restores(rng):
    """The notebook idiom relies on this: f sees the perturbed array itself, and x comes back
    bitwise unchanged."""
    x = rng.standard_normal((3, 4))
    saved = x.copy()
    seen = []

    def f(_):
        seen.append(x.copy())
        return np.sum(x ** 3)

    grad = eval_numerical_gradient(f, x, verbose=False)
    assert x.tobytes() == saved.tobytes()
    assert any(not np.array_equal(s, saved) for s in seen)
    assert rel_error(grad, 3 * saved ** 2) <= STEP_TOL
    df = rng.standard_normal((3, 4))
    grad = eval_numerical_gradient_array(lambda _: x ** 2, x, df)
    assert x.tobytes() == saved.tobytes()
    assert rel_error(grad, 2 * saved * df) <= STEP_TOL
