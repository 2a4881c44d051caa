"""The built-in dataset: exact COCO layout, determinism, features that determine captions."""
import json
import os
import time

import h5py
import numpy as np
import pytest

from fastrnn.coco_utils import decode_captions, load_coco_data
from fastrnn.datasets import (CAPTION_LENGTH, OBJECTS, SPECIAL_TOKENS, default_builtin_dir,
                              ensure_builtin_coco, write_builtin_coco)

LAYOUT = ["coco2014_captions.h5", "coco2014_vocab.json", "train2014_urls.txt",
          "train2014_vgg16_fc7.h5", "train2014_vgg16_fc7_pca.h5", "val2014_urls.txt",
          "val2014_vgg16_fc7.h5", "val2014_vgg16_fc7_pca.h5"]
SMALL = dict(num_train_images=300, num_val_images=100, captions_per_image=2)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("builtin")
    start = time.process_time()
    write_builtin_coco(base_dir, seed=3, **SMALL)
    return base_dir, time.process_time() - start


def test_files_are_exactly_the_coco_layout(written):
    base_dir, _ = written
    assert sorted(os.listdir(base_dir)) == LAYOUT
    with h5py.File(base_dir / "coco2014_captions.h5", "r") as f:
        assert sorted(f) == ["train_captions", "train_image_idxs", "val_captions", "val_image_idxs"]
        assert f["train_captions"].dtype == np.int32 and f["train_captions"].shape == (600, 17)
        assert f["val_image_idxs"].dtype == np.int32 and f["val_image_idxs"].shape == (200,)
    for split, count in (("train", 300), ("val", 100)):
        for suffix, dim in (("_pca", 512), ("", 4096)):
            with h5py.File(base_dir / f"{split}2014_vgg16_fc7{suffix}.h5", "r") as f:
                assert list(f) == ["features"]
                assert f["features"].shape == (count, dim) and f["features"].dtype == np.float32
    with open(base_dir / "coco2014_vocab.json") as f:
        assert list(json.load(f)) == ["idx_to_word", "word_to_idx"]


def test_loads_and_is_well_formed(written):
    base_dir, _ = written
    data = load_coco_data(base_dir)
    assert data["idx_to_word"][:4] == list(SPECIAL_TOKENS) == ["<NULL>", "<START>", "<END>", "<UNK>"]
    null, start, end = 0, 1, 2
    for split in ("train", "val"):
        captions = data[f"{split}_captions"]
        assert captions.shape[1] == CAPTION_LENGTH
        assert (captions[:, 0] == start).all()
        for row in captions:
            end_at = np.flatnonzero(row == end)
            assert end_at.size == 1 and (row[end_at[0] + 1:] == null).all()
            assert (row[1:end_at[0]] > end).all()  # words, maybe <UNK>, never <NULL>/<START>
        assert data[f"{split}_urls"].shape[0] == data[f"{split}_features"].shape[0]
    assert (data["train_image_idxs"] < 300).all()
    assert set(np.bincount(data["train_image_idxs"])) == {2}  # captions_per_image
    fc7 = load_coco_data(base_dir, pca_features=False)["train_features"]
    assert fc7.shape == (300, 4096) and fc7.min() >= 0  # rectified, like VGG fc7


def test_deterministic_for_a_seed(written, tmp_path):
    base_dir, _ = written
    write_builtin_coco(tmp_path / "again", seed=3, **SMALL)
    write_builtin_coco(tmp_path / "other", seed=4, **SMALL)
    ours, again, other = (load_coco_data(d) for d in (base_dir, tmp_path / "again",
                                                      tmp_path / "other"))
    for key, value in ours.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(again[key], value, err_msg=key)
    assert not np.array_equal(other["train_captions"], ours["train_captions"])
    assert not np.array_equal(other["train_features"], ours["train_features"])


