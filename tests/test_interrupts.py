"""Ctrl-C (SIGINT) during training: it stops between iterations, never inside a kernel or a
checkpoint write; the last complete checkpoint stays intact and loadable, no temporary file is
left, ``fastrnn train`` says where it stopped and how to resume and exits 130; a second Ctrl-C
exits at once.

The random-moment test runs ``FASTRNN_SIGINT_TRIES`` training subprocesses (default 8, to keep
the suite fast; the README's figures come from a run with 200).
"""
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import pytest

from _captioning_helpers import builtin_data, builtin_dir  # noqa: F401 (fixtures)
from _captioning_helpers import first_train_rows, small_model
from fastrnn.captioning_solver import (CaptioningSolver, NonFiniteError, TrainingInterrupted,
                                       read_checkpoint)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals as delivered on POSIX")

SIGINT_TRIES = int(os.environ.get("FASTRNN_SIGINT_TRIES", "8"))
CHILD_TIMEOUT_S = 120


def _solver(data, checkpoint_dir, num_epochs):
    small = first_train_rows(data, 50)  # one iteration per epoch
    model = small_model(small, wordvec_dim=8, hidden_dim=12)
    return CaptioningSolver(model, small, update_rule="adam", batch_size=50,
                            num_epochs=num_epochs, verbose=False, rng=0,
                            checkpoint_dir=checkpoint_dir)


def _stray_files(directory):
    return sorted(name for name in os.listdir(directory) if name != "checkpoint.h5")


