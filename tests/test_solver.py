"""CaptioningSolver: classic behaviour, argument checks, clipping, validation, checkpoints."""
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from _captioning_helpers import builtin_data, builtin_dir  # noqa: F401 (fixtures)
from _captioning_helpers import global_random_state  # noqa: F401 (a fixture)
from _captioning_helpers import first_train_rows as _small
from _captioning_helpers import small_model as _model
from fastrnn.captioning_solver import (CaptioningSolver, atomic_write_h5, clip_grad_norm,
                                       read_checkpoint)

def test_rejects_unknown_kwargs_and_update_rules(builtin_data):
    model = _model(builtin_data)
    with pytest.raises(ValueError, match='"learning_rate"'):
        CaptioningSolver(model, builtin_data, learning_rate=1e-3)
    with pytest.raises(ValueError, match='"nesterov"'):
        CaptioningSolver(model, builtin_data, update_rule="nesterov")
    with pytest.raises(ValueError, match="update_rule"):
        CaptioningSolver(model, builtin_data, update_rule="__doc__")
    with pytest.raises(ValueError, match="batch_size"):
        CaptioningSolver(model, builtin_data, batch_size=0)
    with pytest.raises(ValueError, match="grad_clip"):
        CaptioningSolver(model, builtin_data, grad_clip=-1.0)


def test_classic_loop_iterations_prints_and_lr_decay(builtin_data, capsys):
    data = _small(builtin_data, 130)  # 130 // 50 = 2 iterations per epoch
    solver = CaptioningSolver(_model(data), data, update_rule="adam", batch_size=50,
                              num_epochs=3, optim_config={"learning_rate": 1e-2}, lr_decay=0.5,
                              print_every=2, rng=0)
    solver.train()
    assert len(solver.loss_history) == 6 and solver.epoch == 3 and solver.iteration == 6
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("(Iteration")]
    assert [line.split(")")[0] for line in lines] == ["(Iteration 1 / 6", "(Iteration 3 / 6",
                                                     "(Iteration 5 / 6"]
    assert lines[0] == "(Iteration 1 / 6) loss: %f" % solver.loss_history[0]
    for config in solver.optim_configs.values():
        assert config["learning_rate"] == 1e-2 * 0.5 ** 3
        assert config["t"] == 6
    # Per-parameter copies: the caller's optim_config is never the parameters' state.
    assert solver.optim_config == {"learning_rate": 1e-2}
    assert len({id(c) for c in solver.optim_configs.values()}) == len(solver.optim_configs)


def test_quiet_solver_prints_nothing(builtin_data, capsys):
    data = _small(builtin_data, 100)
    CaptioningSolver(_model(data), data, batch_size=50, num_epochs=1, verbose=False, rng=0).train()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_default_stream_is_the_global_one(builtin_data, global_random_state):
    data = _small(builtin_data, 100)
    runs = []
    for _ in range(2):
        np.random.seed(3)
        solver = CaptioningSolver(_model(data), data, update_rule="sgd", batch_size=25,
                                  num_epochs=1, verbose=False)
        solver.train()
        runs.append(solver.loss_history)
    assert runs[0] == runs[1]
    np.random.seed(4)
    other = CaptioningSolver(_model(data), data, batch_size=25, num_epochs=1, verbose=False)
    other.train()
    assert other.loss_history != runs[0]


def test_clip_grad_norm(rng):
    grads = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5)}
    before = {k: v.copy() for k, v in grads.items()}
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
    clipped, reported = clip_grad_norm(grads, norm / 4)
    assert reported == pytest.approx(norm)
    new_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in clipped.values()))
    assert new_norm == pytest.approx(norm / 4, rel=1e-6)
    assert clipped["a"].dtype == np.float32
    np.testing.assert_allclose(clipped["b"], grads["b"] / 4)
    for k in grads:
        np.testing.assert_array_equal(grads[k], before[k])
    unclipped, _ = clip_grad_norm(grads, norm * 2)
    for k in grads:
        np.testing.assert_array_equal(unclipped[k], grads[k])


def test_grad_clip_changes_the_updates(builtin_data):
    data = _small(builtin_data, 100)
    histories = []
    for clip in (None, 1.0):
        solver = CaptioningSolver(_model(data), data, update_rule="sgd", batch_size=25,
                                  num_epochs=2, optim_config={"learning_rate": 0.5},
                                  grad_clip=clip, verbose=False, rng=0)
        solver.train()
        histories.append(solver.loss_history)
    assert histories[0][0] == histories[1][0]  # same first minibatch, same weights
    assert histories[0][1:] != histories[1][1:]


