"""Source of notebooks/05_gradients.ipynb (regenerate with notebooks/build_notebooks.py)."""
# %% [markdown]
# # Exploding and vanishing gradients, measured with fastrnn's backward kernels
#
# **What this shows.**
#
# 1. For a vanilla RNN, the norm of `dL/dh_t` as it flows back from a loss at the last step,
#    as the spectral radius `rho` of `Wh` goes below and above 1: at the fixed point `h = 0`
#    it is exactly `rho^(T-t)`; with real inputs, tanh's saturation shrinks it further, so
#    `rho < 1` guarantees vanishing but `rho > 1` does not guarantee explosion.
# 2. An LSTM with a large forget-gate bias keeps the gradient alive over the same distance.
# 3. Gradient-norm clipping (`CaptioningSolver(..., grad_clip=...)`) turns a diverging
#    vanilla-RNN captioning run into a converging one, on the built-in dataset.
#
# Everything is float64 and runs in well under a minute.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt

from fastrnn.rnn_layers import *

rng = np.random.default_rng(231)
N, T, D, H = 8, 60, 16, 64

x = rng.standard_normal((N, T, D))           # inputs of unit scale
v = rng.standard_normal((N, H))              # the loss is L = sum(v * h_T)
Wx = rng.standard_normal((D, H)) / np.sqrt(D)
Q, _ = np.linalg.qr(rng.standard_normal((H, H)))  # orthogonal: Wh = rho * Q has every
b = np.zeros(H)                                    # singular value, and spectral radius, rho


def rnn_grad_norms(x, Wh):
    """||dL/dh_t|| for t = 0..T, stepping back with rnn_step_backward from dL/dh_T = v."""
    prev_h, caches = np.zeros((N, H)), []
    for t in range(T):
        prev_h, cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)
        caches.append(cache)
    dh, norms = v, [np.linalg.norm(v)]
    for cache in reversed(caches):
        _, dh, _, _, _ = rnn_step_backward(dh, cache)
        norms.append(np.linalg.norm(dh))
    return np.array(norms[::-1]), dh  # norms[t] = ||dL/dh_t||, dh = dL/dh_0


# The step-by-step loop and the sequence kernel agree: rnn_backward's dh0 is the same dL/dh_0.
_, dh0_loop = rnn_grad_norms(x, 1.1 * Q)
_, cache = rnn_forward(x, np.zeros((N, H)), Wx, 1.1 * Q, b)
dh_upstream = np.zeros((N, T, H))
dh_upstream[:, -1] = v
_, dh0_seq, _, _, _ = rnn_backward(dh_upstream, cache)
difference = np.abs(dh0_loop - dh0_seq).max() / np.abs(dh0_seq).max()
print(f"dL/dh_0, step loop vs rnn_backward: relative difference {difference:.1e}")
assert difference < 1e-12

# %% [markdown]
# ## 1. Vanilla RNN: the spectral radius of `Wh`
#
# Backpropagation multiplies `dL/dh_t` by `Wh^T diag(1 - h_t^2)` once per step. With zero
# input the state stays at the fixed point `h = 0`, where `tanh' = 1`: the factor is just
# `Wh^T = rho Q^T`, and since `Q` is orthogonal, `||dL/dh_t|| = rho^(T-t) ||v||` exactly
# (left). With inputs of unit scale (right), every `tanh'` is below 1 and the product shrinks:
# `||dh_t|| <= (rho * max tanh')^(T-t) ||v||`, so `rho < 1` is *sufficient* for vanishing,
# while `rho > 1` is only *necessary* for exploding (Pascanu, Mikolov and Bengio, 2013):
# a saturated state (`|h| -> 1`) cuts the gradient however large `Wh` is.

