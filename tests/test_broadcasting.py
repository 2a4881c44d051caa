"""What the classic layers accept, fastrnn accepts: the inputs of students' own models.

The classic layers are NumPy expressions, so a student's ``sample()`` loop may pass a scalar or
1-D word index, a (D,) word vector against an (N, H) state, a (1, H) bias, or float indices
holding whole numbers (``np.ones((N, 1)) * start``).  These property tests draw such odd but
valid inputs and require fastrnn's values and shapes to equal ``fastrnn.reference`` (the
classic code).  Backward: the classic backward of a broadcast input is the backward of the
broadcast array (dx of a (D,) x against N states is (N, D)), which the reference computes on
the explicitly broadcast inputs; where the reference runs on the raw inputs too, its shapes and
values must be the same.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn.reference as reference
from _helpers import load_fast, max_rel_error

FAST = load_fast("fastrnn.rnn_layers")
FAST_LAYERS = load_fast("fastrnn.layers")
BOUNDED = settings(max_examples=40, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])
BOUND = 1e-12  # float64 throughout: the same arithmetic up to reassociation

dims = st.integers(min_value=1, max_value=5)
seeds = st.integers(min_value=0, max_value=2 ** 32 - 1)


def assert_same(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = max_rel_error(actual, expected)
    assert err <= BOUND, f"{what}: rel error {err:.3g}"


def reference_or_none(function, *args):
    """The reference's result on the raw inputs, or None where the classic code fails on them."""
    try:
        return function(*args)
    except (ValueError, IndexError):
        return None


def batch_variant(rng, draw_kind, N, size):
    """An input with batch axes (N,), (1,) or () and last axis ``size``."""
    shape = {"full": (N, size), "one": (1, size), "flat": (size,)}[draw_kind]
    return rng.standard_normal(shape)


def bias_variant(rng, kind, G):
    return rng.standard_normal({"row": (G,), "2d": (1, G)}[kind])


kinds = st.sampled_from(["full", "one", "flat"])
bias_kinds = st.sampled_from(["row", "2d"])


@BOUNDED
@given(N=dims, D=dims, H=dims, x_kind=kinds, h_kind=kinds, c_kind=kinds, b_kind=bias_kinds,
       lstm=st.booleans(), seed=seeds)
def test_step_functions_broadcast_like_numpy(N, D, H, x_kind, h_kind, c_kind, b_kind, lstm,
                                             seed):
    rng = np.random.default_rng(seed)
    G = 4 * H if lstm else H
    x = batch_variant(rng, x_kind, N, D)
    prev_h = batch_variant(rng, h_kind, N, H)
    prev_c = batch_variant(rng, c_kind, N, H)
    Wx, Wh = rng.standard_normal((D, G)), rng.standard_normal((H, G)) / np.sqrt(H)
    b = bias_variant(rng, b_kind, G)
    # The batch axes NumPy gives x.dot(Wx) + prev_h.dot(Wh) + b (and f * prev_c).
    states = (prev_h, prev_c) if lstm else (prev_h,)
    batch = np.broadcast_shapes(x.shape[:-1], *(s.shape[:-1] for s in states), b.shape[:-1])
    n = batch[0] if batch else 1

    def expand(a):
        return np.broadcast_to(a, batch + a.shape[-1:]).reshape(n, -1).copy()

    if lstm:
        next_h, next_c, cache = FAST.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
        ref_h, ref_c, ref_cache = reference.lstm_step_forward(
            expand(x), expand(prev_h), expand(prev_c), Wx, Wh, b)
        outputs, expected = (next_h, next_c), (ref_h, ref_c)
    else:
        next_h, cache = FAST.rnn_step_forward(x, prev_h, Wx, Wh, b)
        ref_h, ref_cache = reference.rnn_step_forward(expand(x), expand(prev_h), Wx, Wh, b)
        outputs, expected = (next_h,), (ref_h,)
    for name, out, ref in zip(("next_h", "next_c"), outputs, expected):
        assert_same(out, ref.reshape(batch + (H,)), name)
    raw = reference_or_none(reference.lstm_step_forward if lstm else reference.rnn_step_forward,
                            *((x, prev_h, prev_c, Wx, Wh, b) if lstm else (x, prev_h, Wx, Wh, b)))
    if raw is not None:  # the classic code itself runs on these inputs: same shapes, values
        for name, out, ref in zip(("next_h", "next_c"), outputs, raw[:-1]):
            assert_same(out, ref, f"{name} vs the classic code on the raw inputs")

    dnext_h, dnext_c = rng.standard_normal(batch + (H,)), rng.standard_normal(batch + (H,))
    if lstm:
        grads = FAST.lstm_step_backward(dnext_h, dnext_c, cache)
        ref_grads = reference.lstm_step_backward(dnext_h.reshape(n, H), dnext_c.reshape(n, H),
                                                 ref_cache)
        names = ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")
    else:
        grads = FAST.rnn_step_backward(dnext_h, cache)
        ref_grads = reference.rnn_step_backward(dnext_h.reshape(n, H), ref_cache)
        names = ("dx", "dprev_h", "dWx", "dWh", "db")
    for name, grad, ref in zip(names, grads, ref_grads):
        if name in ("dx", "dprev_h", "dprev_c"):
            ref = ref.reshape(batch + ref.shape[-1:])
        assert_same(grad, ref, name)