def test_image_features_determine_the_caption_content(written):
    # A linear read-out of the features, fitted on train, names the object of val captions.
    base_dir, _ = written
    data = load_coco_data(base_dir)

    def object_labels(split):
        labels = np.full(data[f"{split}_features"].shape[0], -1)
        for caption, image in zip(decode_captions(data[f"{split}_captions"], data["idx_to_word"]),
                                  data[f"{split}_image_idxs"]):
            found = [i for i, obj in enumerate(OBJECTS) if obj in caption.split()]
            if found:
                labels[image] = found[0]
        return labels

    train_y, val_y = object_labels("train"), object_labels("val")
    X = data["train_features"][train_y >= 0]
    targets = np.eye(len(OBJECTS))[train_y[train_y >= 0]]
    weights, *_ = np.linalg.lstsq(X, targets, rcond=None)
    predicted = np.argmax(data["val_features"] @ weights, axis=1)
    accuracy = np.mean(predicted[val_y >= 0] == val_y[val_y >= 0])
    assert accuracy > 0.9  # chance is 0.1


def test_generated_in_seconds(written):
    _, cpu_seconds = written
    assert cpu_seconds < 5


def test_ensure_writes_once_and_rewrites_on_change(tmp_path):
    base_dir = tmp_path / "cache"
    assert ensure_builtin_coco(base_dir, seed=1, **SMALL, fc7=False) == str(base_dir)
    marker_mtime = os.stat(base_dir / "fastrnn_builtin.json").st_mtime_ns
    captions_mtime = os.stat(base_dir / "coco2014_captions.h5").st_mtime_ns
    ensure_builtin_coco(base_dir, seed=1, **SMALL, fc7=False)
    assert os.stat(base_dir / "coco2014_captions.h5").st_mtime_ns == captions_mtime
    ensure_builtin_coco(base_dir, seed=2, **SMALL, fc7=False)  # other settings: rewritten
    assert os.stat(base_dir / "fastrnn_builtin.json").st_mtime_ns != marker_mtime
    os.remove(base_dir / "fastrnn_builtin.json")  # an interrupted write: rewritten too
    os.remove(base_dir / "val2014_urls.txt")
    ensure_builtin_coco(base_dir, seed=2, **SMALL, fc7=False)
    assert load_coco_data(base_dir)["val_urls"].shape == (100,)


def test_default_dir_is_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_builtin_dir(5).startswith(os.path.join(str(tmp_path), "fastrnn"))
    assert default_builtin_dir(5).endswith("seed5")


@pytest.mark.parametrize("kwargs, name", [({"num_train_images": 0}, "num_train_images"),
                                          ({"captions_per_image": 1.5}, "captions_per_image"),
                                          ({"feature_noise": -1.0}, "feature_noise")])
def test_rejects_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        write_builtin_coco(tmp_path, **kwargs)
    assert os.listdir(tmp_path) == []


def test_ensure_fills_a_new_directory_atomically(tmp_path, monkeypatch):
    import fastrnn.datasets as datasets

    base_dir = tmp_path / "fresh"
    seen = []
    real_write = datasets.write_builtin_coco

    def watching_write(directory, **kwargs):
        seen.append(os.path.exists(base_dir))  # the final name must not exist mid-write
        return real_write(directory, **kwargs)

    monkeypatch.setattr(datasets, "write_builtin_coco", watching_write)
    ensure_builtin_coco(base_dir, seed=1, **SMALL, fc7=False)
    assert seen == [False]
    assert sorted(os.listdir(tmp_path)) == ["fresh"]  # no staging directory left behind
    assert load_coco_data(base_dir)["train_captions"].shape == (600, 17)


def test_ensure_accepts_a_directory_another_process_finished_first(tmp_path, monkeypatch):
    import fastrnn.datasets as datasets

    base_dir = tmp_path / "raced"
    real_write = datasets.write_builtin_coco

    def racing_write(directory, **kwargs):
        real_write(directory, **kwargs)
        if not os.path.exists(base_dir):  # the other process renames its copy in first
            monkeypatch.setattr(datasets, "write_builtin_coco", real_write)
            ensure_builtin_coco(base_dir, seed=1, **SMALL, fc7=False)

    monkeypatch.setattr(datasets, "write_builtin_coco", racing_write)
    assert ensure_builtin_coco(base_dir, seed=1, **SMALL, fc7=False) == str(base_dir)
    assert sorted(os.listdir(tmp_path)) == ["raced"]
    assert load_coco_data(base_dir)["val_urls"].shape == (100,)