# %%
rhos = (0.5, 0.9, 1.0, 1.1, 1.5)
steps_back = T - np.arange(T + 1)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for rho in rhos:
    at_fixed_point, _ = rnn_grad_norms(np.zeros_like(x), rho * Q)
    assert np.allclose(at_fixed_point, rho ** steps_back * np.linalg.norm(v), rtol=1e-10)
    with_inputs, _ = rnn_grad_norms(x, rho * Q)
    axes[0].semilogy(steps_back, at_fixed_point, label=f"rho = {rho}")
    axes[1].semilogy(steps_back, with_inputs, label=f"rho = {rho}")
    print(f"rho = {rho}: ||dL/dh_t|| 50 steps back: {at_fixed_point[T - 50]:9.2e} at h = 0, "
          f"{with_inputs[T - 50]:9.2e} with inputs")
axes[0].set_title("zero input (h stays 0): exactly rho^k")
axes[1].set_title("unit-scale inputs: tanh saturates")
for ax in axes:
    ax.set_xlabel("steps back from the loss, k = T - t")
axes[0].set_ylabel("||dL/dh_t||")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. LSTM: the forget gate as a gradient highway
#
# The LSTM's cell state is updated additively, `c_t = f_t * c_{t-1} + i_t * g_t`, so along
# the cell the backward factor is `diag(f_t)`: no weight matrix and no tanh derivative. With
# the forget-gate bias at 0, `f ~ sigmoid(0) = 1/2` and the gradient still vanishes, about as
# fast as the RNN's. A high bias (here 3, which puts `f` above 0.9; the "forget bias" of
# Gers et al. 2000 and Jozefowicz et al. 2015) keeps the gradient that reaches 50 steps back
# within an order of magnitude of its size at the loss, where the RNN's has lost about nine. Same inputs and loss as above, `Wx` and `Wh` scaled by `1/sqrt(fan-in)`, stepping back
# with `lstm_step_backward`, which returns both `dL/dh_{t-1}` and `dL/dc_{t-1}`.

# %%
Wx_lstm = rng.standard_normal((D, 4 * H)) / np.sqrt(D)
Wh_lstm = rng.standard_normal((H, 4 * H)) / np.sqrt(H)


def lstm_grad_norms(forget_bias):
    """(||dL/dh_t||, ||dL/dc_t||, mean forget gate) for t = 0..T."""
    b_lstm = np.zeros(4 * H)
    b_lstm[H:2 * H] = forget_bias  # gate order i, f, o, g
    prev_h, prev_c, caches, forget = np.zeros((N, H)), np.zeros((N, H)), [], []
    for t in range(T):
        forget.append(sigmoid(x[:, t] @ Wx_lstm[:, H:2 * H] + prev_h @ Wh_lstm[:, H:2 * H] + forget_bias))
        prev_h, prev_c, cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx_lstm, Wh_lstm, b_lstm)
        caches.append(cache)
    dh, dc = v, np.zeros((N, H))
    h_norms, c_norms = [np.linalg.norm(dh)], [np.linalg.norm(dc)]
    for cache in reversed(caches):
        _, dh, dc, _, _, _ = lstm_step_backward(dh, dc, cache)
        h_norms.append(np.linalg.norm(dh))
        c_norms.append(np.linalg.norm(dc))
    return np.array(h_norms[::-1]), np.array(c_norms[::-1]), np.mean(forget)


fig, ax = plt.subplots(figsize=(6, 3.2))
rnn_norms, _ = rnn_grad_norms(x, 1.0 * Q)
ax.semilogy(steps_back, rnn_norms, "k--", label="vanilla RNN, rho = 1: dL/dh")
for forget_bias, color in ((0.0, "C0"), (3.0, "C3")):
    h_norms, c_norms, forget = lstm_grad_norms(forget_bias)
    ax.semilogy(steps_back, h_norms, color=color, label=f"LSTM, forget bias {forget_bias:g}: dL/dh")
    ax.semilogy(steps_back[:-1], c_norms[:-1], color=color, ls=":", label=f"LSTM, forget bias {forget_bias:g}: dL/dc")
    print(f"LSTM forget bias {forget_bias:g} (f ~ {forget:.2f}): ||dL/dh_t|| 50 steps back = {h_norms[T - 50]:.2e}")