@BOUNDED
@given(N=dims, T=st.integers(1, 6), D=dims, H=dims, h_kind=kinds, b_kind=bias_kinds,
       lstm=st.booleans(), seed=seeds)
def test_sequences_take_a_shared_h0_and_a_row_bias(N, T, D, H, h_kind, b_kind, lstm, seed):
    rng = np.random.default_rng(seed)
    G = 4 * H if lstm else H
    x = rng.standard_normal((N, T, D))
    h0 = batch_variant(rng, h_kind, N, H)
    Wx, Wh = rng.standard_normal((D, G)), 0.5 * rng.standard_normal((H, G)) / np.sqrt(H)
    b = bias_variant(rng, b_kind, G)
    forward = FAST.lstm_forward if lstm else FAST.rnn_forward
    backward = FAST.lstm_backward if lstm else FAST.rnn_backward
    h, cache = forward(x, h0, Wx, Wh, b)
    ref_forward = reference.lstm_forward if lstm else reference.rnn_forward
    ref_backward = reference.lstm_backward if lstm else reference.rnn_backward
    ref_h, ref_cache = ref_forward(x, np.broadcast_to(h0, (N, H)).copy(), Wx, Wh, b)
    assert_same(h, ref_h, "h")
    dh = rng.standard_normal((N, T, H))
    for name, grad, ref in zip(("dx", "dh0", "dWx", "dWh", "db"), backward(dh, cache),
                               ref_backward(dh, ref_cache)):
        assert_same(grad, ref, name)


INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint64", ">i8", "<i4",
                "float32", "float64"]


@BOUNDED
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
       V=st.integers(1, 9), D=dims, dtype=st.sampled_from(INDEX_DTYPES),
       strided=st.booleans(), seed=seeds)
def test_word_indices_of_any_shape_and_numeric_dtype(shape, V, D, dtype, strided, seed):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, V, shape)
    x = indices.astype(dtype)
    if strided and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]  # same values, non-contiguous
    W = rng.standard_normal((V, D))
    out, cache = FAST.word_embedding_forward(x, W)
    ref_out, ref_cache = reference.word_embedding_forward(indices, W)
    assert_same(out, ref_out, "out")
    assert out.shape == x.shape + (D,)
    dout = rng.standard_normal(x.shape + (D,))
    assert_same(FAST.word_embedding_backward(dout, cache),
                reference.word_embedding_backward(dout, ref_cache), "dW")
    np.testing.assert_array_equal(x, indices.astype(dtype))  # input untouched