def test_validation_history(builtin_data, capsys):
    data = _small(builtin_data, 200)
    solver = CaptioningSolver(_model(data), data, update_rule="adam", batch_size=50,
                              num_epochs=2, optim_config={"learning_rate": 1e-2}, validate=True,
                              num_val=60, rng=0, print_every=100)
    solver.train()
    assert len(solver.val_loss_history) == len(solver.val_bleu_history) == 2
    assert len(solver.val_bleu4_history) == 2
    assert solver.val_loss_history[1] < solver.val_loss_history[0]
    assert all(0 <= b <= 1 for b in solver.val_bleu_history + solver.val_bleu4_history)
    assert "(Epoch 2 / 2) val loss:" in capsys.readouterr().out


@pytest.mark.parametrize("stream", ["generator", "global"])
def test_resume_reproduces_the_uninterrupted_run(builtin_data, tmp_path, stream,
                                                 global_random_state):
    data = _small(builtin_data, 150)
    kwargs = dict(update_rule="adam", batch_size=50, optim_config={"learning_rate": 5e-3},
                  lr_decay=0.9, verbose=False, validate=True, num_val=30)
    rng = (lambda: 7) if stream == "generator" else (lambda: None)

    np.random.seed(1)
    full_model = _model(data)
    full = CaptioningSolver(full_model, data, num_epochs=4, rng=rng(), **kwargs)
    full.train()

    np.random.seed(1)
    first = CaptioningSolver(_model(data), data, num_epochs=2, rng=rng(),
                             checkpoint_dir=tmp_path, **kwargs)
    first.train()
    checkpoint = first.checkpoint_path
    assert os.path.exists(checkpoint)

    np.random.seed(99)  # a fresh process would have some other global state
    resumed_model = _model(data, rng=123)  # different initial weights: all must come from the file
    resumed = CaptioningSolver(resumed_model, data, num_epochs=4, rng=rng(), resume=checkpoint,
                               **kwargs)
    assert resumed.epoch == 2 and resumed.iteration == 6
    resumed.train()

    assert np.array_equal(np.array(resumed.loss_history), np.array(full.loss_history))
    assert resumed.val_loss_history == full.val_loss_history
    assert resumed.val_bleu_history == full.val_bleu_history
    for name, value in full_model.params.items():
        assert resumed_model.params[name].dtype == value.dtype
        assert np.array_equal(resumed_model.params[name], value), name
    for name, config in full.optim_configs.items():
        for key, value in config.items():
            assert np.array_equal(resumed.optim_configs[name][key], value), (name, key)


def test_checkpoint_contents(builtin_data, tmp_path):
    data = _small(builtin_data, 100)
    solver = CaptioningSolver(_model(data, "rnn"), data, update_rule="adam", batch_size=50,
                              num_epochs=1, verbose=False, rng=0, checkpoint_dir=tmp_path)
    solver.train()
    with h5py.File(solver.checkpoint_path, "r") as f:
        assert set(f) == {"json", "params", "optim", "history"}
        assert f.attrs["epoch"] == 1 and f.attrs["iteration"] == 2
        assert f.attrs["cell_type"] == "rnn"
        assert f["optim/Wx/m"].dtype == np.float32
        assert f["optim/Wx"].attrs["t"] == 2
    checkpoint = read_checkpoint(solver.checkpoint_path)
    assert checkpoint["history"]["loss_history"] == solver.loss_history
    assert json.loads(checkpoint["json"]["word_to_idx"]) == data["word_to_idx"]
    assert not glob.glob(os.path.join(tmp_path, ".*.tmp"))


