"""CaptioningRNN: classic numbers, equality with a model on fastrnn.reference, gradients,
init draw order, sampling and beam search, and the classic overfitting bar."""
import types

import numpy as np
import pytest

import fastrnn.reference
from _captioning_helpers import global_random_state  # noqa: F401 (a fixture)
from _captioning_helpers import TINY_VOCAB, random_captions
from fastrnn.captioning_solver import CaptioningSolver
from fastrnn.classifiers.rnn import CaptioningRNN
from fastrnn.gradcheck_cases import model_gradcheck_rows
from fastrnn.coco_utils import decode_captions, load_coco_data
from fastrnn.datasets import write_builtin_coco
from fastrnn.gradient_check import rel_error

CELLS = ["rnn", "lstm"]


@pytest.mark.parametrize("cell_type, feature_range, expected", [
    ("rnn", (-1.5, 0.3), 9.83235591003),
    ("lstm", (-0.5, 1.7), 9.82445935443),
])
def test_classic_notebook_loss(cell_type, feature_range, expected):
    # The course notebooks' sanity check, with its published expected losses.
    N, D, W, H, T = 10, 20, 30, 40, 13
    vocab = {"<NULL>": 0, "cat": 2, "dog": 3}
    model = CaptioningRNN(vocab, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell_type,
                          dtype=np.float64)
    for key, value in model.params.items():
        model.params[key] = np.linspace(-1.4, 1.3, num=value.size).reshape(*value.shape)
    features = np.linspace(*feature_range, num=N * D).reshape(N, D)
    captions = (np.arange(N * T) % len(vocab)).reshape(N, T)
    loss, _ = model.loss(features, captions)
    assert abs(loss - expected) < 1e-10


@pytest.mark.parametrize("cell_type", CELLS)
def test_float64_loss_and_grads_equal_a_model_on_the_reference_layers(cell_type, rng):
    N, T, D, W, H = 4, 6, 7, 5, 8
    fast = CaptioningRNN(TINY_VOCAB, D, W, H, cell_type, np.float64, rng=1)
    slow = CaptioningRNN(TINY_VOCAB, D, W, H, cell_type, np.float64, rng=1,
                         layers=fastrnn.reference)
    assert fast.layers is not slow.layers
    for name, value in fast.params.items():  # unit-scale weights: every path matters
        fast.params[name] = slow.params[name] = rng.standard_normal(value.shape)
    features = rng.standard_normal((N, D))
    captions = random_captions(rng, N, T + 1, len(TINY_VOCAB))
    loss, grads = fast.loss(features, captions)
    ref_loss, ref_grads = slow.loss(features, captions)
    assert abs(loss - ref_loss) <= 1e-10 * abs(ref_loss)
    assert list(grads) == list(fast.params)
    for name in ref_grads:
        assert grads[name].shape == fast.params[name].shape
        assert rel_error(grads[name], ref_grads[name]) < 1e-10, name


@pytest.mark.parametrize("cell_type", CELLS)
def test_numeric_gradient_check(cell_type):
    rows = [row for row in model_gradcheck_rows(seed=3) if row[0] == f"CaptioningRNN({cell_type})"]
    assert [arg for _, arg, _ in rows] == ["W_embed", "W_proj", "b_proj", "Wx", "Wh", "b",
                                           "W_vocab", "b_vocab"]
    for _, name, error in rows:
        assert error < 1e-5, name


def test_gradient_check_catches_a_wrong_gradient():
    # The check above can fail: a backward off by 1% in dWh is caught.
    def wrong_rnn_backward(dh, cache):
        dx, dh0, dWx, dWh, db = fastrnn.reference.rnn_backward(dh, cache)
        return dx, dh0, dWx, 1.01 * dWh, db

    layers = types.SimpleNamespace(**{name: getattr(fastrnn.reference, name)
                                      for name in fastrnn.reference.__all__})
    layers.rnn_backward = wrong_rnn_backward
    errors = {arg: error for model, arg, error in model_gradcheck_rows(layers, seed=3)
              if model == "CaptioningRNN(rnn)"}
    assert errors["Wh"] > 1e-3
    assert errors["Wx"] < 1e-5