def test_scalar_word_index_as_in_a_sample_loop():
    """``word_embedding_forward(self._start, W)``: a Python int gives one (D,) vector."""
    W = np.arange(12.0).reshape(4, 3)
    out, cache = FAST.word_embedding_forward(2, W)
    np.testing.assert_array_equal(out, W[2])
    dW = FAST.word_embedding_backward(np.ones(3), cache)
    np.testing.assert_array_equal(dW, np.outer([0, 0, 1, 0], np.ones(3)))


@BOUNDED
@given(N=dims, T=dims, D=dims, M=dims, b_shape=st.sampled_from(["row", "2d", "3d", "one"]),
       temporal=st.booleans(), seed=seeds)
def test_affine_biases_broadcast(N, T, D, M, b_shape, temporal, seed):
    rng = np.random.default_rng(seed)
    if not temporal and b_shape == "3d":
        b_shape = "2d"  # (1, 1, M) would make the classic affine output 3-D: refused
    b = rng.standard_normal({"row": (M,), "2d": (1, M), "3d": (1, 1, M), "one": (1,)}[b_shape])
    if temporal:
        x = rng.standard_normal((N, T, D))
        forward, backward = FAST.temporal_affine_forward, FAST.temporal_affine_backward
        ref_forward, ref_backward = reference.temporal_affine_forward, \
            reference.temporal_affine_backward
        dout = rng.standard_normal((N, T, M))
    else:
        x = rng.standard_normal((N, D))
        forward, backward = FAST_LAYERS.affine_forward, FAST_LAYERS.affine_backward
        ref_forward, ref_backward = reference.affine_forward, reference.affine_backward
        dout = rng.standard_normal((N, M))
    w = rng.standard_normal((D, M))
    out, cache = forward(x, w, b)
    ref_out, _ = ref_forward(x, w, b)
    assert_same(out, ref_out, "out")
    full_b = np.broadcast_to(b.reshape(-1), (M,)).copy()
    _, ref_cache = ref_forward(x, w, full_b)
    for name, grad, ref in zip(("dx", "dw", "db"), backward(dout, cache),
                               ref_backward(dout, ref_cache)):
        assert_same(grad, ref, name)


@BOUNDED
@given(N=dims, T=dims, V=st.integers(1, 7),
       mask_kind=st.sampled_from(["bool", "int", "float01", "weights"]),
       y_float=st.booleans(), seed=seeds)
def test_softmax_loss_mask_multiplies_as_in_the_classic_code(N, T, V, mask_kind, y_float, seed):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal((N, T, V))
    y = rng.integers(0, V, (N, T))
    mask = {"bool": rng.random((N, T)) < 0.7, "int": rng.integers(0, 2, (N, T)),
            "float01": (rng.random((N, T)) < 0.7).astype(float),
            "weights": rng.random((N, T))}[mask_kind]
    loss, dx = FAST.temporal_softmax_loss(x, y.astype(float) if y_float else y, mask)
    ref_loss, ref_dx = reference.temporal_softmax_loss(x, y, mask)
    assert_same(loss, ref_loss, "loss")
    assert_same(dx, ref_dx, "dx")


def test_half_mask_halves_the_loss():
    x = np.zeros((1, 2, 3))
    y = np.zeros((1, 2), int)
    full, _ = FAST.temporal_softmax_loss(x, y, np.ones((1, 2), bool))
    half, _ = FAST.temporal_softmax_loss(x, y, np.full((1, 2), 0.5))
    assert half == pytest.approx(full / 2, rel=1e-15)
    assert full == pytest.approx(2 * np.log(3), rel=1e-15)


def test_nan_mask_gives_nan_like_the_classic_code():
    x = np.zeros((1, 2, 3))
    y = np.zeros((1, 2), int)
    mask = np.array([[1.0, np.nan]])
    loss, dx = FAST.temporal_softmax_loss(x, y, mask)
    ref_loss, ref_dx = reference.temporal_softmax_loss(x, y, mask)
    assert np.isnan(loss) and np.isnan(ref_loss)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(ref_dx))


