"""Loading the COCO captioning files in the classic course layout.

A directory ``base_dir`` holds::

    coco2014_captions.h5          train_captions int (Ntr, T), train_image_idxs int (Ntr,),
                                  val_captions int (Nva, T), val_image_idxs int (Nva,)
    train2014_vgg16_fc7_pca.h5    features float32 (Itr, 512)    (pca_features=True)
    val2014_vgg16_fc7_pca.h5      features float32 (Iva, 512)
    train2014_vgg16_fc7.h5        features float32 (Itr, 4096)   (pca_features=False)
    val2014_vgg16_fc7.h5          features float32 (Iva, 4096)
    coco2014_vocab.json           {"idx_to_word": [...], "word_to_idx": {...}}
    train2014_urls.txt            one URL per train feature row
    val2014_urls.txt              one URL per val feature row

``base_dir`` is the argument, else the environment variable ``FASTRNN_COCO_DIR``, else the
classic relative location ``cs231n/datasets/coco_captioning``.  :mod:`fastrnn.datasets` writes
a small synthetic dataset in exactly this layout.
"""
import io
import json
import math
import os

import numpy as np

from fastrnn._limits import check_count, check_fits_in_memory

__all__ = ["load_coco_data", "sample_coco_minibatch", "decode_captions", "CocoFormatError",
           "COCO_DIR_ENV", "CLASSIC_BASE_DIR"]

COCO_DIR_ENV = "FASTRNN_COCO_DIR"
CLASSIC_BASE_DIR = os.path.join("cs231n", "datasets", "coco_captioning")
CAPTION_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
CAPTION_KEYS = ("train_captions", "train_image_idxs", "val_captions", "val_image_idxs")


class CocoFormatError(ValueError):
    """A COCO data file exists but lacks a key or holds an array of the wrong shape or dtype."""


def resolve_base_dir(base_dir=None):
    """The data directory: ``base_dir``, else ``$FASTRNN_COCO_DIR``, else the classic location."""
    if base_dir is not None:
        return os.fspath(base_dir)
    return os.environ.get(COCO_DIR_ENV) or CLASSIC_BASE_DIR


def _require_file(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"COCO data file not found: {path!r}. Pass base_dir=..., set {COCO_DIR_ENV}, or "
            "write the built-in dataset with fastrnn.datasets.write_builtin_coco(base_dir).")
    return path


def _read_h5_arrays(path, keys):
    """Read datasets ``keys`` of the HDF5 file ``path`` into NumPy arrays, in that order.

    Every failure is a CocoFormatError naming the file and the key: a damaged file makes h5py
    raise OSError, KeyError, RuntimeError, TypeError or ValueError depending on where the
    damage is, none of which names the file.  A dataset that declares more bytes than the
    file holds (a damaged dimension) or than the machine's memory is refused before it is read.
    """
    import h5py  # imported on use: importing fastrnn.coco_utils stays cheap

    _require_file(path)
    file_size = os.path.getsize(path)
    try:
        h5file = h5py.File(path, "r")
    except Exception as err:
        raise CocoFormatError(f"{path!r} is not a readable HDF5 file "
                              f"({type(err).__name__}: {err})") from err
    with h5file:
        arrays = {}
        for key in keys:
            try:
                dataset = h5file.get(key)
                if dataset is None:
                    raise CocoFormatError(
                        f"{path!r} has no dataset {key!r} (it has {sorted(h5file.keys())})")
                if not isinstance(dataset, h5py.Dataset):
                    raise CocoFormatError(f"{path!r}: {key!r} should be a dataset, not a group")
                dtype, shape, compressed = dataset.dtype, dataset.shape, dataset.compression
                if dtype.kind not in "iuf" or shape is None:
                    raise CocoFormatError(f"{path!r}: dataset {key!r} should hold numbers, got "
                                          f"dtype {dtype}")
                nbytes = math.prod(shape) * dtype.itemsize
                if compressed is None and nbytes > file_size:
                    raise CocoFormatError(f"{path!r}: dataset {key!r} declares shape {shape}, "
                                          f"more than the file's {file_size} bytes hold")
            except CocoFormatError:
                raise
            except Exception as err:
                raise CocoFormatError(f"{path!r}: dataset {key!r} cannot be read "
                                      f"({type(err).__name__}: {err})") from err
            check_fits_in_memory(nbytes, f"{path!r}: dataset {key!r} of shape {shape}")
            try:
                arrays[key] = np.asarray(dataset[()])
            except Exception as err:
                raise CocoFormatError(f"{path!r}: dataset {key!r} cannot be read "
                                      f"({type(err).__name__}: {err})") from err
    return arrays


