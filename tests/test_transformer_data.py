"""The CoLA loader (course layout) and the built-in synthetic acceptability corpus: layout,
errors, and the property it is built for (a bag of words says nothing, word order everything)."""
import csv
import os

import numpy as np
import pytest

from fastrnn import optim
from fastrnn.classifiers.transformer import ClassificationTransformer
from fastrnn.cola_dataset import CLS, PAD, make_builtin_cola, write_builtin_cola
from fastrnn.cola_utils import COLA_DIR_ENV, ColaFormatError, decode_sentences, load_cola_data


@pytest.fixture(scope="module")
def corpus():
    return make_builtin_cola(seed=0)


def test_layout_and_round_trip(tmp_path, corpus):
    write_builtin_cola(tmp_path, seed=0)
    data = load_cola_data(tmp_path)
    assert list(data)[:4] == ["train_inxs", "val_inxs", "train_labels", "val_labels"]
    assert data["train_inxs"].shape == (7000, 43) and data["val_inxs"].shape == (1551, 43)
    assert data["train_labels"].shape == (7000,) and data["val_labels"].shape == (1551,)
    for key in ("train_inxs", "val_inxs", "train_labels", "val_labels"):
        np.testing.assert_array_equal(data[key], corpus[key])
    assert data["word_to_ix"] == corpus["word_to_ix"]
    w2i = data["word_to_ix"]
    assert np.all(data["train_inxs"][:, 0] == w2i[CLS])
    # padded at the end only, and every sentence has words
    pad = data["train_inxs"] == w2i[PAD]
    assert np.all(np.diff(pad.astype(int), axis=1) >= 0) and not pad[:, 1].any()
    assert set(np.unique(data["train_labels"])) == {0, 1}
    assert 0.45 < data["train_labels"].mean() < 0.55
    assert decode_sentences(data["train_inxs"][:3], data["ix_to_word"]) == \
        corpus["train_sentences"][:3]


def test_seeded():
    again = make_builtin_cola(seed=0, num_train=50, num_val=10)
    np.testing.assert_array_equal(again["train_inxs"],
                                  make_builtin_cola(seed=0, num_train=50, num_val=10)["train_inxs"])
    other = make_builtin_cola(seed=1, num_train=50, num_val=10)
    assert np.any(other["train_inxs"] != again["train_inxs"])


def test_directory_resolution_and_errors(tmp_path, monkeypatch):
    write_builtin_cola(tmp_path, seed=0, num_train=20, num_val=10)
    monkeypatch.setenv(COLA_DIR_ENV, str(tmp_path))
    assert load_cola_data()["train_inxs"].shape == (20, 43)
    monkeypatch.delenv(COLA_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=os.path.join("data", "word_to_ix.csv")):
        load_cola_data()   # the course notebook's relative ./data
    os.remove(tmp_path / "val_labels.npy")
    with pytest.raises(FileNotFoundError, match="val_labels.npy"):
        load_cola_data(tmp_path)
    np.save(tmp_path / "val_labels.npy", np.full(10, 2))
    with pytest.raises(ColaFormatError, match="val_labels.npy.*val_labels.*other than 0 and 1"):
        load_cola_data(tmp_path)
    np.save(tmp_path / "val_labels.npy", np.zeros(9, int))
    with pytest.raises(ColaFormatError, match="val_inxs has 10 sentences but val_labels has 9"):
        load_cola_data(tmp_path)
    np.save(tmp_path / "val_labels.npy", np.zeros(10, int))
    np.save(tmp_path / "train_inxs.npy", np.zeros((20, 43)))
    with pytest.raises(ColaFormatError, match="train_inxs.npy.*train_inxs.*integer"):
        load_cola_data(tmp_path)
    np.save(tmp_path / "train_inxs.npy", np.full((20, 43), 10_000))
    with pytest.raises(ColaFormatError, match="train_inxs.*outside the vocabulary"):
        load_cola_data(tmp_path)
    with open(tmp_path / "word_to_ix.csv", "w", newline="") as f:
        csv.writer(f).writerows([["word", "index"], ["[PAD]", "0"], ["dog", "x"]])
    with pytest.raises(ColaFormatError, match="word_to_ix.csv.*line 3.*'dog'"):
        load_cola_data(tmp_path)


def bag_of_words(inxs, vocab_size, pad):
    counts = np.zeros((len(inxs), vocab_size))
    np.add.at(counts, (np.repeat(np.arange(len(inxs)), inxs.shape[1]), inxs.ravel()), 1)
    counts[:, pad] = 0
    return counts


def test_bag_of_words_stays_near_chance(corpus):
    """Plain NumPy logistic regression on word counts, trained to convergence: <= 0.6."""
    V = len(corpus["word_to_ix"])
    pad = corpus["word_to_ix"][PAD]
    X = bag_of_words(corpus["train_inxs"], V, pad)
    X_val = bag_of_words(corpus["val_inxs"], V, pad)
    y, y_val = corpus["train_labels"], corpus["val_labels"]
    w, b = np.zeros(V), 0.0
    for _ in range(600):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        w -= 1.0 * (X.T @ (p - y) / len(y) + 1e-4 * w)
        b -= 1.0 * np.mean(p - y)
    train_acc = np.mean((X @ w + b > 0) == y)
    val_acc = np.mean((X_val @ w + b > 0) == y_val)
    assert train_acc <= 0.6 and val_acc <= 0.6, (train_acc, val_acc)
    # ... while it does learn a corpus where the words matter: the same labels given by
    # whether a sentence holds a plural noun (a bag-of-words fact) are learnt
    plural = np.array([any(corpus["word_to_ix"][w] in row for w in ("dogs", "cats", "men"))
                       for row in corpus["train_inxs"]])
    w2, b2 = np.zeros(V), 0.0
    for _ in range(600):
        p = 1 / (1 + np.exp(-(X @ w2 + b2)))
        w2 -= 1.0 * (X.T @ (p - plural) / len(y) + 1e-4 * w2)
        b2 -= 1.0 * np.mean(p - plural)
    assert np.mean((X @ w2 + b2 > 0) == plural) > 0.95


def test_small_transformer_learns_word_order(corpus):
    """A smaller ClassificationTransformer than the course's (H=32, feed-forward 128, 16-wide
    heads; the course's 128/2048/96 model reaches 0.99 after 3 epochs, ~4x slower) with Adam:
    >= 0.9 validation accuracy after 5 epochs."""
    model = ClassificationTransformer(corpus["word_to_ix"], hidden_dim=32, dim_feedforward=128,
                                      dim_k=16, dim_v=16, dim_q=16, seed=0)
    configs = {k: {"learning_rate": 2e-3} for k in model.params}
    rng = np.random.default_rng(0)
    X, y = corpus["train_inxs"], corpus["train_labels"]
    for _ in range(5):
        order = rng.permutation(len(y))
        for start in range(0, len(y), 64):
            batch = order[start:start + 64]
            _, grads = model.loss(X[batch], y[batch])
            for k in model.params:
                model.params[k], configs[k] = optim.adam(model.params[k], grads[k], configs[k])
    probs = model.loss(corpus["val_inxs"])[:, 0]
    accuracy = np.mean((probs > 0.5) == corpus["val_labels"])
    assert accuracy >= 0.9, accuracy
