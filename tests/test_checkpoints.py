"""Checkpoint integrity and resume validation: every corrupted byte is reported before HDF5
parses the file (none loads, none hangs), old checkpoints without a digest load with a warning,
and a resume validates the whole file before it touches the model or the solver.

The corruption sweep tries ``FASTRNN_CORRUPTION_TRIES`` single-byte changes (default 1500;
the README's figures come from a run over every byte of the file).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from _captioning_helpers import builtin_data, builtin_dir, global_random_state  # noqa: F401
from _captioning_helpers import first_train_rows, small_model
from fastrnn.captioning_solver import (CaptioningSolver, CheckpointError, atomic_write_h5,
                                       read_checkpoint)
from fastrnn.classifiers.rnn import CaptioningRNN
from fastrnn.cli import main

CORRUPTION_TRIES = int(os.environ.get("FASTRNN_CORRUPTION_TRIES", "1500"))
SWEEP_TIMEOUT_S = 120


def _model(data, rng=0):
    return small_model(data, wordvec_dim=8, hidden_dim=12, rng=rng)


def _solver(data, **kwargs):
    return CaptioningSolver(_model(data), data, update_rule="adam", batch_size=50,
                            verbose=False, rng=0, **kwargs)


@pytest.fixture(scope="module")
def checkpoint(builtin_data, tmp_path_factory):
    """(path, data) of a checkpoint written after 2 epochs (4 iterations)."""
    data = first_train_rows(builtin_data, 100)  # two iterations per epoch
    directory = tmp_path_factory.mktemp("checkpoint")
    _solver(data, num_epochs=2, checkpoint_dir=directory).train()
    return os.path.join(directory, "checkpoint.h5"), data


def test_the_digest_header_is_checked_before_parsing(checkpoint, tmp_path):
    path, _ = checkpoint
    content = Path(path).read_bytes()
    assert content.startswith(b"fastrnn checkpoint\nsha256 ")
    assert content[512:520] == b"\x89HDF\r\n\x1a\n"  # HDF5 proper starts after the userblock
    with h5py.File(path, "r") as h5:  # still a plain HDF5 file for other tools
        assert h5.attrs["version"] == 3 and h5.attrs["format"] == "fastrnn-checkpoint"
        assert h5.attrs["model_kind"] == "CaptioningRNN" and h5.attrs["solver"] == "CaptioningSolver"
    # A change HDF5 would read without complaint (one weight) is caught by the digest.
    offset = content.find(read_checkpoint(path)["params"]["W_vocab"].tobytes())
    assert offset > 512
    damaged = bytearray(content)
    damaged[offset + 3] ^= 0x10
    bad = tmp_path / "one_weight.h5"
    bad.write_bytes(bytes(damaged))
    with h5py.File(bad, "r") as h5:
        assert not np.array_equal(h5["params/W_vocab"][()], read_checkpoint(path)["params"]["W_vocab"])
    with pytest.raises(CheckpointError, match=r"one_weight.h5.*is corrupt \(digest mismatch\)"):
        read_checkpoint(bad)


_SWEEP_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from fastrnn.captioning_solver import CheckpointError, read_checkpoint

    source, scratch, tries, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(source, "rb") as f:
        good = f.read()
    rng = np.random.default_rng(seed)
    if tries >= len(good):
        positions = np.arange(len(good))
    else:
        positions = rng.choice(len(good), size=tries, replace=False)
    cases = [("byte", int(p)) for p in positions]
    # Truncations and a zeroed block: damage of another kind.
    cases += [("truncate", int(n)) for n in rng.integers(0, len(good), size=20)]
    cases += [("zero_block", int(p)) for p in rng.integers(0, len(good) - 64, size=20)]
    counts = {"reported": 0, "loaded": 0, "other": 0}
    examples = {}
    slowest = 0.0
    for kind, where in cases:
        damaged = bytearray(good)
        if kind == "byte":
            damaged[where] = (damaged[where] + int(rng.integers(1, 256))) % 256
        elif kind == "truncate":
            del damaged[where:]
        else:
            damaged[where:where + 64] = bytes(64)
        if bytes(damaged) == good:
            continue
        with open(scratch, "wb") as f:
            f.write(damaged)
        start = time.perf_counter()
        try:
            read_checkpoint(scratch)
            outcome = "loaded"
        except CheckpointError as err:
            outcome = "reported"
            assert scratch in str(err), str(err)
        except Exception as err:
            outcome = "other"
            examples.setdefault(kind, f"{kind} {where}: {type(err).__name__}: {err}")
        slowest = max(slowest, time.perf_counter() - start)
        counts[outcome] += 1
        if outcome == "loaded":
            examples.setdefault("loaded", f"{kind} {where}")
    print(json.dumps({"counts": counts, "examples": examples, "slowest_s": slowest,
                      "size": len(good)}))
""")


