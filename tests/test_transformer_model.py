"""ClassificationTransformer: whole-model numeric gradients (float64), fastrnn layers vs the
reference layers, pruned vs full computation, parameters, state dicts and input errors."""
import numpy as np
import pytest

import fastrnn.reference
from _helpers import assert_unchanged, snapshot
from fastrnn.classifiers.transformer import ClassificationTransformer
from fastrnn.gradient_check import eval_numerical_gradient, rel_error

VOCAB = {f"w{i}": i for i in range(6)}
SMALL = dict(hidden_dim=6, num_heads=2, dim_feedforward=7, dim_k=3, dim_v=2, dim_q=3,
             max_length=5)


def small_model(dtype=np.float64, **kw):
    return ClassificationTransformer(VOCAB, **{**SMALL, "seed": 3, **kw}, dtype=dtype)


def batch(rng, N=3, T=4):
    inputs = rng.integers(1, len(VOCAB), (N, T))
    inputs[:, -1] = 0   # a padding token at the end
    return inputs, np.arange(N) % 2


def full_logits(model, inputs):
    """The unpruned computation, every position through every layer."""
    embeds = model.embed(inputs)
    key_mask = None if model.pad_index is None else inputs != model.pad_index
    h1, _ = model._attention_block(embeds, key_mask, None)
    h2, _ = model._feedforward_block(h1)
    return model._final_block(h2)[0]


@pytest.mark.parametrize("pad_index", [None, 0])
def test_whole_model_numeric_gradients(pad_index, rng):
    """Every parameter's gradient against centred differences (Richardson-extrapolated over two
    step sizes: round-off of plain h=1e-5 differences is ~1e-11 absolute, which is 1e-7 relative
    for the smallest entries).  The key biases have zero gradient in exact arithmetic."""
    model = small_model(pad_index=pad_index)
    inputs, labels = batch(rng)
    _, grads = model.loss(inputs, labels)
    f = lambda _: model.loss(inputs, labels)[0]  # noqa: E731 (the notebooks' idiom)
    for name, value in model.params.items():
        coarse = eval_numerical_gradient(f, value, verbose=False, h=1e-3)
        fine = eval_numerical_gradient(f, value, verbose=False, h=5e-4)
        numeric = (4 * fine - coarse) / 3
        if name.startswith("k") and name.endswith(".bias"):
            assert np.max(np.abs(grads[name])) < 1e-15 and np.max(np.abs(numeric)) < 1e-11
            continue
        assert rel_error(numeric, grads[name]) < 1e-7, name


