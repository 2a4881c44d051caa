"""Shared fixtures of the captioning tests (model, solver, data, CLI).

Import the fixtures into a test module with ``from _captioning_helpers import builtin_dir``.
"""
import numpy as np
import pytest

# Small enough to write in a fraction of a second, large enough to learn from.
BUILTIN_KWARGS = dict(seed=0, num_train_images=400, num_val_images=100, captions_per_image=3,
                      fc7=False)


@pytest.fixture(scope="module")
def builtin_dir(tmp_path_factory):
    """A directory holding the built-in dataset (512-D features only)."""
    from fastrnn.datasets import write_builtin_coco

    return write_builtin_coco(tmp_path_factory.mktemp("builtin_coco"), **BUILTIN_KWARGS)


@pytest.fixture(scope="module")
def builtin_data(builtin_dir):
    from fastrnn.coco_utils import load_coco_data

    return load_coco_data(builtin_dir)


@pytest.fixture
def global_random_state():
    """Save and restore the global np.random state around a test that must use it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


TINY_VOCAB = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, "cat": 4, "dog": 5, "sits": 6}


def random_captions(rng, N, T, vocab_size, null_fraction=0.3):
    """int (N, T): <START> first, random words, some trailing <NULL> padding per row."""
    captions = rng.integers(3, vocab_size, size=(N, T))
    captions[:, 0] = 1
    for row, length in zip(captions, rng.integers(2, T + 1, size=N)):
        if rng.random() < null_fraction:
            row[length:] = 0
    return captions


def small_model(data, cell_type="lstm", rng=0, wordvec_dim=16, hidden_dim=24):
    """A small CaptioningRNN for ``data`` (fast to train and to checkpoint)."""
    from fastrnn.classifiers.rnn import CaptioningRNN

    return CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                         wordvec_dim=wordvec_dim, hidden_dim=hidden_dim, cell_type=cell_type,
                         rng=rng)


def first_train_rows(data, num_train):
    """``data`` with only the first ``num_train`` training rows (a plain slice: no random draw)."""
    small = dict(data)
    small["train_captions"] = data["train_captions"][:num_train]
    small["train_image_idxs"] = data["train_image_idxs"][:num_train]
    return small
