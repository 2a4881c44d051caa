"""Speed, accuracy, memory and start-up report: ``python -m fastrnn.bench`` (or ``fastrnn bench``).

Measures the cases of the speed issue (RNN/LSTM sequence forward+backward, the captioning training
step, ``word_embedding_backward``, ``temporal_softmax_loss``) for three implementations:

* ``classic``: :mod:`fastrnn.reference`, the per-timestep NumPy style of the course code;
* ``fastrnn``: :mod:`fastrnn.rnn_layers` (``--fast-module`` names another module with the same API);
* ``torch``: ``nn.RNN(nonlinearity='tanh')`` / ``nn.LSTM`` and friends, ``torch.set_num_threads``,
  same dtype, forward+backward (skipped with a note when torch is not importable).

Each implementation runs in its OWN subprocess: OpenBLAS threads and torch's OpenMP threads keep
spinning after a call, and timing one library right after another in the same process made torch
look several times slower (docs/performance.md, fact 9).  Every (case, implementation) gets a fresh
process, and a case's implementations are timed one right after the other, over ``--rounds`` rounds
through all cases: a shared machine's speed drifts over minutes (docs/performance.md, M26), and
side-by-side timing keeps the drift out of the ratios.  Compilation and warm-up happen before the
timed region; each figure is the best over the rounds of ``k`` samples each, a sample being the mean
over enough calls to last ``--min-time`` seconds.  Accuracy (max|err| / max|value| per output
against a float64 computation), the bytes ``lstm_forward`` keeps for backward, and start-up times
are measured in further subprocesses of their own.

Benchmark with OpenBLAS on its native kernels::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastrnn.bench
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastrnn.bench --json bench.json
    python -m fastrnn.bench --load bench.json --markdown     # the README speed table

The README speed table is the ``--markdown`` output, pasted, never typed by hand.  Timings are a
report: nothing here asserts a number, and the exit status is 0 whether targets pass or miss.

The package imports only NumPy at import time; the layer modules, numba, torch and threadpoolctl
are imported inside the worker subprocess that needs them.  Its parts: :mod:`.cases` (the rows,
their inputs and workloads), :mod:`.measure` (timing, memory, competing load, the worker
subprocesses), :mod:`.run` (rounds of side-by-side timing), :mod:`.report` (text and Markdown),
:mod:`.command` (the command line); :mod:`.transformer` times the Transformer's training step
on its own (``python -m fastrnn.bench.transformer``).
"""
from .cases import (CAPTION_PARAMS, CASES, CASES_BY_NAME, CLASSIC_MODULE, DEFAULT_FAST_MODULE,
                    IMPLEMENTATIONS, SCHEMA_VERSION, STARTUP_CASE, VOCAB_SIZE, Case, make_inputs,
                    numpy_workload, select_cases, torch_workload)
from .command import main
from .measure import best_of, cache_bytes, competing_load
from .report import render_markdown, render_text
from .run import run_benchmarks

__all__ = ["Case", "CASES", "CASES_BY_NAME", "CAPTION_PARAMS", "CLASSIC_MODULE",
           "DEFAULT_FAST_MODULE", "IMPLEMENTATIONS", "SCHEMA_VERSION", "STARTUP_CASE",
           "VOCAB_SIZE", "main", "make_inputs", "numpy_workload", "torch_workload",
           "select_cases", "best_of", "cache_bytes", "competing_load", "run_benchmarks",
           "render_text", "render_markdown"]