def test_sigint_at_every_dataset_of_a_checkpoint_write(builtin_data, tmp_path, monkeypatch):
    """SIGINT delivered in the middle of a checkpoint write, after each of its datasets in
    turn: the write completes, training stops right after it with TrainingInterrupted, and the
    checkpoint on disk is the complete, valid one of that epoch."""
    real_create_dataset = h5py.Group.create_dataset
    calls = []

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return real_create_dataset(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", counting)
    interrupt_at = 0
    _solver(builtin_data, tmp_path / "count", 1).train()
    per_write = len(calls)
    assert per_write >= 25  # json 2 + params 8 + Adam m, v 16 + history 4
    handler = signal.getsignal(signal.SIGINT)
    for interrupt_at in range(1, per_write + 1):
        calls.clear()
        directory = tmp_path / f"at{interrupt_at}"
        solver = _solver(builtin_data, directory, 5)
        with pytest.raises(TrainingInterrupted) as info:
            solver.train()
        assert len(calls) == per_write, interrupt_at  # the write went on to its end
        assert info.value.iteration == 1 and info.value.epoch == 1
        assert info.value.checkpoint == (solver.checkpoint_path, 1, 1)
        assert read_checkpoint(solver.checkpoint_path)["attrs"]["epoch"] == 1
        assert _stray_files(directory) == []
        assert signal.getsignal(signal.SIGINT) is handler  # restored after train()


def test_handler_is_restored_when_training_fails(builtin_data, tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    solver = _solver(builtin_data, tmp_path, 3)
    solver.optim_configs = {p: {"learning_rate": 1e300} for p in solver.model.params}
    with pytest.raises(NonFiniteError):
        solver.train()
    assert signal.getsignal(signal.SIGINT) is handler


_DOUBLE_SIGINT_CHILD = textwrap.dedent("""
    import os, signal, time, sys
    import h5py
    sys.path.insert(0, {tests!r})
    from test_interrupts import _solver
    from fastrnn.coco_utils import load_coco_data

    data = load_coco_data({data_dir!r})
    solver = _solver(data, {checkpoint_dir!r}, 5)
    real_create_dataset = h5py.Group.create_dataset
    calls = []

    def create_dataset(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == {per_write} + 7:  # in the middle of the second write
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # never reached: the second SIGINT exits
            print("the second SIGINT did not exit", flush=True)
        return real_create_dataset(self, *args, **kwargs)

    h5py.Group.create_dataset = create_dataset
    solver.train()
    print("training finished", flush=True)
""")


def test_second_sigint_exits_at_once_and_leaves_the_last_checkpoint(builtin_dir, tmp_path):
    checkpoint_dir = tmp_path / "ckpt"
    code = _DOUBLE_SIGINT_CHILD.format(tests=os.path.dirname(__file__), data_dir=str(builtin_dir),
                                       checkpoint_dir=str(checkpoint_dir), per_write=30)
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=CHILD_TIMEOUT_S)
    assert child.returncode == 130, child.stderr
    assert time.perf_counter() - start < 60
    assert "Interrupted twice: exiting now." in child.stderr
    assert "did not exit" not in child.stdout and "training finished" not in child.stdout
    assert "Traceback" not in child.stderr
    assert _stray_files(checkpoint_dir) == []  # the half-written temporary was removed
    assert read_checkpoint(checkpoint_dir / "checkpoint.h5")["attrs"]["epoch"] == 1


# ------------------------------------------------------------------ fastrnn train, random moments
def _train_command(data_dir, checkpoint_dir, epochs):
    # One iteration per epoch, so a checkpoint is written after every iteration and a good
    # share of random moments falls inside a write.
    return [sys.executable, "-m", "fastrnn", "train", "--data-dir", str(data_dir),
            "--max-train", "50", "--batch-size", "50", "--epochs", str(epochs),
            "--cell-type", "lstm", "--hidden-dim", "12", "--wordvec-dim", "8", "--num-val", "10",
            "--checkpoint-dir", str(checkpoint_dir), "--seed", "0"]


def _interrupt_train(command, anchor, delay):
    """Run ``command``, send SIGINT ``delay`` seconds after the first stdout line starting with
    ``anchor``; return (returncode, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    out = []
    try:
        for line in child.stdout:
            out.append(line)
            if line.startswith(anchor):
                break
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, "".join(out) + rest, err


def check_interrupted_run(returncode, out, err, checkpoint_dir):
    """What every interrupted ``fastrnn train`` must satisfy; returns the resume command
    (argv) or None when no checkpoint had been written."""
    assert returncode == 130, (out, err)
    for symptom in ("Traceback", "SystemError", "Exception ignored"):
        assert symptom not in err, err
    assert "interrupted" in err
    found = re.search(r"The last complete checkpoint is (.+) \(epoch (\d+), iteration (\d+)\)", err)
    if not os.path.isdir(checkpoint_dir):
        assert found is None, err
        return None
    assert _stray_files(checkpoint_dir) == []
    path = os.path.join(checkpoint_dir, "checkpoint.h5")
    if found is None:
        assert not os.path.exists(path) or "no training iteration" in err, err
        return None
    assert found.group(1) == path
    attrs = read_checkpoint(path)["attrs"]  # intact: the digest and every key check out
    assert (attrs["epoch"], attrs["iteration"]) == (int(found.group(2)), int(found.group(3)))
    command = shlex.split(err.split("Resume with:\n", 1)[1].strip().splitlines()[0])
    assert command[:2] == ["fastrnn", "train"] and command[-2:] == ["--resume", path]
    return command


def test_sigint_at_random_moments_of_fastrnn_train(builtin_dir, tmp_path):
    epochs = 300
    rng = random.Random(int(os.environ.get("FASTRNN_SIGINT_SEED", "13")))
    outcomes = []
    resume = None
    for attempt in range(SIGINT_TRIES):
        checkpoint_dir = tmp_path / f"try{attempt}"
        # Mostly during training (after its first loss line); one try in four earlier, while
        # the untrained model is evaluated (kernels running, no checkpoint yet).
        anchor, delay = (("model:", rng.uniform(0.0, 0.5)) if attempt % 4 == 3 else
                         ("(Iteration 1 /", rng.uniform(0.0, 1.5)))
        result = _interrupt_train(_train_command(builtin_dir, checkpoint_dir, epochs), anchor, delay)
        command = check_interrupted_run(*result, checkpoint_dir)
        stage = ("after a checkpoint" if command is not None else
                 "before the first iteration" if "no training iteration" in result[2] else
                 "before the first checkpoint")
        outcomes.append(stage)
        resume = command or resume
    summary = {stage: outcomes.count(stage) for stage in sorted(set(outcomes))}
    print(f"SIGINT at {len(outcomes)} random moments: {len(outcomes)} clean exits 130, no stray "
          f"file, every checkpoint intact; stopped {summary}")
    assert "after a checkpoint" in outcomes, "no try got as far as a checkpoint: delays too short"
    if resume is not None:
        # The printed command resumes the run (two more epochs rather than all: time).
        epoch = read_checkpoint(resume[-1])["attrs"]["epoch"]
        done = subprocess.run([sys.executable, "-m", "fastrnn"] + resume[1:]
                              + ["--quiet", "--epochs", str(epoch + 2)],
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        assert f"trained {epoch + 2} epochs" in done.stdout
        attrs = read_checkpoint(resume[-1])["attrs"]
        assert attrs["epoch"] == attrs["iteration"] == epoch + 2


def test_the_resume_command_matches_the_interrupted_run(tmp_path):
    """A unit check of the message's command: --resume replaced, other options kept."""
    from fastrnn.cli import _interrupted_message

    interrupt = TrainingInterrupted(7, 10, 3, 5, (str(tmp_path / "c d.h5"), 3, 6))
    message = _interrupted_message(interrupt, ["train", "--resume=old.h5", "--epochs", "5",
                                               "--resume", "older.h5", "--lr", "1e-3"])
    assert "after iteration 7 of 10 (3 of 5 epochs complete)" in message
    command = shlex.split(message.split("Resume with:\n", 1)[1])
    assert command == ["fastrnn", "train", "--epochs", "5", "--lr", "1e-3", "--resume",
                       str(tmp_path / "c d.h5")]
    assert "nothing to resume" in _interrupted_message(TrainingInterrupted(1, 10, 0, 5, None), [])
