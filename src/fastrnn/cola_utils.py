"""Loading the CoLA sentence-acceptability files in the course's layout.

A directory ``base_dir`` holds::

    train_inxs.npy     int (Ntr, T) word indices, [CLS] first, padded to T (43 in the course)
    val_inxs.npy       int (Nva, T)
    train_labels.npy   (Ntr,) 0/1 labels (1 = acceptable)
    val_labels.npy     (Nva,)
    word_to_ix.csv     one ``word,index`` row per word (a header row is allowed)

``base_dir`` is the argument, else the environment variable ``FASTRNN_COLA_DIR``, else the
course notebook's relative location ``data``.  CoLA itself cannot be downloaded here:
:mod:`fastrnn.cola_dataset` writes a synthetic corpus in exactly this layout.
"""
import csv
import os

import numpy as np

__all__ = ["load_cola_data", "decode_sentences", "ColaFormatError", "COLA_DIR_ENV",
           "CLASSIC_COLA_DIR", "COLA_FILES"]

COLA_DIR_ENV = "FASTRNN_COLA_DIR"
CLASSIC_COLA_DIR = "data"
COLA_FILES = {"train_inxs": "train_inxs.npy", "val_inxs": "val_inxs.npy",
              "train_labels": "train_labels.npy", "val_labels": "val_labels.npy"}
VOCAB_FILE = "word_to_ix.csv"


class ColaFormatError(ValueError):
    """A CoLA data file exists but holds the wrong kind of array or a malformed row."""


def resolve_cola_dir(base_dir=None):
    """The data directory: ``base_dir``, else ``$FASTRNN_COLA_DIR``, else ``data``."""
    if base_dir is not None:
        return os.fspath(base_dir)
    return os.environ.get(COLA_DIR_ENV) or CLASSIC_COLA_DIR


def _require_file(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"CoLA data file not found: {path!r}. Pass base_dir=..., set {COLA_DIR_ENV}, or "
            "write the built-in corpus with fastrnn.cola_dataset.write_builtin_cola(base_dir).")
    return path


def _read_vocabulary(path):
    word_to_ix = {}
    with open(_require_file(path), newline="", encoding="utf-8") as f:
        for line_number, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) < 2:
                raise ColaFormatError(f"{path!r} line {line_number}: expected 'word,index', "
                                      f"got {row!r}")
            word, index = row[0], row[-1].strip()
            try:
                word_to_ix[word] = int(index)
            except ValueError:
                if line_number == 1:   # a header row
                    continue
                raise ColaFormatError(f"{path!r} line {line_number}: index {index!r} of word "
                                      f"{word!r} is not an integer") from None
    if not word_to_ix:
        raise ColaFormatError(f"{path!r} holds no 'word,index' rows")
    return word_to_ix


def load_cola_data(base_dir=None):
    """Load the course's CoLA arrays and vocabulary.

    Returns
    -------
    dict with keys train_inxs (Ntr, T) int64, val_inxs (Nva, T) int64, train_labels (Ntr,)
    int64, val_labels (Nva,) int64, word_to_ix (dict), ix_to_word (dict).
    Errors name the file and the key: FileNotFoundError for a missing file, ColaFormatError
    for an array of the wrong shape or kind, labels other than 0/1 or indices outside the
    vocabulary.
    """
    base_dir = resolve_cola_dir(base_dir)
    word_to_ix = _read_vocabulary(os.path.join(base_dir, VOCAB_FILE))
    vocab_size = max(word_to_ix.values()) + 1
    data = {}
    for key, name in COLA_FILES.items():
        path = _require_file(os.path.join(base_dir, name))
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ColaFormatError(f"{path!r} ({key}) is not a readable .npy file ({err})") from err
        ndim = 2 if key.endswith("inxs") else 1
        if array.ndim != ndim or array.dtype.kind not in "iub":
            raise ColaFormatError(f"{path!r} ({key}) should be a {ndim}-D integer array, got "
                                  f"shape {array.shape}, dtype {array.dtype}")
        if key.endswith("inxs") and array.size and (array.min() < 0 or array.max() >= vocab_size):
            raise ColaFormatError(f"{path!r} ({key}) holds indices from {array.min()} to "
                                  f"{array.max()}, outside the vocabulary [0, {vocab_size})")
        if key.endswith("labels") and array.size and not np.isin(array, (0, 1)).all():
            raise ColaFormatError(f"{path!r} ({key}) holds labels other than 0 and 1")
        data[key] = array.astype(np.int64)
    for split in ("train", "val"):
        if data[f"{split}_inxs"].shape[0] != data[f"{split}_labels"].shape[0]:
            raise ColaFormatError(
                f"{split}_inxs has {data[f'{split}_inxs'].shape[0]} sentences but "
                f"{split}_labels has {data[f'{split}_labels'].shape[0]} labels (in {base_dir!r})")
    data["word_to_ix"] = word_to_ix
    data["ix_to_word"] = {i: w for w, i in word_to_ix.items()}
    return data


def decode_sentences(inxs, ix_to_word, skip=("[PAD]", "[CLS]")):
    """Word indices (T,) -> a string, or (N, T) -> a list of strings; ``skip`` words dropped."""
    inxs = np.asarray(inxs)
    if inxs.ndim == 1:
        return " ".join(w for w in (ix_to_word[int(i)] for i in inxs) if w not in skip)
    return [decode_sentences(row, ix_to_word, skip) for row in inxs]