def _check_array(array, path, key, ndim, kind):
    """Raise CocoFormatError naming ``path`` and ``key`` unless ``array`` is ``ndim``-D of ``kind``."""
    kinds = {"int": "iu", "float": "f"}[kind]
    if array.ndim != ndim or array.dtype.kind not in kinds:
        expected = f"a {ndim}-D {kind} array"
        raise CocoFormatError(f"{path!r}: dataset {key!r} should be {expected}, "
                              f"got shape {array.shape} dtype {array.dtype}")


def _read_text(path):
    """The UTF-8 text of ``path``; errors name the file."""
    _require_file(path)
    check_fits_in_memory(os.path.getsize(path), f"{path!r}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise CocoFormatError(f"{path!r} is not UTF-8 text ({err})") from err


def _read_urls(path, expected_count):
    urls = np.asarray([line.strip() for line in io.StringIO(_read_text(path))])
    if urls.shape[0] != expected_count:
        raise CocoFormatError(f"{path!r} has {urls.shape[0]} URLs, expected one per feature "
                              f"row ({expected_count})")
    return urls


REQUIRED_TOKENS = ("<NULL>", "<START>", "<END>")  # what the captions and the model rely on


def _read_vocab(path):
    try:
        vocab = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise CocoFormatError(f"{path!r} is not valid JSON ({err})") from err
    except RecursionError as err:
        raise CocoFormatError(f"{path!r} is not a vocabulary: its JSON is nested too deeply "
                              "to read") from err
    if not isinstance(vocab, dict):
        raise CocoFormatError(f"{path!r} should hold a JSON object, got {type(vocab).__name__}")
    for key, kind in (("idx_to_word", list), ("word_to_idx", dict)):
        if key not in vocab:
            raise CocoFormatError(f"{path!r} has no key {key!r} (it has {sorted(vocab)})")
        if not isinstance(vocab[key], kind):
            raise CocoFormatError(f"{path!r}: {key!r} should be a JSON "
                                  f"{'array' if kind is list else 'object'}")
    idx_to_word, word_to_idx = vocab["idx_to_word"], vocab["word_to_idx"]
    for i, word in enumerate(idx_to_word):
        if not isinstance(word, str):
            raise CocoFormatError(f"{path!r}: 'idx_to_word' entry {i} should be a string, got "
                                  f"{type(word).__name__}")
    for word, i in word_to_idx.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise CocoFormatError(f"{path!r}: 'word_to_idx' entry {word!r} should be an integer "
                                  f"index, got {i!r}")
    if any(word_to_idx.get(word) != i for i, word in enumerate(idx_to_word)) \
            or len(word_to_idx) != len(idx_to_word):
        raise CocoFormatError(f"{path!r}: 'idx_to_word' and 'word_to_idx' do not match")
    for token in REQUIRED_TOKENS:
        if token not in word_to_idx:
            raise CocoFormatError(f"{path!r}: the vocabulary has no {token!r} token")
    return vocab


def load_coco_data(base_dir=None, max_train=None, pca_features=True, *, rng=None):
    """Load the COCO captioning data of ``base_dir`` into a dict.

    Parameters
    ----------
    base_dir : str or os.PathLike, optional
        Data directory; default ``$FASTRNN_COCO_DIR``, else ``cs231n/datasets/coco_captioning``.
    max_train : int, optional
        Keep ``max_train`` training caption rows drawn uniformly *with replacement*, as the
        classic loader does.
    pca_features : bool
        Read the 512-D PCA features (``*_vgg16_fc7_pca.h5``) instead of the 4096-D ones.
    rng : numpy.random.Generator or int, optional
        Source of the ``max_train`` draw; default the global ``np.random`` stream (classic).

    Returns
    -------
    dict with, in this order: train_captions int (Ntr, T), train_image_idxs int (Ntr,),
    val_captions int (Nva, T), val_image_idxs int (Nva,), train_features (Itr, D),
    val_features (Iva, D), idx_to_word list (V,), word_to_idx dict, train_urls str (Itr,),
    val_urls str (Iva,).

    Raises
    ------
    FileNotFoundError
        A file is missing (the message names it).
    CocoFormatError
        A file is unreadable or damaged, lacks a key, holds an array of the wrong shape or
        dtype, or is inconsistent with the others (the message names the file and the key):
        empty splits, captions of fewer than 2 columns, train and val features of different
        widths, a vocabulary without <NULL>/<START>/<END> or with non-string words.
    ValueError
        ``max_train`` is not a positive integer, or an array would not fit in memory.
    """
    if max_train is not None:
        max_train = check_count("max_train", max_train)
    base_dir = resolve_base_dir(base_dir)
    suffix = "_pca" if pca_features else ""
    caption_path = os.path.join(base_dir, CAPTION_FILE)
    data = _read_h5_arrays(caption_path, CAPTION_KEYS)
    for split in ("train", "val"):
        captions = data[f"{split}_captions"]
        image_idxs = data[f"{split}_image_idxs"]
        _check_array(captions, caption_path, f"{split}_captions", 2, "int")
        _check_array(image_idxs, caption_path, f"{split}_image_idxs", 1, "int")
        if captions.shape[0] == 0:
            raise CocoFormatError(f"{caption_path!r}: {split}_captions is empty (no caption rows)")
        if captions.shape[1] < 2:
            raise CocoFormatError(f"{caption_path!r}: {split}_captions has {captions.shape[1]} "
                                  "column(s); a caption needs at least 2 (<START> and a word)")
        if image_idxs.shape[0] != captions.shape[0]:
            raise CocoFormatError(f"{caption_path!r}: {split}_image_idxs has {image_idxs.shape[0]}"
                                  f" rows but {split}_captions has {captions.shape[0]}")

    for split in ("train", "val"):
        feature_path = os.path.join(base_dir, f"{split}2014_vgg16_fc7{suffix}.h5")
        features = _read_h5_arrays(feature_path, ("features",))["features"]
        _check_array(features, feature_path, "features", 2, "float")
        if features.shape[0] == 0 or features.shape[1] == 0:
            raise CocoFormatError(f"{feature_path!r}: dataset 'features' is empty, shape "
                                  f"{features.shape}")
        if split == "val" and features.shape[1] != data["train_features"].shape[1]:
            raise CocoFormatError(
                f"{feature_path!r}: features are {features.shape[1]}-D but the train features "
                f"are {data['train_features'].shape[1]}-D; both splits must have the same width")
        image_idxs = data[f"{split}_image_idxs"]
        if image_idxs.size and (image_idxs.min() < 0 or image_idxs.max() >= features.shape[0]):
            raise CocoFormatError(f"{caption_path!r}: {split}_image_idxs must lie in "
                                  f"[0, {features.shape[0]}) (the rows of {feature_path!r})")
        data[f"{split}_features"] = features

    vocab_path = os.path.join(base_dir, VOCAB_FILE)
    vocab = _read_vocab(vocab_path)
    data["idx_to_word"] = vocab["idx_to_word"]
    data["word_to_idx"] = vocab["word_to_idx"]
    for split in ("train", "val"):
        captions = data[f"{split}_captions"]
        if captions.size and (captions.min() < 0 or captions.max() >= len(data["idx_to_word"])):
            raise CocoFormatError(f"{caption_path!r}: {split}_captions holds word indices outside "
                                  f"[0, {len(data['idx_to_word'])}) (the vocabulary of {vocab_path!r})")

    for split in ("train", "val"):
        url_path = os.path.join(base_dir, f"{split}2014_urls.txt")
        data[f"{split}_urls"] = _read_urls(url_path, data[f"{split}_features"].shape[0])

    if max_train is not None:
        num_train = data["train_captions"].shape[0]
        row_bytes = data["train_captions"][0].nbytes + data["train_image_idxs"].itemsize
        check_fits_in_memory(max_train * row_bytes, f"max_train={max_train}")
        if rng is None:
            mask = np.random.randint(num_train, size=max_train)
        else:
            mask = np.random.default_rng(rng).integers(num_train, size=max_train)
        data["train_captions"] = data["train_captions"][mask]
        data["train_image_idxs"] = data["train_image_idxs"][mask]
    return data


def sample_coco_minibatch(data, batch_size=100, split="train", *, rng=None):
    """Draw ``batch_size`` caption rows of ``split`` uniformly with replacement.

    Parameters
    ----------
    data : dict
        As returned by :func:`load_coco_data`.
    batch_size : int
    split : {'train', 'val'}
    rng : numpy.random.Generator, optional
        Default: the global ``np.random`` stream, as the classic code.

    Returns
    -------
    captions : int (batch_size, T)
    features : (batch_size, D), the features of each caption's image
    urls : str (batch_size,)
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    split_size = data[f"{split}_captions"].shape[0]
    if rng is None:
        mask = np.random.choice(split_size, batch_size)
    else:
        mask = rng.integers(split_size, size=batch_size)
    captions = data[f"{split}_captions"][mask]
    image_idxs = data[f"{split}_image_idxs"][mask]
    features = data[f"{split}_features"][image_idxs]
    urls = data[f"{split}_urls"][image_idxs]
    return captions, features, urls


def decode_captions(captions, idx_to_word):
    """Word indices -> strings: words joined by spaces, <NULL> skipped, stopping after <END>.

    Parameters
    ----------
    captions : int (N, T) or (T,)
    idx_to_word : list or dict mapping index -> word

    Returns
    -------
    list of N str for a 2-D input, one str for a 1-D input.
    """
    captions = np.asarray(captions)
    singleton = captions.ndim == 1
    if singleton:
        captions = captions[None]
    decoded = []
    for row in captions:
        words = []
        for idx in row:
            word = idx_to_word[int(idx)]
            if word != "<NULL>":
                words.append(word)
            if word == "<END>":
                break
        decoded.append(" ".join(words))
    return decoded[0] if singleton else decoded
