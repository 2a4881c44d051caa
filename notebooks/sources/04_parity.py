"""Source of notebooks/04_parity.ipynb (regenerate with notebooks/build_notebooks.py)."""
# %% [markdown]
# # Parity by hand: a vanilla RNN and an LSTM whose weights we write down
#
# **What this shows.** Two recurrent networks whose weights are *set by hand* (no training)
# so that their state carries the running parity (XOR) of a bit sequence:
#
# * a vanilla RNN with two hidden units, run through `fastrnn`'s `rnn_forward`;
# * an LSTM with **one** unit whose cell state *is* the parity bit, run through `lstm_forward`.
#
# Both are checked on every bit string of length 14 and on long random strings, in float64 and
# float32, and are always right (the notebook asserts it). Sigmoid and tanh are smooth, so
# the recipe is to scale every pre-activation by a large gain `k`: then `tanh(k z)` and
# `sigmoid(k z)` behave as step functions wherever `|z|` keeps a margin away from 0. The
# notebook works out how large `k` must be, and shows what fails when it is too small.

# %%
import numpy as np
import matplotlib.pyplot as plt

from fastrnn.rnn_layers import *

rng = np.random.default_rng(2016)


def running_parity(bits):
    """(N, T) 0/1 array -> (N, T) parity of bits[:, :t+1]: the target at every step."""
    return np.cumsum(bits, axis=1) % 2


def all_bit_strings(T):
    """Every 0/1 string of length T, one per row: (2**T, T)."""
    return (np.arange(2 ** T)[:, None] >> np.arange(T)) & 1


# %% [markdown]
# ## 1. Smooth functions as steps
#
# `tanh(k z)` tends to `sign(z)` and `sigmoid(k z)` to the step `[z > 0]` as the gain `k`
# grows, but only *away from 0*: at `|z| >= m` the error is
# `1 - tanh(k m) <= 2 exp(-2 k m)` and `sigmoid(-k m) <= exp(-k m)`. Every construction below
# therefore keeps each pre-activation at a distance (the *margin*) of at least 1/2 from 0
# before multiplying it by `k`.

# %%
z = np.linspace(-2, 2, 401)
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for k in (1, 4, 20):
    axes[0].plot(z, np.tanh(k * z), label=f"k = {k}")
    axes[1].plot(z, sigmoid(k * z), label=f"k = {k}")
for ax, name in zip(axes, ("tanh(k z)", "sigmoid(k z)")):
    ax.axvspan(-0.5, 0.5, color="0.9")
    ax.set_title(name)
    ax.set_xlabel("z  (grey: inside the margin 1/2)")
axes[0].legend()
fig.tight_layout()
plt.show()

gains = np.array([1.0, 4.0, 8.0, 20.0, 50.0])
for k, tanh_err, sigmoid_err in zip(gains, 1 - np.tanh(gains / 2), sigmoid(-gains / 2)):
    print(f"k = {k:2.0f}: at |z| = 1/2, 1 - tanh(k z) = {tanh_err:.1e}, sigmoid(-k |z|) = {sigmoid_err:.1e}")

# %% [markdown]
# ## 2. A vanilla RNN with two units
#
# The update is `p_t = p_{t-1} XOR x_t`. XOR is not linearly separable, so no single
# threshold unit of `(p_{t-1}, x_t)` computes it, and a one-unit vanilla RNN cannot carry
# parity. Two units can. Write bits as 0/1 and let
#
# * `u_t = [p_{t-1} + x_t >= 1]`  (OR),
# * `v_t = [p_{t-1} + x_t >= 2]`  (AND).
#
# Then `p_t = u_t - v_t` (OR minus AND is XOR), and since `v_t = 1` implies `u_t = 1`, the
# previous parity is also a *linear* function of the previous state: `p_{t-1} = u_{t-1} -
# v_{t-1}`. So both units are threshold functions of a linear form of `(u_{t-1}, v_{t-1}, x_t)`:
#
# `u_t = [u_{t-1} - v_{t-1} + x_t - 1/2 > 0]`, `v_t = [u_{t-1} - v_{t-1} + x_t - 3/2 > 0]`.
#
# A tanh unit holds ±1 rather than 0/1: with `h = 2 * bit - 1`, `u - v = (h_u - h_v) / 2`.
# Multiply every pre-activation by the gain `k`, and start from `h0 = (-1, -1)` (parity 0).
# The inner forms take the values ±1/2 (u) and ±1/2, -3/2 (v) on valid states, so the margin
# is 1/2 and the pre-activations are at least `k/2` away from 0.

# %%
def rnn_parity_weights(k, dtype=np.float64):
    """(Wx (1, 2), Wh (2, 2), b (2,), h0 (2,)) of the two-unit parity RNN with gain k."""
    Wx = k * np.array([[1.0, 1.0]])              # + x_t in both units
    Wh = k * np.array([[0.5, 0.5],               # + (h_u - h_v) / 2 = u - v = p_{t-1}
                       [-0.5, -0.5]])
    b = k * np.array([-0.5, -1.5])               # thresholds 1/2 (OR) and 3/2 (AND)
    h0 = np.array([-1.0, -1.0])                  # u = v = 0: parity 0
    return tuple(a.astype(dtype) for a in (Wx, Wh, b, h0))