def test_failed_checkpoint_write_leaves_the_previous_one_intact(builtin_data, tmp_path,
                                                                 monkeypatch):
    data = _small(builtin_data, 100)
    solver = CaptioningSolver(_model(data), data, update_rule="adam", batch_size=50,
                              num_epochs=1, verbose=False, rng=0, checkpoint_dir=tmp_path)
    solver.train()
    path = solver.checkpoint_path
    with open(path, "rb") as f:
        good_bytes = f.read()

    # Die half-way through the next write: after a few datasets have gone to disk.
    real_create_dataset = h5py.Group.create_dataset
    calls = []

    def failing_create_dataset(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 5:
            raise KeyboardInterrupt("killed mid-write")
        return real_create_dataset(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    solver.num_epochs = 2
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    monkeypatch.undo()
    assert len(calls) == 5
    with open(path, "rb") as f:
        assert f.read() == good_bytes
    assert read_checkpoint(path)["attrs"]["epoch"] == 1
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temporary file left behind


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process ids as used on POSIX")
def test_a_write_killed_hard_leaves_a_temporary_the_next_write_removes(tmp_path):
    """SIGKILL in the middle of a checkpoint write: the old file survives, and the orphaned
    temporary file is deleted by the next write; a live writer's temporary is left alone."""
    path = tmp_path / "checkpoint.h5"
    atomic_write_h5(path, lambda h5: h5.create_dataset("old", data=np.arange(3)))
    child = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from fastrnn.captioning_solver import atomic_write_h5
        def write(h5):
            h5.create_dataset("new", data=np.arange(1000))
            h5.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write_h5({str(path)!r}, write)
    """)
    done = subprocess.run([sys.executable, "-c", child], timeout=120)
    assert done.returncode == -signal.SIGKILL
    orphans = glob.glob(str(tmp_path / ".checkpoint.h5.*.tmp"))
    assert len(orphans) == 1
    with h5py.File(path, "r") as h5:
        assert list(h5) == ["old"]
    live = tmp_path / f".checkpoint.h5.{os.getpid()}.abc.tmp"  # a writer still at work
    live.write_bytes(b"")
    atomic_write_h5(path, lambda h5: h5.create_dataset("next", data=np.arange(2)))
    assert not os.path.exists(orphans[0]) and live.exists()
    with h5py.File(path, "r") as h5:
        assert list(h5) == ["next"]


def test_resume_rejects_a_mismatched_model_or_solver(builtin_data, tmp_path):
    data = _small(builtin_data, 100)
    solver = CaptioningSolver(_model(data), data, update_rule="adam", batch_size=50,
                              num_epochs=1, verbose=False, rng=0, checkpoint_dir=tmp_path)
    solver.train()
    with pytest.raises(ValueError, match="update_rule"):
        CaptioningSolver(_model(data), data, update_rule="sgd", batch_size=50,
                         resume=solver.checkpoint_path)
    with pytest.raises(ValueError, match="built with cell_type='lstm'; this model has cell_type='rnn'"):
        CaptioningSolver(_model(data, "rnn"), data, update_rule="adam", batch_size=50,
                         resume=solver.checkpoint_path)
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        CaptioningSolver(_model(data), data, resume=os.path.join(tmp_path, "nowhere.h5"))
    not_h5 = tmp_path / "garbage.h5"
    not_h5.write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match="garbage.h5"):
        CaptioningSolver(_model(data), data, resume=not_h5)


# ------------------------------------------------------------------ BLEU (the validation metric)
def test_unigram_bleu_is_the_notebooks_score():
    from fastrnn.metrics import bleu_unigram

    reference = "<START> a cat sits on the mat <END>"
    assert bleu_unigram(reference, "<START> a cat sits on the mat <END>") == 1.0
    # 5 of 6 words match, same length: brevity penalty 1.
    assert bleu_unigram(reference, "<START> a dog sits on the mat <END>") == pytest.approx(5 / 6)
    # <UNK> is dropped from both sides; a shorter hypothesis pays exp(1 - 6/3).
    assert bleu_unigram(reference, "<START> a <UNK> cat sits <END>") == pytest.approx(np.exp(-1))
    assert bleu_unigram(reference, "<START> <END>") == 0.0


def test_corpus_bleu4():
    from fastrnn.metrics import corpus_bleu4

    refs = [["<START> a red dog is running on the grass <END>", "a red dog running on the grass"],
            ["<START> there is a cat on a bench <END>"]]
    assert corpus_bleu4(refs, ["a red dog running on the grass", "there is a cat on a bench"]) == 1.0
    # No 4-gram in common: 0, and NLTK's warning about it is not raised (warnings are errors here).
    assert corpus_bleu4(refs, ["dog red a", "bench a on"]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="length"):
        corpus_bleu4(refs, ["a"])


class _OracleModel:
    """Samples the first ground-truth caption of each image (or nothing)."""

    def __init__(self, data, silent=False):
        self.by_feature = {data["val_features"][i].tobytes(): c[1:]
                           for c, i in zip(data["val_captions"], data["val_image_idxs"])}
        self.silent = silent

    def sample(self, features, max_length=30):
        if self.silent:
            return np.zeros((features.shape[0], max_length), np.int32)
        return np.stack([self.by_feature[f.tobytes()][:max_length] for f in features])


def test_evaluate_captions_scores_an_oracle_1_and_silence_0(tmp_path):
    from fastrnn.coco_utils import load_coco_data
    from fastrnn.datasets import write_builtin_coco
    from fastrnn.metrics import evaluate_captions

    data = load_coco_data(write_builtin_coco(tmp_path, num_train_images=5, num_val_images=30,
                                             captions_per_image=1, fc7=False))
    perfect = evaluate_captions(_OracleModel(data), data, max_examples=20, batch_size=7)
    assert perfect["bleu1"] == 1.0 and perfect["bleu4"] == 1.0
    assert len(perfect["hypotheses"]) == 20
    silent = evaluate_captions(_OracleModel(data, silent=True), data, max_examples=20)
    assert silent["bleu1"] == 0.0 and silent["bleu4"] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------- failing loudly, checked up front
def test_a_nan_producing_learning_rate_stops_with_a_clear_error(builtin_data, tmp_path):
    from fastrnn.captioning_solver import NonFiniteError

    data = _small(builtin_data, 100)  # 2 iterations per epoch
    solver = CaptioningSolver(_model(data), data, update_rule="adam", batch_size=50,
                              num_epochs=1, verbose=False, rng=0, checkpoint_dir=tmp_path)
    solver.train()
    path = solver.checkpoint_path
    with open(path, "rb") as f:
        good_bytes = f.read()
    good_params = {name: value.copy() for name, value in solver.model.params.items()}
    good_t = solver.optim_configs["Wx"]["t"]
    for config in solver.optim_configs.values():
        config["learning_rate"] = 1e300  # finite, but the float32 update overflows
    solver.num_epochs = 3
    with pytest.raises(NonFiniteError) as info:
        solver.train()
    message = str(info.value)
    assert message.startswith("iteration 3: parameter 'W_embed' is not finite after the update")
    assert "learning_rate=1e+300" in message and repr(path) in message
    assert (info.value.iteration, info.value.name, info.value.learning_rate) == (3, "W_embed", 1e300)
    assert isinstance(info.value, FloatingPointError)
    # Nothing of the failed iteration was kept: weights, optimizer state, history, checkpoint.
    assert solver.iteration == 2 and len(solver.loss_history) == 2
    assert solver.optim_configs["Wx"]["t"] == good_t
    for name, value in good_params.items():
        np.testing.assert_array_equal(solver.model.params[name], value)
    with open(path, "rb") as f:
        assert f.read() == good_bytes
    assert os.listdir(tmp_path) == ["checkpoint.h5"]


def test_a_non_finite_loss_or_gradient_is_named(builtin_data):
    from fastrnn.captioning_solver import NonFiniteError

    data = _small(builtin_data, 100)
    data["train_features"] = data["train_features"].copy()
    data["train_features"][data["train_image_idxs"][:100]] = np.inf
    solver = CaptioningSolver(_model(data), data, batch_size=50, verbose=False, rng=0)
    with pytest.raises(NonFiniteError, match=r"^iteration 1: the (loss is nan|gradient of '\w+' "
                                             r"is not finite) \(learning_rate=the rule's default"):
        solver.train()
    assert solver.loss_history == []


@pytest.mark.parametrize("kwargs, match", [
    ({"optim_config": {"learning_rate": float("inf")}}, r"learning_rate'\] must be a finite"),
    ({"optim_config": {"learning_rate": float("nan")}}, "learning_rate"),
    ({"optim_config": {"learning_rate": -1e-3}}, "learning_rate"),
    ({"lr_decay": float("nan")}, "lr_decay"),
    ({"lr_decay": 0.0}, "lr_decay"),
    ({"grad_clip": float("inf")}, "grad_clip"),
    ({"num_epochs": -1}, "num_epochs"),
    ({"num_epochs": 2.5}, "num_epochs"),
    ({"print_every": 0}, "print_every"),
    ({"num_val": 0}, "num_val"),
])
def test_hyperparameters_are_checked_up_front(builtin_data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CaptioningSolver(_model(builtin_data), builtin_data, **kwargs)


def test_an_unusable_checkpoint_dir_is_refused_before_training(builtin_data, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    for directory, match in ((a_file, "a_file' is a file"), (a_file / "below", "a_file' is a file")):
        with pytest.raises(ValueError, match=match):
            CaptioningSolver(_model(builtin_data), builtin_data, checkpoint_dir=directory)
    (tmp_path / "taken" / "checkpoint.h5").mkdir(parents=True)
    with pytest.raises(ValueError, match="checkpoint.h5' is a directory"):
        CaptioningSolver(_model(builtin_data), builtin_data, checkpoint_dir=tmp_path / "taken")
    # A directory that does not exist yet is fine (created at the first write).
    CaptioningSolver(_model(builtin_data), builtin_data, checkpoint_dir=tmp_path / "new" / "dir")
    assert not (tmp_path / "new").exists()


def test_the_progress_bar_is_notebook_aware(builtin_data, capsys, monkeypatch):
    """tqdm.auto (a widget in Jupyter); the verbose lines stay the classic ones."""
    import tqdm.auto

    from fastrnn.training import core

    made = []

    class RecordingBar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    assert core._progress_bar_class() is RecordingBar
    data = _small(builtin_data, 100)
    solver = CaptioningSolver(_model(data), data, batch_size=50, num_epochs=2, print_every=1,
                              rng=0)
    solver.train()
    assert len(made) == 1 and made[0]["total"] == 4
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["(Iteration %d / 4) loss: %f" % (i + 1, loss)
                     for i, loss in enumerate(solver.loss_history)]
