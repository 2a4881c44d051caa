"""The ``fastrnn`` command: train (the demo learns: BLEU far above an untrained model),
resume, sample, gradcheck, and the bench pass-through."""
import contextlib
import io
import os
import re
import subprocess
import sys
import types

import pytest

import fastrnn
from _captioning_helpers import builtin_dir  # noqa: F401 (a fixture)
from fastrnn.captioning_solver import read_checkpoint
from fastrnn.cli import main

SMALL_TRAIN = ["--cell-type", "lstm", "--wordvec-dim", "32", "--hidden-dim", "64",
               "--batch-size", "50", "--lr", "1e-2", "--num-val", "150", "--seed", "0"]


def _bleu(out, order):
    match = re.search(rf"BLEU-{order} .*trained ([0-9.]+), untrained ([0-9.]+)", out)
    assert match, out
    return float(match.group(1)), float(match.group(2))


@pytest.fixture(scope="module")
def trained(builtin_dir, tmp_path_factory):
    """Train the demo once for the tests below: (checkpoint dir, stdout)."""
    checkpoint_dir = tmp_path_factory.mktemp("checkpoints")
    argv = ["train", "--data-dir", builtin_dir, "--epochs", "5", "--checkpoint-dir",
            str(checkpoint_dir), "--quiet"] + SMALL_TRAIN
    out = io.StringIO()  # capsys is per test; this fixture is per module
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return checkpoint_dir, out.getvalue()


def test_trained_demo_beats_an_untrained_model(trained):
    _, out = trained
    trained_bleu1, untrained_bleu1 = _bleu(out, 1)
    trained_bleu4, untrained_bleu4 = _bleu(out, 4)
    assert untrained_bleu1 < 0.3
    assert trained_bleu1 > untrained_bleu1 + 0.4  # measured over seeds 0-2: +0.59..0.64
    assert trained_bleu4 > untrained_bleu4 + 0.2  # measured over seeds 0-2: +0.40..0.42
    assert out.count("  model: ") == 5 and out.count("  true:  ") == 5


def test_train_writes_a_checkpoint_and_resumes_from_it(trained, builtin_dir, capsys):
    checkpoint_dir, _ = trained
    path = os.path.join(checkpoint_dir, "checkpoint.h5")
    checkpoint = read_checkpoint(path)
    assert checkpoint["attrs"]["epoch"] == 5 and checkpoint["attrs"]["cell_type"] == "lstm"
    iterations = checkpoint["attrs"]["iteration"]
    assert main(["train", "--data-dir", builtin_dir, "--epochs", "6", "--resume", path,
                 "--checkpoint-dir", str(checkpoint_dir), "--quiet"] + SMALL_TRAIN) == 0
    resumed = read_checkpoint(path)
    assert resumed["attrs"]["epoch"] == 6
    assert resumed["attrs"]["iteration"] == iterations * 6 // 5
    assert resumed["history"]["loss_history"][:iterations] == checkpoint["history"]["loss_history"]
    assert "trained 6 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("beam", [[], ["--beam-size", "3"]])
def test_sample_from_a_checkpoint(trained, builtin_dir, capsys, beam):
    checkpoint_dir, _ = trained
    path = os.path.join(checkpoint_dir, "checkpoint.h5")
    assert main(["sample", path, "--data-dir", builtin_dir, "--num", "20"] + beam) == 0
    out = capsys.readouterr().out
    assert out.count("  model: ") == 20
    # 20 captions, not 4: BLEU of 4 moved between 0.47 and 0.9 with last-bit rounding changes
    # (AVX2 vs AVX-512 code); an untrained model scores below 0.1.
    assert float(re.search(r"BLEU-1 of these 20: ([0-9.]+)", out).group(1)) > 0.5


def test_missing_files_give_a_one_line_error(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "missing.h5")]) == 1
    assert "missing.h5" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(tmp_path / "nodata"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "fastrnn train: error:" in err and "coco2014_captions.h5" in err


def test_train_defaults_to_built_in_data_in_the_user_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "--epochs", "1", "--max-train", "100", "--quiet",
                 "--checkpoint-dir", str(tmp_path / "ckpt")] + SMALL_TRAIN) == 0
    out = capsys.readouterr().out
    assert f"built-in synthetic captions in {tmp_path / 'cache' / 'fastrnn'}" in out
    assert "100 train captions" in out
    assert os.path.exists(tmp_path / "ckpt" / "checkpoint.h5")


def test_gradcheck_prints_a_passing_table(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()[1:-1]]
    functions = {line.split()[0] for line in rows}
    assert {"rnn_step", "rnn", "word_embedding", "lstm_step", "lstm", "temporal_affine",
            "temporal_softmax_loss", "affine", "CaptioningRNN(rnn)",
            "CaptioningRNN(lstm)"} == functions
    assert all(line.endswith("yes") for line in rows)
    assert f"{len(rows)} of {len(rows)} gradients agree" in out


def test_bench_forwards_its_arguments(monkeypatch):
    calls = []
    fake = types.ModuleType("fastrnn.bench")
    fake.main = lambda argv: calls.append(argv) or 7
    monkeypatch.setitem(sys.modules, "fastrnn.bench", fake)
    monkeypatch.setattr(fastrnn, "bench", fake, raising=False)
    assert main(["bench", "--quick", "--help"]) == 7
    assert calls == [["--quick", "--help"]]


def test_usage_errors_exit_with_status_2(capsys):
    for argv in ([], ["frobnicate"], ["train", "--cell-type", "gru"], ["train", "--epochs", "0"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cell-type" in err and "must be a positive integer, got 0" in err


def test_python_dash_m_fastrnn():
    result = subprocess.run([sys.executable, "-m", "fastrnn", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for command in ("train", "sample", "gradcheck", "bench"):
        assert command in result.stdout