def rnn_parity(bits, k, dtype=np.float64):
    """Run the RNN over (N, T) bits; return (its parity read-out (N, T), hidden states)."""
    Wx, Wh, b, h0 = rnn_parity_weights(k, dtype)
    N = bits.shape[0]
    h, _ = rnn_forward(bits[:, :, None].astype(dtype), np.tile(h0, (N, 1)), Wx, Wh, b)
    return (h[:, :, 0] - h[:, :, 1]) / 2 > 0.5, h


bits = np.array([[1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0]])
pred, h = rnn_parity(bits, k=20)
print("bits     ", bits[0])
print("parity   ", running_parity(bits)[0])
print("RNN      ", pred[0].astype(int))
print("h_u      ", np.round(h[0, :, 0], 3))
print("h_v      ", np.round(h[0, :, 1], 3))

# %% [markdown]
# Every string of length 14 (16384 of them, one batch), then 2000 random strings of length
# 1000, in both dtypes: the RNN is right at every step of every one.

# %%
K_RNN = 20
exhaustive = all_bit_strings(14)
random_bits = rng.integers(0, 2, size=(2000, 1000))
for dtype in (np.float64, np.float32):
    for name, b_ in (("all length-14 strings", exhaustive), ("random, T = 1000", random_bits)):
        pred, h = rnn_parity(b_, K_RNN, dtype)
        assert h.dtype == dtype
        assert np.array_equal(pred, running_parity(b_)), (dtype, name)
        print(f"RNN  k={K_RNN} {np.dtype(dtype).name:8s} {name:22s}: {pred.size:>9,d} steps, all right")

# %% [markdown]
# ### How large must `k` be? A margin argument
#
# tanh never reaches ±1, so the state is only approximately valid: say every unit is within
# `e` of its ideal ±1. The inner form `(h_u - h_v)/2 + x - 1/2` then moves by at most `e`, so
# its distance from 0 is at least `1/2 - e`, and the next state is within
# `e' = 1 - tanh(k (1/2 - e))` of ideal. Starting from the exact `h0` (`e = 0`), the errors
# stay bounded forever exactly when this recursion settles below 1/2 instead of running away.
# It settles for `k` above about 3.6, at an error that shrinks like `2 exp(-k)` as `k` grows;
# errors do not accumulate along the sequence, however long it is, because each step
# *re-saturates* the state. Below that, the state drifts into the margin and the read-out turns into guessing.

# %%
def worst_case_error(k, steps=2000):
    """Fixed point of e -> 1 - tanh(k (1/2 - e)) from e = 0 (inf if it passes 1/2)."""
    e = 0.0
    for _ in range(steps):
        e = 1 - np.tanh(k * (0.5 - e))
        if e >= 0.5:
            return np.inf
    return e


lo, hi = 1.0, 10.0  # bisect the critical gain of the bound
for _ in range(40):
    mid = (lo + hi) / 2
    lo, hi = (lo, mid) if np.isfinite(worst_case_error(mid)) else (mid, hi)
print(f"bound: state errors stay bounded for k > {hi:.3f}\n")

# The ideal state, in ±1 coding: u = p_{t-1} OR x_t, v = p_{t-1} AND x_t.
target = running_parity(random_bits)
prev_parity = np.concatenate([np.zeros((random_bits.shape[0], 1), int), target[:, :-1]], axis=1)
ideal = 2 * np.stack([prev_parity | random_bits, prev_parity & random_bits], axis=-1) - 1

print(" k   bound on |h - ideal|   largest |h - ideal| seen   accuracy (2000 x 1000 random bits)")
for k in (1, 2, 3, 4, 6, 10, 20):
    pred, h = rnn_parity(random_bits, k)
    seen = np.abs(h - ideal).max()
    print(f"{k:2d}   {worst_case_error(k):20.1e}   {seen:24.1e}   {np.mean(pred == target):.4f}")