print(f"vanilla RNN rho = 1:               ||dL/dh_t|| 50 steps back = {rnn_norms[T - 50]:.2e}")
ax.set_xlabel("steps back from the loss, k = T - t")
ax.set_ylabel("gradient norm")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Gradient-norm clipping in training
#
# Vanishing gradients need an architectural fix (the LSTM); exploding ones have a cheap
# remedy: rescale the whole gradient when its global norm exceeds a threshold, keeping its
# direction (`CaptioningSolver(..., grad_clip=max_norm)`, `fastrnn.captioning_solver.clip_grad_norm`).
#
# Below, the same vanilla-RNN captioning model, started in the exploding regime (`Wh` scaled
# by 2, spectral radius ~2) and trained with plain SGD at a learning rate that is too large
# for it, twice: without clipping and with the global gradient norm clipped to 1. The data
# are the built-in dataset (or the real COCO files if `FASTRNN_COCO_DIR` points at them). A
# wrapper around `model.loss` records the gradient norm the solver sees before clipping.

# %%
from fastrnn.captioning_solver import CaptioningSolver
from fastrnn.classifiers.rnn import CaptioningRNN
from fastrnn.coco_utils import load_coco_data
from fastrnn.datasets import ensure_builtin_coco

data_dir = os.environ.get("FASTRNN_COCO_DIR") or ensure_builtin_coco()
data = load_coco_data(data_dir, max_train=500, rng=0)
print("data from", data_dir, "| train captions", data["train_captions"].shape)


def record_grad_norms(model):
    """Wrap model.loss so that every call appends the global gradient norm to a list."""
    norms, loss_fn = [], model.loss

    def loss(features, captions):
        value, grads = loss_fn(features, captions)
        norms.append(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads.values())))
        return value, grads

    model.loss = loss
    return norms


runs = {}
for grad_clip in (None, 1.0):
    np.random.seed(0)  # the same initial weights for both runs
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          wordvec_dim=64, hidden_dim=64, cell_type="rnn", dtype=np.float64)
    model.params["Wh"] *= 2.0
    grad_norms = record_grad_norms(model)
    solver = CaptioningSolver(model, data, update_rule="sgd", optim_config={"learning_rate": 0.5},
                              batch_size=50, num_epochs=6, grad_clip=grad_clip, verbose=False, rng=0)
    with np.errstate(over="ignore", invalid="ignore"):  # the unclipped run may overflow
        solver.train()
    runs[grad_clip] = (np.array(solver.loss_history), np.array(grad_norms))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for grad_clip, (losses, norms) in runs.items():
    label = "no clipping" if grad_clip is None else f"clipped to norm {grad_clip:g}"
    axes[0].plot(losses, label=label)
    axes[1].semilogy(norms, label=label)
    print(f"{label:20s}: loss {losses[0]:.1f} -> mean of last 10 = {np.mean(losses[-10:]):.1f}; "
          f"largest gradient norm {np.nanmax(norms):.1e}")
axes[0].set_title("training loss")
axes[1].set_title("gradient norm before clipping")
for ax in axes:
    ax.set_xlabel("iteration")
axes[0].legend()
fig.tight_layout()
plt.show()

unclipped, clipped = (np.nanmean(runs[key][0][-10:]) for key in (None, 1.0))
assert clipped < unclipped, (clipped, unclipped)

# %% [markdown]
# Without clipping, a single large gradient moves the weights far in one step: the loss jumps
# up instead of down, and training makes little net progress. With the norm clipped, every
# step has a bounded length and the same learning rate makes steady progress. Clipping leaves
# gradients below the threshold untouched, so once they are small it changes nothing.