@pytest.mark.parametrize("mask", [np.full((1, 2), "False"), np.full((1, 2), 1 + 1j),
                                  np.array([[None, None]], dtype=object)],
                         ids=["str", "complex", "object"])
def test_non_numeric_mask_is_refused(mask):
    with pytest.raises(TypeError, match="mask"):
        FAST.temporal_softmax_loss(np.zeros((1, 2, 3)), np.zeros((1, 2), int), mask)


@pytest.mark.parametrize("name", ["x", "prev_h", "Wx", "Wh", "b"])
@pytest.mark.parametrize("bad", ["complex", "str", "object"])
def test_non_numeric_inputs_name_the_argument(name, bad):
    rng = np.random.default_rng(0)
    args = dict(x=rng.standard_normal((2, 3)), prev_h=rng.standard_normal((2, 4)),
                Wx=rng.standard_normal((3, 4)), Wh=rng.standard_normal((4, 4)),
                b=rng.standard_normal(4))
    args[name] = {"complex": args[name] + 1j, "str": args[name].astype(str),
                  "object": args[name].astype(object)}[bad]
    with pytest.raises(TypeError, match=rf"^{name} "):
        FAST.rnn_step_forward(**args)


def _student_sample(layers, params, features, start, variant, max_length=6, cell="lstm"):
    """Greedy sampling as students wrote it in their own ``CaptioningRNN.sample``: three styles
    of first input (a scalar <START>, a float index column, a 1-D index vector) and a (1, H)
    bias, on whichever layer module is passed in."""
    N = features.shape[0]
    captions = np.zeros((N, max_length), dtype=np.int32)
    h, _ = layers.affine_forward(features, params["W_proj"], params["b_proj"])
    c = np.zeros_like(h)
    b = params["b"][None, :]
    if variant == "scalar":
        word = start
    elif variant == "float_column":
        word = np.ones((N, 1)) * start
    else:
        word = np.full(N, start)
    for t in range(max_length):
        x, _ = layers.word_embedding_forward(word, params["W_embed"])
        if x.ndim == 3:
            x = x[:, 0, :]
        if cell == "lstm":
            h, c, _ = layers.lstm_step_forward(x, h, c, params["Wx"], params["Wh"], b)
        else:
            h, _ = layers.rnn_step_forward(x, h, params["Wx"], params["Wh"], b)
        scores, _ = layers.affine_forward(h, params["W_vocab"], params["b_vocab"])
        word = np.argmax(scores, axis=1)
        captions[:, t] = word
    return captions, h


@pytest.mark.parametrize("variant", ["scalar", "float_column", "vector"])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_students_sample_loops_run_unchanged(variant, cell):
    rng = np.random.default_rng(3)
    V, W, H, D, N = 12, 5, 7, 6, 4
    G = 4 * H if cell == "lstm" else H
    params = dict(W_embed=rng.standard_normal((V, W)), W_proj=rng.standard_normal((D, H)),
                  b_proj=np.zeros(H), Wx=rng.standard_normal((W, G)),
                  Wh=rng.standard_normal((H, G)) / 3, b=rng.standard_normal(G),
                  W_vocab=rng.standard_normal((H, V)), b_vocab=rng.standard_normal(V))
    features = rng.standard_normal((N, D))
    ours, h = _student_sample(FAST, params, features, 1, variant, cell=cell)
    # The classic code on the same loop (its embedding takes integer indices only).
    classic = reference if variant != "float_column" else _IntIndexReference()
    theirs, ref_h = _student_sample(classic, params, features, 1, variant, cell=cell)
    np.testing.assert_array_equal(ours, theirs)
    assert_same(h, ref_h, "last h")


class _IntIndexReference:
    """The reference with the cast a student's float indices needed on the classic code."""

    def __getattr__(self, name):
        return getattr(reference, name)

    @staticmethod
    def word_embedding_forward(x, W):
        return reference.word_embedding_forward(np.asarray(x).astype(int), W)
