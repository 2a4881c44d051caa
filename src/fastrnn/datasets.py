"""A small built-in captioning dataset, written in exactly the COCO layout of :mod:`fastrnn.coco_utils`.

Every synthetic "image" has a content: a colour, an object, an action and a place.  Its
captions are sentences of a small grammar about that content ("a red dog is running on the
grass", "there is a red dog running on the grass", ...), so the words really depend on the
image.  Its features are a fixed random projection of the content's one-hot code plus
Gaussian noise: 512-D for the ``*_pca.h5`` files, and a rectified 4096-D projection for the
``*_vgg16_fc7.h5`` files (like VGG's fc7 activations, which are non-negative).

Everything is drawn from ``np.random.default_rng(seed)``: the same seed writes the same files.
Generation takes about a second for the default sizes (2000 train and 500 val images, 3
captions each); the 4096-D files dominate it and can be skipped with ``fc7=False``.

Typical use::

    from fastrnn.datasets import write_builtin_coco
    from fastrnn.coco_utils import load_coco_data
    data = load_coco_data(write_builtin_coco("/tmp/builtin_coco"))
"""
import json
import os
import shutil
import tempfile

import numpy as np

from fastrnn.coco_utils import CAPTION_FILE, VOCAB_FILE

__all__ = ["write_builtin_coco", "ensure_builtin_coco", "default_builtin_dir", "SPECIAL_TOKENS",
           "CAPTION_LENGTH", "BUILTIN_VERSION"]

SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>", "<UNK>")
CAPTION_LENGTH = 17  # <START> + up to 15 words + <END>, padded with <NULL>, like the real set
BUILTIN_VERSION = 1  # bump when the generator changes, so cached copies are rewritten
MARKER_FILE = "fastrnn_builtin.json"

COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "orange")
OBJECTS = ("dog", "cat", "man", "woman", "horse", "bird", "boy", "girl", "cow", "bear")
ACTIONS = ("sitting", "standing", "running", "walking", "sleeping", "eating", "jumping", "playing")
PLACES = ("on the grass", "in the street", "on the beach", "near the water", "in a field",
          "in the snow", "in a park", "on a bench")
TEMPLATES = (
    "{a} {color} {obj} is {action} {place}",
    "there is {a} {color} {obj} {action} {place}",
    "{a} {color} {obj} {action} {place}",
    "{place} {a} {color} {obj} is {action}",
)
# Rare words are replaced by <UNK>, as in the real vocabulary (which keeps 1000 words).
UNK_RATE = 0.02


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _vocabulary():
    words = {w for phrase in COLORS + OBJECTS + ACTIONS + PLACES + TEMPLATES for w in phrase.split()}
    words = {w for w in words if not w.startswith("{")} | {"a", "an"}
    idx_to_word = list(SPECIAL_TOKENS) + sorted(words)
    return idx_to_word, {w: i for i, w in enumerate(idx_to_word)}


def _caption_indices(content, template, word_to_idx, rng):
    color, obj, action, place = (COLORS[content[0]], OBJECTS[content[1]], ACTIONS[content[2]],
                                 PLACES[content[3]])
    sentence = template.format(a=_article(color), color=color, obj=obj, action=action, place=place)
    words = sentence.split()
    ids = [word_to_idx["<UNK>"] if rng.random() < UNK_RATE else word_to_idx[w] for w in words]
    row = np.full(CAPTION_LENGTH, word_to_idx["<NULL>"], dtype=np.int32)
    row[0] = word_to_idx["<START>"]
    row[1:len(ids) + 1] = ids
    row[len(ids) + 1] = word_to_idx["<END>"]
    return row


def _one_hot_content(contents):
    sizes = (len(COLORS), len(OBJECTS), len(ACTIONS), len(PLACES))
    codes = np.zeros((contents.shape[0], sum(sizes)), dtype=np.float64)
    offset = 0
    for slot, size in enumerate(sizes):
        codes[np.arange(contents.shape[0]), offset + contents[:, slot]] = 1.0
        offset += size
    return codes


def _write_h5(path, arrays):
    import h5py  # imported on use

    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


