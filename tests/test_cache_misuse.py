"""Legal Python that tampers with a cache must raise, never crash the process.

Caches keep the caller's own arrays (no copy when they are already C-contiguous) and are plain
NamedTuples, so a user can reshape a weight in place after the forward, write into the cached
indices or rebuild a cache with ``_replace``.  The kernels behind the backward functions have no
bounds checks: each misuse runs in a child process, which must end normally with a Python
exception (a segfault, heap corruption or abort at exit would show as a signal or a non-zero
exit status).
"""
import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import numpy as np
from fastrnn.rnn_layers import *
rng = np.random.default_rng(0)

def expect_error(call):
    try:
        call()
    except (ValueError, TypeError) as error:
        print("raised", type(error).__name__, error)
    else:
        print("NO ERROR")
"""

MISUSES = {
    # A large LSTM (the packed-product kernels) whose Wx is reshaped in place after the forward.
    "lstm_Wx_reshaped_in_place": """
        N, T, D, H = 8, 5, 64, 64
        x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
        Wx, Wh = rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H))
        b = np.zeros(4 * H)
        h, cache = lstm_forward(x, h0, Wx, Wh, b)
        Wx.shape = (4 * H, D)
        expect_error(lambda: lstm_backward(np.ones_like(h), cache))
    """,
    # The tiny serial kernels, Wh reshaped in place.
    "tiny_lstm_Wh_reshaped_in_place": """
        N, T, D, H = 2, 3, 3, 2
        x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
        Wx, Wh = rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H))
        b = np.zeros(4 * H)
        h, cache = lstm_forward(x, h0, Wx, Wh, b)
        Wh.shape = (4 * H, H)
        expect_error(lambda: lstm_backward(np.ones_like(h), cache))
    """,
    "tiny_rnn_x_reshaped_in_place": """
        N, T, D, H = 2, 3, 4, 5
        x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
        Wx, Wh, b = rng.standard_normal((D, H)), rng.standard_normal((H, H)), np.zeros(H)
        h, cache = rnn_forward(x, h0, Wx, Wh, b)
        x.shape = (1, 1, 24)
        expect_error(lambda: rnn_backward(np.ones_like(h), cache))
    """,
    "rnn_Wh_replaced_by_a_smaller_one": """
        N, T, D, H = 4, 3, 16, 32
        x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
        Wx, Wh, b = rng.standard_normal((D, H)), rng.standard_normal((H, H)), np.zeros(H)
        h, cache = rnn_forward(x, h0, Wx, Wh, b)
        cache = cache._replace(Wh=np.ones((2, 2)))
        expect_error(lambda: rnn_backward(np.ones_like(h), cache))
    """,
    "rnn_step_hs_replaced": """
        x, h = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
        next_h, cache = rnn_step_forward(x, h, rng.standard_normal((4, 5)),
                                         rng.standard_normal((5, 5)), np.zeros(5))
        cache = cache._replace(hs=np.ones((2, 300, 5)))
        expect_error(lambda: rnn_step_backward(np.ones_like(next_h), cache))
    """,
    "lstm_gates_replaced": """
        x, h0 = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 6))
        h, cache = lstm_forward(x, h0, rng.standard_normal((5, 24)), rng.standard_normal((6, 24)),
                                np.zeros(24))
        cache = cache._replace(gates=np.ones((4, 3, 4)))
        expect_error(lambda: lstm_backward(np.ones_like(h), cache))
    """,
    "embedding_index_written_in_the_cache": """
        out, cache = word_embedding_forward(np.array([[1, 2], [0, 3]]), rng.standard_normal((4, 3)))
        cache.x[0, 0] = 10 ** 7
        expect_error(lambda: word_embedding_backward(np.ones_like(out), cache))
    """,
    "embedding_vocab_size_replaced": """
        out, cache = word_embedding_forward(np.array([[1, 2], [0, 3]]), rng.standard_normal((4, 3)))
        cache = cache._replace(vocab_size=1)
        expect_error(lambda: word_embedding_backward(np.ones_like(out), cache))
    """,
    "embedding_indices_replaced_by_floats": """
        out, cache = word_embedding_forward(np.array([[1, 2], [0, 3]]), rng.standard_normal((4, 3)))
        cache = cache._replace(x=np.array([[1.5, 2.0], [0.0, 3.0]]))
        expect_error(lambda: word_embedding_backward(np.ones_like(out), cache))
    """,
    "temporal_affine_w_reshaped_in_place": """
        x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 6))
        out, cache = temporal_affine_forward(x, w, np.zeros(6))
        w.shape = (6, 4)
        expect_error(lambda: temporal_affine_backward(np.ones_like(out), cache))
    """,
    "affine_w_replaced": """
        out, cache = affine_forward(rng.standard_normal((2, 3, 4)), rng.standard_normal((12, 5)),
                                    np.zeros(5))
        cache = cache._replace(w=np.ones((3, 5)))
        expect_error(lambda: affine_backward(np.ones_like(out), cache))
    """,
}


@pytest.mark.parametrize("name", sorted(MISUSES))
def test_misuse_raises_in_a_child_process(name):
    code = PRELUDE + textwrap.dedent(MISUSES[name]) + "\nprint('exited normally')\n"
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"child ended with status {result.returncode}:\n{output}"
    assert "raised ValueError" in result.stdout or "raised TypeError" in result.stdout, output
    assert "NO ERROR" not in result.stdout, output
    assert "exited normally" in result.stdout, output
