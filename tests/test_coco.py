"""fastrnn.coco_utils: round trip of files written here in the classic layout, errors naming
the file and the key, minibatches and caption decoding."""
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from _captioning_helpers import global_random_state  # noqa: F401 (a fixture)
from fastrnn.coco_utils import (COCO_DIR_ENV, CocoFormatError, decode_captions, load_coco_data,
                                sample_coco_minibatch)

IDX_TO_WORD = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat", "dog", "sits"]
KEY_ORDER = ["train_captions", "train_image_idxs", "val_captions", "val_image_idxs",
             "train_features", "val_features", "idx_to_word", "word_to_idx", "train_urls",
             "val_urls"]


def write_classic_layout(base_dir, rng, num_images=(6, 4), captions_per_image=2, T=17,
                         pca_dim=512, fc7_dim=4096):
    """Write the classic files with h5py/json directly (not with fastrnn.datasets)."""
    os.makedirs(base_dir, exist_ok=True)
    arrays, features = {}, {}
    for split, count in zip(("train", "val"), num_images):
        n = count * captions_per_image
        captions = rng.integers(4, len(IDX_TO_WORD), size=(n, T)).astype(np.int32)
        captions[:, 0], captions[:, -1] = 1, 2
        arrays[f"{split}_captions"] = captions
        arrays[f"{split}_image_idxs"] = rng.integers(count, size=n).astype(np.int32)
        features[split] = (rng.standard_normal((count, pca_dim)).astype(np.float32),
                           rng.standard_normal((count, fc7_dim)).astype(np.float32))
    with h5py.File(os.path.join(base_dir, "coco2014_captions.h5"), "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    for split, count in zip(("train", "val"), num_images):
        for suffix, value in zip(("_pca", ""), features[split]):
            with h5py.File(os.path.join(base_dir, f"{split}2014_vgg16_fc7{suffix}.h5"), "w") as f:
                f.create_dataset("features", data=value)
        with open(os.path.join(base_dir, f"{split}2014_urls.txt"), "w") as f:
            f.writelines(f"http://images.example/{split}/{i}.jpg\n" for i in range(count))
    with open(os.path.join(base_dir, "coco2014_vocab.json"), "w") as f:
        json.dump({"idx_to_word": IDX_TO_WORD,
                   "word_to_idx": {w: i for i, w in enumerate(IDX_TO_WORD)}}, f)
    return arrays, features


@pytest.fixture
def classic_dir(tmp_path, rng):
    arrays, features = write_classic_layout(tmp_path / "coco", rng, pca_dim=16, fc7_dim=32)
    return tmp_path / "coco", arrays, features


def test_round_trip_of_the_classic_layout(classic_dir):
    base_dir, arrays, features = classic_dir
    data = load_coco_data(base_dir)
    assert list(data) == KEY_ORDER
    for key, value in arrays.items():
        np.testing.assert_array_equal(data[key], value)
        assert data[key].dtype == np.int32
    np.testing.assert_array_equal(data["train_features"], features["train"][0])
    np.testing.assert_array_equal(data["val_features"], features["val"][0])
    assert data["train_features"].dtype == np.float32
    assert data["idx_to_word"] == IDX_TO_WORD
    assert data["word_to_idx"]["sits"] == 7
    assert list(data["train_urls"][:2]) == ["http://images.example/train/0.jpg",
                                           "http://images.example/train/1.jpg"]
    assert data["val_urls"].shape == (4,)


def test_fc7_features_without_pca(classic_dir):
    base_dir, _, features = classic_dir
    data = load_coco_data(base_dir, pca_features=False)
    np.testing.assert_array_equal(data["train_features"], features["train"][1])
    assert data["val_features"].shape == (4, 32)


def test_base_dir_from_the_environment(classic_dir, monkeypatch):
    base_dir, arrays, _ = classic_dir
    monkeypatch.setenv(COCO_DIR_ENV, str(base_dir))
    np.testing.assert_array_equal(load_coco_data()["val_captions"], arrays["val_captions"])


def test_classic_relative_location_is_the_last_resort(classic_dir, monkeypatch, tmp_path):
    base_dir, arrays, _ = classic_dir
    monkeypatch.delenv(COCO_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=os.path.join("cs231n", "datasets", "coco_captioning")):
        load_coco_data()
    os.makedirs(tmp_path / "cs231n" / "datasets")
    os.rename(base_dir, tmp_path / "cs231n" / "datasets" / "coco_captioning")
    np.testing.assert_array_equal(load_coco_data()["val_captions"], arrays["val_captions"])


def test_max_train_subsamples_with_replacement(classic_dir, global_random_state):
    base_dir, arrays, _ = classic_dir
    data = load_coco_data(base_dir, max_train=40, rng=0)
    assert data["train_captions"].shape == (40, 17)
    # Every kept row is an original (caption, image) pair, and with 12 rows some repeat.
    pairs = {(tuple(c), int(i)) for c, i in zip(arrays["train_captions"], arrays["train_image_idxs"])}
    kept = [(tuple(c), int(i)) for c, i in zip(data["train_captions"], data["train_image_idxs"])]
    assert set(kept) <= pairs and len(set(kept)) < 40
    again = load_coco_data(base_dir, max_train=40, rng=0)
    np.testing.assert_array_equal(again["train_captions"], data["train_captions"])
    # Default: the global stream, as the classic loader.
    np.random.seed(0)
    first = load_coco_data(base_dir, max_train=5)["train_image_idxs"]
    np.random.seed(0)
    np.testing.assert_array_equal(load_coco_data(base_dir, max_train=5)["train_image_idxs"], first)


@pytest.mark.parametrize("missing", ["coco2014_captions.h5", "train2014_vgg16_fc7_pca.h5",
                                     "val2014_vgg16_fc7_pca.h5", "coco2014_vocab.json",
                                     "train2014_urls.txt", "val2014_urls.txt"])
def test_missing_file_is_named(classic_dir, missing):
    base_dir, _, _ = classic_dir
    os.remove(base_dir / missing)
    with pytest.raises(FileNotFoundError, match=missing):
        load_coco_data(base_dir)


def test_corrupt_hdf5_file_is_named(classic_dir):
    base_dir, _, _ = classic_dir
    (base_dir / "val2014_vgg16_fc7_pca.h5").write_bytes(b"\x89HDF truncated garbage")
    with pytest.raises(CocoFormatError, match="val2014_vgg16_fc7_pca.h5"):
        load_coco_data(base_dir)


def _rewrite_h5(path, changes):
    with h5py.File(path, "r") as f:
        content = {k: np.asarray(v) for k, v in f.items()}
    content.update(changes)
    with h5py.File(path, "w") as f:
        for key, value in content.items():
            if value is not None:
                f.create_dataset(key, data=value)


@pytest.mark.parametrize("key", ["train_captions", "train_image_idxs", "val_captions",
                                 "val_image_idxs"])
def test_missing_caption_key_is_named(classic_dir, key):
    base_dir, _, _ = classic_dir
    _rewrite_h5(base_dir / "coco2014_captions.h5", {key: None})
    with pytest.raises(CocoFormatError, match=f"coco2014_captions.h5.*'{key}'"):
        load_coco_data(base_dir)


def test_wrong_feature_key_is_named(classic_dir):
    base_dir, _, _ = classic_dir
    path = base_dir / "train2014_vgg16_fc7_pca.h5"
    _rewrite_h5(path, {"feats": np.zeros((6, 16), np.float32), "features": None})
    with pytest.raises(CocoFormatError, match="train2014_vgg16_fc7_pca.h5.*'features'.*feats"):
        load_coco_data(base_dir)


@pytest.mark.parametrize("file, key, bad, expected", [
    ("coco2014_captions.h5", "train_captions", np.zeros(12, np.int32), r"2-D int.*\(12,\)"),
    ("coco2014_captions.h5", "val_captions", np.zeros((8, 17), np.float32), "2-D int.*float32"),
    ("coco2014_captions.h5", "val_image_idxs", np.zeros(3, np.int32), "3 rows.*8"),
    ("coco2014_captions.h5", "val_image_idxs", np.full(8, 4, np.int32), r"\[0, 4\)"),
    ("train2014_vgg16_fc7_pca.h5", "features", np.zeros((6, 16), np.int64), "2-D float.*int64"),
    ("val2014_vgg16_fc7_pca.h5", "features", np.zeros((4, 2, 8), np.float32), r"\(4, 2, 8\)"),
])
def test_wrong_shape_or_dtype_is_named(classic_dir, file, key, bad, expected):
    base_dir, _, _ = classic_dir
    _rewrite_h5(base_dir / file, {key: bad})
    with pytest.raises(CocoFormatError, match=f"{file}.*'{key}'.*{expected}|{file}.*{expected}"):
        load_coco_data(base_dir)


@pytest.mark.parametrize("vocab, expected", [
    ("{not json", "not valid JSON"),
    (json.dumps({"idx_to_word": IDX_TO_WORD}), "'word_to_idx'"),
    (json.dumps({"idx_to_word": IDX_TO_WORD, "word_to_idx": {"<NULL>": 1}}), "do not match"),
    (json.dumps({"idx_to_word": IDX_TO_WORD[:5],
                 "word_to_idx": {w: i for i, w in enumerate(IDX_TO_WORD[:5])}}), r"outside \[0, 5\)"),
])
def test_bad_vocabulary_is_named(classic_dir, vocab, expected):
    base_dir, _, _ = classic_dir
    (base_dir / "coco2014_vocab.json").write_text(vocab)
    with pytest.raises(CocoFormatError, match=expected) as info:
        load_coco_data(base_dir)
    assert "coco2014" in str(info.value)


def test_url_count_must_match_features(classic_dir):
    base_dir, _, _ = classic_dir
    with open(base_dir / "val2014_urls.txt", "a") as f:
        f.write("http://images.example/extra.jpg\n")
    with pytest.raises(CocoFormatError, match=r"val2014_urls.txt' has 5 URLs.*\(4\)"):
        load_coco_data(base_dir)


def test_sample_coco_minibatch_pairs_captions_with_their_images(classic_dir, rng):
    base_dir, _, _ = classic_dir
    data = load_coco_data(base_dir)
    captions, features, urls = sample_coco_minibatch(data, batch_size=50, split="val", rng=rng)
    assert captions.shape == (50, 17) and features.shape == (50, 16) and urls.shape == (50,)
    rows = {tuple(c): i for c, i in zip(data["val_captions"], data["val_image_idxs"])}
    for caption, feature, url in zip(captions, features, urls):
        image = rows[tuple(caption)]
        np.testing.assert_array_equal(feature, data["val_features"][image])
        assert url == data["val_urls"][image]
    with pytest.raises(ValueError, match="split"):
        sample_coco_minibatch(data, split="test")


def test_decode_captions():
    idx_to_word = IDX_TO_WORD
    captions = np.array([[1, 4, 5, 0, 7, 2, 6, 6], [4, 6, 7, 7, 0, 0, 0, 0]])
    assert decode_captions(captions, idx_to_word) == ["<START> a cat sits <END>",
                                                      "a dog sits sits"]
    assert decode_captions(captions[0], idx_to_word) == "<START> a cat sits <END>"
    as_dict = dict(enumerate(idx_to_word))
    assert decode_captions(captions, as_dict) == decode_captions(captions, idx_to_word)


# ------------------------------------------------------------------------ damaged data files
_FLIP_CHILD = textwrap.dedent("""
    import json, shutil, sys
    import numpy as np
    from fastrnn.coco_utils import CocoFormatError, load_coco_data

    base_dir, name, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
    path = f"{base_dir}/{name}"
    with open(path, "rb") as f:
        good = f.read()
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "named": 0, "bare": []}
    for _ in range(tries):
        damaged = bytearray(good)
        for position in rng.choice(len(good), size=3, replace=False):
            damaged[position] ^= 1 << int(rng.integers(8))
        with open(path, "wb") as f:
            f.write(damaged)
        try:
            load_coco_data(base_dir)
            outcomes["loaded"] += 1
        except (CocoFormatError, ValueError) as err:
            assert name in str(err), str(err)
            outcomes["named"] += 1
        except Exception as err:
            outcomes["bare"].append(f"{type(err).__name__}: {err}")
    print(json.dumps(outcomes))
""")


@pytest.mark.parametrize("name", ["coco2014_captions.h5", "val2014_vgg16_fc7_pca.h5"])
def test_bit_flipped_hdf5_files_fail_with_the_file_named(classic_dir, name):
    """Three random bit flips per try (HDF5 data files carry no digest: a flip in the numbers
    loads; any failure must name the file).  In a child process, bounded by a timeout."""
    base_dir, _, _ = classic_dir
    done = subprocess.run([sys.executable, "-c", _FLIP_CHILD, str(base_dir), name, "150"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(done.stdout)
    assert outcomes["bare"] == [], outcomes["bare"][:5]
    assert outcomes["named"] > 0


def _write_vocab(base_dir, text):
    (base_dir / "coco2014_vocab.json").write_text(text)


@pytest.mark.parametrize("vocab, expected", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps({"idx_to_word": IDX_TO_WORD[:4] + [["a"]] + IDX_TO_WORD[5:],
                 "word_to_idx": {w: i for i, w in enumerate(IDX_TO_WORD)}}),
     "'idx_to_word' entry 4 should be a string, got list"),
    (json.dumps({"idx_to_word": IDX_TO_WORD,
                 "word_to_idx": {**{w: i for i, w in enumerate(IDX_TO_WORD)}, "cat": "5"}}),
     "'word_to_idx' entry 'cat' should be an integer"),
    (json.dumps({"idx_to_word": ["<NULL>", "<END>", "<UNK>", "a", "cat", "dog", "sits", "x"],
                 "word_to_idx": {w: i for i, w in enumerate(
                     ["<NULL>", "<END>", "<UNK>", "a", "cat", "dog", "sits", "x"])}}),
     "no '<START>' token"),
])
def test_damaged_vocabularies_are_named(classic_dir, vocab, expected):
    base_dir, _, _ = classic_dir
    _write_vocab(base_dir, vocab)
    with pytest.raises(CocoFormatError, match=f"coco2014_vocab.json.*{expected}"):
        load_coco_data(base_dir)


def test_a_non_utf8_url_file_is_named(classic_dir):
    base_dir, _, _ = classic_dir
    (base_dir / "train2014_urls.txt").write_bytes(b"http://images.example/\xff\xfe.jpg\n" * 6)
    with pytest.raises(CocoFormatError, match="train2014_urls.txt' is not UTF-8"):
        load_coco_data(base_dir)


def test_a_dataset_declared_huge_is_refused_before_it_is_read(classic_dir):
    base_dir, _, _ = classic_dir
    path = base_dir / "coco2014_captions.h5"
    with h5py.File(path, "r+") as f:
        del f["val_captions"]
        f.create_dataset("val_captions", shape=(10 ** 6, 17), dtype=np.int32, chunks=(64, 17))
    with pytest.raises(CocoFormatError, match=r"coco2014_captions.h5.*'val_captions' declares"):
        load_coco_data(base_dir)
    with h5py.File(path, "r+") as f:
        del f["val_captions"]
        f.create_dataset("val_captions", shape=(10 ** 13, 17), dtype=np.int32, chunks=(64, 17),
                         compression="gzip")  # compressed: only the memory bound applies
    with pytest.raises(ValueError, match=r"coco2014_captions.h5.*'val_captions'.*more than this "
                                         r"machine's memory"):
        load_coco_data(base_dir)


@pytest.mark.parametrize("file, key, bad, expected", [
    ("val2014_vgg16_fc7_pca.h5", "features", np.zeros((4, 8), np.float32),
     "features are 8-D but the train features are 16-D"),
    ("coco2014_captions.h5", "train_captions", np.zeros((0, 17), np.int32), "train_captions is empty"),
    ("coco2014_captions.h5", "val_captions", np.ones((8, 1), np.int32), "val_captions has 1 column"),
    ("train2014_vgg16_fc7_pca.h5", "features", np.zeros((0, 16), np.float32), "'features' is empty"),
])
def test_inconsistent_files_are_refused_at_load_time(classic_dir, file, key, bad, expected):
    base_dir, _, _ = classic_dir
    changes = {key: bad}
    if key == "train_captions":
        changes["train_image_idxs"] = np.zeros(0, np.int32)
    _rewrite_h5(base_dir / file, changes)
    with pytest.raises(CocoFormatError, match=f"{file}.*{expected}"):
        load_coco_data(base_dir)


def test_max_train_beyond_memory_is_refused(classic_dir):
    base_dir, _, _ = classic_dir
    with pytest.raises(ValueError, match="max_train=10000000000000 needs .* more than this "
                                         "machine's memory"):
        load_coco_data(base_dir, max_train=10 ** 13)
    with pytest.raises(ValueError, match="max_train must be an integer >= 1, got 0"):
        load_coco_data(base_dir, max_train=0)