def corruption_sweep(path, scratch, tries, seed=0, timeout=SWEEP_TIMEOUT_S):
    """Run the sweep in a child process, so that a read that hangs fails by the timeout."""
    done = subprocess.run([sys.executable, "-c", _SWEEP_CHILD, str(path), str(scratch),
                           str(tries), str(seed)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_corrupted_byte_is_reported_and_none_hangs(checkpoint, tmp_path):
    path, _ = checkpoint
    result = corruption_sweep(path, tmp_path / "damaged.h5", CORRUPTION_TRIES)
    counts = result["counts"]
    assert counts["loaded"] == 0 and counts["other"] == 0, result
    assert counts["reported"] >= min(CORRUPTION_TRIES, result["size"]) + 40 - 5  # few no-ops
    assert result["slowest_s"] < 5, result


def test_sample_reports_a_corrupt_checkpoint_in_one_line(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    content = bytearray(Path(path).read_bytes())
    content[len(content) // 2] ^= 0xFF
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(content))
    assert main(["sample", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "fastrnn sample: error: checkpoint" in err and "bad.h5" in err
    assert "is corrupt (digest mismatch)" in err and "Traceback" not in err


def _legacy_copy(path, target, version=1):
    """The checkpoint as version 1 wrote it: no userblock, no digest, no model kind (with
    version=2, what was inside version 2's digest: the test adds the header if it wants one)."""
    with h5py.File(path, "r") as source, h5py.File(target, "w") as copy:
        for name in source:
            source.copy(name, copy)
        copy.attrs.update(source.attrs)
        copy.attrs["format"] = "fastrnn-captioning-checkpoint"
        copy.attrs["version"] = version
        for name in ("model_kind", "solver"):
            del copy.attrs[name]
        del copy["json/model_config"]


def test_old_checkpoints_without_a_digest_load_with_a_warning(checkpoint, tmp_path):
    path, data = checkpoint
    legacy = tmp_path / "legacy.h5"
    _legacy_copy(path, legacy)
    with pytest.warns(UserWarning, match="legacy.h5.*digest"):
        old = read_checkpoint(legacy)
    new = read_checkpoint(path)
    for name, value in new["params"].items():
        np.testing.assert_array_equal(old["params"][name], value)
    with pytest.warns(UserWarning, match="digest"):
        resumed = _solver(data, num_epochs=3, resume=legacy)
    assert resumed.iteration == 4


def test_a_version_2_checkpoint_still_resumes(checkpoint, tmp_path):
    """Version 2 (a digest, no model kind or configuration) reads as a CaptioningRNN's."""
    path, data = checkpoint
    plain = tmp_path / "plain.h5"
    _legacy_copy(path, plain, version=2)
    old = _rewritten(plain, tmp_path / "v2.h5", lambda h5: None)  # with version 2's digest header
    stored = read_checkpoint(old)
    assert stored["attrs"]["version"] == 2 and stored["model_config"] is None
    resumed = _solver(data, num_epochs=3, resume=old)
    assert resumed.iteration == 4
    resumed.train()
    assert resumed.iteration == 6


def test_a_version_2_file_without_its_header_is_refused(checkpoint, tmp_path):
    path, _ = checkpoint
    stripped = tmp_path / "stripped.h5"
    _legacy_copy(path, stripped, version=2)
    with pytest.raises(CheckpointError, match="stripped.h5.*carry a digest header"):
        read_checkpoint(stripped)


def test_not_a_checkpoint_at_all(tmp_path):
    for name, content in (("empty.h5", b""), ("text.h5", b"hello world\n" * 100),
                          ("header_only.h5", b"fastrnn checkpoint\nsha256 00\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            read_checkpoint(tmp_path / name)


# --------------------------------------------------------------------------- resume validation
def _rewritten(path, target, mutate):
    """A copy of checkpoint ``path`` at ``target`` with ``mutate(h5file)`` applied, with a
    valid digest: what reaches the content checks is exactly the mutation."""
    with h5py.File(path, "r") as source:
        def write(copy):
            for name in source:
                source.copy(name, copy)
            copy.attrs.update(source.attrs)
            mutate(copy)

        atomic_write_h5(target, write)
    return target


def _set_attr(key, name, value):
    return lambda h5: h5[key].attrs.__setitem__(name, value)


def _replace_dataset(key, make):
    def mutate(h5):
        value = make(h5[key][()])
        del h5[key]
        h5.create_dataset(key, data=value)
    return mutate


MUTATIONS = {
    "no optim/Wh": (lambda h5: h5.__delitem__("optim/Wh"), "'optim/Wh'.*missing|optim/Wh"),
    "no epoch": (lambda h5: h5.attrs.__delitem__("epoch"), "'epoch'.*missing"),
    "no rng_kind": (lambda h5: h5.attrs.__delitem__("rng_kind"), "'rng_kind'.*missing"),
    "no rng state": (lambda h5: h5.__delitem__("json/rng_state"), "'json/rng_state' is missing"),
    "no val history": (lambda h5: h5.__delitem__("history/val_loss_history"),
                       "'history/val_loss_history' is missing"),
    "short loss history": (_replace_dataset("history/loss_history", lambda v: v[:-1]),
                           "'history/loss_history' has 3 entries"),
    "m of the wrong shape": (_replace_dataset("optim/Wx/m", lambda v: v[:1]),
                             r"'optim/Wx/m'.*shape"),
    "v < 0": (_replace_dataset("optim/Wh/v", lambda v: -1 - v), r"'optim/Wh/v'.*>= 0"),
    "NaN in m": (_replace_dataset("optim/b/m", lambda v: v * np.nan), r"'optim/b/m'.*finite"),
    "unknown array state": (lambda h5: h5.create_dataset("optim/b/momentum2", data=np.zeros(48)),
                            "'optim/b/momentum2'"),
    "no Adam t": (lambda h5: h5["optim/Wx"].attrs.__delitem__("t"), "'optim/Wx/t' is missing"),
    "NaN learning rate": (_set_attr("optim/Wx", "learning_rate", np.nan),
                          "'optim/Wx/learning_rate'.*nan"),
    "negative learning rate": (_set_attr("optim/W_embed", "learning_rate", -1e-3),
                               "'optim/W_embed/learning_rate'"),
    "beta1 = 1": (_set_attr("optim/Wx", "beta1", 1.0), r"'optim/Wx/beta1'.*\[0, 1\)"),
    "t < 0": (_set_attr("optim/Wx", "t", -3), "'optim/Wx/t'.*>= 0"),
    "t not an integer": (_set_attr("optim/Wx", "t", 2.5), "'optim/Wx/t'"),
    "iteration -5": (_set_attr("/", "iteration", -5), "'iteration'.*-5"),
    "version 999": (_set_attr("/", "version", 999), "'version'.*999"),
    "unknown rng kind": (_set_attr("/", "rng_kind", "quantum"), "'rng_kind'.*quantum"),
    "unknown update rule": (_set_attr("/", "update_rule", "lion"), "'update_rule'.*lion"),
    "unknown cell type": (_set_attr("/", "cell_type", "gru"), "'cell_type'.*gru"),
    "rng state not JSON": (_replace_dataset("json/rng_state", lambda v: "{oops"),
                           "'json/rng_state' is not valid JSON"),
    "rng state of another generator": (
        _replace_dataset("json/rng_state", lambda v: json.dumps({"bit_generator": "Quantum"})),
        "'json/rng_state' is not a valid generator random state"),
    "rng key too short": (
        _replace_dataset("json/rng_state", lambda v: json.dumps(
            {**json.loads(v), "state": {"state": "x", "inc": 1}})),
        "'json/rng_state' is not a valid generator random state"),
    "NaN weights": (_replace_dataset("params/Wx", lambda v: v * np.nan), "'params/Wx'.*non-finite"),
    "int weights": (_replace_dataset("params/b", lambda v: v.astype(np.int32)), "'params/b'"),
    "vocabulary not a dict": (_replace_dataset("json/word_to_idx", lambda v: "[1, 2]"),
                              "'json/word_to_idx'"),
    "iteration fewer than epochs": (_set_attr("/", "iteration", 1), "'iteration' is 1"),
    "no model kind": (lambda h5: h5.attrs.__delitem__("model_kind"), "'model_kind'.*missing"),
    "unknown solver": (_set_attr("/", "solver", "Trainer"), "'solver'.*Trainer"),
    "version 2 in the new format": (_set_attr("/", "version", 2), "'version' is 2, but format"),
    "model config not an object": (_replace_dataset("json/model_config", lambda v: "[1]"),
                                   "'json/model_config' should be a JSON object"),
    "no model config": (lambda h5: h5.__delitem__("json/model_config"),
                        "'json/model_config' is missing"),
    "a history of another solver": (
        lambda h5: h5.create_dataset("history/val_mcc_history", data=np.zeros(2)),
        "'history/val_mcc_history' is not a history this checkpoint's solver keeps"),
    "best_params of another shape": (
        lambda h5: [h5.copy("params", "best_params"), h5.__delitem__("best_params/b"),
                    h5.create_dataset("best_params/b", data=np.zeros(3))],
        "'best_params/b' should be a"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_resume_validates_everything_before_touching_anything(checkpoint, tmp_path, mutation,
                                                              global_random_state):
    path, data = checkpoint
    mutate, expected = MUTATIONS[mutation]
    bad = _rewritten(path, tmp_path / "bad.h5", mutate)
    model = _model(data, rng=5)
    before = dict(model.params)
    random_state = np.random.get_state(legacy=False)
    with pytest.raises(CheckpointError, match=expected) as info:
        CaptioningSolver(model, data, update_rule="adam", batch_size=50, num_epochs=3,
                         verbose=False, resume=bad)
    assert "bad.h5" in str(info.value)
    assert all(model.params[name] is value for name, value in before.items())
    after = np.random.get_state(legacy=False)
    assert after["state"]["pos"] == random_state["state"]["pos"]
    np.testing.assert_array_equal(after["state"]["key"], random_state["state"]["key"])
    # An existing solver is not touched either.
    solver = _solver(data, num_epochs=3)
    with pytest.raises(CheckpointError):
        solver.load_checkpoint(bad)
    assert solver.iteration == 0 and solver.loss_history == []
    assert all(model.params[name] is value for name, value in before.items())


def test_an_unmutated_rewrite_resumes(checkpoint, tmp_path):
    """The control of the test above: the rewriting itself keeps a valid checkpoint."""
    path, data = checkpoint
    same = _rewritten(path, tmp_path / "same.h5", lambda h5: None)
    solver = _solver(data, num_epochs=3, resume=same)
    assert solver.iteration == 4 and solver.epoch == 2
    solver.train()
    assert solver.iteration == 6


@pytest.mark.parametrize("change, expected", [
    (dict(update_rule="sgd"), "update_rule"),
    (dict(batch_size=25), "batch_size"),
    (dict(model=dict(cell_type="rnn")), "cell_type='lstm'; this model has cell_type='rnn'"),
    (dict(model=dict(hidden_dim=13)), "hidden_dim=12; this model has hidden_dim=13"),
    (dict(model=dict(dtype=np.float64)), "float64"),
    (dict(data_rows=150), "3 iterations per epoch"),
])
def test_resume_refuses_a_checkpoint_of_another_model_solver_or_data(checkpoint, change,
                                                                     expected):
    path, data = checkpoint
    model_options = dict(wordvec_dim=8, hidden_dim=12, cell_type="lstm", rng=0)
    model_options.update(change.get("model", {}))
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          **model_options)
    if "data_rows" in change:
        data = dict(data, train_captions=np.concatenate([data["train_captions"]] * 2)[:150],
                    train_image_idxs=np.concatenate([data["train_image_idxs"]] * 2)[:150])
    kwargs = dict(update_rule="adam", batch_size=50)
    kwargs.update({k: v for k, v in change.items() if k in kwargs})
    before = dict(model.params)
    with pytest.raises(ValueError, match=expected):
        CaptioningSolver(model, data, verbose=False, resume=path, **kwargs)
    assert all(model.params[name] is value for name, value in before.items())


def test_a_dataset_declaring_more_than_the_file_is_refused(checkpoint, tmp_path):
    """Only reachable in an old (digest-less) file: a dimension damaged to a huge size."""
    path, _ = checkpoint
    legacy = tmp_path / "huge.h5"
    _legacy_copy(path, legacy)
    with h5py.File(legacy, "r+") as h5:
        del h5["history/val_bleu_history"]
        h5.create_dataset("history/val_bleu_history", shape=(10 ** 12,), dtype=np.float64,
                          chunks=(1024,))
    # Refused while reading, before the missing digest is warned about.
    with pytest.raises(CheckpointError, match=r"huge.h5.*'history/val_bleu_history' declares"):
        read_checkpoint(legacy)