def test_params_keys_shapes_and_dtype():
    for cell_type, k in (("rnn", 1), ("lstm", 4)):
        model = CaptioningRNN(TINY_VOCAB, input_dim=7, wordvec_dim=5, hidden_dim=3,
                              cell_type=cell_type, rng=0)
        V = len(TINY_VOCAB)
        shapes = {"W_embed": (V, 5), "W_proj": (7, 3), "b_proj": (3,), "Wx": (5, k * 3),
                  "Wh": (3, k * 3), "b": (k * 3,), "W_vocab": (3, V), "b_vocab": (V,)}
        assert list(model.params) == list(shapes)
        for name, shape in shapes.items():
            assert model.params[name].shape == shape
            assert model.params[name].dtype == np.float32
        assert (model._null, model._start, model._end) == (0, 1, 2)
        assert model.idx_to_word[4] == "cat"


def test_seeded_global_init_follows_the_classic_draw_order(global_random_state):
    D, W, H = 6, 5, 4
    V = len(TINY_VOCAB)
    np.random.seed(231)
    # The classic constructor, draw by draw.
    expected = {"W_embed": np.random.randn(V, W) / 100,
                "W_proj": np.random.randn(D, H) / np.sqrt(D), "b_proj": np.zeros(H),
                "Wx": np.random.randn(W, 4 * H) / np.sqrt(W),
                "Wh": np.random.randn(H, 4 * H) / np.sqrt(H), "b": np.zeros(4 * H),
                "W_vocab": np.random.randn(H, V) / np.sqrt(H), "b_vocab": np.zeros(V)}
    after_classic = np.random.get_state()[1].copy()
    np.random.seed(231)
    model = CaptioningRNN(TINY_VOCAB, D, W, H, "lstm", np.float64)
    np.testing.assert_array_equal(np.random.get_state()[1], after_classic)
    for name, value in expected.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)
    # ... so a seeded notebook's first loss is the classic one.
    classic = CaptioningRNN(TINY_VOCAB, D, W, H, "lstm", np.float64, layers=fastrnn.reference)
    classic.params = expected
    features = np.linspace(-1, 1, 3 * D).reshape(3, D)
    captions = np.array([[1, 4, 6, 2, 0], [1, 5, 6, 2, 0], [1, 4, 5, 6, 2]])
    assert abs(model.loss(features, captions)[0] - classic.loss(features, captions)[0]) < 1e-12


def test_rng_init_is_reproducible_and_leaves_the_global_stream_alone(global_random_state):
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    a = CaptioningRNN(TINY_VOCAB, 6, 5, 4, "rnn", rng=7)
    b = CaptioningRNN(TINY_VOCAB, 6, 5, 4, "rnn", rng=np.random.default_rng(7))
    c = CaptioningRNN(TINY_VOCAB, 6, 5, 4, "rnn", rng=8)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert not np.array_equal(a.params["Wh"], c.params["Wh"])