# %% [markdown]
# The bound is a worst case (both units off in the unlucky direction at once), so the network
# still works at `k = 3`, where the bound gives up; at `k <= 2` it is at chance. From
# `k = 4` on it is always right, and at `k = 20` every unit stays within ~4e-9 of ±1.
#
# ## 3. An LSTM with one unit: the cell state is the parity
#
# The LSTM has what the vanilla RNN lacks: a multiplicative path. With gates `i, f, o, g` (in
# that order along `4H`, as in the course code) and `c_t = f * c_{t-1} + i * g`, keep the
# parity as `c_t ∈ {0, 1}`, which also matches `lstm_forward`'s zero initial cell state:
#
# | gate | ideal value | pre-activation / `k` | margin |
# |---|---|---|---|
# | forget `f` | `NOT x_t` | `1/2 - x_t` | 1/2 |
# | input `i` | `x_t AND NOT p_{t-1}` | `x_t - p_{t-1} - 1/2` | 1/2 |
# | output `o` | 1 | `1` | 1 |
# | candidate `g` | 1 | `1` | 1 |
#
# Check: `x = 0` keeps `c` (f = 1, i = 0); `x = 1, p = 0` writes 1 (f = 0, i = 1, g = 1);
# `x = 1, p = 1` writes 0 (f = 0, i = 0). `AND NOT` is linearly separable, so one unit is
# enough: the gating does the rest. The unit reads `p_{t-1}` from `h_{t-1} = o tanh(c_{t-1})
# ≈ tanh(1) * p_{t-1}`, hence the weight `-k / tanh(1)`.

# %%
TANH1 = np.tanh(1.0)


def lstm_parity_weights(k, dtype=np.float64):
    """(Wx (1, 4), Wh (1, 4), b (4,)) of the one-unit parity LSTM; gate order i, f, o, g."""
    #                  i            f         o    g
    Wx = np.array([[k,           -k,        0.0, 0.0]])
    Wh = np.array([[-k / TANH1,   0.0,      0.0, 0.0]])
    b = np.array([-k / 2,         k / 2,    k,   k])
    return tuple(a.astype(dtype) for a in (Wx, Wh, b))


def lstm_parity(bits, k, dtype=np.float64):
    """Run the LSTM over (N, T) bits; return (its parity read-out (N, T), h (N, T, 1))."""
    Wx, Wh, b = lstm_parity_weights(k, dtype)
    h, _ = lstm_forward(bits[:, :, None].astype(dtype), np.zeros((bits.shape[0], 1), dtype), Wx, Wh, b)
    return h[:, :, 0] / TANH1 > 0.5, h


# The cell state step by step (lstm_step_forward returns it; lstm_forward keeps it internal).
Wx, Wh, b = lstm_parity_weights(20)
prev_h, prev_c, cells = np.zeros((1, 1)), np.zeros((1, 1)), []
for t in range(bits.shape[1]):
    prev_h, prev_c, _ = lstm_step_forward(bits[:, t, None].astype(float), prev_h, prev_c, Wx, Wh, b)
    cells.append(prev_c[0, 0])
print("bits     ", bits[0])
print("parity   ", running_parity(bits)[0])
print("cell c_t ", np.round(cells, 6))

# %%
K_LSTM = 20
for dtype in (np.float64, np.float32):
    for name, b_ in (("all length-14 strings", exhaustive), ("random, T = 1000", random_bits)):
        pred, h = lstm_parity(b_, K_LSTM, dtype)
        assert h.dtype == dtype
        assert np.array_equal(pred, running_parity(b_)), (dtype, name)
        print(f"LSTM k={K_LSTM} {np.dtype(dtype).name:8s} {name:22s}: {pred.size:>9,d} steps, all right")

# %% [markdown]
# ### The LSTM's margin: a leaky memory
#
# Unlike the RNN, the LSTM's state is *not* re-saturated at every step: while `x = 0` the cell
# is only multiplied by `f = sigmoid(k/2) < 1`. After a 1 (parity 1, `c = 1`) followed by `L`
# zeros, `c = sigmoid(k/2)^L`, and the read-out `tanh(c)/tanh(1) > 1/2` fails once
# `c < c* = artanh(tanh(1)/2) ≈ 0.40`, i.e. after
#
# `L_max = ln(c*) / ln(sigmoid(k/2)) ≈ 0.92 exp(k/2)` zeros.
#
# (The parity-0 state is safe: there the small leak of `i` pushes `c` up, which lowers `i`
# further, and `c` settles well below `c*`.) So the gain buys memory length exponentially:
# `k = 8` remembers ~50 steps, `k = 20` ~20,000. The prediction is exact:

# %%
c_star = np.arctanh(TANH1 / 2)
for k in (8.0, 12.0):
    forget = 1 / (1 + np.exp(-k / 2))  # f while x = 0
    L_max = np.log(c_star) / np.log(forget)
    for L in (int(L_max) - 1, int(L_max) + 2):
        one_then_zeros = np.zeros((1, L + 1), dtype=int)
        one_then_zeros[0, 0] = 1
        pred, _ = lstm_parity(one_then_zeros, k)
        print(f"k = {k:4.1f}: L_max = {L_max:6.1f}; a 1 then {L:3d} zeros -> "
              f"{'right' if pred[0, -1] else 'WRONG'}")

# %% [markdown]
# At `k = 20` the limit (~20,000 zeros in a row) is far beyond the random strings above,
# whose longest zero runs are ~20. With a still larger gain the leak disappears in floating
# point: `sigmoid(k/2)` rounds to exactly 1 once `exp(-k/2)` is below half an ulp of 1,
# i.e. for `k > 35` in float32 and `k > 75` in float64 (with correctly rounded sigmoids).