def write_builtin_coco(base_dir, seed=0, num_train_images=2000, num_val_images=500,
                       captions_per_image=3, feature_noise=0.5, fc7=True):
    """Write the built-in synthetic dataset into ``base_dir`` in the COCO layout.

    Parameters
    ----------
    base_dir : str or os.PathLike
        Created if missing; existing files of the layout are overwritten.
    seed : int
        Everything is drawn from ``np.random.default_rng(seed)``.
    num_train_images, num_val_images : int
        Images per split; each has ``captions_per_image`` caption rows.
    feature_noise : float
        Standard deviation of the Gaussian noise added to the unit-variance projection.
    fc7 : bool
        Also write the 4096-D ``*_vgg16_fc7.h5`` files used by ``pca_features=False``.

    Returns
    -------
    str : ``base_dir``, ready for :func:`fastrnn.coco_utils.load_coco_data`.
    """
    for name, value in (("num_train_images", num_train_images), ("num_val_images", num_val_images),
                        ("captions_per_image", captions_per_image)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if feature_noise < 0:
        raise ValueError(f"feature_noise must be >= 0, got {feature_noise!r}")
    base_dir = os.fspath(base_dir)
    os.makedirs(base_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    idx_to_word, word_to_idx = _vocabulary()
    code_dim = len(COLORS) + len(OBJECTS) + len(ACTIONS) + len(PLACES)
    # Each content has exactly 4 ones, so dividing by 2 gives projections of unit variance.
    projection_pca = rng.standard_normal((code_dim, 512)) / 2.0
    projection_fc7 = rng.standard_normal((code_dim, 4096)) / 2.0

    arrays, features = {}, {}
    for split, num_images in (("train", num_train_images), ("val", num_val_images)):
        sizes = (len(COLORS), len(OBJECTS), len(ACTIONS), len(PLACES))
        contents = np.stack([rng.integers(size, size=num_images) for size in sizes], axis=1)
        codes = _one_hot_content(contents)
        noise = rng.standard_normal((num_images, 512))
        features[split, "pca"] = (codes @ projection_pca + feature_noise * noise).astype(np.float32)
        if fc7:
            noise = rng.standard_normal((num_images, 4096))
            fc7_features = np.maximum(codes @ projection_fc7 + feature_noise * noise, 0.0)
            features[split, "fc7"] = fc7_features.astype(np.float32)
        image_idxs = np.repeat(np.arange(num_images, dtype=np.int32), captions_per_image)
        image_idxs = image_idxs[rng.permutation(image_idxs.shape[0])]
        templates = rng.integers(len(TEMPLATES), size=image_idxs.shape[0])
        captions = np.stack([_caption_indices(contents[i], TEMPLATES[k], word_to_idx, rng)
                             for i, k in zip(image_idxs, templates)])
        arrays[f"{split}_captions"] = captions
        arrays[f"{split}_image_idxs"] = image_idxs

    _write_h5(os.path.join(base_dir, CAPTION_FILE), arrays)
    for split, num_images in (("train", num_train_images), ("val", num_val_images)):
        _write_h5(os.path.join(base_dir, f"{split}2014_vgg16_fc7_pca.h5"),
                  {"features": features[split, "pca"]})
        if fc7:
            _write_h5(os.path.join(base_dir, f"{split}2014_vgg16_fc7.h5"),
                      {"features": features[split, "fc7"]})
        with open(os.path.join(base_dir, f"{split}2014_urls.txt"), "w", encoding="utf-8") as f:
            for i in range(num_images):
                # .invalid never resolves: these images exist only as features.
                f.write(f"http://fastrnn-builtin.invalid/{split}2014/{i:06d}.jpg\n")
    with open(os.path.join(base_dir, VOCAB_FILE), "w", encoding="utf-8") as f:
        json.dump({"idx_to_word": idx_to_word, "word_to_idx": word_to_idx}, f)
    return base_dir


def default_builtin_dir(seed=0):
    """Where :func:`ensure_builtin_coco` keeps the built-in data: the user's cache directory.

    ``$XDG_CACHE_HOME/fastrnn/builtin-v{version}-seed{seed}``, with ``~/.cache`` as the default
    cache home.
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "fastrnn", f"builtin-v{BUILTIN_VERSION}-seed{seed}")


def ensure_builtin_coco(base_dir=None, seed=0, **kwargs):
    """Write the built-in dataset into ``base_dir`` unless an identical one is already there.

    A marker file, written last, records the generator's version and arguments; if it is
    missing (say, an interrupted write) or differs, the data are written again.  A new
    directory is filled under a temporary name and renamed into place, so processes that
    call this at the same time on a fresh machine never read half-written files.  Keyword
    arguments are those of :func:`write_builtin_coco`.

    Returns
    -------
    str : the data directory (``base_dir``, default :func:`default_builtin_dir`).
    """
    base_dir = os.fspath(base_dir) if base_dir is not None else default_builtin_dir(seed)
    settings = {"version": BUILTIN_VERSION, "seed": seed, **kwargs}
    marker = os.path.join(base_dir, MARKER_FILE)
    try:
        with open(marker, "r", encoding="utf-8") as f:
            if json.load(f) == settings:
                return base_dir
    except (OSError, ValueError):
        pass
    if os.path.isdir(base_dir):  # stale or different settings: rewrite in place
        _write_with_marker(base_dir, settings, seed, kwargs)
        return base_dir
    parent = os.path.dirname(os.path.abspath(base_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".fastrnn-builtin-", dir=parent)
    try:
        _write_with_marker(staging, settings, seed, kwargs)
        os.rename(staging, base_dir)
    except OSError:
        if not os.path.isfile(marker):  # not another process that won the race: a real error
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return base_dir


def _write_with_marker(base_dir, settings, seed, kwargs):
    write_builtin_coco(base_dir, seed=seed, **kwargs)
    with open(os.path.join(base_dir, MARKER_FILE), "w", encoding="utf-8") as f:
        json.dump(settings, f)
