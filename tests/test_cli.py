"""The ``fastrnn`` command: train (the demo learns: BLEU far above an untrained model),
resume, sample, gradcheck, and the bench pass-through."""
import contextlib
import io
import json
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
            "CaptioningRNN(lstm)", "multi_head_attention", "multi_head_attention(num_queries=1)",
            "layernorm", "affine_relu", "positional_embedding", "sigmoid_bce_loss",
            "ClassificationTransformer"} == functions
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


# ------------------------------------------------------------- bad arguments, refused up front
@pytest.mark.parametrize("option, value, message", [
    ("--lr", "1e400", "must be a finite positive number, got 1e400"),
    ("--lr", "nan", "must be a finite positive number, got nan"),
    ("--lr", "-1e-3", "must be a finite positive number"),
    ("--lr", "0", "must be a finite positive number"),
    ("--lr-decay", "inf", "must be a finite positive number"),
    ("--grad-clip", "nan", "must be a finite positive number"),
    ("--hidden-dim", "2.5", "must be a positive integer, got 2.5"),
    ("--hidden-dim", "1e400", "must be a positive integer"),
    ("--max-train", "-3", "must be a positive integer"),
    ("--epochs", "ten", "must be a positive integer, got ten"),
])
def test_bad_hyperparameters_are_refused_at_parse_time(option, value, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", f"{option}={value}"])  # = form: "-1e-3" alone reads as an option
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and message in err


@pytest.mark.parametrize("option, value, message", [
    ("--hidden-dim", "1e7", "hidden_dim=10000000"),
    ("--max-train", "1e13", "max_train=10000000000000"),
])
def test_absurd_sizes_are_refused_with_a_message(builtin_dir, tmp_path, option, value, message,
                                                 capsys):
    assert main(["train", "--data-dir", builtin_dir, "--checkpoint-dir", str(tmp_path),
                 option, value, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and "more than this machine's memory" in err
    assert "MemoryError" not in err and os.listdir(tmp_path) == []


def test_a_file_as_checkpoint_dir_is_refused_before_anything_runs(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["train", "--data-dir", str(tmp_path / "never_read"), "--checkpoint-dir",
                 str(a_file), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "a_file' is a file, not a directory" in captured.err
    assert "data:" not in captured.out  # refused before the data were even looked at


@pytest.mark.parametrize("option, value, match", [
    ("--hidden-dim", "32", "--hidden-dim 32 does not match .* which has hidden_dim=64"),
    ("--cell-type", "rnn", "--cell-type rnn does not match .* which has cell_type=lstm"),
    ("--wordvec-dim", "16", "--wordvec-dim 16 does not match .* which has wordvec_dim=32"),
])
def test_resume_refuses_model_options_that_differ_from_the_checkpoint(trained, builtin_dir,
                                                                      capsys, option, value,
                                                                      match):
    checkpoint_dir, _ = trained
    path = os.path.join(checkpoint_dir, "checkpoint.h5")
    with open(path, "rb") as f:
        before = f.read()
    argv = ["train", "--data-dir", builtin_dir, "--epochs", "9", "--resume", path,
            "--checkpoint-dir", str(checkpoint_dir), "--quiet", option, value]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert re.search(match, captured.err) and "model:" not in captured.out
    with open(path, "rb") as f:
        assert f.read() == before


def test_resume_refuses_data_of_another_vocabulary(trained, tmp_path, capsys):
    from fastrnn.datasets import write_builtin_coco

    checkpoint_dir, _ = trained
    other = write_builtin_coco(tmp_path / "other", num_train_images=20, num_val_images=5, fc7=False)
    vocab_path = os.path.join(other, "coco2014_vocab.json")
    with open(vocab_path) as f:
        vocab = json.load(f)
    vocab["idx_to_word"][-2:] = vocab["idx_to_word"][-1], vocab["idx_to_word"][-2]
    vocab["word_to_idx"] = {w: i for i, w in enumerate(vocab["idx_to_word"])}
    with open(vocab_path, "w") as f:
        json.dump(vocab, f)
    path = os.path.join(checkpoint_dir, "checkpoint.h5")
    assert main(["train", "--data-dir", other, "--resume", path, "--checkpoint-dir",
                 str(tmp_path / "c"), "--quiet"]) == 1
    assert "different vocabulary" in capsys.readouterr().err


# ------------------------------------------------------------------ the Transformer
SMALL_TRANSFORMER = ["--model", "transformer", "--hidden-dim", "32", "--num-heads", "2",
                     "--dim-feedforward", "128", "--dim-k", "16", "--lr", "2e-3", "--quiet"]


@pytest.fixture(scope="module")
def trained_transformer(tmp_path_factory):
    """Train a small Transformer on the built-in corpus: (checkpoint path, stdout)."""
    checkpoint_dir = tmp_path_factory.mktemp("transformer")
    argv = ["train", "--epochs", "4", "--checkpoint-dir", str(checkpoint_dir)] + SMALL_TRANSFORMER
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return os.path.join(checkpoint_dir, "checkpoint.h5"), out.getvalue()


def test_train_transformer_reports_accuracy_mcc_and_judged_sentences(trained_transformer):
    path, out = trained_transformer
    accuracy = re.search(r"validation accuracy \(1551 sentences\): trained ([0-9.]+), "
                         r"untrained ([0-9.]+)", out)
    mcc = re.search(r"Matthews correlation .*: trained (-?[0-9.]+), untrained (-?[0-9.]+)", out)
    assert accuracy and mcc, out
    assert float(accuracy.group(1)) > float(accuracy.group(2)) + 0.15, out
    assert float(mcc.group(1)) > 0.3, out
    assert out.count("labelled 1)") == 3 and out.count("labelled 0)") == 3
    stored = read_checkpoint(path)
    assert stored["attrs"]["model_kind"] == "ClassificationTransformer"
    assert stored["model_config"]["dim_feedforward"] == 128


def test_sample_and_resume_read_the_model_from_the_checkpoint(trained_transformer, tmp_path,
                                                               capsys):
    path, _ = trained_transformer
    assert main(["sample", path, "--num", "7"]) == 0
    out = capsys.readouterr().out
    assert out.count("labelled") == 7 and "accuracy of these 7" in out
    # Resume without repeating any model option: the checkpoint's kind and sizes are used.
    assert main(["train", "--resume", path, "--epochs", "5", "--quiet",
                 "--checkpoint-dir", str(tmp_path)]) == 0
    assert read_checkpoint(tmp_path / "checkpoint.h5")["attrs"]["epoch"] == 5


@pytest.mark.parametrize("extra, message", [
    (["--model", "captioning"], "--model captioning does not match the checkpoint being resumed"),
    (["--hidden-dim", "64"], "--hidden-dim 64 does not match .* hidden_dim=32"),
    (["--cell-type", "rnn"], "--cell-type is an option of the other model"),
])
def test_resuming_a_transformer_refuses_what_does_not_fit(trained_transformer, tmp_path, extra,
                                                         message, capsys):
    path, _ = trained_transformer
    assert main(["train", "--resume", path, "--epochs", "5", "--quiet",
                 "--checkpoint-dir", str(tmp_path)] + extra) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "checkpoint.h5")