@pytest.mark.parametrize("pad_index", [None, 0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_layers_match_reference_layers(dtype, pad_index, rng):
    inputs, labels = batch(rng, N=5, T=5)
    fast = ClassificationTransformer(VOCAB, hidden_dim=16, dim_feedforward=40, dim_k=8, dim_v=8,
                                     dim_q=8, max_length=5, dtype=dtype, pad_index=pad_index)
    slow = ClassificationTransformer(VOCAB, hidden_dim=16, dim_feedforward=40, dim_k=8, dim_v=8,
                                     dim_q=8, max_length=5, dtype=dtype, pad_index=pad_index,
                                     layers=fastrnn.reference)
    loss, grads = fast.loss(inputs, labels)
    loss_ref, grads_ref = slow.loss(inputs, labels)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert type(loss) is np.dtype(dtype).type and abs(loss - loss_ref) <= tol * abs(loss_ref)
    assert list(grads) == list(fast.params)
    for name in grads:
        assert grads[name].dtype == dtype and grads[name].shape == fast.params[name].shape
        if name.startswith("k") and name.endswith(".bias"):
            continue
        scale = np.max(np.abs(grads_ref[name]))
        assert np.max(np.abs(grads[name] - grads_ref[name])) <= tol * 10 * scale, name


@pytest.mark.parametrize("pad_index", [None, 0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pruned_equals_full(dtype, pad_index, rng):
    model = ClassificationTransformer(VOCAB, hidden_dim=16, dim_feedforward=40, dim_k=8,
                                      dim_v=8, dim_q=8, max_length=6, dtype=dtype,
                                      pad_index=pad_index)
    inputs, labels = batch(rng, N=4, T=6)
    pruned = model.forward(inputs)
    full = fastrnn.reference.sigmoid(full_logits(model, inputs))
    assert pruned.shape == (4, 1) and pruned.dtype == dtype
    tol = 1e-14 if dtype == np.float64 else 1e-6
    assert np.max(np.abs(pruned - full)) <= tol
    np.testing.assert_array_equal(model.loss(inputs), pruned)
    full_course = model.final_layer(model.feedforward_layer(model.multi_head_attention(
        model.embed(inputs))))
    if pad_index is None:   # the course's methods take no mask
        assert np.max(np.abs(full_course - pruned)) <= tol


def test_padding_mask_isolates_padding(rng):
    """With pad_index, padding appended to a sentence changes nothing; without, it does."""
    words = rng.integers(1, len(VOCAB), (2, 3))
    padded = np.concatenate([words, np.zeros((2, 2), int)], axis=1)
    masked, plain = small_model(pad_index=0), small_model()
    assert np.max(np.abs(masked.forward(padded) - masked.forward(words))) < 1e-15
    assert np.max(np.abs(plain.forward(padded) - plain.forward(words))) > 1e-6
    loss_words, grads_words = masked.loss(words, [0, 1])
    loss_padded, grads_padded = masked.loss(padded, [0, 1])
    assert abs(loss_words - loss_padded) < 1e-15
    # the pad token's embedding and the padded positions get no gradient
    np.testing.assert_array_equal(grads_padded["token_embeddings.weight"][0], 0)
    np.testing.assert_array_equal(grads_padded["position_embeddings.weight"][3:], 0)
    assert rel_error(grads_padded["W1.weight"], grads_words["W1.weight"]) < 1e-12


def test_course_method_shapes_and_dtypes(rng):
    model = ClassificationTransformer(VOCAB, hidden_dim=8, num_heads=3, dim_feedforward=12,
                                      dim_k=4, dim_v=5, dim_q=4, max_length=7)
    inputs, labels = batch(rng, N=3, T=7)
    embeds = model.embed(inputs)
    assert embeds.shape == (3, 7, 8) and embeds.dtype == np.float32
    attended = model.multi_head_attention(embeds)
    assert attended.shape == (3, 7, 8) and attended.dtype == np.float32
    ff = model.feedforward_layer(attended)
    assert ff.shape == (3, 7, 8) and ff.dtype == np.float32
    probs = model.final_layer(ff)
    assert probs.shape == (3, 1) and probs.dtype == np.float32 and np.all((probs > 0) & (probs < 1))
    loss, grads = model.loss(inputs, labels)
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    # layer norm outputs: zero mean, unit variance per position (gain 1, bias 0 at init)
    np.testing.assert_allclose(attended.mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(attended.var(axis=-1), 1, atol=1e-3)


def test_parameter_names_shapes_and_init():
    model = ClassificationTransformer({f"w{i}": i for i in range(500)})
    names = list(model.params)
    assert names[:8] == ["token_embeddings.weight", "position_embeddings.weight", "k1.weight",
                         "k1.bias", "v1.weight", "v1.bias", "q1.weight", "q1.bias"]
    assert names[8:14] == ["k2.weight", "k2.bias", "v2.weight", "v2.bias", "q2.weight",
                           "q2.bias"]
    assert names[14:] == ["attention_head_projection.weight", "attention_head_projection.bias",
                          "norm_mh.weight", "norm_mh.bias", "W1.weight", "W1.bias", "W2.weight",
                          "W2.bias", "norm_ffn.weight", "norm_ffn.bias", "final_dense.weight",
                          "final_dense.bias"]
    p = model.params
    assert p["token_embeddings.weight"].shape == (500, 128)
    assert p["position_embeddings.weight"].shape == (43, 128)
    assert p["k1.weight"].shape == (96, 128) and p["attention_head_projection.weight"].shape == \
        (128, 192)
    assert p["W1.weight"].shape == (2048, 128) and p["W2.weight"].shape == (128, 2048)
    assert p["final_dense.weight"].shape == (1, 128) and p["final_dense.bias"].shape == (1,)
    assert all(v.dtype == np.float32 for v in p.values())
    # PyTorch's default distributions
    emb = p["token_embeddings.weight"]
    assert abs(emb.mean()) < 0.01 and abs(emb.std() - 1) < 0.01
    for name, fan_in in (("W1", 128), ("W2", 2048), ("attention_head_projection", 192)):
        bound = 1 / np.sqrt(fan_in)
        for part in ("weight", "bias"):
            values = p[f"{name}.{part}"]
            assert values.max() <= bound and values.min() >= -bound
            assert values.max() > 0.9 * bound and values.min() < -0.9 * bound
        assert abs(p[f"{name}.weight"].std() - bound / np.sqrt(3)) < 0.05 * bound
    np.testing.assert_array_equal(p["norm_mh.weight"], 1)
    np.testing.assert_array_equal(p["norm_ffn.bias"], 0)
    # seeded
    again = ClassificationTransformer({f"w{i}": i for i in range(500)})
    np.testing.assert_array_equal(again.params["W2.weight"], p["W2.weight"])
    other = ClassificationTransformer({f"w{i}": i for i in range(500)}, seed=1)
    assert np.max(np.abs(other.params["W2.weight"] - p["W2.weight"])) > 0


class ArrayLike:
    """Something with __array__ only (like a tensor from another library)."""

    def __init__(self, values):
        self.values = values

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


class NumpyMethod:
    """Something with .numpy() (like a PyTorch tensor)."""

    def __init__(self, values):
        self.values = values

    def numpy(self):
        return self.values


def test_state_dict_round_trip_and_foreign_arrays(rng):
    source = small_model(seed=1)
    target = small_model()
    inputs, _ = batch(rng)
    assert np.max(np.abs(source.forward(inputs) - target.forward(inputs))) > 0
    state = source.state_dict()
    target.load_state_dict({k: (ArrayLike(v) if i % 2 else NumpyMethod(v))
                            for i, (k, v) in enumerate(state.items())})
    np.testing.assert_array_equal(source.forward(inputs), target.forward(inputs))
    state["W1.weight"][:] = 0   # state_dict() and load_state_dict() copy
    assert np.max(np.abs(source.params["W1.weight"])) > 0
    assert np.max(np.abs(target.params["W1.weight"])) > 0
    with pytest.raises(KeyError, match="missing keys \\['final_dense.bias'\\]"):
        target.load_state_dict({k: v for k, v in state.items() if k != "final_dense.bias"})
    with pytest.raises(KeyError, match="unexpected keys \\['extra'\\]"):
        target.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="W2.weight must have shape"):
        target.load_state_dict({**state, "W2.weight": np.zeros((2, 2))})


def test_inputs_never_modified_and_params_read_afresh(rng):
    model = small_model()
    inputs, labels = batch(rng)
    before = snapshot({"inputs": inputs, "labels": labels})
    loss, _ = model.loss(inputs, labels)
    model.embed(inputs)
    model.forward(inputs)
    assert_unchanged(before, "inputs")
    model.params["W2.bias"][0] += 1.0   # in place, as a gradient check does
    assert model.loss(inputs, labels)[0] != loss


def test_bad_inputs_name_the_argument():
    model = small_model()
    with pytest.raises(ValueError, match="inputs must hold indices in \\[0, 6\\)"):
        model.loss(np.array([[0, 6]]), np.array([1]))
    with pytest.raises(ValueError, match="inputs must hold indices"):
        model.forward(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="max_length=5"):
        model.forward(np.zeros((1, 6), int))
    with pytest.raises(TypeError, match="inputs must hold integer"):
        model.forward(np.zeros((1, 3), bool))
    with pytest.raises(ValueError, match="inputs must hold whole-number"):
        model.forward(np.full((1, 3), 1.5))
    with pytest.raises(ValueError, match="inputs must have shape \\(N, T\\)"):
        model.forward(np.zeros(3, int))
    with pytest.raises(ValueError, match="labels must have shape"):
        model.loss(np.zeros((2, 3), int), np.zeros(3))
    with pytest.raises(ValueError, match="dim_q must equal dim_k"):
        ClassificationTransformer(VOCAB, dim_q=4, dim_k=5)
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        ClassificationTransformer(VOCAB, num_heads=0)


def test_saturated_logits_give_finite_loss(rng):
    model = small_model()
    model.params["final_dense.bias"][:] = 1e4
    inputs, _ = batch(rng)
    loss, grads = model.loss(inputs, np.zeros(3))
    assert np.isfinite(loss) and loss > 1e3
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_gradcheck_rows_catch_a_wrong_gradient():
    """`fastrnn gradcheck`'s Transformer rows pass, and a layer-norm backward whose dgamma is
    1% off is caught (in the layer row and in the model's norm gains)."""
    import types

    import fastrnn.transformer_layers as layers
    from fastrnn.gradcheck_cases import transformer_gradcheck_rows

    rows = transformer_gradcheck_rows(seed=1)
    assert len(rows) > 30 and all(error < 1e-6 for _, _, error in rows)

    def wrong_layernorm_backward(dout, cache):
        dx, dgamma, dbeta = layers.layernorm_backward(dout, cache)
        return dx, 1.01 * dgamma, dbeta

    broken = types.SimpleNamespace(**{n: getattr(layers, n) for n in layers.__all__})
    broken.layernorm_backward = wrong_layernorm_backward
    errors = {(f, a): e for f, a, e in transformer_gradcheck_rows(broken, seed=1)}
    assert errors[("layernorm", "gamma")] > 1e-3
    assert errors[("ClassificationTransformer", "norm_ffn.weight")] > 1e-3
    assert errors[("layernorm", "x")] < 1e-6


def test_attention_weights(rng):
    """Rows are distributions; padding gets none with pad_index; token 0's row is what the
    pruned loss uses (changing a key token with zero weight changes nothing)."""
    model = small_model(pad_index=0)
    inputs, _ = batch(rng, N=3, T=5)
    weights = model.attention_weights(inputs)
    assert weights.shape == (3, 2, 5, 5) and weights.dtype == np.float64
    np.testing.assert_allclose(weights.sum(axis=-1), 1, atol=1e-12)
    np.testing.assert_array_equal(weights[..., -1], 0)   # the padded last token
    Wq, bq, Wk, bk, Wv, bv = model._attention_weights(model.params)
    _, cache = model.layers.multi_head_attention_forward(
        model.embed(inputs), Wq, bq, Wk, bk, Wv, bv, 2, key_mask=inputs != 0)
    assert np.max(np.abs(cache.probs - weights)) < 1e-14