@pytest.mark.parametrize("kwargs, match", [
    ({"cell_type": "gru"}, "cell_type"),
    ({"hidden_dim": 0}, "hidden_dim"),
    ({"wordvec_dim": 2.5}, "wordvec_dim"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CaptioningRNN(TINY_VOCAB, **kwargs)


def test_vocabulary_needs_null():
    with pytest.raises(ValueError, match="<NULL>"):
        CaptioningRNN({"<START>": 0, "cat": 1})


@pytest.mark.parametrize("word_to_idx, error, match", [
    ({"<NULL>": 0, "<START>": -1, "<END>": 2}, ValueError, r"word_to_idx\['<START>'\] = -1 is negative"),
    ({"<NULL>": 0, "<START>": 3, "<END>": 1}, ValueError,
     r"word_to_idx\['<START>'\] = 3 is outside \[0, 3\)"),
    ({"<NULL>": 5, "cat": 1}, ValueError, r"word_to_idx\['<NULL>'\] = 5 is outside \[0, 2\)"),
    ({"<NULL>": 0, "<START>": 1, "<END>": 1}, ValueError, "maps both '<START>' and '<END>' to index 1"),
    ({"<NULL>": 0, "cat": -2}, ValueError, r"word_to_idx\['cat'\] = -2 is negative"),
    ({"<NULL>": 0, "cat": "1"}, TypeError, r"word_to_idx\['cat'\] must be an integer index"),
    ({"<NULL>": 0, "cat": True}, TypeError, r"word_to_idx\['cat'\] must be an integer index"),
    ({"<NULL>": 0, "cat": 1.0}, TypeError, r"word_to_idx\['cat'\] must be an integer index"),
    (["<NULL>", "cat"], TypeError, "word_to_idx must be a dict"),
])
def test_bad_vocabularies_are_refused(word_to_idx, error, match, global_random_state):
    state = np.random.get_state()[1].copy()
    with pytest.raises(error, match=match):
        CaptioningRNN(word_to_idx, input_dim=4, wordvec_dim=3, hidden_dim=5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # refused before any draw


def test_the_classic_notebooks_toy_vocabulary_is_accepted():
    """The course's loss check uses {'<NULL>': 0, 'cat': 2, 'dog': 3} (V = 3): an ordinary
    word beyond V is the classic code's business (captions are range-checked)."""
    model = CaptioningRNN({"<NULL>": 0, "cat": 2, "dog": 3}, input_dim=4, wordvec_dim=3,
                          hidden_dim=5, rng=0)
    assert model.params["W_embed"].shape == (3, 3)
    numpy_indices = CaptioningRNN({"<NULL>": np.int64(0), "a": np.int32(1)}, 4, 3, 5, rng=0)
    assert numpy_indices.params["W_vocab"].shape == (5, 2)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.complex64, "bogus", object])
def test_only_float32_and_float64_parameters(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        CaptioningRNN(TINY_VOCAB, input_dim=4, wordvec_dim=3, hidden_dim=5, dtype=dtype)


def test_sizes_that_cannot_fit_in_memory_are_refused():
    with pytest.raises(ValueError, match=r"hidden_dim=10000000 .* needs .* more than this "
                                         r"machine's memory"):
        CaptioningRNN(TINY_VOCAB, hidden_dim=10 ** 7)


@pytest.mark.parametrize("cell_type", CELLS)
def test_features_of_the_wrong_width_are_named(cell_type, rng):
    model = CaptioningRNN(TINY_VOCAB, input_dim=7, wordvec_dim=3, hidden_dim=5,
                          cell_type=cell_type, rng=0)
    captions = random_captions(rng, 2, 4, len(TINY_VOCAB))
    wrong = rng.standard_normal((2, 6)).astype(np.float32)
    expected = r"features must have shape \(N, D=7\) \(D: the model's input_dim\), got \(2, 6\)"
    with pytest.raises(ValueError, match=expected):
        model.loss(wrong, captions)
    with pytest.raises(ValueError, match=expected):
        model.sample(wrong)
    with pytest.raises(ValueError, match=expected):
        model.sample(wrong, beam_size=2)
    with pytest.raises(ValueError, match="features has 3 rows but captions has 2"):
        model.loss(rng.standard_normal((3, 7)), captions)


@pytest.mark.parametrize("cell_type", CELLS)
def test_float32_training_step_stays_float32_and_inputs_are_untouched(cell_type, rng):
    model = CaptioningRNN(TINY_VOCAB, 6, 5, 4, cell_type, rng=0)
    features = rng.standard_normal((3, 6)).astype(np.float32)
    captions = random_captions(rng, 3, 6, len(TINY_VOCAB))
    features_before, captions_before = features.copy(), captions.copy()
    params_before = {k: v.copy() for k, v in model.params.items()}
    loss, grads = model.loss(features, captions)
    assert np.asarray(loss).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    np.testing.assert_array_equal(features, features_before)
    np.testing.assert_array_equal(captions, captions_before)
    for name, value in params_before.items():
        np.testing.assert_array_equal(model.params[name], value)


def test_loss_reads_params_afresh(rng):
    model = CaptioningRNN(TINY_VOCAB, 6, 5, 4, "rnn", np.float64, rng=0)
    features = rng.standard_normal((2, 6))
    captions = random_captions(rng, 2, 5, len(TINY_VOCAB))
    loss1, _ = model.loss(features, captions)
    model.params["b_vocab"][4] += 1.0  # in place, as a gradient check does
    loss2, _ = model.loss(features, captions)
    assert loss1 != loss2


def test_loss_ignores_null_targets(rng):
    model = CaptioningRNN(TINY_VOCAB, 6, 5, 4, "lstm", np.float64, rng=0)
    features = rng.standard_normal((2, 6))
    captions = np.array([[1, 4, 6, 2, 0, 0], [1, 5, 2, 0, 0, 0]])
    loss_short, _ = model.loss(features, captions[:, :4])
    loss_padded, _ = model.loss(features, captions)
    # Targets equal to <NULL> add nothing: padding the captions leaves the loss unchanged ...
    assert loss_padded == pytest.approx(loss_short, rel=1e-12)
    # ... while a real word in their place adds its -log p.
    unmasked = captions.copy()
    unmasked[1, 3] = 4
    assert model.loss(features, unmasked)[0] > loss_padded + 1e-3


@pytest.mark.parametrize("cell_type", CELLS)
def test_greedy_sample_follows_the_step_functions(cell_type, rng):
    model = CaptioningRNN(TINY_VOCAB, 6, 5, 4, cell_type, np.float64, rng=2)
    features = rng.standard_normal((3, 6))
    captions = model.sample(features, max_length=7)
    assert captions.shape == (3, 7) and captions.dtype == np.int32
    # Teacher-forcing the sampled words: every word is the argmax of the scores at its step.
    ref = fastrnn.reference
    p = model.params
    h = features @ p["W_proj"] + p["b_proj"]
    c = np.zeros_like(h)
    prev = np.full(3, model._start)
    for t in range(7):
        if cell_type == "rnn":
            h, _ = ref.rnn_step_forward(p["W_embed"][prev], h, p["Wx"], p["Wh"], p["b"])
        else:
            h, c, _ = ref.lstm_step_forward(p["W_embed"][prev], h, c, p["Wx"], p["Wh"], p["b"])
        np.testing.assert_array_equal(captions[:, t], np.argmax(h @ p["W_vocab"] + p["b_vocab"], 1))
        prev = captions[:, t]


def _model_that_ends_at_various_steps(cell_type, rng):
    """A random model whose greedy captions hit <END> in some rows and not in others."""
    model = CaptioningRNN(TINY_VOCAB, 6, 8, 16, cell_type, rng=4)
    for name, value in model.params.items():
        model.params[name] = rng.standard_normal(value.shape).astype(np.float32)
    features = rng.standard_normal((40, 6)).astype(np.float32)
    for _ in range(20):  # raise the score of <END> until some rows, but not all, reach it
        ended = (model.sample(features, max_length=10) == model._end).any(axis=1)
        if ended.any() and not ended.all():
            break
        model.params["b_vocab"][model._end] += 0.5
    return model, features


def _cut_after_end(captions, end, null):
    out = captions.copy()
    for row in out:
        hits = np.flatnonzero(row == end)
        if hits.size:
            row[hits[0] + 1:] = null
    return out


@pytest.mark.parametrize("cell_type", CELLS)
def test_beam_size_one_equals_greedy(cell_type, rng):
    model, features = _model_that_ends_at_various_steps(cell_type, rng)
    greedy = model.sample(features, max_length=10)
    beam = model.sample(features, max_length=10, beam_size=1)
    ended = (greedy == model._end).any(axis=1)
    assert ended.any() and not ended.all(), "the test needs rows with and without <END>"
    np.testing.assert_array_equal(beam, _cut_after_end(greedy, model._end, model._null))
    assert decode_captions(beam, model.idx_to_word) == decode_captions(greedy, model.idx_to_word)


@pytest.mark.parametrize("cell_type", CELLS)
def test_wide_beam_finds_the_most_likely_caption(cell_type, rng):
    # With a beam wider than the number of partial captions the search is exhaustive, so it
    # must return the caption of highest probability, found here by brute force: the model's
    # own loss of a caption is minus its log-probability.
    model = CaptioningRNN(TINY_VOCAB, 6, 8, 16, cell_type, np.float64, rng=4)
    for name, value in model.params.items():
        model.params[name] = rng.standard_normal(value.shape)
    model.params["b_vocab"][[model._null, model._start]] = -1e3  # never generated
    words = [w for w in range(len(TINY_VOCAB)) if w not in (model._null, model._start)]
    feature = rng.standard_normal((1, 6))
    max_length = 3

    def log_prob(caption):
        row = np.array([[model._start] + caption + [model._null] * (max_length - len(caption))])
        return -model.loss(feature, row)[0]

    candidates = []
    for w1 in words:
        for w2 in words:
            for w3 in words:
                caption = [w1, w2, w3]
                if model._end in caption:
                    caption = caption[:caption.index(model._end) + 1]
                candidates.append(caption)
    best = max(candidates, key=log_prob)
    beam = model.sample(feature, max_length=max_length, beam_size=len(words) ** max_length)
    assert list(beam[0, :len(best)]) == best
    assert (beam[0, len(best):] == model._null).all()


def test_sample_rejects_bad_arguments(rng):
    model = CaptioningRNN(TINY_VOCAB, 6, 5, 4, "rnn", rng=0)
    features = rng.standard_normal((2, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="beam_size"):
        model.sample(features, beam_size=0)
    with pytest.raises(ValueError, match="max_length"):
        model.sample(features, max_length=0)
    with pytest.raises(ValueError, match="features"):
        model.sample(features[0])


@pytest.mark.parametrize("cell_type, num_train, bar", [("lstm", 50, 0.5), ("rnn", 100, 0.1)])
def test_overfits_small_data_like_the_classic_notebook(cell_type, num_train, bar, tmp_path):
    # The notebooks' settings: 50 epochs, batch 25, Adam lr 5e-3, lr_decay 0.95, wordvec 256,
    # hidden 512, float32.  Their bar: final loss below 0.5 (LSTM, 50 captions) / 0.1 (RNN).
    # One caption per image: two different captions of one image would put a floor under
    # the loss (real COCO has 5 per image, but 80k images, so a 100-row sample rarely repeats one).
    data_dir = write_builtin_coco(tmp_path, seed=1, num_train_images=1000, num_val_images=10,
                                  captions_per_image=1, fc7=False)
    data = load_coco_data(data_dir, max_train=num_train, rng=11)
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          wordvec_dim=256, hidden_dim=512, cell_type=cell_type, rng=12)
    solver = CaptioningSolver(model, data, update_rule="adam", num_epochs=50, batch_size=25,
                              optim_config={"learning_rate": 5e-3}, lr_decay=0.95,
                              verbose=False, rng=13)
    solver.train()
    assert len(solver.loss_history) == 50 * (num_train // 25)
    assert solver.loss_history[0] > 20
    assert solver.loss_history[-1] < bar
