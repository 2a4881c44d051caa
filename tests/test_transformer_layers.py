"""fastrnn.transformer_layers against fastrnn.reference (float32 and float64), numeric gradients
in float64, dtypes, mutation, layouts and argument errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn.reference as ref
import fastrnn.transformer_layers as fast
from _helpers import (NONCONTIGUOUS_KINDS, assert_outputs_close, assert_unchanged, cast_floats,
                      max_rel_error, noncontiguous, snapshot)
from fastrnn.gradient_check import eval_numerical_gradient_array, rel_error

GRAD_TOL = 1e-7


def attention_arrays(rng, N=3, T=5, D=6, heads=2, dk=4, dv=3):
    return dict(x=rng.standard_normal((N, T, D)),
                Wq=rng.standard_normal((D, heads * dk)) / np.sqrt(D),
                bq=rng.standard_normal(heads * dk) * 0.1,
                Wk=rng.standard_normal((D, heads * dk)) / np.sqrt(D),
                bk=rng.standard_normal(heads * dk) * 0.1,
                Wv=rng.standard_normal((D, heads * dv)) / np.sqrt(D),
                bv=rng.standard_normal(heads * dv) * 0.1)


ATTENTION_ARGS = ("x", "Wq", "bq", "Wk", "bk", "Wv", "bv")
ATTENTION_GRADS = ("dx", "dWq", "dbq", "dWk", "dbk", "dWv", "dbv")


def run_attention(module, a, heads, **kw):
    out, cache = module.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), heads, **kw)
    rng = np.random.default_rng(7)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    return (out,) + tuple(module.multi_head_attention_backward(dout, cache))


def layer_runs():
    """name -> (build(rng, big) -> arrays, run(module, arrays) -> outputs, output names)."""
    def ln_build(rng, big):
        shape = (4, 43, 128) if big else (3, 5, 7)
        return dict(x=rng.standard_normal(shape), r=rng.standard_normal(shape),
                    g=1 + 0.1 * rng.standard_normal(shape[-1]), b=rng.standard_normal(shape[-1]),
                    dout=rng.standard_normal(shape))

    def ln_run(module, a):
        out, cache = module.layernorm_forward(a["x"], a["g"], a["b"], residual=a["r"])
        return (out,) + tuple(module.layernorm_backward(a["dout"], cache))

    def affine_build(rng, big):
        N, T, D, M = (4, 43, 128, 300) if big else (3, 5, 7, 6)
        return dict(x=rng.standard_normal((N, T, D)), w=rng.standard_normal((D, M)) / np.sqrt(D),
                    b=rng.standard_normal(M) * 0.3, dout=rng.standard_normal((N, T, M)))

    def affine_run(name):
        def run(module, a):
            out, cache = getattr(module, f"{name}_forward")(a["x"], a["w"], a["b"])
            return (out,) + tuple(getattr(module, f"{name}_backward")(a["dout"], cache))
        return run

    def emb_build(rng, big):
        N, T, V, L, D = (4, 43, 50, 43, 128) if big else (3, 5, 7, 6, 4)
        return dict(x=rng.integers(0, V, (N, T)), W_tok=rng.standard_normal((V, D)),
                    W_pos=rng.standard_normal((L, D)), dout=rng.standard_normal((N, T, D)))

    def emb_run(module, a):
        out, cache = module.positional_embedding_forward(a["x"], a["W_tok"], a["W_pos"])
        return (out,) + tuple(module.positional_embedding_backward(a["dout"], cache))

    def att_build(rng, big):
        if big:
            return attention_arrays(rng, N=4, T=43, D=128, heads=2, dk=96, dv=96)
        return attention_arrays(rng)

    def att_run(num_queries=None, masked=False):
        def run(module, a):
            mask = None
            if masked:
                N, T = a["x"].shape[:2]
                mask = (np.arange(T)[None, :] < np.arange(N)[:, None] % T + 1)
            return run_attention(module, a, 2, key_mask=mask, num_queries=num_queries)
        return run

    def bce_build(rng, big):
        N = 300 if big else 6
        return dict(z=rng.standard_normal((N, 1)) * 5, y=rng.integers(0, 2, N))

    def bce_run(module, a):
        return module.sigmoid_bce_loss(a["z"], a["y"])

    return {
        "layernorm": (ln_build, ln_run, ("out", "dx", "dgamma", "dbeta")),
        "affine_relu": (affine_build, affine_run("affine_relu"), ("out", "dx", "dw", "db")),
        "linear": (affine_build, affine_run("linear"), ("out", "dx", "dw", "db")),
        "embedding": (emb_build, emb_run, ("out", "dW_tok", "dW_pos")),
        "attention": (att_build, att_run(), ("out",) + ATTENTION_GRADS),
        "attention_pruned": (att_build, att_run(num_queries=1), ("out",) + ATTENTION_GRADS),
        "attention_masked": (att_build, att_run(num_queries=2, masked=True),
                             ("out",) + ATTENTION_GRADS),
        "bce": (bce_build, bce_run, ("loss", "dx")),
    }


RUNS = layer_runs()


@pytest.mark.parametrize("big", [False, True], ids=["small", "packed"])
@pytest.mark.parametrize("name", sorted(RUNS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_reference(name, dtype, big, rng):
    build, run, names = RUNS[name]
    arrays = build(rng, big)
    typed = cast_floats(arrays, dtype)
    before = snapshot(typed)
    actual = run(fast, typed)
    assert_unchanged(before, f"{name} inputs")
    expected = run(ref, typed)
    truth = run(ref, cast_floats(typed, np.float64)) if dtype == np.float32 else None
    for a in actual:
        assert np.asarray(a).dtype == dtype
    if "dbk" in names:  # zero up to rounding (the softmax cancels a key bias): absolute check
        at = names.index("dbk")
        scale = np.max(np.abs(expected[names.index("dWk")]))
        assert np.max(np.abs(actual[at])) <= 100 * np.finfo(dtype).eps * scale
        names = names[:at] + names[at + 1:]
        actual, expected = actual[:at] + actual[at + 1:], expected[:at] + expected[at + 1:]
        truth = truth[:at] + truth[at + 1:] if truth is not None else None
    # The reference sums in another order (per head, NumPy's BLAS): 1e-12 of the largest entry.
    assert_outputs_close(actual, expected, names, dtype, truth=truth, f64_bound=1e-12)


def test_transposed_weights_used_as_they_are(rng):
    """A (D, M) weight that is the transposed view of an (M, D) array (PyTorch layout): same
    results, and the weight gradient comes back as the transposed view of an (M, D) array."""
    for big in (False, True):
        a = RUNS["affine_relu"][0](rng, big)
        wt = np.ascontiguousarray(a["w"].T)
        out, cache = fast.affine_relu_forward(a["x"], wt.T, a["b"])
        assert cache.w.base is wt or cache.w is wt.T or np.shares_memory(cache.w, wt)
        dx, dw, db = fast.affine_relu_backward(a["dout"], cache)
        out2, cache2 = fast.affine_relu_forward(a["x"], a["w"], a["b"])
        dx2, dw2, db2 = fast.affine_relu_backward(a["dout"], cache2)
        for got, want in ((out, out2), (dx, dx2), (dw, dw2), (db, db2)):
            assert rel_error(got, want) < 1e-12
        assert dw.T.flags.c_contiguous


@pytest.mark.parametrize("name", sorted(RUNS))
def test_numeric_gradients(name, rng):
    """Every gradient of every layer against centred differences, float64, rel error <= 1e-7."""
    build, run, names = RUNS[name]
    a = build(rng, False)
    if name == "bce":
        loss, dz = fast.sigmoid_bce_loss(a["z"], a["y"])
        num = eval_numerical_gradient_array(lambda z: fast.sigmoid_bce_loss(z, a["y"])[0],
                                            a["z"], np.ones(()))
        assert rel_error(num, dz) < GRAD_TOL
        return
    grads = dict(zip(names[1:], run(fast, a)[1:]))
    dout = a.get("dout")

    def forward_out(arrays):
        return run(fast, arrays)[0]

    if name.startswith("attention"):
        dout = np.random.default_rng(7).standard_normal(run(fast, a)[0].shape)
        wrt = dict(zip(ATTENTION_GRADS, ATTENTION_ARGS))
    elif name == "layernorm":
        wrt = {"dx": "x", "dgamma": "g", "dbeta": "b"}
    elif name == "embedding":
        wrt = {"dW_tok": "W_tok", "dW_pos": "W_pos"}
    else:
        wrt = {"dx": "x", "dw": "w", "db": "b"}
    for grad_name, arg in wrt.items():
        num = eval_numerical_gradient_array(lambda _: forward_out(a), a[arg], dout)
        if grad_name == "dbk":   # zero in exact arithmetic: the softmax cancels a key bias
            assert np.max(np.abs(grads[grad_name])) < 1e-12
            assert np.max(np.abs(num)) < 1e-9
            continue
        err = rel_error(num, grads[grad_name])
        assert err < GRAD_TOL, (name, grad_name, err)
    if name == "layernorm":  # the residual's gradient is x's
        num = eval_numerical_gradient_array(lambda _: forward_out(a), a["r"], dout)
        assert rel_error(num, grads["dx"]) < GRAD_TOL


def test_attention_mask_ignores_masked_keys(rng):
    a = attention_arrays(rng, N=2, T=6)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)
    out, _ = fast.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), 2, key_mask=mask)
    changed = {k: v.copy() for k, v in a.items()}
    changed["x"][0, 3:] = 100.0   # masked keys/values of sample 0; its queries 3.. change too
    out2, _ = fast.multi_head_attention_forward(*(changed[k] for k in ATTENTION_ARGS), 2,
                                                key_mask=mask)
    np.testing.assert_array_equal(out[0, :3], out2[0, :3])
    np.testing.assert_array_equal(out[1], out2[1])
    assert np.max(np.abs(out[0, :3] - out2[0, :3])) == 0
    # ... while without the mask they change
    out3, _ = fast.multi_head_attention_forward(*(changed[k] for k in ATTENTION_ARGS), 2)
    assert np.max(np.abs(out3[0, :3] - out[0, :3])) > 1e-3


def test_attention_pruned_rows_equal_full_rows(rng):
    a = attention_arrays(rng, N=3, T=7)
    full = run_attention(fast, a, 2)[0]
    pruned = run_attention(fast, a, 2, num_queries=2)[0]
    assert rel_error(full[:, :2], pruned) < 1e-14


def test_one_head_and_many_heads(rng):
    for heads in (1, 3):
        a = attention_arrays(rng, heads=heads, dk=2, dv=5)
        got, want = run_attention(fast, a, heads), run_attention(ref, a, heads)
        for name, g, w in zip(("out",) + ATTENTION_GRADS, got, want):
            if name == "dbk":  # zero up to rounding
                assert np.max(np.abs(g)) < 1e-13
            else:
                assert rel_error(g, w) < 1e-12, name


def test_bce_is_stable_at_saturation():
    z = np.array([[-1e4], [1e4], [0.0], [800.0]], dtype=np.float32)
    y = np.array([1, 0, 1, 1])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
        loss, dz = fast.sigmoid_bce_loss(z, y)
    assert loss.dtype == np.float32 and np.isfinite(loss)
    # log(1 + e^1e4) = 1e4 each for the two wrong saturated logits, log 2 for 0, ~0 for 800
    assert abs(float(loss) - (2e4 + np.log(2)) / 4) < 1e-2
    np.testing.assert_allclose(dz[:, 0], [-0.25, 0.25, -0.125, 0.0], atol=1e-7)


def test_errors_name_the_argument(rng):
    a = attention_arrays(rng)
    with pytest.raises(ValueError, match="x must hold indices in \\[0, 7\\)"):
        fast.positional_embedding_forward(np.array([[0, 7]]), np.zeros((7, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x must hold indices"):
        fast.positional_embedding_forward(np.array([[-1, 0]]), np.zeros((7, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="max_length"):
        fast.positional_embedding_forward(np.zeros((1, 5), int), np.zeros((7, 3)), np.zeros((4, 3)))
    with pytest.raises(TypeError, match="x must hold integer"):
        fast.positional_embedding_forward(np.zeros((1, 2), bool), np.zeros((7, 3)),
                                          np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x must hold whole-number indices"):
        fast.positional_embedding_forward(np.full((1, 2), 0.5), np.zeros((7, 3)),
                                          np.zeros((4, 3)))
    whole, _ = fast.positional_embedding_forward(np.ones((1, 2)), np.eye(7, 3), np.zeros((4, 3)))
    np.testing.assert_array_equal(whole[0, :, 1], 1)   # whole-number floats index, as elsewhere
    with pytest.raises(ValueError, match="W_pos must have shape"):
        fast.positional_embedding_forward(np.zeros((1, 2), int), np.zeros((7, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="Wk must have shape"):
        fast.multi_head_attention_forward(a["x"], a["Wq"], a["bq"], a["Wk"][:, :-1], a["bk"],
                                          a["Wv"], a["bv"], 2)
    with pytest.raises(ValueError, match="key_mask must have shape"):
        fast.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), 2,
                                          key_mask=np.ones((1, 1), bool))
    with pytest.raises(ValueError, match="num_queries"):
        fast.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), 2, num_queries=9)
    with pytest.raises(ValueError, match="split into 3 heads"):
        fast.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), 3)
    with pytest.raises(ValueError, match="gamma must have shape"):
        fast.layernorm_forward(a["x"], np.ones(2), np.zeros(6))
    with pytest.raises(ValueError, match="residual must have shape"):
        fast.layernorm_forward(a["x"], np.ones(6), np.zeros(6), residual=a["x"][:1])
    with pytest.raises(ValueError, match="w must have shape"):
        fast.affine_relu_forward(a["x"], np.ones((5, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="y must hold labels"):
        fast.sigmoid_bce_loss(np.zeros(2), np.array([0, 2]))
    with pytest.raises(ValueError, match="y must have shape"):
        fast.sigmoid_bce_loss(np.zeros(2), np.array([0, 1, 1]))
    _, cache = fast.linear_forward(a["x"], np.ones((6, 2)), np.zeros(2))
    with pytest.raises(TypeError, match="affine_relu_backward needs the cache"):
        fast.affine_relu_backward(np.ones((3, 5, 2)), cache)
    with pytest.raises(TypeError, match="layernorm_backward needs the cache"):
        fast.layernorm_backward(np.ones((3, 5, 2)), cache)


@pytest.mark.parametrize("num_queries", [None, 1])
def test_attention_with_no_valid_key_gives_zeros(num_queries, rng):
    """A sample whose keys are all masked: zero output and zero gradients, in both paths (the
    few-query path would otherwise return the value bias)."""
    a = attention_arrays(rng, N=2, T=4)
    mask = np.array([[False] * 4, [True] * 4])
    out, cache = fast.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), 2,
                                                   key_mask=mask, num_queries=num_queries)
    np.testing.assert_array_equal(out[0], 0)
    assert np.max(np.abs(out[1])) > 0
    grads = fast.multi_head_attention_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(grads[0][0], 0)
    assert all(np.all(np.isfinite(g)) for g in grads)
    expected, _ = ref.multi_head_attention_forward(*(a[k] for k in ATTENTION_ARGS), 2,
                                                   key_mask=mask[1:].repeat(2, axis=0),
                                                   num_queries=num_queries)
    assert rel_error(out[1], expected[1]) < 1e-12


@pytest.mark.parametrize("kind", NONCONTIGUOUS_KINDS)
@pytest.mark.parametrize("name", sorted(RUNS))
def test_any_memory_layout(name, kind, rng):
    """Sliced, Fortran-order, reversed and read-only inputs give the C-contiguous results."""
    build, run, names = RUNS[name]
    arrays = build(rng, False)
    expected = run(fast, arrays)
    laid_out = {k: noncontiguous(v, kind) for k, v in arrays.items()}
    actual = run(fast, laid_out)
    for label, a, e in zip(names, actual, expected):
        assert np.asarray(a).dtype == np.asarray(e).dtype
        if label == "dbk":
            continue
        assert rel_error(a, e) < 1e-13, (label, kind)


PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(N=st.integers(1, 4), T=st.integers(1, 9), D=st.integers(1, 7), heads=st.integers(1, 3),
       dk=st.integers(1, 5), dv=st.integers(1, 5), queries=st.integers(0, 9),
       masked=st.booleans(), seed=st.integers(0, 2**16))
def test_attention_property(N, T, D, heads, dk, dv, queries, masked, seed):
    """Any sizes, head counts, query counts and masks: fastrnn equals the reference (float64)."""
    rng = np.random.default_rng(seed)
    a = attention_arrays(rng, N=N, T=T, D=D, heads=heads, dk=dk, dv=dv)
    num_queries = None if queries == 0 or queries > T else queries
    mask = None
    if masked:
        mask = rng.random((N, T)) < 0.7
        mask[:, 0] = True   # every query has a key (the reference's softmax of all -inf is NaN)
    got = run_attention(fast, a, heads, key_mask=mask, num_queries=num_queries)
    want = run_attention(ref, a, heads, key_mask=mask, num_queries=num_queries)
    for name, g, w in zip(("out",) + ATTENTION_GRADS, got, want):
        if name == "dbk":
            assert np.max(np.abs(g), initial=0) < 1e-12
        else:
            assert max_rel_error(g, w) < 1e-11, name


@PROPERTY
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       residual=st.booleans(), seed=st.integers(0, 2**16))
def test_layernorm_property(shape, residual, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 1
    g, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    r = rng.standard_normal(shape) if residual else None
    dout = rng.standard_normal(shape)
    out, cache = fast.layernorm_forward(x, g, b, residual=r)
    out_ref, cache_ref = ref.layernorm_forward(x, g, b, residual=r)
    assert max_rel_error(out, out_ref) < 1e-12
    for got, want in zip(fast.layernorm_backward(dout, cache),
                         ref.layernorm_backward(dout, cache_ref)):
        scale = max(np.max(np.abs(want)), 1.0)
        assert np.max(np.abs(got - want)) <= 1e-12 * scale
